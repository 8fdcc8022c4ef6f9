/*
 * block/vma.c — the `vma` protocol driver: one device of an uncompressed VMA archive
 * file (optionally the newest of a chain of delta archives, option `base`) as a
 * read-only node.
 *
 * The archive side lives in the archive library (vma_index_* of include/vma.h,
 * vma-index.c): the one-pass index over the extent headers, its memory bound, reads
 * and block status. This file maps it onto the node ops: reads and block status go to
 * the index (zero blocks and clusters report as holes), every write path answers
 * -EPERM. The node is always read-only: an open with read-only=off is refused, as QEMU
 * refuses a writable node for a driver that cannot write. The handle is immutable after
 * open, so any number of threads may read at once.
 */
#include <errno.h>

#include <gio/gio.h>

#include "block/block.h"
#include "vma.h"

static bool vma_open(BlockNode *n, const BlockDevOptions *opts, GError **errp)
{
    if (!opts->read_only) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                    "open %s: %s: Block node is read-only: the vma driver serves archives "
                    "read-only (leave out read-only=off)", opts->node_name, opts->filename);
        return false;
    }
    if (opts->device == NULL || opts->device[0] == '\0') {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "open %s: %s: the vma driver needs device=NAME (a device of the archive)",
                    opts->node_name, opts->filename);
        return false;
    }
    VmaIndex *ix = vma_index_open(opts->filename, opts->device, opts->base, errp);
    if (ix == NULL) {
        g_prefix_error(errp, "open %s: ", opts->node_name);
        return false;
    }
    n->size = vma_index_get_size(ix);
    n->read_only = true;
    n->opaque = ix;
    return true;
}

static void vma_close(BlockNode *n)
{
    vma_index_free(n->opaque);
}

static int vma_preadv(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                      uint64_t offset)
{
    return vma_index_preadv(n->opaque, iov, iovcnt, offset);
}

static int vma_pwritev(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                       uint64_t offset, unsigned flags)
{
    return -EPERM;
}

static int vma_write_zeroes(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags)
{
    return -EPERM;
}

static int vma_discard(BlockNode *n, uint64_t len, uint64_t offset)
{
    return -EPERM;
}

static int vma_flush(BlockNode *n)
{
    return 0;
}

static int vma_block_status(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                            bool *is_hole)
{
    return vma_index_block_status(n->opaque, offset, len, pnum, is_hole);
}

const BlockDriver bdrv_vma = {
    .name = "vma",
    .open = vma_open,
    .close = vma_close,
    .preadv = vma_preadv,
    .pwritev = vma_pwritev,
    .write_zeroes = vma_write_zeroes,
    .discard = vma_discard,
    .flush = vma_flush,
    .block_status = vma_block_status,
};
