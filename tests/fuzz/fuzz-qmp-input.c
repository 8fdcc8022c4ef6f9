/*
 * fuzz-qmp-input.c — libFuzzer harness for everything vmad does with untrusted QMP
 * bytes before a command runs: the stream splitter, the JSON parser, the request
 * checks and the schema's argument checking; and the command-line keyval parser.
 * Handlers are not run (they open files and sockets).
 *
 *   make fuzz FUZZ=qmp-input FUZZ_SECONDS=600    (docs/fuzzing.md)
 *   build-fuzz/fuzz/fuzz-qmp-input -dict=tests/fuzz/dict/qmp.dict tests/fuzz/corpus/qmp-input
 *
 * Built with -DFUZZ_STANDALONE it is a plain program that runs the files named on its
 * command line once each (replaying a corpus or a crash without libFuzzer).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "monitor.h"
#include "util/json-splitter.h"
#include "monitor/qapi-schema.h"

#include "tests/fuzz/fuzz-common.h"


static void on_message(void *opaque, const char *text, size_t len, const char *error_msg)
{
    const QapiSchema *schema = opaque;
    g_autoptr(JsonParser) parser = json_parser_new();

    if (text == NULL || !json_parser_load_from_data(parser, text, (gssize)len, NULL)) {
        return;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        return;
    }
    JsonObject *req = json_node_get_object(root);
    JsonNode *exec = json_object_get_member(req, "execute");
    JsonNode *args = json_object_get_member(req, "arguments");
    if (exec == NULL || json_node_get_value_type(exec) != G_TYPE_STRING) {
        return;
    }
    g_autoptr(JsonObject) empty = json_object_new();
    JsonObject *obj = args != NULL && JSON_NODE_HOLDS_OBJECT(args)
                      ? json_node_get_object(args) : empty;
    g_autoptr(GError) err = NULL;
    if (qapi_schema_check_args(schema, json_node_get_string(exec), obj, &err)) {
        g_assert(err == NULL);
    } else {
        g_assert(err != NULL && qmp_error_class(err) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const QapiSchema *schema = qapi_schema_builtin();
    g_autoptr(JsonSplitter) s = json_splitter_new(64 * 1024, 64, on_message, (void *)schema);

    /* the same bytes as two reads, cut where the first byte says */
    size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    json_splitter_feed(s, (const char *)data, cut);
    json_splitter_feed(s, (const char *)data + cut, size - cut);
    json_splitter_finish(s);

    /* the bytes as a command-line option value */
    g_autofree char *text = g_strndup((const char *)data, size);
    static const char *const commands[] = {"blockdev-add", "nbd-server-start",
                                           "block-export-add"};
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(JsonObject) args = qapi_schema_args_from_keyval(schema, commands[i], text,
                                                                  i == 2 ? "type" : NULL, &err);
        if (args != NULL) {
            g_autoptr(GError) err2 = NULL;
            (void)qapi_schema_check_args(schema, commands[i], args, &err2);
        }
    }
    return 0;
}

