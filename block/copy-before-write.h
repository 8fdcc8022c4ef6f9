/*
 * block/copy-before-write.h — the copy-before-write filter (daemon-private).
 *
 * A filter node over one disk of a backup: before any write, write-zeroes or discard
 * passes down to its child, it has the disk's BlockCopy save the old data of the range
 * (block_copy_before_write(), which reads from the same child). Reads, flushes and block
 * status pass through. The filter knows its own disk's BlockCopy; it never looks up the
 * job. A failed copy never fails the guest's write (the job records the error).
 */
#ifndef BLOCK_COPY_BEFORE_WRITE_H
#define BLOCK_COPY_BEFORE_WRITE_H

#include "block/block-copy.h"

extern const BlockDriver bdrv_copy_before_write;

/* A filter over child for bc (which must read from child, and outlive the filter's
 * time in the graph: free bc only after blockdev_remove_filters() returned). */
BlockNode *cbw_filter_new(BlockNode *child, BlockCopy *bc);

#endif /* BLOCK_COPY_BEFORE_WRITE_H */
