/*
 * json-escape.c — JSON string literals, UTF-8 or pure ASCII (see json-escape.h).
 */
#include <stdbool.h>
#include <string.h>

#include "util/json-escape.h"

void json_escape_append(GString *out, const char *str, JsonEscapeFlags flags)
{
    const bool ascii = (flags & JSON_ESCAPE_ASCII) != 0;
    const char *p = str;
    const char *end = str + strlen(str);

    g_string_append_c(out, '"');
    while (p < end) {
        gunichar c = g_utf8_get_char_validated(p, end - p);
        const char *next;

        if (c == (gunichar)-1 || c == (gunichar)-2) {
            /* not UTF-8: one byte becomes U+FFFD, so the JSON stays valid */
            g_string_append(out, "\\ufffd");
            p++;
            continue;
        }
        next = g_utf8_next_char(p);
        switch (c) {
        case '"':
            g_string_append(out, "\\\"");
            break;
        case '\\':
            g_string_append(out, "\\\\");
            break;
        case '\n':
            g_string_append(out, "\\n");
            break;
        case '\r':
            g_string_append(out, "\\r");
            break;
        case '\t':
            g_string_append(out, "\\t");
            break;
        case '\b':
        case '\f':
            if (ascii) {
                g_string_append(out, c == '\b' ? "\\b" : "\\f");
            } else {
                g_string_append_printf(out, "\\u%04x", (unsigned)c);
            }
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                g_string_append_printf(out, "\\u%04x", (unsigned)c);
            } else if (c < 0x80 || !ascii) {
                g_string_append_len(out, p, next - p);
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
