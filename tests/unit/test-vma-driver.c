/*
 * test-vma-driver.c — unit tests of the vma block driver (block/vma.c) and the archive
 * index under it (vma-index.c).
 *
 * Each test builds its archives with the library's writer from an in-memory model of
 * the disks (odd sizes, zero clusters, clusters with some zero 4 KiB blocks, clusters
 * handed over in shuffled order and interleaved across devices), opens a device as a
 * node and checks every read and every block status answer against the model. The
 * error tests damage archives on purpose (a flipped bit in an extent header, a cut in
 * the data, a cut at an extent boundary) and check that the open fails with its message.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "block/block.h"
#include "blockdev.h"
#include "vma.h"

#define CL VMA_CLUSTER_SIZE
#define BLK VMA_BLOCK_SIZE

typedef struct Disk {
    const char *name;
    uint64_t size;
    uint8_t *data;          /* the model, size bytes */
} Disk;

static char *tmpdir;

static int setup(void **state)
{
    tmpdir = g_dir_make_tmp("test-vma-driver-XXXXXX", NULL);
    assert_non_null(tmpdir);
    return 0;
}

static int teardown(void **state)
{
    g_autoptr(GDir) d = g_dir_open(tmpdir, 0, NULL);
    const char *name;

    while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(tmpdir, name, NULL);
        g_unlink(p);
    }
    g_rmdir(tmpdir);
    g_clear_pointer(&tmpdir, g_free);
    return 0;
}

static char *tmp_path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

/* A model disk: seeded random content with zero clusters, partly zero clusters and
 * isolated zero blocks. */
static void disk_fill(Disk *d, uint32_t seed)
{
    GRand *rnd = g_rand_new_with_seed(seed);
    uint64_t clusters = (d->size + CL - 1) / CL;

    d->data = g_malloc0(d->size);
    for (uint64_t c = 0; c < clusters; c++) {
        int kind = g_rand_int_range(rnd, 0, 4);   /* 0 zero, 1 full, 2 partial, 3 one block */
        for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
            uint64_t off = c * CL + j * BLK;
            bool fill = kind == 1 || (kind == 2 && g_rand_boolean(rnd)) ||
                        (kind == 3 && j == 7);
            if (!fill || off >= d->size) {
                continue;
            }
            uint64_t n = MIN((uint64_t)BLK, d->size - off);
            for (uint64_t i = 0; i < n; i++) {
                d->data[off + i] = (uint8_t)g_rand_int_range(rnd, 1, 256);
            }
        }
    }
    g_rand_free(rnd);
}

static void disk_clear(Disk *d)
{
    g_clear_pointer(&d->data, g_free);
}

/* Write an archive of the disks to path; clusters in shuffled order, interleaved. A
 * vmstate stream is added when with_vmstate. */
static void write_archive(const char *path, Disk *disks, unsigned n, bool with_vmstate)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaWriter) w = vma_writer_new(path, NULL, &err);
    GArray *todo = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    int ids[8];
    int vmstate_id = -1;

    assert_non_null(w);
    for (unsigned i = 0; i < n; i++) {
        ids[i] = vma_writer_register_device(w, disks[i].name, disks[i].size, &err);
        assert_true(ids[i] > 0);
        uint64_t clusters = (disks[i].size + CL - 1) / CL;
        for (uint64_t c = 0; c < clusters; c++) {
            uint64_t v = (uint64_t)i << 32 | c;
            g_array_append_val(todo, v);
        }
    }
    if (with_vmstate) {
        vmstate_id = vma_writer_register_device(w, "vmstate", 3 * CL, &err);
        assert_true(vmstate_id > 0);
    }
    GRand *rnd = g_rand_new_with_seed(42);
    for (guint i = todo->len; i > 1; i--) {
        guint j = (guint)g_rand_int_range(rnd, 0, (gint32)i);
        uint64_t t = g_array_index(todo, uint64_t, i - 1);
        g_array_index(todo, uint64_t, i - 1) = g_array_index(todo, uint64_t, j);
        g_array_index(todo, uint64_t, j) = t;
    }
    g_rand_free(rnd);
    for (guint i = 0; i < todo->len; i++) {
        uint64_t v = g_array_index(todo, uint64_t, i);
        Disk *d = &disks[v >> 32];
        uint32_t c = (uint32_t)v;
        uint64_t off = (uint64_t)c * CL;
        uint64_t len = MIN((uint64_t)CL, d->size - off);
        void *buf = NULL;
        if (!vma_buffer_is_zero(d->data + off, len)) {
            buf = vma_cluster_alloc();
            memset(buf, 0, CL);
            memcpy(buf, d->data + off, len);
        }
        assert_true(vma_writer_write_cluster(w, (uint8_t)ids[v >> 32], c, buf, 0, &err));
        if (with_vmstate && i < 3) {
            void *vs = vma_cluster_alloc();
            memset(vs, 0x5a, CL);
            assert_true(vma_writer_write_cluster(w, (uint8_t)vmstate_id, i, vs, 0, &err));
        }
    }
    g_array_unref(todo);
    assert_true(vma_writer_close(w, &err));
}

static BlockNode *open_node(const char *path, const char *device, bool read_only,
                            GError **errp)
{
    BlockDevOptions opts = {
        .node_name = "n0",
        .driver = "vma",
        .filename = path,
        .read_only = read_only,
        .device = device,
    };
    return bnode_open(&bdrv_vma, &opts, errp);
}

static BlockNode *open_ok(const char *path, const char *device)
{
    g_autoptr(GError) err = NULL;
    BlockNode *n = open_node(path, device, true, &err);
    if (n == NULL) {
        fail_msg("open %s %s: %s", path, device, err->message);
    }
    return n;
}

static void expect_open_error(const char *path, const char *device, const char *needle)
{
    g_autoptr(GError) err = NULL;
    BlockNode *n = open_node(path, device, true, &err);
    if (n != NULL) {
        bnode_unref(n);
        fail_msg("open %s %s succeeded; expected an error with \"%s\"", path, device, needle);
    }
    if (strstr(err->message, needle) == NULL) {
        fail_msg("open %s: error \"%s\" lacks \"%s\"", path, err->message, needle);
    }
}

/* Every byte, by whole-disk and by random reads (some as 3 iovecs), and every block's
 * status, against the model. */
static void check_node(BlockNode *n, const Disk *d)
{
    assert_int_equal(n->size, d->size);
    assert_true(n->read_only);
    g_autofree uint8_t *buf = g_malloc(d->size);
    assert_int_equal(bnode_pread(n, buf, d->size, 0), 0);
    assert_memory_equal(buf, d->data, d->size);

    GRand *rnd = g_rand_new_with_seed(7);
    for (int i = 0; i < 300; i++) {
        uint64_t off = (uint64_t)g_rand_double_range(rnd, 0, (double)d->size);
        uint64_t want = (uint64_t)g_rand_int_range(rnd, 1, 5 * CL);
        uint64_t len = MIN(d->size - off, want);
        if (len == 0) {
            continue;
        }
        memset(buf, 0xee, len);
        if (i % 2 == 0 || len < 3) {
            int r = bnode_pread(n, buf, len, off);
            if (r != 0) {
                fail_msg("pread %" PRIu64 "+%" PRIu64 ": %s", off, len, g_strerror(-r));
            }
        } else {
            uint64_t a = len / 3, b = len / 2;
            struct iovec iov[3] = {
                { buf, a }, { buf + a, b - a }, { buf + b, len - b },
            };
            int r = bnode_preadv(n, iov, 3, off);
            if (r != 0) {
                fail_msg("preadv 3 iovecs %" PRIu64 "+%" PRIu64 ": %s", off, len,
                         g_strerror(-r));
            }
        }
        if (memcmp(buf, d->data + off, len) != 0) {
            fail_msg("read %" PRIu64 "+%" PRIu64 " differs", off, len);
        }
    }
    g_rand_free(rnd);

    /* block status: runs cover the disk, each block's kind matches the model */
    for (uint64_t pos = 0; pos < d->size;) {
        uint64_t pnum = 0;
        bool hole = false;
        assert_int_equal(bnode_block_status(n, pos, d->size - pos, &pnum, &hole), 0);
        assert_true(pnum > 0 && pnum <= d->size - pos);
        for (uint64_t b = pos; b < pos + pnum; b = (b / BLK + 1) * BLK) {
            uint64_t bstart = b / BLK * BLK;
            uint64_t blen = MIN((uint64_t)BLK, d->size - bstart);
            bool zero = vma_buffer_is_zero(d->data + bstart, blen);
            if (zero != hole) {
                fail_msg("block at %" PRIu64 ": status %s, model %s", bstart,
                         hole ? "hole" : "data", zero ? "zero" : "data");
            }
        }
        /* maximal: the next block has the other kind */
        if (pos + pnum < d->size) {
            uint64_t nb = pos + pnum;
            bool zero = vma_buffer_is_zero(d->data + nb, MIN((uint64_t)BLK, d->size - nb));
            assert_true(zero != hole);
        }
        pos += pnum;
    }
    /* a status request shorter than the run is cut at its length */
    uint64_t pnum = 0;
    bool hole;
    assert_int_equal(bnode_block_status(n, 1, 1, &pnum, &hole), 0);
    assert_int_equal(pnum, 1);
}

/* ---- tests ---- */

static void test_reads_and_status(void **state)
{
    Disk disks[3] = {
        { "drive-scsi0", 40 * CL + 5000, NULL },     /* odd size: partial last block */
        { "drive-virtio1", 1 * CL + 512, NULL },
        { "drive-efidisk0", 540672, NULL },          /* 8.25 clusters */
    };
    g_autofree char *path = tmp_path("a.vma");

    for (unsigned i = 0; i < 3; i++) {
        disk_fill(&disks[i], 100 + i);
    }
    write_archive(path, disks, 3, true);
    for (unsigned i = 0; i < 3; i++) {
        BlockNode *n = open_ok(path, disks[i].name);
        check_node(n, &disks[i]);
        bnode_unref(n);
        disk_clear(&disks[i]);
    }
}

static void test_contiguous_reads_merge(void **state)
{
    /* A disk of full clusters written in order: one read over many clusters and a read
     * that crosses an extent boundary return exactly the model. */
    Disk d = { "drive-scsi0", 200 * CL, NULL };
    g_autofree char *path = tmp_path("full.vma");
    GRand *rnd = g_rand_new_with_seed(3);

    d.data = g_malloc(d.size);
    for (uint64_t i = 0; i < d.size; i++) {
        d.data[i] = (uint8_t)g_rand_int_range(rnd, 1, 256);
    }
    g_rand_free(rnd);
    write_archive(path, &d, 1, false);
    BlockNode *n = open_ok(path, d.name);
    g_autofree uint8_t *buf = g_malloc(d.size);
    assert_int_equal(bnode_pread(n, buf, 100 * CL + 77, 57 * CL - 5), 0);
    assert_memory_equal(buf, d.data + 57 * CL - 5, 100 * CL + 77);
    uint64_t pnum;
    bool hole;
    assert_int_equal(bnode_block_status(n, 0, d.size, &pnum, &hole), 0);
    assert_false(hole);
    assert_int_equal(pnum, d.size);
    bnode_unref(n);
    disk_clear(&d);
}

static void test_writes_refused(void **state)
{
    Disk d = { "drive-scsi0", 3 * CL, NULL };
    g_autofree char *path = tmp_path("w.vma");
    g_autoptr(GError) err = NULL;
    uint8_t buf[512] = { 1 };

    disk_fill(&d, 9);
    write_archive(path, &d, 1, false);
    assert_null(open_node(path, d.name, false, &err));
    assert_non_null(strstr(err->message, "Block node is read-only"));
    BlockNode *n = open_ok(path, d.name);
    assert_int_equal(bnode_pwrite(n, buf, sizeof(buf), 0, 0), -EPERM);
    assert_int_equal(bnode_write_zeroes(n, 4096, 0, 0), -EPERM);
    assert_int_equal(bnode_discard(n, 4096, 0), -EPERM);
    assert_int_equal(bnode_flush(n), 0);
    assert_int_equal(bnode_pread(n, buf, sizeof(buf), d.size - 100), -EINVAL);
    bnode_unref(n);
    disk_clear(&d);
}

static void test_open_errors(void **state)
{
    Disk disks[2] = { { "drive-scsi0", 100 * CL, NULL }, { "drive-scsi1", 3 * CL, NULL } };
    g_autofree char *path = tmp_path("e.vma");

    disk_fill(&disks[0], 1);
    disk_fill(&disks[1], 2);
    write_archive(path, disks, 2, true);
    expect_open_error(path, "drive-scsi9", "no device drive-scsi9 (its devices: drive-scsi0, "
                                           "drive-scsi1)");
    expect_open_error(path, "vmstate", "vmstate is the VM state stream, not a disk");

    g_autofree char *data = NULL;
    gsize len = 0;
    assert_true(g_file_get_contents(path, &data, &len, NULL));
    uint32_t header_size = GUINT32_FROM_BE(*(uint32_t *)(data + 56));

    /* a flipped bit in the first extent header */
    g_autofree char *bad = tmp_path("bad-ext.vma");
    data[header_size + 100] ^= 0x10;
    assert_true(g_file_set_contents(bad, data, (gssize)len, NULL));
    expect_open_error(bad, "drive-scsi0", "wrong extent header checksum");
    data[header_size + 100] ^= 0x10;

    /* a flipped bit in the header */
    g_autofree char *badh = tmp_path("bad-head.vma");
    data[5000] ^= 0x01;
    assert_true(g_file_set_contents(badh, data, (gssize)len, NULL));
    expect_open_error(badh, "drive-scsi0", "wrong vma header checksum");
    data[5000] ^= 0x01;

    /* cut inside the data of the last extent */
    g_autofree char *cut = tmp_path("cut.vma");
    assert_true(g_file_set_contents(cut, data, (gssize)len - 4096, NULL));
    expect_open_error(cut, "drive-scsi0", "short vma extent");

    /* cut inside an extent header */
    g_autofree char *cut2 = tmp_path("cut2.vma");
    assert_true(g_file_set_contents(cut2, data, (gssize)header_size + 100, NULL));
    expect_open_error(cut2, "drive-scsi0", "short extent header");

    /* cut at an extent boundary: clusters are missing */
    g_autofree char *cut3 = tmp_path("cut3.vma");
    assert_true(g_file_set_contents(cut3, data, (gssize)header_size, NULL));
    expect_open_error(cut3, "drive-scsi0", "detected missing cluster 0 for stream drive-scsi0");

    /* compressed (zstd magic) and not seekable */
    g_autofree char *zst = tmp_path("c.vma.zst");
    static const char zmagic[8] = { 0x28, (char)0xb5, 0x2f, (char)0xfd, 0, 0, 0, 0 };
    assert_true(g_file_set_contents(zst, zmagic, sizeof(zmagic), NULL));
    expect_open_error(zst, "drive-scsi0", "decompress it first (zstd -d");
    g_autofree char *fifo = tmp_path("fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_open_error(fifo, "drive-scsi0", "not a regular file or block device");
    expect_open_error("/nonexistent/x.vma", "drive-scsi0", "No such file");

    /* base archives of a full archive are not part of its chain */
    g_autoptr(GError) err = NULL;
    const char *const base[] = { path, NULL };
    VmaIndex *ix = vma_index_open(path, "drive-scsi0", base, &err);
    assert_null(ix);
    assert_non_null(err);
    disk_clear(&disks[0]);
    disk_clear(&disks[1]);
}

static void test_index_memory(void **state)
{
    /* 64 GiB, all zero but one cluster in each of 4 regions: the index holds 4 chunks
     * (4 KiB each) and the top level (2048 words), nothing per zero cluster. */
    g_autofree char *path = tmp_path("sparse.vma");
    g_autoptr(GError) err = NULL;
    uint64_t size = UINT64_C(64) << 30;
    uint32_t clusters = (uint32_t)(size / CL);
    g_autoptr(VmaWriter) w = vma_writer_new(path, NULL, &err);
    int id = vma_writer_register_device(w, "drive-scsi0", size, &err);

    assert_true(id > 0);
    for (uint32_t c = 0; c < clusters; c++) {
        void *buf = NULL;
        if (c % 262144 == 5) {
            buf = vma_cluster_alloc();
            memset(buf, 0xab, CL);
        }
        assert_true(vma_writer_write_cluster(w, (uint8_t)id, c, buf, 0, &err));
    }
    assert_true(vma_writer_close(w, &err));
    g_autoptr(VmaIndex) ix = vma_index_open(path, "drive-scsi0", NULL, &err);
    assert_non_null(ix);
    size_t mem = vma_index_get_memory(ix);
    assert_true(mem >= 4 * 4096 + 2048 * 8);
    assert_true(mem < 4 * 4200 + 2048 * 8 + 8192);

    uint8_t buf[CL];
    assert_int_equal(vma_index_preadv(ix, &(struct iovec){ buf, CL }, 1,
                                      (uint64_t)262144 * 2 * CL + 5 * CL), 0);
    assert_int_equal(buf[0], 0xab);
    assert_int_equal(buf[CL - 1], 0xab);
    uint64_t pnum;
    bool zero;
    assert_int_equal(vma_index_block_status(ix, 6 * CL, size - 6 * CL, &pnum, &zero), 0);
    assert_true(zero);
    assert_int_equal(pnum, (uint64_t)262144 * CL - 1 * CL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_and_status),
        cmocka_unit_test(test_contiguous_reads_merge),
        cmocka_unit_test(test_writes_refused),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_index_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
