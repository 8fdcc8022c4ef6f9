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
#include <stdint.h>

typedef struct NbdServerAddress {
    const char *type;   /* "unix" or "inet" */
    const char *path;   /* unix: socket path */
    const char *host;   /* inet: host (loopback addresses) */
    const char *port;   /* inet: port */
} NbdServerAddress;

/* Clients connected at once when nbd-server-start has no max-connections: each costs
 * one thread and up to about 2.3 MiB outside the shared budget (nbd/internal.h). */
#define NBD_DEFAULT_MAX_CONNECTIONS 128u

/* Bytes of request payloads and reply buffers of all connections together, beyond each
 * connection's 2 MiB reserve (nbd/budget.c); one connection takes at most an eighth of
 * it (at least 32 MiB). A request waits, and its connection stops reading, until its
 * bytes fit. */
#define NBD_DEFAULT_BUFFER_BUDGET (256u * 1024 * 1024)
#define NBD_MIN_BUFFER_BUDGET     (1u * 1024 * 1024)

/* Set the budget of the next nbd_server_start (main loop thread). */
bool nbd_server_set_buffer_budget(uint64_t bytes, GError **errp);

/* Start listening (max_connections 0: no limit). Fails if a server runs already. */
bool nbd_server_start(const NbdServerAddress *addr, guint max_connections, GError **errp);
/* True between a successful nbd_server_start and nbd_server_stop. */
bool nbd_server_is_running(void);
/* Export the named BlockDev under export_name (NULL = node name) with the id id (NULL =
 * the export name): block-export-add's id. Both the id and the name must be unused. */
bool nbd_server_add_export_id(const char *id, const char *node_name, const char *export_name,
                              bool writable, GError **errp);
/* A change bitmap an export shows as the meta context "qemu:dirty-bitmap:NAME"
 * (block-export-add's bitmaps): node NULL — bitmap name of the exported disk (QEMU's
 * string form); else bitmap name of disk node (the {node, name} form; that disk must
 * have the exported disk's size). The context is named after the bitmap alone. */
typedef struct NbdExportBitmap {
    const char *node;
    const char *name;
} NbdExportBitmap;
/* Bitmaps one export may show (base:allocation + these: 16 contexts). */
#define NBD_MAX_EXPORT_BITMAPS 15u
/* nbd_server_add_export_id() with bitmaps[0..n_bitmaps): each must exist and be neither
 * busy nor inconsistent; for a read-only export of a writable disk, a string-form bitmap
 * must not be enabled (QEMU's checks and texts). Each is busy until the export is
 * removed (nbd_server_remove_export*, nbd_server_stop). */
bool nbd_server_add_export_bitmaps(const char *id, const char *node_name,
                                   const char *export_name, bool writable,
                                   const NbdExportBitmap *bitmaps, guint n_bitmaps,
                                   GError **errp);
/* The same, with the export name as id (nbd-server-add). */
bool nbd_server_add_export(const char *node_name, const char *export_name, bool writable,
                           GError **errp);
/* Remove an export by name or by id; mode "safe" fails while clients are connected,
 * "hard" disconnects them after their in-flight requests finish. */
bool nbd_server_remove_export(const char *export_name, bool hard, GError **errp);
bool nbd_server_remove_export_id(const char *id, bool hard, GError **errp);

/* What the server knows of an export (a copy). */
typedef struct NbdExportInfo {
    char *id;
    char *name;         /* the NBD export name */
    char *node_name;
    bool writable;
} NbdExportInfo;
void nbd_export_info_free(NbdExportInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(NbdExportInfo, nbd_export_info_free)
/* The first export (in add order) whose id, name or node name matches the one given
 * (NULL: not compared), or NULL. */
NbdExportInfo *nbd_server_query_export(const char *id, const char *name, const char *node_name);
/* Every export, in add order (g_ptr_array_unref frees the infos). */
GPtrArray *nbd_server_query_exports(void);
/* True if the node is exported (blockdev_del refuses then). */
bool nbd_server_is_exported(const char *node_name);
/* Stop listening, finish in-flight requests, close every connection, remove the socket
 * file. Fails if no server runs. */
bool nbd_server_stop(GError **errp);
/* Names of the current exports (g_strfreev). */
char **nbd_server_list_exports(void);

#endif /* NBD_SERVER_H */
