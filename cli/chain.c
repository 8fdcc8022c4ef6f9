/*
 * chain.c — resolving a chain of delta archives for `extract`, `verify` and `merge`.
 *
 * A delta archive (incremental or differential) names its base by uuid in its chain
 * entry (vmabackup-chain.conf, docs/vma-format.md). The user gives the newest archive as
 * the operand and the others with --base, in any order, plain or compressed. Resolution:
 *   1. open every archive and read its header only (uuid, configs, devices, chain entry);
 *      the readers stay open, positioned at their first extent, so that ARCHIVE may be
 *      standard input (a base must be a file: one stdin cannot feed two readers);
 *   2. from ARCHIVE follow base uuids through the --base archives until an archive
 *      without a chain entry (a full archive) is reached: that is the chain, newest
 *      first. A base uuid that no --base archive has is "archive X needs its base U";
 *      a uuid given twice, a loop and a --base archive left over (not in the chain) are
 *      errors too;
 *   3. every link must have the devices of ARCHIVE: the same names and sizes (a resized
 *      or added disk needs a new full backup). dev_ids may differ; each link maps its
 *      dev_ids to ARCHIVE's. A vmstate stream is the VM state of ARCHIVE's instant, so
 *      only ARCHIVE's is restored and those of older links are ignored.
 * Reading: callers stream the links newest first. cli_chain_claim() keeps, per device of
 * ARCHIVE, a bitmap of the clusters already taken from a newer link (util/bitmap.h, sparse
 * with one budget, since sizes come from untrusted headers): the first copy of a cluster
 * wins and older copies are skipped, so every cluster is written once. At the end,
 * cli_chain_check_complete() names clusters that no archive of the chain holds.
 */
#include <string.h>

#include "cli/cli.h"
#include "util/bitmap.h"

/* As in the reader: 2^20 chunks of 4096 clusters cover 256 TiB, about 600 MiB at most. */
#define CLAIM_MAX_CHUNKS (1u << 20)

static void link_clear(CliChainLink *l)
{
    g_free(l->path);
    vma_reader_free(l->r);
    vma_chain_info_clear(&l->info);
    memset(l, 0, sizeof(*l));
}

void cli_chain_free(CliChain *ch)
{
    if (!ch) {
        return;
    }
    for (guint i = 0; i < ch->n; i++) {
        link_clear(&ch->links[i]);
    }
    for (guint id = 0; id <= VMA_MAX_DEVICES; id++) {
        sparse_bitmap_free(ch->claimed[id]);
    }
    g_free(ch->links);
    g_free(ch);
}

static bool link_open(CliChainLink *l, const char *path, GError **errp)
{
    memset(l, 0, sizeof(*l));
    l->path = g_strdup(path);
    l->r = vma_reader_open(path, errp);
    if (!l->r) {
        return false;
    }
    vma_reader_get_uuid(l->r, l->uuid);
    vma_uuid_unparse(l->uuid, l->uuid_str);
    if (!vma_chain_info_from_reader(l->r, &l->info, errp)) {
        g_prefix_error(errp, "%s: ", path);
        return false;
    }
    return true;
}

/* Map the devices of link l onto those of top (names and sizes must agree). */
static bool link_map_devices(CliChainLink *l, const CliChainLink *top, GError **errp)
{
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *di = vma_reader_get_device(l->r, id);
        bool found = false;
        if (!di || di->is_vmstate) {
            continue;
        }
        for (guint t = 1; t <= VMA_MAX_DEVICES && !found; t++) {
            const VmaDeviceInfo *ti = vma_reader_get_device(top->r, t);
            if (!ti || ti->is_vmstate || strcmp(ti->name, di->name) != 0) {
                continue;
            }
            if (ti->size != di->size) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT,
                            "base %s: device %s has %" G_GUINT64_FORMAT
                            " bytes, in %s it has %" G_GUINT64_FORMAT
                            " (a resized disk needs a new full backup)",
                            l->path, di->name, di->size, top->path, ti->size);
                return false;
            }
            l->top_id[id] = t;
            found = true;
        }
        if (!found) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT,
                        "base %s: device %s is not in %s (the devices of a chain must not "
                        "change)",
                        l->path, di->name, top->path);
            return false;
        }
    }
    for (guint t = 1; t <= VMA_MAX_DEVICES; t++) {
        const VmaDeviceInfo *ti = vma_reader_get_device(top->r, t);
        bool found = false;
        if (!ti || ti->is_vmstate) {
            continue;
        }
        for (guint id = 1; id <= VMA_MAX_DEVICES && !found; id++) {
            found = l->top_id[id] == t;
        }
        if (!found) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT,
                        "base %s has no device %s (the devices of a chain must not change)",
                        l->path, ti->name);
            return false;
        }
    }
    return true;
}

CliChain *cli_chain_open(const char *archive, char **bases, bool allow_open, GError **errp)
{
    guint nbases = bases ? g_strv_length(bases) : 0;
    g_autofree CliChainLink *cand = g_new0(CliChainLink, nbases + 1);
    g_autofree bool *used = g_new0(bool, nbases + 1);
    CliChain *ch = g_new0(CliChain, 1);
    bool ok = false;

    ch->links = g_new0(CliChainLink, nbases + 1);
    ch->budget.max = CLAIM_MAX_CHUNKS;

    /* 1. every header: ARCHIVE in cand[0], the bases after it */
    for (guint i = 0; i <= nbases; i++) {
        const char *path = i == 0 ? archive : bases[i - 1];
        if (i > 0 && strcmp(path, "-") == 0) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                        "--base -: a base must be a file (only ARCHIVE may be standard "
                        "input)");
            goto out;
        }
        if (!link_open(&cand[i], path, errp)) {
            goto out;
        }
        for (guint j = 0; j < i; j++) {
            if (memcmp(cand[j].uuid, cand[i].uuid, 16) == 0) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                            "--base %s: the same archive (uuid %s) as %s", path,
                            cand[i].uuid_str, cand[j].path);
                goto out;
            }
        }
    }

    /* 2. follow the base uuids from ARCHIVE (moving each link from cand to ch) */
    guint cur = 0;
    used[0] = true;
    for (;;) {
        ch->links[ch->n++] = cand[cur];
        memset(&cand[cur], 0, sizeof(cand[cur]));
        const CliChainLink *l = &ch->links[ch->n - 1];
        if (l->info.kind == VMA_CHAIN_FULL) {
            break;
        }
        char want[37];
        vma_uuid_unparse(l->info.base_uuid, want);
        for (guint k = 0; k < ch->n; k++) {
            if (memcmp(ch->links[k].uuid, l->info.base_uuid, 16) == 0) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT,
                            "archive %s names %s as its base: the chain is a loop", l->path,
                            want);
                goto out;
            }
        }
        guint next = 0;
        for (guint i = 1; i <= nbases && next == 0; i++) {
            if (!used[i] && memcmp(cand[i].uuid, l->info.base_uuid, 16) == 0) {
                next = i;
            }
        }
        if (next == 0) {
            if (nbases == 0 && allow_open) {
                break; /* an open chain: the caller checks the archive alone */
            }
            g_set_error(errp, CLI_ERROR, CLI_ERROR_MISSING,
                        "archive %s needs its base %s: give it with --base", l->path, want);
            goto out;
        }
        used[next] = true;
        cur = next;
    }

    /* every --base must be part of the chain */
    for (guint i = 1; i <= nbases; i++) {
        if (!used[i]) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                        "--base %s (uuid %s) is not part of the chain of %s", cand[i].path,
                        cand[i].uuid_str, archive);
            goto out;
        }
    }

    /* 3. the devices of every link are those of ARCHIVE */
    CliChainLink *top = &ch->links[0];
    for (guint t = 1; t <= VMA_MAX_DEVICES; t++) {
        const VmaDeviceInfo *ti = vma_reader_get_device(top->r, t);
        if (ti) {
            top->top_id[t] = t;
            if (ch->n > 1 && !ti->is_vmstate) {
                uint64_t clusters = (ti->size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
                ch->claimed[t] = sparse_bitmap_new(clusters, &ch->budget);
            }
        }
    }
    for (guint k = 1; k < ch->n; k++) {
        if (!link_map_devices(&ch->links[k], top, errp)) {
            goto out;
        }
    }
    ch->complete = ch->links[ch->n - 1].info.kind == VMA_CHAIN_FULL;
    ok = true;

out:
    for (guint i = 0; i <= nbases; i++) {
        link_clear(&cand[i]);
    }
    if (!ok) {
        cli_chain_free(ch);
        return NULL;
    }
    return ch;
}

int cli_chain_claim(CliChain *ch, guint link, const VmaCluster *c, guint *top_id,
                    GError **errp)
{
    const CliChainLink *l = &ch->links[link];
    guint t = c->dev_id <= VMA_MAX_DEVICES ? l->top_id[c->dev_id] : 0;

    *top_id = t;
    if (t == 0) {
        return 0; /* a vmstate stream of an older link */
    }
    if (!ch->claimed[t]) {
        return 1; /* ARCHIVE's vmstate stream, or a chain of one archive */
    }
    int ret = sparse_bitmap_test_and_set(ch->claimed[t], c->cluster_num);
    if (ret < 0) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT,
                    "%s: too many distinct clusters in the chain (cluster %" G_GUINT32_FORMAT
                    " of %s)",
                    l->path, c->cluster_num, vma_reader_get_device(ch->links[0].r, t)->name);
        return -1;
    }
    return ret;
}

bool cli_chain_check_complete(CliChain *ch, guint top_id, GError **errp)
{
    g_autoptr(GString) msg = NULL;
    VmaReader *r = ch->links[0].r;

    for (guint t = top_id ? top_id : 1; t <= (top_id ? top_id : VMA_MAX_DEVICES); t++) {
        const VmaDeviceInfo *di = vma_reader_get_device(r, t);
        SparseBitmap *bm = ch->claimed[t];
        if (!di || di->is_vmstate || !bm || sparse_bitmap_count(bm) == sparse_bitmap_size(bm)) {
            continue;
        }
        if (!msg) {
            msg = g_string_new(NULL);
            g_string_append_printf(msg, "chain of %s: ", ch->links[0].path);
        } else {
            g_string_append(msg, "; ");
        }
        g_string_append_printf(msg,
                               "detected missing cluster %" G_GUINT64_FORMAT
                               " for stream %s (in no archive of the chain)",
                               sparse_bitmap_find_next_clear(bm, 0), di->name);
    }
    if (msg) {
        g_set_error_literal(errp, CLI_ERROR, CLI_ERROR_MISSING, msg->str);
        return false;
    }
    return true;
}
