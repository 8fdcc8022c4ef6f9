/*
 * json-splitter.c — find complete top-level JSON values in a QMP byte stream.
 *
 * State machine (see json-splitter.h for the contract):
 *
 *   TOP ──'{' or '['──► VALUE ──matching close, depth 0──► deliver, TOP
 *    │                   │  ├─ quote ──► STRING (escape tracking) ──► VALUE
 *    │                   │  └─ over size/depth ──► VALUE with skipping=true
 *    │                   └─ control byte ──► TOP (partial value dropped silently)
 *    └─ stray byte ──► GARBAGE ──'\n', '{', '['──► report once, TOP / VALUE
 *
 * While skipping, bytes are not stored but depth and strings are still tracked, so the
 * stream resynchronises right after the oversized value. Integer literals are checked
 * against the int64 range here because json-glib silently wraps larger ones.
 *
 * At most one error is reported per json_splitter_feed() call: a client that sends
 * megabytes of binary noise gets a bounded number of replies (one per read) instead of
 * one per stray byte. Complete values are always delivered.
 */
#include <string.h>

#include "monitor/json-splitter.h"

struct JsonSplitter {
    size_t max_size;
    unsigned max_depth;
    JsonSplitterFn fn;
    void *opaque;

    GString *buf;          /* text of the current value (empty while skipping) */
    unsigned depth;        /* open brackets of the current value; 0 = at top level */
    char quote;            /* 0 outside strings, else the opening quote character */
    bool escape;           /* inside a string, the previous byte was a backslash */
    bool skipping;         /* the current value broke a bound: track, don't store */
    bool garbage;          /* inside a run of stray bytes at top level */
    bool overflow;         /* the current value holds an integer literal beyond int64 */
    bool in_number;        /* scanning a number literal */
    bool number_is_int;    /* ... with no fraction or exponent so far */
    size_t number_start;   /* offset of the literal in buf */
    bool reported;         /* an error was reported during this feed call */
};

JsonSplitter *json_splitter_new(size_t max_size, unsigned max_depth, JsonSplitterFn fn,
                                void *opaque)
{
    JsonSplitter *s = g_new0(JsonSplitter, 1);

    s->max_size = max_size;
    s->max_depth = max_depth;
    s->fn = fn;
    s->opaque = opaque;
    s->buf = g_string_sized_new(256);
    return s;
}

void json_splitter_free(JsonSplitter *s)
{
    if (s == NULL) {
        return;
    }
    g_string_free(s->buf, TRUE);
    g_free(s);
}

static void report(JsonSplitter *s, const char *msg)
{
    if (!s->reported) {
        s->reported = true;
        s->fn(s->opaque, NULL, 0, msg);
    }
}

static void reset_value(JsonSplitter *s)
{
    g_string_truncate(s->buf, 0);
    if (s->buf->allocated_len > 64 * 1024) {
        /* give back the memory of a large message */
        g_string_free(s->buf, TRUE);
        s->buf = g_string_sized_new(256);
    }
    s->depth = 0;
    s->quote = 0;
    s->escape = false;
    s->skipping = false;
    s->overflow = false;
    s->in_number = false;
}

static void start_skipping(JsonSplitter *s, const char *msg)
{
    report(s, msg);
    s->skipping = true;
    s->in_number = false;
    g_string_truncate(s->buf, 0);
}

/* A resynchronisation byte: ASCII control other than \t \n \r, or 0xfe / 0xff. */
static bool is_reset_byte(unsigned char c)
{
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f || c >= 0xfe;
}

static bool is_number_byte(unsigned char c)
{
    return g_ascii_isdigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* The number literal at buf[number_start..] just ended: is it an integer beyond int64? */
static void end_number(JsonSplitter *s)
{
    s->in_number = false;
    if (!s->number_is_int || s->skipping) {
        return;
    }
    const char *p = s->buf->str + s->number_start;
    size_t len = s->buf->len - s->number_start;
    bool negative = false;

    if (len > 0 && *p == '-') {
        negative = true;
        p++;
        len--;
    }
    while (len > 1 && *p == '0') {
        p++;
        len--;
    }
    if (len > 19 || (len == 19 && memcmp(p, negative ? "9223372036854775808"
                                                   : "9223372036854775807", 19) > 0)) {
        s->overflow = true;
    }
}

static void deliver(JsonSplitter *s)
{
    if (s->skipping) {
        /* the error was reported when the bound was crossed */
    } else if (s->overflow) {
        report(s, "integer literal out of range");
    } else {
        s->fn(s->opaque, s->buf->str, s->buf->len, NULL);
    }
    reset_value(s);
}

static void append(JsonSplitter *s, char c)
{
    if (s->skipping) {
        return;
    }
    g_string_append_c(s->buf, c);
    if (s->buf->len > s->max_size) {
        start_skipping(s, "message too large");
    }
}

static void feed_top(JsonSplitter *s, unsigned char c)
{
    if (c == '{' || c == '[') {
        if (s->garbage) {
            s->garbage = false;
            report(s, "stray input outside a JSON object");
        }
        s->depth = 1;
        g_string_append_c(s->buf, (char)c);
    } else if (c == '\n') {
        if (s->garbage) {
            s->garbage = false;
            report(s, "stray input outside a JSON object");
        }
    } else if (c == ' ' || c == '\t' || c == '\r') {
        /* whitespace between values; inside a garbage run it belongs to the run */
    } else if (is_reset_byte(c)) {
        s->garbage = false;
    } else {
        s->garbage = true;
    }
}

static void feed_string(JsonSplitter *s, unsigned char c)
{
    if (is_reset_byte(c)) {
        reset_value(s);
        return;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
        /* must be escaped in JSON; reject now rather than wait for a closing quote */
        reset_value(s);
        report(s, "control character in string");
        return;
    }
    if (s->escape) {
        s->escape = false;
    } else if (c == '\\') {
        s->escape = true;
    } else if (c == (unsigned char)s->quote) {
        s->quote = 0;
    }
    append(s, (char)c);
}

static void feed_value(JsonSplitter *s, unsigned char c)
{
    if (s->in_number && !is_number_byte(c)) {
        end_number(s);
    }
    if (is_reset_byte(c)) {
        reset_value(s);
        return;
    }
    switch (c) {
    case '"':
    case '\'':
        s->quote = (char)c;
        append(s, (char)c);
        return;
    case '{':
    case '[':
        s->depth++;
        append(s, (char)c);
        if (s->depth > s->max_depth && !s->skipping) {
            start_skipping(s, "nesting too deep");
        }
        return;
    case '}':
    case ']':
        append(s, (char)c);
        if (--s->depth == 0) {
            deliver(s);
        }
        return;
    default:
        break;
    }
    if (!s->in_number && (g_ascii_isdigit(c) || c == '-')) {
        s->in_number = true;
        s->number_is_int = true;
        s->number_start = s->buf->len;
    } else if (s->in_number && (c == '.' || c == 'e' || c == 'E')) {
        s->number_is_int = false;
    }
    append(s, (char)c);
}

void json_splitter_feed(JsonSplitter *s, const char *data, size_t len)
{
    s->reported = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];

        if (s->depth == 0) {
            feed_top(s, c);
        } else if (s->quote != 0) {
            feed_string(s, c);
        } else {
            feed_value(s, c);
        }
    }
}

void json_splitter_finish(JsonSplitter *s)
{
    s->reported = false;
    if (s->depth > 0) {
        bool skipped = s->skipping;
        reset_value(s);
        if (!skipped) {
            report(s, "unexpected end of input");
        }
    } else if (s->garbage) {
        s->garbage = false;
        report(s, "stray input outside a JSON object");
    }
}
