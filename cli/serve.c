/*
 * serve.c — `vma serve [--base ARCHIVE]... [--socket PATH] ARCHIVE`: every disk of an
 * uncompressed archive (or of the newest archive of a chain) as a read-only NBD export,
 * until SIGINT, SIGTERM or SIGHUP.
 *
 * This is vmad in one command, with vmad's own code linked in (libvmad): for each
 * device of the archive it runs the QMP commands vmad's command line would run —
 * blockdev-add with driver vma, nbd-server-start on a UNIX socket, block-export-add
 * (read-only, export name = device name) — through qmp_execute(), so the checks, the
 * archive index and the NBD server are exactly the daemon's. VM state streams are not
 * disks and are not exported.
 *
 * Output: one NBD URI per export on stdout (nbd+unix:///NAME?socket=PATH), printed once
 * every export is being served, so a script may connect as soon as it has read them. The
 * default socket lives in a new private directory (mode 0700) under $TMPDIR; it and the
 * socket are removed on exit. Exit status: 0 after a signal, 1 on failure (one line
 * "vma: serve: ..." on stderr), 2 on a usage error.
 *
 * Main thread only (the NBD server runs its own threads).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "block/node-name.h"
#include "cli/cli.h"
#include "monitor.h"
#include "monitor/qmp-commands.h"

static void serve_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma serve [--base ARCHIVE]... [--socket PATH] ARCHIVE\n"
            "\n"
            "Serve every disk of an uncompressed archive read-only over NBD (export name =\n"
            "device name) until interrupted, printing one NBD URI per disk. With --base,\n"
            "ARCHIVE is the newest delta archive of a chain and the given older archives\n"
            "complete it (any order; linked by uuid). Compressed archives must be\n"
            "decompressed first (e.g. zstd -d ARCHIVE.zst).\n"
            "\n"
            "  -b, --base ARCHIVE   an older archive of ARCHIVE's chain (repeatable)\n"
            "  -s, --socket PATH    the NBD server's UNIX socket (default: in a new\n"
            "                       private temporary directory)\n"
            "  -h, --help           show this help\n");
}

static gboolean on_signal(gpointer loop)
{
    g_main_loop_quit(loop);
    return G_SOURCE_CONTINUE;
}

static bool run(const char *command, JsonObject *args, GError **errp)
{
    g_autoptr(JsonNode) ret = qmp_execute(NULL, command, args, errp);
    json_object_unref(args);
    return ret != NULL;
}

/* Register and export every disk of archive; the URIs go to uris. */
static bool serve_all(const char *archive, char **base, const char *sock, GPtrArray *uris,
                      GError **errp)
{
    /* the device list, from the header; a pipe must not block us here (O_NONBLOCK) and
     * is refused as the driver refuses it */
    int fd = strcmp(archive, "-") == 0 ? -1 : open(archive, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 && strcmp(archive, "-") != 0) {
        int err = errno;
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "open %s: %s", archive, g_strerror(err));
        return false;
    }
    if (fd < 0 || fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        if (fd >= 0) {
            close(fd);
        }
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                    "%s: not a regular file or block device: random access needs a "
                    "seekable, uncompressed archive (save the stream to a file first)",
                    archive);
        return false;
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    g_autoptr(VmaReader) r = vma_reader_open_fd(fd, archive, errp);
    if (r == NULL) {
        return false;
    }
    JsonObject *addr = json_object_new();
    json_object_set_string_member(addr, "type", "unix");
    json_object_set_string_member(addr, "path", sock);
    JsonObject *start = json_object_new();
    json_object_set_object_member(start, "addr", addr);
    if (!run("nbd-server-start", start, errp)) {
        return false;
    }
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *d = vma_reader_get_device(r, id);
        if (d == NULL || d->is_vmstate) {
            continue;
        }
        /* node names follow QEMU's rules; device names usually do (drive-scsi0) */
        g_autofree char *node = node_name_check(d->name, NULL) ? g_strdup(d->name)
                                                               : g_strdup_printf("dev%u", id);
        JsonObject *add = json_object_new();
        json_object_set_string_member(add, "driver", "vma");
        json_object_set_string_member(add, "node-name", node);
        json_object_set_string_member(add, "filename", archive);
        json_object_set_string_member(add, "device", d->name);
        if (base != NULL && base[0] != NULL) {
            JsonArray *arr = json_array_new();
            for (char **b = base; *b != NULL; b++) {
                json_array_add_string_element(arr, *b);
            }
            json_object_set_array_member(add, "base", arr);
        }
        if (!run("blockdev-add", add, errp)) {
            return false;
        }
        g_autofree char *eid = g_strdup_printf("export%u", id);
        JsonObject *exp = json_object_new();
        json_object_set_string_member(exp, "type", "nbd");
        json_object_set_string_member(exp, "id", eid);
        json_object_set_string_member(exp, "node-name", node);
        json_object_set_string_member(exp, "name", d->name);
        json_object_set_boolean_member(exp, "writable", FALSE);
        if (!run("block-export-add", exp, errp)) {
            return false;
        }
        g_autofree char *name = g_uri_escape_string(d->name, NULL, FALSE);
        g_autofree char *path = g_uri_escape_string(sock, "/", FALSE);
        g_ptr_array_add(uris, g_strdup_printf("nbd+unix:///%s?socket=%s", name, path));
    }
    if (uris->len == 0) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT, "%s: the archive holds no disk",
                    archive);
        return false;
    }
    return true;
}

int cli_serve_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"base", required_argument, NULL, 'b'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    g_autoptr(GPtrArray) base = g_ptr_array_new();
    const char *sock = NULL;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":b:s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            g_ptr_array_add(base, optarg);
            break;
        case 's':
            sock = optarg;
            break;
        case 'h':
            serve_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("serve", c, argv);
        }
    }
    if (argc - optind != 1) {
        return cli_usage_error("serve", argc - optind < 1 ? "missing ARCHIVE operand"
                                                          : "too many operands");
    }
    g_ptr_array_add(base, NULL);
    const char *archive = argv[optind];

    g_autoptr(GError) err = NULL;
    g_autofree char *tmpdir = NULL;
    g_autofree char *tmpsock = NULL;
    if (sock == NULL) {
        tmpdir = g_dir_make_tmp("vma-serve-XXXXXX", &err);
        if (tmpdir == NULL) {
            return cli_fail("serve", err);
        }
        tmpsock = g_build_filename(tmpdir, "nbd.sock", NULL);
        sock = tmpsock;
    }

    GMainLoop *loop = g_main_loop_new(NULL, FALSE);
    guint sig[3] = {
        g_unix_signal_add(SIGINT, on_signal, loop),
        g_unix_signal_add(SIGTERM, on_signal, loop),
        g_unix_signal_add(SIGHUP, on_signal, loop),
    };
    g_autoptr(GPtrArray) uris = g_ptr_array_new_with_free_func(g_free);
    bool ok = serve_all(archive, (char **)base->pdata, sock, uris, &err);
    if (ok) {
        for (guint i = 0; i < uris->len; i++) {
            printf("%s\n", (const char *)g_ptr_array_index(uris, i));
        }
        ok = cli_stdout_flush(&err);
    }
    if (ok) {
        fprintf(stderr, "vma serve: serving %u disk%s of %s read-only; stop with Ctrl-C\n",
                uris->len, uris->len == 1 ? "" : "s", archive);
        g_main_loop_run(loop);
    }
    qmp_block_shutdown();        /* stops the server (removes the socket), closes disks */
    for (guint i = 0; i < G_N_ELEMENTS(sig); i++) {
        g_source_remove(sig[i]);
    }
    g_main_loop_unref(loop);
    if (tmpdir != NULL) {
        g_unlink(tmpsock);       /* normally gone already */
        g_rmdir(tmpdir);
    }
    return ok ? CLI_EXIT_OK : cli_fail("serve", err);
}
