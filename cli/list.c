/*
 * list.c — `vma list [--json] ARCHIVE|-`: show what an archive holds, from its header only.
 *
 * The text form is the deployed tool's, line for line (Proxmox's restore code parses it):
 *   CFG: size: <bytes> name: <name>                 one per config, header order
 *   VMSTATE: dev_id=<id> memory: <bytes>            or
 *   DEV: dev_id=<id> size: <bytes> devname: <name>  per device, dev_id 1..254
 *   CHAIN: kind: <kind> base: <uuid> [bitmap: <name>]
 *                                                   only for a delta archive (one with
 *                                                   the chain entry vmabackup-chain.conf)
 *   CTIME: <ctime(3) of the backup time, local time>
 * Full archives list exactly as the deployed tool lists them. The CHAIN line comes before
 * CTIME because Proxmox's restore code takes CTIME as the end of the listing. A chain entry
 * that does not parse makes `list` fail (such an archive cannot be restored).
 * The listing functions are shared with `verify -v` and `extract -r`. --json prints the
 * same facts as one JSON object.
 */
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "util/json-escape.h"

void cli_print_listing(VmaReader *r, FILE *out)
{
    guint count = vma_reader_get_config_count(r);

    for (guint i = 0; i < count; i++) {
        const char *name = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (vma_reader_get_config(r, i, &name, &data, &len)) {
            fprintf(out, "CFG: size: %zu name: %s\n", len, name);
        }
    }
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *di = vma_reader_get_device(r, id);
        if (!di) {
            continue;
        }
        if (di->is_vmstate) {
            fprintf(out, "VMSTATE: dev_id=%u memory: %" G_GUINT64_FORMAT "\n", id, di->size);
        } else {
            fprintf(out, "DEV: dev_id=%u size: %" G_GUINT64_FORMAT " devname: %s\n", id,
                    di->size, di->name);
        }
    }

    VmaChainInfo chain;
    if (vma_chain_info_from_reader(r, &chain, NULL) && chain.kind != VMA_CHAIN_FULL) {
        char base[37];
        vma_uuid_unparse(chain.base_uuid, base);
        fprintf(out, "CHAIN: kind: %s base: %s", vma_chain_kind_name(chain.kind), base);
        if (chain.bitmap) {
            fprintf(out, " bitmap: %s", chain.bitmap);
        }
        fputc('\n', out);
    }
    vma_chain_info_clear(&chain);

    time_t t = (time_t)vma_reader_get_ctime(r);
    char buf[64];
    if (ctime_r(&t, buf)) {
        buf[strcspn(buf, "\n")] = '\0';
        fprintf(out, "CTIME: %s\n", buf);
    } else {
        /* Out of ctime's range (a year past 9999): show the raw seconds. */
        fprintf(out, "CTIME: %" G_GINT64_FORMAT "\n", vma_reader_get_ctime(r));
    }
    fflush(out);
}

void cli_json_listing_members(VmaReader *r, GString *out)
{
    uint8_t uuid[16];
    char uuid_str[37];
    guint count = vma_reader_get_config_count(r);
    bool first = true;

    vma_reader_get_uuid(r, uuid);
    vma_uuid_unparse(uuid, uuid_str);
    g_string_append(out, "\"uuid\": ");
    json_escape_append(out, uuid_str, JSON_ESCAPE_UTF8);
    g_string_append_printf(out, ", \"ctime\": %" G_GINT64_FORMAT, vma_reader_get_ctime(r));
    g_string_append_printf(out, ", \"compression\": \"%s\"",
                           vma_compression_name(vma_reader_get_compression(r)));

    g_string_append(out, ", \"configs\": [");
    for (guint i = 0; i < count; i++) {
        const char *name = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (!vma_reader_get_config(r, i, &name, &data, &len)) {
            continue;
        }
        g_string_append(out, first ? "{\"name\": " : ", {\"name\": ");
        json_escape_append(out, name, JSON_ESCAPE_UTF8);
        g_string_append_printf(out, ", \"size\": %zu}", len);
        first = false;
    }
    g_string_append(out, "], \"devices\": [");
    first = true;
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *di = vma_reader_get_device(r, id);
        if (!di) {
            continue;
        }
        g_string_append_printf(out, "%s{\"dev_id\": %u, \"name\": ", first ? "" : ", ", id);
        json_escape_append(out, di->name, JSON_ESCAPE_UTF8);
        g_string_append_printf(out, ", \"size\": %" G_GUINT64_FORMAT ", \"vmstate\": %s}",
                               di->size, di->is_vmstate ? "true" : "false");
        first = false;
    }
    g_string_append(out, "]");

    VmaChainInfo chain;
    if (vma_chain_info_from_reader(r, &chain, NULL) && chain.kind != VMA_CHAIN_FULL) {
        char base[37];
        vma_uuid_unparse(chain.base_uuid, base);
        g_string_append_printf(out,
                               ", \"chain\": {\"kind\": \"%s\", \"base\": \"%s\", "
                               "\"bitmap\": ",
                               vma_chain_kind_name(chain.kind), base);
        if (chain.bitmap) {
            json_escape_append(out, chain.bitmap, JSON_ESCAPE_UTF8);
        } else {
            g_string_append(out, "null");
        }
        g_string_append(out, "}");
    }
    vma_chain_info_clear(&chain);
}

static void list_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma list [--json] ARCHIVE|-\n"
            "\n"
            "Show the configs and devices of a VMA archive (plain or compressed; '-' reads\n"
            "stdin). Only the header is read. A delta archive (incremental or\n"
            "differential) shows its base archive's uuid in a CHAIN line.\n"
            "\n"
            "  --json      print one JSON object instead of the CFG/DEV/CTIME lines\n"
            "  -h, --help  show this help\n");
}

int cli_list_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'J':
            json = true;
            break;
        case 'h':
            list_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("list", c, argv);
        }
    }
    if (argc - optind != 1) {
        return cli_usage_error("list", argc - optind < 1 ? "missing ARCHIVE operand"
                                                          : "too many operands");
    }

    const char *path = argv[optind];
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    if (!r) {
        return cli_fail("list", err);
    }
    VmaChainInfo chain;
    if (!vma_chain_info_from_reader(r, &chain, &err)) {
        g_prefix_error(&err, "%s: ", path);
        return cli_fail("list", err);
    }
    vma_chain_info_clear(&chain);
    if (json) {
        g_autoptr(GString) s = g_string_new("{");
        cli_json_listing_members(r, s);
        g_string_append(s, "}\n");
        fputs(s->str, stdout);
    } else {
        cli_print_listing(r, stdout);
    }
    if (!cli_stdout_flush(&err)) {
        return cli_fail("list", err);
    }
    return CLI_EXIT_OK;
}
