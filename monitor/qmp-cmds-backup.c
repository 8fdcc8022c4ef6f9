/*
 * qmp-cmds-backup.c — QMP glue of the backup job (backup.h): the commands backup,
 * backup-cancel and query-backup, and vmad's backup settings (--fleecing-dir,
 * --backup-buffer-size). query-jobs and the job events are qmp-cmds-job.c's.
 *
 * backup.c knows nothing of QMP; this file turns arguments into BackupOptions (taking a
 * /dev/fdname/NAME descriptor from the session), BACKUP_ERROR_DEVICE_NOT_FOUND into the
 * DeviceNotFound class and BackupStatus into the schema's object.
 *
 * State below is touched only on the main loop thread.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "monitor.h"
#include "monitor/qmp-commands.h"
#include "util/size.h"

#define FDNAME_PREFIX "/dev/fdname/"
#define MIN_BUFFER_SIZE (64u * 1024)

static char *fleecing_dir;    /* --fleecing-dir, or NULL */
static uint64_t buffer_size;  /* --backup-buffer-size; 0: the default */

/* ---- settings (vmad's command line) ---------------------------------------------------- */

bool qmp_backup_set_fleecing_dir(const char *dir, GError **errp)
{
    struct stat st;

    if (stat(dir, &st) < 0) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: %s", dir, g_strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "%s: not a directory", dir);
        return false;
    }
    g_free(fleecing_dir);
    fleecing_dir = g_strdup(dir);
    return true;
}

bool qmp_backup_set_buffer_size(const char *text, GError **errp)
{
    uint64_t v;

    /* no option name: vmad's message names it already ("vmad: --backup-buffer-size X: ") */
    if (!size_parse(NULL, text, MIN_BUFFER_SIZE, UINT64_MAX, &v, errp)) {
        return false;
    }
    buffer_size = v;
    return true;
}

void qmp_backup_shutdown(void)
{
    backup_cancel();
    backup_wait();
    backup_set_event_handler(NULL, NULL);
    g_clear_pointer(&fleecing_dir, g_free);
}

/* ---- commands ------------------------------------------------------------------------- */

JsonNode *qmp_cmd_backup(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *file = json_object_get_string_member(args, "backup-file");
    BackupOptions o = {
        .backup_file = file,
        .config_file = json_object_get_string_member_with_default(args, "config-file", NULL),
        .firewall_file = json_object_get_string_member_with_default(args, "firewall-file",
                                                                    NULL),
        .devlist = json_object_get_string_member_with_default(args, "devlist", NULL),
        .speed = json_object_get_int_member_with_default(args, "speed", 0),
        .fleecing = json_object_get_boolean_member_with_default(args, "fleecing", FALSE),
        .vm_monitor = json_object_get_string_member_with_default(args, "vm-monitor", NULL),
        .mem_limit = buffer_size,
        .fleecing_dir = fleecing_dir,
    };
    const char *format = json_object_get_string_member_with_default(args, "format", "vma");
    gint64 workers = json_object_get_int_member_with_default(args, "max-workers", 0);

    o.bitmap = json_object_get_string_member_with_default(args, "bitmap", NULL);
    const char *mode = json_object_get_string_member_with_default(args, "bitmap-mode", NULL);
    if (mode != NULL && o.bitmap == NULL) {
        g_set_error_literal(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                            "Cannot specify bitmap sync mode without a bitmap");
        return NULL;
    }
    o.differential = mode != NULL && strcmp(mode, "never") == 0;
    if (strcmp(format, "vma") != 0) {
        g_set_error_literal(errp, QMP_ERROR, QMP_ERROR_GENERIC, "unknown backup format");
        return NULL;
    }
    o.max_workers = (int)CLAMP(workers, 0, BACKUP_MAX_WORKERS);

    /* A descriptor named in backup-file: use a copy, and take the original from the
     * session only once the backup runs, so a refused backup leaves it in place. */
    const char *fdname = g_str_has_prefix(file, FDNAME_PREFIX) ? file + strlen(FDNAME_PREFIX)
                                                               : NULL;
    if (fdname != NULL) {
        o.use_fd = true;
        o.fd = qmp_session_dup_fd(s, fdname, errp);
        if (o.fd < 0) {
            return NULL;
        }
    }

    qmp_job_events_enable();
    /* BACKUP_ERROR as it is: qmp-error.c gives DEVICE_NOT_FOUND its class */
    g_autofree char *uuid = backup_start(&o, errp);
    if (uuid == NULL) {
        return NULL;
    }
    if (fdname != NULL) {
        int orig = qmp_session_take_fd(s, fdname, NULL);
        if (orig >= 0) {
            close(orig);
        }
    }

    JsonObject *ret = json_object_new();
    json_object_set_string_member(ret, "UUID", uuid);
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, ret);
    return n;
}

JsonNode *qmp_cmd_backup_cancel(QmpSession *s, JsonObject *args, GError **errp)
{
    backup_cancel();
    return qmp_return_empty();
}

JsonNode *qmp_cmd_query_backup(QmpSession *s, JsonObject *args, GError **errp)
{
    BackupStatus st;
    JsonObject *ret = json_object_new();

    backup_query(&st);
    if (st.status != NULL) {
        json_object_set_string_member(ret, "status", st.status);
        if (st.errmsg != NULL) {
            json_object_set_string_member(ret, "errmsg", st.errmsg);
        }
        json_object_set_int_member(ret, "total", (gint64)st.total);
        json_object_set_int_member(ret, "dirty", (gint64)st.dirty);
        json_object_set_int_member(ret, "transferred", (gint64)st.transferred);
        json_object_set_int_member(ret, "zero-bytes", (gint64)st.zero_bytes);
        json_object_set_int_member(ret, "reused", (gint64)st.reused);
        json_object_set_int_member(ret, "start-time", st.start_time);
        if (st.end_time != 0) {
            json_object_set_int_member(ret, "end-time", st.end_time);
        }
        json_object_set_string_member(ret, "backup-file", st.backup_file);
        json_object_set_string_member(ret, "uuid", st.uuid);
        if (st.vmstate_method != NULL) {
            json_object_set_string_member(ret, "vmstate-method", st.vmstate_method);
            json_object_set_int_member(ret, "vmstate-bytes", (gint64)st.vmstate_bytes);
            if (st.vmstate_downtime_ms >= 0) {
                json_object_set_int_member(ret, "vmstate-downtime", st.vmstate_downtime_ms);
            }
        }
    }
    json_object_set_boolean_member(ret, "finishing", st.finishing);
    backup_status_clear(&st);

    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, ret);
    return n;
}
