/*
 * qmp-dispatch.c — from one request message to its response.
 *
 * Order of checks (QEMU's, so that clients see the same errors):
 *   1. the text parses as JSON, and is an object            ("JSON parse error, ...",
 *                                                              "QMP input must be a JSON object")
 *   2. its members: execute (or exec-oob once oob is on) a string, arguments an object,
 *      id anything, nothing else                                  ("QMP input member ...")
 *   3. negotiation mode allows only qmp_capabilities          (CommandNotFound)
 *   4. the command exists                                     (CommandNotFound)
 *   5. exec-oob: no command supports it
 *   6. arguments against the schema, before any side effect
 *   7. the handler
 * The id, when the request is an object that has one, is echoed in every response to it.
 * Success: {"return": ..., "id": ...}; error: {"id": ..., "error": {"class", "desc"}}.
 */
#include <string.h>

#include "vma.h"
#include "monitor.h"
#include "monitor/qapi-schema.h"
#include "monitor/qmp-internal.h"

JsonNode *qmp_return_empty(void)
{
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);

    json_node_take_object(n, json_object_new());
    return n;
}

JsonNode *qmp_version_info(void)
{
    g_auto(GStrv) parts = g_strsplit(VMABACKUP_VERSION, ".", 3);
    JsonObject *triple = json_object_new();
    JsonObject *info = json_object_new();
    gint64 v[3] = {0, 0, 0};

    for (int i = 0; i < 3 && parts[i] != NULL; i++) {
        v[i] = g_ascii_strtoll(parts[i], NULL, 10);
    }
    json_object_set_int_member(triple, "micro", v[2]);
    json_object_set_int_member(triple, "minor", v[1]);
    json_object_set_int_member(triple, "major", v[0]);
    json_object_set_object_member(info, "qemu", triple);
    json_object_set_string_member(info, "package", "vmad " VMABACKUP_VERSION);

    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, info);
    return n;
}

JsonNode *qmp_greeting(void)
{
    JsonObject *qmp = json_object_new();
    JsonArray *caps = json_array_new();
    JsonObject *top = json_object_new();

    json_object_set_member(qmp, "version", qmp_version_info());
    json_array_add_string_element(caps, "oob");
    json_object_set_array_member(qmp, "capabilities", caps);
    json_object_set_object_member(top, "QMP", qmp);

    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, top);
    return n;
}

const QmpCommand *qmp_command_find(const char *name)
{
    for (const QmpCommand *c = qmp_commands; c->name != NULL; c++) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

JsonNode *qmp_execute(QmpSession *session, const char *command, JsonObject *args,
                      GError **errp)
{
    const QapiSchema *schema = qapi_schema_builtin();
    const QmpCommand *cmd = qmp_command_find(command);
    g_autoptr(JsonObject) empty = NULL;

    if (cmd == NULL || !qapi_schema_has_command(schema, command)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                    "The command %s has not been found", command);
        return NULL;
    }
    if (args == NULL) {
        args = empty = json_object_new();
    }
    if (!qapi_schema_check_args(schema, command, args, errp)) {
        return NULL;
    }
    GError *local_err = NULL;
    JsonNode *ret = cmd->fn(session, args, &local_err);
    g_assert((ret == NULL) == (local_err != NULL));
    if (local_err != NULL) {
        g_propagate_error(errp, local_err);
    }
    return ret;
}

static JsonNode *error_response(JsonNode *id, const GError *err)
{
    JsonObject *rsp = json_object_new();

    if (id != NULL) {
        json_object_set_member(rsp, "id", json_node_copy(id));
    }
    json_object_set_object_member(rsp, "error", qmp_error_object(err));

    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, rsp);
    return n;
}

JsonNode *qmp_parse_error_response(const char *msg)
{
    g_autoptr(GError) err = g_error_new(QMP_ERROR, QMP_ERROR_GENERIC, "JSON parse error, %s",
                                        msg);
    return error_response(NULL, err);
}

/* Step 2: the request's own members. Returns the command name. */
static const char *check_request(QmpSession *s, JsonObject *req, bool *oob, GError **errp)
{
    g_autoptr(GList) keys = json_object_get_members(req);
    const char *exec_key = NULL;

    for (GList *l = keys; l != NULL; l = l->next) {
        const char *key = l->data;
        JsonNode *value = json_object_get_member(req, key);

        if (strcmp(key, "execute") == 0 ||
            (strcmp(key, "exec-oob") == 0 && qmp_session_oob_enabled(s))) {
            if (json_node_get_value_type(value) != G_TYPE_STRING) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "QMP input member '%s' must be a string", key);
                return NULL;
            }
            if (exec_key != NULL) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "QMP input member '%s' clashes with '%s'", key, exec_key);
                return NULL;
            }
            exec_key = key;
        } else if (strcmp(key, "arguments") == 0) {
            if (!JSON_NODE_HOLDS_OBJECT(value)) {
                g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "QMP input member 'arguments' must be an object");
                return NULL;
            }
        } else if (strcmp(key, "id") != 0) {
            g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                        "QMP input member '%s' is unexpected", key);
            return NULL;
        }
    }
    if (exec_key == NULL) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "QMP input lacks member 'execute'");
        return NULL;
    }
    *oob = strcmp(exec_key, "exec-oob") == 0;
    return json_object_get_string_member(req, exec_key);
}

JsonNode *qmp_dispatch(QmpSession *s, const char *text, size_t len)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) err = NULL;

    if (!json_parser_load_from_data(parser, text, (gssize)len, &err)) {
        /* json-glib says "<data>:1:13: Parse error: unexpected ..."; keep position and
         * reason */
        g_autofree char *msg = g_strdup(err->message);
        char *p = msg;
        if (g_str_has_prefix(p, "<data>:")) {
            p += strlen("<data>:");
        }
        char *pe = strstr(p, "Parse error: ");
        if (pe != NULL) {
            memmove(pe, pe + strlen("Parse error: "), strlen(pe + strlen("Parse error: ")) + 1);
        }
        return qmp_parse_error_response(p);
    }
    JsonNode *root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        err = g_error_new(QMP_ERROR, QMP_ERROR_GENERIC, "QMP input must be a JSON object");
        return error_response(NULL, err);
    }
    JsonObject *req = json_node_get_object(root);
    JsonNode *id = json_object_get_member(req, "id");
    bool oob = false;
    const char *command = check_request(s, req, &oob, &err);
    if (command == NULL) {
        return error_response(id, err);
    }
    if (!qmp_session_is_negotiated(s) && strcmp(command, "qmp_capabilities") != 0) {
        err = g_error_new(QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                          "Expecting capabilities negotiation with 'qmp_capabilities'");
        return error_response(id, err);
    }
    if (qmp_command_find(command) == NULL ||
        !qapi_schema_has_command(qapi_schema_builtin(), command)) {
        err = g_error_new(QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                          "The command %s has not been found", command);
        return error_response(id, err);
    }
    if (oob) {
        err = g_error_new(QMP_ERROR, QMP_ERROR_GENERIC, "The command %s does not support OOB",
                          command);
        return error_response(id, err);
    }

    JsonNode *argn = json_object_get_member(req, "arguments");
    JsonNode *ret = qmp_execute(s, command, argn != NULL ? json_node_get_object(argn) : NULL,
                                &err);
    if (ret == NULL) {
        return error_response(id, err);
    }
    JsonObject *rsp = json_object_new();
    json_object_set_member(rsp, "return", ret);
    if (id != NULL) {
        json_object_set_member(rsp, "id", json_node_copy(id));
    }
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, rsp);
    return n;
}
