/*
 * block/block-copy.h — the per-disk claim/copy state of a backup: which 64 KiB clusters
 * still hold their data of the backup's instant, who is reading which (daemon-private).
 *
 * One BlockCopy serves one disk, for both of its users: the copy-before-write filter
 * (block_copy_before_write(), on the guest's writing thread) and the job's background
 * copy workers (block_copy_chunk()). Both read old data from the source node — the node
 * below the filter — never through the registry, and hand every cluster they copied to
 * the owner's `copied` callback, exactly once per cluster. See block-copy.c for the
 * state machine and its guarantees.
 */
#ifndef BLOCK_BLOCK_COPY_H
#define BLOCK_BLOCK_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "util/bitmap.h"

/* Clusters merged into one read at most: a chunk of the background copy, and the
 * longest run a copy-before-write claims at once (memory: one run per writing thread). */
#define BLOCK_COPY_MAX_RUN 16u

typedef struct BlockCopy BlockCopy;

typedef struct BlockCopyOps {
    /* Cluster `cluster` was read: buf is its old data (owned by the callee, a
     * vma_cluster_alloc() buffer, zero-padded past the end of the disk), or NULL for a
     * cluster that lies in a hole. from_write: a copy-before-write (on the guest's
     * thread, which waits for the call) rather than the background copy. Called with
     * no lock held and no cluster claimed, so it may block. */
    void (*copied)(void *opaque, uint64_t cluster, void *buf, bool from_write);
    /* Reading cluster `cluster` failed with r (-errno). The cluster is not copied. */
    void (*read_failed)(void *opaque, uint64_t cluster, int r);
    /* Background copy only: sleep until `bytes` more may be read (the rate limit);
     * false: stop copying. Called before anything is claimed. */
    bool (*rate_wait)(void *opaque, uint64_t bytes);
} BlockCopyOps;

/* Every cluster of source is to be copied; source gets a new reference. Main loop. */
BlockCopy *block_copy_new(BlockNode *source, const BlockCopyOps *ops, void *opaque);
/* Only the clusters set in dirty (one bit per cluster) are to be copied; the rest
 * count as copied already (an incremental backup). At the instant, before any copy or
 * filter runs. Returns the clusters left to copy. */
uint64_t block_copy_restrict(BlockCopy *bc, const Bitmap *dirty);

/* No copy may be running (the filter removed, the workers joined). Accepts NULL. */
void block_copy_free(BlockCopy *bc);

/* Stop: nobody claims a cluster any more, and every waiter returns (the job failed).
 * Any thread, any number of times. */
void block_copy_cancel(BlockCopy *bc);

/* Before a write of [offset, offset+len) reaches the source: copy every cluster of the
 * range that still holds its old data, or wait while another thread reads it. Returns
 * once none of the range's clusters holds uncopied old data (or after a cancel). */
void block_copy_before_write(BlockCopy *bc, uint64_t offset, uint64_t len);

/* The background copy of clusters [first, first+n), n <= BLOCK_COPY_MAX_RUN: skips what
 * is copied already, finds holes with block status, waits for the rate limit, then
 * claims, reads and hands over the rest. Any thread. */
void block_copy_chunk(BlockCopy *bc, uint64_t first, unsigned n);

/* The first cluster at or after `from` still to be copied (todo), or the disk's cluster
 * count when there is none: the background cursor skips what an incremental backup
 * does not copy, a word of the bitmap at a time. Any thread. */
uint64_t block_copy_next_todo(BlockCopy *bc, uint64_t from);

#endif /* BLOCK_BLOCK_COPY_H */
