/*
 * backup.c — `vma backup --qmp SOCKET [options] OUTPUT`: run a live backup in vmad and
 * follow it to its end.
 *
 * The command is a QMP client (util/qmp-client.c) of a running vmad: it sends `backup`,
 * polls `query-backup` every --interval seconds, prints progress, and exits with the
 * backup's outcome: 0 when the status is "done", 1 with "vma: backup: <errmsg>" when it
 * is "error". A start error (a backup already running, an unknown device, an existing
 * output file) is vmad's one-line message and status 1. Losing the connection is an
 * error: the outcome is then unknown.
 *
 * OUTPUT is passed to vmad as backup-file, which opens it:
 *   PATH       a new file; a relative path is made absolute (vmad has its own working
 *              directory). Note that vmad opens it in its own view of the file system.
 *   exec:CMD   as is: vmad runs CMD with the archive on its standard input.
 *   -          our standard output: the descriptor goes to vmad with getfd and the
 *              backup-file is /dev/fdname/NAME, so vmad writes straight into whatever
 *              stdout is (`vma backup --qmp S - | zstd >x.vma.zst`), no copy through us.
 *              vmad makes a pipe non-blocking; the flag is restored at the end.
 * config and firewall files are also read by vmad and made absolute the same way, and so
 * is --vm-monitor (QEMU's QMP socket: the archive then holds the VM's RAM state too).
 *
 * Progress (stderr; none with -q) is what vzdump logs for a VMA backup:
 *   INFO: started backup task 'UUID'
 *   INFO:  12% (123.0 MiB of 1.0 GiB) in 3s, read: 41.0 MiB/s, write: 40.2 MiB/s
 *   INFO: backup is sparse: 12.32 GiB (49%) total zero data
 *   INFO: transferred 25.00 GiB in 42 seconds (609.6 MiB/s)
 * A progress line is printed when the whole percentage changed and at least 3 seconds
 * passed since the previous line, and once at the end (unless the last one said 100%);
 * read is the rate of bytes covered, write the rate of those that were not zero blocks,
 * both since the previous line. Sizes are in binary units, one decimal in progress lines
 * and two in the summary. When stderr is a terminal the progress line is instead
 * redrawn in place at every poll (rates since the previous poll) and ended with a
 * newline at the end.
 *
 * Interrupts: SIGINT, SIGTERM or SIGHUP send backup-cancel; the command then waits for
 * the backup to end and reports its outcome (normally "backup canceled", status 1). A
 * second signal ends the command at once; the backup is cancelled all the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/qmp-client.h"
#include "util/size.h"

#define FDNAME "vma-backup"
#define CONNECT_TIMEOUT_MS 30000
#define LINE_SECONDS 3 /* at least this long between two progress lines */
#define MAX_WORKERS 64

enum {
    OPT_FIREWALL = 256,
    OPT_SPEED,
    OPT_MAX_WORKERS,
    OPT_FLEECING,
    OPT_BITMAP,
    OPT_DIFFERENTIAL,
    OPT_INTERVAL,
    OPT_JSON,
    OPT_VM_MONITOR,
};

typedef enum OutputKind {
    OUTPUT_PATH,
    OUTPUT_EXEC,
    OUTPUT_STDOUT,
} OutputKind;

typedef struct BackupArgs {
    const char *qmp;
    const char *devlist;
    const char *config;
    const char *firewall;
    gint64 speed;        /* -1: not given */
    int max_workers;     /* 0: not given */
    bool fleecing;
    const char *bitmap;  /* --bitmap: an incremental (or, with differential, a
                          * differential) backup from this change bitmap */
    bool differential;
    const char *vm_monitor; /* --vm-monitor: QEMU's QMP socket; the VM's state too */
    double interval;
    bool json;
    bool quiet;
    const char *output;
} BackupArgs;

/* What query-backup said, checked. */
typedef struct Status {
    const char *status;  /* NULL: no backup */
    const char *errmsg;
    const char *uuid;
    uint64_t total;
    uint64_t transferred;
    uint64_t zero_bytes;
    const char *vmstate_method; /* NULL: a disks-only backup */
    uint64_t vmstate_bytes;
    uint64_t vmstate_downtime;  /* ms; 0 until known */
} Status;

typedef struct Progress {
    bool quiet;
    bool tty;
    bool drawn;              /* a terminal line is open (no newline yet) */
    gint64 start_us;         /* monotonic time the backup started */
    int last_percent;        /* of the last line printed; -1: none yet */
    gint64 line_us;          /* at the last line: time, bytes (rates of plain lines) */
    uint64_t line_transferred;
    uint64_t line_zero;
    gint64 poll_us;          /* at the previous poll (rates on a terminal) */
    uint64_t poll_transferred;
    uint64_t poll_zero;
} Progress;

static void backup_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma backup --qmp SOCKET [OPTIONS] OUTPUT\n"
            "\n"
            "Run a live backup of vmad's disks into one VMA archive and follow it to its\n"
            "end, printing progress as vzdump logs it. OUTPUT is a new file (opened by\n"
            "vmad), exec:COMMAND (vmad runs COMMAND with the archive on its stdin), or\n"
            "'-' for this command's standard output. Ctrl-C cancels the backup.\n"
            "\n"
            "  --qmp SOCKET         vmad's QMP monitor socket (required)\n"
            "  -d, --devlist LIST   the disks (node names, separated by ',' ';' or ':');\n"
            "                       default: every disk not opened read-only\n"
            "  -c, --config FILE    store FILE as qemu-server.conf\n"
            "      --firewall FILE  store FILE as qemu-server.fw\n"
            "      --speed SIZE     limit the background copy to SIZE bytes per second\n"
            "                       (512, 64K, 10MB, 1GiB: powers of 1024); 0: no limit\n"
            "      --max-workers N  copy threads in vmad (1-64)\n"
            "      --fleecing       spill copy-before-write data to a file when needed\n"
            "      --bitmap NAME    store only what changed since the last backup from the\n"
            "                       change bitmap NAME (present on every disk); its first\n"
            "                       backup is a full one\n"
            "      --differential   with --bitmap: relative to the bitmap's full backup\n"
            "                       (bitmap-mode never) instead of the previous one\n"
            "      --vm-monitor SOCKET  also store the VM's RAM and device state: SOCKET is\n"
            "                       the QMP socket of the QEMU running on these disks\n"
            "                       (vma qemu-args prints how to resume it)\n"
            "      --interval SECS  how often to ask vmad for progress (default 1)\n"
            "      --json           print the final status as a JSON object on stdout\n"
            "  -q, --quiet          print no progress\n"
            "  -h, --help           show this help\n"
            "\n"
            "Exit status: 0 the backup is done, 1 it failed or was cancelled, 2 usage error.\n");
}

/* ---- option values ------------------------------------------------------------------ */

static char *absolute_path(const char *path)
{
    if (g_path_is_absolute(path)) {
        return g_strdup(path);
    }
    g_autofree char *cwd = g_get_current_dir();
    return g_build_filename(cwd, path, NULL);
}

/* ---- rendering ---------------------------------------------------------------------- */

/* Binary units, as vzdump renders sizes: "512.0 B", "1.5 MiB". */
static void render_bytes(char *buf, size_t size, double value, int decimals)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    guint u = 0;

    while (value >= 1024.0 && u + 1 < G_N_ELEMENTS(units)) {
        value /= 1024.0;
        u++;
    }
    snprintf(buf, size, "%.*f %s", decimals, value, units[u]);
}

static void render_rate(char *buf, size_t size, gint64 bytes, double seconds)
{
    if (bytes <= 0) {
        snprintf(buf, size, "0 B/s");
        return;
    }
    char b[32];
    /* whole bytes per second, as vzdump computes it */
    render_bytes(b, sizeof(b), (double)(gint64)((double)bytes / MAX(seconds, 0.001)), 1);
    snprintf(buf, size, "%s/s", b);
}

/* "0s", "42s", "3m 40s", "1h 0m 5s"... (weeks, days, hours, minutes, seconds) */
static void render_duration(char *buf, size_t size, uint64_t secs)
{
    static const struct {
        const char *unit;
        uint64_t len;
    } steps[] = {{"w", 604800}, {"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}};
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < G_N_ELEMENTS(steps); i++) {
        uint64_t v = secs / steps[i].len;
        if (v > 0) {
            g_string_append_printf(s, "%s%" G_GUINT64_FORMAT "%s", s->len ? " " : "", v,
                                   steps[i].unit);
            secs -= v * steps[i].len;
        }
    }
    snprintf(buf, size, "%s", s->len ? s->str : "0s");
    g_string_free(s, true);
}

static int percent_of(uint64_t part, uint64_t total)
{
    if (total == 0) {
        return 100;
    }
    if (part <= UINT64_MAX / 100) {
        return (int)MIN(part * 100 / total, (uint64_t)G_MAXINT);
    }
    return (int)MIN((double)part / (double)total * 100.0, (double)G_MAXINT);
}

/* The text of a progress line after "INFO: "; rates over the bytes since (t0, x0, z0). */
static char *status_line(const Progress *p, const Status *st, gint64 now, gint64 t0,
                         uint64_t x0, uint64_t z0)
{
    char done[32], total[32], dur[64], rrate[48], wrate[48];
    double dt = (double)(now - t0) / G_USEC_PER_SEC;
    gint64 rbytes = (gint64)st->transferred - (gint64)x0;
    gint64 wbytes = rbytes - ((gint64)st->zero_bytes - (gint64)z0);

    render_bytes(done, sizeof(done), (double)st->transferred, 1);
    render_bytes(total, sizeof(total), (double)st->total, 1);
    render_duration(dur, sizeof(dur), (uint64_t)((now - p->start_us) / G_USEC_PER_SEC));
    render_rate(rrate, sizeof(rrate), rbytes, dt);
    render_rate(wrate, sizeof(wrate), wbytes, dt);
    return g_strdup_printf("%3d%% (%s of %s) in %s, read: %s, write: %s",
                           percent_of(st->transferred, st->total), done, total, dur, rrate,
                           wrate);
}

/* ---- progress ----------------------------------------------------------------------- */

static void progress_init(Progress *p, bool quiet)
{
    memset(p, 0, sizeof(*p));
    p->quiet = quiet;
    p->tty = !quiet && isatty(STDERR_FILENO);
    p->start_us = g_get_monotonic_time();
    p->last_percent = -1;
    p->line_us = p->poll_us = p->start_us;
}

/* End an open terminal line, so that the next output starts on a line of its own. */
static void progress_break(Progress *p)
{
    if (p->drawn) {
        fputc('\n', stderr);
        fflush(stderr);
        p->drawn = false;
    }
}

static void progress_info(Progress *p, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void progress_info(Progress *p, const char *fmt, ...)
{
    va_list ap;

    if (p->quiet) {
        return;
    }
    progress_break(p);
    fputs("INFO: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

static void progress_mark_line(Progress *p, const Status *st, gint64 now)
{
    p->last_percent = percent_of(st->transferred, st->total);
    p->line_us = now;
    p->line_transferred = st->transferred;
    p->line_zero = st->zero_bytes;
}

static void progress_mark_poll(Progress *p, const Status *st, gint64 now)
{
    p->poll_us = now;
    p->poll_transferred = st->transferred;
    p->poll_zero = st->zero_bytes;
}

/* The tty's status line, redrawn in place (the rate since the last poll); last: the
 * final one, ended with a newline. */
static void draw_tty(Progress *p, const Status *st, gint64 now, bool last)
{
    g_autofree char *line =
        status_line(p, st, now, p->poll_us, p->poll_transferred, p->poll_zero);

    fprintf(stderr, "\rINFO: %s\033[K%s", line, last ? "\n" : "");
    fflush(stderr);
    p->drawn = !last;
}

/* One INFO line (not a tty): the rate since the last line. */
static void print_line(Progress *p, const Status *st, gint64 now)
{
    g_autofree char *line =
        status_line(p, st, now, p->line_us, p->line_transferred, p->line_zero);

    progress_info(p, "%s", line);
}

/* A poll while the backup is active. */
static void progress_update(Progress *p, const Status *st)
{
    gint64 now = g_get_monotonic_time();

    if (p->quiet) {
        return;
    }
    if (p->tty) {
        draw_tty(p, st, now, false);
    } else if (percent_of(st->transferred, st->total) != p->last_percent &&
               now - p->line_us >= LINE_SECONDS * G_USEC_PER_SEC) {
        print_line(p, st, now);
        progress_mark_line(p, st, now);
    }
    progress_mark_poll(p, st, now);
}

/* The backup ended: the last progress line, and the summary if it succeeded. */
static void progress_end(Progress *p, const Status *st, bool done)
{
    gint64 now = g_get_monotonic_time();

    if (p->quiet) {
        return;
    }
    if (p->tty) {
        draw_tty(p, st, now, true);
    } else if (p->last_percent < 100) {
        print_line(p, st, now);
    }
    progress_mark_line(p, st, now);
    if (!done) {
        return;
    }

    char buf[32], rate[48];
    if (st->zero_bytes > 0) {
        render_bytes(buf, sizeof(buf), (double)st->zero_bytes, 2);
        progress_info(p, "backup is sparse: %s (%d%%) total zero data", buf,
                      st->total ? percent_of(st->zero_bytes, st->total) : 0);
    }
    if (st->transferred > 0) {
        uint64_t secs = (uint64_t)((now - p->start_us) / G_USEC_PER_SEC);
        render_bytes(buf, sizeof(buf), (double)st->transferred, 2);
        if (secs > 0) {
            render_rate(rate, sizeof(rate), (gint64)st->transferred, (double)secs);
            progress_info(p, "transferred %s in %" G_GUINT64_FORMAT " seconds (%s)", buf, secs,
                          rate);
        } else {
            progress_info(p, "transferred %s in <1 seconds", buf);
        }
    }
}

/* ---- QMP ---------------------------------------------------------------------------- */

static bool get_count(JsonObject *o, const char *name, uint64_t *out, GError **errp)
{
    JsonNode *n = json_object_get_member(o, name);

    *out = 0;
    if (n == NULL) {
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < 0) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                    "query-backup: '%s' is not a non-negative integer", name);
        return false;
    }
    *out = (uint64_t)json_node_get_int(n);
    return true;
}

static bool get_string(JsonObject *o, const char *name, const char **out, GError **errp)
{
    JsonNode *n = json_object_get_member(o, name);

    *out = NULL;
    if (n == NULL) {
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "query-backup: '%s' is not a string",
                    name);
        return false;
    }
    *out = json_node_get_string(n);
    return true;
}

/* query-backup; *obj keeps the strings st points to. */
static bool query_backup(QmpClient *c, JsonObject **obj, Status *st, GError **errp)
{
    g_autoptr(JsonNode) ret = qmp_client_execute(c, "query-backup", NULL, NULL, 0, errp);

    memset(st, 0, sizeof(*st));
    if (ret == NULL) {
        return false;
    }
    if (!JSON_NODE_HOLDS_OBJECT(ret)) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "query-backup: not an object");
        return false;
    }
    JsonObject *o = json_node_get_object(ret);
    if (!get_string(o, "status", &st->status, errp) ||
        !get_string(o, "errmsg", &st->errmsg, errp) ||
        !get_string(o, "uuid", &st->uuid, errp) || !get_count(o, "total", &st->total, errp) ||
        !get_count(o, "transferred", &st->transferred, errp) ||
        !get_count(o, "zero-bytes", &st->zero_bytes, errp) ||
        !get_string(o, "vmstate-method", &st->vmstate_method, errp) ||
        !get_count(o, "vmstate-bytes", &st->vmstate_bytes, errp) ||
        !get_count(o, "vmstate-downtime", &st->vmstate_downtime, errp)) {
        return false;
    }
    if (*obj != NULL) {
        json_object_unref(*obj);
    }
    *obj = json_object_ref(o);
    return true;
}

/* Wait up to the interval; an ending job or an interrupt cuts the wait short. */
static bool wait_interval(QmpClient *c, double interval, bool cancel_pending, GError **errp)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)(interval * G_USEC_PER_SEC);

    for (;;) {
        bool job_ended = false;
        JsonObject *ev;
        while ((ev = qmp_client_next_event(c)) != NULL) {
            const char *name = json_object_get_string_member(ev, "event");
            if (g_strcmp0(name, "BLOCK_JOB_COMPLETED") == 0 ||
                g_strcmp0(name, "BLOCK_JOB_CANCELLED") == 0) {
                job_ended = true;
            }
            json_object_unref(ev);
        }
        gint64 left = deadline - g_get_monotonic_time();
        if (job_ended || left <= 0 || (cancel_pending && cli_interrupted())) {
            return true;
        }
        if (!qmp_client_wait(c, (int)MIN((left + 999) / 1000, (gint64)G_MAXINT), errp)) {
            return false;
        }
    }
}

static int print_json(JsonObject *o)
{
    g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(GError) err = NULL;

    json_node_set_object(root, o);
    json_generator_set_root(gen, root);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
    if (!cli_stdout_flush(&err)) {
        return cli_fail("backup", err);
    }
    return CLI_EXIT_OK;
}

static JsonObject *backup_arguments(const BackupArgs *a, const char *backup_file)
{
    JsonObject *args = json_object_new();

    json_object_set_string_member(args, "backup-file", backup_file);
    if (a->devlist != NULL) {
        json_object_set_string_member(args, "devlist", a->devlist);
    }
    if (a->config != NULL) {
        g_autofree char *p = absolute_path(a->config);
        json_object_set_string_member(args, "config-file", p);
    }
    if (a->firewall != NULL) {
        g_autofree char *p = absolute_path(a->firewall);
        json_object_set_string_member(args, "firewall-file", p);
    }
    if (a->speed >= 0) {
        json_object_set_int_member(args, "speed", a->speed);
    }
    if (a->max_workers > 0) {
        json_object_set_int_member(args, "max-workers", a->max_workers);
    }
    if (a->fleecing) {
        json_object_set_boolean_member(args, "fleecing", TRUE);
    }
    if (a->vm_monitor != NULL) {
        g_autofree char *p = absolute_path(a->vm_monitor);
        json_object_set_string_member(args, "vm-monitor", p);
    }
    if (a->bitmap != NULL) {
        json_object_set_string_member(args, "bitmap", a->bitmap);
        json_object_set_string_member(args, "bitmap-mode",
                                      a->differential ? "never" : "on-success");
    }
    return args;
}

/* The backup was started: follow it to its end. */
static int follow_backup(QmpClient *c, const BackupArgs *a, const char *uuid,
                         OutputKind kind, const char *backup_file)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) obj = NULL;
    Progress p;
    Status st;
    bool cancel_sent = false;

    progress_init(&p, a->quiet);
    progress_info(&p, "started backup task '%s'", uuid);
    for (;;) {
        if (cli_interrupted() && !cancel_sent) {
            progress_info(&p, "interrupted: canceling the backup");
            g_autoptr(JsonNode) r = qmp_client_execute(c, "backup-cancel", NULL, NULL, 0, &err);
            if (r == NULL) {
                progress_break(&p);
                return cli_failf("backup", "cancel: %s", err->message);
            }
            cancel_sent = true;
        }
        if (!query_backup(c, &obj, &st, &err)) {
            progress_break(&p);
            return cli_fail("backup", err);
        }
        if (st.status == NULL) {
            progress_break(&p);
            return cli_failf("backup", "vmad reports no backup any more (restarted?)");
        }
        if (g_strcmp0(st.uuid, uuid) != 0) {
            progress_break(&p);
            return cli_failf("backup", "vmad reports another backup now (uuid %s)",
                             st.uuid ? st.uuid : "none");
        }
        if (strcmp(st.status, "active") != 0) {
            break;
        }
        progress_update(&p, &st);
        if (!wait_interval(c, a->interval, !cancel_sent, &err)) {
            progress_break(&p);
            return cli_failf("backup", "%s (the backup's outcome is unknown)", err->message);
        }
    }

    bool done = strcmp(st.status, "done") == 0;
    progress_end(&p, &st, done);
    if (done && st.vmstate_method != NULL) {
        progress_info(&p, "VM state: %" G_GUINT64_FORMAT " bytes (%s), guest paused for %"
                      G_GUINT64_FORMAT " ms", st.vmstate_bytes, st.vmstate_method,
                      st.vmstate_downtime);
    }
    if (a->json) {
        int rc = print_json(obj);
        if (rc != CLI_EXIT_OK) {
            return rc;
        }
    }
    if (strcmp(st.status, "error") == 0) {
        return cli_failf("backup", "%s", st.errmsg ? st.errmsg : "unknown error");
    }
    if (!done) {
        return cli_failf("backup", "unexpected backup status '%s'", st.status);
    }
    if (kind == OUTPUT_PATH && access(backup_file, F_OK) != 0 && errno == ENOENT) {
        /* e.g. vmad under systemd with PrivateTmp=yes has a /tmp of its own */
        fprintf(stderr,
                "vma: backup: warning: %s does not exist here although vmad wrote it "
                "(does vmad see another file system?)\n",
                backup_file);
    }
    return CLI_EXIT_OK;
}

static int start_backup(const BackupArgs *a, OutputKind kind, const char *backup_file)
{
    g_autoptr(GError) err = NULL;

    cli_install_interrupt_handlers();
    g_autoptr(QmpClient) c = qmp_client_connect(a->qmp, CONNECT_TIMEOUT_MS, &err);
    if (c == NULL) {
        if (g_error_matches(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERROR_CONNECT)) {
            return cli_failf("backup", "%s (is vmad running with --monitor %s?)",
                             err->message, a->qmp);
        }
        return cli_fail("backup", err);
    }
    if (kind == OUTPUT_STDOUT) {
        g_autoptr(JsonObject) args = json_object_new();
        int fd = STDOUT_FILENO;
        json_object_set_string_member(args, "fdname", FDNAME);
        g_autoptr(JsonNode) r = qmp_client_execute(c, "getfd", args, &fd, 1, &err);
        if (r == NULL) {
            return cli_failf("backup", "pass standard output to vmad: %s", err->message);
        }
    }
    if (cli_interrupted()) {
        return cli_failf("backup", "interrupted");
    }

    g_autoptr(JsonObject) args = backup_arguments(a, backup_file);
    g_autoptr(JsonNode) ret = qmp_client_execute(c, "backup", args, NULL, 0, &err);
    if (ret == NULL) {
        return cli_fail("backup", err);
    }
    JsonObject *ro = JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;
    const char *uuid = NULL;
    if (ro == NULL || !get_string(ro, "UUID", &uuid, &err) || uuid == NULL) {
        g_autoptr(JsonNode) r = qmp_client_execute(c, "backup-cancel", NULL, NULL, 0, NULL);
        return cli_failf("backup", "vmad's reply to backup has no UUID; backup cancelled");
    }

    return follow_backup(c, a, uuid, kind, backup_file);
}

static int run_backup(const BackupArgs *a)
{
    g_autofree char *backup_file = NULL;
    OutputKind kind;
    int stdout_flags = -1;

    if (strcmp(a->output, "-") == 0) {
        struct stat sb;
        kind = OUTPUT_STDOUT;
        if (fstat(STDOUT_FILENO, &sb) < 0) {
            return cli_failf("backup", "standard output: %s", g_strerror(errno));
        }
        if (isatty(STDOUT_FILENO)) {
            return cli_failf("backup", "refusing to write the archive to a terminal");
        }
        /* vmad makes a pipe non-blocking; the open file description is shared */
        stdout_flags = fcntl(STDOUT_FILENO, F_GETFL);
        backup_file = g_strdup("/dev/fdname/" FDNAME);
    } else if (g_str_has_prefix(a->output, "exec:")) {
        kind = OUTPUT_EXEC;
        backup_file = g_strdup(a->output);
    } else {
        kind = OUTPUT_PATH;
        backup_file = absolute_path(a->output);
    }

    int rc = start_backup(a, kind, backup_file);
    if (stdout_flags >= 0) {
        fcntl(STDOUT_FILENO, F_SETFL, stdout_flags);
    }
    return rc;
}

int cli_backup_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"qmp", required_argument, NULL, 'Q'},
        {"devlist", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"firewall", required_argument, NULL, OPT_FIREWALL},
        {"speed", required_argument, NULL, OPT_SPEED},
        {"max-workers", required_argument, NULL, OPT_MAX_WORKERS},
        {"fleecing", no_argument, NULL, OPT_FLEECING},
        {"bitmap", required_argument, NULL, OPT_BITMAP},
        {"differential", no_argument, NULL, OPT_DIFFERENTIAL},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"json", no_argument, NULL, OPT_JSON},
        {"vm-monitor", required_argument, NULL, OPT_VM_MONITOR},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    BackupArgs a = {.speed = -1, .interval = 1.0};
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hqc:d:", longopts, NULL)) != -1) {
        switch (c) {
        case 'Q':
            a.qmp = optarg;
            break;
        case 'd':
            a.devlist = optarg;
            break;
        case OPT_BITMAP:
            a.bitmap = optarg;
            break;
        case OPT_DIFFERENTIAL:
            a.differential = true;
            break;
        case 'c':
            a.config = optarg;
            break;
        case OPT_FIREWALL:
            a.firewall = optarg;
            break;
        case OPT_SPEED: {
            g_autoptr(GError) err = NULL;
            uint64_t v;
            /* at most G_MAXINT64: QMP's int */
            if (!size_parse("--speed", optarg, 0, G_MAXINT64, &v, &err)) {
                return cli_usage_error("backup", "%s", err->message);
            }
            a.speed = (gint64)v;
            break;
        }
        case OPT_MAX_WORKERS: {
            char *end = NULL;
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || n < 1 || n > MAX_WORKERS) {
                return cli_usage_error("backup", "--max-workers: '%s' is not a number from "
                                                 "1 to %d", optarg, MAX_WORKERS);
            }
            a.max_workers = (int)n;
            break;
        }
        case OPT_FLEECING:
            a.fleecing = true;
            break;
        case OPT_INTERVAL: {
            char *end = NULL;
            double v = g_ascii_strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(v >= 0.05 && v <= 3600)) {
                return cli_usage_error("backup", "--interval: '%s' is not a number of seconds "
                                                 "from 0.05 to 3600", optarg);
            }
            a.interval = v;
            break;
        }
        case OPT_JSON:
            a.json = true;
            break;
        case OPT_VM_MONITOR:
            a.vm_monitor = optarg;
            break;
        case 'q':
            a.quiet = true;
            break;
        case 'h':
            backup_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("backup", c, argv);
        }
    }
    if (argc - optind != 1) {
        return cli_usage_error("backup", argc - optind < 1 ? "missing OUTPUT operand"
                                                            : "too many operands");
    }
    a.output = argv[optind];
    if (a.qmp == NULL) {
        return cli_usage_error("backup", "--qmp SOCKET is required");
    }
    if (a.differential && a.bitmap == NULL) {
        return cli_usage_error("backup", "--differential needs --bitmap NAME");
    }
    if (a.output[0] == '\0' || strcmp(a.output, "exec:") == 0) {
        return cli_usage_error("backup", "empty OUTPUT");
    }
    if (a.json && strcmp(a.output, "-") == 0) {
        return cli_usage_error("backup", "--json cannot be used with '-' (standard output "
                                         "carries the archive)");
    }
    return run_backup(&a);
}
