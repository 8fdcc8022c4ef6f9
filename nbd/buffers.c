/*
 * nbd/buffers.c — data buffers of READ replies and WRITE payloads.
 *
 * A buffer of 64 KiB or more is a fresh mmap for malloc, so every large request would
 * fault its pages in and zero them (about a third of the server's CPU time for 1 MiB
 * reads). Such buffers are rounded up to a power of two and kept when freed, in one
 * small cache for the whole process: at most NBD_BUF_CACHE_COUNT buffers of at most
 * NBD_BUF_CACHE_MAX bytes, NBD_BUF_CACHE_BYTES in all (docs/security.md, NBD buffers).
 * Smaller buffers come from malloc's heap, which reuses them anyway. Any thread.
 */
#include <stdlib.h>

#include "nbd/internal.h"

#define BUF_ALIGN 4096
#define CACHE_MIN (64u * 1024)

static GMutex cache_lock;
static void *cache_ptr[NBD_BUF_CACHE_COUNT];     /* under cache_lock */
static size_t cache_cap[NBD_BUF_CACHE_COUNT];
static size_t cache_bytes;

/* The size a buffer of len bytes is allocated with. */
static size_t buf_cap(size_t len)
{
    if (len < CACHE_MIN || len > NBD_BUF_CACHE_MAX) {
        return MAX(len, (size_t)BUF_ALIGN);
    }
    size_t cap = CACHE_MIN;
    while (cap < len) {
        cap *= 2;
    }
    return cap;
}

void *nbd_buf_new(size_t len)
{
    size_t cap = buf_cap(len);
    void *p = NULL;

    if (cap >= CACHE_MIN && cap <= NBD_BUF_CACHE_MAX) {
        g_mutex_lock(&cache_lock);
        for (guint i = 0; i < NBD_BUF_CACHE_COUNT; i++) {
            if (cache_ptr[i] != NULL && cache_cap[i] == cap) {
                p = cache_ptr[i];
                cache_ptr[i] = NULL;
                cache_bytes -= cap;
                break;
            }
        }
        g_mutex_unlock(&cache_lock);
        if (p != NULL) {
            return p;
        }
    }
    if (posix_memalign(&p, BUF_ALIGN, cap) != 0) {
        return NULL;
    }
    return p;
}

void nbd_buf_free(void *p, size_t len)
{
    size_t cap = buf_cap(len);

    if (p == NULL) {
        return;
    }
    if (cap >= CACHE_MIN && cap <= NBD_BUF_CACHE_MAX) {
        g_mutex_lock(&cache_lock);
        if (cache_bytes + cap <= NBD_BUF_CACHE_BYTES) {
            for (guint i = 0; i < NBD_BUF_CACHE_COUNT; i++) {
                if (cache_ptr[i] == NULL) {
                    cache_ptr[i] = p;
                    cache_cap[i] = cap;
                    cache_bytes += cap;
                    p = NULL;
                    break;
                }
            }
        }
        g_mutex_unlock(&cache_lock);
    }
    free(p);
}

void nbd_buf_cache_clear(void)
{
    g_mutex_lock(&cache_lock);
    for (guint i = 0; i < NBD_BUF_CACHE_COUNT; i++) {
        free(cache_ptr[i]);
        cache_ptr[i] = NULL;
    }
    cache_bytes = 0;
    g_mutex_unlock(&cache_lock);
}
