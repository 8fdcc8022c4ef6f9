/*
 * verify.c — `vma verify [-v] [--json] ARCHIVE|-`: read the whole archive and check it.
 *
 * Everything the reader checks (header and extent-header checksums, uuids, extent sizes,
 * device ids, duplicate clusters, vmstate order) plus what the deployed tool forgets:
 * every cluster of every disk must have appeared by the end of the stream. Payload bytes
 * carry no checksum in the format, so a flipped data byte cannot be detected.
 *
 * -v prints the listing, the progress lines and the summary exactly like the deployed
 * tool (see progress.c); --json prints one object with the listing, the totals and "ok".
 */
#include <getopt.h>

#include "cli/cli.h"
#include "util/json-escape.h"

static void verify_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma verify [-v] [--json] ARCHIVE|-\n"
            "\n"
            "Read a whole VMA archive and check it: checksums, structure, duplicate and\n"
            "missing clusters. Data blocks carry no checksum in the format.\n"
            "\n"
            "  -v, --verbose  print the listing, progress lines and a summary\n"
            "  --json         print one JSON object with the listing, totals and \"ok\"\n"
            "  -h, --help     show this help\n");
}

static void print_json(VmaReader *r, const CliReadStats *st, const GError *err)
{
    g_autoptr(GString) s = g_string_new("{");

    if (r) {
        cli_json_listing_members(r, s);
        g_string_append_printf(s,
                               ", \"clusters\": %" G_GUINT64_FORMAT
                               ", \"total_bytes_read\": %" G_GUINT64_FORMAT
                               ", \"sparse_bytes\": %" G_GUINT64_FORMAT
                               ", \"partial_zero_bytes\": %" G_GUINT64_FORMAT ", ",
                               st->clusters_read, cli_read_stats_bytes_read(st),
                               st->zero_bytes, st->partial_zero_bytes);
    }
    g_string_append_printf(s, "\"ok\": %s", err ? "false" : "true");
    if (err) {
        g_string_append(s, ", \"error\": ");
        json_escape_append(s, err->message, JSON_ESCAPE_UTF8);
    }
    g_string_append(s, "}\n");
    fputs(s->str, stdout);
}

int cli_verify_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"verbose", no_argument, NULL, 'v'},
        {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool verbose = false, json = false;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hv", longopts, NULL)) != -1) {
        switch (c) {
        case 'v':
            verbose = true;
            break;
        case 'J':
            json = true;
            break;
        case 'h':
            verify_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("verify", c, argv);
        }
    }
    if (argc - optind != 1) {
        return cli_usage_error("verify", argc - optind < 1 ? "missing ARCHIVE operand"
                                                            : "too many operands");
    }

    const char *path = argv[optind];
    bool text = verbose && !json;
    CliReadStats st;
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    if (!r) {
        if (json) {
            print_json(NULL, NULL, err);
        }
        return cli_fail("verify", err);
    }
    if (text) {
        cli_print_listing(r, stdout);
    }

    CliTtyProgress *tty = cli_tty_progress_new("verify", !text);
    cli_read_stats_init(&st, r);
    for (;;) {
        VmaCluster cl;
        int ret = vma_reader_next_cluster(r, &cl, &err);
        if (ret < 0) {
            break;
        }
        if (ret == 0) {
            vma_reader_check_complete(r, 0, &err);
            break;
        }
        cli_read_stats_add(&st, r, &cl, text ? stdout : NULL);
        if (st.out_errno) {
            g_set_error(&err, CLI_ERROR, CLI_ERROR_IO, "write to stdout: %s",
                        g_strerror(st.out_errno));
            break;
        }
        if ((st.clusters_read & 63) == 0) {
            cli_tty_progress_update_reader(tty, r, &st);
        }
    }
    cli_tty_progress_end(tty);

    if (json) {
        print_json(r, &st, err);
    } else if (!err && text) {
        cli_read_stats_print_summary(&st, stdout);
    }
    if (err) {
        return cli_fail("verify", err);
    }
    if (!cli_stdout_flush(&err)) {
        return cli_fail("verify", err);
    }
    return CLI_EXIT_OK;
}
