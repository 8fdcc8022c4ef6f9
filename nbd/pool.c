/*
 * nbd/pool.c — the server's request threads: one pool of at most NBD_POOL_THREADS threads
 * for every connection (nbd/internal.h). Threads start when work is queued and none is
 * idle, and stay until the pool is freed. A plain mutex and condition (not GThreadPool)
 * so that the hand-over of a job is visible to ThreadSanitizer's glib annotations.
 */
#include "nbd/internal.h"

struct NbdPool {
    GMutex lock;               /* protects everything below */
    GCond cond;                /* a job queued, or stopping */
    GQueue jobs;               /* NbdPoolJob *, oldest first */
    GPtrArray *threads;        /* GThread * */
    guint max_threads;
    guint idle;                /* threads waiting for a job */
    bool stopping;
    NbdPoolFn fn;
};

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
        g_cond_wait(&p->cond, &p->lock);
        p->idle--;
    }
    g_mutex_unlock(&p->lock);
    return NULL;
}

NbdPool *nbd_pool_new(guint max_threads, NbdPoolFn fn)
{
    NbdPool *p = g_new0(NbdPool, 1);

    g_mutex_init(&p->lock);
    g_cond_init(&p->cond);
    g_queue_init(&p->jobs);
    p->threads = g_ptr_array_new();
    p->max_threads = max_threads;
    p->fn = fn;
    return p;
}

void nbd_pool_push(NbdPool *p, void *job)
{
    g_mutex_lock(&p->lock);
    g_queue_push_tail(&p->jobs, job);
    if (p->idle > 0) {
        g_cond_signal(&p->cond);
    } else if (p->threads->len < p->max_threads) {
        g_autoptr(GError) err = NULL;
        GThread *t = g_thread_try_new("nbd-req", pool_thread, p, &err);
        if (t != NULL) {
            g_ptr_array_add(p->threads, t);
        } else if (p->threads->len == 0) {
            /* no thread at all would strand the job: run it here */
            g_warning("nbd: cannot start a request thread: %s", err->message);
            g_queue_pop_tail(&p->jobs);
            g_mutex_unlock(&p->lock);
            p->fn(job);
            return;
        } else {
            g_warning("nbd: cannot start a request thread: %s", err->message);
        }
    }
    g_mutex_unlock(&p->lock);
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
    for (guint i = 0; i < p->threads->len; i++) {
        g_thread_join(g_ptr_array_index(p->threads, i));
    }
    assert(g_queue_is_empty(&p->jobs));
    g_ptr_array_unref(p->threads);
    g_cond_clear(&p->cond);
    g_mutex_clear(&p->lock);
    g_free(p);
}
