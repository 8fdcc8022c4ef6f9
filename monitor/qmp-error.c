/*
 * qmp-error.c — the one GError -> QMP error mapping.
 *
 * QMP clients see {"class", "desc"}. The class comes from the code of a QMP_ERROR
 * error; every other domain (G_IO_ERROR, G_FILE_ERROR, the block layer's, ...) is a
 * GenericError, as QEMU reports nearly everything. desc is the message unchanged.
 */
#include "monitor.h"

G_DEFINE_QUARK(qmp-error-quark, qmp_error)

static const char *const class_names[] = {
    [QMP_ERROR_GENERIC] = "GenericError",
    [QMP_ERROR_COMMAND_NOT_FOUND] = "CommandNotFound",
    [QMP_ERROR_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
    [QMP_ERROR_DEVICE_NOT_FOUND] = "DeviceNotFound",
    [QMP_ERROR_KVM_MISSING_CAP] = "KVMMissingCap",
};

const char *qmp_error_class(const GError *err)
{
    if (err != NULL && err->domain == QMP_ERROR && err->code >= 0 &&
        (size_t)err->code < G_N_ELEMENTS(class_names)) {
        return class_names[err->code];
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
