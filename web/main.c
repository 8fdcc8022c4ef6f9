/*
 * main.c — vma-web: a web console and JSON API for the backups of the host's vmad
 * instances (docs/vma-web.md; the API in docs/web-api.md).
 *
 *   vma-web --listen 127.0.0.1:PORT|[::1]:PORT|unix:PATH --run-dir DIR --backup-dir DIR
 *           [--token-file FILE] [--allow-remote] [--vma PATH] [--qmp-timeout SECONDS]
 *
 * Start-up: read (or create, mode 0600, O_EXCL) the token file, bind the listening
 * socket (util/listen.c: a UNIX path in use by a live process is refused, a stale one
 * replaced, and only our own socket file is removed at exit), then serve on the GLib
 * main loop. A TCP address must be a loopback address unless --allow-remote says
 * otherwise: the API hands out the host's disks. One line on stdout says where it
 * listens, once it does ("vma-web: listening on URL"). SIGTERM/SIGINT: running tasks are
 * cancelled (a running backup with backup-cancel), then it exits with 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>
#include <libsoup/soup.h>

#include "util/listen.h"
#include "web/web.h"

#define TOKEN_BYTES 24

static bool token_valid(const char *t)
{
    if (strlen(t) < 16 || strlen(t) > 512) {
        return false;
    }
    for (const char *p = t; *p; p++) {
        if (*p <= ' ' || *p > '~') {
            return false;
        }
    }
    return true;
}

/* The token in path; a missing file is created with a new random token (mode 0600). */
static char *load_token(const char *path, GError **errp)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd >= 0) {
        uint8_t raw[TOKEN_BYTES];
        char text[2 * TOKEN_BYTES + 2];
        if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
            int err = errno;
            close(fd);
            unlink(path);
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err), "getrandom: %s",
                        g_strerror(err));
            return NULL;
        }
        for (size_t i = 0; i < sizeof(raw); i++) {
            snprintf(text + 2 * i, 3, "%02x", raw[i]);
        }
        strcat(text, "\n");
        bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text) && fsync(fd) == 0;
        int err = errno;
        close(fd);
        if (!ok) {
            unlink(path);
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err), "write %s: %s", path,
                        g_strerror(err));
            return NULL;
        }
        text[2 * TOKEN_BYTES] = '\0';
        fprintf(stderr, "vma-web: created the token file %s\n", path);
        return g_strdup(text);
    }
    if (errno != EEXIST) {
        int err = errno;
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err), "create %s: %s", path,
                    g_strerror(err));
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a regular file", path);
        return NULL;
    }
    if (st.st_mode & 077) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "%s: readable by others (mode %04o); chmod 600 it", path,
                    (unsigned)(st.st_mode & 07777));
        return NULL;
    }
    char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, errp)) {
        return NULL;
    }
    g_strstrip(text);
    if (!token_valid(text)) {
        g_free(text);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: the token must be 16 to 512 printable characters without spaces",
                    path);
        return NULL;
    }
    return text;
}

/* Bind --listen. *url gets what to print. */
static ListenSocket *listen_on(const char *spec, bool allow_remote, char **url, GError **errp)
{
    if (g_str_has_prefix(spec, "unix:")) {
        const char *path = spec + 5;
        if (*path == '\0') {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "--listen unix: needs a path");
            return NULL;
        }
        ListenSocket *ls = listen_socket_unix(path, 0600, 64, LISTEN_NONBLOCK, errp);
        *url = g_strdup_printf("unix:%s", path);
        return ls;
    }
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "--listen %s: expected HOST:PORT or unix:PATH", spec);
        return NULL;
    }
    g_autofree char *host = g_strndup(spec, colon - spec);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port > 65535) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "--listen %s: bad port", spec);
        return NULL;
    }
    g_autoptr(GInetAddress) addr = g_inet_address_new_from_string(host);
    if (addr == NULL) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "--listen %s: '%s' is not an IP address", spec, host);
        return NULL;
    }
    if (!g_inet_address_get_is_loopback(addr) && !allow_remote) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "--listen %s: not a loopback address (add --allow-remote to listen there)",
                    spec);
        return NULL;
    }
    g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(addr, (guint16)port);
    struct sockaddr_storage ss;
    gssize len = g_socket_address_get_native_size(sa);
    if (len <= 0 || !g_socket_address_to_native(sa, &ss, sizeof(ss), errp)) {
        return NULL;
    }
    ListenSocket *ls = listen_socket_tcp((struct sockaddr *)&ss, (socklen_t)len, spec, 64,
                                         LISTEN_NONBLOCK, errp);
    if (ls == NULL) {
        return NULL;
    }
    socklen_t slen = sizeof(ss);
    getsockname(listen_socket_fd(ls), (struct sockaddr *)&ss, &slen);
    g_autoptr(GSocketAddress) bound = g_socket_address_new_from_native(&ss, slen);
    guint16 real_port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
    bool v6 = g_inet_address_get_family(addr) == G_SOCKET_FAMILY_IPV6;
    *url = g_strdup_printf("http://%s%s%s:%u/", v6 ? "[" : "", host, v6 ? "]" : "", real_port);
    return ls;
}

static gboolean on_signal(gpointer data)
{
    g_main_loop_quit(data);
    return G_SOURCE_CONTINUE;
}

static char *find_vma(const char *given)
{
    if (given != NULL) {
        return g_strdup(given);
    }
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    if (self != NULL) {
        g_autofree char *dir = g_path_get_dirname(self);
        char *beside = g_build_filename(dir, "vma", NULL);
        if (g_file_test(beside, G_FILE_TEST_IS_EXECUTABLE)) {
            return beside;
        }
        g_free(beside);
    }
    char *found = g_find_program_in_path("vma");
    return found != NULL ? found : g_strdup("vma");
}

int main(int argc, char **argv)
{
    g_autofree char *listen = NULL, *run_dir = NULL, *backup_dir = NULL, *token_file = NULL;
    g_autofree char *vma = NULL;
    gboolean allow_remote = FALSE;
    int qmp_timeout = 10;
    GOptionEntry entries[] = {
        { "listen", 0, 0, G_OPTION_ARG_STRING, &listen,
          "Where to listen: 127.0.0.1:PORT, [::1]:PORT or unix:PATH", "ADDR" },
        { "run-dir", 0, 0, G_OPTION_ARG_FILENAME, &run_dir,
          "The VMs: DIR/<id>/qmp.sock (e.g. /run/vmad)", "DIR" },
        { "backup-dir", 0, 0, G_OPTION_ARG_FILENAME, &backup_dir,
          "The archives: DIR/<id>/vzdump-qemu-<id>-*.vma[.zst]", "DIR" },
        { "token-file", 0, 0, G_OPTION_ARG_FILENAME, &token_file,
          "The API token (created, mode 0600, if missing; default BACKUP-DIR/vma-web.token)",
          "FILE" },
        { "allow-remote", 0, 0, G_OPTION_ARG_NONE, &allow_remote,
          "Allow a TCP address that is not loopback", NULL },
        { "vma", 0, 0, G_OPTION_ARG_FILENAME, &vma,
          "The vma program (default: next to vma-web, else from PATH)", "PATH" },
        { "qmp-timeout", 0, 0, G_OPTION_ARG_INT, &qmp_timeout,
          "Longest wait for a vmad's QMP greeting or reply (default 10)", "SECONDS" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- web console for vmad backups");
    g_autoptr(GError) err = NULL;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "vma-web: %s\n", err->message);
        return 2;
    }
    if (argc > 1 || listen == NULL || run_dir == NULL || backup_dir == NULL) {
        fprintf(stderr, "vma-web: %s\nUsage: vma-web --listen ADDR --run-dir DIR "
                        "--backup-dir DIR [--token-file FILE] [--allow-remote]\n",
                argc > 1 ? "unexpected operand" : "--listen, --run-dir and --backup-dir are required");
        return 2;
    }
    if (qmp_timeout < 1 || qmp_timeout > 3600) {
        fprintf(stderr, "vma-web: --qmp-timeout %d: expected 1 to 3600 seconds\n", qmp_timeout);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    WebConfig cfg = { 0 };
    cfg.qmp_timeout_ms = qmp_timeout * 1000;
    cfg.run_dir = g_canonicalize_filename(run_dir, NULL);
    cfg.backup_dir = g_canonicalize_filename(backup_dir, NULL);
    cfg.vma = find_vma(vma);
    if (!g_file_test(cfg.backup_dir, G_FILE_TEST_IS_DIR)) {
        fprintf(stderr, "vma-web: --backup-dir %s: not a directory\n", cfg.backup_dir);
        return 1;
    }
    g_autofree char *tf = token_file != NULL ? g_strdup(token_file)
                                             : g_build_filename(cfg.backup_dir, "vma-web.token", NULL);
    cfg.token = load_token(tf, &err);
    if (cfg.token == NULL) {
        fprintf(stderr, "vma-web: token file: %s\n", err->message);
        return 1;
    }
    g_autofree char *url = NULL;
    g_autoptr(ListenSocket) ls = listen_on(listen, allow_remote, &url, &err);
    if (ls == NULL) {
        fprintf(stderr, "vma-web: --listen %s: %s\n", listen, err->message);
        return 1;
    }
    g_autoptr(GSocket) sock = g_socket_new_from_fd(dup(listen_socket_fd(ls)), &err);
    g_autoptr(SoupServer) server = soup_server_new("server-header", "vma-web", NULL);
    if (sock == NULL || !soup_server_listen_socket(server, sock, 0, &err)) {
        fprintf(stderr, "vma-web: --listen %s: %s\n", listen, err->message);
        return 1;
    }
    web_tasks_init(&cfg);
    web_api_register(server, &cfg);

    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    guint s1 = g_unix_signal_add(SIGTERM, on_signal, loop);
    guint s2 = g_unix_signal_add(SIGINT, on_signal, loop);
    printf("vma-web: listening on %s\n", url);
    fflush(stdout);
    g_main_loop_run(loop);
    g_source_remove(s1);
    g_source_remove(s2);

    soup_server_disconnect(server);
    if (!web_tasks_shutdown(30000)) {
        fprintf(stderr, "vma-web: tasks still running after 30 s; exiting anyway\n");
    }
    g_free(cfg.run_dir);
    g_free(cfg.backup_dir);
    g_free(cfg.vma);
    g_free(cfg.token);
    return 0;
}
