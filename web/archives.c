/*
 * archives.c — a VM's backup directory BACKUP-DIR/<id>/.
 *
 * What lives there:
 *   vzdump-qemu-<id>-<time>.vma[.zst]   complete archives (vmad renames a finished
 *                                       archive to its name; names.c says which names)
 *   NAME.json                           our sidecar: uuid, kind, base uuid, verify state
 *   NAME.notes                          notes, as Proxmox keeps them (plain text)
 *   retention.json                      the VM's retention policy
 *   .NAME.tmp-*                         an archive being written (never listed)
 * Anything else is ignored. The sidecar is a cache of what the archive's header says
 * (its uuid and the vmabackup-chain.conf entry of a delta archive) plus what only we
 * know (the verify result): an archive copied in from elsewhere gets one the first time
 * it is listed. Sidecars are written whole (temporary file + rename) under one lock, so
 * a reader never sees half of one and two writers do not lose each other's update.
 *
 * Chains: an incremental or differential archive names its base by uuid; the listing
 * resolves that to the base's file name. Deleting a base would make its dependants
 * unrestorable, so it is refused, and prune keeps the bases of every archive it keeps.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vma.h"
#include "web/web.h"

#define NOTES_MAX (64 * 1024)

static GMutex sidecar_lock; /* guards every sidecar read-modify-write */

void web_sidecar_clear(WebSidecar *s)
{
    g_clear_pointer(&s->uuid, g_free);
    g_clear_pointer(&s->kind, g_free);
    g_clear_pointer(&s->base_uuid, g_free);
    g_clear_pointer(&s->verified, g_free);
    g_clear_pointer(&s->verify_error, g_free);
    s->verify_time = 0;
}

char *web_vm_backup_dir(const WebConfig *cfg, const char *vmid)
{
    return g_build_filename(cfg->backup_dir, vmid, NULL);
}

static char *sidecar_path(const char *archive)
{
    return g_strconcat(archive, ".json", NULL);
}

static char *notes_path(const char *archive)
{
    return g_strconcat(archive, ".notes", NULL);
}

bool web_sidecar_from_archive(const char *path, WebSidecar *s, GError **errp)
{
    g_autoptr(VmaReader) r = vma_reader_open(path, errp);
    uint8_t uuid[16];
    char text[37];

    if (r == NULL) {
        return false;
    }
    vma_reader_get_uuid(r, uuid);
    vma_uuid_unparse(uuid, text);
    g_free(s->uuid);
    s->uuid = g_strdup(text);
    VmaChainInfo chain = { 0 };
    if (!vma_chain_info_from_reader(r, &chain, errp)) {
        g_prefix_error(errp, "%s: ", path);
        return false;
    }
    g_free(s->kind);
    s->kind = g_strdup(vma_chain_kind_name(chain.kind));
    g_clear_pointer(&s->base_uuid, g_free);
    if (chain.kind != VMA_CHAIN_FULL) {
        vma_uuid_unparse(chain.base_uuid, text);
        s->base_uuid = g_strdup(text);
    }
    vma_chain_info_clear(&chain);
    return true;
}

static const char *member_str(JsonObject *o, const char *name)
{
    JsonNode *n = json_object_get_member(o, name);

    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(n);
}

static bool sidecar_read_locked(const char *path, WebSidecar *s)
{
    g_autofree char *sp = sidecar_path(path);
    g_autoptr(JsonParser) parser = json_parser_new();

    if (!json_parser_load_from_file(parser, sp, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        return false;
    }
    JsonObject *o = json_node_get_object(json_parser_get_root(parser));
    s->uuid = g_strdup(member_str(o, "uuid"));
    s->kind = g_strdup(member_str(o, "kind"));
    s->base_uuid = g_strdup(member_str(o, "base"));
    s->verified = g_strdup(member_str(o, "verified"));
    s->verify_error = g_strdup(member_str(o, "verify-error"));
    if (json_object_has_member(o, "verify-time")) {
        s->verify_time = json_object_get_int_member(o, "verify-time");
    }
    return s->uuid != NULL;
}

static bool sidecar_write_locked(const char *path, const WebSidecar *s, GError **errp)
{
    g_autofree char *sp = sidecar_path(path);
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
#define STR(key, v)                                         \
    json_builder_set_member_name(b, key);                   \
    if ((v) != NULL) {                                      \
        json_builder_add_string_value(b, v);                \
    } else {                                                \
        json_builder_add_null_value(b);                     \
    }
    STR("uuid", s->uuid);
    STR("kind", s->kind);
    STR("base", s->base_uuid);
    STR("verified", s->verified);
    STR("verify-error", s->verify_error);
#undef STR
    json_builder_set_member_name(b, "verify-time");
    json_builder_add_int_value(b, s->verify_time);
    json_builder_end_object(b);

    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    if (!g_file_set_contents_full(sp, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, errp)) {
        g_prefix_error(errp, "write sidecar: ");
        return false;
    }
    return true;
}

bool web_sidecar_load(const char *path, WebSidecar *s, GError **errp)
{
    g_mutex_lock(&sidecar_lock);
    bool ok = sidecar_read_locked(path, s);
    if (!ok) {
        web_sidecar_clear(s);
        ok = web_sidecar_from_archive(path, s, errp) && sidecar_write_locked(path, s, errp);
    }
    g_mutex_unlock(&sidecar_lock);
    return ok;
}

bool web_sidecar_save(const char *path, const WebSidecar *s, GError **errp)
{
    g_mutex_lock(&sidecar_lock);
    bool ok = sidecar_write_locked(path, s, errp);
    g_mutex_unlock(&sidecar_lock);
    return ok;
}

bool web_sidecar_set_verify(const char *path, bool ok, const char *error, GError **errp)
{
    WebSidecar s = { 0 };

    g_mutex_lock(&sidecar_lock);
    if (!sidecar_read_locked(path, &s)) {
        web_sidecar_clear(&s);
        if (!web_sidecar_from_archive(path, &s, NULL)) {
            s.kind = g_strdup("full");
        }
    }
    g_free(s.verified);
    s.verified = g_strdup(ok ? "ok" : "failed");
    g_free(s.verify_error);
    s.verify_error = g_strdup(error);
    s.verify_time = g_get_real_time() / G_USEC_PER_SEC;
    bool done = sidecar_write_locked(path, &s, errp);
    g_mutex_unlock(&sidecar_lock);
    web_sidecar_clear(&s);
    return done;
}

/* One archive as listed; s is its sidecar (may be empty when the header is unreadable). */
typedef struct Entry {
    char *name;
    gint64 when;
    gint64 size;
    bool zstd;
    WebSidecar s;
    char *error;   /* the header could not be read */
    char *notes;
} Entry;

static void entry_free(gpointer p)
{
    Entry *e = p;

    g_free(e->name);
    web_sidecar_clear(&e->s);
    g_free(e->error);
    g_free(e->notes);
    g_free(e);
}

static gint entry_newest_first(gconstpointer a, gconstpointer b)
{
    const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;

    if (x->when != y->when) {
        return x->when > y->when ? -1 : 1;
    }
    return strcmp(y->name, x->name);
}

/* The VM's archives, newest first. A missing directory is an empty list. */
static GPtrArray *scan(const WebConfig *cfg, const char *vmid, GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(cfg, vmid);
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(entry_free);
    g_autoptr(GError) err = NULL;
    g_autoptr(GDir) d = g_dir_open(dir, 0, &err);

    if (d == NULL) {
        if (g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            return g_steal_pointer(&out);
        }
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "%s", err->message);
        return NULL;
    }
    const char *name;
    while ((name = g_dir_read_name(d)) != NULL) {
        gint64 when;
        bool zstd;
        if (!web_archive_name_parse(name, vmid, &when, &zstd)) {
            continue;
        }
        g_autofree char *path = g_build_filename(dir, name, NULL);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        Entry *e = g_new0(Entry, 1);
        e->name = g_strdup(name);
        e->when = when;
        e->size = st.st_size;
        e->zstd = zstd;
        g_autoptr(GError) lerr = NULL;
        if (!web_sidecar_load(path, &e->s, &lerr)) {
            e->error = g_strdup(lerr->message);
        }
        g_autofree char *np = notes_path(path);
        g_file_get_contents(np, &e->notes, NULL, NULL);
        g_ptr_array_add(out, e);
    }
    g_ptr_array_sort(out, entry_newest_first);
    return g_steal_pointer(&out);
}

static Entry *find_uuid(GPtrArray *entries, const char *uuid)
{
    for (guint i = 0; uuid != NULL && i < entries->len; i++) {
        Entry *e = entries->pdata[i];
        if (e->s.uuid != NULL && strcmp(e->s.uuid, uuid) == 0) {
            return e;
        }
    }
    return NULL;
}

static Entry *find_name(GPtrArray *entries, const char *name)
{
    for (guint i = 0; i < entries->len; i++) {
        Entry *e = entries->pdata[i];
        if (strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

static void set_str_or_null(JsonObject *o, const char *key, const char *v)
{
    if (v != NULL) {
        json_object_set_string_member(o, key, v);
    } else {
        json_object_set_null_member(o, key);
    }
}

JsonArray *web_archives_list(const WebConfig *cfg, const char *vmid, GError **errp)
{
    g_autoptr(GPtrArray) entries = scan(cfg, vmid, errp);

    if (entries == NULL) {
        return NULL;
    }
    JsonArray *a = json_array_new();
    for (guint i = 0; i < entries->len; i++) {
        Entry *e = entries->pdata[i];
        JsonObject *o = json_object_new();
        json_object_set_string_member(o, "name", e->name);
        json_object_set_int_member(o, "size", e->size);
        json_object_set_int_member(o, "ctime", e->when);
        json_object_set_string_member(o, "compress", e->zstd ? "zstd" : "none");
        set_str_or_null(o, "kind", e->s.kind);
        set_str_or_null(o, "uuid", e->s.uuid);
        Entry *base = find_uuid(entries, e->s.base_uuid);
        set_str_or_null(o, "base", base != NULL ? base->name : NULL);
        set_str_or_null(o, "base-uuid", e->s.base_uuid);
        json_object_set_boolean_member(o, "verified",
                                       e->s.verified != NULL && strcmp(e->s.verified, "ok") == 0);
        json_object_set_string_member(o, "verify-state",
                                      e->s.verified != NULL ? e->s.verified : "none");
        set_str_or_null(o, "verify-error", e->s.verify_error);
        if (e->s.verify_time > 0) {
            json_object_set_int_member(o, "verify-time", e->s.verify_time);
        } else {
            json_object_set_null_member(o, "verify-time");
        }
        json_object_set_string_member(o, "notes", e->notes != NULL ? e->notes : "");
        set_str_or_null(o, "error", e->error);
        json_object_set_boolean_member(o, "busy", web_task_busy(vmid, e->name));
        json_array_add_object_element(a, o);
    }
    return a;
}

/* The archives whose base is e (their names), NULL-terminated. */
static GPtrArray *dependants(GPtrArray *entries, const Entry *e)
{
    GPtrArray *out = g_ptr_array_new();

    for (guint i = 0; e->s.uuid != NULL && i < entries->len; i++) {
        Entry *x = entries->pdata[i];
        if (x->s.base_uuid != NULL && strcmp(x->s.base_uuid, e->s.uuid) == 0) {
            g_ptr_array_add(out, x->name);
        }
    }
    return out;
}

static bool remove_files(const char *dir, const char *name, GError **errp)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autofree char *sp = sidecar_path(path);
    g_autofree char *np = notes_path(path);

    if (unlink(path) != 0) {
        int err = errno;
        g_set_error(errp, WEB_ERROR, err == ENOENT ? WEB_ERROR_NOT_FOUND : WEB_ERROR_INTERNAL,
                    "delete %s: %s", name, g_strerror(err));
        return false;
    }
    unlink(sp);
    unlink(np);
    return true;
}

bool web_archive_delete(const WebConfig *cfg, const char *vmid, const char *name,
                        GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(cfg, vmid);
    g_autoptr(GPtrArray) entries = scan(cfg, vmid, errp);

    if (entries == NULL) {
        return false;
    }
    Entry *e = find_name(entries, name);
    if (e == NULL) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_NOT_FOUND, "no archive %s of VM %s", name, vmid);
        return false;
    }
    g_autoptr(GPtrArray) deps = dependants(entries, e);
    if (deps->len > 0) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT,
                    "%s is the base of %s: delete that first", name,
                    (const char *)deps->pdata[0]);
        return false;
    }
    return remove_files(dir, name, errp);
}

bool web_archive_set_notes(const WebConfig *cfg, const char *vmid, const char *name,
                           const char *notes, GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(cfg, vmid);
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autofree char *np = notes_path(path);

    if (strlen(notes) > NOTES_MAX) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INVALID, "notes: more than %d bytes", NOTES_MAX);
        return false;
    }
    if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_NOT_FOUND, "no archive %s of VM %s", name, vmid);
        return false;
    }
    if (*notes == '\0') {
        unlink(np);
        return true;
    }
    if (!g_file_set_contents_full(np, notes, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, errp)) {
        g_prefix_error(errp, "write notes: ");
        return false;
    }
    return true;
}

static char *retention_path(const WebConfig *cfg, const char *vmid)
{
    return g_build_filename(cfg->backup_dir, vmid, "retention.json", NULL);
}

bool web_retention_load(const WebConfig *cfg, const char *vmid, WebPrunePolicy *p,
                        GError **errp)
{
    g_autofree char *path = retention_path(cfg, vmid);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) err = NULL;

    memset(p, 0, sizeof(*p));
    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        return true;
    }
    if (!json_parser_load_from_file(parser, path, &err) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "%s: %s", path,
                    err != NULL ? err->message : "not a JSON object");
        return false;
    }
    return web_prune_policy_from_json(json_node_get_object(json_parser_get_root(parser)), p,
                                      errp);
}

bool web_retention_save(const WebConfig *cfg, const char *vmid, const WebPrunePolicy *p,
                        GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(cfg, vmid);
    g_autofree char *path = retention_path(cfg, vmid);
    g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
    g_autoptr(JsonGenerator) gen = json_generator_new();

    if (g_mkdir_with_parents(dir, 0750) != 0) {
        int err = errno;
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "mkdir %s: %s", dir, g_strerror(err));
        return false;
    }
    json_node_take_object(root, web_prune_policy_to_json(p));
    json_generator_set_root(gen, root);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    return g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                    errp);
}

JsonArray *web_prune(const WebConfig *cfg, const char *vmid, const WebPrunePolicy *p,
                     bool dry_run, GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(cfg, vmid);
    g_autoptr(GPtrArray) entries = scan(cfg, vmid, errp);

    if (entries == NULL) {
        return NULL;
    }
    guint n = entries->len;
    g_autofree WebPruneItem *items = g_new0(WebPruneItem, n ? n : 1);
    g_autofree const char **reason = g_new0(const char *, n ? n : 1);
    for (guint i = 0; i < n; i++) {
        Entry *e = entries->pdata[i];
        items[i].when = e->when;
        /* an archive being verified or restored stays; so does one we cannot read */
        items[i].protect = web_task_busy(vmid, e->name) || e->error != NULL;
    }
    web_prune_select(items, n, p);
    for (guint i = 0; i < n; i++) {
        int m = items[i].mark;
        reason[i] = m >= 0 && m < WEB_KEEP_N ? web_keep_names[m]
                    : m == -2                ? "keep-all"
                    : m == -1                ? "protected"
                                             : NULL;
    }
    /* a kept archive keeps its whole chain: its base, the base's base, ... */
    for (bool changed = true; changed;) {
        changed = false;
        for (guint i = 0; i < n; i++) {
            Entry *e = entries->pdata[i];
            if (reason[i] == NULL || e->s.base_uuid == NULL) {
                continue;
            }
            Entry *b = find_uuid(entries, e->s.base_uuid);
            for (guint j = 0; b != NULL && j < n; j++) {
                if (entries->pdata[j] == b && reason[j] == NULL) {
                    reason[j] = "base";
                    changed = true;
                }
            }
        }
    }
    JsonArray *a = json_array_new();
    for (guint i = 0; i < n; i++) {
        Entry *e = entries->pdata[i];
        JsonObject *o = json_object_new();
        json_object_set_string_member(o, "name", e->name);
        json_object_set_int_member(o, "ctime", e->when);
        json_object_set_string_member(o, "action", reason[i] != NULL ? "keep" : "remove");
        set_str_or_null(o, "reason", reason[i]);
        if (reason[i] == NULL && !dry_run) {
            g_autoptr(GError) err = NULL;
            if (!remove_files(dir, e->name, &err)) {
                json_object_set_string_member(o, "error", err->message);
            } else {
                json_object_set_boolean_member(o, "removed", true);
            }
        }
        json_array_add_object_element(a, o);
    }
    return a;
}

GPtrArray *web_archive_chain(const WebConfig *cfg, const char *vmid, const char *name,
                             GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(cfg, vmid);
    g_autoptr(GPtrArray) entries = scan(cfg, vmid, errp);

    if (entries == NULL) {
        return NULL;
    }
    Entry *e = find_name(entries, name);
    if (e == NULL) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_NOT_FOUND, "no archive %s of VM %s", name, vmid);
        return NULL;
    }
    g_autoptr(GPtrArray) chain = g_ptr_array_new_with_free_func(g_free);
    while (e->s.base_uuid != NULL) {
        Entry *b = find_uuid(entries, e->s.base_uuid);
        if (b == NULL) {
            g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT,
                        "%s: its base %s is not in the backup directory", e->name,
                        e->s.base_uuid);
            return NULL;
        }
        if (chain->len > entries->len) {
            g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT, "%s: the chain loops", name);
            return NULL;
        }
        g_ptr_array_insert(chain, 0, g_build_filename(dir, b->name, NULL));
        e = b;
    }
    return g_steal_pointer(&chain);
}
