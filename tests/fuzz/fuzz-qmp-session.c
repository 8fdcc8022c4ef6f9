/*
 * fuzz-qmp-session.c — libFuzzer harness for QMP command dispatch on a monitor session:
 * negotiation state, the request member checks, command lookup, schema checks, the
 * handlers that have no effect outside the process, descriptor passing (getfd/closefd
 * and the pending-descriptor bound), id echo and the response writer.
 *
 * Each input is one client connection to a detached session (no socket). The input is
 * cut into values by a splitter with the session's own bounds (framing is fuzzed byte
 * by byte in fuzz-qmp-input.c); each value is fed to the session as the client's bytes,
 * and every response line must be one JSON object holding "return" or "error" {class,
 * desc}, with the request's id echoed when it had one. A value whose text mentions "fd"
 * arrives with a descriptor of /dev/null attached (SCM_RIGHTS, as getfd wants).
 *
 * Handlers with effects outside the process (blockdev-add opens any path, nbd-server-start
 * binds sockets, backup creates files or runs exec: commands) must not run: a value
 * that would reach one of them — the session negotiated and the arguments pass the
 * schema — is not fed. With no disk ever added, every other handler only reads or
 * fails (no such node, export or job). FUZZ_DEBUG in the environment prints the
 * session's output on stderr.
 *
 *   make fuzz-build && build-fuzz/fuzz/fuzz-qmp-session -dict=tests/fuzz/dict/qmp.dict \
 *       tests/fuzz/corpus/qmp-session
 *
 * Built with -DFUZZ_STANDALONE it is a plain program that runs the files named on its
 * command line once each.
 */
#include <assert.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monitor.h"
#include "util/json-splitter.h"
#include "monitor/qapi-schema.h"
#include "monitor/qmp-internal.h"

#include "tests/fuzz/fuzz-common.h"

static const char *const unsafe_commands[] = { "blockdev-add", "nbd-server-start", "backup" };

typedef struct Run {
    QmpSession *s;
} Run;

/* Would this request run a handler with effects outside the process? */
static bool reaches_unsafe_handler(QmpSession *s, const char *text, size_t len)
{
    g_autoptr(JsonParser) parser = json_parser_new();

    if (!qmp_session_is_negotiated(s) ||
        !json_parser_load_from_data(parser, text, (gssize)len, NULL)) {
        return false;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        return false;
    }
    JsonObject *req = json_node_get_object(root);
    static const char *const keys[] = { "execute", "exec-oob" };
    for (size_t k = 0; k < G_N_ELEMENTS(keys); k++) {
        JsonNode *cmd = json_object_get_member(req, keys[k]);
        if (cmd == NULL || json_node_get_value_type(cmd) != G_TYPE_STRING) {
            continue;
        }
        for (size_t i = 0; i < G_N_ELEMENTS(unsafe_commands); i++) {
            if (strcmp(json_node_get_string(cmd), unsafe_commands[i]) != 0) {
                continue;
            }
            JsonNode *argn = json_object_get_member(req, "arguments");
            g_autoptr(JsonObject) empty = json_object_new();
            if (argn != NULL && !JSON_NODE_HOLDS_OBJECT(argn)) {
                continue;
            }
            JsonObject *args = argn != NULL ? json_node_get_object(argn) : empty;
            if (qapi_schema_check_args(qapi_schema_builtin(), unsafe_commands[i], args,
                                       NULL)) {
                return true;
            }
        }
    }
    return false;
}

/* Every line of output: a JSON object, a response or the greeting. */
static void check_output(QmpSession *s, bool greeting)
{
    g_autofree char *out = qmp_session_take_output(s);
    g_auto(GStrv) lines = g_strsplit(out, "\r\n", -1);
    guint n = g_strv_length(lines);
    static int debug = -1;

    if (debug < 0) {
        debug = getenv("FUZZ_DEBUG") != NULL;
    }
    if (debug) {
        fputs(out, stderr);
    }

    assert(n >= 1 && lines[n - 1][0] == '\0');   /* CRLF-terminated */
    for (guint i = 0; i + 1 < n; i++) {
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) err = NULL;
        if (!json_parser_load_from_data(parser, lines[i], -1, &err)) {
            g_error("response is not JSON (%s): %s", err->message, lines[i]);
        }
        JsonNode *root = json_parser_get_root(parser);
        assert(root != NULL && JSON_NODE_HOLDS_OBJECT(root));
        JsonObject *o = json_node_get_object(root);
        if (greeting) {
            assert(json_object_has_member(o, "QMP"));
            continue;
        }
        bool ret = json_object_has_member(o, "return");
        bool error = json_object_has_member(o, "error");
        assert(ret != error);
        assert(json_object_get_size(o) == 1u + json_object_has_member(o, "id"));
        if (error) {
            JsonObject *e = json_object_get_object_member(o, "error");
            assert(e != NULL);
            assert(json_object_get_string_member_with_default(e, "class", NULL) != NULL);
            assert(json_object_get_string_member_with_default(e, "desc", NULL) != NULL);
        }
    }
}

static void on_value(void *opaque, const char *text, size_t len, const char *error_msg)
{
    Run *run = opaque;

    if (text == NULL) {
        g_autoptr(JsonNode) rsp = qmp_parse_error_response(error_msg);
        assert(rsp != NULL && JSON_NODE_HOLDS_OBJECT(rsp));
        return;
    }
    if (reaches_unsafe_handler(run->s, text, len)) {
        return;
    }
    int fd = -1;
    if (g_strstr_len(text, (gssize)len, "fd") != NULL) {
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert(fd >= 0);
    }
    qmp_session_feed(run->s, text, len, &fd, fd >= 0 ? 1 : 0);
    check_output(run->s, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Run run = { .s = qmp_session_new_detached() };
    g_autoptr(JsonSplitter) sp =
        json_splitter_new(JSON_SPLITTER_MAX_SIZE, JSON_SPLITTER_MAX_DEPTH, on_value, &run);

    check_output(run.s, true);
    json_splitter_feed(sp, (const char *)data, size);
    json_splitter_finish(sp);
    qmp_session_free_detached(run.s);
    return 0;
}
