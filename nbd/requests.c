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
 * Buffers: every READ and WRITE allocates its own aligned buffer, after the reader
 * took its length from the server's budget (nbd/budget.c); the buffer and the
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

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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
    void *data;                /* READ data (nbd_buf_free()), or NULL */
    size_t data_len;           /* its length */
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

/* ---- budget bytes (buffers: buffers.c) ---- */

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
    nbd_buf_free(r->data, r->data_len);
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
 * a reply queued, the last request of a closing connection, or a failed socket. A
 * reader token parked at NBD_CONN_MAX_REQUESTS is taken back here and goes to a pool
 * thread. After this the calling thread must not touch c (but to hand that token on:
 * a connection with its token taken does not end): the connection may end as soon as
 * out_lock is dropped. */
static void read_job(void *opaque);

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
    if (g_atomic_int_get(&c->closing)) {
        wake = true;
    }
    c->inflight--;
    /* a slot is free: the reader parked for one goes on, on this thread's job */
    bool unpark = c->rstate == NBD_READER_PARKED && c->park == NBD_PARK_SLOTS;
    if (unpark) {
        c->rstate = NBD_READER_TAKEN;
    }
    if (done) {
        /* the budget lock nests inside out_lock; c lives while we hold out_lock */
        reply_free(c, r);
    }
    if (wake) {
        wake_conn(c);
    }
    g_mutex_unlock(&c->out_lock);
    if (unpark) {
        /* c lives: it cannot end while the token is taken */
        nbd_pool_push(c->pool, read_job, c);
    }
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
        buf = r->data = nbd_buf_new(req->len);
        r->data_len = req->len;
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

/* Execute one request and queue its reply (the thread that read it). */
static void nbd_request_run(Job *job)
{
    NbdConn *c = job->c;
    Reply *r = job->reply;

    execute(c, r, &job->req, job->payload);
    if (job->req.type == NBD_CMD_WRITE) {
        /* the payload is done with: its bytes go back now, not with the reply */
        nbd_buf_free(job->payload, job->req.len);
        nbd_budget_put(c->budget, c, job->charged);
    } else {
        r->charged = job->charged;     /* a READ's data buffer lives until sent */
    }
    g_free(job);
    reply_queue(c, r);
}

/* ---- reading requests (the reader token) ---- */

static bool conn_closing(NbdConn *c)
{
    return g_atomic_int_get(&c->closing) != 0;
}

static void mark_closing(NbdConn *c)
{
    g_atomic_int_set(&c->closing, 1);
}

static void read_job(void *opaque);

/* Hand the reader token to a pool thread (the caller holds it; c lives while it is not
 * parked). */
static void pass_token(NbdConn *c)
{
    nbd_pool_push(c->pool, read_job, c);
}

/* Give the token up until the socket is readable again; nothing of the reading state
 * may be touched after this. */
static void arm(NbdConn *c)
{
    g_mutex_lock(&c->out_lock);
    c->rstate = NBD_READER_ARMED;
    bool add = !c->epoll_added;
    c->epoll_added = true;            /* before the first event can be handled */
    g_mutex_unlock(&c->out_lock);
    int r = nbd_pool_arm(c->pool, c->fd, c, add);
    if (r < 0) {
        /* cannot watch the socket: take the token back and end the connection (no
         * event can come: the descriptor is not armed) */
        g_warning("nbd: %s: epoll_ctl: %s", c->peer, g_strerror(-r));
        g_mutex_lock(&c->out_lock);
        c->rstate = NBD_READER_TAKEN;
        c->epoll_added = c->epoll_added && !add;
        g_mutex_unlock(&c->out_lock);
        mark_closing(c);
        pass_token(c);
    }
}

/* Park the token with the connection thread (it holds it from now on). */
static void park(NbdConn *c, int why)
{
    g_mutex_lock(&c->out_lock);
    c->rstate = NBD_READER_PARKED;
    c->park = why;
    wake_conn(c);
    g_mutex_unlock(&c->out_lock);
}

/* Queue a reply the reader built itself (an error before execution). */
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

/* Receive into the rest of rbuf without blocking: >0 bytes, 0 would block, -EPIPE at end
 * of stream, -errno. */
static ssize_t fill_rbuf(NbdConn *c)
{
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, NBD_RBUF_SIZE - c->rlen, MSG_DONTWAIT);
        if (n > 0) {
            c->rlen += (size_t)n;
            return n;
        }
        if (n == 0) {
            return -EPIPE;
        }
        if (errno == EINTR) {
            continue;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
}

static void recv_failed(NbdConn *c, const char *what, int err)
{
    if (err != -EPIPE && !conn_closing(c)) {
        g_message("nbd: %s: receive %s: %s", c->peer, what, g_strerror(-err));
    }
    mark_closing(c);
}

/* Decode the header at rbuf[rpos]. True: c->rreq holds a request to run; false: none
 * (closing set). */
static bool take_header(NbdConn *c)
{
    NbdRequestWire wire;
    NbdRequest *req = &c->rreq;

    memcpy(&wire, c->rbuf + c->rpos, sizeof(wire));
    c->rpos += sizeof(wire);
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

/* Read the rest of the current WRITE's payload (into its buffer, or skipped when there
 * was no memory for one). 1: complete; 0: the socket would block; <0: failed. */
static int read_payload(NbdConn *c)
{
    Job *job = c->rjob;
    uint32_t len = job->req.len;
    char sink[4096];

    while (c->rgot < len) {
        size_t want = len - c->rgot;
        char *dst = job->payload != NULL ? (char *)job->payload + c->rgot : sink;
        if (job->payload == NULL) {
            want = MIN(want, sizeof(sink));
        }
        if (c->rpos < c->rlen) {
            size_t n = MIN(want, c->rlen - c->rpos);
            memcpy(dst, c->rbuf + c->rpos, n);
            c->rpos += n;
            c->rgot += (uint32_t)n;
            continue;
        }
        if (want < NBD_RBUF_SIZE / 2) {
            /* small rests go through rbuf, which may bring the next requests along */
            ssize_t n = fill_rbuf(c);
            if (n <= 0) {
                return (int)n;
            }
            continue;
        }
        ssize_t n = recv(c->fd, dst, want, MSG_DONTWAIT);
        if (n > 0) {
            c->rgot += (uint32_t)n;
        } else if (n == 0) {
            return -EPIPE;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return 1;
}

/* Drop what the reader holds of a request not yet running (the connection ends). */
static void drop_partial(NbdConn *c)
{
    if (c->rjob != NULL) {
        nbd_buf_free(c->rjob->payload, c->rjob->req.len);
        nbd_budget_put(c->budget, c, c->rjob->charged);
        g_free(c->rjob->reply);
        g_free(c->rjob);
        c->rjob = NULL;
    }
    c->have_hdr = false;
}

/*
 * The token holder reads: as many bytes as the socket has, until one request is
 * complete. Then the token goes on (to a pool thread if rbuf holds more, else back to
 * the epoll set) and this thread runs the request itself. Parks the token when the
 * connection has NBD_CONN_MAX_REQUESTS in flight (the reply that frees a slot takes it
 * back), when the next request waits for budget (the connection thread takes it back
 * at a release) or when the connection is closing.
 */
static void conn_read(NbdConn *c)
{
    for (;;) {
        if (conn_closing(c)) {
            drop_partial(c);
            park(c, NBD_PARK_CLOSING);
            return;
        }
        if (c->rjob == NULL) {
            if (!c->have_hdr) {
                g_mutex_lock(&c->out_lock);
                if (c->inflight >= NBD_CONN_MAX_REQUESTS) {
                    c->rstate = NBD_READER_PARKED;
                    c->park = NBD_PARK_SLOTS;
                    g_mutex_unlock(&c->out_lock);
                    return;
                }
                g_mutex_unlock(&c->out_lock);
                if (c->rlen - c->rpos < sizeof(NbdRequestWire)) {
                    ssize_t n = fill_rbuf(c);
                    if (n == 0) {
                        arm(c);
                        return;
                    }
                    if (n < 0) {
                        recv_failed(c, "request", (int)n);
                    }
                    continue;
                }
                c->have_hdr = take_header(c);
                continue;
            }
            /* the request's bytes come from the budget before its buffer exists */
            size_t len = request_bytes(&c->rreq);
            if (len > 0 && !nbd_budget_take(c->budget, c, len)) {
                g_mutex_lock(&c->out_lock);
                g_mutex_lock(&c->budget->lock);
                bool waiting = c->budget_waiting;   /* false: released meanwhile */
                g_mutex_unlock(&c->budget->lock);
                if (waiting) {
                    c->rstate = NBD_READER_PARKED;
                    c->park = NBD_PARK_BUDGET;
                    wake_conn(c);              /* it watches the socket for a hang-up */
                }
                g_mutex_unlock(&c->out_lock);
                if (waiting) {
                    return;
                }
                continue;
            }
            Job *job = c->rjob = g_new0(Job, 1);
            job->c = c;
            job->req = c->rreq;
            job->charged = len;
            job->reply = g_new0(Reply, 1);
            c->have_hdr = false;
            c->rgot = 0;
            if (job->req.type == NBD_CMD_WRITE && job->req.len > 0) {
                /* no memory: the payload is skipped, execute() answers ENOMEM */
                job->payload = nbd_buf_new(job->req.len);
            }
        }
        if (c->rjob->req.type == NBD_CMD_WRITE) {
            int r = read_payload(c);
            if (r == 0) {
                arm(c);
                return;
            }
            if (r < 0) {
                recv_failed(c, "WRITE payload", r);
                continue;
            }
        }
        Job *job = g_steal_pointer(&c->rjob);
        g_mutex_lock(&c->out_lock);
        c->inflight++;
        g_mutex_unlock(&c->out_lock);
        if (c->rpos < c->rlen) {
            pass_token(c);              /* more is buffered: epoll would not tell */
        } else {
            arm(c);
        }
        nbd_request_run(job);
        return;
    }
}

/* A pool job holding the token. */
static void read_job(void *opaque)
{
    conn_read(opaque);
}

/* The pool's event function: c's socket is readable and c armed (the token is ours). */
void nbd_conn_readable(void *opaque)
{
    NbdConn *c = opaque;

    g_mutex_lock(&c->out_lock);
    assert(c->rstate == NBD_READER_ARMED);
    c->rstate = NBD_READER_TAKEN;
    g_mutex_unlock(&c->out_lock);
    conn_read(c);
}

/*
 * The connection thread in the transmission phase: it hands the token to the pool
 * first (rbuf may hold requests the handshake read along), then sends what the pool
 * threads could not, takes a parked token back when its reason is gone, watches the
 * socket for a hang-up while a request waits for budget, and returns once the
 * connection is closing, the token parked, and no request in flight or reply queued.
 */
void nbd_conn_serve(NbdConn *c)
{
    int flags = fcntl(c->fd, F_GETFL);
    if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        g_warning("nbd: %s: O_NONBLOCK: %s", c->peer, g_strerror(errno));
        mark_closing(c);
    }
    c->rstate = NBD_READER_TAKEN;
    pass_token(c);

    bool shut_rd = false;
    for (;;) {
        flush_replies(c);

        bool unpark = false, end = false, watch_hup = false;
        bool closing = conn_closing(c);
        g_mutex_lock(&c->out_lock);
        bool queued = !g_queue_is_empty(&c->outq);
        if (c->rstate == NBD_READER_PARKED) {
            if (closing) {
                drop_partial(c);
                end = c->inflight == 0 && !queued;
            } else if (c->park == NBD_PARK_SLOTS) {
                unpark = c->inflight < NBD_CONN_MAX_REQUESTS;
            } else if (c->park == NBD_PARK_BUDGET) {
                g_mutex_lock(&c->budget->lock);
                unpark = !c->budget_waiting;
                g_mutex_unlock(&c->budget->lock);
                watch_hup = !unpark;
            }
            if (unpark) {
                c->rstate = NBD_READER_TAKEN;
            }
        } else if (c->rstate == NBD_READER_ARMED && closing && !shut_rd) {
            /* make the armed socket readable (end of stream): its reader parks */
            shutdown(c->fd, SHUT_RD);
            shut_rd = true;
        }
        g_mutex_unlock(&c->out_lock);
        if (end) {
            break;
        }
        if (unpark) {
            pass_token(c);
            continue;
        }

        /* the socket is watched only for what we want from it, or for a hang-up while
         * a request waits for budget; otherwise POLLHUP would wake us in a loop */
        struct pollfd pfd[2] = {
            { .fd = (queued || watch_hup) ? c->fd : -1, .events = queued ? POLLOUT : 0 },
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
        if (watch_hup && (pfd[0].revents & (POLLHUP | POLLERR))) {
            mark_closing(c);                   /* gone while we waited for budget */
        }
    }
    if (c->epoll_added) {
        nbd_pool_forget(c->pool, c->fd);
    }
}
