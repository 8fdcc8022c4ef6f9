/*
 * backup.h — vmad's live backup job: a point-in-time copy of a set of disks into one
 * VMA archive while the guest keeps writing (DESIGN.md sections 3 and 4).
 *
 * At most one backup runs at a time (process-wide state, as Proxmox's `backup` QMP
 * command has it). The control functions below are called from the main loop thread;
 * the job itself runs on threads it owns (copy workers, a spill-drain thread and a
 * controller that finishes the archive) and in the copy-before-write filters it inserts
 * above the disks, which run on whatever thread writes to a disk.
 *
 * The QMP commands map one to one: `backup` -> backup_start(), `backup-cancel` ->
 * backup_cancel(), `query-backup` -> backup_query(); per-disk jobs for `query-jobs` ->
 * backup_query_jobs(); JOB_STATUS_CHANGE / BLOCK_JOB_COMPLETED / BLOCK_JOB_CANCELLED ->
 * the event handler.
 */
#ifndef BACKUP_H
#define BACKUP_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/job.h"
#include "blockdev.h"

/* ---- errors ------------------------------------------------------------------------ */

#define BACKUP_ERROR (backup_error_quark())
GQuark backup_error_quark(void);

typedef enum BackupErrorCode {
    BACKUP_ERROR_FAILED,           /* QMP GenericError */
    BACKUP_ERROR_DEVICE_NOT_FOUND, /* QMP DeviceNotFound ("Device 'X' not found") */
    BACKUP_ERROR_CANCELLED,        /* backup_cancel() ended it ("backup canceled") */
    BACKUP_ERROR_BITMAP,           /* the bitmap cannot be used (missing, busy,
                                    * inconsistent, disk resized) */
} BackupErrorCode;

/* ---- starting ---------------------------------------------------------------------- */

#define BACKUP_DEFAULT_MAX_WORKERS 2
#define BACKUP_MAX_WORKERS 64                      /* larger values are clamped */
#define BACKUP_DEFAULT_MEM_LIMIT (256u << 20)     /* copy-before-write memory, bytes */

typedef struct BackupOptions {
    /* The target: "exec:<command>", an existing FIFO or a new file (see vma_writer_new).
     * With use_fd it is only the name shown in messages and in query-backup (e.g.
     * "/dev/fdname/NAME"). */
    const char *backup_file;
    bool use_fd;
    int fd;                     /* use_fd: the output; backup_start takes ownership of
                                 * it in every case (closed on failure) */
    const char *config_file;    /* NULL or a file stored as "qemu-server.conf" */
    const char *firewall_file;  /* NULL or a file stored as "qemu-server.fw" */
    const char *devlist;        /* NULL: every writable disk; else names separated by
                                 * ',' ';' or ':' */
    int64_t speed;              /* background copy limit in bytes/s; <= 0 unlimited */
    int max_workers;            /* background copy threads; <= 0: default (2) */
    bool fleecing;              /* spill copy-before-write data to a file when memory is
                                 * full even without fleecing_dir (then in $TMPDIR) */

    const char *bitmap;         /* NULL: a full backup; else a change bitmap on every disk:
                                 * only its clusters are stored (a delta archive), or a
                                 * full backup that becomes its base when no backup has
                                 * used it yet */
    bool differential;          /* bitmap-mode never: the bitmap keeps its bits; else
                                 * (on-success) it restarts at the instant */

    const char *vm_monitor;     /* NULL, or the QMP socket of the QEMU running on the
                                 * disks: its RAM and device state go into the archive
                                 * as the vmstate stream, and the disks' instant is the
                                 * end of that migration (the VM is stopped then) */

    /* From vmad's command line (not QMP arguments). */
    uint64_t mem_limit;         /* copy-before-write data held in memory; 0: 256 MiB */
    const char *fleecing_dir;   /* where to spill when memory is full; NULL: only with
                                 * fleecing (then $TMPDIR), else the backup fails */
    uint64_t fleecing_limit;    /* bytes of spilled data at most; 0: until ENOSPC */
} BackupOptions;

/*
 * Start a backup of the listed disks into one archive. Every disk is frozen at one
 * instant before this returns: filters go above all of them at once. Returns the
 * archive uuid in lower-case text form (free with g_free), or NULL with errp set, e.g.
 * "previous backup not finished", "Device 'X' not found" (BACKUP_ERROR_DEVICE_NOT_FOUND),
 * "empty device list", "unable to read file 'X'", or the target's open error.
 * Main loop thread.
 */
char *backup_start(const BackupOptions *o, GError **errp);

/*
 * Cancel the running backup, if any (no error when none runs): records "backup
 * canceled" as its error unless it has failed already, releases everything the job
 * makes wait and returns at once. The job ends shortly after on its own threads (a
 * partial output file it created is removed; a FIFO or a passed descriptor is left).
 * Main loop thread.
 */
void backup_cancel(void);

/*
 * Block until no backup is running (the job's threads are joined). For shutdown
 * (after backup_cancel) and tests. Main loop thread.
 */
void backup_wait(void);

/* ---- status ------------------------------------------------------------------------ */

/*
 * Proxmox's BackupStatus. Before any backup, status is NULL and only `finishing` is
 * meaningful (false). end_time is 0 while the backup is active. Strings are owned by
 * the struct: release with backup_status_clear().
 */
typedef struct BackupStatus {
    char *status;          /* NULL, "active", "done" or "error" */
    char *errmsg;          /* status "error": the first error */
    uint64_t total;        /* sum of the disks' sizes */
    uint64_t dirty;        /* bytes to back up: total, or the changed clusters' bytes */
    uint64_t transferred;  /* bytes of the disks handed to the archive */
    uint64_t zero_bytes;   /* of those, bytes in zero 4 KiB blocks */
    uint64_t reused;       /* bytes skipped as unchanged since the base (total - dirty) */
    int64_t start_time;    /* epoch seconds */
    int64_t end_time;      /* epoch seconds; 0 while active */
    char *backup_file;
    char *uuid;
    bool finishing;        /* active and waiting for the target to take the rest */

    /* Beyond Proxmox's fields (diagnostics, tests). */
    uint64_t cbw_bytes;     /* old data saved by copy-before-write */
    uint64_t spilled_bytes; /* of those, bytes that went through the fleecing file */

    /* vm-monitor backups only (vmstate_method NULL otherwise). */
    char *vmstate_method;        /* "precopy" */
    uint64_t vmstate_bytes;      /* migration stream bytes received so far */
    int64_t vmstate_downtime_ms; /* the guest's pause (STOP to cont), -1 until known */
} BackupStatus;

/* Fill *st (overwritten, not cleared first). Main loop thread. */
void backup_query(BackupStatus *st);
void backup_status_clear(BackupStatus *st);

/* ---- per-disk jobs (query-jobs and job events) ------------------------------------------ */

/*
 * Each disk of a backup is presented as a QEMU job of type "backup" whose id is the
 * disk's name. Its status uses QEMU's JobStatus words: "created", "running" while the
 * backup is active, then "waiting", "pending", "concluded", "null" on success or
 * "aborting", "concluded", "null" on failure or cancel. Jobs are dismissed
 * automatically, so query-jobs lists them only while the backup is active.
 */
typedef JobInfo BackupJobInfo;  /* type "backup"; progress: bytes handed to the archive
                                 * of the disk's size (block/job.h) */

void backup_job_info_free(BackupJobInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BackupJobInfo, backup_job_info_free)

/* The current backup's per-disk jobs (an array of BackupJobInfo*, owning them; empty
 * when no backup is active). Main loop thread. */
GPtrArray *backup_query_jobs(void);

/* The job events (block/job.h), sent with type "backup". */
typedef JobEvent BackupEvent;
#define BACKUP_EVENT_JOB_STATUS_CHANGE JOB_EVENT_STATUS_CHANGE
#define BACKUP_EVENT_JOB_COMPLETED JOB_EVENT_COMPLETED
#define BACKUP_EVENT_JOB_CANCELLED JOB_EVENT_CANCELLED

/*
 * Called for every job event, in order, from the main loop thread (backup_start: created,
 * running) or the job's controller thread (the end of the backup). The event and its
 * strings are valid only during the call. Set before starting backups; NULL disables.
 * It is the handler of every job (job_set_event_handler()).
 */
typedef JobEventFn BackupEventFn;
void backup_set_event_handler(BackupEventFn fn, void *opaque);

#endif /* BACKUP_H */
