/*
 * vma-format.h — the on-disk layout of a VMA archive, as packed structs.
 *
 * This header is internal to the archive library (vma-reader.c, vma-writer.c and their
 * unit tests); programs use include/vma.h only. docs/vma-format.md is the spec these
 * structs follow. Every multi-byte integer is big-endian on disk except the 2-byte
 * length prefix of each blob, which is little-endian; conversion happens only where
 * bytes are read or written (vma_hdr_* helpers below), never in the structs' users.
 */
#ifndef VMA_FORMAT_H
#define VMA_FORMAT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define VMA_MAGIC "VMA\0"            /* header magic, 4 bytes */
#define VMA_EXTENT_MAGIC "VMAE"      /* extent header magic, 4 bytes */
#define VMA_VERSION 1

#define VMA_HEADER_FIXED_SIZE 12288  /* fixed part; the blob region follows */
#define VMA_HEADER_MAX_SIZE 524288   /* the deployed writer refuses larger headers */
#define VMA_EXTENT_HEADER_SIZE 512
#define VMA_EXTENT_SLOTS 59          /* blockinfo entries per extent header */
#define VMA_WRITER_EXTENT_SLOTS 58   /* the deployed writer never fills slot 58 */
#define VMA_BLOB_ALIGN 512           /* the header grows in 512-byte steps */

/* Fixed part of the archive header, 12288 bytes. */
typedef struct __attribute__((packed)) VmaHeader {
    char magic[4];                   /* "VMA\0" */
    uint32_t version;                /* BE, must be 1 */
    uint8_t uuid[16];                /* raw uuid, repeated in every extent */
    int64_t ctime;                   /* BE, seconds since the epoch */
    uint8_t md5sum[16];              /* MD5 of [0, header_size) with this field zeroed */
    uint32_t blob_buffer_offset;     /* BE, start of the blob region, >= 12288 */
    uint32_t blob_buffer_size;       /* BE, blob bytes used, including unused byte 0 */
    uint32_t header_size;            /* BE, whole header, multiple of 512, > 12288 */
    uint8_t reserved1[1984];         /* zero */
    uint32_t config_names[256];      /* BE blob offsets of config names, 0 = unused */
    uint32_t config_data[256];       /* BE blob offsets of config data, 0 = unused */
    uint32_t reserved2;              /* zero */
    struct __attribute__((packed)) VmaDevInfo {
        uint32_t devname_ptr;        /* BE blob offset of the NUL-terminated name */
        uint32_t reserved;           /* zero */
        uint64_t size;               /* BE device size in bytes, 0 = unused slot */
        uint8_t reserved2[16];       /* zero */
    } dev_info[256];                 /* index = dev_id; 0 and 255 are never used */
} VmaHeader;

/* Extent header, 512 bytes, followed by block_count * 4096 data bytes. */
typedef struct __attribute__((packed)) VmaExtentHeader {
    char magic[4];                   /* "VMAE" */
    uint16_t reserved1;              /* zero */
    uint16_t block_count;            /* BE, 4 KiB blocks that follow = sum of popcounts */
    uint8_t uuid[16];                /* equal to the archive header's uuid */
    uint8_t md5sum[16];              /* MD5 of these 512 bytes with this field zeroed */
    uint64_t blockinfo[VMA_EXTENT_SLOTS]; /* BE: mask<<48 | dev_id<<32 | cluster_num */
} VmaExtentHeader;

_Static_assert(sizeof(VmaHeader) == VMA_HEADER_FIXED_SIZE, "VMA header is 12288 bytes");
_Static_assert(offsetof(VmaHeader, config_names) == 2044, "config_names at 2044");
_Static_assert(offsetof(VmaHeader, config_data) == 3068, "config_data at 3068");
_Static_assert(offsetof(VmaHeader, dev_info) == 4096, "dev_info at 4096");
_Static_assert(sizeof(struct VmaDevInfo) == 32, "dev_info entries are 32 bytes");
_Static_assert(sizeof(VmaExtentHeader) == VMA_EXTENT_HEADER_SIZE, "extent header is 512");
_Static_assert(offsetof(VmaExtentHeader, blockinfo) == 40, "blockinfo at 40");

/* blockinfo packing (host order value; convert with GUINT64_TO_BE at the boundary). */
static inline uint64_t vma_blockinfo_pack(uint16_t mask, uint8_t dev_id, uint32_t cluster)
{
    return ((uint64_t)mask << 48) | ((uint64_t)dev_id << 32) | cluster;
}

static inline uint16_t vma_blockinfo_mask(uint64_t bi)
{
    return (uint16_t)(bi >> 48);
}

static inline uint8_t vma_blockinfo_reserved(uint64_t bi)
{
    return (uint8_t)(bi >> 40);
}

static inline uint8_t vma_blockinfo_dev_id(uint64_t bi)
{
    return (uint8_t)(bi >> 32);
}

static inline uint32_t vma_blockinfo_cluster(uint64_t bi)
{
    return (uint32_t)bi;
}

#endif /* VMA_FORMAT_H */
