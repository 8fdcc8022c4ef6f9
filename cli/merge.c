/*
 * merge.c — `vma merge -o OUT [--base ARCHIVE]... ARCHIVE|-`: one full archive of the
 * newest state of a chain.
 *
 * The chain is resolved as for extract (chain.c: by uuid, bases in any order, plain or
 * compressed). The output is an ordinary full archive, written through the library's
 * writer, that any VMA reader (the deployed Proxmox tool included) restores without the
 * chain: a new uuid; ARCHIVE's time; ARCHIVE's configs without the chain entry; ARCHIVE's
 * devices with their names and sizes, in its dev_id order; every cluster taken from the
 * newest archive that has it (the links are read newest first and older copies are
 * skipped); ARCHIVE's vmstate stream, if any. Zero clusters stay zero clusters.
 *
 * OUT is a new file (written under a temporary name and renamed when complete, as every
 * new archive of the writer), an existing FIFO, exec:COMMAND, or '-' for standard output
 * (not a terminal). Failure: one error line; the writer removes a partial new file.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

static void merge_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma merge -o OUT|- [--base ARCHIVE]... ARCHIVE|-\n"
            "\n"
            "Write one ordinary full VMA archive of the newest state of a chain: ARCHIVE\n"
            "(a delta archive, incremental or differential) and the archives it rests on,\n"
            "given with --base in any order, plain or compressed. OUT is a new file, a\n"
            "FIFO, exec:COMMAND or '-' (standard output).\n"
            "\n"
            "  -o, --output OUT  the archive to write (required)\n"
            "  --base ARCHIVE    a base archive of the chain (repeatable)\n"
            "  -h, --help        show this help\n");
}

/* The cluster as the writer takes it: a 64 KiB buffer with the zero blocks cleared, or
 * NULL for an all-zero cluster. */
static void *expand_cluster(const VmaCluster *c)
{
    if (c->mask == 0) {
        return NULL;
    }
    uint8_t *buf = vma_cluster_alloc();
    const uint8_t *p = c->data;
    for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
        uint8_t *dst = buf + (size_t)j * VMA_BLOCK_SIZE;
        if (c->mask & (1u << j)) {
            memcpy(dst, p, VMA_BLOCK_SIZE);
            p += VMA_BLOCK_SIZE;
        } else {
            memset(dst, 0, VMA_BLOCK_SIZE);
        }
    }
    return buf;
}

static bool merge_chain(CliChain *ch, VmaWriter *w, GError **errp)
{
    VmaReader *top = ch->links[0].r;
    guint count = vma_reader_get_config_count(top);
    int out_id[VMA_MAX_DEVICES + 1] = {0};

    for (guint i = 0; i < count; i++) {
        const char *name = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (!vma_reader_get_config(top, i, &name, &data, &len) ||
            strcmp(name, VMA_CHAIN_CONFIG_NAME) == 0) {
            continue;
        }
        if (!vma_writer_add_config(w, name, len ? (const void *)data : "", len, errp)) {
            return false;
        }
    }
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *di = vma_reader_get_device(top, id);
        if (di) {
            out_id[id] = vma_writer_register_device(w, di->name, di->size, errp);
            if (out_id[id] < 0) {
                return false;
            }
        }
    }

    for (guint k = 0; k < ch->n; k++) {
        VmaReader *r = ch->links[k].r;
        for (;;) {
            VmaCluster c;
            guint top_id = 0;
            int ret;

            if (cli_interrupted()) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_CANCELLED, "interrupted");
                return false;
            }
            ret = vma_reader_next_cluster(r, &c, errp);
            if (ret < 0) {
                return false;
            }
            if (ret == 0) {
                break;
            }
            ret = cli_chain_claim(ch, k, &c, &top_id, errp);
            if (ret < 0) {
                return false;
            }
            if (ret == 0) {
                continue; /* a newer archive had this cluster */
            }
            if (!vma_writer_write_cluster(w, (uint8_t)out_id[top_id], c.cluster_num,
                                          expand_cluster(&c), 0, errp)) {
                return false;
            }
        }
    }
    if (ch->n > 1) {
        return cli_chain_check_complete(ch, 0, errp);
    }
    return vma_reader_check_complete(top, 0, errp);
}

int cli_merge_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"base", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    g_autoptr(GPtrArray) bases = g_ptr_array_new();
    const char *output = NULL;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            output = optarg;
            break;
        case 'B':
            g_ptr_array_add(bases, optarg);
            break;
        case 'h':
            merge_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("merge", c, argv);
        }
    }
    if (argc - optind != 1) {
        return cli_usage_error("merge", argc - optind < 1 ? "missing ARCHIVE operand"
                                                           : "too many operands");
    }
    if (!output) {
        return cli_usage_error("merge", "missing -o OUT");
    }
    const char *archive = argv[optind];
    bool to_stdout = strcmp(output, "-") == 0;
    if (to_stdout && isatty(STDOUT_FILENO)) {
        return cli_failf("merge", "refusing to write the archive to a terminal");
    }

    g_autoptr(GError) err = NULL;
    g_ptr_array_add(bases, NULL);
    g_autoptr(CliChain) ch = cli_chain_open(archive, (char **)bases->pdata, false, &err);
    if (!ch) {
        return cli_fail("merge", err);
    }

    VmaWriterOptions opts;
    memset(&opts, 0, sizeof(opts));
    opts.ctime = vma_reader_get_ctime(ch->links[0].r);
    if (opts.ctime == 0) {
        opts.ctime = 1; /* 0 would mean "now" to the writer */
    }
    int stdout_flags = -1;
    VmaWriter *w;
    if (to_stdout) {
        /* the writer makes a pipe non-blocking; the open file description is shared */
        stdout_flags = fcntl(STDOUT_FILENO, F_GETFL);
        int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
            return cli_failf("merge", "standard output: %s", g_strerror(errno));
        }
        w = vma_writer_new_fd(fd, "standard output", &opts, &err);
    } else {
        w = vma_writer_new(output, &opts, &err);
    }
    if (!w) {
        return cli_fail("merge", err);
    }
    cli_install_interrupt_handlers();
    bool ok = merge_chain(ch, w, &err);
    if (ok) {
        ok = vma_writer_close(w, &err);
    } else {
        vma_writer_cancel(w, "merge failed");
    }
    vma_writer_free(w); /* removes a partial new file */
    if (stdout_flags >= 0) {
        fcntl(STDOUT_FILENO, F_SETFL, stdout_flags);
    }
    if (!ok) {
        return cli_fail("merge", err);
    }
    return CLI_EXIT_OK;
}
