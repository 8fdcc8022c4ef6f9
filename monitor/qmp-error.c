/*
 * qmp-error.c — the one GError -> QMP error mapping.
 *
 * QMP clients see {"class", "desc"}. The class comes from the code of a QMP_ERROR
 * error (the monitor's own errors), or from the owners' codes that QMP clients tell
 * apart (owner_classes[]: the subsystems keep their own domains and know nothing of
 * QMP); every other error (G_IO_ERROR of the block layer, G_FILE_ERROR, BACKUP_ERROR's
 * other codes, ...) is a GenericError, as QEMU reports nearly everything. desc is the
 * message unchanged.
 */
#include "backup.h"
#include "block/stream.h"
#include "monitor.h"

G_DEFINE_QUARK(qmp-error-quark, qmp_error)

static const char *const class_names[] = {
    [QMP_ERROR_GENERIC] = "GenericError",
    [QMP_ERROR_COMMAND_NOT_FOUND] = "CommandNotFound",
    [QMP_ERROR_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
    [QMP_ERROR_DEVICE_NOT_FOUND] = "DeviceNotFound",
    [QMP_ERROR_KVM_MISSING_CAP] = "KVMMissingCap",
};

/* Owner codes with a class of their own (a domain is a function: quarks are made at
 * run time). */
static const struct {
    GQuark (*domain)(void);
    int code;
    QmpErrorCode cls;
} owner_classes[] = {
    /* backup's "Device 'X' not found", as QEMU's backup command reports it */
    {backup_error_quark, BACKUP_ERROR_DEVICE_NOT_FOUND, QMP_ERROR_DEVICE_NOT_FOUND},
    /* block-job-cancel / block-job-set-speed: "Block job 'X' not found" */
    {stream_error_quark, STREAM_ERROR_NO_JOB, QMP_ERROR_DEVICE_NOT_ACTIVE},
};

const char *qmp_error_class(const GError *err)
{
    if (err == NULL) {
        return "GenericError";
    }
    if (err->domain == QMP_ERROR) {
        if (err->code >= 0 && (size_t)err->code < G_N_ELEMENTS(class_names)) {
            return class_names[err->code];
        }
        return "GenericError";
    }
    for (size_t i = 0; i < G_N_ELEMENTS(owner_classes); i++) {
        if (err->domain == owner_classes[i].domain() && err->code == owner_classes[i].code) {
            return class_names[owner_classes[i].cls];
        }
    }
    return "GenericError";
}

JsonObject *qmp_error_object(const GError *err)
{
    JsonObject *obj = json_object_new();

    json_object_set_string_member(obj, "class", qmp_error_class(err));
    json_object_set_string_member(obj, "desc", err != NULL && err->message != NULL
                                                   ? err->message : "unknown error");
    return obj;
}
