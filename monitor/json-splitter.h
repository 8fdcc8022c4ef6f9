/*
 * json-splitter.h — cut a QMP input byte stream into complete top-level JSON values.
 *
 * QMP has no framing: the client writes JSON objects back to back, split across reads
 * in any way. The splitter is a byte-level scanner that tracks just enough JSON syntax
 * (nesting depth, strings with both quote styles, escapes, integer literals) to know
 * where a top-level object or array ends. The complete text is then handed to a real
 * parser (json-glib); the splitter itself never builds values.
 *
 * Bounds and recovery (the input is untrusted):
 *  - a value longer than max_size bytes, or nested deeper than max_depth, is reported
 *    once and then skipped while the scanner keeps tracking its structure, so the
 *    stream resynchronises at its end;
 *  - an ASCII control character other than \t \n \r, or a byte 0xfe/0xff, anywhere
 *    outside a string discards whatever is partial, silently: this is QMP's documented
 *    way for a client to reset a confused parser (inside a string it is a syntax error);
 *  - other stray bytes at top level (not '{' or '[') form a "garbage run" that is
 *    reported once when a newline or the start of a value ends it;
 *  - an integer literal beyond the int64 range is an error (json-glib would wrap it).
 *
 * Not thread-safe: one splitter per connection, fed by one thread.
 */
#ifndef MONITOR_JSON_SPLITTER_H
#define MONITOR_JSON_SPLITTER_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#define JSON_SPLITTER_MAX_SIZE (1024u * 1024u)   /* QMP message bound (bytes) */
#define JSON_SPLITTER_MAX_DEPTH 1024u            /* same nesting bound as QEMU */

typedef struct JsonSplitter JsonSplitter;

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

/* Scan len more bytes; calls fn for each value or error completed by them. */
void json_splitter_feed(JsonSplitter *s, const char *data, size_t len);

/* End of input: a partial value or garbage run left over is reported as an error. */
void json_splitter_finish(JsonSplitter *s);

#endif /* MONITOR_JSON_SPLITTER_H */
