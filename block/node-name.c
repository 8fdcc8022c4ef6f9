/*
 * node-name.c — QEMU's node-name rule (see node-name.h).
 *
 * The character test is ASCII-only on purpose (g_ascii_*, not the locale's isalpha):
 * QEMU refuses every non-ASCII byte, and a locale must not change what is a valid name.
 * A name that fails is quoted in the message with C escapes, so a control character in it
 * cannot forge a line of a log or of the command-line error.
 */
#include <string.h>

#include <gio/gio.h>

#include "block/node-name.h"

bool node_name_wellformed(const char *name)
{
    if (name == NULL || !g_ascii_isalpha(name[0])) {
        return false;
    }
    for (const char *p = name + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_') {
            return false;
        }
    }
    return true;
}

bool node_name_check(const char *name, GError **errp)
{
    if (!node_name_wellformed(name)) {
        g_autofree char *shown = g_strescape(name != NULL ? name : "", NULL);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid node-name: '%s'", shown);
        return false;
    }
    if (strlen(name) > NODE_NAME_MAX) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Node name too long");
        return false;
    }
    return true;
}
