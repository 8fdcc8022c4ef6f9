/*
 * api.c — the HTTP side of vma-web: the JSON API under /api/v1/ and the page.
 *
 * Every request under /api/ must carry "Authorization: Bearer TOKEN" (compared in
 * constant time); without it the answer is 401 whatever the path, so nothing about the
 * host leaks to a client without the token. A foreign web page cannot send that header
 * without a CORS preflight, which we never answer, and everything that changes state is
 * POST or DELETE only: that is the CSRF defence. The page's static files (no secrets
 * in them) are served without the token; it asks the user for it.
 *
 * Every failure is a JSON object {"error": MESSAGE} with a 4xx status for a bad request
 * (400 malformed body, unknown member, bad name; 401 token; 404 unknown VM, archive,
 * task or path; 405 method; 409 busy or conflict; 413 body too large) and 5xx when the
 * host or vmad failed us (500, 502). Names from the path are checked against the exact
 * shapes of names.c before any file system call, so no request reaches outside the
 * backup directory. docs/web-api.md documents each route.
 *
 * Listing VMs asks each vmad (QMP blocks), so that request is answered from a worker
 * thread: the message is paused and resumed in the main loop.
 */
#include <stdarg.h>
#include <string.h>

#include <libsoup/soup.h>

#include "util/json-splitter.h"
#include "web/web.h"

#define BODY_MAX (1024 * 1024)

static const WebConfig *config;

/* ---- replies --------------------------------------------------------------------------- */

static void common_headers(SoupServerMessage *msg)
{
    SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);

    soup_message_headers_replace(h, "X-Content-Type-Options", "nosniff");
    soup_message_headers_replace(h, "X-Frame-Options", "DENY");
    soup_message_headers_replace(h, "Referrer-Policy", "no-referrer");
    soup_message_headers_replace(h, "Cache-Control", "no-store");
    soup_message_headers_replace(h, "Content-Security-Policy",
                                 "default-src 'self'; frame-ancestors 'none'; form-action 'self'");
}

/* Reply with node (taken) as JSON. */
static void reply_json(SoupServerMessage *msg, guint status, JsonNode *node)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    gsize len;

    json_generator_set_root(gen, node);
    char *text = json_generator_to_data(gen, &len);
    json_node_unref(node);
    common_headers(msg);
    soup_server_message_set_status(msg, status, NULL);
    soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_TAKE, text, len);
}

static void reply_object(SoupServerMessage *msg, guint status, JsonObject *o)
{
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);

    json_node_take_object(n, o);
    reply_json(msg, status, n);
}

static void reply_array(SoupServerMessage *msg, guint status, JsonArray *a)
{
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);

    json_node_take_array(n, a);
    reply_json(msg, status, n);
}

static void reply_error(SoupServerMessage *msg, guint status, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
static void reply_error(SoupServerMessage *msg, guint status, const char *fmt, ...)
{
    va_list ap;
    JsonObject *o = json_object_new();

    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    json_object_set_string_member(o, "error", text);
    reply_object(msg, status, o);
}

static guint status_of(const GError *err)
{
    if (err->domain != WEB_ERROR) {
        return SOUP_STATUS_INTERNAL_SERVER_ERROR;
    }
    switch ((WebError)err->code) {
    case WEB_ERROR_INVALID:
        return SOUP_STATUS_BAD_REQUEST;
    case WEB_ERROR_NOT_FOUND:
        return SOUP_STATUS_NOT_FOUND;
    case WEB_ERROR_CONFLICT:
        return SOUP_STATUS_CONFLICT;
    case WEB_ERROR_VMAD:
        return SOUP_STATUS_BAD_GATEWAY;
    case WEB_ERROR_TIMEOUT:
        return SOUP_STATUS_GATEWAY_TIMEOUT;
    case WEB_ERROR_INTERNAL:
        break;
    }
    return SOUP_STATUS_INTERNAL_SERVER_ERROR;
}

static void reply_gerror(SoupServerMessage *msg, const GError *err)
{
    reply_error(msg, status_of(err), "%s", err->message);
}

static void reply_task(SoupServerMessage *msg, char *id)
{
    JsonObject *o = web_task_describe(id);

    if (o == NULL) {
        o = json_object_new();
    }
    json_object_set_string_member(o, "task", id);
    g_free(id);
    reply_object(msg, SOUP_STATUS_ACCEPTED, o);
}

/* ---- request pieces ------------------------------------------------------------------- */

static bool authorized(SoupServerMessage *msg)
{
    SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
    const char *auth = soup_message_headers_get_one(h, "Authorization");
    const char *tok = config->token;
    size_t n = strlen(tok);

    if (auth == NULL || g_ascii_strncasecmp(auth, "Bearer ", 7) != 0) {
        return false;
    }
    auth += 7;
    /* constant time in the token's length: no early exit on the first difference */
    size_t m = strlen(auth);
    unsigned diff = m != n;
    for (size_t i = 0; i < n; i++) {
        diff |= (unsigned char)tok[i] ^ (unsigned char)(i < m ? auth[i] : 0);
    }
    return diff == 0;
}

/* What the strict splitter found in a body: one value, or the first error. */
typedef struct BodyScan {
    guint values;
    char *first;      /* the first value's text */
    char *error;      /* the first error */
} BodyScan;

static void body_scan_cb(void *opaque, const char *text, size_t len, const char *error_msg)
{
    BodyScan *b = opaque;

    if (text == NULL) {
        if (b->error == NULL) {
            b->error = g_strdup(error_msg);
        }
        return;
    }
    if (b->values++ == 0) {
        b->first = g_strndup(text, len);
    }
}

/* The body as a JSON object (an empty body is {}); NULL after replying 400/413. The
 * shared strict splitter (util/json-splitter.c) first insists on exactly one object
 * and refuses duplicate keys, \u0000 and out-of-range integers, which json-glib would
 * take silently. */
static JsonObject *body_object(SoupServerMessage *msg)
{
    SoupMessageBody *body = soup_server_message_get_request_body(msg);
    g_autoptr(GBytes) bytes = soup_message_body_flatten(body);
    gsize len;
    const char *data = g_bytes_get_data(bytes, &len);

    if (len > BODY_MAX) {
        reply_error(msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "request body over %d bytes",
                    BODY_MAX);
        return NULL;
    }
    if (len == 0) {
        return json_object_new();
    }
    if (memchr(data, '\0', len) != NULL || !g_utf8_validate(data, (gssize)len, NULL)) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST, "request body: not UTF-8 JSON");
        return NULL;
    }
    BodyScan scan = { 0 };
    g_autoptr(JsonSplitter) sp = json_splitter_new(BODY_MAX, 64, body_scan_cb, &scan);
    json_splitter_set_strict(sp, true);
    json_splitter_feed(sp, data, len);
    json_splitter_finish(sp);
    g_autofree char *first = scan.first;
    g_autofree char *scan_error = scan.error;
    if (scan_error != NULL || scan.values != 1) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST, "request body: %s",
                    scan_error != NULL ? scan_error : "expected exactly one JSON object");
        return NULL;
    }
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) err = NULL;
    if (!json_parser_load_from_data(parser, first, -1, &err)) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST, "request body: malformed JSON: %s",
                    err->message);
        return NULL;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST, "request body: expected a JSON object");
        return NULL;
    }
    return json_object_ref(json_node_get_object(root));
}

/* Members of o that are not in the NULL-terminated list allowed: the first, or NULL. */
static const char *unknown_member(JsonObject *o, const char *const *allowed)
{
    g_autoptr(GList) members = json_object_get_members(o);

    for (GList *l = members; l != NULL; l = l->next) {
        bool ok = false;
        for (const char *const *a = allowed; *a != NULL; a++) {
            ok |= strcmp(l->data, *a) == 0;
        }
        if (!ok) {
            return l->data;
        }
    }
    return NULL;
}

/* o[key] as a string from choices (NULL-terminated; default def when absent). */
static bool member_choice(SoupServerMessage *msg, JsonObject *o, const char *key,
                          const char *const *choices, const char *def, const char **out)
{
    JsonNode *n = json_object_get_member(o, key);

    if (n == NULL) {
        *out = def;
        return true;
    }
    if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING) {
        for (const char *const *c = choices; *c != NULL; c++) {
            if (strcmp(json_node_get_string(n), *c) == 0) {
                *out = *c;
                return true;
            }
        }
    }
    g_autofree char *list = g_strjoinv("\", \"", (char **)choices);
    reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s: expected one of \"%s\"", key, list);
    return false;
}

static bool member_string(SoupServerMessage *msg, JsonObject *o, const char *key,
                          bool required, const char **out)
{
    JsonNode *n = json_object_get_member(o, key);

    *out = NULL;
    if (n == NULL && !required) {
        return true;
    }
    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s: %s", key,
                    n == NULL ? "missing" : "expected a string");
        return false;
    }
    *out = json_node_get_string(n);
    return true;
}

static bool member_bool(SoupServerMessage *msg, JsonObject *o, const char *key, bool *out)
{
    JsonNode *n = json_object_get_member(o, key);

    if (n == NULL) {
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s: expected true or false", key);
        return false;
    }
    *out = json_node_get_boolean(n);
    return true;
}

static bool member_int(SoupServerMessage *msg, JsonObject *o, const char *key, gint64 min,
                       gint64 max, gint64 *out)
{
    JsonNode *n = json_object_get_member(o, key);

    if (n == NULL) {
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < min || json_node_get_int(n) > max) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST,
                    "%s: expected an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT,
                    key, min, max);
        return false;
    }
    *out = json_node_get_int(n);
    return true;
}

static bool method_is(SoupServerMessage *msg, const char *allowed)
{
    const char *m = soup_server_message_get_method(msg);
    g_auto(GStrv) list = g_strsplit(allowed, ", ", -1);

    for (char **a = list; *a != NULL; a++) {
        if (strcmp(m, *a) == 0) {
            return true;
        }
    }
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", allowed);
    reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "%s: method not allowed (allowed: %s)", m,
                allowed);
    return false;
}

static bool is_method(SoupServerMessage *msg, const char *m)
{
    return strcmp(soup_server_message_get_method(msg), m) == 0;
}

/* A known VM: it has a vmad socket or a backup directory. */
static bool vm_known(const char *vmid)
{
    g_autofree char *sock = web_vm_qmp_path(config, vmid);
    g_autofree char *dir = web_vm_backup_dir(config, vmid);

    return g_file_test(sock, G_FILE_TEST_EXISTS) || g_file_test(dir, G_FILE_TEST_IS_DIR);
}

/* ---- /api/v1/vms (answered from a worker thread) --------------------------------------- */

typedef struct VmQuery {
    SoupServerMessage *msg;
    char *vmid;    /* NULL: all */
} VmQuery;

static void vm_query_thread(GTask *task, gpointer source, gpointer data, GCancellable *c)
{
    VmQuery *q = data;

    if (q->vmid != NULL) {
        bool timeout = false;
        JsonObject *o = web_vm_describe(config, q->vmid, &timeout);
        if (timeout) {
            /* one VM asked for: its vmad hangs is the answer (504); in the list it is
             * one VM "online": false among the others */
            g_task_return_new_error(task, WEB_ERROR, WEB_ERROR_TIMEOUT, "VM %s: %s", q->vmid,
                                    json_object_get_string_member(o, "error"));
            json_object_unref(o);
            return;
        }
        g_task_return_pointer(task, o, (GDestroyNotify)json_object_unref);
        return;
    }
    g_autoptr(GPtrArray) ids = web_vm_ids(config);
    JsonArray *a = json_array_new();
    for (guint i = 0; i < ids->len; i++) {
        json_array_add_object_element(a, web_vm_describe(config, ids->pdata[i], NULL));
    }
    g_task_return_pointer(task, a, (GDestroyNotify)json_array_unref);
}

static void vm_query_done(GObject *source, GAsyncResult *res, gpointer data)
{
    VmQuery *q = g_task_get_task_data(G_TASK(res));
    g_autoptr(GError) err = NULL;
    gpointer out = g_task_propagate_pointer(G_TASK(res), &err);

    if (out == NULL) {
        reply_gerror(q->msg, err);
    } else if (q->vmid != NULL) {
        reply_object(q->msg, SOUP_STATUS_OK, out);
    } else {
        reply_array(q->msg, SOUP_STATUS_OK, out);
    }
    soup_server_message_unpause(q->msg);
}

static void vm_query_free(gpointer p)
{
    VmQuery *q = p;

    g_object_unref(q->msg);
    g_free(q->vmid);
    g_free(q);
}

static void vm_query(SoupServerMessage *msg, const char *vmid)
{
    VmQuery *q = g_new0(VmQuery, 1);
    GTask *task = g_task_new(NULL, NULL, vm_query_done, NULL);

    q->msg = g_object_ref(msg);
    q->vmid = g_strdup(vmid);
    g_task_set_task_data(task, q, vm_query_free);
    soup_server_message_pause(msg);
    g_task_run_in_thread(task, vm_query_thread);
    g_object_unref(task);
}

/* ---- the routes ------------------------------------------------------------------------ */

static void api_backup(SoupServerMessage *msg, const char *vmid)
{
    static const char *const allowed[] = { "mode", "compress", "speed", "prune", "notes", NULL };
    static const char *const modes[] = { "full", "incremental", NULL };
    static const char *const compress[] = { "none", "zstd", NULL };
    g_autoptr(JsonObject) o = body_object(msg);
    const char *mode, *comp, *notes, *bad;
    WebBackupRequest req = { 0 };
    g_autoptr(GError) err = NULL;

    if (o == NULL) {
        return;
    }
    if ((bad = unknown_member(o, allowed)) != NULL) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST, "unknown member '%s'", bad);
        return;
    }
    if (!member_choice(msg, o, "mode", modes, "full", &mode) ||
        !member_choice(msg, o, "compress", compress, "none", &comp) ||
        !member_int(msg, o, "speed", 0, G_MAXINT64, &req.speed) ||
        !member_bool(msg, o, "prune", &req.prune) ||
        !member_string(msg, o, "notes", false, &notes)) {
        return;
    }
    g_autofree char *sock = web_vm_qmp_path(config, vmid);
    if (!g_file_test(sock, G_FILE_TEST_EXISTS)) {
        reply_error(msg, SOUP_STATUS_NOT_FOUND, "VM %s: no vmad socket %s", vmid, sock);
        return;
    }
    req.incremental = strcmp(mode, "incremental") == 0;
    req.zstd = strcmp(comp, "zstd") == 0;
    req.notes = (char *)notes;
    char *id = web_task_backup(vmid, &req, &err);
    if (id == NULL) {
        reply_gerror(msg, err);
        return;
    }
    reply_task(msg, id);
}

static void api_archive(SoupServerMessage *msg, const char *vmid, const char *name,
                        const char *action)
{
    g_autoptr(GError) err = NULL;

    if (!web_archive_name_parse(name, vmid, NULL, NULL)) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST,
                    "'%s' is not an archive name of VM %s "
                    "(vzdump-qemu-%s-YYYY_MM_DD-HH_MM_SS.vma or .vma.zst)", name, vmid, vmid);
        return;
    }
    if (action == NULL) {
        if (!method_is(msg, "GET, DELETE")) {
            return;
        }
        if (is_method(msg, "DELETE")) {
            if (web_task_busy(vmid, name)) {
                reply_error(msg, SOUP_STATUS_CONFLICT, "%s: a task is using it", name);
            } else if (!web_archive_delete(config, vmid, name, &err)) {
                reply_gerror(msg, err);
            } else {
                JsonObject *o = json_object_new();
                json_object_set_string_member(o, "deleted", name);
                reply_object(msg, SOUP_STATUS_OK, o);
            }
            return;
        }
        g_autoptr(JsonArray) a = web_archives_list(config, vmid, &err);
        if (a == NULL) {
            reply_gerror(msg, err);
            return;
        }
        for (guint i = 0; i < json_array_get_length(a); i++) {
            JsonObject *o = json_array_get_object_element(a, i);
            if (strcmp(json_object_get_string_member(o, "name"), name) == 0) {
                reply_object(msg, SOUP_STATUS_OK, json_object_ref(o));
                return;
            }
        }
        reply_error(msg, SOUP_STATUS_NOT_FOUND, "no archive %s of VM %s", name, vmid);
        return;
    }
    if (!method_is(msg, "POST")) {
        return;
    }
    g_autoptr(JsonObject) o = body_object(msg);
    if (o == NULL) {
        return;
    }
    char *id = NULL;
    const char *bad;
    if (strcmp(action, "verify") == 0) {
        static const char *const allowed[] = { NULL };
        if ((bad = unknown_member(o, allowed)) != NULL) {
            reply_error(msg, SOUP_STATUS_BAD_REQUEST, "unknown member '%s'", bad);
            return;
        }
        id = web_task_verify(vmid, name, &err);
    } else if (strcmp(action, "restore") == 0) {
        static const char *const allowed[] = { "target", "mode", "speed", NULL };
        static const char *const rmodes[] = { "directory", "live", NULL };
        const char *target, *rmode;
        gint64 speed = 0;
        if ((bad = unknown_member(o, allowed)) != NULL) {
            reply_error(msg, SOUP_STATUS_BAD_REQUEST, "unknown member '%s'", bad);
            return;
        }
        if (!member_string(msg, o, "target", true, &target) ||
            !member_choice(msg, o, "mode", rmodes, "directory", &rmode) ||
            !member_int(msg, o, "speed", 0, G_MAXINT64, &speed)) {
            return;
        }
        if (strcmp(rmode, "live") == 0) {
            g_autofree char *sock = web_vm_qmp_path(config, vmid);
            if (!g_file_test(sock, G_FILE_TEST_EXISTS)) {
                reply_error(msg, SOUP_STATUS_NOT_FOUND, "VM %s: no vmad socket %s", vmid, sock);
                return;
            }
            id = web_task_restore_live(vmid, name, target, speed, &err);
        } else if (json_object_has_member(o, "speed")) {
            reply_error(msg, SOUP_STATUS_BAD_REQUEST, "speed: only for a live restore");
            return;
        } else {
            id = web_task_restore(vmid, name, target, &err);
        }
    } else if (strcmp(action, "notes") == 0) {
        static const char *const allowed[] = { "notes", NULL };
        const char *notes;
        if ((bad = unknown_member(o, allowed)) != NULL) {
            reply_error(msg, SOUP_STATUS_BAD_REQUEST, "unknown member '%s'", bad);
            return;
        }
        if (!member_string(msg, o, "notes", true, &notes)) {
            return;
        }
        if (!web_archive_set_notes(config, vmid, name, notes, &err)) {
            reply_gerror(msg, err);
            return;
        }
        JsonObject *r = json_object_new();
        json_object_set_string_member(r, "notes", notes);
        reply_object(msg, SOUP_STATUS_OK, r);
        return;
    } else {
        reply_error(msg, SOUP_STATUS_NOT_FOUND, "no such action '%s'", action);
        return;
    }
    if (id == NULL) {
        reply_gerror(msg, err);
        return;
    }
    reply_task(msg, id);
}

static void api_retention(SoupServerMessage *msg, const char *vmid)
{
    g_autoptr(GError) err = NULL;
    WebPrunePolicy p;

    if (!method_is(msg, "GET, POST")) {
        return;
    }
    if (is_method(msg, "POST")) {
        g_autoptr(JsonObject) o = body_object(msg);
        if (o == NULL) {
            return;
        }
        if (!web_prune_policy_from_json(o, &p, &err) || !web_retention_save(config, vmid, &p, &err)) {
            reply_gerror(msg, err);
            return;
        }
    } else if (!web_retention_load(config, vmid, &p, &err)) {
        reply_gerror(msg, err);
        return;
    }
    reply_object(msg, SOUP_STATUS_OK, web_prune_policy_to_json(&p));
}

static void api_prune(SoupServerMessage *msg, const char *vmid)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = NULL;
    WebPrunePolicy p;
    bool dry_run = false;

    if (!method_is(msg, "POST") || (o = body_object(msg)) == NULL ||
        !member_bool(msg, o, "dry-run", &dry_run)) {
        return;
    }
    json_object_remove_member(o, "dry-run");
    /* a backup's own retention run and this one would remove files of one directory at
     * once, and the archive a running backup builds on must stay */
    if (!dry_run && web_task_vm_busy(vmid, &err)) {
        reply_gerror(msg, err);
        return;
    }
    /* keep-* members given: that policy for this run; none: the VM's saved policy */
    if (json_object_get_size(o) > 0 ? !web_prune_policy_from_json(o, &p, &err)
                                    : !web_retention_load(config, vmid, &p, &err)) {
        reply_gerror(msg, err);
        return;
    }
    JsonArray *a = web_prune(config, vmid, &p, dry_run, &err);
    if (a == NULL) {
        reply_gerror(msg, err);
        return;
    }
    JsonObject *r = json_object_new();
    json_object_set_boolean_member(r, "dry-run", dry_run);
    json_object_set_object_member(r, "policy", web_prune_policy_to_json(&p));
    json_object_set_array_member(r, "archives", a);
    reply_object(msg, SOUP_STATUS_OK, r);
}

static void api_vm(SoupServerMessage *msg, char **seg, guint n)
{
    const char *vmid = seg[1];
    g_autoptr(GError) err = NULL;

    if (!web_vmid_valid(vmid)) {
        reply_error(msg, SOUP_STATUS_BAD_REQUEST, "'%s' is not a VM id (1 to 9 digits)", vmid);
        return;
    }
    if (!vm_known(vmid)) {
        reply_error(msg, SOUP_STATUS_NOT_FOUND, "no VM %s", vmid);
        return;
    }
    if (n == 2) {
        if (method_is(msg, "GET")) {
            vm_query(msg, vmid);
        }
    } else if (n == 3 && strcmp(seg[2], "backups") == 0) {
        if (method_is(msg, "GET")) {
            JsonArray *a = web_archives_list(config, vmid, &err);
            if (a == NULL) {
                reply_gerror(msg, err);
            } else {
                reply_array(msg, SOUP_STATUS_OK, a);
            }
        }
    } else if (n == 3 && strcmp(seg[2], "backup") == 0) {
        if (method_is(msg, "POST")) {
            api_backup(msg, vmid);
        }
    } else if (n == 3 && strcmp(seg[2], "retention") == 0) {
        api_retention(msg, vmid);
    } else if (n == 3 && strcmp(seg[2], "prune") == 0) {
        api_prune(msg, vmid);
    } else if ((n == 4 || n == 5) && strcmp(seg[2], "backups") == 0) {
        api_archive(msg, vmid, seg[3], n == 5 ? seg[4] : NULL);
    } else {
        reply_error(msg, SOUP_STATUS_NOT_FOUND, "no such API path");
    }
}

static void api_tasks(SoupServerMessage *msg, char **seg, guint n)
{
    g_autoptr(GError) err = NULL;

    if (n == 1) {
        if (method_is(msg, "GET")) {
            reply_array(msg, SOUP_STATUS_OK, web_tasks_list());
        }
        return;
    }
    if (n == 2) {
        if (!method_is(msg, "GET")) {
            return;
        }
        JsonObject *o = web_task_describe(seg[1]);
        if (o == NULL) {
            reply_error(msg, SOUP_STATUS_NOT_FOUND, "no task %s", seg[1]);
        } else {
            reply_object(msg, SOUP_STATUS_OK, o);
        }
        return;
    }
    if (n == 3 && strcmp(seg[2], "cancel") == 0) {
        if (!method_is(msg, "POST")) {
            return;
        }
        if (!web_task_cancel(seg[1], &err)) {
            reply_gerror(msg, err);
        } else {
            reply_object(msg, SOUP_STATUS_ACCEPTED, web_task_describe(seg[1]));
        }
        return;
    }
    reply_error(msg, SOUP_STATUS_NOT_FOUND, "no such API path");
}

static void api(SoupServerMessage *msg, const char *path)
{
    if (!authorized(msg)) {
        soup_message_headers_replace(soup_server_message_get_response_headers(msg),
                                     "WWW-Authenticate", "Bearer realm=\"vma-web\"");
        reply_error(msg, SOUP_STATUS_UNAUTHORIZED,
                    "missing or wrong token (Authorization: Bearer TOKEN)");
        return;
    }
    if (!g_str_has_prefix(path, "/api/v1/")) {
        reply_error(msg, SOUP_STATUS_NOT_FOUND, "no such API path (the API is /api/v1/)");
        return;
    }
    /* segments, each percent-decoded once; a decoded '/' or NUL makes no valid name */
    g_auto(GStrv) raw = g_strsplit(path + strlen("/api/v1/"), "/", -1);
    guint n = g_strv_length(raw);
    if (n > 0 && *raw[n - 1] == '\0') {
        g_free(raw[--n]); /* one trailing slash */
        raw[n] = NULL;
    }
    g_auto(GStrv) seg = g_new0(char *, n + 1);
    for (guint i = 0; i < n; i++) {
        seg[i] = g_uri_unescape_string(raw[i], "/");
        if (seg[i] == NULL || *seg[i] == '\0') {
            reply_error(msg, SOUP_STATUS_BAD_REQUEST, "malformed path");
            return;
        }
    }
    if (n >= 1 && strcmp(seg[0], "vms") == 0) {
        if (n == 1) {
            if (method_is(msg, "GET")) {
                vm_query(msg, NULL);
            }
            return;
        }
        api_vm(msg, seg, n);
    } else if (n >= 1 && strcmp(seg[0], "tasks") == 0) {
        api_tasks(msg, seg, n);
    } else {
        reply_error(msg, SOUP_STATUS_NOT_FOUND, "no such API path");
    }
}

/* ---- the page ---------------------------------------------------------------------------- */

static const char *mime_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(types); i++) {
        if (g_str_has_suffix(path, types[i].ext)) {
            return types[i].type;
        }
    }
    return "application/octet-stream";
}

static void page(SoupServerMessage *msg, const char *path)
{
    if (!method_is(msg, "GET, HEAD")) {
        return;
    }
    if (strcmp(path, "/") == 0) {
        path = "/index.html";
    }
    for (size_t i = 0; i < web_static_count; i++) {
        const WebStaticFile *f = &web_static_files[i];
        if (strcmp(f->path, path) == 0) {
            common_headers(msg);
            soup_server_message_set_status(msg, SOUP_STATUS_OK, NULL);
            soup_server_message_set_response(msg, mime_type(path), SOUP_MEMORY_STATIC,
                                             (const char *)f->data, f->len);
            return;
        }
    }
    reply_error(msg, SOUP_STATUS_NOT_FOUND, "not found");
}

static void handle(SoupServer *server, SoupServerMessage *msg, const char *path,
                   GHashTable *query, gpointer data)
{
    if (g_str_has_prefix(path, "/api/") || strcmp(path, "/api") == 0) {
        api(msg, path);
    } else {
        page(msg, path);
    }
}

void web_api_register(SoupServer *server, const WebConfig *cfg)
{
    config = cfg;
    soup_server_add_handler(server, NULL, handle, NULL, NULL);
}
