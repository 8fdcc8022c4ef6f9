/*
 * block/alloc-track.c — the alloc-track driver: a restore target that serves the disk
 * before it is restored (see alloc-track.h).
 *
 * Design note
 * -----------
 * State. The node holds references to two registered disks, `file` (the target) and
 * `backing` (the source of what is not restored yet), and one bit per 64 KiB cluster:
 * `alloc` — the cluster's final data is on the target (copied from the backing, written by
 * the guest, or both). A set bit is never cleared. Reads of allocated clusters go to the
 * target, the rest to the backing. A tail of the target beyond the backing's end is
 * allocated from the start (there is nothing to restore there).
 *
 * Granularity. A write that covers only part of a cluster that is not allocated first
 * copies that whole cluster from the backing to the target (read-modify-write at cluster
 * granularity, as Proxmox's driver does), so a set bit always stands for a complete
 * cluster: the part the guest did not write is the backing's data, never lost.
 *
 * Races. Copies into the target (copy-on-read, the stream, the fill before a partial
 * write) and writes to clusters not yet allocated take a range lock on their clusters
 * and look at `alloc` again under it: a copy skips clusters that became allocated while
 * it waited, so archive data never lands on a cluster after a guest write to it; a write
 * that finds a copy of its cluster running waits for it and then writes over it. Reads of
 * allocated clusters and writes to clusters that are allocated and recorded take no range
 * lock (nothing copies into them any more).
 *
 * The persistent record (a file in the state directory, see below) holds `durable`, the
 * bits known on disk. Invariant: a bit set in the record means the cluster's final data
 * is durable on the target. Therefore every record write is preceded by a flush of the
 * target, and covers only bits set before that flush. Copies mark `alloc` only (lazy):
 * losing such a mark in a crash costs a second copy of the same data. A guest write
 * (write, write-zeroes, discard) to a cluster that is not in the record yet is different:
 * if the record missed it, a resumed restore would copy archive data over the guest's
 * write. So such a write is acknowledged only after its cluster is in the record
 * (commit(): flush the target, write the changed pages of the record, fdatasync).
 * Commits are grouped: one thread writes for every waiter that came before it. Once a
 * cluster is recorded, writes to it cost nothing extra. A failed record write is latched;
 * from then on guest writes to unrecorded clusters fail (-EIO class errors), reads go on.
 *
 * Record file (little-endian): a 4096-byte header — magic "VMADALT1", version 1,
 * cluster size, target size, backing size, cluster count, backing file name (length and
 * bytes, at most 2048), CRC-32 of the header bytes before it — then the bitmap, bit c at
 * byte 4096 + c / 8, bit c % 8. Bits only go from 0 to 1 and every page written holds
 * bits that are all true, so a torn page write leaves a valid (older) state. Opening a
 * node whose record exists resumes from it; a record for another backing or size is
 * refused (remove it to start over).
 *
 * The backing is used under a count of readers (`backing_users`); dropping it waits
 * until none is left. After the drop every cluster is allocated and recorded: the node is
 * a pass-through to the target.
 *
 * Locks: `lock` protects alloc, durable, the range locks, the backing pointer and its
 * users, and the commit state; it is never held across I/O and taken alone. The range
 * locks (a list of claimed cluster ranges, waited for on `cond`) are held across I/O;
 * a thread holds at most one range at a time.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <gio/gio.h>

#include "block/alloc-track.h"
#include "block/dirty-bitmap.h"
#include "util/bitmap.h"
#include "util/fd.h"
#include "util/io.h"
#include "vma.h"

#define CL ((uint64_t)ALLOC_TRACK_CLUSTER)
#define MAX_RUN 16u                  /* clusters per copy: bounce buffers of 1 MiB */
#define REC_MAGIC "VMADALT1"
#define REC_VERSION 1u
#define REC_HEADER 4096u
#define REC_PAGE 4096u
#define REC_MAX_NAME 2048u

typedef struct RecHeader {
    char magic[8];
    uint32_t version;
    uint32_t cluster_size;
    uint64_t size;             /* the target's size */
    uint64_t backing_size;
    uint64_t nclusters;
    uint32_t name_len;         /* bytes of the backing's file name that follow */
    char name[REC_MAX_NAME];
    uint32_t crc;              /* CRC-32 of every byte above */
} __attribute__((packed)) RecHeader;
_Static_assert(sizeof(RecHeader) <= REC_HEADER, "record header fits its block");

typedef struct RangeLock {
    uint64_t first, end;       /* clusters [first, end) */
} RangeLock;

typedef struct AllocTrack {
    /* Immutable after open. */
    char *node;
    BlockDev *file;
    uint64_t size;
    uint64_t nclusters;
    uint64_t backing_size;

    GMutex lock;               /* protects everything below */
    GCond cond;                /* a range lock released, backing_users 0, commit done */
    Bitmap *alloc;
    GArray *ranges;            /* of RangeLock */
    BlockDev *backing;         /* NULL once dropped */
    char *backing_name;
    char *backing_filename;
    unsigned backing_users;

    /* The record in the state directory (rec_fd < 0 only while opening). */
    int rec_fd;
    char *rec_path;
    uint8_t *durable;          /* bitmap bytes as written in the record */
    uint64_t commit_req;       /* commits asked for */
    uint64_t commit_done;      /* commits covered by a finished write */
    bool committing;
    int rec_err;               /* latched record write error (-errno) */
} AllocTrack;

char *alloc_track_record_path(const char *dir, const char *node, const char *target)
{
    /* one record per target image: the same node name over another image is another
     * restore (the naming of the bitmap state files) */
    char *real = realpath(target, NULL);
    g_autofree char *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256,
                                                          real != NULL ? real : target, -1);
    free(real);
    g_autofree char *base = g_strdup_printf("%s-%.16s.alloc-track", node, sum);
    return g_build_filename(dir, base, NULL);
}

bool alloc_track_is(const BlockNode *n)
{
    return n != NULL && n->drv == &bdrv_alloc_track;
}

/* ---- bits ------------------------------------------------------------------------------ */

static uint64_t cluster_end_byte(const AllocTrack *at, uint64_t c)
{
    return MIN((c + 1) * CL, at->size);
}

static bool durable_test(const AllocTrack *at, uint64_t c)
{
    return at->durable == NULL ? bitmap_test(at->alloc, c)
                               : (at->durable[c / 8] >> (c % 8)) & 1;
}

/* Are clusters [first, end) all allocated and recorded? Under lock. */
static bool all_durable_locked(const AllocTrack *at, uint64_t first, uint64_t end)
{
    if (bitmap_count_range(at->alloc, first, end - first) != end - first) {
        return false;
    }
    for (uint64_t c = first; at->durable != NULL && c < end; c++) {
        if (!durable_test(at, c)) {
            return false;
        }
    }
    return true;
}

/* The end of the run of clusters with the same alloc state as c. Under lock. */
static uint64_t run_end_locked(const AllocTrack *at, uint64_t c, bool *allocated)
{
    *allocated = bitmap_test(at->alloc, c);
    return *allocated ? bitmap_find_next_clear(at->alloc, c)
                      : bitmap_find_next_set(at->alloc, c);
}

/* Set bits [a, b) of the byte bitmap bytes (bit c at byte c / 8, bit c % 8). */
static void bytes_set_range(uint8_t *bytes, uint64_t a, uint64_t b)
{
    for (; a < b && a % 8 != 0; a++) {
        bytes[a / 8] |= (uint8_t)(1u << (a % 8));
    }
    if (b - a >= 8) {
        memset(bytes + a / 8, 0xff, (b - a) / 8);
        a += (b - a) / 8 * 8;
    }
    for (; a < b; a++) {
        bytes[a / 8] |= (uint8_t)(1u << (a % 8));
    }
}

/* The alloc bits as record bytes (rec_bytes(at) of them, zeroed by the caller), one run
 * at a time. Under lock. */
static void alloc_to_bytes_locked(const AllocTrack *at, uint8_t *bytes)
{
    for (uint64_t a = bitmap_find_next_set(at->alloc, 0); a < at->nclusters;) {
        uint64_t b = bitmap_find_next_clear(at->alloc, a);
        bytes_set_range(bytes, a, b);
        a = b < at->nclusters ? bitmap_find_next_set(at->alloc, b) : b;
    }
}

/* ---- range locks ----------------------------------------------------------------------- */

static bool range_busy_locked(const AllocTrack *at, uint64_t first, uint64_t end)
{
    for (guint i = 0; i < at->ranges->len; i++) {
        const RangeLock *r = &g_array_index(at->ranges, RangeLock, i);
        if (r->first < end && first < r->end) {
            return true;
        }
    }
    return false;
}

static void range_lock(AllocTrack *at, uint64_t first, uint64_t end)
{
    RangeLock r = {first, end};

    g_mutex_lock(&at->lock);
    while (range_busy_locked(at, first, end)) {
        g_cond_wait(&at->cond, &at->lock);
    }
    g_array_append_val(at->ranges, r);
    g_mutex_unlock(&at->lock);
}

static void range_unlock(AllocTrack *at, uint64_t first, uint64_t end)
{
    g_mutex_lock(&at->lock);
    for (guint i = 0; i < at->ranges->len; i++) {
        const RangeLock *r = &g_array_index(at->ranges, RangeLock, i);
        if (r->first == first && r->end == end) {
            g_array_remove_index_fast(at->ranges, i);
            break;
        }
    }
    g_cond_broadcast(&at->cond);
    g_mutex_unlock(&at->lock);
}

/* ---- the backing ----------------------------------------------------------------------- */

static BlockDev *backing_get(AllocTrack *at)
{
    g_mutex_lock(&at->lock);
    BlockDev *b = at->backing;
    if (b != NULL) {
        at->backing_users++;
    }
    g_mutex_unlock(&at->lock);
    return b;
}

static void backing_put(AllocTrack *at)
{
    g_mutex_lock(&at->lock);
    assert(at->backing_users > 0);
    if (--at->backing_users == 0) {
        g_cond_broadcast(&at->cond);
    }
    g_mutex_unlock(&at->lock);
}

/* Read [off, off + len) of the backing; what lies beyond its end reads as zeros. */
static int backing_read(AllocTrack *at, BlockDev *b, void *buf, uint64_t len, uint64_t off)
{
    uint64_t n = off >= at->backing_size ? 0 : MIN(len, at->backing_size - off);

    if (n < len) {
        memset((char *)buf + n, 0, len - n);
    }
    return n == 0 ? 0 : blockdev_pread(b, buf, n, off);
}

/* ---- the record ------------------------------------------------------------------------ */

static void header_fill(const AllocTrack *at, RecHeader *h)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, REC_MAGIC, 8);
    h->version = GUINT32_TO_LE(REC_VERSION);
    h->cluster_size = GUINT32_TO_LE((uint32_t)CL);
    h->size = GUINT64_TO_LE(at->size);
    h->backing_size = GUINT64_TO_LE(at->backing_size);
    h->nclusters = GUINT64_TO_LE(at->nclusters);
    size_t len = MIN(strlen(at->backing_filename), (size_t)REC_MAX_NAME);
    h->name_len = GUINT32_TO_LE((uint32_t)len);
    memcpy(h->name, at->backing_filename, len);
    h->crc = GUINT32_TO_LE((uint32_t)crc32(0, (const Bytef *)h, offsetof(RecHeader, crc)));
}

static uint64_t rec_bytes(const AllocTrack *at)
{
    return (at->nclusters + 7) / 8;
}

/* Make a new record at at->rec_path with the current alloc bits (temp file, fsync,
 * rename, fsync of the directory). */
static bool record_create(AllocTrack *at, GError **errp)
{
    g_autofree char *tmp = g_strdup_printf("%s.tmp", at->rec_path);
    g_autofree uint8_t *buf = g_malloc0(REC_HEADER + rec_bytes(at));
    RecHeader h;
    int r;

    header_fill(at, &h);
    memcpy(buf, &h, sizeof(h));
    alloc_to_bytes_locked(at, buf + REC_HEADER);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        goto fail;
    }
    r = full_pwrite(fd, buf, REC_HEADER + rec_bytes(at), 0);
    if (r == 0 && fsync(fd) < 0) {
        r = -errno;
    }
    if (r == 0) {
        r = close_fd_checked(&fd);
    }
    close_fd(&fd);
    if (r == 0 && rename(tmp, at->rec_path) < 0) {
        r = -errno;
    }
    if (r < 0) {
        unlink(tmp);
        goto fail;
    }
    {
        g_autofree char *dir = g_path_get_dirname(at->rec_path);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    at->durable = g_memdup2(buf + REC_HEADER, rec_bytes(at));
    return true;

fail:
    g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "add %s: create %s: %s", at->node,
                at->rec_path, g_strerror(-r));
    return false;
}

/* Read an existing record into alloc/durable; false with errp when it does not fit. */
static bool record_load(AllocTrack *at, int fd, GError **errp)
{
    RecHeader h, want;
    int r = full_pread(fd, &h, sizeof(h), 0);

    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "add %s: read %s: %s",
                    at->node, at->rec_path, g_strerror(-r));
        return false;
    }
    header_fill(at, &want);
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)&h, offsetof(RecHeader, crc));
    if (memcmp(h.magic, REC_MAGIC, 8) != 0 || GUINT32_FROM_LE(h.crc) != crc ||
        GUINT32_FROM_LE(h.version) != REC_VERSION) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "add %s: %s is not an allocation record (damaged?)", at->node,
                    at->rec_path);
        return false;
    }
    if (memcmp(&h, &want, sizeof(h)) != 0) {
        uint32_t len = MIN(GUINT32_FROM_LE(h.name_len), REC_MAX_NAME);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "add %s: the allocation record %s belongs to another restore (backing "
                    "'%.*s' of %" G_GUINT64_FORMAT " bytes onto %" G_GUINT64_FORMAT
                    " bytes); remove it to start the restore over",
                    at->node, at->rec_path, (int)len, h.name,
                    GUINT64_FROM_LE(h.backing_size), GUINT64_FROM_LE(h.size));
        return false;
    }
    at->durable = g_malloc0(rec_bytes(at));
    r = full_pread(fd, at->durable, rec_bytes(at), REC_HEADER);
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "add %s: read %s: %s",
                    at->node, at->rec_path, g_strerror(-r));
        return false;
    }
    for (uint64_t c = 0; c < at->nclusters; c++) {
        if (durable_test(at, c)) {
            bitmap_set(at->alloc, c);
        }
    }
    return true;
}

static bool record_open(AllocTrack *at, const char *dir, GError **errp)
{
    at->rec_path = alloc_track_record_path(dir, at->node, blockdev_get_filename(at->file));
    if (g_mkdir_with_parents(dir, 0700) < 0) {
        int e = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(e), "add %s: state directory %s: %s",
                    at->node, dir, g_strerror(e));
        return false;
    }
    int fd = open(at->rec_path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) {
        int e = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(e), "add %s: open %s: %s", at->node,
                    at->rec_path, g_strerror(e));
        return false;
    }
    if (fd >= 0) {
        if (!record_load(at, fd, errp)) {
            close(fd);
            return false;
        }
        at->rec_fd = fd;
        return true;
    }
    if (!record_create(at, errp)) {
        return false;
    }
    at->rec_fd = open(at->rec_path, O_RDWR | O_CLOEXEC);
    if (at->rec_fd < 0) {
        int e = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(e), "add %s: open %s: %s", at->node,
                    at->rec_path, g_strerror(e));
        return false;
    }
    return true;
}

/* Write the pages of snap that differ from the record, then fdatasync. No lock: only the
 * committing thread touches the file and at->durable's contents outside the lock. */
static int record_write(AllocTrack *at, const uint8_t *snap)
{
    uint64_t n = rec_bytes(at);
    bool wrote = false;

    for (uint64_t off = 0; off < n; off += REC_PAGE) {
        uint64_t len = MIN((uint64_t)REC_PAGE, n - off);
        if (memcmp(snap + off, at->durable + off, len) == 0) {
            continue;
        }
        int r = full_pwrite(at->rec_fd, snap + off, len, REC_HEADER + off);
        if (r < 0) {
            return r;
        }
        wrote = true;
    }
    if (wrote && fdatasync(at->rec_fd) < 0) {
        return -errno;
    }
    return 0;
}

/*
 * Make every alloc bit set before this call durable in the record: flush the target,
 * write the record. Grouped: the first caller writes for all that wait behind it.
 * Any thread; takes and drops lock.
 */
static int commit(AllocTrack *at)
{
    if (at->rec_fd < 0) {
        return 0;
    }
    g_mutex_lock(&at->lock);
    uint64_t mine = ++at->commit_req;
    while (at->rec_err == 0 && at->commit_done < mine) {
        if (at->committing) {
            g_cond_wait(&at->cond, &at->lock);
            continue;
        }
        at->committing = true;
        uint64_t upto = at->commit_req;
        g_autofree uint8_t *snap = g_malloc0(rec_bytes(at));
        alloc_to_bytes_locked(at, snap);
        g_mutex_unlock(&at->lock);

        /* the data of every bit in snap reached the target before snap was taken */
        int r = blockdev_flush(at->file);
        if (r == 0) {
            r = record_write(at, snap);
        }

        g_mutex_lock(&at->lock);
        if (r == 0) {
            memcpy(at->durable, snap, rec_bytes(at));
            at->commit_done = upto;
        } else {
            at->rec_err = r;
            g_warning("alloc-track %s: write %s: %s", at->node, at->rec_path, g_strerror(-r));
        }
        at->committing = false;
        g_cond_broadcast(&at->cond);
    }
    int r = at->commit_done >= mine ? 0 : at->rec_err;
    g_mutex_unlock(&at->lock);
    return r;
}

/* ---- copying from the backing ---------------------------------------------------------- */

/*
 * Copy clusters [first, end) (all unallocated, range-locked by the caller, at most
 * MAX_RUN) from the backing into buf and onto the target, then mark them allocated.
 * buf holds the clusters' bytes afterwards. 0 or -errno (-ENOENT: no backing).
 */
static int copy_run(AllocTrack *at, uint64_t first, uint64_t end, void *buf)
{
    uint64_t off = first * CL;
    uint64_t len = cluster_end_byte(at, end - 1) - off;
    BlockDev *b = backing_get(at);

    if (b == NULL) {
        return -ENOENT;
    }
    int r = backing_read(at, b, buf, len, off);
    backing_put(at);
    if (r == 0) {
        r = blockdev_pwrite(at->file, buf, len, off, 0);
    }
    if (r == 0) {
        g_mutex_lock(&at->lock);
        bitmap_set_range(at->alloc, first, end - first);
        g_mutex_unlock(&at->lock);
    }
    return r;
}

/* ---- iovecs ---------------------------------------------------------------------------- */

/* Copy len bytes from buf into the iovecs, starting skip bytes into them. */
static void iov_from_buf(const struct iovec *iov, int iovcnt, uint64_t skip, const void *buf,
                         uint64_t len)
{
    const char *p = buf;

    for (int i = 0; i < iovcnt && len > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        uint64_t n = MIN(len, iov[i].iov_len - skip);
        memcpy((char *)iov[i].iov_base + skip, p, n);
        p += n;
        len -= n;
        skip = 0;
    }
}

/* Read [off, off + len) of the target into the iovecs, skip bytes into them. */
static int iov_read_file(AllocTrack *at, const struct iovec *iov, int iovcnt, uint64_t skip,
                         uint64_t len, uint64_t off)
{
    for (int i = 0; i < iovcnt && len > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        uint64_t n = MIN(len, iov[i].iov_len - skip);
        int r = blockdev_pread(at->file, (char *)iov[i].iov_base + skip, n, off);
        if (r < 0) {
            return r;
        }
        off += n;
        len -= n;
        skip = 0;
    }
    return 0;
}

/* ---- I/O ops --------------------------------------------------------------------------- */

/* Bytes [pos, rend) lie in clusters not allocated a moment ago: copy them on the way. */
static int read_unallocated(AllocTrack *at, const struct iovec *iov, int iovcnt, uint64_t skip,
                            uint64_t pos, uint64_t rend, void *bounce)
{
    uint64_t first = pos / CL;
    uint64_t end = (rend + CL - 1) / CL;
    int r = 0;

    range_lock(at, first, end);
    for (uint64_t c = first; c < end && r == 0;) {
        bool allocated;
        g_mutex_lock(&at->lock);
        uint64_t e = MIN(run_end_locked(at, c, &allocated), end);
        g_mutex_unlock(&at->lock);
        uint64_t from = MAX(pos, c * CL);
        uint64_t to = MIN(rend, e * CL);
        if (allocated) {
            /* a write or another copy got there first: the target has it */
            r = iov_read_file(at, iov, iovcnt, skip + (from - pos), to - from, from);
        } else {
            r = copy_run(at, c, e, bounce);
            if (r == 0) {
                iov_from_buf(iov, iovcnt, skip + (from - pos), (char *)bounce + (from - c * CL),
                             to - from);
            }
        }
        c = e;
    }
    range_unlock(at, first, end);
    return r;
}

static int at_preadv(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                     uint64_t offset)
{
    AllocTrack *at = n->opaque;
    uint64_t end = offset + len;
    g_autofree void *bounce = NULL;

    for (uint64_t pos = offset; pos < end;) {
        bool allocated;
        uint64_t c = pos / CL;
        g_mutex_lock(&at->lock);
        uint64_t e = run_end_locked(at, c, &allocated);
        g_mutex_unlock(&at->lock);
        if (!allocated) {
            e = MIN(e, c + MAX_RUN);
        }
        uint64_t rend = MIN(end, e * CL);
        int r;
        if (allocated) {
            r = iov_read_file(at, iov, iovcnt, pos - offset, rend - pos, pos);
        } else {
            if (bounce == NULL) {
                bounce = g_malloc(MAX_RUN * CL);
            }
            r = read_unallocated(at, iov, iovcnt, pos - offset, pos, rend, bounce);
        }
        if (r < 0) {
            return r;
        }
        pos = rend;
    }
    return 0;
}

typedef enum ModifyKind { MOD_WRITE, MOD_ZEROES, MOD_DISCARD } ModifyKind;

typedef struct Modify {
    ModifyKind kind;
    const struct iovec *iov;
    int iovcnt;
    unsigned flags;
} Modify;

static int modify_file(AllocTrack *at, const Modify *m, uint64_t len, uint64_t offset)
{
    switch (m->kind) {
    case MOD_WRITE:
        if (m->iovcnt == 1) {
            return blockdev_pwrite(at->file, m->iov[0].iov_base, len, offset, m->flags);
        } else {
            g_autofree char *buf = g_malloc(len);
            uint64_t p = 0;
            for (int i = 0; i < m->iovcnt; i++) {
                memcpy(buf + p, m->iov[i].iov_base, m->iov[i].iov_len);
                p += m->iov[i].iov_len;
            }
            return blockdev_pwrite(at->file, buf, len, offset, m->flags);
        }
    case MOD_ZEROES:
        return blockdev_write_zeroes(at->file, len, offset, m->flags);
    case MOD_DISCARD:
        return blockdev_discard(at->file, len, offset);
    }
    g_assert_not_reached();
}

/* Cluster c is touched only in part by [offset, end) and is not allocated: copy it from
 * the backing first (range-locked by the caller). */
static int fill_partial(AllocTrack *at, uint64_t c, uint64_t offset, uint64_t end)
{
    bool partial = offset > c * CL || end < cluster_end_byte(at, c);

    g_mutex_lock(&at->lock);
    bool allocated = bitmap_test(at->alloc, c);
    g_mutex_unlock(&at->lock);
    if (!partial || allocated) {
        return 0;
    }
    g_autofree void *buf = g_malloc(CL);
    return copy_run(at, c, c + 1, buf);
}

static int modify(BlockNode *n, const Modify *m, uint64_t len, uint64_t offset)
{
    AllocTrack *at = n->opaque;
    uint64_t end = offset + len;
    uint64_t first = offset / CL;
    uint64_t last = (end + CL - 1) / CL;

    g_mutex_lock(&at->lock);
    bool fast = all_durable_locked(at, first, last);
    g_mutex_unlock(&at->lock);
    if (fast) {
        return modify_file(at, m, len, offset);
    }

    range_lock(at, first, last);
    int r = fill_partial(at, first, offset, end);
    if (r == 0 && last - 1 != first) {
        r = fill_partial(at, last - 1, offset, end);
    }
    if (r == 0) {
        r = modify_file(at, m, len, offset);
    }
    if (r == 0) {
        g_mutex_lock(&at->lock);
        bitmap_set_range(at->alloc, first, last - first);
        bool recorded = all_durable_locked(at, first, last);
        g_mutex_unlock(&at->lock);
        if (!recorded) {
            /* acknowledged only once a resumed restore cannot copy over it */
            r = commit(at);
        }
    }
    range_unlock(at, first, last);
    return r == -ENOENT ? -EIO : r;
}

static int at_pwritev(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                      uint64_t offset, unsigned flags)
{
    Modify m = {.kind = MOD_WRITE, .iov = iov, .iovcnt = iovcnt, .flags = flags};
    return modify(n, &m, len, offset);
}

static int at_write_zeroes(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags)
{
    Modify m = {.kind = MOD_ZEROES, .flags = flags};
    return modify(n, &m, len, offset);
}

static int at_discard(BlockNode *n, uint64_t len, uint64_t offset)
{
    Modify m = {.kind = MOD_DISCARD};
    return modify(n, &m, len, offset);
}

static int at_flush(BlockNode *n)
{
    AllocTrack *at = n->opaque;
    return blockdev_flush(at->file);
}

static int at_block_status(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                           bool *is_hole)
{
    AllocTrack *at = n->opaque;
    bool allocated;

    g_mutex_lock(&at->lock);
    uint64_t e = run_end_locked(at, offset / CL, &allocated);
    g_mutex_unlock(&at->lock);
    uint64_t lim = MIN(offset + len, e * CL) - offset;
    if (allocated) {
        return blockdev_block_status(at->file, offset, lim, pnum, is_hole);
    }
    if (offset >= at->backing_size) {
        *pnum = lim;
        *is_hole = true;
        return 0;
    }
    BlockDev *b = backing_get(at);
    if (b == NULL) {
        return blockdev_block_status(at->file, offset, lim, pnum, is_hole);
    }
    int r = blockdev_block_status(b, offset, MIN(lim, at->backing_size - offset), pnum, is_hole);
    backing_put(at);
    return r;
}

/* ---- open / close ---------------------------------------------------------------------- */

static void at_free(AllocTrack *at)
{
    if (at == NULL) {
        return;
    }
    if (at->rec_fd >= 0) {
        (void)commit(at);
        close_fd(&at->rec_fd);
    }
    if (at->file != NULL) {
        (void)blockdev_flush(at->file);
    }
    blockdev_unref(at->backing);
    blockdev_unref(at->file);
    bitmap_free(at->alloc);
    if (at->ranges != NULL) {
        g_array_unref(at->ranges);
    }
    g_free(at->durable);
    g_free(at->rec_path);
    g_free(at->backing_name);
    g_free(at->backing_filename);
    g_free(at->node);
    g_mutex_clear(&at->lock);
    g_cond_clear(&at->cond);
    g_free(at);
}

static bool at_open(BlockNode *n, const BlockDevOptions *opts, GError **errp)
{
    const char *node = opts->node_name;

    if (opts->file == NULL || opts->backing == NULL) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "add %s: alloc-track needs 'file' (the restore target) and 'backing' "
                    "(the source)", node);
        return false;
    }
    if (strcmp(opts->file, opts->backing) == 0 || strcmp(opts->file, node) == 0 ||
        strcmp(opts->backing, node) == 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "add %s: 'file' and 'backing' must be two other nodes", node);
        return false;
    }

    AllocTrack *at = g_new0(AllocTrack, 1);
    g_mutex_init(&at->lock);
    g_cond_init(&at->cond);
    at->rec_fd = -1;
    at->node = g_strdup(node);
    at->ranges = g_array_new(FALSE, FALSE, sizeof(RangeLock));
    at->file = blockdev_find(opts->file, errp);
    if (at->file == NULL) {
        g_prefix_error(errp, "add %s: file: ", node);
        goto fail;
    }
    at->backing = blockdev_find(opts->backing, errp);
    if (at->backing == NULL) {
        g_prefix_error(errp, "add %s: backing: ", node);
        goto fail;
    }
    if (blockdev_is_read_only(at->file)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                    "add %s: the target '%s' is read-only", node, opts->file);
        goto fail;
    }
    at->size = blockdev_get_size(at->file);
    at->backing_size = blockdev_get_size(at->backing);
    if (at->backing_size > at->size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "add %s: the backing '%s' (%" G_GUINT64_FORMAT " bytes) is larger than "
                    "the target '%s' (%" G_GUINT64_FORMAT " bytes)", node, opts->backing,
                    at->backing_size, opts->file, at->size);
        goto fail;
    }
    at->nclusters = (at->size + CL - 1) / CL;
    at->backing_name = g_strdup(opts->backing);
    at->backing_filename = g_strdup(blockdev_get_filename(at->backing) != NULL
                                        ? blockdev_get_filename(at->backing)
                                        : opts->backing);
    at->alloc = bitmap_new(at->nclusters, false);
    /* nothing to restore past the backing's end */
    uint64_t tail = (at->backing_size + CL - 1) / CL;
    bitmap_set_range(at->alloc, tail, at->nclusters - tail);

    /* vmad's state directory (--state-dir, or its default), as the bitmaps use */
    if (!record_open(at, dirty_state_get_dir(), errp)) {
        goto fail;
    }
    if (bitmap_count(at->alloc) == at->nclusters) {
        /* a finished restore: the backing is not needed */
        g_clear_pointer(&at->backing, blockdev_unref);
    }

    n->opaque = at;
    n->size = at->size;
    n->filename = g_strdup(blockdev_get_filename(at->file));
    return true;

fail:
    at_free(at);
    return false;
}

static void at_close(BlockNode *n)
{
    g_clear_pointer(&n->opaque, at_free);
}

const BlockDriver bdrv_alloc_track = {
    .name = "alloc-track",
    .open = at_open,
    .close = at_close,
    .preadv = at_preadv,
    .pwritev = at_pwritev,
    .write_zeroes = at_write_zeroes,
    .discard = at_discard,
    .flush = at_flush,
    .block_status = at_block_status,
};

/* ---- the stream's side ----------------------------------------------------------------- */

char *alloc_track_backing_name(BlockNode *n)
{
    AllocTrack *at = n->opaque;
    g_mutex_lock(&at->lock);
    char *s = at->backing != NULL ? g_strdup(at->backing_name) : NULL;
    g_mutex_unlock(&at->lock);
    return s;
}

char *alloc_track_backing_filename(BlockNode *n)
{
    AllocTrack *at = n->opaque;
    g_mutex_lock(&at->lock);
    char *s = at->backing != NULL ? g_strdup(at->backing_filename) : NULL;
    g_mutex_unlock(&at->lock);
    return s;
}

uint64_t alloc_track_allocated_bytes(BlockNode *n)
{
    AllocTrack *at = n->opaque;
    g_mutex_lock(&at->lock);
    uint64_t count = bitmap_count(at->alloc);
    bool last = at->nclusters > 0 && bitmap_test(at->alloc, at->nclusters - 1);
    g_mutex_unlock(&at->lock);
    uint64_t bytes = count * CL;
    if (last) {
        bytes -= at->nclusters * CL - at->size;
    }
    return bytes;
}

uint64_t alloc_track_next_unallocated(BlockNode *n, uint64_t offset)
{
    AllocTrack *at = n->opaque;
    if (offset >= at->size) {
        return at->size;
    }
    g_mutex_lock(&at->lock);
    uint64_t c = bitmap_find_next_clear(at->alloc, offset / CL);
    g_mutex_unlock(&at->lock);
    return MIN(c * CL, at->size);
}

/* Fill clusters [first, end) (unallocated, range-locked, at most MAX_RUN) for the
 * stream: zeros in the backing are not copied onto a target that reads as zeros. */
static int stream_run(AllocTrack *at, uint64_t first, uint64_t end, void *buf, uint64_t *copied)
{
    uint64_t off = first * CL;
    uint64_t len = cluster_end_byte(at, end - 1) - off;
    BlockDev *b = backing_get(at);
    int r = 0;

    if (b == NULL) {
        return -ENOENT;
    }
    for (uint64_t pos = off; pos < off + len && r == 0;) {
        uint64_t pnum = 0;
        bool hole = false;
        uint64_t want = off + len - pos;
        if (pos >= at->backing_size) {
            pnum = want;
            hole = true;
        } else {
            r = blockdev_block_status(b, pos, MIN(want, at->backing_size - pos), &pnum, &hole);
            if (r < 0) {
                break;
            }
        }
        bool tgt_hole = false;
        uint64_t tnum = 0;
        if (hole) {
            r = blockdev_block_status(at->file, pos, pnum, &tnum, &tgt_hole);
            if (r < 0) {
                break;
            }
            pnum = tnum;
            if (!tgt_hole) {
                r = blockdev_write_zeroes(at->file, pnum, pos, 0);
            }
        } else {
            char *p = (char *)buf + (pos - off);
            r = backing_read(at, b, p, pnum, pos);
            if (r == 0) {
                *copied += pnum;
                if (vma_buffer_is_zero(p, pnum)) {
                    r = blockdev_block_status(at->file, pos, pnum, &tnum, &tgt_hole);
                    if (r == 0 && tgt_hole) {
                        pnum = tnum; /* nothing to write for this part */
                    } else if (r == 0) {
                        r = blockdev_pwrite(at->file, p, pnum, pos, 0);
                    }
                } else {
                    r = blockdev_pwrite(at->file, p, pnum, pos, 0);
                }
            }
        }
        pos += pnum;
    }
    backing_put(at);
    if (r == 0) {
        g_mutex_lock(&at->lock);
        bitmap_set_range(at->alloc, first, end - first);
        g_mutex_unlock(&at->lock);
    }
    return r;
}

int alloc_track_stream_chunk(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *copied)
{
    AllocTrack *at = n->opaque;
    uint64_t first = offset / CL;
    uint64_t end = MIN((offset + len + CL - 1) / CL, at->nclusters);
    g_autofree void *buf = NULL;

    for (uint64_t c = first; c < end;) {
        bool allocated;
        g_mutex_lock(&at->lock);
        uint64_t e = MIN(run_end_locked(at, c, &allocated), end);
        g_mutex_unlock(&at->lock);
        if (allocated) {
            c = e;
            continue;
        }
        e = MIN(e, c + MAX_RUN);
        if (buf == NULL) {
            buf = g_malloc(MAX_RUN * CL);
        }
        range_lock(at, c, e);
        int r = 0;
        for (uint64_t s = c; s < e && r == 0;) {
            g_mutex_lock(&at->lock);
            uint64_t se = MIN(run_end_locked(at, s, &allocated), e);
            g_mutex_unlock(&at->lock);
            if (!allocated) {
                r = stream_run(at, s, se, buf, copied);
            }
            s = se;
        }
        range_unlock(at, c, e);
        if (r < 0) {
            return r;
        }
        c = e;
    }
    return 0;
}

int alloc_track_sync(BlockNode *n)
{
    return commit(n->opaque);
}

bool alloc_track_drop_backing(BlockNode *n, GError **errp)
{
    AllocTrack *at = n->opaque;

    g_mutex_lock(&at->lock);
    uint64_t missing = at->nclusters - bitmap_count(at->alloc);
    g_mutex_unlock(&at->lock);
    if (missing > 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "%s: %" G_GUINT64_FORMAT " clusters are not restored yet", at->node, missing);
        return false;
    }
    int r = commit(at);
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "%s: write %s: %s", at->node,
                    at->rec_path, g_strerror(-r));
        return false;
    }
    g_mutex_lock(&at->lock);
    while (at->backing_users > 0) {
        g_cond_wait(&at->cond, &at->lock);
    }
    BlockDev *b = g_steal_pointer(&at->backing);
    g_mutex_unlock(&at->lock);
    blockdev_unref(b);
    return true;
}
