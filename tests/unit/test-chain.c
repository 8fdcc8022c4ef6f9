/*
 * test-chain.c — unit tests of the chain entry of delta archives (vma-chain.c) and of the
 * writer's delta mode (VmaWriterOptions.delta).
 *
 * The parser reads bytes of an untrusted archive: every refusal has its own case, and
 * the error code is VMA_ERROR_FORMAT for each. The writer cases write real archives into
 * a temporary directory and read them back with the library's reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "vma.h"

static const uint8_t base_uuid[16] = {0x0d, 0x9c, 0x2c, 0x5e, 0x7a, 0x0c, 0x4a, 0x53,
                                      0x9a, 0x8e, 0x2b, 0x4b, 0x0f, 0x6c, 0x1d, 0x2e};
#define BASE_TEXT "0d9c2c5e-7a0c-4a53-9a8e-2b4b0f6c1d2e"

/* ---- format and parse -------------------------------------------------------------- */

static void test_format_exact(void **state)
{
    VmaChainInfo info = {.kind = VMA_CHAIN_INCREMENTAL, .bitmap = (char *)"backup0"};
    size_t len = 0;

    memcpy(info.base_uuid, base_uuid, 16);
    g_autofree char *text = vma_chain_info_format(&info, &len);
    assert_non_null(text);
    assert_string_equal(text, "format: 1\nkind: incremental\nbase: " BASE_TEXT
                              "\nbitmap: backup0\n");
    assert_int_equal(len, strlen(text));

    info.kind = VMA_CHAIN_DIFFERENTIAL;
    info.bitmap = NULL;
    g_autofree char *text2 = vma_chain_info_format(&info, NULL);
    assert_string_equal(text2, "format: 1\nkind: differential\nbase: " BASE_TEXT "\n");
}

static void test_format_refuses(void **state)
{
    VmaChainInfo info = {.kind = VMA_CHAIN_FULL};

    assert_null(vma_chain_info_format(&info, NULL));
    info.kind = VMA_CHAIN_INCREMENTAL;
    info.bitmap = (char *)"a\nbase: 00000000-0000-0000-0000-000000000000";
    assert_null(vma_chain_info_format(&info, NULL));
    info.bitmap = (char *)"";
    assert_null(vma_chain_info_format(&info, NULL));
}

static void test_round_trip(void **state)
{
    static const VmaChainKind kinds[] = {VMA_CHAIN_INCREMENTAL, VMA_CHAIN_DIFFERENTIAL};
    static const char *const bitmaps[] = {NULL, "backup0", "n\xc3\xa4me with spaces: x"};

    for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
        for (size_t b = 0; b < G_N_ELEMENTS(bitmaps); b++) {
            VmaChainInfo in = {.kind = kinds[k], .bitmap = (char *)bitmaps[b]};
            VmaChainInfo out;
            g_autoptr(GError) err = NULL;
            size_t len = 0;

            for (int i = 0; i < 16; i++) {
                in.base_uuid[i] = (uint8_t)(i * 17 + k + b);
            }
            g_autofree char *text = vma_chain_info_format(&in, &len);
            assert_non_null(text);
            assert_true(vma_chain_info_parse(text, len, &out, &err));
            assert_null(err);
            assert_int_equal(out.kind, in.kind);
            assert_memory_equal(out.base_uuid, in.base_uuid, 16);
            if (bitmaps[b]) {
                assert_string_equal(out.bitmap, bitmaps[b]);
            } else {
                assert_null(out.bitmap);
            }
            vma_chain_info_clear(&out);
            assert_null(out.bitmap);
            assert_int_equal(out.kind, VMA_CHAIN_FULL);
        }
    }
}

static void parse_ok(const char *text, VmaChainInfo *out)
{
    g_autoptr(GError) err = NULL;
    if (!vma_chain_info_parse(text, strlen(text), out, &err)) {
        fail_msg("parse '%s': %s", text, err->message);
    }
}

static void test_parse_lenient(void **state)
{
    VmaChainInfo out;

    /* no final LF; keys in another order; unknown keys ignored in format 1 */
    parse_ok("kind: differential\nbase: " BASE_TEXT "\nformat: 1", &out);
    assert_int_equal(out.kind, VMA_CHAIN_DIFFERENTIAL);
    assert_memory_equal(out.base_uuid, base_uuid, 16);
    assert_null(out.bitmap);
    vma_chain_info_clear(&out);

    parse_ok("format: 1\nkind: incremental\nbase: " BASE_TEXT "\nsource-host: pve1\n", &out);
    assert_int_equal(out.kind, VMA_CHAIN_INCREMENTAL);
    vma_chain_info_clear(&out);

    /* a later format with only known keys */
    parse_ok("format: 2\nkind: incremental\nbase: " BASE_TEXT "\nbitmap: b\n", &out);
    assert_string_equal(out.bitmap, "b");
    vma_chain_info_clear(&out);
    vma_chain_info_clear(NULL);
}

static void expect_refused(const char *text, size_t len, const char *gist)
{
    VmaChainInfo out;
    g_autoptr(GError) err = NULL;

    memset(&out, 0x55, sizeof(out));
    if (vma_chain_info_parse(text, len, &out, &err)) {
        fail_msg("accepted: '%s'", text);
    }
    assert_non_null(err);
    assert_true(g_error_matches(err, VMA_ERROR, VMA_ERROR_FORMAT));
    if (!strstr(err->message, gist)) {
        fail_msg("message '%s' lacks '%s'", err->message, gist);
    }
    assert_true(g_str_has_prefix(err->message, VMA_CHAIN_CONFIG_NAME ": "));
    /* left cleared: nothing to free, not mistaken for a delta archive */
    assert_null(out.bitmap);
    assert_int_equal(out.kind, VMA_CHAIN_FULL);
}

#define REFUSED(text, gist) expect_refused(text, sizeof(text) - 1, gist)

static void test_parse_refusals(void **state)
{
    /* bad uuid */
    REFUSED("format: 1\nkind: incremental\nbase: 0D9C2C5E-7A0C-4A53-9A8E-2B4B0F6C1D2E\n",
            "bad base uuid");
    REFUSED("format: 1\nkind: incremental\nbase: 0d9c2c5e7a0c4a539a8e2b4b0f6c1d2e\n",
            "bad base uuid");
    REFUSED("format: 1\nkind: incremental\nbase: 0d9c2c5e-7a0c-4a53-9a8e-2b4b0f6c1d2\n",
            "bad base uuid");
    REFUSED("format: 1\nkind: incremental\nbase: 0d9c2c5e-7a0c-4a53-9a8e-2b4b0f6c1d2ex\n",
            "bad base uuid");
    REFUSED("format: 1\nkind: incremental\nbase: 0d9c2c5e-7a0c-4a53-9a8e-2b4b0f6c1d2g\n",
            "bad base uuid");
    /* unknown kind */
    REFUSED("format: 1\nkind: full\nbase: " BASE_TEXT "\n", "unknown kind 'full'");
    REFUSED("format: 1\nkind: Incremental\nbase: " BASE_TEXT "\n", "unknown kind");
    /* duplicate key */
    REFUSED("format: 1\nkind: incremental\nbase: " BASE_TEXT "\nbase: " BASE_TEXT "\n",
            "line 4: duplicate key 'base'");
    REFUSED("format: 1\nformat: 1\nkind: incremental\nbase: " BASE_TEXT "\n",
            "duplicate key 'format'");
    /* missing keys */
    REFUSED("kind: incremental\nbase: " BASE_TEXT "\n", "missing key 'format'");
    REFUSED("format: 1\nbase: " BASE_TEXT "\n", "missing key 'kind'");
    REFUSED("format: 1\nkind: incremental\nbitmap: b\n", "missing key 'base'");
    /* format 2 with an unknown key; a format that is no number */
    REFUSED("format: 2\nkind: incremental\nbase: " BASE_TEXT "\nextents: sparse\n",
            "unknown key 'extents' in format 2");
    REFUSED("format: one\nkind: incremental\nbase: " BASE_TEXT "\n", "bad format 'one'");
    REFUSED("format: 0\nkind: incremental\nbase: " BASE_TEXT "\n", "bad format '0'");
    /* control characters: CR, TAB, NUL, DEL, ESC */
    REFUSED("format: 1\r\nkind: incremental\nbase: " BASE_TEXT "\n",
            "line 1: contains a control character");
    REFUSED("format: 1\nkind:\tincremental\nbase: " BASE_TEXT "\n", "control character");
    REFUSED("format: 1\nkind: incremental\nbase: " BASE_TEXT "\nbitmap: a\0b\n",
            "line 4: contains a control character");
    REFUSED("format: 1\nkind: incremental\x7f\nbase: " BASE_TEXT "\n", "control character");
    REFUSED("format: 1\nkind: incremental\nbase: " BASE_TEXT "\nbitmap: \x1b[2J\n",
            "control character");
    /* not key: value, empty lines and values, empty entry */
    REFUSED("format: 1\nkind incremental\nbase: " BASE_TEXT "\n", "line 2: not of the form");
    REFUSED("format: 1\n\nkind: incremental\nbase: " BASE_TEXT "\n", "line 2: not of the form");
    REFUSED("format: 1\n: x\nkind: incremental\nbase: " BASE_TEXT "\n", "not of the form");
    REFUSED("format: 1\nkind: incremental\nbase: " BASE_TEXT "\nbitmap: \n",
            "empty value of 'bitmap'");
    REFUSED("", "empty");
}

/* ---- the writer's delta mode ------------------------------------------------------- */

typedef struct Dir {
    char *path;
} Dir;

static int dir_setup(void **state)
{
    Dir *d = g_new0(Dir, 1);
    d->path = g_dir_make_tmp("test-chain.XXXXXX", NULL);
    assert_non_null(d->path);
    *state = d;
    return 0;
}

static int dir_teardown(void **state)
{
    Dir *d = *state;
    g_autoptr(GDir) dir = g_dir_open(d->path, 0, NULL);
    const char *name;
    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *p = g_build_filename(d->path, name, NULL);
        g_unlink(p);
    }
    g_rmdir(d->path);
    g_free(d->path);
    g_free(d);
    return 0;
}

static void *cluster_of(uint8_t byte)
{
    uint8_t *buf = vma_cluster_alloc();
    memset(buf, byte, VMA_CLUSTER_SIZE);
    return buf;
}

/* Writes a 3-cluster device (plus a 1-cluster one) of which only cluster 1 (and none of
 * the second) is written; returns whether close succeeded. */
static bool write_partial(const char *path, bool delta, GError **errp)
{
    VmaWriterOptions opts = {.delta = delta};
    VmaChainInfo info = {.kind = VMA_CHAIN_INCREMENTAL, .bitmap = (char *)"b0"};
    g_autoptr(VmaWriter) w = vma_writer_new(path, &opts, errp);
    size_t len = 0;

    assert_non_null(w);
    memcpy(info.base_uuid, base_uuid, 16);
    g_autofree char *text = vma_chain_info_format(&info, &len);
    assert_true(vma_writer_add_config(w, VMA_CHAIN_CONFIG_NAME, text, len, errp));
    int id = vma_writer_register_device(w, "drive-scsi0", 3 * VMA_CLUSTER_SIZE - 512, errp);
    assert_int_equal(id, 1);
    assert_int_equal(vma_writer_register_device(w, "drive-scsi1", 4096, errp), 2);
    assert_true(vma_writer_write_cluster(w, 1, 1, cluster_of(0xa5), 0, errp));
    return vma_writer_close(w, errp);
}

static void test_writer_delta_closes(void **state)
{
    Dir *d = *state;
    g_autofree char *path = g_build_filename(d->path, "delta.vma", NULL);
    g_autoptr(GError) err = NULL;
    VmaChainInfo info;
    VmaCluster c;

    if (!write_partial(path, true, &err)) {
        fail_msg("close of a delta archive: %s", err->message);
    }
    g_autoptr(VmaReader) r = vma_reader_open(path, &err);
    assert_non_null(r);
    assert_true(vma_chain_info_from_reader(r, &info, &err));
    assert_int_equal(info.kind, VMA_CHAIN_INCREMENTAL);
    assert_memory_equal(info.base_uuid, base_uuid, 16);
    assert_string_equal(info.bitmap, "b0");
    vma_chain_info_clear(&info);

    assert_int_equal(vma_reader_next_cluster(r, &c, &err), 1);
    assert_int_equal(c.dev_id, 1);
    assert_int_equal(c.cluster_num, 1);
    assert_int_equal(c.mask, 0xffff);
    assert_int_equal(c.data[0], 0xa5);
    assert_int_equal(vma_reader_next_cluster(r, &c, &err), 0);
    assert_null(err);
    /* the archive is missing clusters, as a delta archive may */
    assert_false(vma_reader_check_complete(r, 0, &err));
    assert_true(g_error_matches(err, VMA_ERROR, VMA_ERROR_MISSING));
}

static void test_writer_full_still_fails(void **state)
{
    Dir *d = *state;
    g_autofree char *path = g_build_filename(d->path, "full.vma", NULL);
    g_autoptr(GError) err = NULL;

    assert_false(write_partial(path, false, &err));
    assert_true(g_error_matches(err, VMA_ERROR, VMA_ERROR_MISSING));
    assert_non_null(strstr(err->message, "device drive-scsi0: cluster 0 was never written"));
    /* the output file is removed, as for every failed close */
    assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

static void test_from_reader_full_and_bad(void **state)
{
    Dir *d = *state;
    g_autofree char *full = g_build_filename(d->path, "plain.vma", NULL);
    g_autofree char *bad = g_build_filename(d->path, "bad.vma", NULL);
    g_autoptr(GError) err = NULL;
    VmaChainInfo info;

    /* a full archive: kind FULL, no error */
    {
        g_autoptr(VmaWriter) w = vma_writer_new(full, NULL, &err);
        assert_non_null(w);
        assert_true(vma_writer_add_config(w, "qemu-server.conf", "x\n", 2, &err));
        assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 4096, &err), 1);
        assert_true(vma_writer_write_cluster(w, 1, 0, NULL, 0, &err));
        assert_true(vma_writer_close(w, &err));
    }
    g_autoptr(VmaReader) r = vma_reader_open(full, &err);
    assert_non_null(r);
    memset(&info, 0x55, sizeof(info));
    assert_true(vma_chain_info_from_reader(r, &info, &err));
    assert_int_equal(info.kind, VMA_CHAIN_FULL);
    assert_null(info.bitmap);

    /* a chain entry that does not parse (the writer refuses two of one name) */
    {
        VmaWriterOptions opts = {.delta = true};
        g_autoptr(VmaWriter) w = vma_writer_new(bad, &opts, &err);
        const char *t = "format: 1\nkind: sideways\nbase: " BASE_TEXT "\n";
        assert_non_null(w);
        assert_true(vma_writer_add_config(w, VMA_CHAIN_CONFIG_NAME, t, strlen(t), &err));
        assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 4096, &err), 1);
        assert_true(vma_writer_close(w, &err));
    }
    g_autoptr(VmaReader) r2 = vma_reader_open(bad, &err);
    assert_non_null(r2);
    assert_false(vma_chain_info_from_reader(r2, &info, &err));
    assert_true(g_error_matches(err, VMA_ERROR, VMA_ERROR_FORMAT));
    assert_non_null(strstr(err->message, "unknown kind 'sideways'"));
    assert_null(info.bitmap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_exact),
        cmocka_unit_test(test_format_refuses),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_parse_lenient),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test_setup_teardown(test_writer_delta_closes, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_writer_full_still_fails, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_from_reader_full_and_bad, dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
