/*
 * vma-common.c — small pieces of the archive library shared by reader, writer and the
 * programs: the error domain, cluster buffers, zero detection and uuid text.
 *
 * Zero detection runs on every cluster a backup or `vma create` copies, so it is
 * word-wise: an unaligned head byte by byte, then 64 bytes per step as eight 64-bit
 * words OR-ed together (the compiler vectorises this loop), then the tail.
 */
#include <stdlib.h>
#include <string.h>

#include <uuid/uuid.h>

#include "vma.h"

G_DEFINE_QUARK(vma-error-quark, vma_error)

void *vma_cluster_alloc(void)
{
    void *buf = NULL;

    if (posix_memalign(&buf, VMA_BLOCK_SIZE, VMA_CLUSTER_SIZE) != 0) {
        g_error("out of memory allocating a %u-byte cluster buffer", VMA_CLUSTER_SIZE);
    }
    return buf;
}

void vma_cluster_free(void *buf)
{
    free(buf);
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
