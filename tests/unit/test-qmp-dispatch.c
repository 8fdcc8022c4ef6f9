/*
 * test-qmp-dispatch.c — the QMP protocol on a detached session (bytes in, bytes out, no
 * socket): greeting, negotiation, request checks, id echo, exact wire format, events
 * (including from another thread), getfd/closefd and the descriptor API.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "monitor.h"
#include "monitor/qmp-internal.h"
#include "test-helpers.h"

static char *exchange_fds(QmpSession *s, const char *in, const int *fds, size_t nfds)
{
    qmp_session_feed(s, in, strlen(in), fds, nfds);
    return qmp_session_take_output(s);
}

static char *exchange(QmpSession *s, const char *in)
{
    return exchange_fds(s, in, NULL, 0);
}

static void expect(QmpSession *s, const char *in, const char *want)
{
    g_autofree char *got = exchange(s, in);

    if (strcmp(got, want) != 0) {
        fail_msg("sent %s\n  want %s  got  %s", in, want, got);
    }
}

static QmpSession *negotiated_session(void)
{
    QmpSession *s = qmp_session_new_detached();
    g_autofree char *greeting = qmp_session_take_output(s);

    expect(s, "{\"execute\": \"qmp_capabilities\"}", "{\"return\": {}}\r\n");
    return s;
}

static void test_greeting_and_negotiation(void **state)
{
    QmpSession *s = qmp_session_new_detached();
    g_autofree char *greeting = qmp_session_take_output(s);

    assert_string_equal(greeting,
                        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 1, "
                        "\"major\": 0}, \"package\": \"vmad 0.1.0\"}, \"capabilities\": "
                        "[\"oob\"]}}\r\n");
    expect(s, "{\"execute\": \"query-version\", \"id\": 1}",
           "{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting "
           "capabilities negotiation with 'qmp_capabilities'\"}}\r\n");
    expect(s, "{\"execute\": \"no-such-cmd\"}",
           "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities "
           "negotiation with 'qmp_capabilities'\"}}\r\n");
    /* request-level errors come before the negotiation check, as in QEMU */
    expect(s, "{\"execute\": 1}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'execute' "
           "must be a string\"}}\r\n");
    expect(s, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"x\"]}}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'enable[0]' does "
           "not accept value 'x'\"}}\r\n");
    expect(s, "{\"execute\": \"qmp_capabilities\", \"id\": \"neg\"}",
           "{\"return\": {}, \"id\": \"neg\"}\r\n");
    expect(s, "{\"execute\": \"qmp_capabilities\", \"id\": 2}",
           "{\"id\": 2, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities "
           "negotiation is already complete, command ignored\"}}\r\n");
    expect(s, "{\"execute\": \"query-version\"}",
           "{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 1, \"major\": 0}, \"package\": "
           "\"vmad 0.1.0\"}}\r\n");
    qmp_session_free_detached(s);
}

static void test_request_errors(void **state)
{
    QmpSession *s = negotiated_session();
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"{\"execute\": \"no-such-cmd\", \"id\": 2}",
         "{\"id\": 2, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
         "no-such-cmd has not been found\"}}\r\n"},
        {"{\"execute\": \"query-version\", \"arguments\": [], \"id\": 3}",
         "{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
         "'arguments' must be an object\"}}\r\n"},
        {"{\"execute\": \"query-version\", \"foo\": 1}",
         "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'foo' is "
         "unexpected\"}}\r\n"},
        {"{\"arguments\": {}, \"id\": \"x\"}",
         "{\"id\": \"x\", \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks "
         "member 'execute'\"}}\r\n"},
        {"[1, 2]",
         "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON "
         "object\"}}\r\n"},
        {"{\"execute\": }",
         "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, 1:13: "
         "unexpected character `}', expected character `}'\"}}\r\n"},
        {"{\"execute\": \"query-version\", \"id\": 99999999999999999999}",
         "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, integer "
         "literal out of range\"}}\r\n"},
        {"{\"exec-oob\": \"query-version\"}",
         "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'exec-oob' is "
         "unexpected\"}}\r\n"},
        {"{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": 1}, \"id\": 4}",
         "{\"id\": 4, \"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter "
         "type for 'node-name', expected: string\"}}\r\n"},
        {"{\"execute\": \"blockdev-del\", \"id\": 5}",
         "{\"id\": 5, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter "
         "'node-name' is missing\"}}\r\n"},
        {"{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": \"x\", \"y\": 1}}",
         "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'y' is "
         "unexpected\"}}\r\n"},
        /* the server only emits ASCII */
        {"{\"execute\": \"caf\xc3\xa9\xf0\x9f\x98\x80\"}",
         "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
         "caf\\u00e9\\ud83d\\ude00 has not been found\"}}\r\n"},
        {"{\"execute\": \"x\\\"\\n\\u0001\"}",
         "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
         "x\\\"\\n\\u0001 has not been found\"}}\r\n"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        expect(s, cases[i].in, cases[i].out);
    }
    qmp_session_free_detached(s);
}

static void test_id_echo(void **state)
{
    QmpSession *s = negotiated_session();
    static const char *const ids[] = {
        "1", "-7", "\"abc\"", "{\"a\": [1, {\"b\": null}], \"c\": \"d\"}", "[]", "true", "null",
        "1.5",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
        g_autofree char *in = g_strdup_printf("{\"id\": %s, \"execute\": \"query-version\"}",
                                              ids[i]);
        g_autofree char *want = g_strdup_printf(
            "{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 1, \"major\": 0}, "
            "\"package\": \"vmad 0.1.0\"}, \"id\": %s}\r\n", ids[i]);
        expect(s, in, want);
        g_autofree char *in2 = g_strdup_printf("{\"id\": %s, \"execute\": \"nope\"}", ids[i]);
        g_autofree char *want2 = g_strdup_printf(
            "{\"id\": %s, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
            "nope has not been found\"}}\r\n", ids[i]);
        expect(s, in2, want2);
    }
    /* pipelined requests, split anywhere, are answered in order */
    const char *pipe = "{\"execute\": \"query-version\", \"id\": 1}{\"execute\": \"x\", "
                       "\"id\": 2}\n{\"execute\": \"query-commands\", \"id\": 3}";
    qmp_session_feed(s, pipe, 10, NULL, 0);
    qmp_session_feed(s, pipe + 10, strlen(pipe) - 10, NULL, 0);
    g_autofree char *out = qmp_session_take_output(s);
    g_auto(GStrv) lines = g_strsplit(out, "\r\n", -1);
    assert_int_equal(g_strv_length(lines), 4);
    assert_true(g_str_has_suffix(lines[0], "\"id\": 1}"));
    assert_true(g_str_has_prefix(lines[1], "{\"id\": 2, \"error\""));
    assert_true(g_str_has_suffix(lines[2], "\"id\": 3}"));
    assert_string_equal(lines[3], "");
    qmp_session_free_detached(s);
}

static void test_oob(void **state)
{
    QmpSession *s = qmp_session_new_detached();
    g_autofree char *greeting = qmp_session_take_output(s);

    expect(s, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
           "{\"return\": {}}\r\n");
    expect(s, "{\"exec-oob\": \"query-version\", \"id\": 1}",
           "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"The command "
           "query-version does not support OOB\"}}\r\n");
    expect(s, "{\"exec-oob\": \"query-version\", \"execute\": \"query-version\"}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
           "'execute' clashes with 'exec-oob'\"}}\r\n");
    qmp_session_free_detached(s);
}

/* Strip the timestamp so event lines can be compared. */
static char *without_timestamp(const char *line)
{
    g_autoptr(GRegex) re = g_regex_new("\\{\"timestamp\": \\{\"seconds\": [0-9]+, "
                                       "\"microseconds\": [0-9]+\\}, ", 0, 0, NULL);
    return g_regex_replace_literal(re, line, -1, 0, "{", 0, NULL);
}

static gpointer emit_from_thread(gpointer data)
{
    for (int i = 0; i < 3; i++) {
        JsonObject *d = json_object_new();
        g_autofree char *id = g_strdup_printf("t%d", i);
        json_object_set_string_member(d, "id", id);
        qmp_event_emit("BLOCK_EXPORT_DELETED", d);
    }
    return NULL;
}

static void test_events(void **state)
{
    QmpSession *fresh = qmp_session_new_detached();
    QmpSession *s = negotiated_session();
    g_autofree char *g = qmp_session_take_output(fresh);

    JsonObject *d = json_object_new();
    json_object_set_boolean_member(d, "guest", FALSE);
    json_object_set_string_member(d, "reason", "host-signal");
    qmp_event_emit("SHUTDOWN", d);
    qmp_event_emit("NO_DATA", NULL);

    g_autofree char *out = qmp_session_take_output(s);
    g_autofree char *plain = without_timestamp(out);
    assert_string_equal(plain,
                        "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": "
                        "\"host-signal\"}}\r\n{\"event\": \"NO_DATA\"}\r\n");
    assert_true(g_str_has_prefix(out, "{\"timestamp\": {\"seconds\": "));
    gint64 secs = g_ascii_strtoll(out + strlen("{\"timestamp\": {\"seconds\": "), NULL, 10);
    assert_true(secs > 1600000000 && secs <= g_get_real_time() / G_USEC_PER_SEC);

    /* not in command mode yet: no events */
    g_autofree char *none = qmp_session_take_output(fresh);
    assert_string_equal(none, "");

    /* from another thread: queued, delivered in order by the main thread */
    GThread *t = g_thread_new("emitter", emit_from_thread, NULL);
    g_thread_join(t);
    g_autofree char *before = qmp_session_take_output(s);
    assert_string_equal(before, "");
    qmp_events_deliver_queued();
    g_autofree char *after = qmp_session_take_output(s);
    g_autofree char *after_plain = without_timestamp(after);
    assert_string_equal(after_plain,
                        "{\"event\": \"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"t0\"}}\r\n"
                        "{\"event\": \"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"t1\"}}\r\n"
                        "{\"event\": \"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"t2\"}}\r\n");
    g_autofree char *none2 = qmp_session_take_output(fresh);
    assert_string_equal(none2, "");

    qmp_session_free_detached(fresh);
    qmp_session_free_detached(s);
}

static void test_getfd(void **state)
{
    QmpSession *s = negotiated_session();
    QmpSession *other = negotiated_session();
    int p[2];
    g_autoptr(GError) err = NULL;

    assert_int_equal(pipe(p), 0);
    expect(s, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"x\"}}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No file descriptor supplied "
           "via SCM_RIGHTS\"}}\r\n");
    g_autofree char *r1 = exchange_fds(s, "{\"execute\": \"getfd\", \"arguments\": "
                                          "{\"fdname\": \"out\"}}", &p[1], 1);
    assert_string_equal(r1, "{\"return\": {}}\r\n");

    /* per session */
    assert_int_equal(qmp_session_dup_fd(other, "out", &err), -1);
    assert_string_equal(err->message, "File descriptor named 'out' not found");
    g_clear_error(&err);
    assert_int_equal(qmp_session_take_fd(NULL, "out", &err), -1);
    g_clear_error(&err);

    int d = qmp_session_dup_fd(s, "out", &err);
    assert_true(d >= 0 && d != p[1]);
    assert_int_equal(write(d, "x", 1), 1);
    close(d);
    int taken = qmp_session_take_fd(s, "out", &err);
    assert_int_equal(taken, p[1]);
    assert_int_equal(qmp_session_take_fd(s, "out", &err), -1);
    g_clear_error(&err);

    /* store again, replace (the old one is closed), closefd */
    int q[2];
    assert_int_equal(pipe(q), 0);
    g_autofree char *r2 = exchange_fds(s, "{\"execute\": \"getfd\", \"arguments\": "
                                          "{\"fdname\": \"out\"}}", &taken, 1);
    assert_string_equal(r2, "{\"return\": {}}\r\n");
    g_autofree char *r3 = exchange_fds(s, "{\"execute\": \"getfd\", \"arguments\": "
                                          "{\"fdname\": \"out\"}}", &q[1], 1);
    assert_string_equal(r3, "{\"return\": {}}\r\n");
    assert_false(th_fd_is_open(p[1]));
    assert_true(th_fd_is_open(q[1]));
    expect(s, "{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"out\"}}",
           "{\"return\": {}}\r\n");
    assert_false(th_fd_is_open(q[1]));
    expect(s, "{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"out\"}}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'out' "
           "not found\"}}\r\n");

    /* a name starting with a digit is refused; the descriptor stays pending and is
     * closed with the session */
    int r[2];
    assert_int_equal(pipe(r), 0);
    g_autofree char *r4 = exchange_fds(s, "{\"execute\": \"getfd\", \"arguments\": "
                                          "{\"fdname\": \"1x\"}}", &r[1], 1);
    assert_string_equal(r4, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter "
                            "'fdname' expects a name not starting with a digit\"}}\r\n");
    assert_true(th_fd_is_open(r[1]));
    qmp_session_free_detached(s);
    assert_false(th_fd_is_open(r[1]));
    qmp_session_free_detached(other);
    close(p[0]);
    close(q[0]);
    close(r[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_and_negotiation),
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_id_echo),
        cmocka_unit_test(test_oob),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_getfd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
