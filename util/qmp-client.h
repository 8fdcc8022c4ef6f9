/*
 * qmp-client.h — a small synchronous QMP client (util/qmp-client.c): `vma backup` talks to
 * vmad with it, and vmad's backup talks to QEMU with it (backup-vmstate.c).
 *
 * One connection to a QMP server (vmad, or QEMU) on a UNIX socket: connect, read the
 * greeting, negotiate, then execute commands one at a time. Events that arrive while a
 * reply is awaited (or while idle in qmp_client_wait()) are kept, oldest first, for the
 * caller. Everything the server sends is untrusted: framing, nesting, sizes and member
 * types are checked, and any violation is a protocol error that ends the connection.
 *
 * Threads: a client is used by one thread at a time.
 */
#ifndef VMA_UTIL_QMP_CLIENT_H
#define VMA_UTIL_QMP_CLIENT_H

#include <stdbool.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#define QMP_CLIENT_ERROR (qmp_client_error_quark())
GQuark qmp_client_error_quark(void);

typedef enum QmpClientError {
    QMP_CLIENT_ERROR_CONNECT,  /* the socket could not be reached */
    QMP_CLIENT_ERROR_PROTOCOL, /* the server sent something that is not QMP */
    QMP_CLIENT_ERROR_CLOSED,   /* the server closed the connection (or it broke) */
    QMP_CLIENT_ERROR_TIMEOUT,  /* no greeting or reply in time */
    QMP_CLIENT_ERROR_COMMAND,  /* an error reply: the message is the server's desc */
} QmpClientError;

typedef struct QmpClient QmpClient;

/* Connect to the socket at path, read the greeting and negotiate capabilities
 * (qmp_capabilities). Waits at most timeout_ms for each step (<= 0: no limit). */
QmpClient *qmp_client_connect(const char *path, int timeout_ms, GError **errp);
void qmp_client_free(QmpClient *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QmpClient, qmp_client_free)

/* Run one command. args (borrowed) may be NULL. fds are sent along as SCM_RIGHTS (for
 * getfd). Returns the reply's "return" value (caller owns it), or NULL with errp set:
 * QMP_CLIENT_ERROR_COMMAND for an error reply (qmp_client_error_class() gives its class),
 * anything else when the connection is unusable from then on. Waits for the reply
 * without a time limit; signals do not interrupt the wait. */
JsonNode *qmp_client_execute(QmpClient *c, const char *command, JsonObject *args,
                             const int *fds, guint nfds, GError **errp);

/* The same, waiting at most timeout_ms for the reply (<= 0: no limit); a reply that does
 * not come in time is QMP_CLIENT_ERROR_TIMEOUT and leaves the connection unusable. */
JsonNode *qmp_client_execute_timeout(QmpClient *c, const char *command, JsonObject *args,
                                     const int *fds, guint nfds, int timeout_ms,
                                     GError **errp);

/* The connected socket, to poll it together with other descriptors (readable: call
 * qmp_client_wait with timeout 0). The client keeps owning it. */
int qmp_client_get_fd(QmpClient *c);

/* The class of the last error reply ("GenericError", ...); NULL if there was none. */
const char *qmp_client_error_class(QmpClient *c);

/* Wait up to timeout_ms for something from the server. Returns true when the time is
 * up, a signal arrived (EINTR), or an event came in (see qmp_client_next_event); false
 * with errp set if the connection closed or broke. */
bool qmp_client_wait(QmpClient *c, int timeout_ms, GError **errp);

/* The oldest event not yet taken (the whole message: event, data, timestamp), or NULL.
 * At most QMP_CLIENT_MAX_EVENTS are kept; older ones are dropped beyond that. */
#define QMP_CLIENT_MAX_EVENTS 1024u
JsonObject *qmp_client_next_event(QmpClient *c);

#endif /* VMA_UTIL_QMP_CLIENT_H */
