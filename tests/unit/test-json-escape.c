/*
 * test-json-escape.c — the one JSON string escaper (util/json-escape.c) in both modes:
 * a table of exact outputs, and random byte strings compared with the two escapers it
 * replaced (QMP's ASCII one and the CLI's UTF-8 one, kept here as references) so that
 * neither program's output changed by a byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/json-escape.h"

static char *escape(const char *s, JsonEscapeFlags flags)
{
    GString *out = g_string_new(NULL);

    json_escape_append(out, s, flags);
    return g_string_free(out, FALSE);
}

static void test_table(void **state)
{
    static const struct {
        const char *in;
        const char *ascii;
        const char *utf8;
    } cases[] = {
        {"", "\"\"", "\"\""},
        {"plain", "\"plain\"", "\"plain\""},
        {"q\"b\\s/", "\"q\\\"b\\\\s/\"", "\"q\\\"b\\\\s/\""},
        {"\n\r\t", "\"\\n\\r\\t\"", "\"\\n\\r\\t\""},
        {"\b\f", "\"\\b\\f\"", "\"\\u0008\\u000c\""},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"", "\"\\u0001\\u001f\\u007f\""},
        {"h\xc3\xa9", "\"h\\u00e9\"", "\"h\xc3\xa9\""},
        {"\xc2\x85", "\"\\u0085\"", "\"\xc2\x85\""},
        {"\xe2\x82\xac", "\"\\u20ac\"", "\"\xe2\x82\xac\""},
        {"\xf0\x9f\x98\x80", "\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\""},
        {"a\xff" "b", "\"a\\ufffdb\"", "\"a\\ufffdb\""},
        {"\xc3", "\"\\ufffd\"", "\"\\ufffd\""},
        {"\xe2\x82", "\"\\ufffd\\ufffd\"", "\"\\ufffd\\ufffd\""},
        {"\xc0\xaf", "\"\\ufffd\\ufffd\"", "\"\\ufffd\\ufffd\""},   /* overlong '/' */
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *a = escape(cases[i].in, JSON_ESCAPE_ASCII);
        g_autofree char *u = escape(cases[i].in, JSON_ESCAPE_UTF8);
        assert_string_equal(a, cases[i].ascii);
        assert_string_equal(u, cases[i].utf8);
    }
}

/* The former monitor/json-writer.c escaper (QMP output), as it was. */
static void ref_ascii(GString *out, const char *str)
{
    const char *p = str;
    const char *end = str + strlen(str);

    g_string_append_c(out, '"');
    while (p < end) {
        gunichar c = g_utf8_get_char_validated(p, end - p);
        const char *next;

        if (c == (gunichar)-1 || c == (gunichar)-2) {
            c = 0xfffd;
            next = p + 1;
        } else {
            next = g_utf8_next_char(p);
        }
        switch (c) {
        case '"': g_string_append(out, "\\\""); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '\b': g_string_append(out, "\\b"); break;
        case '\f': g_string_append(out, "\\f"); break;
        case '\n': g_string_append(out, "\\n"); break;
        case '\r': g_string_append(out, "\\r"); break;
        case '\t': g_string_append(out, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                g_string_append_printf(out, "\\u%04x", (unsigned)c);
            } else if (c < 0x80) {
                g_string_append_c(out, (char)c);
            } else if (c < 0x10000) {
                g_string_append_printf(out, "\\u%04x", (unsigned)c);
            } else {
                c -= 0x10000;
                g_string_append_printf(out, "\\u%04x\\u%04x", 0xd800u | (unsigned)(c >> 10),
                                       0xdc00u | (unsigned)(c & 0x3ff));
            }
            break;
        }
        p = next;
    }
    g_string_append_c(out, '"');
}

/* The former cli/list.c escaper (vma --json), as it was. */
static void ref_utf8(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    while (*s) {
        gunichar c = g_utf8_get_char_validated(s, -1);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append(out, "\\ufffd");
            s++;
            continue;
        }
        switch (c) {
        case '"': g_string_append(out, "\\\""); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '\n': g_string_append(out, "\\n"); break;
        case '\r': g_string_append(out, "\\r"); break;
        case '\t': g_string_append(out, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                g_string_append_printf(out, "\\u%04x", (unsigned)c);
            } else {
                g_string_append_len(out, s, g_utf8_next_char(s) - s);
            }
        }
        s = g_utf8_next_char(s);
    }
    g_string_append_c(out, '"');
}

static void test_same_as_before(void **state)
{
    GRand *rand = g_rand_new_with_seed(4242);
    static const char *const pieces[] = {"a", "\"", "\\", "\b", "\f", "\n", "\x01", "\x7f",
                                         "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                         "\xc2\x85", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    char buf[64];

    for (int round = 0; round < 200000; round++) {
        size_t len = 0;
        size_t n = (size_t)g_rand_int_range(rand, 0, 12);
        for (size_t i = 0; i < n; i++) {
            if (g_rand_boolean(rand)) {
                buf[len++] = (char)g_rand_int_range(rand, 1, 256);
            } else {
                const char *p = pieces[g_rand_int_range(rand, 0, G_N_ELEMENTS(pieces))];
                memcpy(buf + len, p, strlen(p));
                len += strlen(p);
            }
        }
        buf[len] = '\0';
        GString *want_a = g_string_new(NULL), *want_u = g_string_new(NULL);
        ref_ascii(want_a, buf);
        ref_utf8(want_u, buf);
        g_autofree char *a = escape(buf, JSON_ESCAPE_ASCII);
        g_autofree char *u = escape(buf, JSON_ESCAPE_UTF8);
        assert_string_equal(a, want_a->str);
        assert_string_equal(u, want_u->str);
        g_string_free(want_a, TRUE);
        g_string_free(want_u, TRUE);
    }
    g_rand_free(rand);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_same_as_before),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
