/*
 * json-writer.h — serialise json-glib values the way QEMU's monitor does.
 *
 * One line, ", " between members and elements, ": " after keys, members in insertion
 * order, and ASCII only: every non-ASCII character is written as a \uXXXX escape
 * (a surrogate pair beyond the BMP), as the QMP spec requires of servers. Invalid
 * UTF-8 in a string (e.g. a file name) becomes U+FFFD rather than broken output.
 * Any thread.
 */
#ifndef MONITOR_JSON_WRITER_H
#define MONITOR_JSON_WRITER_H

#include <glib.h>
#include <json-glib/json-glib.h>

void json_writer_append(GString *out, JsonNode *node);
char *json_writer_to_string(JsonNode *node);

#endif /* MONITOR_JSON_WRITER_H */
