/*
 * test-qapi-schema.c — qapi-schema.json and the checks driven by it: the embedded schema
 * loads; schema commands and the handler table are the same set; argument checking
 * (table of arguments -> QEMU's error message); command-line keyval conversion;
 * schemas that must be rejected; introspection without docs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "monitor.h"
#include "monitor/json-writer.h"
#include "monitor/qapi-schema.h"

static JsonObject *parse_object(const char *text)
{
    g_autoptr(JsonParser) p = json_parser_new();
    g_autoptr(GError) err = NULL;

    if (!json_parser_load_from_data(p, text, -1, &err)) {
        fail_msg("bad test JSON %s: %s", text, err->message);
    }
    JsonNode *root = json_parser_get_root(p);
    assert_true(JSON_NODE_HOLDS_OBJECT(root));
    return json_object_ref(json_node_get_object(root));
}

static char *object_text(JsonObject *obj)
{
    g_autoptr(JsonNode) n = json_node_new(JSON_NODE_OBJECT);

    json_node_set_object(n, obj);
    return json_writer_to_string(n);
}

static void test_builtin_loads(void **state)
{
    const QapiSchema *s = qapi_schema_builtin();

    assert_non_null(s);
    assert_true(qapi_schema_n_commands(s) >= 17);
    assert_true(qapi_schema_has_command(s, "qmp_capabilities"));
    assert_true(qapi_schema_has_event(s, "SHUTDOWN"));
    assert_true(qapi_schema_has_event(s, "BLOCK_EXPORT_DELETED"));
    assert_false(qapi_schema_has_command(s, "SHUTDOWN"));
}

/* Every schema command has a handler, every handler a schema command, no duplicates. */
static void test_handlers_match_schema(void **state)
{
    const QapiSchema *s = qapi_schema_builtin();
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

    for (const QmpCommand *c = qmp_commands; c->name != NULL; c++) {
        if (!qapi_schema_has_command(s, c->name)) {
            fail_msg("handler %s has no schema command", c->name);
        }
        assert_non_null(c->fn);
        assert_true(g_hash_table_add(seen, (gpointer)c->name));
    }
    for (guint i = 0; i < qapi_schema_n_commands(s); i++) {
        const char *name = qapi_schema_command_name(s, i);
        if (qmp_command_find(name) == NULL) {
            fail_msg("schema command %s has no handler", name);
        }
    }
    assert_int_equal(g_hash_table_size(seen), qapi_schema_n_commands(s));
}

/* Events the code emits are declared, with the data it sends. */
static void test_events_declared(void **state)
{
    const QapiSchema *s = qapi_schema_builtin();
    static const struct {
        const char *event;
        const char *data;
        const char *error;
    } cases[] = {
        {"SHUTDOWN", "{\"guest\": false, \"reason\": \"host-qmp-quit\"}", NULL},
        {"SHUTDOWN", "{\"guest\": false, \"reason\": \"host-signal\"}", NULL},
        {"SHUTDOWN", "{\"guest\": false}", "Parameter 'reason' is missing"},
        {"BLOCK_EXPORT_DELETED", "{\"id\": \"e0\"}", NULL},
        {"NO_SUCH_EVENT", "{}", "unknown event NO_SUCH_EVENT"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(JsonObject) data = parse_object(cases[i].data);
        g_autoptr(GError) err = NULL;
        bool ok = qapi_schema_check_event(s, cases[i].event, data, &err);
        if (cases[i].error == NULL) {
            assert_true(ok);
        } else {
            assert_false(ok);
            assert_string_equal(err->message, cases[i].error);
        }
    }
}

/* command, arguments, expected error (NULL: accepted), expected normalised form */
static const struct {
    const char *command;
    const char *args;
    const char *error;
    const char *normalised;
} arg_cases[] = {
    {"query-version", "{}", NULL, NULL},
    {"query-version", "{\"x\": 1}", "Parameter 'x' is unexpected", NULL},
    {"qmp_capabilities", "{}", NULL, NULL},
    {"qmp_capabilities", "{\"enable\": [\"oob\"]}", NULL, NULL},
    {"qmp_capabilities", "{\"enable\": []}", NULL, NULL},
    {"qmp_capabilities", "{\"enable\": \"oob\"}",
     "Invalid parameter type for 'enable', expected: array", NULL},
    {"qmp_capabilities", "{\"enable\": [\"oob\", \"foo\"]}",
     "Parameter 'enable[1]' does not accept value 'foo'", NULL},
    {"qmp_capabilities", "{\"enable\": [1]}",
     "Invalid parameter type for 'enable[0]', expected: string", NULL},
    /* str */
    {"blockdev-del", "{\"node-name\": \"d0\"}", NULL, NULL},
    {"blockdev-del", "{}", "Parameter 'node-name' is missing", NULL},
    {"blockdev-del", "{\"node-name\": 1}",
     "Invalid parameter type for 'node-name', expected: string", NULL},
    {"blockdev-del", "{\"node-name\": null}",
     "Invalid parameter type for 'node-name', expected: string", NULL},
    {"blockdev-del", "{\"node-name\": [\"d0\"]}",
     "Invalid parameter type for 'node-name', expected: string", NULL},
    {"blockdev-del", "{\"node-name\": \"d0\", \"force\": true}",
     "Parameter 'force' is unexpected", NULL},
    /* missing is reported before unexpected, in schema order */
    {"blockdev-del", "{\"force\": true}", "Parameter 'node-name' is missing", NULL},
    /* bool, optional, enum */
    {"nbd-server-add", "{\"device\": \"d0\", \"writable\": true}", NULL, NULL},
    {"nbd-server-add", "{\"device\": \"d0\", \"writable\": \"on\"}",
     "Invalid parameter type for 'writable', expected: boolean", NULL},
    {"nbd-server-add", "{\"device\": \"d0\", \"writable\": 1}",
     "Invalid parameter type for 'writable', expected: boolean", NULL},
    {"nbd-server-remove", "{\"name\": \"e\", \"mode\": \"hard\"}", NULL, NULL},
    {"nbd-server-remove", "{\"name\": \"e\", \"mode\": \"soft\"}",
     "Parameter 'mode' does not accept value 'soft'", NULL},
    {"nbd-server-remove", "{\"name\": \"e\", \"mode\": 1}",
     "Invalid parameter type for 'mode', expected: string", NULL},
    /* integers and their ranges */
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"path\": \"s\"}, "
                         "\"max-connections\": 4294967295}", NULL, NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"path\": \"s\"}, "
                         "\"max-connections\": 4294967296}",
     "Parameter 'max-connections' expects uint32", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"path\": \"s\"}, "
                         "\"max-connections\": -1}",
     "Parameter 'max-connections' expects uint32", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"path\": \"s\"}, "
                         "\"max-connections\": 1.5}",
     "Invalid parameter type for 'max-connections', expected: integer", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"path\": \"s\"}, "
                         "\"max-connections\": \"4\"}",
     "Invalid parameter type for 'max-connections', expected: integer", NULL},
    /* nested structs and flat unions */
    {"nbd-server-start", "{\"addr\": {\"type\": \"inet\", \"host\": \"127.0.0.1\", "
                         "\"port\": \"10809\"}}", NULL, NULL},
    {"nbd-server-start", "{}", "Parameter 'addr' is missing", NULL},
    {"nbd-server-start", "{\"addr\": \"unix:s\"}",
     "Invalid parameter type for 'addr', expected: object", NULL},
    {"nbd-server-start", "{\"addr\": {}}", "Parameter 'addr.type' is missing", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"vsock\"}}",
     "Parameter 'addr.type' does not accept value 'vsock'", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\"}}",
     "Parameter 'addr.path' is missing", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"path\": 5}}",
     "Invalid parameter type for 'addr.path', expected: string", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"path\": \"s\", \"port\": \"1\"}}",
     "Parameter 'addr.port' is unexpected", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"inet\", \"host\": \"h\", \"port\": 10809}}",
     "Invalid parameter type for 'addr.port', expected: string", NULL},
    /* QEMU's legacy {"type", "data"} address form is flattened */
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"s\"}}}",
     NULL, "{\"addr\": {\"type\": \"unix\", \"path\": \"s\"}}"},
    {"nbd-server-start", "{\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"h\"}}}",
     "Parameter 'addr.port' is missing", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": 1}}}",
     "Invalid parameter type for 'addr.path', expected: string", NULL},
    {"nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"path\": \"s\", \"data\": {}}}",
     "Parameter 'addr.data' is unexpected", NULL},
    /* blockdev-add: union on driver */
    {"blockdev-add", "{\"driver\": \"file\", \"node-name\": \"d0\", \"filename\": \"a\", "
                     "\"read-only\": true, \"cache\": {\"direct\": true}}", NULL, NULL},
    {"blockdev-add", "{\"driver\": \"host_device\", \"node-name\": \"d0\", "
                     "\"filename\": \"/dev/x\", \"direct\": false}", NULL, NULL},
    {"blockdev-add", "{\"node-name\": \"d0\", \"filename\": \"a\"}",
     "Parameter 'driver' is missing", NULL},
    {"blockdev-add", "{\"driver\": \"qcow2\", \"node-name\": \"d0\", \"filename\": \"a\"}",
     "Parameter 'driver' does not accept value 'qcow2'", NULL},
    {"blockdev-add", "{\"driver\": \"file\", \"node-name\": \"d0\"}",
     "Parameter 'filename' is missing", NULL},
    {"blockdev-add", "{\"driver\": \"file\", \"filename\": \"a\"}",
     "Parameter 'node-name' is missing", NULL},
    {"blockdev-add", "{\"driver\": \"file\", \"node-name\": \"d0\", \"filename\": \"a\", "
                     "\"cache\": {\"direct\": \"on\"}}",
     "Invalid parameter type for 'cache.direct', expected: boolean", NULL},
    {"blockdev-add", "{\"driver\": \"file\", \"node-name\": \"d0\", \"filename\": \"a\", "
                     "\"cache\": {\"no-flush\": true}}",
     "Parameter 'cache.no-flush' is unexpected", NULL},
    {"blockdev-add", "{\"driver\": \"file\", \"node-name\": \"d0\", \"filename\": \"a\", "
                     "\"data\": {}}", "Parameter 'data' is unexpected", NULL},
    /* block-export-add: union on type, branch member "name" */
    {"block-export-add", "{\"type\": \"nbd\", \"id\": \"e\", \"node-name\": \"d0\", "
                         "\"name\": \"x\", \"writable\": true}", NULL, NULL},
    {"block-export-add", "{\"type\": \"fuse\", \"id\": \"e\", \"node-name\": \"d0\"}",
     "Parameter 'type' does not accept value 'fuse'", NULL},
    {"block-export-add", "{\"type\": \"nbd\", \"node-name\": \"d0\"}",
     "Parameter 'id' is missing", NULL},
    {"block-export-add", "{\"type\": \"nbd\", \"id\": \"e\", \"node-name\": \"d0\", "
                         "\"name\": 7}", "Invalid parameter type for 'name', expected: string",
     NULL},
    {"getfd", "{\"fdname\": \"x\"}", NULL, NULL},
    {"getfd", "{\"fdname\": \"x\", \"fd\": 3}", "Parameter 'fd' is unexpected", NULL},
    {"no-such-command", "{}", "The command no-such-command has not been found", NULL},
};

static void test_check_args(void **state)
{
    const QapiSchema *s = qapi_schema_builtin();

    for (size_t i = 0; i < G_N_ELEMENTS(arg_cases); i++) {
        g_autoptr(JsonObject) args = parse_object(arg_cases[i].args);
        g_autoptr(GError) err = NULL;
        bool ok = qapi_schema_check_args(s, arg_cases[i].command, args, &err);

        if (arg_cases[i].error == NULL) {
            if (!ok) {
                fail_msg("%s %s: unexpected error: %s", arg_cases[i].command,
                         arg_cases[i].args, err->message);
            }
            if (arg_cases[i].normalised != NULL) {
                g_autofree char *text = object_text(args);
                assert_string_equal(text, arg_cases[i].normalised);
            }
        } else {
            if (ok) {
                fail_msg("%s %s: accepted, expected \"%s\"", arg_cases[i].command,
                         arg_cases[i].args, arg_cases[i].error);
            }
            if (strcmp(err->message, arg_cases[i].error) != 0) {
                fail_msg("%s %s:\n  want \"%s\"\n  got  \"%s\"", arg_cases[i].command,
                         arg_cases[i].args, arg_cases[i].error, err->message);
            }
            assert_string_equal(qmp_error_class(err),
                                strstr(arg_cases[i].error, "has not been found")
                                    ? "CommandNotFound" : "GenericError");
        }
    }
}

/* Command-line text -> arguments; then the normal check. */
static void test_keyval(void **state)
{
    const QapiSchema *s = qapi_schema_builtin();
    static const struct {
        const char *command;
        const char *text;
        const char *implied;
        const char *want;     /* the arguments, or "E:<error>" */
    } cases[] = {
        {"blockdev-add", "driver=file,node-name=d0,filename=a.raw,read-only=on,cache.direct=off",
         NULL, "{\"driver\": \"file\", \"node-name\": \"d0\", \"filename\": \"a.raw\", "
               "\"read-only\": true, \"cache\": {\"direct\": false}}"},
        {"blockdev-add", "driver=file,node-name=d0,filename=a,,b.raw", NULL,
         "{\"driver\": \"file\", \"node-name\": \"d0\", \"filename\": \"a,b.raw\"}"},
        {"blockdev-add", "driver=file,node-name=d0,filename=a,read-only=maybe", NULL,
         "E:Parameter 'read-only' expects 'on' or 'off'"},
        {"blockdev-add", "driver=file,node-name=d0,filename=a,cache.direct=2", NULL,
         "E:Parameter 'cache.direct' expects 'on' or 'off'"},
        {"blockdev-add", "driver=file,node-name=d0,filename=a,bogus=1", NULL,
         "C:Parameter 'bogus' is unexpected"},
        {"blockdev-add", "driver=file,node-name=d0", NULL, "C:Parameter 'filename' is missing"},
        {"blockdev-add", "driver=file,node-name=d0,filename.x=1", NULL,
         "C:Invalid parameter type for 'filename', expected: string"},
        {"blockdev-add", "driver=file,driver=file", NULL, "E:Parameter 'driver' is given twice"},
        {"blockdev-add", "driver", NULL, "E:Expected '=' after parameter 'driver'"},
        {"blockdev-add", "driver=file,", NULL, "E:Expected parameter after ','"},
        {"blockdev-add", "a..b=1", NULL, "E:Invalid parameter 'a..b'"},
        {"blockdev-add", "cache=1,cache.direct=on", NULL,
         "E:Parameter 'cache.direct' is both a value and a group of values"},
        {"nbd-server-start", "addr.type=unix,addr.path=/run/x.sock,max-connections=4", NULL,
         "{\"addr\": {\"type\": \"unix\", \"path\": \"/run/x.sock\"}, \"max-connections\": 4}"},
        {"nbd-server-start", "addr.type=inet,addr.host=127.0.0.1,addr.port=10809", NULL,
         "{\"addr\": {\"type\": \"inet\", \"host\": \"127.0.0.1\", \"port\": \"10809\"}}"},
        {"nbd-server-start", "addr.type=unix,addr.path=s,max-connections=0x10", NULL,
         "{\"addr\": {\"type\": \"unix\", \"path\": \"s\"}, \"max-connections\": 16}"},
        {"nbd-server-start", "addr.type=unix,addr.path=s,max-connections=many", NULL,
         "E:Parameter 'max-connections' expects uint32"},
        {"nbd-server-start", "addr.type=unix,addr.path=s,max-connections=-1", NULL,
         "C:Parameter 'max-connections' expects uint32"},
        {"block-export-add", "nbd,id=e0,node-name=d0,writable=on,name=x", "type",
         "{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"d0\", \"writable\": true, "
         "\"name\": \"x\"}"},
        {"block-export-add", "type=nbd,id=e0,node-name=d0", "type",
         "{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"d0\"}"},
        {"qmp_capabilities", "enable=oob", NULL,
         "E:Parameter 'enable': lists cannot be given on the command line"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(JsonObject) args = qapi_schema_args_from_keyval(s, cases[i].command,
                                                                  cases[i].text,
                                                                  cases[i].implied, &err);
        const char *want = cases[i].want;

        if (want[0] == 'E' && want[1] == ':') {
            if (args != NULL) {
                fail_msg("%s: accepted, expected %s", cases[i].text, want);
            }
            assert_string_equal(err->message, want + 2);
            continue;
        }
        if (args == NULL) {
            fail_msg("%s: %s", cases[i].text, err->message);
        }
        bool ok = qapi_schema_check_args(s, cases[i].command, args, &err);
        if (want[0] == 'C' && want[1] == ':') {
            assert_false(ok);
            assert_string_equal(err->message, want + 2);
            continue;
        }
        if (!ok) {
            fail_msg("%s: %s", cases[i].text, err->message);
        }
        g_autofree char *text = object_text(args);
        assert_string_equal(text, want);
    }
}

static void test_bad_schemas(void **state)
{
#define DEFS(x) "{\"doc\": \"d\", \"definitions\": [" x "]}"
    static const struct {
        const char *text;
        const char *error;    /* substring */
    } cases[] = {
        {"[]", "not a JSON object"},
        {"{\"definitions\": []}", "'doc' is missing"},
        {"{\"doc\": \"d\", \"definitions\": {}}", "'definitions' must be an array"},
        {"{\"doc\": \"d\", \"definitions\": [], \"x\": 1}", "unknown key 'x'"},
        {DEFS("{\"command\": \"c\"}"), "command c: 'doc' is missing"},
        {DEFS("{\"command\": \"c\", \"doc\": \"\"}"), "command c: empty doc"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\", \"arguments\": [{\"name\": \"a\", "
              "\"type\": \"str\"}]}"), "member 'a': 'doc' is missing"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\", \"arguments\": [{\"name\": \"a\", "
              "\"type\": \"Nope\", \"doc\": \"d\"}]}"), "unknown type 'Nope'"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\", \"arguments\": [{\"name\": \"a\", "
              "\"type\": [\"str\", \"int\"], \"doc\": \"d\"}]}"), "one-element array"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\", \"arguments\": [{\"name\": \"a\", "
              "\"type\": \"str\", \"doc\": \"d\"}, {\"name\": \"a\", \"type\": \"str\", "
              "\"doc\": \"d\"}]}"), "empty or duplicate name"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\", \"argument\": []}"), "unknown key 'argument'"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\"}, {\"command\": \"c\", \"doc\": \"d\"}"),
         "defined twice"},
        {DEFS("{\"command\": \"c\", \"event\": \"E\", \"doc\": \"d\"}"), "both"},
        {DEFS("{\"doc\": \"d\"}"), "none of command"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\", \"arguments\": \"str\"}"),
         "arguments must name a struct or union"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\", \"returns\": {\"type\": \"str\"}}"),
         "returns: 'doc' is missing"},
        {DEFS("{\"enum\": \"E\", \"doc\": \"d\", \"values\": []}"), "non-empty array"},
        {DEFS("{\"enum\": \"E\", \"doc\": \"d\", \"values\": [{\"name\": \"a\", \"doc\": "
              "\"d\"}, {\"name\": \"a\", \"doc\": \"d\"}]}"), "duplicate"},
        {DEFS("{\"struct\": \"S\", \"doc\": \"d\", \"members\": []}, {\"struct\": \"S\", "
              "\"doc\": \"d\", \"members\": []}"), "defined twice"},
        {DEFS("{\"struct\": \"S\", \"doc\": \"d\"}"), "'members' is missing"},
        {DEFS("{\"enum\": \"K\", \"doc\": \"d\", \"values\": [{\"name\": \"a\", \"doc\": "
              "\"d\"}]}, {\"union\": \"U\", \"doc\": \"d\", \"base\": [{\"name\": \"k\", "
              "\"type\": \"str\", \"doc\": \"d\"}], \"discriminator\": \"k\", \"branches\": {}}"),
         "must be a required enum member"},
        {DEFS("{\"enum\": \"K\", \"doc\": \"d\", \"values\": [{\"name\": \"a\", \"doc\": "
              "\"d\"}]}, {\"union\": \"U\", \"doc\": \"d\", \"base\": [{\"name\": \"k\", "
              "\"type\": \"K\", \"doc\": \"d\"}], \"discriminator\": \"k\", \"branches\": "
              "{\"b\": \"K\"}}"), "not a value of K"},
        {DEFS("{\"enum\": \"K\", \"doc\": \"d\", \"values\": [{\"name\": \"a\", \"doc\": "
              "\"d\"}]}, {\"union\": \"U\", \"doc\": \"d\", \"base\": [{\"name\": \"k\", "
              "\"type\": \"K\", \"doc\": \"d\"}], \"discriminator\": \"k\", \"branches\": "
              "{\"a\": \"K\"}}"), "must be a struct"},
        {DEFS("{\"enum\": \"K\", \"doc\": \"d\", \"values\": [{\"name\": \"a\", \"doc\": "
              "\"d\"}]}, {\"struct\": \"S\", \"doc\": \"d\", \"members\": [{\"name\": \"k\", "
              "\"type\": \"str\", \"doc\": \"d\"}]}, {\"union\": \"U\", \"doc\": \"d\", "
              "\"base\": [{\"name\": \"k\", \"type\": \"K\", \"doc\": \"d\"}], "
              "\"discriminator\": \"k\", \"branches\": {\"a\": \"S\"}}"), "clashes with the base"},
        {DEFS("{\"command\": \"c\", \"doc\": \"d\", \"arguments\": [{\"name\": \"a\", "
              "\"type\": \"c:args\", \"doc\": \"d\"}]}"), "unknown type 'c:args'"},
    };
#undef DEFS

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(QapiSchema) s = qapi_schema_new(cases[i].text, &err);
        if (s != NULL) {
            fail_msg("schema %zu accepted, expected \"%s\"", i, cases[i].error);
        }
        if (strstr(err->message, cases[i].error) == NULL) {
            fail_msg("schema %zu: want \"%s\" in \"%s\"", i, cases[i].error, err->message);
        }
    }
}

static bool has_key_anywhere(JsonNode *node, const char *key)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *obj = json_node_get_object(node);
        if (json_object_has_member(obj, key)) {
            return true;
        }
        g_autoptr(GList) keys = json_object_get_members(obj);
        for (GList *l = keys; l != NULL; l = l->next) {
            if (has_key_anywhere(json_object_get_member(obj, l->data), key)) {
                return true;
            }
        }
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);
        for (guint i = 0; i < json_array_get_length(arr); i++) {
            if (has_key_anywhere(json_array_get_element(arr, i), key)) {
                return true;
            }
        }
    }
    return false;
}

static void test_introspect(void **state)
{
    const QapiSchema *s = qapi_schema_builtin();
    g_autoptr(JsonNode) a = qapi_schema_introspect(s);
    g_autoptr(JsonNode) b = qapi_schema_introspect(s);

    assert_true(JSON_NODE_HOLDS_ARRAY(a));
    assert_false(has_key_anywhere(a, "doc"));
    assert_false(has_key_anywhere(a, "example"));
    assert_true(has_key_anywhere(a, "command"));
    /* the schema itself keeps its docs: the copies are deep */
    assert_true(qapi_schema_check_return(s, "query-qmp-schema", b, NULL));
    g_autofree char *ta = json_writer_to_string(a);
    g_autofree char *tb = json_writer_to_string(b);
    assert_string_equal(ta, tb);
}

static void test_returns(void **state)
{
    const QapiSchema *s = qapi_schema_builtin();
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) v = qmp_execute(NULL, "query-version", NULL, &err);
    g_autoptr(JsonNode) c = qmp_execute(NULL, "query-commands", NULL, &err);

    assert_non_null(v);
    assert_true(qapi_schema_check_return(s, "query-version", v, &err));
    assert_non_null(c);
    assert_true(qapi_schema_check_return(s, "query-commands", c, &err));
    assert_int_equal(json_array_get_length(json_node_get_array(c)),
                     qapi_schema_n_commands(s));
    g_autoptr(JsonNode) bad = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(bad, json_array_new());
    assert_false(qapi_schema_check_return(s, "query-version", bad, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_loads),
        cmocka_unit_test(test_handlers_match_schema),
        cmocka_unit_test(test_events_declared),
        cmocka_unit_test(test_check_args),
        cmocka_unit_test(test_keyval),
        cmocka_unit_test(test_bad_schemas),
        cmocka_unit_test(test_introspect),
        cmocka_unit_test(test_returns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
