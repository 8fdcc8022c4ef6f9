/*
 * nbd/pool.c — the server's request threads: one pool of at most NBD_POOL_THREADS threads
 * for every connection (nbd/internal.h). Threads start when work is queued and none is
 * idle; a thread idle for NBD_POOL_IDLE_S ends (an idle daemon keeps no request
 * threads), and is joined by the next push or by nbd_pool_free(). A plain mutex and
 * condition (not GThreadPool) so that the hand-over of a job is visible to
 * ThreadSanitizer's glib annotations.
 */
#include "nbd/internal.h"

struct NbdPool {
    GMutex lock;               /* protects everything below */
    GCond cond;                /* a job queued, or stopping */
    GCond ended_cond;          /* a thread moved itself to ended */
    GQueue jobs;               /* NbdPoolJob *, oldest first */
    GPtrArray *threads;        /* GThread * running */
    GPtrArray *ended;          /* GThread * that returned, to be joined */
    guint max_threads;
    guint idle;                /* threads waiting for a job */
    guint signalled;           /* of them, woken and not yet running */
    bool stopping;
    NbdPoolFn fn;
};

#define NBD_POOL_IDLE_S 2

static gpointer pool_thread(gpointer opaque)
{
    NbdPool *p = opaque;

    g_mutex_lock(&p->lock);
    for (;;) {
        void *job = g_queue_pop_head(&p->jobs);
        if (job != NULL) {
            g_mutex_unlock(&p->lock);
            p->fn(job);
            g_mutex_lock(&p->lock);
            continue;
        }
        if (p->stopping) {
            break;
        }
        p->idle++;
        gint64 deadline = g_get_monotonic_time() + NBD_POOL_IDLE_S * G_TIME_SPAN_SECOND;
        bool timed_out = !g_cond_wait_until(&p->cond, &p->lock, deadline);
        p->idle--;
        if (p->signalled > 0) {
            p->signalled--;            /* a wake-up may be spurious: count it anyway */
        }
        if (timed_out && g_queue_is_empty(&p->jobs)) {
            break;
        }
    }
    GThread *self = g_thread_self();
    g_ptr_array_remove_fast(p->threads, self);
    g_ptr_array_add(p->ended, self);
    g_cond_broadcast(&p->ended_cond);
    g_mutex_unlock(&p->lock);
    return NULL;
}

/* Take the list of ended threads (lock held), or NULL if there is none. */
static GPtrArray *steal_ended_locked(NbdPool *p)
{
    if (p->ended->len == 0) {
        return NULL;
    }
    GPtrArray *ended = p->ended;
    p->ended = g_ptr_array_new();
    return ended;
}

/* Join threads that ended (without the lock: they returned or are about to). */
static void join_threads(GPtrArray *ended)
{
    if (ended != NULL) {
        for (guint i = 0; i < ended->len; i++) {
            g_thread_join(g_ptr_array_index(ended, i));
        }
        g_ptr_array_unref(ended);
    }
}

NbdPool *nbd_pool_new(guint max_threads, NbdPoolFn fn)
{
    NbdPool *p = g_new0(NbdPool, 1);

    g_mutex_init(&p->lock);
    g_cond_init(&p->cond);
    g_cond_init(&p->ended_cond);
    g_queue_init(&p->jobs);
    p->threads = g_ptr_array_new();
    p->ended = g_ptr_array_new();
    p->max_threads = max_threads;
    p->fn = fn;
    return p;
}

/* A job wakes an idle thread unless enough were woken already for the jobs queued;
 * the signal goes out after the lock is dropped, so that the woken thread does not
 * block on it at once. */
void nbd_pool_push(NbdPool *p, void *job)
{
    bool signal = false;

    g_mutex_lock(&p->lock);
    GPtrArray *ended = steal_ended_locked(p);
    g_queue_push_tail(&p->jobs, job);
    if (p->idle > p->signalled) {
        if (p->jobs.length > p->signalled) {
            p->signalled++;
            signal = true;
        }
    } else if (p->threads->len < p->max_threads && p->jobs.length > p->signalled) {
        g_autoptr(GError) err = NULL;
        GThread *t = g_thread_try_new("nbd-req", pool_thread, p, &err);
        if (t != NULL) {
            g_ptr_array_add(p->threads, t);
        } else if (p->threads->len == 0) {
            /* no thread at all would strand the job: run it here */
            g_warning("nbd: cannot start a request thread: %s", err->message);
            g_queue_pop_tail(&p->jobs);
            g_mutex_unlock(&p->lock);
            join_threads(ended);
            p->fn(job);
            return;
        } else {
            g_warning("nbd: cannot start a request thread: %s", err->message);
        }
    }
    g_mutex_unlock(&p->lock);
    if (signal) {
        g_cond_signal(&p->cond);
    }
    join_threads(ended);
}

void nbd_pool_free(NbdPool *p)
{
    if (p == NULL) {
        return;
    }
    g_mutex_lock(&p->lock);
    p->stopping = true;
    g_cond_broadcast(&p->cond);
    g_mutex_unlock(&p->lock);
    /* every running thread moves itself to ended before it returns */
    g_mutex_lock(&p->lock);
    while (p->threads->len > 0) {
        g_cond_wait(&p->ended_cond, &p->lock);
    }
    GPtrArray *ended = steal_ended_locked(p);
    g_mutex_unlock(&p->lock);
    join_threads(ended);
    assert(g_queue_is_empty(&p->jobs));
    g_ptr_array_unref(p->threads);
    g_ptr_array_unref(p->ended);
    g_cond_clear(&p->cond);
    g_cond_clear(&p->ended_cond);
    g_mutex_clear(&p->lock);
    g_free(p);
}
