/*
 * fuzz-restore-map.c — libFuzzer harness for the restore map of `vma extract -r`
 * (cli/restore-map.c): the line grammar and the reader of the whole map.
 *
 * The input is the map as Proxmox would write it into the FIFO: it is read back through
 * cli_map_read() from a memfd (every line parsed, duplicates, NUL bytes, the "done" and
 * empty-line ends), and the text up to its first newline or NUL also goes through
 * cli_map_parse_line() directly. Accepted entries are checked against the grammar's
 * promises: a device name, a path unless skip=, a well-formed format name if given.
 *
 * The CLI is not a library: the Makefile links this harness with the objects of
 * cli/restore-map.c and cli/common.c only.
 *
 *   make fuzz-build && build-fuzz/fuzz/fuzz-restore-map tests/fuzz/corpus/restore-map
 *
 * Built with -DFUZZ_STANDALONE it is a plain program that runs the files named on its
 * command line once each.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/cli.h"
#include "tests/fuzz/fuzz-common.h"

static void check_entry(const CliMapEntry *e)
{
    assert(e->devname != NULL && e->devname[0] != '\0');
    assert(e->skip == (e->path == NULL));
    assert(e->skip || (e->path[0] != '\0' && strchr(e->devname, '=') == NULL));
    assert(e->format == NULL || cli_map_format_ok(e->format));
    for (const char *f = e->format; f && *f; f++) {
        assert(g_ascii_islower(*f) || g_ascii_isdigit(*f) || *f == '_' || *f == '-');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;

    /* one line */
    size_t len = 0;
    while (len < size && data[len] != '\n' && data[len] != '\0') {
        len++;
    }
    g_autofree char *line = g_strndup((const char *)data, len);
    g_autoptr(CliMapEntry) e = cli_map_parse_line(line, &err);
    assert((e == NULL) == (err != NULL));
    assert(err == NULL || err->domain == CLI_ERROR);   /* the CLI's own domain */
    if (e != NULL) {
        check_entry(e);
    }
    g_clear_error(&err);

    /* the whole map, read as from the FIFO */
    int fd = memfd_create("fuzz-map", MFD_CLOEXEC);
    if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size)) {
        g_error("memfd: %s", g_strerror(errno));
    }
    g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);
    g_autoptr(GHashTable) map = cli_map_read(path, &err);
    close(fd);
    assert((map == NULL) == (err != NULL));
    assert(err == NULL || err->domain == CLI_ERROR);
    if (map != NULL) {
        GHashTableIter it;
        gpointer key, value;
        g_hash_table_iter_init(&it, map);
        while (g_hash_table_iter_next(&it, &key, &value)) {
            const CliMapEntry *me = value;
            check_entry(me);
            assert(strcmp(key, me->devname) == 0);
        }
    }
    return 0;
}
