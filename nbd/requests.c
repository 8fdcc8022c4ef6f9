/*
 * nbd/requests.c — the transmission phase: read requests, execute them on the block
 * layer, send replies. Threading is described in nbd/internal.h.
 *
 * Framing rules (what keeps a connection in sync with a hostile client):
 *   - a request header with a wrong magic, or a WRITE longer than NBD_MAX_PAYLOAD
 *     (whose payload we will not read), ends the connection: nothing after it can be
 *     trusted to be a request boundary;
 *   - everything else is answered: a WRITE's payload is always consumed first, then
 *     nbd_request_check() decides between executing and an error reply.
 *
 * Replies: simple replies unless structured replies were negotiated, in which case
 * READ answers with OFFSET_DATA / OFFSET_HOLE chunks (holes found with block status for
 * reads of at least NBD_SPARSE_READ_MIN; one data chunk with DF or for smaller reads)
 * and errors of READ and BLOCK_STATUS are ERROR chunks. All chunks of one reply go out
 * in one sendmsg under the send lock, so replies never interleave.
 *
 * Buffers: each thread keeps one aligned buffer of up to NBD_BUF_KEEP bytes; larger
 * requests allocate for themselves and are bounded per connection by
 * NBD_CONN_BIG_BUDGET (a thread waits for budget before reading such a payload, which
 * also stops it reading further requests: backpressure, not memory growth).
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/internal.h"

typedef struct Worker {
    NbdConn *c;
    void *buf;                 /* kept buffer, MEM aligned */
    size_t cap;
    void *big;                 /* buffer of the current large request, or NULL */
    size_t big_len;
} Worker;

#define BUF_ALIGN 4096

/* ---- request checks (pure) ---- */

int nbd_request_check(const NbdRequest *req, uint64_t size, bool writable, bool structured,
                      bool meta_base_alloc)
{
    uint16_t allowed = NBD_CMD_FLAG_FUA;

    switch (req->type) {
    case NBD_CMD_READ:
        if (structured) {
            allowed |= NBD_CMD_FLAG_DF;
        }
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
        break;
    case NBD_CMD_WRITE_ZEROES:
        allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!meta_base_alloc) {
            return -EINVAL;
        }
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default:
        return -EINVAL;
    }
    if (req->flags & ~allowed) {
        return -EINVAL;
    }
    bool is_write = req->type == NBD_CMD_WRITE || req->type == NBD_CMD_WRITE_ZEROES;
    if (!writable && (is_write || req->type == NBD_CMD_TRIM)) {
        return -EPERM;
    }
    if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) &&
        req->len > NBD_MAX_PAYLOAD) {
        return -EINVAL;
    }
    if (req->type == NBD_CMD_FLUSH) {
        return 0; /* offset and length carry no meaning */
    }
    if (req->offset > size || req->len > size - req->offset) {
        return is_write ? -ENOSPC : -EINVAL;
    }
    if (req->type == NBD_CMD_BLOCK_STATUS && req->len == 0) {
        return -EINVAL;
    }
    return 0;
}

/* ---- buffers ---- */

static void *aligned_new(size_t len)
{
    void *p = NULL;

    if (posix_memalign(&p, BUF_ALIGN, MAX(len, (size_t)BUF_ALIGN)) != 0) {
        return NULL;
    }
    return p;
}

/* A buffer of len bytes for the current request, or NULL (out of memory). */
static void *worker_buf(Worker *w, size_t len)
{
    NbdConn *c = w->c;

    if (len <= NBD_BUF_KEEP) {
        if (w->cap < len) {
            size_t cap = MAX(len, (size_t)64 * 1024);
            void *p = aligned_new(cap);
            if (p == NULL) {
                return NULL;
            }
            free(w->buf);
            w->buf = p;
            w->cap = cap;
        }
        return w->buf;
    }
    g_mutex_lock(&c->mem_lock);
    while (c->big_bytes > 0 && c->big_bytes + len > NBD_CONN_BIG_BUDGET) {
        g_cond_wait(&c->mem_cond, &c->mem_lock);
    }
    c->big_bytes += len;
    g_mutex_unlock(&c->mem_lock);
    w->big = aligned_new(len);
    w->big_len = len;
    if (w->big == NULL) {
        g_mutex_lock(&c->mem_lock);
        c->big_bytes -= len;
        g_cond_broadcast(&c->mem_cond);
        g_mutex_unlock(&c->mem_lock);
        w->big_len = 0;
    }
    return w->big;
}

static void worker_buf_done(Worker *w)
{
    NbdConn *c = w->c;

    if (w->big_len > 0) {
        free(w->big);
        w->big = NULL;
        g_mutex_lock(&c->mem_lock);
        c->big_bytes -= w->big_len;
        g_cond_broadcast(&c->mem_cond);
        g_mutex_unlock(&c->mem_lock);
        w->big_len = 0;
    }
}

/* ---- replies ---- */

static void send_or_close(NbdConn *c, struct iovec *iov, int n)
{
    if (nbd_conn_send(c, iov, n) < 0) {
        /* The client is gone or stuck: stop reading, let the others finish. */
        nbd_conn_shutdown_read(c);
    }
}

static void reply_simple(NbdConn *c, const NbdRequest *req, int err, void *data, size_t len)
{
    NbdSimpleReply r = {
        .magic = htobe32(NBD_SIMPLE_REPLY_MAGIC),
        .error = htobe32(nbd_errno_to_wire(err)),
        .cookie = htobe64(req->cookie),
    };
    struct iovec iov[2] = {
        { .iov_base = &r, .iov_len = sizeof(r) },
        { .iov_base = data, .iov_len = len },
    };
    send_or_close(c, iov, err == 0 && len > 0 ? 2 : 1);
}

static void chunk_header(NbdChunkHeader *h, const NbdRequest *req, uint16_t flags,
                         uint16_t type, uint32_t len)
{
    h->magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC);
    h->flags = htobe16(flags);
    h->type = htobe16(type);
    h->cookie = htobe64(req->cookie);
    h->length = htobe32(len);
}

static void reply_error_chunk(NbdConn *c, const NbdRequest *req, int err)
{
    const char *msg = g_strerror(-err);
    size_t mlen = strlen(msg);
    NbdChunkHeader h;
    NbdChunkError e = { .error = htobe32(nbd_errno_to_wire(err)),
                        .msg_len = htobe16((uint16_t)mlen) };
    struct iovec iov[3] = {
        { .iov_base = &h, .iov_len = sizeof(h) },
        { .iov_base = &e, .iov_len = sizeof(e) },
        { .iov_base = (void *)msg, .iov_len = mlen },
    };

    chunk_header(&h, req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                 (uint32_t)(sizeof(e) + mlen));
    send_or_close(c, iov, 3);
}

/* Any reply without payload: simple, or an error chunk for a structured client's READ
 * and BLOCK_STATUS (those must not be answered with a simple reply then). */
static void reply_status(NbdConn *c, const NbdRequest *req, int err)
{
    if (err != 0 && c->structured &&
        (req->type == NBD_CMD_READ || req->type == NBD_CMD_BLOCK_STATUS)) {
        reply_error_chunk(c, req, err);
    } else {
        reply_simple(c, req, err, NULL, 0);
    }
}

/* ---- commands ---- */

typedef struct Run {
    uint64_t offset;
    uint64_t len;
    bool hole;
} Run;

static void do_read(Worker *w, const NbdRequest *req)
{
    NbdConn *c = w->c;
    BlockDev *bd = c->exp->bd;
    char *buf = NULL;
    int err = 0;

    if (req->len > 0) {
        buf = worker_buf(w, req->len);
        if (buf == NULL) {
            reply_status(c, req, -ENOMEM);
            return;
        }
    }
    if (!c->structured) {
        err = blockdev_pread(bd, buf, req->len, req->offset);
        reply_simple(c, req, err, buf, req->len);
        return;
    }

    /* Split into data and hole runs (only worth it for larger reads). */
    Run runs[NBD_MAX_READ_CHUNKS];
    int n = 0;
    uint64_t pos = req->offset, end = req->offset + req->len;
    if ((req->flags & NBD_CMD_FLAG_DF) || req->len < NBD_SPARSE_READ_MIN) {
        runs[n++] = (Run){ pos, req->len, false };
    } else {
        while (pos < end) {
            uint64_t pnum;
            bool hole;
            if (n == NBD_MAX_READ_CHUNKS - 1 ||
                blockdev_block_status(bd, pos, end - pos, &pnum, &hole) < 0) {
                pnum = end - pos; /* the rest as data */
                hole = false;
            }
            if (n > 0 && runs[n - 1].hole == hole) {
                runs[n - 1].len += pnum;
            } else {
                runs[n++] = (Run){ pos, pnum, hole };
            }
            pos += pnum;
        }
    }
    for (int i = 0; i < n && err == 0; i++) {
        if (!runs[i].hole && runs[i].len > 0) {   /* len 0: buf is NULL */
            err = blockdev_pread(bd, buf + (runs[i].offset - req->offset), runs[i].len,
                                 runs[i].offset);
        }
    }
    if (err != 0) {
        reply_error_chunk(c, req, err);
        return;
    }
    if (req->len == 0) {
        /* Nothing to send but the end of the reply. */
        NbdChunkHeader h;
        struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
        chunk_header(&h, req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
        send_or_close(c, &iov, 1);
        return;
    }

    NbdChunkHeader hdr[NBD_MAX_READ_CHUNKS];
    uint64_t offs[NBD_MAX_READ_CHUNKS];
    NbdChunkHole holes[NBD_MAX_READ_CHUNKS];
    struct iovec iov[3 * NBD_MAX_READ_CHUNKS];
    int k = 0;
    for (int i = 0; i < n; i++) {
        uint16_t flags = i == n - 1 ? NBD_REPLY_FLAG_DONE : 0;
        if (runs[i].hole) {
            chunk_header(&hdr[i], req, flags, NBD_REPLY_TYPE_OFFSET_HOLE, sizeof(holes[i]));
            holes[i].offset = htobe64(runs[i].offset);
            holes[i].length = htobe32((uint32_t)runs[i].len);
            iov[k++] = (struct iovec){ &hdr[i], sizeof(hdr[i]) };
            iov[k++] = (struct iovec){ &holes[i], sizeof(holes[i]) };
        } else {
            chunk_header(&hdr[i], req, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                         (uint32_t)(sizeof(offs[i]) + runs[i].len));
            offs[i] = htobe64(runs[i].offset);
            iov[k++] = (struct iovec){ &hdr[i], sizeof(hdr[i]) };
            iov[k++] = (struct iovec){ &offs[i], sizeof(offs[i]) };
            iov[k++] = (struct iovec){ buf + (runs[i].offset - req->offset), runs[i].len };
        }
    }
    send_or_close(c, iov, k);
}

static void do_block_status(NbdConn *c, const NbdRequest *req)
{
    BlockDev *bd = c->exp->bd;
    int max = (req->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_EXTENTS;
    g_autofree NbdExtent *ext = g_new(NbdExtent, max);
    uint64_t pos = req->offset, end = req->offset + req->len;
    uint32_t last_flags = 0;
    int n = 0;

    while (pos < end) {
        uint64_t pnum;
        bool hole;
        int r = blockdev_block_status(bd, pos, end - pos, &pnum, &hole);
        if (r < 0) {
            if (n == 0) {
                reply_error_chunk(c, req, r);
                return;
            }
            break;
        }
        uint32_t flags = hole ? (NBD_STATE_HOLE | NBD_STATE_ZERO) : 0;
        if (n > 0 && flags == last_flags) {
            ext[n - 1].length = htobe32(be32toh(ext[n - 1].length) + (uint32_t)pnum);
        } else if (n < max) {
            ext[n].length = htobe32((uint32_t)pnum);
            ext[n].flags = htobe32(flags);
            last_flags = flags;
            n++;
        } else {
            break;
        }
        pos += pnum;
    }

    NbdChunkHeader h;
    uint32_t ctx = htobe32(NBD_META_ID_BASE_ALLOCATION);
    struct iovec iov[3] = {
        { .iov_base = &h, .iov_len = sizeof(h) },
        { .iov_base = &ctx, .iov_len = sizeof(ctx) },
        { .iov_base = ext, .iov_len = sizeof(NbdExtent) * (size_t)n },
    };
    chunk_header(&h, req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
                 (uint32_t)(sizeof(ctx) + sizeof(NbdExtent) * (size_t)n));
    send_or_close(c, iov, 3);
}

static void execute(Worker *w, const NbdRequest *req, void *payload)
{
    NbdConn *c = w->c;
    NbdExport *exp = c->exp;
    bool fua = (req->flags & NBD_CMD_FLAG_FUA) != 0;
    int err = nbd_request_check(req, exp->size, exp->writable, c->structured,
                                c->meta_base_alloc);

    if (err == 0 && payload == NULL && req->type == NBD_CMD_WRITE && req->len > 0) {
        err = -ENOMEM;
    }
    if (err != 0) {
        reply_status(c, req, err);
        return;
    }
    switch (req->type) {
    case NBD_CMD_READ:
        do_read(w, req);
        return;
    case NBD_CMD_BLOCK_STATUS:
        do_block_status(c, req);
        return;
    case NBD_CMD_WRITE:
        g_atomic_int_set(&c->dirty, 1);
        err = blockdev_pwrite(exp->bd, payload, req->len, req->offset,
                              fua ? BLOCKDEV_FUA : 0);
        break;
    case NBD_CMD_WRITE_ZEROES: {
        unsigned flags = fua ? BLOCKDEV_FUA : 0;
        if (req->flags & NBD_CMD_FLAG_NO_HOLE) {
            flags |= BLOCKDEV_NO_UNMAP;
        }
        if (req->flags & NBD_CMD_FLAG_FAST_ZERO) {
            flags |= BLOCKDEV_FAST_ZERO;
        }
        g_atomic_int_set(&c->dirty, 1);
        err = blockdev_write_zeroes(exp->bd, req->len, req->offset, flags);
        break;
    }
    case NBD_CMD_TRIM:
        g_atomic_int_set(&c->dirty, 1);
        err = blockdev_discard(exp->bd, req->len, req->offset);
        if (err == 0 && fua) {
            err = blockdev_flush(exp->bd);
        }
        break;
    case NBD_CMD_FLUSH:
        err = blockdev_flush(exp->bd);
        break;
    case NBD_CMD_CACHE:
    default:
        err = 0; /* a prefetch hint; the page cache does this well enough */
        break;
    }
    if (err < 0 && err != -ENOTSUP) {
        g_message("nbd: %s: %s: command %u at %" G_GUINT64_FORMAT "+%u: %s", c->peer,
                  exp->name, req->type, req->offset, req->len, g_strerror(-err));
    }
    reply_simple(c, req, err, NULL, 0);
}

/* ---- the request loop ---- */

static bool conn_closing(NbdConn *c)
{
    return g_atomic_int_get(&c->closing) != 0;
}

static void mark_closing(NbdConn *c)
{
    g_atomic_int_set(&c->closing, 1);
}

/* Read one request (and a WRITE's payload) under the receive lock. False: stop. */
static bool read_request(Worker *w, NbdRequest *req, void **payload)
{
    NbdConn *c = w->c;
    NbdRequestWire wire;
    bool ok = false;
    int r;

    *payload = NULL;
    g_mutex_lock(&c->recv_lock);
    if (conn_closing(c)) {
        goto out;
    }
    r = nbd_conn_recv(c, &wire, sizeof(wire));
    if (r < 0) {
        if (r != -EPIPE && !conn_closing(c)) {
            g_message("nbd: %s: receive request: %s", c->peer, g_strerror(-r));
        }
        mark_closing(c);
        goto out;
    }
    if (be32toh(wire.magic) != NBD_REQUEST_MAGIC) {
        g_message("nbd: %s: bad request magic 0x%08x, closing", c->peer, be32toh(wire.magic));
        mark_closing(c);
        goto out;
    }
    req->flags = be16toh(wire.flags);
    req->type = be16toh(wire.type);
    req->cookie = be64toh(wire.cookie);
    req->offset = be64toh(wire.offset);
    req->len = be32toh(wire.length);

    if (req->type == NBD_CMD_DISC) {
        mark_closing(c);
        goto out;
    }
    if (req->type == NBD_CMD_WRITE && req->len > 0) {
        if (req->len > NBD_MAX_PAYLOAD) {
            /* We will not swallow that payload: answer, then hang up. */
            g_message("nbd: %s: WRITE of %u bytes exceeds %u, closing", c->peer, req->len,
                      NBD_MAX_PAYLOAD);
            mark_closing(c);
            g_mutex_unlock(&c->recv_lock);
            reply_simple(c, req, -EINVAL, NULL, 0);
            return false;
        }
        *payload = worker_buf(w, req->len);
        if (*payload != NULL) {
            r = nbd_conn_recv(c, *payload, req->len);
        } else {
            /* No memory: skip the payload in pieces, answer ENOMEM. */
            char sink[4096];
            r = 0;
            for (uint32_t left = req->len; left > 0 && r == 0;) {
                uint32_t n = MIN(left, (uint32_t)sizeof(sink));
                r = nbd_conn_recv(c, sink, n);
                left -= n;
            }
        }
        if (r < 0) {
            if (r != -EPIPE && !conn_closing(c)) {
                g_message("nbd: %s: receive WRITE payload: %s", c->peer, g_strerror(-r));
            }
            mark_closing(c);
            worker_buf_done(w);
            goto out;
        }
    }
    ok = true;
out:
    g_mutex_unlock(&c->recv_lock);
    return ok;
}

static gpointer worker_main(gpointer opaque)
{
    Worker *w = opaque;
    NbdRequest req;
    void *payload;

    while (read_request(w, &req, &payload)) {
        execute(w, &req, payload);
        worker_buf_done(w);
        if (w->cap > NBD_BUF_KEEP) {
            free(w->buf);
            w->buf = NULL;
            w->cap = 0;
        }
    }
    free(w->buf);
    w->buf = NULL;
    w->cap = 0;
    return NULL;
}

void nbd_conn_serve(NbdConn *c)
{
    Worker workers[NBD_CONN_THREADS];
    GThread *threads[NBD_CONN_THREADS];
    int n = 0;

    memset(workers, 0, sizeof(workers));
    for (int i = 0; i < NBD_CONN_THREADS; i++) {
        workers[i].c = c;
    }
    for (int i = 1; i < NBD_CONN_THREADS; i++) {
        g_autoptr(GError) err = NULL;
        threads[n] = g_thread_try_new("nbd-req", worker_main, &workers[i], &err);
        if (threads[n] == NULL) {
            g_warning("nbd: %s: cannot start a request thread: %s", c->peer, err->message);
            break;
        }
        n++;
    }
    worker_main(&workers[0]);
    for (int i = 0; i < n; i++) {
        g_thread_join(threads[i]);
    }
}
