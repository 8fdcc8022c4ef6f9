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
 * Persistent bitmaps (state_seal / state_check / state_drop; the rules are in
 * block/dirty-bitmap-store.c). librbd updates an image's modify timestamp only about
 * once a minute, so no timestamp can prove that nobody wrote. The mark is an RBD
 * snapshot of ours, `vmabackup-bitmap-TAG-RANDOM`, created at the clean close after the
 * last write and a flush (librbd's snapshot creation also blocks and flushes I/O, and
 * takes the exclusive lock when the image has that feature: the lock holder is the only
 * writer, so the snapshot is a point no write straddles). Its record: the image id
 * (rbd_get_id, so an image deleted and created again under the name does not pass),
 * the snapshot id and name, and the size. At open: the snapshot must still exist with
 * that id and name, and rbd_diff_iterate2 from it (whole_object off: the exact extents
 * of each object, from RADOS's clone overlap, which every write, discard or rollback
 * after the snapshot changes) lists what was written since; each listed extent is added
 * to the bitmaps. An extent written back with its old bytes is still listed: the list is
 * a superset, never short. The snapshot is removed as soon as the disk is open for
 * writing (the state file is IN_USE then), so it exists only while vmad is down: a
 * snapshot would make every later first write to an object copy it.
 *
 * Threads: open and close on the main loop; every I/O op from any thread at once. The
 * node's state is immutable after open (librbd does its own locking).
 */
#include <errno.h>
#include <stdlib.h>
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
    bool at_snapshot;      /* opened on a snapshot (snapshot=): no persistent bitmaps */
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
        s->at_snapshot = true;
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

/* ---- persistent bitmaps: the snapshot mark ---- */

#define MARK_MAGIC "VRBDMRK1"
#define MARK_PREFIX "vmabackup-bitmap-"
#define MARK_MAX_ID 256u
#define MARK_MAX_NAME 256u

/*
 * The mark record (little-endian): magic "VRBDMRK1", u64 snapshot id, u64 image size,
 * u16 id_len (1..256), u16 name_len (1..256), the image id, the snapshot name.
 */
typedef struct RbdMark {
    uint64_t snap_id;
    uint64_t size;
    char *image_id;
    char *snap_name;
} RbdMark;

static void rbd_mark_clear(RbdMark *m)
{
    g_clear_pointer(&m->image_id, g_free);
    g_clear_pointer(&m->snap_name, g_free);
}

static GBytes *rbd_mark_encode(const RbdMark *m)
{
    GByteArray *b = g_byte_array_new();
    uint64_t v;
    uint16_t l;

    g_byte_array_append(b, (const guint8 *)MARK_MAGIC, 8);
    v = GUINT64_TO_LE(m->snap_id);
    g_byte_array_append(b, (const guint8 *)&v, 8);
    v = GUINT64_TO_LE(m->size);
    g_byte_array_append(b, (const guint8 *)&v, 8);
    l = GUINT16_TO_LE((uint16_t)strlen(m->image_id));
    g_byte_array_append(b, (const guint8 *)&l, 2);
    l = GUINT16_TO_LE((uint16_t)strlen(m->snap_name));
    g_byte_array_append(b, (const guint8 *)&l, 2);
    g_byte_array_append(b, (const guint8 *)m->image_id, (guint)strlen(m->image_id));
    g_byte_array_append(b, (const guint8 *)m->snap_name, (guint)strlen(m->snap_name));
    return g_byte_array_free_to_bytes(b);
}

/* Parse a record (state file input: every length checked). */
static bool rbd_mark_decode(GBytes *rec, RbdMark *m)
{
    gsize len = 0;
    const uint8_t *p = g_bytes_get_data(rec, &len);
    uint64_t v;
    uint16_t il, nl;

    if (len < 28 || memcmp(p, MARK_MAGIC, 8) != 0) {
        return false;
    }
    memcpy(&il, p + 24, 2);
    memcpy(&nl, p + 26, 2);
    il = GUINT16_FROM_LE(il);
    nl = GUINT16_FROM_LE(nl);
    if (il == 0 || il > MARK_MAX_ID || nl == 0 || nl > MARK_MAX_NAME ||
        len != 28u + il + nl || memchr(p + 28, 0, (size_t)il + nl) != NULL) {
        return false;
    }
    memcpy(&v, p + 8, 8);
    m->snap_id = GUINT64_FROM_LE(v);
    memcpy(&v, p + 16, 8);
    m->size = GUINT64_FROM_LE(v);
    m->image_id = g_strndup((const char *)p + 28, il);
    m->snap_name = g_strndup((const char *)p + 28 + il, nl);
    return true;
}

static bool image_id(RbdState *s, char **id, GError **errp)
{
    char buf[MARK_MAX_ID + 1];
    int r = rbd_get_id(s->image, buf, sizeof(buf));

    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "get the image id: %s",
                    g_strerror(-r));
        return false;
    }
    *id = g_strdup(buf);
    return true;
}

/* librbd calls a progress callback without checking it for NULL */
static int no_progress(uint64_t done, uint64_t total, void *arg)
{
    return 0;
}

static GBytes *rbd_state_seal(BlockNode *n, const char *tag, GBytes *old, GError **errp)
{
    RbdState *s = n->opaque;
    RbdMark m = {.size = n->size};
    int r;

    if (s->at_snapshot) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s: a node on an rbd snapshot has no persistent bitmaps", n->filename);
        return NULL;
    }
    if (n->read_only) {
        /* nothing written through this node: the mark it loaded still holds */
        if (old != NULL) {
            return g_bytes_ref(old);
        }
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                    "%s: a read-only rbd node cannot take the snapshot that persistent "
                    "bitmaps need (open it writable once)", n->filename);
        return NULL;
    }
    r = result(rbd_run(s, submit_flush, NULL));
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "%s: flush: %s",
                    n->filename, g_strerror(-r));
        return NULL;
    }
    m.snap_name = g_strdup_printf(MARK_PREFIX "%s-%08x%08x", tag, g_random_int(),
                                  g_random_int());
    r = rbd_snap_create2(s->image, m.snap_name, 0, no_progress, NULL);
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                    "%s: create snapshot %s: %s", n->filename, m.snap_name, g_strerror(-r));
        rbd_mark_clear(&m);
        return NULL;
    }
    r = rbd_snap_get_id(s->image, m.snap_name, &m.snap_id);
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                    "%s: look up snapshot %s: %s", n->filename, m.snap_name, g_strerror(-r));
        (void)rbd_snap_remove(s->image, m.snap_name);
        rbd_mark_clear(&m);
        return NULL;
    }
    if (!image_id(s, &m.image_id, errp)) {
        g_prefix_error(errp, "%s: ", n->filename);
        (void)rbd_snap_remove(s->image, m.snap_name);
        rbd_mark_clear(&m);
        return NULL;
    }
    GBytes *rec = rbd_mark_encode(&m);
    rbd_mark_clear(&m);
    return rec;
}

typedef struct DiffScan {
    void (*changed)(void *opaque, uint64_t offset, uint64_t len);
    void *opaque;
} DiffScan;

static int diff_cb(uint64_t off, size_t len, int exists, void *arg)
{
    DiffScan *d = arg;

    (void)exists;   /* written or discarded: either is a change */
    d->changed(d->opaque, off, len);
    return 0;
}

static bool rbd_state_check(BlockNode *n, GBytes *rec,
                            void (*changed)(void *opaque, uint64_t offset, uint64_t len),
                            void *opaque, GError **errp)
{
    RbdState *s = n->opaque;
    RbdMark m = {0};
    g_autofree char *id = NULL;
    char name[MARK_MAX_NAME + 1];
    size_t name_len = sizeof(name);
    bool ok = false;
    int r;

    if (s->at_snapshot) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "a node on an rbd snapshot has no persistent bitmaps");
        return false;
    }
    if (!rbd_mark_decode(rec, &m)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "the recorded rbd mark is damaged");
        return false;
    }
    if (!image_id(s, &id, errp)) {
        goto out;
    }
    if (strcmp(id, m.image_id) != 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "another image (id %s, the bitmaps are of id %s)", id, m.image_id);
        goto out;
    }
    r = rbd_snap_get_name(s->image, m.snap_id, name, &name_len);
    if (r < 0 || strcmp(name, m.snap_name) != 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "its snapshot %s (id %" G_GUINT64_FORMAT ") is gone", m.snap_name,
                    m.snap_id);
        goto out;
    }
    if (m.size != n->size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "resized from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT " bytes",
                    m.size, n->size);
        goto out;
    }
    DiffScan d = {.changed = changed, .opaque = opaque};
    r = rbd_diff_iterate2(s->image, m.snap_name, 0, n->size, 1, 0, diff_cb, &d);
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                    "diff since snapshot %s: %s", m.snap_name, g_strerror(-r));
        goto out;
    }
    ok = true;
out:
    rbd_mark_clear(&m);
    return ok;
}

static void rbd_state_drop(BlockNode *n, const char *tag, GBytes *keep)
{
    RbdState *s = n->opaque;
    g_autofree char *prefix = g_strdup_printf(MARK_PREFIX "%s-", tag);
    RbdMark k = {0};
    int max = 16, r;
    rbd_snap_info_t *snaps = NULL;

    if (keep != NULL && !rbd_mark_decode(keep, &k)) {
        return;   /* not ours to judge: remove nothing */
    }
    for (;;) {
        snaps = g_new0(rbd_snap_info_t, max);
        r = rbd_snap_list(s->image, snaps, &max);
        if (r != -ERANGE) {
            break;
        }
        g_free(snaps);
    }
    if (r < 0) {
        g_warning("%s: list snapshots: %s", n->filename, g_strerror(-r));
        g_free(snaps);
        rbd_mark_clear(&k);
        return;
    }
    for (int i = 0; i < r; i++) {
        const char *name = snaps[i].name;
        if (!g_str_has_prefix(name, prefix) ||
            (k.snap_name != NULL && strcmp(name, k.snap_name) == 0)) {
            continue;
        }
        int e = rbd_snap_remove(s->image, name);
        if (e < 0 && e != -ENOENT) {
            g_warning("%s: remove snapshot %s: %s", n->filename, name, g_strerror(-e));
        }
    }
    rbd_snap_list_end(snaps);
    g_free(snaps);
    rbd_mark_clear(&k);
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
    .state_seal = rbd_state_seal,
    .state_check = rbd_state_check,
    .state_drop = rbd_state_drop,
};
