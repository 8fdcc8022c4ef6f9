/*
 * vma-common.c — small pieces of the archive library shared by reader, writer and the
 * programs: the error domain, cluster buffers, zero detection, uuid text, and the rule
 * for names stored in an archive (vma_check_name: what extract refuses, writers refuse).
 *
 * Zero detection runs on every cluster a backup or `vma create` copies, so it is
 * word-wise: an unaligned head byte by byte, then 64 bytes per step as eight 64-bit
 * words OR-ed together (the compiler vectorises this loop), then the tail.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <uuid/uuid.h>

#include "vma-format.h"
#include "vma-internal.h"
#include "vma.h"

G_DEFINE_QUARK(vma-error-quark, vma_error)

/*
 * Cluster buffers. A 64 KiB block aligned to 4096 from posix_memalign costs glibc 69,680
 * bytes, and freed ones are almost never reused for the next request: a backup that
 * churns through clusters grew vmad's heap to twice the data it held (measured: 529 MB
 * taken from the system for 275 MB in use, bench/README.md). So buffers come from mmap
 * (page-aligned, returned to the system on munmap) through a small free list that serves
 * the steady state without system calls and bounds what is kept idle to
 * CLUSTER_POOL_MAX buffers. Sanitizer builds use the heap instead, so that
 * AddressSanitizer still sees overruns and leaks of cluster buffers.
 */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define VMA_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(VMA_SANITIZED)
#define CLUSTER_POOL_MAX 0
#else
#define CLUSTER_POOL_MAX 512 /* 32 MiB kept idle at most */
#endif

static GMutex pool_lock;             /* protects pool and pool_len */
static void *pool[CLUSTER_POOL_MAX + 1];
static unsigned pool_len;

void *vma_cluster_alloc(void)
{
    void *buf = NULL;

    if (CLUSTER_POOL_MAX == 0) {
        if (posix_memalign(&buf, VMA_BLOCK_SIZE, VMA_CLUSTER_SIZE) != 0) {
            g_error("out of memory allocating a %u-byte cluster buffer", VMA_CLUSTER_SIZE);
        }
        return buf;
    }
    g_mutex_lock(&pool_lock);
    if (pool_len > 0) {
        buf = pool[--pool_len];
    }
    g_mutex_unlock(&pool_lock);
    if (buf == NULL) {
        buf = mmap(NULL, VMA_CLUSTER_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
        if (buf == MAP_FAILED) {
            g_error("out of memory allocating a %u-byte cluster buffer: %s", VMA_CLUSTER_SIZE,
                    g_strerror(errno));
        }
    }
    return buf;
}

void vma_cluster_free(void *buf)
{
    if (buf == NULL) {
        return;
    }
#if CLUSTER_POOL_MAX == 0
    /* (preprocessed out, not just dead: "pool_len < 0" would be a -Wtype-limits error) */
    free(buf);
#else
    g_mutex_lock(&pool_lock);
    if (pool_len < CLUSTER_POOL_MAX) {
        pool[pool_len++] = buf;
        buf = NULL;
    }
    g_mutex_unlock(&pool_lock);
    if (buf != NULL) {
        munmap(buf, VMA_CLUSTER_SIZE);
    }
#endif
}

bool vma_buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    while (len > 0 && ((uintptr_t)p & (sizeof(uint64_t) - 1)) != 0) {
        if (*p != 0) {
            return false;
        }
        p++;
        len--;
    }
    while (len >= 64) {
        const uint64_t *w = (const uint64_t *)(const void *)p;
        if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) {
            return false;
        }
        p += 64;
        len -= 64;
    }
    while (len >= sizeof(uint64_t)) {
        if (*(const uint64_t *)(const void *)p != 0) {
            return false;
        }
        p += sizeof(uint64_t);
        len -= sizeof(uint64_t);
    }
    while (len > 0) {
        if (*p != 0) {
            return false;
        }
        p++;
        len--;
    }
    return true;
}

uint16_t vma_cluster_zero_mask(const void *cluster)
{
    const unsigned char *p = cluster;
    uint16_t mask = 0;

    for (unsigned i = 0; i < VMA_BLOCKS_PER_CLUSTER; i++) {
        if (!vma_buffer_is_zero(p + (size_t)i * VMA_BLOCK_SIZE, VMA_BLOCK_SIZE)) {
            mask |= (uint16_t)(1u << i);
        }
    }
    return mask;
}

void vma_uuid_unparse(const uint8_t uuid[16], char out[37])
{
    uuid_unparse_lower(uuid, out);
}

bool vma_check_name(const char *what, const char *name, GError **errp)
{
    const char *why = NULL;

    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            why = "contains a control character";
            break;
        }
    }
    if (why) {
        /* reported first: such a name could forge output lines */
    } else if (name[0] == '\0') {
        why = "empty name";
    } else if (strchr(name, '/')) {
        why = "contains '/'";
    } else if (strstr(name, "..")) {
        why = "contains '..'";
    } else if (name[0] == '.') {
        why = "starts with '.'";
    }
    if (why) {
        g_autofree char *shown = g_strescape(name, NULL);
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "refusing %s name \"%s\": %s (it must be a plain file name)", what, shown,
                    why);
        return false;
    }
    return true;
}

bool vma_check_disk_name(const char *name, GError **errp)
{
    if (strcmp(name, VMA_VMSTATE_NAME) == 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "refusing device name \"%s\": reserved for the VM state stream of an "
                    "archive (the disk would be stored and restored as VM state)", name);
        return false;
    }
    return vma_check_name("device", name, errp);
}

bool vma_extent_header_check(const uint8_t *hdr, const uint8_t uuid[16], const char *name,
                             uint64_t off, GError **errp)
{
    const VmaExtentHeader *eh = (const VmaExtentHeader *)hdr;
    uint8_t sum[16];

    vma_md5_excluding(hdr, VMA_EXTENT_HEADER_SIZE, VMA_EXTENT_MD5_OFFSET, sum);
    if (memcmp(sum, eh->md5sum, 16) != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_CHECKSUM,
                    "%s: extent at byte %" G_GUINT64_FORMAT ": wrong extent header checksum",
                    name, off);
        return false;
    }
    if (memcmp(eh->uuid, uuid, 16) != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: extent at byte %" G_GUINT64_FORMAT
                    ": uuid does not match the archive header", name, off);
        return false;
    }
    if (memcmp(eh->magic, VMA_EXTENT_MAGIC, 4) != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: extent at byte %" G_GUINT64_FORMAT ": wrong extent magic", name, off);
        return false;
    }
    if (eh->reserved1 != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: extent at byte %" G_GUINT64_FORMAT ": reserved field is not zero",
                    name, off);
        return false;
    }
    return true;
}
