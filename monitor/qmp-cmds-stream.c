/*
 * qmp-cmds-stream.c — QMP glue of the block-stream job (block/stream.h): block-stream's
 * arguments into StreamOptions, QEMU's job-id rules across every kind of job, and the
 * daemon's shutdown of running streams. Stateless.
 */
#include "block/stream.h"
#include "monitor.h"
#include "monitor/qmp-commands.h"

static const char *opt_str(JsonObject *args, const char *key)
{
    return json_object_has_member(args, key) ? json_object_get_string_member(args, key) : NULL;
}

JsonNode *qmp_cmd_block_stream(QmpSession *s, JsonObject *args, GError **errp)
{
    StreamOptions o = {
        .job_id = opt_str(args, "job-id"),
        .device = json_object_get_string_member(args, "device"),
        .base = opt_str(args, "base"),
        .base_node = opt_str(args, "base-node"),
        .backing_file = opt_str(args, "backing-file"),
        .speed = json_object_get_int_member_with_default(args, "speed", 0),
        .on_error = opt_str(args, "on-error"),
    };
    const char *id = o.job_id != NULL ? o.job_id : o.device;

    if (qmp_job_id_in_use(id)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Job ID '%s' already in use", id);
        return NULL;
    }
    qmp_job_events_enable();
    if (!stream_start(&o, errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

void qmp_stream_shutdown(void)
{
    stream_shutdown();
}
