/*
 * backup.c — the live backup job: a point-in-time copy of a set of disks into one VMA
 * archive while the guest keeps writing.
 *
 * Design note
 * -----------
 * The instant. backup_start() opens the archive writer, registers the disks, and then
 * installs one before-write hook on all disks with blockdev_hooks_install(), which
 * lets no write through on any of them while it installs: that instant T is the point
 * in time of the backup. Every write (write, write-zeroes, discard) that starts after T
 * runs the hook first; every write before T has finished.
 *
 * Per disk, two bitmaps of one bit per 64 KiB cluster (disk->lock):
 *   todo  — the cluster still holds its data of T and nobody has claimed it;
 *   busy  — somebody claimed it and is reading its old data right now.
 * A cluster goes todo -> busy -> (neither) exactly once; whoever flips todo->busy (a
 * hook or a copy worker) owns it: reads it, clears busy, and hands the data to the
 * writer. So every cluster is copied exactly once, and while todo is set nobody has
 * written to it since T.
 *
 * The hook, for each cluster of the range: claims it (then reads it) if todo is set;
 * waits while busy is set (another thread is reading it, which takes one local read);
 * does nothing once the cluster is copied. Only then does the guest's write go on.
 * Busy is cleared right after the READ, before the data is handed to the writer, so a
 * guest write never waits for the archive: whatever the output does, a hook takes at
 * most one local read (and, under memory pressure, one local write).
 *
 * Copy-before-write data is bounded: a hook's non-zero cluster goes into the writer's
 * priority lane (which never blocks) only while the bytes queued in the writer plus
 * those being handed over by hooks stay within mem_limit; otherwise it is written to a
 * fleecing file (O_TMPFILE or unlinked at once: nothing survives a crash) in a free
 * slot and queued for the spill-drain thread, which reads it back and hands it to the
 * writer's normal lane (bounded: it blocks while the lane is full). All-zero clusters
 * cost nothing (NULL buffer). Without a fleecing file, or when it is full (the limit
 * or ENOSPC), the backup fails with "copy-before-write buffer exhausted" and the guest
 * goes on. What the limit does not see: vma_writer_get_queued_bytes() counts the queue,
 * not the extent the writer thread is writing (at most 58 clusters, 3.7 MiB), and the
 * normal lane is bounded separately (a quarter of mem_limit, 2..64 clusters), so the
 * memory holding old data is at most mem_limit + 3.7 MiB + the normal lane + one
 * cluster per hook and per worker in flight.
 *
 * Background copy: max_workers threads (default 2: the copy is local reads feeding one
 * writer thread, whose output is the bottleneck; two keep a read going while the other
 * hands over, more only add contention) take 1 MiB chunks (16 clusters) in disk order
 * from a shared cursor, skip chunks already copied, find holes with block status
 * (a cluster that lies wholly in holes is a zero cluster: no read), wait for the rate
 * limiter (speed, background only, before claiming anything), then claim, read and
 * release the chunk's todo clusters one at a time (a hook needing a later cluster of the
 * chunk copies it itself, so a guest write waits for one read at most), and then hand
 * them to the writer's normal lane, blocking while it is full. A worker never waits for anything while it holds a claim,
 * and neither does a hook (it claims one cluster at a time), so nobody can deadlock.
 *
 * Completion: `remaining` counts clusters not yet handed to the writer. The controller
 * thread waits until it is 0 or the job failed, stops and joins the workers and the
 * drain thread, removes the hooks (which waits for running hook calls), closes the
 * writer (drain, flush, wait for an exec: command; "finishing" meanwhile), and records
 * the result. Only then are the writer, the fleecing file and the disk references
 * released.
 *
 * Failure: the first error (source read, fleecing, writer I/O or command, cancel) is
 * latched in job->error; the writer is cancelled with it (waking producers blocked on
 * its queue), `failed` is set, and every condition is broadcast, so hooks stop waiting
 * and stop copying: guest writes go through untouched. A failed close removes the
 * output file the writer created (never a FIFO or a passed descriptor). When the writer
 * itself failed, its close error (e.g. a command's exit status rather than the broken
 * pipe it caused) is reported.
 *
 * Locks (never nested, except job->lock -> the writer's internal lock; none is held
 * across our own I/O):
 *   state_lock  — the global `cur` job pointer and the event handler;
 *   job->lock   — the job's mutable state (see BackupJob);
 *   disk->lock  — a disk's todo/busy bitmaps.
 * `failed` is an atomic flag set after job->error, so hot paths test it without a lock;
 * waiters re-check it under the lock they wait with, and the failer broadcasts under
 * each of those locks, so no wakeup is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "blockdev.h"
#include "vma.h"

#define CLUSTER VMA_CLUSTER_SIZE
#define CHUNK_CLUSTERS 16u                 /* background copy unit: 1 MiB */
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

typedef struct BackupDisk {
    /* Immutable while the job runs. */
    BlockDev *bd;             /* a reference, dropped when the job ends */
    char *name;
    uint8_t dev_id;
    uint64_t size;
    uint64_t nclusters;

    GMutex lock;              /* protects todo, busy */
    GCond cond;               /* a busy bit was cleared, or the job failed */
    uint64_t *todo;           /* bit set: unclaimed, still holds its data of T */
    uint64_t *busy;           /* bit set: claimed, its old data is being read */

    /* BackupJob.lock: */
    const char *job_status;   /* QEMU JobStatus word */
    uint64_t transferred;     /* final progress, taken before the writer is freed */
    uint64_t zero_bytes;
} BackupDisk;

typedef struct SpillEntry {
    unsigned disk;
    uint32_t cluster;
    uint64_t slot;            /* its place in the fleecing file, in clusters */
} SpillEntry;

typedef struct BackupJob {
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
    int spill_fd;             /* -1: no fleecing file; closed by the controller */
    char *spill_dir;
    uint64_t spill_limit;     /* 0: unlimited */

    gint failed;              /* atomic; set once job->error is latched */

    /*
     * lock protects everything below. Lock order: lock -> the writer's own lock
     * (vma_writer_* calls); never together with a disk->lock.
     */
    GMutex lock;
    GCond cond;               /* remaining, stop, rate limiter, failure */
    GCond spill_cond;         /* spill queue, stop, failure: the drain thread's only */
    VmaWriter *writer;        /* NULL once closed and freed by the controller */
    GError *error;            /* the first error */
    bool error_from_writer;   /* it came from the writer: prefer its close error */
    JobState state;
    bool finishing;
    int64_t end_time;
    uint64_t remaining;       /* clusters not yet handed to the writer */
    unsigned cursor_disk;     /* background copy cursor */
    uint64_t cursor_cluster;
    bool stop;                /* workers and the drain thread: finish */
    uint64_t reserved;        /* hook buffers on their way into the priority lane */
    GQueue spill_queue;       /* SpillEntry*, oldest first */
    GArray *spill_free;       /* uint64_t slots free for reuse */
    uint64_t spill_slots;     /* slots ever used (file size / 64 KiB) */
    uint64_t spill_used;      /* bytes in the fleecing file now */
    uint64_t cbw_bytes;
    uint64_t spilled_bytes;
    int64_t rate_next;        /* monotonic µs when the next background read may start */

    /* Controller thread only (joined by the main loop). */
    GThread **workers;
    GThread *drain;
    GThread *controller;      /* state_lock: joined and cleared by backup_wait/start */
} BackupJob;

static GMutex state_lock;     /* protects cur, event_fn, event_opaque */
static BackupJob *cur;        /* the current or last backup */
static BackupEventFn event_fn;
static void *event_opaque;
static BackupReadFn read_fn;  /* tests: replaces blockdev_pread */

/* ---- small helpers ------------------------------------------------------------------ */

static inline bool bit_test(const uint64_t *bm, uint64_t i)
{
    return (bm[i / 64] >> (i % 64)) & 1;
}

static inline void bit_set(uint64_t *bm, uint64_t i)
{
    bm[i / 64] |= UINT64_C(1) << (i % 64);
}

static inline void bit_clear(uint64_t *bm, uint64_t i)
{
    bm[i / 64] &= ~(UINT64_C(1) << (i % 64));
}

static bool job_failed(BackupJob *job)
{
    return g_atomic_int_get(&job->failed) != 0;
}

static int read_disk(BlockDev *bd, void *buf, uint64_t len, uint64_t offset)
{
    BackupReadFn fn = read_fn;
    return fn ? fn(bd, buf, len, offset) : blockdev_pread(bd, buf, len, offset);
}

/* Read cluster c of d into buf (64 KiB), zero-padded past the end of the disk. */
static int read_cluster(BackupDisk *d, uint64_t c, void *buf)
{
    uint64_t off = c * CLUSTER;
    uint64_t n = MIN((uint64_t)CLUSTER, d->size - off);
    int r = read_disk(d->bd, buf, n, off);

    if (n < CLUSTER) {
        memset((uint8_t *)buf + n, 0, CLUSTER - n);
    }
    return r;
}

static int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t r = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            return -EIO;
        }
        done += (size_t)r;
    }
    return 0;
}

static int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            return -EIO; /* our own file cannot be shorter than what we wrote */
        }
        done += (size_t)r;
    }
    return 0;
}

/* ---- failure ------------------------------------------------------------------------ */

/*
 * Latch err (taken over) as the job's error unless one is latched, cancel the writer
 * and wake every waiter. Any thread.
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
        job->error = err;
        job->error_from_writer = from_writer;
        err = NULL;
    }
    if (job->writer != NULL) {
        vma_writer_cancel(job->writer, job->error->message);
    }
    g_atomic_int_set(&job->failed, 1);
    g_cond_broadcast(&job->cond);
    g_cond_broadcast(&job->spill_cond);
    g_mutex_unlock(&job->lock);
    if (err != NULL) {
        g_error_free(err);
    }

    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        g_mutex_lock(&d->lock);
        g_cond_broadcast(&d->cond);
        g_mutex_unlock(&d->lock);
    }
}

static void job_fail_read(BackupJob *job, BackupDisk *d, uint64_t c, int r)
{
    job_fail(job,
             g_error_new(BACKUP_ERROR, BACKUP_ERROR_FAILED,
                         "read %s at offset %" G_GUINT64_FORMAT ": %s", d->name,
                         c * CLUSTER, g_strerror(-r)),
             false);
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

/* ---- claiming clusters -------------------------------------------------------------- */

/* Claim cluster c for the caller, or wait while another thread copies it. True when the
 * caller owns it now; false when it is copied (or the job failed). */
static bool claim_or_wait(BackupJob *job, BackupDisk *d, uint64_t c)
{
    bool mine = false;

    g_mutex_lock(&d->lock);
    for (;;) {
        if (job_failed(job)) {
            break;
        }
        if (bit_test(d->todo, c)) {
            bit_clear(d->todo, c);
            bit_set(d->busy, c);
            mine = true;
            break;
        }
        if (!bit_test(d->busy, c)) {
            break;
        }
        g_cond_wait(&d->cond, &d->lock);
    }
    g_mutex_unlock(&d->lock);
    return mine;
}

static void release_clusters(BackupDisk *d, uint64_t first, const bool *claimed, unsigned n)
{
    g_mutex_lock(&d->lock);
    for (unsigned i = 0; i < n; i++) {
        if (claimed[i]) {
            bit_clear(d->busy, first + i);
        }
    }
    g_cond_broadcast(&d->cond);
    g_mutex_unlock(&d->lock);
}

/* ---- copy-before-write ---------------------------------------------------------------- */

static uint64_t spill_slot_alloc_locked(BackupJob *job)
{
    if (job->spill_free->len > 0) {
        uint64_t slot = g_array_index(job->spill_free, uint64_t, job->spill_free->len - 1);
        g_array_set_size(job->spill_free, job->spill_free->len - 1);
        return slot;
    }
    return job->spill_slots++;
}

static void spill_slot_free(BackupJob *job, uint64_t slot)
{
    g_mutex_lock(&job->lock);
    g_array_append_val(job->spill_free, slot);
    job->spill_used -= CLUSTER;
    g_mutex_unlock(&job->lock);
}

static void fail_exhausted(BackupJob *job, const char *why)
{
    job_fail(job,
             g_error_new(BACKUP_ERROR, BACKUP_ERROR_FAILED,
                         "copy-before-write buffer exhausted (%s)", why),
             false);
}

/* Save the old data (buf, owned, non-zero) of cluster c: memory or fleecing file. */
static void cbw_save(BackupJob *job, BackupDisk *d, uint64_t c, void *buf)
{
    enum { TO_MEMORY, TO_SPILL, NO_ROOM, SPILL_FULL } where;
    uint64_t slot = 0;

    g_mutex_lock(&job->lock);
    uint64_t queued = vma_writer_get_queued_bytes(job->writer);
    if (queued + job->reserved + CLUSTER <= job->mem_limit) {
        job->reserved += CLUSTER;
        where = TO_MEMORY;
    } else if (job->spill_fd < 0) {
        where = NO_ROOM;
    } else if (job->spill_limit != 0 && job->spill_used + CLUSTER > job->spill_limit) {
        where = SPILL_FULL;
    } else {
        slot = spill_slot_alloc_locked(job);
        job->spill_used += CLUSTER;
        where = TO_SPILL;
    }
    g_mutex_unlock(&job->lock);

    switch (where) {
    case TO_MEMORY: {
        bool ok = hand_over(job, d, c, buf, VMA_WRITE_PRIORITY);
        g_mutex_lock(&job->lock);
        job->reserved -= CLUSTER;
        if (ok) {
            job->cbw_bytes += CLUSTER;
        }
        g_mutex_unlock(&job->lock);
        return;
    }
    case NO_ROOM: {
        vma_cluster_free(buf);
        g_autofree char *why = g_strdup_printf("%" G_GUINT64_FORMAT " bytes of memory in "
                                               "use and no fleecing directory",
                                               job->mem_limit);
        fail_exhausted(job, why);
        return;
    }
    case SPILL_FULL: {
        vma_cluster_free(buf);
        g_autofree char *why = g_strdup_printf("%" G_GUINT64_FORMAT " bytes of memory and %"
                                               G_GUINT64_FORMAT " bytes of fleecing file in "
                                               "use", job->mem_limit, job->spill_limit);
        fail_exhausted(job, why);
        return;
    }
    case TO_SPILL:
        break;
    }

    int r = full_pwrite(job->spill_fd, buf, CLUSTER, slot * CLUSTER);
    vma_cluster_free(buf);
    if (r < 0) {
        spill_slot_free(job, slot);
        if (r == -ENOSPC || r == -EDQUOT || r == -EFBIG) {
            g_autofree char *why = g_strdup_printf("write fleecing file in %s: %s",
                                                   job->spill_dir, g_strerror(-r));
            fail_exhausted(job, why);
        } else {
            job_fail(job,
                     g_error_new(BACKUP_ERROR, BACKUP_ERROR_FAILED,
                                 "write fleecing file in %s: %s", job->spill_dir,
                                 g_strerror(-r)),
                     false);
        }
        return;
    }
    SpillEntry *e = g_new(SpillEntry, 1);
    e->disk = (unsigned)(d - job->disks);
    e->cluster = (uint32_t)c;
    e->slot = slot;
    g_mutex_lock(&job->lock);
    g_queue_push_tail(&job->spill_queue, e);
    job->cbw_bytes += CLUSTER;
    job->spilled_bytes += CLUSTER;
    /* only the drain thread waits for this: waking the controller and rate-limited
     * workers on every spill cost guest writes their CPU (bench/README.md) */
    g_cond_signal(&job->spill_cond);
    g_mutex_unlock(&job->lock);
}

/* Copy cluster c of d, which the caller has claimed, from a hook. */
static void cbw_copy(BackupJob *job, BackupDisk *d, uint64_t c)
{
    void *buf = vma_cluster_alloc();
    int r = read_cluster(d, c, buf);
    bool one = true;

    release_clusters(d, c, &one, 1);
    if (r < 0) {
        vma_cluster_free(buf);
        job_fail_read(job, d, c, r);
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

/* The before-write hook: runs on the writing thread before [offset, offset+len) of bd is
 * written. Returns 0 (the write goes on whatever happened to the backup). */
static int backup_hook(void *opaque, BlockDev *bd, uint64_t offset, uint64_t len)
{
    BackupJob *job = opaque;
    BackupDisk *d = NULL;

    for (unsigned i = 0; i < job->ndisks; i++) {
        if (job->disks[i].bd == bd) {
            d = &job->disks[i];
            break;
        }
    }
    if (d == NULL || len == 0 || offset >= d->size) {
        return 0;
    }
    uint64_t first = offset / CLUSTER;
    uint64_t last = MIN((offset + len - 1) / CLUSTER, d->nclusters - 1);
    for (uint64_t c = first; c <= last && !job_failed(job); c++) {
        if (claim_or_wait(job, d, c)) {
            cbw_copy(job, d, c);
        }
    }
    return 0;
}

/* ---- background copy ------------------------------------------------------------------ */

/* Sleep until the limiter lets `bytes` more be read; false if the job failed. */
static bool rate_wait(BackupJob *job, uint64_t bytes)
{
    if (job->speed <= 0 || bytes == 0) {
        return !job_failed(job);
    }
    g_mutex_lock(&job->lock);
    int64_t now = g_get_monotonic_time();
    if (job->rate_next < now) {
        job->rate_next = now;
    }
    int64_t until = job->rate_next;
    job->rate_next += (int64_t)(bytes * G_USEC_PER_SEC / (uint64_t)job->speed);
    while (!job_failed(job) && g_get_monotonic_time() < until) {
        g_cond_wait_until(&job->cond, &job->lock, until);
    }
    g_mutex_unlock(&job->lock);
    return !job_failed(job);
}

static bool next_chunk(BackupJob *job, unsigned *disk, uint64_t *first, unsigned *n)
{
    bool ok = false;

    g_mutex_lock(&job->lock);
    while (!job->stop && !job_failed(job) && job->cursor_disk < job->ndisks) {
        BackupDisk *d = &job->disks[job->cursor_disk];
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

/* Mark in data[] the clusters of [first, first+n) that hold any allocated data. */
static void find_data(BackupDisk *d, uint64_t first, unsigned n, bool *data)
{
    uint64_t start = first * CLUSTER;
    uint64_t end = MIN((first + n) * CLUSTER, d->size);
    uint64_t pos = start;

    memset(data, 0, n * sizeof(bool));
    while (pos < end) {
        uint64_t pnum = 0;
        bool hole = false;
        if (blockdev_block_status(d->bd, pos, end - pos, &pnum, &hole) < 0 || pnum == 0) {
            /* unknown: read the rest */
            hole = false;
            pnum = end - pos;
        }
        if (!hole) {
            for (uint64_t c = pos / CLUSTER; c <= (pos + pnum - 1) / CLUSTER; c++) {
                data[c - first] = true;
            }
        }
        pos += pnum;
    }
}

static void copy_chunk(BackupJob *job, BackupDisk *d, uint64_t first, unsigned n)
{
    bool claimed[CHUNK_CLUSTERS] = { false };
    bool data[CHUNK_CLUSTERS];
    void *bufs[CHUNK_CLUSTERS] = { NULL };
    bool any = false;

    /* Nothing to do when hooks copied the whole chunk already. */
    g_mutex_lock(&d->lock);
    for (unsigned i = 0; i < n && !any; i++) {
        any = bit_test(d->todo, first + i);
    }
    g_mutex_unlock(&d->lock);
    if (!any) {
        return;
    }

    find_data(d, first, n, data);
    uint64_t to_read = 0;
    for (unsigned i = 0; i < n; i++) {
        if (data[i]) {
            to_read += MIN((uint64_t)CLUSTER, d->size - (first + i) * CLUSTER);
        }
    }
    /* Wait for the limiter before claiming: a hook must never wait for our sleep. */
    if (!rate_wait(job, to_read)) {
        return;
    }

    /* Claim each cluster only just before reading it and release it right after: a hook
     * that needs a later cluster of the chunk claims and copies that one itself instead
     * of waiting behind our reads, so a guest write waits for one read at most. */
    int r = 0;
    unsigned i = 0;
    for (; i < n; i++) {
        g_mutex_lock(&d->lock);
        if (bit_test(d->todo, first + i)) {
            bit_clear(d->todo, first + i);
            bit_set(d->busy, first + i);
            claimed[i] = true;
        }
        g_mutex_unlock(&d->lock);
        if (!claimed[i]) {
            continue;
        }
        if (data[i]) {
            bufs[i] = vma_cluster_alloc();
            r = read_cluster(d, first + i, bufs[i]);
        }
        release_clusters(d, first + i, &claimed[i], 1);
        if (r < 0) {
            break;
        }
    }
    if (r < 0) {
        for (unsigned j = 0; j < n; j++) {
            vma_cluster_free(bufs[j]);
        }
        job_fail_read(job, d, first + i, r);
        return;
    }

    for (i = 0; i < n; i++) {
        if (claimed[i]) {
            void *buf = g_steal_pointer(&bufs[i]);
            if (!hand_over(job, d, first + i, buf, 0)) {
                break;
            }
        }
    }
    for (; i < n; i++) {
        vma_cluster_free(bufs[i]);
    }
}

static gpointer worker_main(gpointer opaque)
{
    BackupJob *job = opaque;
    unsigned disk;
    uint64_t first;
    unsigned n;

    while (next_chunk(job, &disk, &first, &n)) {
        copy_chunk(job, &job->disks[disk], first, n);
    }
    return NULL;
}

/* ---- spill drain ---------------------------------------------------------------------- */

static gpointer drain_main(gpointer opaque)
{
    BackupJob *job = opaque;

    for (;;) {
        g_mutex_lock(&job->lock);
        while (!job_failed(job) && !job->stop && g_queue_is_empty(&job->spill_queue)) {
            g_cond_wait(&job->spill_cond, &job->lock);
        }
        SpillEntry *e = job_failed(job) ? NULL : g_queue_pop_head(&job->spill_queue);
        g_mutex_unlock(&job->lock);
        if (e == NULL) {
            break;
        }

        BackupDisk *d = &job->disks[e->disk];
        void *buf = vma_cluster_alloc();
        int r = full_pread(job->spill_fd, buf, CLUSTER, e->slot * CLUSTER);
        spill_slot_free(job, e->slot);
        if (r < 0) {
            vma_cluster_free(buf);
            job_fail(job,
                     g_error_new(BACKUP_ERROR, BACKUP_ERROR_FAILED,
                                 "read fleecing file in %s: %s", job->spill_dir,
                                 g_strerror(-r)),
                     false);
            g_free(e);
            break;
        }
        bool ok = hand_over(job, d, e->cluster, buf, 0);
        g_free(e);
        if (!ok) {
            break;
        }
    }
    return NULL;
}

/* ---- events --------------------------------------------------------------------------- */

static void emit(const BackupEvent *ev)
{
    g_mutex_lock(&state_lock);
    BackupEventFn fn = event_fn;
    void *opaque = event_opaque;
    g_mutex_unlock(&state_lock);
    if (fn != NULL) {
        fn(ev, opaque);
    }
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

static gpointer controller_main(gpointer opaque)
{
    BackupJob *job = opaque;
    unsigned started = 0;

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
    if (job->spill_fd >= 0) {
        GError *err = NULL;
        job->drain = g_thread_try_new("backup-drain", drain_main, job, &err);
        if (job->drain == NULL) {
            g_prefix_error(&err, "start backup drain thread: ");
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
    g_cond_broadcast(&job->spill_cond);
    g_mutex_unlock(&job->lock);

    for (unsigned i = 0; i < started; i++) {
        g_thread_join(job->workers[i]);
    }
    g_clear_pointer(&job->workers, g_free);
    if (job->drain != NULL) {
        g_thread_join(job->drain);
        job->drain = NULL;
    }

    /* After this no hook runs: nothing but us touches the writer any more (but
     * backup_cancel, under job->lock). */
    g_autofree BlockDev **bds = g_new(BlockDev *, job->ndisks);
    for (unsigned i = 0; i < job->ndisks; i++) {
        bds[i] = job->disks[i].bd;
    }
    blockdev_hooks_remove(bds, job->ndisks);

    g_mutex_lock(&job->lock);
    job->finishing = true;
    g_mutex_unlock(&job->lock);

    GError *close_err = NULL;
    bool ok = vma_writer_close(job->writer, &close_err);

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
    g_mutex_unlock(&job->lock);

    vma_writer_free(w);
    if (job->spill_fd >= 0) {
        close(job->spill_fd);
        job->spill_fd = -1;
    }
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        g_clear_pointer(&d->bd, blockdev_unref);
        g_clear_pointer(&d->todo, g_free);
        g_clear_pointer(&d->busy, g_free);
    }

    bool cancelled = error != NULL && strcmp(error, "backup canceled") == 0;
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
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        if (d->bd != NULL) {
            blockdev_unref(d->bd);
        }
        g_free(d->todo);
        g_free(d->busy);
        g_free(d->name);
        g_mutex_clear(&d->lock);
        g_cond_clear(&d->cond);
    }
    g_free(job->disks);
    if (job->spill_fd >= 0) {
        close(job->spill_fd);
    }
    g_queue_clear_full(&job->spill_queue, g_free);
    g_array_unref(job->spill_free);
    g_clear_error(&job->error);
    g_free(job->backup_file);
    g_free(job->spill_dir);
    g_mutex_clear(&job->lock);
    g_cond_clear(&job->cond);
    g_cond_clear(&job->spill_cond);
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

/* Read a config file for the archive: a regular file of at most VMA_MAX_BLOB_SIZE
 * bytes. Never more: this runs on the main loop, and a path such as /dev/zero or a
 * FIFO must not make it read forever (or block: the open is non-blocking). */
static bool add_config_file(VmaWriter *w, const char *path, const char *name, GError **errp)
{
    g_autofree char *data = NULL;
    size_t len = 0;
    struct stat st;

    if (path == NULL) {
        return true;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "unable to read file '%s'",
                    path);
        return false;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        /* the deployed message, which management tools may match */
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "unable to read file '%s'",
                    path);
        close(fd);
        return false;
    }
    data = g_malloc(VMA_MAX_BLOB_SIZE + 1);
    while (len <= VMA_MAX_BLOB_SIZE) {
        ssize_t n = read(fd, data + len, VMA_MAX_BLOB_SIZE + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                        "unable to read file '%s': %s", path, g_strerror(errno));
            close(fd);
            return false;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    if (len > VMA_MAX_BLOB_SIZE) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "config file '%s' is too large (more than %u bytes)", path,
                    VMA_MAX_BLOB_SIZE);
        return false;
    }
    return vma_writer_add_config(w, name, data, len, errp);
}

/* A fleecing file in dir that disappears when closed; -1 with errp set. */
static int open_spill_file(const char *dir, GError **errp)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        /* no O_TMPFILE here: create and unlink at once */
        g_autofree char *tmpl = g_build_filename(dir, ".vmad-fleecing-XXXXXX", NULL);
        fd = g_mkstemp_full(tmpl, O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0) {
            unlink(tmpl);
        }
    }
    if (fd < 0) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "create fleecing file in %s: %s",
                    dir, g_strerror(errno));
    }
    return fd;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

char *backup_start(const BackupOptions *o, GError **errp)
{
    int out_fd = o->use_fd ? o->fd : -1;
    const char *target = o->backup_file;
    BackupJob *job = NULL;
    VmaWriter *w = NULL;
    g_autoptr(GPtrArray) bds = NULL;

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

    uint64_t mem_limit = o->mem_limit ? o->mem_limit : BACKUP_DEFAULT_MEM_LIMIT;
    VmaWriterOptions wopts = {
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
    g_cond_init(&job->spill_cond);
    g_queue_init(&job->spill_queue);
    job->spill_free = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    job->spill_fd = -1;
    job->state = JOB_ACTIVE;
    job->backup_file = g_strdup(target);
    job->speed = o->speed > 0 ? o->speed : 0;
    job->nworkers = o->max_workers <= 0 ? BACKUP_DEFAULT_MAX_WORKERS
                                        : (unsigned)MIN(o->max_workers, BACKUP_MAX_WORKERS);
    job->mem_limit = mem_limit;
    job->spill_limit = o->fleecing_limit;
    job->ndisks = bds->len;
    job->disks = g_new0(BackupDisk, bds->len);
    for (unsigned i = 0; i < job->ndisks; i++) {
        BackupDisk *d = &job->disks[i];
        g_mutex_init(&d->lock);
        g_cond_init(&d->cond);
        d->bd = blockdev_ref(g_ptr_array_index(bds, i));
        d->name = g_strdup(blockdev_get_name(d->bd));
        d->size = blockdev_get_size(d->bd);
        d->nclusters = (d->size + CLUSTER - 1) / CLUSTER;
        d->job_status = "created";
        int id = vma_writer_register_device(w, d->name, d->size, errp);
        if (id < 0) {
            goto fail;
        }
        d->dev_id = (uint8_t)id;
        size_t words = (size_t)((d->nclusters + 63) / 64);
        d->todo = g_new(uint64_t, words);
        d->busy = g_new0(uint64_t, words);
        memset(d->todo, 0xff, words * sizeof(uint64_t));
        job->total += d->size;
        job->remaining += d->nclusters;
    }

    if (o->fleecing_dir != NULL || o->fleecing) {
        job->spill_dir = g_strdup(o->fleecing_dir ? o->fleecing_dir : g_get_tmp_dir());
        job->spill_fd = open_spill_file(job->spill_dir, errp);
        if (job->spill_fd < 0) {
            goto fail;
        }
    }

    /* The header is final from here on; an exec: command gets it right away. */
    if (!vma_writer_start(w, errp)) {
        goto fail;
    }
    vma_writer_get_uuid_str(w, job->uuid);
    job->writer = w;
    job->start_time = (int64_t)time(NULL);

    /* The point in time: every disk gets the hook at one instant. */
    if (!blockdev_hooks_install((BlockDev *const *)bds->pdata, bds->len, backup_hook, job,
                                errp)) {
        job->writer = NULL;
        goto fail;
    }

    /* Announce the jobs before the controller can end them. */
    set_job_status(job, "created");
    set_job_status(job, "running");

    GError *err = NULL;
    job->controller = g_thread_try_new("backup", controller_main, job, &err);
    if (job->controller == NULL) {
        blockdev_hooks_remove((BlockDev *const *)bds->pdata, bds->len);
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
        job_fail(job, g_error_new_literal(BACKUP_ERROR, BACKUP_ERROR_FAILED, "backup canceled"),
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
    st->dirty = job->total;
    for (unsigned i = 0; i < job->ndisks; i++) {
        uint64_t t = 0, z = 0;
        disk_progress_locked(job, &job->disks[i], &t, &z);
        st->transferred += t;
        st->zero_bytes += z;
    }
    st->reused = 0;
    st->start_time = job->start_time;
    st->end_time = job->state == JOB_ACTIVE ? 0 : job->end_time;
    st->backup_file = g_strdup(job->backup_file);
    st->uuid = g_strdup(job->uuid);
    st->finishing = job->state == JOB_ACTIVE && job->finishing;
    st->cbw_bytes = job->cbw_bytes;
    st->spilled_bytes = job->spilled_bytes;
    g_mutex_unlock(&job->lock);
    g_mutex_unlock(&state_lock);
}

void backup_status_clear(BackupStatus *st)
{
    g_clear_pointer(&st->status, g_free);
    g_clear_pointer(&st->errmsg, g_free);
    g_clear_pointer(&st->backup_file, g_free);
    g_clear_pointer(&st->uuid, g_free);
}

void backup_job_info_free(BackupJobInfo *info)
{
    if (info == NULL) {
        return;
    }
    g_free(info->id);
    g_free(info->error);
    g_free(info);
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
            info->total_progress = d->size;
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
    g_mutex_lock(&state_lock);
    event_fn = fn;
    event_opaque = opaque;
    g_mutex_unlock(&state_lock);
}

void backup_set_read_fn(BackupReadFn fn)
{
    read_fn = fn;
}
