/*
 * backup-vmstate.c — the RAM and device state of the QEMU that runs on vmad's disks, as
 * the `vmstate` stream of the backup's archive (backup `vm-monitor`).
 *
 * Design note
 * -----------
 * vmad is a QMP *client* of that QEMU (util/qmp-client.c over the socket named by
 * vm-monitor) and drives QEMU's own migration: it makes a socketpair, passes one end
 * with `getfd` (SCM_RIGHTS), runs `migrate` to `fd:NAME` and reads the migration
 * stream from the other end, cutting it into 64 KiB clusters of the archive's vmstate
 * device, in order, through the writer's normal lane (no temporary file). Everything
 * here runs on the backup's controller thread, never on the main loop: QMP round trips
 * and the stream may take seconds.
 *
 * The instant (method "precopy", the only one). A precopy migration copies RAM while
 * the guest runs, then stops the VM (runstate finish-migrate, event STOP), writes the
 * last dirty pages and the device state, and leaves the source in postmigrate, still
 * stopped, once the status is `completed`. From STOP until our `cont` the guest executes
 * nothing and QEMU has drained and flushed its disk requests (it inactivates the block
 * nodes), so the disks do not change either: the state in the stream is the VM at STOP,
 * and the disks' backup instant, taken on `MIGRATION completed` (the copy-before-write
 * filters go in, backup.c's at_instant), is the same point of the guest's execution.
 * Then `cont`, and the guest goes on; the rest of the disk copy is the ordinary backup.
 * The guest's downtime is STOP until `cont` returned: QEMU's final pass (bounded by its
 * downtime-limit, default 300 ms) plus the filter insertion plus one round trip.
 * (background-snapshot would give RAM as of the migration's start without a final
 * pass, but QEMU pauses and resumes the VM on its own there, with no moment at which
 * vmad could take the disks' instant inside that pause; stopping the VM first makes a
 * state that restores paused. See docs/internals.md.)
 *
 * QEMU settings changed for the migration and put back afterwards (whatever happened):
 * capability `events` on (MIGRATION status events, so completion is seen at once),
 * capability `background-snapshot` off (else `migrate` would run one), and
 * max-bandwidth raised (QEMU's default throttles to 128 MiB/s; the target is local).
 *
 * Failure policy: the backup fails with QEMU's message (an error reply's desc, or
 * query-migrate's error-desc), and the VM is left running as it was: a refused or
 * failed migration leaves QEMU's VM running (QEMU restarts it itself); a cancel or a
 * writer error cancels the migration (`migrate_cancel`, and closing our end of the
 * stream) before completion; once completion was seen the VM is always `cont`ed, also
 * when taking the instant failed. A VM that is not running when the backup starts is
 * refused before anything is changed. A QEMU that vanishes leaves nothing to restore.
 *
 * Cancel (backup_vmstate_cancel, any thread) writes to a wake pipe that the streaming
 * loop polls with the stream and the QMP socket; QMP commands have a time limit, so a
 * QEMU that stops answering cannot hold the backup forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup-internal.h"
#include "backup.h"
#include "util/fd.h"
#include "util/qmp-client.h"
#include "vma.h"

#define CONNECT_TIMEOUT_MS 10000
#define COMMAND_TIMEOUT_MS 30000
#define END_TIMEOUT_MS 30000          /* stream EOF until the final status, cancel */
#define FAST_BANDWIDTH (INT64_C(1) << 40) /* bytes/s: effectively unthrottled */
#define STATE_MARGIN (UINT64_C(64) << 20) /* device state on top of the RAM size */

struct BackupVmstate {
    char *monitor;
    QmpClient *qmp;            /* controller thread only */
    int wake[2];               /* cancel pipe: [0] polled, [1] written by cancel */
    gint cancelled;            /* atomic */
    GMutex lock;               /* protects bytes and downtime_ms (any thread reads) */
    uint64_t bytes;            /* stream bytes received */
    int64_t downtime_ms;       /* -1 until known */

    /* Controller thread only. */
    char *qemu_version;
    char *qemu_package;
    char *machine;
    uint64_t memory;
    unsigned cpus;
    bool had_events, had_bgsnap;
    int64_t old_bandwidth;
    bool settings_changed;
    char *fdname;
};

/* ---- small QMP helpers ------------------------------------------------------------- */

static JsonNode *cmd(BackupVmstate *vs, const char *name, JsonObject *args, GError **errp)
{
    JsonNode *r = qmp_client_execute_timeout(vs->qmp, name, args, NULL, 0, COMMAND_TIMEOUT_MS,
                                             errp);
    if (r == NULL) {
        g_prefix_error(errp, "vm-monitor %s: %s: ", vs->monitor, name);
    }
    return r;
}

static JsonObject *ret_object(JsonNode *n, const char *what, BackupVmstate *vs, GError **errp)
{
    if (n == NULL || !JSON_NODE_HOLDS_OBJECT(n)) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "vm-monitor %s: %s: unexpected reply", vs->monitor, what);
        return NULL;
    }
    return json_node_get_object(n);
}

static const char *obj_str(JsonObject *o, const char *member)
{
    JsonNode *n = o ? json_object_get_member(o, member) : NULL;
    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(n);
}

static bool obj_int(JsonObject *o, const char *member, int64_t *v)
{
    JsonNode *n = o ? json_object_get_member(o, member) : NULL;
    if (n == NULL || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64) {
        return false;
    }
    *v = json_node_get_int(n);
    return true;
}

static bool set_capabilities(BackupVmstate *vs, bool events, bool bgsnap, GError **errp)
{
    g_autoptr(JsonObject) args = json_object_new();
    JsonArray *caps = json_array_new();
    JsonObject *c = json_object_new();
    json_object_set_string_member(c, "capability", "events");
    json_object_set_boolean_member(c, "state", events);
    json_array_add_object_element(caps, c);
    c = json_object_new();
    json_object_set_string_member(c, "capability", "background-snapshot");
    json_object_set_boolean_member(c, "state", bgsnap);
    json_array_add_object_element(caps, c);
    json_object_set_array_member(args, "capabilities", caps);
    g_autoptr(JsonNode) r = cmd(vs, "migrate-set-capabilities", args, errp);
    return r != NULL;
}

static bool set_bandwidth(BackupVmstate *vs, int64_t bw, GError **errp)
{
    g_autoptr(JsonObject) args = json_object_new();
    json_object_set_int_member(args, "max-bandwidth", bw);
    g_autoptr(JsonNode) r = cmd(vs, "migrate-set-parameters", args, errp);
    return r != NULL;
}

/* The VM's run state ("running", "paused", "postmigrate", ...), g_free it. */
static char *run_state(BackupVmstate *vs, GError **errp)
{
    g_autoptr(JsonNode) r = cmd(vs, "query-status", NULL, errp);
    JsonObject *o = r ? ret_object(r, "query-status", vs, errp) : NULL;
    const char *st = obj_str(o, "status");
    if (o != NULL && st == NULL) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "vm-monitor %s: query-status: no status in the reply", vs->monitor);
    }
    return g_strdup(st);
}

/*
 * Resume a VM stopped by the end of its migration. QEMU announces `completed` before it
 * leaves runstate finish-migrate for postmigrate, and refuses cont until then ("Migration
 * is not finalized yet"): wait for the run state to move on first.
 */
static bool resume_vm(BackupVmstate *vs, GError **errp)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)END_TIMEOUT_MS * 1000;

    for (;;) {
        g_autofree char *st = run_state(vs, errp);
        if (st == NULL) {
            return false;
        }
        if (strcmp(st, "running") == 0) {
            return true;
        }
        if (strcmp(st, "finish-migrate") != 0 || g_get_monotonic_time() > deadline) {
            break;
        }
        g_usleep(1000);
    }
    g_autoptr(JsonNode) r = cmd(vs, "cont", NULL, errp);
    return r != NULL;
}

/* ---- life cycle -------------------------------------------------------------------- */

BackupVmstate *backup_vmstate_new(const char *monitor, GError **errp)
{
    struct stat st;

    if (monitor == NULL || monitor[0] == '\0') {
        g_set_error_literal(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                            "vm-monitor: empty socket path");
        return NULL;
    }
    /* A cheap check on the main loop, so a wrong path fails the command itself; the
     * connection is made on the job's thread. */
    if (stat(monitor, &st) < 0) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "vm-monitor %s: %s", monitor,
                    g_strerror(errno));
        return NULL;
    }
    if (!S_ISSOCK(st.st_mode)) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "vm-monitor %s: not a socket", monitor);
        return NULL;
    }
    BackupVmstate *vs = g_new0(BackupVmstate, 1);
    vs->monitor = g_strdup(monitor);
    vs->downtime_ms = -1;
    g_mutex_init(&vs->lock);
    GError *err = NULL;
    if (!g_unix_open_pipe(vs->wake, FD_CLOEXEC, &err)) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "vm-monitor: pipe: %s",
                    err->message);
        g_error_free(err);
        g_free(vs->monitor);
        g_free(vs);
        return NULL;
    }
    return vs;
}

void backup_vmstate_free(BackupVmstate *vs)
{
    if (vs == NULL) {
        return;
    }
    qmp_client_free(vs->qmp);
    close_fd(&vs->wake[0]);
    close_fd(&vs->wake[1]);
    g_free(vs->monitor);
    g_free(vs->qemu_version);
    g_free(vs->qemu_package);
    g_free(vs->machine);
    g_free(vs->fdname);
    g_mutex_clear(&vs->lock);
    g_free(vs);
}

void backup_vmstate_cancel(BackupVmstate *vs)
{
    if (g_atomic_int_compare_and_exchange(&vs->cancelled, 0, 1)) {
        char b = 1;
        ssize_t r = write(vs->wake[1], &b, 1);
        (void)r; /* the pipe is empty until now: the byte fits */
    }
}

void backup_vmstate_progress(BackupVmstate *vs, uint64_t *bytes, int64_t *downtime_ms)
{
    g_mutex_lock(&vs->lock);
    *bytes = vs->bytes;
    *downtime_ms = vs->downtime_ms;
    g_mutex_unlock(&vs->lock);
}

const char *backup_vmstate_method(BackupVmstate *vs)
{
    return "precopy";
}

/* ---- before the header: what QEMU runs --------------------------------------------- */

static bool query_vm(BackupVmstate *vs, GError **errp)
{
    g_autoptr(JsonNode) ver = cmd(vs, "query-version", NULL, errp);
    JsonObject *o = ver ? ret_object(ver, "query-version", vs, errp) : NULL;
    if (o == NULL) {
        return false;
    }
    JsonNode *qn = json_object_get_member(o, "qemu");
    JsonObject *q = qn && JSON_NODE_HOLDS_OBJECT(qn) ? json_node_get_object(qn) : NULL;
    int64_t major = 0, minor = 0, micro = 0;
    if (!obj_int(q, "major", &major) || !obj_int(q, "minor", &minor) ||
        !obj_int(q, "micro", &micro)) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "vm-monitor %s: query-version: no version in the reply", vs->monitor);
        return false;
    }
    vs->qemu_version = g_strdup_printf("%" G_GINT64_FORMAT ".%" G_GINT64_FORMAT
                                       ".%" G_GINT64_FORMAT, major, minor, micro);
    const char *pkg = obj_str(o, "package");
    vs->qemu_package = g_strdup(pkg ? pkg : "");

    /* The machine type: the QOM type of /machine is "<machine>-machine". */
    g_autoptr(JsonObject) a = json_object_new();
    json_object_set_string_member(a, "path", "/machine");
    json_object_set_string_member(a, "property", "type");
    g_autoptr(JsonNode) mt = cmd(vs, "qom-get", a, errp);
    if (mt == NULL) {
        return false;
    }
    const char *type = JSON_NODE_HOLDS_VALUE(mt) &&
                               json_node_get_value_type(mt) == G_TYPE_STRING
                           ? json_node_get_string(mt)
                           : NULL;
    if (type == NULL || !g_str_has_suffix(type, "-machine")) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "vm-monitor %s: qom-get /machine type: unexpected reply", vs->monitor);
        return false;
    }
    vs->machine = g_strndup(type, strlen(type) - strlen("-machine"));

    g_autoptr(JsonNode) mem = cmd(vs, "query-memory-size-summary", NULL, errp);
    o = mem ? ret_object(mem, "query-memory-size-summary", vs, errp) : NULL;
    int64_t base = 0, plugged = 0;
    if (o == NULL || !obj_int(o, "base-memory", &base) || base <= 0) {
        if (o != NULL) {
            g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                        "vm-monitor %s: query-memory-size-summary: no base-memory",
                        vs->monitor);
        }
        return false;
    }
    (void)obj_int(o, "plugged-memory", &plugged);
    vs->memory = (uint64_t)base;

    g_autoptr(JsonNode) cpus = cmd(vs, "query-cpus-fast", NULL, errp);
    if (cpus == NULL) {
        return false;
    }
    vs->cpus = JSON_NODE_HOLDS_ARRAY(cpus) ? json_array_get_length(json_node_get_array(cpus))
                                            : 0;
    return true;
}

static bool prepare(BackupVmstate *vs, char **config, size_t *config_len, uint64_t *size,
                    GError **errp)
{
    GError *err = NULL;

    vs->qmp = qmp_client_connect(vs->monitor, CONNECT_TIMEOUT_MS, &err);
    if (vs->qmp == NULL) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "vm-monitor: %s", err->message);
        g_error_free(err);
        return false;
    }
    g_autofree char *st = run_state(vs, errp);
    if (st == NULL) {
        return false;
    }
    if (strcmp(st, "running") != 0) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "vm-monitor %s: the VM is not running (status: %s); a backup with "
                    "its RAM state needs a running VM", vs->monitor, st);
        return false;
    }
    if (!query_vm(vs, errp)) {
        return false;
    }
    GString *text = g_string_new(NULL);
    g_string_append_printf(text, "format: 1\nram: 1\nmethod: %s\nqemu-version: %s\n",
                           backup_vmstate_method(vs), vs->qemu_version);
    if (vs->qemu_package[0] != '\0' && strpbrk(vs->qemu_package, "\r\n") == NULL) {
        g_string_append_printf(text, "qemu-package: %s\n", vs->qemu_package);
    }
    g_string_append_printf(text, "runningmachine: %s\nmemory: %" G_GUINT64_FORMAT "\n"
                           "cpus: %u\n", vs->machine, vs->memory, vs->cpus);
    *config_len = text->len;
    *config = g_string_free(text, FALSE);
    /* The header declares the stream's size before it is known: RAM plus a margin for
     * the device state (the stream may be longer: a precopy sends dirty pages again;
     * the format does not bound a vmstate stream by its size, and readers keep it). */
    *size = vs->memory + STATE_MARGIN;
    return true;
}

bool backup_vmstate_prepare(BackupVmstate *vs, char **config, size_t *config_len,
                            uint64_t *size, GError **errp)
{
    if (!prepare(vs, config, config_len, size, errp)) {
        /* QEMU serves one client per QMP socket: do not keep it */
        g_clear_pointer(&vs->qmp, qmp_client_free);
        return false;
    }
    return true;
}

/* ---- the migration ----------------------------------------------------------------- */

typedef enum MigEnd {
    MIG_RUNNING,
    MIG_COMPLETED,
    MIG_FAILED,
    MIG_CANCELLED,
} MigEnd;

/* query-migrate: the end reached so far; *desc gets error-desc for a failure. */
static MigEnd query_migration(BackupVmstate *vs, char **desc, GError **errp)
{
    g_autoptr(JsonNode) r = cmd(vs, "query-migrate", NULL, errp);
    JsonObject *o = r ? ret_object(r, "query-migrate", vs, errp) : NULL;
    if (o == NULL) {
        return MIG_FAILED;
    }
    const char *st = obj_str(o, "status");
    if (st == NULL) {
        return MIG_RUNNING;
    }
    if (strcmp(st, "completed") == 0) {
        return MIG_COMPLETED;
    }
    if (strcmp(st, "failed") == 0) {
        const char *d = obj_str(o, "error-desc");
        *desc = g_strdup(d ? d : "migration failed");
        return MIG_FAILED;
    }
    if (strcmp(st, "cancelled") == 0) {
        return MIG_CANCELLED;
    }
    return MIG_RUNNING;
}

/* Take the events queued in the client; the end a MIGRATION event announced, or
 * MIG_RUNNING. *stop_us gets the STOP event's time (QEMU's clock, microseconds). */
static MigEnd take_events(BackupVmstate *vs, gint64 *stop_us)
{
    MigEnd end = MIG_RUNNING;
    JsonObject *ev;

    while ((ev = qmp_client_next_event(vs->qmp)) != NULL) {
        const char *name = obj_str(ev, "event");
        JsonNode *dn = json_object_get_member(ev, "data");
        JsonObject *data = dn && JSON_NODE_HOLDS_OBJECT(dn) ? json_node_get_object(dn) : NULL;
        if (name != NULL && strcmp(name, "STOP") == 0) {
            JsonNode *tn = json_object_get_member(ev, "timestamp");
            JsonObject *ts = tn && JSON_NODE_HOLDS_OBJECT(tn) ? json_node_get_object(tn) : NULL;
            int64_t s = 0, us = 0;
            if (obj_int(ts, "seconds", &s) && obj_int(ts, "microseconds", &us)) {
                *stop_us = s * G_USEC_PER_SEC + us;
            }
        } else if (name != NULL && strcmp(name, "MIGRATION") == 0) {
            const char *st = obj_str(data, "status");
            if (st != NULL && strcmp(st, "completed") == 0) {
                end = MIG_COMPLETED;
            } else if (st != NULL && strcmp(st, "failed") == 0) {
                end = MIG_FAILED;
            } else if (st != NULL && strcmp(st, "cancelled") == 0) {
                end = MIG_CANCELLED;
            }
        }
        json_object_unref(ev);
    }
    return end;
}

/* Read from the stream into the current cluster; full clusters go to the writer. 1 with
 * data, 0 at EOF, -1 with errp (a writer error: the backup's failure). */
typedef struct Stream {
    int fd;
    VmaWriter *w;
    uint8_t dev_id;
    uint32_t cluster;
    uint8_t *buf;
    size_t fill;
} Stream;

static bool stream_flush(Stream *s, GError **errp)
{
    if (s->fill == 0) {
        return true;
    }
    if (s->fill < VMA_CLUSTER_SIZE) {
        memset(s->buf + s->fill, 0, VMA_CLUSTER_SIZE - s->fill);
    }
    bool ok = vma_writer_write_cluster(s->w, s->dev_id, s->cluster, g_steal_pointer(&s->buf), 0,
                                       errp);
    s->cluster++;
    s->fill = 0;
    return ok;
}

static int stream_read(BackupVmstate *vs, Stream *s, GError **errp)
{
    if (s->buf == NULL) {
        s->buf = vma_cluster_alloc();
    }
    ssize_t n = read(s->fd, s->buf + s->fill, VMA_CLUSTER_SIZE - s->fill);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            return 1;
        }
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "vm-monitor %s: read the migration stream: %s", vs->monitor,
                    g_strerror(errno));
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    s->fill += (size_t)n;
    g_mutex_lock(&vs->lock);
    vs->bytes += (uint64_t)n;
    g_mutex_unlock(&vs->lock);
    if (s->fill == VMA_CLUSTER_SIZE && !stream_flush(s, errp)) {
        return -1;
    }
    return 1;
}

/* Stop a migration that has not completed and wait for QEMU to say it ended (then QEMU
 * has restarted the VM). Closing our end of the stream unblocks QEMU's writes. */
static MigEnd abort_migration(BackupVmstate *vs, Stream *s, char **desc)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) r = cmd(vs, "migrate_cancel", NULL, &err);
    (void)r;   /* the outcome is what query-migrate says next */
    close_fd(&s->fd);
    gint64 deadline = g_get_monotonic_time() + (gint64)END_TIMEOUT_MS * 1000;
    while (vs->qmp != NULL && g_get_monotonic_time() < deadline) {
        g_clear_error(&err);
        MigEnd e = query_migration(vs, desc, &err);
        if (err != NULL) {
            return MIG_FAILED;
        }
        if (e != MIG_RUNNING) {
            return e;
        }
        g_usleep(20 * 1000);
    }
    return MIG_FAILED;
}

bool backup_vmstate_run(BackupVmstate *vs, VmaWriter *w, uint8_t dev_id,
                        BackupVmstateInstantFn instant, void *opaque, GError **errp)
{
    int sp[2] = {-1, -1};
    Stream s = {.fd = -1, .w = w, .dev_id = dev_id};
    GError *fail = NULL;        /* the backup's error, the first one wins */
    MigEnd end = MIG_RUNNING;
    bool eof = false, instant_done = false, need_cont = false;
    gint64 stop_us = 0;
    g_autofree char *desc = NULL;

    /* Remember and change the settings. */
    {
        g_autoptr(JsonNode) caps = cmd(vs, "query-migrate-capabilities", NULL, &fail);
        if (caps == NULL) {
            goto out;
        }
        JsonArray *a = JSON_NODE_HOLDS_ARRAY(caps) ? json_node_get_array(caps) : NULL;
        for (guint i = 0; a != NULL && i < json_array_get_length(a); i++) {
            JsonObject *c = json_array_get_object_element(a, i);
            const char *name = obj_str(c, "capability");
            JsonNode *stn = c ? json_object_get_member(c, "state") : NULL;
            bool on = stn && JSON_NODE_HOLDS_VALUE(stn) &&
                      json_node_get_value_type(stn) == G_TYPE_BOOLEAN &&
                      json_node_get_boolean(stn);
            if (name != NULL && strcmp(name, "events") == 0) {
                vs->had_events = on;
            } else if (name != NULL && strcmp(name, "background-snapshot") == 0) {
                vs->had_bgsnap = on;
            }
        }
        g_autoptr(JsonNode) params = cmd(vs, "query-migrate-parameters", NULL, &fail);
        JsonObject *p = params ? ret_object(params, "query-migrate-parameters", vs, &fail)
                               : NULL;
        if (p == NULL) {
            goto out;
        }
        vs->old_bandwidth = 0;
        (void)obj_int(p, "max-bandwidth", &vs->old_bandwidth);
        vs->settings_changed = true;
        if (!set_capabilities(vs, true, false, &fail) ||
            (vs->old_bandwidth > 0 && !set_bandwidth(vs, FAST_BANDWIDTH, &fail))) {
            goto out;
        }
    }

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        g_set_error(&fail, BACKUP_ERROR, BACKUP_ERROR_FAILED, "vm-monitor: socketpair: %s",
                    g_strerror(errno));
        goto out;
    }
    s.fd = sp[0];
    vs->fdname = g_strdup_printf("vmad-vmstate-%d", (int)getpid());
    {
        g_autoptr(JsonObject) a = json_object_new();
        json_object_set_string_member(a, "fdname", vs->fdname);
        g_autoptr(JsonNode) r = qmp_client_execute_timeout(vs->qmp, "getfd", a, &sp[1], 1,
                                                           COMMAND_TIMEOUT_MS, &fail);
        close_fd(&sp[1]);
        if (r == NULL) {
            g_prefix_error(&fail, "vm-monitor %s: getfd: ", vs->monitor);
            goto out;
        }
    }
    {
        g_autofree char *uri = g_strdup_printf("fd:%s", vs->fdname);
        g_autoptr(JsonObject) a = json_object_new();
        json_object_set_string_member(a, "uri", uri);
        g_autoptr(JsonNode) r = cmd(vs, "migrate", a, &fail);
        if (r == NULL) {
            /* QEMU keeps a descriptor it did not use: give it back */
            g_autoptr(JsonObject) ca = json_object_new();
            json_object_set_string_member(ca, "fdname", vs->fdname);
            g_autoptr(JsonNode) cr = qmp_client_execute_timeout(vs->qmp, "closefd", ca, NULL,
                                                                0, COMMAND_TIMEOUT_MS, NULL);
            (void)cr;   /* best effort */
            goto out;
        }
    }

    /* Stream until EOF and the final status. */
    gint64 eof_deadline = 0;
    while (end == MIG_RUNNING || !eof) {
        struct pollfd pfd[3] = {
            {.fd = vs->wake[0], .events = POLLIN},
            {.fd = qmp_client_get_fd(vs->qmp), .events = POLLIN},
            {.fd = eof ? -1 : s.fd, .events = POLLIN},
        };
        int timeout = eof ? 100 : 1000;
        int n = poll(pfd, 3, timeout);
        if (n < 0 && errno != EINTR) {
            g_set_error(&fail, BACKUP_ERROR, BACKUP_ERROR_FAILED, "vm-monitor: poll: %s",
                        g_strerror(errno));
            break;
        }
        if (g_atomic_int_get(&vs->cancelled)) {
            /* the job failed elsewhere (cancel, a disk, the writer): its error stands */
            g_set_error_literal(&fail, BACKUP_ERROR, BACKUP_ERROR_CANCELLED, "cancelled");
            break;
        }
        if (n > 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (!qmp_client_wait(vs->qmp, 0, &fail)) {
                g_prefix_error(&fail, "vm-monitor: ");
                break;
            }
        }
        MigEnd e = take_events(vs, &stop_us);
        if (end == MIG_RUNNING && e != MIG_RUNNING) {
            end = e;
        }
        if (n > 0 && !eof && (pfd[2].revents & (POLLIN | POLLHUP | POLLERR))) {
            int r = 1;
            /* drain what is there, bounded, so events are not starved */
            for (int i = 0; i < 64; i++) {
                r = stream_read(vs, &s, &fail);
                if (r <= 0) {
                    break;
                }
                struct pollfd one = {.fd = s.fd, .events = POLLIN};
                if (poll(&one, 1, 0) <= 0) {
                    break;
                }
            }
            if (r < 0) {
                break;
            }
            if (r == 0) {
                eof = true;
                eof_deadline = g_get_monotonic_time() + (gint64)END_TIMEOUT_MS * 1000;
            }
        }
        if (eof && end == MIG_RUNNING) {
            /* the stream ended; the event may still be on its way: ask */
            end = query_migration(vs, &desc, &fail);
            if (fail != NULL) {
                break;
            }
            if (end == MIG_RUNNING && g_get_monotonic_time() > eof_deadline) {
                g_set_error(&fail, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                            "vm-monitor %s: the migration stream ended but the migration "
                            "did not", vs->monitor);
                break;
            }
        }
        if (end == MIG_COMPLETED && !instant_done) {
            /* The VM is stopped (postmigrate): the disks' instant is this one. */
            instant_done = true;
            need_cont = true;
            if (!instant(opaque, &fail)) {
                break;
            }
            if (!resume_vm(vs, &fail)) {
                break;
            }
            need_cont = false;
            if (stop_us > 0) {
                g_mutex_lock(&vs->lock);
                vs->downtime_ms = (g_get_real_time() - stop_us) / 1000;
                g_mutex_unlock(&vs->lock);
            }
        }
        if (end == MIG_FAILED || end == MIG_CANCELLED) {
            break;
        }
    }

    if (fail == NULL && end == MIG_FAILED && desc == NULL) {
        (void)query_migration(vs, &desc, NULL);
    }
    if (fail == NULL && end == MIG_FAILED) {
        g_set_error(&fail, BACKUP_ERROR, BACKUP_ERROR_FAILED, "vm-monitor %s: migration failed: %s",
                    vs->monitor, desc ? desc : "unknown error");
    } else if (fail == NULL && end == MIG_CANCELLED) {
        g_set_error(&fail, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "vm-monitor %s: the migration was cancelled", vs->monitor);
    }
    if (fail != NULL && end == MIG_RUNNING && vs->qmp != NULL) {
        g_autofree char *d2 = NULL;
        end = abort_migration(vs, &s, &d2);
        if (end == MIG_COMPLETED && !instant_done) {
            need_cont = true; /* it completed meanwhile: the VM is stopped */
        }
    }
    if (fail == NULL && !stream_flush(&s, &fail)) {
        /* the writer failed: its error is the job's */
    }

out:
    if (need_cont && vs->qmp != NULL) {
        GError *err = NULL;
        if (!resume_vm(vs, &err) && fail == NULL) {
            fail = err;
        } else {
            g_clear_error(&err);
        }
    }
    if (vs->settings_changed && vs->qmp != NULL) {
        /* best effort: a vanished QEMU has nothing to restore */
        (void)set_capabilities(vs, vs->had_events, vs->had_bgsnap, NULL);
        if (vs->old_bandwidth > 0) {
            (void)set_bandwidth(vs, vs->old_bandwidth, NULL);
        }
        vs->settings_changed = false;
    }
    /* QEMU serves one client per QMP socket: let the next one in */
    g_clear_pointer(&vs->qmp, qmp_client_free);
    vma_cluster_free(s.buf);
    close_fd(&s.fd);
    close_fd(&sp[1]);
    if (fail != NULL) {
        g_propagate_error(errp, fail);
        return false;
    }
    return true;
}
