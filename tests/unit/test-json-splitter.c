/*
 * test-json-splitter.c — the QMP input splitter: values split across reads at every
 * position, strings and escapes that hide brackets, garbage and resynchronisation,
 * size/depth/integer bounds, \u0000 and malformed \u escapes, duplicate keys, strict
 * mode, and random noise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/json-splitter.h"

/* Collected output: "V:<text>" for a value, "E:<msg>" for an error, one per entry. */
typedef struct Out {
    GPtrArray *items;
} Out;

static void collect(void *opaque, const char *text, size_t len, const char *error_msg)
{
    Out *o = opaque;

    if (text != NULL) {
        assert_int_equal(strlen(text), len);
        g_ptr_array_add(o->items, g_strdup_printf("V:%s", text));
    } else {
        assert_non_null(error_msg);
        g_ptr_array_add(o->items, g_strdup_printf("E:%s", error_msg));
    }
}

/* Feed input in chunks of the given sizes (0-terminated list; the rest in one piece),
 * then finish. Returns the items joined with '|'. */
static char *run_chunks(const char *input, size_t inlen, const size_t *chunks,
                        size_t max_size, unsigned max_depth)
{
    Out o = {.items = g_ptr_array_new_with_free_func(g_free)};
    JsonSplitter *s = json_splitter_new(max_size, max_depth, collect, &o);
    size_t off = 0;

    for (const size_t *c = chunks; c != NULL && *c != 0 && off < inlen; c++) {
        size_t n = MIN(*c, inlen - off);
        json_splitter_feed(s, input + off, n);
        off += n;
    }
    json_splitter_feed(s, input + off, inlen - off);
    json_splitter_finish(s);
    json_splitter_free(s);
    g_ptr_array_add(o.items, NULL);
    char *joined = g_strjoinv("|", (char **)o.items->pdata);
    g_ptr_array_unref(o.items);
    return joined;
}

static char *run(const char *input)
{
    return run_chunks(input, strlen(input), NULL, JSON_SPLITTER_MAX_SIZE,
                      JSON_SPLITTER_MAX_DEPTH);
}

static void expect(const char *input, const char *want)
{
    g_autofree char *got = run(input);
    if (strcmp(got, want) != 0) {
        print_error("input %s\n  want %s\n  got  %s\n", input, want, got);
    }
    assert_string_equal(got, want);
}

static void test_table(void **state)
{
    static const struct {
        const char *input;
        const char *want;
    } cases[] = {
        {"{}", "V:{}"},
        {"  {\"a\":1}\r\n{\"b\":2}", "V:{\"a\":1}|V:{\"b\":2}"},
        {"{\"execute\":\"x\"}{\"execute\":\"y\"}", "V:{\"execute\":\"x\"}|V:{\"execute\":\"y\"}"},
        {"[1,[2,{}]]", "V:[1,[2,{}]]"},
        /* brackets and quotes inside strings */
        {"{\"a\":\"}{][\"}", "V:{\"a\":\"}{][\"}"},
        {"{'a':'}\"{'}", "V:{'a':'}\"{'}"},
        {"{\"a\":\"'\"}", "V:{\"a\":\"'\"}"},
        {"{\"a\":\"\\\"}\"}", "V:{\"a\":\"\\\"}\"}"},
        {"{\"a\":\"\\\\\"}", "V:{\"a\":\"\\\\\"}"},
        {"{\"a\":\"\\\\\\\"}\"}", "V:{\"a\":\"\\\\\\\"}\"}"},
        {"{\"a\":\"\\u007d\"}", "V:{\"a\":\"\\u007d\"}"},
        {"{\"a\":\"h\xc3\xa9\"}", "V:{\"a\":\"h\xc3\xa9\"}"},
        /* garbage at top level: one error when a newline or a value ends it */
        {"foo\n", "E:stray input outside a JSON object"},
        {"foo bar\n{}", "E:stray input outside a JSON object|V:{}"},
        {"xx{}", "E:stray input outside a JSON object|V:{}"},
        {"}\n", "E:stray input outside a JSON object"},
        {"garbage", "E:stray input outside a JSON object"},   /* reported by finish */
        /* control characters and 0xff reset silently */
        {"{\"a\":1\x01" "{\"b\":2}", "V:{\"b\":2}"},
        {"{\"a\":\"x\x1b" "{\"b\":2}", "V:{\"b\":2}"},
        {"{\"a\xff\x01" "{}", "V:{}"},
        {"junk\x01" "{}", "V:{}"},
        {"\x02\x01\x1f" "{}", "V:{}"},
        /* raw newline inside a string; the rest (y"}) is garbage, not reported again in
         * the same read */
        {"{\"a\":\"x\ny\"}\n{}", "E:control character in string|V:{}"},
        /* integers json-glib would wrap */
        {"{\"a\":9223372036854775807}", "V:{\"a\":9223372036854775807}"},
        {"{\"a\":-9223372036854775808}", "V:{\"a\":-9223372036854775808}"},
        {"{\"a\":00009223372036854775807}", "V:{\"a\":00009223372036854775807}"},
        {"{\"a\":9223372036854775808}", "E:integer literal out of range"},
        {"{\"a\":-9223372036854775809}", "E:integer literal out of range"},
        {"{\"a\":[18446744073709551615]}", "E:integer literal out of range"},
        {"{\"a\":1e400,\"b\":1.5,\"c\":-0.5e-3}", "V:{\"a\":1e400,\"b\":1.5,\"c\":-0.5e-3}"},
        {"{\"a\":\"99999999999999999999999\"}", "V:{\"a\":\"99999999999999999999999\"}"},
        {"{\"a\":123456789012345678901.5}", "V:{\"a\":123456789012345678901.5}"},
        /* mismatched brackets are the parser's business; depth counts both kinds */
        {"{]", "V:{]"},
        /* end of input inside a value */
        {"{\"a\":", "E:unexpected end of input"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        expect(cases[i].input, cases[i].want);
    }
}

/* What json-glib would get wrong is refused here, and the stream goes on after it. */
static void test_refused(void **state)
{
    static const struct {
        const char *input;
        const char *want;
    } cases[] = {
        /* \u0000 cuts a json-glib string: refused in values and keys, any quote style */
        {"{\"filename\":\"/x/disk.raw\\u0000.iso\"}{}", "E:\\u0000 is not supported|V:{}"},
        {"{\"a\":[{\"b\":'x\\u0000'}]}", "E:\\u0000 is not supported"},
        {"{\"\\u0000\":1}", "E:\\u0000 is not supported"},
        {"{\"a\":\"\\\\u0000\"}", "V:{\"a\":\"\\\\u0000\"}"},       /* an escaped backslash */
        {"{\"a\":\"\\u0001\\u0100\\uFFFF\"}", "V:{\"a\":\"\\u0001\\u0100\\uFFFF\"}"},
        /* malformed \u escapes (json-glib 1.6 leaks on some of them) */
        {"{\"a\":\"\\u12\"}{}", "E:invalid \\u escape: four hex digits expected|V:{}"},
        {"{\"a\":\"\\u12g4\"}", "E:invalid \\u escape: four hex digits expected"},
        {"{\"a\":\"\\udc00\"}", "E:invalid \\u escape: lone surrogate"},
        {"{\"a\":\"\\ud800\"}", "E:invalid \\u escape: lone surrogate"},
        {"{\"a\":\"\\ud800x\"}", "E:invalid \\u escape: lone surrogate"},
        {"{\"a\":\"\\ud800\\n\"}", "E:invalid \\u escape: lone surrogate"},
        {"{\"a\":\"\\ud800\\u0041\"}", "E:invalid \\u escape: lone surrogate"},
        {"{\"a\":\"\\ud800\\ud800\"}", "E:invalid \\u escape: lone surrogate"},
        {"{\"a\":\"\\ud83d\\ude00\"}", "V:{\"a\":\"\\ud83d\\ude00\"}"},
        /* a broken escape still lets its quote end the string: the stream stays in step */
        {"{\"a\":\"\\u1\"}\n{\"b\":\"}\"}", "E:invalid \\u escape: four hex digits expected|"
                                           "V:{\"b\":\"}\"}"},
        /* duplicate keys at any depth, compared decoded */
        {"{\"execute\":\"quit\",\"execute\":\"query-version\"}",
         "E:duplicate key 'execute'"},
        {"{\"a\":{\"b\":1,\"c\":{},\"b\":2}}", "E:duplicate key 'b'"},
        {"[{\"a\":1},{\"a\":1,\"a\":1}]", "E:duplicate key 'a'"},
        {"{\"a\":1,\"\\u0061\":2}", "E:duplicate key 'a'"},
        {"{\"a\":1,'a':2}", "E:duplicate key 'a'"},
        {"{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}", "E:duplicate key '\\360\\237\\230\\200'"},
        {"{\"a\\n\":1,\"a\\u000a\":2}", "E:duplicate key 'a\\n'"},
        /* the same key in different objects, and key-like values, are fine */
        {"{\"a\":{\"a\":{\"a\":\"a\"}},\"b\":[\"a\",\"a\"],\"c\":\"a\"}",
         "V:{\"a\":{\"a\":{\"a\":\"a\"}},\"b\":[\"a\",\"a\"],\"c\":\"a\"}"},
        {"{\"a\":1}{\"a\":1}", "V:{\"a\":1}|V:{\"a\":1}"},
        {"{\"a\":1,\"A\":2,\"a \":3}", "V:{\"a\":1,\"A\":2,\"a \":3}"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        expect(cases[i].input, cases[i].want);
    }
}

/* A duplicate key refuses only its message: the next one in the same read still runs. */
static void test_duplicate_then_good(void **state)
{
    const char *in = "{\"execute\":\"quit\",\"execute\":\"query-version\"}\r\n"
                     "{\"execute\":\"query-version\"}\r\n";
    size_t len = strlen(in);
    g_autofree char *whole = run(in);

    assert_string_equal(whole, "E:duplicate key 'execute'|V:{\"execute\":\"query-version\"}");
    for (size_t cut = 0; cut <= len; cut++) {
        size_t chunks[] = {cut, 0};
        g_autofree char *got = run_chunks(in, len, chunks, JSON_SPLITTER_MAX_SIZE,
                                          JSON_SPLITTER_MAX_DEPTH);
        assert_string_equal(got, whole);
    }
}

typedef struct StrictOut {
    GPtrArray *items;
    JsonSplitter *s;
} StrictOut;

static void collect_strict(void *opaque, const char *text, size_t len, const char *error_msg)
{
    StrictOut *o = opaque;

    if (text != NULL) {
        assert_int_equal(json_splitter_error_code(o->s), JSON_SPLITTER_ERROR_NONE);
        g_ptr_array_add(o->items, g_strdup_printf("V:%s", text));
    } else {
        g_ptr_array_add(o->items, g_strdup_printf("E%d:%s", json_splitter_error_code(o->s),
                                                  error_msg));
    }
}

static char *run_strict(const char *input, size_t len)
{
    StrictOut o = {.items = g_ptr_array_new_with_free_func(g_free)};

    o.s = json_splitter_new(1000, 4, collect_strict, &o);
    json_splitter_set_strict(o.s, true);
    json_splitter_feed(o.s, input, len);
    json_splitter_finish(o.s);
    json_splitter_free(o.s);
    g_ptr_array_add(o.items, NULL);
    char *joined = g_strjoinv("|", (char **)o.items->pdata);
    g_ptr_array_unref(o.items);
    return joined;
}

/* Strict mode (the CLI's client): objects only, every stray or control byte an error. */
static void test_strict(void **state)
{
    static const struct {
        const char *input;
        size_t len;            /* 0: strlen */
        const char *want;
    } cases[] = {
        {" {\"a\":1}\r\n{}\n", 0, "V:{\"a\":1}|V:{}"},
        {"N{}", 0, "E3:unexpected byte 0x4e outside a message|V:{}"},
        {"[1]", 0, "E3:unexpected byte 0x5b outside a message|E3:unexpected byte 0x31 "
                   "outside a message|E3:unexpected byte 0x5d outside a message"},
        {"\x01", 0, "E3:unexpected byte 0x01 outside a message"},
        {"{\"a\":\"x\0\"}", 10, "E4:NUL byte in a message|E3:unexpected byte 0x22 outside a "
                                "message|E3:unexpected byte 0x7d outside a message"},
        {"{\"a\":1\x1b}", 0, "E4:control byte 0x1b in a message|E3:unexpected byte 0x7d "
                             "outside a message"},
        {"{\"a\":[[[[1]]]]}", 0, "E2:nesting too deep"},
        {"{\"a\":1,\"a\":2}", 0, "E7:duplicate key 'a'"},
        {"{\"a\":\"\\u0000\"}", 0, "E6:\\u0000 is not supported"},
        {"{\"a\":99999999999999999999}", 0, "E5:integer literal out of range"},
        {"{\"a\":", 0, "E8:unexpected end of input"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        size_t len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].input);
        g_autofree char *got = run_strict(cases[i].input, len);
        if (strcmp(got, cases[i].want) != 0) {
            print_error("case %zu\n  want %s\n  got  %s\n", i, cases[i].want, got);
        }
        assert_string_equal(got, cases[i].want);
    }

    GString *big = g_string_new("{\"a\":\"");
    while (big->len < 2000) {
        g_string_append_c(big, 'x');
    }
    g_string_append(big, "\"}");
    g_autofree char *got = run_strict(big->str, big->len);
    assert_string_equal(got, "E1:message too large");
    g_string_free(big, TRUE);
}

/* The same stream cut into two reads at every position, and byte by byte, gives the
 * same values (errors here would be reported once per read, so the stream has none). */
static void test_split_everywhere(void **state)
{
    const char *stream = "{\"execute\": \"q\", \"arguments\": {\"s\": \"}\\\"{\", "
                         "'t': '\\'}'}, \"id\": [1, {\"x\": -12}]}\r\n"
                         "  {}[\"]\"]\n{\"a\": 9223372036854775807}";
    size_t len = strlen(stream);
    g_autofree char *whole = run(stream);

    assert_string_equal(whole,
                        "V:{\"execute\": \"q\", \"arguments\": {\"s\": \"}\\\"{\", "
                        "'t': '\\'}'}, \"id\": [1, {\"x\": -12}]}|V:{}|V:[\"]\"]|"
                        "V:{\"a\": 9223372036854775807}");
    for (size_t cut = 0; cut <= len; cut++) {
        size_t chunks[] = {cut, 0};
        g_autofree char *got = run_chunks(stream, len, chunks, JSON_SPLITTER_MAX_SIZE,
                                          JSON_SPLITTER_MAX_DEPTH);
        assert_string_equal(got, whole);
    }
    size_t ones[2048];
    for (size_t i = 0; i < G_N_ELEMENTS(ones); i++) {
        ones[i] = 1;
    }
    ones[G_N_ELEMENTS(ones) - 1] = 0;
    g_autofree char *bytewise = run_chunks(stream, len, ones, JSON_SPLITTER_MAX_SIZE,
                                           JSON_SPLITTER_MAX_DEPTH);
    assert_string_equal(bytewise, whole);
}

/* A value over max_size is reported once, skipped, and the stream continues after it;
 * its strings are still tracked while skipping. */
static void test_too_large(void **state)
{
    GString *in = g_string_new("{\"execute\": \"");
    for (int i = 0; i < 5000; i++) {
        g_string_append(in, "}{");
    }
    g_string_append(in, "\"}{\"ok\": 1}");
    g_autofree char *got = run_chunks(in->str, in->len, NULL, 1000, 64);
    assert_string_equal(got, "E:message too large|V:{\"ok\": 1}");

    /* exactly at the bound is fine */
    g_string_assign(in, "{\"a\": \"");
    while (in->len < 998) {
        g_string_append_c(in, 'x');
    }
    g_string_append(in, "\"}");
    assert_int_equal(in->len, 1000);
    g_autofree char *atmax = run_chunks(in->str, in->len, NULL, 1000, 64);
    assert_true(g_str_has_prefix(atmax, "V:{\"a\""));
    g_string_free(in, TRUE);
}

static void test_too_deep(void **state)
{
    GString *in = g_string_new(NULL);

    for (int i = 0; i < 65; i++) {
        g_string_append(in, "[");
    }
    for (int i = 0; i < 65; i++) {
        g_string_append(in, "]");
    }
    g_string_append(in, "[[1]]");
    g_autofree char *got = run_chunks(in->str, in->len, NULL, 1 << 20, 64);
    assert_string_equal(got, "E:nesting too deep|V:[[1]]");

    /* 64 levels are allowed */
    g_string_truncate(in, 0);
    for (int i = 0; i < 64; i++) {
        g_string_append(in, "[");
    }
    for (int i = 0; i < 64; i++) {
        g_string_append(in, "]");
    }
    g_autofree char *ok = run_chunks(in->str, in->len, NULL, 1 << 20, 64);
    assert_true(g_str_has_prefix(ok, "V:[[[["));
    g_string_free(in, TRUE);
}

/* At most one error per read, however much noise the read holds; values still pass. */
static void test_one_error_per_read(void **state)
{
    const char *noise = "a\nb\nc\n}\n]\n{}d\n";
    size_t chunks[] = {strlen(noise), 0};
    g_autofree char *got = run_chunks(noise, strlen(noise), chunks, 1 << 20, 64);
    assert_string_equal(got, "E:stray input outside a JSON object|V:{}");

    size_t ones[64];
    for (size_t i = 0; i < G_N_ELEMENTS(ones); i++) {
        ones[i] = 1;
    }
    ones[63] = 0;
    g_autofree char *bytewise = run_chunks(noise, strlen(noise), ones, 1 << 20, 64);
    /* read by read, every run gets its own error */
    assert_string_equal(bytewise,
                        "E:stray input outside a JSON object|E:stray input outside a JSON "
                        "object|E:stray input outside a JSON object|E:stray input outside a "
                        "JSON object|E:stray input outside a JSON object|V:{}|E:stray input "
                        "outside a JSON object");
}

/* Random bytes: no crash, and everything delivered is a balanced value. */
static void test_random_noise(void **state)
{
    GRand *rand = g_rand_new_with_seed(12345);
    Out o = {.items = g_ptr_array_new_with_free_func(g_free)};
    JsonSplitter *s = json_splitter_new(4096, 16, collect, &o);
    char buf[1000];
    const char alphabet[] = "{}[]\"'\\ \n\x01" "ab1-e.:,";

    for (int round = 0; round < 2000; round++) {
        bool structured = g_rand_boolean(rand);
        for (size_t i = 0; i < sizeof(buf); i++) {
            buf[i] = structured ? alphabet[g_rand_int_range(rand, 0, sizeof(alphabet) - 1)]
                                : (char)g_rand_int_range(rand, 0, 256);
        }
        json_splitter_feed(s, buf, (size_t)g_rand_int_range(rand, 0, sizeof(buf) + 1));
    }
    json_splitter_finish(s);
    for (guint i = 0; i < o.items->len; i++) {
        const char *item = g_ptr_array_index(o.items, i);
        if (item[0] == 'V') {
            assert_true(item[2] == '{' || item[2] == '[');
            assert_true(strlen(item + 2) <= 4096);
        }
    }
    json_splitter_free(s);
    g_ptr_array_unref(o.items);
    g_rand_free(rand);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_too_deep),
        cmocka_unit_test(test_one_error_per_read),
        cmocka_unit_test(test_random_noise),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_duplicate_then_good),
        cmocka_unit_test(test_strict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
