/*
 * block/copy-before-write.c — the copy-before-write filter: old data is saved before a
 * write changes it (see copy-before-write.h and block-copy.c).
 *
 * Every op that changes data runs block_copy_before_write() for its exact byte range,
 * then passes the request to the child unchanged (flags included). The copy reads from
 * the child too, never through the registry, so a guest write never re-enters the
 * registry's gate. Other ops are not set: they go to the child (block.c).
 */
#include "block/copy-before-write.h"

static int cbw_pwritev(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                       uint64_t offset, unsigned flags)
{
    block_copy_before_write(n->opaque, offset, len);
    return bnode_pwritev(n->child, iov, iovcnt, offset, flags);
}

static int cbw_write_zeroes(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags)
{
    block_copy_before_write(n->opaque, offset, len);
    return bnode_write_zeroes(n->child, len, offset, flags);
}

static int cbw_discard(BlockNode *n, uint64_t len, uint64_t offset)
{
    block_copy_before_write(n->opaque, offset, len);
    return bnode_discard(n->child, len, offset);
}

const BlockDriver bdrv_copy_before_write = {
    .name = "copy-before-write",
    .is_filter = true,
    .pwritev = cbw_pwritev,
    .write_zeroes = cbw_write_zeroes,
    .discard = cbw_discard,
};

BlockNode *cbw_filter_new(BlockNode *child, BlockCopy *bc)
{
    return bnode_new_filter(&bdrv_copy_before_write, child, bc);
}
