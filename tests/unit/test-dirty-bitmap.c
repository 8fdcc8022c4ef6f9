/*
 * test-dirty-bitmap.c — unit tests of block/dirty-bitmap.c and its state file
 * (block/dirty-bitmap-store.c): granularity, marking ranges, merge, clear, the backup
 * freeze/release (successor, merge back), conversion to 64 KiB clusters, and the state
 * file: encode/decode round trip, in-use, damaged input (every truncation and every
 * flipped byte is refused or makes the bitmaps inconsistent, never a crash), and
 * load/save against a real image file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
