/*
 * vma-writer.c — the VMA archive writer (libvma).
 *
 * Design note
 * -----------
 * Life cycle: new → add_config / register_device (header under construction) → start
 * (header final; implicit in the first write_cluster and in close) → write_cluster from
 * any number of threads → close (drain, join, flush, check) → free.
 *
 * Threads. Producers (any thread) call vma_writer_write_cluster(): it validates the
 * record, clears the bytes of a partial last cluster past the device size, computes the
 * 16-bit zero mask *in the producer's thread* (that is where the CPU time goes), marks the
 * cluster done and appends a record {dev_id, cluster, mask, owned buffer} to a queue.
 * Exactly one writer thread, started by vma_writer_start(), owns the output descriptor:
 * it writes the header, then repeatedly takes up to 58 records, builds the 512-byte
 * extent header and hands the kernel ONE writev of that header plus iovecs pointing
 * straight into the records' cluster buffers (runs of adjacent non-zero 4 KiB blocks
 * merged), then frees the buffers. Cluster data is never copied here (an O_DIRECT output
 * stages the stream into aligned chunks).
 *
 * Lanes. The queue has two lanes. The priority lane (VMA_WRITE_PRIORITY, used for
 * copy-before-write data) is unbounded — its producers bound what they hold — and is
 * always dequeued first. The normal lane is bounded by opts->queue_clusters; its
 * producers wait on not_full. A vmstate stream always uses the normal lane, because its
 * clusters must reach the archive in order. The writer thread takes up to 58 records
 * as soon as the queue is non-empty, after giving producers up to 2 ms to fill the
 * extent (not while the normal lane is full), so a partial extent goes out when
 * producers are slower than the output and full extents when they keep up.
 *
 * Locking. One mutex, w->lock, protects the queue, the latched error, the life-cycle
 * flags, the per-device done bitmaps and counters, and the header description until the
 * header is final. There is no other lock, so there is no lock order to get wrong. The
 * lock is never held across I/O: the writer thread drops it before writev and takes it
 * again only to dequeue the next batch or to latch an error.
 *
 * Errors. The first error (I/O, a failed command, vma_writer_cancel) is latched in
 * w->error and wakes every waiter: producers blocked on not_full, the writer thread in
 * the queue wait, and (through vma_output_wake) the writer thread blocked on a pipe
 * that does not drain. Every later write_cluster, check and close returns a copy of it.
 * Once close has committed the output (the archive is complete and kept) an error from
 * outside (a cancel) is too late and dropped: the archive is either kept and close
 * succeeds, or removed and close fails, never kept and reported as failed.
 * Caller mistakes (unknown device, cluster out of range, a duplicate) are answered with
 * an error but not latched: the archive written so far stays valid.
 *
 * Invariants:
 *  - a cluster of a non-vmstate device is queued at most once (done bitmap, set under the
 *    lock before the record is queued); a vmstate stream is queued in order 0, 1, 2, ...
 *  - records leave the queue only through the writer thread (or close, after the join);
 *    every buffer handed to write_cluster is freed exactly once;
 *  - nothing is written before the header is final; the header is the first write;
 *  - the archive always has at least one extent (an empty one when nothing was written),
 *    as the deployed writer does.
 *
 * Outputs live in vma-output.c behind VmaOutput (new file, FIFO, exec:, passed
 * descriptor): this file hands it whole extents (vma_output_writev), wakes it when an
 * error is latched (vma_output_wake: a writer thread blocked on a pipe that does not
 * drain returns) and closes it once the thread has stopped, saying whether the stream is
 * a complete archive (vma_output_close: only then is a new file renamed into place). A
 * failed exec: command replaces a broken-pipe error, being its cause. SIGPIPE is blocked
 * in the writer thread, so a vanished reader shows up as EPIPE ("write to X: Broken
 * pipe") instead of killing the process.
 *
 * The header is byte-identical to the deployed Proxmox writer's: the blob region starts
 * at 12288 with byte 0 unused; blobs are a u16 little-endian length and the bytes; for
 * each config its name (with NUL) then its data, then the device names in dev_id order;
 * the region grows in 512-byte steps exactly as the deployed writer grows it (when a
 * blob does not fit, by its own length + 2 rounded up to 512), which decides
 * header_size. One deliberate difference: an archive with no config and no device still
 * gets a 512-byte blob region (header_size 12288 would be rejected by every reader).
 * When every cluster is queued before the writer thread reaches the queue, extents are
 * packed 58 records at a time in queue order, as the deployed writer packs them; the unit
 * tests rebuild the deployed fixtures byte for byte that way.
 *
 * Done bitmaps: a 256 TiB device has 2^32 clusters; one bit each would be 512 MiB. So
 * each device's is a util/bitmap.h SparseBitmap (no budget): chunks allocated on first
 * touch, so memory grows with the clusters written, not with the declared size.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uuid/uuid.h>

#include "vma-format.h"
#include "vma-internal.h"
#include "vma-output.h"
#include "vma.h"
#include "util/bitmap.h"

#define DEFAULT_QUEUE_CLUSTERS 64
#define EXTENT_FILL_WAIT_US 2000 /* how long a partial extent waits for more records */
/* 1 header iovec + at most 8 runs of set bits per cluster mask */
#define EXTENT_MAX_IOV (1 + VMA_WRITER_EXTENT_SLOTS * 8)

typedef struct WriterConfig {
    char *name;
    uint8_t *data;
    size_t len;
} WriterConfig;

typedef struct WriterDevice {
    /* Set at registration, immutable once the header is final. */
    char *name;
    uint64_t size;
    uint64_t nclusters; /* ceil(size / 64 KiB) */
    bool vmstate;

    /* Protected by VmaWriter.lock. */
    SparseBitmap *done;    /* clusters queued; NULL until the first write */
    uint64_t done_count;   /* clusters accepted */
    uint64_t next_vmstate; /* vmstate: the cluster expected next */
    uint64_t transferred;
    uint64_t zero_bytes;
} WriterDevice;

/* One queued cluster; link.data points back at the record. */
typedef struct WriterRecord {
    GList link;
    uint8_t dev_id;
    uint32_t cluster;
    uint16_t mask;
    void *buf; /* owned; NULL when mask == 0 */
} WriterRecord;

struct VmaWriter {
    /* Immutable after construction. */
    char *name;        /* the target as given, for messages */
    VmaOutput *out;    /* used by the writer thread while it runs, then by close */
    uint8_t uuid[16];
    int64_t ctime;
    size_t queue_bound;
    bool delta;        /* a delta archive: close does not check completeness */

    /*
     * w->lock protects everything below up to the writer-thread-only part. It is the
     * only lock of the writer; it is never held across I/O (see the design note).
     */
    GMutex lock;
    GCond not_empty;     /* writer thread waits: queue empty, no shutdown, no error */
    GCond not_full;      /* producers wait: normal lane at its bound */
    GQueue prio;         /* WriterRecord, priority lane */
    GQueue normal;       /* WriterRecord, bounded lane */
    uint64_t queued_bytes;
    GError *error;       /* the first error, latched */
    bool error_is_epipe; /* the latched error is a broken pipe (exec: prefer the status) */
    gint started;        /* header final and thread running (atomic read fast path) */
    bool shutdown;       /* close requested: drain and stop */
    bool closed;         /* vma_writer_close() was called */
    GThread *thread;
    GPtrArray *configs;  /* WriterConfig, header order */
    WriterDevice devs[256];
    unsigned ndevs;      /* dev_ids 1..ndevs are registered */
    uint8_t *header;     /* built by start, then read-only (writer thread writes it) */
    size_t header_size;

    /* Writer thread only. */
    VmaExtentHeader *ehdr;      /* aligned 512-byte extent header buffer */
    uint64_t extents_written;
};

/* ---- small helpers ------------------------------------------------------------------ */

static void record_free(WriterRecord *rec)
{
    vma_cluster_free(rec->buf);
    g_free(rec);
}

static inline uint64_t round_up_512(uint64_t n)
{
    return (n + VMA_BLOB_ALIGN - 1) / VMA_BLOB_ALIGN * VMA_BLOB_ALIGN;
}

/* Latch err (taking ownership) unless an error is latched already; wake every waiter. */
static void latch_error_locked(VmaWriter *w, GError *err, bool is_epipe)
{
    if (w->error || !vma_output_wake(w->out)) {
        /* an error is latched already, or the output is complete and kept (a cancel
         * that came during the end of close changes nothing) */
        g_error_free(err);
        return;
    }
    w->error = err;
    w->error_is_epipe = is_epipe;
    g_cond_broadcast(&w->not_empty);
    g_cond_broadcast(&w->not_full);
}

static void latch_error(VmaWriter *w, GError *err, bool is_epipe)
{
    g_mutex_lock(&w->lock);
    latch_error_locked(w, err, is_epipe);
    g_mutex_unlock(&w->lock);
}

static bool propagate_latched_locked(VmaWriter *w, GError **errp)
{
    if (!w->error) {
        return true;
    }
    if (errp) {
        g_propagate_error(errp, g_error_copy(w->error));
    }
    return false;
}

/* ---- header ------------------------------------------------------------------------- */

/*
 * The blob region as the deployed writer lays it out. With buf == NULL only the sizes
 * are computed (used to refuse a config or device that would make the header too big).
 * pos starts at 1 (offset 0 means "none"); cap grows when a blob does not fit.
 */
typedef struct BlobTable {
    uint8_t *buf; /* VMA_HEADER_MAX_SIZE - VMA_HEADER_FIXED_SIZE bytes, or NULL */
    uint64_t pos;
    uint64_t cap;
} BlobTable;

static uint32_t blob_add(BlobTable *t, const void *data, size_t len)
{
    uint64_t off = t->pos;

    assert(len <= VMA_MAX_BLOB_SIZE);
    if (t->cap < t->pos + len + 2) {
        t->cap += round_up_512(len + 2);
    }
    if (t->buf && t->pos + 2 + len <= VMA_HEADER_MAX_SIZE - VMA_HEADER_FIXED_SIZE) {
        t->buf[off] = (uint8_t)(len & 0xff);
        t->buf[off + 1] = (uint8_t)(len >> 8);
        if (len > 0) {
            memcpy(t->buf + off + 2, data, len);
        }
    }
    t->pos += len + 2;
    return (uint32_t)off;
}

/* Lay out every blob in header order; with hdr != NULL also fill the header tables. */
static void layout_blobs_locked(VmaWriter *w, BlobTable *t, VmaHeader *hdr)
{
    t->pos = 1;
    t->cap = 0;
    for (guint i = 0; i < w->configs->len; i++) {
        WriterConfig *c = g_ptr_array_index(w->configs, i);
        uint32_t name_off = blob_add(t, c->name, strlen(c->name) + 1);
        uint32_t data_off = blob_add(t, c->data, c->len);
        if (hdr) {
            hdr->config_names[i] = GUINT32_TO_BE(name_off);
            hdr->config_data[i] = GUINT32_TO_BE(data_off);
        }
    }
    for (unsigned id = 1; id <= w->ndevs; id++) {
        WriterDevice *d = &w->devs[id];
        uint32_t name_off = blob_add(t, d->name, strlen(d->name) + 1);
        if (hdr) {
            hdr->dev_info[id].devname_ptr = GUINT32_TO_BE(name_off);
            hdr->dev_info[id].size = GUINT64_TO_BE(d->size);
        }
    }
    /* Without any blob the region would be empty and header_size 12288, which readers
     * reject; it still holds the unused byte 0. */
    if (t->cap < t->pos) {
        t->cap = round_up_512(t->pos);
    }
}

static uint64_t header_size_locked(VmaWriter *w)
{
    BlobTable t = { 0 };

    layout_blobs_locked(w, &t, NULL);
    return VMA_HEADER_FIXED_SIZE + t.cap;
}

static bool build_header_locked(VmaWriter *w, GError **errp)
{
    uint64_t size = header_size_locked(w);

    if (size > VMA_HEADER_MAX_SIZE) {
        /* add_config / register_device refuse this earlier; kept as a last guard */
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "write header of %s: header of %" G_GUINT64_FORMAT
                    " bytes exceeds %d bytes", w->name, size, VMA_HEADER_MAX_SIZE);
        return false;
    }

    uint8_t *buf = g_malloc0(size);
    VmaHeader *hdr = (VmaHeader *)buf;
    BlobTable t = { .buf = buf + VMA_HEADER_FIXED_SIZE };

    layout_blobs_locked(w, &t, hdr);
    assert(VMA_HEADER_FIXED_SIZE + t.cap == size);
    memcpy(hdr->magic, VMA_MAGIC, 4);
    hdr->version = GUINT32_TO_BE(VMA_VERSION);
    memcpy(hdr->uuid, w->uuid, 16);
    hdr->ctime = (int64_t)GUINT64_TO_BE((uint64_t)w->ctime);
    hdr->blob_buffer_offset = GUINT32_TO_BE(VMA_HEADER_FIXED_SIZE);
    hdr->blob_buffer_size = GUINT32_TO_BE((uint32_t)t.pos);
    hdr->header_size = GUINT32_TO_BE((uint32_t)size);
    vma_md5_excluding(buf, size, VMA_HEADER_MD5_OFFSET, hdr->md5sum);

    w->header = buf;
    w->header_size = size;
    return true;
}

/* ---- extents ------------------------------------------------------------------------ */

/* Writer thread: one extent of n records (n may be 0: the empty extent). */
static int write_extent(VmaWriter *w, WriterRecord **recs, unsigned n)
{
    VmaExtentHeader *eh = w->ehdr;
    struct iovec iov[EXTENT_MAX_IOV];
    int cnt = 1;
    unsigned blocks = 0;

    assert(n <= VMA_WRITER_EXTENT_SLOTS);
    memset(eh, 0, sizeof(*eh));
    memcpy(eh->magic, VMA_EXTENT_MAGIC, 4);
    memcpy(eh->uuid, w->uuid, 16);
    iov[0].iov_base = eh;
    iov[0].iov_len = sizeof(*eh);
    for (unsigned i = 0; i < n; i++) {
        WriterRecord *rec = recs[i];
        uint16_t mask = rec->mask;

        eh->blockinfo[i] = GUINT64_TO_BE(vma_blockinfo_pack(mask, rec->dev_id, rec->cluster));
        blocks += (unsigned)__builtin_popcount(mask);
        /* one iovec per run of set bits: those blocks are adjacent in the buffer */
        unsigned j = 0;
        while (j < VMA_BLOCKS_PER_CLUSTER) {
            if (!(mask & (1u << j))) {
                j++;
                continue;
            }
            unsigned start = j;
            while (j < VMA_BLOCKS_PER_CLUSTER && (mask & (1u << j))) {
                j++;
            }
            assert(cnt < EXTENT_MAX_IOV);
            iov[cnt].iov_base = (uint8_t *)rec->buf + (size_t)start * VMA_BLOCK_SIZE;
            iov[cnt].iov_len = (size_t)(j - start) * VMA_BLOCK_SIZE;
            cnt++;
        }
    }
    eh->block_count = GUINT16_TO_BE((uint16_t)blocks);
    vma_md5_excluding((const uint8_t *)eh, sizeof(*eh), VMA_EXTENT_MD5_OFFSET, eh->md5sum);
    w->extents_written++;
    return vma_output_writev(w->out, iov, cnt);
}

static void latch_write_error(VmaWriter *w, int r)
{
    if (r == -ECANCELED) {
        return; /* woken because an error is latched already */
    }
    latch_error(w, g_error_new(VMA_ERROR, VMA_ERROR_IO, "write to %s: %s", w->name,
                               g_strerror(-r)),
                r == -EPIPE);
}

/* Pop up to max records, priority lane first. */
static unsigned take_batch_locked(VmaWriter *w, WriterRecord **recs, unsigned max)
{
    unsigned n = 0;
    bool took_normal = false;

    while (n < max) {
        GList *l = g_queue_pop_head_link(&w->prio);
        if (!l) {
            l = g_queue_pop_head_link(&w->normal);
            if (!l) {
                break;
            }
            took_normal = true;
        }
        WriterRecord *rec = l->data;
        if (rec->buf) {
            w->queued_bytes -= VMA_CLUSTER_SIZE;
        }
        recs[n++] = rec;
    }
    if (took_normal) {
        g_cond_broadcast(&w->not_full);
    }
    return n;
}

static gpointer writer_thread(gpointer opaque)
{
    VmaWriter *w = opaque;
    WriterRecord *recs[VMA_WRITER_EXTENT_SLOTS];
    sigset_t set;
    int r;

    /* A reader that goes away must give EPIPE, not kill the process. */
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct iovec hiov = { .iov_base = w->header, .iov_len = w->header_size };
    r = vma_output_writev(w->out, &hiov, 1);
    if (r < 0) {
        latch_write_error(w, r);
        return NULL;
    }

    for (;;) {
        g_mutex_lock(&w->lock);
        while (!w->error && !w->shutdown && g_queue_is_empty(&w->prio) &&
               g_queue_is_empty(&w->normal)) {
            g_cond_wait(&w->not_empty, &w->lock);
        }
        /* Give producers a moment to fill the extent: an extent header per record or two
         * would bloat archives of sparse disks (every zero cluster is a record). Never
         * wait while producers are blocked on the full normal lane. */
        gint64 deadline = g_get_monotonic_time() + EXTENT_FILL_WAIT_US;
        while (!w->error && !w->shutdown &&
               g_queue_get_length(&w->prio) + g_queue_get_length(&w->normal) <
                   VMA_WRITER_EXTENT_SLOTS &&
               g_queue_get_length(&w->normal) < w->queue_bound) {
            if (!g_cond_wait_until(&w->not_empty, &w->lock, deadline)) {
                break;
            }
        }
        if (w->error) {
            g_mutex_unlock(&w->lock);
            return NULL;
        }
        unsigned n = take_batch_locked(w, recs, VMA_WRITER_EXTENT_SLOTS);
        g_mutex_unlock(&w->lock);
        if (n == 0) {
            break; /* shutdown and drained */
        }

        r = write_extent(w, recs, n);
        for (unsigned i = 0; i < n; i++) {
            record_free(recs[i]);
        }
        if (r < 0) {
            latch_write_error(w, r);
            return NULL;
        }
    }

    if (w->extents_written == 0) {
        r = write_extent(w, NULL, 0);
        if (r < 0) {
            latch_write_error(w, r);
            return NULL;
        }
    }
    r = vma_output_finish(w->out);
    if (r < 0) {
        latch_write_error(w, r);
    }
    return NULL;
}

/* ---- construction ------------------------------------------------------------------- */

/* Takes ownership of out. */
static VmaWriter *writer_new(VmaOutput *out, const char *name, const VmaWriterOptions *opts)
{
    VmaWriter *w = g_new0(VmaWriter, 1);

    w->name = g_strdup(name);
    w->out = out;
    g_mutex_init(&w->lock);
    g_cond_init(&w->not_empty);
    g_cond_init(&w->not_full);
    g_queue_init(&w->prio);
    g_queue_init(&w->normal);
    w->configs = g_ptr_array_new();
    w->ehdr = g_aligned_alloc0(1, sizeof(VmaExtentHeader), VMA_BLOCK_SIZE);

    if (opts && opts->uuid) {
        memcpy(w->uuid, opts->uuid, 16);
    } else {
        uuid_generate(w->uuid);
    }
    w->ctime = (opts && opts->ctime != 0) ? opts->ctime : (int64_t)time(NULL);
    w->queue_bound = (opts && opts->queue_clusters) ? opts->queue_clusters
                                                    : DEFAULT_QUEUE_CLUSTERS;
    w->delta = opts && opts->delta;
    return w;
}

VmaWriter *vma_writer_new(const char *target, const VmaWriterOptions *opts, GError **errp)
{
    g_return_val_if_fail(target != NULL, NULL);

    VmaOutput *out = vma_output_open(target, opts && opts->direct, errp);
    return out ? writer_new(out, target, opts) : NULL;
}

VmaWriter *vma_writer_new_fd(int fd, const char *name, const VmaWriterOptions *opts,
                             GError **errp)
{
    g_return_val_if_fail(fd >= 0, NULL);

    name = name ? name : "archive";
    VmaOutput *out = vma_output_new_fd(fd, name, errp);
    return out ? writer_new(out, name, opts) : NULL;
}

void vma_writer_get_uuid(VmaWriter *w, uint8_t uuid[16])
{
    memcpy(uuid, w->uuid, 16);
}

void vma_writer_get_uuid_str(VmaWriter *w, char out[37])
{
    vma_uuid_unparse(w->uuid, out);
}

/* ---- header description ------------------------------------------------------------- */

static bool check_not_final_locked(VmaWriter *w, const char *what, const char *name,
                                   GError **errp)
{
    if (w->started || w->closed || w->error) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "%s %s: the archive header is already final", what, name);
        return false;
    }
    return true;
}

bool vma_writer_add_config(VmaWriter *w, const char *name, const void *data, size_t len,
                           GError **errp)
{
    g_return_val_if_fail(w != NULL && name != NULL, false);
    g_return_val_if_fail(data != NULL || len == 0, false);

    size_t name_len = strlen(name) + 1;
    if (name_len == 1) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "add config: empty name");
        return false;
    }
    if (name_len > VMA_MAX_BLOB_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "add config: name of %zu bytes is too long (at most %u with its NUL)",
                    name_len, VMA_MAX_BLOB_SIZE);
        return false;
    }
    if (len > VMA_MAX_BLOB_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "add config %s: %zu bytes is too large (at most %u)", name, len,
                    VMA_MAX_BLOB_SIZE);
        return false;
    }
    if (!vma_check_name("config", name, errp)) {
        return false;
    }

    g_mutex_lock(&w->lock);
    bool ok = false;
    if (!check_not_final_locked(w, "add config", name, errp)) {
        goto out;
    }
    if (w->configs->len >= VMA_MAX_CONFIGS) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "add config %s: too many configs (at most %u)", name, VMA_MAX_CONFIGS);
        goto out;
    }
    for (guint i = 0; i < w->configs->len; i++) {
        WriterConfig *c = g_ptr_array_index(w->configs, i);
        if (strcmp(c->name, name) == 0) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                        "add config %s: a config of that name was added already", name);
            goto out;
        }
    }

    WriterConfig *c = g_new0(WriterConfig, 1);
    c->name = g_strdup(name);
    c->data = len > 0 ? g_memdup2(data, len) : NULL;
    c->len = len;
    g_ptr_array_add(w->configs, c);
    uint64_t hsize = header_size_locked(w);
    if (hsize > VMA_HEADER_MAX_SIZE) {
        g_ptr_array_remove_index(w->configs, w->configs->len - 1);
        g_free(c->name);
        g_free(c->data);
        g_free(c);
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "add config %s: the archive header would grow to %" G_GUINT64_FORMAT
                    " bytes (at most %d)", name, hsize, VMA_HEADER_MAX_SIZE);
        goto out;
    }
    ok = true;
out:
    g_mutex_unlock(&w->lock);
    return ok;
}

int vma_writer_register_device(VmaWriter *w, const char *devname, uint64_t size,
                               GError **errp)
{
    g_return_val_if_fail(w != NULL && devname != NULL, -1);

    size_t name_len = strlen(devname) + 1;
    if (name_len == 1) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "register device: empty name");
        return -1;
    }
    if (name_len > VMA_MAX_BLOB_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "register device: name of %zu bytes is too long (at most %u with its NUL)",
                    name_len, VMA_MAX_BLOB_SIZE);
        return -1;
    }
    if (size == 0 || size > VMA_MAX_DEVICE_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "register device %s: invalid size %" G_GUINT64_FORMAT
                    " (1 byte .. 256 TiB)", devname, size);
        return -1;
    }
    /* never write an archive that extract refuses ("vmstate" is the state stream) */
    if (strcmp(devname, VMA_VMSTATE_NAME) != 0 && !vma_check_name("device", devname, errp)) {
        return -1;
    }

    g_mutex_lock(&w->lock);
    int id = -1;
    if (!check_not_final_locked(w, "register device", devname, errp)) {
        goto out;
    }
    if (w->ndevs >= VMA_MAX_DEVICES) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "register device %s: too many devices (at most %u)", devname,
                    VMA_MAX_DEVICES);
        goto out;
    }
    for (unsigned i = 1; i <= w->ndevs; i++) {
        if (strcmp(w->devs[i].name, devname) == 0) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                        "register device %s: a device of that name is registered already",
                        devname);
            goto out;
        }
    }

    WriterDevice *d = &w->devs[w->ndevs + 1];
    memset(d, 0, sizeof(*d));
    d->name = g_strdup(devname);
    d->size = size;
    d->nclusters = (size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
    d->vmstate = strcmp(devname, VMA_VMSTATE_NAME) == 0;
    w->ndevs++;
    uint64_t hsize = header_size_locked(w);
    if (hsize > VMA_HEADER_MAX_SIZE) {
        w->ndevs--;
        g_free(d->name);
        memset(d, 0, sizeof(*d));
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "register device %s: the archive header would grow to %" G_GUINT64_FORMAT
                    " bytes (at most %d)", devname, hsize, VMA_HEADER_MAX_SIZE);
        goto out;
    }
    id = (int)w->ndevs;
out:
    g_mutex_unlock(&w->lock);
    return id;
}

static bool start_locked(VmaWriter *w, GError **errp)
{
    if (!propagate_latched_locked(w, errp)) {
        return false;
    }
    if (w->started) {
        return true;
    }
    if (w->closed) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "start %s: the writer is closed",
                    w->name);
        return false;
    }

    GError *err = NULL;
    if (!build_header_locked(w, &err)) {
        latch_error_locked(w, err, false);
        return propagate_latched_locked(w, errp);
    }
    w->thread = g_thread_try_new("vma-writer", writer_thread, w, &err);
    if (!w->thread) {
        latch_error_locked(w, g_error_new(VMA_ERROR, VMA_ERROR_FAILED,
                                          "start writer thread for %s: %s", w->name,
                                          err->message),
                           false);
        g_error_free(err);
        return propagate_latched_locked(w, errp);
    }
    g_atomic_int_set(&w->started, 1);
    return true;
}

bool vma_writer_start(VmaWriter *w, GError **errp)
{
    g_return_val_if_fail(w != NULL, false);

    g_mutex_lock(&w->lock);
    bool ok = start_locked(w, errp);
    g_mutex_unlock(&w->lock);
    return ok;
}

/* ---- clusters ----------------------------------------------------------------------- */

static bool test_and_set_done_locked(WriterDevice *d, uint32_t cluster)
{
    if (!d->done) {
        d->done = sparse_bitmap_new(d->nclusters, NULL);
    }
    return sparse_bitmap_test_and_set(d->done, cluster) == 0;   /* no budget: never -ENOSPC */
}

/* First cluster of d never written, or d->nclusters when complete: chunks never touched
 * are skipped whole, so even a 2^32-cluster device is checked quickly. */
static uint64_t first_missing_locked(const WriterDevice *d)
{
    return d->done ? sparse_bitmap_find_next_clear(d->done, 0) : 0;
}

static void account_locked(WriterDevice *d, uint32_t cluster, uint16_t mask)
{
    uint64_t covered = VMA_CLUSTER_SIZE;

    if (!d->vmstate) {
        uint64_t start = (uint64_t)cluster * VMA_CLUSTER_SIZE;
        covered = MIN(covered, d->size - start);
    }
    d->transferred += covered;
    for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
        uint64_t off = (uint64_t)j * VMA_BLOCK_SIZE;
        if (off >= covered) {
            break;
        }
        if (!(mask & (1u << j))) {
            d->zero_bytes += MIN(VMA_BLOCK_SIZE, covered - off);
        }
    }
}

bool vma_writer_write_cluster(VmaWriter *w, uint8_t dev_id, uint32_t cluster_num, void *buf,
                              unsigned flags, GError **errp)
{
    g_return_val_if_fail(w != NULL, false);

    if (!g_atomic_int_get(&w->started) && !vma_writer_start(w, errp)) {
        vma_cluster_free(buf);
        return false;
    }
    /* the device table is immutable from here on */
    if (dev_id == 0 || dev_id > w->ndevs) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "write cluster %" G_GUINT32_FORMAT " of device id %u to %s: no such device",
                    cluster_num, dev_id, w->name);
        vma_cluster_free(buf);
        return false;
    }
    WriterDevice *d = &w->devs[dev_id];
    if (!d->vmstate && cluster_num >= d->nclusters) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "write %s cluster %" G_GUINT32_FORMAT ": beyond the end of the device (%"
                    G_GUINT64_FORMAT " clusters)", d->name, cluster_num, d->nclusters);
        vma_cluster_free(buf);
        return false;
    }

    uint16_t mask = 0;
    if (buf) {
        uint64_t start = (uint64_t)cluster_num * VMA_CLUSTER_SIZE;
        if (!d->vmstate && d->size - start < VMA_CLUSTER_SIZE) {
            size_t keep = (size_t)(d->size - start);
            memset((uint8_t *)buf + keep, 0, VMA_CLUSTER_SIZE - keep);
        }
        mask = vma_cluster_zero_mask(buf);
        if (mask == 0) {
            vma_cluster_free(buf);
            buf = NULL;
        }
    }
    bool priority = (flags & VMA_WRITE_PRIORITY) && !d->vmstate;

    g_mutex_lock(&w->lock);
    if (!priority) {
        while (!w->error && !w->shutdown && g_queue_get_length(&w->normal) >= w->queue_bound) {
            g_cond_wait(&w->not_full, &w->lock);
        }
    }
    if (!propagate_latched_locked(w, errp)) {
        goto fail;
    }
    if (w->shutdown) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "write %s cluster %" G_GUINT32_FORMAT ": the writer is closed", d->name,
                    cluster_num);
        goto fail;
    }
    if (d->vmstate) {
        if (cluster_num != d->next_vmstate) {
            g_set_error(errp, VMA_ERROR,
                        cluster_num < d->next_vmstate ? VMA_ERROR_DUPLICATE : VMA_ERROR_INVALID,
                        "write %s cluster %" G_GUINT32_FORMAT ": out of order (expected "
                        "cluster %" G_GUINT64_FORMAT ")", d->name, cluster_num,
                        d->next_vmstate);
            goto fail;
        }
        d->next_vmstate++;
        d->done_count++;
    } else {
        if (test_and_set_done_locked(d, cluster_num)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_DUPLICATE,
                        "write %s cluster %" G_GUINT32_FORMAT ": cluster was already written",
                        d->name, cluster_num);
            goto fail;
        }
        d->done_count++;
    }
    account_locked(d, cluster_num, mask);

    WriterRecord *rec = g_new(WriterRecord, 1);
    rec->link.data = rec;
    rec->link.next = rec->link.prev = NULL;
    rec->dev_id = dev_id;
    rec->cluster = cluster_num;
    rec->mask = mask;
    rec->buf = buf;
    g_queue_push_tail_link(priority ? &w->prio : &w->normal, &rec->link);
    if (buf) {
        w->queued_bytes += VMA_CLUSTER_SIZE;
    }
    g_cond_signal(&w->not_empty);
    g_mutex_unlock(&w->lock);
    return true;

fail:
    g_mutex_unlock(&w->lock);
    vma_cluster_free(buf);
    return false;
}

/* ---- status, cancel, close ---------------------------------------------------------- */

void vma_writer_cancel(VmaWriter *w, const char *message)
{
    g_return_if_fail(w != NULL);

    latch_error(w, g_error_new_literal(VMA_ERROR, VMA_ERROR_CANCELLED,
                                       message ? message : "backup canceled"),
                false);
}

bool vma_writer_check(VmaWriter *w, GError **errp)
{
    g_return_val_if_fail(w != NULL, false);

    g_mutex_lock(&w->lock);
    bool ok = propagate_latched_locked(w, errp);
    g_mutex_unlock(&w->lock);
    return ok;
}

bool vma_writer_get_device_status(VmaWriter *w, uint8_t dev_id, VmaDeviceStatus *st)
{
    g_return_val_if_fail(w != NULL && st != NULL, false);

    g_mutex_lock(&w->lock);
    bool ok = dev_id >= 1 && dev_id <= w->ndevs;
    if (ok) {
        st->size = w->devs[dev_id].size;
        st->transferred = w->devs[dev_id].transferred;
        st->zero_bytes = w->devs[dev_id].zero_bytes;
    }
    g_mutex_unlock(&w->lock);
    return ok;
}

uint64_t vma_writer_get_output_bytes(VmaWriter *w)
{
    return vma_output_get_bytes(w->out);
}

uint64_t vma_writer_get_queued_bytes(VmaWriter *w)
{
    g_mutex_lock(&w->lock);
    uint64_t n = w->queued_bytes;
    g_mutex_unlock(&w->lock);
    return n;
}

static void drop_queue_locked(VmaWriter *w, GQueue *q)
{
    GList *l;

    while ((l = g_queue_pop_head_link(q)) != NULL) {
        WriterRecord *rec = l->data;
        if (rec->buf) {
            w->queued_bytes -= VMA_CLUSTER_SIZE;
        }
        record_free(rec);
    }
}

static void check_complete_locked(VmaWriter *w)
{
    for (unsigned id = 1; id <= w->ndevs; id++) {
        WriterDevice *d = &w->devs[id];
        if (d->vmstate || d->done_count == d->nclusters) {
            continue;
        }
        uint64_t first = first_missing_locked(d);
        latch_error_locked(w, g_error_new(VMA_ERROR, VMA_ERROR_MISSING,
                                          "device %s: cluster %" G_GUINT64_FORMAT
                                          " was never written (%" G_GUINT64_FORMAT " of %"
                                          G_GUINT64_FORMAT " clusters missing)",
                                          d->name, first, d->nclusters - d->done_count,
                                          d->nclusters),
                           false);
        return;
    }
}

bool vma_writer_close(VmaWriter *w, GError **errp)
{
    g_return_val_if_fail(w != NULL, false);

    g_mutex_lock(&w->lock);
    if (w->closed) {
        g_mutex_unlock(&w->lock);
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "close %s: closed already", w->name);
        return false;
    }
    if (!w->started && !w->error) {
        start_locked(w, NULL); /* a failure is latched */
    }
    w->closed = true;
    w->shutdown = true;
    g_cond_broadcast(&w->not_empty);
    g_cond_broadcast(&w->not_full);
    g_mutex_unlock(&w->lock);

    if (w->thread) {
        g_thread_join(w->thread);
        w->thread = NULL;
    }

    g_mutex_lock(&w->lock);
    drop_queue_locked(w, &w->prio);
    drop_queue_locked(w, &w->normal);
    if (!w->error && !w->delta) {
        check_complete_locked(w);
    }
    bool failed = w->error != NULL;
    g_mutex_unlock(&w->lock);

    /* flush, close, wait for a command, rename a new file into place (or remove it) */
    GError *err = NULL;
    if (!vma_output_close(w->out, failed, &err)) {
        g_mutex_lock(&w->lock);
        if (w->error && w->error_is_epipe && g_error_matches(err, VMA_ERROR, VMA_ERROR_FAILED)) {
            /* the command's failure caused the broken pipe: it is the error to report */
            g_clear_error(&w->error);
        }
        /* not through the output's wake: a close that committed the output (then failed
         * to rename it, say) has failed all the same */
        if (w->error) {
            g_error_free(err);
        } else {
            w->error = err;
        }
        g_mutex_unlock(&w->lock);
    }

    g_mutex_lock(&w->lock);
    bool ok = propagate_latched_locked(w, errp);
    g_mutex_unlock(&w->lock);
    return ok;
}

void vma_writer_free(VmaWriter *w)
{
    if (!w) {
        return;
    }
    if (!w->closed) {
        vma_writer_cancel(w, "archive writer freed before close");
        vma_writer_close(w, NULL);
    }
    assert(!w->thread);
    vma_output_free(w->out);
    for (guint i = 0; i < w->configs->len; i++) {
        WriterConfig *c = g_ptr_array_index(w->configs, i);
        g_free(c->name);
        g_free(c->data);
        g_free(c);
    }
    g_ptr_array_free(w->configs, true);
    for (unsigned id = 1; id <= w->ndevs; id++) {
        WriterDevice *d = &w->devs[id];
        sparse_bitmap_free(d->done);
        g_free(d->name);
    }
    if (w->error) {
        g_error_free(w->error);
    }
    g_free(w->header);
    g_aligned_free(w->ehdr);
    g_mutex_clear(&w->lock);
    g_cond_clear(&w->not_empty);
    g_cond_clear(&w->not_full);
    g_free(w->name);
    g_free(w);
}
