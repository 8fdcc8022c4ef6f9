/*
 * qmp-cmds-job.c — QMP glue every job shares (block/job.h): the job events, query-jobs
 * over the backup's and the streams' jobs, job-cancel, block-job-cancel and
 * block-job-set-speed.
 *
 * A backup's jobs are its disks (backup.h); cancelling one cancels the whole backup, as
 * its disks share one archive. Stream jobs (block/stream.h) are cancelled one by one.
 * Stateless but for the event handler, set once a command starts a job.
 */
#include <string.h>

#include "backup.h"
#include "block/job.h"
#include "block/stream.h"
#include "monitor.h"
#include "monitor/qmp-commands.h"

/* Any thread (a job's threads send its end). */
static void on_job_event(const JobEvent *ev, void *opaque)
{
    JsonObject *data = json_object_new();

    switch (ev->kind) {
    case JOB_EVENT_STATUS_CHANGE:
        json_object_set_string_member(data, "id", ev->id);
        json_object_set_string_member(data, "status", ev->status);
        qmp_event_emit("JOB_STATUS_CHANGE", data);
        return;
    case JOB_EVENT_COMPLETED:
    case JOB_EVENT_CANCELLED:
        json_object_set_string_member(data, "type", ev->type);
        json_object_set_string_member(data, "device", ev->id);
        json_object_set_int_member(data, "len", (gint64)ev->len);
        json_object_set_int_member(data, "offset", (gint64)ev->offset);
        json_object_set_int_member(data, "speed", ev->speed);
        if (ev->kind == JOB_EVENT_CANCELLED) {
            qmp_event_emit("BLOCK_JOB_CANCELLED", data);
            return;
        }
        if (ev->error != NULL) {
            json_object_set_string_member(data, "error", ev->error);
        }
        qmp_event_emit("BLOCK_JOB_COMPLETED", data);
        return;
    }
    json_object_unref(data);
}

void qmp_job_events_enable(void)
{
    job_set_event_handler(on_job_event, NULL);
}

static void add_jobs(JsonArray *list, GPtrArray *jobs)
{
    for (guint i = 0; i < jobs->len; i++) {
        const JobInfo *ji = g_ptr_array_index(jobs, i);
        JsonObject *o = json_object_new();
        json_object_set_string_member(o, "id", ji->id);
        json_object_set_string_member(o, "type", ji->type);
        json_object_set_string_member(o, "status", ji->status);
        json_object_set_int_member(o, "current-progress", (gint64)ji->current_progress);
        json_object_set_int_member(o, "total-progress", (gint64)ji->total_progress);
        if (ji->error != NULL) {
            json_object_set_string_member(o, "error", ji->error);
        }
        json_array_add_object_element(list, o);
    }
}

JsonNode *qmp_cmd_query_jobs(QmpSession *s, JsonObject *args, GError **errp)
{
    g_autoptr(GPtrArray) backups = backup_query_jobs();
    g_autoptr(GPtrArray) streams = stream_query_jobs();
    JsonArray *list = json_array_new();

    add_jobs(list, backups);
    add_jobs(list, streams);
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(n, list);
    return n;
}

bool qmp_job_id_in_use(const char *id)
{
    g_autoptr(GPtrArray) backups = backup_query_jobs();
    g_autoptr(GPtrArray) streams = stream_query_jobs();

    for (guint i = 0; i < backups->len; i++) {
        if (strcmp(((JobInfo *)g_ptr_array_index(backups, i))->id, id) == 0) {
            return true;
        }
    }
    for (guint i = 0; i < streams->len; i++) {
        if (strcmp(((JobInfo *)g_ptr_array_index(streams, i))->id, id) == 0) {
            return true;
        }
    }
    return false;
}

/* Cancel job id: a stream, or the backup a disk job belongs to. */
static bool cancel_job(const char *id, GError **errp)
{
    GError *err = NULL;

    if (stream_cancel(id, &err)) {
        return true;
    }
    g_autoptr(GPtrArray) backups = backup_query_jobs();
    for (guint i = 0; i < backups->len; i++) {
        if (strcmp(((JobInfo *)g_ptr_array_index(backups, i))->id, id) == 0) {
            g_error_free(err);
            backup_cancel();
            return true;
        }
    }
    g_propagate_error(errp, err);
    return false;
}

JsonNode *qmp_cmd_job_cancel(QmpSession *s, JsonObject *args, GError **errp)
{
    GError *err = NULL;

    if (!cancel_job(json_object_get_string_member(args, "id"), &err)) {
        g_error_free(err);
        g_set_error_literal(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Job not found");
        return NULL;
    }
    return qmp_return_empty();
}

/* STREAM_ERROR_NO_JOB is DeviceNotActive (monitor/qmp-error.c) */
JsonNode *qmp_cmd_block_job_cancel(QmpSession *s, JsonObject *args, GError **errp)
{
    if (!cancel_job(json_object_get_string_member(args, "device"), errp)) {
        return NULL;
    }
    return qmp_return_empty();
}

JsonNode *qmp_cmd_block_job_set_speed(QmpSession *s, JsonObject *args, GError **errp)
{
    const char *id = json_object_get_string_member(args, "device");

    if (!stream_set_speed(id, json_object_get_int_member(args, "speed"), errp)) {
        return NULL;
    }
    return qmp_return_empty();
}
