/*
 * qmp-client.c — a small synchronous QMP client (see qmp-client.h).
 *
 * Framing. QMP has no length prefix: the server writes JSON objects, each followed by
 * CRLF, and a pretty-printing server may spread one object over several lines. So the
 * input is cut by the shared JSON splitter (util/json-splitter.c) in strict mode: only
 * white space may appear between messages, only objects are messages, and any control
 * byte, malformed or \u0000 escape, duplicate key or out-of-range integer is a protocol
 * error. The complete text then goes to json-glib. Limits: a message of at most
 * QMP_MAX_MESSAGE bytes, nesting of at most QMP_MAX_NESTING (QEMU's own parser limits
 * are 64 MiB and 1024).
 *
 * Dispatch. A message with "event" is kept for the caller (bounded: the oldest are
 * dropped); one with "return" or "error" is the reply to the single command in flight
 * and must carry its id (an error reply may lack it: the server could not read the id);
 * the greeting ({"QMP": ...}) is accepted only as the first message. Anything else, or
 * an error of the connection, makes the client unusable ("broken"): later calls fail at
 * once instead of reading replies that belong to nobody.
 *
 * Descriptors for getfd travel as SCM_RIGHTS ancillary data with the first bytes of the
 * command, as QEMU expects.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/qmp-client.h"
#include "util/fd.h"
#include "util/json-splitter.h"

#define QMP_MAX_MESSAGE (64u * 1024 * 1024)
#define QMP_MAX_NESTING 1024
#define QMP_MAX_FDS 16u
#define READ_CHUNK 65536

G_DEFINE_QUARK(qmp-client-error-quark, qmp_client_error)

struct QmpClient {
    int fd;
    char *path;
    bool broken;          /* the connection is unusable: every call fails */
    bool greeted;         /* the greeting was read */

    JsonSplitter *splitter;   /* strict mode; cuts what is received into messages */
    GError *feed_error;   /* the first error found while feeding the splitter */

    GQueue inbox;         /* JsonObject*: complete messages not yet dispatched */
    GQueue events;        /* JsonObject*: events for the caller, oldest first */
    gint64 next_id;
    char *error_class;    /* class of the last error reply */
};

typedef enum IoResult {
    IO_DATA,
    IO_TIMEOUT,
    IO_SIGNAL,
    IO_ERROR,
} IoResult;

static void set_broken(QmpClient *c)
{
    c->broken = true;
}

static bool check_usable(QmpClient *c, GError **errp)
{
    if (c->broken) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CLOSED,
                    "%s: the connection is no longer usable", c->path);
        return false;
    }
    return true;
}

static void protocol_error(QmpClient *c, GError **errp, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static void protocol_error(QmpClient *c, GError **errp, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    set_broken(c);
    if (!c->greeted) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_PROTOCOL,
                    "%s: not a QMP monitor (%s)", c->path, msg);
    } else {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_PROTOCOL,
                    "%s: QMP protocol error: %s", c->path, msg);
    }
}

/* ---- input -------------------------------------------------------------------------- */

static void parse_message(QmpClient *c, const char *text, gsize len, GError **errp)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) err = NULL;

    if (!json_parser_load_from_data(parser, text, (gssize)len, &err)) {
        protocol_error(c, errp, "invalid JSON: %s", err->message);
        return;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        protocol_error(c, errp, "a message is not a JSON object");
        return;
    }
    g_queue_push_tail(&c->inbox, json_object_ref(json_node_get_object(root)));
}

/* The splitter's callback: a complete message, or what is wrong with the stream. Only
 * the first error counts; the stream is given up after it. */
static void splitter_cb(void *opaque, const char *text, size_t len, const char *error_msg)
{
    QmpClient *c = opaque;

    if (c->feed_error != NULL) {
        return;
    }
    if (text != NULL) {
        parse_message(c, text, len, &c->feed_error);
        return;
    }
    switch (json_splitter_error_code(c->splitter)) {
    case JSON_SPLITTER_ERROR_DEPTH:
        protocol_error(c, &c->feed_error, "message nested deeper than %d", QMP_MAX_NESTING);
        break;
    case JSON_SPLITTER_ERROR_SIZE:
        protocol_error(c, &c->feed_error, "message larger than %u bytes", QMP_MAX_MESSAGE);
        break;
    default:
        protocol_error(c, &c->feed_error, "%s", error_msg);
        break;
    }
}

/* Scan len received bytes; move complete messages to the inbox. */
static bool client_feed(QmpClient *c, const void *data, size_t len, GError **errp)
{
    json_splitter_feed(c->splitter, data, len);
    if (c->feed_error != NULL) {
        g_propagate_error(errp, g_steal_pointer(&c->feed_error));
        return false;
    }
    return true;
}

static int ms_until(gint64 deadline_us)
{
    if (deadline_us == 0) {
        return -1;
    }
    gint64 left = deadline_us - g_get_monotonic_time();
    if (left <= 0) {
        return 0;
    }
    return (int)MIN((left + 999) / 1000, (gint64)G_MAXINT);
}

/* Read what the server sent, waiting until deadline_us (monotonic; 0: no limit). A
 * signal ends the wait only if stop_on_signal. */
static IoResult fill(QmpClient *c, gint64 deadline_us, bool stop_on_signal, GError **errp)
{
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int timeout = ms_until(deadline_us);
        int n = poll(&pfd, 1, timeout);
        if (n < 0) {
            if (errno == EINTR) {
                if (stop_on_signal) {
                    return IO_SIGNAL;
                }
                continue;
            }
            set_broken(c);
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CLOSED, "%s: poll: %s",
                        c->path, g_strerror(errno));
            return IO_ERROR;
        }
        if (n == 0) {
            return IO_TIMEOUT;
        }

        guint8 buf[READ_CHUNK];
        ssize_t got = recv(c->fd, buf, sizeof(buf), 0);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            set_broken(c);
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CLOSED, "%s: receive: %s",
                        c->path, g_strerror(errno));
            return IO_ERROR;
        }
        if (got == 0) {
            set_broken(c);
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CLOSED,
                        "%s: connection closed by the server%s", c->path,
                        json_splitter_in_value(c->splitter) ? " inside a message" : "");
            return IO_ERROR;
        }
        if (!client_feed(c, buf, (size_t)got, errp)) {
            return IO_ERROR;
        }
        return IO_DATA;
    }
}

static void keep_event(QmpClient *c, JsonObject *msg)
{
    g_queue_push_tail(&c->events, msg);
    while (g_queue_get_length(&c->events) > QMP_CLIENT_MAX_EVENTS) {
        json_object_unref(g_queue_pop_head(&c->events));
    }
}

static bool is_event(QmpClient *c, JsonObject *msg, GError **errp)
{
    JsonNode *ev = json_object_get_member(msg, "event");

    if (ev == NULL) {
        return false;
    }
    if (!JSON_NODE_HOLDS_VALUE(ev) || json_node_get_value_type(ev) != G_TYPE_STRING) {
        protocol_error(c, errp, "an event name is not a string");
    }
    return true;
}

/* ---- output ------------------------------------------------------------------------- */

static bool send_all(QmpClient *c, const char *data, size_t len, const int *fds, guint nfds,
                     GError **errp)
{
    size_t off = 0;

    while (off < len) {
        struct iovec iov = {.iov_base = (char *)data + off, .iov_len = len - off};
        struct msghdr msg;
        union {
            char buf[CMSG_SPACE(sizeof(int) * QMP_MAX_FDS)];
            struct cmsghdr align;
        } ctl;

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (nfds > 0 && off == 0) {
            memset(&ctl, 0, sizeof(ctl));
            msg.msg_control = ctl.buf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
        }
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            set_broken(c);
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CLOSED, "%s: send: %s",
                        c->path, g_strerror(errno));
            return false;
        }
        off += (size_t)n;
    }
    return true;
}

/* ---- commands ----------------------------------------------------------------------- */

static JsonNode *reply_value(QmpClient *c, JsonObject *msg, GError **errp)
{
    JsonNode *ret = json_object_get_member(msg, "return");

    if (ret != NULL) {
        return json_node_copy(ret);
    }
    JsonNode *err = json_object_get_member(msg, "error");
    JsonObject *eo = err != NULL && JSON_NODE_HOLDS_OBJECT(err) ? json_node_get_object(err)
                                                                : NULL;
    JsonNode *cls = eo ? json_object_get_member(eo, "class") : NULL;
    JsonNode *desc = eo ? json_object_get_member(eo, "desc") : NULL;
    if (cls == NULL || desc == NULL || !JSON_NODE_HOLDS_VALUE(cls) ||
        !JSON_NODE_HOLDS_VALUE(desc) || json_node_get_value_type(cls) != G_TYPE_STRING ||
        json_node_get_value_type(desc) != G_TYPE_STRING) {
        protocol_error(c, errp, "an error reply without class and desc strings");
        return NULL;
    }
    g_free(c->error_class);
    c->error_class = g_strdup(json_node_get_string(cls));
    g_set_error_literal(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_COMMAND,
                        json_node_get_string(desc));
    return NULL;
}

static JsonNode *execute_until(QmpClient *c, const char *command, JsonObject *args,
                               const int *fds, guint nfds, gint64 deadline_us, GError **errp)
{
    g_return_val_if_fail(nfds <= QMP_MAX_FDS, NULL);

    if (!check_usable(c, errp)) {
        return NULL;
    }
    gint64 id = ++c->next_id;
    g_autoptr(JsonObject) req = json_object_new();
    json_object_set_string_member(req, "execute", command);
    if (args != NULL) {
        json_object_set_object_member(req, "arguments", json_object_ref(args));
    }
    json_object_set_int_member(req, "id", id);
    g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
    json_node_set_object(root, req);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_root(gen, root);
    gsize len = 0;
    g_autofree char *text = json_generator_to_data(gen, &len);
    g_autofree char *line = g_strconcat(text, "\r\n", NULL);
    if (!send_all(c, line, len + 2, fds, nfds, errp)) {
        return NULL;
    }

    for (;;) {
        JsonObject *msg = g_queue_pop_head(&c->inbox);
        if (msg == NULL) {
            IoResult r = fill(c, deadline_us, false, errp);
            if (r == IO_ERROR) {
                return NULL;
            }
            if (r == IO_TIMEOUT) {
                set_broken(c);
                g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_TIMEOUT,
                            "%s: no reply to %s in time", c->path, command);
                return NULL;
            }
            continue;
        }
        GError *err = NULL;
        if (is_event(c, msg, &err)) {
            if (err != NULL) {
                json_object_unref(msg);
                g_propagate_error(errp, err);
                return NULL;
            }
            keep_event(c, msg);
            continue;
        }
        g_autoptr(JsonObject) reply = msg;
        bool has_return = json_object_has_member(reply, "return");
        bool has_error = json_object_has_member(reply, "error");
        if (has_return == has_error) {
            protocol_error(c, errp, "a message that is neither a reply nor an event");
            return NULL;
        }
        JsonNode *rid = json_object_get_member(reply, "id");
        if (rid == NULL && !has_error) {
            protocol_error(c, errp, "a reply to %s without its id", command);
            return NULL;
        }
        if (rid != NULL && (!JSON_NODE_HOLDS_VALUE(rid) ||
                            json_node_get_value_type(rid) != G_TYPE_INT64 ||
                            json_node_get_int(rid) != id)) {
            protocol_error(c, errp, "a reply with another id than %s's", command);
            return NULL;
        }
        return reply_value(c, reply, errp);
    }
}

JsonNode *qmp_client_execute(QmpClient *c, const char *command, JsonObject *args,
                             const int *fds, guint nfds, GError **errp)
{
    return execute_until(c, command, args, fds, nfds, 0, errp);
}

JsonNode *qmp_client_execute_timeout(QmpClient *c, const char *command, JsonObject *args,
                                     const int *fds, guint nfds, int timeout_ms,
                                     GError **errp)
{
    gint64 deadline = timeout_ms > 0 ? g_get_monotonic_time() + (gint64)timeout_ms * 1000 : 0;

    return execute_until(c, command, args, fds, nfds, deadline, errp);
}

int qmp_client_get_fd(QmpClient *c)
{
    return c->fd;
}

const char *qmp_client_error_class(QmpClient *c)
{
    return c->error_class;
}

static JsonSplitter *client_splitter_new(QmpClient *c)
{
    JsonSplitter *s = json_splitter_new(QMP_MAX_MESSAGE, QMP_MAX_NESTING, splitter_cb, c);

    json_splitter_set_strict(s, true);
    return s;
}

/* ---- connection --------------------------------------------------------------------- */

static bool read_greeting(QmpClient *c, gint64 deadline_us, GError **errp)
{
    while (g_queue_is_empty(&c->inbox)) {
        IoResult r = fill(c, deadline_us, false, errp);
        if (r == IO_ERROR) {
            return false;
        }
        if (r == IO_TIMEOUT) {
            set_broken(c);
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_TIMEOUT,
                        "%s: no QMP greeting in time", c->path);
            return false;
        }
    }
    g_autoptr(JsonObject) msg = g_queue_pop_head(&c->inbox);
    JsonNode *qmp = json_object_get_member(msg, "QMP");
    if (qmp == NULL || !JSON_NODE_HOLDS_OBJECT(qmp)) {
        protocol_error(c, errp, "the first message is not a greeting");
        return false;
    }
    c->greeted = true;
    return true;
}

QmpClient *qmp_client_connect(const char *path, int timeout_ms, GError **errp)
{
    struct sockaddr_un sa;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CONNECT,
                    "connect to %s: socket path too long", path);
        return NULL;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CONNECT, "socket: %s",
                    g_strerror(errno));
        return NULL;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, path);
    int r;
    do {
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CONNECT, "connect to %s: %s",
                    path, g_strerror(errno));
        close_fd(&fd);
        return NULL;
    }

    g_autoptr(QmpClient) c = g_new0(QmpClient, 1);
    c->fd = fd;
    c->path = g_strdup(path);
    c->splitter = client_splitter_new(c);
    g_queue_init(&c->inbox);
    g_queue_init(&c->events);

    gint64 deadline = timeout_ms > 0 ? g_get_monotonic_time() + (gint64)timeout_ms * 1000 : 0;
    if (!read_greeting(c, deadline, errp)) {
        return NULL;
    }
    deadline = timeout_ms > 0 ? g_get_monotonic_time() + (gint64)timeout_ms * 1000 : 0;
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) ret = execute_until(c, "qmp_capabilities", NULL, NULL, 0, deadline,
                                            &err);
    if (ret == NULL) {
        g_propagate_prefixed_error(errp, g_steal_pointer(&err), "%s: qmp_capabilities: ",
                                   path);
        return NULL;
    }
    return g_steal_pointer(&c);
}

void qmp_client_free(QmpClient *c)
{
    if (c == NULL) {
        return;
    }
    close_fd(&c->fd);
    g_queue_clear_full(&c->inbox, (GDestroyNotify)json_object_unref);
    g_queue_clear_full(&c->events, (GDestroyNotify)json_object_unref);
    json_splitter_free(c->splitter);
    g_clear_error(&c->feed_error);
    g_free(c->error_class);
    g_free(c->path);
    g_free(c);
}

/* ---- waiting and events -------------------------------------------------------------- */

bool qmp_client_wait(QmpClient *c, int timeout_ms, GError **errp)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)MAX(timeout_ms, 0) * 1000;

    if (!check_usable(c, errp)) {
        return false;
    }
    for (;;) {
        JsonObject *msg;
        while ((msg = g_queue_pop_head(&c->inbox)) != NULL) {
            GError *err = NULL;
            if (!is_event(c, msg, &err) || err != NULL) {
                json_object_unref(msg);
                if (err == NULL) {
                    protocol_error(c, &err, "a reply although no command was sent");
                }
                g_propagate_error(errp, err);
                return false;
            }
            keep_event(c, msg);
        }
        if (!g_queue_is_empty(&c->events)) {
            return true;
        }
        switch (fill(c, deadline, true, errp)) {
        case IO_ERROR:
            return false;
        case IO_TIMEOUT:
        case IO_SIGNAL:
            return true;
        case IO_DATA:
            break;
        }
    }
}

JsonObject *qmp_client_next_event(QmpClient *c)
{
    return g_queue_pop_head(&c->events);
}
