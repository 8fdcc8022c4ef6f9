/*
 * block/block.h — the block graph: nodes, their drivers, filters (daemon-private).
 *
 * A BlockNode is one node of the graph: a driver (its ops table below) and the driver's
 * state. A protocol node (driver `file`, later `rbd`, `nbd`, `vma`) holds data; a filter
 * node (`copy-before-write`, later `alloc-track`, a dirty-bitmap tracker) has exactly one
 * child and passes every request down to it, doing its own work on the way. A node knows
 * its child, never its parent: data flows down the graph.
 *
 * Every registered disk (blockdev.c) is a chain: filters on top of one protocol node.
 * The registry's I/O entry points (blockdev_pread(), ... in include/blockdev.h) pass the
 * disk's write gate and call the top node of its chain; filters are inserted and removed
 * there, with all gates of a set of disks closed at once (blockdev_insert_filters()).
 *
 * The bnode_* I/O functions check the request (range, read-only, zero length) once, so
 * a driver's op sees only valid, non-empty requests. They may be called from any
 * thread at once and return 0 or -errno (the data path never takes a GError).
 */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "blockdev.h"

typedef struct BlockNode BlockNode;

/*
 * A driver's ops. Protocol drivers implement open and every I/O op; a filter is made by
 * its own constructor (it needs more than options: its child and its state) and may
 * leave any I/O op NULL, which then goes to its child unchanged. Flags are the
 * BLOCKDEV_* flags of blockdev.h (FUA on writes; NO_UNMAP, FAST_ZERO on write-zeroes).
 */
typedef struct BlockDriver {
    const char *name;                 /* query-block's "drv": "file", "host_device" */
    bool is_filter;

    /* Protocol drivers: open opts into n (n->opaque, n->size); GError on failure. */
    bool (*open)(BlockNode *n, const BlockDevOptions *opts, GError **errp);
    /* Release n->opaque (the last reference is gone; no I/O runs). */
    void (*close)(BlockNode *n);

    int (*preadv)(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                  uint64_t offset);
    int (*pwritev)(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                   uint64_t offset, unsigned flags);
    int (*write_zeroes)(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags);
    int (*discard)(BlockNode *n, uint64_t len, uint64_t offset);
    int (*flush)(BlockNode *n);
    /* See blockdev_block_status(). */
    int (*block_status)(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                        bool *is_hole);

    /*
     * Persistent change bitmaps of an image that has no local file to stat (rbd); NULL:
     * the state file records the image file's dev, ino, size and mtime instead. Main
     * loop, no request running (see block/dirty-bitmap-store.c).
     * state_seal: at a clean close, after the last write: mark what the image holds now
     *   (rbd: a snapshot of ours) and return the mark's record, driver-defined bytes that
     *   the state file keeps. old: the record loaded at open, or NULL. tag: names the
     *   marks of one state file (they carry it, so state_drop finds them).
     * state_check: at open: does record rec still mark this image's content? Calls
     *   changed(opaque, offset, len) for every range written since the mark was made
     *   (a superset is fine, a missing write is not); false with errp set when it cannot
     *   tell (the mark is gone, another image, ...): the bitmaps are then inconsistent.
     * state_drop: remove every mark of tag except the one record keep names (NULL: all).
     *   Best effort: a mark left behind costs space, never correctness.
     */
    GBytes *(*state_seal)(BlockNode *n, const char *tag, GBytes *old, GError **errp);
    bool (*state_check)(BlockNode *n, GBytes *rec,
                        void (*changed)(void *opaque, uint64_t offset, uint64_t len),
                        void *opaque, GError **errp);
    void (*state_drop)(BlockNode *n, const char *tag, GBytes *keep);
} BlockDriver;

struct BlockNode {
    const BlockDriver *drv;
    gint refcount;            /* atomic */
    char *filename;           /* what the node is opened on (protocol nodes), or NULL */
    uint64_t size;            /* fixed at open */
    bool read_only;
    bool direct;              /* opened with O_DIRECT (file) */
    /* Filters: the node below, a reference. Changed only by blockdev.c with the gate
     * of the node's disk closed, so an I/O call that reached the filter sees one value. */
    BlockNode *child;
    void *opaque;             /* the driver's state */
    /* Protocol nodes: the change bitmaps (block/dirty-bitmap.h), made at open; every
     * write, write-zeroes and discard that reaches the node marks them (NULL: filters,
     * which pass the request down to a node that has them). */
    struct DirtyBitmapSet *dirty;
    /* Protocol nodes with state_seal: the mark record of the state file loaded at open,
     * while it still marks the image (a read-only node seals with it again); main loop. */
    GBytes *state_mark;
};

/* The drivers (block/file.c, block/rbd.c, block/nbd.c). */
extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_host_device;
extern const BlockDriver bdrv_rbd;
extern const BlockDriver bdrv_vma;           /* block/vma.c */
extern const BlockDriver bdrv_nbd;

/* The protocol driver named name, or NULL. */
const BlockDriver *bnode_find_driver(const char *name);

/* Open a protocol node with drv (NULL: by the kind of opts->filename, "file" for a
 * regular file, "host_device" for a block device). Main loop thread. */
BlockNode *bnode_open(const BlockDriver *drv, const BlockDevOptions *opts, GError **errp);
/* A filter node over child (takes a new reference to it), with the driver's state. */
BlockNode *bnode_new_filter(const BlockDriver *drv, BlockNode *child, void *opaque);

BlockNode *bnode_ref(BlockNode *n);
void bnode_unref(BlockNode *n);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BlockNode, bnode_unref)

/* ---- I/O (any thread; 0 or -errno) ---- */
int bnode_preadv(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t offset);
int bnode_pread(BlockNode *n, void *buf, uint64_t len, uint64_t offset);
int bnode_pwritev(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t offset,
                  unsigned flags);
int bnode_pwrite(BlockNode *n, const void *buf, uint64_t len, uint64_t offset,
                 unsigned flags);
int bnode_write_zeroes(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags);
int bnode_discard(BlockNode *n, uint64_t len, uint64_t offset);
int bnode_flush(BlockNode *n);
int bnode_block_status(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                       bool *is_hole);

/* ---- graph changes on registered disks (blockdev.c; main loop thread) ---- */

/* The disk's own node (its protocol node, or a driver over other disks such as
 * alloc-track), below every filter; a new reference. */
BlockNode *blockdev_get_base(BlockDev *bd);
/* The top node of bd's chain, a new reference: what a new filter goes above. */
BlockNode *blockdev_get_top(BlockDev *bd);

/*
 * Put filters[i] on top of bds[i]'s chain, for all n disks at one instant: the gates of
 * all n disks are closed, every request in flight on them finishes, the filters go in,
 * the gates open. A request either finished before the instant or runs through the
 * filter. filters[i]->child must be bds[i]'s top; a disk may have at most one filter of
 * each driver (G_IO_ERROR_BUSY otherwise). The chains take a reference to each filter.
 */
bool blockdev_insert_filters(BlockDev *const *bds, size_t n, BlockNode *const *filters,
                             GError **errp);
/* The same, calling at_instant(opaque) at the instant itself: every request before it
 * has finished (and marked the change bitmaps), none after it has started. */
bool blockdev_insert_filters_at(BlockDev *const *bds, size_t n, BlockNode *const *filters,
                                void (*at_instant)(void *opaque), void *opaque,
                                GError **errp);
/* The change bitmaps of bd's protocol node (block/dirty-bitmap.h). */
struct DirtyBitmapSet *blockdev_get_dirty_bitmaps(BlockDev *bd);
/* Write bd's bitmap state file now (in use when bd is writable), e.g. after a persistent
 * bitmap was added: from then on a crash leaves it inconsistent, never silently stale. */
bool blockdev_save_bitmaps(BlockDev *bd, GError **errp);
/* Take filters[i] out of bds[i]'s chain, all at one instant as above. Returns after every
 * request that ran through them has finished; drops the chains' references. */
void blockdev_remove_filters(BlockDev *const *bds, size_t n, BlockNode *const *filters);

#endif /* BLOCK_BLOCK_H */
