/*
 * verify.c — `vma verify [-v] [--json] [--base ARCHIVE]... ARCHIVE|-`: read the whole
 * archive (or chain) and check it.
 *
 * Everything the reader checks (header and extent-header checksums, uuids, extent sizes,
 * device ids, duplicate clusters, vmstate order) plus what the deployed tool forgets:
 * every cluster of every disk must have appeared by the end of the stream. Payload bytes
 * carry no checksum in the format, so a flipped data byte cannot be detected.
 *
 * Delta archives (incremental / differential, chain.c): with --base, every archive of
 * the chain is read and checked as above, newest first, except that a delta archive may
 * lack clusters; then the chain must be complete: every cluster of every disk present in
 * some archive of it (and the full archive at its end complete by itself, as always).
 * Without --base a delta archive is checked alone: everything but the missing clusters,
 * and a note on stderr says that completeness needs the bases.
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
            "Usage: vma verify [-v] [--json] [--base ARCHIVE]... ARCHIVE|-\n"
            "\n"
            "Read a whole VMA archive and check it: checksums, structure, duplicate and\n"
            "missing clusters. Data blocks carry no checksum in the format. A delta\n"
            "archive is checked with the archives it rests on (--base, any order): the\n"
            "chain must be linked and complete.\n"
            "\n"
            "  -v, --verbose  print the listing, progress lines and a summary\n"
            "  --json         print one JSON object with the listing, totals and \"ok\"\n"
            "  --base ARCHIVE a base archive of the chain (repeatable)\n"
            "  -h, --help     show this help\n");
}

static void print_json(VmaReader *r, const CliReadStats *st, const CliChain *ch,
                       const GError *err)
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
    if (ch && (ch->n > 1 || ch->links[0].info.kind != VMA_CHAIN_FULL)) {
        g_string_append(s, "\"chain_archives\": [");
        for (guint k = 0; k < ch->n; k++) {
            g_string_append_printf(s, "%s\"%s\"", k ? ", " : "", ch->links[k].uuid_str);
        }
        g_string_append_printf(s, "], \"chain_complete\": %s, ",
                               ch->complete && !err ? "true" : "false");
    }
    g_string_append_printf(s, "\"ok\": %s", err ? "false" : "true");
    if (err) {
        g_string_append(s, ", \"error\": ");
        json_escape_append(s, err->message, JSON_ESCAPE_UTF8);
    }
    g_string_append(s, "}\n");
    fputs(s->str, stdout);
}

/* Read and check every cluster of links[k]; a full archive must be complete by itself. */
static bool verify_link(CliChain *ch, guint k, bool text, CliReadStats *st, GError **errp)
{
    VmaReader *r = ch->links[k].r;
    CliTtyProgress *tty = cli_tty_progress_new("verify", !text);
    bool ok = true;

    cli_read_stats_init(st, r);
    for (;;) {
        VmaCluster cl;
        guint top_id = 0;
        int ret = vma_reader_next_cluster(r, &cl, errp);
        if (ret < 0) {
            ok = false;
            break;
        }
        if (ret == 0) {
            ok = ch->links[k].info.kind != VMA_CHAIN_FULL || vma_reader_check_complete(r, 0, errp);
            break;
        }
        cli_read_stats_add(st, r, &cl, text ? stdout : NULL);
        if (st->out_errno) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "write to stdout: %s",
                        g_strerror(st->out_errno));
            ok = false;
            break;
        }
        if (ch->n > 1 && cli_chain_claim(ch, k, &cl, &top_id, errp) < 0) {
            ok = false;
            break;
        }
        if ((st->clusters_read & 63) == 0) {
            cli_tty_progress_update_reader(tty, r, st);
        }
    }
    cli_tty_progress_end(tty);
    return ok;
}

int cli_verify_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"verbose", no_argument, NULL, 'v'},
        {"json", no_argument, NULL, 'J'},
        {"base", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool verbose = false, json = false;
    g_autoptr(GPtrArray) bases = g_ptr_array_new();
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
        case 'B':
            g_ptr_array_add(bases, optarg);
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
    CliReadStats st, total;
    g_autoptr(GError) err = NULL;
    g_ptr_array_add(bases, NULL);
    g_autoptr(CliChain) ch = cli_chain_open(path, (char **)bases->pdata, true, &err);
    if (!ch) {
        if (json) {
            print_json(NULL, NULL, NULL, err);
        }
        return cli_fail("verify", err);
    }
    VmaReader *r = ch->links[0].r;
    if (text) {
        cli_print_listing(r, stdout);
    }

    memset(&total, 0, sizeof(total));
    for (guint k = 0; k < ch->n && !err; k++) {
        if (!verify_link(ch, k, text, &st, &err)) {
            break;
        }
        if (k == 0) {
            total = st;
            continue;
        }
        total.clusters_read += st.clusters_read;
        total.zero_bytes += st.zero_bytes;
        total.partial_zero_bytes += st.partial_zero_bytes;
    }
    if (!err && ch->n > 1) {
        cli_chain_check_complete(ch, 0, &err);
    }

    if (json) {
        print_json(r, &total, ch, err);
    } else if (!err && text) {
        cli_read_stats_print_summary(&total, stdout);
    }
    if (err) {
        return cli_fail("verify", err);
    }
    if (!cli_stdout_flush(&err)) {
        return cli_fail("verify", err);
    }
    if (!ch->complete) {
        char base[37];
        vma_uuid_unparse(ch->links[0].info.base_uuid, base);
        fflush(stdout);
        fprintf(stderr,
                "vma: verify: %s is a delta archive (%s): checked alone; whether its chain "
                "is complete needs its base %s (give it with --base)\n",
                path, vma_chain_kind_name(ch->links[0].info.kind), base);
    }
    return CLI_EXIT_OK;
}
