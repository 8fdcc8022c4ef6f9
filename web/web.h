/*
 * web.h — the pieces of vma-web, the backup console daemon (the files of web/, docs/vma-web.md).
 *
 *   main.c       command line, token file, listening socket, main loop
 *   api.c        the HTTP API (/api/v1/...): routing, authentication, JSON in and out,
 *                and the page's static files
 *   names.c      VM ids and vzdump archive names: the only names a request may carry
 *   archives.c   a VM's backup directory: archives, their sidecars, chain links
 *   vms.c        VM discovery in the run directory, disks from vmad's query-block
 *   tasks.c      long-running work (backup, verify, restore) in worker threads
 *   retention.c  Proxmox's prune selection (keep-last, keep-hourly ... keep-yearly)
 *
 * Threads: the HTTP server and every handler run in the main loop. A task runs in its
 * own thread; what the main loop reads of it is guarded by the task lock (tasks.c).
 * QMP calls block (util/qmp-client.c), so they run only in worker threads.
 */
#ifndef VMA_WEB_H
#define VMA_WEB_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#define WEB_ERROR (web_error_quark())
GQuark web_error_quark(void);

/* Error codes map one-to-one to HTTP statuses (api.c, web_error_status). */
typedef enum WebError {
    WEB_ERROR_INVALID,    /* 400: malformed request, bad name, bad argument */
    WEB_ERROR_NOT_FOUND,  /* 404: no such VM, archive or task */
    WEB_ERROR_CONFLICT,   /* 409: busy (a backup runs), or the archive is a base */
    WEB_ERROR_VMAD,       /* 502: vmad could not be reached or refused the command */
    WEB_ERROR_TIMEOUT,    /* 504: vmad accepted the connection but did not answer in time */
    WEB_ERROR_INTERNAL,   /* 500: the host failed us (I/O) */
} WebError;

typedef struct WebConfig {
    char *run_dir;      /* DIR/<id>/qmp.sock */
    char *backup_dir;   /* BACKUP-DIR/<id>/vzdump-qemu-<id>-...vma[.zst] */
    char *vma;          /* the vma program (next to vma-web, else from PATH) */
    char *token;        /* the bearer token */
    int qmp_timeout_ms; /* longest wait for a vmad's greeting or reply (--qmp-timeout) */
} WebConfig;

/* ---- names.c: everything a request may name --------------------------------------- */

/* A VM id is a Proxmox vmid: 1 to 9 decimal digits, no leading zero. */
bool web_vmid_valid(const char *id);
/* name is vzdump-qemu-<vmid>-YYYY_MM_DD-HH_MM_SS.vma or .vma.zst with a real local time;
 * *when (may be NULL) gets that time (seconds since the epoch), *zstd the suffix. */
bool web_archive_name_parse(const char *name, const char *vmid, gint64 *when, bool *zstd);
/* The name vzdump would give a backup of vmid started at when (local time). */
char *web_archive_name(const char *vmid, gint64 when, bool zstd);

/* ---- retention.c -------------------------------------------------------------------- */

typedef enum WebKeep {
    WEB_KEEP_LAST, WEB_KEEP_HOURLY, WEB_KEEP_DAILY, WEB_KEEP_WEEKLY, WEB_KEEP_MONTHLY,
    WEB_KEEP_YEARLY, WEB_KEEP_N
} WebKeep;
/* Option names as Proxmox spells them: "keep-last" ... "keep-yearly". */
extern const char *const web_keep_names[WEB_KEEP_N];

/* keep[i] is the count of option i; 0 = the option is not set. No option set = keep all. */
typedef struct WebPrunePolicy {
    int keep[WEB_KEEP_N];
} WebPrunePolicy;

typedef struct WebPruneItem {
    gint64 when;        /* backup time (in): seconds since the epoch */
    bool protect;       /* (in) kept whatever the policy says (e.g. the base of a kept one) */
    int mark;           /* (out) WebKeep that keeps it, WEB_KEEP_N = remove, -1 = kept as
                           protected, -2 = keep all (no option set) */
} WebPruneItem;

/* Mark items (any order) as Proxmox's prune does; times are bucketed in local time. */
void web_prune_select(WebPruneItem *items, size_t n, const WebPrunePolicy *p);
/* From {"keep-last": N, ...}: unknown members and counts outside 0..100000 are errors. */
bool web_prune_policy_from_json(JsonObject *o, WebPrunePolicy *p, GError **errp);
JsonObject *web_prune_policy_to_json(const WebPrunePolicy *p);

/* ---- archives.c ---------------------------------------------------------------------- */

/* The sidecar NAME.json beside an archive (notes live in NAME.notes, as Proxmox keeps
 * them). Strings owned. */
typedef struct WebSidecar {
    char *uuid;         /* archive uuid, NULL if not known yet */
    char *kind;         /* "full", "incremental", "differential" */
    char *base_uuid;    /* the chain entry's base, NULL for a full archive */
    char *verified;     /* NULL (never), "ok", "failed" */
    char *verify_error;
    gint64 verify_time;
} WebSidecar;
void web_sidecar_clear(WebSidecar *s);

char *web_vm_backup_dir(const WebConfig *cfg, const char *vmid);
/* Read the sidecar of the archive at path; if it is missing or knows no uuid, read the
 * archive's header (uuid, chain entry) and write the sidecar. */
bool web_sidecar_load(const char *path, WebSidecar *s, GError **errp);
bool web_sidecar_save(const char *path, const WebSidecar *s, GError **errp);
/* Record a verify result in the archive's sidecar. */
bool web_sidecar_set_verify(const char *path, bool ok, const char *error, GError **errp);
/* Fill uuid/kind/base from the archive's header (vma_reader_open). */
bool web_sidecar_from_archive(const char *path, WebSidecar *s, GError **errp);

/* Every archive of the VM, newest first: [{name, size, ctime, kind, base, verified, ...}] */
JsonArray *web_archives_list(const WebConfig *cfg, const char *vmid, GError **errp);
/* Remove the archive and its sidecars. Refused (CONFLICT) while another archive names it
 * as its base, unless force. */
bool web_archive_delete(const WebConfig *cfg, const char *vmid, const char *name,
                        GError **errp);
bool web_archive_set_notes(const WebConfig *cfg, const char *vmid, const char *name,
                           const char *notes, GError **errp);
/* The paths of the bases a delta archive needs, oldest (the full) first; empty for a
 * full archive. CONFLICT when a base is missing. */
GPtrArray *web_archive_chain(const WebConfig *cfg, const char *vmid, const char *name,
                             GError **errp);
/* The retention policy of the VM (BACKUP-DIR/<id>/retention.json; none = keep all). */
bool web_retention_load(const WebConfig *cfg, const char *vmid, WebPrunePolicy *p,
                        GError **errp);
bool web_retention_save(const WebConfig *cfg, const char *vmid, const WebPrunePolicy *p,
                        GError **errp);
/* Apply p to the VM's archives: [{name, ctime, action: keep|remove, reason}]; removes
 * what it marks unless dry_run. A kept archive's chain bases are kept too. */
JsonArray *web_prune(const WebConfig *cfg, const char *vmid, const WebPrunePolicy *p,
                     bool dry_run, GError **errp);

/* ---- vms.c --------------------------------------------------------------------------- */

char *web_vm_qmp_path(const WebConfig *cfg, const char *vmid);
/* Connect to the VM's vmad, waiting at most cfg->qmp_timeout_ms (worker thread). Errors:
 * WEB_ERROR_TIMEOUT when it did not greet in time, WEB_ERROR_VMAD otherwise. */
typedef struct QmpClient QmpClient;
QmpClient *web_vm_connect(const WebConfig *cfg, const char *vmid, GError **errp);
/* One command, waiting at most cfg->qmp_timeout_ms for the reply: the "return" value, or
 * NULL with errp "CMD: ..." (WEB_ERROR_TIMEOUT: no reply in time, the connection is
 * unusable then; WEB_ERROR_VMAD: an error reply or a broken connection). */
JsonNode *web_qmp(const WebConfig *cfg, QmpClient *c, const char *cmd, JsonObject *args,
                  GError **errp);
/* The VM ids of the run directory that have a qmp.sock, sorted numerically. */
GPtrArray *web_vm_ids(const WebConfig *cfg);
/* {id, online, disks: [{name, size, file}], error}: asks vmad (blocks: worker thread).
 * A vmad that did not answer in time also sets *timeout (may be NULL). */
JsonObject *web_vm_describe(const WebConfig *cfg, const char *vmid, bool *timeout);

/* ---- tasks.c ------------------------------------------------------------------------- */

typedef struct WebBackupRequest {
    bool incremental;
    bool zstd;
    gint64 speed;       /* bytes/s, 0 = no limit */
    bool prune;         /* apply the VM's retention policy after success */
    char *notes;
} WebBackupRequest;

void web_tasks_init(const WebConfig *cfg);
/* Start a task; returns its id (g_free) or NULL with errp (CONFLICT: a backup of that VM
 * is already running). Main loop. */
char *web_task_backup(const char *vmid, const WebBackupRequest *req, GError **errp);
char *web_task_verify(const char *vmid, const char *name, GError **errp);
char *web_task_restore(const char *vmid, const char *name, const char *target, GError **errp);
/* Live restore into the VM's own vmad (tasks.c, docs/web-api.md): new disks
 * DEVICE-restored over new images in target, exported over vmad's NBD server at once and
 * copied by block-stream (speed bytes/s, 0 = no limit). The VM's existing disks are
 * never touched. CONFLICT: compressed archive, target exists, a backup or live restore of
 * the VM runs. */
char *web_task_restore_live(const char *vmid, const char *name, const char *target,
                            gint64 speed, GError **errp);
/* NULL if no such task. */
JsonObject *web_task_describe(const char *id);
JsonArray *web_tasks_list(void);
bool web_task_cancel(const char *id, GError **errp);
/* Cancel every running task and wait up to timeout_ms for them to end (at exit). */
bool web_tasks_shutdown(int timeout_ms);
/* Whether a task of any kind runs on this archive, or a backup runs for this VM (name
 * NULL). */
bool web_task_busy(const char *vmid, const char *name);
/* Whether a backup or live restore of the VM runs (CONFLICT in errp naming it): a prune
 * (other than a dry run) waits for it. */
bool web_task_vm_busy(const char *vmid, GError **errp);

/* ---- api.c / static files ---------------------------------------------------------------- */

typedef struct WebStaticFile {
    const char *path;           /* "/index.html" */
    const unsigned char *data;
    size_t len;
} WebStaticFile;
extern const WebStaticFile web_static_files[];
extern const size_t web_static_count;

typedef struct _SoupServer SoupServer;
void web_api_register(SoupServer *server, const WebConfig *cfg);

#endif /* VMA_WEB_H */
