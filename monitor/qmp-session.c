/*
 * qmp-session.c — QMP sockets: listening monitors, client sessions, output, events,
 * and descriptors received with SCM_RIGHTS.
 *
 * Everything runs on the main loop thread except qmp_event_emit(). A session is one
 * non-blocking connection: reads (recvmsg, with ancillary descriptors) go through the
 * JSON splitter; every complete message is dispatched at once, synchronously, so
 * responses leave in request order. Output is appended to a buffer and written as far
 * as the socket takes it; the rest waits for G_IO_OUT.
 *
 * Flow control: while more than QMP_OUT_HIGH bytes wait for a client, the session stops
 * reading from it (QEMU likewise stops reading when its queue is full); a client that
 * lets more than QMP_OUT_MAX pile up (events it never reads) is disconnected.
 *
 * Lifetime: a session whose socket failed is marked dead and freed when control
 * returns to its own read callback (never while its dispatch is on the stack), or by
 * qmp_monitor_free(). A client that disconnects in the middle of a command therefore
 * only makes the write of the reply fail.
 *
 * Events: qmp_event_emit() formats the event at once (the timestamp is the moment of
 * the call). On the main thread it is written to every negotiated session right away,
 * after any events still queued from other threads; other threads append it to a
 * queue under event_lock and schedule one idle callback that delivers the queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>

#include "monitor.h"
#include "util/json-splitter.h"
#include "monitor/json-writer.h"
#include "monitor/qmp-internal.h"
#include "util/listen.h"

#define QMP_MAX_SESSIONS 64u                 /* per monitor */
#define QMP_READ_CHUNK 65536u
#define QMP_OUT_HIGH (1024u * 1024u)
#define QMP_OUT_MAX (16u * 1024u * 1024u)

struct QmpMonitor {
    char *path;
    ListenSocket *listen;      /* owns the socket file (util/listen.h) */
    int listen_fd;             /* its descriptor, -1 once closed */
    guint accept_watch;
    guint accept_retry;        /* timeout source after EMFILE */
    GList *sessions;           /* QmpSession * */
};

struct QmpSession {
    QmpMonitor *mon;           /* NULL for a detached (test) session */
    int fd;                    /* -1 when detached */
    guint in_watch;
    guint out_watch;
    guint reap_idle;           /* closes a dead session from the main loop */
    JsonSplitter *splitter;
    GString *out;              /* pending output; bytes before out_off are written */
    gsize out_off;
    bool negotiated;
    bool oob;
    bool dead;
    GQueue received_fds;       /* GINT_TO_POINTER(fd) received, not yet claimed */
    GHashTable *named_fds;     /* name -> GINT_TO_POINTER(fd) kept by getfd */
};

static GList *all_sessions;    /* every session of every monitor, and detached ones */
static GThread *main_thread;   /* the thread that runs the monitors */

static GMutex event_lock;      /* protects event_queue and event_idle_pending */
static GQueue event_queue = G_QUEUE_INIT;  /* char *: formatted events, CRLF included */
static bool event_idle_pending;

static QmpShutdownFn shutdown_fn;
static void *shutdown_opaque;

static void session_close(QmpSession *s);
static void session_flush(QmpSession *s);

static gboolean session_reap(gpointer opaque)
{
    QmpSession *s = opaque;

    s->reap_idle = 0;
    session_close(s);
    return G_SOURCE_REMOVE;
}

/* The connection failed (or the client misbehaved): stop talking to it and close it
 * from the main loop, where no dispatch of it can be on the stack. */
static void session_mark_dead(QmpSession *s)
{
    if (s->dead) {
        return;
    }
    s->dead = true;
    if (s->fd >= 0) {
        s->reap_idle = g_idle_add(session_reap, s);
    }
}

/* ---- session state ------------------------------------------------------------------- */

bool qmp_session_is_negotiated(QmpSession *s)
{
    return s != NULL && s->negotiated;
}

void qmp_session_set_negotiated(QmpSession *s, bool oob)
{
    s->negotiated = true;
    s->oob = oob;
}

bool qmp_session_oob_enabled(QmpSession *s)
{
    return s != NULL && s->oob;
}

int qmp_session_pop_received_fd(QmpSession *s)
{
    if (s == NULL || g_queue_is_empty(&s->received_fds)) {
        return -1;
    }
    return GPOINTER_TO_INT(g_queue_pop_head(&s->received_fds));
}

bool qmp_session_store_fd(QmpSession *s, const char *name, int fd, GError **errp)
{
    gpointer old;

    if (g_hash_table_lookup_extended(s->named_fds, name, NULL, &old)) {
        close(GPOINTER_TO_INT(old));
    } else if (g_hash_table_size(s->named_fds) >= QMP_MAX_NAMED_FDS) {
        close(fd);
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "getfd %s: this connection already holds %u descriptors", name,
                    QMP_MAX_NAMED_FDS);
        return false;
    }
    g_hash_table_insert(s->named_fds, g_strdup(name), GINT_TO_POINTER(fd));
    return true;
}

bool qmp_session_close_named_fd(QmpSession *s, const char *name, GError **errp)
{
    int fd = qmp_session_take_fd(s, name, errp);

    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

int qmp_session_take_fd(QmpSession *session, const char *fdname, GError **errp)
{
    gpointer value;

    if (session == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "File descriptor named '%s' not found: descriptors can only be passed "
                    "over a monitor connection", fdname);
        return -1;
    }
    if (!g_hash_table_lookup_extended(session->named_fds, fdname, NULL, &value)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "File descriptor named '%s' not found", fdname);
        return -1;
    }
    gpointer key = NULL;
    g_hash_table_steal_extended(session->named_fds, fdname, &key, NULL);
    g_free(key);
    return GPOINTER_TO_INT(value);
}

int qmp_session_dup_fd(QmpSession *session, const char *fdname, GError **errp)
{
    gpointer value;

    if (session == NULL ||
        !g_hash_table_lookup_extended(session->named_fds, fdname, NULL, &value)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "File descriptor named '%s' not found", fdname);
        return -1;
    }
    int fd = fcntl(GPOINTER_TO_INT(value), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        int saved = errno;
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "dup descriptor '%s': %s", fdname,
                    g_strerror(saved));
    }
    return fd;
}

/* ---- output -------------------------------------------------------------------------- */

static void session_send_text(QmpSession *s, const char *text, size_t len)
{
    if (s->dead) {
        return;
    }
    g_string_append_len(s->out, text, (gssize)len);
    if (s->out->len - s->out_off > QMP_OUT_MAX) {
        g_warning("QMP client dropped: it does not read its replies and events "
                  "(%zu bytes pending)", (size_t)(s->out->len - s->out_off));
        session_mark_dead(s);
        return;
    }
    session_flush(s);
}

static void session_send(QmpSession *s, JsonNode *msg)
{
    GString *line = g_string_new(NULL);

    json_writer_append(line, msg);
    g_string_append(line, "\r\n");
    session_send_text(s, line->str, line->len);
    g_string_free(line, TRUE);
}

static gboolean session_writable(int fd, GIOCondition cond, gpointer opaque);
static gboolean session_readable(int fd, GIOCondition cond, gpointer opaque);

static void session_update_watches(QmpSession *s)
{
    gsize pending = s->out->len - s->out_off;

    if (s->fd < 0 || s->dead) {
        return;
    }
    if (pending > 0 && s->out_watch == 0) {
        s->out_watch = g_unix_fd_add(s->fd, G_IO_OUT, session_writable, s);
    } else if (pending == 0 && s->out_watch != 0) {
        g_source_remove(s->out_watch);
        s->out_watch = 0;
    }
    if (pending > QMP_OUT_HIGH && s->in_watch != 0) {
        g_source_remove(s->in_watch);
        s->in_watch = 0;
    } else if (pending <= QMP_OUT_HIGH && s->in_watch == 0) {
        s->in_watch = g_unix_fd_add(s->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, session_readable, s);
    }
}

static void session_flush(QmpSession *s)
{
    if (s->fd < 0) {
        return;   /* detached: output is collected */
    }
    while (!s->dead && s->out_off < s->out->len) {
        ssize_t n = send(s->fd, s->out->str + s->out_off, s->out->len - s->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                session_mark_dead(s);   /* the client went away: harmless */
            }
            break;
        }
        s->out_off += (gsize)n;
    }
    if (s->out_off == s->out->len) {
        g_string_truncate(s->out, 0);
        s->out_off = 0;
    } else if (s->out_off > 64 * 1024 && s->out_off > s->out->len / 2) {
        g_string_erase(s->out, 0, (gssize)s->out_off);
        s->out_off = 0;
    }
}

static gboolean session_writable(int fd, GIOCondition cond, gpointer opaque)
{
    QmpSession *s = opaque;

    session_flush(s);
    if (s->dead) {
        s->out_watch = 0;
        session_close(s);
        return G_SOURCE_REMOVE;
    }
    if (s->out_off == s->out->len) {
        s->out_watch = 0;
        session_update_watches(s);
        return G_SOURCE_REMOVE;
    }
    session_update_watches(s);
    return G_SOURCE_CONTINUE;
}

/* ---- input --------------------------------------------------------------------------- */

static void splitter_cb(void *opaque, const char *text, size_t len, const char *error_msg)
{
    QmpSession *s = opaque;
    g_autoptr(JsonNode) rsp = NULL;

    if (s->dead) {
        return;   /* nobody to answer: don't run commands for a vanished client */
    }
    if (text == NULL) {
        rsp = qmp_parse_error_response(error_msg);
    } else {
        rsp = qmp_dispatch(s, text, len);
    }
    session_send(s, rsp);
}

static void add_received_fd(QmpSession *s, int fd)
{
    if (g_queue_get_length(&s->received_fds) >= QMP_MAX_PENDING_FDS) {
        close(fd);   /* nobody claims them: don't let a client exhaust our table */
        return;
    }
    g_queue_push_tail(&s->received_fds, GINT_TO_POINTER(fd));
}

void qmp_session_feed(QmpSession *s, const char *data, size_t len, const int *fds,
                      size_t nfds)
{
    for (size_t i = 0; i < nfds; i++) {
        add_received_fd(s, fds[i]);
    }
    json_splitter_feed(s->splitter, data, len);
}

static gboolean session_readable(int fd, GIOCondition cond, gpointer opaque)
{
    QmpSession *s = opaque;
    char buf[QMP_READ_CHUNK];
    union {
        char buf[CMSG_SPACE(sizeof(int) * QMP_MAX_PENDING_FDS)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.buf,
        .msg_controllen = sizeof(control.buf),
    };
    int fds[QMP_MAX_PENDING_FDS];
    size_t nfds = 0;

    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        return G_SOURCE_CONTINUE;
    }
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL;
         c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int rfd;
                memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (nfds < G_N_ELEMENTS(fds)) {
                    fds[nfds++] = rfd;
                } else {
                    close(rfd);
                }
            }
        }
    }
    if (n <= 0) {
        for (size_t i = 0; i < nfds; i++) {
            close(fds[i]);
        }
        s->in_watch = 0;
        session_close(s);
        return G_SOURCE_REMOVE;
    }
    qmp_session_feed(s, buf, (size_t)n, fds, nfds);
    if (s->dead) {
        s->in_watch = 0;
        session_close(s);
        return G_SOURCE_REMOVE;
    }
    if (s->out->len - s->out_off > QMP_OUT_HIGH) {
        s->in_watch = 0;      /* stop reading until the client reads its replies */
        session_update_watches(s);
        return G_SOURCE_REMOVE;
    }
    session_update_watches(s);
    return G_SOURCE_CONTINUE;
}

/* ---- session lifetime ------------------------------------------------------------------ */

static QmpSession *session_new(QmpMonitor *mon, int fd)
{
    QmpSession *s = g_new0(QmpSession, 1);

    s->mon = mon;
    s->fd = fd;
    s->splitter = json_splitter_new(JSON_SPLITTER_MAX_SIZE, JSON_SPLITTER_MAX_DEPTH,
                                    splitter_cb, s);
    s->out = g_string_sized_new(1024);
    g_queue_init(&s->received_fds);
    s->named_fds = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    all_sessions = g_list_prepend(all_sessions, s);
    if (mon != NULL) {
        mon->sessions = g_list_prepend(mon->sessions, s);
    }
    if (main_thread == NULL) {
        main_thread = g_thread_self();
    }

    g_autoptr(JsonNode) greeting = qmp_greeting();
    session_send(s, greeting);
    session_update_watches(s);
    return s;
}

static void session_close(QmpSession *s)
{
    GHashTableIter it;
    gpointer value;

    if (s->in_watch != 0) {
        g_source_remove(s->in_watch);
    }
    if (s->out_watch != 0) {
        g_source_remove(s->out_watch);
    }
    if (s->reap_idle != 0) {
        g_source_remove(s->reap_idle);
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    while (!g_queue_is_empty(&s->received_fds)) {
        close(GPOINTER_TO_INT(g_queue_pop_head(&s->received_fds)));
    }
    g_hash_table_iter_init(&it, s->named_fds);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        close(GPOINTER_TO_INT(value));
    }
    g_hash_table_unref(s->named_fds);
    json_splitter_free(s->splitter);
    g_string_free(s->out, TRUE);
    if (s->mon != NULL) {
        s->mon->sessions = g_list_remove(s->mon->sessions, s);
    }
    all_sessions = g_list_remove(all_sessions, s);
    g_free(s);
}

QmpSession *qmp_session_new_detached(void)
{
    return session_new(NULL, -1);
}

void qmp_session_free_detached(QmpSession *s)
{
    if (s != NULL) {
        g_assert(s->mon == NULL);
        session_close(s);
    }
}

char *qmp_session_take_output(QmpSession *s)
{
    char *text = g_strdup(s->out->str + s->out_off);

    g_string_truncate(s->out, 0);
    s->out_off = 0;
    return text;
}

/* ---- events -------------------------------------------------------------------------- */

static void deliver_event_text(const char *text)
{
    size_t len = strlen(text);

    for (GList *l = all_sessions; l != NULL; l = l->next) {
        QmpSession *s = l->data;
        if (s->negotiated) {
            session_send_text(s, text, len);
            session_update_watches(s);
        }
    }
}

void qmp_events_deliver_queued(void)
{
    GQueue queue = G_QUEUE_INIT;

    g_mutex_lock(&event_lock);
    queue = event_queue;
    g_queue_init(&event_queue);
    event_idle_pending = false;
    g_mutex_unlock(&event_lock);

    char *text;
    while ((text = g_queue_pop_head(&queue)) != NULL) {
        deliver_event_text(text);
        g_free(text);
    }
}

static gboolean deliver_queued_idle(gpointer opaque)
{
    qmp_events_deliver_queued();
    return G_SOURCE_REMOVE;
}

void qmp_event_emit(const char *event, JsonObject *data)
{
    gint64 now = g_get_real_time();
    JsonObject *ts = json_object_new();
    JsonObject *ev = json_object_new();

    json_object_set_int_member(ts, "seconds", now / G_USEC_PER_SEC);
    json_object_set_int_member(ts, "microseconds", now % G_USEC_PER_SEC);
    json_object_set_object_member(ev, "timestamp", ts);
    json_object_set_string_member(ev, "event", event);
    if (data != NULL) {
        json_object_set_object_member(ev, "data", data);
    }
    g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(node, ev);

    GString *line = g_string_new(NULL);
    json_writer_append(line, node);
    g_string_append(line, "\r\n");
    char *text = g_string_free(line, FALSE);

    if (main_thread != NULL && g_thread_self() == main_thread) {
        qmp_events_deliver_queued();   /* keep the order of earlier events */
        deliver_event_text(text);
        g_free(text);
        return;
    }
    g_mutex_lock(&event_lock);
    g_queue_push_tail(&event_queue, text);
    if (!event_idle_pending) {
        event_idle_pending = true;
        g_idle_add(deliver_queued_idle, NULL);
    }
    g_mutex_unlock(&event_lock);
}

/* ---- monitors ------------------------------------------------------------------------ */

static gboolean monitor_accept(int fd, GIOCondition cond, gpointer opaque);

static gboolean monitor_accept_retry(gpointer opaque)
{
    QmpMonitor *mon = opaque;

    mon->accept_retry = 0;
    mon->accept_watch = g_unix_fd_add(mon->listen_fd, G_IO_IN, monitor_accept, mon);
    return G_SOURCE_REMOVE;
}

static gboolean monitor_accept(int fd, GIOCondition cond, gpointer opaque)
{
    QmpMonitor *mon = opaque;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (cfd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* out of descriptors: don't spin on a listening socket that stays ready */
            g_warning("monitor %s: accept: %s", mon->path, g_strerror(errno));
            mon->accept_watch = 0;
            mon->accept_retry = g_timeout_add(100, monitor_accept_retry, mon);
            return G_SOURCE_REMOVE;
        }
        return G_SOURCE_CONTINUE;
    }
    if (g_list_length(mon->sessions) >= QMP_MAX_SESSIONS) {
        close(cfd);
        return G_SOURCE_CONTINUE;
    }
    session_new(mon, cfd);
    return G_SOURCE_CONTINUE;
}

QmpMonitor *qmp_monitor_new_unix(const char *path, unsigned mode, GError **errp)
{
    /* util/listen.c refuses a path another process listens on or that is not a
     * socket, replaces a stale socket, and removes only the file it created */
    if (mode > 0777) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "monitor socket %s: mode %o is not a permission mode", path, mode);
        return NULL;
    }
    ListenSocket *ls = listen_socket_unix(path, (int)mode, 16, LISTEN_NONBLOCK, errp);
    if (ls == NULL) {
        g_prefix_error(errp, "monitor socket ");
        return NULL;
    }

    QmpMonitor *mon = g_new0(QmpMonitor, 1);
    mon->path = g_strdup(path);
    mon->listen = ls;
    mon->listen_fd = listen_socket_fd(ls);
    mon->accept_watch = g_unix_fd_add(mon->listen_fd, G_IO_IN, monitor_accept, mon);
    if (main_thread == NULL) {
        main_thread = g_thread_self();
    }
    return mon;
}

void qmp_monitor_stop_listening(QmpMonitor *mon)
{
    if (mon == NULL || mon->listen_fd < 0) {
        return;
    }
    if (mon->accept_watch != 0) {
        g_source_remove(mon->accept_watch);
        mon->accept_watch = 0;
    }
    if (mon->accept_retry != 0) {
        g_source_remove(mon->accept_retry);
        mon->accept_retry = 0;
    }
    listen_socket_free(g_steal_pointer(&mon->listen));  /* removes the file if still ours */
    mon->listen_fd = -1;
}

void qmp_monitor_free(QmpMonitor *mon)
{
    if (mon == NULL) {
        return;
    }
    qmp_monitor_stop_listening(mon);
    qmp_monitors_flush(1000);
    while (mon->sessions != NULL) {
        session_close(mon->sessions->data);
    }
    g_free(mon->path);
    g_free(mon);
}

void qmp_monitors_flush(guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    qmp_events_deliver_queued();
    for (;;) {
        g_autoptr(GArray) pfds = g_array_new(FALSE, TRUE, sizeof(struct pollfd));
        for (GList *l = all_sessions; l != NULL; l = l->next) {
            QmpSession *s = l->data;
            session_flush(s);
            if (s->fd >= 0 && !s->dead && s->out_off < s->out->len) {
                struct pollfd p = {.fd = s->fd, .events = POLLOUT};
                g_array_append_val(pfds, p);
            }
        }
        gint64 left = deadline - g_get_monotonic_time();
        if (pfds->len == 0 || left <= 0) {
            return;
        }
        if (poll((struct pollfd *)(void *)pfds->data, pfds->len, (int)(left / 1000) + 1) < 0 &&
            errno != EINTR) {
            return;
        }
    }
}

/* ---- shutdown ------------------------------------------------------------------------ */

void qmp_set_shutdown_handler(QmpShutdownFn fn, void *opaque)
{
    shutdown_fn = fn;
    shutdown_opaque = opaque;
}

void qmp_request_shutdown(const char *reason)
{
    if (shutdown_fn != NULL) {
        shutdown_fn(reason, shutdown_opaque);
    }
}
