/*
 * qmp-internal.h — pieces of the monitor shared between its files and the unit tests:
 * session state the dispatcher and the built-in commands need, the dispatcher itself,
 * and detached sessions (no socket) that tests drive byte by byte.
 *
 * Main loop thread only.
 */
#ifndef MONITOR_QMP_INTERNAL_H
#define MONITOR_QMP_INTERNAL_H

#include <stddef.h>

#include "monitor.h"

#define QMP_MAX_PENDING_FDS 16u   /* received with SCM_RIGHTS, not yet claimed by getfd */
#define QMP_MAX_NAMED_FDS 64u     /* kept by getfd per session */

/* ---- session state (qmp-session.c) ---- */
bool qmp_session_is_negotiated(QmpSession *s);
void qmp_session_set_negotiated(QmpSession *s, bool oob);
bool qmp_session_oob_enabled(QmpSession *s);
/* The oldest descriptor received on the session and not yet claimed, or -1. The caller
 * owns it. */
int qmp_session_pop_received_fd(QmpSession *s);
/* Keep fd under name (taking ownership), replacing and closing an older one. */
bool qmp_session_store_fd(QmpSession *s, const char *name, int fd, GError **errp);
bool qmp_session_close_named_fd(QmpSession *s, const char *name, GError **errp);

/* A session without a socket: what it would send accumulates in memory. For tests. */
QmpSession *qmp_session_new_detached(void);
void qmp_session_free_detached(QmpSession *s);
/* Bytes as if read from the socket, optionally with descriptors (SCM_RIGHTS). */
void qmp_session_feed(QmpSession *s, const char *data, size_t len, const int *fds,
                      size_t nfds);
/* Everything queued for the client since the last call (CRLF-terminated lines). */
char *qmp_session_take_output(QmpSession *s);
/* Deliver events queued by other threads now (tests; the main loop does it itself). */
void qmp_events_deliver_queued(void);

/* ---- dispatch (qmp-dispatch.c) ---- */
/* The greeting object sent on connect. */
JsonNode *qmp_greeting(void);
/* {"qemu": {"micro", "minor", "major"}, "package"} */
JsonNode *qmp_version_info(void);
/* The complete response to one request message (its text as split off the stream). */
JsonNode *qmp_dispatch(QmpSession *s, const char *text, size_t len);
/* The response to a framing error reported by the splitter. */
JsonNode *qmp_parse_error_response(const char *msg);

#endif /* MONITOR_QMP_INTERNAL_H */
