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
 * and errors of READ and BLOCK_STATUS are ERROR chunks. Replies are sent under
 * out_lock: by the pool thread that built one when nothing is queued before it, else
 * by the connection thread from the queue's head; a reply leaves the queue only once
 * sent whole, so the chunks of two replies never interleave.
 *
 * Buffers: every READ and WRITE allocates its own aligned buffer, after the connection
 * thread took its length from the server's budget (nbd/budget.c); the buffer and the
 * budget go back when the WRITE has executed or the READ's reply has been sent. A
 * request that does not fit waits, and its connection reads nothing further meanwhile:
 * back-pressure, not memory growth.
 *
 * A Reply holds everything one reply sends (headers, the iovec, the data buffer), so
 * that what a pool thread could not send at once the connection thread sends later, in
 * pieces.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/dirty-bitmap.h"
#include "nbd/internal.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_ALIGN 4096
#define REPLY_IOV (3 * NBD_MAX_READ_CHUNKS)
_Static_assert(NBD_MAX_CONTEXTS <= NBD_MAX_READ_CHUNKS && NBD_MAX_CONTEXTS <= 32,
               "a BLOCK_STATUS reply has a chunk header per context, a mask bit each");

/* One reply, built by a pool thread, sent by it or by the connection thread. */
typedef struct Reply {
    struct iovec iov[REPLY_IOV];
    int first, iovcnt;         /* iov[first..iovcnt) is left to send */
    NbdSimpleReply simple;
    NbdChunkHeader hdr[NBD_MAX_READ_CHUNKS];
    uint64_t offs[NBD_MAX_READ_CHUNKS];
    NbdChunkHole holes[NBD_MAX_READ_CHUNKS];
    NbdChunkError error;
    uint32_t ctx[NBD_MAX_CONTEXTS];   /* BLOCK_STATUS: the context id of each chunk */
    void *data;                /* READ data (free()), or NULL */
    void *extents;             /* BLOCK_STATUS extents (g_free()), or NULL */
    size_t charged;            /* budget bytes given back once sent or dropped */
} Reply;

/* One request on its way to a pool thread. */
typedef struct Job {
    NbdConn *c;
    NbdRequest req;
    void *payload;             /* WRITE data (free()), or NULL */
    size_t charged;            /* budget bytes taken for it */
    Reply *reply;              /* being built */
} Job;

/* ---- request checks (pure) ---- */

int nbd_request_check(const NbdRequest *req, uint64_t size, bool writable, bool structured,
                      bool meta_selected)
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
        if (!meta_selected) {
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

/* Bytes a request takes from the budget: its payload or its reply's data. */
static size_t request_bytes(const NbdRequest *req)
{
    if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) &&
        req->len <= NBD_MAX_PAYLOAD) {
        return req->len;
    }
    return 0;
}

static void reply_free(NbdConn *c, Reply *r)
{
    free(r->data);
    g_free(r->extents);
    nbd_budget_put(c->budget, c, r->charged);
    g_free(r);
}

static void wake_conn(NbdConn *c)
{
    uint64_t one = 1;

    while (write(c->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

/* Send what is left of r without blocking (caller holds out_lock, and r is the head of
 * outq or outq is empty: one sender at a time, replies whole and in order). 1: all
 * sent; 0: the socket would block (r->first/iov record the progress); -errno: the
 * socket failed. */
static int reply_send(NbdConn *c, Reply *r)
{
    while (r->first < r->iovcnt) {
        struct msghdr msg = { .msg_iov = &r->iov[r->first],
                              .msg_iovlen = (size_t)MIN(r->iovcnt - r->first, IOV_MAX) };
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            return -errno;
        }
        size_t left = (size_t)n;
        while (r->first < r->iovcnt && left >= r->iov[r->first].iov_len) {
            left -= r->iov[r->first].iov_len;
            r->first++;
        }
        if (r->first < r->iovcnt) {
            r->iov[r->first].iov_base = (char *)r->iov[r->first].iov_base + left;
            r->iov[r->first].iov_len -= left;
        }
    }
    return 1;
}

/* A finished reply (any thread). With nothing queued before it, the finishing thread
 * sends it itself, as far as the socket takes it without blocking; what is left is
 * queued for the connection thread, which is woken only when it has something to do:
 * a reply queued, a slot freed while it stopped reading at NBD_CONN_MAX_REQUESTS, the
 * last request of a closing connection, or a failed socket. After this the calling
 * thread must not touch c: the connection may end as soon as out_lock is dropped. */
static void reply_queue(NbdConn *c, Reply *r)
{
    bool wake = false;
    bool done = false;

    g_mutex_lock(&c->out_lock);
    if (c->out_failed) {
        done = true;
    } else if (g_queue_is_empty(&c->outq)) {
        int ret = reply_send(c, r);
        if (ret < 0) {
            c->out_failed = true;       /* the client is gone or cut: read nothing more */
            g_atomic_int_set(&c->closing, 1);
            wake = true;
        }
        done = ret != 0;
    }
    if (!done) {
        g_queue_push_tail(&c->outq, r);
        wake = true;
    }
    if (c->inflight == NBD_CONN_MAX_REQUESTS || g_atomic_int_get(&c->closing)) {
        wake = true;
    }
    c->inflight--;
    if (done) {
        /* the budget lock nests inside out_lock; c lives while we hold out_lock */
        reply_free(c, r);
    }
    if (wake) {
        wake_conn(c);
    }
    g_mutex_unlock(&c->out_lock);
}

/* ---- replies (built by a pool thread into job->reply) ---- */

static void add_iov(Reply *r, void *base, size_t len)
{
    assert(r->iovcnt < REPLY_IOV);
    r->iov[r->iovcnt++] = (struct iovec){ .iov_base = base, .iov_len = len };
}

static void reply_simple(Reply *r, const NbdRequest *req, int err, void *data, size_t len)
{
    r->simple = (NbdSimpleReply){
        .magic = htobe32(NBD_SIMPLE_REPLY_MAGIC),
        .error = htobe32(nbd_errno_to_wire(err)),
        .cookie = htobe64(req->cookie),
    };
    add_iov(r, &r->simple, sizeof(r->simple));
    if (err == 0 && len > 0) {
        add_iov(r, data, len);
    }
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

static void reply_error_chunk(Reply *r, const NbdRequest *req, int err)
{
    const char *msg = g_strerror(-err);   /* glib keeps these strings for good */
    size_t mlen = strlen(msg);

    r->error = (NbdChunkError){ .error = htobe32(nbd_errno_to_wire(err)),
                                .msg_len = htobe16((uint16_t)mlen) };
    chunk_header(&r->hdr[0], req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                 (uint32_t)(sizeof(r->error) + mlen));
    add_iov(r, &r->hdr[0], sizeof(r->hdr[0]));
    add_iov(r, &r->error, sizeof(r->error));
    add_iov(r, (void *)msg, mlen);
}

/* Any reply without payload: simple, or an error chunk for a structured client's READ
 * and BLOCK_STATUS (those must not be answered with a simple reply then). */
static void reply_status(NbdConn *c, Reply *r, const NbdRequest *req, int err)
{
    if (err != 0 && c->structured &&
        (req->type == NBD_CMD_READ || req->type == NBD_CMD_BLOCK_STATUS)) {
        reply_error_chunk(r, req, err);
    } else {
        reply_simple(r, req, err, NULL, 0);
    }
}

/* ---- commands (pool threads) ---- */

typedef struct Run {
    uint64_t offset;
    uint64_t len;
    bool hole;
} Run;

static void do_read(NbdConn *c, Reply *r, const NbdRequest *req)
{
    BlockDev *bd = c->exp->bd;
    char *buf = NULL;
    int err = 0;

    if (req->len > 0) {
        buf = r->data = aligned_new(req->len);
        if (buf == NULL) {
            reply_status(c, r, req, -ENOMEM);
            return;
        }
    }
    if (!c->structured) {
        err = blockdev_pread(bd, buf, req->len, req->offset);
        reply_simple(r, req, err, buf, req->len);
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
        reply_error_chunk(r, req, err);
        return;
    }
    if (req->len == 0) {
        /* Nothing to send but the end of the reply. */
        chunk_header(&r->hdr[0], req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
        add_iov(r, &r->hdr[0], sizeof(r->hdr[0]));
        return;
    }
    for (int i = 0; i < n; i++) {
        uint16_t flags = i == n - 1 ? NBD_REPLY_FLAG_DONE : 0;
        if (runs[i].hole) {
            chunk_header(&r->hdr[i], req, flags, NBD_REPLY_TYPE_OFFSET_HOLE,
                         sizeof(r->holes[i]));
            r->holes[i].offset = htobe64(runs[i].offset);
            r->holes[i].length = htobe32((uint32_t)runs[i].len);
            add_iov(r, &r->hdr[i], sizeof(r->hdr[i]));
            add_iov(r, &r->holes[i], sizeof(r->holes[i]));
        } else {
            chunk_header(&r->hdr[i], req, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                         (uint32_t)(sizeof(r->offs[i]) + runs[i].len));
            r->offs[i] = htobe64(runs[i].offset);
            add_iov(r, &r->hdr[i], sizeof(r->hdr[i]));
            add_iov(r, &r->offs[i], sizeof(r->offs[i]));
            add_iov(r, buf + (runs[i].offset - req->offset), runs[i].len);
        }
    }
}

/* The extents of base:allocation over [pos, end), at most max, into ext. Returns how
 * many, or -errno when the first one failed. */
static int extents_allocation(BlockDev *bd, uint64_t pos, uint64_t end, NbdExtent *ext,
                              int max)
{
    uint32_t last_flags = 0;
    int n = 0;

    while (pos < end) {
        uint64_t pnum;
        bool hole;
        int ret = blockdev_block_status(bd, pos, end - pos, &pnum, &hole);
        if (ret < 0) {
            if (n == 0) {
                return ret;
            }
            break;
        }
        uint32_t flags = hole ? (NBD_STATE_HOLE | NBD_STATE_ZERO) : 0;
        if (n > 0 && flags == last_flags && be32toh(ext[n - 1].length) <= UINT32_MAX - pnum) {
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
    return n;
}

/* The extents of a dirty bitmap over [pos, end) (dirty: NBD_STATE_DIRTY), at most max.
 * dirty_bitmap_status() gives maximal runs already. */
static int extents_bitmap(struct DirtyBitmap *bm, uint64_t pos, uint64_t end, NbdExtent *ext,
                          int max)
{
    int n = 0;

    while (pos < end && n < max) {
        bool dirty;
        uint64_t pnum = dirty_bitmap_status(bm, pos, end - pos, &dirty);
        ext[n].length = htobe32((uint32_t)pnum);
        ext[n].flags = htobe32(dirty ? NBD_STATE_DIRTY : 0);
        n++;
        pos += pnum;
    }
    return n;
}

/* One BLOCK_STATUS chunk per selected context, in the export's context order, DONE on
 * the last (the protocol asks for one per context). The extents of one reply are at
 * most NBD_MAX_EXTENTS over all contexts: each context gets an equal share (REQ_ONE:
 * one), and may cover less than the request, as the protocol allows. */
static void do_block_status(NbdConn *c, Reply *r, const NbdRequest *req)
{
    NbdExport *exp = c->exp;
    guint nctx = nbd_export_n_contexts(exp);
    int nsel = __builtin_popcount(c->meta_ctx);
    int share = (req->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_EXTENTS / MAX(nsel, 1);
    NbdExtent *ext = r->extents = g_new(NbdExtent, (size_t)share * (size_t)nsel);
    uint64_t end = req->offset + req->len;
    int k = 0;
    size_t used = 0;

    assert(nsel > 0 && nsel <= (int)NBD_MAX_CONTEXTS);
    for (guint i = 0; i < nctx; i++) {
        if (!(c->meta_ctx & (UINT32_C(1) << i))) {
            continue;
        }
        NbdExtent *mine = ext + used;
        int n = i == 0 ? extents_allocation(exp->bd, req->offset, end, mine, share)
                       : extents_bitmap(exp->bitmaps[i - 1].bm, req->offset, end, mine, share);
        if (n < 0) {
            /* an error chunk is the whole reply: the chunks built so far are not sent */
            r->iovcnt = 0;
            reply_error_chunk(r, req, n);
            return;
        }
        used += (size_t)n;
        r->ctx[k] = htobe32(nbd_export_context_id(i));
        chunk_header(&r->hdr[k], req, k == nsel - 1 ? NBD_REPLY_FLAG_DONE : 0,
                     NBD_REPLY_TYPE_BLOCK_STATUS,
                     (uint32_t)(sizeof(r->ctx[k]) + sizeof(NbdExtent) * (size_t)n));
        add_iov(r, &r->hdr[k], sizeof(r->hdr[k]));
        add_iov(r, &r->ctx[k], sizeof(r->ctx[k]));
        add_iov(r, mine, sizeof(NbdExtent) * (size_t)n);
        k++;
    }
    assert(k == nsel);
}

static void execute(NbdConn *c, Reply *r, const NbdRequest *req, void *payload)
{
    NbdExport *exp = c->exp;
    bool fua = (req->flags & NBD_CMD_FLAG_FUA) != 0;
    int err = nbd_request_check(req, exp->size, exp->writable, c->structured,
                                c->meta_ctx != 0);

    if (err == 0 && payload == NULL && req->type == NBD_CMD_WRITE && req->len > 0) {
        err = -ENOMEM;
    }
    if (err != 0) {
        reply_status(c, r, req, err);
        return;
    }
    switch (req->type) {
    case NBD_CMD_READ:
        do_read(c, r, req);
        return;
    case NBD_CMD_BLOCK_STATUS:
        do_block_status(c, r, req);
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
    reply_simple(r, req, err, NULL, 0);
}

/* The pool's job function: execute one request and queue its reply. */
void nbd_request_run(void *opaque)
{
    Job *job = opaque;
    NbdConn *c = job->c;
    Reply *r = job->reply;

    execute(c, r, &job->req, job->payload);
    if (job->req.type == NBD_CMD_WRITE) {
        /* the payload is done with: its bytes go back now, not with the reply */
        free(job->payload);
        nbd_budget_put(c->budget, c, job->charged);
    } else {
        r->charged = job->charged;     /* a READ's data buffer lives until sent */
    }
    g_free(job);
    reply_queue(c, r);
}

/* ---- the connection thread ---- */

static bool conn_closing(NbdConn *c)
{
    return g_atomic_int_get(&c->closing) != 0;
}

static void mark_closing(NbdConn *c)
{
    g_atomic_int_set(&c->closing, 1);
}

/* Queue a reply the connection thread built itself (an error before execution). */
static void reply_direct(NbdConn *c, const NbdRequest *req, int err)
{
    Reply *r = g_new0(Reply, 1);

    reply_status(c, r, req, err);
    g_mutex_lock(&c->out_lock);
    c->inflight++;
    g_mutex_unlock(&c->out_lock);
    reply_queue(c, r);
}

/* Send queued replies as far as the socket takes them without blocking. A failed
 * socket drops every reply. */
static void flush_replies(NbdConn *c)
{
    for (;;) {
        g_mutex_lock(&c->out_lock);
        Reply *r = g_queue_peek_head(&c->outq);
        if (r == NULL) {
            g_mutex_unlock(&c->out_lock);
            return;
        }
        int ret = reply_send(c, r);
        if (ret == 0) {
            g_mutex_unlock(&c->out_lock);
            return;
        }
        GQueue dropped = G_QUEUE_INIT;
        if (ret < 0) {
            /* the client is gone or cut: drop everything, read nothing more */
            c->out_failed = true;
            dropped = c->outq;
            g_queue_init(&c->outq);
        } else {
            g_queue_pop_head(&c->outq);
            g_queue_push_tail(&dropped, r);
        }
        g_mutex_unlock(&c->out_lock);
        while ((r = g_queue_pop_head(&dropped)) != NULL) {
            reply_free(c, r);
        }
        if (ret < 0) {
            mark_closing(c);
            return;
        }
    }
}

/* Read a request header. True: *req holds a request to run; false: none (closing set
 * if the connection ends). */
static bool read_header(NbdConn *c, NbdRequest *req)
{
    NbdRequestWire wire;
    int r = nbd_conn_recv(c, &wire, sizeof(wire));

    if (r < 0) {
        if (r != -EPIPE && !conn_closing(c)) {
            g_message("nbd: %s: receive request: %s", c->peer, g_strerror(-r));
        }
        mark_closing(c);
        return false;
    }
    if (be32toh(wire.magic) != NBD_REQUEST_MAGIC) {
        g_message("nbd: %s: bad request magic 0x%08x, closing", c->peer, be32toh(wire.magic));
        mark_closing(c);
        return false;
    }
    req->flags = be16toh(wire.flags);
    req->type = be16toh(wire.type);
    req->cookie = be64toh(wire.cookie);
    req->offset = be64toh(wire.offset);
    req->len = be32toh(wire.length);

    if (req->type == NBD_CMD_DISC) {
        mark_closing(c);
        return false;
    }
    if (req->type == NBD_CMD_WRITE && req->len > NBD_MAX_PAYLOAD) {
        /* We will not swallow that payload: answer, then hang up. */
        g_message("nbd: %s: WRITE of %u bytes exceeds %u, closing", c->peer, req->len,
                  NBD_MAX_PAYLOAD);
        mark_closing(c);
        reply_direct(c, req, -EINVAL);
        return false;
    }
    return true;
}

/* The request's bytes are taken: read a WRITE's payload and hand it to the pool. */
static void submit(NbdConn *c, const NbdRequest *req, size_t charged)
{
    Job *job = g_new0(Job, 1);
    int r = 0;

    job->c = c;
    job->req = *req;
    job->charged = charged;
    if (req->type == NBD_CMD_WRITE && req->len > 0) {
        job->payload = aligned_new(req->len);
        if (job->payload != NULL) {
            r = nbd_conn_recv(c, job->payload, req->len);
        } else {
            /* No memory: skip the payload in pieces; execute() answers ENOMEM. */
            char sink[4096];
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
            free(job->payload);
            nbd_budget_put(c->budget, c, charged);
            g_free(job);
            return;
        }
    }
    job->reply = g_new0(Reply, 1);
    g_mutex_lock(&c->out_lock);
    c->inflight++;
    g_mutex_unlock(&c->out_lock);
    nbd_pool_push(c->pool, job);
}

void nbd_conn_serve(NbdConn *c)
{
    NbdRequest pending;
    bool have_pending = false;   /* a request read, waiting for budget */

    /* The socket stays blocking: reads of a request and its payload block (a client
     * that stops in the middle of a request stalls only itself, and stop's shutdown()
     * ends the read); replies are sent with MSG_DONTWAIT. */
    for (;;) {
        flush_replies(c);
        if (have_pending && conn_closing(c)) {
            have_pending = false;              /* never executed, never answered */
        }
        if (have_pending) {
            size_t len = request_bytes(&pending);
            if (len == 0 || nbd_budget_take(c->budget, c, len)) {
                have_pending = false;
                submit(c, &pending, len);
                continue;
            }
        }

        g_mutex_lock(&c->out_lock);
        guint inflight = c->inflight;
        bool queued = !g_queue_is_empty(&c->outq);
        g_mutex_unlock(&c->out_lock);
        bool closing = conn_closing(c);
        if (closing && inflight == 0 && !queued) {
            break;
        }

        short events = 0;
        if (!closing && !have_pending && inflight < NBD_CONN_MAX_REQUESTS) {
            if (c->rpos < c->rlen) {
                /* requests already in the receive buffer: poll() would not see them */
                have_pending = read_header(c, &pending);
                continue;
            }
            events |= POLLIN;
        }
        if (queued) {
            events |= POLLOUT;
        }
        /* the socket is watched only for what we want from it, or for a hang-up while
         * a request waits for budget; otherwise POLLHUP would wake us in a loop */
        struct pollfd pfd[2] = {
            { .fd = (events != 0 || have_pending) ? c->fd : -1, .events = events },
            { .fd = c->wake_fd, .events = POLLIN },
        };
        if (poll(pfd, 2, -1) < 0) {
            if (errno != EINTR) {
                g_warning("nbd: %s: poll: %s", c->peer, g_strerror(errno));
                mark_closing(c);
                g_usleep(10 * 1000);
            }
            continue;
        }
        if (pfd[1].revents & POLLIN) {
            uint64_t v;
            (void)read(c->wake_fd, &v, sizeof(v));
        }
        if ((pfd[0].revents & (POLLHUP | POLLERR)) && !(events & (POLLIN | POLLOUT))) {
            mark_closing(c);                   /* gone while we waited for budget */
            continue;
        }
        if ((events & POLLIN) && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            have_pending = read_header(c, &pending);
        }
    }
}
