/*
 * block/rbd.c — the `rbd` protocol driver: a Ceph RBD image through librbd.
 *
 * Options are QEMU's (BlockdevOptionsRbd): pool, image, and optionally namespace, conf
 * (a ceph.conf; without it librbd's default search: $CEPH_CONF, /etc/ceph/ceph.conf,
 * ...), user (the cephx id without "client.", default admin) and snapshot (the node is
 * then read-only, as the image's snapshot is). cache.direct=on turns librbd's writeback
 * cache off (rbd_cache=false), as QEMU does for cache=none.
 *
 * One node is one cluster connection (rados_t), one I/O context and one open image.
 *
 * I/O. The block layer calls a node's ops synchronously, from many threads at once (the
 * NBD worker pool, backup copy workers, copy-before-write in guest writes). Every op here
 * submits one asynchronous librbd request (rbd_aio_readv, rbd_aio_writev,
 * rbd_aio_write_zeroes, rbd_aio_discard, rbd_aio_flush) and waits for its completion in
 * the calling thread. librbd is thread-safe on one image and keeps every submitted
 * request in flight at once, so N calling threads are N requests in flight on the
 * cluster, each a separate object operation where they touch different objects; the
 * wait costs a thread, not concurrency. Results: reads return their length, the others
 * 0, or -errno from librbd (the cluster's answer, or -ETIMEDOUT when the client's
 * `rados osd op timeout` expires; by default it never does and a request to a dead
 * cluster waits).
 *
 * Write flags. FUA: the write, then a flush (librbd's cache holds writes until a flush;
 * without the cache a flush is cheap). Write-zeroes without NO_UNMAP: rbd_aio_write_zeroes
 * (whole objects are removed, partial ones zeroed: the range reads as zeros and may be
 * deallocated). With NO_UNMAP: the same with RBD_WRITE_ZEROES_FLAG_THICK_PROVISION,
 * which writes zeros so the range stays allocated; that is not cheap, so with FAST_ZERO
 * it is refused (-ENOTSUP) before anything is written. Discard: rbd_aio_discard, a hint
 * (librbd skips parts of objects smaller than its discard granularity; what a discarded
 * range reads afterwards is zeros or the old data).
 *
 * Block status. rbd_diff_iterate2 from the image's creation (no "from" snapshot, with the
 * parent's data) lists the extents that hold data; what it does not list reads as zeros
 * and is a hole, so a backup skips it without reading. When the image has the fast-diff
 * feature and its object map is valid, whole_object=1 answers from the object map (whole
 * objects, no per-object round trip); otherwise librbd asks each object for its exact
 * extents (slower, still exact). librbd flushes its cache before a diff, so a write that
 * was acknowledged is always seen. The callback stops the iteration at the first gap
 * after the run that starts at the asked offset.
 *
 * Locking. Images with the exclusive-lock feature (Ceph's default) have one lock owner
 * at a time; librbd hands the lock over on request, so a second client that writes (a
 * second vmad, QEMU, `rbd import`) takes it over and both writers' requests succeed,
 * interleaved. That is Ceph's semantics, not a guard: nothing keeps two programs from
 * writing one image, and a write that does not go through vmad is not seen by a running
 * backup's copy-before-write. Read-only nodes (read-only=on, snapshot=) take no lock.
 *
 * Threads: open and close on the main loop; every I/O op from any thread at once. The
 * node's state is immutable after open (librbd does its own locking).
 */
#include <errno.h>
#include <string.h>

#include <gio/gio.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "block/block.h"

typedef struct RbdState {
    rados_t cluster;
    rados_ioctx_t io;
    rbd_image_t image;
    bool whole_object;     /* fast-diff with a valid object map: block status per object */
} RbdState;

/* ---- one request: submit, wait, collect ---- */

typedef int (*RbdSubmit)(RbdState *s, rbd_completion_t c, void *arg);

/* Run one asynchronous request and wait for it; its return value or -errno. */
static ssize_t rbd_run(RbdState *s, RbdSubmit submit, void *arg)
{
    rbd_completion_t c = NULL;
    int r = rbd_aio_create_completion(NULL, NULL, &c);

    if (r < 0) {
        return r;
    }
    r = submit(s, c, arg);
    if (r < 0) {
        rbd_aio_release(c);
        return r;
    }
    rbd_aio_wait_for_complete(c);
    ssize_t ret = rbd_aio_get_return_value(c);
    rbd_aio_release(c);
    return ret;
}

typedef struct RbdReq {
    const struct iovec *iov;
    int iovcnt;
    uint64_t offset;
    uint64_t len;
    int zero_flags;
} RbdReq;

static int submit_readv(RbdState *s, rbd_completion_t c, void *arg)
{
    RbdReq *q = arg;
    return rbd_aio_readv(s->image, q->iov, q->iovcnt, q->offset, c);
}

static int submit_writev(RbdState *s, rbd_completion_t c, void *arg)
{
    RbdReq *q = arg;
    return rbd_aio_writev(s->image, q->iov, q->iovcnt, q->offset, c);
}

static int submit_write_zeroes(RbdState *s, rbd_completion_t c, void *arg)
{
    RbdReq *q = arg;
    return rbd_aio_write_zeroes(s->image, q->offset, q->len, c, q->zero_flags, 0);
}

static int submit_discard(RbdState *s, rbd_completion_t c, void *arg)
{
    RbdReq *q = arg;
    return rbd_aio_discard(s->image, q->offset, q->len, c);
}

static int submit_flush(RbdState *s, rbd_completion_t c, void *arg)
{
    return rbd_aio_flush(s->image, c);
}

/* A negative librbd result, or 0 (the byte count of a read is no error). */
static int result(ssize_t r)
{
    return r < 0 ? (int)r : 0;
}

/* ---- the ops ---- */

static int rbd_flush_op(BlockNode *n)
{
    return result(rbd_run(n->opaque, submit_flush, NULL));
}

static int rbd_preadv_op(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                         uint64_t offset)
{
    RbdReq q = { .iov = iov, .iovcnt = iovcnt, .offset = offset, .len = len };
    ssize_t r = rbd_run(n->opaque, submit_readv, &q);

    if (r >= 0 && (uint64_t)r != len) {
        return -EIO;   /* the node's size is fixed; a short read is the cluster's fault */
    }
    return result(r);
}

static int rbd_pwritev_op(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                          uint64_t offset, unsigned flags)
{
    RbdReq q = { .iov = iov, .iovcnt = iovcnt, .offset = offset, .len = len };
    int r = result(rbd_run(n->opaque, submit_writev, &q));

    if (r == 0 && (flags & BLOCKDEV_FUA)) {
        r = rbd_flush_op(n);
    }
    return r;
}

static int rbd_write_zeroes_op(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags)
{
    RbdReq q = { .offset = offset, .len = len };

    if (flags & BLOCKDEV_NO_UNMAP) {
        if (flags & BLOCKDEV_FAST_ZERO) {
            return -ENOTSUP;   /* thick zeroing writes every byte */
        }
        q.zero_flags = RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
    }
    int r = result(rbd_run(n->opaque, submit_write_zeroes, &q));
    if (r == 0 && (flags & BLOCKDEV_FUA)) {
        r = rbd_flush_op(n);
    }
    return r;
}

static int rbd_discard_op(BlockNode *n, uint64_t len, uint64_t offset)
{
    RbdReq q = { .offset = offset, .len = len };
    return result(rbd_run(n->opaque, submit_discard, &q));
}

/* Block status: the state of the diff iteration over [offset, end). */
typedef struct StatusScan {
    uint64_t offset, end;
    uint64_t data_end;     /* data run from offset found so far ends here (0: none yet) */
    uint64_t hole_end;     /* set: [offset, hole_end) is a hole */
    bool done;
} StatusScan;

#define SCAN_STOP (-ECANCELED)   /* returned by the callback to end the iteration */

static int status_cb(uint64_t off, size_t len, int exists, void *arg)
{
    StatusScan *sc = arg;
    uint64_t start = MAX(off, sc->offset);
    uint64_t stop = MIN(off + len, sc->end);

    if (!exists || start >= stop) {
        return 0;  /* a removed extent (diffs against a snapshot only), or outside */
    }
    if (sc->data_end == 0) {
        if (start > sc->offset) {
            sc->hole_end = start;      /* a hole up to the first data */
            sc->done = true;
            return SCAN_STOP;
        }
        sc->data_end = stop;
        return 0;
    }
    if (start > sc->data_end) {
        sc->done = true;               /* the data run ended at a gap */
        return SCAN_STOP;
    }
    sc->data_end = MAX(sc->data_end, stop);
    return 0;
}

static int rbd_block_status_op(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                               bool *is_hole)
{
    RbdState *s = n->opaque;
    StatusScan sc = { .offset = offset, .end = offset + len };

    int r = rbd_diff_iterate2(s->image, NULL, offset, len, 1, s->whole_object ? 1 : 0,
                              status_cb, &sc);
    if (r < 0 && !(r == SCAN_STOP && sc.done)) {
        return r;
    }
    if (sc.hole_end != 0) {
        *is_hole = true;
        *pnum = sc.hole_end - offset;
    } else if (sc.data_end != 0) {
        *is_hole = false;
        *pnum = sc.data_end - offset;
    } else {
        *is_hole = true;               /* nothing allocated in the whole range */
        *pnum = len;
    }
    return 0;
}

/* ---- open / close ---- */

static void rbd_state_free(RbdState *s)
{
    if (s->image != NULL) {
        rbd_close(s->image);
    }
    if (s->io != NULL) {
        rados_ioctx_destroy(s->io);
    }
    if (s->cluster != NULL) {
        rados_shutdown(s->cluster);
    }
    g_free(s);
}

static void rbd_close_op(BlockNode *n)
{
    rbd_state_free(n->opaque);
}

/* QEMU's legacy name of the image: rbd:POOL/[NS/]IMAGE[@SNAP][:conf=FILE][:id=USER]. */
static char *rbd_filename(const BlockDevOptions *o)
{
    GString *f = g_string_new("rbd:");

    g_string_append_printf(f, "%s/", o->pool);
    if (o->rbd_namespace != NULL && o->rbd_namespace[0] != '\0') {
        g_string_append_printf(f, "%s/", o->rbd_namespace);
    }
    g_string_append(f, o->image);
    if (o->snapshot != NULL) {
        g_string_append_printf(f, "@%s", o->snapshot);
    }
    if (o->conf != NULL) {
        g_string_append_printf(f, ":conf=%s", o->conf);
    }
    if (o->user != NULL) {
        g_string_append_printf(f, ":id=%s", o->user);
    }
    return g_string_free(f, FALSE);
}

/* Fail the open: "open NODE: rbd:POOL/IMAGE: WHAT: strerror(-r)". */
static void open_error(GError **errp, const BlockDevOptions *o, const char *name, int r,
                       const char *what)
{
    g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "open %s: %s: %s: %s",
                o->node_name, name, what, g_strerror(-r));
}

static bool rbd_open_op(BlockNode *n, const BlockDevOptions *o, GError **errp)
{
    g_autofree char *name = NULL;
    RbdState *s;
    int r;

    if (o->pool == NULL || o->pool[0] == '\0' || o->image == NULL || o->image[0] == '\0') {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "blockdev-add %s: driver rbd needs pool and image", o->node_name);
        return false;
    }
    name = rbd_filename(o);
    s = g_new0(RbdState, 1);
    r = rados_create(&s->cluster, o->user);
    if (r < 0) {
        s->cluster = NULL;
        open_error(errp, o, name, r, "create the cluster handle");
        goto fail;
    }
    if (o->conf != NULL) {
        r = rados_conf_read_file(s->cluster, o->conf);
        if (r < 0) {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                        "open %s: %s: read the configuration %s: %s", o->node_name, name,
                        o->conf, g_strerror(-r));
            goto fail;
        }
    } else {
        /* the default search; a host without any ceph.conf may still connect by
         * CEPH_ARGS (mon_host=...) */
        (void)rados_conf_read_file(s->cluster, NULL);
    }
    (void)rados_conf_parse_env(s->cluster, NULL);
    if (o->direct) {
        rados_conf_set(s->cluster, "rbd_cache", "false");
    }
    r = rados_connect(s->cluster);
    if (r < 0) {
        open_error(errp, o, name, r, "connect to the cluster");
        goto fail;
    }
    r = rados_ioctx_create(s->cluster, o->pool, &s->io);
    if (r < 0) {
        s->io = NULL;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "open %s: %s: pool %s: %s",
                    o->node_name, name, o->pool, g_strerror(-r));
        goto fail;
    }
    if (o->rbd_namespace != NULL) {
        rados_ioctx_set_namespace(s->io, o->rbd_namespace);
    }
    if (o->snapshot != NULL) {
        n->read_only = true;   /* a snapshot cannot be written */
    }
    if (n->read_only) {
        r = rbd_open_read_only(s->io, o->image, &s->image, o->snapshot);
    } else {
        r = rbd_open(s->io, o->image, &s->image, NULL);
    }
    if (r < 0) {
        s->image = NULL;
        open_error(errp, o, name, r, o->snapshot != NULL ? "open the image snapshot"
                                                          : "open the image");
        goto fail;
    }

    uint64_t size = 0, features = 0, flags = 0;
    r = rbd_get_size(s->image, &size);
    if (r < 0) {
        open_error(errp, o, name, r, "get the image size");
        goto fail;
    }
    if (rbd_get_features(s->image, &features) == 0 && (features & RBD_FEATURE_FAST_DIFF) &&
        rbd_get_flags(s->image, &flags) == 0 &&
        !(flags & (RBD_FLAG_OBJECT_MAP_INVALID | RBD_FLAG_FAST_DIFF_INVALID))) {
        s->whole_object = true;
    }
    n->size = size;
    n->filename = g_steal_pointer(&name);
    n->opaque = s;
    return true;

fail:
    rbd_state_free(s);
    return false;
}

const BlockDriver bdrv_rbd = {
    .name = "rbd",
    .open = rbd_open_op,
    .close = rbd_close_op,
    .preadv = rbd_preadv_op,
    .pwritev = rbd_pwritev_op,
    .write_zeroes = rbd_write_zeroes_op,
    .discard = rbd_discard_op,
    .flush = rbd_flush_op,
    .block_status = rbd_block_status_op,
};
