/*
 * tests/tsan/selftest.c — proves that `make check-tsan` can fail: built with
 * -fsanitize=thread and tsan-glib.h force-included, like every object of the
 * ThreadSanitizer build. Without arguments two threads share a counter under a GMutex
 * and hand over a flag with a GCond: no report may appear (the annotations make glib's
 * locks visible). With an argument both threads also increment an unprotected counter:
 * ThreadSanitizer must report that race.
 */
#include <glib.h>

static GMutex lock;          /* protects counter, ready */
static GCond ready_cond;
static int counter, ready;
static int unprotected;

static gpointer thread_main(gpointer race)
{
    for (int i = 0; i < 1000; i++) {
        g_mutex_lock(&lock);
        counter++;
        g_mutex_unlock(&lock);
    }
    g_mutex_lock(&lock);
    ready = 1;
    g_cond_signal(&ready_cond);
    g_mutex_unlock(&lock);
    if (race != NULL) {
        unprotected++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    gpointer race = argc > 1 ? argv[1] : NULL;
    GThread *t = g_thread_new("selftest", thread_main, race);

    for (int i = 0; i < 1000; i++) {
        g_mutex_lock(&lock);
        counter++;
        g_mutex_unlock(&lock);
    }
    g_mutex_lock(&lock);
    while (!ready) {
        g_cond_wait(&ready_cond, &lock);
    }
    g_mutex_unlock(&lock);
    if (race != NULL) {
        unprotected++;
    }
    g_thread_join(t);
    return counter == 2000 ? 0 : 1;
}
