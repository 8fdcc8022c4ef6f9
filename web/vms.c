/*
 * vms.c — the VMs of the host: every directory RUN-DIR/<id>/ (id a vmid) that holds a
 * socket qmp.sock, the layout of contrib/vmad@.service. A VM's disks come from its vmad
 * (query-block); a vmad that does not answer makes the VM "online": false with the
 * error, never a failed listing.
 *
 * Every QMP exchange of vma-web goes through web_vm_connect and web_qmp, which wait at
 * most --qmp-timeout for a greeting or a reply: a vmad that accepts the connection and
 * then says nothing (hung, stopped with SIGSTOP, or not vmad at all) costs a worker
 * thread that long and ends as WEB_ERROR_TIMEOUT (HTTP 504, or a task's error), never
 * a request or a task that waits for ever.
 *
 * Threads: web_vm_ids in any thread; web_vm_describe blocks on QMP (worker thread).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/qmp-client.h"
#include "web/web.h"

char *web_vm_qmp_path(const WebConfig *cfg, const char *vmid)
{
    return g_build_filename(cfg->run_dir, vmid, "qmp.sock", NULL);
}

static bool is_timeout(const GError *err)
{
    return g_error_matches(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_TIMEOUT);
}

QmpClient *web_vm_connect(const WebConfig *cfg, const char *vmid, GError **errp)
{
    g_autofree char *sock = web_vm_qmp_path(cfg, vmid);
    g_autoptr(GError) err = NULL;
    QmpClient *c = qmp_client_connect(sock, cfg->qmp_timeout_ms, &err);

    if (c == NULL && is_timeout(err)) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_TIMEOUT, "vmad did not greet within %d s (%s)",
                    cfg->qmp_timeout_ms / 1000, err->message);
    } else if (c == NULL) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_VMAD, "%s", err->message);
    }
    return c;
}

JsonNode *web_qmp(const WebConfig *cfg, QmpClient *c, const char *cmd, JsonObject *args,
                  GError **errp)
{
    g_autoptr(GError) err = NULL;
    JsonNode *r = qmp_client_execute_timeout(c, cmd, args, NULL, 0, cfg->qmp_timeout_ms, &err);

    if (r == NULL && is_timeout(err)) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_TIMEOUT, "%s: vmad did not answer within %d s",
                    cmd, cfg->qmp_timeout_ms / 1000);
    } else if (r == NULL) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_VMAD, "%s: %s", cmd, err->message);
    }
    return r;
}

static gint by_number(gconstpointer a, gconstpointer b)
{
    long x = strtol(*(char *const *)a, NULL, 10), y = strtol(*(char *const *)b, NULL, 10);

    return x < y ? -1 : x > y;
}

GPtrArray *web_vm_ids(const WebConfig *cfg)
{
    GPtrArray *ids = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GDir) d = g_dir_open(cfg->run_dir, 0, NULL);
    const char *name;

    while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
        g_autofree char *sock = NULL;
        struct stat st;
        if (!web_vmid_valid(name)) {
            continue;
        }
        sock = web_vm_qmp_path(cfg, name);
        if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode)) {
            g_ptr_array_add(ids, g_strdup(name));
        }
    }
    g_ptr_array_sort(ids, by_number);
    return ids;
}

static gint64 int_member(JsonObject *o, const char *name)
{
    JsonNode *n = o != NULL ? json_object_get_member(o, name) : NULL;

    return n != NULL && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64
               ? json_node_get_int(n)
               : -1;
}

static const char *str_member(JsonObject *o, const char *name)
{
    JsonNode *n = o != NULL ? json_object_get_member(o, name) : NULL;

    return n != NULL && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
               ? json_node_get_string(n)
               : NULL;
}

static JsonObject *obj_member(JsonObject *o, const char *name)
{
    JsonNode *n = o != NULL ? json_object_get_member(o, name) : NULL;

    return n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

JsonObject *web_vm_describe(const WebConfig *cfg, const char *vmid, bool *timeout)
{
    g_autoptr(GError) err = NULL;
    JsonObject *o = json_object_new();
    JsonArray *disks = json_array_new();

    json_object_set_string_member(o, "id", vmid);
    json_object_set_array_member(o, "disks", disks);
    g_autoptr(QmpClient) c = web_vm_connect(cfg, vmid, &err);
    g_autoptr(JsonNode) ret = NULL;
    if (c != NULL) {
        ret = web_qmp(cfg, c, "query-block", NULL, &err);
    }
    if (timeout != NULL) {
        *timeout = err != NULL && g_error_matches(err, WEB_ERROR, WEB_ERROR_TIMEOUT);
    }
    if (ret == NULL || !JSON_NODE_HOLDS_ARRAY(ret)) {
        json_object_set_boolean_member(o, "online", false);
        json_object_set_string_member(o, "error", err != NULL ? err->message
                                                              : "query-block: not a list");
        return o;
    }
    json_object_set_boolean_member(o, "online", true);
    JsonArray *blocks = json_node_get_array(ret);
    for (guint i = 0; i < json_array_get_length(blocks); i++) {
        JsonNode *bn = json_array_get_element(blocks, i);
        JsonObject *b = JSON_NODE_HOLDS_OBJECT(bn) ? json_node_get_object(bn) : NULL;
        JsonObject *ins = obj_member(b, "inserted");
        JsonObject *img = obj_member(ins, "image");
        const char *name = str_member(b, "device");
        if (name == NULL) {
            continue;
        }
        JsonObject *d = json_object_new();
        json_object_set_string_member(d, "name", name);
        json_object_set_int_member(d, "size", int_member(img, "virtual-size"));
        const char *file = str_member(ins, "file");
        if (file != NULL) {
            json_object_set_string_member(d, "file", file);
        }
        JsonNode *ro = ins != NULL ? json_object_get_member(ins, "ro") : NULL;
        json_object_set_boolean_member(d, "read-only",
                                       ro != NULL && JSON_NODE_HOLDS_VALUE(ro) &&
                                           json_node_get_boolean(ro));
        json_array_add_object_element(disks, d);
    }
    return o;
}
