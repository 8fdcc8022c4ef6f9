/*
 * backup.c — the live backup job: a point-in-time copy of a set of disks into one VMA
 * archive while the guest keeps writing.
 *
 * Design note
 * -----------
 * The pieces. Per disk, a BlockCopy (block/block-copy.c) holds which clusters still
 * hold their data of the instant and who is reading which, and a copy-before-write
 * filter (block/copy-before-write.c) sits on top of the disk's chain and has the
 * BlockCopy save old data before every write. This file is the job around them: it
 * starts and stops everything, decides where copied data goes (the archive writer, or
 * the fleecing spill of backup-spill.c), runs the background copy workers under the
 * rate limit, keeps progress and sends the job events.
 *
 * The instant. backup_start() opens the archive writer, registers the disks, builds one
 * BlockCopy and one filter per disk over the disk's current top node, and inserts all
 * filters with blockdev_insert_filters(), which lets no request through on any of the
 * disks while it relinks their chains: that instant T is the point in time of the
 * backup. Every write (write, write-zeroes, discard) that starts after T runs the
 * filter first; every write before T has finished (docs/internals.md has the proof).
 *
 * What each cluster goes through (block-copy.c has the state machine): it is claimed
 * exactly once, by a copy-before-write or a copy worker, read with one preadv per run of
 * claimed clusters, released, and handed here through disk_copied(). A guest write
 * waits at most for one local read of a run (and, under memory pressure, one local
 * write to the spill), never for the archive.
 *
 * Copy-before-write data is bounded: a copy-before-write's non-zero cluster goes into
 * the writer's priority lane (which never blocks) only while the bytes queued in the
 * writer plus those being handed over by copy-before-writes stay within mem_limit;
 * otherwise it is written to the fleecing spill and queued for its drain thread, which
 * reads it back and hands it to the writer's normal lane (bounded: it blocks while the
 * lane is full). All-zero clusters cost nothing (NULL buffer). Without a fleecing file,
 * or when it is full (the limit or ENOSPC), the backup fails with "copy-before-write
 * buffer exhausted" and the guest goes on. What the limit does not see:
 * vma_writer_get_queued_bytes() counts the queue, not the extent the writer thread is
 * writing (at most 58 clusters, 3.7 MiB), and the normal lane is bounded separately (a
 * quarter of mem_limit, 2..64 clusters), so the memory holding old data is at most
 * mem_limit + 3.7 MiB + the normal lane + one run (BLOCK_COPY_MAX_RUN clusters) per
 * writing thread and per worker in flight.
 *
 * Background copy: max_workers threads (default 2: the copy is local reads feeding one
 * writer thread, whose output is the bottleneck; two keep a read going while the other
 * hands over, more only add contention) take 1 MiB chunks (16 clusters) in disk order
 * from a shared cursor and give each to block_copy_chunk(), which skips what is copied,
 * finds holes, waits for the rate limiter (speed, background only, before claiming
 * anything) and claims, reads and hands over the rest, one run at a time.
 *
 * Completion: `remaining` counts clusters not yet handed to the writer. The controller
 * thread waits until it is 0 or the job failed, stops and joins the workers and the
 * drain thread, removes the filters (which waits for running copy-before-writes),
 * closes the writer (drain, flush, wait for an exec: command; "finishing" meanwhile),
 * and records the result. Only then are the writer, the spill, the BlockCopys, the
 * filters and the disk references released.
 *
 * Failure: the first error (source read, fleecing, writer I/O or command, cancel) is
 * latched in job->error; the writer is cancelled with it (waking producers blocked on
 * its queue), every BlockCopy and the spill are cancelled (waking every waiter, claiming
 * nothing more), `failed` is set: guest writes go through untouched. A cancel is the
 * error BACKUP_ERROR_CANCELLED. A failed close removes the output file the writer
 * created (never a FIFO or a passed descriptor). When the writer itself failed, its
 * close error (e.g. a command's exit status rather than the broken pipe it caused) is
 * reported.
 *
 * Locks (none is held across our own I/O or a BlockCopy/spill call that may block):
 *   state_lock  — the global `cur` job pointer (events go through block/job.c);
 *   job->lock   — the job's mutable state (see BackupJob);
 *     -> the writer's internal lock (vma_writer_* calls),
 *     -> a BlockCopy's lock (its cancel, from job_fail; the copy cursor's skip to the
 *        next cluster to copy, next_chunk), the spill's lock (its cancel): neither
 *        calls back into the job while holding its lock.
 * `failed` is an atomic flag set after job->error, so hot paths test it without a lock;
 * waiters re-check it under the lock they wait with, and the failer broadcasts under
 * each of those locks, so no wakeup is lost.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup-internal.h"
#include "backup.h"
#include "block/block-copy.h"
#include "block/copy-before-write.h"
#include "block/dirty-bitmap.h"
#include "blockdev.h"
#include "util/fd.h"
#include "util/ratelimit.h"
#include "vma.h"

#define CLUSTER VMA_CLUSTER_SIZE
#define CHUNK_CLUSTERS BLOCK_COPY_MAX_RUN  /* background copy unit: 1 MiB */
#define WRITER_QUEUE_MAX 64u               /* normal lane bound, clusters */
#define WRITER_QUEUE_MIN 2u
#define CONFIG_NAME "qemu-server.conf"
#define FIREWALL_NAME "qemu-server.fw"

G_DEFINE_QUARK(backup-error-quark, backup_error)

typedef enum JobState {
    JOB_ACTIVE,
    JOB_DONE,
    JOB_ERROR,
} JobState;

typedef struct BackupJob BackupJob;

typedef struct BackupDisk {
    /* Immutable while the job runs. */
    BackupJob *job;
    BlockDev *bd;             /* a reference, dropped when the job ends */
    char *name;
    uint8_t dev_id;
    uint64_t size;
    uint64_t nclusters;
    BlockCopy *bc;            /* the claim/copy state; freed when the job ends */
    BlockNode *filter;        /* our reference to the disk's copy-before-write filter */
    DirtyBitmap *bitmap;      /* the backup's change bitmap (busy while we hold it), or
                               * NULL; released by the controller before the job ends */
    uint64_t dirty_bytes;     /* bytes to copy: size, or the dirty clusters' bytes (set
                               * at the instant) */

    /* BackupJob.lock: */
    const char *job_status;   /* QEMU JobStatus word */
    uint64_t transferred;     /* final progress, taken before the writer is freed */
    uint64_t zero_bytes;
} BackupDisk;

struct BackupJob {
    /* Immutable after backup_start(). */
    BackupDisk *disks;
    unsigned ndisks;
    char *backup_file;
    char uuid[37];
    uint64_t total;
    int64_t start_time;
    int64_t speed;
    unsigned nworkers;
    uint64_t mem_limit;
    BackupSpill *spill;       /* NULL: no fleecing file; freed by the controller */
    bool delta;               /* incremental/differential: only the bitmap's clusters */
    bool bitmap_reset;        /* the bitmap restarts at the instant (on success) */
    uint8_t uuid_raw[16];
    uint64_t spill_limit;     /* 0: unlimited */
    BackupVmstate *vmstate;   /* vm-monitor: the VM's state goes into the archive too;
                               * the controller starts the writer and takes the instant */

    gint failed;              /* atomic; set once job->error is latched */

    /* lock protects everything below (lock order in the design note). */
    GMutex lock;
    GCond cond;               /* remaining, stop, rate limiter, failure */
    VmaWriter *writer;        /* NULL once closed and freed by the controller */
    GError *error;            /* the first error */
    bool error_from_writer;   /* it came from the writer: prefer its close error */
    JobState state;
    bool finishing;
    int64_t end_time;
    uint64_t remaining;       /* clusters not yet handed to the writer */
    unsigned cursor_disk;     /* background copy cursor */
    uint64_t cursor_cluster;
    bool stop;                /* workers: finish */
    uint64_t reserved;        /* copy-before-write buffers on their way into the
                               * priority lane */
    uint64_t cbw_bytes;
    uint64_t spilled_bytes;
    RateLimit rate;           /* the background copy's speed limit */

    bool filters_in;          /* the copy-before-write filters are in place */

    /* Controller thread only (joined by the main loop). */
    GThread **workers;
    GThread *controller;      /* state_lock: joined and cleared by backup_wait/start */
};

static GMutex state_lock;     /* protects cur */
static BackupJob *cur;        /* the current or last backup */

static bool job_failed(BackupJob *job)
{
    return g_atomic_int_get(&job->failed) != 0;
}

/* ---- failure ------------------------------------------------------------------------ */

/*
 * Latch err (taken over) as the job's error unless one is latched, cancel the writer,
 * the BlockCopys and the spill, and wake every waiter. Any thread.
 */
static void job_fail(BackupJob *job, GError *err, bool from_writer)
{
    g_mutex_lock(&job->lock);
    if (job->state != JOB_ACTIVE) {
        /* too late: the backup has ended */
        g_mutex_unlock(&job->lock);
        g_error_free(err);
        return;
    }
    if (job->error == NULL) {
        job->error = g_steal_pointer(&err);
        job->error_from_writer = from_writer;
    }
    if (job->writer != NULL) {
        vma_writer_cancel(job->writer, job->error->message);
    }
    g_atomic_int_set(&job->failed, 1);
    g_cond_broadcast(&job->cond);
    /* under job->lock: the controller frees these only after leaving JOB_ACTIVE */
    for (unsigned i = 0; i < job->ndisks; i++) {
        if (job->disks[i].bc != NULL) {
            block_copy_cancel(job->disks[i].bc);
        }
    }
    if (job->spill != NULL) {
        backup_spill_cancel(job->spill);
    }
    if (job->vmstate != NULL) {
        backup_vmstate_cancel(job->vmstate);
    }
    g_mutex_unlock(&job->lock);
    if (err != NULL) {
        g_error_free(err);
    }
}

/* One cluster was handed to the writer. */
static void cluster_done(BackupJob *job)
{
    g_mutex_lock(&job->lock);
    g_assert(job->remaining > 0);
    if (--job->remaining == 0) {
        g_cond_broadcast(&job->cond);
    }
    g_mutex_unlock(&job->lock);
}

/* Hand buf (owned, or NULL for zeros) to the writer; false when the job failed. */
static bool hand_over(BackupJob *job, BackupDisk *d, uint64_t c, void *buf, unsigned flags)
{
    GError *err = NULL;

    if (!vma_writer_write_cluster(job->writer, d->dev_id, (uint32_t)c, buf, flags, &err)) {
        job_fail(job, err, true);
        return false;
    }
    cluster_done(job);
    return true;
}

/* ---- where copied data goes --------------------------------------------------------- */

static void fail_exhausted(BackupJob *job, const char *why)
{
    job_fail(job,
             g_error_new(BACKUP_ERROR, BACKUP_ERROR_FAILED,
                         "copy-before-write buffer exhausted (%s)", why),
             false);
}

/* Save the old data (buf, owned, non-zero) of cluster c: memory or the spill. */
static void cbw_save(BackupJob *job, BackupDisk *d, uint64_t c, void *buf)
{
    bool to_memory = false;

    g_mutex_lock(&job->lock);
    uint64_t queued = vma_writer_get_queued_bytes(job->writer);
    if (queued + job->reserved + CLUSTER <= job->mem_limit) {
        job->reserved += CLUSTER;
        to_memory = true;
    }
    g_mutex_unlock(&job->lock);

    if (to_memory) {
        bool ok = hand_over(job, d, c, buf, VMA_WRITE_PRIORITY);
        g_mutex_lock(&job->lock);
        job->reserved -= CLUSTER;
        if (ok) {
            job->cbw_bytes += CLUSTER;
        }
        g_mutex_unlock(&job->lock);
        return;
    }
    if (job->spill == NULL) {
        vma_cluster_free(buf);
        g_autofree char *why = g_strdup_printf("%" G_GUINT64_FORMAT " bytes of memory in "
                                               "use and no fleecing directory",
                                               job->mem_limit);
        fail_exhausted(job, why);
        return;
    }

    int r = backup_spill_save(job->spill, (unsigned)(d - job->disks), c, buf);
    vma_cluster_free(buf);
    if (r == -ENOBUFS) {
        g_autofree char *why = g_strdup_printf("%" G_GUINT64_FORMAT " bytes of memory and %"
                                               G_GUINT64_FORMAT " bytes of fleecing file in "
                                               "use", job->mem_limit, job->spill_limit);
        fail_exhausted(job, why);
        return;
    }
    if (r == -ENOSPC || r == -EDQUOT || r == -EFBIG) {
        g_autofree char *why = g_strdup_printf("write fleecing file in %s: %s",
                                               backup_spill_dir(job->spill), g_strerror(-r));
        fail_exhausted(job, why);
        return;
    }
    if (r < 0) {
        job_fail(job,
                 g_error_new(BACKUP_ERROR, BACKUP_ERROR_FAILED, "write fleecing file in %s: %s",
                             backup_spill_dir(job->spill), g_strerror(-r)),
                 false);
        return;
    }
    g_mutex_lock(&job->lock);
    job->cbw_bytes += CLUSTER;
    job->spilled_bytes += CLUSTER;
    g_mutex_unlock(&job->lock);
}

/* BlockCopyOps.copied: a cluster of d was read (by the filter or a worker). */
static void disk_copied(void *opaque, uint64_t c, void *buf, bool from_write)
{
    BackupDisk *d = opaque;
    BackupJob *job = d->job;

    if (!from_write) {
        (void)hand_over(job, d, c, buf, 0);
        return;
    }
    if (vma_buffer_is_zero(buf, CLUSTER)) {
        vma_cluster_free(buf);
        if (hand_over(job, d, c, NULL, VMA_WRITE_PRIORITY)) {
            g_mutex_lock(&job->lock);
            job->cbw_bytes += CLUSTER;
            g_mutex_unlock(&job->lock);
        }
        return;
    }
    cbw_save(job, d, c, buf);
}

static void disk_read_failed(void *opaque, uint64_t c, int r)
{
    BackupDisk *d = opaque;

    job_fail(d->job,
             g_error_new(BACKUP_ERROR, BACKUP_ERROR_FAILED,
                         "read %s at offset %" G_GUINT64_FORMAT ": %s", d->name, c * CLUSTER,
                         g_strerror(-r)),
             false);
}

/* Sleep until the limiter lets `bytes` more be read; false if the job failed. */
static bool disk_rate_wait(void *opaque, uint64_t bytes)
{
    BackupJob *job = ((BackupDisk *)opaque)->job;

    if (job->speed <= 0 || bytes == 0) {
        return !job_failed(job);
    }
    g_mutex_lock(&job->lock);
    int64_t until = ratelimit_reserve(&job->rate, bytes, g_get_monotonic_time());
    while (!job_failed(job) && g_get_monotonic_time() < until) {
        g_cond_wait_until(&job->cond, &job->lock, until);
    }
    g_mutex_unlock(&job->lock);
    return !job_failed(job);
}

static const BlockCopyOps copy_ops = {
    .copied = disk_copied,
    .read_failed = disk_read_failed,
    .rate_wait = disk_rate_wait,
};

/* BackupSpillOps: the drain thread's hand-over and failure. */
static bool spill_drained(void *opaque, unsigned disk, uint64_t c, void *buf)
{
    BackupJob *job = opaque;
    return hand_over(job, &job->disks[disk], c, buf, 0);
}

static void spill_failed(void *opaque, GError *err)
{
    job_fail(opaque, err, false);
}

static const BackupSpillOps spill_ops = {
    .drained = spill_drained,
    .failed = spill_failed,
};

/* ---- background copy ------------------------------------------------------------------ */

static bool next_chunk(BackupJob *job, unsigned *disk, uint64_t *first, unsigned *n)
{
    bool ok = false;

    g_mutex_lock(&job->lock);
    while (!job->stop && !job_failed(job) && job->cursor_disk < job->ndisks) {
        BackupDisk *d = &job->disks[job->cursor_disk];
        /* skip what is not to be copied (an incremental's clean clusters, what
         * copy-before-writes took) a bitmap word at a time, not a chunk at a time */
        job->cursor_cluster = block_copy_next_todo(d->bc, job->cursor_cluster);
        if (job->cursor_cluster < d->nclusters) {
            *disk = job->cursor_disk;
            *first = job->cursor_cluster;
            *n = (unsigned)MIN((uint64_t)CHUNK_CLUSTERS, d->nclusters - job->cursor_cluster);
            job->cursor_cluster += *n;
            ok = true;
            break;
        }
        job->cursor_disk++;
        job->cursor_cluster = 0;
    }
    g_mutex_unlock(&job->lock);
    return ok;
}

static gpointer worker_main(gpointer opaque)
{
    BackupJob *job = opaque;
    unsigned disk;
    uint64_t first;
    unsigned n;

    while (next_chunk(job, &disk, &first, &n)) {
        block_copy_chunk(job->disks[disk].bc, first, n);
    }
    return NULL;
}

/* ---- events --------------------------------------------------------------------------- */

static void emit(const BackupEvent *ev)
{
    BackupEvent e = *ev;
    e.type = "backup";
    job_emit(&e);
}

static void set_job_status(BackupJob *job, const char *status)
{
    for (unsigned i = 0; i < job->ndisks; i++) {
        g_mutex_lock(&job->lock);
        job->disks[i].job_status = status;
        g_mutex_unlock(&job->lock);
        BackupEvent ev = {
            .kind = BACKUP_EVENT_JOB_STATUS_CHANGE,
            .id = job->disks[i].name,
            .status = status,
        };
        emit(&ev);
    }
}

/* The end of the per-disk jobs, in QEMU's order. */
static void emit_end_events(BackupJob *job, const char *error, bool cancelled)
{
    if (error == NULL) {
        set_job_status(job, "waiting");
        set_job_status(job, "pending");
    } else {
        set_job_status(job, "aborting");
    }
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        BackupEvent ev = {
            .kind = cancelled ? BACKUP_EVENT_JOB_CANCELLED : BACKUP_EVENT_JOB_COMPLETED,
            .id = d->name,
            .len = d->size,
            .offset = d->transferred,
            .speed = job->speed > 0 ? job->speed : 0,
            .error = cancelled ? NULL : error,
        };
        emit(&ev);
    }
    set_job_status(job, "concluded");
    set_job_status(job, "null");
}

/* ---- the controller ------------------------------------------------------------------- */

static void release_bitmaps(BackupJob *job, bool ok)
{
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        if (d->bitmap != NULL) {
            dirty_bitmap_release(d->bitmap, ok, ok && job->bitmap_reset ? job->uuid_raw
                                                                         : NULL);
            d->bitmap = NULL;
        }
    }
}

static void disks_remove_filters(BackupJob *job)
{
    g_autofree BlockDev **bds = g_new(BlockDev *, job->ndisks);
    g_autofree BlockNode **filters = g_new(BlockNode *, job->ndisks);

    for (unsigned i = 0; i < job->ndisks; i++) {
        bds[i] = job->disks[i].bd;
        filters[i] = job->disks[i].filter;
    }
    blockdev_remove_filters(bds, job->ndisks, filters);
}

static bool disks_insert_filters(BackupJob *job, GError **errp);

/* BackupVmstateInstantFn: the VM is stopped at the end of its migration. */
static bool vmstate_instant(void *opaque, GError **errp)
{
    BackupJob *job = opaque;

    if (!disks_insert_filters(job, errp)) {
        return false;
    }
    job->filters_in = true;
    return true;
}

/*
 * vm-monitor: learn what QEMU runs, finish the header with the vmstate device and the
 * vmstate config entry, start the writer, and stream the migration; the disks' instant
 * is taken inside, with the VM stopped. Controller thread; false: the job failed.
 */
static bool vmstate_phase(BackupJob *job)
{
    GError *err = NULL;
    g_autofree char *config = NULL;
    size_t len = 0;
    uint64_t size = 0;

    if (!backup_vmstate_prepare(job->vmstate, &config, &len, &size, &err) ||
        !vma_writer_add_config(job->writer, BACKUP_VMSTATE_CONFIG_NAME, config, len, &err)) {
        job_fail(job, err, false);
        return false;
    }
    int id = vma_writer_register_device(job->writer, VMA_VMSTATE_NAME,
                                        MIN(size, VMA_MAX_DEVICE_SIZE), &err);
    if (id < 0 || !vma_writer_start(job->writer, &err)) {
        job_fail(job, err, false);
        return false;
    }
    if (!backup_vmstate_run(job->vmstate, job->writer, (uint8_t)id, vmstate_instant, job,
                            &err)) {
        job_fail(job, err, false);
        return false;
    }
    return true;
}

static gpointer controller_main(gpointer opaque)
{
    BackupJob *job = opaque;
    unsigned started = 0;

    if (job->vmstate != NULL) {
        (void)vmstate_phase(job);
    }

    /* Start the copy threads. */
    job->workers = g_new0(GThread *, job->nworkers);
    for (unsigned i = 0; i < job->nworkers; i++) {
        GError *err = NULL;
        job->workers[i] = g_thread_try_new("backup-copy", worker_main, job, &err);
        if (job->workers[i] == NULL) {
            if (started == 0) {
                g_prefix_error(&err, "start backup copy thread: ");
                job_fail(job, err, false);
            } else {
                g_error_free(err); /* fewer workers do the job too */
            }
            break;
        }
        started++;
    }
    if (job->spill != NULL) {
        GError *err = NULL;
        if (!backup_spill_start(job->spill, &err)) {
            job_fail(job, err, false);
        }
    }

    /* Wait until every cluster is in the writer's hands, or a failure. */
    g_mutex_lock(&job->lock);
    while (!job_failed(job) && job->remaining > 0) {
        g_cond_wait(&job->cond, &job->lock);
    }
    job->stop = true;
    g_cond_broadcast(&job->cond);
    g_mutex_unlock(&job->lock);

    for (unsigned i = 0; i < started; i++) {
        g_thread_join(job->workers[i]);
    }
    g_clear_pointer(&job->workers, g_free);
    if (job->spill != NULL) {
        backup_spill_stop(job->spill);
    }

    /* After this no copy-before-write runs: nothing but us touches the writer any more
     * (but backup_cancel, under job->lock). */
    if (job->filters_in) {
        disks_remove_filters(job);
        job->filters_in = false;
    }

    g_mutex_lock(&job->lock);
    job->finishing = true;
    g_mutex_unlock(&job->lock);

    GError *close_err = NULL;
    bool ok = vma_writer_close(job->writer, &close_err);
    /* Before anyone can see the end (query-backup, events): a next backup may use the
     * bitmap right away. Success: it counts from this archive when it was reset;
     * failure: the bits it gave up come back. */
    release_bitmaps(job, ok);

    g_mutex_lock(&job->lock);
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        VmaDeviceStatus st;
        if (vma_writer_get_device_status(job->writer, d->dev_id, &st)) {
            d->transferred = st.transferred;
            d->zero_bytes = st.zero_bytes;
        }
    }
    VmaWriter *w = g_steal_pointer(&job->writer);
    if (ok) {
        /* a cancel that came after the archive was complete changes nothing */
        g_clear_error(&job->error);
        job->state = JOB_DONE;
    } else {
        if (job->error == NULL || job->error_from_writer) {
            g_clear_error(&job->error);
            job->error = g_steal_pointer(&close_err);
        }
        job->state = JOB_ERROR;
    }
    g_clear_error(&close_err);
    job->finishing = false;
    job->end_time = (int64_t)time(NULL);
    g_autofree char *error = job->error ? g_strdup(job->error->message) : NULL;
    bool cancelled = g_error_matches(job->error, BACKUP_ERROR, BACKUP_ERROR_CANCELLED);
    /* out of JOB_ACTIVE: job_fail touches neither the spill nor the BlockCopys now */
    BackupSpill *spill = g_steal_pointer(&job->spill);
    g_mutex_unlock(&job->lock);

    vma_writer_free(w);
    backup_spill_free(spill);
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        g_clear_pointer(&d->filter, bnode_unref);
        g_mutex_lock(&job->lock);
        BlockCopy *bc = g_steal_pointer(&d->bc);
        g_mutex_unlock(&job->lock);
        block_copy_free(bc);
        g_clear_pointer(&d->bd, blockdev_unref);
    }

    emit_end_events(job, error, cancelled);
    return NULL;
}

/* ---- job construction ----------------------------------------------------------------- */

static void job_free(BackupJob *job)
{
    if (job == NULL) {
        return;
    }
    g_assert(job->controller == NULL && job->writer == NULL);
    release_bitmaps(job, false);
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        bnode_unref(d->filter);
        block_copy_free(d->bc);
        if (d->bd != NULL) {
            blockdev_unref(d->bd);
        }
        g_free(d->name);
    }
    g_free(job->disks);
    backup_spill_free(job->spill);
    backup_vmstate_free(job->vmstate);
    g_clear_error(&job->error);
    g_free(job->backup_file);
    g_mutex_clear(&job->lock);
    g_cond_clear(&job->cond);
    g_free(job);
}

/* The disks to back up, as new references: devlist or every writable disk. */
static GPtrArray *resolve_devices(const char *devlist, GError **errp)
{
    g_autoptr(GPtrArray) bds = g_ptr_array_new_with_free_func((GDestroyNotify)blockdev_unref);

    if (devlist == NULL) {
        g_autoptr(GPtrArray) all = blockdev_list();
        for (guint i = 0; i < all->len; i++) {
            BlockDev *bd = g_ptr_array_index(all, i);
            if (blockdev_is_read_only(bd)) {
                blockdev_unref(bd);
            } else {
                g_ptr_array_add(bds, bd);
            }
        }
    } else {
        g_auto(GStrv) names = g_strsplit_set(devlist, ",;:", -1);
        for (guint i = 0; names[i] != NULL; i++) {
            if (names[i][0] == '\0') {
                continue;
            }
            BlockDev *bd = blockdev_find(names[i], NULL);
            if (bd == NULL) {
                g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_DEVICE_NOT_FOUND,
                            "Device '%s' not found", names[i]);
                return NULL;
            }
            for (guint j = 0; j < bds->len; j++) {
                if (g_ptr_array_index(bds, j) == bd) {
                    blockdev_unref(bd);
                    g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                                "device '%s' is listed twice", names[i]);
                    return NULL;
                }
            }
            g_ptr_array_add(bds, bd);
        }
    }
    if (bds->len == 0) {
        g_set_error_literal(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "empty device list");
        return NULL;
    }
    if (bds->len > VMA_MAX_DEVICES) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "too many devices (%u, at most %u)", bds->len, VMA_MAX_DEVICES);
        return NULL;
    }
    return g_steal_pointer(&bds);
}

/* Store a config file in the archive under name (nothing when path is NULL). */
static bool add_config_file(VmaWriter *w, const char *path, const char *name, GError **errp)
{
    g_autofree char *data = NULL;
    size_t len = 0;

    if (path == NULL) {
        return true;
    }
    if (!backup_read_config_file(path, VMA_MAX_BLOB_SIZE, &data, &len, errp)) {
        return false;
    }
    return vma_writer_add_config(w, name, data, len, errp);
}

/*
 * At the instant (inside the gates that install the filters: no request is running on
 * any disk of the backup, every earlier write has marked the bitmaps): take each disk's
 * bitmap — the todo of a delta backup is its dirty clusters — and reset it for
 * on-success (its successor records every write from here on).
 */
static void at_instant(void *opaque)
{
    BackupJob *job = opaque;

    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        if (d->bitmap == NULL) {
            continue;
        }
        uint32_t gran = 0;
        const Bitmap *frozen = dirty_bitmap_freeze(d->bitmap, job->bitmap_reset, &gran);
        if (!job->delta) {
            continue;
        }
        g_autoptr(Bitmap) todo = dirty_bits_to_clusters(frozen, gran, d->size, CLUSTER);
        uint64_t left = block_copy_restrict(d->bc, todo);
        d->dirty_bytes = left * CLUSTER;
        if (left > 0 && d->size % CLUSTER != 0 && bitmap_test(todo, d->nclusters - 1)) {
            d->dirty_bytes -= CLUSTER - d->size % CLUSTER;
        }
        g_mutex_lock(&job->lock);
        job->remaining -= d->nclusters - left;
        g_mutex_unlock(&job->lock);
    }
}

/* The point in time: a copy-before-write filter on every disk at one instant. */
static bool disks_insert_filters(BackupJob *job, GError **errp)
{
    g_autofree BlockDev **bds = g_new(BlockDev *, job->ndisks);
    g_autofree BlockNode **filters = g_new(BlockNode *, job->ndisks);

    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        g_autoptr(BlockNode) top = blockdev_get_top(d->bd);
        d->bc = block_copy_new(top, &copy_ops, d);
        d->filter = cbw_filter_new(top, d->bc);
        bds[i] = d->bd;
        filters[i] = d->filter;
    }
    return blockdev_insert_filters_at(bds, job->ndisks, filters, at_instant, job, errp);
}

/*
 * Take the bitmap on every disk of bds (busy from now on) into bms[] and decide: a
 * delta backup when each disk's bitmap counts from the same base archive (*delta,
 * base), else a full one that becomes the base. A disk resized since the base is
 * refused. On failure the bitmaps taken are given back.
 */
static bool acquire_bitmaps(GPtrArray *bds, const char *name, DirtyBitmap **bms,
                            bool *delta, uint8_t base[16], GError **errp)
{
    bool all_based = true;

    for (guint i = 0; i < bds->len; i++) {
        BlockDev *bd = g_ptr_array_index(bds, i);
        bool has_base = false;
        uint8_t b[16];
        uint64_t base_size = 0;
        GError *err = NULL;
        bms[i] = dirty_bitmap_acquire(blockdev_get_dirty_bitmaps(bd), name, &has_base, b,
                                      &base_size, &err);
        if (bms[i] == NULL) {
            g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_BITMAP, "backup: %s: %s",
                        blockdev_get_name(bd), err->message);
            g_error_free(err);
            goto fail;
        }
        if (has_base && base_size != blockdev_get_size(bd)) {
            g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_BITMAP,
                        "backup: %s: the disk's size changed since the base backup of bitmap "
                        "'%s' (%" G_GUINT64_FORMAT " bytes then, %" G_GUINT64_FORMAT " now): "
                        "an incremental backup needs a new full one first (clear the bitmap)",
                        blockdev_get_name(bd), name, base_size, blockdev_get_size(bd));
            i++;
            goto fail;
        }
        if (!has_base || (i > 0 && memcmp(b, base, 16) != 0)) {
            all_based = false;
        }
        memcpy(base, b, 16);
        continue;
fail:
        for (guint j = 0; j < i; j++) {
            if (bms[j] != NULL) {
                dirty_bitmap_release(bms[j], false, NULL);
                bms[j] = NULL;
            }
        }
        return false;
    }
    *delta = all_based;
    return true;
}

char *backup_start(const BackupOptions *o, GError **errp)
{
    int out_fd = o->use_fd ? o->fd : -1;
    const char *target = o->backup_file;
    BackupJob *job = NULL;
    VmaWriter *w = NULL;
    g_autoptr(GPtrArray) bds = NULL;
    g_autofree DirtyBitmap **bms = NULL;     /* taken bitmaps until the job holds them */

    if (target == NULL || (!o->use_fd && target[0] == '\0')) {
        g_set_error_literal(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                            "backup: no backup file given");
        goto fail;
    }

    /* Join a finished predecessor; refuse while one runs. */
    g_mutex_lock(&state_lock);
    BackupJob *prev = cur;
    bool busy = false;
    if (prev != NULL) {
        g_mutex_lock(&prev->lock);
        busy = prev->state == JOB_ACTIVE;
        g_mutex_unlock(&prev->lock);
    }
    GThread *prev_thread = (prev != NULL && !busy) ? g_steal_pointer(&prev->controller) : NULL;
    g_mutex_unlock(&state_lock);
    if (busy) {
        g_set_error_literal(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                            "previous backup not finished");
        goto fail;
    }
    if (prev_thread != NULL) {
        g_thread_join(prev_thread);
    }

    bds = resolve_devices(o->devlist, errp);
    if (bds == NULL) {
        goto fail;
    }
    for (guint i = 0; i < bds->len; i++) {
        /* a node name that the archive cannot carry as a disk: refuse before any output */
        if (!vma_check_disk_name(blockdev_get_name(g_ptr_array_index(bds, i)), errp)) {
            g_prefix_error(errp, "backup: ");
            goto fail;
        }
    }

    bms = g_new0(DirtyBitmap *, bds->len);
    bool delta = false;
    uint8_t base[16] = {0};
    if (o->bitmap != NULL && !acquire_bitmaps(bds, o->bitmap, bms, &delta, base, errp)) {
        goto fail;
    }

    uint64_t mem_limit = o->mem_limit ? o->mem_limit : BACKUP_DEFAULT_MEM_LIMIT;
    VmaWriterOptions wopts = {
        .delta = delta,
        .queue_clusters = (size_t)CLAMP(mem_limit / 4 / CLUSTER, WRITER_QUEUE_MIN,
                                        WRITER_QUEUE_MAX),
    };
    if (o->use_fd) {
        w = vma_writer_new_fd(out_fd, target, &wopts, errp);
        out_fd = -1; /* the writer owns it now, even on failure */
    } else {
        w = vma_writer_new(target, &wopts, errp);
    }
    if (w == NULL) {
        goto fail;
    }
    if (!add_config_file(w, o->config_file, CONFIG_NAME, errp) ||
        !add_config_file(w, o->firewall_file, FIREWALL_NAME, errp)) {
        goto fail;
    }

    job = g_new0(BackupJob, 1);
    g_mutex_init(&job->lock);
    g_cond_init(&job->cond);
    job->state = JOB_ACTIVE;
    job->backup_file = g_strdup(target);
    job->speed = o->speed > 0 ? o->speed : 0;
    ratelimit_init(&job->rate, (uint64_t)job->speed);
    job->nworkers = o->max_workers <= 0 ? BACKUP_DEFAULT_MAX_WORKERS
                                        : (unsigned)MIN(o->max_workers, BACKUP_MAX_WORKERS);
    job->mem_limit = mem_limit;
    job->spill_limit = o->fleecing_limit;
    job->ndisks = bds->len;
    job->disks = g_new0(BackupDisk, bds->len);
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        d->job = job;
        d->bd = blockdev_ref(g_ptr_array_index(bds, i));
        d->name = g_strdup(blockdev_get_name(d->bd));
        d->size = blockdev_get_size(d->bd);
        d->nclusters = (d->size + CLUSTER - 1) / CLUSTER;
        d->job_status = "created";
        d->dirty_bytes = d->size;
        d->bitmap = g_steal_pointer(&bms[i]);  /* the job gives it back from now on */
        int id = vma_writer_register_device(w, d->name, d->size, errp);
        if (id < 0) {
            goto fail;
        }
        d->dev_id = (uint8_t)id;
        job->total += d->size;
        job->remaining += d->nclusters;
    }

    if (o->bitmap != NULL) {
        job->delta = delta;
        /* the first backup from a bitmap (a full one) always makes it count from here */
        job->bitmap_reset = !o->differential || !delta;
        if (delta) {
            VmaChainInfo ci = {
                .kind = o->differential ? VMA_CHAIN_DIFFERENTIAL : VMA_CHAIN_INCREMENTAL,
                .bitmap = (char *)o->bitmap,
            };
            memcpy(ci.base_uuid, base, 16);
            size_t len = 0;
            g_autofree char *text = vma_chain_info_format(&ci, &len);
            if (!vma_writer_add_config(w, VMA_CHAIN_CONFIG_NAME, text, len, errp)) {
                goto fail;
            }
        }
    }

    if (o->fleecing_dir != NULL || o->fleecing) {
        job->spill = backup_spill_new(o->fleecing_dir ? o->fleecing_dir : g_get_tmp_dir(),
                                      o->fleecing_limit, &spill_ops, job, errp);
        if (job->spill == NULL) {
            goto fail;
        }
    }

    if (o->vm_monitor != NULL) {
        /* The controller adds the vmstate device, starts the writer and takes the
         * instant at the end of the VM's migration. */
        job->vmstate = backup_vmstate_new(o->vm_monitor, errp);
        if (job->vmstate == NULL) {
            goto fail;
        }
    } else if (!vma_writer_start(w, errp)) {
        /* The header is final from here on; an exec: command gets it right away. */
        goto fail;
    }
    vma_writer_get_uuid_str(w, job->uuid);
    vma_writer_get_uuid(w, job->uuid_raw);
    job->writer = w;
    job->start_time = (int64_t)time(NULL);

    if (job->vmstate == NULL) {
        if (!disks_insert_filters(job, errp)) {
            job->writer = NULL;
            goto fail;
        }
        job->filters_in = true;
    }

    /* Announce the jobs before the controller can end them. */
    set_job_status(job, "created");
    set_job_status(job, "running");

    GError *err = NULL;
    job->controller = g_thread_try_new("backup", controller_main, job, &err);
    if (job->controller == NULL) {
        if (job->filters_in) {
            disks_remove_filters(job);
        }
        job->writer = NULL;
        set_job_status(job, "aborting");
        set_job_status(job, "concluded");
        set_job_status(job, "null");
        g_propagate_prefixed_error(errp, err, "start backup thread: ");
        goto fail;
    }

    g_mutex_lock(&state_lock);
    BackupJob *old = cur;
    cur = job;
    g_mutex_unlock(&state_lock);
    job_free(old);
    return g_strdup(job->uuid);

fail:
    for (guint i = 0; bms != NULL && bds != NULL && i < bds->len; i++) {
        if (bms[i] != NULL) {
            dirty_bitmap_release(bms[i], false, NULL);
        }
    }
    close_fd(&out_fd);
    /* frees a partial output file the writer created; waits for an exec: command */
    vma_writer_free(w);
    job_free(job);
    return NULL;
}

/* ---- control and status --------------------------------------------------------------- */

void backup_cancel(void)
{
    g_mutex_lock(&state_lock);
    BackupJob *job = cur;
    if (job != NULL) {
        job_fail(job, g_error_new_literal(BACKUP_ERROR, BACKUP_ERROR_CANCELLED, "backup canceled"),
                 false);
    }
    g_mutex_unlock(&state_lock);
}

void backup_wait(void)
{
    g_mutex_lock(&state_lock);
    GThread *t = cur != NULL ? g_steal_pointer(&cur->controller) : NULL;
    g_mutex_unlock(&state_lock);
    if (t != NULL) {
        g_thread_join(t);
    }
}

static void disk_progress_locked(BackupJob *job, BackupDisk *d, uint64_t *transferred,
                                 uint64_t *zero_bytes)
{
    VmaDeviceStatus st;

    if (job->writer != NULL && vma_writer_get_device_status(job->writer, d->dev_id, &st)) {
        *transferred = st.transferred;
        *zero_bytes = st.zero_bytes;
    } else {
        *transferred = d->transferred;
        *zero_bytes = d->zero_bytes;
    }
}

void backup_query(BackupStatus *st)
{
    memset(st, 0, sizeof(*st));
    g_mutex_lock(&state_lock);
    BackupJob *job = cur;
    if (job == NULL) {
        g_mutex_unlock(&state_lock);
        return;
    }
    g_mutex_lock(&job->lock);
    switch (job->state) {
    case JOB_ACTIVE:
        st->status = g_strdup("active");
        break;
    case JOB_DONE:
        st->status = g_strdup("done");
        break;
    case JOB_ERROR:
        st->status = g_strdup("error");
        st->errmsg = g_strdup(job->error ? job->error->message : "unknown error");
        break;
    }
    st->total = job->total;
    st->dirty = 0;
    for (unsigned i = 0; i < job->ndisks; i++) {
        st->dirty += job->disks[i].dirty_bytes;
    }
    for (unsigned i = 0; i < job->ndisks; i++) {
        uint64_t t = 0, z = 0;
        disk_progress_locked(job, &job->disks[i], &t, &z);
        st->transferred += t;
        st->zero_bytes += z;
    }
    st->reused = job->total - st->dirty;
    st->start_time = job->start_time;
    st->end_time = job->state == JOB_ACTIVE ? 0 : job->end_time;
    st->backup_file = g_strdup(job->backup_file);
    st->uuid = g_strdup(job->uuid);
    st->finishing = job->state == JOB_ACTIVE && job->finishing;
    st->cbw_bytes = job->cbw_bytes;
    st->spilled_bytes = job->spilled_bytes;
    if (job->vmstate != NULL) {
        st->vmstate_method = g_strdup(backup_vmstate_method(job->vmstate));
        backup_vmstate_progress(job->vmstate, &st->vmstate_bytes, &st->vmstate_downtime_ms);
    }
    g_mutex_unlock(&job->lock);
    g_mutex_unlock(&state_lock);
}

void backup_status_clear(BackupStatus *st)
{
    g_clear_pointer(&st->status, g_free);
    g_clear_pointer(&st->errmsg, g_free);
    g_clear_pointer(&st->backup_file, g_free);
    g_clear_pointer(&st->uuid, g_free);
    g_clear_pointer(&st->vmstate_method, g_free);
}

void backup_job_info_free(BackupJobInfo *info)
{
    job_info_free(info);
}

GPtrArray *backup_query_jobs(void)
{
    GPtrArray *list = g_ptr_array_new_with_free_func((GDestroyNotify)backup_job_info_free);

    g_mutex_lock(&state_lock);
    BackupJob *job = cur;
    if (job != NULL) {
        g_mutex_lock(&job->lock);
        for (unsigned i = 0; i < job->ndisks; i++) {
            BackupDisk *d = &job->disks[i];
            if (strcmp(d->job_status, "null") == 0) {
                continue; /* dismissed */
            }
            BackupJobInfo *info = g_new0(BackupJobInfo, 1);
            uint64_t z = 0;
            info->id = g_strdup(d->name);
            info->type = "backup";
            info->status = d->job_status;
            disk_progress_locked(job, d, &info->current_progress, &z);
            info->total_progress = d->dirty_bytes;
            if (job->error != NULL && job->state != JOB_DONE) {
                info->error = g_strdup(job->error->message);
            }
            g_ptr_array_add(list, info);
        }
        g_mutex_unlock(&job->lock);
    }
    g_mutex_unlock(&state_lock);
    return list;
}

void backup_set_event_handler(BackupEventFn fn, void *opaque)
{
    job_set_event_handler(fn, opaque);
}
