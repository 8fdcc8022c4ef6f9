/*
 * nbd-server.h — vmad's NBD server (nbd/). One server per process, like QEMU's
 * nbd-server-start: it listens on one address (UNIX socket or TCP on loopback) and
 * serves any number of named exports of BlockDevs, each writable or read-only.
 *
 * Control functions run on the main loop thread and take GError **errp. Connections
 * are served by the server's own threads; they never block the main loop.
 */
#ifndef NBD_SERVER_H
#define NBD_SERVER_H

#include <glib.h>
#include <stdbool.h>

typedef struct NbdServerAddress {
    const char *type;   /* "unix" or "inet" */
    const char *path;   /* unix: socket path */
    const char *host;   /* inet: host (loopback addresses) */
    const char *port;   /* inet: port */
} NbdServerAddress;

/* Clients connected at once when nbd-server-start has no max-connections: each costs
 * 17 threads and up to about 100 MiB of buffers under load (nbd/internal.h). */
#define NBD_DEFAULT_MAX_CONNECTIONS 128u

/* Start listening (max_connections 0: no limit). Fails if a server runs already. */
bool nbd_server_start(const NbdServerAddress *addr, guint max_connections, GError **errp);
/* Export the named BlockDev under export_name (NULL = node name). */
bool nbd_server_add_export(const char *node_name, const char *export_name, bool writable,
                           GError **errp);
/* Remove an export; mode "safe" fails while clients are connected, "hard" disconnects
 * them after their in-flight requests finish. */
bool nbd_server_remove_export(const char *export_name, bool hard, GError **errp);
/* True if the node is exported (blockdev_del refuses then). */
bool nbd_server_is_exported(const char *node_name);
/* Stop listening, finish in-flight requests, close every connection, remove the socket
 * file. Fails if no server runs. */
bool nbd_server_stop(GError **errp);
/* Names of the current exports (g_strfreev). */
char **nbd_server_list_exports(void);

#endif /* NBD_SERVER_H */
