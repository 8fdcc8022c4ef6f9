/*
 * vmad.c — the daemon that owns a VM's disks: command line, main loop, signals,
 * pid file, and the order of shutdown.
 *
 * The command line follows qemu-storage-daemon: options are processed in the order
 * given, and every option that creates something is the QMP command of the same
 * meaning, run through qmp_execute() with its key=value text turned into arguments by
 * the schema — --blockdev is blockdev-add, --nbd-server is nbd-server-start, --export is
 * block-export-add. So everything the command line can do is also possible over QMP,
 * with the same checks and the same error messages.
 *
 * Startup fails with one line "vmad: OPTION: reason" on stderr and exit status 1,
 * after undoing what earlier options created. Once every option is done (sockets
 * listening, pid file written) vmad tells systemd READY=1 if $NOTIFY_SOCKET is set. Shutdown (quit, SIGTERM, SIGINT, SIGHUP):
 * stop accepting monitor clients, stop the NBD server (in-flight requests finish),
 * flush and close the disks, remove the sockets and the pid file, send SHUTDOWN to the
 * monitors, exit 0.
 *
 * Everything runs on the main thread; the NBD server has its own threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

#include "vma.h"
#include "monitor.h"
#include "monitor/qapi-schema.h"
#include "monitor/qmp-commands.h"
#include "block/dirty-bitmap.h"
#include "util/fd.h"
#include "util/io.h"
#include "util/size.h"
#include "nbd-server.h"

/* Options in the order the user gave them. Later issues add e.g. --fleecing-dir and
 * --backup-buffer-size: one enum value, one getopt entry, one case in process_option()
 * (or a field of DaemonConfig for settings that are not commands). */
/* vmad's own failures (command line, pid file): only their message is used, printed as
 * "vmad: MESSAGE"; QMP_ERROR stays at the monitor boundary. */
#define VMAD_ERROR vmad_error_quark()
typedef enum VmadErrorCode {
    VMAD_ERROR_FAILED,
} VmadErrorCode;
static G_DEFINE_QUARK(vmad-error-quark, vmad_error)

typedef enum OptKind {
    OPT_BLOCKDEV = 256,
    OPT_NBD_SERVER,
    OPT_EXPORT,
    OPT_CHARDEV,
    OPT_MONITOR,
    OPT_PIDFILE,
    OPT_FLEECING_DIR,
    OPT_BACKUP_BUFFER_SIZE,
    OPT_STATE_DIR,
    OPT_NBD_BUFFER_BUDGET,
} OptKind;

static const struct option long_options[] = {
    {"blockdev", required_argument, NULL, OPT_BLOCKDEV},
    {"nbd-server", required_argument, NULL, OPT_NBD_SERVER},
    {"export", required_argument, NULL, OPT_EXPORT},
    {"chardev", required_argument, NULL, OPT_CHARDEV},
    {"monitor", required_argument, NULL, OPT_MONITOR},
    {"pidfile", required_argument, NULL, OPT_PIDFILE},
    {"fleecing-dir", required_argument, NULL, OPT_FLEECING_DIR},
    {"backup-buffer-size", required_argument, NULL, OPT_BACKUP_BUFFER_SIZE},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"nbd-buffer-budget", required_argument, NULL, OPT_NBD_BUFFER_BUDGET},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

typedef struct Chardev {
    char *id;
    char *path;
} Chardev;

typedef struct Daemon {
    GPtrArray *chardevs;       /* Chardev * defined by --chardev */
    GPtrArray *monitors;       /* QmpMonitor * */
    char *pidfile;
    int pidfile_fd;
    GMainLoop *loop;
    const char *shutdown_reason;
} Daemon;

static void usage(FILE *out)
{
    fprintf(out,
"Usage: vmad [OPTION]...\n"
"Serve a virtual machine's disks over NBD and take live backups of them, controlled\n"
"over QMP. Options are processed in the order given.\n"
"\n"
"  --blockdev driver=file|host_device,node-name=NAME,filename=PATH\n"
"             [,read-only=on|off][,cache.direct=on|off][,locking=auto|on|off]\n"
"                         open a disk (QMP blockdev-add)\n"
"  --blockdev driver=rbd,node-name=NAME,pool=POOL,image=IMAGE[,namespace=NS]\n"
"             [,conf=CEPHCONF][,user=ID][,snapshot=SNAP][,read-only=on|off]\n"
"                         open a Ceph RBD image through librbd\n"
"  --blockdev driver=nbd,node-name=NAME,server.type=unix,server.path=SOCK\n"
"             [,export=EXPORT][,read-only=on|off]   (or server.type=inet,\n"
"             server.host=HOST,server.port=PORT)\n"
"                         open an export of another NBD server through libnbd\n"
"  --nbd-server addr.type=unix,addr.path=PATH[,max-connections=N]\n"
"  --nbd-server addr.type=inet,addr.host=HOST,addr.port=PORT[,max-connections=N]\n"
"                         start the NBD server (QMP nbd-server-start)\n"
"  --export [type=]nbd,id=ID,node-name=NAME[,name=EXPORT][,writable=on|off]\n"
"                         export a disk over NBD (QMP block-export-add)\n"
"  --monitor [path=]PATH[,mode=0600]\n"
"                         accept QMP clients on a UNIX socket created with MODE\n"
"  --chardev socket,id=ID,path=PATH,server=on[,wait=off]\n"
"  --monitor chardev=ID   the same in qemu-storage-daemon's form\n"
"  --pidfile FILE         write the process id to FILE (locked; removed on exit)\n"
"  --backup-buffer-size SIZE\n"
"                         memory for data a backup saves before guest writes\n"
"                         (copy-before-write; default 256M)\n"
"  --fleecing-dir DIR     spill that data to a temporary file in DIR when the\n"
"                         memory is full (else the backup fails, not the guest)\n"
"  --state-dir DIR        where persistent dirty bitmaps and live-restore records\n"
"                         are kept (default\n"
"                         /var/lib/vmad for root, else ~/.local/state/vmad)\n"
"  --nbd-buffer-budget SIZE\n"
"                         memory all NBD connections share for request and reply\n"
"                         data (default 256M; each also has 2M of its own)\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"A comma inside a value is written as two commas. vmad stops cleanly on the QMP\n"
"command quit and on SIGTERM, SIGINT or SIGHUP. See vmad(8).\n");
}

static void chardev_free(gpointer p)
{
    Chardev *c = p;

    g_free(c->id);
    g_free(c->path);
    g_free(c);
}

/* ---- option processing ---------------------------------------------------------------- */

static bool run_command(const char *command, const char *text, const char *implied_key,
                        GError **errp)
{
    const QapiSchema *schema = qapi_schema_builtin();
    g_autoptr(JsonObject) args = qapi_schema_args_from_keyval(schema, command, text,
                                                              implied_key, errp);
    if (args == NULL) {
        return false;
    }
    g_autoptr(JsonNode) ret = qmp_execute(NULL, command, args, errp);
    return ret != NULL;
}

static bool parse_bool(const char *key, const char *value, bool *out, GError **errp)
{
    if (g_strcmp0(value, "on") == 0 || g_strcmp0(value, "yes") == 0 ||
        g_strcmp0(value, "true") == 0) {
        *out = true;
    } else if (g_strcmp0(value, "off") == 0 || g_strcmp0(value, "no") == 0 ||
               g_strcmp0(value, "false") == 0) {
        *out = false;
    } else {
        g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "Parameter '%s' expects 'on' or 'off'",
                    key);
        return false;
    }
    return true;
}

/* Every member of obj must be a string listed in allowed. */
static bool check_keyval_members(JsonObject *obj, const char *const *allowed, GError **errp)
{
    g_autoptr(GList) keys = json_object_get_members(obj);

    for (GList *l = keys; l != NULL; l = l->next) {
        if (!g_strv_contains(allowed, l->data)) {
            g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "Parameter '%s' is unexpected",
                        (const char *)l->data);
            return false;
        }
        if (json_node_get_value_type(json_object_get_member(obj, l->data)) != G_TYPE_STRING) {
            g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED,
                        "Parameter '%s' expects a single value", (const char *)l->data);
            return false;
        }
    }
    return true;
}

static bool add_chardev(Daemon *d, const char *text, GError **errp)
{
    static const char *const allowed[] = {"backend", "id", "path", "server", "wait", NULL};
    g_autoptr(JsonObject) kv = keyval_parse(text, "backend", errp);
    bool server = false;
    bool wait = false;

    if (kv == NULL || !check_keyval_members(kv, allowed, errp)) {
        return false;
    }
    const char *backend = json_object_get_string_member_with_default(kv, "backend", NULL);
    const char *id = json_object_get_string_member_with_default(kv, "id", NULL);
    const char *path = json_object_get_string_member_with_default(kv, "path", NULL);
    if (g_strcmp0(backend, "socket") != 0) {
        g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED,
                    "chardev backend '%s' is not supported: use socket", backend ? backend : "");
        return false;
    }
    if (id == NULL || *id == '\0' || path == NULL) {
        g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "Parameter '%s' is missing",
                    id == NULL || *id == '\0' ? "id" : "path");
        return false;
    }
    if (json_object_has_member(kv, "server") &&
        !parse_bool("server", json_object_get_string_member(kv, "server"), &server, errp)) {
        return false;
    }
    if (json_object_has_member(kv, "wait") &&
        !parse_bool("wait", json_object_get_string_member(kv, "wait"), &wait, errp)) {
        return false;
    }
    if (!server || wait) {
        g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED,
                    "chardev %s: only a listening socket is supported (server=on,wait=off)",
                    id);
        return false;
    }
    for (guint i = 0; i < d->chardevs->len; i++) {
        if (strcmp(((Chardev *)g_ptr_array_index(d->chardevs, i))->id, id) == 0) {
            g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "chardev '%s' already exists", id);
            return false;
        }
    }
    Chardev *c = g_new0(Chardev, 1);
    c->id = g_strdup(id);
    c->path = g_strdup(path);
    g_ptr_array_add(d->chardevs, c);
    return true;
}

static const Chardev *find_chardev(Daemon *d, const char *id)
{
    for (guint i = 0; i < d->chardevs->len; i++) {
        const Chardev *c = g_ptr_array_index(d->chardevs, i);
        if (strcmp(c->id, id) == 0) {
            return c;
        }
    }
    return NULL;
}

/*
 * --monitor [path=]PATH[,mode=0600] or qemu-storage-daemon's --monitor [chardev=]ID
 * [,mode=control][,id=X][,pretty=off]: mode is a socket permission in octal, or
 * "control" (QMP, the only monitor vmad has). An implied value that names a --chardev
 * given earlier is that chardev, otherwise a path.
 */
static bool add_monitor(Daemon *d, const char *text, GError **errp)
{
    static const char *const allowed[] = {"path", "chardev", "mode", "id", "pretty", NULL};
    g_autoptr(JsonObject) kv = keyval_parse(text, "path", errp);
    unsigned mode = 0600;
    bool pretty = false;

    if (kv == NULL || !check_keyval_members(kv, allowed, errp)) {
        return false;
    }
    const char *path = json_object_get_string_member_with_default(kv, "path", NULL);
    const char *chardev = json_object_get_string_member_with_default(kv, "chardev", NULL);
    const char *mode_str = json_object_get_string_member_with_default(kv, "mode", NULL);
    if (path != NULL && chardev == NULL && find_chardev(d, path) != NULL) {
        chardev = path;
        path = NULL;
    }
    if ((path == NULL) == (chardev == NULL)) {
        g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED,
                    "give either a socket path or chardev=ID");
        return false;
    }
    if (chardev != NULL) {
        const Chardev *c = find_chardev(d, chardev);
        if (c == NULL) {
            g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "chardev '%s' not found", chardev);
            return false;
        }
        path = c->path;
    }
    if (mode_str != NULL && strcmp(mode_str, "control") != 0) {
        guint64 m;
        if (strcmp(mode_str, "readline") == 0) {
            g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED,
                        "mode=readline: vmad has no human monitor, only QMP (mode=control)");
            return false;
        }
        if (!g_ascii_string_to_unsigned(mode_str, 8, 0, 0777, &m, NULL)) {
            g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED,
                        "Parameter 'mode' expects an octal permission such as 0600, or "
                        "'control'");
            return false;
        }
        mode = (unsigned)m;
    }
    if (json_object_has_member(kv, "pretty") &&
        (!parse_bool("pretty", json_object_get_string_member(kv, "pretty"), &pretty, errp) ||
         pretty)) {
        if (pretty) {
            g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "pretty=on is not supported");
        }
        return false;
    }
    QmpMonitor *mon = qmp_monitor_new_unix(path, mode, errp);
    if (mon == NULL) {
        return false;
    }
    g_ptr_array_add(d->monitors, mon);
    return true;
}

static bool write_pidfile(Daemon *d, GError **errp)
{
    g_autofd int fd = open(d->pidfile, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "%s: %s", d->pidfile,
                    g_strerror(errno));
        return false;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "%s: %s", d->pidfile,
                    errno == EWOULDBLOCK ? "in use by another running vmad"
                                         : g_strerror(errno));
        return false;
    }
    g_autofree char *text = g_strdup_printf("%ld\n", (long)getpid());
    int r = ftruncate(fd, 0) < 0 ? -errno : full_write(fd, text, strlen(text));
    if (r < 0) {
        unlink(d->pidfile);
        g_set_error(errp, VMAD_ERROR, VMAD_ERROR_FAILED, "%s: write: %s", d->pidfile,
                    g_strerror(-r));
        return false;
    }
    d->pidfile_fd = steal_fd(&fd);   /* stays open: the lock marks the file as ours */
    return true;
}

static void remove_pidfile(Daemon *d)
{
    if (d->pidfile_fd >= 0) {
        unlink(d->pidfile);
        close_fd(&d->pidfile_fd);
    }
}

/* systemd readiness (Type=notify): one datagram to $NOTIFY_SOCKET, if set. */
static void notify_systemd(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};

    if (path == NULL || (path[0] != '/' && path[0] != '@') ||
        strlen(path) >= sizeof(sun.sun_path)) {
        return;
    }
    memcpy(sun.sun_path, path, strlen(path));
    if (path[0] == '@') {
        sun.sun_path[0] = '\0';   /* abstract namespace */
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return;
    }
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0) {
        g_warning("notify systemd (%s): %s", state, g_strerror(errno));
    }
    close_fd(&fd);
}

/* ---- shutdown --------------------------------------------------------------------------- */

static void request_shutdown(const char *reason, void *opaque)
{
    Daemon *d = opaque;

    if (d->shutdown_reason == NULL) {
        d->shutdown_reason = reason;
    }
    g_main_loop_quit(d->loop);
}

static gboolean on_signal(gpointer opaque)
{
    request_shutdown("host-signal", opaque);
    return G_SOURCE_CONTINUE;
}

/* Undo everything, in the order the file comment gives. emit: send SHUTDOWN. */
static void teardown(Daemon *d, bool emit)
{
    if (emit) {
        notify_systemd("STOPPING=1");
    }
    for (guint i = 0; i < d->monitors->len; i++) {
        qmp_monitor_stop_listening(g_ptr_array_index(d->monitors, i));
    }
    qmp_stream_shutdown();
    qmp_backup_shutdown();
    qmp_block_shutdown();
    remove_pidfile(d);
    if (emit) {
        JsonObject *data = json_object_new();
        json_object_set_boolean_member(data, "guest", FALSE);
        json_object_set_string_member(data, "reason",
                                      d->shutdown_reason ? d->shutdown_reason : "host-signal");
        qmp_event_emit("SHUTDOWN", data);
    }
    qmp_monitors_flush(1000);
    g_ptr_array_set_size(d->monitors, 0);   /* frees them: sessions closed */
}

static void daemon_free(Daemon *d)
{
    g_ptr_array_unref(d->monitors);
    g_ptr_array_unref(d->chardevs);
    g_main_loop_unref(d->loop);
    g_free(d->pidfile);
}

/* ---- main ----------------------------------------------------------------------------- */

typedef struct Opt {
    int kind;
    const char *arg;
} Opt;

int main(int argc, char **argv)
{
    Daemon d = {.pidfile_fd = -1};
    g_autoptr(GArray) opts = g_array_new(FALSE, FALSE, sizeof(Opt));
    int c;

    signal(SIGPIPE, SIG_IGN);
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+hV", long_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            g_free(d.pidfile);
            return 0;
        case 'V':
            printf("vmad %s\n", VMABACKUP_VERSION);
            g_free(d.pidfile);
            return 0;
        case OPT_PIDFILE:
            g_free(d.pidfile);
            d.pidfile = g_strdup(optarg);
            break;
        case OPT_STATE_DIR:
            /* before any --blockdev, whatever the order: disks load their bitmaps */
            dirty_state_set_dir(optarg);
            break;
        case OPT_NBD_BUFFER_BUDGET: {
            /* applied at once, so that it holds whatever the order of --nbd-server */
            g_autoptr(GError) err = NULL;
            uint64_t bytes = 0;
            if (!size_parse(NULL, optarg, NBD_MIN_BUFFER_BUDGET, SIZE_MAX / 2, &bytes, &err) ||
                !nbd_server_set_buffer_budget(bytes, &err)) {
                fprintf(stderr, "vmad: --nbd-buffer-budget %s: %s\n", optarg, err->message);
                g_free(d.pidfile);
                return 1;
            }
            break;
        }
        case '?':
            if (optopt != 0 && optopt < 256 && g_ascii_isprint(optopt)) {
                fprintf(stderr, "vmad: invalid option -%c (see vmad --help)\n", optopt);
            } else if (optopt >= OPT_BLOCKDEV) {
                fprintf(stderr, "vmad: %s needs an argument (see vmad --help)\n",
                        argv[optind - 1]);
            } else {
                fprintf(stderr, "vmad: unknown option %s (see vmad --help)\n",
                        argv[optind - 1]);
            }
            g_free(d.pidfile);
            return 1;
        default: {
            Opt o = {.kind = c, .arg = optarg};
            g_array_append_val(opts, o);
            break;
        }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vmad: unexpected argument '%s' (see vmad --help)\n", argv[optind]);
        g_free(d.pidfile);
        return 1;
    }

    d.chardevs = g_ptr_array_new_with_free_func(chardev_free);
    d.monitors = g_ptr_array_new_with_free_func((GDestroyNotify)qmp_monitor_free);
    d.loop = g_main_loop_new(NULL, FALSE);
    qmp_set_shutdown_handler(request_shutdown, &d);
    (void)qapi_schema_builtin();
    /* from here on a signal is remembered and handled once the main loop runs, so a
     * signal during startup still gets the clean shutdown */
    g_unix_signal_add(SIGTERM, on_signal, &d);
    g_unix_signal_add(SIGINT, on_signal, &d);
    g_unix_signal_add(SIGHUP, on_signal, &d);

    for (guint i = 0; i < opts->len; i++) {
        const Opt *o = &g_array_index(opts, Opt, i);
        g_autoptr(GError) err = NULL;
        const char *name = NULL;
        bool ok = false;

        switch (o->kind) {
        case OPT_BLOCKDEV:
            name = "--blockdev";
            ok = run_command("blockdev-add", o->arg, NULL, &err);
            break;
        case OPT_NBD_SERVER:
            name = "--nbd-server";
            ok = run_command("nbd-server-start", o->arg, NULL, &err);
            break;
        case OPT_EXPORT:
            name = "--export";
            ok = run_command("block-export-add", o->arg, "type", &err);
            break;
        case OPT_CHARDEV:
            name = "--chardev";
            ok = add_chardev(&d, o->arg, &err);
            break;
        case OPT_MONITOR:
            name = "--monitor";
            ok = add_monitor(&d, o->arg, &err);
            break;
        case OPT_FLEECING_DIR:
            name = "--fleecing-dir";
            ok = qmp_backup_set_fleecing_dir(o->arg, &err);
            break;
        case OPT_BACKUP_BUFFER_SIZE:
            name = "--backup-buffer-size";
            ok = qmp_backup_set_buffer_size(o->arg, &err);
            break;
        default:
            g_assert_not_reached();
        }
        if (!ok) {
            fprintf(stderr, "vmad: %s %s: %s\n", name, o->arg, err->message);
            teardown(&d, false);
            daemon_free(&d);
            return 1;
        }
    }
    if (d.pidfile != NULL) {
        g_autoptr(GError) err = NULL;
        if (!write_pidfile(&d, &err)) {
            fprintf(stderr, "vmad: --pidfile: %s\n", err->message);
            teardown(&d, false);
            daemon_free(&d);
            return 1;
        }
    }

    notify_systemd("READY=1");
    g_main_loop_run(d.loop);

    teardown(&d, true);
    daemon_free(&d);
    return 0;
}
