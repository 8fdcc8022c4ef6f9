/*
 * extract.c — `vma extract [-v] [-d LIST] [-r FIFO] [--base ARCHIVE]... ARCHIVE|- DIR`:
 * restore an archive, or the newest state of a chain of delta archives.
 *
 * Sequence (the deployed tool's, which Proxmox's restore code depends on):
 *   1. read the header; check every name that will become a file name (before anything
 *      is created: an archive is untrusted, see cli_check_name());
 *   2. create DIR (it must not exist; mode 0700) and write each config to DIR/<name>;
 *   3. with -r: print the listing (ending with CTIME), then read the restore map from
 *      the FIFO (restore-map.c) and open each mapped target; without -r: create each
 *      selected device as DIR/tmp-disk-<name>.raw (sparse, truncated to the device size)
 *      and print "DEVINFO DIR/tmp-disk-<name>.raw <size>" — before any data is read;
 *      a vmstate stream always goes to DIR/vmstate.bin;
 *   4. stream every cluster to its target; at the end check that every cluster of every
 *      restored disk arrived, flush, and rename tmp-disk-* to disk-*.
 * -v adds the deployed progress lines and summary on stdout (progress.c).
 *
 * Writes: per device, contiguous stored data is gathered into one buffer and written
 * with one pwrite (up to 4 MiB); zero blocks are skipped (new files are sparse, holes
 * read as zeros) unless the map's write-zeros flag asks for them, in which case zero
 * runs are written as zeros (fallocate ZERO_RANGE / BLKZEROOUT where the target allows,
 * pwrite of zeros otherwise). Blocks past a disk's size are never written. A vmstate
 * stream is written in place, zero blocks as holes; its declared size is no bound, so
 * vmstate.bin is as long as the declared size or the clusters received, whichever is
 * shorter, extended to the last non-zero byte of any data stored past the declared size.
 *
 * Chains (chain.c): ARCHIVE may be a delta archive (incremental or differential); its
 * bases come with --base, in any order. The chain is resolved from the headers before
 * DIR is created; then the links are read newest first, and of each cluster only the
 * first copy met is written (a per-device bitmap of clusters taken): every cluster is
 * written once, and a zero cluster of a newer archive hides an older archive's data (it
 * is written as zeros or left as a hole exactly as for one archive). The configs are
 * those of ARCHIVE without the chain entry; the listing of -r is ARCHIVE's. At the end
 * every cluster of every restored disk must have come from some link. -v prints the
 * progress lines and the summary for each archive read.
 *
 * Failure: one error line; every file this run created inside DIR is removed (DIR itself
 * is left, as the deployed tool leaves it), so nothing remains under a final name.
 * Targets of a restore map existed before and are left as they are.
 *
 * Restore map targets in other formats (format=qcow2, vmdk, ...: whatever qemu-nbd can
 * write) and rbd:POOL/IMAGE[:conf=F][:id=U]... names (Proxmox's form for Ceph volumes)
 * are written through a private qemu-nbd each (cli/nbd-image.c; rbd: names through
 * QEMU's rbd driver, from qemu-block-extra, with format raw). Every target is opened
 * before the first byte is written, so a format qemu-nbd cannot open (a typo, a raw file
 * named qcow2, a read-only format) fails the restore with qemu-nbd's reason and no
 * target touched. The map's cache= becomes qemu-nbd's --cache. The write-zeros flag
 * works as for raw targets: 0 leaves zero clusters alone (a new qcow2 reads as zeros),
 * 1 sends them as NBD write-zeroes (qcow2: zero clusters, not written zeros); throttling
 * paces the same writes. At the end qemu-nbd's writes are flushed and it exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/fs.h>

#include "cli/cli.h"
#include "cli/nbd-image.h"
#include "util/fd.h"
#include "util/io.h"
#include "util/ratelimit.h"

#define MAX_TARGET_SLACK (UINT64_C(4) << 20) /* a target may be this much larger */
/* Gather buffer per device, and so the largest write. Larger writes were measured slower
 * (bench/README.md): 4 MiB writes into a warm page cache took 3x as long as cp's 128 KiB. */
#define RUN_BUF_SIZE (512u << 10)
#define ZERO_RUN_MAX (UINT64_C(64) << 20)    /* flush zero runs in pieces this big */

typedef struct OutDev {
    guint dev_id;
    const VmaDeviceInfo *di;
    bool restore;          /* restore this device (selected, not skipped) */
    int fd;                /* -1 for a target through qemu-nbd */
    CliNbdImage *nbd;      /* a map target in another format than raw, or rbd: */
    char *path;            /* the file written: a target or DIR/tmp-disk-<name>.raw */
    char *final_path;      /* rename path → final_path on success (files only) */
    bool is_blockdev;
    bool write_zeros;
    RateLimit *limiter;    /* the device's throttling group; NULL = unthrottled */

    /* the pending run: contiguous bytes [run_off, run_off + run_len) */
    uint8_t *buf;
    size_t buf_cap;
    uint64_t run_off;
    uint64_t run_len;
    bool run_zero;         /* zero run (no buffer) or data run */
    bool zero_fast_failed; /* fallocate/BLKZEROOUT refused once: use pwrite */

    /* vmstate stream */
    uint64_t vm_clusters;
    uint64_t vm_data_end;
} OutDev;

typedef struct Extract {
    const char *archive;
    const char *dir;
    bool verbose;
    char **drives;         /* -d list, NULL = all */
    const char *map_path;  /* -r FIFO */
    bool created_dir;
    GPtrArray *created;    /* files this run created (removed on failure) */
    GHashTable *map;       /* devname -> CliMapEntry */
    GHashTable *limiters;  /* group name -> RateLimit, shared by the group's devices */
    OutDev devs[VMA_MAX_DEVICES + 1];
    guint active;          /* devices being restored */
    char **bases;          /* --base archives (NULL-terminated), NULL = none */
    CliChain *chain;       /* the archives read, newest first */
    GArray *inputs;        /* struct stat of each archive that is a regular file or a
                            * block device (never a restore target) */
} Extract;

static uint8_t zero_buf[1u << 20];

static void extract_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma extract [-v] [-d DEV[,DEV...]] [-r FIFO] [--base ARCHIVE]... "
            "ARCHIVE|- DIR\n"
            "\n"
            "Restore a VMA archive. DIR must not exist; it is created and receives the\n"
            "configs, each disk as a sparse raw file disk-<name>.raw and a VM state as\n"
            "vmstate.bin. With -r, disks are written into existing files or block devices\n"
            "named by a restore map read from FIFO (see vma(1)). A delta archive\n"
            "(incremental or differential) is restored with the archives it rests on,\n"
            "given with --base in any order: the newest state of the chain.\n"
            "\n"
            "  -v, --verbose     print progress lines and a summary\n"
            "  -d, --drives LIST restore only these devices (comma-separated names)\n"
            "  -r, --restore-map FIFO  read the device-to-target map from FIFO\n"
            "  --base ARCHIVE    a base archive of the chain (repeatable)\n"
            "  -h, --help        show this help\n");
}

/* ---- rate limiting ---------------------------------------------------------------- */

/* Before writing bytes: sleep until they fit the group's rate (paced so that N bytes
 * take N / bps, as the deployed tool's throttling does). */
static void limiter_account(RateLimit *l, uint64_t bytes)
{
    if (!l) {
        return;
    }
    gint64 now = g_get_monotonic_time();
    ratelimit_reserve(l, bytes, now);
    gint64 due = ratelimit_next(l);
    while (due > now && !cli_interrupted()) {
        g_usleep((gulong)MIN(due - now, (gint64)G_USEC_PER_SEC));
        now = g_get_monotonic_time();
    }
}

/* ---- writing runs ----------------------------------------------------------------- */

static int write_zeros(OutDev *d, uint64_t off, uint64_t len)
{
    if (d->nbd) {
        return cli_nbd_image_zero(d->nbd, len, off);   /* NBD write-zeroes */
    }
    if (len >= VMA_CLUSTER_SIZE && !d->zero_fast_failed) {
        int ret;
        if (d->is_blockdev) {
            uint64_t range[2] = {off, len};
            ret = (off % 512 == 0 && len % 512 == 0) ? ioctl(d->fd, BLKZEROOUT, range) : -1;
        } else {
            ret = fallocate(d->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                            (off_t)len);
        }
        if (ret == 0) {
            return 0;
        }
        d->zero_fast_failed = true;
    }
    while (len > 0) {
        size_t n = (size_t)MIN(len, (uint64_t)sizeof(zero_buf));
        int ret = full_pwrite(d->fd, zero_buf, n, off);
        if (ret < 0) {
            return ret;
        }
        off += n;
        len -= n;
    }
    return 0;
}

static bool dev_flush(OutDev *d, GError **errp)
{
    int ret;

    if (d->run_len == 0) {
        return true;
    }
    limiter_account(d->limiter, d->run_len);
    if (d->run_zero) {
        ret = write_zeros(d, d->run_off, d->run_len);
    } else if (d->nbd) {
        ret = cli_nbd_image_pwrite(d->nbd, d->buf, (size_t)d->run_len, d->run_off);
    } else {
        ret = full_pwrite(d->fd, d->buf, (size_t)d->run_len, d->run_off);
    }
    if (ret < 0 && d->nbd) {
        g_autofree char *msg = cli_nbd_image_last_error(d->nbd);
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO,
                    "write %s (%s) at offset %" G_GUINT64_FORMAT ": %s", d->path, d->di->name,
                    d->run_off, msg);
        return false;
    }
    if (ret < 0) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO,
                    "write %s (%s) at offset %" G_GUINT64_FORMAT ": %s", d->path, d->di->name,
                    d->run_off, g_strerror(-ret));
        return false;
    }
    d->run_len = 0;
    return true;
}

/* Queue len bytes at off: data, or zeros when data is NULL. Zero pieces shorter than a
 * cluster that must be written become part of the surrounding data run (one large write
 * instead of many small ones); whole zero clusters form zero runs. */
static bool dev_put(OutDev *d, uint64_t off, const uint8_t *data, size_t len, GError **errp)
{
    bool zero = data == NULL && len >= VMA_CLUSTER_SIZE;

    if (len == 0 || (data == NULL && !d->write_zeros)) {
        return true;
    }
    if (d->run_len > 0 &&
        (d->run_zero != zero || d->run_off + d->run_len != off ||
         (zero ? d->run_len + len > ZERO_RUN_MAX : d->run_len + len > d->buf_cap))) {
        if (!dev_flush(d, errp)) {
            return false;
        }
    }
    if (d->run_len == 0) {
        d->run_off = off;
        d->run_zero = zero;
    }
    if (!zero) {
        if (!d->buf) {
            d->buf = g_malloc(d->buf_cap);
        }
        if (data) {
            memcpy(d->buf + d->run_len, data, len);
        } else {
            memset(d->buf + d->run_len, 0, len);
        }
    }
    d->run_len += len;
    return true;
}

static bool dev_write_cluster(OutDev *d, const VmaCluster *c, GError **errp)
{
    const VmaDeviceInfo *di = d->di;
    uint64_t base = (uint64_t)c->cluster_num * VMA_CLUSTER_SIZE;
    uint64_t limit = di->is_vmstate ? UINT64_MAX : di->size;
    const uint8_t *p = c->data;
    unsigned j = 0;

    if (base >= limit) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT,
                    "cluster %" G_GUINT32_FORMAT " of %s lies past its size %" G_GUINT64_FORMAT,
                    c->cluster_num, di->name, di->size);
        return false;
    }
    /* Runs of stored (or of zero) blocks within the cluster, clipped at the size. */
    while (j < VMA_BLOCKS_PER_CLUSTER) {
        uint64_t start = base + (uint64_t)j * VMA_BLOCK_SIZE;
        bool stored = c->mask & (1u << j);
        unsigned k = j;

        if (start >= limit) {
            if (c->mask >> j) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT,
                            "cluster %" G_GUINT32_FORMAT " of %s stores a block past its size",
                            c->cluster_num, di->name);
                return false;
            }
            break;
        }
        while (k < VMA_BLOCKS_PER_CLUSTER && (bool)(c->mask & (1u << k)) == stored &&
               base + (uint64_t)k * VMA_BLOCK_SIZE < limit) {
            k++;
        }
        uint64_t end = MIN(base + (uint64_t)k * VMA_BLOCK_SIZE, limit);
        if (!dev_put(d, start, stored ? p : NULL, (size_t)(end - start), errp)) {
            return false;
        }
        if (stored && di->is_vmstate && end > di->size) {
            /* State data past the declared size: the file must reach its last byte. */
            size_t n = (size_t)(end - start);
            while (n > 0 && p[n - 1] == 0) {
                n--;
            }
            d->vm_data_end = MAX(d->vm_data_end, start + n);
        }
        if (stored) {
            p += (size_t)(k - j) * VMA_BLOCK_SIZE;
        }
        j = k;
    }
    if (di->is_vmstate) {
        d->vm_clusters = MAX(d->vm_clusters, (uint64_t)c->cluster_num + 1);
    }
    return true;
}

/* ---- setup -------------------------------------------------------------------------- */

static char *dir_file(const Extract *x, const char *name)
{
    return g_strdup_printf("%s/%s", x->dir, name);
}

/* Create a new file inside DIR and remember it for cleanup. */
static int create_file(Extract *x, const char *path, mode_t mode, GError **errp)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

    if (fd < 0) {
        g_set_error(errp, CLI_ERROR, errno == EEXIST ? CLI_ERROR_EXISTS : CLI_ERROR_IO,
                    "create %s: %s", path, g_strerror(errno));
        return -1;
    }
    g_ptr_array_add(x->created, g_strdup(path));
    return fd;
}

static bool write_configs(Extract *x, VmaReader *r, GError **errp)
{
    guint count = vma_reader_get_config_count(r);

    for (guint i = 0; i < count; i++) {
        const char *name = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (!vma_reader_get_config(r, i, &name, &data, &len) ||
            (x->chain->n > 1 && strcmp(name, VMA_CHAIN_CONFIG_NAME) == 0)) {
            continue; /* a restored chain is a full state: its chain entry is no config */
        }
        g_autofree char *path = dir_file(x, name);
        int fd = create_file(x, path, 0666, errp);
        if (fd < 0) {
            return false;
        }
        int ret = full_pwrite(fd, data, len, 0);
        if (ret == 0) {
            ret = close_fd_checked(&fd);
        } else {
            close_fd(&fd);
        }
        if (ret < 0) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "write %s: %s", path, g_strerror(-ret));
            return false;
        }
    }
    return true;
}

static bool drive_selected(const Extract *x, const char *name)
{
    if (!x->drives) {
        return true;
    }
    for (char **p = x->drives; *p; p++) {
        if (strcmp(*p, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Everything about names and selections that can be refused before DIR is created. */
static bool check_archive(Extract *x, VmaReader *r, GError **errp)
{
    guint count = vma_reader_get_config_count(r);

    for (guint i = 0; i < count; i++) {
        const char *name = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (vma_reader_get_config(r, i, &name, &data, &len) &&
            !cli_check_name("config", name, errp)) {
            return false;
        }
    }
    for (char **p = x->drives; p && *p; p++) {
        bool found = false;
        for (guint id = 1; id <= VMA_MAX_DEVICES && !found; id++) {
            const VmaDeviceInfo *di = vma_reader_get_device(r, id);
            found = di && strcmp(di->name, *p) == 0;
        }
        if (!found) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                        "-d: the archive has no device named '%s'", *p);
            return false;
        }
    }
    if (!x->map_path) {
        for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
            const VmaDeviceInfo *di = vma_reader_get_device(r, id);
            if (di && !di->is_vmstate && drive_selected(x, di->name) &&
                !cli_check_name("device", di->name, errp)) {
                return false;
            }
        }
    }

    /* Two archive entries must not claim one file name in DIR (a config called
     * "disk-drive-scsi0.raw", two devices of one name, two configs of one name). */
    g_autoptr(GHashTable) names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr(GPtrArray) wanted = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < count; i++) {
        const char *name = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (vma_reader_get_config(r, i, &name, &data, &len) &&
            !(x->chain->n > 1 && strcmp(name, VMA_CHAIN_CONFIG_NAME) == 0)) {
            g_ptr_array_add(wanted, g_strdup(name));
        }
    }
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *di = vma_reader_get_device(r, id);
        if (di && di->is_vmstate) {
            g_ptr_array_add(wanted, g_strdup("vmstate.bin"));
        } else if (di && !x->map_path && drive_selected(x, di->name)) {
            g_ptr_array_add(wanted, g_strdup_printf("tmp-disk-%s.raw", di->name));
            g_ptr_array_add(wanted, g_strdup_printf("disk-%s.raw", di->name));
        }
    }
    for (guint i = 0; i < wanted->len; i++) {
        const char *name = g_ptr_array_index(wanted, i);
        if (!g_hash_table_add(names, g_strdup(name))) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT,
                        "two entries of the archive would both be written to %s/%s", x->dir,
                        name);
            return false;
        }
    }
    return true;
}

/* A target Proxmox names in QEMU's rbd: syntax (rbd:POOL/IMAGE[:conf=F][:id=U]...). */
static bool is_rbd_name(const char *path)
{
    return g_str_has_prefix(path, "rbd:");
}

static bool open_map_target(Extract *x, OutDev *d, const CliMapEntry *e, GError **errp)
{
    uint64_t size = 0;
    g_autoptr(GError) err = NULL;
    const char *format = e->format ? e->format : "raw";

    d->path = g_strdup(e->path);
    if (strcmp(format, "raw") != 0 || is_rbd_name(e->path)) {
        /* qemu-nbd opens it (any format, librbd for rbd:), writable */
        d->nbd = cli_nbd_image_open(e->path, format, true, e->cache, &err);
        if (!d->nbd) {
            g_set_error(errp, CLI_ERROR, err->code, "open target for %s: %s", d->di->name,
                        err->message);
            return false;
        }
        size = cli_nbd_image_size(d->nbd);
    } else {
        d->fd = open(e->path, O_WRONLY | O_CLOEXEC);
        if (d->fd < 0) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "open target %s for %s: %s", e->path,
                        d->di->name, g_strerror(errno));
            return false;
        }
        if (!cli_fd_get_size(d->fd, e->path, &size, &d->is_blockdev, &err)) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "target for %s: %s", d->di->name,
                        err->message);
            return false;
        }
    }
    if (size < d->di->size || size - d->di->size > MAX_TARGET_SLACK) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                    "target %s for %s: unexpected size %" G_GUINT64_FORMAT
                    " (the device has %" G_GUINT64_FORMAT
                    " bytes; the target may be at most 4 MiB larger)",
                    e->path, d->di->name, size, d->di->size);
        return false;
    }
    d->write_zeros = e->write_zeros;
    if (e->throttling_bps || e->throttling_group) {
        const char *group = e->throttling_group ? e->throttling_group : e->devname;
        RateLimit *l = g_hash_table_lookup(x->limiters, group);
        if (!l) {
            l = g_new0(RateLimit, 1);
            ratelimit_init(l, 0);
            g_hash_table_insert(x->limiters, g_strdup(group), l);
        }
        if (e->throttling_bps) {
            ratelimit_set_speed(l, e->throttling_bps);
        }
        d->limiter = l;
    }
    return true;
}

/* One file or block device: the same inode, or the same device number. */
static bool same_target(const struct stat *a, const struct stat *b)
{
    if (S_ISBLK(a->st_mode)) {
        return S_ISBLK(b->st_mode) && a->st_rdev == b->st_rdev;
    }
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* What a target is on disk: its descriptor, or for a target through qemu-nbd its file
 * (an rbd: name has none: those are compared by name). */
static bool target_stat(const OutDev *d, struct stat *st)
{
    if (d->nbd) {
        return !is_rbd_name(d->path) && stat(d->path, st) == 0;
    }
    return fstat(d->fd, st) == 0;
}

/* Two devices mapped onto the same file or block device would overwrite each other, and
 * a target that is the archive itself would destroy what is being read. */
static bool check_distinct_targets(Extract *x, GError **errp)
{
    for (guint a = 1; a <= VMA_MAX_DEVICES; a++) {
        struct stat sa, sb;
        if (x->devs[a].restore && x->devs[a].nbd && is_rbd_name(x->devs[a].path)) {
            for (guint b = a + 1; b <= VMA_MAX_DEVICES; b++) {
                if (x->devs[b].restore && x->devs[b].nbd &&
                    strcmp(x->devs[a].path, x->devs[b].path) == 0) {
                    g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                                "restore map: %s and %s have the same target %s",
                                x->devs[a].di->name, x->devs[b].di->name, x->devs[b].path);
                    return false;
                }
            }
        }
        if (!x->devs[a].restore || !target_stat(&x->devs[a], &sa)) {
            continue;
        }
        for (guint i = 0; i < x->inputs->len; i++) {
            if (same_target(&sa, &g_array_index(x->inputs, struct stat, i))) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                            "restore map: the target %s of %s is %s archive being read",
                            x->devs[a].path, x->devs[a].di->name,
                            x->chain->n > 1 ? "an" : "the");
                return false;
            }
        }
        for (guint b = a + 1; b <= VMA_MAX_DEVICES; b++) {
            if (!x->devs[b].restore || !target_stat(&x->devs[b], &sb)) {
                continue;
            }
            if (same_target(&sa, &sb)) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                            "restore map: %s and %s have the same target %s",
                            x->devs[a].di->name, x->devs[b].di->name, x->devs[b].path);
                return false;
            }
        }
    }
    return true;
}

/* What an archive is on disk (a regular file or a block device, also as standard
 * input), so that no target can be it. A pipe or a socket cannot be a target. */
static void stat_input(Extract *x, const char *path)
{
    struct stat st;
    int r = strcmp(path, "-") == 0 ? fstat(STDIN_FILENO, &st) : stat(path, &st);

    if (r == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        g_array_append_val(x->inputs, st);
    }
}

static bool setup_devices(Extract *x, VmaReader *r, GError **errp)
{
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        OutDev *d = &x->devs[id];
        const VmaDeviceInfo *di = vma_reader_get_device(r, id);

        d->fd = -1;
        d->dev_id = id;
        d->di = di;
        if (!di) {
            continue;
        }
        if (di->is_vmstate) {
            /* A vmstate stream is always restored, whatever -d and -r say. */
            d->path = dir_file(x, "vmstate.bin");
            d->fd = create_file(x, d->path, 0644, errp);
            if (d->fd < 0) {
                return false;
            }
            d->restore = true;
            continue;
        }
        if (!drive_selected(x, di->name)) {
            continue;
        }
        if (x->map) {
            CliMapEntry *e = g_hash_table_lookup(x->map, di->name);
            if (!e) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                            "restore map: no mapping for device %s", di->name);
                return false;
            }
            if (e->skip) {
                continue;
            }
            if (!open_map_target(x, d, e, errp)) {
                return false;
            }
        } else {
            g_autofree char *tmp_name = g_strdup_printf("tmp-disk-%s.raw", di->name);
            g_autofree char *final_name = g_strdup_printf("disk-%s.raw", di->name);
            d->path = dir_file(x, tmp_name);
            d->final_path = dir_file(x, final_name);
            printf("DEVINFO %s %" G_GUINT64_FORMAT "\n", d->path, di->size);
            fflush(stdout);
            d->fd = create_file(x, d->path, 0644, errp);
            if (d->fd < 0) {
                return false;
            }
            if (ftruncate(d->fd, (off_t)di->size) < 0) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_IO,
                            "set size of %s to %" G_GUINT64_FORMAT ": %s", d->path, di->size,
                            g_strerror(errno));
                return false;
            }
        }
        d->restore = true;
    }

    /* Every map line must name a device of this archive. */
    if (x->map) {
        GHashTableIter it;
        gpointer key, value;
        g_hash_table_iter_init(&it, x->map);
        while (g_hash_table_iter_next(&it, &key, &value)) {
            bool found = false;
            for (guint id = 1; id <= VMA_MAX_DEVICES && !found; id++) {
                found = x->devs[id].di && strcmp(x->devs[id].di->name, key) == 0;
            }
            if (!found) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                            "restore map: the archive has no device named '%s'",
                            (const char *)key);
                return false;
            }
        }
        if (!check_distinct_targets(x, errp)) {
            return false;
        }
    }

    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        x->active += x->devs[id].restore ? 1 : 0;
        x->devs[id].buf_cap = RUN_BUF_SIZE;
    }
    return true;
}

/* ---- the restore ---------------------------------------------------------------------- */

/* Stream the clusters of links[link]; in a chain of more than one archive only those that
 * no newer link had. */
static bool restore_link(Extract *x, guint link, CliReadStats *st, GError **errp)
{
    CliChain *ch = x->chain;
    VmaReader *r = ch->links[link].r;
    FILE *vout = x->verbose ? stdout : NULL;
    CliTtyProgress *tty = cli_tty_progress_new("extract", !x->verbose);
    bool ok = true;

    cli_read_stats_init(st, r);
    for (;;) {
        VmaCluster c;
        int ret;

        if (cli_interrupted()) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_CANCELLED, "interrupted");
            ok = false;
            break;
        }
        ret = vma_reader_next_cluster(r, &c, errp);
        if (ret < 0) {
            ok = false;
            break;
        }
        if (ret == 0) {
            break;
        }
        cli_read_stats_add(st, r, &c, vout);
        if (st->out_errno) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "write to stdout: %s",
                        g_strerror(st->out_errno));
            ok = false;
            break;
        }
        if (c.dev_id == 0 || c.dev_id > VMA_MAX_DEVICES || !vma_reader_get_device(r, c.dev_id)) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_FORMAT, "cluster of unknown device id %u",
                        c.dev_id);
            ok = false;
            break;
        }
        guint id = c.dev_id;
        if (ch->n > 1) {
            int claim = cli_chain_claim(ch, link, &c, &id, errp);
            if (claim < 0) {
                ok = false;
                break;
            }
            if (claim == 0) {
                continue; /* a newer archive of the chain had this cluster */
            }
        }
        OutDev *d = &x->devs[id];
        if (d->restore && !dev_write_cluster(d, &c, errp)) {
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

static bool restore_clusters(Extract *x, GError **errp)
{
    CliChain *ch = x->chain;
    VmaReader *r = ch->links[0].r;
    g_autofree CliReadStats *stats = g_new0(CliReadStats, ch->n);

    for (guint k = 0; k < ch->n; k++) {
        if (!restore_link(x, k, &stats[k], errp)) {
            return false;
        }
    }

    /* Name every incomplete device, as verify does: the reader's own summary when all
     * disks were restored, else one message per restored disk. */
    g_autoptr(GString) missing = NULL;
    bool all_disks = true;
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        OutDev *d = &x->devs[id];
        all_disks = all_disks && (!d->di || d->di->is_vmstate || d->restore);
    }
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        OutDev *d = &x->devs[id];
        g_autoptr(GError) err = NULL;
        if (!d->restore) {
            continue;
        }
        if (!dev_flush(d, errp)) {
            return false;
        }
        if (all_disks) {
            continue;
        }
        if (!d->di->is_vmstate && !(ch->n > 1 ? cli_chain_check_complete(ch, id, &err)
                                              : vma_reader_check_complete(r, id, &err))) {
            if (!missing) {
                missing = g_string_new(err->message);
            } else {
                g_string_append_printf(missing, "; %s", err->message);
            }
        }
    }
    if (all_disks && !(ch->n > 1 ? cli_chain_check_complete(ch, 0, errp)
                                 : vma_reader_check_complete(r, 0, errp))) {
        return false;
    }
    if (missing) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_MISSING, "%s", missing->str);
        return false;
    }
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        OutDev *d = &x->devs[id];
        if (!d->restore) {
            continue;
        }
        if (d->nbd) {
            /* the writes in flight, a flush, qemu-nbd's exit */
            bool ok = cli_nbd_image_finish(d->nbd, errp);
            g_clear_pointer(&d->nbd, cli_nbd_image_free);
            if (!ok) {
                g_prefix_error(errp, "%s: ", d->di->name);
                return false;
            }
            continue;
        }
        if (d->di->is_vmstate) {
            uint64_t len = MIN(d->di->size, d->vm_clusters * VMA_CLUSTER_SIZE);
            len = MAX(len, d->vm_data_end);
            if (ftruncate(d->fd, (off_t)len) < 0) {
                g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "set size of %s: %s", d->path,
                            g_strerror(errno));
                return false;
            }
        }
        int sr;
        while ((sr = fdatasync(d->fd)) < 0 && errno == EINTR && !cli_interrupted()) {
            /* a signal that is not the user's interrupt: flush again */
        }
        if (sr < 0 && errno != EINVAL) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "flush %s: %s", d->path,
                        g_strerror(errno));
            return false;
        }
        int cr = close_fd_checked(&d->fd);
        if (cr < 0) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "close %s: %s", d->path,
                        g_strerror(-cr));
            return false;
        }
    }
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        OutDev *d = &x->devs[id];
        if (!d->restore || !d->final_path) {
            continue;
        }
        if (rename(d->path, d->final_path) < 0) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "rename %s to %s: %s", d->path,
                        d->final_path, g_strerror(errno));
            return false;
        }
        /* the file now lives under its final name: clean that up on a later failure */
        for (guint i = 0; i < x->created->len; i++) {
            if (strcmp(g_ptr_array_index(x->created, i), d->path) == 0) {
                g_free(g_ptr_array_index(x->created, i));
                g_ptr_array_index(x->created, i) = g_strdup(d->final_path);
            }
        }
    }
    for (guint k = 0; x->verbose && k < ch->n; k++) {
        cli_read_stats_print_summary(&stats[k], stdout);
    }
    return true;
}

static void extract_cleanup(Extract *x, bool failed)
{
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        OutDev *d = &x->devs[id];
        close_fd(&d->fd);
        cli_nbd_image_free(d->nbd);
        g_free(d->path);
        g_free(d->final_path);
        g_free(d->buf);
    }
    if (failed) {
        for (guint i = 0; i < x->created->len; i++) {
            unlink(g_ptr_array_index(x->created, i));
        }
    }
    g_ptr_array_free(x->created, true);
    if (x->map) {
        g_hash_table_destroy(x->map);
    }
    g_hash_table_destroy(x->limiters);
    g_strfreev(x->drives);
    g_strfreev(x->bases);
    cli_chain_free(x->chain);
    g_array_free(x->inputs, true);
}

static bool run_extract(Extract *x, GError **errp)
{
    x->chain = cli_chain_open(x->archive, x->bases, false, errp);
    if (!x->chain) {
        return false;
    }
    VmaReader *r = x->chain->links[0].r;
    for (guint k = 0; k < x->chain->n; k++) {
        stat_input(x, x->chain->links[k].path);
    }
    if (!check_archive(x, r, errp)) {
        return false;
    }
    /* 0700: the disks are as private as the archive (0600); the user may open it up */
    if (mkdir(x->dir, 0700) < 0) {
        g_set_error(errp, CLI_ERROR, errno == EEXIST ? CLI_ERROR_EXISTS : CLI_ERROR_IO,
                    "create target directory %s: %s", x->dir, g_strerror(errno));
        return false;
    }
    x->created_dir = true;
    if (!write_configs(x, r, errp)) {
        return false;
    }
    if (x->map_path) {
        cli_print_listing(r, stdout);
        if (!cli_stdout_flush(errp)) {
            return false;
        }
        x->map = cli_map_read(x->map_path, errp);
        if (!x->map) {
            return false;
        }
    }
    if (!setup_devices(x, r, errp)) {
        return false;
    }
    if (!restore_clusters(x, errp)) {
        return false;
    }
    return cli_stdout_flush(errp);
}

int cli_extract_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"verbose", no_argument, NULL, 'v'},
        {"drives", required_argument, NULL, 'd'},
        {"restore-map", required_argument, NULL, 'r'},
        {"base", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Extract x;
    g_autoptr(GPtrArray) bases = g_ptr_array_new_with_free_func(g_free);
    int c;

    memset(&x, 0, sizeof(x));
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hvd:r:", longopts, NULL)) != -1) {
        switch (c) {
        case 'v':
            x.verbose = true;
            break;
        case 'd':
            g_strfreev(x.drives);
            x.drives = g_strsplit(optarg, ",", -1);
            for (char **p = x.drives; *p || p == x.drives; p++) {
                if (!*p || **p == '\0') {
                    g_strfreev(x.drives);
                    return cli_usage_error("extract", "-d: empty device name in '%s'", optarg);
                }
            }
            break;
        case 'r':
            x.map_path = optarg;
            break;
        case 'B':
            g_ptr_array_add(bases, g_strdup(optarg));
            break;
        case 'h':
            g_strfreev(x.drives);
            extract_usage(stdout);
            return CLI_EXIT_OK;
        default:
            g_strfreev(x.drives);
            return cli_bad_option("extract", c, argv);
        }
    }
    if (argc - optind != 2) {
        g_strfreev(x.drives);
        return cli_usage_error("extract", argc - optind < 2 ? "expected ARCHIVE and DIR operands"
                                                             : "too many operands");
    }
    x.archive = argv[optind];
    x.dir = argv[optind + 1];
    g_ptr_array_add(bases, NULL);
    x.bases = (char **)g_ptr_array_free(g_steal_pointer(&bases), false);
    x.inputs = g_array_new(false, false, sizeof(struct stat));
    x.created = g_ptr_array_new_with_free_func(g_free);
    x.limiters = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (guint id = 0; id <= VMA_MAX_DEVICES; id++) {
        x.devs[id].fd = -1;
    }
    cli_install_interrupt_handlers();

    g_autoptr(GError) err = NULL;
    bool ok = run_extract(&x, &err);
    bool removed = !ok && x.created->len > 0;
    extract_cleanup(&x, !ok);
    if (!ok) {
        if (removed) {
            return cli_failf("extract", "%s (removed the files this run created in %s)",
                             err->message, x.dir);
        }
        return cli_fail("extract", err);
    }
    return CLI_EXIT_OK;
}
