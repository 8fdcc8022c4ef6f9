/*
 * json-splitter.h — cut a QMP byte stream into complete top-level JSON values.
 *
 * QMP has no framing: each side writes JSON objects back to back, split across reads
 * in any way. The splitter is a byte-level scanner that tracks just enough JSON syntax
 * (nesting depth, strings with both quote styles, escapes, integer literals, the keys
 * of each object) to know where a top-level value ends and to refuse what json-glib
 * would get wrong. The complete text is then handed to a real parser (json-glib); the
 * splitter itself never builds values and needs only glib. Both programs use it: vmad's
 * monitor for what clients send, and `vma backup`'s QMP client for what a server sends.
 *
 * Refused before json-glib sees them (json-glib would accept them silently or leak):
 *  - a \u0000 escape in any string (json-glib cuts the string there: "a\u0000.iso"
 *    would be "a");
 *  - a malformed \u escape: not four hex digits, a lone low surrogate, a high
 *    surrogate not directly followed by a \u escape of a low one (json-glib 1.6 leaks
 *    memory on some of these);
 *  - a key that appears twice in one object, at any depth (json-glib keeps the last);
 *  - an integer literal beyond the int64 range (json-glib wraps it).
 *
 * Bounds and recovery (the input is untrusted), in the default recovering mode:
 *  - a value longer than max_size bytes, or nested deeper than max_depth, or refused
 *    for a reason above, is reported once and then skipped while the scanner keeps
 *    tracking its structure, so the stream resynchronises at its end;
 *  - an ASCII control character other than \t \n \r, or a byte 0xfe/0xff, anywhere
 *    outside a string discards whatever is partial, silently: this is QMP's documented
 *    way for a client to reset a confused parser (inside a string it is a syntax error);
 *  - other stray bytes at top level (not '{' or '[') form a "garbage run" that is
 *    reported once when a newline or the start of a value ends it;
 *  - at most one error is reported per json_splitter_feed() call.
 *
 * Strict mode (json_splitter_set_strict(), for a client reading a server): only objects
 * at top level, only white space between them, and every control byte is an error; the
 * caller is expected to give up on the stream at the first error.
 *
 * Not thread-safe: one splitter per connection, fed by one thread.
 */
#ifndef UTIL_JSON_SPLITTER_H
#define UTIL_JSON_SPLITTER_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#define JSON_SPLITTER_MAX_SIZE (1024u * 1024u)   /* QMP message bound (bytes) */
#define JSON_SPLITTER_MAX_DEPTH 1024u            /* same nesting bound as QEMU */

typedef struct JsonSplitter JsonSplitter;

/* What an error callback is about (json_splitter_error_code() during the callback). */
typedef enum JsonSplitterError {
    JSON_SPLITTER_ERROR_NONE,
    JSON_SPLITTER_ERROR_SIZE,       /* value longer than max_size */
    JSON_SPLITTER_ERROR_DEPTH,      /* nested deeper than max_depth */
    JSON_SPLITTER_ERROR_STRAY,      /* bytes outside a value */
    JSON_SPLITTER_ERROR_CONTROL,    /* control character inside a value or string */
    JSON_SPLITTER_ERROR_INTEGER,    /* integer literal beyond int64 */
    JSON_SPLITTER_ERROR_ESCAPE,     /* malformed \u escape, or \u0000 */
    JSON_SPLITTER_ERROR_DUPLICATE,  /* a key twice in one object */
    JSON_SPLITTER_ERROR_EOF,        /* input ended inside a value */
} JsonSplitterError;

/*
 * Called for every complete top-level value (text, len; text is NUL-terminated and
 * valid only during the call) or for every error (text NULL, error_msg a phrase like
 * "message too large"). Errors are meant to become QMP "JSON parse error, ..." replies.
 */
typedef void (*JsonSplitterFn)(void *opaque, const char *text, size_t len,
                               const char *error_msg);

JsonSplitter *json_splitter_new(size_t max_size, unsigned max_depth, JsonSplitterFn fn,
                                void *opaque);
void json_splitter_free(JsonSplitter *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(JsonSplitter, json_splitter_free)

/* Switch to strict mode (see above); call before the first feed. */
void json_splitter_set_strict(JsonSplitter *s, bool strict);

/* Scan len more bytes; calls fn for each value or error completed by them. */
void json_splitter_feed(JsonSplitter *s, const char *data, size_t len);

/* End of input: a partial value or garbage run left over is reported as an error. */
void json_splitter_finish(JsonSplitter *s);

/* The kind of the error being reported; valid only inside the error callback. */
JsonSplitterError json_splitter_error_code(const JsonSplitter *s);

/* True while the scanner is inside a value (a message has begun but not ended). */
bool json_splitter_in_value(const JsonSplitter *s);

#endif /* UTIL_JSON_SPLITTER_H */
