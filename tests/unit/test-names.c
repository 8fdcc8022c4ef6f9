/*
 * test-names.c — the name rules as tables: QEMU's node-name rule (block/node-name.c),
 * the archive's rule for config and device names (vma_check_name, shared by `vma
 * extract` and the writer) and the disk-name rule of a backup (vma_check_disk_name),
 * plus the writer refusing what extract refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

#include "block/node-name.h"
#include "vma.h"

typedef struct NameCase {
    const char *name;
    const char *message;     /* NULL: accepted */
} NameCase;

static void test_node_names(void **state)
{
    static const NameCase cases[] = {
        {"drive-scsi0", NULL},
        {"d", NULL},
        {"Disk.0_a-b", NULL},
        {"vmstate", NULL},                   /* a valid node name (the backup refuses it) */
        {"a123456789012345678901234567890", NULL},             /* 31 bytes */
        {"a1234567890123456789012345678901", "Node name too long"},
        {"", "Invalid node-name: ''"},
        {"../x", "Invalid node-name: '../x'"},
        {".hidden", "Invalid node-name: '.hidden'"},
        {"a/b", "Invalid node-name: 'a/b'"},
        {"1disk", "Invalid node-name: '1disk'"},
        {"_x", "Invalid node-name: '_x'"},
        {"-x", "Invalid node-name: '-x'"},
        {"a b", "Invalid node-name: 'a b'"},
        {"a:b", "Invalid node-name: 'a:b'"},
        {"x,y", "Invalid node-name: 'x,y'"},
        {"dr\xc3\xa9", "Invalid node-name: 'dr\xc3\xa9'"},
        {"d\xe9", "Invalid node-name: 'd\\351'"},          /* not UTF-8: escaped */
        {"a\"b\\c", "Invalid node-name: 'a\"b\\c'"},
        {"a\nb", "Invalid node-name: 'a\\nb'"},
        {"a\x01", "Invalid node-name: 'a\\001'"},
        {"a\x7f", "Invalid node-name: 'a\\177'"},
        /* well-formedness is checked first, as in QEMU */
        {"a123456789012345678901234567890/", "Invalid node-name: "
                                             "'a123456789012345678901234567890/'"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        bool ok = node_name_check(cases[i].name, &err);
        if (cases[i].message == NULL) {
            if (!ok) {
                fail_msg("'%s' refused: %s", cases[i].name, err->message);
            }
            assert_true(node_name_wellformed(cases[i].name));
        } else {
            if (ok) {
                fail_msg("'%s' accepted", cases[i].name);
            }
            assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT));
            assert_string_equal(err->message, cases[i].message);
        }
    }
    assert_false(node_name_wellformed(NULL));
}

static void test_archive_names(void **state)
{
    static const NameCase cases[] = {
        {"drive-scsi0", NULL},
        {"qemu-server.conf", NULL},
        {"a b", NULL},                       /* extract restores it: so may the writer */
        {"a..", "contains '..'"},
        {"", "empty name"},
        {"../x", "contains '/'"},
        {"a/b", "contains '/'"},
        {".hidden", "starts with '.'"},
        {"a\nDEV: x", "contains a control character"},
        {"a\x7f", "contains a control character"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        bool ok = vma_check_name("device", cases[i].name, &err);
        if (cases[i].message == NULL) {
            if (!ok) {
                fail_msg("'%s' refused: %s", cases[i].name, err->message);
            }
            continue;
        }
        if (ok) {
            fail_msg("'%s' accepted", cases[i].name);
        }
        assert_true(g_error_matches(err, VMA_ERROR, VMA_ERROR_INVALID));
        assert_non_null(strstr(err->message, cases[i].message));
        assert_true(g_str_has_prefix(err->message, "refusing device name \""));
        assert_null(strchr(err->message, '\n'));
    }

    /* every well-formed node name is an archive name; only "vmstate" is no disk name */
    g_autoptr(GError) err = NULL;
    assert_true(vma_check_disk_name("drive-scsi0", &err));
    assert_true(vma_check_name("device", "vmstate", &err));
    assert_false(vma_check_disk_name("vmstate", &err));
    assert_non_null(strstr(err->message, "reserved for the VM state stream"));
    g_clear_error(&err);
    assert_false(vma_check_disk_name("a/b", &err));
    assert_non_null(strstr(err->message, "contains '/'"));
}

/* The writer refuses a device or config name extract would refuse, and takes the
 * VM state stream's name. */
static void test_writer_refuses(void **state)
{
    g_autofree char *dir = g_dir_make_tmp("test-names.XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "out.vma", NULL);
    g_autoptr(GError) err = NULL;
    static const char *const bad[] = {"../x", ".hidden", "a/b", "a\nb", ".."};

    assert_non_null(dir);
    VmaWriter *w = vma_writer_new(path, NULL, &err);
    assert_non_null(w);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        assert_int_equal(vma_writer_register_device(w, bad[i], 4096, &err), -1);
        assert_true(g_error_matches(err, VMA_ERROR, VMA_ERROR_INVALID));
        assert_true(g_str_has_prefix(err->message, "refusing device name"));
        g_clear_error(&err);
        assert_false(vma_writer_add_config(w, bad[i], "x", 1, &err));
        assert_true(g_str_has_prefix(err->message, "refusing config name"));
        g_clear_error(&err);
    }
    assert_int_equal(vma_writer_register_device(w, "drive-scsi0", 4096, &err), 1);
    assert_int_equal(vma_writer_register_device(w, "vmstate", 4096, &err), 2);
    assert_true(vma_writer_add_config(w, "qemu-server.conf", "x", 1, &err));
    vma_writer_cancel(w, "test done");
    vma_writer_free(w);
    g_unlink(path);
    g_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_names),
        cmocka_unit_test(test_archive_names),
        cmocka_unit_test(test_writer_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
