/*
 * nbd/pool.c — the server's request threads: one pool of at most NBD_POOL_THREADS threads
 * for every connection (nbd/internal.h), and the epoll set the pool threads read the
 * connections' requests from.
 *
 * Leader and followers. Of the idle threads, one (the leader) waits in epoll_wait for a
 * connection that became readable; the others (followers) wait on a condition for a
 * queued job. A leader that got an event hands the leader role on (wakes a follower, or
 * starts a thread while fewer than max_threads run) before it handles the event, so a
 * readable connection costs one thread wake-up, and the thread that read a request runs
 * it. A queued job wakes a follower, or starts a thread, or, with neither available,
 * wakes the leader through an eventfd in the epoll set. With every thread busy nobody
 * waits in epoll_wait: the connections wait until a thread comes back (the bound).
 *
 * Every watched descriptor is registered EPOLLONESHOT: an event goes to one thread, and
 * the descriptor is disabled until its owner arms it again (nbd_pool_arm).
 *
 * Threads start when needed; a follower idle for NBD_POOL_IDLE_S ends, so does a leader
 * while nothing is watched (an idle daemon keeps no request threads). Ended threads are
 * joined by the next push or by nbd_pool_free(). A plain mutex and condition (not
 * GThreadPool) so that the hand-over of a job is visible to ThreadSanitizer's glib
 * annotations; what crosses the epoll set is ordered by the owners' own locks.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gio/gio.h>

#include "nbd/internal.h"

typedef struct PoolJob {
    NbdPoolFn fn;
    void *arg;
} PoolJob;

struct NbdPool {
    GMutex lock;               /* protects everything below but epfd, evfd, on_event */
    GCond cond;                /* a job queued, the leader role free, or stopping */
    GCond ended_cond;          /* a thread moved itself to ended */
    GQueue jobs;               /* PoolJob *, oldest first */
    GPtrArray *threads;        /* GThread * running */
    GPtrArray *ended;          /* GThread * that returned, to be joined */
    guint max_threads;
    guint idle;                /* followers waiting on cond */
    guint signalled;           /* of them, woken and not yet running */
    bool has_leader;           /* a thread waits in epoll_wait */
    bool leader_kicked;        /* evfd written since the leader last drained it */
    guint watched;             /* descriptors registered in the epoll set */
    bool stopping;
    int epfd;                  /* the epoll set */
    int evfd;                  /* eventfd in the set: wakes the leader */
    NbdPoolFn on_event;        /* a watched descriptor's event: on_event(its data) */
};

#define NBD_POOL_IDLE_S 2

static void start_thread_locked(NbdPool *p);

/* Someone must take the leader role or a job: wake a follower, else start a thread,
 * else (for a job) wake the leader. Lock held; returns whether to signal cond after
 * unlocking. */
static bool want_thread_locked(NbdPool *p, bool for_job)
{
    if (p->idle > p->signalled) {
        p->signalled++;
        return true;
    }
    if (p->threads->len < p->max_threads) {
        start_thread_locked(p);
        return false;
    }
    if (for_job && p->has_leader && !p->leader_kicked) {
        uint64_t one = 1;
        p->leader_kicked = true;
        while (write(p->evfd, &one, sizeof(one)) < 0 && errno == EINTR) {
        }
    }
    return false;
}

/* Lead: wait in epoll_wait, lock not held. Returns with the lock held and the leader
 * role given up; *data is the event's data, or NULL for none (timeout, wake-up). */
static void lead(NbdPool *p, void **data, bool *timed_out)
{
    struct epoll_event ev;

    g_mutex_unlock(&p->lock);
    int n = epoll_wait(p->epfd, &ev, 1, NBD_POOL_IDLE_S * 1000);
    g_mutex_lock(&p->lock);
    p->has_leader = false;
    *data = NULL;
    *timed_out = n == 0;
    if (n < 0 && errno != EINTR) {
        g_warning("nbd: epoll_wait: %s", g_strerror(errno));
    }
    if (n == 1 && ev.data.ptr == NULL) {
        uint64_t v;
        (void)read(p->evfd, &v, sizeof(v));
        p->leader_kicked = false;
    } else if (n == 1) {
        *data = ev.data.ptr;
    }
}

static gpointer pool_thread(gpointer opaque)
{
    NbdPool *p = opaque;

    g_mutex_lock(&p->lock);
    for (;;) {
        PoolJob *job = g_queue_pop_head(&p->jobs);
        if (job != NULL) {
            PoolJob j = *job;
            g_free(job);
            g_mutex_unlock(&p->lock);
            j.fn(j.arg);
            g_mutex_lock(&p->lock);
            continue;
        }
        if (p->stopping) {
            break;
        }
        if (!p->has_leader && p->watched > 0) {
            p->has_leader = true;
            void *data;
            bool timed_out;
            lead(p, &data, &timed_out);
            bool signal = false;
            if (data != NULL || !g_queue_is_empty(&p->jobs)) {
                signal = want_thread_locked(p, false);   /* the next leader */
            }
            g_mutex_unlock(&p->lock);
            if (signal) {
                g_cond_signal(&p->cond);
            }
            if (data != NULL) {
                p->on_event(data);
            }
            g_mutex_lock(&p->lock);
            if (timed_out && p->watched == 0 && g_queue_is_empty(&p->jobs)) {
                break;
            }
            continue;
        }
        p->idle++;
        gint64 deadline = g_get_monotonic_time() + NBD_POOL_IDLE_S * G_TIME_SPAN_SECOND;
        bool timed_out = !g_cond_wait_until(&p->cond, &p->lock, deadline);
        p->idle--;
        if (p->signalled > 0) {
            p->signalled--;            /* a wake-up may be spurious: count it anyway */
        }
        if (timed_out && g_queue_is_empty(&p->jobs) && (p->has_leader || p->watched == 0)) {
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

static void start_thread_locked(NbdPool *p)
{
    g_autoptr(GError) err = NULL;
    GThread *t = g_thread_try_new("nbd-req", pool_thread, p, &err);

    if (t != NULL) {
        g_ptr_array_add(p->threads, t);
    } else {
        /* the threads running take the work when they come back */
        g_warning("nbd: cannot start a request thread: %s", err->message);
    }
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

NbdPool *nbd_pool_new(guint max_threads, NbdPoolFn on_event, GError **errp)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno), "epoll_create1: %s",
                    g_strerror(errno));
        return NULL;
    }
    int evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (evfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev) < 0) {
        int e = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(e), "eventfd: %s", g_strerror(e));
        if (evfd >= 0) {
            close(evfd);
        }
        close(epfd);
        return NULL;
    }

    NbdPool *p = g_new0(NbdPool, 1);
    g_mutex_init(&p->lock);
    g_cond_init(&p->cond);
    g_cond_init(&p->ended_cond);
    g_queue_init(&p->jobs);
    p->threads = g_ptr_array_new();
    p->ended = g_ptr_array_new();
    p->max_threads = max_threads;
    p->epfd = epfd;
    p->evfd = evfd;
    p->on_event = on_event;
    return p;
}

/* The signal goes out after the lock is dropped, so that the woken thread does not
 * block on it at once. */
void nbd_pool_push(NbdPool *p, NbdPoolFn fn, void *arg)
{
    PoolJob *job = g_new(PoolJob, 1);

    job->fn = fn;
    job->arg = arg;
    g_mutex_lock(&p->lock);
    GPtrArray *ended = steal_ended_locked(p);
    g_queue_push_tail(&p->jobs, job);
    bool signal = p->jobs.length > p->signalled ? want_thread_locked(p, true) : false;
    g_mutex_unlock(&p->lock);
    if (signal) {
        g_cond_signal(&p->cond);
    }
    join_threads(ended);
}

int nbd_pool_arm(NbdPool *p, int fd, void *data, bool add)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                              .data.ptr = data };
    bool signal = false;

    if (add) {
        g_mutex_lock(&p->lock);
        p->watched++;
        if (!p->has_leader) {
            signal = want_thread_locked(p, false);
        }
        g_mutex_unlock(&p->lock);
        if (signal) {
            g_cond_signal(&p->cond);
        }
    }
    if (epoll_ctl(p->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0) {
        int e = errno;
        if (add) {
            g_mutex_lock(&p->lock);
            p->watched--;
            g_mutex_unlock(&p->lock);
        }
        return -e;
    }
    return 0;
}

void nbd_pool_forget(NbdPool *p, int fd)
{
    (void)epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
    g_mutex_lock(&p->lock);
    p->watched--;
    g_mutex_unlock(&p->lock);
}

void nbd_pool_free(NbdPool *p)
{
    uint64_t one = 1;

    if (p == NULL) {
        return;
    }
    g_mutex_lock(&p->lock);
    p->stopping = true;
    g_cond_broadcast(&p->cond);
    while (write(p->evfd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    /* every running thread moves itself to ended before it returns */
    while (p->threads->len > 0) {
        g_cond_wait(&p->ended_cond, &p->lock);
    }
    GPtrArray *ended = steal_ended_locked(p);
    g_mutex_unlock(&p->lock);
    join_threads(ended);
    assert(g_queue_is_empty(&p->jobs) && p->watched == 0);
    g_ptr_array_unref(p->threads);
    g_ptr_array_unref(p->ended);
    close(p->evfd);
    close(p->epfd);
    g_cond_clear(&p->cond);
    g_cond_clear(&p->ended_cond);
    g_mutex_clear(&p->lock);
    g_free(p);
}
