/*
 * json-splitter.c — find complete top-level JSON values in a QMP byte stream.
 *
 * State machine (see json-splitter.h for the contract):
 *
 *   TOP ──'{' or '['──► VALUE ──matching close, depth 0──► deliver, TOP
 *    │                   │  ├─ quote ──► STRING (escape decoding) ──► VALUE
 *    │                   │  └─ over size/depth, refused string ──► VALUE with skipping
 *    │                   └─ control byte ──► TOP (partial value dropped silently)
 *    └─ stray byte ──► GARBAGE ──'\n', '{', '['──► report once, TOP / VALUE
 *
 * While skipping, bytes are not stored but depth and strings are still tracked, so the
 * stream resynchronises right after the refused value. Integer literals are checked
 * against the int64 range here because json-glib silently wraps larger ones.
 *
 * Escapes. Inside a string, a backslash starts an escape; \u takes exactly four hex
 * digits, and a high surrogate must be followed at once by the \u escape of a low one.
 * On a malformed escape the byte that broke it is scanned again as an ordinary string
 * byte, so a quote still ends the string (the structure stays in step with the text).
 *
 * Keys. One Level per open bracket of the current value says whether it is an object
 * and whether the next string there is a key; an object's keys, decoded (so "a" and
 * "\u0061" are one key), are kept in a set created at its first key. A key already in
 * the set refuses the value. The levels and the sets go with the value (reset_value);
 * they are not kept while skipping. Memory is bounded by max_size and max_depth.
 *
 * At most one error is reported per json_splitter_feed() call in recovering mode: a
 * client that sends megabytes of binary noise gets a bounded number of replies (one
 * per read) instead of one per stray byte. Complete values are always delivered.
 */
#include <string.h>

#include "util/json-splitter.h"

typedef struct Level {
    bool object;           /* '{' (else '[') */
    bool expect_key;       /* in an object, after '{' or ',': the next string is a key */
    GHashTable *keys;      /* char * keys of this object seen so far; NULL until one */
} Level;

typedef enum EscState {
    ESC_NONE,              /* ordinary string byte */
    ESC_START,             /* the previous byte was a backslash */
    ESC_HEX,               /* inside the four hex digits of \u */
} EscState;

struct JsonSplitter {
    size_t max_size;
    unsigned max_depth;
    JsonSplitterFn fn;
    void *opaque;
    bool strict;

    GString *buf;          /* text of the current value (empty while skipping) */
    unsigned depth;        /* open brackets of the current value; 0 = at top level */
    char quote;            /* 0 outside strings, else the opening quote character */
    EscState esc;
    unsigned hex_left;     /* ESC_HEX: digits still to come */
    unsigned hex_value;    /* ESC_HEX: value of the digits so far */
    unsigned high;         /* a high surrogate waiting for its low half, else 0 */
    bool skipping;         /* the current value broke a bound: track, don't store */
    bool garbage;          /* inside a run of stray bytes at top level */
    bool overflow;         /* the current value holds an integer literal beyond int64 */
    bool in_number;        /* scanning a number literal */
    bool number_is_int;    /* ... with no fraction or exponent so far */
    size_t number_start;   /* offset of the literal in buf */
    bool reported;         /* an error was reported during this feed call */

    GArray *levels;        /* Level: one per open bracket (not kept while skipping) */
    bool in_key;           /* the string being scanned is an object key */
    GString *key;          /* ... decoded so far */

    JsonSplitterError error_code;   /* of the error being reported */
    char error_buf[160];
};

static void level_clear(gpointer p)
{
    Level *l = p;

    if (l->keys != NULL) {
        g_hash_table_destroy(l->keys);
    }
}

JsonSplitter *json_splitter_new(size_t max_size, unsigned max_depth, JsonSplitterFn fn,
                                void *opaque)
{
    JsonSplitter *s = g_new0(JsonSplitter, 1);

    s->max_size = max_size;
    s->max_depth = max_depth;
    s->fn = fn;
    s->opaque = opaque;
    s->buf = g_string_sized_new(256);
    s->levels = g_array_new(FALSE, TRUE, sizeof(Level));
    g_array_set_clear_func(s->levels, level_clear);
    s->key = g_string_new(NULL);
    return s;
}

void json_splitter_free(JsonSplitter *s)
{
    if (s == NULL) {
        return;
    }
    g_string_free(s->buf, TRUE);
    g_array_unref(s->levels);
    g_string_free(s->key, TRUE);
    g_free(s);
}

void json_splitter_set_strict(JsonSplitter *s, bool strict)
{
    s->strict = strict;
}

JsonSplitterError json_splitter_error_code(const JsonSplitter *s)
{
    return s->error_code;
}

bool json_splitter_in_value(const JsonSplitter *s)
{
    return s->depth > 0;
}

static void report(JsonSplitter *s, JsonSplitterError code, const char *msg)
{
    if (!s->reported || s->strict) {
        s->reported = true;
        s->error_code = code;
        s->fn(s->opaque, NULL, 0, msg);
        s->error_code = JSON_SPLITTER_ERROR_NONE;
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
    s->esc = ESC_NONE;
    s->high = 0;
    s->skipping = false;
    s->overflow = false;
    s->in_number = false;
    s->in_key = false;
    g_array_set_size(s->levels, 0);
    g_string_truncate(s->key, 0);
}

static void start_skipping(JsonSplitter *s, JsonSplitterError code, const char *msg)
{
    report(s, code, msg);
    s->skipping = true;
    s->in_number = false;
    s->in_key = false;
    g_array_set_size(s->levels, 0);
    g_string_truncate(s->buf, 0);
}

/* Refuse the current value for something inside it (once per value). */
static void refuse(JsonSplitter *s, JsonSplitterError code, const char *msg)
{
    if (!s->skipping) {
        start_skipping(s, code, msg);
    }
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

/* Strict mode: a control byte inside a value. */
static void control_in_value(JsonSplitter *s, unsigned char c)
{
    if (c == 0) {
        report(s, JSON_SPLITTER_ERROR_CONTROL, "NUL byte in a message");
    } else {
        g_snprintf(s->error_buf, sizeof(s->error_buf), "control byte 0x%02x in a message", c);
        report(s, JSON_SPLITTER_ERROR_CONTROL, s->error_buf);
    }
    reset_value(s);
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
        /* the error was reported when the value was refused */
    } else if (s->overflow) {
        report(s, JSON_SPLITTER_ERROR_INTEGER, "integer literal out of range");
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
        start_skipping(s, JSON_SPLITTER_ERROR_SIZE, "message too large");
    }
}

static Level *top_level(JsonSplitter *s)
{
    return s->levels->len > 0 ? &g_array_index(s->levels, Level, s->levels->len - 1) : NULL;
}

static void push_level(JsonSplitter *s, bool object)
{
    if (!s->skipping) {
        Level l = {.object = object, .expect_key = object};
        g_array_append_val(s->levels, l);
    }
}

static void pop_level(JsonSplitter *s)
{
    if (!s->skipping && s->levels->len > 0) {
        g_array_set_size(s->levels, s->levels->len - 1);
    }
}

/* A key string just ended: refuse the value if its object has it already. */
static void end_key(JsonSplitter *s)
{
    Level *l = top_level(s);

    s->in_key = false;
    if (s->skipping || l == NULL) {
        return;
    }
    if (l->keys == NULL) {
        l->keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    }
    if (g_hash_table_contains(l->keys, s->key->str)) {
        g_autofree char *shown = g_strescape(s->key->str, NULL);
        g_snprintf(s->error_buf, sizeof(s->error_buf), "duplicate key '%.64s%s'", shown,
                   strlen(shown) > 64 ? "..." : "");
        refuse(s, JSON_SPLITTER_ERROR_DUPLICATE, s->error_buf);
        return;
    }
    g_hash_table_add(l->keys, g_strdup(s->key->str));
}

static void key_append_char(JsonSplitter *s, char c)
{
    if (s->in_key && !s->skipping) {
        g_string_append_c(s->key, c);
    }
}

static void key_append_unichar(JsonSplitter *s, gunichar u)
{
    if (s->in_key && !s->skipping) {
        g_string_append_unichar(s->key, u);
    }
}

static char simple_escape(unsigned char c)
{
    switch (c) {
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return (char)c;   /* \" \\ \/ \' (and invalid ones, which json-glib refuses) */
    }
}

/* The four digits of a \u escape are complete. */
static void end_hex(JsonSplitter *s)
{
    unsigned v = s->hex_value;

    s->esc = ESC_NONE;
    if (s->high != 0) {
        if (v >= 0xdc00 && v <= 0xdfff) {
            key_append_unichar(s, 0x10000 + ((s->high - 0xd800) << 10) + (v - 0xdc00));
        } else {
            refuse(s, JSON_SPLITTER_ERROR_ESCAPE, "invalid \\u escape: lone surrogate");
        }
        s->high = 0;
    } else if (v >= 0xd800 && v <= 0xdbff) {
        s->high = v;
    } else if (v >= 0xdc00 && v <= 0xdfff) {
        refuse(s, JSON_SPLITTER_ERROR_ESCAPE, "invalid \\u escape: lone surrogate");
    } else if (v == 0) {
        refuse(s, JSON_SPLITTER_ERROR_ESCAPE, "\\u0000 is not supported");
    } else {
        key_append_unichar(s, v);
    }
}

/* One byte of a string, after the control-byte checks. */
static void scan_string_byte(JsonSplitter *s, unsigned char c)
{
    if (s->esc == ESC_HEX) {
        int d = g_ascii_xdigit_value((char)c);
        if (d >= 0) {
            s->hex_value = s->hex_value * 16 + (unsigned)d;
            if (--s->hex_left == 0) {
                end_hex(s);
            }
            return;
        }
        refuse(s, JSON_SPLITTER_ERROR_ESCAPE, "invalid \\u escape: four hex digits expected");
        s->esc = ESC_NONE;
        s->high = 0;
        /* c is an ordinary byte again */
    } else if (s->esc == ESC_START) {
        s->esc = ESC_NONE;
        if (c == 'u') {
            s->esc = ESC_HEX;
            s->hex_left = 4;
            s->hex_value = 0;
            return;
        }
        if (s->high != 0) {
            refuse(s, JSON_SPLITTER_ERROR_ESCAPE, "invalid \\u escape: lone surrogate");
            s->high = 0;
        }
        key_append_char(s, simple_escape(c));
        return;
    }
    if (s->high != 0 && c != '\\') {
        refuse(s, JSON_SPLITTER_ERROR_ESCAPE, "invalid \\u escape: lone surrogate");
        s->high = 0;
    }
    if (c == '\\') {
        s->esc = ESC_START;
    } else if (c == (unsigned char)s->quote) {
        s->quote = 0;
        if (s->in_key) {
            end_key(s);
        }
    } else {
        key_append_char(s, (char)c);
    }
}

static void feed_top(JsonSplitter *s, unsigned char c)
{
    if (s->strict) {
        if (c == '{') {
            s->depth = 1;
            g_string_append_c(s->buf, (char)c);
            push_level(s, true);
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            g_snprintf(s->error_buf, sizeof(s->error_buf),
                       "unexpected byte 0x%02x outside a message", c);
            report(s, JSON_SPLITTER_ERROR_STRAY, s->error_buf);
        }
        return;
    }
    if (c == '{' || c == '[') {
        if (s->garbage) {
            s->garbage = false;
            report(s, JSON_SPLITTER_ERROR_STRAY, "stray input outside a JSON object");
        }
        s->depth = 1;
        g_string_append_c(s->buf, (char)c);
        push_level(s, c == '{');
    } else if (c == '\n') {
        if (s->garbage) {
            s->garbage = false;
            report(s, JSON_SPLITTER_ERROR_STRAY, "stray input outside a JSON object");
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
        if (s->strict) {
            control_in_value(s, c);
        } else {
            reset_value(s);
        }
        return;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
        /* must be escaped in JSON; reject now rather than wait for a closing quote */
        reset_value(s);
        report(s, JSON_SPLITTER_ERROR_CONTROL, "control character in string");
        return;
    }
    scan_string_byte(s, c);
    append(s, (char)c);
}

static void feed_value(JsonSplitter *s, unsigned char c)
{
    if (s->in_number && !is_number_byte(c)) {
        end_number(s);
    }
    if (is_reset_byte(c)) {
        if (s->strict) {
            control_in_value(s, c);
        } else {
            reset_value(s);
        }
        return;
    }
    Level *l = top_level(s);
    switch (c) {
    case '"':
    case '\'':
        s->quote = (char)c;
        s->esc = ESC_NONE;
        s->high = 0;
        if (l != NULL && l->object && l->expect_key && !s->skipping) {
            s->in_key = true;
            g_string_truncate(s->key, 0);
        }
        if (l != NULL) {
            l->expect_key = false;
        }
        append(s, (char)c);
        return;
    case ',':
        if (l != NULL && l->object) {
            l->expect_key = true;
        }
        break;
    case '{':
    case '[':
        if (l != NULL) {
            l->expect_key = false;
        }
        s->depth++;
        if (s->depth > s->max_depth && !s->skipping) {
            start_skipping(s, JSON_SPLITTER_ERROR_DEPTH, "nesting too deep");
        }
        push_level(s, c == '{');
        append(s, (char)c);
        return;
    case '}':
    case ']':
        pop_level(s);
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
            report(s, JSON_SPLITTER_ERROR_EOF, "unexpected end of input");
        }
    } else if (s->garbage) {
        s->garbage = false;
        report(s, JSON_SPLITTER_ERROR_STRAY, "stray input outside a JSON object");
    }
}
