/*
 * test-dirty-bitmap.c — unit tests of block/dirty-bitmap.c and its state file
 * (block/dirty-bitmap-store.c): granularity, marking ranges, merge, clear, the backup
 * freeze/release (successor, merge back), conversion to 64 KiB clusters, and the state
 * file: encode/decode round trip, in-use, damaged input (every truncation and every
 * flipped byte is refused or makes the bitmaps inconsistent, never a crash), and
 * load/save against a real image file; version 2 (a driver's mark record) and the rules
 * of dirty_state_load_node() / dirty_state_save_node() with an in-memory driver whose
 * marks play the part of rbd's snapshots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

#include <zlib.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"

#define MIB (1024u * 1024u)

static DirtyBitmapInfo *info_of(DirtyBitmapSet *set, const char *name, GPtrArray **keep)
{
    *keep = dirty_set_query(set);
    for (guint i = 0; i < (*keep)->len; i++) {
        DirtyBitmapInfo *info = g_ptr_array_index(*keep, i);
        if (strcmp(info->name, name) == 0) {
            return info;
        }
    }
    return NULL;
}

static uint64_t count_of(DirtyBitmapSet *set, const char *name)
{
    g_autoptr(GPtrArray) keep = NULL;
    DirtyBitmapInfo *info = info_of(set, name, &keep);
    assert_non_null(info);
    return info->count;
}

static void test_granularity(void **state)
{
    DirtyBitmapSet *set = dirty_set_new(10 * MIB + 512);
    GError *err = NULL;
    static const uint32_t bad[] = {3000, 511, 2048, 128u * MIB};

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        assert_false(dirty_set_add(set, "n", "x", bad[i], false, false, &err));
        assert_true(g_error_matches(err, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INVALID));
        g_clear_error(&err);
    }
    assert_true(dirty_set_add(set, "n", "d", 0, false, false, NULL));
    assert_true(dirty_set_add(set, "n", "g4k", 4096, false, false, NULL));
    assert_true(dirty_set_add(set, "n", "g64m", 64 * MIB, false, false, NULL));
    assert_false(dirty_set_add(set, "n", "d", 0, false, false, &err));
    assert_string_equal(err->message, "Bitmap already exists: d");
    g_clear_error(&err);

    g_autoptr(GPtrArray) keep = NULL;
    DirtyBitmapInfo *info = info_of(set, "d", &keep);
    assert_int_equal(info->granularity, 65536);
    assert_true(info->recording);
    /* newest first */
    assert_string_equal(((DirtyBitmapInfo *)keep->pdata[0])->name, "g64m");
    dirty_set_free(set);
}

static void test_mark_ranges(void **state)
{
    DirtyBitmapSet *set = dirty_set_new(10 * MIB + 512);

    assert_true(dirty_set_add(set, "n", "a", 65536, false, false, NULL));
    assert_true(dirty_set_add(set, "n", "b", 4096, false, false, NULL));
    assert_true(dirty_set_add(set, "n", "off", 4096, false, true, NULL));
    dirty_set_mark(set, 65535, 2);            /* straddles clusters 0 and 1 */
    assert_int_equal(count_of(set, "a"), 2 * 65536);
    assert_int_equal(count_of(set, "b"), 2 * 4096);
    dirty_set_mark(set, 10 * MIB, 512);       /* the odd tail */
    assert_int_equal(count_of(set, "a"), 3 * 65536);
    dirty_set_mark(set, 0, 0);                /* nothing */
    dirty_set_mark(set, 20 * MIB, 4096);      /* past the end: nothing */
    assert_int_equal(count_of(set, "a"), 3 * 65536);
    assert_int_equal(count_of(set, "off"), 0);
    assert_true(dirty_set_enable(set, "off", NULL));
    dirty_set_mark(set, 8192, 1);
    assert_int_equal(count_of(set, "off"), 4096);
    assert_true(dirty_set_clear(set, "a", NULL));
    assert_int_equal(count_of(set, "a"), 0);
    dirty_set_free(set);
}

static void test_merge(void **state)
{
    DirtyBitmapSet *set = dirty_set_new(4 * MIB);
    DirtyBitmapSet *other = dirty_set_new(2 * MIB);
    GError *err = NULL;

    assert_true(dirty_set_add(set, "n", "fine", 4096, false, false, NULL));
    assert_true(dirty_set_add(set, "n", "coarse", 1 * MIB, false, true, NULL));
    dirty_set_mark(set, 3 * MIB + 4096, 4096);
    assert_true(dirty_set_merge(set, "coarse", set, "fine", NULL));
    assert_int_equal(count_of(set, "coarse"), MIB);
    assert_int_equal(count_of(set, "fine"), 4096);    /* the source is unchanged */
    assert_true(dirty_set_add(other, "o", "x", 0, false, false, NULL));
    assert_false(dirty_set_merge(set, "fine", other, "x", &err));
    assert_string_equal(err->message, "Bitmaps are of different sizes (destination size is "
                                      "4194304, source size is 2097152) and can't be merged");
    g_clear_error(&err);
    dirty_set_free(other);
    dirty_set_free(set);
}

static void test_freeze_release(void **state)
{
    DirtyBitmapSet *set = dirty_set_new(2 * MIB);
    bool has_base = true;
    uint8_t base[16], uuid[16];
    uint64_t base_size = 1;
    uint32_t gran = 0;
    GError *err = NULL;

    memset(uuid, 0xab, 16);
    assert_true(dirty_set_add(set, "n", "b", 0, false, false, NULL));
    dirty_set_mark(set, 0, 1);
    DirtyBitmap *bm = dirty_bitmap_acquire(set, "b", &has_base, base, &base_size, NULL);
    assert_non_null(bm);
    assert_false(has_base);
    assert_null(dirty_bitmap_acquire(set, "b", &has_base, base, &base_size, &err));
    assert_true(g_error_matches(err, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_BUSY));
    g_clear_error(&err);
    assert_false(dirty_set_remove(set, "b", &err));
    g_clear_error(&err);

    const Bitmap *frozen = dirty_bitmap_freeze(bm, true, &gran);
    assert_int_equal(bitmap_count(frozen), 1);
    dirty_set_mark(set, 65536 * 5, 1);        /* recorded by the successor */
    dirty_bitmap_release(bm, false, NULL);    /* failed: merged back */
    assert_int_equal(count_of(set, "b"), 2 * 65536);

    bm = dirty_bitmap_acquire(set, "b", &has_base, base, &base_size, NULL);
    (void)dirty_bitmap_freeze(bm, true, &gran);
    dirty_set_mark(set, 65536 * 7, 1);
    dirty_bitmap_release(bm, true, uuid);     /* success: only the new write */
    assert_int_equal(count_of(set, "b"), 65536);
    bm = dirty_bitmap_acquire(set, "b", &has_base, base, &base_size, NULL);
    assert_true(has_base);
    assert_memory_equal(base, uuid, 16);
    assert_int_equal(base_size, 2 * MIB);
    frozen = dirty_bitmap_freeze(bm, false, &gran);   /* differential: keeps its bits */
    assert_int_equal(bitmap_count(frozen), 1);
    dirty_bitmap_release(bm, true, NULL);
    assert_int_equal(count_of(set, "b"), 65536);
    /* disabling drops the base: the next backup is a full one */
    assert_true(dirty_set_disable(set, "b", NULL));
    bm = dirty_bitmap_acquire(set, "b", &has_base, base, &base_size, NULL);
    assert_false(has_base);
    dirty_bitmap_release(bm, false, NULL);
    dirty_set_free(set);
}

static void test_to_clusters(void **state)
{
    g_autoptr(Bitmap) fine = bitmap_new(100, false);   /* 4 KiB bits over 400 KiB */
    bitmap_set(fine, 0);
    bitmap_set(fine, 17);   /* cluster 1 */
    bitmap_set(fine, 99);   /* cluster 6 (the tail) */
    g_autoptr(Bitmap) cl = dirty_bits_to_clusters(fine, 4096, 100 * 4096, 65536);
    assert_int_equal(bitmap_size(cl), 7);
    assert_int_equal(bitmap_count(cl), 3);
    assert_true(bitmap_test(cl, 0) && bitmap_test(cl, 1) && bitmap_test(cl, 6));

    g_autoptr(Bitmap) coarse = bitmap_new(2, false);   /* 1 MiB bits over 1.5 MiB */
    bitmap_set(coarse, 1);
    g_autoptr(Bitmap) cl2 = dirty_bits_to_clusters(coarse, MIB, MIB + MIB / 2, 65536);
    assert_int_equal(bitmap_count(cl2), 8);
    assert_true(bitmap_test(cl2, 16) && !bitmap_test(cl2, 15));
}

static DirtyBitmapSet *sample_set(void)
{
    DirtyBitmapSet *set = dirty_set_new(3 * MIB + 512);
    assert_true(dirty_set_add(set, "n", "p", 4096, true, false, NULL));
    assert_true(dirty_set_add(set, "n", "q", 0, true, true, NULL));
    assert_true(dirty_set_add(set, "n", "t", 0, false, false, NULL));
    dirty_set_mark(set, 12345, 100000);
    return set;
}

static void test_encode_decode(void **state)
{
    DirtyBitmapSet *set = sample_set();
    DirtyStateIdentity id = {.dev = 1, .ino = 2, .size = 3 * MIB + 512, .mtime_sec = 4};
    g_autoptr(GBytes) data = dirty_state_encode(set, false, &id);
    gsize len = 0;
    const uint8_t *p = g_bytes_get_data(data, &len);

    DirtyBitmapSet *back = dirty_set_new(3 * MIB + 512);
    bool in_use = true;
    DirtyStateIdentity got = {0};
    assert_true(dirty_state_decode(back, p, len, &in_use, &got, NULL));
    assert_false(in_use);
    assert_memory_equal(&got, &id, sizeof(id));
    assert_int_equal(count_of(back, "p"), count_of(set, "p"));
    g_autoptr(GPtrArray) keep = NULL;
    DirtyBitmapInfo *q = info_of(back, "q", &keep);
    assert_false(q->recording);
    assert_true(q->persistent);
    g_autoptr(GPtrArray) keep2 = NULL;
    assert_null(info_of(back, "t", &keep2));      /* not persistent: not stored */
    dirty_set_free(back);

    /* every truncation and every flipped byte: refused or loaded, never a crash, and a
     * refused file never yields a consistent bitmap */
    for (gsize cut = 0; cut < len; cut += 7) {
        DirtyBitmapSet *s2 = dirty_set_new(3 * MIB + 512);
        GError *err = NULL;
        assert_false(dirty_state_decode(s2, p, cut, &in_use, &got, &err));
        g_clear_error(&err);
        dirty_set_free(s2);
    }
    g_autofree uint8_t *copy = g_memdup2(p, len);
    for (gsize i = 0; i < len; i += 3) {
        DirtyBitmapSet *s2 = dirty_set_new(3 * MIB + 512);
        GError *err = NULL;
        copy[i] ^= 0x5a;
        bool ok = dirty_state_decode(s2, copy, len, &in_use, &got, &err);
        assert_false(ok);                          /* every byte is checksummed */
        dirty_set_make_inconsistent(s2);
        g_autoptr(GPtrArray) l = dirty_set_query(s2);
        for (guint k = 0; k < l->len; k++) {
            assert_true(((DirtyBitmapInfo *)l->pdata[k])->inconsistent);
        }
        copy[i] ^= 0x5a;
        g_clear_error(&err);
        dirty_set_free(s2);
    }
    dirty_set_free(set);
}

static void test_load_save(void **state)
{
    g_autofree char *dir = g_dir_make_tmp("test-dirty-XXXXXX", NULL);
    g_autofree char *img = g_build_filename(dir, "img.raw", NULL);
    g_autofree char *sdir = g_build_filename(dir, "state", NULL);
    assert_true(g_file_set_contents(img, "", 0, NULL));
    assert_int_equal(truncate(img, 3 * MIB + 512), 0);
    dirty_state_set_dir(sdir);

    DirtyBitmapSet *set = sample_set();
    assert_true(dirty_state_save(set, "n", img, true, NULL));     /* opened: in use */
    dirty_set_free(set);
    set = dirty_set_new(3 * MIB + 512);
    assert_true(dirty_state_load(set, "n", img, false, NULL));    /* crash: inconsistent */
    g_autoptr(GPtrArray) k1 = NULL;
    assert_true(info_of(set, "p", &k1)->inconsistent);
    assert_true(dirty_set_clear(set, "p", NULL));
    dirty_set_mark(set, 0, 1);
    assert_true(dirty_state_save(set, "n", img, false, NULL));    /* clean close */
    dirty_set_free(set);

    set = dirty_set_new(3 * MIB + 512);
    assert_true(dirty_state_load(set, "n", img, true, NULL));
    g_autoptr(GPtrArray) k2 = NULL;
    DirtyBitmapInfo *p = info_of(set, "p", &k2);
    assert_false(p->inconsistent);
    assert_int_equal(p->count, 4096);
    dirty_set_free(set);   /* no clean close: the file stays in use */
    set = dirty_set_new(3 * MIB + 512);
    assert_true(dirty_state_load(set, "n", img, false, NULL));
    g_autoptr(GPtrArray) k3 = NULL;
    assert_true(info_of(set, "p", &k3)->inconsistent);
    dirty_set_free(set);

    g_autofree char *path = dirty_state_path("n", img);
    g_unlink(path);
    g_unlink(img);
    g_rmdir(sdir);
    g_rmdir(dir);
    dirty_state_set_dir(NULL);
}

static void test_encode_decode_mark(void **state)
{
    DirtyBitmapSet *set = sample_set();
    g_autoptr(GBytes) mark = g_bytes_new_static("a mark record", 13);
    DirtyStateIdentity id = {.size = 3 * MIB + 512, .mark = mark};
    g_autoptr(GBytes) data = dirty_state_encode(set, false, &id);
    gsize len = 0;
    const uint8_t *p = g_bytes_get_data(data, &len);
    uint32_t version;
    memcpy(&version, p + 8, 4);
    assert_int_equal(GUINT32_FROM_LE(version), DIRTY_STATE_VERSION_MARK);

    DirtyBitmapSet *back = dirty_set_new(3 * MIB + 512);
    bool in_use = true;
    DirtyStateIdentity got = {0};
    assert_true(dirty_state_decode(back, p, len, &in_use, &got, NULL));
    assert_false(in_use);
    assert_non_null(got.mark);
    assert_true(g_bytes_equal(got.mark, mark));
    g_clear_pointer(&got.mark, g_bytes_unref);
    assert_int_equal(got.size, 3 * MIB + 512);
    assert_int_equal(count_of(back, "p"), count_of(set, "p"));
    dirty_set_free(back);

    /* without a mark: version 1, as before (older vmads read it) */
    DirtyStateIdentity plain = {.size = 3 * MIB + 512};
    g_autoptr(GBytes) v1 = dirty_state_encode(set, false, &plain);
    memcpy(&version, (const uint8_t *)g_bytes_get_data(v1, NULL) + 8, 4);
    assert_int_equal(GUINT32_FROM_LE(version), DIRTY_STATE_VERSION);

    for (gsize cut = 0; cut < len; cut += 3) {
        DirtyBitmapSet *s2 = dirty_set_new(3 * MIB + 512);
        GError *err = NULL;
        assert_false(dirty_state_decode(s2, p, cut, &in_use, &got, &err));
        g_clear_pointer(&got.mark, g_bytes_unref);
        g_clear_error(&err);
        dirty_set_free(s2);
    }
    g_autofree uint8_t *copy = g_memdup2(p, len);
    for (gsize i = 0; i < len; i++) {
        DirtyBitmapSet *s2 = dirty_set_new(3 * MIB + 512);
        GError *err = NULL;
        copy[i] ^= 0x21;
        assert_false(dirty_state_decode(s2, copy, len, &in_use, &got, &err));
        g_clear_pointer(&got.mark, g_bytes_unref);
        copy[i] ^= 0x21;
        g_clear_error(&err);
        dirty_set_free(s2);
    }

    /* a version this vmad does not know: refused with a message that says so */
    uint32_t v3 = GUINT32_TO_LE(3);
    memcpy(copy + 8, &v3, 4);
    uint32_t crc = GUINT32_TO_LE((uint32_t)crc32(0, copy, 60));
    memcpy(copy + 60, &crc, 4);
    DirtyBitmapSet *s3 = dirty_set_new(3 * MIB + 512);
    GError *err = NULL;
    assert_false(dirty_state_decode(s3, copy, len, &in_use, &got, &err));
    assert_non_null(strstr(err->message, "unsupported version 3"));
    g_clear_error(&err);
    dirty_set_free(s3);
    dirty_set_free(set);
}

/* ---- an in-memory driver with marks (rbd's snapshots) ---- */

typedef struct FakeImage {
    GPtrArray *marks;          /* names of the marks that exist (char *) */
    unsigned next;
    uint64_t changed_off, changed_len;   /* what state_check reports (len 0: nothing) */
    unsigned checks, drops;
} FakeImage;

static GBytes *fake_seal(BlockNode *n, const char *tag, GBytes *old, GError **errp)
{
    FakeImage *f = n->opaque;
    if (n->read_only) {
        if (old == NULL) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_READ_ONLY, "read-only");
            return NULL;
        }
        return g_bytes_ref(old);
    }
    char *name = g_strdup_printf("%s-%u", tag, f->next++);
    g_ptr_array_add(f->marks, name);
    return g_bytes_new(name, strlen(name));
}

static bool fake_has(FakeImage *f, GBytes *rec)
{
    for (guint i = 0; i < f->marks->len; i++) {
        const char *m = f->marks->pdata[i];
        if (g_bytes_get_size(rec) == strlen(m) &&
            memcmp(g_bytes_get_data(rec, NULL), m, strlen(m)) == 0) {
            return true;
        }
    }
    return false;
}

static bool fake_check(BlockNode *n, GBytes *rec,
                       void (*changed)(void *opaque, uint64_t offset, uint64_t len),
                       void *opaque, GError **errp)
{
    FakeImage *f = n->opaque;
    f->checks++;
    if (!fake_has(f, rec)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "the mark is gone");
        return false;
    }
    if (f->changed_len > 0) {
        changed(opaque, f->changed_off, f->changed_len);
    }
    return true;
}

static void fake_drop(BlockNode *n, const char *tag, GBytes *keep)
{
    FakeImage *f = n->opaque;
    f->drops++;
    for (guint i = f->marks->len; i-- > 0;) {
        const char *m = f->marks->pdata[i];
        bool kept = keep != NULL && g_bytes_get_size(keep) == strlen(m) &&
                    memcmp(g_bytes_get_data(keep, NULL), m, strlen(m)) == 0;
        if (g_str_has_prefix(m, tag) && !kept) {
            g_ptr_array_remove_index(f->marks, i);
        }
    }
}

static const BlockDriver fake_drv = {
    .name = "fake",
    .state_seal = fake_seal,
    .state_check = fake_check,
    .state_drop = fake_drop,
};

static BlockNode *fake_node(FakeImage *f, bool read_only)
{
    BlockNode *n = g_new0(BlockNode, 1);
    n->drv = &fake_drv;
    n->size = 3 * MIB + 512;
    n->filename = g_strdup("fake:pool/img");
    n->read_only = read_only;
    n->opaque = f;
    n->dirty = dirty_set_new(n->size);
    return n;
}

static void fake_node_free(BlockNode *n)
{
    dirty_set_free(n->dirty);
    g_clear_pointer(&n->state_mark, g_bytes_unref);
    g_free(n->filename);
    g_free(n);
}

static void test_marks(void **state)
{
    g_autofree char *dir = g_dir_make_tmp("test-dirty-XXXXXX", NULL);
    g_autofree char *sdir = g_build_filename(dir, "state", NULL);
    FakeImage f = {.marks = g_ptr_array_new_with_free_func(g_free)};
    g_autoptr(GPtrArray) k = NULL;
    dirty_state_set_dir(sdir);

    /* add a persistent bitmap: in use, no mark yet; clean close: one mark */
    BlockNode *n = fake_node(&f, false);
    dirty_set_free(n->dirty);
    n->dirty = sample_set();
    uint64_t p_count = count_of(n->dirty, "p"), q_count = count_of(n->dirty, "q");
    assert_true(dirty_state_save_node(n, "n", true, NULL));
    assert_int_equal(f.marks->len, 0);
    assert_true(dirty_state_save_node(n, "n", false, NULL));
    assert_int_equal(f.marks->len, 1);
    fake_node_free(n);

    /* open: the mark checked, the writes since it added to the enabled bitmap p (one
     * 4 KiB granule) and not to the disabled q; then in use and the mark dropped */
    f.changed_off = 2 * MIB + 100;
    f.changed_len = 10;
    n = fake_node(&f, false);
    assert_true(dirty_state_load_node(n, "n", NULL));
    assert_int_equal(f.checks, 1);
    assert_false(info_of(n->dirty, "p", &k)->inconsistent);
    g_clear_pointer(&k, g_ptr_array_unref);
    assert_int_equal(count_of(n->dirty, "p"), p_count + 4096);
    assert_int_equal(count_of(n->dirty, "q"), q_count);
    assert_int_equal(f.marks->len, 0);
    fake_node_free(n);     /* no clean close: a crash */
    f.changed_len = 0;

    n = fake_node(&f, false);
    assert_true(dirty_state_load_node(n, "n", NULL));
    assert_true(info_of(n->dirty, "p", &k)->inconsistent);
    g_clear_pointer(&k, g_ptr_array_unref);
    assert_true(dirty_set_clear(n->dirty, "p", NULL));
    assert_true(dirty_state_save_node(n, "n", false, NULL));
    assert_int_equal(f.marks->len, 1);
    fake_node_free(n);

    /* read-only: checked, nothing dropped, the file stays clean; its close keeps the
     * same mark */
    n = fake_node(&f, true);
    assert_true(dirty_state_load_node(n, "n", NULL));
    assert_false(info_of(n->dirty, "p", &k)->inconsistent);
    g_clear_pointer(&k, g_ptr_array_unref);
    assert_int_equal(f.marks->len, 1);
    char *before = g_strdup(f.marks->pdata[0]);
    assert_true(dirty_state_save_node(n, "n", false, NULL));
    assert_int_equal(f.marks->len, 1);
    assert_string_equal(f.marks->pdata[0], before);
    g_free(before);
    fake_node_free(n);

    /* the mark is gone (someone removed the snapshot): inconsistent */
    g_ptr_array_set_size(f.marks, 0);
    n = fake_node(&f, true);
    assert_true(dirty_state_load_node(n, "n", NULL));
    assert_true(info_of(n->dirty, "p", &k)->inconsistent);
    g_clear_pointer(&k, g_ptr_array_unref);
    /* a read-only node without a mark cannot seal: the error is returned */
    GError *err = NULL;
    assert_false(dirty_state_save_node(n, "n", false, &err));
    g_clear_error(&err);
    fake_node_free(n);

    /* a version-1 state file (no mark) for such a node: inconsistent */
    n = fake_node(&f, false);
    dirty_set_free(n->dirty);
    n->dirty = sample_set();
    DirtyStateIdentity plain = {.size = n->size};
    g_autoptr(GBytes) v1 = dirty_state_encode(n->dirty, false, &plain);
    g_autofree char *path = dirty_state_path("n", n->filename);
    gsize v1len = 0;
    const char *v1data = g_bytes_get_data(v1, &v1len);
    assert_true(g_file_set_contents(path, v1data, (gssize)v1len, NULL));
    fake_node_free(n);
    n = fake_node(&f, false);
    assert_true(dirty_state_load_node(n, "n", NULL));
    assert_true(info_of(n->dirty, "p", &k)->inconsistent);
    g_clear_pointer(&k, g_ptr_array_unref);

    /* the last persistent bitmap removed: the file and every mark of it go at close */
    assert_true(dirty_state_save_node(n, "n", false, NULL));
    assert_int_equal(f.marks->len, 1);
    assert_true(dirty_set_remove(n->dirty, "p", NULL));
    assert_true(dirty_set_remove(n->dirty, "q", NULL));
    assert_true(dirty_state_save_node(n, "n", false, NULL));
    assert_int_equal(f.marks->len, 0);
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    fake_node_free(n);

    g_ptr_array_unref(f.marks);
    g_rmdir(sdir);
    g_rmdir(dir);
    dirty_state_set_dir(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_granularity),
        cmocka_unit_test(test_mark_ranges),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_freeze_release),
        cmocka_unit_test(test_to_clusters),
        cmocka_unit_test(test_encode_decode),
        cmocka_unit_test(test_load_save),
        cmocka_unit_test(test_encode_decode_mark),
        cmocka_unit_test(test_marks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
