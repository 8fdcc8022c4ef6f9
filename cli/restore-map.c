/*
 * restore-map.c — the restore map of `vma extract -r FIFO`.
 *
 * Proxmox restores into volumes it allocates itself: it reads our listing, creates the
 * volumes, then writes one line per device into a FIFO and closes it. Grammar (one line
 * each, read until EOF, an empty line or a line "done"):
 *
 *   skip=<devname>
 *   [<option>=<value>:]...<0|1>:<devname>=<path>
 *
 * options, each at most once, in any order: format (a qemu-img format name: lower-case
 * letters, digits, '_' and '-'; raw targets are written here, every other format and
 * every rbd: target through qemu-nbd, which decides whether it can open it),
 * throttling.bps (bytes per second written, decimal, or hex/octal with 0x/0 prefix),
 * throttling.group (devices of one group share the limit), cache (none, writeback,
 * writethrough, directsync, unsafe: accepted; every target is flushed at the end). The
 * 0|1 field is the write-zeros flag: 1 = write zero blocks explicitly (the target may
 * hold old data), 0 = the target already reads as zeros. The device name runs to the
 * first '=', the path is the rest of the line.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define MAP_MAX_LINE 65536

bool cli_map_format_ok(const char *f)
{
    if (f[0] == '\0' || strlen(f) > 32) {
        return false;
    }
    for (; *f; f++) {
        if (!g_ascii_islower(*f) && !g_ascii_isdigit(*f) && *f != '_' && *f != '-') {
            return false;
        }
    }
    return true;
}

void cli_map_entry_free(CliMapEntry *e)
{
    if (!e) {
        return;
    }
    g_free(e->devname);
    g_free(e->path);
    g_free(e->format);
    g_free(e->throttling_group);
    g_free(e->cache);
    g_free(e);
}

/* If *p starts with "<name>=", take the value up to the next ':' into *out. */
static bool take_option(const char **p, const char *name, char **out, bool *found,
                        GError **errp)
{
    size_t n = strlen(name);
    const char *value, *colon;

    *found = false;
    if (strncmp(*p, name, n) != 0 || (*p)[n] != '=') {
        return true;
    }
    *found = true;
    if (*out) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "option '%s' given twice", name);
        return false;
    }
    value = *p + n + 1;
    colon = strchr(value, ':');
    if (!colon) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "option '%s' not terminated by ':'",
                    name);
        return false;
    }
    *out = g_strndup(value, (gsize)(colon - value));
    *p = colon + 1;
    return true;
}

static bool parse_line(const char *line, CliMapEntry *e, GError **errp)
{
    const char *p = line;
    g_autofree char *bps = NULL;

    if (strncmp(p, "skip", 4) == 0) {
        if (p[4] != '=' || p[5] == '\0') {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "'skip' needs '=<devname>'");
            return false;
        }
        e->devname = g_strdup(p + 5);
        e->skip = true;
        return true;
    }

    for (;;) {
        bool found = false;
        if (!take_option(&p, "format", &e->format, &found, errp)) {
            return false;
        }
        if (!found && !take_option(&p, "throttling.bps", &bps, &found, errp)) {
            return false;
        }
        if (!found && !take_option(&p, "throttling.group", &e->throttling_group, &found,
                                   errp)) {
            return false;
        }
        if (!found && !take_option(&p, "cache", &e->cache, &found, errp)) {
            return false;
        }
        if (!found) {
            break;
        }
    }

    if ((p[0] == '0' || p[0] == '1') && p[1] == ':') {
        e->write_zeros = p[0] == '1';
        p += 2;
    } else {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                    "expected options, then '0:' or '1:', then <devname>=<path>");
        return false;
    }

    const char *eq = strchr(p, '=');
    if (!eq || eq == p) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "no device name given");
        return false;
    }
    if (eq[1] == '\0') {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "no target path given");
        return false;
    }
    e->devname = g_strndup(p, (gsize)(eq - p));
    e->path = g_strdup(eq + 1);

    if (bps) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(bps, &end, 0);
        if (bps[0] == '\0' || bps[0] == '-' || errno != 0 || !end || *end != '\0') {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                        "throttling.bps: not a number: '%s'", bps);
            return false;
        }
        e->throttling_bps = v;
    }
    if (e->format && !cli_map_format_ok(e->format)) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "bad format name '%s' for %s",
                    e->format, e->devname);
        return false;
    }
    if (e->cache) {
        static const char *const modes[] = {"none", "writeback", "writethrough",
                                            "directsync", "unsafe"};
        bool ok = false;
        for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
            ok = ok || strcmp(e->cache, modes[i]) == 0;
        }
        if (!ok) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "invalid cache option '%s'",
                        e->cache);
            return false;
        }
    }
    return true;
}

CliMapEntry *cli_map_parse_line(const char *line, GError **errp)
{
    g_autoptr(CliMapEntry) e = g_new0(CliMapEntry, 1);

    if (!parse_line(line, e, errp)) {
        return NULL;
    }
    return g_steal_pointer(&e);
}

/* One line of f, '\n' included, into buf (size bytes, NUL-terminated): its length, -1
 * at the end of the input, -2 if it does not fit (the rest of it is left unread). Unlike
 * getline() it never allocates: the map comes from another process. */
static ssize_t read_line_bounded(FILE *f, char *buf, size_t size)
{
    size_t n = 0;
    int ch = EOF;

    while ((ch = getc(f)) != EOF) {
        if (n + 1 >= size) {
            return -2;
        }
        buf[n++] = (char)ch;
        if (ch == '\n') {
            break;
        }
    }
    buf[n] = '\0';
    return n == 0 && ch == EOF ? -1 : (ssize_t)n;
}

GHashTable *cli_map_read(const char *path, GError **errp)
{
    g_autoptr(GHashTable) map =
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                              (GDestroyNotify)cli_map_entry_free);
    g_autofree char *line = g_malloc(MAP_MAX_LINE + 1);
    unsigned lineno = 0;
    FILE *f;

    /* Opening a FIFO blocks until the other side opens it for writing. */
    do {
        f = fopen(path, "r");
    } while (!f && errno == EINTR && !cli_interrupted());
    if (!f) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "open restore map %s: %s", path,
                    g_strerror(errno));
        return NULL;
    }
    for (;;) {
        errno = 0;
        ssize_t n = read_line_bounded(f, line, MAP_MAX_LINE + 1);
        if (n == -1) {
            if (ferror(f)) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "read restore map %s: %s", path,
                            g_strerror(errno ? errno : EIO));
                fclose(f);
                return NULL;
            }
            break;
        }
        lineno++;
        if (n == -2) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                        "restore map %s: line %u: longer than %d bytes", path, lineno,
                        MAP_MAX_LINE);
            fclose(f);
            return NULL;
        }
        if (n > 0 && line[n - 1] == '\n') {
            line[--n] = '\0';
        }
        /* a map written on Windows or sent with CRLF: the \r is not part of the path */
        if (n > 0 && line[n - 1] == '\r') {
            line[--n] = '\0';
        }
        if (n == 0 || strcmp(line, "done") == 0) {
            break;
        }
        if (strlen(line) != (size_t)n) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                        "restore map %s: line %u: contains a NUL byte", path, lineno);
            fclose(f);
            return NULL;
        }

        g_autoptr(GError) err = NULL;
        CliMapEntry *e = cli_map_parse_line(line, &err);
        if (!e) {
            g_autofree char *shown = g_strescape(line, NULL);
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "restore map %s: line %u ('%s'): %s",
                        path, lineno, shown, err->message);
            fclose(f);
            return NULL;
        }
        if (g_hash_table_contains(map, e->devname)) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                        "restore map %s: line %u: device %s mapped twice", path, lineno,
                        e->devname);
            cli_map_entry_free(e);
            fclose(f);
            return NULL;
        }
        g_hash_table_insert(map, e->devname, e);
    }
    fclose(f);
    return g_steal_pointer(&map);
}
