/*
 * monitor.h — vmad's QMP monitor: listening sockets, client sessions, command dispatch
 * driven by qapi-schema.json, events, and file descriptors passed with getfd.
 *
 * The wire protocol is QEMU's QMP (docs/interop/qmp-spec): greeting, capabilities
 * negotiation, {"execute", "arguments", "id"} requests answered in order with
 * {"return"} or {"error": {"class", "desc"}}, CRLF-terminated JSON, events with
 * timestamps. Arguments are checked against the schema before any handler runs, so a
 * handler may rely on the declared members having their declared types.
 *
 * Threads: everything here runs on the main loop thread (the default GMainContext),
 * except qmp_event_emit(), which any thread may call. Command handlers run on the main
 * loop thread, one at a time.
 */
#ifndef MONITOR_H
#define MONITOR_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>

/* ---- errors ------------------------------------------------------------------------ */

/*
 * The monitor's own errors use this domain; the code is the class. The subsystems keep
 * their own domains (G_IO_ERROR in the block layer, BACKUP_ERROR, ...), and the few of
 * their codes that have a class of their own are mapped in qmp-error.c (e.g.
 * BACKUP_ERROR_DEVICE_NOT_FOUND: DeviceNotFound); every other GError becomes
 * GenericError. The message is the "desc" as it is.
 */
#define QMP_ERROR (qmp_error_quark())
GQuark qmp_error_quark(void);

typedef enum QmpErrorCode {
    QMP_ERROR_GENERIC,            /* GenericError */
    QMP_ERROR_COMMAND_NOT_FOUND,  /* CommandNotFound */
    QMP_ERROR_DEVICE_NOT_ACTIVE,  /* DeviceNotActive */
    QMP_ERROR_DEVICE_NOT_FOUND,   /* DeviceNotFound */
    QMP_ERROR_KVM_MISSING_CAP,    /* KVMMissingCap */
} QmpErrorCode;

/* The QMP error class of err: the one GError -> QMP mapping. */
const char *qmp_error_class(const GError *err);
/* {"class": ..., "desc": ...} for err. */
JsonObject *qmp_error_object(const GError *err);

/* ---- commands ------------------------------------------------------------------------ */

typedef struct QmpSession QmpSession;

/*
 * A command handler. args has been checked against the schema (declared members only,
 * with their declared types; optional ones may be absent). Returns the "return" value
 * (a new node; an empty object for commands that return nothing) or NULL with errp set.
 * session is NULL when the command comes from the command line.
 */
typedef JsonNode *(*QmpCommandFn)(QmpSession *session, JsonObject *args, GError **errp);

typedef struct QmpCommand {
    const char *name;
    QmpCommandFn fn;
} QmpCommand;

/* The handler table (monitor/qmp-commands.c), terminated by {NULL, NULL}. A unit test
 * proves that it and the schema's command list are the same set. */
extern const QmpCommand qmp_commands[];
const QmpCommand *qmp_command_find(const char *name);

/* Check args (may be NULL: none) against the schema, then run the handler. For the
 * command line, and for anything else that must behave exactly like a QMP client. */
JsonNode *qmp_execute(QmpSession *session, const char *command, JsonObject *args,
                      GError **errp);

/* An empty object node: the "return" of commands that return nothing. */
JsonNode *qmp_return_empty(void);

/* ---- file descriptors passed with getfd ------------------------------------------------- */

/*
 * Descriptors received with getfd are kept per session under their names, as QEMU
 * keeps them per monitor. A command that accepts "/dev/fdname/NAME" for a path takes the
 * descriptor over from the session it arrived on (QEMU's monitor_get_fd semantics):
 *
 *   qmp_session_take_fd: remove NAME from the session and return its descriptor (the
 *                        caller owns it), or -1 with an error;
 *   qmp_session_dup_fd:  return a dup() of it (O_CLOEXEC) and leave it in place.
 *
 * session may be NULL (command line): that fails with an error.
 */
int qmp_session_take_fd(QmpSession *session, const char *fdname, GError **errp);
int qmp_session_dup_fd(QmpSession *session, const char *fdname, GError **errp);

/* ---- events ------------------------------------------------------------------------- */

/*
 * Send an event to every session in command mode. Any thread; the timestamp is taken
 * here. Takes ownership of data (may be NULL: no "data" member). Events raised on the
 * main loop thread while a command runs reach clients before that command's reply;
 * events from other threads are queued to the main loop, in order per thread.
 */
void qmp_event_emit(const char *event, JsonObject *data);

/* ---- monitors ------------------------------------------------------------------------ */

typedef struct QmpMonitor QmpMonitor;

/*
 * Listen for QMP clients on a UNIX socket at path, created with permissions mode (e.g.
 * 0600). A stale socket file (nobody accepting) is replaced; a live one or any other
 * file is an error. Any number of clients may be connected at once.
 */
QmpMonitor *qmp_monitor_new_unix(const char *path, unsigned mode, GError **errp);
/* Stop listening, remove the socket file, close every session of this monitor (after
 * trying to deliver what is queued for them for up to 1 s). Accepts NULL. */
void qmp_monitor_free(QmpMonitor *mon);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QmpMonitor, qmp_monitor_free)
/* Stop accepting new clients (sessions stay); the socket file is removed. */
void qmp_monitor_stop_listening(QmpMonitor *mon);

/* Deliver queued events (from other threads) now, then write out every session's
 * pending output, waiting up to timeout_ms for slow readers. For shutdown. */
void qmp_monitors_flush(guint timeout_ms);

/* ---- shutdown ----------------------------------------------------------------------- */

/* What `quit` calls (after its reply is queued). reason is a ShutdownCause value. */
typedef void (*QmpShutdownFn)(const char *reason, void *opaque);
void qmp_set_shutdown_handler(QmpShutdownFn fn, void *opaque);
void qmp_request_shutdown(const char *reason);

#endif /* MONITOR_H */
