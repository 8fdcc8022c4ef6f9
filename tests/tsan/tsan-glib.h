/*
 * tests/tsan/tsan-glib.h — makes glib's GMutex, GCond and g_once_init_* visible to
 * ThreadSanitizer. Force-included (-include) into every object of a SANITIZE=thread
 * build by the Makefile; never part of a normal build.
 *
 * Why: glib 2.74 implements GMutex and GCond on Linux with its own atomics and the futex
 * system call, inside libglib, which is not instrumented. ThreadSanitizer therefore sees
 * no happens-before edge from g_mutex_unlock() in one thread to g_mutex_lock() in
 * another, and reports every access protected by a GMutex as a data race. A suppression
 * file cannot tell those false reports from real races in the same code, so instead we
 * tell ThreadSanitizer what the calls do, with its mutex annotations: every call site of
 * g_mutex_lock/trylock/unlock, g_cond_wait/wait_until and g_once_init_enter/leave in our
 * sources is redirected (by the macros below) to an inline wrapper that calls the real
 * glib function and annotates it as a lock, an unlock, or a release/acquire pair. The
 * lock itself is still glib's, so the code under test is the code we ship; in addition
 * ThreadSanitizer checks lock order (potential deadlocks) and unlocks of unheld mutexes.
 *
 * What stays invisible (none of it is used to protect our data today; if it ever is,
 * ThreadSanitizer reports a race, it does not hide one):
 *  - GRecMutex, GRWLock, GPrivate, G_LOCK(), GMutexLocker (its inline body in glib's
 *    header was compiled before these macros; it would lock without annotation);
 *  - g_once() (its init function runs inside glib);
 *  - ordering that glib's main loop provides between g_idle_add() in one thread and the
 *    callback in the main thread: data handed over that way must be protected by a
 *    GMutex of ours (qmp_event_emit() does so).
 *
 * G_DEFINE_QUARK: glib's macro caches the quark in a plain static that two threads may
 * fill at once (each stores the same value, from a thread-safe lookup). That is glib's
 * idiom, not a bug of ours; here the cache is read and written as a relaxed atomic, which
 * is what every compiler makes of it anyway.
 *
 * Thread creation and join (pthread_create/pthread_join inside g_thread_new/join), and
 * reads and writes on pipes, eventfds and sockets, are intercepted by ThreadSanitizer
 * itself and need nothing here.
 */
#ifndef VMABACKUP_TSAN_GLIB_H
#define VMABACKUP_TSAN_GLIB_H

#include <glib.h>
#include <sanitizer/tsan_interface.h>

/* A mutex that was never created through g_mutex_init() is a zero-initialised static
 * one: tell ThreadSanitizer so that it does not expect a constructor. */
#define TSAN_GLIB_STATIC __tsan_mutex_linker_init

static inline void tsan_g_mutex_init(GMutex *m)
{
    (g_mutex_init)(m);
    __tsan_mutex_create(m, 0);
}

static inline void tsan_g_mutex_clear(GMutex *m)
{
    __tsan_mutex_destroy(m, 0);
    (g_mutex_clear)(m);
}

static inline void tsan_g_mutex_lock(GMutex *m)
{
    __tsan_mutex_pre_lock(m, TSAN_GLIB_STATIC);
    (g_mutex_lock)(m);
    __tsan_mutex_post_lock(m, TSAN_GLIB_STATIC, 0);
}

static inline gboolean tsan_g_mutex_trylock(GMutex *m)
{
    __tsan_mutex_pre_lock(m, TSAN_GLIB_STATIC | __tsan_mutex_try_lock);
    gboolean ok = (g_mutex_trylock)(m);
    __tsan_mutex_post_lock(m, TSAN_GLIB_STATIC | __tsan_mutex_try_lock |
                           (ok ? 0 : __tsan_mutex_try_lock_failed), 0);
    return ok;
}

static inline void tsan_g_mutex_unlock(GMutex *m)
{
    __tsan_mutex_pre_unlock(m, 0);
    (g_mutex_unlock)(m);
    __tsan_mutex_post_unlock(m, 0);
}

/* g_cond_wait releases the mutex and takes it again. The release is annotated before
 * the real one and the acquisition after the real one, so every happens-before edge
 * ThreadSanitizer sees also exists in reality. Signal and broadcast need nothing: the
 * edge from a signaller to the woken thread is the mutex, as with pthreads. */
static inline void tsan_g_cond_wait(GCond *c, GMutex *m)
{
    __tsan_mutex_pre_unlock(m, 0);
    __tsan_mutex_post_unlock(m, 0);
    (g_cond_wait)(c, m);
    __tsan_mutex_pre_lock(m, TSAN_GLIB_STATIC);
    __tsan_mutex_post_lock(m, TSAN_GLIB_STATIC, 0);
}

static inline gboolean tsan_g_cond_wait_until(GCond *c, GMutex *m, gint64 end_time)
{
    __tsan_mutex_pre_unlock(m, 0);
    __tsan_mutex_post_unlock(m, 0);
    gboolean r = (g_cond_wait_until)(c, m, end_time);
    __tsan_mutex_pre_lock(m, TSAN_GLIB_STATIC);
    __tsan_mutex_post_lock(m, TSAN_GLIB_STATIC, 0);
    return r;
}

/* g_once_init_enter() returns FALSE once the value is published: acquire what the
 * initialising thread released just before publishing it. */
static inline gboolean tsan_g_once_init_enter(volatile void *location)
{
    if (__atomic_load_n((void *volatile *) location, __ATOMIC_ACQUIRE) == NULL &&
        (g_once_init_enter)(location)) {
        return TRUE;
    }
    __tsan_acquire((void *) location);
    return FALSE;
}

static inline void tsan_g_once_init_leave(volatile void *location, gsize result)
{
    __tsan_release((void *) location);
    (g_once_init_leave)(location, result);
}

#undef g_once_init_enter
#undef g_once_init_leave
#define g_mutex_init(m) tsan_g_mutex_init(m)
#define g_mutex_clear(m) tsan_g_mutex_clear(m)
#define g_mutex_lock(m) tsan_g_mutex_lock(m)
#define g_mutex_trylock(m) tsan_g_mutex_trylock(m)
#define g_mutex_unlock(m) tsan_g_mutex_unlock(m)
#define g_cond_wait(c, m) tsan_g_cond_wait((c), (m))
#define g_cond_wait_until(c, m, t) tsan_g_cond_wait_until((c), (m), (t))
#define g_once_init_enter(location) tsan_g_once_init_enter(location)
#define g_once_init_leave(location, result) \
    tsan_g_once_init_leave((location), (gsize) (result))

#undef G_DEFINE_QUARK
#define G_DEFINE_QUARK(QN, q_n)                                                            \
    GQuark q_n##_quark(void)                                                               \
    {                                                                                      \
        static GQuark q;                                                                   \
        GQuark v = __atomic_load_n(&q, __ATOMIC_RELAXED);                                  \
        if (G_UNLIKELY(v == 0)) {                                                          \
            v = g_quark_from_static_string(#QN);                                           \
            __atomic_store_n(&q, v, __ATOMIC_RELAXED);                                     \
        }                                                                                  \
        return v;                                                                          \
    }

#endif /* VMABACKUP_TSAN_GLIB_H */
