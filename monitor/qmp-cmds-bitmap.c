/*
 * qmp-cmds-bitmap.c — QMP commands for change bitmaps: block-dirty-bitmap-add, -remove,
 * -clear, -enable, -disable, -merge (QEMU's names, arguments and messages).
 *
 * Stateless: the bitmaps live in the block layer (block/dirty-bitmap.h, one set per
 * disk); this file finds the disk, translates arguments and calls in. Main loop thread.
 */
#include <string.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "blockdev.h"
#include "monitor.h"
#include "monitor/qmp-commands.h"

/* The disk named node, with QEMU's message for the command family. */
static BlockDev *find_node(const char *node, bool add, GError **errp)
{
    BlockDev *bd = blockdev_find(node, NULL);

    if (bd == NULL) {
        if (add) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Cannot find device='%s' nor node-name='%s'", node, node);
        } else {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Node '%s' not found", node);
        }
    }
    return bd;
}

JsonArray *qmp_dirty_bitmaps_info(DirtyBitmapSet *set)
{
    g_autoptr(GPtrArray) list = dirty_set_query(set);

    if (list->len == 0) {
        return NULL;
    }
    JsonArray *arr = json_array_new();
    for (guint i = 0; i < list->len; i++) {
        const DirtyBitmapInfo *info = g_ptr_array_index(list, i);
        JsonObject *o = json_object_new();
        json_object_set_string_member(o, "name", info->name);
        json_object_set_int_member(o, "count", (gint64)info->count);
        json_object_set_int_member(o, "granularity", info->granularity);
        json_object_set_boolean_member(o, "recording", info->recording);
        json_object_set_boolean_member(o, "busy", info->busy);
        json_object_set_boolean_member(o, "persistent", info->persistent);
        if (info->inconsistent) {
            json_object_set_boolean_member(o, "inconsistent", TRUE);
        }
        json_array_add_object_element(arr, o);
    }
    return arr;
}

JsonNode *qmp_cmd_block_dirty_bitmap_add(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *node = json_object_get_string_member(args, "node");
    const char *name = json_object_get_string_member(args, "name");
    gint64 gran = json_object_get_int_member_with_default(args, "granularity", 0);
    bool persistent = json_object_get_boolean_member_with_default(args, "persistent", FALSE);
    bool disabled = json_object_get_boolean_member_with_default(args, "disabled", FALSE);

    if (json_object_has_member(args, "granularity") && gran == 0) {
        g_set_error_literal(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "Granularity must be power of 2 and at least 512");
        return NULL;
    }
    g_autoptr(BlockDev) bd = find_node(node, true, errp);
    if (bd == NULL) {
        return NULL;
    }
    DirtyBitmapSet *set = blockdev_get_dirty_bitmaps(bd);
    if (!dirty_set_add(set, node, name, (uint32_t)gran, persistent, disabled, errp)) {
        return NULL;
    }
    if (persistent) {
        g_autoptr(GError) err = NULL;
        if (!blockdev_save_bitmaps(bd, &err)) {
            (void)dirty_set_remove(set, name, NULL);
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Can't make bitmap '%s' persistent in '%s': %s", name, node,
                        err->message);
            return NULL;
        }
    }
    return qmp_return_empty();
}

typedef bool (*SimpleOp)(DirtyBitmapSet *set, const char *name, GError **errp);

static JsonNode *simple_op(JsonObject *args, SimpleOp op, GError **errp)
{
    const char *node = json_object_get_string_member(args, "node");
    const char *name = json_object_get_string_member(args, "name");
    g_autoptr(BlockDev) bd = find_node(node, false, errp);

    if (bd == NULL || !op(blockdev_get_dirty_bitmaps(bd), name, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_block_dirty_bitmap_remove(QmpSession *s, JsonObject *args, GError **errp)
{
    return simple_op(args, dirty_set_remove, errp);
}

JsonNode *qmp_cmd_block_dirty_bitmap_clear(QmpSession *s, JsonObject *args, GError **errp)
{
    return simple_op(args, dirty_set_clear, errp);
}

JsonNode *qmp_cmd_block_dirty_bitmap_enable(QmpSession *s, JsonObject *args, GError **errp)
{
    return simple_op(args, dirty_set_enable, errp);
}

JsonNode *qmp_cmd_block_dirty_bitmap_disable(QmpSession *s, JsonObject *args, GError **errp)
{
    return simple_op(args, dirty_set_disable, errp);
}

bool qmp_bitmap_or_str(JsonNode *el, const char **node, const char **name)
{
    *node = NULL;
    *name = NULL;
    if (JSON_NODE_HOLDS_VALUE(el) && json_node_get_value_type(el) == G_TYPE_STRING) {
        *name = json_node_get_string(el);
    } else if (JSON_NODE_HOLDS_OBJECT(el)) {
        JsonObject *o = json_node_get_object(el);
        JsonNode *nn = json_object_get_member(o, "node");
        JsonNode *nm = json_object_get_member(o, "name");
        if (json_object_get_size(o) == 2 && nn != NULL && nm != NULL &&
            JSON_NODE_HOLDS_VALUE(nn) && json_node_get_value_type(nn) == G_TYPE_STRING &&
            JSON_NODE_HOLDS_VALUE(nm) && json_node_get_value_type(nm) == G_TYPE_STRING) {
            *node = json_node_get_string(nn);
            *name = json_node_get_string(nm);
        }
    }
    return *name != NULL;
}

JsonNode *qmp_cmd_block_dirty_bitmap_merge(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *node = json_object_get_string_member(args, "node");
    const char *target = json_object_get_string_member(args, "target");
    JsonArray *srcs = json_object_get_array_member(args, "bitmaps");
    g_autoptr(BlockDev) bd = find_node(node, false, errp);

    if (bd == NULL) {
        return NULL;
    }
    DirtyBitmapSet *set = blockdev_get_dirty_bitmaps(bd);
    /* Check every source first, so that a bad one leaves the target as it was. */
    guint n = json_array_get_length(srcs);
    g_autoptr(GPtrArray) src_bds = g_ptr_array_new_with_free_func(
        (GDestroyNotify)blockdev_unref);
    g_autoptr(GPtrArray) src_names = g_ptr_array_new();
    for (guint i = 0; i < n; i++) {
        const char *snode = NULL;
        const char *sname = NULL;
        if (!qmp_bitmap_or_str(json_array_get_element(srcs, i), &snode, &sname)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Invalid parameter type for 'bitmaps[%u]', expected: "
                        "BlockDirtyBitmapOrStr", i);
            return NULL;
        }
        BlockDev *sbd = find_node(snode != NULL ? snode : node, false, errp);
        if (sbd == NULL) {
            return NULL;
        }
        g_ptr_array_add(src_bds, sbd);
        g_ptr_array_add(src_names, (gpointer)sname);
    }
    /* Every check first (main loop: nothing else changes bitmap states meanwhile), so
     * a bad source leaves the target as it was. */
    for (guint i = 0; i < n; i++) {
        if (!dirty_set_merge_check(set, target, blockdev_get_dirty_bitmaps(src_bds->pdata[i]),
                                   src_names->pdata[i], errp)) {
            return NULL;
        }
    }
    for (guint i = 0; i < n; i++) {
        if (!dirty_set_merge(set, target, blockdev_get_dirty_bitmaps(src_bds->pdata[i]),
                             src_names->pdata[i], errp)) {
            return NULL;
        }
    }
    return qmp_return_empty();
}
