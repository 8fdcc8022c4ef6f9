/*
 * node-name.c — QEMU's node-name rule (see node-name.h).
 *
 * The character test is ASCII-only on purpose (g_ascii_*, not the locale's isalpha):
 * QEMU refuses every non-ASCII byte, and a locale must not change what is a valid name.
 * A name that fails is quoted in the message as QEMU quotes it, except for control
 * characters, which are C-escaped so that they cannot forge a line of a log or of the
 * command-line error.
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

/* The name as QEMU shows it, except that control characters are C-escaped (and bytes
 * that are not UTF-8, which a QMP reply could not carry). */
static char *shown_name(const char *name)
{
    char keep[2 + 128 + 1];
    size_t n = 0;

    keep[n++] = '"';
    keep[n++] = '\\';
    if (g_utf8_validate(name, -1, NULL)) {
        for (int c = 0x80; c <= 0xff; c++) {
            keep[n++] = (char)c;
        }
    }
    keep[n] = '\0';
    return g_strescape(name, keep);
}

bool node_name_check(const char *name, GError **errp)
{
    if (!node_name_wellformed(name)) {
        g_autofree char *shown = shown_name(name != NULL ? name : "");
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
