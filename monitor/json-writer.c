/*
 * json-writer.c — QEMU-style compact JSON output, ASCII only (see json-writer.h); strings
 * go through the shared escaper (util/json-escape.c) in its ASCII mode.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "monitor/json-writer.h"
#include "util/json-escape.h"

static void append_string(GString *out, const char *str)
{
    json_escape_append(out, str, JSON_ESCAPE_ASCII);
}

static void append_value(GString *out, JsonNode *node)
{
    GType t = json_node_get_value_type(node);

    if (t == G_TYPE_INT64) {
        g_string_append_printf(out, "%" PRId64, (int64_t)json_node_get_int(node));
    } else if (t == G_TYPE_DOUBLE) {
        double d = json_node_get_double(node);
        if (!isfinite(d)) {
            g_string_append(out, "null");   /* JSON has no infinities */
        } else {
            char buf[G_ASCII_DTOSTR_BUF_SIZE];
            g_string_append(out, g_ascii_formatd(buf, sizeof(buf), "%.17g", d));
        }
    } else if (t == G_TYPE_BOOLEAN) {
        g_string_append(out, json_node_get_boolean(node) ? "true" : "false");
    } else if (t == G_TYPE_STRING) {
        append_string(out, json_node_get_string(node));
    } else {
        g_string_append(out, "null");
    }
}

void json_writer_append(GString *out, JsonNode *node)
{
    if (node == NULL) {
        g_string_append(out, "null");
        return;
    }
    switch (json_node_get_node_type(node)) {
    case JSON_NODE_OBJECT: {
        JsonObject *obj = json_node_get_object(node);
        GList *members = json_object_get_members(obj);   /* insertion order */
        g_string_append_c(out, '{');
        for (GList *l = members; l != NULL; l = l->next) {
            if (l != members) {
                g_string_append(out, ", ");
            }
            append_string(out, l->data);
            g_string_append(out, ": ");
            json_writer_append(out, json_object_get_member(obj, l->data));
        }
        g_string_append_c(out, '}');
        g_list_free(members);
        break;
    }
    case JSON_NODE_ARRAY: {
        JsonArray *arr = json_node_get_array(node);
        guint n = json_array_get_length(arr);
        g_string_append_c(out, '[');
        for (guint i = 0; i < n; i++) {
            if (i > 0) {
                g_string_append(out, ", ");
            }
            json_writer_append(out, json_array_get_element(arr, i));
        }
        g_string_append_c(out, ']');
        break;
    }
    case JSON_NODE_VALUE:
        append_value(out, node);
        break;
    case JSON_NODE_NULL:
    default:
        g_string_append(out, "null");
        break;
    }
}

char *json_writer_to_string(JsonNode *node)
{
    GString *out = g_string_new(NULL);

    json_writer_append(out, node);
    return g_string_free(out, FALSE);
}
