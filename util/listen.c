/*
 * util/listen.c — listening sockets a process owns; the rules are in util/listen.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/listen.h"

struct ListenSocket {
    int fd;
    char *path;         /* UNIX: the socket file; NULL for TCP */
    dev_t dev;          /* identity of the file bind() created, so that we never */
    ino_t ino;          /* remove one that replaced it */
};

static void set_errno_error(GError **errp, int err, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void set_errno_error(GError **errp, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err), "%s: %s", msg,
                g_strerror(err));
}

/* path exists or not: true if it may be bound now (absent, or a stale socket removed) */
static bool clear_stale_socket(const char *path, GError **errp)
{
    struct stat st;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT) {
            return true;
        }
        set_errno_error(errp, errno, "%s", path);
        return false;
    }
    if (!S_ISSOCK(st.st_mode)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                    "%s: file exists and is not a socket", path);
        return false;
    }
    /* Probe: does a process listen there? Non-blocking, so a full backlog answers
     * EAGAIN at once instead of waiting; that too means someone listens. */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        set_errno_error(errp, errno, "%s: probe", path);
        return false;
    }
    int r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    int saved = errno;
    close(fd);
    if (r == 0 || saved == EAGAIN || saved == EINPROGRESS) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST, "%s: in use by another process",
                    path);
        return false;
    }
    if (saved != ECONNREFUSED) {
        set_errno_error(errp, saved, "%s: probe", path);
        return false;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        set_errno_error(errp, errno, "%s: remove stale socket", path);
        return false;
    }
    return true;
}

ListenSocket *listen_socket_unix(const char *path, int mode, int backlog, unsigned flags,
                                 GError **errp)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;

    if (*path == '\0' || strlen(path) >= sizeof(sun.sun_path)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG,
                    "%s: path empty or longer than %zu bytes", path, sizeof(sun.sun_path) - 1);
        return NULL;
    }
    if (mode > 0777) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: mode %o is not a permission mode", path, (unsigned)mode);
        return NULL;
    }
    if (!clear_stale_socket(path, errp)) {
        return NULL;
    }
    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    int type = SOCK_STREAM | SOCK_CLOEXEC | ((flags & LISTEN_NONBLOCK) ? SOCK_NONBLOCK : 0);
    int fd = socket(AF_UNIX, type, 0);
    if (fd < 0) {
        set_errno_error(errp, errno, "%s: socket", path);
        return NULL;
    }
    /* The file appears with bind(); a umask keeps it from ever being wider than mode.
     * Callers create sockets at startup or on the main loop, before or apart from any
     * thread that creates files, so touching the process-wide umask is safe. */
    mode_t old_umask = 0;
    if (mode >= 0) {
        old_umask = umask(~(mode_t)mode & 0777);
    }
    int r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    int saved = errno;
    if (mode >= 0) {
        umask(old_umask);
    }
    if (r < 0) {
        /* EADDRINUSE here: another process bound the path since the probe */
        set_errno_error(errp, saved, "%s: bind", path);
        close(fd);
        return NULL;
    }
    /* from here on the file is ours: record it before anything else can fail */
    if (stat(path, &st) < 0) {
        set_errno_error(errp, errno, "%s", path);
        close(fd);
        return NULL;
    }
    ListenSocket *ls = g_new0(ListenSocket, 1);
    ls->fd = fd;
    ls->path = g_strdup(path);
    ls->dev = st.st_dev;
    ls->ino = st.st_ino;
    if ((mode >= 0 && chmod(path, (mode_t)mode) < 0) || listen(fd, backlog) < 0) {
        set_errno_error(errp, errno, "%s", path);
        listen_socket_free(ls);
        return NULL;
    }
    return ls;
}

ListenSocket *listen_socket_tcp(const struct sockaddr *sa, socklen_t salen, const char *name,
                                int backlog, unsigned flags, GError **errp)
{
    int type = SOCK_STREAM | SOCK_CLOEXEC | ((flags & LISTEN_NONBLOCK) ? SOCK_NONBLOCK : 0);
    int fd = socket(sa->sa_family, type, 0);
    int one = 1;

    if (fd < 0) {
        set_errno_error(errp, errno, "%s: socket", name);
        return NULL;
    }
    /* SO_REUSEADDR only: binding over TIME_WAIT connections of an earlier run. Never
     * SO_REUSEPORT, which would let a second process listen on the same port. */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, sa, salen) < 0 || listen(fd, backlog) < 0) {
        set_errno_error(errp, errno, "%s", name);
        close(fd);
        return NULL;
    }
    ListenSocket *ls = g_new0(ListenSocket, 1);
    ls->fd = fd;
    return ls;
}

int listen_socket_fd(const ListenSocket *ls)
{
    return ls->fd;
}

bool listen_socket_owns_path(const ListenSocket *ls)
{
    struct stat st;

    return ls->path != NULL && lstat(ls->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
           st.st_dev == ls->dev && st.st_ino == ls->ino;
}

void listen_socket_free(ListenSocket *ls)
{
    if (ls == NULL) {
        return;
    }
    if (listen_socket_owns_path(ls)) {
        unlink(ls->path);
    }
    if (ls->fd >= 0) {
        close(ls->fd);
    }
    g_free(ls->path);
    g_free(ls);
}
