/*
 * nbd/server.c — the NBD server's life cycle: listening socket, accept thread,
 * exports, connections, and the socket helpers every connection thread uses.
 *
 * Threads: the control functions of nbd-server.h run on the main loop thread. One
 * accept thread polls the listening socket and an eventfd (the stop signal); for every
 * accepted client it starts a detached connection thread (see nbd/internal.h), unless
 * max_connections are open already, in which case the client is closed at once.
 *
 * A connection thread's last act is to take itself off the server's list under
 * srv_lock and signal srv_cond; stop and hard export removal wait on that condition.
 * Stopping is gentle first: every connection stops reading (shutdown SHUT_RD) and
 * finishes the requests it has read, replies included; connections still alive after
 * NBD_STOP_GRACE_S are cut (SHUT_RDWR), which unblocks a sender stuck on a client that
 * does not read.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gio.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "nbd/internal.h"
#include "util/listen.h"

typedef struct NbdServer {
    ListenSocket *listen;      /* the listening socket and its file (util/listen.h) */
    int listen_fd;             /* its descriptor */
    int wake_fd;               /* eventfd: tells the accept thread to exit */
    bool is_tcp;
    guint max_conns;           /* 0: no limit */
    GThread *accept_thread;
    NbdBudget budget;          /* bytes of request and reply buffers (budget.c) */
    NbdPool *pool;             /* request threads of every connection (pool.c) */
    /* protected by srv_lock: */
    GPtrArray *exports;        /* of NbdExport*, one reference each, in add order */
    GList *conns;              /* of NbdConn*, every phase */
    guint nconns;
} NbdServer;

static GMutex srv_lock;        /* protects the_server's exports, conns, nconns */
static GCond srv_cond;         /* a connection finished */
static NbdServer *the_server;  /* set and cleared by the main loop thread */
static size_t buffer_budget = NBD_DEFAULT_BUFFER_BUDGET;  /* main loop thread */

/* ---- exports ---- */

NbdExport *nbd_export_ref(NbdExport *exp)
{
    g_atomic_int_inc(&exp->refcount);
    return exp;
}

void nbd_export_unref(NbdExport *exp)
{
    if (exp != NULL && g_atomic_int_dec_and_test(&exp->refcount)) {
        /* the bitmaps were given back by removal (or by a failed add) */
        for (guint i = 0; i < exp->n_bitmaps; i++) {
            g_free(exp->bitmaps[i].context);
            blockdev_unref(exp->bitmaps[i].owner);
        }
        g_free(exp->bitmaps);
        blockdev_unref(exp->bd);
        g_free(exp->id);
        g_free(exp->name);
        g_free(exp);
    }
}

guint nbd_export_n_contexts(const NbdExport *exp)
{
    return 1 + exp->n_bitmaps;
}

const char *nbd_export_context_name(const NbdExport *exp, guint i)
{
    assert(i < nbd_export_n_contexts(exp));
    return i == 0 ? NBD_META_BASE_ALLOCATION : exp->bitmaps[i - 1].context;
}

uint32_t nbd_export_context_id(guint i)
{
    return i == 0 ? NBD_META_ID_BASE_ALLOCATION : NBD_META_ID_BITMAP_BASE + (i - 1);
}

/* Give the bitmaps back (main loop, once no connection serves exp). */
static void export_release_bitmaps(NbdExport *exp)
{
    if (exp->bitmaps_released) {
        return;
    }
    for (guint i = 0; i < exp->n_bitmaps; i++) {
        if (exp->bitmaps[i].bm != NULL) {
            dirty_bitmap_release_export(exp->bitmaps[i].bm);
        }
    }
    exp->bitmaps_released = true;
}

uint16_t nbd_export_tx_flags(const NbdExport *exp, bool structured)
{
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                     NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;

    if (exp->writable) {
        flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    } else {
        flags |= NBD_FLAG_READ_ONLY;
    }
    if (structured) {
        flags |= NBD_FLAG_SEND_DF;
    }
    return flags;
}

static NbdExport *lookup_export_locked(const char *name, guint *index)
{
    if (the_server == NULL) {
        return NULL;
    }
    for (guint i = 0; i < the_server->exports->len; i++) {
        NbdExport *exp = g_ptr_array_index(the_server->exports, i);
        if (strcmp(exp->name, name) == 0) {
            if (index != NULL) {
                *index = i;
            }
            return exp;
        }
    }
    return NULL;
}

static NbdExport *lookup_export_id_locked(const char *id, guint *index)
{
    if (the_server == NULL) {
        return NULL;
    }
    for (guint i = 0; i < the_server->exports->len; i++) {
        NbdExport *exp = g_ptr_array_index(the_server->exports, i);
        if (strcmp(exp->id, id) == 0) {
            if (index != NULL) {
                *index = i;
            }
            return exp;
        }
    }
    return NULL;
}

NbdExport *nbd_server_lookup_export(const char *name)
{
    g_mutex_lock(&srv_lock);
    NbdExport *exp = lookup_export_locked(name, NULL);
    if (exp != NULL) {
        nbd_export_ref(exp);
    }
    g_mutex_unlock(&srv_lock);
    return exp;
}

char **nbd_server_export_names(void)
{
    GPtrArray *names = g_ptr_array_new();

    g_mutex_lock(&srv_lock);
    if (the_server != NULL) {
        for (guint i = 0; i < the_server->exports->len; i++) {
            NbdExport *exp = g_ptr_array_index(the_server->exports, i);
            g_ptr_array_add(names, g_strdup(exp->name));
        }
    }
    g_mutex_unlock(&srv_lock);
    g_ptr_array_add(names, NULL);
    return (char **)g_ptr_array_free(names, FALSE);
}

bool nbd_server_attach_export(NbdConn *c, NbdExport *exp)
{
    g_mutex_lock(&srv_lock);
    bool present = false;
    if (the_server != NULL) {
        for (guint i = 0; i < the_server->exports->len; i++) {
            if (g_ptr_array_index(the_server->exports, i) == exp) {
                present = true;
                break;
            }
        }
    }
    if (present) {
        c->exp = exp;
    }
    g_mutex_unlock(&srv_lock);
    if (!present) {
        nbd_export_unref(exp);
    }
    return present;
}

/* ---- socket helpers ---- */

int nbd_conn_recv(NbdConn *c, void *buf, size_t len)
{
    char *dst = buf;

    while (len > 0) {
        if (c->rpos < c->rlen) {
            size_t n = MIN(len, c->rlen - c->rpos);
            memcpy(dst, c->rbuf + c->rpos, n);
            c->rpos += n;
            dst += n;
            len -= n;
            continue;
        }
        /* Large payloads go straight to their destination, the rest is buffered so
         * that one recv() serves several pipelined requests. */
        bool direct = len >= NBD_RBUF_SIZE / 2;
        ssize_t r = recv(c->fd, direct ? (void *)dst : (void *)c->rbuf,
                         direct ? len : NBD_RBUF_SIZE, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return -ETIMEDOUT; /* SO_RCVTIMEO of the handshake */
            }
            return -errno;
        }
        if (r == 0) {
            return -EPIPE;
        }
        if (direct) {
            dst += r;
            len -= (size_t)r;
        } else {
            c->rpos = 0;
            c->rlen = (size_t)r;
        }
    }
    return 0;
}

int nbd_conn_send(NbdConn *c, struct iovec *iov, int iovcnt)
{
    int ret = 0;

    g_mutex_lock(&c->send_lock);
    if (c->send_failed) {
        g_mutex_unlock(&c->send_lock);
        return -EPIPE;
    }
    while (iovcnt > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)MIN(iovcnt, IOV_MAX) };
        ssize_t r = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            ret = -errno;
            c->send_failed = true;
            break;
        }
        size_t n = (size_t)r;
        while (iovcnt > 0 && n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    g_mutex_unlock(&c->send_lock);
    return ret;
}

void nbd_conn_shutdown_read(NbdConn *c)
{
    uint64_t one = 1;

    g_atomic_int_set(&c->closing, 1);
    shutdown(c->fd, SHUT_RD);
    while (write(c->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

/* ---- connections ---- */

static void conn_free(NbdConn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    if (c->wake_fd >= 0) {
        close(c->wake_fd);
    }
    assert(c->inflight == 0 && g_queue_is_empty(&c->outq) && !c->budget_waiting);
    g_mutex_clear(&c->send_lock);
    g_mutex_clear(&c->out_lock);
    g_free(c->rbuf);
    g_free(c->peer);
    g_free(c);
}

static void set_recv_timeout(int fd, int seconds)
{
    struct timeval tv = { .tv_sec = seconds, .tv_usec = 0 };

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static gpointer conn_thread(gpointer opaque)
{
    NbdConn *c = opaque;

    set_recv_timeout(c->fd, NBD_HANDSHAKE_TIMEOUT_S);
    if (nbd_handshake(c)) {
        set_recv_timeout(c->fd, 0);
        nbd_conn_serve(c);
        if (c->exp->writable && g_atomic_int_get(&c->dirty)) {
            int r = blockdev_flush(c->exp->bd);
            if (r < 0) {
                g_warning("nbd: flush %s at disconnect of %s: %s", c->exp->name, c->peer,
                          g_strerror(-r));
            }
        }
    }
    shutdown(c->fd, SHUT_RDWR);
    /* the budget and the pool are the server's: done with them before leaving its list
     * (stop frees them once the last connection has left) */
    nbd_budget_forget(c->budget, c);

    g_mutex_lock(&srv_lock);
    NbdExport *exp = c->exp;
    c->exp = NULL;
    the_server->conns = g_list_remove(the_server->conns, c);
    the_server->nconns--;
    g_cond_broadcast(&srv_cond);
    g_mutex_unlock(&srv_lock);

    nbd_export_unref(exp);
    conn_free(c);
    return NULL;
}

static char *peer_name(const struct sockaddr_storage *ss)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (ss->ss_family == AF_UNIX) {
        return g_strdup("unix client");
    }
    if (getnameinfo((const struct sockaddr *)ss, sizeof(*ss), host, sizeof(host), serv,
                    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return g_strdup("tcp client");
    }
    return g_strdup_printf(ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

static void accept_one(NbdServer *srv)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sslen, SOCK_CLOEXEC);

    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            g_warning("nbd: accept: %s", g_strerror(errno));
            g_usleep(100 * 1000);
        }
        return;
    }
    if (srv->is_tcp) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    memset((char *)&ss + sslen, 0, sizeof(ss) - MIN(sslen, sizeof(ss)));
    g_autofree char *peer = peer_name(&ss);

    g_mutex_lock(&srv_lock);
    if (srv->max_conns > 0 && srv->nconns >= srv->max_conns) {
        g_mutex_unlock(&srv_lock);
        g_message("nbd: refusing %s: %u connections open already", peer, srv->max_conns);
        close(fd);
        return;
    }
    int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) {
        g_mutex_unlock(&srv_lock);
        g_warning("nbd: refusing %s: eventfd: %s", peer, g_strerror(errno));
        close(fd);
        return;
    }
    NbdConn *c = g_new0(NbdConn, 1);
    c->fd = fd;
    c->wake_fd = wake_fd;
    c->budget = &srv->budget;
    c->pool = srv->pool;
    c->peer = g_steal_pointer(&peer);
    c->rbuf = g_malloc(NBD_RBUF_SIZE);
    g_mutex_init(&c->send_lock);
    g_mutex_init(&c->out_lock);
    g_queue_init(&c->outq);
    srv->conns = g_list_prepend(srv->conns, c);
    srv->nconns++;
    g_mutex_unlock(&srv_lock);

    g_autoptr(GError) err = NULL;
    GThread *t = g_thread_try_new("nbd-conn", conn_thread, c, &err);
    if (t == NULL) {
        g_warning("nbd: serve %s: cannot start a thread: %s", c->peer, err->message);
        g_mutex_lock(&srv_lock);
        srv->conns = g_list_remove(srv->conns, c);
        srv->nconns--;
        g_cond_broadcast(&srv_cond);
        g_mutex_unlock(&srv_lock);
        conn_free(c);
        return;
    }
    g_thread_unref(t); /* detached: the thread takes itself off the list */
}

static gpointer accept_thread(gpointer opaque)
{
    NbdServer *srv = opaque;

    for (;;) {
        struct pollfd pfd[2] = {
            { .fd = srv->listen_fd, .events = POLLIN },
            { .fd = srv->wake_fd, .events = POLLIN },
        };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            g_warning("nbd: poll on the listening socket: %s", g_strerror(errno));
            g_usleep(100 * 1000);
            continue;
        }
        if (pfd[1].revents) {
            break;
        }
        if (pfd[0].revents) {
            accept_one(srv);
        }
    }
    return NULL;
}

/* ---- listening ---- */

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* TCP is served on loopback addresses only: NBD has no authentication here and no TLS,
 * and any client that connects can read and write the exported disks. */
static ListenSocket *listen_inet(const char *host, const char *port, GError **errp)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);

    if (gai != 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "nbd-server-start: %s:%s: %s", host ? host : "", port, gai_strerror(gai));
        return NULL;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (!is_loopback(ai->ai_addr)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "nbd-server-start: %s:%s: not a loopback address (without TLS, NBD "
                        "over TCP is served on loopback only)", host ? host : "", port);
            freeaddrinfo(res);
            return NULL;
        }
    }
    /* The first address that binds; the error of the last one otherwise. A port in use
     * by another process is an error, never shared (util/listen.h). */
    g_autofree char *name = g_strdup_printf("%s:%s", host ? host : "", port);
    ListenSocket *ls = NULL;
    for (struct addrinfo *ai = res; ai != NULL && ls == NULL; ai = ai->ai_next) {
        g_clear_error(errp);
        ls = listen_socket_tcp(ai->ai_addr, ai->ai_addrlen, name, 128, 0, errp);
    }
    freeaddrinfo(res);
    if (ls == NULL) {
        g_prefix_error(errp, "nbd-server-start: ");
    }
    return ls;
}

bool nbd_server_start(const NbdServerAddress *addr, guint max_connections, GError **errp)
{
    if (the_server != NULL) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "nbd-server-start: NBD server already running");
        return false;
    }
    g_autofree NbdServer *srv = g_new0(NbdServer, 1);
    srv->listen_fd = -1;
    srv->wake_fd = -1;
    srv->max_conns = max_connections;

    if (addr->type != NULL && strcmp(addr->type, "unix") == 0 && addr->path != NULL) {
        /* util/listen.c: refused if another process listens there or it is not a
         * socket; a stale socket is replaced; only our own file is removed at stop */
        srv->listen = listen_socket_unix(addr->path, -1, 128, 0, errp);
        if (srv->listen == NULL) {
            g_prefix_error(errp, "nbd-server-start: ");
        }
    } else if (addr->type != NULL && strcmp(addr->type, "inet") == 0 && addr->port != NULL) {
        srv->listen = listen_inet(addr->host, addr->port, errp);
        srv->is_tcp = true;
    } else {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "nbd-server-start: address needs type 'unix' with a path or 'inet' "
                    "with a port");
    }
    if (srv->listen == NULL) {
        return false;
    }
    srv->listen_fd = listen_socket_fd(srv->listen);
    srv->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (srv->wake_fd < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err), "nbd-server-start: eventfd: %s",
                    g_strerror(err));
        goto fail_listen;
    }
    srv->pool = nbd_pool_new(NBD_POOL_THREADS, nbd_conn_readable, errp);
    if (srv->pool == NULL) {
        g_prefix_error(errp, "nbd-server-start: ");
        close(srv->wake_fd);
        goto fail_listen;
    }
    srv->exports = g_ptr_array_new();
    nbd_budget_init(&srv->budget, buffer_budget);
    srv->accept_thread = g_thread_try_new("nbd-accept", accept_thread, srv, errp);
    if (srv->accept_thread == NULL) {
        g_prefix_error(errp, "nbd-server-start: ");
        nbd_pool_free(srv->pool);
        nbd_budget_clear(&srv->budget);
        g_ptr_array_unref(srv->exports);
        close(srv->wake_fd);
        goto fail_listen;
    }
    g_mutex_lock(&srv_lock);
    the_server = g_steal_pointer(&srv);
    g_mutex_unlock(&srv_lock);
    return true;

fail_listen:
    listen_socket_free(srv->listen);
    return false;
}

bool nbd_server_set_buffer_budget(uint64_t bytes, GError **errp)
{
    if (bytes < NBD_MIN_BUFFER_BUDGET || bytes > SIZE_MAX / 2) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "NBD buffer budget must be at least %u bytes", NBD_MIN_BUFFER_BUDGET);
        return false;
    }
    buffer_budget = (size_t)bytes;   /* takes effect at the next nbd_server_start */
    return true;
}

bool nbd_server_add_export(const char *node_name, const char *export_name, bool writable,
                           GError **errp)
{
    return nbd_server_add_export_id(NULL, node_name, export_name, writable, errp);
}

bool nbd_server_add_export_id(const char *id, const char *node_name, const char *export_name,
                              bool writable, GError **errp)
{
    return nbd_server_add_export_bitmaps(id, node_name, export_name, writable, NULL, 0, errp);
}

/* Take bitmap b for exp (exp->bd is the exported disk) into exp->bitmaps[i]. QEMU's
 * checks in QEMU's order, and its texts. */
static bool export_take_bitmap(NbdExport *exp, guint i, const NbdExportBitmap *b,
                               GError **errp)
{
    NbdExportedBitmap *eb = &exp->bitmaps[i];
    g_autoptr(GError) err = NULL;

    if (b->node == NULL) {
        /* the string form: on the exported disk (its chain ends in the node that holds
         * the bitmaps); an enabled one is refused for a read-only export of a disk
         * that someone may write */
        eb->owner = blockdev_ref(exp->bd);
        bool refuse = !exp->writable && !blockdev_is_read_only(exp->bd);
        eb->bm = dirty_bitmap_acquire_export(blockdev_get_dirty_bitmaps(exp->bd), b->name,
                                             refuse, &err);
        if (eb->bm == NULL && g_error_matches(err, DIRTY_BITMAP_ERROR,
                                              DIRTY_BITMAP_ERROR_NOT_FOUND)) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_NOT_FOUND,
                        "Bitmap '%s' is not found", b->name);
            return false;
        }
    } else {
        eb->owner = blockdev_find(b->node, NULL);
        if (eb->owner == NULL) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Node '%s' not found",
                        b->node);
            return false;
        }
        DirtyBitmapSet *set = blockdev_get_dirty_bitmaps(eb->owner);
        if (dirty_set_disk_size(set) != exp->size) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "Bitmap '%s' of node '%s' covers %" G_GUINT64_FORMAT " bytes, the "
                        "export %" G_GUINT64_FORMAT, b->name, b->node,
                        dirty_set_disk_size(set), exp->size);
            return false;
        }
        eb->bm = dirty_bitmap_acquire_export(set, b->name, false, &err);
    }
    if (eb->bm == NULL) {
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    return true;
}

bool nbd_server_add_export_bitmaps(const char *id, const char *node_name,
                                   const char *export_name, bool writable,
                                   const NbdExportBitmap *bitmaps, guint n_bitmaps,
                                   GError **errp)
{
    const char *name = export_name != NULL ? export_name : node_name;

    if (id == NULL) {
        id = name;
    }
    if (the_server == NULL) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED,
                    "nbd-server-add: NBD server not running");
        return false;
    }
    if (strlen(name) > NBD_MAX_STRING) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "nbd-server-add: export name longer than %d bytes", NBD_MAX_STRING);
        return false;
    }
    BlockDev *bd = blockdev_find(node_name, errp);
    if (bd == NULL) {
        g_prefix_error(errp, "nbd-server-add: ");
        return false;
    }
    if (writable && blockdev_is_read_only(bd)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                    "nbd-server-add %s: node %s is read-only", name, node_name);
        blockdev_unref(bd);
        return false;
    }
    NbdExport *exp = g_new0(NbdExport, 1);
    exp->refcount = 1;
    exp->id = g_strdup(id);
    exp->name = g_strdup(name);
    exp->bd = bd;
    exp->size = blockdev_get_size(bd);
    exp->writable = writable;
    if (n_bitmaps > NBD_MAX_EXPORT_BITMAPS) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "nbd-server-add %s: %u bitmaps (at most %u per export)", name, n_bitmaps,
                    NBD_MAX_EXPORT_BITMAPS);
        nbd_export_unref(exp);
        return false;
    }
    exp->bitmaps = g_new0(NbdExportedBitmap, n_bitmaps);
    exp->n_bitmaps = n_bitmaps;
    for (guint i = 0; i < n_bitmaps; i++) {
        exp->bitmaps[i].context = g_strconcat(NBD_META_DIRTY_BITMAP_PREFIX, bitmaps[i].name,
                                              NULL);
        /* two bitmaps of one name (on two disks) would make one context name twice; the
         * same bitmap twice is refused as busy by the take below */
        for (guint j = 0; j < i; j++) {
            if (strcmp(exp->bitmaps[j].context, exp->bitmaps[i].context) == 0 &&
                g_strcmp0(bitmaps[j].node, bitmaps[i].node) != 0) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "nbd-server-add %s: two bitmaps named '%s' (the meta context "
                            "names only the bitmap)", name, bitmaps[i].name);
                goto fail_bitmaps;
            }
        }
        if (strlen(exp->bitmaps[i].context) > NBD_MAX_STRING) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "nbd-server-add %s: bitmap name longer than %zu bytes", name,
                        NBD_MAX_STRING - strlen(NBD_META_DIRTY_BITMAP_PREFIX));
            goto fail_bitmaps;
        }
        if (!export_take_bitmap(exp, i, &bitmaps[i], errp)) {
            goto fail_bitmaps;
        }
    }

    g_mutex_lock(&srv_lock);
    bool name_taken = lookup_export_locked(name, NULL) != NULL;
    if (name_taken || lookup_export_id_locked(id, NULL) != NULL) {
        g_mutex_unlock(&srv_lock);
        if (name_taken) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                        "nbd-server-add: export '%s' exists already", name);
        } else {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                        "nbd-server-add: export id '%s' is in use already", id);
        }
        goto fail_bitmaps;
    }
    g_ptr_array_add(the_server->exports, exp);
    g_mutex_unlock(&srv_lock);
    return true;

fail_bitmaps:
    export_release_bitmaps(exp);
    nbd_export_unref(exp);
    return false;
}

static guint export_users_locked(NbdExport *exp)
{
    guint n = 0;

    for (GList *l = the_server->conns; l != NULL; l = l->next) {
        NbdConn *c = l->data;
        if (c->exp == exp) {
            n++;
        }
    }
    return n;
}

/* Ask the connections that match (exp, or all if NULL) to finish; wait until they
 * have, cutting them after NBD_STOP_GRACE_S. Called with srv_lock held. */
static void close_conns_locked(NbdExport *exp)
{
    for (GList *l = the_server->conns; l != NULL; l = l->next) {
        NbdConn *c = l->data;
        if (exp == NULL || c->exp == exp) {
            nbd_conn_shutdown_read(c);
        }
    }
    gint64 deadline = g_get_monotonic_time() + NBD_STOP_GRACE_S * G_TIME_SPAN_SECOND;
    bool cut = false;
    while (exp == NULL ? the_server->nconns > 0 : export_users_locked(exp) > 0) {
        if (cut) {
            g_cond_wait(&srv_cond, &srv_lock);
        } else if (!g_cond_wait_until(&srv_cond, &srv_lock, deadline)) {
            for (GList *l = the_server->conns; l != NULL; l = l->next) {
                NbdConn *c = l->data;
                if (exp == NULL || c->exp == exp) {
                    shutdown(c->fd, SHUT_RDWR);
                }
            }
            cut = true;
        }
    }
}

/* Remove the export found by id or by name (exactly one of them set). */
static bool remove_export(const char *id, const char *name, bool hard, GError **errp)
{
    const char *what = id != NULL ? id : name;
    guint index = 0;

    if (the_server == NULL) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED,
                    "nbd-server-remove: NBD server not running");
        return false;
    }
    g_mutex_lock(&srv_lock);
    NbdExport *exp = id != NULL ? lookup_export_id_locked(id, &index)
                                : lookup_export_locked(name, &index);
    if (exp == NULL) {
        g_mutex_unlock(&srv_lock);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "nbd-server-remove: export '%s' not found", what);
        return false;
    }
    if (!hard && export_users_locked(exp) > 0) {
        g_mutex_unlock(&srv_lock);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "nbd-server-remove: export '%s' has clients connected", what);
        return false;
    }
    g_ptr_array_remove_index(the_server->exports, index);
    close_conns_locked(exp);
    g_mutex_unlock(&srv_lock);
    /* no connection serves exp any more (a handshake may still hold a reference, but
     * reads only names): the bitmaps are free again when removal returns */
    export_release_bitmaps(exp);
    nbd_export_unref(exp);
    return true;
}

bool nbd_server_remove_export(const char *export_name, bool hard, GError **errp)
{
    return remove_export(NULL, export_name, hard, errp);
}

bool nbd_server_remove_export_id(const char *id, bool hard, GError **errp)
{
    return remove_export(id, NULL, hard, errp);
}

bool nbd_server_is_running(void)
{
    return the_server != NULL;
}

void nbd_export_info_free(NbdExportInfo *info)
{
    if (info != NULL) {
        g_free(info->id);
        g_free(info->name);
        g_free(info->node_name);
        g_free(info);
    }
}

static NbdExportInfo *export_info(const NbdExport *exp)
{
    NbdExportInfo *info = g_new0(NbdExportInfo, 1);

    info->id = g_strdup(exp->id);
    info->name = g_strdup(exp->name);
    info->node_name = g_strdup(blockdev_get_name(exp->bd));
    info->writable = exp->writable;
    return info;
}

GPtrArray *nbd_server_query_exports(void)
{
    GPtrArray *list = g_ptr_array_new_with_free_func((GDestroyNotify)nbd_export_info_free);

    g_mutex_lock(&srv_lock);
    if (the_server != NULL) {
        for (guint i = 0; i < the_server->exports->len; i++) {
            g_ptr_array_add(list, export_info(g_ptr_array_index(the_server->exports, i)));
        }
    }
    g_mutex_unlock(&srv_lock);
    return list;
}

NbdExportInfo *nbd_server_query_export(const char *id, const char *name, const char *node_name)
{
    NbdExportInfo *info = NULL;

    g_mutex_lock(&srv_lock);
    for (guint i = 0; the_server != NULL && i < the_server->exports->len && !info; i++) {
        NbdExport *exp = g_ptr_array_index(the_server->exports, i);
        if ((id != NULL && strcmp(exp->id, id) == 0) ||
            (name != NULL && strcmp(exp->name, name) == 0) ||
            (node_name != NULL && strcmp(blockdev_get_name(exp->bd), node_name) == 0)) {
            info = export_info(exp);
        }
    }
    g_mutex_unlock(&srv_lock);
    return info;
}

bool nbd_server_is_exported(const char *node_name)
{
    bool found = false;

    g_mutex_lock(&srv_lock);
    if (the_server != NULL) {
        for (guint i = 0; i < the_server->exports->len && !found; i++) {
            NbdExport *exp = g_ptr_array_index(the_server->exports, i);
            found = strcmp(blockdev_get_name(exp->bd), node_name) == 0;
        }
    }
    g_mutex_unlock(&srv_lock);
    return found;
}

char **nbd_server_list_exports(void)
{
    return nbd_server_export_names();
}

bool nbd_server_stop(GError **errp)
{
    NbdServer *srv = the_server;
    uint64_t one = 1;

    if (srv == NULL) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED,
                    "nbd-server-stop: NBD server not running");
        return false;
    }
    /* No new clients. */
    while (write(srv->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    g_thread_join(srv->accept_thread);
    listen_socket_free(srv->listen);    /* removes the socket file if still ours */
    close(srv->wake_fd);

    /* Finish the clients, then drop the exports. */
    g_mutex_lock(&srv_lock);
    close_conns_locked(NULL);
    GPtrArray *exports = srv->exports;
    the_server = NULL;
    g_mutex_unlock(&srv_lock);

    for (guint i = 0; i < exports->len; i++) {
        export_release_bitmaps(g_ptr_array_index(exports, i));
        nbd_export_unref(g_ptr_array_index(exports, i));
    }
    g_ptr_array_unref(exports);
    nbd_pool_free(srv->pool);           /* idle: every connection is gone */
    nbd_buf_cache_clear();
    nbd_budget_clear(&srv->budget);
    g_free(srv);
    return true;
}
