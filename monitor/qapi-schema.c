/*
 * qapi-schema.c — the QMP schema as data, and type checking driven by it.
 *
 * Loading is two passes over the "definitions" list: the first creates an empty
 * QapiType for every named struct/union/enum (so definitions may refer to each other
 * in any order), the second fills in members, values and branches and resolves type
 * names. The schema is validated strictly — unknown keys, missing docs, dangling type
 * names, bad unions — because it is the single source of truth for the wire protocol.
 *
 * Checking a value walks the JSON and the type together, like QEMU's strict QObject
 * input visitor: declared members in schema order (missing or mistyped ones are the
 * first error), then any member the type does not declare. Paths in messages are
 * QEMU's: "addr.path" for nested members, "enable[0]" for list elements.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "monitor.h"
#include "monitor/qapi-schema.h"

typedef enum QapiKind {
    QAPI_STR,
    QAPI_INT,
    QAPI_UINT16,
    QAPI_UINT32,
    QAPI_UINT64,
    QAPI_SIZE,
    QAPI_BOOL,
    QAPI_NUMBER,
    QAPI_ANY,
    QAPI_ENUM,
    QAPI_STRUCT,
    QAPI_UNION,
    QAPI_LIST,
} QapiKind;

typedef struct QapiType QapiType;

typedef struct QapiMember {
    char *name;
    QapiType *type;
    bool optional;
} QapiMember;

struct QapiType {
    char *name;              /* "str", "BlockdevOptions", "[QMPCapability]", ... */
    QapiKind kind;
    bool defined;            /* second pass has filled it in (named types) */
    GPtrArray *members;      /* struct: members; union: base members (QapiMember *) */
    GPtrArray *values;       /* enum: value names (char *) */
    char *discriminator;     /* union: name of the enum member in the base */
    GHashTable *branches;    /* union: enum value -> struct QapiType * (not owned) */
    bool data_wrapper;       /* union: also accept {discriminator, "data": {...}} */
    QapiType *elem;          /* list: element type (not owned) */
};

typedef struct QapiEntity {
    char *name;
    QapiType *args;          /* struct or union (for commands/events), not owned */
    QapiType *ret;           /* command: returns type or NULL; not owned */
} QapiEntity;

struct QapiSchema {
    JsonNode *definitions;   /* the parsed "definitions" array, for introspection */
    GHashTable *types;       /* name -> QapiType * (owned: builtins, named, lists,
                              * anonymous argument structs under "<command>:args") */
    GPtrArray *commands;     /* QapiEntity *, schema order */
    GPtrArray *events;
    GHashTable *command_index; /* name -> QapiEntity * */
    GHashTable *event_index;
};

/* ---- construction ----------------------------------------------------------------- */

static void member_free(gpointer p)
{
    QapiMember *m = p;

    g_free(m->name);
    g_free(m);
}

static void type_free(gpointer p)
{
    QapiType *t = p;

    g_free(t->name);
    if (t->members != NULL) {
        g_ptr_array_unref(t->members);
    }
    if (t->values != NULL) {
        g_ptr_array_unref(t->values);
    }
    g_free(t->discriminator);
    if (t->branches != NULL) {
        g_hash_table_unref(t->branches);
    }
    g_free(t);
}

static void entity_free(gpointer p)
{
    QapiEntity *e = p;

    g_free(e->name);
    g_free(e);
}

void qapi_schema_free(QapiSchema *s)
{
    if (s == NULL) {
        return;
    }
    if (s->definitions != NULL) {
        json_node_unref(s->definitions);
    }
    g_hash_table_unref(s->types);
    g_ptr_array_unref(s->commands);
    g_ptr_array_unref(s->events);
    g_hash_table_unref(s->command_index);
    g_hash_table_unref(s->event_index);
    g_free(s);
}

static QapiType *type_new(QapiSchema *s, const char *name, QapiKind kind)
{
    QapiType *t = g_new0(QapiType, 1);

    t->name = g_strdup(name);
    t->kind = kind;
    if (kind == QAPI_STRUCT || kind == QAPI_UNION) {
        t->members = g_ptr_array_new_with_free_func(member_free);
    }
    if (kind == QAPI_UNION) {
        t->branches = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    }
    if (kind == QAPI_ENUM) {
        t->values = g_ptr_array_new_with_free_func(g_free);
    }
    g_hash_table_insert(s->types, t->name, t);
    return t;
}

static const struct {
    const char *name;
    QapiKind kind;
} builtins[] = {
    {"str", QAPI_STR},       {"int", QAPI_INT},       {"uint16", QAPI_UINT16},
    {"uint32", QAPI_UINT32}, {"uint64", QAPI_UINT64}, {"size", QAPI_SIZE},
    {"bool", QAPI_BOOL},     {"number", QAPI_NUMBER}, {"any", QAPI_ANY},
};

/* Reject keys of a definition/member object that the format does not have. */
static bool check_keys(JsonObject *obj, const char *const *allowed, const char *what,
                       GError **errp)
{
    g_autoptr(GList) keys = json_object_get_members(obj);

    for (GList *l = keys; l != NULL; l = l->next) {
        if (!g_strv_contains(allowed, l->data)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: unknown key '%s'", what,
                        (const char *)l->data);
            return false;
        }
    }
    return true;
}

static const char *get_str(JsonObject *obj, const char *key, bool required, const char *what,
                           GError **errp)
{
    JsonNode *n = json_object_get_member(obj, key);

    if (n == NULL) {
        if (required) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: '%s' is missing", what, key);
        }
        return NULL;
    }
    if (json_node_get_value_type(n) != G_TYPE_STRING) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: '%s' must be a string", what,
                    key);
        return NULL;
    }
    return json_node_get_string(n);
}

/* doc strings are mandatory and non-empty: the reference manual is generated from them */
static bool check_doc(JsonObject *obj, const char *what, GError **errp)
{
    const char *doc = get_str(obj, "doc", true, what, errp);

    if (doc == NULL) {
        return false;
    }
    if (*doc == '\0') {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: empty doc", what);
        return false;
    }
    return true;
}

static QapiType *resolve_type(QapiSchema *s, JsonNode *ref, const char *what, GError **errp)
{
    if (json_node_get_value_type(ref) == G_TYPE_STRING) {
        QapiType *t = g_hash_table_lookup(s->types, json_node_get_string(ref));
        if (t == NULL || g_str_has_suffix(t->name, ":args")) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: unknown type '%s'", what,
                        json_node_get_string(ref));
            return NULL;
        }
        return t;
    }
    if (JSON_NODE_HOLDS_ARRAY(ref) && json_array_get_length(json_node_get_array(ref)) == 1) {
        JsonNode *en = json_array_get_element(json_node_get_array(ref), 0);
        if (json_node_get_value_type(en) == G_TYPE_STRING) {
            QapiType *elem = resolve_type(s, en, what, errp);
            if (elem == NULL) {
                return NULL;
            }
            g_autofree char *name = g_strdup_printf("[%s]", elem->name);
            QapiType *t = g_hash_table_lookup(s->types, name);
            if (t == NULL) {
                t = type_new(s, name, QAPI_LIST);
                t->elem = elem;
            }
            return t;
        }
    }
    g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                "%s: a type must be a type name or a one-element array [name]", what);
    return NULL;
}

static QapiMember *find_member(const QapiType *t, const char *name)
{
    for (guint i = 0; i < t->members->len; i++) {
        QapiMember *m = g_ptr_array_index(t->members, i);
        if (strcmp(m->name, name) == 0) {
            return m;
        }
    }
    return NULL;
}

static bool load_members(QapiSchema *s, QapiType *t, JsonNode *list, const char *what,
                         GError **errp)
{
    static const char *const member_keys[] = {"name", "type", "optional", "doc", NULL};

    if (!JSON_NODE_HOLDS_ARRAY(list)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: members must be an array",
                    what);
        return false;
    }
    JsonArray *arr = json_node_get_array(list);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *mn = json_array_get_element(arr, i);
        if (!JSON_NODE_HOLDS_OBJECT(mn)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: member %u is not an object",
                        what, i);
            return false;
        }
        JsonObject *mo = json_node_get_object(mn);
        const char *name = get_str(mo, "name", true, what, errp);
        if (name == NULL) {
            return false;
        }
        g_autofree char *mwhat = g_strdup_printf("%s, member '%s'", what, name);
        if (!check_keys(mo, member_keys, mwhat, errp) || !check_doc(mo, mwhat, errp)) {
            return false;
        }
        if (*name == '\0' || find_member(t, name) != NULL) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: empty or duplicate name",
                        mwhat);
            return false;
        }
        JsonNode *tn = json_object_get_member(mo, "type");
        if (tn == NULL) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: 'type' is missing", mwhat);
            return false;
        }
        QapiType *mt = resolve_type(s, tn, mwhat, errp);
        if (mt == NULL) {
            return false;
        }
        bool optional = false;
        JsonNode *on = json_object_get_member(mo, "optional");
        if (on != NULL) {
            if (json_node_get_value_type(on) != G_TYPE_BOOLEAN) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "%s: 'optional' must be a boolean", mwhat);
                return false;
            }
            optional = json_node_get_boolean(on);
        }
        QapiMember *m = g_new0(QapiMember, 1);
        m->name = g_strdup(name);
        m->type = mt;
        m->optional = optional;
        g_ptr_array_add(t->members, m);
    }
    return true;
}

static bool load_enum(QapiType *t, JsonObject *def, const char *what, GError **errp)
{
    static const char *const keys[] = {"enum", "doc", "values", NULL};
    static const char *const value_keys[] = {"name", "doc", NULL};

    if (!check_keys(def, keys, what, errp)) {
        return false;
    }
    JsonNode *vn = json_object_get_member(def, "values");
    if (vn == NULL || !JSON_NODE_HOLDS_ARRAY(vn) ||
        json_array_get_length(json_node_get_array(vn)) == 0) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "%s: 'values' must be a non-empty array", what);
        return false;
    }
    JsonArray *arr = json_node_get_array(vn);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *en = json_array_get_element(arr, i);
        if (!JSON_NODE_HOLDS_OBJECT(en)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: value %u is not an object",
                        what, i);
            return false;
        }
        JsonObject *eo = json_node_get_object(en);
        const char *name = get_str(eo, "name", true, what, errp);
        if (name == NULL) {
            return false;
        }
        g_autofree char *vwhat = g_strdup_printf("%s, value '%s'", what, name);
        if (!check_keys(eo, value_keys, vwhat, errp) || !check_doc(eo, vwhat, errp)) {
            return false;
        }
        for (guint j = 0; j < t->values->len; j++) {
            if (strcmp(g_ptr_array_index(t->values, j), name) == 0) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: duplicate", vwhat);
                return false;
            }
        }
        g_ptr_array_add(t->values, g_strdup(name));
    }
    return true;
}

static bool enum_has(const QapiType *t, const char *value)
{
    for (guint i = 0; i < t->values->len; i++) {
        if (strcmp(g_ptr_array_index(t->values, i), value) == 0) {
            return true;
        }
    }
    return false;
}

static bool load_union(QapiSchema *s, QapiType *t, JsonObject *def, const char *what,
                       GError **errp)
{
    static const char *const keys[] = {"union", "doc", "base", "discriminator",
                                       "branches", "accept-data-wrapper", NULL};

    if (!check_keys(def, keys, what, errp)) {
        return false;
    }
    JsonNode *bn = json_object_get_member(def, "base");
    if (bn == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: 'base' is missing", what);
        return false;
    }
    if (!load_members(s, t, bn, what, errp)) {
        return false;
    }
    const char *disc = get_str(def, "discriminator", true, what, errp);
    if (disc == NULL) {
        return false;
    }
    QapiMember *dm = find_member(t, disc);
    if (dm == NULL || dm->optional || dm->type->kind != QAPI_ENUM) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "%s: discriminator '%s' must be a required enum member of the base",
                    what, disc);
        return false;
    }
    t->discriminator = g_strdup(disc);
    JsonNode *wn = json_object_get_member(def, "accept-data-wrapper");
    if (wn != NULL) {
        if (json_node_get_value_type(wn) != G_TYPE_BOOLEAN) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "%s: 'accept-data-wrapper' must be a boolean", what);
            return false;
        }
        t->data_wrapper = json_node_get_boolean(wn);
    }
    JsonNode *brn = json_object_get_member(def, "branches");
    if (brn == NULL || !JSON_NODE_HOLDS_OBJECT(brn)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: 'branches' must be an object",
                    what);
        return false;
    }
    JsonObject *bro = json_node_get_object(brn);
    g_autoptr(GList) values = json_object_get_members(bro);
    for (GList *l = values; l != NULL; l = l->next) {
        const char *value = l->data;
        g_autofree char *bwhat = g_strdup_printf("%s, branch '%s'", what, value);
        if (!enum_has(dm->type, value)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: not a value of %s", bwhat,
                        dm->type->name);
            return false;
        }
        QapiType *bt = resolve_type(s, json_object_get_member(bro, value), bwhat, errp);
        if (bt == NULL) {
            return false;
        }
        if (bt->kind != QAPI_STRUCT) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: must be a struct", bwhat);
            return false;
        }
        g_hash_table_insert(t->branches, g_strdup(value), bt);
    }
    return true;
}

/* Branch members must not clash with base members; checked once all structs exist. */
static bool check_union_clashes(const QapiType *t, GError **errp)
{
    GHashTableIter it;
    gpointer key, value;

    g_hash_table_iter_init(&it, t->branches);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        const QapiType *bt = value;
        for (guint i = 0; i < bt->members->len; i++) {
            const QapiMember *m = g_ptr_array_index(bt->members, i);
            if (find_member(t, m->name) != NULL || (t->data_wrapper &&
                                                    strcmp(m->name, "data") == 0)) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "union %s: member '%s' of branch '%s' clashes with the base",
                            t->name, m->name, (const char *)key);
                return false;
            }
        }
    }
    return true;
}

static QapiType *load_arguments(QapiSchema *s, JsonNode *an, const char *name,
                                const char *what, GError **errp)
{
    if (an != NULL && json_node_get_value_type(an) == G_TYPE_STRING) {
        QapiType *t = resolve_type(s, an, what, errp);
        if (t == NULL) {
            return NULL;
        }
        if (t->kind != QAPI_STRUCT && t->kind != QAPI_UNION) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "%s: arguments must name a struct or union", what);
            return NULL;
        }
        return t;
    }
    g_autofree char *tname = g_strdup_printf("%s:args", name);
    QapiType *t = type_new(s, tname, QAPI_STRUCT);
    t->defined = true;
    if (an != NULL && !load_members(s, t, an, what, errp)) {
        return NULL;
    }
    return t;
}

static bool load_entity(QapiSchema *s, JsonObject *def, bool command, const char *name,
                        const char *what, GError **errp)
{
    static const char *const command_keys[] = {"command", "doc", "arguments", "returns",
                                               "example", NULL};
    static const char *const event_keys[] = {"event", "doc", "data", "example", NULL};
    static const char *const returns_keys[] = {"type", "doc", NULL};
    GHashTable *index = command ? s->command_index : s->event_index;

    if (!check_keys(def, command ? command_keys : event_keys, what, errp)) {
        return false;
    }
    if (g_hash_table_contains(index, name)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: defined twice", what);
        return false;
    }
    JsonNode *ex = json_object_get_member(def, "example");
    if (ex != NULL) {
        bool ok = JSON_NODE_HOLDS_ARRAY(ex);
        for (guint i = 0; ok && i < json_array_get_length(json_node_get_array(ex)); i++) {
            ok = json_node_get_value_type(json_array_get_element(json_node_get_array(ex), i))
                 == G_TYPE_STRING;
        }
        if (!ok) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "%s: 'example' must be an array of strings", what);
            return false;
        }
    }
    QapiEntity *e = g_new0(QapiEntity, 1);
    e->name = g_strdup(name);
    g_ptr_array_add(command ? s->commands : s->events, e);
    g_hash_table_insert(index, e->name, e);

    e->args = load_arguments(s, json_object_get_member(def, command ? "arguments" : "data"),
                             name, what, errp);
    if (e->args == NULL) {
        return false;
    }
    JsonNode *rn = command ? json_object_get_member(def, "returns") : NULL;
    if (rn != NULL) {
        if (!JSON_NODE_HOLDS_OBJECT(rn)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: 'returns' must be an object",
                        what);
            return false;
        }
        JsonObject *ro = json_node_get_object(rn);
        g_autofree char *rwhat = g_strdup_printf("%s, returns", what);
        if (!check_keys(ro, returns_keys, rwhat, errp) || !check_doc(ro, rwhat, errp)) {
            return false;
        }
        JsonNode *tn = json_object_get_member(ro, "type");
        if (tn == NULL) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: 'type' is missing", rwhat);
            return false;
        }
        e->ret = resolve_type(s, tn, rwhat, errp);
        if (e->ret == NULL) {
            return false;
        }
    }
    return true;
}

static const char *const meta_keys[] = {"command", "event", "struct", "union", "enum", NULL};

/* The one meta key of a definition, and the name it gives. */
static const char *definition_meta(JsonObject *def, const char **name, guint index,
                                   GError **errp)
{
    const char *meta = NULL;

    for (const char *const *k = meta_keys; *k != NULL; k++) {
        if (json_object_has_member(def, *k)) {
            if (meta != NULL) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "definition %u: both '%s' and '%s'", index, meta, *k);
                return NULL;
            }
            meta = *k;
        }
    }
    if (meta == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "definition %u: none of command, event, struct, union, enum", index);
        return NULL;
    }
    g_autofree char *what = g_strdup_printf("definition %u", index);
    *name = get_str(def, meta, true, what, errp);
    if (*name == NULL) {
        return NULL;
    }
    if (**name == '\0' || strchr(*name, ':') != NULL || strchr(*name, '[') != NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "definition %u: bad name '%s'",
                    index, *name);
        return NULL;
    }
    return meta;
}

QapiSchema *qapi_schema_new(const char *json_text, GError **errp)
{
    g_autoptr(QapiSchema) s = g_new0(QapiSchema, 1);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local_err = NULL;
    static const char *const top_keys[] = {"schema", "version", "doc", "definitions", NULL};

    s->types = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, type_free);
    s->commands = g_ptr_array_new_with_free_func(entity_free);
    s->events = g_ptr_array_new_with_free_func(entity_free);
    s->command_index = g_hash_table_new(g_str_hash, g_str_equal);
    s->event_index = g_hash_table_new(g_str_hash, g_str_equal);
    for (size_t i = 0; i < G_N_ELEMENTS(builtins); i++) {
        type_new(s, builtins[i].name, builtins[i].kind)->defined = true;
    }

    if (!json_parser_load_from_data(parser, json_text, -1, &local_err)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "schema: %s", local_err->message);
        return NULL;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "schema: not a JSON object");
        return NULL;
    }
    JsonObject *top = json_node_get_object(root);
    if (!check_keys(top, top_keys, "schema", errp) || !check_doc(top, "schema", errp)) {
        return NULL;
    }
    JsonNode *dn = json_object_get_member(top, "definitions");
    if (dn == NULL || !JSON_NODE_HOLDS_ARRAY(dn)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "schema: 'definitions' must be an array");
        return NULL;
    }
    s->definitions = json_node_copy(dn);
    JsonArray *defs = json_node_get_array(s->definitions);
    guint n = json_array_get_length(defs);

    /* pass 1: named types */
    for (guint i = 0; i < n; i++) {
        JsonNode *node = json_array_get_element(defs, i);
        const char *name = NULL;
        if (!JSON_NODE_HOLDS_OBJECT(node)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "definition %u: not an object",
                        i);
            return NULL;
        }
        const char *meta = definition_meta(json_node_get_object(node), &name, i, errp);
        if (meta == NULL) {
            return NULL;
        }
        QapiKind kind;
        if (strcmp(meta, "struct") == 0) {
            kind = QAPI_STRUCT;
        } else if (strcmp(meta, "union") == 0) {
            kind = QAPI_UNION;
        } else if (strcmp(meta, "enum") == 0) {
            kind = QAPI_ENUM;
        } else {
            continue;
        }
        if (g_hash_table_contains(s->types, name)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s %s: defined twice", meta,
                        name);
            return NULL;
        }
        type_new(s, name, kind);
    }

    /* pass 2: contents */
    for (guint i = 0; i < n; i++) {
        JsonObject *def = json_node_get_object(json_array_get_element(defs, i));
        const char *name = NULL;
        const char *meta = definition_meta(def, &name, i, errp);
        g_autofree char *what = g_strdup_printf("%s %s", meta, name);
        bool ok;

        if (!check_doc(def, what, errp)) {
            return NULL;
        }
        if (strcmp(meta, "command") == 0 || strcmp(meta, "event") == 0) {
            ok = load_entity(s, def, meta[0] == 'c', name, what, errp);
        } else {
            QapiType *t = g_hash_table_lookup(s->types, name);
            if (t->kind == QAPI_STRUCT) {
                static const char *const keys[] = {"struct", "doc", "members", NULL};
                JsonNode *mn = json_object_get_member(def, "members");
                ok = check_keys(def, keys, what, errp);
                if (ok && mn == NULL) {
                    g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: 'members' is missing",
                                what);
                    ok = false;
                }
                ok = ok && load_members(s, t, mn, what, errp);
            } else if (t->kind == QAPI_UNION) {
                ok = load_union(s, t, def, what, errp);
            } else {
                ok = load_enum(t, def, what, errp);
            }
            t->defined = true;
        }
        if (!ok) {
            return NULL;
        }
    }

    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, s->types);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        QapiType *t = value;
        if (t->kind == QAPI_UNION && !check_union_clashes(t, errp)) {
            return NULL;
        }
    }
    return g_steal_pointer(&s);
}

static gpointer load_builtin(gpointer data)
{
    g_autoptr(GError) err = NULL;
    QapiSchema *s = qapi_schema_new(qapi_schema_json, &err);

    if (s == NULL) {
        g_error("the embedded qapi-schema.json is invalid: %s", err->message);
    }
    return s;
}

const QapiSchema *qapi_schema_builtin(void)
{
    static GOnce once = G_ONCE_INIT;

    return g_once(&once, load_builtin, NULL);
}

/* ---- lookups --------------------------------------------------------------------- */

guint qapi_schema_n_commands(const QapiSchema *s)
{
    return s->commands->len;
}

const char *qapi_schema_command_name(const QapiSchema *s, guint i)
{
    return i < s->commands->len ? ((QapiEntity *)g_ptr_array_index(s->commands, i))->name
                                : NULL;
}

bool qapi_schema_has_command(const QapiSchema *s, const char *name)
{
    return g_hash_table_contains(s->command_index, name);
}

guint qapi_schema_n_events(const QapiSchema *s)
{
    return s->events->len;
}

const char *qapi_schema_event_name(const QapiSchema *s, guint i)
{
    return i < s->events->len ? ((QapiEntity *)g_ptr_array_index(s->events, i))->name : NULL;
}

bool qapi_schema_has_event(const QapiSchema *s, const char *name)
{
    return g_hash_table_contains(s->event_index, name);
}

/* ---- checking -------------------------------------------------------------------- */

static char *join_path(const char *prefix, const char *name)
{
    return prefix == NULL || *prefix == '\0' ? g_strdup(name)
                                             : g_strdup_printf("%s.%s", prefix, name);
}

static bool type_error(const char *path, const char *expected, GError **errp)
{
    g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                "Invalid parameter type for '%s', expected: %s", path, expected);
    return false;
}

static bool check_object(const QapiType *t, JsonObject *obj, const char *prefix,
                         GError **errp);

static bool check_node(const QapiType *t, JsonNode *node, const char *path, GError **errp)
{
    GType vt = JSON_NODE_HOLDS_VALUE(node) ? json_node_get_value_type(node) : G_TYPE_INVALID;

    switch (t->kind) {
    case QAPI_STR:
        return vt == G_TYPE_STRING || type_error(path, "string", errp);
    case QAPI_BOOL:
        return vt == G_TYPE_BOOLEAN || type_error(path, "boolean", errp);
    case QAPI_NUMBER:
        return vt == G_TYPE_INT64 || vt == G_TYPE_DOUBLE || type_error(path, "number", errp);
    case QAPI_ANY:
        return true;
    case QAPI_INT:
    case QAPI_UINT16:
    case QAPI_UINT32:
    case QAPI_UINT64:
    case QAPI_SIZE: {
        if (vt != G_TYPE_INT64) {
            return type_error(path, "integer", errp);
        }
        gint64 v = json_node_get_int(node);
        gint64 max = t->kind == QAPI_UINT16 ? G_MAXUINT16
                   : t->kind == QAPI_UINT32 ? G_MAXUINT32 : G_MAXINT64;
        if (t->kind != QAPI_INT && (v < 0 || v > max)) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Parameter '%s' expects %s", path,
                        t->kind == QAPI_SIZE ? "uint64" : t->name);
            return false;
        }
        return true;
    }
    case QAPI_ENUM:
        if (vt != G_TYPE_STRING) {
            return type_error(path, "string", errp);
        }
        if (!enum_has(t, json_node_get_string(node))) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Parameter '%s' does not accept value '%s'", path,
                        json_node_get_string(node));
            return false;
        }
        return true;
    case QAPI_STRUCT:
    case QAPI_UNION:
        if (!JSON_NODE_HOLDS_OBJECT(node)) {
            return type_error(path, "object", errp);
        }
        return check_object(t, json_node_get_object(node), path, errp);
    case QAPI_LIST: {
        if (!JSON_NODE_HOLDS_ARRAY(node)) {
            return type_error(path, "array", errp);
        }
        JsonArray *arr = json_node_get_array(node);
        for (guint i = 0; i < json_array_get_length(arr); i++) {
            g_autofree char *epath = g_strdup_printf("%s[%u]", path, i);
            if (!check_node(t->elem, json_array_get_element(arr, i), epath, errp)) {
                return false;
            }
        }
        return true;
    }
    }
    g_assert_not_reached();
}

static bool check_members(const GPtrArray *members, JsonObject *obj, const char *prefix,
                          GError **errp)
{
    for (guint i = 0; i < members->len; i++) {
        const QapiMember *m = g_ptr_array_index(members, i);
        JsonNode *node = json_object_get_member(obj, m->name);
        g_autofree char *path = join_path(prefix, m->name);

        if (node == NULL) {
            if (!m->optional) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Parameter '%s' is missing",
                            path);
                return false;
            }
            continue;
        }
        if (!check_node(m->type, node, path, errp)) {
            return false;
        }
    }
    return true;
}

/* QEMU's SocketAddressLegacy: {"type": T, "data": {...}} read as {"type": T, ...}. */
static void unwrap_data(const QapiType *t, JsonObject *obj)
{
    JsonNode *data = json_object_get_member(obj, "data");

    if (data == NULL || !JSON_NODE_HOLDS_OBJECT(data) || json_object_get_size(obj) != 2 ||
        !json_object_has_member(obj, t->discriminator)) {
        return;
    }
    g_autoptr(JsonNode) keep = json_node_ref(data);
    JsonObject *inner = json_node_get_object(keep);
    g_autoptr(GList) keys = json_object_get_members(inner);
    json_object_remove_member(obj, "data");
    for (GList *l = keys; l != NULL; l = l->next) {
        if (!json_object_has_member(obj, l->data)) {
            json_object_set_member(obj, l->data,
                                   json_node_copy(json_object_get_member(inner, l->data)));
        }
    }
}

static bool check_object(const QapiType *t, JsonObject *obj, const char *prefix,
                         GError **errp)
{
    const QapiType *branch = NULL;

    if (t->kind == QAPI_UNION && t->data_wrapper) {
        unwrap_data(t, obj);
    }
    if (!check_members(t->members, obj, prefix, errp)) {
        return false;
    }
    if (t->kind == QAPI_UNION) {
        const char *value = json_object_get_string_member(obj, t->discriminator);
        branch = g_hash_table_lookup(t->branches, value);
        if (branch != NULL && !check_members(branch->members, obj, prefix, errp)) {
            return false;
        }
    }
    g_autoptr(GList) keys = json_object_get_members(obj);
    for (GList *l = keys; l != NULL; l = l->next) {
        if (find_member(t, l->data) == NULL &&
            (branch == NULL || find_member(branch, l->data) == NULL)) {
            g_autofree char *path = join_path(prefix, l->data);
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Parameter '%s' is unexpected",
                        path);
            return false;
        }
    }
    return true;
}

bool qapi_schema_check_args(const QapiSchema *s, const char *command, JsonObject *args,
                            GError **errp)
{
    const QapiEntity *e = g_hash_table_lookup(s->command_index, command);

    if (e == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                    "The command %s has not been found", command);
        return false;
    }
    return check_object(e->args, args, NULL, errp);
}

bool qapi_schema_check_event(const QapiSchema *s, const char *event, JsonObject *data,
                             GError **errp)
{
    const QapiEntity *e = g_hash_table_lookup(s->event_index, event);

    if (e == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "unknown event %s", event);
        return false;
    }
    if (data == NULL) {
        g_autoptr(JsonObject) empty = json_object_new();
        return check_object(e->args, empty, NULL, errp);
    }
    return check_object(e->args, data, NULL, errp);
}

bool qapi_schema_check_return(const QapiSchema *s, const char *command, JsonNode *ret,
                              GError **errp)
{
    const QapiEntity *e = g_hash_table_lookup(s->command_index, command);

    if (e == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                    "The command %s has not been found", command);
        return false;
    }
    if (e->ret == NULL) {
        if (!JSON_NODE_HOLDS_OBJECT(ret) || json_object_get_size(json_node_get_object(ret))) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s must return {}", command);
            return false;
        }
        return true;
    }
    return check_node(e->ret, ret, "return", errp);
}

/* ---- command-line keyval --------------------------------------------------------- */

static bool keyval_set(JsonObject *root, const char *key, const char *value, GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(key, ".", -1);
    JsonObject *obj = root;
    guint n = g_strv_length(parts);

    for (guint i = 0; i < n; i++) {
        if (parts[i][0] == '\0') {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Invalid parameter '%s'", key);
            return false;
        }
        for (const char *p = parts[i]; *p != '\0'; p++) {
            if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_') {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Invalid parameter '%s'",
                            key);
                return false;
            }
        }
        JsonNode *existing = json_object_get_member(obj, parts[i]);
        if (i + 1 == n) {
            if (existing != NULL) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "Parameter '%s' is given twice", key);
                return false;
            }
            json_object_set_string_member(obj, parts[i], value);
        } else if (existing == NULL) {
            JsonObject *child = json_object_new();
            json_object_set_object_member(obj, parts[i], child);
            obj = child;
        } else if (JSON_NODE_HOLDS_OBJECT(existing)) {
            obj = json_node_get_object(existing);
        } else {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Parameter '%s' is both a value and a group of values", key);
            return false;
        }
    }
    return true;
}

JsonObject *keyval_parse(const char *text, const char *implied_key, GError **errp)
{
    g_autoptr(JsonObject) root = json_object_new();
    const char *p = text;
    bool first = true;

    while (*p != '\0') {
        const char *eq = p;
        while (*eq != '\0' && *eq != '=' && *eq != ',') {
            eq++;
        }
        g_autofree char *key = NULL;
        if (*eq == '=') {
            key = g_strndup(p, eq - p);
            p = eq + 1;
        } else if (first && implied_key != NULL) {
            key = g_strdup(implied_key);
        } else {
            g_autofree char *bad = g_strndup(p, eq - p);
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Expected '=' after parameter '%s'", bad);
            return NULL;
        }
        /* the value runs to the next single comma; ",," is a literal comma */
        GString *value = g_string_new(NULL);
        while (*p != '\0') {
            if (*p == ',') {
                if (p[1] != ',') {
                    break;
                }
                p++;
            }
            g_string_append_c(value, *p++);
        }
        bool ok = keyval_set(root, key, value->str, errp);
        g_string_free(value, TRUE);
        if (!ok) {
            return NULL;
        }
        if (*p == ',') {
            p++;
            if (*p == '\0') {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Expected parameter after ','");
                return NULL;
            }
        }
        first = false;
    }
    return g_steal_pointer(&root);
}

static bool convert_object(const QapiType *t, JsonObject *obj, const char *prefix,
                           GError **errp);

/* Replace the string at obj[name] by the typed value t wants; leave what it can't judge
 * (unknown members, objects) for qapi_schema_check_args() to report. */
static bool convert_member(const QapiType *t, JsonObject *obj, const char *name,
                           const char *path, GError **errp)
{
    JsonNode *node = json_object_get_member(obj, name);

    if (JSON_NODE_HOLDS_OBJECT(node)) {
        return (t->kind == QAPI_STRUCT || t->kind == QAPI_UNION)
               ? convert_object(t, json_node_get_object(node), path, errp) : true;
    }
    if (json_node_get_value_type(node) != G_TYPE_STRING) {
        return true;
    }
    const char *str = json_node_get_string(node);
    switch (t->kind) {
    case QAPI_BOOL: {
        static const char *const yes[] = {"on", "yes", "true", "y", NULL};
        static const char *const no[] = {"off", "no", "false", "n", NULL};
        if (g_strv_contains(yes, str)) {
            json_object_set_boolean_member(obj, name, TRUE);
        } else if (g_strv_contains(no, str)) {
            json_object_set_boolean_member(obj, name, FALSE);
        } else {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "Parameter '%s' expects 'on' or 'off'", path);
            return false;
        }
        return true;
    }
    case QAPI_INT:
    case QAPI_UINT16:
    case QAPI_UINT32:
    case QAPI_UINT64:
    case QAPI_SIZE: {
        gint64 v;
        bool hex = g_str_has_prefix(str, "0x") || g_str_has_prefix(str, "0X");
        if (!g_ascii_string_to_signed(hex ? str + 2 : str, hex ? 16 : 10, G_MININT64,
                                      G_MAXINT64, &v, NULL) || (hex && str[2] == '-')) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Parameter '%s' expects %s", path,
                        t->kind == QAPI_INT ? "int64"
                        : t->kind == QAPI_SIZE ? "uint64" : t->name);
            return false;
        }
        json_object_set_int_member(obj, name, v);
        return true;
    }
    case QAPI_NUMBER: {
        char *end = NULL;
        errno = 0;
        double d = g_ascii_strtod(str, &end);
        if (*str == '\0' || *end != '\0' || errno != 0) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Parameter '%s' expects a number",
                        path);
            return false;
        }
        json_object_set_double_member(obj, name, d);
        return true;
    }
    case QAPI_LIST:
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "Parameter '%s': lists cannot be given on the command line", path);
        return false;
    default:
        return true;
    }
}

static bool convert_members(const GPtrArray *members, JsonObject *obj, const char *prefix,
                            GError **errp)
{
    for (guint i = 0; i < members->len; i++) {
        const QapiMember *m = g_ptr_array_index(members, i);
        if (json_object_has_member(obj, m->name)) {
            g_autofree char *path = join_path(prefix, m->name);
            if (!convert_member(m->type, obj, m->name, path, errp)) {
                return false;
            }
        }
    }
    return true;
}

static bool convert_object(const QapiType *t, JsonObject *obj, const char *prefix,
                           GError **errp)
{
    if (!convert_members(t->members, obj, prefix, errp)) {
        return false;
    }
    if (t->kind == QAPI_UNION) {
        JsonNode *d = json_object_get_member(obj, t->discriminator);
        if (d != NULL && json_node_get_value_type(d) == G_TYPE_STRING) {
            const QapiType *branch = g_hash_table_lookup(t->branches, json_node_get_string(d));
            if (branch != NULL) {
                return convert_members(branch->members, obj, prefix, errp);
            }
        }
    }
    return true;
}

JsonObject *qapi_schema_args_from_keyval(const QapiSchema *s, const char *command,
                                         const char *text, const char *implied_key,
                                         GError **errp)
{
    const QapiEntity *e = g_hash_table_lookup(s->command_index, command);

    if (e == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                    "The command %s has not been found", command);
        return NULL;
    }
    g_autoptr(JsonObject) args = keyval_parse(text, implied_key, errp);
    if (args == NULL || !convert_object(e->args, args, NULL, errp)) {
        return NULL;
    }
    return g_steal_pointer(&args);
}

/* ---- introspection --------------------------------------------------------------- */

static void strip_docs(JsonNode *node)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *obj = json_node_get_object(node);
        json_object_remove_member(obj, "doc");
        json_object_remove_member(obj, "example");
        g_autoptr(GList) keys = json_object_get_members(obj);
        for (GList *l = keys; l != NULL; l = l->next) {
            strip_docs(json_object_get_member(obj, l->data));
        }
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);
        for (guint i = 0; i < json_array_get_length(arr); i++) {
            strip_docs(json_array_get_element(arr, i));
        }
    }
}

/* json_node_copy() shares containers; introspection output is modified, so copy deeply */
static JsonNode *deep_copy(JsonNode *node)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *src = json_node_get_object(node);
        JsonObject *dst = json_object_new();
        g_autoptr(GList) keys = json_object_get_members(src);
        for (GList *l = keys; l != NULL; l = l->next) {
            json_object_set_member(dst, l->data,
                                   deep_copy(json_object_get_member(src, l->data)));
        }
        JsonNode *n = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(n, dst);
        return n;
    }
    if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *src = json_node_get_array(node);
        JsonArray *dst = json_array_new();
        for (guint i = 0; i < json_array_get_length(src); i++) {
            json_array_add_element(dst, deep_copy(json_array_get_element(src, i)));
        }
        JsonNode *n = json_node_new(JSON_NODE_ARRAY);
        json_node_take_array(n, dst);
        return n;
    }
    return json_node_copy(node);
}

JsonNode *qapi_schema_introspect(const QapiSchema *s)
{
    JsonNode *copy = deep_copy(s->definitions);

    strip_docs(copy);
    return copy;
}
