/*
 * test-qmp-error.c — the one GError -> QMP {class, desc} mapping, as a table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <gio/gio.h>

#include "backup.h"
#include "monitor.h"

static void test_table(void **state)
{
    static const struct {
        GQuark (*domain)(void);
        int code;
        const char *cls;
    } cases[] = {
        {qmp_error_quark, QMP_ERROR_GENERIC, "GenericError"},
        {qmp_error_quark, QMP_ERROR_COMMAND_NOT_FOUND, "CommandNotFound"},
        {qmp_error_quark, QMP_ERROR_DEVICE_NOT_ACTIVE, "DeviceNotActive"},
        {qmp_error_quark, QMP_ERROR_DEVICE_NOT_FOUND, "DeviceNotFound"},
        {qmp_error_quark, QMP_ERROR_KVM_MISSING_CAP, "KVMMissingCap"},
        {qmp_error_quark, 99, "GenericError"},          /* unknown code */
        {qmp_error_quark, -1, "GenericError"},
        /* other domains are GenericError whatever their code, as QEMU reports them */
        {g_io_error_quark, G_IO_ERROR_NOT_FOUND, "GenericError"},
        {g_io_error_quark, G_IO_ERROR_EXISTS, "GenericError"},
        {g_io_error_quark, QMP_ERROR_DEVICE_NOT_FOUND, "GenericError"},
        {g_file_error_quark, G_FILE_ERROR_NOENT, "GenericError"},
        /* the owners' domains: only the codes clients tell apart have a class */
        {backup_error_quark, BACKUP_ERROR_DEVICE_NOT_FOUND, "DeviceNotFound"},
        {backup_error_quark, BACKUP_ERROR_FAILED, "GenericError"},
        {backup_error_quark, BACKUP_ERROR_CANCELLED, "GenericError"},
        {g_io_error_quark, BACKUP_ERROR_DEVICE_NOT_FOUND, "GenericError"},
        {backup_error_quark, QMP_ERROR_KVM_MISSING_CAP, "GenericError"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = g_error_new(cases[i].domain(), cases[i].code,
                                            "open drive-scsi0: a.raw: case %zu", i);
        assert_string_equal(qmp_error_class(err), cases[i].cls);

        g_autoptr(JsonObject) obj = qmp_error_object(err);
        assert_int_equal(json_object_get_size(obj), 2);
        assert_string_equal(json_object_get_string_member(obj, "class"), cases[i].cls);
        assert_string_equal(json_object_get_string_member(obj, "desc"), err->message);
    }
    assert_string_equal(qmp_error_class(NULL), "GenericError");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
