/*
 * vma-index.c — random access to one device of an uncompressed archive file (and its
 * chain of older archives): an index of where each cluster's blocks lie in the file,
 * reads answered with pread, block status from the block masks. The `vma` block driver
 * of vmad (block/vma.c) is a thin layer over this.
 *
 * Design notes
 * * Open = one pass over the extent headers, seeking over the data. The archive header
 *   is parsed and checked by the stream reader (vma-reader.c: magic, MD5, version,
 *   blobs, names); then every 512-byte extent header is read with pread (through a
 *   64 KiB window, so runs of data-less extents cost one read), checked in the reader's
 *   order — MD5, uuid, magic, reserved bytes, block_count = the popcount of the masks,
 *   every dev_id known, every cluster within its device, no duplicate of our device's
 *   clusters — and the data that follows is skipped: the masks say where each stored
 *   block of each cluster lies. The format has no checksum over data (docs/vma-format.md
 *   section 1), so the data is never read at open: a damaged header or extent header
 *   fails the open; flipped data bits cannot be detected by anyone, `vma verify`
 *   included. Every cluster of the device must be present (in a chain: in some archive
 *   of it), else the open fails ("detected missing cluster").
 * * Seekable, uncompressed input only: a pipe or a compressed archive is refused with a
 *   message that says how to decompress it. The archive is opened once more for the
 *   header parse (the stream reader's read-ahead stays off our descriptor); both opens
 *   must be the same inode.
 * * The index of a device is a two-level table keyed by cluster number. The top level
 *   has one word per chunk of CHUNK_CLUSTERS (512) clusters = 32 MiB of device: 0 (no
 *   cluster seen yet), a tag "all zero, complete, from archive k", or a pointer to a
 *   Chunk of 512 entries of 8 bytes: mask (16 bits), archive number in the chain (8),
 *   data offset in that archive / 512 (40 bits; data offsets are multiples of 512 since
 *   header_size is, so archives up to 512 TiB). Entry 0 = cluster not seen (a present
 *   cluster has a data offset past the header, even with mask 0). A chunk whose
 *   clusters are all present and all zero is freed at once and replaced by the tag, so
 *   an empty region costs nothing beyond its top-level word.
 *   Memory: 8 bytes per 32 MiB of device (top level, allocated zeroed, so untouched
 *   pages of a huge sparse device cost nothing) plus 4 KiB for each 32 MiB region that
 *   holds a stored block: at most 8 bytes per cluster (1/8192 of the data served,
 *   128 MiB per TiB). While indexing, a region also holds a chunk until it is complete.
 *   Hostile archives: chunk memory is capped at 64 MiB + 1/64 of the archives' sizes
 *   (legitimate archives need at most 1/512 of theirs: a chunk is kept only for a
 *   region with at least one 4 KiB stored block); past the cap the open fails.
 * * Chains: archive 0 is the newest. Archives are indexed newest first and an entry is
 *   set only where none is, so the newest archive holding a cluster wins. The chain is
 *   linked by uuid (vmabackup-chain.conf, CHAIN-SPEC): each delta names its base's
 *   uuid, which must be one of the given base archives; every given base must be used,
 *   and the last must be a full archive.
 * * Reads walk the request 4 KiB block by block and merge runs: zero blocks become one
 *   memset, stored blocks whose file offsets follow each other (consecutive blocks of a
 *   cluster, consecutive clusters of an extent) become one preadv. After open the index
 *   is immutable: any number of threads may read at once.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vma-format.h"
#include "vma-input.h"
#include "vma-internal.h"
#include "vma.h"
#include "util/fd.h"
#include "util/io.h"

#define CHUNK_CLUSTERS 512u
#define SCAN_WINDOW (64u << 10)
#define MAX_ARCHIVES 255u                          /* the 8-bit archive number */
#define MAX_DATA_OFFSET (UINT64_C(1) << 49)        /* 40 bits of 512-byte units */
#define CHUNK_BUDGET_BASE ((size_t)64 << 20)
#define READ_IOV_BATCH 64

typedef struct Chunk {
    uint16_t present;                              /* entries != 0 */
    uint16_t data;                                 /* entries with mask != 0 */
    uint64_t e[CHUNK_CLUSTERS];
} Chunk;

typedef struct IndexArchive {
    char *path;
    int fd;
    uint64_t file_size;
    uint32_t header_size;
    uint8_t uuid[16];
    uint8_t dev_id;                                /* our device in this archive */
    uint64_t dev_clusters[256];                    /* clusters of each device, 0 = none */
    bool dev_vmstate[256];
    char *dev_names[256];                          /* NULL = no device */
    uint64_t dev_sizes[256];
    VmaChainInfo chain;
} IndexArchive;

struct VmaIndex {
    char *devname;
    uint64_t size;
    uint64_t clusters;
    IndexArchive *arch;                            /* [0] newest */
    guint narch;
    uintptr_t *top;                                /* nchunks words: 0, tag, Chunk * */
    uint64_t nchunks;
    size_t chunk_bytes;
    size_t chunk_budget;
};

static inline uint64_t entry_pack(uint64_t data_off, unsigned arch, uint16_t mask)
{
    return (data_off >> 9) << 24 | (uint64_t)arch << 16 | mask;
}

static inline uint16_t entry_mask(uint64_t e)
{
    return (uint16_t)e;
}

static inline unsigned entry_arch(uint64_t e)
{
    return (unsigned)(e >> 16) & 0xffu;
}

static inline uint64_t entry_offset(uint64_t e)
{
    return (e >> 24) << 9;
}

static inline bool top_is_zero(uintptr_t t)
{
    return (t & 1u) != 0;
}

static inline uintptr_t top_zero_tag(unsigned arch)
{
    return (uintptr_t)arch << 1 | 1u;
}

static uint64_t chunk_len(const VmaIndex *ix, uint64_t ci)
{
    return MIN((uint64_t)CHUNK_CLUSTERS, ix->clusters - ci * CHUNK_CLUSTERS);
}

/* ---- opening one archive --------------------------------------------------------- */

static const char *decompress_hint(VmaCompression c)
{
    switch (c) {
    case VMA_COMPRESSION_ZSTD:
        return "zstd -d";
    case VMA_COMPRESSION_GZIP:
        return "gzip -d";
    case VMA_COMPRESSION_LZOP:
        return "lzop -d";
    case VMA_COMPRESSION_BZIP2:
        return "bzip2 -d";
    case VMA_COMPRESSION_NONE:
        break;
    }
    return "";
}

/* A compressed archive: refuse it, naming the tool that undoes it. Called when the file
 * does not start with the VMA magic. */
static bool refuse_if_compressed(const char *path, GError **errp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return true;                               /* the reader will say why */
    }
    g_autoptr(VmaInput) in = vma_input_new(fd, path, NULL);
    if (in == NULL || vma_input_get_compression(in) == VMA_COMPRESSION_NONE) {
        return true;
    }
    VmaCompression c = vma_input_get_compression(in);
    g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                "%s: the archive is compressed (%s): random access needs an uncompressed "
                "archive, decompress it first (%s %s)", path, vma_compression_name(c),
                decompress_hint(c), path);
    return false;
}

static bool archive_open(IndexArchive *a, const char *path, GError **errp)
{
    struct stat st, st2;
    uint8_t magic[4];
    size_t got = 0;

    a->path = g_strdup(path);
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below) */
    a->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (a->fd < 0) {
        int err = errno;
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "open %s: %s", path, g_strerror(err));
        return false;
    }
    if (fstat(a->fd, &st) < 0) {
        int err = errno;
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "%s: %s", path, g_strerror(err));
        return false;
    }
    if (S_ISREG(st.st_mode)) {
        a->file_size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        if (ioctl(a->fd, BLKGETSIZE64, &a->file_size) < 0) {
            int err = errno;
            g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "%s: cannot get the device size: %s",
                        path, g_strerror(err));
            return false;
        }
    } else {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "%s: not a regular file or block device: random access needs a "
                    "seekable, uncompressed archive (save the stream to a file first, "
                    "decompressing it if it is compressed)", path);
        return false;
    }
    (void)fcntl(a->fd, F_SETFL, fcntl(a->fd, F_GETFL) & ~O_NONBLOCK);
    int r = full_pread_upto(a->fd, magic, sizeof(magic), 0, &got);
    if (r < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "read %s: %s", path, g_strerror(-r));
        return false;
    }
    if ((got < sizeof(magic) || memcmp(magic, VMA_MAGIC, 4) != 0) &&
        !refuse_if_compressed(path, errp)) {
        return false;
    }

    /* The header through the stream reader, on its own open of the same file. */
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rfd < 0) {
        int err = errno;
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "open %s: %s", path, g_strerror(err));
        return false;
    }
    if (fstat(rfd, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
        close_fd(&rfd);
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "%s: the file was replaced while opening",
                    path);
        return false;
    }
    g_autoptr(VmaReader) rd = vma_reader_open_fd(rfd, path, errp);
    if (rd == NULL) {
        return false;
    }
    if (vma_reader_get_compression(rd) != VMA_COMPRESSION_NONE) {
        VmaCompression c = vma_reader_get_compression(rd);
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "%s: the archive is compressed (%s): decompress it first (%s %s)", path,
                    vma_compression_name(c), decompress_hint(c), path);
        return false;
    }
    VmaReaderStats stats;
    vma_reader_get_stats(rd, &stats);
    /* right after open the reader has consumed exactly the header */
    if (stats.archive_bytes % 512 != 0 || stats.archive_bytes > a->file_size) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: header size %" G_GUINT64_FORMAT " is not a multiple of 512", path,
                    stats.archive_bytes);
        return false;
    }
    a->header_size = (uint32_t)stats.archive_bytes;
    vma_reader_get_uuid(rd, a->uuid);
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *d = vma_reader_get_device(rd, id);
        if (d != NULL) {
            a->dev_clusters[id] = MAX((d->size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE, 1);
            a->dev_vmstate[id] = d->is_vmstate;
            a->dev_names[id] = g_strdup(d->name);
            a->dev_sizes[id] = d->size;
        }
    }
    return vma_chain_info_from_reader(rd, &a->chain, errp);
}

/* The device devname of archive a: its dev_id and size. */
static bool archive_find_device(IndexArchive *a, const char *devname, uint64_t *size,
                                GError **errp)
{
    g_autoptr(GString) names = g_string_new(NULL);

    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const char *name = a->dev_names[id];
        if (name == NULL) {
            continue;
        }
        if (strcmp(name, devname) == 0) {
            if (a->dev_vmstate[id]) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                            "%s: %s is the VM state stream, not a disk", a->path, devname);
                return false;
            }
            a->dev_id = (uint8_t)id;
            *size = a->dev_sizes[id];
            return true;
        }
        if (!a->dev_vmstate[id]) {
            g_string_append_printf(names, "%s%s", names->len ? ", " : "", name);
        }
    }
    g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "%s: no device %s (its devices: %s)",
                a->path, devname, names->len ? names->str : "none");
    return false;
}

static void archive_clear(IndexArchive *a)
{
    close_fd(&a->fd);
    g_free(a->path);
    for (guint id = 0; id < G_N_ELEMENTS(a->dev_names); id++) {
        g_free(a->dev_names[id]);
    }
    vma_chain_info_clear(&a->chain);
}

/* ---- indexing -------------------------------------------------------------------- */

static bool add_entry(VmaIndex *ix, unsigned k, uint32_t cluster, uint64_t e,
                      uint64_t ext_off, GError **errp)
{
    uint64_t ci = cluster / CHUNK_CLUSTERS;
    unsigned j = cluster % CHUNK_CLUSTERS;
    uintptr_t t = ix->top[ci];
    const IndexArchive *a = &ix->arch[k];
    Chunk *c;

    if (top_is_zero(t)) {
        if ((t >> 1) == k) {
            goto duplicate;
        }
        return true;                               /* a newer archive holds it */
    }
    c = (Chunk *)t;
    if (c == NULL) {
        if (ix->chunk_bytes + sizeof(Chunk) > ix->chunk_budget) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: extent at byte %" G_GUINT64_FORMAT ": the index of %s would "
                        "take more than %zu MiB (clusters scattered over too many regions)",
                        a->path, ext_off, ix->devname, ix->chunk_budget >> 20);
            return false;
        }
        c = g_new0(Chunk, 1);
        ix->top[ci] = (uintptr_t)c;
        ix->chunk_bytes += sizeof(Chunk);
    }
    if (c->e[j] != 0) {
        if (entry_arch(c->e[j]) == k) {
            goto duplicate;
        }
        return true;
    }
    c->e[j] = e;
    c->present++;
    if (entry_mask(e) != 0) {
        c->data++;
    }
    if (c->present == chunk_len(ix, ci) && c->data == 0) {
        g_free(c);
        ix->chunk_bytes -= sizeof(Chunk);
        ix->top[ci] = top_zero_tag(k);
    }
    return true;

duplicate:
    g_set_error(errp, VMA_ERROR, VMA_ERROR_DUPLICATE,
                "%s: extent at byte %" G_GUINT64_FORMAT ": found duplicated cluster %u for "
                "stream %s", a->path, ext_off, cluster, ix->devname);
    return false;
}

/* Check the extent header at hdr (archive offset off) and index its entries. Returns
 * the extent's data length, or -1. */
static int64_t index_extent(VmaIndex *ix, unsigned k, uint8_t *hdr, uint64_t off,
                            GError **errp)
{
    IndexArchive *a = &ix->arch[k];
    const VmaExtentHeader *eh = (const VmaExtentHeader *)hdr;

    if (!vma_extent_header_check(hdr, a->uuid, a->path, off, errp)) {
        return -1;
    }

    uint64_t blocks = 0;
    uint64_t bi[VMA_EXTENT_SLOTS];
    for (unsigned i = 0; i < VMA_EXTENT_SLOTS; i++) {
        bi[i] = GUINT64_FROM_BE(eh->blockinfo[i]);
        uint8_t dev_id = vma_blockinfo_dev_id(bi[i]);
        uint32_t num = vma_blockinfo_cluster(bi[i]);
        if (dev_id == 0) {
            continue;
        }
        if (vma_blockinfo_reserved(bi[i]) != 0) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: extent at byte %" G_GUINT64_FORMAT
                        ": entry %u: reserved byte is not zero", a->path, off, i);
            return -1;
        }
        if (a->dev_clusters[dev_id] == 0) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: extent at byte %" G_GUINT64_FORMAT ": unknown device id %u",
                        a->path, off, dev_id);
            return -1;
        }
        if (!a->dev_vmstate[dev_id] && num >= a->dev_clusters[dev_id]) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: extent at byte %" G_GUINT64_FORMAT
                        ": cluster %u of dev_id %u is beyond the device size", a->path, off,
                        num, dev_id);
            return -1;
        }
        blocks += (unsigned)__builtin_popcount(vma_blockinfo_mask(bi[i]));
    }
    if (blocks != GUINT16_FROM_BE(eh->block_count)) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: extent at byte %" G_GUINT64_FORMAT
                    ": block count %u does not match the %" G_GUINT64_FORMAT
                    " blocks of its entries", a->path, off, GUINT16_FROM_BE(eh->block_count),
                    blocks);
        return -1;
    }
    uint64_t data_len = blocks * VMA_BLOCK_SIZE;
    uint64_t data_off = off + VMA_EXTENT_HEADER_SIZE;
    if (data_off + data_len > a->file_size) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_TRUNCATED,
                    "%s: extent at byte %" G_GUINT64_FORMAT ": short vma extent (%"
                    G_GUINT64_FORMAT " < %" G_GUINT64_FORMAT ")", a->path, off,
                    a->file_size - off, data_len + VMA_EXTENT_HEADER_SIZE);
        return -1;
    }
    if (data_off + data_len > MAX_DATA_OFFSET) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: archives larger than 512 TiB cannot be indexed", a->path);
        return -1;
    }
    for (unsigned i = 0; i < VMA_EXTENT_SLOTS; i++) {
        uint16_t mask = vma_blockinfo_mask(bi[i]);
        if (vma_blockinfo_dev_id(bi[i]) == a->dev_id &&
            !add_entry(ix, k, vma_blockinfo_cluster(bi[i]), entry_pack(data_off, k, mask),
                       off, errp)) {
            return -1;
        }
        if (vma_blockinfo_dev_id(bi[i]) != 0) {
            data_off += (uint64_t)__builtin_popcount(mask) * VMA_BLOCK_SIZE;
        }
    }
    return (int64_t)data_len;
}

/* One pass over the extent headers of archive k. */
static bool index_archive(VmaIndex *ix, unsigned k, GError **errp)
{
    IndexArchive *a = &ix->arch[k];
    g_autofree uint8_t *win = g_malloc(SCAN_WINDOW);
    uint64_t win_off = 0;
    size_t win_len = 0;
    uint64_t off = a->header_size;

    while (off < a->file_size) {
        if (off < win_off || off + VMA_EXTENT_HEADER_SIZE > win_off + win_len) {
            size_t want = (size_t)MIN((uint64_t)SCAN_WINDOW, a->file_size - off);
            int r = full_pread_upto(a->fd, win, want, off, &win_len);
            if (r < 0) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_IO,
                            "read %s at byte %" G_GUINT64_FORMAT ": %s", a->path, off,
                            g_strerror(-r));
                return false;
            }
            win_off = off;
            if (win_len < VMA_EXTENT_HEADER_SIZE) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_TRUNCATED,
                            "%s: extent at byte %" G_GUINT64_FORMAT
                            ": short extent header (%zu < %d bytes)", a->path, off, win_len,
                            VMA_EXTENT_HEADER_SIZE);
                return false;
            }
        }
        uint8_t hdr[VMA_EXTENT_HEADER_SIZE];
        memcpy(hdr, win + (off - win_off), sizeof(hdr));
        int64_t data_len = index_extent(ix, k, hdr, off, errp);
        if (data_len < 0) {
            return false;
        }
        off += VMA_EXTENT_HEADER_SIZE + (uint64_t)data_len;
    }
    return true;
}

/* After every archive: each cluster must be present in one of them. */
static bool check_complete(VmaIndex *ix, GError **errp)
{
    for (uint64_t ci = 0; ci < ix->nchunks; ci++) {
        uintptr_t t = ix->top[ci];
        uint64_t first = ci * CHUNK_CLUSTERS;
        if (top_is_zero(t)) {
            continue;
        }
        const Chunk *c = (const Chunk *)t;
        if (c != NULL && c->present == chunk_len(ix, ci)) {
            continue;
        }
        for (unsigned j = 0; c != NULL && j < CHUNK_CLUSTERS && c->e[j] != 0; j++) {
            first++;
        }
        g_set_error(errp, VMA_ERROR, VMA_ERROR_MISSING,
                    "%s: detected missing cluster %" G_GUINT64_FORMAT " for stream %s",
                    ix->arch[ix->narch - 1].path, first, ix->devname);
        return false;
    }
    return true;
}

/* Order the given archives as a chain: arch[0] is the newest (the one opened), each
 * next one the base its predecessor names by uuid. */
static bool resolve_chain(VmaIndex *ix, GError **errp)
{
    char want[37], have[37];

    for (guint k = 0; k < ix->narch; k++) {
        IndexArchive *a = &ix->arch[k];
        if (a->chain.kind == VMA_CHAIN_FULL) {
            if (k + 1 < ix->narch) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                            "%s is a full archive: base archive %s is not part of the chain",
                            a->path, ix->arch[k + 1].path);
                return false;
            }
            return true;
        }
        vma_uuid_unparse(a->chain.base_uuid, want);
        guint found = ix->narch;
        for (guint m = k + 1; m < ix->narch; m++) {
            if (memcmp(ix->arch[m].uuid, a->chain.base_uuid, 16) == 0) {
                found = m;
                break;
            }
        }
        if (found == ix->narch) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                        "%s is %s relative to archive %s, which is not among the base "
                        "archives given", a->path, vma_chain_kind_name(a->chain.kind), want);
            return false;
        }
        if (found != k + 1) {
            IndexArchive tmp = ix->arch[k + 1];
            ix->arch[k + 1] = ix->arch[found];
            ix->arch[found] = tmp;
        }
        vma_uuid_unparse(ix->arch[k + 1].uuid, have);
        assert(strcmp(want, have) == 0);
    }
    g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                "%s: the chain ends in a delta archive: give its full base archive too",
                ix->arch[ix->narch - 1].path);
    return false;
}

VmaIndex *vma_index_open(const char *path, const char *devname, const char *const *base,
                         GError **errp)
{
    g_autoptr(VmaIndex) ix = g_new0(VmaIndex, 1);
    guint nbase = base != NULL ? g_strv_length((char **)base) : 0;

    if (nbase + 1 > MAX_ARCHIVES) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "%s: at most %u base archives",
                    path, MAX_ARCHIVES - 1);
        return NULL;
    }
    ix->devname = g_strdup(devname);
    ix->arch = g_new0(IndexArchive, nbase + 1);
    for (guint k = 0; k < nbase + 1; k++) {
        ix->arch[k].fd = -1;
    }
    ix->narch = nbase + 1;
    uint64_t total_size = 0;
    for (guint k = 0; k < ix->narch; k++) {
        if (!archive_open(&ix->arch[k], k == 0 ? path : base[k - 1], errp)) {
            return NULL;
        }
        total_size += ix->arch[k].file_size;
    }
    if (!resolve_chain(ix, errp)) {
        return NULL;
    }
    for (guint k = 0; k < ix->narch; k++) {
        uint64_t size;
        if (!archive_find_device(&ix->arch[k], devname, &size, errp)) {
            return NULL;
        }
        if (k == 0) {
            ix->size = size;
        } else if (size != ix->size) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: device %s has size %" G_GUINT64_FORMAT " in %s but %"
                        G_GUINT64_FORMAT " in its base %s", path, devname, ix->size, path,
                        size, ix->arch[k].path);
            return NULL;
        }
    }
    ix->clusters = (ix->size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
    ix->nchunks = (ix->clusters + CHUNK_CLUSTERS - 1) / CHUNK_CLUSTERS;
    ix->top = g_new0(uintptr_t, ix->nchunks);
    ix->chunk_budget = CHUNK_BUDGET_BASE + (size_t)(total_size / 64);
    for (guint k = 0; k < ix->narch; k++) {
        if (!index_archive(ix, k, errp)) {
            return NULL;
        }
    }
    if (!check_complete(ix, errp)) {
        return NULL;
    }
    return g_steal_pointer(&ix);
}

void vma_index_free(VmaIndex *ix)
{
    if (ix == NULL) {
        return;
    }
    for (uint64_t ci = 0; ix->top != NULL && ci < ix->nchunks; ci++) {
        if (!top_is_zero(ix->top[ci])) {
            g_free((Chunk *)ix->top[ci]);
        }
    }
    g_free(ix->top);
    for (guint k = 0; ix->arch != NULL && k < ix->narch; k++) {
        archive_clear(&ix->arch[k]);
    }
    g_free(ix->arch);
    g_free(ix->devname);
    g_free(ix);
}

uint64_t vma_index_get_size(VmaIndex *ix)
{
    return ix->size;
}

size_t vma_index_get_memory(VmaIndex *ix)
{
    return sizeof(*ix) + ix->narch * sizeof(IndexArchive) +
           (size_t)ix->nchunks * sizeof(uintptr_t) + ix->chunk_bytes;
}

guint vma_index_get_archive_count(VmaIndex *ix)
{
    return ix->narch;
}

/* ---- reads ----------------------------------------------------------------------- */

/* The mask of cluster cl and, if it has stored blocks, its entry. */
static inline uint16_t cluster_entry(const VmaIndex *ix, uint64_t cl, uint64_t *entry)
{
    uintptr_t t = ix->top[cl / CHUNK_CLUSTERS];

    assert(t != 0);                                /* open checked completeness */
    if (top_is_zero(t)) {
        *entry = 0;
        return 0;
    }
    *entry = ((const Chunk *)t)->e[cl % CHUNK_CLUSTERS];
    return entry_mask(*entry);
}

/* Where 4 KiB block blk lies: its file offset (with *arch), or 0 for a zero block. */
static inline uint64_t block_offset(const VmaIndex *ix, uint64_t blk, unsigned *arch)
{
    uint64_t e;
    uint16_t mask = cluster_entry(ix, blk / VMA_BLOCKS_PER_CLUSTER, &e);
    unsigned j = blk % VMA_BLOCKS_PER_CLUSTER;

    if ((mask & (1u << j)) == 0) {
        return 0;
    }
    *arch = entry_arch(e);
    return entry_offset(e) +
           (uint64_t)__builtin_popcount(mask & ((1u << j) - 1)) * VMA_BLOCK_SIZE;
}

static void iov_zero(struct iovec **iov, int *cnt, size_t n)
{
    size_t left = n;

    for (int i = 0; left > 0 && i < *cnt; i++) {
        size_t l = MIN(left, (*iov)[i].iov_len);
        memset((*iov)[i].iov_base, 0, l);
        left -= l;
    }
    iov_consume(iov, cnt, n);
}

/* n bytes at file offset foff of archive arch into the front of *iov. */
static int iov_read(const VmaIndex *ix, unsigned arch, uint64_t foff, struct iovec **iov,
                    int *cnt, size_t n)
{
    while (n > 0) {
        struct iovec batch[READ_IOV_BATCH];
        int bn = 0;
        size_t blen = 0;
        for (int i = 0; i < *cnt && bn < READ_IOV_BATCH && blen < n; i++) {
            size_t l = MIN(n - blen, (*iov)[i].iov_len);
            batch[bn++] = (struct iovec){ (*iov)[i].iov_base, l };
            blen += l;
        }
        size_t done = 0;
        int r = full_preadv_upto(ix->arch[arch].fd, batch, bn, foff, &done);
        if (r < 0) {
            return r;
        }
        if (done < blen) {
            return -EIO;                           /* the archive shrank */
        }
        iov_consume(iov, cnt, blen);
        foff += blen;
        n -= blen;
    }
    return 0;
}

int vma_index_preadv(VmaIndex *ix, const struct iovec *iov_in, int iovcnt, uint64_t offset)
{
    struct iovec stack_iov[16];
    g_autofree struct iovec *heap_iov = NULL;
    struct iovec *iov = stack_iov;
    uint64_t len = 0;

    if (iovcnt < 0) {
        return -EINVAL;
    }
    if ((size_t)iovcnt > G_N_ELEMENTS(stack_iov)) {
        iov = heap_iov = g_new(struct iovec, iovcnt);
    }
    for (int i = 0; i < iovcnt; i++) {
        iov[i] = iov_in[i];
        len += iov_in[i].iov_len;
    }
    if (offset > ix->size || len > ix->size - offset) {
        return -EINVAL;
    }
    int cnt = iovcnt;
    uint64_t pos = offset, end = offset + len;
    while (pos < end) {
        unsigned arch = 0, arch2 = 0;
        uint64_t blk = pos / VMA_BLOCK_SIZE;
        uint64_t foff = block_offset(ix, blk, &arch);
        uint64_t start = foff != 0 ? foff + pos % VMA_BLOCK_SIZE : 0;
        uint64_t run_end = MIN(end, (blk + 1) * VMA_BLOCK_SIZE);

        while (run_end < end) {
            uint64_t f2 = block_offset(ix, run_end / VMA_BLOCK_SIZE, &arch2);
            if (foff == 0 ? f2 != 0
                          : f2 != start + (run_end - pos) || arch2 != arch) {
                break;
            }
            run_end = MIN(end, run_end + VMA_BLOCK_SIZE);
        }
        size_t n = (size_t)(run_end - pos);
        if (foff == 0) {
            iov_zero(&iov, &cnt, n);
        } else {
            int r = iov_read(ix, arch, start, &iov, &cnt, n);
            if (r < 0) {
                return r;
            }
        }
        pos = run_end;
    }
    return 0;
}

int vma_index_block_status(VmaIndex *ix, uint64_t offset, uint64_t len, uint64_t *pnum,
                           bool *is_zero)
{
    if (offset > ix->size || len > ix->size - offset || len == 0) {
        return -EINVAL;
    }
    uint64_t end = offset + len;
    unsigned arch;
    bool zero = block_offset(ix, offset / VMA_BLOCK_SIZE, &arch) == 0;
    uint64_t pos = (offset / VMA_BLOCK_SIZE + 1) * VMA_BLOCK_SIZE;

    while (pos < end) {
        uint64_t cl = pos / VMA_CLUSTER_SIZE;
        uintptr_t t = ix->top[cl / CHUNK_CLUSTERS];
        uint64_t e;
        if (top_is_zero(t) && pos % ((uint64_t)CHUNK_CLUSTERS * VMA_CLUSTER_SIZE) == 0) {
            if (!zero) {
                break;
            }
            pos += (uint64_t)CHUNK_CLUSTERS * VMA_CLUSTER_SIZE;
            continue;
        }
        uint16_t mask = cluster_entry(ix, cl, &e);
        if (pos % VMA_CLUSTER_SIZE == 0 && (mask == 0 || mask == 0xffff)) {
            if (zero != (mask == 0)) {
                break;
            }
            pos += VMA_CLUSTER_SIZE;
            continue;
        }
        unsigned j = (pos / VMA_BLOCK_SIZE) % VMA_BLOCKS_PER_CLUSTER;
        if (zero != ((mask & (1u << j)) == 0)) {
            break;
        }
        pos += VMA_BLOCK_SIZE;
    }
    *pnum = MIN(pos, end) - offset;
    *is_zero = zero;
    return 0;
}
