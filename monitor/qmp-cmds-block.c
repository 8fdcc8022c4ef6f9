/*
 * qmp-cmds-block.c — QMP commands for disks (blockdev.h) and NBD exports
 * (nbd-server.h), and the block side of daemon shutdown.
 *
 * The block layer and the NBD server know nothing of QMP; this file adds what QEMU's
 * commands have on top of them: BLOCK_EXPORT_DELETED events, and QEMU's error messages for
 * the states it checks before calling down ("NBD server not running", "Block export id ... is already in
 * use", ...). The NBD handlers hold no state: whether the server runs, the exports and
 * their ids (block-export-add's "id"; nbd-server-add uses the export name as id) are the
 * NBD server's (nbd-server.h), asked for each time. The command line (vmad
 * --blockdev/--nbd-server/--export) reaches the same handlers through qmp_execute().
 */
#include <errno.h>
#include <string.h>

#include "blockdev.h"
#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "block/node-name.h"
#include "nbd-server.h"
#include "monitor.h"
#include "monitor/qmp-commands.h"

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
    /* vma: an archive is read-only unless read-only=off asks otherwise (refused) */
    bool is_vma = g_strcmp0(driver, "vma") == 0;
    g_autoptr(GPtrArray) base = g_ptr_array_new();
    if (is_vma && json_object_has_member(args, "base")) {
        JsonArray *arr = json_object_get_array_member(args, "base");
        for (guint i = 0; i < json_array_get_length(arr); i++) {
            g_ptr_array_add(base, (gpointer)json_array_get_string_element(arr, i));
        }
    }
    g_ptr_array_add(base, NULL);
    BlockDevOptions opts = {
        .node_name = node,
        .driver = driver, /* the driver checks the kind of file, as QEMU's does */
        .filename = filename,
        .read_only = opt_bool(args, "read-only", is_vma),
        .direct = direct,
        .locking = opt_str(args, "locking", NULL),
        .file = opt_str(args, "file", NULL),
        .backing = opt_str(args, "backing", NULL),
        .pool = opt_str(args, "pool", NULL),
        .rbd_namespace = opt_str(args, "namespace", NULL),
        .image = opt_str(args, "image", NULL),
        .conf = opt_str(args, "conf", NULL),
        .user = opt_str(args, "user", NULL),
        .snapshot = opt_str(args, "snapshot", NULL),
        .device = is_vma ? opt_str(args, "device", NULL) : NULL,
        .base = (const char *const *)base->pdata,
        .nbd_export = opt_str(args, "export", NULL),
    };
    if (json_object_has_member(args, "server")) {
        JsonObject *server = json_object_get_object_member(args, "server");
        opts.server_type = opt_str(server, "type", NULL);
        opts.server_path = opt_str(server, "path", NULL);
        opts.server_host = opt_str(server, "host", NULL);
        opts.server_port = opt_str(server, "port", NULL);
    }
    if (!blockdev_add(&opts, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_blockdev_del(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *node = json_object_get_string_member(args, "node-name");

    g_autoptr(NbdExportInfo) e = nbd_server_query_export(NULL, NULL, node);
    if (e != NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "Node '%s' is busy: block device is in use by block export '%s'", node,
                    e->id);
        return NULL;
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
    JsonArray *bitmaps = qmp_dirty_bitmaps_info(blockdev_get_dirty_bitmaps(bd));
    if (bitmaps != NULL) {
        json_object_set_array_member(ins, "dirty-bitmaps", bitmaps);
    }

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

    if (nbd_server_is_running()) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "NBD server already running");
        return NULL;
    }
    if (!nbd_server_start(&a, (guint)max_conn, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

static bool export_add(const char *id, const char *node, const char *name, bool writable,
                       const NbdExportBitmap *bitmaps, guint n_bitmaps, GError **errp)
{
    if (!nbd_server_is_running()) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "NBD server not running");
        return false;
    }
    g_autoptr(NbdExportInfo) by_id = nbd_server_query_export(id, NULL, NULL);
    if (by_id != NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "Block export id '%s' is already in use", id);
        return false;
    }
    g_autoptr(NbdExportInfo) by_name = nbd_server_query_export(NULL, name, NULL);
    if (by_name != NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "NBD server already has export named '%s'", name);
        return false;
    }
    return nbd_server_add_export_bitmaps(id, node, name, writable, bitmaps, n_bitmaps, errp);
}

/* Remove the export e describes and tell the monitors. */
static bool export_del(const NbdExportInfo *e, bool hard, GError **errp)
{
    if (!nbd_server_remove_export_id(e->id, hard, errp)) {
        return false;
    }
    JsonObject *data = json_object_new();
    json_object_set_string_member(data, "id", e->id);
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
    NbdExportBitmap bitmap = { .name = opt_str(args, "bitmap", NULL) };

    if (!export_add(name, device, name, opt_bool(args, "writable", false), &bitmap,
                    bitmap.name != NULL ? 1 : 0, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_nbd_server_remove(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *name = json_object_get_string_member(args, "name");
    g_autoptr(NbdExportInfo) e = nbd_server_query_export(NULL, name, NULL);

    if (e == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Export '%s' is not found", name);
        return NULL;
    }
    if (!export_del(e, remove_mode_hard(args), errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

/* Remove every export, hard and newest first, and stop the server; the first error is
 * returned. */
static bool server_stop(GError **errp)
{
    g_autoptr(GPtrArray) list = nbd_server_query_exports();
    GError *first = NULL;

    for (guint i = list->len; i > 0; i--) {
        GError *err = NULL;
        /* on failure the export goes anyway: the server below goes with all of them */
        if (!export_del(g_ptr_array_index(list, i - 1), true, &err)) {
            if (first == NULL) {
                first = err;
            } else {
                g_error_free(err);
            }
        }
    }
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
    if (!nbd_server_is_running()) {
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
    JsonArray *list = json_object_has_member(args, "bitmaps")
                      ? json_object_get_array_member(args, "bitmaps") : NULL;
    guint n = list != NULL ? json_array_get_length(list) : 0;
    g_autofree NbdExportBitmap *bitmaps = g_new0(NbdExportBitmap, MAX(n, 1));

    for (guint i = 0; i < n; i++) {
        if (!qmp_bitmap_or_str(json_array_get_element(list, i), &bitmaps[i].node,
                               &bitmaps[i].name)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Invalid parameter type for 'bitmaps[%u]', expected: "
                        "BlockDirtyBitmapOrStr", i);
            return NULL;
        }
    }
    if (!export_add(id, node, opt_str(args, "name", node), opt_bool(args, "writable", false),
                    bitmaps, n, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_block_export_del(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *id = json_object_get_string_member(args, "id");
    g_autoptr(NbdExportInfo) e = nbd_server_query_export(id, NULL, NULL);

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
    g_autoptr(GPtrArray) list = nbd_server_query_exports();
    JsonArray *arr = json_array_new();

    for (guint i = 0; i < list->len; i++) {
        const NbdExportInfo *e = g_ptr_array_index(list, i);
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

    if (nbd_server_is_running() && !server_stop(&err)) {
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
