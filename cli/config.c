/*
 * config.c — `vma config [-c NAME] ARCHIVE|-`: write one config's raw bytes to stdout.
 *
 * Proxmox calls this as `<decompressor> F | vma config -` and only needs the header, so
 * we exit as soon as the config is written; the rest of the stream is never read (the
 * decompressor then sees a broken pipe, which its caller ignores).
 */
#include <getopt.h>
#include <string.h>

#include "cli/cli.h"

static void config_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma config [-c NAME] ARCHIVE|-\n"
            "\n"
            "Write the raw bytes of one config stored in a VMA archive to stdout.\n"
            "\n"
            "  -c, --config NAME  the config to print (default: qemu-server.conf)\n"
            "  -h, --help         show this help\n");
}

int cli_config_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *want = "qemu-server.conf";
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hc:", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            want = optarg;
            break;
        case 'h':
            config_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("config", c, argv);
        }
    }
    if (argc - optind != 1) {
        return cli_usage_error("config", argc - optind < 1 ? "missing ARCHIVE operand"
                                                            : "too many operands");
    }

    const char *path = argv[optind];
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    if (!r) {
        return cli_fail("config", err);
    }

    guint count = vma_reader_get_config_count(r);
    for (guint i = 0; i < count; i++) {
        const char *name = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (!vma_reader_get_config(r, i, &name, &data, &len) || strcmp(name, want) != 0) {
            continue;
        }
        /* A short write leaves stdout's error flag set: the flush below reports it. */
        fwrite(data, 1, len, stdout);
        if (!cli_stdout_flush(&err)) {
            return cli_fail("config", err);
        }
        return CLI_EXIT_OK;
    }
    return cli_failf("config", "%s: no config named '%s' in the archive", path, want);
}
