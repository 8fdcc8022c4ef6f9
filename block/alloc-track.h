/*
 * block/alloc-track.h — the alloc-track driver: live restore (daemon-private).
 *
 * Proxmox's alloc-track under the same name and options: a node over a restore target
 * (`file`) and the source of the data not yet restored (`backing`, e.g. a `vma` node over
 * an archive), both registered disks:
 *
 *   --blockdev driver=alloc-track,node-name=drive-scsi0,file=tgt0,backing=arch0
 *
 * The node serves the disk at once: what is already on the target is read from it,
 * the rest from the backing and written to the target on the way (copy-on-read); writes,
 * write-zeroes and discards go to the target and are never overwritten by backing data
 * afterwards. A `block-stream` job (block/stream.c) copies the rest with
 * alloc_track_stream_chunk() and, once every cluster is on the target, the node drops its
 * backing (alloc_track_drop_backing()): from then on it reads only the target, and the
 * backing disk may be deleted.
 *
 * Which clusters are on the target is recorded persistently in the state directory
 * (docs/internals.md, "Live restore"), so a restart with the same command line resumes.
 *
 * Threads: the I/O ops and the stream functions run on any thread at once; open, close
 * and alloc_track_drop_backing() on the main loop or the stream job's thread.
 */
#ifndef BLOCK_ALLOC_TRACK_H
#define BLOCK_ALLOC_TRACK_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

#define ALLOC_TRACK_CLUSTER (64u * 1024)   /* tracking granularity, bytes */

extern const BlockDriver bdrv_alloc_track;

/* The records live in vmad's state directory (dirty_state_get_dir(), vmad --state-dir).
 * The record path of node `node` over the target image `target` in dir (g_free):
 * NODE-<16 hex digits of the SHA-256 of the target's real path>.alloc-track. */
char *alloc_track_record_path(const char *dir, const char *node, const char *target);

/* Is n an alloc-track node? */
bool alloc_track_is(const BlockNode *n);

/* The backing disk's node name (g_free), or NULL once it was dropped. */
char *alloc_track_backing_name(BlockNode *n);
/* The backing disk's file name (g_free), or NULL once it was dropped. */
char *alloc_track_backing_filename(BlockNode *n);

/* Bytes of the node already on the target (clusters allocated; the last one counts with
 * its real length), for progress. */
uint64_t alloc_track_allocated_bytes(BlockNode *n);

/* The first offset at or after offset that is not on the target yet (cluster-aligned),
 * or the node's size when everything from offset on is. */
uint64_t alloc_track_next_unallocated(BlockNode *n, uint64_t offset);

/*
 * Copy every cluster of [offset, offset + len) that is not on the target yet from the
 * backing to the target and mark it (lazily recorded, see alloc_track_sync()). Ranges
 * the backing reports as zeros are not copied when the target reads as zeros already
 * (they are written as zeros otherwise). *copied grows by the bytes read from the
 * backing. 0 or -errno; -ENOENT when the backing is gone.
 */
int alloc_track_stream_chunk(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *copied);

/* Make every mark made so far durable in the record (target flushed first). 0 or
 * -errno (a failed record write is latched: every later one fails too). */
int alloc_track_sync(BlockNode *n);

/*
 * Everything is on the target: record it, stop using the backing and drop the node's
 * reference to it (it waits for reads still running on the backing). Fails when some
 * cluster is still missing or the record cannot be written. Main loop or job thread.
 */
bool alloc_track_drop_backing(BlockNode *n, GError **errp);

#endif /* BLOCK_ALLOC_TRACK_H */
