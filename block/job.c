/*
 * block/job.c — the job events every job sends (see job.h): one handler, QEMU's order of
 * the end events.
 */
#include "block/job.h"

static GMutex lock;           /* protects fn, fn_opaque */
static JobEventFn fn;
static void *fn_opaque;

void job_set_event_handler(JobEventFn handler, void *opaque)
{
    g_mutex_lock(&lock);
    fn = handler;
    fn_opaque = opaque;
    g_mutex_unlock(&lock);
}

void job_emit(const JobEvent *ev)
{
    g_mutex_lock(&lock);
    JobEventFn f = fn;
    void *opaque = fn_opaque;
    g_mutex_unlock(&lock);
    if (f != NULL) {
        f(ev, opaque);
    }
}

void job_emit_status(const char *type, const char *id, const char *status)
{
    JobEvent ev = {
        .kind = JOB_EVENT_STATUS_CHANGE,
        .type = type,
        .id = id,
        .status = status,
    };
    job_emit(&ev);
}

void job_emit_end(const char *type, const char *id, uint64_t len, uint64_t offset,
                  int64_t speed, const char *error, bool cancelled)
{
    if (error == NULL && !cancelled) {
        job_emit_status(type, id, "waiting");
        job_emit_status(type, id, "pending");
    } else {
        job_emit_status(type, id, "aborting");
    }
    JobEvent ev = {
        .kind = cancelled ? JOB_EVENT_CANCELLED : JOB_EVENT_COMPLETED,
        .type = type,
        .id = id,
        .len = len,
        .offset = offset,
        .speed = speed > 0 ? speed : 0,
        .error = cancelled ? NULL : error,
    };
    job_emit(&ev);
    job_emit_status(type, id, "concluded");
    job_emit_status(type, id, "null");
}

void job_info_free(JobInfo *info)
{
    if (info == NULL) {
        return;
    }
    g_free(info->id);
    g_free(info->error);
    g_free(info);
}
