/*
 * nbd/internal.h — what the pieces of the NBD server share: exports, connections and
 * the socket helpers (server.c), the handshake (handshake.c) and the transmission
 * phase (requests.c).
 *
 * A connection is served by its own threads. The connection thread accepts nothing
 * but this one client: it runs the handshake alone, then starts NBD_CONN_THREADS - 1
 * helpers, and every one of them loops "take the receive lock, read one request (and
 * its payload), drop the lock, execute it, send the reply under the send lock". So up
 * to NBD_CONN_THREADS requests of a connection execute at once and their replies go
 * out in completion order; a request blocked in a before-write hook does not hold up
 * the others. When a client sends DISC, hangs up or breaks the protocol, `closing` is
 * set: no thread reads another request, requests already read finish and reply, the
 * helpers are joined, and the connection thread closes the socket.
 *
 * NBD_CONN_THREADS is 16 because QEMU's client keeps at most 16 requests in flight per
 * connection: each can be executing (on O_DIRECT disks that is 16 I/Os queued at the
 * device). Idle threads cost a stack mapping and a futex wait, nothing more.
 */
#ifndef NBD_INTERNAL_H
#define NBD_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <glib.h>

#include "blockdev.h"
#include "nbd-server.h"
#include "nbd/proto.h"

#define NBD_CONN_THREADS        16                   /* request threads per connection */
#define NBD_RBUF_SIZE           (128u * 1024)        /* receive buffer per connection */
#define NBD_BUF_KEEP            (2u * 1024 * 1024)   /* per-thread buffers kept up to this */
#define NBD_CONN_BIG_BUDGET     (2 * NBD_MAX_PAYLOAD)/* bytes of larger buffers per conn */
#define NBD_SPARSE_READ_MIN     (64u * 1024)         /* smaller reads: one data chunk */
#define NBD_MAX_READ_CHUNKS     32                   /* chunks of one sparse READ reply */
#define NBD_MAX_EXTENTS         1024                 /* extents of one BLOCK_STATUS reply */
#define NBD_HANDSHAKE_TIMEOUT_S 30                   /* a silent client in the handshake */
#define NBD_STOP_GRACE_S        10                   /* stop: wait for replies, then cut */
#define NBD_META_ID_BASE_ALLOCATION 1

/* An export: a BlockDev under a name. Immutable after creation; reference counted
 * (the server's list and each connection that selected it hold one). */
typedef struct NbdExport {
    gint refcount;          /* atomic */
    char *name;
    BlockDev *bd;
    uint64_t size;
    bool writable;
} NbdExport;

NbdExport *nbd_export_ref(NbdExport *exp);
void nbd_export_unref(NbdExport *exp);
/* Transmission flags of an export for a client with or without structured replies. */
uint16_t nbd_export_tx_flags(const NbdExport *exp, bool structured);

typedef struct NbdConn {
    int fd;
    char *peer;                /* for messages: "unix" or "127.0.0.1:40000" */
    gint closing;              /* atomic: read no further requests */
    gint dirty;                /* atomic: the client wrote (flush at disconnect) */

    /* Set by the handshake (connection thread), read-only in transmission. The export
     * pointer is assigned under the server lock so that removal can find users. */
    NbdExport *exp;
    bool structured;
    bool no_zeroes;
    bool meta_base_alloc;
    uint16_t tx_flags;

    GMutex recv_lock;          /* protects rbuf, rpos, rlen and reading from fd */
    uint8_t *rbuf;
    size_t rpos, rlen;

    GMutex send_lock;          /* protects writing to fd and send_failed */
    bool send_failed;

    GMutex mem_lock;           /* protects big_bytes */
    GCond mem_cond;            /* big_bytes dropped */
    size_t big_bytes;          /* bytes of buffers larger than NBD_BUF_KEEP in use */
} NbdConn;

/* ---- server.c: socket I/O of a connection (any connection thread) ---- */

/* Read exactly len bytes (caller holds recv_lock, or is the only thread). 0, -EPIPE at
 * end of stream, -ETIMEDOUT in a handshake timeout, or -errno. */
int nbd_conn_recv(NbdConn *c, void *buf, size_t len);
/* Send iov completely under send_lock (iov is modified). 0 or -errno; after the first
 * failure every later call fails at once. */
int nbd_conn_send(NbdConn *c, struct iovec *iov, int iovcnt);
/* Stop reading requests and wake a thread blocked in recv. */
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
} NbdMetaRequest;
/* 0, or -EINVAL if the data is malformed. */
int nbd_parse_meta_request(const uint8_t *data, uint32_t len, NbdMetaRequest *out);

/* ---- requests.c ---- */

/* A decoded transmission request. */
typedef struct NbdRequest {
    uint16_t flags;
    uint16_t type;
    uint64_t cookie;
    uint64_t offset;
    uint32_t len;
} NbdRequest;

/* Check a request against an export: 0 or the -errno to answer with. Pure. */
int nbd_request_check(const NbdRequest *req, uint64_t size, bool writable, bool structured,
                      bool meta_base_alloc);
/* Serve the transmission phase on NBD_CONN_THREADS threads; returns when the
 * connection is finished (connection thread). */
void nbd_conn_serve(NbdConn *c);

#endif /* NBD_INTERNAL_H */
