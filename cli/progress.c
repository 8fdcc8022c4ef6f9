/*
 * progress.c — two kinds of progress output.
 *
 * 1. The deployed tool's verbose lines for `verify -v` and `extract -v`, on stdout, which
 *    Proxmox's task logs show:
 *      progress N% (read B bytes, duration S sec)   when the integer percentage changes
 *      total bytes read B, sparse bytes Z (P%)      at the end, then
 *      space reduction due to 4K zero blocks Q%     (only if any data was read)
 *    B counts whole 64 KiB cluster records; Z counts the bytes of zero 4 KiB blocks up to
 *    each device's size (rounded down to 512-byte sectors, as the deployed reader does;
 *    no bound for a vmstate stream); P = Z / B; Q = (zero-block bytes in clusters that
 *    also hold data) / (B - Z). The percentage is records seen over the records the
 *    device sizes call for, capped at 100 — the deployed tool divides by the rounded-down
 *    cluster count instead, which overshoots 100% and divides by zero for a disk smaller
 *    than one cluster.
 *
 * 2. A terminal display on stderr: one line redrawn in place (carriage return), only
 *    when stderr is a terminal, starting after the first second, at most 4 redraws a
 *    second, erased at the end so that it never mixes with real output.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

void cli_read_stats_init(CliReadStats *s, VmaReader *r)
{
    memset(s, 0, sizeof(*s));
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *di = vma_reader_get_device(r, id);
        if (di) {
            s->clusters_total += (di->size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
        }
    }
    /* Like the deployed tool, the first line printed is the one for 1%. */
    s->last_percent = 0;
    s->start = time(NULL);
}

void cli_read_stats_add(CliReadStats *s, VmaReader *r, const VmaCluster *c, FILE *out)
{
    const VmaDeviceInfo *di = vma_reader_get_device(r, c->dev_id);
    uint64_t limit = UINT64_MAX;

    if (di && !di->is_vmstate) {
        limit = di->size & ~(uint64_t)511;
    }
    if (c->mask != 0xffff) {
        uint64_t base = (uint64_t)c->cluster_num * VMA_CLUSTER_SIZE;
        for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
            uint64_t start = base + (uint64_t)j * VMA_BLOCK_SIZE;
            if ((c->mask & (1u << j)) || start >= limit) {
                continue;
            }
            uint64_t n = MIN((uint64_t)VMA_BLOCK_SIZE, limit - start);
            s->zero_bytes += n;
            if (c->mask != 0) {
                s->partial_zero_bytes += n;
            }
        }
    }
    s->clusters_read++;

    if (out && s->clusters_total > 0) {
        uint64_t pct = s->clusters_read * 100 / s->clusters_total;
        int percent = (int)MIN(pct, (uint64_t)100);
        if (percent != s->last_percent) {
            fprintf(out, "progress %d%% (read %" G_GUINT64_FORMAT " bytes, duration %ld sec)\n",
                    percent, cli_read_stats_bytes_read(s), (long)(time(NULL) - s->start));
            if (fflush(out) != 0 || ferror(out)) {
                s->out_errno = errno ? errno : EIO;
            }
            s->last_percent = percent;
        }
    }
}

uint64_t cli_read_stats_bytes_read(const CliReadStats *s)
{
    return s->clusters_read * VMA_CLUSTER_SIZE;
}

void cli_read_stats_print_summary(const CliReadStats *s, FILE *out)
{
    uint64_t total = cli_read_stats_bytes_read(s);

    if (total == 0) {
        fprintf(out, "vma archive contains no image data\n");
        return;
    }
    fprintf(out, "total bytes read %" G_GUINT64_FORMAT ", sparse bytes %" G_GUINT64_FORMAT
            " (%.3g%%)\n", total, s->zero_bytes, 100.0 * (double)s->zero_bytes / (double)total);
    uint64_t data = total - s->zero_bytes;
    if (data > 0) {
        fprintf(out, "space reduction due to 4K zero blocks %.3g%%\n",
                100.0 * (double)s->partial_zero_bytes / (double)data);
    }
    fflush(out);
}

struct CliTtyProgress {
    bool enabled;
    bool drawn;
    char *what;
    gint64 start_us;
    gint64 last_draw_us;
};

CliTtyProgress *cli_tty_progress_new(const char *what, bool wanted)
{
    CliTtyProgress *p = g_new0(CliTtyProgress, 1);

    p->enabled = wanted && isatty(STDERR_FILENO);
    p->what = g_strdup(what);
    p->start_us = g_get_monotonic_time();
    return p;
}

void cli_tty_progress_update(CliTtyProgress *p, uint64_t done, uint64_t total)
{
    gint64 now;

    if (!p || !p->enabled) {
        return;
    }
    now = g_get_monotonic_time();
    if (now - p->start_us < G_USEC_PER_SEC || now - p->last_draw_us < G_USEC_PER_SEC / 4) {
        return;
    }
    p->last_draw_us = now;

    double secs = (double)(now - p->start_us) / G_USEC_PER_SEC;
    g_autofree char *done_s = g_format_size_full(done, G_FORMAT_SIZE_IEC_UNITS);
    g_autofree char *rate_s =
        g_format_size_full((guint64)((double)done / secs), G_FORMAT_SIZE_IEC_UNITS);
    if (total > 0) {
        g_autofree char *total_s = g_format_size_full(total, G_FORMAT_SIZE_IEC_UNITS);
        unsigned pct = (unsigned)MIN((double)done * 100.0 / (double)total, 100.0);
        fprintf(stderr, "\r%s: %3u%%  %s of %s  %s/s\033[K", p->what, pct, done_s, total_s,
                rate_s);
    } else {
        fprintf(stderr, "\r%s: %s  %s/s\033[K", p->what, done_s, rate_s);
    }
    fflush(stderr);
    p->drawn = true;
}

void cli_tty_progress_update_reader(CliTtyProgress *p, VmaReader *r, const CliReadStats *s)
{
    VmaReaderStats st;

    if (!p || !p->enabled) {
        return;
    }
    vma_reader_get_stats(r, &st);
    if (st.input_size > 0) {
        /* a file: its position is exact, compressed or not */
        cli_tty_progress_update(p, st.input_bytes, st.input_size);
    } else if (s->clusters_total > 0) {
        /* a pipe: count cluster records against what the device sizes call for */
        cli_tty_progress_update(p, MIN(s->clusters_read, s->clusters_total) * VMA_CLUSTER_SIZE,
                                s->clusters_total * VMA_CLUSTER_SIZE);
    } else {
        cli_tty_progress_update(p, st.archive_bytes, 0);
    }
}

void cli_tty_progress_end(CliTtyProgress *p)
{
    if (!p) {
        return;
    }
    if (p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    g_free(p->what);
    g_free(p);
}
