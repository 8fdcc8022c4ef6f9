/*
 * test-writer.c — unit tests of the archive writer (vma-writer.c).
 *
 * The archives produced here are decoded by a small decoder in this file (not by the
 * library's reader), which checks both MD5s, the extent structure the deployed writer
 * uses (at most 58 entries, slot 58 empty, block_count = stored blocks) and gives back
 * the cluster records in stream order.
 *
 * Byte-exact comparisons with the fixtures made by the deployed writer need the same
 * extent boundaries, which depend on when the writer thread dequeues. They are made
 * deterministic by writing into a pipe shrunk to 4096 bytes whose reader starts only
 * after every cluster is queued: the writer thread blocks inside the header write, so
 * when it comes to the queue it finds every record there and packs 58 per extent, as
 * the deployed writer does for clusters handed over in order. The same trick makes the
 * priority-lane order observable.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "vma-format.h"
#include "vma.h"

#include "test-helpers.h"

/* ---- helpers ----------------------------------------------------------------------- */

/* The path of the one temporary file ".BASE.tmp-XXXXXX" of a new archive in dir (the
 * name it has until it is complete), or NULL if there is none; fails on two. */
static char *find_tmp(const char *dir, const char *base)
{
    g_autofree char *prefix = g_strdup_printf(".%s.tmp-", base);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    char *found = NULL;

    assert_non_null(d);
    while ((name = g_dir_read_name(d)) != NULL) {
        if (g_str_has_prefix(name, prefix) && strlen(name) == strlen(prefix) + 6) {
            assert_null(found);
            found = g_build_filename(dir, name, NULL);
        }
    }
    g_dir_close(d);
    return found;
}

static unsigned count_entries(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    unsigned n = 0;

    assert_non_null(d);
    while (g_dir_read_name(d) != NULL) {
        n++;
    }
    g_dir_close(d);
    return n;
}

static void assert_error(GError *err, VmaErrorCode code, const char *substring)
{
    if (!err) {
        fail_msg("expected an error (code %d, \"%s\"), got success", code, substring);
    }
    if (!g_error_matches(err, VMA_ERROR, (gint)code) ||
        (substring && !strstr(err->message, substring))) {
        fail_msg("expected error code %d containing \"%s\", got code %d: %s", code,
                 substring ? substring : "", err->code, err->message);
    }
}

/* A macro, so that err is read after the call has set it. */
#define assert_ok(call, err)                                                             \
    do {                                                                                 \
        bool ok_ = (call);                                                               \
        if (!ok_) {                                                                      \
            fail_msg("unexpected error: %s", (err) ? (err)->message : "(no message)");   \
        }                                                                                \
    } while (0)

/* Deterministic pseudo-random bytes. */
static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/*
 * The expected content of cluster c of device dev in the generated tests: some blocks
 * zero, some random, some whole clusters zero. Bytes past `size` are garbage here; the
 * writer must clear them.
 */
static void fill_cluster(uint8_t *buf, unsigned dev, uint32_t c)
{
    uint32_t s = dev * 2654435761u ^ (c + 1) * 40503u;

    if (xorshift(&s) % 7 == 0) {
        memset(buf, 0, VMA_CLUSTER_SIZE);
        return;
    }
    for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
        uint8_t *b = buf + (size_t)j * VMA_BLOCK_SIZE;
        if (xorshift(&s) % 3 == 0) {
            memset(b, 0, VMA_BLOCK_SIZE);
            continue;
        }
        for (unsigned k = 0; k < VMA_BLOCK_SIZE; k += 4) {
            uint32_t v = xorshift(&s) | 1; /* never a zero block */
            memcpy(b + k, &v, 4);
        }
    }
}

static void *pattern_cluster(void);

/* ---- decoder --------------------------------------------------------------------- */

typedef struct DecRecord {
    uint8_t dev_id;
    uint32_t cluster;
    uint16_t mask;
    const uint8_t *data; /* popcount(mask) blocks */
    unsigned extent;
} DecRecord;

typedef struct Decoded {
    const uint8_t *buf;
    size_t len;
    uint8_t uuid[16];
    int64_t ctime;
    uint32_t header_size;
    uint32_t blob_size;
    unsigned nconfigs;
    const char *cfg_name[256];
    const uint8_t *cfg_data[256];
    size_t cfg_len[256];
    unsigned ndevs;
    const char *dev_name[256];
    uint64_t dev_size[256];
    GArray *recs; /* DecRecord, stream order */
    unsigned nextents;
} Decoded;

static void md5_with_zeroed(const uint8_t *buf, size_t len, size_t field, uint8_t out[16])
{
    g_autofree uint8_t *copy = g_memdup2(buf, len);
    GChecksum *ck = g_checksum_new(G_CHECKSUM_MD5);
    gsize n = 16;

    memset(copy + field, 0, 16);
    g_checksum_update(ck, copy, len);
    g_checksum_get_digest(ck, out, &n);
    g_checksum_free(ck);
}

static const uint8_t *blob_at(const Decoded *d, uint32_t off, size_t *len)
{
    assert_true(off > 0);
    assert_true((uint64_t)off + 2 <= d->blob_size);
    const uint8_t *p = d->buf + VMA_HEADER_FIXED_SIZE + off;
    *len = (size_t)p[0] | (size_t)p[1] << 8; /* little-endian */
    assert_true((uint64_t)off + 2 + *len <= d->blob_size);
    return p + 2;
}

static void decode(const uint8_t *buf, size_t len, Decoded *d)
{
    uint8_t md5[16];

    memset(d, 0, sizeof(*d));
    d->buf = buf;
    d->len = len;
    assert_true(len >= VMA_HEADER_FIXED_SIZE);
    assert_memory_equal(buf, "VMA\0", 4);
    assert_int_equal(th_get_be32(buf + 4), 1);
    memcpy(d->uuid, buf + 8, 16);
    d->ctime = (int64_t)th_get_be64(buf + 24);
    assert_int_equal(th_get_be32(buf + 48), VMA_HEADER_FIXED_SIZE);
    d->blob_size = th_get_be32(buf + 52);
    d->header_size = th_get_be32(buf + 56);
    assert_true(d->header_size > VMA_HEADER_FIXED_SIZE);
    assert_int_equal(d->header_size % 512, 0);
    assert_true(d->header_size <= len);
    assert_true(VMA_HEADER_FIXED_SIZE + (uint64_t)d->blob_size <= d->header_size);
    md5_with_zeroed(buf, d->header_size, 32, md5);
    assert_memory_equal(md5, buf + 32, 16);
    assert_int_equal(buf[VMA_HEADER_FIXED_SIZE], 0); /* byte 0 of the blob region */

    for (unsigned i = 0; i < 256; i++) {
        uint32_t n = th_get_be32(buf + 2044 + 4 * i), v = th_get_be32(buf + 3068 + 4 * i);
        if (!n && !v) {
            continue;
        }
        assert_int_equal(i, d->nconfigs); /* slots filled in order */
        size_t nl, vl;
        const uint8_t *np = blob_at(d, n, &nl);
        assert_true(nl >= 1 && np[nl - 1] == 0);
        d->cfg_name[i] = (const char *)np;
        d->cfg_data[i] = blob_at(d, v, &vl);
        d->cfg_len[i] = vl;
        d->nconfigs++;
    }
    for (unsigned id = 0; id < 256; id++) {
        const uint8_t *e = buf + 4096 + 32 * id;
        uint32_t np = th_get_be32(e);
        uint64_t size = th_get_be64(e + 8);
        if (!np && !size) {
            continue;
        }
        assert_true(id >= 1 && id <= 254);
        assert_int_equal(id, d->ndevs + 1); /* dev_ids handed out in order */
        size_t nl;
        const uint8_t *name = blob_at(d, np, &nl);
        assert_true(nl >= 2 && name[nl - 1] == 0);
        d->dev_name[id] = (const char *)name;
        d->dev_size[id] = size;
        d->ndevs++;
    }

    d->recs = g_array_new(false, false, sizeof(DecRecord));
    size_t off = d->header_size;
    while (off < len) {
        assert_true(off + VMA_EXTENT_HEADER_SIZE <= len);
        const uint8_t *eh = buf + off;
        md5_with_zeroed(eh, 512, 24, md5);
        assert_memory_equal(md5, eh + 24, 16);
        assert_memory_equal(eh, "VMAE", 4);
        assert_int_equal(eh[4] | eh[5], 0);
        assert_memory_equal(eh + 8, d->uuid, 16);
        unsigned block_count = (unsigned)eh[6] << 8 | eh[7];
        assert_int_equal(th_get_be64(eh + 40 + 8 * 58), 0); /* the deployed writer uses 58 */
        const uint8_t *data = eh + VMA_EXTENT_HEADER_SIZE;
        unsigned blocks = 0;
        for (unsigned s = 0; s < VMA_EXTENT_SLOTS; s++) {
            uint64_t bi = th_get_be64(eh + 40 + 8 * s);
            if (vma_blockinfo_dev_id(bi) == 0) {
                assert_int_equal(bi, 0);
                continue;
            }
            assert_int_equal(vma_blockinfo_reserved(bi), 0);
            DecRecord r = {
                .dev_id = vma_blockinfo_dev_id(bi),
                .cluster = vma_blockinfo_cluster(bi),
                .mask = vma_blockinfo_mask(bi),
                .data = data + (size_t)blocks * VMA_BLOCK_SIZE,
                .extent = d->nextents,
            };
            blocks += (unsigned)__builtin_popcount(r.mask);
            g_array_append_val(d->recs, r);
        }
        assert_int_equal(blocks, block_count);
        off += VMA_EXTENT_HEADER_SIZE + (size_t)block_count * VMA_BLOCK_SIZE;
        assert_true(off <= len);
        d->nextents++;
    }
    assert_true(d->nextents >= 1); /* at least the empty extent */
}

static void decoded_clear(Decoded *d)
{
    if (d->recs) {
        g_array_free(d->recs, true);
    }
    memset(d, 0, sizeof(*d));
}

/* Expand a record into a full 64 KiB cluster. */
static void expand_record(const DecRecord *r, uint8_t *out)
{
    const uint8_t *p = r->data;

    for (unsigned j = 0; j < VMA_BLOCKS_PER_CLUSTER; j++) {
        uint8_t *b = out + (size_t)j * VMA_BLOCK_SIZE;
        if (r->mask & (1u << j)) {
            memcpy(b, p, VMA_BLOCK_SIZE);
            p += VMA_BLOCK_SIZE;
        } else {
            memset(b, 0, VMA_BLOCK_SIZE);
        }
    }
}

/* Every cluster of dev_id exactly once, with the mask of its exact non-zero blocks and
 * the content expected(cluster) cut at the device size. */
typedef void (*ExpectFn)(uint8_t *buf, unsigned dev, uint32_t c, const void *opaque);

static void check_device(const Decoded *d, uint8_t dev_id, ExpectFn expect,
                         const void *opaque)
{
    uint64_t size = d->dev_size[dev_id];
    uint64_t n = (size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
    g_autofree uint8_t *seen = g_malloc0(n);
    g_autofree uint8_t *got = g_malloc(VMA_CLUSTER_SIZE);
    g_autofree uint8_t *want = g_malloc(VMA_CLUSTER_SIZE);
    uint64_t count = 0;

    for (guint i = 0; i < d->recs->len; i++) {
        const DecRecord *r = &g_array_index(d->recs, DecRecord, i);
        if (r->dev_id != dev_id) {
            continue;
        }
        assert_true(r->cluster < n);
        if (seen[r->cluster]) {
            fail_msg("device %u cluster %u appears twice", dev_id, r->cluster);
        }
        seen[r->cluster] = 1;
        count++;
        expand_record(r, got);
        expect(want, dev_id, r->cluster, opaque);
        uint64_t start = (uint64_t)r->cluster * VMA_CLUSTER_SIZE;
        if (size - start < VMA_CLUSTER_SIZE) {
            size_t keep = (size_t)(size - start);
            memset(want + keep, 0, VMA_CLUSTER_SIZE - keep);
        }
        assert_int_equal(r->mask, vma_cluster_zero_mask(want));
        if (memcmp(got, want, VMA_CLUSTER_SIZE) != 0) {
            fail_msg("device %u cluster %u: wrong data", dev_id, r->cluster);
        }
    }
    assert_int_equal(count, n);
}

static void expect_generated(uint8_t *buf, unsigned dev, uint32_t c, const void *opaque)
{
    fill_cluster(buf, dev, c);
}

/* ---- pipe capture (deterministic extent boundaries) ------------------------------- */

typedef struct Capture {
    int rfd;
    GThread *thread;
    GByteArray *data;
} Capture;

static gpointer drain_thread(gpointer opaque)
{
    Capture *cap = opaque;
    uint8_t buf[65536];

    for (;;) {
        ssize_t n = read(cap->rfd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        g_byte_array_append(cap->data, buf, (guint)n);
    }
    return NULL;
}

static VmaWriter *capture_writer(Capture *cap, const VmaWriterOptions *opts)
{
    g_autoptr(GError) err = NULL;
    int p[2];

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    VmaWriter *w = vma_writer_new_fd(p[1], "test pipe", opts, &err);
    assert_non_null(w);
    /* the writer asked for 1 MiB; make the header write block until we read */
    assert_int_equal(fcntl(p[0], F_SETPIPE_SZ, 4096), 4096);
    cap->rfd = p[0];
    cap->thread = NULL;
    cap->data = g_byte_array_new();
    return w;
}

static void capture_release(Capture *cap)
{
    cap->thread = g_thread_new("drain", drain_thread, cap);
}

static GBytes *capture_finish(Capture *cap)
{
    g_thread_join(cap->thread);
    close(cap->rfd);
    return g_byte_array_free_to_bytes(cap->data);
}

/* ---- byte-exact replay of the fixtures --------------------------------------------- */

typedef struct ReplayDev {
    const char *name;
    const char *file;
} ReplayDev;

/*
 * Rebuild `fixture` from its sources: same uuid and ctime, same configs and devices,
 * clusters handed over in the fixture's order. Partial last clusters carry garbage past
 * the device size and all-zero clusters alternate between NULL and a zero buffer.
 */
static void replay_fixture(const char *fixture, const char *const *configs,
                           const ReplayDev *devs, unsigned ndevs)
{
    g_autoptr(GBytes) ref = th_testdata_read(fixture);
    g_autoptr(GError) err = NULL;
    Decoded d;
    gsize ref_len;
    const uint8_t *ref_buf = g_bytes_get_data(ref, &ref_len);

    decode(ref_buf, ref_len, &d);

    VmaWriterOptions opts = { .uuid = d.uuid, .ctime = d.ctime, .queue_clusters = 4096 };
    Capture cap;
    VmaWriter *w = capture_writer(&cap, &opts);

    for (unsigned i = 0; configs[i]; i++) {
        g_autoptr(GBytes) c = th_testdata_read(configs[i]);
        gsize clen;
        const void *cdata = g_bytes_get_data(c, &clen);
        assert_ok(vma_writer_add_config(w, configs[i], cdata, clen, &err), err);
    }
    GBytes *images[256] = { NULL };
    for (unsigned i = 0; i < ndevs; i++) {
        images[i + 1] = th_testdata_read(devs[i].file);
        int id = vma_writer_register_device(w, devs[i].name, g_bytes_get_size(images[i + 1]),
                                            &err);
        assert_int_equal(id, (int)i + 1);
    }

    unsigned zero_count = 0;
    for (guint i = 0; i < d.recs->len; i++) {
        const DecRecord *r = &g_array_index(d.recs, DecRecord, i);
        gsize img_len;
        const uint8_t *img = g_bytes_get_data(images[r->dev_id], &img_len);
        uint64_t start = (uint64_t)r->cluster * VMA_CLUSTER_SIZE;
        uint8_t *buf = vma_cluster_alloc();

        memset(buf, 0xa5, VMA_CLUSTER_SIZE); /* garbage past the device end */
        assert_true(start < img_len);
        memcpy(buf, img + start, MIN(VMA_CLUSTER_SIZE, img_len - start));
        if (vma_buffer_is_zero(buf, VMA_CLUSTER_SIZE) && (zero_count++ % 2) == 0) {
            vma_cluster_free(buf);
            buf = NULL;
        }
        assert_ok(vma_writer_write_cluster(w, r->dev_id, r->cluster, buf, 0, &err), err);
    }
    capture_release(&cap);
    assert_ok(vma_writer_close(w, &err), err);
    vma_writer_free(w);
    g_autoptr(GBytes) out = capture_finish(&cap);

    gsize out_len;
    const uint8_t *out_buf = g_bytes_get_data(out, &out_len);
    /* the header first, for a clear failure message */
    assert_true(out_len >= d.header_size);
    for (size_t i = 0; i < d.header_size; i++) {
        if (out_buf[i] != ref_buf[i]) {
            fail_msg("%s: header differs at byte %zu: 0x%02x, expected 0x%02x", fixture, i,
                     out_buf[i], ref_buf[i]);
        }
    }
    assert_int_equal(out_len, ref_len);
    for (size_t i = 0; i < ref_len; i++) {
        if (out_buf[i] != ref_buf[i]) {
            fail_msg("%s: differs at byte %zu: 0x%02x, expected 0x%02x", fixture, i,
                     out_buf[i], ref_buf[i]);
        }
    }
    for (unsigned i = 1; i <= ndevs; i++) {
        g_bytes_unref(images[i]);
    }
    decoded_clear(&d);
}

static void test_replay_ref_2dev(void **state)
{
    static const char *const configs[] = { "qemu-server.conf", "qemu-server.fw", NULL };
    static const ReplayDev devs[] = { { "drive-scsi0", "a.raw" }, { "drive-efidisk0", "b.raw" } };

    replay_fixture("ref-2dev.vma", configs, devs, 2);
}

static void test_replay_tiny(void **state)
{
    static const char *const configs[] = { "qemu-server.conf", NULL };
    static const ReplayDev devs[] = { { "drive-scsi0", "tiny.raw" } };

    replay_fixture("tiny.vma", configs, devs, 1);
}

static void test_replay_nodisk(void **state)
{
    static const char *const configs[] = { "qemu-server.conf", NULL };

    replay_fixture("ref-nodisk.vma", configs, NULL, 0);
}

static void test_replay_multiextent(void **state)
{
    static const char *const configs[] = { "qemu-server.conf", NULL };
    static const ReplayDev devs[] = { { "drive-virtio0", "c.raw" } };

    replay_fixture("ref-multiextent.vma", configs, devs, 1);
}

static void test_replay_vmstate(void **state)
{
    static const char *const configs[] = { "qemu-server.conf", NULL };
    static const ReplayDev devs[] = { { "vmstate", "vmstate.raw" } };

    replay_fixture("vms.vma", configs, devs, 1);
}

/* The header alone, built with the fixture's uuid and ctime, without writing clusters:
 * the writer must emit byte-identical header bytes. */
static void test_header_ref_2dev(void **state)
{
    g_autoptr(GBytes) ref = th_testdata_read("ref-2dev.vma");
    g_autoptr(GBytes) conf = th_testdata_read("qemu-server.conf");
    g_autoptr(GBytes) fw = th_testdata_read("qemu-server.fw");
    g_autoptr(GError) err = NULL;
    const uint8_t *rb = g_bytes_get_data(ref, NULL);
    uint8_t uuid[16];
    int64_t ctime = (int64_t)th_get_be64(rb + 24);
    uint32_t hsize = th_get_be32(rb + 56);

    memcpy(uuid, rb + 8, 16);
    VmaWriterOptions opts = { .uuid = uuid, .ctime = ctime };
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    VmaWriter *w = vma_writer_new(path, &opts, &err);
    assert_non_null(w);
    assert_ok(vma_writer_add_config(w, "qemu-server.conf", g_bytes_get_data(conf, NULL),
                                    g_bytes_get_size(conf), &err), err);
    assert_ok(vma_writer_add_config(w, "qemu-server.fw", g_bytes_get_data(fw, NULL),
                                    g_bytes_get_size(fw), &err), err);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 1050112, &err), 1);
    assert_int_equal(vma_writer_register_device(w, "drive-efidisk0", 540672, &err), 2);
    assert_ok(vma_writer_start(w, &err), err);
    /* no clusters: close would fail and remove the file, so read it while open */
    for (int i = 0; i < 10000 && vma_writer_get_output_bytes(w) < hsize; i++) {
        g_usleep(1000);
    }
    assert_int_equal(vma_writer_get_output_bytes(w), hsize);
    /* an incomplete archive is only under its temporary name */
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_autofree char *tmp = find_tmp(dir, "out.vma");
    assert_non_null(tmp);
    g_autoptr(GBytes) out = th_file_read(tmp);
    assert_int_equal(g_bytes_get_size(out), hsize);
    assert_memory_equal(g_bytes_get_data(out, NULL), rb, hsize);

    char ustr[37];
    vma_writer_get_uuid_str(w, ustr);
    assert_string_equal(ustr, "460ede6e-dfbf-4473-b4f8-579fa91ae3a4");

    vma_writer_free(w); /* cancels, removes the partial file */
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    th_tmpdir_remove(dir);
    g_free(dir);
}

/* ---- header rules --------------------------------------------------------------------- */

/* Write an archive with no devices to a file and decode it. */
static GBytes *finish_to_bytes(VmaWriter *w, const char *path)
{
    g_autoptr(GError) err = NULL;

    assert_ok(vma_writer_close(w, &err), err);
    vma_writer_free(w);
    return th_file_read(path);
}

static void test_blob_little_endian(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    uint8_t data[300];

    memset(data, 'x', sizeof(data));
    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_ok(vma_writer_add_config(w, "a.conf", data, sizeof(data), &err), err);
    assert_ok(vma_writer_add_config(w, "empty.conf", NULL, 0, &err), err);
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_int_equal(d.nconfigs, 2);
    assert_string_equal(d.cfg_name[0], "a.conf");
    assert_int_equal(d.cfg_len[0], 300);
    /* 300 = 0x012c, stored low byte first right before the data */
    assert_int_equal(d.cfg_data[0][-2], 0x2c);
    assert_int_equal(d.cfg_data[0][-1], 0x01);
    /* first blob at offset 1: the name's length 7 ("a.conf" + NUL) */
    const uint8_t *blobs = d.buf + VMA_HEADER_FIXED_SIZE;
    assert_int_equal(blobs[1], 7);
    assert_int_equal(blobs[2], 0);
    assert_int_equal(d.cfg_len[1], 0);
    assert_int_equal(d.blob_size, 1 + (2 + 7) + (2 + 300) + (2 + 11) + 2);
    assert_int_equal(d.header_size, VMA_HEADER_FIXED_SIZE + 512);
    assert_int_equal(d.ndevs, 0);
    /* header plus one empty extent */
    assert_int_equal(d.nextents, 1);
    assert_int_equal(d.recs->len, 0);
    assert_int_equal(g_bytes_get_size(out), d.header_size + 512);
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_config_limits(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    g_autofree uint8_t *big = g_malloc(65536);
    g_autofree char *long_name = g_malloc(65536);

    memset(big, 'c', 65536);
    memset(long_name, 'n', 65535);
    long_name[65535] = '\0';

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_false(vma_writer_add_config(w, "too-big.conf", big, 65536, &err));
    assert_error(err, VMA_ERROR_INVALID, "too-big.conf");
    g_clear_error(&err);
    assert_false(vma_writer_add_config(w, long_name, "x", 1, &err));
    assert_error(err, VMA_ERROR_INVALID, "too long");
    g_clear_error(&err);
    assert_false(vma_writer_add_config(w, "", "x", 1, &err));
    assert_error(err, VMA_ERROR_INVALID, "empty name");
    g_clear_error(&err);
    assert_ok(vma_writer_add_config(w, "big.conf", big, 65535, &err), err);
    assert_false(vma_writer_add_config(w, "big.conf", "x", 1, &err));
    assert_error(err, VMA_ERROR_INVALID, "big.conf");
    g_clear_error(&err);
    /* seven 64 KiB configs fit in 524288 header bytes, the eighth does not */
    for (int i = 2; i <= 7; i++) {
        g_autofree char *name = g_strdup_printf("big%d.conf", i);
        assert_ok(vma_writer_add_config(w, name, big, 65535, &err), err);
    }
    assert_false(vma_writer_add_config(w, "big8.conf", big, 65535, &err));
    assert_error(err, VMA_ERROR_INVALID, "524288");
    g_clear_error(&err);
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_int_equal(d.nconfigs, 7);
    assert_int_equal(d.cfg_len[0], 65535);
    assert_memory_equal(d.cfg_data[0], big, 65535);
    assert_string_equal(d.cfg_name[6], "big7.conf");
    assert_true(d.header_size <= 524288);
    /* the deployed growth rule: the first name claims 512 bytes, each data blob grows
     * the region by 65537 rounded up to 66048, and the later names fit in the slack */
    assert_int_equal(d.header_size, VMA_HEADER_FIXED_SIZE + 512 + 7 * 66048);
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_config_count(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    for (int i = 0; i < 256; i++) {
        g_autofree char *name = g_strdup_printf("c%d.conf", i);
        g_autofree char *data = g_strdup_printf("data %d\n", i);
        assert_ok(vma_writer_add_config(w, name, data, strlen(data), &err), err);
    }
    assert_false(vma_writer_add_config(w, "c256.conf", "x", 1, &err));
    assert_error(err, VMA_ERROR_INVALID, "too many configs");
    g_clear_error(&err);
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_int_equal(d.nconfigs, 256);
    for (int i = 0; i < 256; i++) {
        g_autofree char *name = g_strdup_printf("c%d.conf", i);
        g_autofree char *data = g_strdup_printf("data %d\n", i);
        assert_string_equal(d.cfg_name[i], name);
        assert_int_equal(d.cfg_len[i], strlen(data));
        assert_memory_equal(d.cfg_data[i], data, strlen(data));
    }
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_device_limits(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "zero", 0, &err), -1);
    assert_error(err, VMA_ERROR_INVALID, "invalid size 0");
    g_clear_error(&err);
    assert_int_equal(vma_writer_register_device(w, "huge", VMA_MAX_DEVICE_SIZE + 1, &err), -1);
    assert_error(err, VMA_ERROR_INVALID, "huge");
    g_clear_error(&err);
    assert_int_equal(vma_writer_register_device(w, "", 4096, &err), -1);
    assert_error(err, VMA_ERROR_INVALID, "empty name");
    g_clear_error(&err);
    for (int i = 1; i <= 254; i++) {
        g_autofree char *name = g_strdup_printf("drive-scsi%d", i);
        assert_int_equal(vma_writer_register_device(w, name, 256 * (uint64_t)i, &err), i);
    }
    assert_int_equal(vma_writer_register_device(w, "drive-scsi255", 4096, &err), -1);
    assert_error(err, VMA_ERROR_INVALID, "too many devices");
    g_clear_error(&err);
    for (int i = 1; i <= 254; i++) {
        assert_ok(vma_writer_write_cluster(w, (uint8_t)i, 0, NULL, 0, &err), err);
    }
    /* the header is final now */
    assert_int_equal(vma_writer_register_device(w, "late", 4096, &err), -1);
    assert_error(err, VMA_ERROR_INVALID, "already final");
    g_clear_error(&err);
    assert_false(vma_writer_add_config(w, "late.conf", "x", 1, &err));
    assert_error(err, VMA_ERROR_INVALID, "already final");
    g_clear_error(&err);
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_int_equal(d.ndevs, 254);
    assert_string_equal(d.dev_name[254], "drive-scsi254");
    assert_int_equal(d.dev_size[254], 256 * 254);
    assert_int_equal(d.recs->len, 254);
    decoded_clear(&d);

    /* duplicate names */
    g_autofree char *path2 = g_build_filename(dir, "out2.vma", NULL);
    w = vma_writer_new(path2, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 4096, &err), 1);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 8192, &err), -1);
    assert_error(err, VMA_ERROR_INVALID, "registered already");
    g_clear_error(&err);
    vma_writer_free(w);
    assert_false(g_file_test(path2, G_FILE_TEST_EXISTS));
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_random_uuid_and_time(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    static const uint8_t zero[16];
    uint8_t uuid[16];
    char text[37];
    int64_t before = (int64_t)time(NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    vma_writer_get_uuid(w, uuid);
    vma_writer_get_uuid_str(w, text);
    assert_memory_not_equal(uuid, zero, 16);
    assert_int_equal(strlen(text), 36);
    for (int i = 0; i < 36; i++) {
        assert_true(text[i] == '-' || g_ascii_isxdigit(text[i]));
        assert_false(g_ascii_isupper(text[i]));
    }
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_memory_equal(d.uuid, uuid, 16);
    assert_true(d.ctime >= before && d.ctime <= (int64_t)time(NULL));
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

/* ---- clusters ------------------------------------------------------------------------- */

static void expect_pattern(uint8_t *buf, unsigned dev, uint32_t c, const void *opaque)
{
    for (size_t i = 0; i < VMA_CLUSTER_SIZE; i++) {
        buf[i] = (uint8_t)((i * 7 + c * 13 + dev) | 1);
    }
}

/* A cluster buffer full of non-zero bytes. */
static void *pattern_cluster(void)
{
    uint8_t *buf = vma_cluster_alloc();

    expect_pattern(buf, 0, 0, NULL);
    return buf;
}

/* Odd sizes: every cluster written full of non-zero bytes; the writer must zero what
 * lies past the size and never store blocks that start at or after it. */
static void test_odd_sizes(void **state)
{
    static const uint64_t sizes[] = { 1, 511, 4096, 4097, 65535, 65536, 65537, 200000 };
    const unsigned n = G_N_ELEMENTS(sizes);
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    for (unsigned i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf("dev%" G_GUINT64_FORMAT, sizes[i]);
        assert_int_equal(vma_writer_register_device(w, name, sizes[i], &err), (int)i + 1);
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t nc = (sizes[i] + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
        for (uint32_t c = 0; c < nc; c++) {
            uint8_t *buf = vma_cluster_alloc();
            expect_pattern(buf, i + 1, c, NULL);
            assert_ok(vma_writer_write_cluster(w, (uint8_t)(i + 1), c, buf, 0, &err), err);
        }
        /* one past the end is refused */
        assert_false(vma_writer_write_cluster(w, (uint8_t)(i + 1), (uint32_t)nc,
                                              pattern_cluster(), 0, &err));
        assert_error(err, VMA_ERROR_INVALID, "beyond the end");
        g_clear_error(&err);
        VmaDeviceStatus st;
        assert_true(vma_writer_get_device_status(w, (uint8_t)(i + 1), &st));
        assert_int_equal(st.size, sizes[i]);
        assert_int_equal(st.transferred, sizes[i]);
        assert_int_equal(st.zero_bytes, 0);
    }
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_int_equal(d.ndevs, n);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(d.dev_size[i + 1], sizes[i]);
        check_device(&d, (uint8_t)(i + 1), expect_pattern, NULL);
    }
    /* spot checks of the masks: size 1 stores block 0 only, 4097 blocks 0 and 1 */
    for (guint i = 0; i < d.recs->len; i++) {
        const DecRecord *r = &g_array_index(d.recs, DecRecord, i);
        if (r->dev_id == 1) {
            assert_int_equal(r->mask, 0x0001);
            assert_int_equal(r->data[0], 1); /* pattern byte 0 of device 1, cluster 0 */
            assert_int_equal(r->data[1], 0);
        } else if (r->dev_id == 4) {
            assert_int_equal(r->mask, 0x0003);
        } else if (r->dev_id == 7 && r->cluster == 1) {
            assert_int_equal(r->mask, 0x0001);
        }
    }
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

/* Zero accounting counts zero blocks only up to the device size. */
static void test_zero_accounting(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    uint64_t size = VMA_CLUSTER_SIZE + 2 * VMA_BLOCK_SIZE + 100;
    assert_int_equal(vma_writer_register_device(w, "d", size, &err), 1);
    uint8_t *buf = vma_cluster_alloc();
    memset(buf, 0, VMA_CLUSTER_SIZE);
    buf[3 * VMA_BLOCK_SIZE + 5] = 1; /* one non-zero block */
    assert_ok(vma_writer_write_cluster(w, 1, 0, buf, 0, &err), err);
    buf = vma_cluster_alloc();
    memset(buf, 0, VMA_CLUSTER_SIZE);
    buf[3 * VMA_BLOCK_SIZE] = 1; /* past the size: cleared, so all zero */
    assert_ok(vma_writer_write_cluster(w, 1, 1, buf, 0, &err), err);
    VmaDeviceStatus st;
    assert_true(vma_writer_get_device_status(w, 1, &st));
    assert_false(vma_writer_get_device_status(w, 2, &st));
    assert_int_equal(st.transferred, size);
    assert_int_equal(st.zero_bytes, size - VMA_BLOCK_SIZE);
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_int_equal(d.recs->len, 2);
    for (guint i = 0; i < 2; i++) {
        const DecRecord *r = &g_array_index(d.recs, DecRecord, i);
        assert_int_equal(r->mask, r->cluster == 0 ? 0x0008 : 0);
    }
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

/* A 256 TiB device costs nothing at registration; writing its first and last cluster
 * touches two bitmap chunks; close names the first missing cluster and removes the file. */
static void test_max_device(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-big", VMA_MAX_DEVICE_SIZE, &err), 1);
    uint8_t *buf = vma_cluster_alloc();
    memset(buf, 0x11, VMA_CLUSTER_SIZE);
    assert_ok(vma_writer_write_cluster(w, 1, UINT32_MAX, buf, 0, &err), err);
    assert_ok(vma_writer_write_cluster(w, 1, 0, NULL, 0, &err), err);
    assert_false(vma_writer_write_cluster(w, 1, UINT32_MAX, NULL, 0, &err));
    assert_error(err, VMA_ERROR_DUPLICATE, "cluster 4294967295");
    g_clear_error(&err);
    VmaDeviceStatus st;
    assert_true(vma_writer_get_device_status(w, 1, &st));
    assert_int_equal(st.transferred, 2 * VMA_CLUSTER_SIZE);
    assert_int_equal(st.zero_bytes, VMA_CLUSTER_SIZE);
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_MISSING,
                 "device drive-big: cluster 1 was never written (4294967294 of 4294967296");
    g_clear_error(&err);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    vma_writer_free(w);
    th_tmpdir_remove(dir);
    g_free(dir);
}

typedef struct Job {
    uint8_t dev;
    uint32_t cluster;
} Job;

typedef struct MtShared {
    VmaWriter *w;
    Job *jobs;
    unsigned njobs;
    unsigned nthreads;
    uint64_t sizes[3];
    gint failures;
    char *first_error;
    GMutex lock;
} MtShared;

typedef struct MtThread {
    MtShared *sh;
    unsigned index;
} MtThread;

static gpointer mt_thread(gpointer opaque)
{
    MtThread *t = opaque;
    MtShared *sh = t->sh;
    uint32_t s = t->index + 77;

    for (unsigned i = t->index; i < sh->njobs; i += sh->nthreads) {
        Job *j = &sh->jobs[i];
        uint8_t *buf = vma_cluster_alloc();
        GError *err = NULL;
        fill_cluster(buf, j->dev, j->cluster);
        if (vma_buffer_is_zero(buf, VMA_CLUSTER_SIZE) && xorshift(&s) % 2) {
            vma_cluster_free(buf);
            buf = NULL;
        }
        unsigned flags = xorshift(&s) % 5 == 0 ? VMA_WRITE_PRIORITY : 0;
        if (!vma_writer_write_cluster(sh->w, j->dev, j->cluster, buf, flags, &err)) {
            g_mutex_lock(&sh->lock);
            if (!sh->first_error) {
                sh->first_error = g_strdup(err->message);
            }
            g_mutex_unlock(&sh->lock);
            g_atomic_int_inc(&sh->failures);
            g_error_free(err);
        }
    }
    return NULL;
}

/* Four threads hand over random permutations of two devices' clusters through a small
 * queue; every cluster must appear exactly once with its data. */
static void test_threads_out_of_order(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    MtShared sh = { .nthreads = 4, .sizes = { 0, 300 * (uint64_t)VMA_CLUSTER_SIZE - 1000,
                                               77 * (uint64_t)VMA_CLUSTER_SIZE } };
    VmaWriterOptions opts = { .queue_clusters = 4 };

    g_mutex_init(&sh.lock);
    sh.w = vma_writer_new(path, &opts, &err);
    assert_non_null(sh.w);
    assert_int_equal(vma_writer_register_device(sh.w, "drive-scsi0", sh.sizes[1], &err), 1);
    assert_int_equal(vma_writer_register_device(sh.w, "drive-virtio1", sh.sizes[2], &err), 2);
    sh.njobs = 300 + 77;
    sh.jobs = g_new(Job, sh.njobs);
    for (unsigned i = 0; i < 300; i++) {
        sh.jobs[i] = (Job){ 1, i };
    }
    for (unsigned i = 0; i < 77; i++) {
        sh.jobs[300 + i] = (Job){ 2, i };
    }
    GRand *rand = g_rand_new_with_seed(4242);
    for (unsigned i = sh.njobs - 1; i > 0; i--) {
        unsigned k = (unsigned)g_rand_int_range(rand, 0, (gint32)i + 1);
        Job tmp = sh.jobs[i];
        sh.jobs[i] = sh.jobs[k];
        sh.jobs[k] = tmp;
    }
    g_rand_free(rand);

    MtThread th[4];
    GThread *threads[4];
    for (unsigned i = 0; i < 4; i++) {
        th[i] = (MtThread){ &sh, i };
        threads[i] = g_thread_new("producer", mt_thread, &th[i]);
    }
    for (unsigned i = 0; i < 4; i++) {
        g_thread_join(threads[i]);
    }
    if (sh.failures) {
        fail_msg("%d writes failed, first: %s", sh.failures, sh.first_error);
    }
    for (uint8_t dev = 1; dev <= 2; dev++) {
        VmaDeviceStatus st;
        assert_true(vma_writer_get_device_status(sh.w, dev, &st));
        assert_int_equal(st.transferred, sh.sizes[dev]);
    }
    assert_ok(vma_writer_close(sh.w, &err), err);
    assert_int_equal(vma_writer_get_queued_bytes(sh.w), 0);
    uint64_t output_bytes = vma_writer_get_output_bytes(sh.w);
    vma_writer_free(sh.w);
    g_autoptr(GBytes) out = th_file_read(path);
    assert_int_equal(g_bytes_get_size(out), output_bytes);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_int_equal(d.recs->len, sh.njobs);
    check_device(&d, 1, expect_generated, NULL);
    check_device(&d, 2, expect_generated, NULL);
    decoded_clear(&d);
    g_free(sh.jobs);
    g_free(sh.first_error);
    g_mutex_clear(&sh.lock);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_duplicate_cluster(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 2 * VMA_CLUSTER_SIZE, &err), 1);
    uint8_t *buf = vma_cluster_alloc();
    expect_pattern(buf, 1, 0, NULL);
    assert_ok(vma_writer_write_cluster(w, 1, 0, buf, 0, &err), err);
    assert_false(vma_writer_write_cluster(w, 1, 0, pattern_cluster(), 0, &err));
    assert_error(err, VMA_ERROR_DUPLICATE, "write drive-scsi0 cluster 0: cluster was already written");
    g_clear_error(&err);
    assert_false(vma_writer_write_cluster(w, 1, 0, NULL, VMA_WRITE_PRIORITY, &err));
    assert_error(err, VMA_ERROR_DUPLICATE, "already written");
    g_clear_error(&err);
    /* a caller mistake is not latched: the archive can still be finished */
    assert_true(vma_writer_check(w, &err));
    buf = vma_cluster_alloc();
    expect_pattern(buf, 1, 1, NULL);
    assert_ok(vma_writer_write_cluster(w, 1, 1, buf, 0, &err), err);
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    check_device(&d, 1, expect_pattern, NULL);
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_invalid_clusters(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 4096, &err), 1);
    assert_int_equal(vma_writer_register_device(w, "vmstate", 4096, &err), 2);
    assert_false(vma_writer_write_cluster(w, 0, 0, NULL, 0, &err));
    assert_error(err, VMA_ERROR_INVALID, "no such device");
    g_clear_error(&err);
    assert_false(vma_writer_write_cluster(w, 3, 0, pattern_cluster(), 0, &err));
    assert_error(err, VMA_ERROR_INVALID, "device id 3");
    g_clear_error(&err);
    assert_false(vma_writer_write_cluster(w, 1, 1, NULL, 0, &err));
    assert_error(err, VMA_ERROR_INVALID, "write drive-scsi0 cluster 1: beyond the end");
    g_clear_error(&err);
    /* vmstate: in order, and past its size */
    assert_false(vma_writer_write_cluster(w, 2, 1, NULL, 0, &err));
    assert_error(err, VMA_ERROR_INVALID, "out of order (expected cluster 0)");
    g_clear_error(&err);
    for (uint32_t c = 0; c < 3; c++) {
        uint8_t *buf = vma_cluster_alloc();
        expect_pattern(buf, 2, c, NULL);
        assert_ok(vma_writer_write_cluster(w, 2, c, buf, VMA_WRITE_PRIORITY, &err), err);
    }
    assert_false(vma_writer_write_cluster(w, 2, 1, NULL, 0, &err));
    assert_error(err, VMA_ERROR_DUPLICATE, "out of order");
    g_clear_error(&err);
    assert_ok(vma_writer_write_cluster(w, 1, 0, NULL, 0, &err), err);
    g_autoptr(GBytes) out = finish_to_bytes(w, path);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    unsigned next = 0;
    g_autofree uint8_t *got = g_malloc(VMA_CLUSTER_SIZE);
    g_autofree uint8_t *want = g_malloc(VMA_CLUSTER_SIZE);
    for (guint i = 0; i < d.recs->len; i++) {
        const DecRecord *r = &g_array_index(d.recs, DecRecord, i);
        if (r->dev_id != 2) {
            continue;
        }
        /* whole clusters, not cut at the 4096-byte size */
        assert_int_equal(r->cluster, next);
        assert_int_equal(r->mask, 0xffff);
        expand_record(r, got);
        expect_pattern(want, 2, next, NULL);
        assert_memory_equal(got, want, VMA_CLUSTER_SIZE);
        next++;
    }
    assert_int_equal(next, 3);
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_missing_cluster(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 3 * VMA_CLUSTER_SIZE, &err), 1);
    assert_ok(vma_writer_write_cluster(w, 1, 0, NULL, 0, &err), err);
    assert_ok(vma_writer_write_cluster(w, 1, 2, NULL, 0, &err), err);
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_MISSING,
                 "device drive-scsi0: cluster 1 was never written (1 of 3 clusters missing)");
    g_clear_error(&err);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    /* close twice */
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_INVALID, "closed already");
    g_clear_error(&err);
    vma_writer_free(w);

    /* the gap in the second bitmap chunk (clusters 65536 and up), cluster 0 present */
    w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-sata1", 70000 * (uint64_t)VMA_CLUSTER_SIZE,
                                                &err), 1);
    for (uint32_t c = 0; c < 70000; c++) {
        if (c != 65600) {
            assert_ok(vma_writer_write_cluster(w, 1, c, NULL, 0, &err), err);
        }
    }
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_MISSING,
                 "device drive-sata1: cluster 65600 was never written (1 of 70000 clusters");
    g_clear_error(&err);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    vma_writer_free(w);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_cancel(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 3 * VMA_CLUSTER_SIZE, &err), 1);
    assert_ok(vma_writer_write_cluster(w, 1, 0, pattern_cluster(), 0, &err), err);
    vma_writer_cancel(w, "backup canceled");
    vma_writer_cancel(w, "second cancel is ignored");
    assert_false(vma_writer_write_cluster(w, 1, 1, pattern_cluster(), 0, &err));
    assert_error(err, VMA_ERROR_CANCELLED, "backup canceled");
    g_clear_error(&err);
    assert_false(vma_writer_check(w, &err));
    assert_error(err, VMA_ERROR_CANCELLED, "backup canceled");
    g_clear_error(&err);
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_CANCELLED, "backup canceled");
    assert_string_equal(err->message, "backup canceled");
    g_clear_error(&err);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    vma_writer_free(w);

    /* free without close removes the partial file too */
    w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 4096, &err), 1);
    assert_ok(vma_writer_write_cluster(w, 1, 0, pattern_cluster(), 0, &err), err);
    vma_writer_free(w);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    th_tmpdir_remove(dir);
    g_free(dir);
}

/* Cancel wakes a writer thread blocked on a pipe nobody reads, and producers blocked on
 * the full normal lane. */
typedef struct BlockedProducer {
    VmaWriter *w;
    gint done;
    bool ok;
    int code;
} BlockedProducer;

static gpointer blocked_producer(gpointer opaque)
{
    BlockedProducer *bp = opaque;
    GError *err = NULL;

    for (uint32_t c = 0; c < 64; c++) {
        bp->ok = vma_writer_write_cluster(bp->w, 1, c, pattern_cluster(), 0, &err);
        if (!bp->ok) {
            bp->code = err->code;
            g_error_free(err);
            break;
        }
    }
    g_atomic_int_set(&bp->done, 1);
    return NULL;
}

static void test_cancel_wakes_blocked(void **state)
{
    g_autoptr(GError) err = NULL;
    VmaWriterOptions opts = { .queue_clusters = 2 };
    Capture cap;
    VmaWriter *w = capture_writer(&cap, &opts);
    BlockedProducer bp = { .w = w };

    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 64 * VMA_CLUSTER_SIZE, &err), 1);
    GThread *t = g_thread_new("producer", blocked_producer, &bp);
    /* the producer fills the lane and blocks; the writer blocks in the header write */
    for (int i = 0; i < 10000 && vma_writer_get_queued_bytes(w) < 2 * VMA_CLUSTER_SIZE; i++) {
        g_usleep(1000);
    }
    assert_int_equal(vma_writer_get_queued_bytes(w), 2 * VMA_CLUSTER_SIZE);
    g_usleep(20000);
    assert_int_equal(g_atomic_int_get(&bp.done), 0);
    vma_writer_cancel(w, "backup canceled");
    g_thread_join(t);
    assert_false(bp.ok);
    assert_int_equal(bp.code, VMA_ERROR_CANCELLED);
    /* close returns although nobody ever read the pipe */
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_CANCELLED, "backup canceled");
    assert_int_equal(vma_writer_get_queued_bytes(w), 0);
    vma_writer_free(w);
    capture_release(&cap);
    g_autoptr(GBytes) out = capture_finish(&cap);
    assert_int_equal(g_bytes_get_size(out), 4096);
}

/* ---- outputs -------------------------------------------------------------------------- */

static void write_tiny(VmaWriter *w)
{
    g_autoptr(GError) err = NULL;

    assert_ok(vma_writer_add_config(w, "qemu-server.conf", "memory: 512\n", 12, &err), err);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 3 * VMA_CLUSTER_SIZE, &err), 1);
    for (uint32_t c = 0; c < 3; c++) {
        uint8_t *buf = vma_cluster_alloc();
        expect_pattern(buf, 1, c, NULL);
        assert_ok(vma_writer_write_cluster(w, 1, c, buf, 0, &err), err);
    }
}

static void check_tiny(GBytes *out)
{
    Decoded d;

    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    assert_int_equal(d.nconfigs, 1);
    assert_string_equal(d.cfg_name[0], "qemu-server.conf");
    check_device(&d, 1, expect_pattern, NULL);
    decoded_clear(&d);
}

static void test_exec_target(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    g_autofree char *quoted = g_shell_quote(path);
    g_autofree char *target = g_strdup_printf("exec:cat > %s", quoted);

    VmaWriter *w = vma_writer_new(target, NULL, &err);
    assert_non_null(w);
    write_tiny(w);
    assert_ok(vma_writer_close(w, &err), err);
    vma_writer_free(w);
    g_autoptr(GBytes) out = th_file_read(path);
    check_tiny(out);

    /* a failing command: its exit status is the error, not the broken pipe */
    w = vma_writer_new("exec:exit 3", NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 64 * VMA_CLUSTER_SIZE, &err), 1);
    for (uint32_t c = 0; c < 64; c++) {
        uint8_t *buf = vma_cluster_alloc();
        expect_pattern(buf, 1, c, NULL);
        if (!vma_writer_write_cluster(w, 1, c, buf, 0, &err)) {
            assert_error(err, VMA_ERROR_IO, "write to exec:exit 3: Broken pipe");
            g_clear_error(&err);
            break;
        }
    }
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_FAILED, NULL);
    assert_string_equal(err->message, "exec:exit 3: command exited with status 3");
    g_clear_error(&err);
    vma_writer_free(w);

    /* a command that reads everything and still fails */
    w = vma_writer_new("exec:cat >/dev/null; exit 4", NULL, &err);
    assert_non_null(w);
    write_tiny(w);
    assert_false(vma_writer_close(w, &err));
    assert_string_equal(err->message, "exec:cat >/dev/null; exit 4: command exited with status 4");
    g_clear_error(&err);
    vma_writer_free(w);

    assert_null(vma_writer_new("exec:", NULL, &err));
    assert_error(err, VMA_ERROR_INVALID, "empty command");
    g_clear_error(&err);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_existing_file(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    assert_true(g_file_set_contents(path, "keep", 4, NULL));
    assert_null(vma_writer_new(path, NULL, &err));
    assert_error(err, VMA_ERROR_EXISTS, "File exists");
    assert_non_null(strstr(err->message, path));
    g_clear_error(&err);
    g_autoptr(GBytes) kept = th_file_read(path);
    assert_int_equal(g_bytes_get_size(kept), 4);

    g_autofree char *nodir = g_build_filename(dir, "no", "such", "dir.vma", NULL);
    assert_null(vma_writer_new(nodir, NULL, &err));
    assert_error(err, VMA_ERROR_IO, "No such file or directory");
    g_clear_error(&err);
    th_tmpdir_remove(dir);
    g_free(dir);
}

/* A new file is written as ".NAME.tmp-XXXXXX" (mode 0600) and appears under NAME only
 * once complete; a failed or cancelled one leaves neither name behind. */
static void test_new_file_tempname(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    struct stat st;

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_autofree char *tmp = find_tmp(dir, "out.vma");
    assert_non_null(tmp);
    assert_int_equal(lstat(tmp, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    write_tiny(w);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    assert_ok(vma_writer_close(w, &err), err);
    assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
    assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    assert_int_equal(count_entries(dir), 1);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    vma_writer_free(w);
    g_autoptr(GBytes) out = th_file_read(path);
    check_tiny(out);

    /* cancelled: neither name remains */
    g_autofree char *path2 = g_build_filename(dir, "two.vma", NULL);
    w = vma_writer_new(path2, NULL, &err);
    assert_non_null(w);
    write_tiny(w);
    vma_writer_cancel(w, "backup canceled");
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_CANCELLED, "backup canceled");
    g_clear_error(&err);
    vma_writer_free(w);
    assert_int_equal(count_entries(dir), 1);

    /* a final name of NAME_MAX bytes: the temporary name is cut to fit */
    char base[256];
    memset(base, 'n', 255);
    base[255] = '\0';
    g_autofree char *longpath = g_build_filename(dir, base, NULL);
    w = vma_writer_new(longpath, NULL, &err);
    assert_non_null(w);
    write_tiny(w);
    assert_ok(vma_writer_close(w, &err), err);
    vma_writer_free(w);
    assert_true(g_file_test(longpath, G_FILE_TEST_IS_REGULAR));
    assert_int_equal(count_entries(dir), 2);
    th_tmpdir_remove(dir);
    g_free(dir);
}

/* A file created under the final name while the archive was written is never replaced;
 * a dangling symlink counts as taken, as O_EXCL has it. */
static void test_final_name_taken(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    write_tiny(w);
    assert_true(g_file_set_contents(path, "mine", 4, NULL));
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_EXISTS, "File exists (created while the archive was written)");
    assert_non_null(strstr(err->message, path));
    g_clear_error(&err);
    vma_writer_free(w);
    g_autoptr(GBytes) kept = th_file_read(path);
    assert_int_equal(g_bytes_get_size(kept), 4);
    assert_memory_equal(g_bytes_get_data(kept, NULL), "mine", 4);
    g_autofree char *tmp = find_tmp(dir, "out.vma");
    assert_null(tmp);
    assert_int_equal(count_entries(dir), 1);

    g_autofree char *link = g_build_filename(dir, "link.vma", NULL);
    assert_int_equal(symlink("nowhere", link), 0);
    assert_null(vma_writer_new(link, NULL, &err));
    assert_error(err, VMA_ERROR_EXISTS, "File exists");
    g_clear_error(&err);
    assert_int_equal(count_entries(dir), 2);
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_fifo_target(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *fifo = g_build_filename(dir, "fifo", NULL);

    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* no reader: refused at once, not a hang */
    assert_null(vma_writer_new(fifo, NULL, &err));
    assert_error(err, VMA_ERROR_IO, "no process has the FIFO open for reading");
    g_clear_error(&err);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    assert_true(rfd >= 0);
    VmaWriter *w = vma_writer_new(fifo, NULL, &err);
    assert_non_null(w);
    assert_int_equal(fcntl(rfd, F_GETPIPE_SZ), 1024 * 1024);
    assert_int_equal(fcntl(rfd, F_SETFL, fcntl(rfd, F_GETFL) & ~O_NONBLOCK), 0);
    Capture cap = { .rfd = rfd, .data = g_byte_array_new() };
    capture_release(&cap);
    write_tiny(w);
    assert_ok(vma_writer_close(w, &err), err);
    vma_writer_free(w);
    g_autoptr(GBytes) out = capture_finish(&cap);
    check_tiny(out);
    assert_true(g_file_test(fifo, G_FILE_TEST_EXISTS)); /* never removed */
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_broken_pipe(void **state)
{
    g_autoptr(GError) err = NULL;
    int p[2];

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    VmaWriter *w = vma_writer_new_fd(p[1], "test pipe", NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 64 * VMA_CLUSTER_SIZE, &err), 1);
    bool failed = false;
    for (uint32_t c = 0; c < 64 && !failed; c++) {
        failed = !vma_writer_write_cluster(w, 1, c, pattern_cluster(), 0, &err);
    }
    if (!failed) {
        assert_false(vma_writer_close(w, &err));
    }
    assert_error(err, VMA_ERROR_IO, "write to test pipe: Broken pipe");
    g_clear_error(&err);
    assert_false(vma_writer_check(w, &err));
    assert_error(err, VMA_ERROR_IO, "Broken pipe");
    g_clear_error(&err);
    vma_writer_free(w);
}

/* A passed descriptor is never unlinked, even when the archive fails. */
static void test_fd_regular_file(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    VmaWriter *w = vma_writer_new_fd(fd, path, NULL, &err);
    assert_non_null(w);
    write_tiny(w);
    assert_ok(vma_writer_close(w, &err), err);
    vma_writer_free(w);
    g_autoptr(GBytes) out = th_file_read(path);
    check_tiny(out);
    g_unlink(path);

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    w = vma_writer_new_fd(fd, path, NULL, &err);
    assert_non_null(w);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 4096, &err), 1);
    assert_false(vma_writer_close(w, &err));
    assert_error(err, VMA_ERROR_MISSING, "cluster 0 was never written");
    g_clear_error(&err);
    vma_writer_free(w);
    assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
    th_tmpdir_remove(dir);
    g_free(dir);
}

static void test_direct(void **state)
{
    g_autoptr(GError) err = NULL;
    char *dir = th_tmpdir_new("test-writer");
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    VmaWriterOptions opts = { .direct = true, .queue_clusters = 8 };
    const uint64_t size = 40 * (uint64_t)VMA_CLUSTER_SIZE - 3000;

    VmaWriter *w = vma_writer_new(path, &opts, &err);
    assert_non_null(w);
    assert_ok(vma_writer_add_config(w, "qemu-server.conf", "memory: 512\n", 12, &err), err);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", size, &err), 1);
    for (uint32_t c = 40; c-- > 0;) {
        uint8_t *buf = vma_cluster_alloc();
        fill_cluster(buf, 1, c);
        assert_ok(vma_writer_write_cluster(w, 1, c, buf, 0, &err), err);
    }
    assert_ok(vma_writer_close(w, &err), err);
    uint64_t written = vma_writer_get_output_bytes(w);
    vma_writer_free(w);
    g_autoptr(GBytes) out = th_file_read(path);
    assert_int_equal(g_bytes_get_size(out), written);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    check_device(&d, 1, expect_generated, NULL);
    decoded_clear(&d);
    th_tmpdir_remove(dir);
    g_free(dir);
}

/*
 * Priority lane: with the writer thread held inside the header write, queue four normal
 * clusters (filling a lane of 4), then six priority clusters (which must not block), then
 * let the output drain: the first extent holds the priority records first.
 */
static void test_priority_order(void **state)
{
    g_autoptr(GError) err = NULL;
    VmaWriterOptions opts = { .queue_clusters = 4 };
    Capture cap;
    VmaWriter *w = capture_writer(&cap, &opts);

    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 16 * VMA_CLUSTER_SIZE, &err), 1);
    for (uint32_t c = 0; c < 4; c++) {
        uint8_t *buf = vma_cluster_alloc();
        expect_pattern(buf, 1, c, NULL);
        assert_ok(vma_writer_write_cluster(w, 1, c, buf, 0, &err), err);
    }
    for (uint32_t c = 10; c < 16; c++) {
        uint8_t *buf = vma_cluster_alloc();
        expect_pattern(buf, 1, c, NULL);
        assert_ok(vma_writer_write_cluster(w, 1, c, buf, VMA_WRITE_PRIORITY, &err), err);
    }
    assert_int_equal(vma_writer_get_queued_bytes(w), 10 * VMA_CLUSTER_SIZE);
    capture_release(&cap);
    for (uint32_t c = 4; c < 10; c++) { /* blocks until the writer makes room */
        uint8_t *buf = vma_cluster_alloc();
        expect_pattern(buf, 1, c, NULL);
        assert_ok(vma_writer_write_cluster(w, 1, c, buf, 0, &err), err);
    }
    assert_ok(vma_writer_close(w, &err), err);
    vma_writer_free(w);
    g_autoptr(GBytes) out = capture_finish(&cap);

    Decoded d;
    decode(g_bytes_get_data(out, NULL), g_bytes_get_size(out), &d);
    static const uint32_t first[] = { 10, 11, 12, 13, 14, 15, 0, 1, 2, 3 };
    assert_true(d.recs->len == 16);
    for (unsigned i = 0; i < G_N_ELEMENTS(first); i++) {
        const DecRecord *r = &g_array_index(d.recs, DecRecord, i);
        assert_int_equal(r->cluster, first[i]);
        assert_int_equal(r->extent, 0);
    }
    check_device(&d, 1, expect_pattern, NULL);
    decoded_clear(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_ref_2dev),
        cmocka_unit_test(test_replay_ref_2dev),
        cmocka_unit_test(test_replay_tiny),
        cmocka_unit_test(test_replay_nodisk),
        cmocka_unit_test(test_replay_multiextent),
        cmocka_unit_test(test_replay_vmstate),
        cmocka_unit_test(test_blob_little_endian),
        cmocka_unit_test(test_config_limits),
        cmocka_unit_test(test_config_count),
        cmocka_unit_test(test_device_limits),
        cmocka_unit_test(test_random_uuid_and_time),
        cmocka_unit_test(test_odd_sizes),
        cmocka_unit_test(test_zero_accounting),
        cmocka_unit_test(test_max_device),
        cmocka_unit_test(test_threads_out_of_order),
        cmocka_unit_test(test_duplicate_cluster),
        cmocka_unit_test(test_invalid_clusters),
        cmocka_unit_test(test_missing_cluster),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cancel_wakes_blocked),
        cmocka_unit_test(test_exec_target),
        cmocka_unit_test(test_existing_file),
        cmocka_unit_test(test_new_file_tempname),
        cmocka_unit_test(test_final_name_taken),
        cmocka_unit_test(test_fifo_target),
        cmocka_unit_test(test_broken_pipe),
        cmocka_unit_test(test_fd_regular_file),
        cmocka_unit_test(test_direct),
        cmocka_unit_test(test_priority_order),
    };

    alarm(120); /* a hang is a failure, not a stuck CI job */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
