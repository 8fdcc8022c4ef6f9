/*
 * block/nbd.c — the `nbd` protocol driver: a disk another NBD server exports, through
 * libnbd.
 *
 * Options are QEMU's (BlockdevOptionsNbd, without TLS, reconnection and x-dirty-bitmap):
 * server (a SocketAddress: type=unix with path, or type=inet with host and port) and
 * export (default ""). The export must be writable unless the node is read-only, as
 * QEMU's driver insists without auto-read-only.
 *
 * One node is one NBD connection, and every request goes over it asynchronously. The
 * block layer calls a node's ops synchronously from many threads at once (NBD worker
 * pool, backup copy workers, copy-before-write); each op submits its request(s) with
 * libnbd's aio API (nbd_aio_pread, ...; libnbd serialises calls on a handle with its own
 * lock, so any thread may submit) and sleeps on the request's condition until the
 * completion callback wakes it. One poll thread per node drives the connection: it polls
 * the socket in the direction libnbd asks for (nbd_aio_get_direction) and a wake-up pipe,
 * and calls nbd_aio_notify_read/write, which is where completion callbacks run. A
 * submitter writes one byte to the pipe after submitting, because a request that could
 * not be sent at once leaves libnbd waiting for POLLOUT, which the poll thread must see.
 * So N calling threads are N requests in flight on one connection (the server answers
 * them in any order). Why not a pool of connections: a server without multi-conn (qemu-nbd
 * and qemu-storage-daemon with a writable export) promises nothing about a flush on one
 * connection covering writes made on another, and qemu-nbd takes one client by default.
 *
 * Requests larger than the server's maximum (at most 32 MiB) are split; a vector of
 * buffers becomes one request per piece, all in flight together. Flags: FUA →
 * LIBNBD_CMD_FLAG_FUA when the server supports it, else the write and then a flush;
 * write-zeroes NO_UNMAP → NO_HOLE, FAST_ZERO → FAST_ZERO (refused with -ENOTSUP before
 * anything is sent when the server has no fast zero). A server without write-zeroes gets
 * zeros written (not with FAST_ZERO); without trim a discard does nothing (it is a hint);
 * without flush a flush succeeds (the server says its writes need none).
 *
 * Block status asks for base:allocation; a range is a hole when the server says it reads
 * as zeros (NBD_STATE_ZERO), so a backup skips it without reading. A server without
 * base:allocation reports everything as data.
 *
 * Failure: a request the server answers with an error returns that -errno; when the
 * connection dies (server gone), libnbd fails every request in flight, the poll thread
 * ends and every later request fails with the libnbd error at once (no reconnection).
 *
 * Threads: open and close on the main loop; I/O ops from any thread; the poll thread
 * only calls libnbd. NbdState is immutable after open except `dead` (atomic).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <libnbd.h>

#include "block/block.h"

#define NBD_MAX_REQUEST (32u << 20)   /* libnbd's own limit is 64 MiB */
#define NBD_MAX_STATUS (1u << 30)     /* block status asked for at most this much */

typedef struct NbdState {
    struct nbd_handle *h;
    int wake[2];              /* pipe: submitters write, the poll thread drains */
    GThread *poller;
    gint quit;                /* atomic: close asks the poll thread to end */
    gint dead;                /* atomic: the connection is gone */
    uint32_t max_request;
    bool can_fua, can_zero, can_fast_zero, can_trim, can_flush, has_alloc;
} NbdState;

/* ---- one batch of requests: submit, wait, collect ---- */

typedef struct NbdBatch {
    GMutex lock;              /* protects pending and err */
    GCond done;
    int pending;              /* submitted, not completed */
    int err;                  /* first error (-errno), or 0 */
    /* block status: the first run of the answer */
    uint64_t status_off;
    uint64_t run;             /* bytes of the run found */
    bool run_hole;
    bool run_set, run_closed;
} NbdBatch;

static void batch_init(NbdBatch *b)
{
    memset(b, 0, sizeof(*b));
    g_mutex_init(&b->lock);
    g_cond_init(&b->done);
}

static void batch_fail_locked(NbdBatch *b, int err)
{
    if (b->err == 0) {
        b->err = err;
    }
}

/* libnbd's completion callback (poll thread, or the submitter on a dead handle). */
static int batch_complete(void *opaque, int *error)
{
    NbdBatch *b = opaque;

    g_mutex_lock(&b->lock);
    if (*error != 0) {
        batch_fail_locked(b, -*error);
    }
    if (--b->pending == 0) {
        g_cond_broadcast(&b->done);
    }
    g_mutex_unlock(&b->lock);
    return 1;   /* retire the command */
}

static nbd_completion_callback batch_cb(NbdBatch *b)
{
    return (nbd_completion_callback){.callback = batch_complete, .user_data = b};
}

static void wake_poller(NbdState *s)
{
    char c = 0;
    while (write(s->wake[1], &c, 1) < 0 && errno == EINTR) {
    }
}

/* Before a submit: one more pending request. */
static void batch_add(NbdBatch *b)
{
    g_mutex_lock(&b->lock);
    b->pending++;
    g_mutex_unlock(&b->lock);
}

/* After a submit that returned r: a refused submit never completes. */
static void batch_submitted(NbdState *s, NbdBatch *b, int64_t r)
{
    if (r >= 0) {
        wake_poller(s);
        return;
    }
    int e = nbd_get_errno();
    g_mutex_lock(&b->lock);
    batch_fail_locked(b, e > 0 ? -e : -EIO);
    b->pending--;
    g_mutex_unlock(&b->lock);
}

static int batch_wait(NbdBatch *b)
{
    g_mutex_lock(&b->lock);
    while (b->pending > 0) {
        g_cond_wait(&b->done, &b->lock);
    }
    int err = b->err;
    g_mutex_unlock(&b->lock);
    g_mutex_clear(&b->lock);
    g_cond_clear(&b->done);
    return err;
}

/* ---- the poll thread ---- */

static gpointer poll_thread(gpointer opaque)
{
    NbdState *s = opaque;

    while (!g_atomic_int_get(&s->quit)) {
        unsigned dir = nbd_aio_get_direction(s->h);
        int fd = nbd_aio_get_fd(s->h);
        if (fd < 0 || nbd_aio_is_dead(s->h) || nbd_aio_is_closed(s->h)) {
            break;
        }
        struct pollfd p[2] = {
            {.fd = fd,
             .events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                               ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0))},
            {.fd = s->wake[0], .events = POLLIN},
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            g_warning("nbd: poll: %s", g_strerror(errno));
            break;
        }
        if (p[1].revents & POLLIN) {
            char buf[256];
            while (read(s->wake[0], buf, sizeof(buf)) > 0) {
            }
        }
        int r = 0;
        if ((dir & LIBNBD_AIO_DIRECTION_READ) && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            r = nbd_aio_notify_read(s->h);
        } else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) &&
                   (p[0].revents & (POLLOUT | POLLHUP | POLLERR))) {
            r = nbd_aio_notify_write(s->h);
        }
        if (r < 0 && nbd_aio_is_dead(s->h)) {
            break;
        }
    }
    if (!g_atomic_int_get(&s->quit)) {
        g_atomic_int_set(&s->dead, 1);
        g_warning("nbd: connection to the server lost: %s",
                  nbd_get_error() ? nbd_get_error() : "closed");
    }
    return NULL;
}

/* ---- the ops ---- */

static int nbd_flush_op(BlockNode *n)
{
    NbdState *s = n->opaque;
    NbdBatch b;

    if (!s->can_flush) {
        return 0;
    }
    batch_init(&b);
    batch_add(&b);
    batch_submitted(s, &b, nbd_aio_flush(s->h, batch_cb(&b), 0));
    return batch_wait(&b);
}

static int nbd_preadv_op(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                         uint64_t offset)
{
    NbdState *s = n->opaque;
    NbdBatch b;

    batch_init(&b);
    for (int i = 0; i < iovcnt; i++) {
        for (size_t done = 0; done < iov[i].iov_len;) {
            size_t chunk = MIN(iov[i].iov_len - done, s->max_request);
            batch_add(&b);
            batch_submitted(s, &b, nbd_aio_pread(s->h, (char *)iov[i].iov_base + done, chunk,
                                                 offset, batch_cb(&b), 0));
            done += chunk;
            offset += chunk;
        }
    }
    return batch_wait(&b);
}

static int nbd_pwritev_op(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                          uint64_t offset, unsigned flags)
{
    NbdState *s = n->opaque;
    bool fua = (flags & BLOCKDEV_FUA) != 0;
    uint32_t nflags = fua && s->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
    NbdBatch b;

    batch_init(&b);
    for (int i = 0; i < iovcnt; i++) {
        for (size_t done = 0; done < iov[i].iov_len;) {
            size_t chunk = MIN(iov[i].iov_len - done, s->max_request);
            batch_add(&b);
            batch_submitted(s, &b, nbd_aio_pwrite(s->h, (char *)iov[i].iov_base + done,
                                                  chunk, offset, batch_cb(&b), nflags));
            done += chunk;
            offset += chunk;
        }
    }
    int r = batch_wait(&b);
    if (r == 0 && fua && !s->can_fua) {
        r = nbd_flush_op(n);
    }
    return r;
}

/* Write-zeroes on a server without NBD_CMD_WRITE_ZEROES: zeros, written. */
static int write_zero_buffer(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags)
{
    NbdState *s = n->opaque;
    size_t bufsize = (size_t)MIN(len, (uint64_t)s->max_request);
    g_autofree void *zeros = g_malloc0(bufsize);

    while (len > 0) {
        size_t chunk = (size_t)MIN(len, (uint64_t)bufsize);
        struct iovec v = {.iov_base = zeros, .iov_len = chunk};
        int r = nbd_pwritev_op(n, &v, 1, chunk, offset, flags & BLOCKDEV_FUA);
        if (r < 0) {
            return r;
        }
        len -= chunk;
        offset += chunk;
    }
    return 0;
}

static int nbd_write_zeroes_op(BlockNode *n, uint64_t len, uint64_t offset, unsigned flags)
{
    NbdState *s = n->opaque;
    bool fua = (flags & BLOCKDEV_FUA) != 0;
    uint32_t nflags = 0;
    NbdBatch b;

    if (!s->can_zero) {
        return (flags & BLOCKDEV_FAST_ZERO) ? -ENOTSUP : write_zero_buffer(n, len, offset, flags);
    }
    if (flags & BLOCKDEV_FAST_ZERO) {
        if (!s->can_fast_zero) {
            return -ENOTSUP;
        }
        nflags |= LIBNBD_CMD_FLAG_FAST_ZERO;
    }
    if (flags & BLOCKDEV_NO_UNMAP) {
        nflags |= LIBNBD_CMD_FLAG_NO_HOLE;
    }
    if (fua && s->can_fua) {
        nflags |= LIBNBD_CMD_FLAG_FUA;
    }
    batch_init(&b);
    while (len > 0) {
        /* NBD lengths are 32 bits; stay aligned to the request maximum */
        uint64_t chunk = MIN(len, (uint64_t)NBD_MAX_STATUS);
        batch_add(&b);
        batch_submitted(s, &b, nbd_aio_zero(s->h, chunk, offset, batch_cb(&b), nflags));
        len -= chunk;
        offset += chunk;
    }
    int r = batch_wait(&b);
    if (r == -EOPNOTSUPP) {
        r = -ENOTSUP;   /* the server's "no fast zero here" */
    }
    if (r == 0 && fua && !s->can_fua) {
        r = nbd_flush_op(n);
    }
    return r;
}

static int nbd_discard_op(BlockNode *n, uint64_t len, uint64_t offset)
{
    NbdState *s = n->opaque;
    NbdBatch b;

    if (!s->can_trim) {
        return 0;
    }
    batch_init(&b);
    while (len > 0) {
        uint64_t chunk = MIN(len, (uint64_t)NBD_MAX_STATUS);
        batch_add(&b);
        batch_submitted(s, &b, nbd_aio_trim(s->h, chunk, offset, batch_cb(&b), 0));
        len -= chunk;
        offset += chunk;
    }
    return batch_wait(&b);
}

/* Extents of base:allocation (poll thread): extend the first run. */
static int status_extent(void *opaque, const char *metacontext, uint64_t offset,
                         uint32_t *entries, size_t nr_entries, int *error)
{
    NbdBatch *b = opaque;

    if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 || offset != b->status_off) {
        return 0;
    }
    g_mutex_lock(&b->lock);
    for (size_t i = 0; i + 1 < nr_entries && !b->run_closed; i += 2) {
        bool hole = (entries[i + 1] & LIBNBD_STATE_ZERO) != 0;
        if (!b->run_set) {
            b->run_set = true;
            b->run_hole = hole;
        } else if (hole != b->run_hole) {
            b->run_closed = true;
            break;
        }
        b->run += entries[i];
    }
    g_mutex_unlock(&b->lock);
    return 0;
}

static int nbd_block_status_op(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                               bool *is_hole)
{
    NbdState *s = n->opaque;
    NbdBatch b;

    if (!s->has_alloc) {
        *pnum = len;
        *is_hole = false;
        return 0;
    }
    batch_init(&b);
    b.status_off = offset;
    uint64_t ask = MIN(len, (uint64_t)NBD_MAX_STATUS);
    nbd_extent_callback ecb = {.callback = status_extent, .user_data = &b};
    batch_add(&b);
    batch_submitted(s, &b, nbd_aio_block_status(s->h, ask, offset, ecb, batch_cb(&b), 0));
    bool run_set = false;
    uint64_t run = 0;
    bool hole = false;
    int r = batch_wait(&b);
    run_set = b.run_set;
    run = b.run;
    hole = b.run_hole;
    if (r < 0) {
        return r;
    }
    if (!run_set || run == 0) {
        return -EIO;   /* the server answered with no extent at all */
    }
    *pnum = MIN(run, len);
    *is_hole = hole;
    return 0;
}

/* ---- open / close ---- */

static void nbd_state_free(NbdState *s)
{
    if (s->poller != NULL) {
        g_atomic_int_set(&s->quit, 1);
        wake_poller(s);
        g_thread_join(s->poller);
    }
    if (s->h != NULL) {
        nbd_close(s->h);   /* every request has completed: no I/O runs at close */
    }
    for (int i = 0; i < 2; i++) {
        if (s->wake[i] >= 0) {
            close(s->wake[i]);
        }
    }
    g_free(s);
}

static void nbd_close_op(BlockNode *n)
{
    nbd_state_free(n->opaque);
}

/* The node's name: the NBD URI of the export (nbd+unix:///EXPORT?socket=PATH). */
static char *nbd_filename(const BlockDevOptions *o)
{
    const char *exp = o->nbd_export != NULL ? o->nbd_export : "";
    g_autofree char *e = g_uri_escape_string(exp, NULL, FALSE);

    if (g_strcmp0(o->server_type, "unix") == 0) {
        g_autofree char *p = g_uri_escape_string(o->server_path, "/", FALSE);
        return g_strdup_printf("nbd+unix:///%s?socket=%s", e, p);
    }
    bool v6 = strchr(o->server_host, ':') != NULL;
    return g_strdup_printf("nbd://%s%s%s:%s/%s", v6 ? "[" : "", o->server_host, v6 ? "]" : "",
                           o->server_port, e);
}

static bool nbd_open_op(BlockNode *n, const BlockDevOptions *o, GError **errp)
{
    g_autofree char *name = NULL;
    NbdState *s;
    int r;

    if (g_strcmp0(o->server_type, "unix") == 0) {
        if (o->server_path == NULL || o->server_path[0] == '\0') {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "blockdev-add %s: driver nbd: server.type unix needs server.path",
                        o->node_name);
            return false;
        }
    } else if (g_strcmp0(o->server_type, "inet") == 0) {
        if (o->server_host == NULL || o->server_host[0] == '\0' || o->server_port == NULL ||
            o->server_port[0] == '\0') {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "blockdev-add %s: driver nbd: server.type inet needs server.host "
                        "and server.port", o->node_name);
            return false;
        }
    } else {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "blockdev-add %s: driver nbd needs server (type unix or inet)",
                    o->node_name);
        return false;
    }
    name = nbd_filename(o);
    s = g_new0(NbdState, 1);
    s->wake[0] = s->wake[1] = -1;
    s->h = nbd_create();
    if (s->h == NULL) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "open %s: %s: %s", o->node_name,
                    name, nbd_get_error());
        goto fail;
    }
    nbd_set_export_name(s->h, o->nbd_export != NULL ? o->nbd_export : "");
    nbd_add_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION);
    if (g_strcmp0(o->server_type, "unix") == 0) {
        r = nbd_connect_unix(s->h, o->server_path);
    } else {
        r = nbd_connect_tcp(s->h, o->server_host, o->server_port);
    }
    if (r < 0) {
        int e = nbd_get_errno();
        g_set_error(errp, G_IO_ERROR, e > 0 ? g_io_error_from_errno(e) : G_IO_ERROR_FAILED,
                    "open %s: %s: %s", o->node_name, name, nbd_get_error());
        goto fail;
    }
    int64_t size = nbd_get_size(s->h);
    if (size < 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "open %s: %s: %s", o->node_name,
                    name, nbd_get_error());
        goto fail;
    }
    if (nbd_is_read_only(s->h) == 1 && !n->read_only) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                    "open %s: %s: the export is read-only (open the node with read-only=on)",
                    o->node_name, name);
        goto fail;
    }
    s->can_fua = nbd_can_fua(s->h) == 1;
    s->can_zero = nbd_can_zero(s->h) == 1;
    s->can_fast_zero = nbd_can_fast_zero(s->h) == 1;
    s->can_trim = nbd_can_trim(s->h) == 1;
    s->can_flush = nbd_can_flush(s->h) == 1;
    s->has_alloc = nbd_can_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    int64_t max = nbd_get_block_size(s->h, LIBNBD_SIZE_MAXIMUM);
    s->max_request = max > 0 && max < NBD_MAX_REQUEST ? (uint32_t)max : NBD_MAX_REQUEST;
    if (!g_unix_open_pipe(s->wake, FD_CLOEXEC, NULL) ||
        fcntl(s->wake[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(s->wake[1], F_SETFL, O_NONBLOCK) < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno), "open %s: pipe: %s",
                    o->node_name, g_strerror(errno));
        goto fail;
    }
    s->poller = g_thread_new("nbd-client", poll_thread, s);
    n->size = (uint64_t)size;
    n->filename = g_steal_pointer(&name);
    n->opaque = s;
    return true;

fail:
    nbd_state_free(s);
    return false;
}

const BlockDriver bdrv_nbd = {
    .name = "nbd",
    .open = nbd_open_op,
    .close = nbd_close_op,
    .preadv = nbd_preadv_op,
    .pwritev = nbd_pwritev_op,
    .write_zeroes = nbd_write_zeroes_op,
    .discard = nbd_discard_op,
    .flush = nbd_flush_op,
    .block_status = nbd_block_status_op,
};
