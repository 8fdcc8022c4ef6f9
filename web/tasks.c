/*
 * tasks.c — the long-running work of vma-web: backup, verify and restore, one worker
 * thread each.
 *
 * A task is created in the main loop (the API returns its id at once) and runs in its
 * thread; its visible state (status, progress, bytes, rate, ETA, error, the archive name)
 * is written by the thread and read by the main loop under tasks_lock, and nothing else
 * is shared. status goes running -> ok | error, once. Cancel sets a flag: a backup's
 * thread answers it with QMP backup-cancel, a verify's or restore's by killing its vma.
 * At most one backup per VM runs (vmad runs one at a time anyway; refusing here gives
 * a clear 409). Finished tasks are kept for GET /api/v1/tasks, the oldest forgotten
 * beyond TASKS_KEPT.
 *
 * Backup. The archive is written by vmad (QMP backup) straight into the VM's backup
 * directory under the vzdump name: a plain archive as a new file (vmad writes a hidden
 * temporary name and renames it when complete), a zstd one through
 * `exec:zstd -q -c > .NAME.tmp-web`, renamed here once vmad reports done and removed if
 * the backup fails. So a listed archive is always complete. Progress is query-backup
 * polled every POLL_MS: transferred of total, the rate over the last RATE_WINDOW_US and
 * the ETA from it. An incremental backup uses the change bitmap WEB_BITMAP on every disk
 * (added on first use: that backup is then a full one that starts the chain) with QEMU's
 * argument names bitmap / bitmap-mode; a vmad without bitmaps refuses it and the task
 * says so.
 *
 * Verify and restore run `vma verify -v` / `vma extract -v` (with --base for each
 * archive of a delta's chain) and read its progress lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>

#include "vma.h"
#include "util/qmp-client.h"
#include "web/web.h"

#define TASKS_KEPT 200
#define POLL_MS 200
#define RATE_WINDOW_US (2 * G_USEC_PER_SEC)
#define WEB_BITMAP "vma-web"

typedef enum TaskType {
    TASK_BACKUP,
    TASK_VERIFY,
    TASK_RESTORE,
    TASK_LIVE_RESTORE,
} TaskType;

static const char *const task_type_names[] = { "backup", "verify", "restore", "live-restore" };

typedef struct Task {
    /* set at creation, read-only afterwards */
    char *id;
    TaskType type;
    char *vmid;
    char *target;              /* restore: the new directory */
    WebBackupRequest req;      /* backup */
    gint64 start;

    /* guarded by tasks_lock */
    char *archive;             /* the archive's name (a backup's once chosen) */
    bool running;
    char *error;               /* status error when set, ok otherwise */
    double progress;           /* 0..1 */
    gint64 bytes, total;
    double rate;               /* bytes/s, 0 unknown */
    gint64 eta;                /* seconds, -1 unknown */
    bool started;              /* backup: vmad accepted it (the disks are frozen) */
    bool cancel;
    bool pruning;              /* backup: done, applying retention (its archive is free) */
    GSubprocess *child;        /* verify/restore: the vma running */
    GPtrArray *live;           /* live restore: LiveDisk*, its thread's (names read-only) */
    gint64 end;
    char *uuid;
    JsonArray *pruned;         /* backup with prune: what prune did */
} Task;

static const WebConfig *config;
static GMutex tasks_lock;
static GHashTable *tasks;      /* id -> Task*; guarded by tasks_lock */
static GQueue finished;        /* Task*, oldest first; guarded by tasks_lock */
static guint64 next_id = 1;

void web_tasks_init(const WebConfig *cfg)
{
    config = cfg;
    tasks = g_hash_table_new(g_str_hash, g_str_equal);
}

static void task_free(Task *t)
{
    g_free(t->id);
    g_free(t->vmid);
    g_free(t->target);
    g_free(t->req.notes);
    g_free(t->archive);
    g_free(t->error);
    g_free(t->uuid);
    if (t->pruned != NULL) {
        json_array_unref(t->pruned);
    }
    if (t->live != NULL) {
        g_ptr_array_unref(t->live);
    }
    g_free(t);
}

/* End the task (its thread, once): status ok when error is NULL. */
static void task_finish(Task *t, const char *error)
{
    g_mutex_lock(&tasks_lock);
    t->running = false;
    t->error = g_strdup(error);
    if (error == NULL) {
        t->progress = 1.0;
        t->eta = 0;
    }
    t->end = g_get_real_time() / G_USEC_PER_SEC;
    g_queue_push_tail(&finished, t);
    while (g_queue_get_length(&finished) > TASKS_KEPT) {
        Task *old = g_queue_pop_head(&finished);
        g_hash_table_remove(tasks, old->id);
        task_free(old);
    }
    g_mutex_unlock(&tasks_lock);
}

static bool task_cancelled(Task *t)
{
    g_mutex_lock(&tasks_lock);
    bool c = t->cancel;
    g_mutex_unlock(&tasks_lock);
    return c;
}

static Task *task_new(TaskType type, const char *vmid, const char *archive)
{
    Task *t = g_new0(Task, 1);

    t->type = type;
    t->vmid = g_strdup(vmid);
    t->archive = g_strdup(archive);
    t->running = true;
    t->eta = -1;
    t->start = g_get_real_time() / G_USEC_PER_SEC;
    return t;
}

static void task_register_locked(Task *t)
{
    t->id = g_strdup_printf("%s-%" G_GUINT64_FORMAT, task_type_names[t->type], next_id++);
    g_hash_table_insert(tasks, t->id, t);
}

/* Run fn(t) in a new thread (t registered); returns the id. */
static char *task_run(Task *t, GThreadFunc fn)
{
    char *id = g_strdup(t->id);

    g_thread_unref(g_thread_new(id, fn, t));
    return id;
}

/* Register t and run fn(t) in a new thread; returns the id. */
static char *task_start(Task *t, GThreadFunc fn)
{
    g_mutex_lock(&tasks_lock);
    task_register_locked(t);
    g_mutex_unlock(&tasks_lock);
    return task_run(t, fn);
}

/* Tasks that hold their VM: one at a time per VM. */
static bool vm_exclusive(const Task *t)
{
    return t->type == TASK_BACKUP || t->type == TASK_LIVE_RESTORE;
}

static bool busy_locked(const char *vmid, const char *name)
{
    GHashTableIter it;
    gpointer v;

    g_hash_table_iter_init(&it, tasks);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        Task *t = v;
        if (!t->running || strcmp(t->vmid, vmid) != 0) {
            continue;
        }
        /* a backup holds the VM until its task ends, its retention run included (two
         * prunes of one directory at once, or a backup starting while the last one's
         * prune removes its base, is what this prevents); its own new archive is free
         * for verify or delete while it prunes */
        if (name == NULL ? vm_exclusive(t)
                         : !t->pruning && t->archive != NULL && strcmp(t->archive, name) == 0) {
            return true;
        }
    }
    return false;
}

/* The running task that holds the VM (a backup, a live restore), or NULL. */
static Task *vm_holder_locked(const char *vmid)
{
    GHashTableIter it;
    gpointer v;

    g_hash_table_iter_init(&it, tasks);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        Task *t = v;
        if (t->running && strcmp(t->vmid, vmid) == 0 && vm_exclusive(t)) {
            return t;
        }
    }
    return NULL;
}

/* Register t unless a task holds its VM already (CONFLICT naming that task). */
static bool task_register_exclusive(Task *t, GError **errp)
{
    g_mutex_lock(&tasks_lock);
    Task *other = vm_holder_locked(t->vmid);
    if (other != NULL) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT, "a %s of VM %s is running (task %s%s)",
                    task_type_names[other->type], t->vmid, other->id,
                    other->pruning ? ", applying the retention policy" : "");
        g_mutex_unlock(&tasks_lock);
        return false;
    }
    task_register_locked(t);
    g_mutex_unlock(&tasks_lock);
    return true;
}

bool web_task_vm_busy(const char *vmid, GError **errp)
{
    g_mutex_lock(&tasks_lock);
    Task *t = vm_holder_locked(vmid);
    if (t != NULL) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT,
                    "a %s of VM %s is running (task %s); prune when it has ended",
                    task_type_names[t->type], vmid, t->id);
    }
    g_mutex_unlock(&tasks_lock);
    return t != NULL;
}

bool web_task_busy(const char *vmid, const char *name)
{
    g_mutex_lock(&tasks_lock);
    bool b = busy_locked(vmid, name);
    g_mutex_unlock(&tasks_lock);
    return b;
}

/* ---- backup -------------------------------------------------------------------------- */

/* A task's progress: done of total bytes; the rate is smoothed over about
 * RATE_WINDOW_US from the caller's last sample (*sample_time, *sample_bytes). */
static void task_set_progress(Task *t, gint64 done, gint64 total, gint64 *sample_time,
                              gint64 *sample_bytes)
{
    gint64 now = g_get_monotonic_time();

    g_mutex_lock(&tasks_lock);
    t->bytes = done;
    t->total = total;
    t->progress = total > 0 ? MIN(1.0, (double)done / (double)total) : 0;
    if (now - *sample_time >= RATE_WINDOW_US / 4 && done >= *sample_bytes) {
        double rate = (double)(done - *sample_bytes) * G_USEC_PER_SEC /
                      (double)(now - *sample_time);
        t->rate = t->rate > 0 ? 0.75 * t->rate + 0.25 * rate : rate;
        *sample_time = now;
        *sample_bytes = done;
    }
    t->eta = t->rate > 0 ? (gint64)((double)(total - done) / t->rate) : -1;
    g_mutex_unlock(&tasks_lock);
}

static JsonNode *qmp(QmpClient *c, const char *cmd, JsonObject *args, GError **errp)
{
    return web_qmp(config, c, cmd, args, errp);
}

/* Add WEB_BITMAP to every writable disk that has none yet. */
static bool ensure_bitmaps(QmpClient *c, GError **errp)
{
    g_autoptr(JsonNode) blocks = qmp(c, "query-block", NULL, errp);

    if (blocks == NULL) {
        return false;
    }
    if (!JSON_NODE_HOLDS_ARRAY(blocks)) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_VMAD, "query-block: not a list");
        return false;
    }
    JsonArray *a = json_node_get_array(blocks);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *b = json_array_get_object_element(a, i);
        JsonObject *ins = b != NULL && json_object_has_member(b, "inserted")
                              ? json_object_get_object_member(b, "inserted")
                              : NULL;
        const char *node = b != NULL && json_object_has_member(b, "device")
                               ? json_object_get_string_member(b, "device")
                               : NULL;
        if (ins == NULL || node == NULL ||
            (json_object_has_member(ins, "ro") && json_object_get_boolean_member(ins, "ro"))) {
            continue;
        }
        bool have = false;
        JsonArray *bm = json_object_has_member(ins, "dirty-bitmaps")
                            ? json_object_get_array_member(ins, "dirty-bitmaps")
                            : NULL;
        for (guint j = 0; bm != NULL && j < json_array_get_length(bm); j++) {
            JsonObject *o = json_array_get_object_element(bm, j);
            if (o != NULL && json_object_has_member(o, "name") &&
                g_strcmp0(json_object_get_string_member(o, "name"), WEB_BITMAP) == 0) {
                have = true;
            }
        }
        if (have) {
            continue;
        }
        g_autoptr(JsonObject) args = json_object_new();
        json_object_set_string_member(args, "node", node);
        json_object_set_string_member(args, "name", WEB_BITMAP);
        json_object_set_boolean_member(args, "persistent", true);
        g_autoptr(GError) err = NULL;
        g_autoptr(JsonNode) r = qmp(c, "block-dirty-bitmap-add", args, &err);
        if (r == NULL) {
            /* vmad without --state-dir: a bitmap that lives as long as vmad */
            json_object_remove_member(args, "persistent");
            r = qmp(c, "block-dirty-bitmap-add", args, errp);
            if (r == NULL) {
                g_prefix_error(errp, "incremental backup needs change bitmaps: ");
                return false;
            }
        }
    }
    return true;
}

static void set_backup_error(GError **errp, GError *err)
{
    if (err != NULL) {
        g_propagate_error(errp, g_error_copy(err));
    }
}

static const char *str_of(JsonObject *o, const char *k)
{
    JsonNode *n = json_object_get_member(o, k);

    return n != NULL && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
               ? json_node_get_string(n)
               : NULL;
}

static gint64 int_of(JsonObject *o, const char *k)
{
    JsonNode *n = json_object_get_member(o, k);

    return n != NULL && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64
               ? json_node_get_int(n)
               : 0;
}

/* Follow query-backup until the backup of uuid ends; false with its error. */
static bool follow_backup(Task *t, QmpClient *c, const char *uuid, GError **errp)
{
    gint64 sample_time = g_get_monotonic_time(), sample_bytes = 0;
    bool cancel_sent = false;

    for (;;) {
        g_usleep(POLL_MS * 1000);
        if (!cancel_sent && task_cancelled(t)) {
            g_autoptr(JsonNode) r = qmp(c, "backup-cancel", NULL, errp);
            if (r == NULL) {
                return false;
            }
            cancel_sent = true;
        }
        g_autoptr(JsonNode) r = qmp(c, "query-backup", NULL, errp);
        if (r == NULL) {
            return false;
        }
        if (!JSON_NODE_HOLDS_OBJECT(r)) {
            g_set_error(errp, WEB_ERROR, WEB_ERROR_VMAD, "query-backup: not an object");
            return false;
        }
        JsonObject *st = json_node_get_object(r);
        const char *status = str_of(st, "status");
        if (g_strcmp0(str_of(st, "uuid"), uuid) != 0) {
            g_set_error(errp, WEB_ERROR, WEB_ERROR_VMAD,
                        "query-backup: another backup replaced ours (%s)", uuid);
            return false;
        }
        gint64 done = int_of(st, "transferred"), total = int_of(st, "total");
        task_set_progress(t, done, total, &sample_time, &sample_bytes);

        if (g_strcmp0(status, "done") == 0) {
            return true;
        }
        if (g_strcmp0(status, "error") == 0) {
            const char *msg = str_of(st, "errmsg");
            g_set_error(errp, WEB_ERROR, WEB_ERROR_VMAD, "%s", msg != NULL ? msg : "backup failed");
            return false;
        }
    }
}

/* Pick the vzdump name: the current second, or the next free one. */
static char *choose_name(const char *dir, const char *vmid, bool zstd)
{
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;

    for (int i = 0;; i++) {
        char *name = web_archive_name(vmid, now + i, zstd);
        g_autofree char *path = g_build_filename(dir, name, NULL);
        g_autofree char *other = web_archive_name(vmid, now + i, !zstd);
        g_autofree char *opath = g_build_filename(dir, other, NULL);
        if ((!g_file_test(path, G_FILE_TEST_EXISTS) && !g_file_test(opath, G_FILE_TEST_EXISTS)) ||
            i >= 60) {
            if (i > 0) {
                g_usleep((guint64)i * G_USEC_PER_SEC);
            }
            return name;
        }
        g_free(name);
    }
}

static bool run_backup(Task *t, GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(config, t->vmid);
    g_autoptr(GError) err = NULL;

    if (g_mkdir_with_parents(dir, 0750) != 0) {
        int e = errno;
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "mkdir %s: %s", dir, g_strerror(e));
        return false;
    }
    g_autofree char *name = choose_name(dir, t->vmid, t->req.zstd);
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autofree char *tmpname = g_strconcat(".", name, ".tmp-web", NULL);
    g_autofree char *tmp = g_build_filename(dir, tmpname, NULL);
    g_mutex_lock(&tasks_lock);
    t->archive = g_strdup(name);
    g_mutex_unlock(&tasks_lock);

    g_autoptr(QmpClient) c = web_vm_connect(config, t->vmid, &err);
    if (c == NULL) {
        g_propagate_prefixed_error(errp, g_steal_pointer(&err), "VM %s: ", t->vmid);
        return false;
    }
    if (t->req.incremental && !ensure_bitmaps(c, &err)) {
        set_backup_error(errp, err);
        return false;
    }
    g_autoptr(JsonObject) args = json_object_new();
    if (t->req.zstd) {
        g_autofree char *q = g_shell_quote(tmp);
        g_autofree char *target = g_strdup_printf("exec:umask 077; zstd -q -c > %s", q);
        unlink(tmp);
        json_object_set_string_member(args, "backup-file", target);
    } else {
        json_object_set_string_member(args, "backup-file", path);
    }
    g_autofree char *conf = g_build_filename(config->run_dir, t->vmid, "qemu-server.conf", NULL);
    if (g_file_test(conf, G_FILE_TEST_IS_REGULAR)) {
        json_object_set_string_member(args, "config-file", conf);
    }
    if (t->req.speed > 0) {
        json_object_set_int_member(args, "speed", t->req.speed);
    }
    if (t->req.incremental) {
        json_object_set_string_member(args, "bitmap", WEB_BITMAP);
        json_object_set_string_member(args, "bitmap-mode", "on-success");
    }
    g_autoptr(JsonNode) r = qmp(c, "backup", args, &err);
    if (r == NULL) {
        set_backup_error(errp, err);
        return false;
    }
    const char *uuid = JSON_NODE_HOLDS_OBJECT(r) ? str_of(json_node_get_object(r), "UUID") : NULL;
    if (uuid == NULL) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_VMAD, "backup: no UUID in the reply");
        return false;
    }
    g_mutex_lock(&tasks_lock);
    t->started = true;
    t->uuid = g_strdup(uuid);
    g_mutex_unlock(&tasks_lock);

    if (!follow_backup(t, c, uuid, &err)) {
        if (t->req.zstd) {
            unlink(tmp);
        }
        set_backup_error(errp, err);
        return false;
    }
    if (t->req.zstd) {
        /* link + unlink: never replace an archive that appeared under the name */
        if (link(tmp, path) != 0) {
            int e = errno;
            unlink(tmp);
            g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "rename %s to %s: %s", tmp, name,
                        g_strerror(e));
            return false;
        }
        unlink(tmp);
    }
    WebSidecar s = { 0 };
    if (web_sidecar_from_archive(path, &s, &err)) {
        web_sidecar_save(path, &s, NULL);
    }
    web_sidecar_clear(&s);
    g_clear_error(&err);
    if (t->req.notes != NULL && *t->req.notes != '\0') {
        web_archive_set_notes(config, t->vmid, name, t->req.notes, NULL);
    }
    if (t->req.prune) {
        WebPrunePolicy p;
        g_mutex_lock(&tasks_lock);
        t->pruning = true;
        g_mutex_unlock(&tasks_lock);
        if (!web_retention_load(config, t->vmid, &p, errp)) {
            g_prefix_error(errp, "backup done, prune failed: ");
            return false;
        }
        JsonArray *a = web_prune(config, t->vmid, &p, false, errp);
        if (a == NULL) {
            g_prefix_error(errp, "backup done, prune failed: ");
            return false;
        }
        g_mutex_lock(&tasks_lock);
        t->pruned = a;
        g_mutex_unlock(&tasks_lock);
    }
    return true;
}

static gpointer backup_thread(gpointer p)
{
    Task *t = p;
    g_autoptr(GError) err = NULL;

    run_backup(t, &err);
    task_finish(t, err != NULL ? err->message : NULL);
    return NULL;
}

char *web_task_backup(const char *vmid, const WebBackupRequest *req, GError **errp)
{
    Task *t = task_new(TASK_BACKUP, vmid, NULL);
    t->req = *req;
    t->req.notes = g_strdup(req->notes);
    /* the check and the registration under one lock: of two requests at once, one wins */
    if (!task_register_exclusive(t, errp)) {
        task_free(t);
        return NULL;
    }
    return task_run(t, backup_thread);
}

/* ---- verify and restore: vma as a child -------------------------------------------- */

/* "progress N% (read ...)" -> N */
static bool parse_progress(const char *line, int *pct)
{
    return sscanf(line, "progress %d%%", pct) == 1 && *pct >= 0 && *pct <= 100;
}

static bool run_vma(Task *t, const char *const *argv, GError **errp)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GSubprocess) p = g_subprocess_newv(argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                                           G_SUBPROCESS_FLAGS_STDERR_MERGE |
                                                           G_SUBPROCESS_FLAGS_STDIN_INHERIT,
                                                 &err);
    if (p == NULL) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "run %s: %s", argv[0], err->message);
        return false;
    }
    g_mutex_lock(&tasks_lock);
    t->child = g_object_ref(p);
    bool cancel = t->cancel;
    g_mutex_unlock(&tasks_lock);
    if (cancel) {
        g_subprocess_force_exit(p);
    }
    g_autoptr(GDataInputStream) in = g_data_input_stream_new(g_subprocess_get_stdout_pipe(p));
    g_autofree char *last = NULL;
    gint64 t0 = g_get_monotonic_time();
    for (;;) {
        gsize len;
        g_autofree char *line = g_data_input_stream_read_line_utf8(in, &len, NULL, NULL);
        if (line == NULL) {
            break;
        }
        int pct;
        if (parse_progress(line, &pct)) {
            double secs = (double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
            g_mutex_lock(&tasks_lock);
            t->progress = pct / 100.0;
            t->eta = pct > 0 && secs > 0 ? (gint64)(secs * (100 - pct) / pct) : -1;
            g_mutex_unlock(&tasks_lock);
        } else if (*line != '\0' && strncmp(line, "total bytes", 11) != 0 &&
                   strncmp(line, "space reduction", 15) != 0) {
            g_free(last);
            last = g_steal_pointer(&line);
        }
    }
    bool waited = g_subprocess_wait(p, NULL, &err);
    g_mutex_lock(&tasks_lock);
    g_clear_object(&t->child);
    cancel = t->cancel;
    g_mutex_unlock(&tasks_lock);
    if (cancel) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "cancelled");
        return false;
    }
    if (!waited || !g_subprocess_get_if_exited(p) || g_subprocess_get_exit_status(p) != 0) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "%s",
                    last != NULL ? last : "vma failed without a message");
        return false;
    }
    return true;
}

/* argv of `vma SUB -v [--base B]... ARCHIVE [DIR]` (g_strfreev) */
static char **vma_argv(Task *t, const char *sub, GError **errp)
{
    g_autoptr(GPtrArray) chain = web_archive_chain(config, t->vmid, t->archive, errp);

    if (chain == NULL) {
        return NULL;
    }
    g_autofree char *dir = web_vm_backup_dir(config, t->vmid);
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, g_strdup(config->vma));
    g_ptr_array_add(argv, g_strdup(sub));
    g_ptr_array_add(argv, g_strdup("-v"));
    for (guint i = 0; i < chain->len; i++) {
        g_ptr_array_add(argv, g_strdup("--base"));
        g_ptr_array_add(argv, g_strdup(chain->pdata[i]));
    }
    g_ptr_array_add(argv, g_build_filename(dir, t->archive, NULL));
    if (t->target != NULL) {
        g_ptr_array_add(argv, g_strdup(t->target));
    }
    g_ptr_array_add(argv, NULL);
    return (char **)g_ptr_array_free(argv, false);
}

static gpointer verify_thread(gpointer p)
{
    Task *t = p;
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) argv = vma_argv(t, "verify", &err);
    g_autofree char *dir = web_vm_backup_dir(config, t->vmid);
    g_autofree char *path = g_build_filename(dir, t->archive, NULL);

    if (argv != NULL) {
        bool ok = run_vma(t, (const char *const *)argv, &err);
        if (ok || !task_cancelled(t)) {
            web_sidecar_set_verify(path, ok, ok ? NULL : err->message, NULL);
        }
    }
    task_finish(t, err != NULL ? err->message : NULL);
    return NULL;
}

static gpointer restore_thread(gpointer p)
{
    Task *t = p;
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) argv = vma_argv(t, "extract", &err);

    if (argv != NULL) {
        run_vma(t, (const char *const *)argv, &err);
    }
    task_finish(t, err != NULL ? err->message : NULL);
    return NULL;
}

static bool archive_exists(const char *vmid, const char *name, GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(config, vmid);
    g_autofree char *path = g_build_filename(dir, name, NULL);

    if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_NOT_FOUND, "no archive %s of VM %s", name, vmid);
        return false;
    }
    return true;
}

char *web_task_verify(const char *vmid, const char *name, GError **errp)
{
    if (!archive_exists(vmid, name, errp)) {
        return NULL;
    }
    return task_start(task_new(TASK_VERIFY, vmid, name), verify_thread);
}

/* The archive exists; target is absolute, new, in an existing directory. */
static bool check_restore_target(const char *vmid, const char *name, const char *target,
                                 GError **errp)
{
    if (!archive_exists(vmid, name, errp)) {
        return false;
    }
    if (!g_path_is_absolute(target)) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INVALID, "target: '%s' is not an absolute path",
                    target);
        return false;
    }
    if (g_file_test(target, G_FILE_TEST_EXISTS)) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT, "target: %s already exists", target);
        return false;
    }
    g_autofree char *parent = g_path_get_dirname(target);
    if (!g_file_test(parent, G_FILE_TEST_IS_DIR)) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_INVALID, "target: %s is not a directory", parent);
        return false;
    }
    return true;
}

char *web_task_restore(const char *vmid, const char *name, const char *target, GError **errp)
{
    if (!check_restore_target(vmid, name, target, errp)) {
        return NULL;
    }
    Task *t = task_new(TASK_RESTORE, vmid, name);
    t->target = g_strdup(target);
    return task_start(t, restore_thread);
}

/* ---- live restore: the archive served at once through vmad, copied by block-stream --- */

/* One disk of a live restore: the nodes it adds to the VM's vmad, as far as they exist. */
typedef struct LiveDisk {
    char *device;       /* the archive's device, "drive-scsi0" */
    uint64_t size;
    char *file;         /* TARGET/disk-DEVICE.raw (created by us) */
    char *node;         /* DEVICE-restored: the alloc-track node, its export and its job */
    char *tgt_node;     /* DEVICE-restored-target: the file node of file */
    char *arch_node;    /* DEVICE-restored-archive: the vma node over the archive */
    bool file_made, arch_added, tgt_added, node_added, exported, streaming, done;
    gint64 cur, len;
} LiveDisk;

static void live_disk_free(gpointer p)
{
    LiveDisk *d = p;

    g_free(d->device);
    g_free(d->file);
    g_free(d->node);
    g_free(d->tgt_node);
    g_free(d->arch_node);
    g_free(d);
}

static void qmp_quiet(QmpClient *c, const char *cmd, const char *key, const char *val)
{
    g_autoptr(JsonObject) args = json_object_new();
    g_autoptr(GError) err = NULL;

    json_object_set_string_member(args, key, val);
    g_autoptr(JsonNode) r = qmp(c, cmd, args, &err);
}

/* Undo what the set-up added (only before any block-stream ran: nothing but our own
 * set-up has touched the targets then). */
static void live_rollback(QmpClient *c, GPtrArray *disks, const char *target)
{
    for (guint i = disks->len; i-- > 0;) {
        LiveDisk *d = disks->pdata[i];
        if (c != NULL) {
            if (d->exported) {
                qmp_quiet(c, "block-export-del", "id", d->node);
            }
            if (d->node_added) {
                qmp_quiet(c, "blockdev-del", "node-name", d->node);
            }
            if (d->tgt_added) {
                qmp_quiet(c, "blockdev-del", "node-name", d->tgt_node);
            }
            if (d->arch_added) {
                qmp_quiet(c, "blockdev-del", "node-name", d->arch_node);
            }
        }
        if (d->file_made) {
            unlink(d->file);
        }
    }
    rmdir(target);
}

static bool add_node(QmpClient *c, JsonObject *args, bool *added, GError **errp)
{
    g_autoptr(JsonNode) r = qmp(c, "blockdev-add", args, errp);

    *added = r != NULL;
    return r != NULL;
}

/* Nodes, files and exports of every disk; false with the first error (caller rolls back). */
static bool live_setup(Task *t, QmpClient *c, GPtrArray *disks, GPtrArray *chain,
                       const char *archive, GError **errp)
{
    g_autoptr(JsonNode) blocks = qmp(c, "query-block", NULL, errp);
    if (blocks == NULL) {
        return false;
    }
    JsonArray *ba = JSON_NODE_HOLDS_ARRAY(blocks) ? json_node_get_array(blocks) : NULL;
    for (guint i = 0; i < disks->len; i++) {
        LiveDisk *d = disks->pdata[i];
        for (guint j = 0; ba != NULL && j < json_array_get_length(ba); j++) {
            JsonObject *b = json_array_get_object_element(ba, j);
            const char *dev = b != NULL ? str_of(b, "device") : NULL;
            if (g_strcmp0(dev, d->node) == 0 || g_strcmp0(dev, d->tgt_node) == 0 ||
                g_strcmp0(dev, d->arch_node) == 0) {
                g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT,
                            "VM %s has a disk %s already (an earlier live restore?)", t->vmid, dev);
                return false;
            }
        }
    }
    for (guint i = 0; i < disks->len; i++) {
        LiveDisk *d = disks->pdata[i];
        int fd = open(d->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            int e = errno;
            g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "create %s: %s", d->file, g_strerror(e));
            return false;
        }
        d->file_made = true;
        int r = ftruncate(fd, (off_t)d->size);
        int e = errno;
        close(fd);
        if (r != 0) {
            g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "size %s: %s", d->file, g_strerror(e));
            return false;
        }
        g_autoptr(JsonObject) va = json_object_new();
        json_object_set_string_member(va, "driver", "vma");
        json_object_set_string_member(va, "node-name", d->arch_node);
        json_object_set_string_member(va, "filename", archive);
        json_object_set_string_member(va, "device", d->device);
        if (chain->len > 0) {
            JsonArray *base = json_array_new();
            for (guint j = 0; j < chain->len; j++) {
                json_array_add_string_element(base, chain->pdata[j]);
            }
            json_object_set_array_member(va, "base", base);
        }
        g_autoptr(JsonObject) fa = json_object_new();
        json_object_set_string_member(fa, "driver", "file");
        json_object_set_string_member(fa, "node-name", d->tgt_node);
        json_object_set_string_member(fa, "filename", d->file);
        g_autoptr(JsonObject) aa = json_object_new();
        json_object_set_string_member(aa, "driver", "alloc-track");
        json_object_set_string_member(aa, "node-name", d->node);
        json_object_set_string_member(aa, "file", d->tgt_node);
        json_object_set_string_member(aa, "backing", d->arch_node);
        g_autoptr(JsonObject) ea = json_object_new();
        json_object_set_string_member(ea, "type", "nbd");
        json_object_set_string_member(ea, "id", d->node);
        json_object_set_string_member(ea, "node-name", d->node);
        json_object_set_boolean_member(ea, "writable", true);
        if (!add_node(c, va, &d->arch_added, errp) || !add_node(c, fa, &d->tgt_added, errp) ||
            !add_node(c, aa, &d->node_added, errp)) {
            return false;
        }
        g_autoptr(JsonNode) r2 = qmp(c, "block-export-add", ea, errp);
        if (r2 == NULL) {
            g_prefix_error(errp, "export %s (does VM %s's vmad run an NBD server?): ", d->node,
                           t->vmid);
            return false;
        }
        d->exported = true;
    }
    return true;
}

/* Take the stream events that came in; false with the error of a failed or cancelled job. */
static bool live_events(QmpClient *c, GPtrArray *disks, GError **errp)
{
    JsonObject *ev;
    bool ok = true;

    while ((ev = qmp_client_next_event(c)) != NULL) {
        const char *name = str_of(ev, "event");
        JsonNode *dn = json_object_get_member(ev, "data");
        JsonObject *data = dn != NULL && JSON_NODE_HOLDS_OBJECT(dn) ? json_node_get_object(dn) : NULL;
        const char *dev = data != NULL ? str_of(data, "device") : NULL;
        for (guint i = 0; dev != NULL && i < disks->len; i++) {
            LiveDisk *d = disks->pdata[i];
            if (strcmp(d->node, dev) != 0 || !d->streaming) {
                continue;
            }
            if (g_strcmp0(name, "BLOCK_JOB_COMPLETED") == 0) {
                const char *e = str_of(data, "error");
                if (e != NULL && ok) {
                    g_set_error(errp, WEB_ERROR, WEB_ERROR_VMAD, "%s: %s", d->node, e);
                    ok = false;
                }
                d->streaming = false;
                d->done = e == NULL;
                d->cur = d->len = int_of(data, "len");
            } else if (g_strcmp0(name, "BLOCK_JOB_CANCELLED") == 0) {
                if (ok) {
                    g_set_error(errp, WEB_ERROR, WEB_ERROR_INTERNAL, "%s: cancelled", d->node);
                    ok = false;
                }
                d->streaming = false;
            }
        }
        json_object_unref(ev);
    }
    return ok;
}

static bool live_restore(Task *t, GPtrArray *disks, GError **errp)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = web_vm_backup_dir(config, t->vmid);
    g_autofree char *archive = g_build_filename(dir, t->archive, NULL);
    g_autoptr(GPtrArray) chain = web_archive_chain(config, t->vmid, t->archive, errp);

    if (chain == NULL) {
        rmdir(t->target);
        return false;
    }
    g_autoptr(QmpClient) c = web_vm_connect(config, t->vmid, &err);
    if (c == NULL) {
        rmdir(t->target);
        g_propagate_prefixed_error(errp, g_steal_pointer(&err), "VM %s: ", t->vmid);
        return false;
    }
    if (!live_setup(t, c, disks, chain, archive, &err) || task_cancelled(t)) {
        live_rollback(c, disks, t->target);
        if (err == NULL) {
            g_set_error(&err, WEB_ERROR, WEB_ERROR_INTERNAL, "cancelled");
        }
        g_propagate_prefixed_error(errp, g_steal_pointer(&err),
                                   "live restore not started (nothing left behind): ");
        return false;
    }
    /* from here on the disks are served: a guest may use them, so nothing is undone */
    for (guint i = 0; i < disks->len; i++) {
        LiveDisk *d = disks->pdata[i];
        g_autoptr(JsonObject) args = json_object_new();
        json_object_set_string_member(args, "job-id", d->node);
        json_object_set_string_member(args, "device", d->node);
        if (t->req.speed > 0) {
            json_object_set_int_member(args, "speed", t->req.speed);
        }
        g_autoptr(JsonNode) r = qmp(c, "block-stream", args, errp);
        if (r == NULL) {
            g_prefix_error(errp, "the disks are served, but ");
            return false;
        }
        d->streaming = true;
        d->len = (gint64)d->size;
    }
    g_mutex_lock(&tasks_lock);
    t->started = true;
    g_mutex_unlock(&tasks_lock);
    gint64 sample_time = g_get_monotonic_time(), sample_bytes = 0;
    bool cancel_sent = false;
    for (;;) {
        if (!cancel_sent && task_cancelled(t)) {
            for (guint i = 0; i < disks->len; i++) {
                LiveDisk *d = disks->pdata[i];
                if (d->streaming) {
                    qmp_quiet(c, "job-cancel", "id", d->node);
                }
            }
            cancel_sent = true;
        }
        g_autoptr(JsonNode) jobs = qmp(c, "query-jobs", NULL, errp);
        if (jobs == NULL) {
            return false;
        }
        JsonArray *ja = JSON_NODE_HOLDS_ARRAY(jobs) ? json_node_get_array(jobs) : NULL;
        for (guint j = 0; ja != NULL && j < json_array_get_length(ja); j++) {
            JsonObject *jo = json_array_get_object_element(ja, j);
            for (guint i = 0; jo != NULL && i < disks->len; i++) {
                LiveDisk *d = disks->pdata[i];
                if (d->streaming && g_strcmp0(str_of(jo, "id"), d->node) == 0) {
                    d->cur = int_of(jo, "current-progress");
                    d->len = MAX(int_of(jo, "total-progress"), d->cur);
                }
            }
        }
        if (!live_events(c, disks, errp)) {
            g_prefix_error(errp, "the disks stay served from the archive (a block-stream resumes): ");
            return false;
        }
        gint64 done = 0, total = 0;
        bool all = true;
        for (guint i = 0; i < disks->len; i++) {
            LiveDisk *d = disks->pdata[i];
            done += d->cur;
            total += d->len;
            all &= d->done;
        }
        task_set_progress(t, done, total, &sample_time, &sample_bytes);
        if (all) {
            break;
        }
        /* wait for the next event (a job's end) or the next poll */
        if (!qmp_client_wait(c, POLL_MS, &err)) {
            g_propagate_prefixed_error(errp, g_steal_pointer(&err), "VM %s: ", t->vmid);
            return false;
        }
    }
    /* every disk is on its target: the archive nodes are unused now */
    for (guint i = 0; i < disks->len; i++) {
        LiveDisk *d = disks->pdata[i];
        g_autoptr(JsonObject) args = json_object_new();
        json_object_set_string_member(args, "node-name", d->arch_node);
        g_autoptr(JsonNode) r = qmp(c, "blockdev-del", args, errp);
        if (r == NULL) {
            g_prefix_error(errp, "restored, but ");
            return false;
        }
    }
    return true;
}

static gpointer live_restore_thread(gpointer p)
{
    Task *t = p;
    g_autoptr(GError) err = NULL;

    live_restore(t, t->live, &err);
    task_finish(t, err != NULL ? err->message : NULL);
    return NULL;
}

char *web_task_restore_live(const char *vmid, const char *name, const char *target, gint64 speed,
                            GError **errp)
{
    g_autofree char *dir = web_vm_backup_dir(config, vmid);
    g_autofree char *path = g_build_filename(dir, name, NULL);

    if (!check_restore_target(vmid, name, target, errp)) {
        return NULL;
    }
    g_autoptr(VmaReader) r = vma_reader_open(path, errp);
    if (r == NULL) {
        return NULL;
    }
    if (vma_reader_get_compression(r) != VMA_COMPRESSION_NONE) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT,
                    "%s: a live restore needs an uncompressed archive (this one is %s); "
                    "restore it into a directory", name,
                    vma_compression_name(vma_reader_get_compression(r)));
        return NULL;
    }
    g_autoptr(GPtrArray) disks = g_ptr_array_new_with_free_func(live_disk_free);
    for (guint id = 1; id < 255; id++) {
        const VmaDeviceInfo *di = vma_reader_get_device(r, id);
        if (di == NULL || di->is_vmstate) {
            continue;
        }
        LiveDisk *d = g_new0(LiveDisk, 1);
        d->device = g_strdup(di->name);
        d->size = di->size;
        g_autofree char *base = g_strdup_printf("disk-%s.raw", di->name);
        d->file = g_build_filename(target, base, NULL);
        d->node = g_strdup_printf("%s-restored", di->name);
        d->tgt_node = g_strdup_printf("%s-restored-target", di->name);
        d->arch_node = g_strdup_printf("%s-restored-archive", di->name);
        g_ptr_array_add(disks, d);
    }
    if (disks->len == 0) {
        g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT, "%s: no disk in the archive", name);
        return NULL;
    }
    if (mkdir(target, 0750) != 0) {
        int e = errno;
        g_set_error(errp, WEB_ERROR, e == EEXIST ? WEB_ERROR_CONFLICT : WEB_ERROR_INTERNAL,
                    "target: mkdir %s: %s", target, g_strerror(e));
        return NULL;
    }
    Task *t = task_new(TASK_LIVE_RESTORE, vmid, name);
    t->target = g_strdup(target);
    t->req.speed = speed;
    t->live = g_steal_pointer(&disks);
    if (!task_register_exclusive(t, errp)) {
        rmdir(target);
        task_free(t);
        return NULL;
    }
    return task_run(t, live_restore_thread);
}

/* ---- queries -------------------------------------------------------------------------- */

static JsonObject *describe_locked(Task *t)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "id", t->id);
    json_object_set_string_member(o, "type", task_type_names[t->type]);
    json_object_set_string_member(o, "vm", t->vmid);
    if (t->archive != NULL) {
        json_object_set_string_member(o, "archive", t->archive);
    } else {
        json_object_set_null_member(o, "archive");
    }
    json_object_set_string_member(o, "status", t->running ? "running" : t->error ? "error" : "ok");
    json_object_set_double_member(o, "progress", t->progress);
    if (t->error != NULL) {
        json_object_set_string_member(o, "error", t->error);
    } else {
        json_object_set_null_member(o, "error");
    }
    json_object_set_int_member(o, "start-time", t->start);
    if (!t->running) {
        json_object_set_int_member(o, "end-time", t->end);
    }
    json_object_set_boolean_member(o, "cancel-requested", t->cancel);
    if (t->type == TASK_BACKUP) {
        json_object_set_string_member(o, "mode", t->req.incremental ? "incremental" : "full");
        json_object_set_string_member(o, "compress", t->req.zstd ? "zstd" : "none");
        json_object_set_boolean_member(o, "started", t->started);
        json_object_set_int_member(o, "bytes", t->bytes);
        json_object_set_int_member(o, "total", t->total);
        json_object_set_double_member(o, "rate", t->rate);
        if (t->uuid != NULL) {
            json_object_set_string_member(o, "uuid", t->uuid);
        }
        if (t->pruned != NULL) {
            json_object_set_array_member(o, "pruned", json_array_ref(t->pruned));
        }
    }
    if (t->running && t->eta >= 0) {
        json_object_set_int_member(o, "eta", t->eta);
    } else {
        json_object_set_null_member(o, "eta");
    }
    if (t->target != NULL) {
        json_object_set_string_member(o, "target", t->target);
    }
    if (t->type == TASK_RESTORE || t->type == TASK_LIVE_RESTORE) {
        json_object_set_string_member(o, "mode", t->type == TASK_RESTORE ? "directory" : "live");
    }
    if (t->type == TASK_LIVE_RESTORE) {
        json_object_set_boolean_member(o, "started", t->started);
        json_object_set_int_member(o, "bytes", t->bytes);
        json_object_set_int_member(o, "total", t->total);
        json_object_set_double_member(o, "rate", t->rate);
        JsonArray *a = json_array_new();
        for (guint i = 0; i < t->live->len; i++) {
            LiveDisk *d = t->live->pdata[i];
            JsonObject *dj = json_object_new();
            json_object_set_string_member(dj, "device", d->device);
            json_object_set_string_member(dj, "node", d->node);
            json_object_set_string_member(dj, "export", d->node);
            json_object_set_string_member(dj, "file", d->file);
            json_object_set_int_member(dj, "size", (gint64)d->size);
            json_array_add_object_element(a, dj);
        }
        json_object_set_array_member(o, "disks", a);
    }
    return o;
}

JsonObject *web_task_describe(const char *id)
{
    g_mutex_lock(&tasks_lock);
    Task *t = g_hash_table_lookup(tasks, id);
    JsonObject *o = t != NULL ? describe_locked(t) : NULL;
    g_mutex_unlock(&tasks_lock);
    return o;
}

static gint by_start(gconstpointer a, gconstpointer b)
{
    const Task *x = a, *y = b;

    return x->start != y->start ? (x->start < y->start ? -1 : 1) : strcmp(x->id, y->id);
}

JsonArray *web_tasks_list(void)
{
    JsonArray *a = json_array_new();

    g_mutex_lock(&tasks_lock);
    GList *all = g_list_sort(g_hash_table_get_values(tasks), by_start);
    for (GList *l = all; l != NULL; l = l->next) {
        json_array_add_object_element(a, describe_locked(l->data));
    }
    g_list_free(all);
    g_mutex_unlock(&tasks_lock);
    return a;
}

bool web_task_cancel(const char *id, GError **errp)
{
    g_mutex_lock(&tasks_lock);
    Task *t = g_hash_table_lookup(tasks, id);
    if (t == NULL) {
        g_mutex_unlock(&tasks_lock);
        g_set_error(errp, WEB_ERROR, WEB_ERROR_NOT_FOUND, "no task %s", id);
        return false;
    }
    if (!t->running) {
        g_mutex_unlock(&tasks_lock);
        g_set_error(errp, WEB_ERROR, WEB_ERROR_CONFLICT, "task %s has ended", id);
        return false;
    }
    t->cancel = true;
    if (t->child != NULL) {
        g_subprocess_force_exit(t->child);
    }
    g_mutex_unlock(&tasks_lock);
    return true;
}

bool web_tasks_shutdown(int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        guint running = 0;
        GHashTableIter it;
        gpointer v;
        g_mutex_lock(&tasks_lock);
        g_hash_table_iter_init(&it, tasks);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
            Task *t = v;
            if (t->running) {
                running++;
                t->cancel = true;
                if (t->child != NULL) {
                    g_subprocess_force_exit(t->child);
                }
            }
        }
        g_mutex_unlock(&tasks_lock);
        if (running == 0) {
            return true;
        }
        if (g_get_monotonic_time() >= deadline) {
            return false;
        }
        g_usleep(50 * 1000);
    }
}
