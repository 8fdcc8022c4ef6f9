/*
 * qmp-cmds-block.c — QMP commands for disks (blockdev.h) and NBD exports
 * (nbd-server.h), and the block side of daemon shutdown.
 *
 * The block layer and the NBD server know nothing of QMP; this file adds what QEMU's
 * commands have on top of them: export ids (block-export-add's "id"; nbd-server-add
 * uses the export name as id), BLOCK_EXPORT_DELETED events, and QEMU's error messages for the states it checks
 * before calling down ("NBD server not running", "Block export id ... is already in
 * use", ...). The command line (vmad --blockdev/--nbd-server/--export) reaches the same
 * handlers through qmp_execute().
 *
 * State below is touched only on the main loop thread.
 */
#include <errno.h>
#include <string.h>

#include "blockdev.h"
#include "block/node-name.h"
#include "nbd-server.h"
#include "monitor.h"
#include "monitor/qmp-commands.h"

typedef struct Export {
    char *id;
    char *name;        /* NBD export name */
    char *node_name;
} Export;

static GPtrArray *exports;       /* Export *, in creation order */
static bool nbd_running;

static void export_free(gpointer p)
{
    Export *e = p;

    g_free(e->id);
    g_free(e->name);
    g_free(e->node_name);
    g_free(e);
}

static void init_state(void)
{
    if (exports == NULL) {
        exports = g_ptr_array_new_with_free_func(export_free);
    }
}

static Export *find_export(const char *id, const char *name)
{
    init_state();
    for (guint i = 0; i < exports->len; i++) {
        Export *e = g_ptr_array_index(exports, i);
        if ((id != NULL && strcmp(e->id, id) == 0) ||
            (name != NULL && strcmp(e->name, name) == 0)) {
            return e;
        }
    }
    return NULL;
}

static const char *opt_str(JsonObject *args, const char *key, const char *dflt)
{
    return json_object_has_member(args, key) ? json_object_get_string_member(args, key) : dflt;
}

static bool opt_bool(JsonObject *args, const char *key, bool dflt)
{
    return json_object_has_member(args, key) ? json_object_get_boolean_member(args, key) : dflt;
}

/* ---- disks --------------------------------------------------------------------------- */

JsonNode *qmp_cmd_blockdev_add(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *driver = json_object_get_string_member(args, "driver");
    const char *node = json_object_get_string_member(args, "node-name");
    const char *filename = opt_str(args, "filename", NULL);
    bool direct = false;

    init_state();
    if (json_object_has_member(args, "cache")) {
        direct = opt_bool(json_object_get_object_member(args, "cache"), "direct", false);
    }
    if (json_object_has_member(args, "direct")) {
        bool d = json_object_get_boolean_member(args, "direct");
        if (json_object_has_member(args, "cache") &&
            json_object_has_member(json_object_get_object_member(args, "cache"), "direct") &&
            d != direct) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "blockdev-add %s: 'direct' and 'cache.direct' disagree", node);
            return NULL;
        }
        direct = d;
    }
    if (!node_name_check(node, errp)) {
        /* before any look at the file: QEMU's order, and no file named by a bad node */
        return NULL;
    }
    BlockDevOptions opts = {
        .node_name = node,
        .driver = driver, /* the driver checks the kind of file, as QEMU's does */
        .filename = filename,
        .read_only = opt_bool(args, "read-only", false),
        .direct = direct,
        .locking = opt_str(args, "locking", NULL),
        .file = opt_str(args, "file", NULL),
        .backing = opt_str(args, "backing", NULL),
    };
    if (!blockdev_add(&opts, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_blockdev_del(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *node = json_object_get_string_member(args, "node-name");

    init_state();
    for (guint i = 0; i < exports->len; i++) {
        Export *e = g_ptr_array_index(exports, i);
        if (strcmp(e->node_name, node) == 0) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Node '%s' is busy: block device is in use by block export '%s'",
                        node, e->id);
            return NULL;
        }
    }
    if (!blockdev_del(node, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

static JsonObject *block_info(BlockDev *bd)
{
    const char *name = blockdev_get_name(bd);
    const char *file = blockdev_get_filename(bd);
    JsonObject *cache = json_object_new();
    JsonObject *image = json_object_new();
    JsonObject *ins = json_object_new();
    JsonObject *info = json_object_new();

    json_object_set_boolean_member(cache, "writeback", TRUE);
    json_object_set_boolean_member(cache, "direct", blockdev_is_direct(bd));
    json_object_set_boolean_member(cache, "no-flush", FALSE);

    json_object_set_string_member(image, "filename", file);
    json_object_set_string_member(image, "format", "raw");
    json_object_set_int_member(image, "virtual-size", (gint64)blockdev_get_size(bd));

    json_object_set_string_member(ins, "file", file);
    json_object_set_string_member(ins, "node-name", name);
    json_object_set_boolean_member(ins, "ro", blockdev_is_read_only(bd));
    json_object_set_string_member(ins, "drv", blockdev_get_driver(bd));
    json_object_set_boolean_member(ins, "encrypted", FALSE);
    json_object_set_int_member(ins, "backing_file_depth", 0);
    json_object_set_string_member(ins, "detect_zeroes", "off");
    static const char *const zero_members[] = {"bps", "bps_rd", "bps_wr", "iops", "iops_rd",
                                               "iops_wr", "write_threshold"};
    for (size_t i = 0; i < G_N_ELEMENTS(zero_members); i++) {
        json_object_set_int_member(ins, zero_members[i], 0);
    }
    json_object_set_object_member(ins, "cache", cache);
    json_object_set_object_member(ins, "image", image);

    json_object_set_string_member(info, "device", name);
    json_object_set_string_member(info, "type", "unknown");
    json_object_set_boolean_member(info, "removable", FALSE);
    json_object_set_boolean_member(info, "locked", FALSE);
    json_object_set_object_member(info, "inserted", ins);
    return info;
}

JsonNode *qmp_cmd_query_block(QmpSession *s, JsonObject *args, GError **errp)
{
    g_autoptr(GPtrArray) list = blockdev_list();
    JsonArray *arr = json_array_new();

    init_state();
    for (guint i = 0; i < list->len; i++) {
        BlockDev *bd = g_ptr_array_index(list, i);
        json_array_add_object_element(arr, block_info(bd));
        blockdev_unref(bd);
    }
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(n, arr);
    return n;
}

/* ---- NBD server and exports -------------------------------------------------------------- */

JsonNode *qmp_cmd_nbd_server_start(QmpSession *s, JsonObject *args, GError **errp)
{
    JsonObject *addr = json_object_get_object_member(args, "addr");
    gint64 max_conn = json_object_has_member(args, "max-connections")
                      ? json_object_get_int_member(args, "max-connections")
                      : NBD_DEFAULT_MAX_CONNECTIONS;
    NbdServerAddress a = {
        .type = json_object_get_string_member(addr, "type"),
        .path = opt_str(addr, "path", NULL),
        .host = opt_str(addr, "host", NULL),
        .port = opt_str(addr, "port", NULL),
    };

    init_state();
    if (nbd_running) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "NBD server already running");
        return NULL;
    }
    if (!nbd_server_start(&a, (guint)max_conn, errp)) {
        return NULL;
    }
    nbd_running = true;
    return qmp_return_empty();
}

static bool export_add(const char *id, const char *node, const char *name, bool writable,
                       GError **errp)
{
    init_state();
    if (!nbd_running) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "NBD server not running");
        return false;
    }
    if (find_export(id, NULL) != NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "Block export id '%s' is already in use", id);
        return false;
    }
    if (find_export(NULL, name) != NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "NBD server already has export named '%s'", name);
        return false;
    }
    if (!nbd_server_add_export(node, name, writable, errp)) {
        return false;
    }
    Export *e = g_new0(Export, 1);
    e->id = g_strdup(id);
    e->name = g_strdup(name);
    e->node_name = g_strdup(node);
    g_ptr_array_add(exports, e);
    return true;
}

static bool export_del(Export *e, bool hard, GError **errp)
{
    if (!nbd_server_remove_export(e->name, hard, errp)) {
        return false;
    }
    JsonObject *data = json_object_new();
    json_object_set_string_member(data, "id", e->id);
    g_ptr_array_remove(exports, e);        /* frees e */
    qmp_event_emit("BLOCK_EXPORT_DELETED", data);
    return true;
}

static bool remove_mode_hard(JsonObject *args)
{
    return strcmp(opt_str(args, "mode", "safe"), "hard") == 0;
}

JsonNode *qmp_cmd_nbd_server_add(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *device = json_object_get_string_member(args, "device");
    const char *name = opt_str(args, "name", device);

    if (!export_add(name, device, name, opt_bool(args, "writable", false), errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_nbd_server_remove(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *name = json_object_get_string_member(args, "name");
    Export *e = find_export(NULL, name);

    if (e == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Export '%s' is not found", name);
        return NULL;
    }
    if (!export_del(e, remove_mode_hard(args), errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

/* Remove every export, hard, and stop the server; the first error is returned. */
static bool server_stop(GError **errp)
{
    GError *first = NULL;

    while (exports->len > 0) {
        Export *e = g_ptr_array_index(exports, exports->len - 1);
        GError *err = NULL;
        if (!export_del(e, true, &err)) {
            /* forget it anyway: the server below goes away with all its exports */
            g_ptr_array_remove_index(exports, exports->len - 1);
            if (first == NULL) {
                first = err;
            } else {
                g_error_free(err);
            }
        }
    }
    nbd_running = false;
    GError *err = NULL;
    if (!nbd_server_stop(&err)) {
        if (first == NULL) {
            first = err;
        } else {
            g_error_free(err);
        }
    }
    if (first != NULL) {
        g_propagate_error(errp, first);
        return false;
    }
    return true;
}

JsonNode *qmp_cmd_nbd_server_stop(QmpSession *s, JsonObject *args, GError **errp)
{
    init_state();
    if (!nbd_running) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "NBD server not running");
        return NULL;
    }
    if (!server_stop(errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_block_export_add(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *id = json_object_get_string_member(args, "id");
    const char *node = json_object_get_string_member(args, "node-name");

    if (!export_add(id, node, opt_str(args, "name", node), opt_bool(args, "writable", false),
                    errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_block_export_del(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *id = json_object_get_string_member(args, "id");
    Export *e = find_export(id, NULL);

    if (e == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Export '%s' is not found", id);
        return NULL;
    }
    if (!export_del(e, remove_mode_hard(args), errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_query_block_exports(QmpSession *s, JsonObject *args, GError **errp)
{
    JsonArray *arr = json_array_new();

    init_state();
    for (guint i = 0; i < exports->len; i++) {
        Export *e = g_ptr_array_index(exports, i);
        JsonObject *info = json_object_new();
        json_object_set_string_member(info, "id", e->id);
        json_object_set_string_member(info, "type", "nbd");
        json_object_set_string_member(info, "node-name", e->node_name);
        json_object_set_boolean_member(info, "shutting-down", FALSE);
        json_array_add_object_element(arr, info);
    }
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(n, arr);
    return n;
}

/* ---- shutdown -------------------------------------------------------------------------- */

void qmp_block_shutdown(void)
{
    g_autoptr(GError) err = NULL;

    init_state();
    if (nbd_running && !server_stop(&err)) {
        g_warning("shutdown: stop NBD server: %s", err->message);
    }
    g_autoptr(GPtrArray) list = blockdev_list();
    for (guint i = 0; i < list->len; i++) {
        BlockDev *bd = g_ptr_array_index(list, i);
        int r = blockdev_is_read_only(bd) ? 0 : blockdev_flush(bd);
        if (r < 0) {
            g_warning("shutdown: flush %s: %s", blockdev_get_name(bd), g_strerror(-r));
        }
        blockdev_unref(bd);
    }
    blockdev_close_all();
}
