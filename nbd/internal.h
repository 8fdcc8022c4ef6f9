/*
 * nbd/internal.h — what the pieces of the NBD server share: exports, connections and
 * the socket helpers (server.c), the handshake (handshake.c) and the transmission
 * phase (requests.c).
 *
 * Threads. Each connection has one thread of its own (the connection thread); the
 * requests of every connection are read and executed by one shared pool of at most
 * NBD_POOL_THREADS threads (pool.c), which wait for readable sockets in one epoll set.
 * The connection thread runs the handshake, then hands the connection's reader token
 * to the pool. Whoever holds the token reads (non-blocking, O_NONBLOCK socket) until
 * one request is complete: the header, its bytes taken from the server's budget
 * (budget.c), a WRITE's payload. Then it passes the token on — to another pool thread
 * if the receive buffer holds more, else back to the epoll set (EPOLLONESHOT: the next
 * event goes to one thread) — and runs the request itself: a request costs one thread
 * wake-up, as when each connection had threads of its own. A socket that would block
 * in the middle of a request re-arms the token and frees the thread: a client that
 * stops half-way holds no request thread.
 *
 * The token parks with the connection thread while NBD_CONN_MAX_REQUESTS requests of
 * the connection are in flight (the reply that frees a slot takes it back), while the
 * next request waits for budget (the connection thread takes it back at a release, and
 * watches the socket for a hang-up meanwhile), and once the connection is closing.
 * Who holds it is NbdConn.rstate, under out_lock; the reading state (rbuf, the partial
 * request) is touched only by the holder, and every hand-over goes through out_lock or
 * the pool's lock, which orders it for ThreadSanitizer too.
 *
 * A pool thread that finished a request sends its reply itself when none is queued
 * before it, under out_lock; what the socket does not take at once is queued for the
 * connection thread, which polls the socket for POLLOUT and its eventfd (wake_fd: a
 * reply queued, budget freed, the token parked, closing, stop). Every reply is sent
 * non-blocking, so a pool thread never waits on a socket. A client that never reads
 * its replies holds no request thread: it holds at most its in-flight requests and
 * their buffers, and stalls only itself. Replies go out whole, in completion order; a
 * request blocked in the copy-before-write filter holds one pool thread and does not
 * hold up the other requests of its connection (the token went on before it ran).
 *
 * When a client sends DISC, hangs up or breaks the protocol, `closing` is set: no further
 * request is read (one waiting for budget or half read is dropped), the requests in
 * flight finish and their replies are sent (or dropped if the socket failed), and the
 * connection thread returns once the token is parked and none is in flight (an armed
 * token is made to fire by shutdown(SHUT_RD): end of stream).
 *
 * Bounds of the whole server (docs/security.md, section 4):
 *   threads: 1 accept thread + 1 per connection + NBD_POOL_THREADS;
 *   buffers: the budget (NBD_DEFAULT_BUFFER_BUDGET, 256 MiB) + the kept buffers
 *            (NBD_BUF_CACHE_BYTES) + per connection its reserve
 *            (NBD_CONN_RESERVE, 2 MiB), its receive buffer (NBD_RBUF_SIZE) and the
 *            headers of at most NBD_CONN_MAX_REQUESTS small replies (a BLOCK_STATUS reply
 *            is at most NBD_MAX_EXTENTS extents, 8 KiB, over all its meta contexts,
 *            plus a header per context); a single request larger than the budget runs
 *            alone.
 * Lock order: srv_lock (server.c) > out_lock > budget lock; the pool's lock is taken
 * with none of them held.
 *
 * NBD_CONN_MAX_REQUESTS is 16 because QEMU's client keeps at most 16 requests in
 * flight per connection; NBD_POOL_THREADS lets two such clients (or one with
 * multi-conn) have every request executing at once (on O_DIRECT disks: I/Os queued at
 * the device).
 */
#ifndef NBD_INTERNAL_H
#define NBD_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <glib.h>

#include "blockdev.h"
#include "nbd-server.h"
#include "nbd/proto.h"

#define NBD_POOL_THREADS        32                   /* request threads of the server */
#define NBD_CONN_MAX_REQUESTS   16                   /* in flight per connection */
#define NBD_RBUF_SIZE           (128u * 1024)        /* receive buffer per connection */
#define NBD_CONN_RESERVE        (2u * 1024 * 1024)   /* budget bytes of a connection's own */
#define NBD_SPARSE_READ_MIN     (64u * 1024)         /* smaller reads: one data chunk */
#define NBD_MAX_READ_CHUNKS     32                   /* chunks of one sparse READ reply */
#define NBD_MAX_EXTENTS         1024                 /* extents of one BLOCK_STATUS reply */
#define NBD_HANDSHAKE_TIMEOUT_S 30                   /* a silent client in the handshake */
#define NBD_STOP_GRACE_S        10                   /* stop: wait for replies, then cut */
#define NBD_MAX_CONTEXTS        (1 + NBD_MAX_EXPORT_BITMAPS)   /* of one export */
#define NBD_META_ID_BASE_ALLOCATION 1
#define NBD_META_ID_BITMAP_BASE     2                /* + index in the export's bitmaps */

struct DirtyBitmap;

/* A bitmap an export shows (its meta context "qemu:dirty-bitmap:NAME"). */
typedef struct NbdExportedBitmap {
    char *context;              /* the context name */
    BlockDev *owner;            /* a reference to the disk that holds the bitmap */
    struct DirtyBitmap *bm;     /* busy while exported (block/dirty-bitmap.h) */
} NbdExportedBitmap;

/* An export: a BlockDev under a name, with its meta contexts. Immutable after creation
 * (but for the bitmaps' release by removal, once no connection serves it any more);
 * reference counted (the server's list and each connection that selected it hold one).
 *
 * Meta contexts: index 0 is base:allocation (id NBD_META_ID_BASE_ALLOCATION), index
 * 1 + i is bitmaps[i] (id NBD_META_ID_BITMAP_BASE + i). A connection's selection is a
 * mask of these indexes (NbdConn.meta_ctx). */
typedef struct NbdExport {
    gint refcount;          /* atomic */
    char *id;               /* block-export-add's id (nbd-server-add: the name) */
    char *name;
    BlockDev *bd;
    uint64_t size;
    bool writable;
    guint n_bitmaps;        /* <= NBD_MAX_EXPORT_BITMAPS */
    NbdExportedBitmap *bitmaps;
    bool bitmaps_released;  /* main loop: removal gave them back */
} NbdExport;

NbdExport *nbd_export_ref(NbdExport *exp);
void nbd_export_unref(NbdExport *exp);
/* Number of meta contexts of exp, and the name of context index i. */
guint nbd_export_n_contexts(const NbdExport *exp);
const char *nbd_export_context_name(const NbdExport *exp, guint i);
/* The context id on the wire of context index i. */
uint32_t nbd_export_context_id(guint i);

/* Transmission flags of an export for a client with or without structured replies. */
uint16_t nbd_export_tx_flags(const NbdExport *exp, bool structured);

typedef struct NbdConn NbdConn;

/* ---- budget.c: the byte budget of request and reply buffers (rules there) ---- */

typedef struct NbdBudget {
    GMutex lock;               /* protects shared_used, waiters and every connection's
                                * budget_used and budget_waiting */
    size_t total;              /* the shared budget */
    size_t conn_cap;           /* of it, at most this per connection */
    size_t shared_used;        /* taken beyond the connections' reserves */
    GList *waiters;            /* NbdConn * refused since the last release */
} NbdBudget;

/* Whether a connection holding conn_used bytes may take len more, with shared_used of
 * the shared budget taken. Pure. */
bool nbd_budget_admit(size_t total, size_t conn_cap, size_t shared_used, size_t conn_used,
                      size_t len);
void nbd_budget_init(NbdBudget *b, size_t total);
void nbd_budget_clear(NbdBudget *b);
/* Take len bytes for c; false: they do not fit now, and c's wake_fd is signalled at the
 * next release (try again then). Any thread. */
bool nbd_budget_take(NbdBudget *b, NbdConn *c, size_t len);
/* Give back len bytes of c's and wake the connections waiting. Any thread. */
void nbd_budget_put(NbdBudget *b, NbdConn *c, size_t len);
/* c ends: drop its registration (it holds nothing any more). */
void nbd_budget_forget(NbdBudget *b, NbdConn *c);

/* ---- buffers.c: READ and WRITE data buffers (4 KiB aligned), large ones cached ---- */

#define NBD_BUF_CACHE_COUNT 16
#define NBD_BUF_CACHE_MAX   (4u * 1024 * 1024)   /* larger buffers are not kept */
#define NBD_BUF_CACHE_BYTES (16u * 1024 * 1024)  /* kept buffers in all */
/* A buffer for len bytes, or NULL. Any thread. */
void *nbd_buf_new(size_t len);
/* Free (or keep) a buffer of nbd_buf_new(len); NULL is fine. */
void nbd_buf_free(void *p, size_t len);
/* Free the kept buffers (the server stops). */
void nbd_buf_cache_clear(void);

/* ---- pool.c: the request threads and the epoll set they read from ---- */

typedef struct NbdPool NbdPool;
typedef void (*NbdPoolFn)(void *arg);
/* A pool of at most max_threads threads; on_event(data) runs on a pool thread for an
 * event of a descriptor armed with data. NULL and *errp set if epoll fails. */
NbdPool *nbd_pool_new(guint max_threads, NbdPoolFn on_event, GError **errp);
/* Queue fn(arg) for a pool thread (any thread). */
void nbd_pool_push(NbdPool *p, NbdPoolFn fn, void *arg);
/* Watch fd for one readable event (EPOLLONESHOT); add: its first time (it joins the
 * set), else it is in the set already. 0 or -errno (then it is not watched). */
int nbd_pool_arm(NbdPool *p, int fd, void *data, bool add);
/* Take fd out of the set, once added (it must not be armed, or its event handled). */
void nbd_pool_forget(NbdPool *p, int fd);
/* Wait for the queued jobs and the threads (main loop thread). NULL is fine. */
void nbd_pool_free(NbdPool *p);

/* Who holds a connection's reader token (NbdConn.rstate, under out_lock). */
enum {
    NBD_READER_ARMED = 1,      /* the epoll set: the next event's thread takes it */
    NBD_READER_TAKEN,          /* a thread reads (or a job that will is queued) */
    NBD_READER_PARKED,         /* the connection thread, until NbdConn.park is over */
};
enum {
    NBD_PARK_SLOTS = 1,        /* NBD_CONN_MAX_REQUESTS in flight */
    NBD_PARK_BUDGET,           /* the next request waits for budget */
    NBD_PARK_CLOSING,          /* nothing more is read */
};

/* A decoded transmission request. */
typedef struct NbdRequest {
    uint16_t flags;
    uint16_t type;
    uint64_t cookie;
    uint64_t offset;
    uint32_t len;
} NbdRequest;

struct NbdConn {
    int fd;
    int wake_fd;               /* eventfd: reply queued, budget freed, closing */
    NbdBudget *budget;         /* the server's */
    NbdPool *pool;             /* the server's */
    char *peer;                /* for messages: "unix" or "127.0.0.1:40000" */
    gint closing;              /* atomic: read no further requests */
    gint dirty;                /* atomic: the client wrote (flush at disconnect) */

    /* Set by the handshake (connection thread), read-only in transmission. The export
     * pointer is assigned under the server lock so that removal can find users. */
    NbdExport *exp;
    bool structured;
    bool no_zeroes;
    uint32_t meta_ctx;         /* selected meta contexts: bit i = context index i */
    uint16_t tx_flags;

    /* The reader state, touched only by the holder of the reader token (the
     * connection thread in the handshake; see requests.c after it). */
    uint8_t *rbuf;
    size_t rpos, rlen;
    bool have_hdr;             /* rreq holds a header, its bytes not yet taken */
    NbdRequest rreq;
    struct Job *rjob;          /* a WRITE whose payload is being read */
    uint32_t rgot;             /* of its payload, bytes read */

    GMutex send_lock;          /* protects writing to fd in the handshake, send_failed */
    bool send_failed;

    GMutex out_lock;           /* protects outq, inflight, out_failed and sending replies */
    GQueue outq;               /* replies ready to send (requests.c), oldest first */
    guint inflight;            /* requests read and not yet replied to (or dropped) */
    bool out_failed;           /* sending failed: replies are dropped */
    int rstate;                /* NBD_READER_*: who holds the reader token */
    int park;                  /* NBD_PARK_*: why it is parked */
    bool epoll_added;          /* fd is in the pool's epoll set (set before it is) */

    size_t budget_used;        /* under budget->lock: bytes taken from the budget */
    bool budget_waiting;       /* under budget->lock: on budget->waiters */
};

/* ---- server.c: socket I/O of a connection (any connection thread) ---- */

/* Read exactly len bytes (the handshake: the connection thread holds the token). 0, -EPIPE at
 * end of stream, -ETIMEDOUT in a handshake timeout, or -errno. */
int nbd_conn_recv(NbdConn *c, void *buf, size_t len);
/* Send iov completely under send_lock (iov is modified). 0 or -errno; after the first
 * failure every later call fails at once. */
int nbd_conn_send(NbdConn *c, struct iovec *iov, int iovcnt);
/* Stop reading requests and wake the connection thread (blocked in recv or poll). */
void nbd_conn_shutdown_read(NbdConn *c);

/* ---- server.c: exports, for the handshake (connection thread) ---- */

/* A new reference to the named export, or NULL. */
NbdExport *nbd_server_lookup_export(const char *name);
/* Names of all exports (g_strfreev). */
char **nbd_server_export_names(void);
/* Make exp (a reference the caller gives up) the connection's export, unless it was
 * removed meanwhile. False: the reference was dropped. */
bool nbd_server_attach_export(NbdConn *c, NbdExport *exp);

/* ---- handshake.c ---- */

/* Run the fixed newstyle handshake. True: transmission phase with c->exp set. False:
 * the client aborted, failed, or broke the protocol; the connection is to be closed. */
bool nbd_handshake(NbdConn *c);

/* Parsed NBD_OPT_INFO / NBD_OPT_GO data (pointers into the option data). */
typedef struct NbdInfoRequest {
    const char *name;          /* not NUL-terminated */
    uint32_t name_len;
    uint16_t n_infos;
    const uint8_t *infos;      /* n_infos big-endian 16-bit codes */
} NbdInfoRequest;
/* 0, or -EINVAL if the data is malformed. */
int nbd_parse_info_request(const uint8_t *data, uint32_t len, NbdInfoRequest *out);

/* Parsed NBD_OPT_LIST/SET_META_CONTEXT data. */
typedef struct NbdMetaRequest {
    const char *name;          /* export name, not NUL-terminated */
    uint32_t name_len;
    uint32_t n_queries;
    bool base_allocation;      /* a query equals "base:allocation" */
    bool base_namespace;       /* a query equals "base:" (LIST wildcard) */
    const uint8_t *queries;    /* n_queries checked (32-bit length, string) pairs */
    uint32_t queries_len;
} NbdMetaRequest;
/* 0, or -EINVAL if the data is malformed (lengths, NULs). */
int nbd_parse_meta_request(const uint8_t *data, uint32_t len, NbdMetaRequest *out);
/*
 * The contexts of names[0..n) (n <= 32) that request mr selects, as a mask (bit i:
 * names[i]). A query selects the context of its exact name; for LIST (list true) also
 * every context when there is no query, and the namespace queries "base:" (every
 * "base:" context), "qemu:" (every "qemu:" one) and "qemu:dirty-bitmap:" (every
 * bitmap). Other queries select nothing (not an error). Pure.
 */
uint32_t nbd_meta_select(const NbdMetaRequest *mr, bool list, const char *const *names,
                         guint n);

/* ---- requests.c ---- */


/* Check a request against an export: 0 or the -errno to answer with. Pure. */
int nbd_request_check(const NbdRequest *req, uint64_t size, bool writable, bool structured,
                      bool meta_selected);
/* The pool's event function: a connection's socket is readable. */
void nbd_conn_readable(void *conn);
/* Serve the transmission phase, executing requests on c->pool; returns when the
 * connection is finished and no request of it is in flight (connection thread). */
void nbd_conn_serve(NbdConn *c);

#endif /* NBD_INTERNAL_H */
