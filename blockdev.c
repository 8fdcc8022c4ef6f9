/*
 * blockdev.c — the node registry that QMP and the command line see: named disks, each
 * the top of a chain of block nodes (block/block.h), and the write gate that makes
 * graph changes atomic across a set of disks.
 *
 * A BlockDev is one named disk: its protocol node (opened by blockdev_add() with the
 * driver asked for, block/file.c today), and the top of its chain — the protocol node
 * itself, or the filters inserted above it (copy-before-write during a backup). Every
 * I/O entry point of include/blockdev.h passes the disk's gate and calls the top node.
 *
 * The gate: every request (read, write, write-zeroes, discard, flush, block status)
 * waits while a graph change holds the gate closed (quiesce > 0), counts itself in
 * flight, takes the current top node, runs the request down the chain, and counts
 * itself out. blockdev_insert_filters() closes the gate of every disk of its set, waits
 * until each has no request in flight, relinks all chains, and opens the gates again.
 * So every request either finished before the change or runs entirely through the new
 * chain: for a backup, every write that starts after the instant runs the
 * copy-before-write filter, on every disk of the set alike, and every write before it
 * has finished. Removal works the same way, so it returns only after every request that
 * ran through a removed filter has finished, and only then drops the filter.
 *
 * Lock order (outer first); no lock is held across I/O:
 *   graph_lock      (serialises graph changes)
 *     -> bd->gate_lock of each disk, one at a time
 *   registry_lock   (registry only; taken alone)
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include <gio/gio.h>

#include "block/block.h"
#include "blockdev.h"
#include "block/dirty-bitmap.h"
#include "block/node-name.h"

struct BlockDev {
    gint refcount;               /* atomic */
    char *name;
    BlockNode *base;             /* the protocol node; immutable */

    GMutex gate_lock;            /* protects quiesce, inflight, top */
    GCond gate_cond;             /* quiesce dropped to 0 / inflight dropped to 0 */
    unsigned quiesce;            /* graph changes holding the gate closed */
    unsigned inflight;           /* requests inside the gate */
    BlockNode *top;              /* the chain's top (a reference): base or a filter */
};

static GMutex registry_lock;     /* protects registry */
static GPtrArray *registry;      /* of BlockDev*, one reference each, in add order */
static GMutex graph_lock;        /* serialises blockdev_insert/remove_filters */

/* ---- the gate ---- */

static BlockNode *gate_enter(BlockDev *bd)
{
    g_mutex_lock(&bd->gate_lock);
    while (bd->quiesce > 0) {
        g_cond_wait(&bd->gate_cond, &bd->gate_lock);
    }
    bd->inflight++;
    BlockNode *top = bd->top;
    g_mutex_unlock(&bd->gate_lock);
    return top;
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

/* Close the gates of n disks and wait until none has a request in flight. */
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

/* ---- I/O entry points: the top of each chain ---- */

int blockdev_pread(BlockDev *bd, void *buf, uint64_t len, uint64_t offset)
{
    BlockNode *top = gate_enter(bd);
    int r = bnode_pread(top, buf, len, offset);
    gate_exit(bd);
    return r;
}

int blockdev_pwrite(BlockDev *bd, const void *buf, uint64_t len, uint64_t offset,
                    unsigned flags)
{
    BlockNode *top = gate_enter(bd);
    int r = bnode_pwrite(top, buf, len, offset, flags & BLOCKDEV_FUA);
    gate_exit(bd);
    return r;
}

int blockdev_write_zeroes(BlockDev *bd, uint64_t len, uint64_t offset, unsigned flags)
{
    BlockNode *top = gate_enter(bd);
    int r = bnode_write_zeroes(top, len, offset, flags);
    gate_exit(bd);
    return r;
}

int blockdev_discard(BlockDev *bd, uint64_t len, uint64_t offset)
{
    BlockNode *top = gate_enter(bd);
    int r = bnode_discard(top, len, offset);
    gate_exit(bd);
    return r;
}

int blockdev_flush(BlockDev *bd)
{
    BlockNode *top = gate_enter(bd);
    int r = bnode_flush(top);
    gate_exit(bd);
    return r;
}

int blockdev_block_status(BlockDev *bd, uint64_t offset, uint64_t len, uint64_t *pnum,
                          bool *is_hole)
{
    BlockNode *top = gate_enter(bd);
    int r = bnode_block_status(top, offset, len, pnum, is_hole);
    gate_exit(bd);
    return r;
}

/* ---- properties ---- */

const char *blockdev_get_name(BlockDev *bd)
{
    return bd->name;
}

const char *blockdev_get_filename(BlockDev *bd)
{
    return bd->base->filename;
}

const char *blockdev_get_driver(BlockDev *bd)
{
    return bd->base->drv->name;
}

uint64_t blockdev_get_size(BlockDev *bd)
{
    return bd->base->size;
}

bool blockdev_is_read_only(BlockDev *bd)
{
    return bd->base->read_only;
}

bool blockdev_is_direct(BlockDev *bd)
{
    return bd->base->direct;
}

DirtyBitmapSet *blockdev_get_dirty_bitmaps(BlockDev *bd)
{
    return bd->base->dirty;
}

bool blockdev_save_bitmaps(BlockDev *bd, GError **errp)
{
    return dirty_state_save_node(bd->base, bd->name, !bd->base->read_only, errp);
}

/* ---- open / close / references ---- */

static void blockdev_free(BlockDev *bd)
{
    assert(bd->top == bd->base);
    /* a clean close: no request runs any more; record the bitmaps and the image's
     * identity, clear the in-use mark */
    g_autoptr(GError) err = NULL;
    if (!dirty_state_save_node(bd->base, bd->name, false, &err)) {
        g_warning("close %s: %s", bd->name, err->message);
    }
    bnode_unref(bd->top);
    bnode_unref(bd->base);
    g_mutex_clear(&bd->gate_lock);
    g_cond_clear(&bd->gate_cond);
    g_free(bd->name);
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
        blockdev_free(bd);
    }
}

static BlockDev *blockdev_open(const BlockDevOptions *opts, GError **errp)
{
    const BlockDriver *drv = NULL;

    if (opts->driver != NULL) {
        drv = bnode_find_driver(opts->driver);
        if (drv == NULL) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                        "add %s: unknown driver '%s'", opts->node_name, opts->driver);
            return NULL;
        }
    }
    BlockNode *base = bnode_open(drv, opts, errp);
    if (base == NULL) {
        return NULL;
    }
    /* persistent bitmaps: marked in use (durably) before the disk can take a write */
    if (!dirty_state_load_node(base, opts->node_name, errp)) {
        g_prefix_error(errp, "add %s: ", opts->node_name);
        bnode_unref(base);
        return NULL;
    }
    BlockDev *bd = g_new0(BlockDev, 1);
    bd->refcount = 1;
    bd->name = g_strdup(opts->node_name);
    bd->base = base;
    bd->top = bnode_ref(base);
    g_mutex_init(&bd->gate_lock);
    g_cond_init(&bd->gate_cond);
    return bd;
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
    bool has_file = g_strcmp0(opts->driver, "rbd") != 0 && g_strcmp0(opts->driver, "nbd") != 0 &&
                    opts->file == NULL;
    if (has_file && (opts->filename == NULL || opts->filename[0] == '\0')) {
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

/* ---- graph changes ---- */

BlockNode *blockdev_get_base(BlockDev *bd)
{
    return bnode_ref(bd->base);
}

BlockNode *blockdev_get_top(BlockDev *bd)
{
    g_mutex_lock(&bd->gate_lock);
    BlockNode *top = bnode_ref(bd->top);
    g_mutex_unlock(&bd->gate_lock);
    return top;
}

/* Does bd's chain have a filter of drv? Under graph_lock (only graph changes write the
 * chain, and they hold it). */
static bool chain_has_driver(BlockDev *bd, const BlockDriver *drv)
{
    for (BlockNode *n = bd->top; n != bd->base; n = n->child) {
        if (n->drv == drv) {
            return true;
        }
    }
    return false;
}

bool blockdev_insert_filters(BlockDev *const *bds, size_t n, BlockNode *const *filters,
                             GError **errp)
{
    return blockdev_insert_filters_at(bds, n, filters, NULL, NULL, errp);
}

bool blockdev_insert_filters_at(BlockDev *const *bds, size_t n, BlockNode *const *filters,
                                void (*at_instant)(void *opaque), void *opaque,
                                GError **errp)
{
    g_mutex_lock(&graph_lock);
    for (size_t i = 0; i < n; i++) {
        assert(filters[i]->drv->is_filter);
        if (chain_has_driver(bds[i], filters[i]->drv)) {
            g_mutex_unlock(&graph_lock);
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                        "insert %s filter on %s: the disk has one already",
                        filters[i]->drv->name, bds[i]->name);
            return false;
        }
        if (filters[i]->child != bds[i]->top) {
            g_mutex_unlock(&graph_lock);
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                        "insert %s filter on %s: the disk's graph changed meanwhile",
                        filters[i]->drv->name, bds[i]->name);
            return false;
        }
    }
    gates_close(bds, n);
    for (size_t i = 0; i < n; i++) {
        g_mutex_lock(&bds[i]->gate_lock);
        /* the filter's reference to the old top replaces the chain's */
        BlockNode *old = bds[i]->top;
        bds[i]->top = bnode_ref(filters[i]);
        g_mutex_unlock(&bds[i]->gate_lock);
        bnode_unref(old);
    }
    if (at_instant != NULL) {
        /* still no request inside any gate of the set: the same instant */
        at_instant(opaque);
    }
    gates_open(bds, n);
    g_mutex_unlock(&graph_lock);
    return true;
}

/* Unlink f from bd's chain (gate closed, graph_lock held); the chain's reference to f
 * is returned to the caller. */
static BlockNode *chain_unlink(BlockDev *bd, BlockNode *f)
{
    if (bd->top == f) {
        bd->top = bnode_ref(f->child);
        return f;
    }
    for (BlockNode *n = bd->top; n != bd->base; n = n->child) {
        if (n->child == f) {
            n->child = bnode_ref(f->child);
            return f;
        }
    }
    g_assert_not_reached();
}

void blockdev_remove_filters(BlockDev *const *bds, size_t n, BlockNode *const *filters)
{
    g_autofree BlockNode **gone = g_new(BlockNode *, n);

    g_mutex_lock(&graph_lock);
    gates_close(bds, n);
    for (size_t i = 0; i < n; i++) {
        g_mutex_lock(&bds[i]->gate_lock);
        gone[i] = chain_unlink(bds[i], filters[i]);
        g_mutex_unlock(&bds[i]->gate_lock);
    }
    gates_open(bds, n);
    g_mutex_unlock(&graph_lock);
    /* no request runs through them any more */
    for (size_t i = 0; i < n; i++) {
        bnode_unref(gone[i]);
    }
}
