/*
 * vma-internal.h — helpers shared by the archive library's reader and writer (and their
 * unit tests); not part of the public API. Kept deliberately small.
 *
 * Both checksums of the format are MD5 over a byte range in which the 16-byte checksum
 * field itself counts as zeros: the archive header (field at offset 32, range
 * [0, header_size)) and each 512-byte extent header (field at offset 24).
 */
#ifndef VMA_INTERNAL_H
#define VMA_INTERNAL_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vma-format.h"

#define VMA_HEADER_MD5_OFFSET 32
#define VMA_EXTENT_MD5_OFFSET 24

/* MD5 of len bytes at buf, with the 16 bytes at md5_offset taken as zero (buf itself is
 * not modified, so a received header can be checked in place). */
static inline void vma_md5_excluding(const uint8_t *buf, size_t len, size_t md5_offset,
                                     uint8_t out[16])
{
    static const uint8_t zeros[16];
    GChecksum *ck = g_checksum_new(G_CHECKSUM_MD5);
    gsize out_len = 16;

    assert(md5_offset + 16 <= len);
    g_checksum_update(ck, buf, md5_offset);
    g_checksum_update(ck, zeros, sizeof(zeros));
    g_checksum_update(ck, buf + md5_offset + 16, len - md5_offset - 16);
    g_checksum_get_digest(ck, out, &out_len);
    g_checksum_free(ck);
}

/* The checks every reader of an extent header makes before looking at its entries: its
 * MD5 (over the 512 bytes with the sum taken as zero), the archive's uuid, the magic and
 * the reserved field. name and off only go into the messages. vma-common.c. */
bool vma_extent_header_check(const uint8_t *hdr, const uint8_t uuid[16], const char *name,
                             uint64_t off, GError **errp);

#endif /* VMA_INTERNAL_H */
