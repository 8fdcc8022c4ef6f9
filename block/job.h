/*
 * block/job.h — what every job of vmad shares (daemon-private): QEMU's job events and
 * the query-jobs record.
 *
 * A job (a disk of a backup, a block-stream) is presented as a QEMU job: an id, a type
 * ("backup", "stream"), a JobStatus word, progress, and the events JOB_STATUS_CHANGE,
 * BLOCK_JOB_COMPLETED and BLOCK_JOB_CANCELLED in QEMU's order. The job modules
 * (backup.c, block/stream.c) send their events through job_emit(); the monitor sets the
 * one handler that turns them into QMP events, and builds query-jobs from the modules'
 * JobInfo lists.
 *
 * Threads: job_emit() from any thread (a job's own threads send the end events); the
 * handler is set on the main loop.
 */
#ifndef BLOCK_JOB_H
#define BLOCK_JOB_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum JobEventKind {
    JOB_EVENT_STATUS_CHANGE, /* JOB_STATUS_CHANGE {id, status} */
    JOB_EVENT_COMPLETED,     /* BLOCK_JOB_COMPLETED {type, device, len, offset, speed,
                              * error?} */
    JOB_EVENT_CANCELLED,     /* BLOCK_JOB_CANCELLED {type, device, len, offset, speed} */
} JobEventKind;

typedef struct JobEvent {
    JobEventKind kind;
    const char *type;     /* JobType word: "backup", "stream" */
    const char *id;       /* job id (BLOCK_JOB_*'s "device") */
    const char *status;   /* STATUS_CHANGE: the new JobStatus word */
    uint64_t len;         /* COMPLETED/CANCELLED: the job's length */
    uint64_t offset;      /* COMPLETED/CANCELLED: how far it got */
    int64_t speed;        /* COMPLETED/CANCELLED: the speed limit (0 = none) */
    const char *error;    /* COMPLETED: NULL on success, else why it failed */
} JobEvent;

/* Called for every job event, in order; the event and its strings are valid only during
 * the call. NULL disables. */
typedef void (*JobEventFn)(const JobEvent *ev, void *opaque);
void job_set_event_handler(JobEventFn fn, void *opaque);
void job_emit(const JobEvent *ev);

/* JOB_STATUS_CHANGE of one job. */
void job_emit_status(const char *type, const char *id, const char *status);

/*
 * The end of one job, in QEMU's order: success "waiting", "pending",
 * BLOCK_JOB_COMPLETED; failure "aborting", BLOCK_JOB_COMPLETED with error; cancel
 * "aborting", BLOCK_JOB_CANCELLED; then "concluded", "null" (jobs are dismissed
 * automatically).
 */
void job_emit_end(const char *type, const char *id, uint64_t len, uint64_t offset,
                  int64_t speed, const char *error, bool cancelled);

/* One job as query-jobs shows it (QEMU's JobInfo). */
typedef struct JobInfo {
    char *id;
    const char *type;          /* JobType word */
    const char *status;        /* JobStatus word */
    uint64_t current_progress;
    uint64_t total_progress;
    char *error;               /* NULL, or why the job failed */
} JobInfo;

void job_info_free(JobInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(JobInfo, job_info_free)

#endif /* BLOCK_JOB_H */
