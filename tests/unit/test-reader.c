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
#include <zstd.h>

#include "vma-format.h"
#include "vma-input.h"
#include "vma.h"

#include "test-helpers.h"

/* ---- helpers --------------------------------------------------------------------- */

static char *tmpdir;

/* Open an in-memory archive through a temporary file. */
static VmaReader *open_bytes(const void *data, size_t len, GError **errp)
{
    g_autofree char *path = th_file_write(tmpdir, "archive.vma", data, len);
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
    g_autoptr(GBytes) want = th_testdata_read(name);

    assert_non_null(img);
    assert_int_equal(img->len, g_bytes_get_size(want));
    if (memcmp(img->data, g_bytes_get_data(want, NULL), img->len) != 0) {
        fail_msg("reassembled image differs from %s", name);
    }
}

static void assert_config(VmaReader *r, guint index, const char *name)
{
    g_autoptr(GBytes) want = th_testdata_read(name);
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
    g_autofree char *path = th_testdata_path(name);
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
    g_autoptr(GBytes) plain = th_testdata_read("ref-2dev.vma");
    g_autoptr(GBytes) bz = bzip2_bytes(g_bytes_get_data(plain, NULL),
                                       g_bytes_get_size(plain), 9);
    g_autofree char *path = th_file_write(tmpdir, "ref-2dev.vma.bz2",
                                          g_bytes_get_data(bz, NULL), g_bytes_get_size(bz));
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);

    assert_null(err);
    check_ref_2dev(r, VMA_COMPRESSION_BZIP2, g_bytes_get_size(bz));
    g_unlink(path);
}

static void test_multiextent(void **state)
{
    g_autofree char *path = th_testdata_path("ref-multiextent.vma");
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
    g_autofree char *path = th_testdata_path("tiny.vma");
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
    g_autofree char *path = th_testdata_path("vms.vma");
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
    g_autofree char *path = th_testdata_path("ref-nodisk.vma");
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
    g_autofree char *path = th_testdata_path(name);
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
    g_autoptr(GBytes) a = th_testdata_read("a.raw");
    g_autoptr(GBytes) b = th_testdata_read("b.raw");

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
    g_autofree char *path = th_testdata_path("negative/trunc-ext-boundary.vma");
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

/* ---- part 3: crafted archives ---------------------------------------------------- */

static const uint8_t test_uuid[16] = { 0x5e, 0x1f, 0x00, 0x42, 0x9a, 0x3b, 0x4c, 0x7d,
                                       0x8e, 0x21, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };

static void md5(const uint8_t *data, size_t len, uint8_t out[16])
{
    g_autoptr(GChecksum) cs = g_checksum_new(G_CHECKSUM_MD5);
    gsize n = 16;

    g_checksum_update(cs, data, (gssize)len);
    g_checksum_get_digest(cs, out, &n);
}

/* A header to encode; fields left at -1 are computed. */
typedef struct Hdr {
    uint8_t uuid[16];
    int64_t ctime;
    uint32_t version;
    GByteArray *blob;                 /* the blob region; byte 0 unused */
    uint32_t cfg_name[256];
    uint32_t cfg_data[256];
    uint32_t dev_name[256];
    uint64_t dev_size[256];
    int64_t header_size;
    int64_t blob_offset;
    int64_t blob_size;
} Hdr;

static Hdr *hdr_new(void)
{
    Hdr *h = g_new0(Hdr, 1);
    uint8_t zero = 0;

    memcpy(h->uuid, test_uuid, 16);
    h->ctime = 1700000000;
    h->version = 1;
    h->blob = g_byte_array_new();
    g_byte_array_append(h->blob, &zero, 1);
    h->header_size = h->blob_offset = h->blob_size = -1;
    return h;
}

static void hdr_free(Hdr *h)
{
    g_byte_array_unref(h->blob);
    g_free(h);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Hdr, hdr_free)

static uint32_t blob_add(Hdr *h, const void *data, size_t len)
{
    uint32_t off = h->blob->len;
    uint8_t l[2] = { (uint8_t)len, (uint8_t)(len >> 8) };

    g_byte_array_append(h->blob, l, 2);
    g_byte_array_append(h->blob, data, (guint)len);
    return off;
}

static uint32_t blob_str(Hdr *h, const char *s)
{
    return blob_add(h, s, strlen(s) + 1);
}

static void hdr_config(Hdr *h, unsigned i, const char *name, const char *data)
{
    h->cfg_name[i] = blob_str(h, name);
    h->cfg_data[i] = blob_add(h, data, strlen(data));
}

static void hdr_device(Hdr *h, unsigned id, const char *name, uint64_t size)
{
    h->dev_name[id] = blob_str(h, name);
    h->dev_size[id] = size;
}

/* Append the encoded header to out. */
static void hdr_write(const Hdr *h, GByteArray *out)
{
    uint32_t blob_off = h->blob_offset >= 0 ? (uint32_t)h->blob_offset : 12288;
    uint32_t blob_size = h->blob_size >= 0 ? (uint32_t)h->blob_size : h->blob->len;
    size_t natural = (MAX(blob_off, 12288u) + h->blob->len + 511) / 512 * 512;
    uint32_t size = h->header_size >= 0 ? (uint32_t)h->header_size : (uint32_t)natural;
    /* an absurd header_size (a test of the reader's bound) is not written out */
    size_t len = MIN(MAX(size, 12288u), (size_t)VMA_HEADER_MAX_SIZE + 512);
    g_autofree uint8_t *buf = g_malloc0(len);

    memcpy(buf, "VMA", 4);
    th_put_be32(buf, 4, h->version);
    memcpy(buf + 8, h->uuid, 16);
    th_put_be64(buf, 24, (uint64_t)h->ctime);
    th_put_be32(buf, 48, blob_off);
    th_put_be32(buf, 52, blob_size);
    th_put_be32(buf, 56, size);
    for (unsigned i = 0; i < 256; i++) {
        th_put_be32(buf, 2044 + 4 * i, h->cfg_name[i]);
        th_put_be32(buf, 3068 + 4 * i, h->cfg_data[i]);
        th_put_be32(buf, 4096 + 32 * i, h->dev_name[i]);
        th_put_be64(buf, 4096 + 32 * i + 8, h->dev_size[i]);
    }
    if ((size_t)blob_off + h->blob->len <= len) {
        memcpy(buf + blob_off, h->blob->data, h->blob->len);
    }
    md5(buf, len, buf + 32);
    g_byte_array_append(out, buf, (guint)len);
}

typedef struct Entry {
    uint8_t dev;
    uint32_t cluster;
    uint16_t mask;
} Entry;

typedef struct ExtOpts {
    bool set_block_count;
    uint16_t block_count;
    const uint8_t *uuid;
    const char *magic;
    uint16_t reserved;
    uint8_t entry_reserved;     /* put into the last entry */
    bool bad_md5;
} ExtOpts;

static uint8_t block_byte(uint8_t dev, uint32_t cluster, unsigned j)
{
    return (uint8_t)((dev * 37u + cluster * 11u + j * 3u) | 1u);
}

/* Append an extent with entries e[0..n-1]; stored blocks are filled with block_byte(). */
static void ext_write(GByteArray *out, const Entry *e, unsigned n, const ExtOpts *o)
{
    static const ExtOpts defaults = { 0 };
    uint8_t hdr[512] = { 0 };
    unsigned blocks = 0;
    uint8_t block[4096];

    assert_true(n <= VMA_EXTENT_SLOTS);
    o = o != NULL ? o : &defaults;
    memcpy(hdr, o->magic != NULL ? o->magic : "VMAE", 4);
    th_put_be16(hdr, 4, o->reserved);
    memcpy(hdr + 8, o->uuid != NULL ? o->uuid : test_uuid, 16);
    for (unsigned i = 0; i < n; i++) {
        uint64_t bi = vma_blockinfo_pack(e[i].mask, e[i].dev, e[i].cluster);
        if (i == n - 1) {
            bi |= (uint64_t)o->entry_reserved << 40;
        }
        th_put_be64(hdr, 40 + 8 * i, bi);
        if (e[i].dev != 0) {
            blocks += (unsigned)__builtin_popcount(e[i].mask);
        }
    }
    th_put_be16(hdr, 6, o->set_block_count ? o->block_count : (uint16_t)blocks);
    md5(hdr, sizeof(hdr), hdr + 24);
    if (o->bad_md5) {
        hdr[24] ^= 1;
    }
    g_byte_array_append(out, hdr, sizeof(hdr));
    for (unsigned i = 0; i < n; i++) {
        for (unsigned j = 0; j < 16 && e[i].dev != 0; j++) {
            if (e[i].mask & (1u << j)) {
                memset(block, block_byte(e[i].dev, e[i].cluster, j), sizeof(block));
                g_byte_array_append(out, block, sizeof(block));
            }
        }
    }
}

/* Whether read_check() compares the data (off while reading damaged input). */
static bool check_data = true;

/* Read all clusters, checking each stored block against block_byte(). Returns the
 * last next_cluster result; *count = clusters returned. */
static int read_check(VmaReader *r, unsigned *count, GError **errp)
{
    VmaCluster c;
    int ret;

    *count = 0;
    while ((ret = vma_reader_next_cluster(r, &c, errp)) == 1) {
        const uint8_t *p = c.data;
        for (unsigned j = 0; j < 16; j++) {
            if (c.mask & (1u << j)) {
                uint8_t want = block_byte(c.dev_id, c.cluster_num, j);
                if (check_data && (p[0] != want || p[4095] != want)) {
                    fail_msg("dev %u cluster %u block %u: wrong data", c.dev_id,
                             c.cluster_num, j);
                }
                p += 4096;
            }
        }
        (*count)++;
    }
    return ret;
}

/* Header of the small test archive: one config, a 3-cluster disk (last cluster
 * partial) and a vmstate stream. */
static void small_header(GByteArray *out)
{
    g_autoptr(Hdr) h = hdr_new();

    hdr_config(h, 0, "qemu-server.conf", "name: test\n");
    hdr_device(h, 1, "drive-scsi0", 3 * 65536 - 1000);
    hdr_device(h, 2, "vmstate", 2 * 65536);
    hdr_write(h, out);
}

#define SMALL_SIZE 38912
static const size_t small_boundaries[] = { 12800, 33792, 38400 };

/* The small archive: header + 3 extents (5, 1 and 0 data blocks). */
static GByteArray *small_archive(void)
{
    GByteArray *out = g_byte_array_new();
    const Entry e1[] = { { 1, 0, 0x0101 }, { 2, 0, 0x0001 }, { 1, 2, 0x0003 } };
    const Entry e2[] = { { 2, 1, 0x8000 }, { 2, 2, 0x0000 } };
    const Entry e3[] = { { 1, 1, 0x0000 } };

    small_header(out);
    assert_int_equal(out->len, small_boundaries[0]);
    ext_write(out, e1, G_N_ELEMENTS(e1), NULL);
    assert_int_equal(out->len, small_boundaries[1]);
    ext_write(out, e2, G_N_ELEMENTS(e2), NULL);
    assert_int_equal(out->len, small_boundaries[2]);
    ext_write(out, e3, G_N_ELEMENTS(e3), NULL);
    assert_int_equal(out->len, SMALL_SIZE);
    return out;
}

/* Open an archive built of header hdr and one extent of entries e. */
static VmaReader *open_one_extent(const Hdr *h, const Entry *e, unsigned n, const ExtOpts *o,
                                  GError **errp)
{
    g_autoptr(GByteArray) a = g_byte_array_new();

    hdr_write(h, a);
    ext_write(a, e, n, o);
    return open_bytes(a->data, a->len, errp);
}

/* Header with one disk drive-scsi0 of size bytes. */
static Hdr *disk_header(uint64_t size)
{
    Hdr *h = hdr_new();
    hdr_device(h, 1, "drive-scsi0", size);
    return h;
}

/* Read an archive of one extent to its end and return the error. */
static GError *one_extent_error(const Hdr *h, const Entry *e, unsigned n, const ExtOpts *o)
{
    GError *err = NULL;
    g_autoptr(VmaReader) r = open_one_extent(h, e, n, o, &err);
    unsigned count;

    assert_non_null(r);
    if (read_check(r, &count, &err) == 0) {
        assert_null(err);
    }
    return err;
}

static void test_small(void **state)
{
    g_autoptr(GByteArray) a = small_archive();
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = open_bytes(a->data, a->len, &err);
    unsigned count;
    VmaReaderStats st;

    assert_null(err);
    assert_int_equal(vma_reader_get_compression(r), VMA_COMPRESSION_NONE);
    assert_int_equal(vma_reader_get_ctime(r), 1700000000);
    assert_uuid(r, "5e1f0042-9a3b-4c7d-8e21-334455667788");
    assert_device(r, 1, "drive-scsi0", 3 * 65536 - 1000, false);
    assert_device(r, 2, "vmstate", 2 * 65536, true);
    assert_int_equal(read_check(r, &count, &err), 0);
    assert_null(err);
    assert_int_equal(count, 6);
    assert_true(vma_reader_check_complete(r, 0, &err));
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.archive_bytes, SMALL_SIZE);
    assert_int_equal(st.clusters_seen, 6);
    assert_int_equal(st.clusters_total, 3);
    assert_int_equal(st.data_bytes, 6 * 4096);
    /* disk: 14 + 16 + (14 zero blocks of the last cluster, the one straddling the end
     * clipped at the size); vmstate: 15 + 15 (cluster 2 is beyond its size) */
    assert_int_equal(st.zero_bytes, (14 + 16 + 13) * 4096ull + (4096 - 1000) +
                                        (15 + 15) * 4096ull);
}

static void test_bad_magic(void **state)
{
    static const char junk[] = "this is not an archive at all, but it is long enough";
    g_autoptr(GError) err = NULL;
    g_autoptr(VmaReader) r = open_bytes(junk, sizeof(junk), &err);

    assert_null(r);
    assert_error(err, VMA_ERROR_FORMAT, "not a VMA archive (bad magic)");
    g_clear_error(&err);
    r = open_bytes("", 0, &err);
    assert_error(err, VMA_ERROR_FORMAT, "not a VMA archive (bad magic)");
    g_clear_error(&err);
    r = open_bytes("VMA", 3, &err);
    assert_error(err, VMA_ERROR_FORMAT, "not a VMA archive (bad magic)");
    g_clear_error(&err);
    r = open_bytes("VMA\0\0\0\0\1", 8, &err);
    assert_error(err, VMA_ERROR_TRUNCATED, "short vma header (8 < 12288 bytes)");
}

static void test_header_checks(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GByteArray) a = g_byte_array_new();
    g_autoptr(Hdr) h = disk_header(65536);
    VmaReader *r;

    /* checksum */
    hdr_write(h, a);
    a->data[100] ^= 0x40;
    r = open_bytes(a->data, a->len, &err);
    assert_null(r);
    assert_error(err, VMA_ERROR_CHECKSUM, "wrong vma header checksum");
    g_clear_error(&err);

    /* version 2 */
    h->version = 2;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    r = open_bytes(a->data, a->len, &err);
    assert_null(r);
    assert_error(err, VMA_ERROR_FORMAT, "unsupported vma version 2");
    g_clear_error(&err);
    h->version = 1;

    /* header_size too large: refused before anything is allocated or read */
    h->header_size = VMA_HEADER_MAX_SIZE + 512;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    g_byte_array_set_size(a, 12288);
    r = open_bytes(a->data, a->len, &err);
    assert_null(r);
    assert_error(err, VMA_ERROR_FORMAT, "wrong vma header size 524800");
    g_clear_error(&err);

    h->header_size = 0xffffffff;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    g_byte_array_set_size(a, 12288);
    r = open_bytes(a->data, a->len, &err);
    assert_error(err, VMA_ERROR_FORMAT, "wrong vma header size 4294967295");
    g_clear_error(&err);

    /* too small */
    h->header_size = 12000;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    r = open_bytes(a->data, a->len, &err);
    assert_error(err, VMA_ERROR_FORMAT, "wrong vma header size 12000");
    g_clear_error(&err);

    /* the largest allowed header works */
    h->header_size = VMA_HEADER_MAX_SIZE;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    r = open_bytes(a->data, a->len, &err);
    assert_non_null(r);
    assert_device(r, 1, "drive-scsi0", 65536, false);
    vma_reader_free(r);
    h->header_size = -1;

    /* header cut short */
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    g_byte_array_set_size(a, a->len - 1);
    r = open_bytes(a->data, a->len, &err);
    assert_error(err, VMA_ERROR_TRUNCATED, "short vma header (12799 < 12800 bytes)");
    g_clear_error(&err);

    /* blob region before the end of the fixed part */
    h->blob_offset = 12287;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    r = open_bytes(a->data, a->len, &err);
    assert_error(err, VMA_ERROR_FORMAT, "wrong vma blob buffer offset 12287");
    g_clear_error(&err);

    /* blob region past the header end */
    h->blob_offset = 12288;
    h->blob_size = 513;
    h->header_size = 12800;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    r = open_bytes(a->data, a->len, &err);
    assert_error(err, VMA_ERROR_FORMAT, "wrong vma blob buffer size 513");
    g_clear_error(&err);
    h->blob_offset = 0xffffff00;
    h->blob_size = 0x1000;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    r = open_bytes(a->data, a->len, &err);
    assert_error(err, VMA_ERROR_FORMAT, "wrong vma blob buffer size 4096");
    g_clear_error(&err);

    /* blob region anywhere inside the header is fine */
    h->blob_offset = 13312;
    h->blob_size = -1;
    h->header_size = -1;
    g_byte_array_set_size(a, 0);
    hdr_write(h, a);
    r = open_bytes(a->data, a->len, &err);
    assert_non_null(r);
    assert_device(r, 1, "drive-scsi0", 65536, false);
    vma_reader_free(r);
}

static void test_blob_checks(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(Hdr) h = hdr_new();
    g_autoptr(GByteArray) a = g_byte_array_new();
    const char *name;
    const uint8_t *data;
    size_t len;
    VmaReader *r;

    /* a config with only one of its pointers set is no config; slot gaps are fine */
    h->cfg_name[0] = blob_str(h, "only-name");
    h->cfg_data[1] = blob_add(h, "only data", 9);
    hdr_config(h, 5, "qemu-server.conf", "cores: 2\n");
    h->cfg_name[6] = blob_str(h, "empty");
    h->cfg_data[6] = blob_add(h, "", 0);
    /* devices: no name, name without NUL, dev_id 0 and 255 are ignored */
    h->dev_size[1] = 65536;
    h->dev_name[2] = blob_add(h, "noterm", 6);
    h->dev_size[2] = 65536;
    hdr_device(h, 0, "zero", 65536);
    hdr_device(h, 255, "last", 65536);
    hdr_device(h, 3, "drive-sata1", 512);
    hdr_device(h, 4, "vmstate", 1);
    h->dev_name[5] = blob_str(h, "no-size");
    hdr_write(h, a);
    r = open_bytes(a->data, a->len, &err);
    assert_null(err);
    assert_int_equal(vma_reader_get_config_count(r), 2);
    assert_true(vma_reader_get_config(r, 0, &name, &data, &len));
    assert_string_equal(name, "qemu-server.conf");
    assert_int_equal(len, 9);
    assert_memory_equal(data, "cores: 2\n", 9);
    assert_true(vma_reader_get_config(r, 1, &name, &data, &len));
    assert_string_equal(name, "empty");
    assert_int_equal(len, 0);
    for (guint id = 0; id <= 255; id++) {
        if (id == 3) {
            assert_device(r, 3, "drive-sata1", 512, false);
        } else if (id == 4) {
            assert_device(r, 4, "vmstate", 1, true);
        } else {
            assert_null(vma_reader_get_device(r, id));
        }
    }
    vma_reader_free(r);

    /* config pointers that do not resolve are an error */
    struct {
        uint32_t name, data;
    } bad[] = {
        { 0, 0 },                                   /* name pointer past the blobs */
        { 0, 0 },                                   /* name blob runs past the region */
        { 0, 0 },                                   /* name without NUL */
        { 0, 0 },                                   /* data blob runs past the region */
        { 0, 0 },                                   /* empty name blob */
    };
    g_autoptr(Hdr) h2 = hdr_new();
    uint32_t good_name = blob_str(h2, "good");
    uint32_t good_data = blob_add(h2, "x", 1);
    uint32_t noterm = blob_add(h2, "noterm", 6);
    uint32_t empty = blob_add(h2, "", 0);
    uint32_t runs_past = h2->blob->len;
    uint8_t long_len[3] = { 0xff, 0xff, 'a' };
    g_byte_array_append(h2->blob, long_len, sizeof(long_len));
    bad[0].name = h2->blob->len + 10;
    bad[0].data = good_data;
    bad[1].name = runs_past;
    bad[1].data = good_data;
    bad[2].name = noterm;
    bad[2].data = good_data;
    bad[3].name = good_name;
    bad[3].data = runs_past;
    bad[4].name = empty;
    bad[4].data = good_data;
    for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *want = g_strdup_printf("config 7: invalid data pointers (name %u, data %u)",
                                                bad[i].name, bad[i].data);
        h2->cfg_name[7] = bad[i].name;
        h2->cfg_data[7] = bad[i].data;
        g_byte_array_set_size(a, 0);
        hdr_write(h2, a);
        r = open_bytes(a->data, a->len, &err);
        assert_null(r);
        assert_error(err, VMA_ERROR_FORMAT, want);
        g_clear_error(&err);
    }

    /* a pointer within the header but past blob_buffer_size does not resolve */
    h2->cfg_name[7] = good_name;
    h2->cfg_data[7] = good_data;
    h2->blob_size = good_data;
    g_byte_array_set_size(a, 0);
    hdr_write(h2, a);
    r = open_bytes(a->data, a->len, &err);
    assert_error(err, VMA_ERROR_FORMAT, "invalid data pointers");
    g_clear_error(&err);
    h2->blob_size = -1;
    g_byte_array_set_size(a, 0);
    hdr_write(h2, a);
    r = open_bytes(a->data, a->len, &err);
    assert_non_null(r);
    assert_int_equal(vma_reader_get_config_count(r), 1);
    vma_reader_free(r);
}

static void test_device_checks(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GByteArray) a = g_byte_array_new();
    VmaReader *r;
    VmaReaderStats st;

    /* 256 TiB is the largest device */
    {
        g_autoptr(Hdr) h = disk_header(VMA_MAX_DEVICE_SIZE);
        const Entry e[] = { { 1, 0xffffffff, 0 } };
        r = open_one_extent(h, e, 1, NULL, &err);
        assert_non_null(r);
        vma_reader_get_stats(r, &st);
        assert_int_equal(st.clusters_total, UINT64_C(1) << 32);
        unsigned count;
        assert_int_equal(read_check(r, &count, &err), 0);
        assert_int_equal(count, 1);
        assert_false(vma_reader_check_complete(r, 1, &err));
        assert_error(err, VMA_ERROR_MISSING, "detected missing cluster 0 for stream drive-scsi0");
        g_clear_error(&err);
        vma_reader_free(r);
    }
    /* one byte more is refused */
    {
        g_autoptr(Hdr) h = disk_header(VMA_MAX_DEVICE_SIZE + 1);
        g_byte_array_set_size(a, 0);
        hdr_write(h, a);
        r = open_bytes(a->data, a->len, &err);
        assert_null(r);
        assert_error(err, VMA_ERROR_FORMAT,
                     "device drive-scsi0: size 281474976710657 exceeds 256 TiB");
        g_clear_error(&err);
    }
    /* two devices of one name */
    {
        g_autoptr(Hdr) h = disk_header(4096);
        hdr_device(h, 7, "drive-scsi0", 4096);
        g_byte_array_set_size(a, 0);
        hdr_write(h, a);
        r = open_bytes(a->data, a->len, &err);
        assert_null(r);
        assert_error(err, VMA_ERROR_FORMAT, "device name drive-scsi0 is used by dev_id 1 and 7");
        g_clear_error(&err);
    }
}

/* Names with a control byte would forge listing lines: refused at open, naming the
 * dev_id or config index, the name escaped. */
static void test_control_in_names(void **state)
{
    static const struct {
        const char *dev;
        const char *cfg;
        const char *want;
    } cases[] = {
        {"drive-scsi0\nDEV: dev_id=9 size: 1099511627776 devname: drive-scsi9", NULL,
         "dev_id 1: name \"drive-scsi0\\nDEV: dev_id=9 size: 1099511627776 "
         "devname: drive-scsi9\" contains a control character"},
        {"a\rb", NULL, "dev_id 1: name \"a\\rb\" contains a control character"},
        {"a\tb", NULL, "dev_id 1: name \"a\\tb\" contains a control character"},
        {"a\x1b[2Jb", NULL, "dev_id 1: name \"a\\033[2Jb\" contains a control character"},
        {"a\x7f", NULL, "dev_id 1: name \"a\\177\" contains a control character"},
        {"drive-scsi0", "qemu-server.conf\nCFG: size: 1 name: x.conf",
         "config 0: name \"qemu-server.conf\\nCFG: size: 1 name: x.conf\" contains a "
         "control character"},
        {"drive-scsi0", "\x01", "config 0: name \"\\001\" contains a control character"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(Hdr) h = hdr_new();
        g_autoptr(GByteArray) a = g_byte_array_new();
        g_autoptr(GError) err = NULL;
        hdr_device(h, 1, cases[i].dev, 65536);
        if (cases[i].cfg != NULL) {
            hdr_config(h, 0, cases[i].cfg, "x");
        }
        hdr_write(h, a);
        VmaReader *r = open_bytes(a->data, a->len, &err);
        assert_null(r);
        assert_error(err, VMA_ERROR_FORMAT, cases[i].want);
        assert_null(strchr(err->message, '\n'));
    }
    /* bytes >= 0x80 (UTF-8 names) stay accepted */
    {
        g_autoptr(Hdr) h = hdr_new();
        g_autoptr(GByteArray) a = g_byte_array_new();
        g_autoptr(GError) err = NULL;
        hdr_device(h, 1, "drive-\xc3\xa9", 65536);
        hdr_config(h, 0, "caf\xc3\xa9.conf", "x");
        hdr_write(h, a);
        VmaReader *r = open_bytes(a->data, a->len, &err);
        assert_non_null(r);
        vma_reader_free(r);
    }
}

/* A hostile header: 254 devices of 256 TiB each. Opening and reading must not allocate
 * per declared size; a cluster at the far end of every device is accepted. */
static void test_254_huge_devices(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(Hdr) h = hdr_new();
    g_autoptr(GByteArray) a = g_byte_array_new();
    Entry e[VMA_EXTENT_SLOTS];
    unsigned n = 0, count;
    VmaReaderStats st;

    for (unsigned id = 1; id <= 254; id++) {
        g_autofree char *name = g_strdup_printf("drive-virtio%u", id);
        hdr_device(h, id, name, VMA_MAX_DEVICE_SIZE);
    }
    hdr_write(h, a);
    for (unsigned id = 1; id <= 254; id++) {
        e[n++] = (Entry){ (uint8_t)id, 0xfffffffe - id, (uint16_t)(id == 7 ? 0x0011 : 0) };
        if (n == VMA_EXTENT_SLOTS || id == 254) {
            ext_write(a, e, n, NULL);
            n = 0;
        }
    }
    g_autoptr(VmaReader) r = open_bytes(a->data, a->len, &err);
    assert_non_null(r);
    for (unsigned id = 1; id <= 254; id++) {
        assert_non_null(vma_reader_get_device(r, id));
    }
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.clusters_total, UINT64_C(254) << 32);
    assert_int_equal(read_check(r, &count, &err), 0);
    assert_int_equal(count, 254);
    assert_false(vma_reader_check_complete(r, 0, &err));
    assert_error(err, VMA_ERROR_MISSING, "detected missing cluster 0 for stream drive-virtio1; "
                                         "detected missing cluster 0 for stream drive-virtio2;");
    assert_non_null(strstr(err->message, "detected missing cluster 0 for stream drive-virtio254"));
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.data_bytes, 2 * 4096);
}

/* Sparse bitmap across chunk boundaries: every cluster but one, then all of them. */
static void test_missing_and_duplicate_across_chunks(void **state)
{
    const uint32_t nclusters = 3 * 4096 + 5;
    g_autoptr(GError) err = NULL;

    for (int variant = 0; variant < 3; variant++) {
        g_autoptr(Hdr) h = disk_header((uint64_t)nclusters * 65536 - 7);
        g_autoptr(GByteArray) a = g_byte_array_new();
        Entry e[VMA_EXTENT_SLOTS];
        unsigned n = 0, count;
        const uint32_t skip = variant == 0 ? 9000 : UINT32_MAX;

        hdr_write(h, a);
        /* reverse order, to show that order does not matter */
        for (uint32_t i = nclusters; i-- > 0;) {
            if (i != skip) {
                e[n++] = (Entry){ 1, i, (uint16_t)(i % 97 == 0 ? 1 : 0) };
            }
            if (n == VMA_EXTENT_SLOTS || (i == 0 && n > 0)) {
                ext_write(a, e, n, NULL);
                n = 0;
            }
        }
        if (variant == 2) {
            e[0] = (Entry){ 1, 4096, 0 };
            ext_write(a, e, 1, NULL);
        }
        g_autoptr(VmaReader) r = open_bytes(a->data, a->len, &err);
        assert_non_null(r);
        int ret = read_check(r, &count, &err);
        if (variant == 2) {
            assert_int_equal(ret, -1);
            assert_error(err, VMA_ERROR_DUPLICATE, "found duplicated cluster 4096 for stream drive-scsi0");
            g_clear_error(&err);
            continue;
        }
        assert_int_equal(ret, 0);
        assert_int_equal(count, skip == UINT32_MAX ? nclusters : nclusters - 1);
        if (skip == UINT32_MAX) {
            assert_true(vma_reader_check_complete(r, 0, &err));
        } else {
            assert_false(vma_reader_check_complete(r, 0, &err));
            assert_error(err, VMA_ERROR_MISSING, "detected missing cluster 9000 for stream drive-scsi0");
            g_clear_error(&err);
        }
    }
}

static void test_extent_checks(void **state)
{
    g_autoptr(Hdr) h = disk_header(4 * 65536);
    const Entry two[] = { { 1, 0, 0x0003 }, { 1, 1, 0x0000 } };
    const uint8_t other_uuid[16] = { 1 };
    GError *err;

    err = one_extent_error(h, two, 2, &(ExtOpts){ .bad_md5 = true });
    assert_error(err, VMA_ERROR_CHECKSUM, "extent at byte 12800: wrong extent header checksum");
    g_clear_error(&err);

    err = one_extent_error(h, two, 2, &(ExtOpts){ .uuid = other_uuid });
    assert_error(err, VMA_ERROR_FORMAT, "extent at byte 12800: uuid does not match the archive header");
    g_clear_error(&err);

    err = one_extent_error(h, two, 2, &(ExtOpts){ .magic = "VMAX" });
    assert_error(err, VMA_ERROR_FORMAT, "extent at byte 12800: wrong extent magic");
    g_clear_error(&err);

    err = one_extent_error(h, two, 2, &(ExtOpts){ .reserved = 1 });
    assert_error(err, VMA_ERROR_FORMAT, "extent at byte 12800: reserved field is not zero");
    g_clear_error(&err);

    err = one_extent_error(h, two, 2, &(ExtOpts){ .entry_reserved = 0x80 });
    assert_error(err, VMA_ERROR_FORMAT, "extent at byte 12800: entry 1: reserved byte is not zero");
    g_clear_error(&err);

    err = one_extent_error(h, two, 2, &(ExtOpts){ .set_block_count = true, .block_count = 3 });
    assert_error(err, VMA_ERROR_FORMAT,
                 "extent at byte 12800: block count 3 does not match the 2 blocks of its entries");
    g_clear_error(&err);

    err = one_extent_error(h, two, 2, &(ExtOpts){ .set_block_count = true, .block_count = 0xffff });
    assert_error(err, VMA_ERROR_FORMAT, "block count 65535 does not match the 2 blocks");
    g_clear_error(&err);

    /* cluster number past the device */
    const Entry out_of_range[] = { { 1, 3, 0x0001 }, { 1, 4, 0x0001 } };
    err = one_extent_error(h, out_of_range, 2, NULL);
    assert_error(err, VMA_ERROR_FORMAT,
                 "extent at byte 12800: cluster 4 of stream drive-scsi0 is beyond the device size 262144");
    g_clear_error(&err);

    /* unknown device ids, including 255 */
    const Entry unknown[] = { { 1, 0, 0 }, { 2, 0, 0 } };
    err = one_extent_error(h, unknown, 2, NULL);
    assert_error(err, VMA_ERROR_FORMAT, "extent at byte 12800: unknown device id 2");
    g_clear_error(&err);
    const Entry dev255[] = { { 255, 0, 0 } };
    err = one_extent_error(h, dev255, 1, NULL);
    assert_error(err, VMA_ERROR_FORMAT, "unknown device id 255");
    g_clear_error(&err);

    /* duplicate inside one extent */
    const Entry dup[] = { { 1, 2, 0x0001 }, { 1, 0, 0 }, { 1, 2, 0 } };
    err = one_extent_error(h, dup, 3, NULL);
    assert_error(err, VMA_ERROR_DUPLICATE,
                 "extent at byte 12800: found duplicated cluster 2 for stream drive-scsi0");
    g_clear_error(&err);

    /* dev_id 0 slots are empty whatever else they hold; 59 slots are accepted */
    Entry full[VMA_EXTENT_SLOTS];
    for (unsigned i = 0; i < VMA_EXTENT_SLOTS; i++) {
        full[i] = (Entry){ 0, 1234, 0xffff };
    }
    full[0] = (Entry){ 1, 0, 0xffff };
    full[58] = (Entry){ 1, 3, 0x8001 };
    full[30] = (Entry){ 1, 1, 0x0000 };
    err = one_extent_error(h, full, VMA_EXTENT_SLOTS, NULL);
    assert_null(err);

    /* error latching: the same error again */
    g_autoptr(GError) e1 = NULL, e2 = NULL;
    g_autoptr(VmaReader) r = open_one_extent(h, dup, 3, NULL, &e1);
    VmaCluster c;
    assert_int_equal(vma_reader_next_cluster(r, &c, &e1), -1);
    assert_int_equal(vma_reader_next_cluster(r, &c, &e2), -1);
    assert_string_equal(e1->message, e2->message);
}

static void test_vmstate_order(void **state)
{
    g_autoptr(Hdr) h = hdr_new();
    GError *err;

    hdr_device(h, 1, "drive-scsi0", 65536);
    hdr_device(h, 2, "vmstate", 65536);

    /* in order, past its size, interleaved with a disk */
    const Entry good[] = { { 2, 0, 0x1 }, { 1, 0, 0 }, { 2, 1, 0 }, { 2, 2, 0x8000 } };
    err = one_extent_error(h, good, 4, NULL);
    assert_null(err);

    const Entry skip[] = { { 2, 0, 0x1 }, { 2, 2, 0 } };
    err = one_extent_error(h, skip, 2, NULL);
    assert_error(err, VMA_ERROR_FORMAT,
                 "extent at byte 12800: cluster 2 of vmstate stream vmstate out of order (expected 1)");
    g_clear_error(&err);

    const Entry again[] = { { 2, 0, 0x1 }, { 2, 0, 0 } };
    err = one_extent_error(h, again, 2, NULL);
    assert_error(err, VMA_ERROR_FORMAT, "cluster 0 of vmstate stream vmstate out of order (expected 1)");
    g_clear_error(&err);

    const Entry late[] = { { 2, 1, 0 } };
    err = one_extent_error(h, late, 1, NULL);
    assert_error(err, VMA_ERROR_FORMAT, "cluster 1 of vmstate stream vmstate out of order (expected 0)");
    g_clear_error(&err);
}

/* ---- truncation at every byte -------------------------------------------------- */

/* Open len bytes of data through a pipe (len must fit into the pipe buffer). */
static VmaReader *open_prefix_pipe(const uint8_t *data, size_t len, GError **errp)
{
    int fds[2];

    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    (void)fcntl(fds[1], F_SETPIPE_SZ, 1 << 17);
    assert_true(fcntl(fds[1], F_GETPIPE_SZ) >= (int)len);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fds[1], data + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    close(fds[1]);
    return vma_reader_open_fd(fds[0], "pipe", errp);
}

static bool is_small_boundary(size_t len)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(small_boundaries); i++) {
        if (small_boundaries[i] == len) {
            return true;
        }
    }
    return false;
}

static void test_truncate_every_byte(void **state)
{
    g_autoptr(GByteArray) a = small_archive();

    for (size_t len = 0; len <= a->len; len++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(VmaReader) r = open_prefix_pipe(a->data, len, &err);
        unsigned count;

        if (len < 4) {
            assert_null(r);
            assert_error(err, VMA_ERROR_FORMAT, "not a VMA archive (bad magic)");
            continue;
        }
        if (len < small_boundaries[0]) {
            assert_null(r);
            assert_error(err, VMA_ERROR_TRUNCATED, "short vma header");
            continue;
        }
        assert_non_null(r);
        int ret = read_check(r, &count, &err);
        if (len == a->len) {
            assert_int_equal(ret, 0);
            assert_true(vma_reader_check_complete(r, 0, &err));
        } else if (is_small_boundary(len)) {
            /* a cut on an extent boundary shows only as missing clusters */
            assert_int_equal(ret, 0);
            assert_false(vma_reader_check_complete(r, 0, &err));
            assert_error(err, VMA_ERROR_MISSING, "detected missing cluster");
        } else {
            assert_int_equal(ret, -1);
            assert_error(err, VMA_ERROR_TRUNCATED, "extent at byte");
            assert_non_null(strstr(err->message, "short"));
        }
    }
}

/* Damage the small archive at random (fixed seed) in the header fields, the blob
 * region and the extent headers, then fix up the MD5s so that the checks behind them
 * run: every outcome is fine except a crash or a sanitizer report. */
static void test_random_damage(void **state)
{
    g_autoptr(GByteArray) a = small_archive();
    g_autoptr(GRand) rnd = g_rand_new_with_seed(20261126);
    g_autofree uint8_t *copy = g_malloc(a->len);
    unsigned outcomes[3] = { 0 };

    for (unsigned iter = 0; iter < 4000; iter++) {
        memcpy(copy, a->data, a->len);
        unsigned nmut = (unsigned)g_rand_int_range(rnd, 1, 5);
        for (unsigned m = 0; m < nmut; m++) {
            uint32_t pos;
            switch (g_rand_int_range(rnd, 0, 5)) {
            case 0:  /* fixed fields */
                pos = (uint32_t)g_rand_int_range(rnd, 0, 64);
                break;
            case 1:  /* config and device tables (first entries) */
                pos = g_rand_boolean(rnd) ? (uint32_t)g_rand_int_range(rnd, 2044, 2060)
                                          : (uint32_t)g_rand_int_range(rnd, 4096, 4096 + 32 * 4);
                break;
            case 2:  /* blob region */
                pos = (uint32_t)g_rand_int_range(rnd, 12288, 12400);
                break;
            default: /* an extent header */
                pos = (uint32_t)small_boundaries[g_rand_int_range(rnd, 0, 3)] +
                      (uint32_t)g_rand_int_range(rnd, 0, 40 + 8 * 3);
                break;
            }
            if (g_rand_boolean(rnd)) {
                copy[pos] ^= (uint8_t)(1u << g_rand_int_range(rnd, 0, 8));
            } else {
                copy[pos] = (uint8_t)g_rand_int_range(rnd, 0, 256);
            }
        }
        /* fix up the checksums where the pieces used to be */
        uint32_t hsize = (uint32_t)copy[56] << 24 | (uint32_t)copy[57] << 16 |
                         (uint32_t)copy[58] << 8 | copy[59];
        if (hsize >= 12288 && hsize <= a->len) {
            memset(copy + 32, 0, 16);
            md5(copy, hsize, copy + 32);
        }
        for (unsigned i = 0; i < G_N_ELEMENTS(small_boundaries); i++) {
            uint8_t *eh = copy + small_boundaries[i];
            memset(eh + 24, 0, 16);
            md5(eh, 512, eh + 24);
        }

        g_autoptr(GError) err = NULL;
        g_autoptr(VmaReader) r = open_prefix_pipe(copy, a->len, &err);
        unsigned count;
        if (r == NULL) {
            outcomes[0]++;
            continue;
        }
        check_data = false;
        int ret = read_check(r, &count, &err);
        check_data = true;
        if (ret < 0) {
            outcomes[1]++;
        } else {
            outcomes[2]++;
            (void)vma_reader_check_complete(r, 0, NULL);
        }
    }
    print_message("random damage: %u failed to open, %u failed to read, %u read\n", outcomes[0], outcomes[1], outcomes[2]);
    /* the damage reached every stage */
    assert_true(outcomes[0] > 0 && outcomes[1] > 0 && outcomes[2] > 0);
}

/* ---- compressed input ---------------------------------------------------------- */

static GBytes *gzip_bytes(const uint8_t *data, size_t len)
{
    z_stream z = { 0 };
    size_t cap = compressBound((uLong)len) + 64;
    uint8_t *out = g_malloc(cap);

    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return g_bytes_new_take(out, n);
}

static GBytes *zstd_bytes(const uint8_t *data, size_t len)
{
    size_t cap = ZSTD_compressBound(len);
    uint8_t *out = g_malloc(cap);
    size_t n = ZSTD_compress(out, cap, data, len, 3);

    assert_false(ZSTD_isError(n));
    return g_bytes_new_take(out, n);
}

#define LZOP_ADLER32_D 0x1u
#define LZOP_ADLER32_C 0x2u
#define LZOP_CRC32_D 0x100u
#define LZOP_CRC32_C 0x200u
#define LZOP_H_CRC32 0x1000u

static void append_be32(GByteArray *out, uint32_t v)
{
    uint8_t b[4];
    th_put_be32(b, 0, v);
    g_byte_array_append(out, b, 4);
}

/* A minimal lzop file writer (file header + LZO1X-1 blocks + end marker). */
static GBytes *lzop_bytes(const uint8_t *data, size_t len, uint32_t flags, size_t block)
{
    static const uint8_t magic[9] = { 0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a };
    GByteArray *out = g_byte_array_new();
    g_autoptr(GByteArray) h = g_byte_array_new();
    g_autofree uint8_t *wrk = g_malloc(LZO1X_1_MEM_COMPRESS);
    g_autofree uint8_t *cbuf = g_malloc(block + block / 16 + 64 + 3);
    const uint8_t fixed[] = { 0x10, 0x40, 0x20, 0xa0, 0x09, 0x40, 1, 5 };

    assert_int_equal(lzo_init(), LZO_E_OK);
    g_byte_array_append(out, magic, sizeof(magic));
    g_byte_array_append(h, fixed, sizeof(fixed));
    append_be32(h, flags);
    append_be32(h, 0100644);
    append_be32(h, 1700000000);
    append_be32(h, 0);
    g_byte_array_append(h, (const uint8_t *)"\4test", 5);
    g_byte_array_append(out, h->data, h->len);
    append_be32(out, (flags & LZOP_H_CRC32) ? (uint32_t)crc32(0, h->data, h->len)
                                            : (uint32_t)adler32(1, h->data, h->len));
    for (size_t off = 0; off < len; off += block) {
        size_t n = MIN(block, len - off);
        lzo_uint clen = 0;
        assert_int_equal(lzo1x_1_compress(data + off, n, cbuf, &clen, wrk), LZO_E_OK);
        bool stored = clen >= n;
        append_be32(out, (uint32_t)n);
        append_be32(out, stored ? (uint32_t)n : (uint32_t)clen);
        if (flags & LZOP_ADLER32_D) {
            append_be32(out, (uint32_t)adler32(1, data + off, (uInt)n));
        }
        if (flags & LZOP_CRC32_D) {
            append_be32(out, (uint32_t)crc32(0, data + off, (uInt)n));
        }
        if (!stored && (flags & LZOP_ADLER32_C)) {
            append_be32(out, (uint32_t)adler32(1, cbuf, (uInt)clen));
        }
        if (!stored && (flags & LZOP_CRC32_C)) {
            append_be32(out, (uint32_t)crc32(0, cbuf, (uInt)clen));
        }
        g_byte_array_append(out, stored ? data + off : cbuf, (guint)(stored ? n : clen));
    }
    append_be32(out, 0);
    return g_byte_array_free_to_bytes(out);
}

static GBytes *concat(GBytes *a, GBytes *b)
{
    GByteArray *out = g_byte_array_new();
    g_byte_array_append(out, g_bytes_get_data(a, NULL), (guint)g_bytes_get_size(a));
    g_byte_array_append(out, g_bytes_get_data(b, NULL), (guint)g_bytes_get_size(b));
    return g_byte_array_free_to_bytes(out);
}

/* Read a whole (possibly compressed) small archive; returns the error or NULL. */
static GError *read_small(GBytes *bytes, VmaCompression comp, bool pipe)
{
    GError *err = NULL;
    g_autoptr(VmaReader) r = NULL;
    unsigned count;

    if (pipe) {
        r = open_prefix_pipe(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes), &err);
    } else {
        r = open_bytes(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes), &err);
    }
    if (r == NULL) {
        return err;
    }
    assert_int_equal(vma_reader_get_compression(r), comp);
    if (read_check(r, &count, &err) < 0) {
        return err;
    }
    assert_int_equal(count, 6);
    if (!vma_reader_check_complete(r, 0, &err)) {
        return err;
    }
    VmaReaderStats st;
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.archive_bytes, SMALL_SIZE);
    assert_int_equal(st.input_bytes, g_bytes_get_size(bytes));
    assert_int_equal(st.input_size, pipe ? 0 : g_bytes_get_size(bytes));
    return NULL;
}

typedef struct Compressed {
    const char *what;
    VmaCompression comp;
    GBytes *bytes;
} Compressed;

static void test_compressed_variants(void **state)
{
    g_autoptr(GByteArray) a = small_archive();
    size_t half = 20000;
    g_autoptr(GBytes) gz1 = gzip_bytes(a->data, half);
    g_autoptr(GBytes) gz2 = gzip_bytes(a->data + half, a->len - half);
    g_autoptr(GBytes) zs1 = zstd_bytes(a->data, half);
    g_autoptr(GBytes) zs2 = zstd_bytes(a->data + half, a->len - half);
    g_autoptr(GBytes) bz1 = bzip2_bytes(a->data, half, 1);
    g_autoptr(GBytes) bz2 = bzip2_bytes(a->data + half, a->len - half, 1);
    g_autoptr(GBytes) lz1 = lzop_bytes(a->data, half, LZOP_ADLER32_D, 8192);
    g_autoptr(GBytes) lz2 = lzop_bytes(a->data + half, a->len - half, LZOP_CRC32_D, 8192);
    /* a zstd skippable frame (magic 0x184D2A5?, LE length, payload) before the data */
    static const uint8_t skippable_frame[] = { 0x53, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c' };
    g_autoptr(GBytes) skip = g_bytes_new_static(skippable_frame, sizeof(skippable_frame));
    g_autoptr(GBytes) zs = zstd_bytes(a->data, a->len);
    Compressed c[] = {
        { "gzip", VMA_COMPRESSION_GZIP, gzip_bytes(a->data, a->len) },
        { "gzip members", VMA_COMPRESSION_GZIP, concat(gz1, gz2) },
        { "zstd", VMA_COMPRESSION_ZSTD, zstd_bytes(a->data, a->len) },
        { "zstd frames", VMA_COMPRESSION_ZSTD, concat(zs1, zs2) },
        { "zstd skippable frame", VMA_COMPRESSION_ZSTD, concat(skip, zs) },
        { "bzip2", VMA_COMPRESSION_BZIP2, bzip2_bytes(a->data, a->len, 9) },
        { "bzip2 streams", VMA_COMPRESSION_BZIP2, concat(bz1, bz2) },
        { "lzop", VMA_COMPRESSION_LZOP, lzop_bytes(a->data, a->len, LZOP_ADLER32_D, 256 << 10) },
        { "lzop no checksums", VMA_COMPRESSION_LZOP, lzop_bytes(a->data, a->len, 0, 4096) },
        { "lzop all checksums", VMA_COMPRESSION_LZOP,
          lzop_bytes(a->data, a->len,
                     LZOP_ADLER32_D | LZOP_ADLER32_C | LZOP_CRC32_D | LZOP_CRC32_C | LZOP_H_CRC32,
                     5000) },
        { "lzop files", VMA_COMPRESSION_LZOP, concat(lz1, lz2) },
    };

    for (unsigned i = 0; i < G_N_ELEMENTS(c); i++) {
        const uint8_t *p = g_bytes_get_data(c[i].bytes, NULL);
        size_t len = g_bytes_get_size(c[i].bytes);
        GError *err;

        /* whole: through a file and through a pipe */
        err = read_small(c[i].bytes, c[i].comp, false);
        if (err != NULL) {
            fail_msg("%s: %s", c[i].what, err->message);
        }
        err = read_small(c[i].bytes, c[i].comp, true);
        if (err != NULL) {
            fail_msg("%s (pipe): %s", c[i].what, err->message);
        }

        /* cut at every byte: always an error (compressed data never ends cleanly
         * before its end), never a crash */
        for (size_t cut = 0; cut < len; cut++) {
            g_autoptr(GBytes) part = g_bytes_new_static(p, cut);
            err = read_small(part, cut == 0 ? VMA_COMPRESSION_NONE : c[i].comp, true);
            if (err == NULL) {
                fail_msg("%s cut at %zu of %zu: no error", c[i].what, cut, len);
            }
            g_clear_error(&err);
        }

        /* trailing garbage */
        g_autoptr(GBytes) junk = g_bytes_new_static("garbage!", 8);
        g_autoptr(GBytes) trailing = concat(c[i].bytes, junk);
        err = read_small(trailing, c[i].comp, false);
        if (err == NULL) {
            fail_msg("%s with trailing garbage: no error", c[i].what);
        }
        g_clear_error(&err);

        /* a flipped byte in the middle: an error, or (if it hit a spot no check covers)
         * at least no crash */
        for (size_t pos = 10; pos < len; pos += len / 7 + 1) {
            g_autofree uint8_t *copy = g_memdup2(p, len);
            copy[pos] ^= 0x10;
            g_autoptr(GBytes) damaged = g_bytes_new_static(copy, len);
            check_data = false;
            err = read_small(damaged, c[i].comp, false);
            check_data = true;
            g_clear_error(&err);
        }
        g_bytes_unref(c[i].bytes);
    }
}

static void test_lzop_errors(void **state)
{
    g_autoptr(GByteArray) a = small_archive();
    g_autoptr(GBytes) lz = lzop_bytes(a->data, a->len,
                                      LZOP_ADLER32_D | LZOP_ADLER32_C | LZOP_H_CRC32, 8192);
    const uint8_t *p = g_bytes_get_data(lz, NULL);
    size_t len = g_bytes_get_size(lz);
    g_autofree uint8_t *copy = g_malloc(len);
    GError *err;
    /* header: magic 9, version..level 8, flags 4, mode 4, mtime 8, name 5, sum 4 */
    const size_t hdr_len = 9 + 8 + 4 + 4 + 8 + 5 + 4;

    /* header checksum */
    memcpy(copy, p, len);
    copy[30] ^= 1;
    g_autoptr(GBytes) b1 = g_bytes_new_static(copy, len);
    err = read_small(b1, VMA_COMPRESSION_LZOP, false);
    assert_error(err, VMA_ERROR_CHECKSUM, "wrong lzop header checksum");
    g_clear_error(&err);

    /* checksum of the compressed data of the first block */
    memcpy(copy, p, len);
    copy[hdr_len + 16 + 5] ^= 1;
    g_autoptr(GBytes) b2 = g_bytes_new_static(copy, len);
    err = read_small(b2, VMA_COMPRESSION_LZOP, false);
    assert_error(err, VMA_ERROR_CHECKSUM, "wrong checksum of the compressed data");
    g_clear_error(&err);

    /* checksum of the decompressed data: change the stored checksum */
    memcpy(copy, p, len);
    copy[hdr_len + 8] ^= 1;
    g_autoptr(GBytes) b3 = g_bytes_new_static(copy, len);
    err = read_small(b3, VMA_COMPRESSION_LZOP, false);
    assert_error(err, VMA_ERROR_CHECKSUM, "wrong checksum of the decompressed data");
    g_clear_error(&err);

    /* a block larger than lzop allows */
    memcpy(copy, p, len);
    th_put_be32(copy, hdr_len, (64u << 20) + 1);
    g_autoptr(GBytes) b4 = g_bytes_new_static(copy, len);
    err = read_small(b4, VMA_COMPRESSION_LZOP, false);
    assert_error(err, VMA_ERROR_FORMAT, "has invalid sizes");
    g_clear_error(&err);

    /* unknown method */
    memcpy(copy, p, len);
    copy[15] = 0x40;
    g_autoptr(GBytes) b5 = g_bytes_new_static(copy, len);
    err = read_small(b5, VMA_COMPRESSION_LZOP, false);
    assert_error(err, VMA_ERROR_CHECKSUM, "wrong lzop header checksum");
    g_clear_error(&err);
}

/* ---- pipes and stdin ----------------------------------------------------------- */

typedef struct Feeder {
    int fd;
    GBytes *bytes;
} Feeder;

static void *feeder_thread(void *opaque)
{
    Feeder *f = opaque;
    size_t len;
    const uint8_t *p = g_bytes_get_data(f->bytes, &len);

    for (size_t off = 0; off < len;) {
        ssize_t n = write(f->fd, p + off, MIN((size_t)1000, len - off));
        if (n <= 0) {
            break;
        }
        off += (size_t)n;
    }
    close(f->fd);
    return NULL;
}

static void pipe_ref_2dev(const char *name, VmaCompression comp, bool use_stdin)
{
    int fds[2];
    pthread_t tid;
    Feeder f;
    g_autoptr(GError) err = NULL;
    VmaReader *r;
    Disks d = { 0 };
    VmaReaderStats st;
    int saved_stdin = -1;

    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    f.fd = fds[1];
    f.bytes = th_testdata_read(name);
    assert_int_equal(pthread_create(&tid, NULL, feeder_thread, &f), 0);
    if (use_stdin) {
        saved_stdin = dup(STDIN_FILENO);
        assert_true(saved_stdin >= 0);
        assert_int_equal(dup2(fds[0], STDIN_FILENO), STDIN_FILENO);
        close(fds[0]);
        r = vma_reader_open("-", &err);
        /* the reader has its own descriptor */
        assert_int_equal(dup2(saved_stdin, STDIN_FILENO), STDIN_FILENO);
        close(saved_stdin);
    } else {
        r = vma_reader_open_fd(fds[0], "pipe", &err);
    }
    assert_non_null(r);
    assert_int_equal(vma_reader_get_compression(r), comp);
    assert_int_equal(read_all(r, &d, &err), 0);
    assert_null(err);
    assert_true(vma_reader_check_complete(r, 0, &err));
    assert_image(d.dev[1], "a.raw");
    assert_image(d.dev[2], "b.raw");
    vma_reader_get_stats(r, &st);
    assert_int_equal(st.input_size, 0);
    assert_int_equal(st.input_bytes, g_bytes_get_size(f.bytes));
    vma_reader_free(r);
    disks_clear(&d);
    pthread_join(tid, NULL);
    g_bytes_unref(f.bytes);
}

static void test_pipe(void **state)
{
    pipe_ref_2dev("ref-2dev.vma", VMA_COMPRESSION_NONE, false);
    pipe_ref_2dev("ref-2dev.vma.zst", VMA_COMPRESSION_ZSTD, false);
    pipe_ref_2dev("ref-2dev.vma.lzo", VMA_COMPRESSION_LZOP, false);
    pipe_ref_2dev("ref-2dev.vma.gz", VMA_COMPRESSION_GZIP, true);
}

static void test_open_errors(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *missing = g_build_filename(tmpdir, "does-not-exist.vma", NULL);
    VmaReader *r;

    r = vma_reader_open(missing, &err);
    assert_null(r);
    assert_error(err, VMA_ERROR_IO, "No such file or directory");
    assert_non_null(strstr(err->message, missing));
    g_clear_error(&err);

    r = vma_reader_open(tmpdir, &err);
    assert_null(r);
    assert_error(err, VMA_ERROR_IO, "Is a directory");
    g_clear_error(&err);

    r = vma_reader_open_fd(-1, "bad", &err);
    assert_null(r);
    assert_error(err, VMA_ERROR_INVALID, "invalid descriptor");
    vma_reader_free(NULL);
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
        th_tmpdir_remove(tmpdir);
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
        cmocka_unit_test(test_small),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_header_checks),
        cmocka_unit_test(test_blob_checks),
        cmocka_unit_test(test_device_checks),
        cmocka_unit_test(test_control_in_names),
        cmocka_unit_test(test_254_huge_devices),
        cmocka_unit_test(test_missing_and_duplicate_across_chunks),
        cmocka_unit_test(test_extent_checks),
        cmocka_unit_test(test_vmstate_order),
        cmocka_unit_test(test_truncate_every_byte),
        cmocka_unit_test(test_random_damage),
        cmocka_unit_test(test_compressed_variants),
        cmocka_unit_test(test_lzop_errors),
        cmocka_unit_test(test_pipe),
        cmocka_unit_test(test_open_errors),
    };

    /* TEST_FILTER=test_name (a glob) runs a subset */
    if (g_getenv("TEST_FILTER") != NULL) {
        cmocka_set_test_filter(g_getenv("TEST_FILTER"));
    }
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
