/*
 * block/file.c — the `file` and `host_device` protocol drivers: raw image files and
 * block devices.
 *
 * I/O is plain pread/pwrite (preadv/pwritev for vectors) on one descriptor per node,
 * looped over short transfers and EINTR, so any number of threads may do I/O on a node
 * at once. Block status comes from SEEK_DATA/SEEK_HOLE; write-zeroes and discard use
 * fallocate() where the file system can, and write-zeroes falls back to writing zeros.
 *
 * O_DIRECT: a node opened with `direct` has an alignment `align` (the logical block
 * size of a block device, the file system's direct-I/O offset alignment of a file).
 * Aligned requests with aligned buffers go straight to the disk. Anything else is
 * bounced through aligned buffers; an unaligned write becomes a read-modify-write of
 * the partial blocks at its ends. To keep two such writes from undoing each other, all
 * writes of a direct node hold a range lock over their block-aligned extent. The last
 * partial block of a file whose size is not a multiple of `align` cannot be written
 * with O_DIRECT without growing the file; bytes there go through a second, buffered
 * descriptor of the same file (the kernel keeps the two coherent).
 *
 * The two drivers share every op; they differ in the kind of file they accept (as in
 * QEMU: `file` refuses devices, `host_device` wants a block device). file_open() is the
 * one place a descriptor is opened.
 *
 * Locks: s->range_lock (direct nodes; taken alone, never across I/O).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>

#include "block/block.h"
#include "block/image-lock.h"
#include "util/fd.h"
#include "util/io.h"

#define BOUNCE_MAX   (1024u * 1024)     /* largest bounce buffer of a direct node */
#define ZERO_BUF_LEN (1024u * 1024)     /* shared zero buffer for write-zeroes fallback */
#define MEM_ALIGN    4096u              /* our bounce buffers' alignment */

typedef struct Range {
    uint64_t start, end;
} Range;

typedef struct FileState {
    int fd;                      /* O_DIRECT when direct */
    int fd_buffered;             /* direct only: same file, page cache; else -1 */
    uint64_t size;
    bool direct;
    bool is_blk;
    uint32_t align;              /* direct: offset/length alignment (power of 2); else 1 */
    uint32_t mem_align;          /* direct: buffer alignment needed; else 1 */

    /* Latched "the kernel said no" answers, so a futile syscall is tried once. */
    gint no_seek_data;           /* atomic: SEEK_DATA unsupported, all data */
    gint no_punch;               /* atomic: FALLOC_FL_PUNCH_HOLE unsupported */
    gint no_zero_range;          /* atomic: FALLOC_FL_ZERO_RANGE unsupported */

    GMutex range_lock;           /* protects ranges (direct nodes) */
    GCond range_cond;            /* a range was released */
    GArray *ranges;              /* of Range: block-aligned extents being written */
} FileState;

/* ---- small helpers ---- */

static inline uint64_t align_down(uint64_t v, uint64_t a)
{
    return v & ~(a - 1);
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static void *aligned_alloc_or_die(size_t len)
{
    void *p = NULL;

    if (posix_memalign(&p, MEM_ALIGN, len ? len : MEM_ALIGN) != 0) {
        g_error("out of memory allocating a %zu-byte I/O buffer", len);
    }
    return p;
}

static const void *zero_buffer(void)
{
    static void *zeros;

    if (g_once_init_enter(&zeros)) {
        void *p = aligned_alloc_or_die(ZERO_BUF_LEN);
        memset(p, 0, ZERO_BUF_LEN);
        g_once_init_leave(&zeros, p);
    }
    return zeros;
}

/* ---- range lock (direct disks) ---- */

static void range_lock(FileState *s, uint64_t start, uint64_t end)
{
    Range r = { start, end };

    g_mutex_lock(&s->range_lock);
    for (;;) {
        bool busy = false;
        for (guint i = 0; i < s->ranges->len; i++) {
            const Range *o = &g_array_index(s->ranges, Range, i);
            if (o->start < end && start < o->end) {
                busy = true;
                break;
            }
        }
        if (!busy) {
            break;
        }
        g_cond_wait(&s->range_cond, &s->range_lock);
    }
    g_array_append_val(s->ranges, r);
    g_mutex_unlock(&s->range_lock);
}

static void range_unlock(FileState *s, uint64_t start, uint64_t end)
{
    g_mutex_lock(&s->range_lock);
    for (guint i = 0; i < s->ranges->len; i++) {
        const Range *o = &g_array_index(s->ranges, Range, i);
        if (o->start == start && o->end == end) {
            g_array_remove_index_fast(s->ranges, i);
            break;
        }
    }
    g_cond_broadcast(&s->range_cond);
    g_mutex_unlock(&s->range_lock);
}

/* ---- reads ---- */

static int plain_pread(int fd, void *buf, size_t len, uint64_t offset)
{
    size_t done = 0;
    int r = full_pread_upto(fd, buf, len, offset, &done);

    if (r == 0 && done < len) {
        /* The file ended early (truncated behind our back): it reads as zeros. */
        memset((char *)buf + done, 0, len - done);
    }
    return r;
}

/* preadv over short transfers and EINTR; a short file reads as zeros. */
static int plain_preadv(int fd, const struct iovec *iov_in, int iovcnt, uint64_t len,
                        uint64_t offset)
{
    struct iovec stack[64];
    g_autofree struct iovec *heap = NULL;
    struct iovec *iov = stack;
    size_t done = 0;

    if (iovcnt > (int)G_N_ELEMENTS(stack)) {
        iov = heap = g_new(struct iovec, iovcnt);
    }
    memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
    int r = full_preadv_upto(fd, iov, iovcnt, offset, &done);
    if (r == 0 && done < len) {
        /* the file ended early (truncated behind our back): zeros */
        memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
        struct iovec *rest = iov;
        int cnt = iovcnt;
        iov_consume(&rest, &cnt, done);
        for (int i = 0; i < cnt; i++) {
            memset(rest[i].iov_base, 0, rest[i].iov_len);
        }
    }
    return r;
}

/* Can iov go to an O_DIRECT descriptor as it is? */
static bool iov_direct_ok(FileState *s, const struct iovec *iov, int iovcnt, uint64_t offset)
{
    if ((offset & (s->align - 1)) != 0) {
        return false;
    }
    for (int i = 0; i < iovcnt; i++) {
        if (((uintptr_t)iov[i].iov_base & (s->mem_align - 1)) != 0 ||
            (iov[i].iov_len & (s->align - 1)) != 0) {
            return false;
        }
    }
    return true;
}

/* The next piece of a direct request at offset with len bytes left: either the largest
 * aligned part of an aligned buffer (goes to the disk as it is), or the blocks
 * [start, end) around the request's head, at most BOUNCE_MAX, bounced; n bytes of the
 * request are in it. */
typedef struct DirectPiece {
    bool bounced;
    uint64_t start, end;      /* bounced: the block-aligned extent */
    uint64_t n;
} DirectPiece;

static DirectPiece direct_piece(const FileState *s, const char *buf, uint64_t len,
                                uint64_t offset)
{
    const uint64_t a = s->align;
    DirectPiece p = { 0 };

    if ((offset & (a - 1)) == 0 && len >= a && ((uintptr_t)buf & (s->mem_align - 1)) == 0) {
        p.n = align_down(len, a);
    } else {
        p.bounced = true;
        p.start = align_down(offset, a);
        p.end = MIN(align_up(offset + len, a), p.start + BOUNCE_MAX);
        p.n = MIN(p.end - offset, len);
    }
    return p;
}

/* Cut [offset, offset+len) into direct pieces and run fn on each (buf at the piece's
 * first byte; bounce: a BOUNCE_MAX aligned buffer for bounced pieces); stops at the
 * first error. */
typedef int (*DirectPieceFn)(FileState *s, const DirectPiece *p, char *buf, uint64_t offset,
                             void *bounce);

static int direct_each_piece(FileState *s, char *buf, uint64_t len, uint64_t offset,
                             DirectPieceFn fn)
{
    void *bounce = NULL;
    int ret = 0;

    while (len > 0) {
        DirectPiece p = direct_piece(s, buf, len, offset);
        if (p.bounced && bounce == NULL) {
            bounce = aligned_alloc_or_die(BOUNCE_MAX);
        }
        ret = fn(s, &p, buf, offset, bounce);
        if (ret < 0) {
            break;
        }
        buf += p.n;
        offset += p.n;
        len -= p.n;
    }
    free(bounce);
    return ret;
}

static int read_piece(FileState *s, const DirectPiece *p, char *buf, uint64_t offset,
                      void *bounce)
{
    if (!p->bounced) {
        return plain_pread(s->fd, buf, p->n, offset);
    }
    int ret = plain_pread(s->fd, bounce, p->end - p->start, p->start);
    if (ret == 0) {
        memcpy(buf, (char *)bounce + (offset - p->start), p->n);
    }
    return ret;
}

static int direct_pread(FileState *s, char *buf, uint64_t len, uint64_t offset)
{
    return direct_each_piece(s, buf, len, offset, read_piece);
}

/* Read into iov[0..iovcnt) at offset: one preadv for a plain node (the merged reads of
 * block-copy), element by element where O_DIRECT needs bouncing. */
static int file_preadv(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                       uint64_t offset)
{
    FileState *s = n->opaque;

    if (iovcnt == 1) {
        return s->direct ? direct_pread(s, iov[0].iov_base, len, offset)
                         : plain_pread(s->fd, iov[0].iov_base, len, offset);
    }
    if (s->direct && !iov_direct_ok(s, iov, iovcnt, offset)) {
        for (int i = 0; i < iovcnt; i++) {
            int r = direct_pread(s, iov[i].iov_base, iov[i].iov_len, offset);
            if (r < 0) {
                return r;
            }
            offset += iov[i].iov_len;
        }
        return 0;
    }
    return plain_preadv(s->fd, iov, iovcnt, len, offset);
}

/* ---- writes (callers are inside the gate and, for direct disks, the range lock) ---- */

/* The first byte of the partial block at the end of a direct file, or size. */
static uint64_t direct_tail_start(FileState *s)
{
    return align_down(s->size, s->align);
}

static int write_piece(FileState *s, const DirectPiece *p, char *buf, uint64_t offset,
                       void *bounce)
{
    const uint64_t a = s->align;
    int ret = 0;

    if (!p->bounced) {
        return full_pwrite(s->fd, buf, p->n, offset);
    }
    bool head_partial = offset > p->start;
    bool tail_partial = offset + p->n < p->end;
    if (head_partial) {
        /* read-modify-write of the head block */
        ret = plain_pread(s->fd, bounce, a, p->start);
    }
    if (ret == 0 && tail_partial && !(head_partial && p->end - p->start == a)) {
        /* read-modify-write of the tail block (when it is not the head block) */
        ret = plain_pread(s->fd, (char *)bounce + (p->end - a - p->start), a, p->end - a);
    }
    if (ret == 0) {
        memcpy((char *)bounce + (offset - p->start), buf, p->n);
        ret = full_pwrite(s->fd, bounce, p->end - p->start, p->start);
    }
    return ret;
}

/* Direct write of [offset, offset+len) lying before direct_tail_start(). */
static int direct_pwrite_body(FileState *s, const char *buf, uint64_t len, uint64_t offset)
{
    /* write_piece only reads buf */
    return direct_each_piece(s, (char *)buf, len, offset, write_piece);
}

static int do_pwrite(FileState *s, const void *buf, uint64_t len, uint64_t offset)
{
    if (!s->direct) {
        return full_pwrite(s->fd, buf, len, offset);
    }
    uint64_t tail = direct_tail_start(s);
    int ret = 0;
    if (offset < tail) {
        uint64_t n = MIN(len, tail - offset);
        ret = direct_pwrite_body(s, buf, n, offset);
        buf = (const char *)buf + n;
        offset += n;
        len -= n;
    }
    if (ret == 0 && len > 0) {
        ret = full_pwrite(s->fd_buffered, buf, len, offset);
    }
    return ret;
}

static int write_zeros_by_pwrite(FileState *s, uint64_t len, uint64_t offset)
{
    const void *zeros = zero_buffer();

    while (len > 0) {
        uint64_t n = MIN(len, ZERO_BUF_LEN);
        int ret = do_pwrite(s, zeros, n, offset);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        len -= n;
    }
    return 0;
}

static bool errno_means_unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS || err == EINVAL ||
           err == ENODEV || err == ENOTTY;
}

/* fallocate with a latched "unsupported": 0, -ENOTSUP (unsupported) or -errno. */
static int try_fallocate(FileState *s, gint *unsupported, int mode, uint64_t len,
                         uint64_t offset)
{
    if (g_atomic_int_get(unsupported)) {
        return -ENOTSUP;
    }
    for (;;) {
        if (fallocate(s->fd, mode, (off_t)offset, (off_t)len) == 0) {
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        int err = errno;
        if (errno_means_unsupported(err)) {
            /* EINVAL for unaligned ranges on block devices is not permanent */
            if (!(s->is_blk && err == EINVAL)) {
                g_atomic_int_set(unsupported, 1);
            }
            return -ENOTSUP;
        }
        return -err;
    }
}

static int do_write_zeroes(FileState *s, uint64_t len, uint64_t offset, unsigned flags)
{
    int ret;

    if (!(flags & BLOCKDEV_NO_UNMAP)) {
        ret = try_fallocate(s, &s->no_punch, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            len, offset);
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (!s->is_blk) {
        /* Zeroed extents stay allocated (unwritten), as NO_UNMAP asks. On a block
         * device ZERO_RANGE may fall back to writing zeros in the kernel, which is
         * neither cheap nor better than our own fallback. */
        ret = try_fallocate(s, &s->no_zero_range, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                            len, offset);
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (flags & BLOCKDEV_FAST_ZERO) {
        return -ENOTSUP;
    }
    return write_zeros_by_pwrite(s, len, offset);
}

/* Alignment a direct file needs: statx's DIO alignment where the kernel tells it. */
static void probe_direct_alignment(FileState *s)
{
    s->align = 4096;
    s->mem_align = 4096;
    if (s->is_blk) {
        int lbs = 0;
        if (ioctl(s->fd, BLKSSZGET, &lbs) == 0 && lbs >= 512 && lbs <= 65536 &&
            (lbs & (lbs - 1)) == 0) {
            s->align = (uint32_t)lbs;
            s->mem_align = MIN((uint32_t)lbs, MEM_ALIGN);
        }
        return;
    }
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (statx(s->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align >= 1 &&
        stx.stx_dio_offset_align <= 65536 &&
        (stx.stx_dio_offset_align & (stx.stx_dio_offset_align - 1)) == 0 &&
        stx.stx_dio_mem_align >= 1 && stx.stx_dio_mem_align <= MEM_ALIGN &&
        (stx.stx_dio_mem_align & (stx.stx_dio_mem_align - 1)) == 0) {
        s->align = stx.stx_dio_offset_align;
        s->mem_align = stx.stx_dio_mem_align;
    }
#endif
}

/* ---- the ops ---- */

/* Hold the range lock of a direct node over [offset, offset+len)'s aligned extent. */
static void write_lock(FileState *s, uint64_t offset, uint64_t len, uint64_t *lk_start,
                       uint64_t *lk_end)
{
    if (s->direct) {
        *lk_start = align_down(offset, s->align);
        *lk_end = align_up(offset + len, s->align);
        range_lock(s, *lk_start, *lk_end);
    }
}

static void write_unlock(FileState *s, uint64_t lk_start, uint64_t lk_end)
{
    if (s->direct) {
        range_unlock(s, lk_start, lk_end);
    }
}

static int file_flush(BlockNode *n)
{
    FileState *s = n->opaque;

    while (fdatasync(s->fd) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

static int file_pwritev(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                        uint64_t offset, unsigned flags)
{
    FileState *s = n->opaque;
    uint64_t lk_start = 0, lk_end = 0;
    int ret = 0;

    write_lock(s, offset, len, &lk_start, &lk_end);
    for (int i = 0; i < iovcnt && ret == 0; i++) {
        ret = do_pwrite(s, iov[i].iov_base, iov[i].iov_len, offset);
        offset += iov[i].iov_len;
    }
    write_unlock(s, lk_start, lk_end);
    if (ret == 0 && (flags & BLOCKDEV_FUA)) {
        ret = file_flush(n);
    }
    return ret;
}

static int file_write_zeroes(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags)
{
    FileState *s = n->opaque;
    uint64_t lk_start = 0, lk_end = 0;

    write_lock(s, offset, len, &lk_start, &lk_end);
    int ret = do_write_zeroes(s, len, offset, flags);
    write_unlock(s, lk_start, lk_end);
    if (ret == 0 && (flags & BLOCKDEV_FUA)) {
        ret = file_flush(n);
    }
    return ret;
}

static int file_discard(BlockNode *n, uint64_t len, uint64_t offset)
{
    FileState *s = n->opaque;
    uint64_t lk_start = 0, lk_end = 0;

    write_lock(s, offset, len, &lk_start, &lk_end);
    int ret = try_fallocate(s, &s->no_punch, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, len,
                            offset);
    write_unlock(s, lk_start, lk_end);
    return ret == -ENOTSUP ? 0 : ret; /* discard is a hint */
}

static int file_block_status(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                             bool *is_hole)
{
    FileState *s = n->opaque;

    *pnum = len;
    *is_hole = false;
    if (g_atomic_int_get(&s->no_seek_data)) {
        return 0;
    }

    off_t data = lseek(s->fd, (off_t)offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            /* no data at or after offset: a hole up to the end of the file */
            *is_hole = true;
            return 0;
        }
        if (errno_means_unsupported(errno)) {
            g_atomic_int_set(&s->no_seek_data, 1);
            return 0;
        }
        return -errno;
    }
    if ((uint64_t)data > offset) {
        *is_hole = true;
        *pnum = MIN((uint64_t)data - offset, len);
        return 0;
    }
    off_t hole = lseek(s->fd, (off_t)offset, SEEK_HOLE);
    if (hole < 0) {
        if (errno == ENXIO) {
            return 0; /* the file shrank meanwhile: call it data */
        }
        return -errno;
    }
    if ((uint64_t)hole > offset) {
        *pnum = MIN((uint64_t)hole - offset, len);
    }
    return 0;
}

/* ---- open / close ---- */

static void file_close(BlockNode *n)
{
    FileState *s = n->opaque;
    int sr = 0;

    while (!n->read_only && s->fd >= 0 && (sr = fdatasync(s->fd)) < 0 && errno == EINTR) {
        /* interrupted by a signal: flush again */
    }
    if (sr < 0) {
        g_warning("close %s: flush failed: %s", n->filename, g_strerror(errno));
    }
    close_fd(&s->fd);
    close_fd(&s->fd_buffered);
    g_mutex_clear(&s->range_lock);
    g_cond_clear(&s->range_cond);
    g_array_unref(s->ranges);
    g_free(s);
}

/* The kind of file must match the driver asked for, as in QEMU (no driver named: any).
 * A missing file is left to open() to report. */
static bool check_kind(const BlockNode *n, const BlockDevOptions *opts, GError **errp)
{
    struct stat st;

    if (opts->driver == NULL || stat(opts->filename, &st) != 0) {
        return true;
    }
    bool is_dev = S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode);
    if (n->drv == &bdrv_file && is_dev) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "blockdev-add %s: %s is a device: use driver host_device",
                    opts->node_name, opts->filename);
        return false;
    }
    if (n->drv == &bdrv_host_device && !is_dev) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "blockdev-add %s: %s is not a block device: use driver file",
                    opts->node_name, opts->filename);
        return false;
    }
    return true;
}

/* The one place a file node's descriptors are opened. */
static bool file_open(BlockNode *n, const BlockDevOptions *opts, GError **errp)
{
    g_autofree FileState *s = g_new0(FileState, 1);
    int flags = (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    struct stat st;

    if (!check_kind(n, opts, errp)) {
        return false;
    }
    s->fd = -1;
    s->fd_buffered = -1;
    s->fd = open(opts->filename, flags | (opts->direct ? O_DIRECT : 0));
    if (s->fd < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err), "open %s: %s: %s%s",
                    opts->node_name, opts->filename,
                    opts->direct && err == EINVAL ? "O_DIRECT not supported: " : "",
                    g_strerror(err));
        return false;
    }
    if (fstat(s->fd, &st) < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err), "open %s: %s: %s",
                    opts->node_name, opts->filename, g_strerror(err));
        goto fail_fd;
    }
    if (S_ISREG(st.st_mode)) {
        s->size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        s->is_blk = true;
        if (ioctl(s->fd, BLKGETSIZE64, &s->size) < 0) {
            int err = errno;
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                        "open %s: %s: cannot get the device size: %s", opts->node_name,
                        opts->filename, g_strerror(err));
            goto fail_fd;
        }
    } else {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "open %s: %s: not a regular file or block device", opts->node_name,
                    opts->filename);
        goto fail_fd;
    }
    if (!image_lock_open(s->fd, opts->filename, opts->read_only, opts->locking, errp)) {
        goto fail_fd;
    }
    if (opts->direct) {
        s->fd_buffered = open(opts->filename, flags);
        if (s->fd_buffered < 0) {
            int err = errno;
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err), "open %s: %s: %s",
                        opts->node_name, opts->filename, g_strerror(err));
            goto fail_fd;
        }
        probe_direct_alignment(s);
    } else {
        s->align = 1;
        s->mem_align = 1;
    }

    s->direct = opts->direct;
    g_mutex_init(&s->range_lock);
    g_cond_init(&s->range_cond);
    s->ranges = g_array_new(FALSE, FALSE, sizeof(Range));
    n->size = s->size;
    n->opaque = g_steal_pointer(&s);
    return true;

fail_fd:
    close_fd(&s->fd_buffered);
    close_fd(&s->fd);
    return false;
}

/* The two drivers differ only in their name (and so in what check_kind() accepts). */
#define FILE_DRIVER(NAME) {                 \
    .name = NAME,                           \
    .open = file_open,                      \
    .close = file_close,                    \
    .preadv = file_preadv,                  \
    .pwritev = file_pwritev,                \
    .write_zeroes = file_write_zeroes,      \
    .discard = file_discard,                \
    .flush = file_flush,                    \
    .block_status = file_block_status,      \
}

const BlockDriver bdrv_file = FILE_DRIVER("file");
const BlockDriver bdrv_host_device = FILE_DRIVER("host_device");
