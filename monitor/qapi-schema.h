/*
 * qapi-schema.h — qapi-schema.json as a data structure: loading and validating the
 * schema itself, checking a command's arguments against it (QEMU's strict input
 * visitor rules and messages), turning command-line key=value text into typed
 * arguments, and introspection.
 *
 * The daemon uses one schema, the one embedded at build time (qapi_schema_builtin()).
 * Loaded schemas are immutable and may be read from any thread; the checking functions
 * only modify the JSON they are given.
 */
#ifndef MONITOR_QAPI_SCHEMA_H
#define MONITOR_QAPI_SCHEMA_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>

typedef struct QapiSchema QapiSchema;

/* Parse and validate schema text (the qapi-schema.json format, described in its own
 * top-level "doc"). Every definition, member and enum value must carry a doc string. */
QapiSchema *qapi_schema_new(const char *json_text, GError **errp);
void qapi_schema_free(QapiSchema *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QapiSchema, qapi_schema_free)

/* The schema embedded in the binary, loaded on first use (thread-safe). An invalid
 * embedded schema is a build error and aborts (the unit tests load it). */
const QapiSchema *qapi_schema_builtin(void);
/* The embedded schema text (generated from qapi-schema.json). */
extern const char qapi_schema_json[];

/* Commands and events, in schema order. */
guint qapi_schema_n_commands(const QapiSchema *s);
const char *qapi_schema_command_name(const QapiSchema *s, guint i);
bool qapi_schema_has_command(const QapiSchema *s, const char *name);
guint qapi_schema_n_events(const QapiSchema *s);
const char *qapi_schema_event_name(const QapiSchema *s, guint i);
bool qapi_schema_has_event(const QapiSchema *s, const char *name);

/*
 * Check a command's arguments (an object; members it does not declare are errors) and
 * normalise them in place (the legacy {"type", "data": {...}} socket address form is
 * flattened). Messages follow QEMU: "Parameter 'addr.path' is missing", "Parameter 'x'
 * is unexpected", "Invalid parameter type for 'x', expected: string", "Parameter 'x'
 * expects uint32", "Parameter 'mode' does not accept value 'y'".
 */
bool qapi_schema_check_args(const QapiSchema *s, const char *command, JsonObject *args,
                            GError **errp);
/* Check an event's data object (NULL for none) the same way. */
bool qapi_schema_check_event(const QapiSchema *s, const char *event, JsonObject *data,
                             GError **errp);
/* Check a command's return value against its declared returns type ({} if none). */
bool qapi_schema_check_return(const QapiSchema *s, const char *command, JsonNode *ret,
                              GError **errp);

/*
 * Command-line arguments for a command, from QEMU keyval text such as
 * "driver=file,node-name=d0,filename=a.raw,cache.direct=on": dotted keys nest, ",,"
 * is a literal comma, and string values become bool/int where the schema wants them
 * (bool: on/off, yes/no, true/false). The result still has to pass
 * qapi_schema_check_args(). implied_key names the member an initial value without
 * "key=" stands for (NULL: none).
 */
JsonObject *qapi_schema_args_from_keyval(const QapiSchema *s, const char *command,
                                         const char *text, const char *implied_key,
                                         GError **errp);

/* Plain keyval parsing into nested objects of strings (no schema). */
JsonObject *keyval_parse(const char *text, const char *implied_key, GError **errp);

/* The definitions list without doc and example members (query-qmp-schema). */
JsonNode *qapi_schema_introspect(const QapiSchema *s);

#endif /* MONITOR_QAPI_SCHEMA_H */
