/*
 * block/stream.c — the block-stream job: finish a live restore in the background (see
 * stream.h).
 *
 * Design note
 * -----------
 * A job walks its alloc-track node from offset 0 to the end in STREAM_CHUNK steps,
 * jumping to the next cluster that is not on the target yet, and has the node copy each
 * step from the backing (alloc_track_stream_chunk(): it takes the node's range locks, so
 * a guest write to a cluster always wins over the copy, and it skips zeros the target
 * already has). Guest reads meanwhile copy on their own (copy-on-read), so the walk finds
 * less to do. After each step the job pays for the bytes it read at `speed`
 * (util/ratelimit.h, pace-after) and looks at `cancel`. About once a second it has the
 * node record its marks (alloc_track_sync()), so a restart resumes near where it stopped.
 * At the end the node drops its backing: from then on the backing disk is unused, and
 * may be deleted (blockdev-del) with its file.
 *
 * Progress is the node's restored bytes (monotonic; clusters copied by guest reads or
 * written by the guest count too), total the disk's size, as QEMU's stream counts the
 * whole disk. A device without a backing (not alloc-track, or restored already) gets a
 * job that completes at once with len 0 and offset 0, as QEMU's does.
 *
 * Lifetime: jobs lives in `jobs` from start until reaped; the thread sends the end
 * events and sets `ended` last; the main loop joins and frees ended jobs (reap()) on its
 * next call. A job holds a reference to its disk (so blockdev-del refuses it) and node.
 *
 * Locks: jobs_lock (the list) -> job->lock (status, cancel, speed, error); neither is
 * held across I/O or an event.
 */
#include <string.h>

#include <gio/gio.h>

#include "block/alloc-track.h"
#include "block/job.h"
#include "block/node-name.h"
#include "block/stream.h"
#include "blockdev.h"
#include "util/ratelimit.h"

#define SYNC_INTERVAL_US G_USEC_PER_SEC

G_DEFINE_QUARK(stream-error-quark, stream_error)

typedef struct StreamJob {
    /* Immutable after start. */
    char *id;
    BlockDev *bd;
    BlockNode *node;          /* the alloc-track node; NULL: nothing to stream */
    uint64_t len;

    GMutex lock;              /* protects everything below */
    GCond cond;               /* cancel, speed change */
    const char *status;       /* JobStatus word */
    bool cancel;
    RateLimit rl;
    int64_t speed;
    char *error;
    bool ended;               /* the thread is done: join and free */

    GThread *thread;          /* main loop only */
} StreamJob;

static GMutex jobs_lock;      /* protects jobs */
static GPtrArray *jobs;       /* of StreamJob* */

static void job_free(StreamJob *job)
{
    if (job->thread != NULL) {
        g_thread_join(job->thread);
    }
    bnode_unref(job->node);
    blockdev_unref(job->bd);
    g_free(job->error);
    g_free(job->id);
    g_mutex_clear(&job->lock);
    g_cond_clear(&job->cond);
    g_free(job);
}

/* Join and free the jobs that have ended. Main loop. */
static void reap(void)
{
    g_autoptr(GPtrArray) done = g_ptr_array_new();

    g_mutex_lock(&jobs_lock);
    for (guint i = 0; jobs != NULL && i < jobs->len;) {
        StreamJob *job = g_ptr_array_index(jobs, i);
        g_mutex_lock(&job->lock);
        bool ended = job->ended;
        g_mutex_unlock(&job->lock);
        if (ended) {
            g_ptr_array_add(done, g_ptr_array_steal_index(jobs, i));
        } else {
            i++;
        }
    }
    g_mutex_unlock(&jobs_lock);
    for (guint i = 0; i < done->len; i++) {
        job_free(g_ptr_array_index(done, i));
    }
}

/* The live job named id (not ended), or NULL. Under jobs_lock. */
static StreamJob *find_locked(const char *id)
{
    for (guint i = 0; jobs != NULL && i < jobs->len; i++) {
        StreamJob *job = g_ptr_array_index(jobs, i);
        g_mutex_lock(&job->lock);
        bool live = !job->ended;
        g_mutex_unlock(&job->lock);
        if (live && strcmp(job->id, id) == 0) {
            return job;
        }
    }
    return NULL;
}

static void set_status(StreamJob *job, const char *status)
{
    g_mutex_lock(&job->lock);
    job->status = status;
    g_mutex_unlock(&job->lock);
    job_emit_status("stream", job->id, status);
}

static uint64_t progress(StreamJob *job)
{
    return job->node != NULL ? alloc_track_allocated_bytes(job->node) : 0;
}

/* Sleep until the limiter lets the next step go; false when cancelled. */
static bool pace(StreamJob *job, uint64_t bytes)
{
    g_mutex_lock(&job->lock);
    ratelimit_reserve(&job->rl, bytes, g_get_monotonic_time());
    while (!job->cancel) {
        int64_t until = ratelimit_next(&job->rl);
        if (g_get_monotonic_time() >= until) {
            break;
        }
        g_cond_wait_until(&job->cond, &job->lock, until);
    }
    bool go = !job->cancel;
    g_mutex_unlock(&job->lock);
    return go;
}

static gpointer stream_main(gpointer opaque)
{
    StreamJob *job = opaque;
    g_autofree char *error = NULL;
    bool cancelled = false;
    int64_t synced = g_get_monotonic_time();

    for (uint64_t pos = 0; job->node != NULL && pos < job->len;) {
        pos = alloc_track_next_unallocated(job->node, pos);
        if (pos >= job->len) {
            break;
        }
        uint64_t copied = 0;
        int r = alloc_track_stream_chunk(job->node, pos, STREAM_CHUNK, &copied);
        if (r < 0) {
            error = g_strdup_printf("stream %s at offset %" G_GUINT64_FORMAT ": %s", job->id,
                                    pos, g_strerror(-r));
            break;
        }
        pos += STREAM_CHUNK;
        if (!pace(job, copied)) {
            cancelled = true;
            break;
        }
        if (g_get_monotonic_time() - synced >= SYNC_INTERVAL_US) {
            r = alloc_track_sync(job->node);
            if (r < 0) {
                error = g_strdup_printf("stream %s: record the restored clusters: %s",
                                        job->id, g_strerror(-r));
                break;
            }
            synced = g_get_monotonic_time();
        }
    }
    g_mutex_lock(&job->lock);
    cancelled = cancelled || job->cancel;
    g_mutex_unlock(&job->lock);

    if (job->node != NULL) {
        if (error == NULL && !cancelled) {
            GError *err = NULL;
            if (!alloc_track_drop_backing(job->node, &err)) {
                error = g_strdup(err->message);
                g_error_free(err);
            }
        } else {
            /* keep what was copied: the next run (or a restart) starts from there */
            (void)alloc_track_sync(job->node);
        }
    }

    g_mutex_lock(&job->lock);
    job->error = g_strdup(error);
    int64_t speed = job->speed;
    job->status = error != NULL || cancelled ? "aborting" : "pending";
    g_mutex_unlock(&job->lock);
    uint64_t offset = MIN(progress(job), job->len);
    if (job->node == NULL) {
        offset = 0;
    }
    job_emit_end("stream", job->id, job->len, offset, speed, error, cancelled && error == NULL);

    g_mutex_lock(&job->lock);
    job->status = "null";
    job->ended = true;
    g_mutex_unlock(&job->lock);
    return NULL;
}

/* QEMU's checks of base, base-node and backing-file against the node's one backing
 * level; *nothing: the base is the backing itself, so there is nothing to copy. */
static bool check_base(const StreamOptions *o, BlockNode *node, bool *nothing, GError **errp)
{
    g_autofree char *bname = alloc_track_is(node) ? alloc_track_backing_name(node) : NULL;
    g_autofree char *bfile = alloc_track_is(node) ? alloc_track_backing_filename(node) : NULL;

    *nothing = false;
    if (o->base != NULL && o->base_node != NULL) {
        g_set_error_literal(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                            "'base' and 'base-node' cannot be specified at the same time");
        return false;
    }
    if (o->base != NULL) {
        if (bfile == NULL || strcmp(o->base, bfile) != 0) {
            g_set_error(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                        "Can't find '%s' in the backing chain", o->base);
            return false;
        }
        *nothing = true;
    }
    if (o->base_node != NULL) {
        g_autoptr(BlockDev) b = blockdev_find(o->base_node, NULL);
        if (b == NULL) {
            g_set_error(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                        "Cannot find device='' nor node-name='%s'", o->base_node);
            return false;
        }
        if (bname == NULL || strcmp(o->base_node, bname) != 0) {
            g_set_error(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                        "Node '%s' is not a backing image of '%s'", o->base_node, o->device);
            return false;
        }
        *nothing = true;
    }
    if (o->backing_file != NULL && o->base == NULL && o->base_node == NULL) {
        g_set_error_literal(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                            "backing file specified, but streaming the entire chain");
        return false;
    }
    return true;
}

bool stream_start(const StreamOptions *o, GError **errp)
{
    const char *id = o->job_id != NULL ? o->job_id : o->device;

    reap();
    if (o->speed < 0) {
        g_set_error_literal(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                            "Parameter 'speed' expects a non-negative value");
        return false;
    }
    if (o->on_error != NULL && strcmp(o->on_error, "report") != 0) {
        g_set_error(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                    "on-error '%s' is not supported by vmad's block-stream (only 'report')",
                    o->on_error);
        return false;
    }
    g_autoptr(BlockDev) bd = blockdev_find(o->device, NULL);
    if (bd == NULL) {
        g_set_error(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                    "Cannot find device='%s' nor node-name='%s'", o->device, o->device);
        return false;
    }
    if (!node_name_wellformed(id)) {
        g_set_error(errp, STREAM_ERROR, STREAM_ERROR_FAILED, "Invalid job ID '%s'", id);
        return false;
    }
    g_autoptr(BlockNode) node = blockdev_get_base(bd);
    bool nothing = false;
    if (!check_base(o, node, &nothing, errp)) {
        return false;
    }
    g_autofree char *backing = alloc_track_is(node) ? alloc_track_backing_name(node) : NULL;
    if (backing == NULL) {
        nothing = true;
    }

    StreamJob *job = g_new0(StreamJob, 1);
    g_mutex_init(&job->lock);
    g_cond_init(&job->cond);
    job->id = g_strdup(id);
    job->bd = g_steal_pointer(&bd);
    job->node = nothing ? NULL : g_steal_pointer(&node);
    job->len = nothing ? 0 : blockdev_get_size(job->bd);
    job->speed = o->speed;
    ratelimit_init(&job->rl, (uint64_t)o->speed);
    job->status = "created";

    g_mutex_lock(&jobs_lock);
    bool taken = find_locked(id) != NULL;
    bool busy = false;
    for (guint i = 0; jobs != NULL && i < jobs->len && !taken; i++) {
        StreamJob *other = g_ptr_array_index(jobs, i);
        g_mutex_lock(&other->lock);
        busy = busy || (!other->ended && other->bd == job->bd);
        g_mutex_unlock(&other->lock);
    }
    if (!taken && !busy) {
        if (jobs == NULL) {
            jobs = g_ptr_array_new();
        }
        g_ptr_array_add(jobs, job);
    }
    g_mutex_unlock(&jobs_lock);
    if (taken || busy) {
        if (taken) {
            g_set_error(errp, STREAM_ERROR, STREAM_ERROR_FAILED, "Job ID '%s' already in use",
                        id);
        } else {
            g_set_error(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                        "Node '%s' is busy: block device is in use by block job: stream",
                        o->device);
        }
        job_free(job);
        return false;
    }

    job_emit_status("stream", job->id, "created");
    set_status(job, "running");
    GError *err = NULL;
    job->thread = g_thread_try_new("stream", stream_main, job, &err);
    if (job->thread == NULL) {
        job_emit_end("stream", job->id, job->len, 0, job->speed, err->message, false);
        g_mutex_lock(&job->lock);
        job->ended = true;
        g_mutex_unlock(&job->lock);
        g_propagate_prefixed_error(errp, err, "start stream thread: ");
        reap();
        return false;
    }
    return true;
}

bool stream_cancel(const char *id, GError **errp)
{
    reap();
    g_mutex_lock(&jobs_lock);
    StreamJob *job = find_locked(id);
    if (job != NULL) {
        g_mutex_lock(&job->lock);
        job->cancel = true;
        g_cond_broadcast(&job->cond);
        g_mutex_unlock(&job->lock);
    }
    g_mutex_unlock(&jobs_lock);
    if (job == NULL) {
        g_set_error(errp, STREAM_ERROR, STREAM_ERROR_NO_JOB, "Block job '%s' not found", id);
        return false;
    }
    return true;
}

bool stream_set_speed(const char *id, int64_t speed, GError **errp)
{
    if (speed < 0) {
        g_set_error_literal(errp, STREAM_ERROR, STREAM_ERROR_FAILED,
                            "Parameter 'speed' expects a non-negative value");
        return false;
    }
    g_mutex_lock(&jobs_lock);
    StreamJob *job = find_locked(id);
    if (job != NULL) {
        g_mutex_lock(&job->lock);
        job->speed = speed;
        ratelimit_set_speed(&job->rl, (uint64_t)speed);
        g_cond_broadcast(&job->cond);
        g_mutex_unlock(&job->lock);
    }
    g_mutex_unlock(&jobs_lock);
    if (job == NULL) {
        g_set_error(errp, STREAM_ERROR, STREAM_ERROR_NO_JOB, "Block job '%s' not found", id);
        return false;
    }
    return true;
}

GPtrArray *stream_query_jobs(void)
{
    GPtrArray *list = g_ptr_array_new_with_free_func((GDestroyNotify)job_info_free);

    reap();
    g_mutex_lock(&jobs_lock);
    for (guint i = 0; jobs != NULL && i < jobs->len; i++) {
        StreamJob *job = g_ptr_array_index(jobs, i);
        g_mutex_lock(&job->lock);
        bool ended = job->ended;
        JobInfo *info = g_new0(JobInfo, 1);
        info->id = g_strdup(job->id);
        info->type = "stream";
        info->status = job->status;
        info->error = g_strdup(job->error);
        g_mutex_unlock(&job->lock);
        if (ended) {
            job_info_free(info);
            continue;
        }
        info->total_progress = job->len;
        info->current_progress = MIN(progress(job), job->len);
        g_ptr_array_add(list, info);
    }
    g_mutex_unlock(&jobs_lock);
    return list;
}

void stream_wait(void)
{
    for (;;) {
        g_mutex_lock(&jobs_lock);
        StreamJob *job = jobs != NULL && jobs->len > 0 ? g_ptr_array_steal_index(jobs, 0)
                                                       : NULL;
        g_mutex_unlock(&jobs_lock);
        if (job == NULL) {
            return;
        }
        job_free(job); /* joins its thread */
    }
}

void stream_shutdown(void)
{
    g_mutex_lock(&jobs_lock);
    for (guint i = 0; jobs != NULL && i < jobs->len; i++) {
        StreamJob *job = g_ptr_array_index(jobs, i);
        g_mutex_lock(&job->lock);
        job->cancel = true;
        g_cond_broadcast(&job->cond);
        g_mutex_unlock(&job->lock);
    }
    g_mutex_unlock(&jobs_lock);
    stream_wait();
    g_mutex_lock(&jobs_lock);
    g_clear_pointer(&jobs, g_ptr_array_unref);
    g_mutex_unlock(&jobs_lock);
}
