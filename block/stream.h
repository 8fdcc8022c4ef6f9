/*
 * block/stream.h — the block-stream job (QEMU's names): copy every cluster a live-restore
 * node (alloc-track, block/alloc-track.h) still reads from its backing onto the target,
 * then drop the backing (daemon-private).
 *
 * The QMP commands map one to one: block-stream -> stream_start(), job-cancel and
 * block-job-cancel -> stream_cancel(), block-job-set-speed -> stream_set_speed(),
 * query-jobs -> stream_query_jobs(). Jobs have type "stream" and send QEMU's events
 * through block/job.h: created, running; then waiting, pending, BLOCK_JOB_COMPLETED on
 * success, aborting and BLOCK_JOB_COMPLETED with error on failure, aborting and
 * BLOCK_JOB_CANCELLED on cancel; then concluded, null (dismissed automatically).
 *
 * Threads: the control functions run on the main loop; each job copies on a thread of
 * its own ("stream"), which also sends the end events.
 */
#ifndef BLOCK_STREAM_H
#define BLOCK_STREAM_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define STREAM_ERROR (stream_error_quark())
GQuark stream_error_quark(void);

typedef enum StreamErrorCode {
    STREAM_ERROR_FAILED,      /* GenericError */
    STREAM_ERROR_NO_JOB,      /* block-job-cancel of an unknown job: DeviceNotActive */
} StreamErrorCode;

#define STREAM_CHUNK (1u << 20)   /* bytes the job copies between checks of cancel/speed */

typedef struct StreamOptions {
    const char *job_id;       /* NULL: the device's name */
    const char *device;       /* node name of the alloc-track disk */
    const char *base;         /* NULL, or a file name in the backing chain */
    const char *base_node;    /* NULL, or a node name in the backing chain */
    const char *backing_file; /* NULL; only meaningful with base/base-node */
    int64_t speed;            /* bytes/s copied from the backing; 0: unlimited */
    const char *on_error;     /* NULL or "report" */
} StreamOptions;

/* Start a job, with QEMU's messages on refusal ("Cannot find device='d' nor
 * node-name='d'", "Job ID 'x' already in use", "Node 'd' is busy: block device is in use
 * by block job: stream", ...). A device with nothing to stream gets a job that completes
 * at once with len 0. Main loop. */
bool stream_start(const StreamOptions *o, GError **errp);

/* Cancel the running job id (STREAM_ERROR_NO_JOB if there is none). What was copied
 * stays on the target (and in its record). Main loop. */
bool stream_cancel(const char *id, GError **errp);

/* Change the speed limit of job id (bytes/s, 0: none). Main loop. */
bool stream_set_speed(const char *id, int64_t speed, GError **errp);

/* The running jobs, as JobInfo* (block/job.h), owned by the array. Main loop. */
GPtrArray *stream_query_jobs(void);

/* Cancel every job and wait until all have ended (shutdown, tests). Main loop. */
void stream_shutdown(void);

/* Wait until every job has ended (tests). Main loop. */
void stream_wait(void);

#endif /* BLOCK_STREAM_H */
