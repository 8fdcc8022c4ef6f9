/*
 * vma-reader.c — the VMA archive reader: header parsing, extent parsing and the checks
 * the format allows (docs: the format contract, sections 1-5).
 *
 * Design notes
 * * Stream-only. Bytes come from vma-input.c, which never seeks and undoes whole-stream
 *   compression; the reader sees the plain archive. Byte offsets in messages are
 *   offsets in that plain archive. Messages start with the archive's name.
 * * Open = read the 12288-byte fixed header, bound header_size (<= 524288) before
 *   allocating, read the rest, then check in the deployed tool's order: magic, MD5,
 *   version, header_size > 12288, blob_buffer_offset >= 12288, offset + size <=
 *   header_size. Blob pointers are resolved with every bound checked (pointer 0 is
 *   "none"; the LE u16 length must fit inside blob_buffer_size); names must end in NUL and
 *   hold no control byte (< 0x20, 0x7f: it would forge lines in listings).
 *   Configs and device names point into the header buffer, which lives as long as the
 *   reader.
 * * State machine of vma_reader_next_cluster(): HEADER_DONE -> (read extent: 512-byte
 *   header, MD5, uuid, magic, reserved, block_count == sum of popcounts, then the data,
 *   then every entry: known dev_id, cluster in range, not seen before / vmstate in
 *   order) -> hand out the extent's non-empty slots one at a time -> next extent ...
 *   -> END at EOF exactly on an extent boundary. Errors are latched: after the first
 *   failure every call returns the same error; after END every call returns 0.
 *   An extent is validated as a whole before its first cluster is returned, so a
 *   caller never sees part of a bad extent.
 * * Seen clusters: per device, a SparseBitmap (util/bitmap.h) of 4096-cluster chunks
 *   (512 bytes each, 256 MiB of device) in a hash table, allocated on first touch, with
 *   a count per chunk so that the missing-cluster search skips full chunks; one budget
 *   of MAX_SEEN_CHUNKS covers the bitmaps of all devices. Memory grows with the
 *   clusters actually present in the stream, never with the sizes a header declares
 *   (worst case, every 8-byte blockinfo entry of a hostile stream opens a new chunk:
 *   about 600 bytes of memory per entry, bounded by the input's length; a complete
 *   256 TiB device needs 512 MiB of bitmap in any scheme).
 *   vmstate streams need no bitmap: their clusters must come in order 0, 1, 2, ...
 * * The reader does not clip data at the device size: in the last, partial cluster a
 *   consumer writes only up to the device size (stored blocks past it are ignored by
 *   consumers; the deployed writer never stores them).
 * * Payload data carries no checksum in this format: a flipped data byte cannot be
 *   detected here (negative/bad-data.vma passes).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "vma-format.h"
#include "vma-internal.h"
#include "vma-input.h"
#include "vma.h"
#include "util/bitmap.h"

/* At most this many chunks over all devices (about 600 bytes each with the hash table
 * entry): 2^20 chunks cover 256 TiB of disk, the size of the largest device, and cost
 * at most about 600 MiB. Without a bound, blockinfo entries that touch a new chunk each
 * (8 bytes of a zero cluster in the stream) would cost 75 times the input's length. */
#define MAX_SEEN_CHUNKS (1u << 20)
#define EXTENT_MAX_DATA ((size_t)VMA_EXTENT_SLOTS * VMA_CLUSTER_SIZE)

typedef struct ReaderDevice {
    VmaDeviceInfo info;                       /* name points into the header buffer */
    bool present;
    uint64_t clusters;                        /* ceil(size / 64 KiB) */
    SparseBitmap *seen;                       /* clusters seen; NULL until the first */
    uint64_t next_vmstate;                    /* vmstate: next expected cluster */
} ReaderDevice;

typedef struct ReaderConfig {
    const char *name;
    const uint8_t *data;
    size_t len;
} ReaderConfig;

struct VmaReader {
    VmaInput *in;
    char *name;

    uint8_t *head;                            /* the whole header, head_size bytes */
    uint32_t head_size;
    uint32_t blob_offset;
    uint32_t blob_size;
    uint8_t uuid[16];
    int64_t ctime;
    ReaderConfig configs[VMA_MAX_CONFIGS];
    guint nconfigs;
    ReaderDevice devs[256];

    uint8_t *ext;                             /* data of the current extent */
    size_t ext_cap;
    uint64_t bi[VMA_EXTENT_SLOTS];            /* its blockinfo entries, host order */
    size_t slot_off[VMA_EXTENT_SLOTS];        /* data offset of each slot */
    unsigned slot;                            /* next slot to hand out */
    uint64_t ext_offset;                      /* archive offset of the current extent */
    uint64_t offset;                          /* archive bytes consumed */
    bool eof;
    GError *err;                              /* latched */

    uint64_t clusters_seen;
    SparseBitmapBudget seen_budget;           /* chunks of all devices' seen bitmaps */
    uint64_t clusters_total;
    uint64_t data_bytes;
    uint64_t zero_bytes;
};

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void md5_digest(const uint8_t *data, size_t len, uint8_t out[16])
{
    GChecksum *cs = g_checksum_new(G_CHECKSUM_MD5);
    gsize n = 16;

    g_checksum_update(cs, data, (gssize)len);
    g_checksum_get_digest(cs, out, &n);
    g_checksum_free(cs);
    assert(n == 16);
}

/* ---- header ---------------------------------------------------------------------- */

/* Resolve blob pointer ptr (relative to the blob region). */
static bool get_blob(VmaReader *r, uint32_t ptr, const uint8_t **data, size_t *len)
{
    if (ptr == 0 || (uint64_t)ptr + 2 > r->blob_size) {
        return false;
    }
    const uint8_t *p = r->head + r->blob_offset + ptr;
    size_t l = (size_t)p[0] | (size_t)p[1] << 8;    /* little-endian, unlike the rest */
    if ((uint64_t)ptr + 2 + l > r->blob_size) {
        return false;
    }
    *data = p + 2;
    *len = l;
    return true;
}

/* A name blob: NUL-terminated, the NUL counted in the length. NULL if missing. */
static const char *get_name(VmaReader *r, uint32_t ptr)
{
    const uint8_t *data;
    size_t len;

    if (!get_blob(r, ptr, &data, &len) || len == 0 || data[len - 1] != 0) {
        return NULL;
    }
    return (const char *)data;
}

/* A control byte (< 0x20, 0x7f) in a name would forge lines in every listing that
 * prints it: a device named "a\nDEV: dev_id=9 ..." adds a device to `vma list`. */
static bool name_is_printable(const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p != 0; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool check_name(VmaReader *r, const char *what, guint index, const char *name,
                       GError **errp)
{
    if (name_is_printable(name)) {
        return true;
    }
    g_autofree char *shown = g_strescape(name, NULL);
    g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                "%s: %s %u: name \"%s\" contains a control character", r->name, what, index,
                shown);
    return false;
}

static bool read_header(VmaReader *r, GError **errp)
{
    uint8_t *head = g_malloc(VMA_HEADER_FIXED_SIZE);
    ssize_t n;

    r->head = head;
    n = vma_input_read(r->in, head, VMA_HEADER_FIXED_SIZE, errp);
    if (n < 0) {
        return false;
    }
    r->offset = (uint64_t)n;
    if (n < 4 || memcmp(head, VMA_MAGIC, 4) != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: not a VMA archive (bad magic)",
                    r->name);
        return false;
    }
    if (n < VMA_HEADER_FIXED_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_TRUNCATED,
                    "%s: short vma header (%zd < %d bytes)", r->name, n,
                    VMA_HEADER_FIXED_SIZE);
        return false;
    }

    const VmaHeader *h = (const VmaHeader *)head;
    uint32_t head_size = GUINT32_FROM_BE(h->header_size);
    if (head_size < VMA_HEADER_FIXED_SIZE || head_size > VMA_HEADER_MAX_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: wrong vma header size %u (must be more than %d and at most %d)",
                    r->name, head_size, VMA_HEADER_FIXED_SIZE, VMA_HEADER_MAX_SIZE);
        return false;
    }
    if (head_size > VMA_HEADER_FIXED_SIZE) {
        size_t rest = head_size - VMA_HEADER_FIXED_SIZE;
        head = g_realloc(head, head_size);
        r->head = head;
        n = vma_input_read(r->in, head + VMA_HEADER_FIXED_SIZE, rest, errp);
        if (n < 0) {
            return false;
        }
        r->offset += (uint64_t)n;
        if ((size_t)n < rest) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_TRUNCATED,
                        "%s: short vma header (%" G_GUINT64_FORMAT " < %u bytes)", r->name,
                        r->offset, head_size);
            return false;
        }
        h = (const VmaHeader *)head;
    }
    r->head_size = head_size;

    uint8_t stored[16], computed[16];
    memcpy(stored, head + offsetof(VmaHeader, md5sum), 16);
    memset(head + offsetof(VmaHeader, md5sum), 0, 16);
    md5_digest(head, head_size, computed);
    memcpy(head + offsetof(VmaHeader, md5sum), stored, 16);
    if (memcmp(stored, computed, 16) != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_CHECKSUM, "%s: wrong vma header checksum",
                    r->name);
        return false;
    }
    uint32_t version = GUINT32_FROM_BE(h->version);
    if (version != VMA_VERSION) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: unsupported vma version %u",
                    r->name, version);
        return false;
    }
    if (head_size <= VMA_HEADER_FIXED_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: wrong vma header size %u",
                    r->name, head_size);
        return false;
    }
    r->blob_offset = GUINT32_FROM_BE(h->blob_buffer_offset);
    r->blob_size = GUINT32_FROM_BE(h->blob_buffer_size);
    if (r->blob_offset < VMA_HEADER_FIXED_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: wrong vma blob buffer offset %u",
                    r->name, r->blob_offset);
        return false;
    }
    if ((uint64_t)r->blob_offset + r->blob_size > head_size) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: wrong vma blob buffer size %u (offset %u, header size %u)", r->name,
                    r->blob_size, r->blob_offset, head_size);
        return false;
    }
    memcpy(r->uuid, h->uuid, 16);
    r->ctime = (int64_t)GUINT64_FROM_BE((uint64_t)h->ctime);

    for (guint i = 0; i < VMA_MAX_CONFIGS; i++) {
        uint32_t name_ptr = GUINT32_FROM_BE(h->config_names[i]);
        uint32_t data_ptr = GUINT32_FROM_BE(h->config_data[i]);
        ReaderConfig *cfg = &r->configs[r->nconfigs];

        if (name_ptr == 0 || data_ptr == 0) {
            continue;
        }
        cfg->name = get_name(r, name_ptr);
        if (cfg->name == NULL || !get_blob(r, data_ptr, &cfg->data, &cfg->len)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: config %u: invalid data pointers (name %u, data %u)", r->name,
                        i, name_ptr, data_ptr);
            return false;
        }
        if (!check_name(r, "config", i, cfg->name, errp)) {
            return false;
        }
        r->nconfigs++;
    }

    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        ReaderDevice *dev = &r->devs[id];
        uint64_t size = GUINT64_FROM_BE(h->dev_info[id].size);
        const char *name;

        if (size == 0) {
            continue;
        }
        name = get_name(r, GUINT32_FROM_BE(h->dev_info[id].devname_ptr));
        if (name == NULL) {
            continue;
        }
        if (!check_name(r, "dev_id", id, name, errp)) {
            return false;
        }
        if (size > VMA_MAX_DEVICE_SIZE) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: device %s: size %" G_GUINT64_FORMAT " exceeds 256 TiB",
                        r->name, name, size);
            return false;
        }
        for (guint other = 1; other < id; other++) {
            if (r->devs[other].present && strcmp(r->devs[other].info.name, name) == 0) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                            "%s: device name %s is used by dev_id %u and %u", r->name,
                            name, other, id);
                return false;
            }
        }
        dev->present = true;
        dev->info.name = name;
        dev->info.size = size;
        dev->info.is_vmstate = strcmp(name, VMA_VMSTATE_NAME) == 0;
        dev->clusters = (size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
        if (!dev->info.is_vmstate) {
            r->clusters_total += dev->clusters;
        }
    }
    return true;
}

/* ---- open/free ------------------------------------------------------------------- */

VmaReader *vma_reader_open_fd(int fd, const char *name, GError **errp)
{
    g_autoptr(VmaReader) r = NULL;

    if (fd < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "open %s: invalid descriptor %d",
                    name, fd);
        return NULL;
    }
    r = g_new0(VmaReader, 1);
    r->seen_budget.max = MAX_SEEN_CHUNKS;
    r->name = g_strdup(name);
    r->in = vma_input_new(fd, name, errp);
    if (r->in == NULL) {
        return NULL;
    }
    if (!read_header(r, errp)) {
        return NULL;
    }
    r->slot = VMA_EXTENT_SLOTS;
    return g_steal_pointer(&r);
}

VmaReader *vma_reader_open(const char *path, GError **errp)
{
    int fd;

    if (strcmp(path, "-") == 0) {
        fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
            int err = errno;
            g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "open stdin: %s", g_strerror(err));
            return NULL;
        }
        return vma_reader_open_fd(fd, "stdin", errp);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "open %s: %s", path, g_strerror(err));
        return NULL;
    }
    return vma_reader_open_fd(fd, path, errp);
}

void vma_reader_free(VmaReader *r)
{
    if (r == NULL) {
        return;
    }
    for (guint id = 0; id < G_N_ELEMENTS(r->devs); id++) {
        sparse_bitmap_free(r->devs[id].seen);
    }
    vma_input_free(r->in);
    g_free(r->ext);
    g_free(r->head);
    g_free(r->name);
    g_clear_error(&r->err);
    g_free(r);
}

/* ---- accessors ------------------------------------------------------------------- */

VmaCompression vma_reader_get_compression(VmaReader *r)
{
    return vma_input_get_compression(r->in);
}

void vma_reader_get_uuid(VmaReader *r, uint8_t uuid[16])
{
    memcpy(uuid, r->uuid, 16);
}

int64_t vma_reader_get_ctime(VmaReader *r)
{
    return r->ctime;
}

guint vma_reader_get_config_count(VmaReader *r)
{
    return r->nconfigs;
}

bool vma_reader_get_config(VmaReader *r, guint index, const char **name,
                           const uint8_t **data, size_t *len)
{
    if (index >= r->nconfigs) {
        return false;
    }
    if (name != NULL) {
        *name = r->configs[index].name;
    }
    if (data != NULL) {
        *data = r->configs[index].data;
    }
    if (len != NULL) {
        *len = r->configs[index].len;
    }
    return true;
}

const VmaDeviceInfo *vma_reader_get_device(VmaReader *r, guint dev_id)
{
    if (dev_id == 0 || dev_id > VMA_MAX_DEVICES || !r->devs[dev_id].present) {
        return NULL;
    }
    return &r->devs[dev_id].info;
}

void vma_reader_get_stats(VmaReader *r, VmaReaderStats *st)
{
    st->archive_bytes = r->offset;
    st->input_bytes = vma_input_get_consumed(r->in);
    st->input_size = vma_input_get_size(r->in);
    st->clusters_seen = r->clusters_seen;
    st->clusters_total = r->clusters_total;
    st->data_bytes = r->data_bytes;
    st->zero_bytes = r->zero_bytes;
}

/* ---- seen-cluster bitmap --------------------------------------------------------- */

/* Mark cluster num of dev as seen: 1, 0 if it was seen already, -1 if that would take
 * a chunk beyond MAX_SEEN_CHUNKS (over all devices). */
static int mark_seen(VmaReader *r, ReaderDevice *dev, uint32_t num)
{
    if (dev->seen == NULL) {
        dev->seen = sparse_bitmap_new(dev->clusters, &r->seen_budget);
    }
    int ret = sparse_bitmap_test_and_set(dev->seen, num);
    return ret < 0 ? -1 : ret;
}

static uint64_t dev_seen(const ReaderDevice *dev)
{
    return dev->seen ? sparse_bitmap_count(dev->seen) : 0;
}

/* ---- extents --------------------------------------------------------------------- */

/* Read and check the next extent. 1 = an extent is ready, 0 = clean end, -1 = error. */
static int read_extent(VmaReader *r, GError **errp)
{
    uint8_t hdr[VMA_EXTENT_HEADER_SIZE];
    const VmaExtentHeader *eh = (const VmaExtentHeader *)hdr;
    uint64_t off = r->offset;
    ssize_t n;

    n = vma_input_read(r->in, hdr, sizeof(hdr), errp);
    if (n < 0) {
        return -1;
    }
    r->offset += (uint64_t)n;
    if (n == 0) {
        return 0;
    }
    if (n < VMA_EXTENT_HEADER_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_TRUNCATED,
                    "%s: extent at byte %" G_GUINT64_FORMAT
                    ": short extent header (%zd < %d bytes)", r->name, off, n,
                    VMA_EXTENT_HEADER_SIZE);
        return -1;
    }

    if (!vma_extent_header_check(hdr, r->uuid, r->name, off, errp)) {
        return -1;
    }

    unsigned block_count = be16(hdr + offsetof(VmaExtentHeader, block_count));
    unsigned blocks = 0;
    for (unsigned i = 0; i < VMA_EXTENT_SLOTS; i++) {
        uint64_t bi = GUINT64_FROM_BE(eh->blockinfo[i]);
        r->bi[i] = bi;
        if (vma_blockinfo_dev_id(bi) == 0) {
            continue;                          /* empty slot */
        }
        if (vma_blockinfo_reserved(bi) != 0) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: extent at byte %" G_GUINT64_FORMAT
                        ": entry %u: reserved byte is not zero", r->name, off, i);
            return -1;
        }
        r->slot_off[i] = (size_t)blocks * VMA_BLOCK_SIZE;
        blocks += (unsigned)__builtin_popcount(vma_blockinfo_mask(bi));
    }
    if (blocks != block_count) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: extent at byte %" G_GUINT64_FORMAT
                    ": block count %u does not match the %u blocks of its entries", r->name,
                    off, block_count, blocks);
        return -1;
    }

    size_t data_len = (size_t)blocks * VMA_BLOCK_SIZE;
    assert(data_len <= EXTENT_MAX_DATA);
    if (data_len > 0) {
        if (r->ext_cap < data_len) {
            /* grows to the largest extent seen (at most 59 clusters) */
            g_free(r->ext);
            r->ext = g_malloc(data_len);
            r->ext_cap = data_len;
        }
        n = vma_input_read(r->in, r->ext, data_len, errp);
        if (n < 0) {
            return -1;
        }
        r->offset += (uint64_t)n;
        if ((size_t)n < data_len) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_TRUNCATED,
                        "%s: extent at byte %" G_GUINT64_FORMAT
                        ": short vma extent (%zu < %zu)", r->name, off,
                        (size_t)n + VMA_EXTENT_HEADER_SIZE, data_len + VMA_EXTENT_HEADER_SIZE);
            return -1;
        }
    }

    for (unsigned i = 0; i < VMA_EXTENT_SLOTS; i++) {
        uint64_t bi = r->bi[i];
        uint8_t dev_id = vma_blockinfo_dev_id(bi);
        uint32_t num = vma_blockinfo_cluster(bi);
        ReaderDevice *dev = &r->devs[dev_id];

        if (dev_id == 0) {
            continue;
        }
        if (!dev->present) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: extent at byte %" G_GUINT64_FORMAT ": unknown device id %u",
                        r->name, off, dev_id);
            return -1;
        }
        if (dev->info.is_vmstate) {
            if (num != dev->next_vmstate) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                            "%s: extent at byte %" G_GUINT64_FORMAT
                            ": cluster %u of vmstate stream %s out of order (expected %"
                            G_GUINT64_FORMAT ")", r->name, off, num, dev->info.name,
                            dev->next_vmstate);
                return -1;
            }
            dev->next_vmstate++;
            continue;
        }
        if (num >= dev->clusters) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: extent at byte %" G_GUINT64_FORMAT
                        ": cluster %u of stream %s is beyond the device size %"
                        G_GUINT64_FORMAT, r->name, off, num, dev->info.name,
                        dev->info.size);
            return -1;
        }
        int seen = mark_seen(r, dev, num);
        if (seen < 0) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: extent at byte %" G_GUINT64_FORMAT
                        ": clusters spread over more than %u regions of 256 MiB"
                        " (the limit of this reader)", r->name, off, MAX_SEEN_CHUNKS);
            return -1;
        }
        if (seen == 0) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_DUPLICATE,
                        "%s: extent at byte %" G_GUINT64_FORMAT
                        ": found duplicated cluster %u for stream %s", r->name, off, num,
                        dev->info.name);
            return -1;
        }
    }
    r->ext_offset = off;
    r->slot = 0;
    return 1;
}

/* Bytes of the zero (not stored) blocks of a cluster that lie within the device. */
static uint64_t zero_bytes_within(const ReaderDevice *dev, uint32_t num, uint16_t mask)
{
    uint64_t base = (uint64_t)num * VMA_CLUSTER_SIZE;
    uint64_t zero = 0;

    for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
        uint64_t start = base + (uint64_t)j * VMA_BLOCK_SIZE;
        if ((mask & (1u << j)) || start >= dev->info.size) {
            continue;
        }
        zero += MIN((uint64_t)VMA_BLOCK_SIZE, dev->info.size - start);
    }
    return zero;
}

int vma_reader_next_cluster(VmaReader *r, VmaCluster *c, GError **errp)
{
    if (r->err != NULL) {
        g_propagate_error(errp, g_error_copy(r->err));
        return -1;
    }
    for (;;) {
        while (r->slot < VMA_EXTENT_SLOTS) {
            unsigned i = r->slot++;
            uint64_t bi = r->bi[i];
            uint8_t dev_id = vma_blockinfo_dev_id(bi);
            uint16_t mask = vma_blockinfo_mask(bi);

            if (dev_id == 0) {
                continue;
            }
            c->dev_id = dev_id;
            c->cluster_num = vma_blockinfo_cluster(bi);
            c->mask = mask;
            c->data = r->ext != NULL ? r->ext + r->slot_off[i] : NULL;
            c->extent_offset = r->ext_offset;
            r->clusters_seen++;
            r->data_bytes += (uint64_t)__builtin_popcount(mask) * VMA_BLOCK_SIZE;
            r->zero_bytes += zero_bytes_within(&r->devs[dev_id], c->cluster_num, mask);
            return 1;
        }
        if (r->eof) {
            return 0;
        }
        int ret = read_extent(r, &r->err);
        if (ret < 0) {
            g_propagate_error(errp, g_error_copy(r->err));
            return -1;
        }
        if (ret == 0) {
            r->eof = true;
            return 0;
        }
    }
}

bool vma_reader_check_complete(VmaReader *r, guint dev_id, GError **errp)
{
    g_autoptr(GString) msg = NULL;
    guint first = 1, last = VMA_MAX_DEVICES;

    if (dev_id != 0) {
        if (vma_reader_get_device(r, dev_id) == NULL) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "%s: no device with dev_id %u",
                        r->name, dev_id);
            return false;
        }
        first = last = dev_id;
    }
    for (guint id = first; id <= last; id++) {
        const ReaderDevice *dev = &r->devs[id];
        if (!dev->present || dev->info.is_vmstate || dev_seen(dev) == dev->clusters) {
            continue;
        }
        if (msg == NULL) {
            msg = g_string_new(NULL);
            g_string_append_printf(msg, "%s: ", r->name);
        } else {
            g_string_append(msg, "; ");
        }
        g_string_append_printf(msg, "detected missing cluster %" G_GUINT64_FORMAT
                               " for stream %s", dev->seen ? sparse_bitmap_find_next_clear(dev->seen, 0) : 0,
                               dev->info.name);
    }
    if (msg != NULL) {
        g_set_error_literal(errp, VMA_ERROR, VMA_ERROR_MISSING, msg->str);
        return false;
    }
    return true;
}
