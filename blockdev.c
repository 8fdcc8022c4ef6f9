/*
 * blockdev.c — vmad's block layer: named disks over raw image files or block devices.
 *
 * I/O is plain pread/pwrite on one descriptor per disk, looped over short transfers
 * and EINTR, so any number of threads may do I/O on a disk at once. Block status
 * comes from SEEK_DATA/SEEK_HOLE; write-zeroes and discard use fallocate() where the
 * file system can, and write-zeroes falls back to writing zeros.
 *
 * O_DIRECT: a disk opened with `direct` has an alignment `align` (the logical block
 * size of a block device, the file system's direct-I/O offset alignment of a file).
 * Aligned requests with aligned buffers go straight to the disk. Anything else is
 * bounced through aligned buffers; an unaligned write becomes a read-modify-write of
 * the partial blocks at its ends. To keep two such writes from undoing each other, all
 * writes of a direct disk hold a range lock over their block-aligned extent. The last
 * partial block of a file whose size is not a multiple of `align` cannot be written
 * with O_DIRECT without growing the file; bytes there go through a second, buffered
 * descriptor of the same file (the kernel keeps the two coherent).
 *
 * Before-write hooks and the write gate: every write path (pwrite, write-zeroes,
 * discard) passes a per-disk gate: it waits while an installer holds the gate closed
 * (quiesce > 0), counts itself in flight, takes the current hook, calls it, does the
 * write, and counts itself out. blockdev_hooks_install() closes the gate of every disk
 * of its set, waits until each has no write in flight, sets the hook on all, and opens
 * the gates again: every write either finished before the hook existed or runs the
 * hook. Removal works the same way, so it returns only after every running call of the
 * old hook has finished. Reads do not pass the gate.
 *
 * Lock order (outer first); no lock is held across I/O or a hook call:
 *   hooks_ctl_lock  (serialises install/remove)
 *     -> bd->gate_lock of each disk, one at a time
 *   registry_lock   (registry only; taken alone)
 *   bd->range_lock  (direct disks; taken alone, while inside the write gate)
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>

#include "blockdev.h"
#include "block/image-lock.h"
#include "block/node-name.h"

#define BOUNCE_MAX   (1024u * 1024)     /* largest bounce buffer of a direct disk */
#define ZERO_BUF_LEN (1024u * 1024)     /* shared zero buffer for write-zeroes fallback */
#define MEM_ALIGN    4096u              /* our bounce buffers' alignment */

typedef struct Range {
    uint64_t start, end;
} Range;

struct BlockDev {
    gint refcount;               /* atomic */
    char *name;
    char *filename;
    int fd;                      /* O_DIRECT when direct */
    int fd_buffered;             /* direct only: same file, page cache; else -1 */
    uint64_t size;
    bool read_only;
    bool direct;
    bool is_blk;
    uint32_t align;              /* direct: offset/length alignment (power of 2); else 1 */
    uint32_t mem_align;          /* direct: buffer alignment needed; else 1 */

    /* Latched "the kernel said no" answers, so a futile syscall is tried once. */
    gint no_seek_data;           /* atomic: SEEK_DATA unsupported, all data */
    gint no_punch;               /* atomic: FALLOC_FL_PUNCH_HOLE unsupported */
    gint no_zero_range;          /* atomic: FALLOC_FL_ZERO_RANGE unsupported */

    GMutex gate_lock;            /* protects quiesce, inflight, hook_fn, hook_opaque */
    GCond gate_cond;             /* quiesce dropped to 0 / inflight dropped to 0 */
    unsigned quiesce;            /* installers/removers holding the gate closed */
    unsigned inflight;           /* writes inside the gate (hook call + write) */
    BlockDevBeforeWriteFn hook_fn;
    void *hook_opaque;

    GMutex range_lock;           /* protects ranges (direct disks) */
    GCond range_cond;            /* a range was released */
    GArray *ranges;              /* of Range: block-aligned extents being written */
};

static GMutex registry_lock;     /* protects registry */
static GPtrArray *registry;      /* of BlockDev*, one reference each, in add order */
static GMutex hooks_ctl_lock;    /* serialises blockdev_hooks_install/remove */

/* ---- small helpers ---- */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static inline uint64_t align_down(uint64_t v, uint64_t a)
{
    return v & ~(a - 1);
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static bool range_ok(BlockDev *bd, uint64_t len, uint64_t offset)
{
    return offset <= bd->size && len <= bd->size - offset;
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

/* Read up to len bytes; *done < len only at end of file. 0 or -errno. */
static int full_pread(int fd, void *buf, size_t len, uint64_t offset, size_t *done)
{
    size_t got = 0;

    while (got < len) {
        ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(offset + got));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    *done = got;
    return 0;
}

static int full_pwrite(int fd, const void *buf, size_t len, uint64_t offset)
{
    size_t put = 0;

    while (put < len) {
        ssize_t r = pwrite(fd, (const char *)buf + put, len - put, (off_t)(offset + put));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            return -EIO;
        }
        put += (size_t)r;
    }
    return 0;
}

/* ---- the write gate ---- */

static void gate_enter(BlockDev *bd, BlockDevBeforeWriteFn *fn, void **opaque)
{
    g_mutex_lock(&bd->gate_lock);
    while (bd->quiesce > 0) {
        g_cond_wait(&bd->gate_cond, &bd->gate_lock);
    }
    bd->inflight++;
    *fn = bd->hook_fn;
    *opaque = bd->hook_opaque;
    g_mutex_unlock(&bd->gate_lock);
}

static void gate_exit(BlockDev *bd)
{
    g_mutex_lock(&bd->gate_lock);
    assert(bd->inflight > 0);
    if (--bd->inflight == 0 && bd->quiesce > 0) {
        g_cond_broadcast(&bd->gate_cond);
    }
    g_mutex_unlock(&bd->gate_lock);
}

/* Close the gates of n disks and wait until none has a write in flight. */
static void gates_close(BlockDev *const *bds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g_mutex_lock(&bds[i]->gate_lock);
        bds[i]->quiesce++;
        g_mutex_unlock(&bds[i]->gate_lock);
    }
    for (size_t i = 0; i < n; i++) {
        g_mutex_lock(&bds[i]->gate_lock);
        while (bds[i]->inflight > 0) {
            g_cond_wait(&bds[i]->gate_cond, &bds[i]->gate_lock);
        }
        g_mutex_unlock(&bds[i]->gate_lock);
    }
}

static void gates_open(BlockDev *const *bds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g_mutex_lock(&bds[i]->gate_lock);
        assert(bds[i]->quiesce > 0);
        if (--bds[i]->quiesce == 0) {
            g_cond_broadcast(&bds[i]->gate_cond);
        }
        g_mutex_unlock(&bds[i]->gate_lock);
    }
}

/* Enter the gate and run the hook for [offset, offset+len). */
static void write_begin(BlockDev *bd, uint64_t offset, uint64_t len)
{
    BlockDevBeforeWriteFn fn;
    void *opaque;

    gate_enter(bd, &fn, &opaque);
    if (fn != NULL && len > 0) {
        /* The hook's owner logs its own failures; the write proceeds regardless. */
        (void)fn(opaque, bd, offset, len);
    }
}

/* ---- range lock (direct disks) ---- */

static void range_lock(BlockDev *bd, uint64_t start, uint64_t end)
{
    Range r = { start, end };

    g_mutex_lock(&bd->range_lock);
    for (;;) {
        bool busy = false;
        for (guint i = 0; i < bd->ranges->len; i++) {
            const Range *o = &g_array_index(bd->ranges, Range, i);
            if (o->start < end && start < o->end) {
                busy = true;
                break;
            }
        }
        if (!busy) {
            break;
        }
        g_cond_wait(&bd->range_cond, &bd->range_lock);
    }
    g_array_append_val(bd->ranges, r);
    g_mutex_unlock(&bd->range_lock);
}

static void range_unlock(BlockDev *bd, uint64_t start, uint64_t end)
{
    g_mutex_lock(&bd->range_lock);
    for (guint i = 0; i < bd->ranges->len; i++) {
        const Range *o = &g_array_index(bd->ranges, Range, i);
        if (o->start == start && o->end == end) {
            g_array_remove_index_fast(bd->ranges, i);
            break;
        }
    }
    g_cond_broadcast(&bd->range_cond);
    g_mutex_unlock(&bd->range_lock);
}

/* ---- reads ---- */

static int plain_pread(int fd, void *buf, size_t len, uint64_t offset)
{
    size_t done = 0;
    int r = full_pread(fd, buf, len, offset, &done);

    if (r == 0 && done < len) {
        /* The file ended early (truncated behind our back): it reads as zeros. */
        memset((char *)buf + done, 0, len - done);
    }
    return r;
}

static int direct_pread(BlockDev *bd, char *buf, uint64_t len, uint64_t offset)
{
    const uint64_t a = bd->align;
    void *bounce = NULL;
    int ret = 0;

    while (len > 0) {
        if ((offset & (a - 1)) == 0 && len >= a && ((uintptr_t)buf & (bd->mem_align - 1)) == 0) {
            uint64_t n = align_down(len, a);
            ret = plain_pread(bd->fd, buf, n, offset);
            if (ret < 0) {
                break;
            }
            buf += n;
            offset += n;
            len -= n;
        } else {
            uint64_t start = align_down(offset, a);
            uint64_t end = MIN(align_up(offset + len, a), start + BOUNCE_MAX);
            uint64_t n = MIN(end - offset, len);
            if (bounce == NULL) {
                bounce = aligned_alloc_or_die(BOUNCE_MAX);
            }
            ret = plain_pread(bd->fd, bounce, end - start, start);
            if (ret < 0) {
                break;
            }
            memcpy(buf, (char *)bounce + (offset - start), n);
            buf += n;
            offset += n;
            len -= n;
        }
    }
    free(bounce);
    return ret;
}

int blockdev_pread(BlockDev *bd, void *buf, uint64_t len, uint64_t offset)
{
    if (!range_ok(bd, len, offset)) {
        return -EINVAL;
    }
    if (len == 0) {
        return 0;
    }
    if (bd->direct) {
        return direct_pread(bd, buf, len, offset);
    }
    return plain_pread(bd->fd, buf, len, offset);
}

/* ---- writes (callers are inside the gate and, for direct disks, the range lock) ---- */

/* The first byte of the partial block at the end of a direct file, or size. */
static uint64_t direct_tail_start(BlockDev *bd)
{
    return align_down(bd->size, bd->align);
}

/* Direct write of [offset, offset+len) lying before direct_tail_start(). */
static int direct_pwrite_body(BlockDev *bd, const char *buf, uint64_t len, uint64_t offset)
{
    const uint64_t a = bd->align;
    void *bounce = NULL;
    int ret = 0;

    while (len > 0) {
        if ((offset & (a - 1)) == 0 && len >= a && ((uintptr_t)buf & (bd->mem_align - 1)) == 0) {
            uint64_t n = align_down(len, a);
            ret = full_pwrite(bd->fd, buf, n, offset);
            if (ret < 0) {
                break;
            }
            buf += n;
            offset += n;
            len -= n;
        } else {
            uint64_t start = align_down(offset, a);
            uint64_t end = MIN(align_up(offset + len, a), start + BOUNCE_MAX);
            uint64_t n = MIN(end - offset, len);
            if (bounce == NULL) {
                bounce = aligned_alloc_or_die(BOUNCE_MAX);
            }
            bool head_partial = offset > start;
            bool tail_partial = offset + n < end;
            if (head_partial) {
                /* read-modify-write of the head block */
                ret = plain_pread(bd->fd, bounce, a, start);
                if (ret < 0) {
                    break;
                }
            }
            if (tail_partial && !(head_partial && end - start == a)) {
                /* read-modify-write of the tail block (when it is not the head block) */
                ret = plain_pread(bd->fd, (char *)bounce + (end - a - start), a, end - a);
                if (ret < 0) {
                    break;
                }
            }
            memcpy((char *)bounce + (offset - start), buf, n);
            ret = full_pwrite(bd->fd, bounce, end - start, start);
            if (ret < 0) {
                break;
            }
            buf += n;
            offset += n;
            len -= n;
        }
    }
    free(bounce);
    return ret;
}

static int do_pwrite(BlockDev *bd, const void *buf, uint64_t len, uint64_t offset)
{
    if (!bd->direct) {
        return full_pwrite(bd->fd, buf, len, offset);
    }
    uint64_t tail = direct_tail_start(bd);
    int ret = 0;
    if (offset < tail) {
        uint64_t n = MIN(len, tail - offset);
        ret = direct_pwrite_body(bd, buf, n, offset);
        buf = (const char *)buf + n;
        offset += n;
        len -= n;
    }
    if (ret == 0 && len > 0) {
        ret = full_pwrite(bd->fd_buffered, buf, len, offset);
    }
    return ret;
}

static int write_zeros_by_pwrite(BlockDev *bd, uint64_t len, uint64_t offset)
{
    const void *zeros = zero_buffer();

    while (len > 0) {
        uint64_t n = MIN(len, ZERO_BUF_LEN);
        int ret = do_pwrite(bd, zeros, n, offset);
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
static int try_fallocate(BlockDev *bd, gint *unsupported, int mode, uint64_t len,
                         uint64_t offset)
{
    if (g_atomic_int_get(unsupported)) {
        return -ENOTSUP;
    }
    for (;;) {
        if (fallocate(bd->fd, mode, (off_t)offset, (off_t)len) == 0) {
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        int err = errno;
        if (errno_means_unsupported(err)) {
            /* EINVAL for unaligned ranges on block devices is not permanent */
            if (!(bd->is_blk && err == EINVAL)) {
                g_atomic_int_set(unsupported, 1);
            }
            return -ENOTSUP;
        }
        return -err;
    }
}

static int do_write_zeroes(BlockDev *bd, uint64_t len, uint64_t offset, unsigned flags)
{
    int ret;

    if (!(flags & BLOCKDEV_NO_UNMAP)) {
        ret = try_fallocate(bd, &bd->no_punch, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            len, offset);
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (!bd->is_blk) {
        /* Zeroed extents stay allocated (unwritten), as NO_UNMAP asks. On a block
         * device ZERO_RANGE may fall back to writing zeros in the kernel, which is
         * neither cheap nor better than our own fallback. */
        ret = try_fallocate(bd, &bd->no_zero_range, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                            len, offset);
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    if (flags & BLOCKDEV_FAST_ZERO) {
        return -ENOTSUP;
    }
    return write_zeros_by_pwrite(bd, len, offset);
}

/* Wrap a write path: checks, gate + hook, range lock, FUA. */
typedef enum { OP_WRITE, OP_ZEROES, OP_DISCARD } WriteOp;

static int hooked_write(BlockDev *bd, WriteOp op, const void *buf, uint64_t len,
                        uint64_t offset, unsigned flags)
{
    int ret;

    if (bd->read_only) {
        return -EPERM;
    }
    if (!range_ok(bd, len, offset)) {
        return op == OP_DISCARD ? -EINVAL : -ENOSPC;
    }
    if (len == 0) {
        return (flags & BLOCKDEV_FUA) ? blockdev_flush(bd) : 0;
    }

    write_begin(bd, offset, len);
    uint64_t lk_start = 0, lk_end = 0;
    if (bd->direct) {
        lk_start = align_down(offset, bd->align);
        lk_end = align_up(offset + len, bd->align);
        range_lock(bd, lk_start, lk_end);
    }
    switch (op) {
    case OP_WRITE:
        ret = do_pwrite(bd, buf, len, offset);
        break;
    case OP_ZEROES:
        ret = do_write_zeroes(bd, len, offset, flags);
        break;
    case OP_DISCARD:
    default:
        ret = try_fallocate(bd, &bd->no_punch, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            len, offset);
        if (ret == -ENOTSUP) {
            ret = 0; /* discard is a hint */
        }
        break;
    }
    if (bd->direct) {
        range_unlock(bd, lk_start, lk_end);
    }
    gate_exit(bd);

    if (ret == 0 && (flags & BLOCKDEV_FUA)) {
        ret = blockdev_flush(bd);
    }
    return ret;
}

int blockdev_pwrite(BlockDev *bd, const void *buf, uint64_t len, uint64_t offset,
                    unsigned flags)
{
    return hooked_write(bd, OP_WRITE, buf, len, offset, flags & BLOCKDEV_FUA);
}

int blockdev_write_zeroes(BlockDev *bd, uint64_t len, uint64_t offset, unsigned flags)
{
    return hooked_write(bd, OP_ZEROES, NULL, len, offset, flags);
}

int blockdev_discard(BlockDev *bd, uint64_t len, uint64_t offset)
{
    return hooked_write(bd, OP_DISCARD, NULL, len, offset, 0);
}

int blockdev_flush(BlockDev *bd)
{
    if (bd->read_only) {
        return 0;
    }
    while (fdatasync(bd->fd) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

int blockdev_block_status(BlockDev *bd, uint64_t offset, uint64_t len, uint64_t *pnum,
                          bool *is_hole)
{
    if (!range_ok(bd, len, offset) || len == 0) {
        return -EINVAL;
    }
    *pnum = len;
    *is_hole = false;
    if (g_atomic_int_get(&bd->no_seek_data)) {
        return 0;
    }

    off_t data = lseek(bd->fd, (off_t)offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            /* no data at or after offset: a hole up to the end of the file */
            *is_hole = true;
            return 0;
        }
        if (errno_means_unsupported(errno)) {
            g_atomic_int_set(&bd->no_seek_data, 1);
            return 0;
        }
        return -errno;
    }
    if ((uint64_t)data > offset) {
        *is_hole = true;
        *pnum = MIN((uint64_t)data - offset, len);
        return 0;
    }
    off_t hole = lseek(bd->fd, (off_t)offset, SEEK_HOLE);
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

/* ---- properties ---- */

const char *blockdev_get_name(BlockDev *bd)
{
    return bd->name;
}

const char *blockdev_get_filename(BlockDev *bd)
{
    return bd->filename;
}

uint64_t blockdev_get_size(BlockDev *bd)
{
    return bd->size;
}

bool blockdev_is_read_only(BlockDev *bd)
{
    return bd->read_only;
}

bool blockdev_is_direct(BlockDev *bd)
{
    return bd->direct;
}

/* ---- open / close / references ---- */

static void blockdev_free(BlockDev *bd)
{
    int sr = 0;
    while (!bd->read_only && bd->fd >= 0 && (sr = fdatasync(bd->fd)) < 0 && errno == EINTR) {
        /* interrupted by a signal: flush again */
    }
    if (sr < 0) {
        g_warning("close %s: %s: flush failed: %s", bd->name, bd->filename,
                  g_strerror(errno));
    }
    close_fd(&bd->fd);
    close_fd(&bd->fd_buffered);
    g_mutex_clear(&bd->gate_lock);
    g_cond_clear(&bd->gate_cond);
    g_mutex_clear(&bd->range_lock);
    g_cond_clear(&bd->range_cond);
    g_array_unref(bd->ranges);
    g_free(bd->name);
    g_free(bd->filename);
    g_free(bd);
}

BlockDev *blockdev_ref(BlockDev *bd)
{
    g_atomic_int_inc(&bd->refcount);
    return bd;
}

void blockdev_unref(BlockDev *bd)
{
    if (bd != NULL && g_atomic_int_dec_and_test(&bd->refcount)) {
        assert(bd->hook_fn == NULL);
        blockdev_free(bd);
    }
}

/* Alignment a direct file needs: statx's DIO alignment where the kernel tells it. */
static void probe_direct_alignment(BlockDev *bd)
{
    bd->align = 4096;
    bd->mem_align = 4096;
    if (bd->is_blk) {
        int lbs = 0;
        if (ioctl(bd->fd, BLKSSZGET, &lbs) == 0 && lbs >= 512 && lbs <= 65536 &&
            (lbs & (lbs - 1)) == 0) {
            bd->align = (uint32_t)lbs;
            bd->mem_align = MIN((uint32_t)lbs, MEM_ALIGN);
        }
        return;
    }
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (statx(bd->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align >= 1 &&
        stx.stx_dio_offset_align <= 65536 &&
        (stx.stx_dio_offset_align & (stx.stx_dio_offset_align - 1)) == 0 &&
        stx.stx_dio_mem_align >= 1 && stx.stx_dio_mem_align <= MEM_ALIGN &&
        (stx.stx_dio_mem_align & (stx.stx_dio_mem_align - 1)) == 0) {
        bd->align = stx.stx_dio_offset_align;
        bd->mem_align = stx.stx_dio_mem_align;
    }
#endif
}

static BlockDev *blockdev_open(const BlockDevOptions *opts, GError **errp)
{
    g_autofree BlockDev *bd = g_new0(BlockDev, 1);
    int flags = (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    struct stat st;

    bd->fd = -1;
    bd->fd_buffered = -1;
    bd->fd = open(opts->filename, flags | (opts->direct ? O_DIRECT : 0));
    if (bd->fd < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err), "open %s: %s: %s%s",
                    opts->node_name, opts->filename,
                    opts->direct && err == EINVAL ? "O_DIRECT not supported: " : "",
                    g_strerror(err));
        return NULL;
    }
    if (fstat(bd->fd, &st) < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err), "open %s: %s: %s",
                    opts->node_name, opts->filename, g_strerror(err));
        goto fail_fd;
    }
    if (S_ISREG(st.st_mode)) {
        bd->size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        bd->is_blk = true;
        if (ioctl(bd->fd, BLKGETSIZE64, &bd->size) < 0) {
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
    if (!image_lock_open(bd->fd, opts->filename, opts->read_only, opts->locking, errp)) {
        goto fail_fd;
    }
    if (opts->direct) {
        bd->fd_buffered = open(opts->filename, flags);
        if (bd->fd_buffered < 0) {
            int err = errno;
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err), "open %s: %s: %s",
                        opts->node_name, opts->filename, g_strerror(err));
            goto fail_fd;
        }
        probe_direct_alignment(bd);
    } else {
        bd->align = 1;
        bd->mem_align = 1;
    }

    bd->refcount = 1;
    bd->name = g_strdup(opts->node_name);
    bd->filename = g_strdup(opts->filename);
    bd->read_only = opts->read_only;
    bd->direct = opts->direct;
    g_mutex_init(&bd->gate_lock);
    g_cond_init(&bd->gate_cond);
    g_mutex_init(&bd->range_lock);
    g_cond_init(&bd->range_cond);
    bd->ranges = g_array_new(FALSE, FALSE, sizeof(Range));
    return g_steal_pointer(&bd);

fail_fd:
    close_fd(&bd->fd_buffered);
    close_fd(&bd->fd);
    return NULL;
}

/* ---- registry ---- */

static BlockDev *registry_lookup_locked(const char *node_name, guint *index)
{
    if (registry == NULL) {
        return NULL;
    }
    for (guint i = 0; i < registry->len; i++) {
        BlockDev *bd = g_ptr_array_index(registry, i);
        if (strcmp(bd->name, node_name) == 0) {
            if (index != NULL) {
                *index = i;
            }
            return bd;
        }
    }
    return NULL;
}

bool blockdev_add(const BlockDevOptions *opts, GError **errp)
{
    if (!node_name_check(opts->node_name, errp)) {
        return false;
    }
    if (opts->filename == NULL || opts->filename[0] == '\0') {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "add %s: no file name given", opts->node_name);
        return false;
    }
    g_mutex_lock(&registry_lock);
    bool dup = registry_lookup_locked(opts->node_name, NULL) != NULL;
    g_mutex_unlock(&registry_lock);
    if (dup) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "add %s: a block device with this node name exists already",
                    opts->node_name);
        return false;
    }

    BlockDev *bd = blockdev_open(opts, errp);
    if (bd == NULL) {
        return false;
    }

    g_mutex_lock(&registry_lock);
    if (registry_lookup_locked(opts->node_name, NULL) != NULL) {
        /* lost a race with another add of the same name */
        g_mutex_unlock(&registry_lock);
        blockdev_unref(bd);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "add %s: a block device with this node name exists already",
                    opts->node_name);
        return false;
    }
    if (registry == NULL) {
        registry = g_ptr_array_new();
    }
    g_ptr_array_add(registry, bd);
    g_mutex_unlock(&registry_lock);
    return true;
}

BlockDev *blockdev_find(const char *node_name, GError **errp)
{
    g_mutex_lock(&registry_lock);
    BlockDev *bd = registry_lookup_locked(node_name, NULL);
    if (bd != NULL) {
        blockdev_ref(bd);
    }
    g_mutex_unlock(&registry_lock);
    if (bd == NULL) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Cannot find node-name='%s'",
                    node_name);
    }
    return bd;
}

bool blockdev_del(const char *node_name, GError **errp)
{
    guint index = 0;

    g_mutex_lock(&registry_lock);
    BlockDev *bd = registry_lookup_locked(node_name, &index);
    if (bd == NULL) {
        g_mutex_unlock(&registry_lock);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Cannot find node-name='%s'",
                    node_name);
        return false;
    }
    if (g_atomic_int_get(&bd->refcount) > 1) {
        g_mutex_unlock(&registry_lock);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY, "delete %s: node is in use",
                    node_name);
        return false;
    }
    g_ptr_array_remove_index(registry, index);
    g_mutex_unlock(&registry_lock);
    blockdev_unref(bd);
    return true;
}

GPtrArray *blockdev_list(void)
{
    GPtrArray *list = g_ptr_array_new();

    g_mutex_lock(&registry_lock);
    if (registry != NULL) {
        for (guint i = 0; i < registry->len; i++) {
            g_ptr_array_add(list, blockdev_ref(g_ptr_array_index(registry, i)));
        }
    }
    g_mutex_unlock(&registry_lock);
    return list;
}

void blockdev_close_all(void)
{
    g_mutex_lock(&registry_lock);
    GPtrArray *old = registry;
    registry = NULL;
    g_mutex_unlock(&registry_lock);
    if (old != NULL) {
        for (guint i = 0; i < old->len; i++) {
            blockdev_unref(g_ptr_array_index(old, i));
        }
        g_ptr_array_unref(old);
    }
}

/* ---- hooks ---- */

bool blockdev_hooks_install(BlockDev *const *bds, size_t n, BlockDevBeforeWriteFn fn,
                            void *opaque, GError **errp)
{
    assert(fn != NULL);
    g_mutex_lock(&hooks_ctl_lock);
    for (size_t i = 0; i < n; i++) {
        g_mutex_lock(&bds[i]->gate_lock);
        bool busy = bds[i]->hook_fn != NULL;
        g_mutex_unlock(&bds[i]->gate_lock);
        if (busy) {
            g_mutex_unlock(&hooks_ctl_lock);
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                        "install write hook on %s: the disk has one already", bds[i]->name);
            return false;
        }
    }
    gates_close(bds, n);
    for (size_t i = 0; i < n; i++) {
        g_mutex_lock(&bds[i]->gate_lock);
        bds[i]->hook_fn = fn;
        bds[i]->hook_opaque = opaque;
        g_mutex_unlock(&bds[i]->gate_lock);
    }
    gates_open(bds, n);
    g_mutex_unlock(&hooks_ctl_lock);
    return true;
}

void blockdev_hooks_remove(BlockDev *const *bds, size_t n)
{
    g_mutex_lock(&hooks_ctl_lock);
    gates_close(bds, n);
    for (size_t i = 0; i < n; i++) {
        g_mutex_lock(&bds[i]->gate_lock);
        bds[i]->hook_fn = NULL;
        bds[i]->hook_opaque = NULL;
        g_mutex_unlock(&bds[i]->gate_lock);
    }
    gates_open(bds, n);
    g_mutex_unlock(&hooks_ctl_lock);
}
