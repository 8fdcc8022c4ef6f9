/*
 * test-reader.c — unit tests of the archive reader (vma-reader.c) and its input front
 * end (vma-input.c).
 *
 * Part 1 reads the fixtures in tests/data (archives written by the deployed Proxmox
 * tool) plainly and compressed, and reassembles the disks from the cluster records.
 * Part 2 runs the damaged fixtures in tests/data/negative. Part 3 builds archives in
 * memory with a small encoder of its own (header, blobs, extents, with correct MD5s)
 * to hit each check of the reader, cuts archives at every byte, and feeds one through
 * a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <bzlib.h>
#include <lzo/lzo1x.h>
#include <zlib.h>

#include "vma-format.h"
#include "vma-input.h"
#include "vma.h"

/* ---- helpers --------------------------------------------------------------------- */

static char *tmpdir;

static char *data_path(const char *name)
{
    const char *dir = g_getenv("TESTDATA");
    return g_build_filename(dir != NULL ? dir : "tests/data", name, NULL);
}

static GBytes *load(const char *name)
{
    g_autofree char *path = data_path(name);
    g_autoptr(GError) err = NULL;
    char *contents = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &contents, &len, &err)) {
        fail_msg("cannot read %s: %s", path, err->message);
    }
    return g_bytes_new_take(contents, len);
}

static char *tmp_file(const char *name, const void *data, size_t len)
{
    char *path = g_build_filename(tmpdir, name, NULL);
    g_autoptr(GError) err = NULL;

    if (!g_file_set_contents(path, data, (gssize)len, &err)) {
        fail_msg("cannot write %s: %s", path, err->message);
    }
    return path;
}

/* Open an in-memory archive through a temporary file. */
static G_GNUC_UNUSED VmaReader *open_bytes(const void *data, size_t len, GError **errp)
{
    g_autofree char *path = tmp_file("archive.vma", data, len);
    VmaReader *r = vma_reader_open(path, errp);
    g_unlink(path);
    return r;
}

static void assert_error_at(const GError *err, int code, const char *text, int line)
{
    if (err == NULL) {
        fail_msg("line %d: expected error %d containing \"%s\", got success", line, code,
                 text);
    } else if (err->domain != VMA_ERROR || err->code != code ||
               strstr(err->message, text) == NULL) {
        fail_msg("line %d: expected error %d containing \"%s\", got %d: %s", line, code,
                 text, err->code, err->message);
    }
}
#define assert_error(err, code, text) assert_error_at((err), (code), (text), __LINE__)

/* Reassembled devices of an archive. */
typedef struct Disks {
    GByteArray *dev[256];
} Disks;

static void disks_clear(Disks *d)
{
    for (unsigned i = 0; i < 256; i++) {
        if (d->dev[i] != NULL) {
            g_byte_array_unref(d->dev[i]);
            d->dev[i] = NULL;
        }
    }
}

/* Read every cluster and write it into the disk images (clipped at the device size,
 * except for vmstate, whose images grow). Returns what the last next_cluster did. */
static int read_all(VmaReader *r, Disks *d, GError **errp)
{
    VmaCluster c;
    int ret;

    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        const VmaDeviceInfo *info = vma_reader_get_device(r, id);
        if (info != NULL) {
            d->dev[id] = g_byte_array_new();
            if (!info->is_vmstate) {
                g_byte_array_set_size(d->dev[id], (guint)info->size);
                memset(d->dev[id]->data, 0, info->size);
            }
        }
    }
    while ((ret = vma_reader_next_cluster(r, &c, errp)) == 1) {
        const VmaDeviceInfo *info = vma_reader_get_device(r, c.dev_id);
        GByteArray *img = d->dev[c.dev_id];
        const uint8_t *src = c.data;
        uint64_t base = (uint64_t)c.cluster_num * VMA_CLUSTER_SIZE;

        assert_non_null(info);
        if (info->is_vmstate && img->len < base + VMA_CLUSTER_SIZE) {
            guint old = img->len;
            g_byte_array_set_size(img, (guint)(base + VMA_CLUSTER_SIZE));
            memset(img->data + old, 0, img->len - old);
        }
        for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
            if (!(c.mask & (1u << j))) {
                continue;
            }
            uint64_t off = base + (uint64_t)j * VMA_BLOCK_SIZE;
            if (off < img->len) {
                memcpy(img->data + off, src, MIN((uint64_t)VMA_BLOCK_SIZE, img->len - off));
            }
            src += VMA_BLOCK_SIZE;
        }
    }
    return ret;
}

static void assert_image(GByteArray *img, const char *name)
{
    g_autoptr(GBytes) want = load(name);

    assert_non_null(img);
    assert_int_equal(img->len, g_bytes_get_size(want));
    if (memcmp(img->data, g_bytes_get_data(want, NULL), img->len) != 0) {
        fail_msg("reassembled image differs from %s", name);
    }
}

static void assert_config(VmaReader *r, guint index, const char *name)
{
    g_autoptr(GBytes) want = load(name);
    const char *got_name = NULL;
    const uint8_t *data = NULL;
    size_t len = 0;

    assert_true(vma_reader_get_config(r, index, &got_name, &data, &len));
    assert_string_equal(got_name, name);
    assert_int_equal(len, g_bytes_get_size(want));
    assert_memory_equal(data, g_bytes_get_data(want, NULL), len);
}

static void assert_device(VmaReader *r, guint id, const char *name, uint64_t size,
                          bool vmstate)
{
    const VmaDeviceInfo *info = vma_reader_get_device(r, id);

    assert_non_null(info);
    assert_string_equal(info->name, name);
    assert_int_equal(info->size, size);
    assert_int_equal(info->is_vmstate, vmstate);
}

static void assert_uuid(VmaReader *r, const char *text)
{
    uint8_t uuid[16];
    char buf[37];

    vma_reader_get_uuid(r, uuid);
    vma_uuid_unparse(uuid, buf);
    assert_string_equal(buf, text);
}

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    g_autoptr(GDateTime) dt = g_date_time_new_utc(y, mo, d, h, mi, s);
    return g_date_time_to_unix(dt);
}

static void assert_only_devices(VmaReader *r, guint n)
{
    for (guint id = n + 1; id <= 255; id++) {
        assert_null(vma_reader_get_device(r, id));
    }
    assert_null(vma_reader_get_device(r, 0));
}

/* ---- part 1: fixtures ------------------------------------------------------------ */

static void check_ref_2dev(VmaReader *r, VmaCompression comp, uint64_t file_size)
{
    g_autoptr(GError) err = NULL;
    Disks d = { 0 };
    VmaReaderStats st;

    assert_int_equal(vma_reader_get_compression(r), comp);
    assert_uuid(r, "460ede6e-dfbf-4473-b4f8-579fa91ae3a4");
    assert_int_equal(vma_reader_get_ctime(r), utc(2026, 11, 26, 21, 40, 36));
    assert_int_equal(vma_reader_get_config_count(r), 2);
    assert_config(r, 0, "qemu-server.conf");
    assert_config(r, 1, "qemu-server.fw");
    assert_false(vma_reader_get_config(r, 2, NULL, NULL, NULL));
    assert_device(r, 1, "drive-scsi0", 1050112, false);
    assert_device(r, 2, "drive-efidisk0", 540672, false);
    assert_only_devices(r, 2);

    vma_reader_get_stats(r, &st);
    assert_int_equal(st.clusters_total, 17 + 9);
    assert_int_equal(st.clusters_seen, 0);

    assert_int_equal(read_all(r, &d, &err), 0);
    assert_null(err);
    assert_true(vma_reader_check_complete(r, 0, &err));
    assert_true(vma_reader_check_complete(r, 1, &err));
    assert_true(vma_reader_check_complete(r, 2, &err));
    assert_image(d.dev[1], "a.raw");
    assert_image(d.dev[2], "b.raw");
    disks_clear(&d);

    vma_reader_get_stats(r, &st);
    assert_int_equal(st.archive_bytes, 103424);
    assert_int_equal(st.input_bytes, file_size);
    assert_int_equal(st.input_size, file_size);
    assert_int_equal(st.clusters_seen, 26);
    /* every block within the two disks is either stored or counted as zero */
    assert_true(st.data_bytes >= 1050112 + 540672 - st.zero_bytes);
    assert_true(st.data_bytes - (1050112 + 540672 - st.zero_bytes) < 2 * VMA_BLOCK_SIZE);
    /* after the end: 0 again */
    VmaCluster c;
    assert_int_equal(vma_reader_next_cluster(r, &c, &err), 0);
}

static void test_ref_2dev_file(const char *name, VmaCompression comp)
{
    g_autofree char *path = data_path(name);
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    GStatBuf st;

    assert_null(err);
    assert_non_null(r);
    assert_int_equal(g_stat(path, &st), 0);
    check_ref_2dev(r, comp, (uint64_t)st.st_size);
}

static void test_ref_2dev(void **state)
{
    test_ref_2dev_file("ref-2dev.vma", VMA_COMPRESSION_NONE);
}

static void test_ref_2dev_gz(void **state)
{
    test_ref_2dev_file("ref-2dev.vma.gz", VMA_COMPRESSION_GZIP);
}

static void test_ref_2dev_lzo(void **state)
{
    test_ref_2dev_file("ref-2dev.vma.lzo", VMA_COMPRESSION_LZOP);
}

static void test_ref_2dev_zst(void **state)
{
    test_ref_2dev_file("ref-2dev.vma.zst", VMA_COMPRESSION_ZSTD);
}

static GBytes *bzip2_bytes(const void *data, size_t len, int level)
{
    unsigned int out_len = (unsigned int)(len + len / 100 + 600);
    char *out = g_malloc(out_len);

    assert_int_equal(BZ2_bzBuffToBuffCompress(out, &out_len, (char *)data, (unsigned)len,
                                              level, 0, 0), BZ_OK);
    return g_bytes_new_take(out, out_len);
}

static void test_ref_2dev_bz2(void **state)
{
    g_autoptr(GBytes) plain = load("ref-2dev.vma");
    g_autoptr(GBytes) bz = bzip2_bytes(g_bytes_get_data(plain, NULL),
                                       g_bytes_get_size(plain), 9);
    g_autofree char *path = tmp_file("ref-2dev.vma.bz2", g_bytes_get_data(bz, NULL),
                                     g_bytes_get_size(bz));
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);

    assert_null(err);
    check_ref_2dev(r, VMA_COMPRESSION_BZIP2, g_bytes_get_size(bz));
    g_unlink(path);
}

static void test_multiextent(void **state)
{
    g_autofree char *path = data_path("ref-multiextent.vma");
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    Disks d = { 0 };
    VmaCluster c;
    VmaReaderStats st;
    uint64_t extents[3] = { 0 };
    unsigned nextents = 0, n = 0;

    assert_null(err);
    assert_uuid(r, "44128256-599f-4caa-a63b-09c70a898c89");
    assert_int_equal(vma_reader_get_config_count(r), 1);
    assert_config(r, 0, "qemu-server.conf");
    assert_device(r, 1, "drive-virtio0", 8396800, false);
    assert_only_devices(r, 1);

    /* 58 + 58 + 13 entries: watch the extent offsets change */
    while (vma_reader_next_cluster(r, &c, &err) == 1) {
        if (nextents == 0 || extents[nextents - 1] != c.extent_offset) {
            assert_true(nextents < 3);
            extents[nextents++] = c.extent_offset;
        }
        n++;
    }
    assert_null(err);
    assert_int_equal(n, 129);
    assert_int_equal(nextents, 3);
    assert_int_equal(extents[0], 12800);
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.clusters_total, 129);
    assert_int_equal(st.clusters_seen, 129);
    assert_int_equal(st.archive_bytes, 4315136);
    assert_int_equal(st.data_bytes + 3 * 512 + 12800, 4315136);
    assert_true(vma_reader_check_complete(r, 0, &err));

    /* and again, reassembling */
    g_clear_pointer(&r, vma_reader_free);
    r = vma_reader_open(path, &err);
    assert_non_null(r);
    assert_int_equal(read_all(r, &d, &err), 0);
    assert_null(err);
    assert_image(d.dev[1], "c.raw");
    disks_clear(&d);
}

static void test_tiny(void **state)
{
    g_autofree char *path = data_path("tiny.vma");
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    Disks d = { 0 };

    assert_null(err);
    assert_uuid(r, "03721dde-1bcc-4973-adf5-66cd20f0ebe1");
    assert_device(r, 1, "drive-scsi0", 4096, false);
    assert_only_devices(r, 1);
    assert_int_equal(read_all(r, &d, &err), 0);
    assert_null(err);
    assert_image(d.dev[1], "tiny.raw");
    assert_true(vma_reader_check_complete(r, 0, &err));
    disks_clear(&d);
}

static void test_vmstate(void **state)
{
    g_autofree char *path = data_path("vms.vma");
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    Disks d = { 0 };
    VmaReaderStats st;

    assert_null(err);
    assert_uuid(r, "9709408c-2c94-4874-a39d-b98c14ad2799");
    assert_device(r, 1, "vmstate", 196608, true);
    assert_only_devices(r, 1);
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.clusters_total, 0);
    assert_int_equal(read_all(r, &d, &err), 0);
    assert_null(err);
    assert_image(d.dev[1], "vmstate.raw");
    assert_true(vma_reader_check_complete(r, 0, &err));
    assert_true(vma_reader_check_complete(r, 1, &err));
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.clusters_seen, 3);
    assert_int_equal(st.zero_bytes, VMA_BLOCK_SIZE);
    disks_clear(&d);
}

static void test_nodisk(void **state)
{
    g_autofree char *path = data_path("ref-nodisk.vma");
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    VmaCluster c;
    VmaReaderStats st;

    assert_null(err);
    assert_uuid(r, "e37c8c0d-1835-459f-b015-d87922fd8127");
    assert_int_equal(vma_reader_get_config_count(r), 1);
    assert_config(r, 0, "qemu-server.conf");
    assert_only_devices(r, 0);
    assert_int_equal(vma_reader_next_cluster(r, &c, &err), 0);
    assert_null(err);
    assert_true(vma_reader_check_complete(r, 0, &err));
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.archive_bytes, 13312);
    assert_int_equal(st.clusters_seen, 0);
    assert_int_equal(st.clusters_total, 0);
    /* no such device */
    assert_false(vma_reader_check_complete(r, 1, &err));
    assert_error(err, VMA_ERROR_INVALID, "no device with dev_id 1");
}

/* ---- part 2: damaged fixtures ---------------------------------------------------- */

/* Open a fixture and read it to the end; returns the error (NULL if none). */
static GError *run_fixture(const char *name, bool check_complete, Disks *d)
{
    g_autofree char *path = data_path(name);
    GError *err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    Disks local = { 0 };

    if (r == NULL) {
        return err;
    }
    if (read_all(r, d != NULL ? d : &local, &err) < 0) {
        disks_clear(&local);
        return err;
    }
    disks_clear(&local);
    if (check_complete && !vma_reader_check_complete(r, 0, &err)) {
        return err;
    }
    return NULL;
}

static void test_neg_bad_hdr(void **state)
{
    g_autoptr(GError) err = run_fixture("negative/bad-hdr.vma", true, NULL);
    assert_error(err, VMA_ERROR_CHECKSUM, "wrong vma header checksum");
}

static void test_neg_bad_exthdr(void **state)
{
    g_autoptr(GError) err = run_fixture("negative/bad-exthdr.vma", true, NULL);
    assert_error(err, VMA_ERROR_CHECKSUM, "extent at byte 12800: wrong extent header checksum");
}

static void test_neg_bad_data(void **state)
{
    /* payload has no checksum in this format: it passes, with wrong data */
    Disks d = { 0 };
    g_autoptr(GError) err = run_fixture("negative/bad-data.vma", true, &d);
    g_autoptr(GBytes) a = load("a.raw");
    g_autoptr(GBytes) b = load("b.raw");

    assert_null(err);
    assert_true(memcmp(d.dev[1]->data, g_bytes_get_data(a, NULL), d.dev[1]->len) != 0 ||
                memcmp(d.dev[2]->data, g_bytes_get_data(b, NULL), d.dev[2]->len) != 0);
    disks_clear(&d);
}

static void test_neg_trunc_mid(void **state)
{
    g_autoptr(GError) err = run_fixture("negative/trunc-mid.vma", true, NULL);
    assert_error(err, VMA_ERROR_TRUNCATED, "short vma extent (89624 < 90624)");
}

static void test_neg_trunc_ext_boundary(void **state)
{
    g_autofree char *path = data_path("negative/trunc-ext-boundary.vma");
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    VmaCluster c;

    assert_non_null(r);
    assert_int_equal(vma_reader_next_cluster(r, &c, &err), 0);
    assert_null(err);
    assert_false(vma_reader_check_complete(r, 0, &err));
    assert_error(err, VMA_ERROR_MISSING, "detected missing cluster 0 for stream drive-scsi0");
    assert_non_null(strstr(err->message, "detected missing cluster 0 for stream drive-efidisk0"));
    g_clear_error(&err);
    assert_false(vma_reader_check_complete(r, 2, &err));
    assert_error(err, VMA_ERROR_MISSING, "detected missing cluster 0 for stream drive-efidisk0");
    assert_null(strstr(err->message, "drive-scsi0"));
}

static void test_neg_dup_extent(void **state)
{
    g_autoptr(GError) err = run_fixture("negative/dup-extent.vma", true, NULL);
    assert_error(err, VMA_ERROR_DUPLICATE, "found duplicated cluster 0 for stream drive-efidisk0");
    assert_non_null(strstr(err->message, "extent at byte 103424"));
}

static void test_neg_undeclared_dev(void **state)
{
    g_autoptr(GError) err = run_fixture("negative/undeclared-dev.vma", true, NULL);
    assert_error(err, VMA_ERROR_FORMAT, "extent at byte 12800: unknown device id 3");
}

static void test_neg_noblob(void **state)
{
    g_autoptr(GError) err = run_fixture("negative/noblob.vma", true, NULL);
    assert_error(err, VMA_ERROR_FORMAT, "wrong vma header size 12288");
}

/* ---- main ------------------------------------------------------------------------ */

static int setup_all(void **state)
{
    g_autoptr(GError) err = NULL;

    tmpdir = g_dir_make_tmp("test-reader-XXXXXX", &err);
    return tmpdir != NULL ? 0 : -1;
}

static int teardown_all(void **state)
{
    if (tmpdir != NULL) {
        g_autoptr(GDir) dir = g_dir_open(tmpdir, 0, NULL);
        const char *name;
        while (dir != NULL && (name = g_dir_read_name(dir)) != NULL) {
            g_autofree char *path = g_build_filename(tmpdir, name, NULL);
            g_unlink(path);
        }
        g_rmdir(tmpdir);
        g_clear_pointer(&tmpdir, g_free);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_2dev),
        cmocka_unit_test(test_ref_2dev_gz),
        cmocka_unit_test(test_ref_2dev_lzo),
        cmocka_unit_test(test_ref_2dev_zst),
        cmocka_unit_test(test_ref_2dev_bz2),
        cmocka_unit_test(test_multiextent),
        cmocka_unit_test(test_tiny),
        cmocka_unit_test(test_vmstate),
        cmocka_unit_test(test_nodisk),
        cmocka_unit_test(test_neg_bad_hdr),
        cmocka_unit_test(test_neg_bad_exthdr),
        cmocka_unit_test(test_neg_bad_data),
        cmocka_unit_test(test_neg_trunc_mid),
        cmocka_unit_test(test_neg_trunc_ext_boundary),
        cmocka_unit_test(test_neg_dup_extent),
        cmocka_unit_test(test_neg_undeclared_dev),
        cmocka_unit_test(test_neg_noblob),
    };

    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
