/*
 * test-nbd-exports.c — the NBD server owns its exports with their ids (nbd-server.h):
 * whether it runs, add by id, look up by id, name or node, list in add order, remove by
 * id or by name. The QMP handlers (monitor/qmp-cmds-block.c) keep none of this.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "blockdev.h"
#include "nbd-server.h"

static void test_export_ids(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("test-nbd-exports-XXXXXX", &err);
    assert_non_null(dir);
    g_autofree char *sock = g_build_filename(dir, "nbd.sock", NULL);
    g_autofree char *img = g_build_filename(dir, "a.raw", NULL);
    int fd = open(img, O_CREAT | O_RDWR | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    BlockDevOptions a = { .node_name = "disk-a", .filename = img };
    assert_true(blockdev_add(&a, &err));

    NbdServerAddress addr = { .type = "unix", .path = sock };
    assert_false(nbd_server_is_running());
    assert_null(nbd_server_query_export("x", NULL, NULL));
    assert_true(nbd_server_start(&addr, 0, &err));
    assert_true(nbd_server_is_running());

    assert_true(nbd_server_add_export_id("e1", "disk-a", "first", true, &err));
    assert_true(nbd_server_add_export("disk-a", "second", false, &err));   /* id = name */
    assert_false(nbd_server_add_export_id("e1", "disk-a", "third", false, &err));
    assert_non_null(strstr(err->message, "id 'e1'"));
    g_clear_error(&err);
    assert_false(nbd_server_add_export_id("e3", "disk-a", "first", false, &err));
    assert_non_null(strstr(err->message, "'first' exists already"));
    g_clear_error(&err);

    g_autoptr(NbdExportInfo) by_id = nbd_server_query_export("e1", NULL, NULL);
    assert_non_null(by_id);
    assert_string_equal(by_id->name, "first");
    assert_string_equal(by_id->node_name, "disk-a");
    assert_true(by_id->writable);
    g_autoptr(NbdExportInfo) by_name = nbd_server_query_export(NULL, "second", NULL);
    assert_non_null(by_name);
    assert_string_equal(by_name->id, "second");
    assert_false(by_name->writable);
    g_autoptr(NbdExportInfo) by_node = nbd_server_query_export(NULL, NULL, "disk-a");
    assert_string_equal(by_node->id, "e1");   /* the first in add order */
    assert_null(nbd_server_query_export("first", NULL, NULL));   /* a name is no id */

    g_autoptr(GPtrArray) list = nbd_server_query_exports();
    assert_int_equal(list->len, 2);
    assert_string_equal(((NbdExportInfo *)g_ptr_array_index(list, 0))->id, "e1");
    assert_string_equal(((NbdExportInfo *)g_ptr_array_index(list, 1))->id, "second");

    assert_false(nbd_server_remove_export_id("first", false, &err));   /* by id only */
    g_clear_error(&err);
    assert_true(nbd_server_remove_export_id("e1", false, &err));
    assert_null(nbd_server_query_export("e1", NULL, NULL));
    assert_true(nbd_server_remove_export("second", false, &err));
    g_autoptr(GPtrArray) empty = nbd_server_query_exports();
    assert_int_equal(empty->len, 0);

    assert_true(nbd_server_add_export_id("e1", "disk-a", NULL, false, &err));
    assert_true(nbd_server_stop(&err));
    assert_false(nbd_server_is_running());
    g_autoptr(GPtrArray) gone = nbd_server_query_exports();
    assert_int_equal(gone->len, 0);

    blockdev_close_all();
    g_unlink(img);
    g_unlink(sock);
    g_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
