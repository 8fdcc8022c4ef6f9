/*
 * test-nbd-meta.c — unit tests of the meta context pieces of the NBD server: which
 * contexts a LIST or SET query selects (nbd_meta_select, a table), and what an
 * exported bitmap reports (dirty_bitmap_status runs, dirty_bitmap_acquire_export's
 * checks and busy flag).
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "block/dirty-bitmap.h"
#include "nbd/internal.h"
#include "nbd/proto.h"
#include "test-helpers.h"

static size_t put_str(uint8_t *buf, size_t pos, const char *s)
{
    pos = th_put_be32(buf, pos, (uint32_t)strlen(s));
    memcpy(buf + pos, s, strlen(s));
    return pos + strlen(s);
}

/* ---- nbd_meta_select ---- */

static void test_meta_select(void **state)
{
    static const char *const names[] = {
        "base:allocation", "qemu:dirty-bitmap:a", "qemu:dirty-bitmap:ab", "qemu:dirty-bitmap:",
    };
    static const struct {
        bool list;
        const char *queries[4];   /* NULL-terminated */
        uint32_t mask;
    } table[] = {
        { true, { NULL }, 0xf },                                   /* LIST, no query: all */
        { false, { NULL }, 0 },                                    /* SET, none: nothing */
        { true, { "base:", NULL }, 0x1 },
        { false, { "base:", NULL }, 0 },                           /* SET: no wildcards */
        { true, { "qemu:", NULL }, 0xe },
        { true, { "qemu:dirty-bitmap:", NULL }, 0xe },
        { false, { "qemu:dirty-bitmap:", NULL }, 0x8 },            /* a bitmap named "" */
        { false, { "qemu:dirty-bitmap:a", NULL }, 0x2 },           /* exact, not a prefix */
        { true, { "qemu:dirty-bitmap:a", NULL }, 0x2 },
        { false, { "qemu:dirty-bitmap:ab", "base:allocation", NULL }, 0x5 },
        { false, { "base:allocation", "base:allocation", NULL }, 0x1 },  /* twice: once */
        { true, { "qemu:nope", "x:y", "qemu", NULL }, 0 },        /* unknown: ignored */
        { false, { "qemu:dirty-bitmap:A", "base:allocatio", NULL }, 0 },
        { true, { "qemu:d", NULL }, 0 },                           /* not a namespace */
    };

    for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
        uint8_t buf[512];
        size_t len = put_str(buf, 0, "exp");
        size_t nq = 0;
        while (table[i].queries[nq] != NULL) {
            nq++;
        }
        len = th_put_be32(buf, len, (uint32_t)nq);
        for (size_t q = 0; q < nq; q++) {
            len = put_str(buf, len, table[i].queries[q]);
        }
        NbdMetaRequest mr;
        assert_int_equal(nbd_parse_meta_request(buf, (uint32_t)len, &mr), 0);
        uint32_t got = nbd_meta_select(&mr, table[i].list, names, G_N_ELEMENTS(names));
        if (got != table[i].mask) {
            fail_msg("row %zu: mask 0x%x, expected 0x%x", i, got, table[i].mask);
        }
    }
}

/* ---- an exported bitmap ---- */

static void test_bitmap_status(void **state)
{
    const uint64_t size = 10 * 65536 + 1000;       /* a partial last granule */
    g_autoptr(GError) err = NULL;
    DirtyBitmapSet *set = dirty_set_new(size);
    bool dirty = false;

    assert_true(dirty_set_add(set, "d0", "b", 65536, false, false, &err));
    dirty_set_mark(set, 65536 + 10, 1);            /* granule 1 */
    dirty_set_mark(set, 3 * 65536 - 1, 2);         /* granules 2 and 3 */
    dirty_set_mark(set, size - 1, 1);              /* the last one */

    DirtyBitmap *bm = dirty_bitmap_acquire_export(set, "b", false, &err);
    assert_non_null(bm);
    assert_int_equal(dirty_bitmap_granularity(bm), 65536);
    /* runs: clean 0, dirty 1..3, clean 4..9, dirty 10 (partial) */
    assert_int_equal(dirty_bitmap_status(bm, 0, size, &dirty), 65536);
    assert_false(dirty);
    assert_int_equal(dirty_bitmap_status(bm, 65536, size - 65536, &dirty), 3 * 65536);
    assert_true(dirty);
    assert_int_equal(dirty_bitmap_status(bm, 100000, 10, &dirty), 10);   /* clamped */
    assert_true(dirty);
    assert_int_equal(dirty_bitmap_status(bm, 4 * 65536 + 5, size - 4 * 65536 - 5, &dirty),
                     6 * 65536 - 5);
    assert_false(dirty);
    assert_int_equal(dirty_bitmap_status(bm, 10 * 65536, 1000, &dirty), 1000);
    assert_true(dirty);
    assert_int_equal(dirty_bitmap_status(bm, size - 1, 1, &dirty), 1);
    assert_true(dirty);
    /* it goes on recording while exported: the next status sees the write */
    dirty_set_mark(set, 0, 1);
    assert_int_equal(dirty_bitmap_status(bm, 0, size, &dirty), 4 * 65536);
    assert_true(dirty);

    /* busy while exported: a second export, remove, clear, disable are refused */
    assert_null(dirty_bitmap_acquire_export(set, "b", false, &err));
    assert_true(g_error_matches(err, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_BUSY));
    assert_string_equal(err->message, "Bitmap 'b' is currently in use by another "
                                      "operation and cannot be used");
    g_clear_error(&err);
    assert_false(dirty_set_remove(set, "b", &err));
    assert_true(g_error_matches(err, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_BUSY));
    g_clear_error(&err);
    assert_false(dirty_set_clear(set, "b", &err));
    g_clear_error(&err);
    assert_false(dirty_set_disable(set, "b", &err));
    g_clear_error(&err);
    dirty_bitmap_release_export(bm);
    g_autoptr(GPtrArray) q = dirty_set_query(set);
    assert_false(((DirtyBitmapInfo *)q->pdata[0])->busy);

    /* the read-only export check, and the order of the checks */
    assert_null(dirty_bitmap_acquire_export(set, "zz", true, &err));
    assert_true(g_error_matches(err, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_NOT_FOUND));
    g_clear_error(&err);
    assert_null(dirty_bitmap_acquire_export(set, "b", true, &err));
    assert_string_equal(err->message, "Enabled bitmap 'b' incompatible with readonly export");
    g_clear_error(&err);
    assert_true(dirty_set_disable(set, "b", &err));
    bm = dirty_bitmap_acquire_export(set, "b", true, &err);
    assert_non_null(bm);
    dirty_bitmap_release_export(bm);
    assert_true(dirty_set_remove(set, "b", &err));

    /* an inconsistent bitmap cannot be exported */
    assert_true(dirty_set_insert_loaded(set, "inc", 65536, true, false, NULL, 0, NULL, 0));
    assert_null(dirty_bitmap_acquire_export(set, "inc", false, &err));
    assert_true(g_error_matches(err, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INCONSISTENT));
    assert_string_equal(err->message, "Bitmap 'inc' is inconsistent and cannot be used");
    dirty_set_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_select),
        cmocka_unit_test(test_bitmap_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
