/*
 * test-backup.c — unit tests of the backup job (backup.c) over the real block layer
 * (raw image files in a temporary directory) and the real archive writer; archives are
 * read back with the library's reader.
 *
 * The point-in-time check. Every 4 KiB block of every disk carries a stamp (disk, block,
 * generation) repeated over the block; disks start at generation 0. Guest-writer threads
 * write, write-zeroes and discard random block ranges (across cluster boundaries) from
 * before backup_start() until after the backup ended. Writes to overlapping ranges are
 * serialised by per-cluster locks of the test, and each write takes a new generation
 * from a global counter inside those locks, so the generations of one block grow in the
 * order the block is written. Around every call a global ticket counter is read
 * (send ticket before, ack ticket after), and around backup_start() too. Then, for
 * every block of the archive:
 *   - its content is a valid stamp of that very block, or zeros;
 *   - stamped generation g: g >= the last write acknowledged before backup_start() was
 *     called, and g < the first write sent after it returned;
 *   - zeros: some write-zeroes/discard of the block has a generation in that window;
 * and for every write: it is in the archive for all its stamped blocks or for none
 * (no torn write), and no write that is in the archive was sent after a write that is
 * not in it was acknowledged — one instant T for all disks together.
 * Finally every write succeeded and the disks hold the last write of every block.
 */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "backup.h"
#include "blockdev.h"
#include "vma.h"

#define BS 4096u
#define CS 65536u
#define MAX_DISKS 4
#define MAX_WRITERS 4
#define STAMP_MAGIC 0x504d5453u

enum { OP_WRITE, OP_ZEROES, OP_DISCARD };

/* ---- stamps ----------------------------------------------------------------------- */

typedef struct Stamp {
    uint32_t magic;
    uint16_t disk;
    uint16_t ndisk; /* ~disk */
    uint32_t block;
    uint32_t gen;
} Stamp;

static void stamp_fill(uint8_t *buf, size_t len, unsigned disk, uint32_t block, uint32_t gen)
{
    Stamp s = { STAMP_MAGIC, (uint16_t)disk, (uint16_t)~disk, block, gen };

    for (size_t i = 0; i + sizeof(s) <= len; i += sizeof(s)) {
        memcpy(buf + i, &s, sizeof(s));
    }
}

/* 1 and *gen for a valid stamp of (disk, block), 0 for zeros, -1 for anything else. */
static int stamp_decode(const uint8_t *buf, size_t len, unsigned disk, uint32_t block,
                        uint32_t *gen)
{
    Stamp s;

    if (vma_buffer_is_zero(buf, len)) {
        return 0;
    }
    memcpy(&s, buf, sizeof(s));
    if (s.magic != STAMP_MAGIC || s.disk != disk || s.ndisk != (uint16_t)~disk ||
        s.block != block) {
        return -1;
    }
    for (size_t i = sizeof(s); i + sizeof(s) <= len; i += sizeof(s)) {
        if (memcmp(buf + i, &s, sizeof(s)) != 0) {
            return -1;
        }
    }
    *gen = s.gen;
    return 1;
}

/* ---- the world: disks, guest writers, their records --------------------------------- */

typedef struct TDisk {
    char *name;
    char *path;
    uint64_t size;
    uint32_t nblocks;
    uint32_t nclusters;
    bool read_only;
    BlockDev *bd;
    GMutex *clocks; /* per cluster: serialises overlapping writes of the test */
} TDisk;

typedef struct Rec {
    uint8_t disk;
    uint8_t kind;
    uint32_t first;
    uint32_t n;
    uint32_t gen;
    uint64_t send;
    uint64_t ack;
} Rec;

typedef struct World World;

typedef struct Writer {
    World *w;
    unsigned idx;
    GThread *thread;
    GArray *recs;
    gint64 max_latency; /* µs, of writes sent after backup_start() returned */
    gint64 max_latency_before; /* µs, of writes before backup_start() */
    uint64_t ops;
} Writer;

struct World {
    char *dir;
    TDisk disks[MAX_DISKS];
    unsigned ndisks;
    unsigned max_blocks;      /* per write */
    bool use_discard;
    uint32_t seed;
    unsigned sleep_us;        /* max pause between writes */
    atomic_uint gen;
    atomic_uint_fast64_t ticket;
    atomic_int stop;
    atomic_int errors;
    atomic_uint_fast64_t lat_from; /* ticket after which latencies count */
    Writer writers[MAX_WRITERS];
    unsigned nwriters;
};

static uint64_t ticket(World *w)
{
    return atomic_fetch_add(&w->ticket, 1);
}

static char *make_tmpdir(void)
{
    g_autoptr(GError) err = NULL;
    char *dir = g_dir_make_tmp("test-backup-XXXXXX", &err);

    if (dir == NULL) {
        fail_msg("make temporary directory: %s", err->message);
    }
    return dir;
}

static void remove_tree(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *n;

    if (d == NULL) {
        return;
    }
    while ((n = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(dir, n, NULL);
        g_unlink(p);
    }
    g_dir_close(d);
    g_rmdir(dir);
}

static unsigned dir_entries(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    unsigned n = 0;

    if (d == NULL) {
        return 0;
    }
    while (g_dir_read_name(d) != NULL) {
        n++;
    }
    g_dir_close(d);
    return n;
}

static bool discard_zeroes(const char *dir)
{
    g_autofree char *p = g_build_filename(dir, "probe", NULL);
    uint8_t buf[BS];
    bool ok = false;
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);

    if (fd < 0) {
        return false;
    }
    memset(buf, 0xa5, sizeof(buf));
    if (pwrite(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) &&
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, BS) == 0 &&
        pread(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf)) {
        ok = vma_buffer_is_zero(buf, sizeof(buf));
    }
    close(fd);
    unlink(p);
    return ok;
}

/* Add a disk of `size` bytes filled with generation-0 stamps. */
static void world_add_disk(World *w, const char *name, uint64_t size, bool read_only)
{
    assert_true(w->ndisks < MAX_DISKS);
    unsigned idx = w->ndisks++;
    TDisk *d = &w->disks[idx];
    d->name = g_strdup(name);
    d->path = g_strdup_printf("%s/%s.raw", w->dir, name);
    d->size = size;
    d->nblocks = (uint32_t)((size + BS - 1) / BS);
    d->nclusters = (uint32_t)((size + CS - 1) / CS);
    d->read_only = read_only;

    int fd = open(d->path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    uint8_t *buf = g_malloc(BS);
    for (uint32_t b = 0; b < d->nblocks; b++) {
        size_t len = (size_t)MIN((uint64_t)BS, size - (uint64_t)b * BS);
        stamp_fill(buf, len, idx, b, 0);
        assert_int_equal(pwrite(fd, buf, len, (off_t)b * BS), (ssize_t)len);
    }
    g_free(buf);
    close(fd);

    g_autoptr(GError) err = NULL;
    BlockDevOptions bo = { .node_name = name, .filename = d->path, .read_only = read_only };
    if (!blockdev_add(&bo, &err)) {
        fail_msg("blockdev_add %s: %s", name, err->message);
    }
    d->bd = blockdev_find(name, &err);
    assert_non_null(d->bd);
    d->clocks = g_new0(GMutex, d->nclusters);
    for (uint32_t c = 0; c < d->nclusters; c++) {
        g_mutex_init(&d->clocks[c]);
    }
}

static World *world_new(uint32_t seed)
{
    World *w = g_new0(World, 1);

    w->dir = make_tmpdir();
    w->seed = seed;
    w->max_blocks = 40;
    w->sleep_us = 300;
    w->use_discard = discard_zeroes(w->dir);
    atomic_init(&w->gen, 1);
    atomic_init(&w->ticket, 1);
    atomic_init(&w->stop, 0);
    atomic_init(&w->errors, 0);
    atomic_init(&w->lat_from, UINT64_MAX);
    return w;
}

static void world_free(World *w)
{
    for (unsigned i = 0; i < w->ndisks; i++) {
        TDisk *d = &w->disks[i];
        blockdev_unref(d->bd);
        g_autoptr(GError) err = NULL;
        if (!blockdev_del(d->name, &err)) {
            fail_msg("blockdev_del %s: %s", d->name, err->message);
        }
        for (uint32_t c = 0; c < d->nclusters; c++) {
            g_mutex_clear(&d->clocks[c]);
        }
        g_free(d->clocks);
        g_free(d->name);
        g_free(d->path);
    }
    for (unsigned i = 0; i < w->nwriters; i++) {
        if (w->writers[i].recs) {
            g_array_unref(w->writers[i].recs);
        }
    }
    remove_tree(w->dir);
    g_free(w->dir);
    g_free(w);
}

static void do_one_write(World *w, Writer *wr, GRand *rnd, uint8_t *buf)
{
    unsigned candidates[MAX_DISKS], nc = 0;
    for (unsigned i = 0; i < w->ndisks; i++) {
        if (!w->disks[i].read_only) {
            candidates[nc++] = i;
        }
    }
    unsigned di = candidates[g_rand_int_range(rnd, 0, (gint32)nc)];
    TDisk *d = &w->disks[di];
    uint32_t first = (uint32_t)g_rand_int_range(rnd, 0, (gint32)d->nblocks);
    uint32_t maxn = MIN(w->max_blocks, d->nblocks - first);
    uint32_t n = (uint32_t)g_rand_int_range(rnd, 1, (gint32)maxn + 1);
    int pick = g_rand_int_range(rnd, 0, 100);
    uint8_t kind = pick < 80 ? OP_WRITE : pick < 90 ? OP_ZEROES : OP_DISCARD;
    if (kind == OP_DISCARD && !w->use_discard) {
        kind = OP_ZEROES;
    }
    uint64_t off = (uint64_t)first * BS;
    uint64_t len = MIN((uint64_t)n * BS, d->size - off);
    uint32_t c0 = (uint32_t)(off / CS), c1 = (uint32_t)((off + len - 1) / CS);
    unsigned zflags = g_rand_boolean(rnd) ? BLOCKDEV_NO_UNMAP : 0;

    for (uint32_t c = c0; c <= c1; c++) {
        g_mutex_lock(&d->clocks[c]);
    }
    uint32_t gen = atomic_fetch_add(&w->gen, 1);
    if (kind == OP_WRITE) {
        for (uint32_t b = 0; b < n; b++) {
            size_t bl = (size_t)MIN((uint64_t)BS, len - (uint64_t)b * BS);
            stamp_fill(buf + (size_t)b * BS, bl, di, first + b, gen);
        }
    }
    uint64_t send = ticket(w);
    gint64 t0 = g_get_monotonic_time();
    int r;
    switch (kind) {
    case OP_WRITE:
        r = blockdev_pwrite(d->bd, buf, len, off, 0);
        break;
    case OP_ZEROES:
        r = blockdev_write_zeroes(d->bd, len, off, zflags);
        break;
    default:
        r = blockdev_discard(d->bd, len, off);
        break;
    }
    gint64 t1 = g_get_monotonic_time();
    uint64_t ack = ticket(w);
    for (uint32_t c = c0; c <= c1; c++) {
        g_mutex_unlock(&d->clocks[c]);
    }
    if (r != 0) {
        atomic_fetch_add(&w->errors, 1);
    }
    if (send > atomic_load(&w->lat_from)) {
        wr->max_latency = MAX(wr->max_latency, t1 - t0);
    } else if (atomic_load(&w->lat_from) == UINT64_MAX) {
        wr->max_latency_before = MAX(wr->max_latency_before, t1 - t0);
    }
    Rec rec = { (uint8_t)di, kind, first, n, gen, send, ack };
    g_array_append_val(wr->recs, rec);
    wr->ops++;
}

static gpointer writer_main(gpointer opaque)
{
    Writer *wr = opaque;
    World *w = wr->w;
    g_autoptr(GRand) rnd = g_rand_new_with_seed(w->seed * 131u + wr->idx);
    uint8_t *buf = g_malloc((size_t)w->max_blocks * BS);

    while (!atomic_load(&w->stop)) {
        do_one_write(w, wr, rnd, buf);
        if (w->sleep_us > 0) {
            g_usleep((gulong)g_rand_int_range(rnd, 0, (gint32)w->sleep_us));
        }
    }
    g_free(buf);
    return NULL;
}

static void writers_start(World *w, unsigned n)
{
    w->nwriters = n;
    for (unsigned i = 0; i < n; i++) {
        Writer *wr = &w->writers[i];
        wr->w = w;
        wr->idx = i;
        wr->recs = g_array_new(FALSE, FALSE, sizeof(Rec));
        wr->thread = g_thread_new("guest-writer", writer_main, wr);
    }
}

static void writers_stop(World *w)
{
    atomic_store(&w->stop, 1);
    for (unsigned i = 0; i < w->nwriters; i++) {
        g_thread_join(w->writers[i].thread);
        w->writers[i].thread = NULL;
    }
    assert_int_equal(atomic_load(&w->errors), 0);
}

static gint64 writers_max_latency(World *w, bool before)
{
    gint64 m = 0;
    for (unsigned i = 0; i < w->nwriters; i++) {
        m = MAX(m, before ? w->writers[i].max_latency_before : w->writers[i].max_latency);
    }
    return m;
}

/* ---- checks ----------------------------------------------------------------------- */

/* The disks' current contents must be the last write of every block. */
static void check_disks_final(World *w)
{
    for (unsigned di = 0; di < w->ndisks; di++) {
        TDisk *d = &w->disks[di];
        uint32_t *last = g_new0(uint32_t, d->nblocks);
        uint8_t *kind = g_new0(uint8_t, d->nblocks);
        for (unsigned t = 0; t < w->nwriters; t++) {
            GArray *recs = w->writers[t].recs;
            for (guint i = 0; i < recs->len; i++) {
                Rec *r = &g_array_index(recs, Rec, i);
                if (r->disk != di) {
                    continue;
                }
                for (uint32_t b = r->first; b < r->first + r->n && b < d->nblocks; b++) {
                    if (r->gen > last[b]) {
                        last[b] = r->gen;
                        kind[b] = r->kind;
                    }
                }
            }
        }
        uint8_t *buf = g_malloc(BS);
        for (uint32_t b = 0; b < d->nblocks; b++) {
            size_t len = (size_t)MIN((uint64_t)BS, d->size - (uint64_t)b * BS);
            assert_int_equal(blockdev_pread(d->bd, buf, len, (uint64_t)b * BS), 0);
            uint32_t g = 0;
            int k = stamp_decode(buf, len, di, b, &g);
            if (kind[b] == OP_WRITE || last[b] == 0) {
                if (k != 1 || g != last[b]) {
                    fail_msg("disk %s block %u: expected generation %u, found %s %u", d->name,
                             b, last[b], k == 1 ? "generation" : k == 0 ? "zeros" : "garbage",
                             g);
                }
            } else if (k != 0) {
                fail_msg("disk %s block %u: expected zeros (generation %u)", d->name, b,
                         last[b]);
            }
        }
        g_free(buf);
        g_free(last);
        g_free(kind);
    }
}

typedef struct Archive {
    uint8_t *img[MAX_DISKS];   /* NULL: disk not in the archive */
    char *configs[2];          /* qemu-server.conf, qemu-server.fw */
    size_t config_len[2];
    char uuid[37];
} Archive;

static void archive_clear(Archive *a)
{
    for (unsigned i = 0; i < MAX_DISKS; i++) {
        g_free(a->img[i]);
    }
    g_free(a->configs[0]);
    g_free(a->configs[1]);
    memset(a, 0, sizeof(*a));
}

/* Read the archive at path; every cluster present exactly once (the reader checks). */
static void load_archive(World *w, const char *path, Archive *a)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    int map[256];

    memset(a, 0, sizeof(*a));
    if (r == NULL) {
        fail_msg("open archive %s: %s", path, err->message);
    }
    uint8_t uuid[16];
    vma_reader_get_uuid(r, uuid);
    vma_uuid_unparse(uuid, a->uuid);
    for (guint i = 0; i < vma_reader_get_config_count(r); i++) {
        const char *name;
        const uint8_t *data;
        size_t len;
        assert_true(vma_reader_get_config(r, i, &name, &data, &len));
        int slot = strcmp(name, "qemu-server.conf") == 0 ? 0
                   : strcmp(name, "qemu-server.fw") == 0 ? 1 : -1;
        assert_true(slot >= 0);
        a->configs[slot] = g_strndup((const char *)data, len);
        a->config_len[slot] = len;
    }
    for (unsigned id = 0; id < 256; id++) {
        map[id] = -1;
        const VmaDeviceInfo *info = id ? vma_reader_get_device(r, id) : NULL;
        if (info == NULL) {
            continue;
        }
        for (unsigned di = 0; di < w->ndisks; di++) {
            if (strcmp(info->name, w->disks[di].name) == 0) {
                assert_int_equal(info->size, w->disks[di].size);
                map[id] = (int)di;
                a->img[di] = g_malloc0(w->disks[di].size);
            }
        }
        assert_true(map[id] >= 0);
    }
    VmaCluster c;
    int ret;
    while ((ret = vma_reader_next_cluster(r, &c, &err)) == 1) {
        int di = map[c.dev_id];
        assert_true(di >= 0);
        TDisk *d = &w->disks[di];
        const uint8_t *src = c.data;
        for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
            uint64_t off = (uint64_t)c.cluster_num * CS + (uint64_t)j * BS;
            if (!(c.mask & (1u << j))) {
                continue; /* zero block: the image is zero-initialised */
            }
            if (off < d->size) {
                memcpy(a->img[di] + off, src, (size_t)MIN((uint64_t)BS, d->size - off));
            }
            src += BS;
        }
    }
    if (ret < 0) {
        fail_msg("read archive %s: %s", path, err->message);
    }
    if (!vma_reader_check_complete(r, 0, &err)) {
        fail_msg("archive %s: %s", path, err->message);
    }
}

/*
 * The point-in-time check (see the file comment). t_before: a ticket taken just before
 * backup_start() was called; t_after: just after it returned.
 */
static void check_point_in_time(World *w, const Archive *a, uint64_t t_before,
                                uint64_t t_after)
{
    uint32_t *agen[MAX_DISKS] = { NULL };   /* archived generation; UINT32_MAX = zeros */
    uint32_t *lower[MAX_DISKS] = { NULL };
    uint32_t *upper[MAX_DISKS] = { NULL };
    bool *zero_ok[MAX_DISKS] = { NULL };
    unsigned checked_writes = 0;

    for (unsigned di = 0; di < w->ndisks; di++) {
        TDisk *d = &w->disks[di];
        if (a->img[di] == NULL) {
            continue;
        }
        agen[di] = g_new(uint32_t, d->nblocks);
        lower[di] = g_new0(uint32_t, d->nblocks);
        upper[di] = g_new(uint32_t, d->nblocks);
        zero_ok[di] = g_new0(bool, d->nblocks);
        for (uint32_t b = 0; b < d->nblocks; b++) {
            size_t len = (size_t)MIN((uint64_t)BS, d->size - (uint64_t)b * BS);
            uint32_t g = 0;
            int k = stamp_decode(a->img[di] + (uint64_t)b * BS, len, di, b, &g);
            if (k < 0) {
                fail_msg("archive: disk %s block %u holds garbage", d->name, b);
            }
            agen[di][b] = k == 1 ? g : UINT32_MAX;
            upper[di][b] = UINT32_MAX;
        }
    }

    /* Window per block. */
    for (unsigned t = 0; t < w->nwriters; t++) {
        GArray *recs = w->writers[t].recs;
        for (guint i = 0; i < recs->len; i++) {
            Rec *r = &g_array_index(recs, Rec, i);
            if (agen[r->disk] == NULL) {
                continue;
            }
            for (uint32_t b = r->first; b < r->first + r->n && b < w->disks[r->disk].nblocks;
                 b++) {
                if (r->ack < t_before && r->gen > lower[r->disk][b]) {
                    lower[r->disk][b] = r->gen;
                }
                if (r->send > t_after && r->gen < upper[r->disk][b]) {
                    upper[r->disk][b] = r->gen;
                }
            }
        }
    }
    for (unsigned t = 0; t < w->nwriters; t++) {
        GArray *recs = w->writers[t].recs;
        for (guint i = 0; i < recs->len; i++) {
            Rec *r = &g_array_index(recs, Rec, i);
            if (agen[r->disk] == NULL || r->kind == OP_WRITE) {
                continue;
            }
            for (uint32_t b = r->first; b < r->first + r->n && b < w->disks[r->disk].nblocks;
                 b++) {
                if (r->gen >= lower[r->disk][b] && r->gen < upper[r->disk][b]) {
                    zero_ok[r->disk][b] = true;
                }
            }
        }
    }
    for (unsigned di = 0; di < w->ndisks; di++) {
        if (agen[di] == NULL) {
            continue;
        }
        for (uint32_t b = 0; b < w->disks[di].nblocks; b++) {
            uint32_t g = agen[di][b];
            if (g == UINT32_MAX) {
                if (!zero_ok[di][b]) {
                    fail_msg("archive: disk %s block %u is zero, but no zeroing write falls "
                             "into its window [%u, %u)", w->disks[di].name, b, lower[di][b],
                             upper[di][b]);
                }
            } else if (g < lower[di][b] || g >= upper[di][b]) {
                fail_msg("archive: disk %s block %u has generation %u outside its window "
                         "[%u, %u)", w->disks[di].name, b, g, lower[di][b], upper[di][b]);
            }
        }
    }

    /* Atomic writes and one cut for all disks. */
    uint64_t max_in_send = 0, min_out_ack = UINT64_MAX;
    for (unsigned t = 0; t < w->nwriters; t++) {
        GArray *recs = w->writers[t].recs;
        for (guint i = 0; i < recs->len; i++) {
            Rec *r = &g_array_index(recs, Rec, i);
            if (agen[r->disk] == NULL) {
                continue;
            }
            int in = -1; /* unknown */
            for (uint32_t b = r->first; b < r->first + r->n && b < w->disks[r->disk].nblocks;
                 b++) {
                uint32_t g = agen[r->disk][b];
                if (g == UINT32_MAX) {
                    continue;
                }
                int this_in = g >= r->gen;
                if (in >= 0 && in != this_in) {
                    fail_msg("archive: write of generation %u to disk %s blocks %u+%u is "
                             "torn", r->gen, w->disks[r->disk].name, r->first, r->n);
                }
                in = this_in;
            }
            if (in == 1) {
                max_in_send = MAX(max_in_send, r->send);
            } else if (in == 0) {
                min_out_ack = MIN(min_out_ack, r->ack);
            }
            if (in >= 0 && r->send > t_before && r->ack < t_after) {
                checked_writes++;
            }
        }
    }
    if (max_in_send != 0 && min_out_ack != UINT64_MAX && max_in_send > min_out_ack) {
        fail_msg("archive: not one point in time: a write sent at ticket %" PRIu64 " is in "
                 "the archive, one acknowledged at ticket %" PRIu64 " is not",
                 max_in_send, min_out_ack);
    }
    (void)checked_writes;
    for (unsigned di = 0; di < MAX_DISKS; di++) {
        g_free(agen[di]);
        g_free(lower[di]);
        g_free(upper[di]);
        g_free(zero_ok[di]);
    }
}

/* ---- backup helpers ----------------------------------------------------------------- */

static GMutex ev_lock;
static GPtrArray *events; /* "id status" strings */

static void on_event(const BackupEvent *ev, void *opaque)
{
    char *s;

    switch (ev->kind) {
    case BACKUP_EVENT_JOB_STATUS_CHANGE:
        s = g_strdup_printf("%s %s", ev->id, ev->status);
        break;
    case BACKUP_EVENT_JOB_COMPLETED:
        s = g_strdup_printf("%s COMPLETED%s%s", ev->id, ev->error ? " " : "",
                            ev->error ? ev->error : "");
        break;
    default:
        s = g_strdup_printf("%s CANCELLED", ev->id);
        break;
    }
    g_mutex_lock(&ev_lock);
    g_ptr_array_add(events, s);
    g_mutex_unlock(&ev_lock);
}

static void events_reset(void)
{
    g_mutex_lock(&ev_lock);
    g_ptr_array_set_size(events, 0);
    g_mutex_unlock(&ev_lock);
}

/* The events of one job id joined by ','. */
static char *events_of(const char *id)
{
    GString *s = g_string_new(NULL);
    size_t idlen = strlen(id);

    g_mutex_lock(&ev_lock);
    for (guint i = 0; i < events->len; i++) {
        const char *e = g_ptr_array_index(events, i);
        if (strncmp(e, id, idlen) == 0 && e[idlen] == ' ') {
            if (s->len) {
                g_string_append_c(s, ',');
            }
            g_string_append(s, e + idlen + 1);
        }
    }
    g_mutex_unlock(&ev_lock);
    return g_string_free(s, FALSE);
}

static void status_expect(const char *want_status, const char *errmsg_substr)
{
    BackupStatus st;

    backup_query(&st);
    assert_non_null(st.status);
    if (strcmp(st.status, want_status) != 0) {
        fail_msg("backup status %s (%s), expected %s", st.status,
                 st.errmsg ? st.errmsg : "-", want_status);
    }
    if (errmsg_substr != NULL) {
        assert_non_null(st.errmsg);
        if (strstr(st.errmsg, errmsg_substr) == NULL) {
            fail_msg("backup errmsg '%s' lacks '%s'", st.errmsg, errmsg_substr);
        }
    } else {
        assert_null(st.errmsg);
    }
    assert_false(st.finishing);
    assert_true(st.end_time >= st.start_time && st.end_time > 0);
    backup_status_clear(&st);
}

static unsigned count_dir(const char *path)
{
    return dir_entries(path);
}

typedef struct Leaks {
    unsigned fds;
    unsigned threads;
} Leaks;

static void leaks_take(Leaks *l)
{
    l->fds = count_dir("/proc/self/fd");
    l->threads = count_dir("/proc/self/task");
}

static void leaks_check(const Leaks *before)
{
    Leaks now;

    /* a joined thread may take a moment to leave /proc */
    for (int i = 0; i < 200; i++) {
        leaks_take(&now);
        if (now.fds <= before->fds && now.threads <= before->threads) {
            return;
        }
        g_usleep(5000);
    }
    fail_msg("leak: %u fds (was %u), %u threads (was %u)", now.fds, before->fds,
             now.threads, before->threads);
}

/* ---- slow pipe reader --------------------------------------------------------------- */

typedef struct Drain {
    atomic_int paused;      /* read nothing while set */
    int rfd;
    int out_fd;             /* -1: discard */
    uint64_t rate;          /* bytes/s; 0: as fast as possible */
    uint64_t close_after;   /* close the pipe after this many bytes; 0: never */
    uint64_t total;
    GThread *thread;
} Drain;

static gpointer drain_main(gpointer opaque)
{
    Drain *dr = opaque;
    uint8_t *buf = g_malloc(CS);
    gint64 start = 0;

    for (;;) {
        while (atomic_load(&dr->paused)) {
            g_usleep(1000);
        }
        size_t want = CS / 4;
        ssize_t n = read(dr->rfd, buf, want);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        if (dr->out_fd >= 0) {
            assert_int_equal(write(dr->out_fd, buf, (size_t)n), n);
        }
        if (start == 0) {
            start = g_get_monotonic_time(); /* the rate counts from the first byte */
        }
        dr->total += (uint64_t)n;
        if (dr->close_after && dr->total >= dr->close_after) {
            break;
        }
        if (dr->rate) {
            gint64 due = start + (gint64)(dr->total * G_USEC_PER_SEC / dr->rate);
            gint64 now = g_get_monotonic_time();
            if (due > now) {
                g_usleep((gulong)(due - now));
            }
        }
    }
    close(dr->rfd);
    dr->rfd = -1;
    g_free(buf);
    return NULL;
}

/*
 * A stream whose write end is returned (for BackupOptions.fd); its reader runs in a
 * thread. A socket pair with small buffers, so that little sits between the writer and
 * the slow reader (the writer would give a pipe 1 MiB).
 */
static int drain_start(Drain *dr, int out_fd, uint64_t rate, uint64_t close_after)
{
    int p[2];
    int sz = 32 * 1024;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    assert_int_equal(shutdown(p[0], SHUT_WR), 0);
    assert_int_equal(setsockopt(p[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
    assert_int_equal(setsockopt(p[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    dr->rfd = p[0];
    dr->out_fd = out_fd;
    dr->rate = rate;
    dr->close_after = close_after;
    dr->total = 0;
    atomic_init(&dr->paused, 0);
    dr->thread = g_thread_new("drain", drain_main, dr);
    return p[1];
}

static void drain_join(Drain *dr)
{
    g_thread_join(dr->thread);
    dr->thread = NULL;
    if (dr->out_fd >= 0) {
        close(dr->out_fd);
    }
}

/* ---- setup of the standard disk set ---------------------------------------------------- */

#define ODD_SIZE (65536u * 3 + 4096 + 512)

static World *standard_world(uint32_t seed)
{
    World *w = world_new(seed);

    world_add_disk(w, "drive-a", 2 * 1024 * 1024 + 3 * 4096, false);
    world_add_disk(w, "drive-b", ODD_SIZE, false);
    world_add_disk(w, "drive-c", CS, false);
    return w;
}

static void test_setup_events(void)
{
    if (events == NULL) {
        events = g_ptr_array_new_with_free_func(g_free);
        backup_set_event_handler(on_event, NULL);
    }
}

/* ---- tests ------------------------------------------------------------------------ */

/* Must run first: before any backup, only `finishing: false`. */
static void test_query_before_any(void **state)
{
    BackupStatus st;
    memset(&st, 0xff, sizeof(st));
    backup_query(&st);
    assert_null(st.status);
    assert_null(st.errmsg);
    assert_null(st.uuid);
    assert_null(st.backup_file);
    assert_false(st.finishing);
    assert_int_equal(st.total, 0);
    backup_status_clear(&st);

    g_autoptr(GPtrArray) jobs = backup_query_jobs();
    assert_int_equal(jobs->len, 0);
    backup_cancel(); /* fine when none runs */
    backup_wait();
    backup_query(&st);
    assert_null(st.status);
}

/* One point-in-time run: the standard disks, writers running across the backup. */
static void pit_run(uint32_t seed, int workers, int64_t speed, bool use_fd)
{
    World *w = standard_world(seed);
    g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
    Leaks leaks;

    leaks_take(&leaks);
    writers_start(w, 3);
    g_usleep(2000 + (seed % 5) * 1000);

    BackupOptions o = {
        .backup_file = out,
        .devlist = "drive-a,drive-b;drive-c",
        .speed = speed,
        .max_workers = workers,
    };
    if (use_fd) {
        o.use_fd = true;
        o.fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(o.fd >= 0);
    }
    g_autoptr(GError) err = NULL;
    uint64_t t_before = ticket(w);
    g_autofree char *uuid = backup_start(&o, &err);
    uint64_t t_after = ticket(w);
    if (uuid == NULL) {
        fail_msg("backup_start: %s", err->message);
    }
    backup_wait();
    g_usleep(2000);
    writers_stop(w);
    status_expect("done", NULL);

    Archive a;
    load_archive(w, out, &a);
    assert_string_equal(a.uuid, uuid);
    check_point_in_time(w, &a, t_before, t_after);
    archive_clear(&a);
    check_disks_final(w);
    world_free(w);
    leaks_check(&leaks);
}

static void test_point_in_time(void **state)
{
    const uint32_t seeds = 8;

    for (uint32_t seed = 1; seed <= seeds; seed++) {
        int workers = (seed & 1) ? 1 : 8;
        int64_t speed = (seed & 2) ? 8 * 1024 * 1024 : 0;
        pit_run(seed, workers, speed, seed == 4);
    }
}

/* Guest writes never wait for a slow target: CBW data spills to the fleecing file. */
static void test_memory_bound_spill(void **state)
{
    World *w = world_new(77);
    /* much more than the writer thread holds in one extent (58 clusters) */
    world_add_disk(w, "drive-a", 6 * 1024 * 1024, false);
    world_add_disk(w, "drive-b", 2 * 1024 * 1024 + 512, false);
    w->max_blocks = 32;
    w->sleep_us = 200;
    g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
    g_autofree char *fdir = g_build_filename(w->dir, "fleece", NULL);
    assert_int_equal(g_mkdir(fdir, 0700), 0);
    Leaks leaks;
    leaks_take(&leaks);

    int ofd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(ofd >= 0);
    Drain dr;
    /* about 2 s */
    int wfd = drain_start(&dr, ofd, 4 * 1024 * 1024, 0);

    writers_start(w, 3);
    g_usleep(300000); /* a baseline of write latencies without a backup */
    BackupOptions o = {
        .backup_file = "/dev/fdname/slow",
        .use_fd = true,
        .fd = wfd,
        .mem_limit = 256 * 1024,
        .fleecing_dir = fdir,
    };
    g_autoptr(GError) err = NULL;
    uint64_t t_before = ticket(w);
    gint64 t0 = g_get_monotonic_time();
    g_autofree char *uuid = backup_start(&o, &err);
    uint64_t t_after = ticket(w);
    atomic_store(&w->lat_from, t_after);
    if (uuid == NULL) {
        fail_msg("backup_start: %s", err->message);
    }
    /* the fleecing file is invisible in the directory */
    assert_int_equal(dir_entries(fdir), 0);

    /* query-backup through the backup's life: progress only grows */
    uint64_t last = 0;
    for (;;) {
        BackupStatus q;
        backup_query(&q);
        bool active = strcmp(q.status, "active") == 0;
        assert_true(q.transferred >= last);
        last = q.transferred;
        if (active) {
            assert_int_equal(q.end_time, 0);
            assert_true(!q.finishing || q.transferred == q.total);
        }
        backup_status_clear(&q);
        if (!active) {
            break;
        }
        g_usleep(10000);
    }
    backup_wait();
    gint64 duration = g_get_monotonic_time() - t0;
    writers_stop(w);
    drain_join(&dr);

    BackupStatus st;
    backup_query(&st);
    assert_string_equal(st.status, "done");
    assert_true(st.spilled_bytes > 0);
    assert_true(st.cbw_bytes >= st.spilled_bytes);
    gint64 lat = writers_max_latency(w, false);
    print_message("memory bound: backup %" G_GINT64_FORMAT " ms, max write latency %"
                  G_GINT64_FORMAT " us (%" G_GINT64_FORMAT " us without backup), cbw %"
                  G_GUINT64_FORMAT " KiB, spilled %" G_GUINT64_FORMAT " KiB\n",
                  duration / 1000, lat, writers_max_latency(w, true), st.cbw_bytes / 1024,
                  st.spilled_bytes / 1024);
    backup_status_clear(&st);
    assert_true(duration > 1000 * 1000);
    if (lat * 5 > duration) {
        fail_msg("a guest write waited %" G_GINT64_FORMAT " us during a %" G_GINT64_FORMAT
                 " us backup", lat, duration);
    }
    assert_int_equal(dir_entries(fdir), 0);

    Archive a;
    load_archive(w, out, &a);
    check_point_in_time(w, &a, t_before, t_after);
    archive_clear(&a);
    check_disks_final(w);
    world_free(w);
    leaks_check(&leaks);
}

/* Without a fleecing directory a tiny buffer fails the backup, never a write. */
static void run_exhausted(const char *fleecing_dir, uint64_t fleecing_limit)
{
    World *w = world_new(78);
    /* larger than what the writer thread holds in one extent plus the pipe buffer */
    world_add_disk(w, "drive-a", 8 * 1024 * 1024, false);
    g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
    Leaks leaks;
    leaks_take(&leaks);
    events_reset();

    Drain dr;
    int wfd = drain_start(&dr, -1, 256 * 1024, 0);
    writers_start(w, 2);
    g_usleep(2000);
    BackupOptions o = {
        .backup_file = "/dev/fdname/slow",
        .use_fd = true,
        .fd = wfd,
        .mem_limit = 128 * 1024,
        .fleecing_dir = fleecing_dir,
        .fleecing_limit = fleecing_limit,
    };
    g_autoptr(GError) err = NULL;
    g_autofree char *uuid = backup_start(&o, &err);
    if (uuid == NULL) {
        fail_msg("backup_start: %s", err->message);
    }
    backup_wait();
    g_usleep(2000);
    writers_stop(w);
    drain_join(&dr);
    status_expect("error", "copy-before-write buffer exhausted");
    g_autofree char *ev = events_of("drive-a");
    if (!g_str_has_prefix(ev, "created,running,aborting,COMPLETED copy-before-write "
                              "buffer exhausted") ||
        !g_str_has_suffix(ev, ",concluded,null")) {
        fail_msg("events: %s", ev);
    }
    check_disks_final(w);
    world_free(w);
    leaks_check(&leaks);
}

static void test_memory_exhausted(void **state)
{
    run_exhausted(NULL, 0);
}

static void test_fleecing_limit(void **state)
{
    g_autofree char *fdir = make_tmpdir();
    run_exhausted(fdir, 128 * 1024);
    assert_int_equal(dir_entries(fdir), 0);
    remove_tree(fdir);
}

/* Cancel at random moments: error "backup canceled", nothing left, writes intact. */
static void test_cancel(void **state)
{
    for (uint32_t seed = 1; seed <= 6; seed++) {
        World *w = standard_world(100 + seed);
        g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
        Leaks leaks;
        leaks_take(&leaks);
        events_reset();
        writers_start(w, 2);
        g_usleep(1000);

        BackupOptions o = {
            .backup_file = out,
            .speed = 1024 * 1024, /* ~2.4 s: the cancel (<= 200 ms in) lands mid-way */
            .max_workers = (int)seed % 3,
        };
        bool passed_fd = seed == 5; /* a passed descriptor's file is never removed */
        if (passed_fd) {
            o.use_fd = true;
            o.fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            assert_true(o.fd >= 0);
        }
        g_autoptr(GError) err = NULL;
        g_autofree char *uuid = backup_start(&o, &err);
        if (uuid == NULL) {
            fail_msg("backup_start: %s", err->message);
        }
        g_usleep((gulong)((seed - 1) * 40000));
        backup_cancel();
        gint64 t0 = g_get_monotonic_time();
        backup_wait();
        assert_true(g_get_monotonic_time() - t0 < 2 * G_USEC_PER_SEC);
        backup_cancel(); /* again: harmless */
        writers_stop(w);

        status_expect("error", "backup canceled");
        assert_true(g_file_test(out, G_FILE_TEST_EXISTS) == passed_fd);
        g_autofree char *ev = events_of("drive-b");
        assert_string_equal(ev, "created,running,aborting,CANCELLED,concluded,null");
        check_disks_final(w);
        world_free(w);
        leaks_check(&leaks);
    }
}

/* Target failures: the error is reported, writes go on, no file is left. */
static void run_target_failure(const char *target, int fd, Drain *dr, const char *errsub)
{
    World *w = standard_world(200);
    g_autofree char *out = NULL;
    Leaks leaks;
    leaks_take(&leaks);
    writers_start(w, 2);
    g_usleep(1000);

    BackupOptions o = {
        .backup_file = target,
        .use_fd = fd >= 0,
        .fd = fd,
    };
    g_autoptr(GError) err = NULL;
    g_autofree char *uuid = backup_start(&o, &err);
    if (uuid == NULL) {
        fail_msg("backup_start %s: %s", target, err->message);
    }
    backup_wait();
    writers_stop(w);
    if (dr != NULL) {
        drain_join(dr);
    }
    status_expect("error", errsub);
    assert_int_equal(dir_entries(w->dir), w->ndisks); /* only the images */
    check_disks_final(w);
    world_free(w);
    leaks_check(&leaks);
}

static void test_target_exec_false(void **state)
{
    run_target_failure("exec:false", -1, NULL, "exec:false");
}

static void test_target_reader_closes(void **state)
{
    Drain dr;
    int wfd = drain_start(&dr, -1, 0, 100 * 1024);
    run_target_failure("/dev/fdname/pipe", wfd, &dr, "Broken pipe");
}

static void test_target_dev_full(void **state)
{
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        skip();
    }
    run_target_failure("/dev/fdname/full", fd, NULL, "No space left on device");
}

static void test_target_exec_ok(void **state)
{
    World *w = standard_world(201);
    g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
    g_autofree char *target = g_strdup_printf("exec:cat > '%s'", out);
    writers_start(w, 2);
    BackupOptions o = { .backup_file = target };
    g_autoptr(GError) err = NULL;
    uint64_t t_before = ticket(w);
    g_autofree char *uuid = backup_start(&o, &err);
    uint64_t t_after = ticket(w);
    if (uuid == NULL) {
        fail_msg("backup_start: %s", err->message);
    }
    backup_wait();
    writers_stop(w);
    status_expect("done", NULL);
    Archive a;
    load_archive(w, out, &a);
    check_point_in_time(w, &a, t_before, t_after);
    archive_clear(&a);
    world_free(w);
}

/*
 * Source read errors, injected by the fault-injection shim (tests/faultinj/faultinj.c):
 * the test runs this program again as a child with the shim preloaded and one rule per
 * round, "a read of drive-a.raw that covers byte N fails with EIO", armed by a file of
 * the round only while its backup runs.
 */
#define READ_ERROR_CHILD "--source-read-error-child"
static const uint64_t fail_offsets[2] = {
    5 * CS + 100, /* round 0: the background copy hits it */
    12 * CS,      /* round 1: a copy-before-write may */
};

static uint64_t file_size_or_zero(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static gpointer noop_thread(gpointer opaque)
{
    return NULL;
}

/* The child: both rounds, with the shim's rules armed in turn. */
static void test_source_read_error_child(void **state)
{
    const char *arm_dir = getenv("TEST_BACKUP_ARM_DIR");
    assert_non_null(arm_dir);
    g_autofree char *log = g_build_filename(arm_dir, "faults.log", NULL);

    /* This is the first test of the child process: a runtime that starts a helper
     * thread with the first thread of ours (ThreadSanitizer's) must have done so before
     * the leak check counts threads. */
    g_thread_join(g_thread_new("warm-up", noop_thread, NULL));

    for (int round = 0; round < 2; round++) {
        World *w = standard_world(300 + (uint32_t)round);
        g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
        g_autofree char *arm = g_strdup_printf("%s/round%d", arm_dir, round);
        Leaks leaks;
        leaks_take(&leaks);
        uint64_t fail_offset = fail_offsets[round];
        uint64_t logged = file_size_or_zero(log);
        assert_true(g_file_set_contents(arm, "", 0, NULL));
        writers_start(w, 2);
        BackupOptions o = {
            .backup_file = out,
            .speed = round == 0 ? 0 : 2 * 1024 * 1024,
        };
        g_autoptr(GError) err = NULL;
        g_autofree char *uuid = backup_start(&o, &err);
        if (uuid == NULL) {
            fail_msg("backup_start: %s", err->message);
        }
        backup_wait();
        writers_stop(w);
        g_unlink(arm);
        /* the shim did inject the fault */
        assert_true(file_size_or_zero(log) > logged);
        g_autofree char *want = g_strdup_printf("read drive-a at offset %" G_GUINT64_FORMAT
                                                ": Input/output error",
                                                fail_offset / CS * CS);
        status_expect("error", want);
        assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
        check_disks_final(w);
        world_free(w);
        leaks_check(&leaks);
    }
}

/* A sanitizer runtime this process runs with (it must come first in LD_PRELOAD). */
static int find_sanitizer_runtime(struct dl_phdr_info *info, size_t size, void *data)
{
    const char *name = info->dlpi_name;
    if (name != NULL && (strstr(name, "libasan.so") != NULL || strstr(name, "libtsan.so") != NULL)) {
        *(char **)data = g_strdup(name);
        return 1;
    }
    return 0;
}

static void test_source_read_error(void **state)
{
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
    assert_non_null(exe);
    g_autofree char *bindir = g_path_get_dirname(exe);
    g_autofree char *shim = g_build_filename(bindir, "..", "faultinj.so", NULL);
    if (!g_file_test(shim, G_FILE_TEST_EXISTS)) {
        fail_msg("%s not built (make test-build)", shim);
    }
    g_autofree char *dir = g_dir_make_tmp("test-backup-faults-XXXXXX", NULL);
    assert_non_null(dir);
    g_autofree char *log = g_build_filename(dir, "faults.log", NULL);
    g_autofree char *rules = g_strdup_printf(
        "op=pread|preadv,path=*/drive-a.raw,offset=%" G_GUINT64_FORMAT ",if=%s/round0;"
        "op=pread|preadv,path=*/drive-a.raw,offset=%" G_GUINT64_FORMAT ",if=%s/round1",
        fail_offsets[0], dir, fail_offsets[1], dir);
    g_autofree char *runtime = NULL;
    dl_iterate_phdr(find_sanitizer_runtime, &runtime);
    g_autofree char *preload = runtime != NULL ? g_strdup_printf("%s %s", runtime, shim)
                                               : g_strdup(shim);
    g_auto(GStrv) env = g_get_environ();
    env = g_environ_setenv(env, "FAULTINJ", rules, TRUE);
    env = g_environ_setenv(env, "FAULTINJ_LOG", log, TRUE);
    env = g_environ_setenv(env, "LD_PRELOAD", preload, TRUE);
    env = g_environ_setenv(env, "TEST_BACKUP_ARM_DIR", dir, TRUE);
    char *argv[] = { exe, (char *)READ_ERROR_CHILD, NULL };
    int status = 0;
    g_autoptr(GError) err = NULL;
    assert_true(g_spawn_sync(NULL, argv, env, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL,
                             &status, &err));
    bool ok = g_spawn_check_wait_status(status, &err);
    g_unlink(log);
    g_rmdir(dir);
    if (!ok) {
        fail_msg("the child run with injected read errors failed: %s", err->message);
    }
}

/* Query fields through a backup's life, previous-not-finished, jobs, configs. */
static void test_query_lifecycle(void **state)
{
    World *w = standard_world(400);
    world_add_disk(w, "drive-ro", 3 * CS, true);
    g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
    g_autofree char *conf = g_build_filename(w->dir, "vm.conf", NULL);
    g_autofree char *fw = g_build_filename(w->dir, "vm.fw", NULL);
    assert_true(g_file_set_contents(conf, "memory: 512\n", -1, NULL));
    assert_true(g_file_set_contents(fw, "[OPTIONS]\n", -1, NULL));
    events_reset();

    uint64_t total = w->disks[0].size + w->disks[1].size + w->disks[2].size;
    BackupOptions o = {
        .backup_file = out,
        .config_file = conf,
        .firewall_file = fw,
        .speed = 2 * 1024 * 1024, /* ~600 ms */
    };
    g_autoptr(GError) err = NULL;
    int64_t now = (int64_t)time(NULL);
    g_autofree char *uuid = backup_start(&o, &err);
    if (uuid == NULL) {
        fail_msg("backup_start: %s", err->message);
    }
    assert_int_equal(strlen(uuid), 36);

    BackupStatus st;
    backup_query(&st);
    assert_string_equal(st.status, "active");
    assert_null(st.errmsg);
    assert_int_equal(st.total, total);
    assert_int_equal(st.dirty, total);
    assert_int_equal(st.reused, 0);
    assert_true(st.transferred <= total);
    assert_true(st.start_time >= now && st.start_time <= now + 2);
    assert_int_equal(st.end_time, 0);
    assert_string_equal(st.backup_file, out);
    assert_string_equal(st.uuid, uuid);
    assert_false(st.finishing);
    backup_status_clear(&st);

    g_autoptr(GPtrArray) jobs = backup_query_jobs();
    assert_int_equal(jobs->len, 3); /* the read-only disk is not backed up by default */
    BackupJobInfo *ji = g_ptr_array_index(jobs, 1);
    assert_string_equal(ji->id, "drive-b");
    assert_string_equal(ji->type, "backup");
    assert_string_equal(ji->status, "running");
    assert_int_equal(ji->total_progress, ODD_SIZE);
    assert_null(ji->error);

    /* a second backup is refused, and leaves no file behind */
    g_autofree char *out2 = g_build_filename(w->dir, "second.vma", NULL);
    BackupOptions o2 = { .backup_file = out2 };
    g_autoptr(GError) err2 = NULL;
    assert_null(backup_start(&o2, &err2));
    assert_string_equal(err2->message, "previous backup not finished");
    assert_false(g_file_test(out2, G_FILE_TEST_EXISTS));

    /* progress moves */
    g_usleep(200000);
    backup_query(&st);
    assert_string_equal(st.status, "active");
    assert_true(st.transferred > 0 && st.transferred < total);
    backup_status_clear(&st);

    backup_wait();
    backup_query(&st);
    assert_string_equal(st.status, "done");
    assert_null(st.errmsg);
    assert_int_equal(st.transferred, total);
    assert_int_equal(st.zero_bytes, 0); /* stamps everywhere */
    assert_true(st.end_time >= st.start_time);
    assert_false(st.finishing);
    assert_string_equal(st.uuid, uuid);
    backup_status_clear(&st);
    g_autoptr(GPtrArray) jobs2 = backup_query_jobs();
    assert_int_equal(jobs2->len, 0);
    g_autofree char *ev = events_of("drive-a");
    assert_string_equal(ev, "created,running,waiting,pending,COMPLETED,concluded,null");

    Archive a;
    load_archive(w, out, &a);
    assert_string_equal(a.configs[0], "memory: 512\n");
    assert_string_equal(a.configs[1], "[OPTIONS]\n");
    assert_non_null(a.img[0]);
    assert_null(a.img[3]);
    archive_clear(&a);

    /* zero bytes: a discarded cluster is counted */
    g_autofree char *out3 = g_build_filename(w->dir, "third.vma", NULL);
    assert_int_equal(blockdev_write_zeroes(w->disks[2].bd, CS, 0, 0), 0);
    BackupOptions o3 = { .backup_file = out3, .devlist = "drive-c" };
    g_autofree char *uuid3 = backup_start(&o3, &err);
    assert_non_null(uuid3);
    assert_string_not_equal(uuid3, uuid);
    backup_wait();
    backup_query(&st);
    assert_string_equal(st.status, "done");
    assert_int_equal(st.total, CS);
    assert_int_equal(st.transferred, CS);
    assert_int_equal(st.zero_bytes, CS);
    backup_status_clear(&st);
    world_free(w);
}

/* "finishing": every cluster is with the writer, the target has not taken it all. */
static void test_finishing(void **state)
{
    World *w = world_new(450);
    world_add_disk(w, "drive-a", 1024 * 1024, false);
    Drain dr;
    int wfd = drain_start(&dr, -1, 0, 0);
    atomic_store(&dr.paused, 1);

    BackupOptions o = { .backup_file = "/dev/fdname/paused", .use_fd = true, .fd = wfd };
    g_autoptr(GError) err = NULL;
    g_autofree char *uuid = backup_start(&o, &err);
    if (uuid == NULL) {
        fail_msg("backup_start: %s", err->message);
    }
    BackupStatus st;
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    for (;;) {
        backup_query(&st);
        assert_string_equal(st.status, "active");
        if (st.finishing) {
            break;
        }
        backup_status_clear(&st);
        assert_true(g_get_monotonic_time() < deadline);
        g_usleep(5000);
    }
    assert_int_equal(st.transferred, st.total);
    assert_int_equal(st.end_time, 0);
    backup_status_clear(&st);
    g_autoptr(GPtrArray) jobs = backup_query_jobs();
    assert_int_equal(jobs->len, 1);
    assert_int_equal(((BackupJobInfo *)g_ptr_array_index(jobs, 0))->current_progress,
                     1024 * 1024);

    atomic_store(&dr.paused, 0);
    backup_wait();
    drain_join(&dr);
    status_expect("done", NULL);
    world_free(w);
}

static void expect_start_error(const BackupOptions *o, int code, const char *msg)
{
    g_autoptr(GError) err = NULL;
    char *uuid = backup_start(o, &err);

    if (uuid != NULL) {
        fail_msg("backup_start succeeded, expected '%s'", msg);
    }
    assert_true(g_error_matches(err, BACKUP_ERROR, code));
    assert_string_equal(err->message, msg);
}

static void test_start_errors(void **state)
{
    World *w = standard_world(500);
    g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
    g_autofree char *missing = g_build_filename(w->dir, "missing.conf", NULL);
    g_autofree char *missing_msg = g_strdup_printf("unable to read file '%s'", missing);
    g_autofree char *fifo = g_build_filename(w->dir, "fifo", NULL);
    Leaks leaks;
    leaks_take(&leaks);

    BackupOptions o = { .backup_file = out, .devlist = "drive-a,nope" };
    expect_start_error(&o, BACKUP_ERROR_DEVICE_NOT_FOUND, "Device 'nope' not found");
    o.devlist = "";
    expect_start_error(&o, BACKUP_ERROR_FAILED, "empty device list");
    o.devlist = ",;:";
    expect_start_error(&o, BACKUP_ERROR_FAILED, "empty device list");
    o.devlist = "drive-a:drive-a";
    expect_start_error(&o, BACKUP_ERROR_FAILED, "device 'drive-a' is listed twice");
    o.devlist = NULL;
    o.config_file = missing;
    expect_start_error(&o, BACKUP_ERROR_FAILED, missing_msg);
    o.config_file = NULL;
    o.firewall_file = missing;
    expect_start_error(&o, BACKUP_ERROR_FAILED, missing_msg);
    assert_false(g_file_test(out, G_FILE_TEST_EXISTS));

    /* an existing file is not overwritten */
    assert_true(g_file_set_contents(out, "keep", -1, NULL));
    o.firewall_file = NULL;
    g_autoptr(GError) err = NULL;
    assert_null(backup_start(&o, &err));
    assert_non_null(strstr(err->message, "File exists"));
    g_autofree char *keep = NULL;
    assert_true(g_file_get_contents(out, &keep, NULL, NULL));
    assert_string_equal(keep, "keep");
    g_unlink(out);

    /* a FIFO without a reader */
    assert_int_equal(mkfifo(fifo, 0600), 0);
    o.backup_file = fifo;
    g_clear_error(&err);
    assert_null(backup_start(&o, &err));
    assert_non_null(strstr(err->message, "no process has the FIFO open for reading"));
    g_unlink(fifo);

    /* a passed descriptor is closed on failure */
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    o.backup_file = "/dev/fdname/x";
    o.use_fd = true;
    o.fd = fd;
    o.devlist = "nope";
    expect_start_error(&o, BACKUP_ERROR_DEVICE_NOT_FOUND, "Device 'nope' not found");
    assert_int_equal(fcntl(fd, F_GETFD), -1);

    /* a fleecing directory that does not exist */
    g_autofree char *nodir = g_build_filename(w->dir, "nodir", NULL);
    BackupOptions o4 = { .backup_file = out, .fleecing_dir = nodir };
    g_clear_error(&err);
    assert_null(backup_start(&o4, &err));
    assert_true(g_str_has_prefix(err->message, "create fleecing file in "));
    assert_false(g_file_test(out, G_FILE_TEST_EXISTS));

    /* the previous (failed-to-start) attempts do not change query-backup's last status */
    world_free(w);
    leaks_check(&leaks);
}

/* A successful backup of a disk that keeps being written to, through a FIFO. */
static void test_fifo_target(void **state)
{
    World *w = standard_world(600);
    g_autofree char *fifo = g_build_filename(w->dir, "fifo", NULL);
    g_autofree char *out = g_build_filename(w->dir, "backup.vma", NULL);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    assert_true(rfd >= 0);
    assert_int_equal(fcntl(rfd, F_SETFL, 0), 0);
    int ofd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    Drain dr = { 0 };
    dr.rfd = rfd;
    dr.out_fd = ofd;

    writers_start(w, 2);
    BackupOptions o = { .backup_file = fifo, .max_workers = 3 };
    g_autoptr(GError) err = NULL;
    uint64_t t_before = ticket(w);
    g_autofree char *uuid = backup_start(&o, &err);
    uint64_t t_after = ticket(w);
    if (uuid == NULL) {
        fail_msg("backup_start: %s", err->message);
    }
    /* only now: a FIFO without a writer reads as end of file */
    dr.thread = g_thread_new("drain", drain_main, &dr);
    backup_wait();
    writers_stop(w);
    drain_join(&dr);
    status_expect("done", NULL);
    assert_true(g_file_test(fifo, G_FILE_TEST_EXISTS));
    g_unlink(fifo);
    Archive a;
    load_archive(w, out, &a);
    check_point_in_time(w, &a, t_before, t_after);
    archive_clear(&a);
    world_free(w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest child_tests[] = {
        cmocka_unit_test(test_source_read_error_child),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_before_any),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_query_lifecycle),
        cmocka_unit_test(test_finishing),
        cmocka_unit_test(test_point_in_time),
        cmocka_unit_test(test_fifo_target),
        cmocka_unit_test(test_target_exec_ok),
        cmocka_unit_test(test_memory_bound_spill),
        cmocka_unit_test(test_memory_exhausted),
        cmocka_unit_test(test_fleecing_limit),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_target_exec_false),
        cmocka_unit_test(test_target_reader_closes),
        cmocka_unit_test(test_target_dev_full),
        cmocka_unit_test(test_source_read_error),
    };

    signal(SIGPIPE, SIG_IGN);
    test_setup_events();
    if (argc > 1 && strcmp(argv[1], READ_ERROR_CHILD) == 0) {
        return cmocka_run_group_tests(child_tests, NULL, NULL);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
