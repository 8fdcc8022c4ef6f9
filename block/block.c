/*
 * block/block.c — generic node code: references, request checks, filter pass-through.
 *
 * Each bnode_* call checks its request once (read-only, range, zero length) and then
 * calls the driver's op; a filter without the op passes the request to its child. A
 * zero-length write is no request at all: it becomes a flush when FUA asks for one, so
 * no driver or filter ever sees len == 0.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <gio/gio.h>

#include "block/alloc-track.h"
#include "block/block.h"
#include "block/dirty-bitmap.h"

static const BlockDriver *const drivers[] = { &bdrv_file, &bdrv_host_device, &bdrv_rbd,
                                              &bdrv_vma, &bdrv_alloc_track, &bdrv_nbd };

const BlockDriver *bnode_find_driver(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(drivers); i++) {
        if (strcmp(drivers[i]->name, name) == 0) {
            return drivers[i];
        }
    }
    return NULL;
}

BlockNode *bnode_open(const BlockDriver *drv, const BlockDevOptions *opts, GError **errp)
{
    BlockNode *n = g_new0(BlockNode, 1);
    struct stat st;

    if (drv == NULL) {
        bool is_blk = stat(opts->filename, &st) == 0 && S_ISBLK(st.st_mode);
        drv = is_blk ? &bdrv_host_device : &bdrv_file;
    }
    assert(!drv->is_filter && drv->open != NULL);
    n->drv = drv;
    n->refcount = 1;
    n->read_only = opts->read_only;
    n->direct = opts->direct;
    if (!drv->open(n, opts, errp)) {
        g_free(n);
        return NULL;
    }
    if (n->filename == NULL) {
        /* a driver without a file (rbd) or over other nodes (alloc-track) names the
         * node itself */
        n->filename = g_strdup(opts->filename);
    }
    n->dirty = dirty_set_new(n->size);
    return n;
}

BlockNode *bnode_new_filter(const BlockDriver *drv, BlockNode *child, void *opaque)
{
    BlockNode *n = g_new0(BlockNode, 1);

    assert(drv->is_filter);
    n->drv = drv;
    n->refcount = 1;
    n->child = bnode_ref(child);
    n->size = child->size;
    n->read_only = child->read_only;
    n->direct = child->direct;
    n->opaque = opaque;
    return n;
}

BlockNode *bnode_ref(BlockNode *n)
{
    g_atomic_int_inc(&n->refcount);
    return n;
}

void bnode_unref(BlockNode *n)
{
    if (n == NULL || !g_atomic_int_dec_and_test(&n->refcount)) {
        return;
    }
    if (n->drv->close != NULL) {
        n->drv->close(n);
    }
    g_clear_pointer(&n->child, bnode_unref);
    dirty_set_free(n->dirty);
    g_clear_pointer(&n->state_mark, g_bytes_unref);
    g_free(n->filename);
    g_free(n);
}

/* ---- I/O ---- */

static bool range_ok(BlockNode *n, uint64_t len, uint64_t offset)
{
    return offset <= n->size && len <= n->size - offset;
}

static uint64_t iov_len(const struct iovec *iov, int iovcnt)
{
    uint64_t len = 0;

    for (int i = 0; i < iovcnt; i++) {
        len += iov[i].iov_len;
    }
    return len;
}

int bnode_preadv(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t offset)
{
    uint64_t len = iov_len(iov, iovcnt);

    if (!range_ok(n, len, offset)) {
        return -EINVAL;
    }
    if (len == 0) {
        return 0;
    }
    while (n->drv->preadv == NULL) {
        n = n->child;
    }
    return n->drv->preadv(n, iov, iovcnt, len, offset);
}

int bnode_pread(BlockNode *n, void *buf, uint64_t len, uint64_t offset)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    return bnode_preadv(n, &iov, 1, offset);
}

/*
 * A write request entered at n ran (on `to`, n itself or the child it was passed to):
 * mark the change bitmaps of every node it crossed, also when it failed (r < 0), as
 * QEMU does: a failed write may have changed part of the range.
 */
static int write_done(BlockNode *n, BlockNode *to, uint64_t len, uint64_t offset, int r)
{
    for (BlockNode *m = n;; m = m->child) {
        dirty_set_mark(m->dirty, offset, len);
        if (m == to) {
            return r;
        }
    }
}

/* Checks common to every write path; 1 when the request goes on to the driver. */
static int write_check(BlockNode *n, uint64_t len, uint64_t offset, bool discard,
                       unsigned flags)
{
    if (n->read_only) {
        return -EPERM;
    }
    if (!range_ok(n, len, offset)) {
        return discard ? -EINVAL : -ENOSPC;
    }
    if (len == 0) {
        return (flags & BLOCKDEV_FUA) ? bnode_flush(n) : 0;
    }
    return 1;
}

int bnode_pwritev(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t offset,
                  unsigned flags)
{
    uint64_t len = iov_len(iov, iovcnt);
    int r = write_check(n, len, offset, false, flags);

    if (r <= 0) {
        return r;
    }
    BlockNode *to = n;
    while (to->drv->pwritev == NULL) {
        to = to->child;
    }
    r = to->drv->pwritev(to, iov, iovcnt, len, offset, flags & BLOCKDEV_FUA);
    return write_done(n, to, len, offset, r);
}

int bnode_pwrite(BlockNode *n, const void *buf, uint64_t len, uint64_t offset,
                 unsigned flags)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    return bnode_pwritev(n, &iov, 1, offset, flags);
}

int bnode_write_zeroes(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags)
{
    int r = write_check(n, len, offset, false, flags);

    if (r <= 0) {
        return r;
    }
    BlockNode *to = n;
    while (to->drv->write_zeroes == NULL) {
        to = to->child;
    }
    return write_done(n, to, len, offset, to->drv->write_zeroes(to, len, offset, flags));
}

int bnode_discard(BlockNode *n, uint64_t len, uint64_t offset)
{
    int r = write_check(n, len, offset, true, 0);

    if (r <= 0) {
        return r;
    }
    BlockNode *to = n;
    while (to->drv->discard == NULL) {
        to = to->child;
    }
    return write_done(n, to, len, offset, to->drv->discard(to, len, offset));
}

int bnode_flush(BlockNode *n)
{
    if (n->read_only) {
        return 0;
    }
    while (n->drv->flush == NULL) {
        n = n->child;
    }
    return n->drv->flush(n);
}

int bnode_block_status(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                       bool *is_hole)
{
    if (!range_ok(n, len, offset) || len == 0) {
        return -EINVAL;
    }
    while (n->drv->block_status == NULL) {
        n = n->child;
    }
    return n->drv->block_status(n, offset, len, pnum, is_hole);
}
