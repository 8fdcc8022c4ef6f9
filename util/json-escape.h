/*
 * json-escape.h — write a C string as a JSON string literal; the one escaper of both
 * programs (vmad's QMP output through monitor/json-writer.c, `vma --json` in cli/).
 *
 * Always escaped: '"', '\\', \n \r \t by their short forms, every other control
 * character (below 0x20, and 0x7f) as \u00XX. Bytes that are not UTF-8 (archive names
 * and file names are bytes) become U+FFFD, so the output is always valid JSON.
 *
 * JSON_ESCAPE_ASCII (QMP: servers send pure ASCII, as QEMU does): every non-ASCII
 * character as \uXXXX (a surrogate pair beyond the BMP), and \b \f by their short
 * forms. Without it (the CLI), UTF-8 passes through as is and \b \f are \u0008 \u000c.
 *
 * Any thread; glib only.
 */
#ifndef UTIL_JSON_ESCAPE_H
#define UTIL_JSON_ESCAPE_H

#include <glib.h>

typedef enum JsonEscapeFlags {
    JSON_ESCAPE_UTF8 = 0,
    JSON_ESCAPE_ASCII = 1 << 0,
} JsonEscapeFlags;

/* Append str (NUL-terminated) to out as a quoted JSON string. */
void json_escape_append(GString *out, const char *str, JsonEscapeFlags flags);

#endif /* UTIL_JSON_ESCAPE_H */
