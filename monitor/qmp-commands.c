/*
 * qmp-commands.c — the handler table (command name -> function) and the commands of
 * the monitor itself: negotiation, introspection, quit, getfd/closefd.
 *
 * The table is the only place a command is bound to code; the schema is the only place
 * it is described. test-qmp-schema checks that both list the same commands.
 */
#include <string.h>
#include <unistd.h>

#include "monitor.h"
#include "monitor/qapi-schema.h"
#include "monitor/qmp-commands.h"
#include "monitor/qmp-internal.h"

const QmpCommand qmp_commands[] = {
    {"qmp_capabilities", qmp_cmd_qmp_capabilities},
    {"query-version", qmp_cmd_query_version},
    {"query-commands", qmp_cmd_query_commands},
    {"query-qmp-schema", qmp_cmd_query_qmp_schema},
    {"quit", qmp_cmd_quit},
    {"query-block", qmp_cmd_query_block},
    {"blockdev-add", qmp_cmd_blockdev_add},
    {"blockdev-del", qmp_cmd_blockdev_del},
    {"nbd-server-start", qmp_cmd_nbd_server_start},
    {"nbd-server-add", qmp_cmd_nbd_server_add},
    {"nbd-server-remove", qmp_cmd_nbd_server_remove},
    {"nbd-server-stop", qmp_cmd_nbd_server_stop},
    {"block-export-add", qmp_cmd_block_export_add},
    {"block-export-del", qmp_cmd_block_export_del},
    {"query-block-exports", qmp_cmd_query_block_exports},
    {"block-dirty-bitmap-add", qmp_cmd_block_dirty_bitmap_add},
    {"block-dirty-bitmap-remove", qmp_cmd_block_dirty_bitmap_remove},
    {"block-dirty-bitmap-clear", qmp_cmd_block_dirty_bitmap_clear},
    {"block-dirty-bitmap-enable", qmp_cmd_block_dirty_bitmap_enable},
    {"block-dirty-bitmap-disable", qmp_cmd_block_dirty_bitmap_disable},
    {"block-dirty-bitmap-merge", qmp_cmd_block_dirty_bitmap_merge},
    {"getfd", qmp_cmd_getfd},
    {"closefd", qmp_cmd_closefd},
    {"backup", qmp_cmd_backup},
    {"backup-cancel", qmp_cmd_backup_cancel},
    {"query-backup", qmp_cmd_query_backup},
    {"query-jobs", qmp_cmd_query_jobs},
    {"job-cancel", qmp_cmd_job_cancel},
    {"block-job-cancel", qmp_cmd_block_job_cancel},
    {"block-job-set-speed", qmp_cmd_block_job_set_speed},
    {"block-stream", qmp_cmd_block_stream},
    {NULL, NULL},
};

JsonNode *qmp_cmd_qmp_capabilities(QmpSession *s, JsonObject *args, GError **errp)
{
    bool oob = false;

    if (s == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "qmp_capabilities: only a monitor connection negotiates capabilities");
        return NULL;
    }
    if (qmp_session_is_negotiated(s)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                    "Capabilities negotiation is already complete, command ignored");
        return NULL;
    }
    if (json_object_has_member(args, "enable")) {
        JsonArray *caps = json_object_get_array_member(args, "enable");
        for (guint i = 0; i < json_array_get_length(caps); i++) {
            if (strcmp(json_array_get_string_element(caps, i), "oob") == 0) {
                oob = true;
            }
        }
    }
    qmp_session_set_negotiated(s, oob);
    return qmp_return_empty();
}

JsonNode *qmp_cmd_query_version(QmpSession *s, JsonObject *args, GError **errp)
{
    return qmp_version_info();
}

JsonNode *qmp_cmd_query_commands(QmpSession *s, JsonObject *args, GError **errp)
{
    const QapiSchema *schema = qapi_schema_builtin();
    JsonArray *list = json_array_new();

    for (guint i = 0; i < qapi_schema_n_commands(schema); i++) {
        JsonObject *info = json_object_new();
        json_object_set_string_member(info, "name", qapi_schema_command_name(schema, i));
        json_array_add_object_element(list, info);
    }
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(n, list);
    return n;
}

JsonNode *qmp_cmd_query_qmp_schema(QmpSession *s, JsonObject *args, GError **errp)
{
    return qapi_schema_introspect(qapi_schema_builtin());
}

JsonNode *qmp_cmd_quit(QmpSession *s, JsonObject *args, GError **errp)
{
    /* only asks the main loop to stop: the reply is queued before anything shuts down */
    qmp_request_shutdown("host-qmp-quit");
    return qmp_return_empty();
}

JsonNode *qmp_cmd_getfd(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *name = json_object_get_string_member(args, "fdname");

    if (g_ascii_isdigit(name[0])) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "Parameter 'fdname' expects a name not starting with a digit");
        return NULL;
    }
    int fd = qmp_session_pop_received_fd(s);
    if (fd < 0) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "No file descriptor supplied via SCM_RIGHTS");
        return NULL;
    }
    if (!qmp_session_store_fd(s, name, fd, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_closefd(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *name = json_object_get_string_member(args, "fdname");

    if (s == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "File descriptor named '%s' not found", name);
        return NULL;
    }
    if (!qmp_session_close_named_fd(s, name, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}
