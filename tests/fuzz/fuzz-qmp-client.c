/*
 * fuzz-qmp-client.c — libFuzzer harness for what `vma backup` does with the bytes a QMP
 * server sends: the shared splitter in strict mode (util/json-splitter.c), json-glib on
 * each message, and the dispatch checks (greeting, events, replies and error replies). The client's source
 * is included so that its static functions can be driven without a socket.
 *
 * The first input byte chooses the size of the pieces the rest arrives in (1 to 64
 * bytes), so that messages split across reads are covered.
 *
 *   make fuzz FUZZ=qmp-client FUZZ_SECONDS=600    (docs/fuzzing.md)
 *   build-fuzz/fuzz/fuzz-qmp-client -dict=tests/fuzz/dict/qmp.dict tests/fuzz/corpus/qmp-client
 *
 * Built with -DFUZZ_STANDALONE it is a plain program that runs the files named on its
 * command line once each.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/qmp-client.c"

#include "tests/fuzz/fuzz-common.h"


/* What execute_until() and qmp_client_wait() do with one message. */
static void dispatch(QmpClient *c, JsonObject *msg)
{
    GError *err = NULL;

    if (!c->greeted) {
        JsonNode *qmp = json_object_get_member(msg, "QMP");
        if (qmp == NULL || !JSON_NODE_HOLDS_OBJECT(qmp)) {
            protocol_error(c, &err, "the first message is not a greeting");
            g_error_free(err);
        }
        c->greeted = true;
        json_object_unref(msg);
        return;
    }
    if (is_event(c, msg, &err)) {
        if (err != NULL) {
            g_error_free(err);
            json_object_unref(msg);
        } else {
            keep_event(c, msg);
        }
        return;
    }
    JsonNode *v = reply_value(c, msg, &err);
    if (v != NULL) {
        json_node_unref(v);
    }
    g_clear_error(&err);
    json_object_unref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    size_t piece = (size_t)(data[0] % 64) + 1;
    data++;
    size--;

    QmpClient *c = g_new0(QmpClient, 1);
    c->fd = -1;
    c->path = g_strdup("fuzz");
    c->splitter = client_splitter_new(c);
    g_queue_init(&c->inbox);
    g_queue_init(&c->events);

    for (size_t off = 0; off < size && !c->broken; off += piece) {
        GError *err = NULL;
        if (!client_feed(c, data + off, MIN(piece, size - off), &err)) {
            g_error_free(err);
            break;
        }
        JsonObject *msg;
        while (!c->broken && (msg = g_queue_pop_head(&c->inbox)) != NULL) {
            dispatch(c, msg);
        }
    }
    JsonObject *ev;
    while ((ev = qmp_client_next_event(c)) != NULL) {
        json_object_unref(ev);
    }
    qmp_client_free(c);
    return 0;
}

