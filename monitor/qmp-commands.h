/*
 * qmp-commands.h — the QMP command handlers, one per schema command, listed in the
 * handler table of qmp-commands.c. Every handler is a QmpCommandFn (see monitor.h):
 * main loop thread, arguments already checked against qapi-schema.json.
 */
#ifndef MONITOR_QMP_COMMANDS_H
#define MONITOR_QMP_COMMANDS_H

#include "monitor.h"

/* monitor itself (qmp-commands.c) */
JsonNode *qmp_cmd_qmp_capabilities(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_query_version(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_query_commands(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_query_qmp_schema(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_quit(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_getfd(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_closefd(QmpSession *s, JsonObject *args, GError **errp);

/* disks and NBD exports (qmp-cmds-block.c) */
JsonNode *qmp_cmd_query_block(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_blockdev_add(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_blockdev_del(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_nbd_server_start(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_nbd_server_add(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_nbd_server_remove(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_nbd_server_stop(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_export_add(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_export_del(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_query_block_exports(QmpSession *s, JsonObject *args, GError **errp);

/* change bitmaps (qmp-cmds-bitmap.c) */
JsonNode *qmp_cmd_block_dirty_bitmap_add(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_dirty_bitmap_remove(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_dirty_bitmap_clear(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_dirty_bitmap_enable(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_dirty_bitmap_disable(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_dirty_bitmap_merge(QmpSession *s, JsonObject *args, GError **errp);
/* query-block's dirty-bitmaps list of a disk (BlockDirtyInfo), NULL when it has none. */
struct DirtyBitmapSet;
JsonArray *qmp_dirty_bitmaps_info(struct DirtyBitmapSet *set);
/* A BlockDirtyBitmapOrStr element: a string (*node = NULL, *name) or an object with
 * exactly the string members node and name. False for anything else. The strings
 * point into el. */
bool qmp_bitmap_or_str(JsonNode *el, const char **node, const char **name);

/* the backup job (qmp-cmds-backup.c) */
JsonNode *qmp_cmd_backup(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_backup_cancel(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_query_backup(QmpSession *s, JsonObject *args, GError **errp);

/* jobs of every kind (qmp-cmds-job.c) */
JsonNode *qmp_cmd_query_jobs(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_job_cancel(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_job_cancel(QmpSession *s, JsonObject *args, GError **errp);
JsonNode *qmp_cmd_block_job_set_speed(QmpSession *s, JsonObject *args, GError **errp);
/* Send job events as QMP events from now on (idempotent). */
void qmp_job_events_enable(void);
/* Is id the id of a running job of any kind? */
bool qmp_job_id_in_use(const char *id);

/* live restore (qmp-cmds-stream.c) */
JsonNode *qmp_cmd_block_stream(QmpSession *s, JsonObject *args, GError **errp);
/* Daemon shutdown, stream side: cancel every stream job and wait until each has ended
 * (what was copied stays recorded). Before qmp_backup_shutdown(). */
void qmp_stream_shutdown(void);

/* vmad --fleecing-dir DIR (must be a directory) and --backup-buffer-size SIZE (a size as
 * util/size.h parses it, docs/sizes.md; at least 64K): where and how much copy-before-write data a
 * backup keeps. Main loop thread, before backups run. */
bool qmp_backup_set_fleecing_dir(const char *dir, GError **errp);
bool qmp_backup_set_buffer_size(const char *text, GError **errp);
/* Daemon shutdown, backup side: cancel a running backup and wait until it has ended.
 * Before qmp_block_shutdown(). */
void qmp_backup_shutdown(void);

/*
 * Daemon shutdown, block side: remove every export (BLOCK_EXPORT_DELETED each), stop
 * the NBD server (in-flight requests finish, its socket is removed), flush and close
 * every disk. Main loop thread; safe to call when nothing was set up.
 */
void qmp_block_shutdown(void);

#endif /* MONITOR_QMP_COMMANDS_H */
