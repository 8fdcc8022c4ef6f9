/*
 * vma-output.c — the archive writer's outputs: where vma-writer.c's byte stream goes.
 *
 * Design note
 * -----------
 * One handle, four kinds, each behind a small ops table (writev, finish, close):
 *
 *   kind       opened by                        writev          close
 *   new file   vma_output_open(path)            direct staging  flush, close, rename, dir flush
 *   FIFO       vma_output_open(existing FIFO)   plain           close
 *   exec:      vma_output_open("exec:CMD")      plain           close, wait (kill on failure)
 *   fd         vma_output_new_fd()              plain           flush if regular, close
 *
 * New files. The final name is checked at open (lstat: anything there, even a dangling
 * symlink, is VMA_ERROR_EXISTS, as O_EXCL refuses it), so the caller hears at once that
 * it is taken. The data goes to ".NAME.tmp-XXXXXX" in the same directory, created with
 * O_EXCL and mode 0600. Only a complete archive, fdatasync'ed, is renamed to NAME, with
 * renameat2(RENAME_NOREPLACE) — a file that appeared under NAME meanwhile is never
 * replaced; file systems without it get link + unlink, and only where neither exists a
 * check-then-rename — and the directory is fsync'ed. Failure or cancel unlinks the
 * temporary file. So a file under the final name is always a complete archive; after a
 * crash (kill -9, power loss) at most a hidden ".NAME.tmp-XXXXXX" remains. The directory
 * is held open from open to close, so a rename of the directory in between changes
 * nothing. With direct, the file gets O_DIRECT if its file system allows it (tmpfs does
 * not: then ordinary writes); the stream is staged into aligned 1 MiB chunks and the
 * unaligned tail written after clearing O_DIRECT. Without it, the write-back of every
 * 8 MiB written is started at once (sync_file_range), so that the final fdatasync has
 * little left to do and the archive does not pile up as dirty page cache.
 *
 * FIFOs are opened non-blocking, as the deployed writer opens them: a FIFO without a
 * reader is an error at once instead of a hang (the daemon opens targets in its main
 * loop). They are never removed.
 *
 * "exec:CMD" runs /bin/sh -c CMD with posix_spawn: stdin is our pipe, stdout and stderr
 * are inherited, SIGPIPE is reset to default, the signal mask is empty, and it gets its
 * own process group. Close waits for it and fails (VMA_ERROR_FAILED) unless it exits with
 * status 0. After a failure or a cancel a command that does not exit is ended: after
 * CHILD_GRACE_MS SIGTERM to its group, SIGKILL CHILD_GRACE_MS later (a hung ssh or a
 * compressor on a dead mount must not hold up the end of the stream).
 *
 * Passed descriptors are never removed; a regular one is fdatasync'ed on success.
 *
 * Pipes (FIFOs, exec: commands, passed pipes and sockets) get a 1 MiB pipe buffer where
 * the kernel allows it and are put in non-blocking mode, so that the writer thread waits
 * in poll() together with an eventfd: vma_output_wake() signals it when the writer
 * latches an error, and a thread stuck on a pipe that does not drain returns -ECANCELED.
 * The eventfd is never drained: once woken, every later wait returns at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/io.h"
#include "vma-output.h"

extern char **environ;

#define PIPE_BUFFER_SIZE (1024 * 1024)
#define DIRECT_CHUNK_SIZE (1024 * 1024)
#define DIRECT_ALIGN 4096
#define WRITEBACK_CHUNK (8 * 1024 * 1024)
#define CHILD_GRACE_MS 1000 /* a failed writer's command gets this long per signal */
#define TMP_SUFFIX ".tmp-XXXXXX"
#define TMP_TRIES 100

typedef struct OutputOps {
    /* writer thread: append every byte of iov[0..cnt) */
    int (*writev)(VmaOutput *o, struct iovec *iov, int cnt);
    /* writer thread: the stream is complete (NULL: nothing to do) */
    int (*finish)(VmaOutput *o);
    /* see vma_output_close() */
    bool (*close)(VmaOutput *o, bool failed, GError **errp);
} OutputOps;

struct VmaOutput {
    const OutputOps *ops;
    char *name;          /* the target as given, for messages */
    int fd;              /* the stream; -1 once closed */
    int wake_fd;         /* eventfd, see vma_output_wake() */
    bool regular;        /* fd is a regular file: fdatasync on success */
    bool closed;

    /* new file */
    int dir_fd;          /* its directory, held from open to close */
    bool dir_sync;       /* dir_fd can be fsync'ed (not an O_PATH descriptor) */
    char *final_base;    /* its final name in dir_fd */
    char *tmp_base;      /* its temporary name in dir_fd; NULL once renamed or removed */
    bool direct;         /* fd has O_DIRECT: stage into aligned chunks */
    bool writeback;      /* start the write-back of each WRITEBACK_CHUNK written */
    uint64_t wb_started; /* writer thread: write-back started up to here */
    uint8_t *stage;      /* writer thread only */
    size_t stage_len;

    /* exec: */
    pid_t child;         /* the shell, 0 once reaped */

    atomic_uint_fast64_t bytes;
    atomic_int fate;     /* FATE_*: woken (abandoned) or committed (kept), never both */
};

/* An output is either woken — the writer failed or was cancelled, the stream is
 * abandoned — or committed — close found it complete and keeps it (renames a new file,
 * reports success) — whichever comes first; the other is refused from then on. So a
 * cancel that races with the end of a backup either wins, and nothing is kept, or
 * loses, and the archive stands and is reported as stored. */
enum { FATE_OPEN, FATE_WOKEN, FATE_COMMITTED };

/* ---- small helpers ------------------------------------------------------------------ */

/* Close o->fd; a real close error (not EINTR, after which the descriptor is gone
 * anyway) is reported, since buffered data may be lost with it. */
static bool close_stream(VmaOutput *o, GError **errp)
{
    if (o->fd < 0) {
        return true;
    }
    int r = close_fd_checked(&o->fd);
    if (r < 0 && r != -EINTR) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "close %s: %s", o->name, g_strerror(-r));
        return false;
    }
    return true;
}

/* Close: keep the output, unless it was woken first (then errp is set). */
static bool commit(VmaOutput *o, GError **errp)
{
    int expected = FATE_OPEN;

    if (atomic_compare_exchange_strong(&o->fate, &expected, FATE_COMMITTED) ||
        expected == FATE_COMMITTED) {
        return true;
    }
    g_set_error(errp, VMA_ERROR, VMA_ERROR_CANCELLED, "%s: abandoned before it was stored",
                o->name);
    return false;
}

static bool woken(VmaOutput *o)
{
    return atomic_load(&o->fate) == FATE_WOKEN;
}

static bool flush_stream(VmaOutput *o, GError **errp)
{
    int r;

    while ((r = fdatasync(o->fd)) < 0 && errno == EINTR) {
        /* interrupted by a signal: flush again */
    }
    if (r < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "flush %s: %s", o->name,
                    g_strerror(errno));
        return false;
    }
    return true;
}

/* Writer thread: wait until fd is writable or the output was woken (-ECANCELED). */
static int wait_writable(VmaOutput *o)
{
    for (;;) {
        struct pollfd pfd[2] = {
            { .fd = o->fd, .events = POLLOUT },
            { .fd = o->wake_fd, .events = POLLIN },
        };
        int r = poll(pfd, 2, -1);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (pfd[1].revents) {
            return -ECANCELED;
        }
        if (pfd[0].revents) {
            return 0; /* writable, or POLLERR/POLLHUP: the next write tells */
        }
    }
}

/* Writer thread: write every byte of iov[0..cnt), retrying short writes and EINTR and
 * waiting on a full non-blocking pipe. */
static int write_all_iov(VmaOutput *o, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(o->fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = wait_writable(o);
                if (r < 0) {
                    return r;
                }
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO; /* no progress on a non-empty write */
        }
        atomic_fetch_add(&o->bytes, (uint64_t)n);
        iov_consume(&iov, &cnt, (size_t)n);
    }
    return 0;
}

static bool set_nonblock(int fd, const char *name, GError **errp)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "set up %s: %s", name, g_strerror(errno));
        return false;
    }
    return true;
}

/* ---- the plain stream: FIFOs and passed descriptors --------------------------------- */

static int plain_writev(VmaOutput *o, struct iovec *iov, int cnt)
{
    return write_all_iov(o, iov, cnt);
}

static bool plain_close(VmaOutput *o, bool failed, GError **errp)
{
    bool ok = true;

    if (!failed && o->regular) {
        ok = flush_stream(o, errp);
    }
    if (ok && !failed) {
        ok = commit(o, errp);
    }
    return close_stream(o, ok ? errp : NULL) && ok;
}

static const OutputOps plain_ops = {
    .writev = plain_writev,
    .close = plain_close,
};

/* ---- exec: -------------------------------------------------------------------------- */

/* Wait for the command's exit or the output's wake, whichever comes first; true once
 * the command has exited (not reaped yet). Without pidfds (Linux < 5.3) only the exit. */
static bool wait_exit_or_wake(VmaOutput *o)
{
    int pidfd = (int)syscall(SYS_pidfd_open, o->child, 0);
    if (pidfd < 0) {
        return true;
    }
    bool exited = false;
    for (;;) {
        struct pollfd pfd[2] = {
            { .fd = pidfd, .events = POLLIN },
            { .fd = o->wake_fd, .events = POLLIN },
        };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            exited = true; /* cannot wait for both: wait for the exit alone */
            break;
        }
        exited = pfd[0].revents != 0;
        if (exited || pfd[1].revents != 0) {
            break;
        }
    }
    close(pidfd);
    return exited;
}

/* Wait for the command's exit; after a failure, or a wake while waiting (a cancel), end
 * one that does not exit. */
static pid_t wait_child(VmaOutput *o, bool failed, int *status)
{
    pid_t r;

    if (!failed && !woken(o) && !wait_exit_or_wake(o)) {
        failed = true;
    }
    if (failed || woken(o)) {
        for (int step = 0; step < 3; step++) {
            gint64 deadline = g_get_monotonic_time() + CHILD_GRACE_MS * 1000;
            do {
                r = waitpid(o->child, status, WNOHANG);
                if (r != 0 && !(r < 0 && errno == EINTR)) {
                    return r;
                }
                g_usleep(10 * 1000);
            } while (g_get_monotonic_time() < deadline);
            if (step < 2) {
                kill(-o->child, step == 0 ? SIGTERM : SIGKILL);
            }
        }
    }
    do {
        r = waitpid(o->child, status, 0);
    } while (r < 0 && errno == EINTR);
    return r;
}

static bool reap_child(VmaOutput *o, bool failed, GError **errp)
{
    int status = 0;
    pid_t r = wait_child(o, failed, &status);

    o->child = 0;
    if (r < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "wait for %s: %s", o->name,
                    g_strerror(errno));
        return false;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FAILED, "%s: command exited with status %d",
                    o->name, WEXITSTATUS(status));
        return false;
    }
    if (WIFSIGNALED(status)) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FAILED, "%s: command killed by signal %d",
                    o->name, WTERMSIG(status));
        return false;
    }
    return true;
}

/* The command's status is the more telling error: it is reported over a close error. */
static bool exec_close(VmaOutput *o, bool failed, GError **errp)
{
    g_autoptr(GError) close_err = NULL;
    bool closed = close_stream(o, &close_err);

    if (o->child > 0 && !reap_child(o, failed, errp)) {
        return false;
    }
    if (!closed) {
        g_propagate_error(errp, g_steal_pointer(&close_err));
        return false;
    }
    return failed || commit(o, errp);
}

static const OutputOps exec_ops = {
    .writev = plain_writev,
    .close = exec_close,
};

static int spawn_command(const char *cmd, const char *name, pid_t *pid, GError **errp)
{
    int pfd[2];

    if (pipe2(pfd, O_CLOEXEC) < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "create pipe for %s: %s", name,
                    g_strerror(errno));
        return -1;
    }

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t defaults, empty;
    char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)cmd, NULL };

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[0], STDIN_FILENO);
    posix_spawnattr_init(&attr);
    /* the command gets ordinary signal handling whatever our process does */
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &empty);
    /* its own process group, so that a failed writer can end the command and whatever
     * it started (wait_child) */
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETPGROUP);
    int r = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pfd[0]);
    if (r != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "start %s: %s", name, g_strerror(r));
        close(pfd[1]);
        return -1;
    }
    return pfd[1];
}

/* ---- new file ----------------------------------------------------------------------- */

/* Writer thread: O_DIRECT mode, write the staging chunk. */
static int stage_flush(VmaOutput *o)
{
    struct iovec iov = { .iov_base = o->stage, .iov_len = o->stage_len };
    int r = write_all_iov(o, &iov, 1);

    o->stage_len = 0;
    return r;
}

/* Writer thread: start writing what is written but not yet on its way to the disk,
 * once there is WRITEBACK_CHUNK of it. The final fdatasync then finds most of the
 * archive written already (it overlaps the copy instead of following it), and the
 * archive does not fill the page cache with dirty pages. Errors show at the fdatasync;
 * a file system without it turns it off. */
static void start_writeback(VmaOutput *o)
{
    uint64_t end = atomic_load(&o->bytes);

    if (end - o->wb_started < WRITEBACK_CHUNK) {
        return;
    }
    if (sync_file_range(o->fd, (off_t)o->wb_started, (off_t)(end - o->wb_started),
                        SYNC_FILE_RANGE_WRITE) < 0 && errno != EINTR) {
        o->writeback = false;
    }
    o->wb_started = end;
}

static int file_writev(VmaOutput *o, struct iovec *iov, int cnt)
{
    if (!o->direct) {
        int r = write_all_iov(o, iov, cnt);
        if (r == 0 && o->writeback) {
            start_writeback(o);
        }
        return r;
    }
    for (int i = 0; i < cnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        while (len > 0) {
            size_t n = MIN(len, DIRECT_CHUNK_SIZE - o->stage_len);
            memcpy(o->stage + o->stage_len, p, n);
            o->stage_len += n;
            p += n;
            len -= n;
            if (o->stage_len == DIRECT_CHUNK_SIZE) {
                int r = stage_flush(o);
                if (r < 0) {
                    return r;
                }
            }
        }
    }
    return 0;
}

/* Writer thread: O_DIRECT mode, write the unaligned tail with O_DIRECT cleared. */
static int file_finish(VmaOutput *o)
{
    if (!o->direct || o->stage_len == 0) {
        return 0;
    }
    int fl = fcntl(o->fd, F_GETFL);
    if (fl < 0 || fcntl(o->fd, F_SETFL, fl & ~O_DIRECT) < 0) {
        return -errno;
    }
    return stage_flush(o);
}

/* Put the temporary file under its final name without replacing anything there. */
static bool rename_into_place(VmaOutput *o, GError **errp)
{
    int e = 0;

    if (renameat2(o->dir_fd, o->tmp_base, o->dir_fd, o->final_base, RENAME_NOREPLACE) == 0) {
        return true;
    }
    e = errno;
    if (e == EINVAL || e == ENOSYS || e == EOPNOTSUPP) {
        /* no RENAME_NOREPLACE here (NFS, some FUSE): a hard link refuses an existing
         * name just as well */
        if (linkat(o->dir_fd, o->tmp_base, o->dir_fd, o->final_base, 0) == 0) {
            (void)unlinkat(o->dir_fd, o->tmp_base, 0);
            return true;
        }
        e = errno;
        if (e == EPERM || e == EOPNOTSUPP || e == ENOSYS) {
            /* no hard links either (vfat): check, then rename; a file created under
             * the final name in between would be replaced */
            struct stat st;
            if (fstatat(o->dir_fd, o->final_base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                e = EEXIST;
            } else if (renameat(o->dir_fd, o->tmp_base, o->dir_fd, o->final_base) == 0) {
                return true;
            } else {
                e = errno;
            }
        }
    }
    if (e == EEXIST) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_EXISTS,
                    "create %s: File exists (created while the archive was written)",
                    o->name);
    } else {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "rename %s into place: %s", o->name,
                    g_strerror(e));
    }
    return false;
}

static bool file_close(VmaOutput *o, bool failed, GError **errp)
{
    bool ok = true;

    if (!failed) {
        ok = flush_stream(o, errp);
    }
    ok = close_stream(o, ok ? errp : NULL) && ok;
    if (ok && !failed) {
        ok = commit(o, errp) && rename_into_place(o, errp);
        if (ok) {
            g_clear_pointer(&o->tmp_base, g_free);
        }
    }
    if (o->tmp_base) {
        (void)unlinkat(o->dir_fd, o->tmp_base, 0);
        g_clear_pointer(&o->tmp_base, g_free);
    }
    if (ok && !failed && o->dir_sync) {
        int r;
        while ((r = fsync(o->dir_fd)) < 0 && errno == EINTR) {
            /* interrupted by a signal: flush again */
        }
        if (r < 0 && errno != EINVAL) {
            /* the rename may not survive a crash: the archive is not safely stored */
            g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "flush directory of %s: %s",
                        o->name, g_strerror(errno));
            (void)unlinkat(o->dir_fd, o->final_base, 0);
            ok = false;
        }
    }
    close_fd(&o->dir_fd);
    return ok;
}

static const OutputOps file_ops = {
    .writev = file_writev,
    .finish = file_finish,
    .close = file_close,
};

/* Create the temporary file ".BASE.tmp-XXXXXX" in dir_fd; sets o->tmp_base. */
static int create_tmp(VmaOutput *o, GError **errp)
{
    static const char chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    /* keep the name within NAME_MAX however long the final name is */
    int keep = (int)MIN(strlen(o->final_base), (size_t)NAME_MAX - 1 - strlen(TMP_SUFFIX));
    int e = EEXIST;

    for (int i = 0; i < TMP_TRIES && e == EEXIST; i++) {
        char *name = g_strdup_printf(".%.*s" TMP_SUFFIX, keep, o->final_base);
        char *x = name + strlen(name) - 6;
        for (int j = 0; j < 6; j++) {
            x[j] = chars[g_random_int_range(0, (gint32)sizeof(chars) - 1)];
        }
        int fd = openat(o->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            o->tmp_base = name;
            return fd;
        }
        e = errno;
        g_free(name);
    }
    g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "create %s: %s", o->name, g_strerror(e));
    return -1;
}

/* ---- construction ------------------------------------------------------------------- */

/* Common part of every constructor; takes ownership of fd (closed on failure). */
static VmaOutput *output_new(int fd, const char *name, const OutputOps *ops, GError **errp)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "stat %s: %s", name, g_strerror(errno));
        close(fd);
        return NULL;
    }
    int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "create eventfd for %s: %s", name,
                    g_strerror(errno));
        close(fd);
        return NULL;
    }

    VmaOutput *o = g_new0(VmaOutput, 1);
    o->ops = ops;
    o->name = g_strdup(name);
    o->fd = fd;
    o->wake_fd = wake_fd;
    o->dir_fd = -1;
    o->regular = S_ISREG(st.st_mode);
    atomic_init(&o->bytes, 0);
    atomic_init(&o->fate, FATE_OPEN);

    if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
        if (S_ISFIFO(st.st_mode)) {
            /* a larger pipe moves data much faster; not fatal where the kernel refuses */
            (void)fcntl(fd, F_SETPIPE_SZ, PIPE_BUFFER_SIZE);
        }
        if (!set_nonblock(fd, name, errp)) {
            vma_output_free(o);
            return NULL;
        }
    }
    return o;
}

static VmaOutput *open_exec(const char *target, GError **errp)
{
    const char *cmd = target + strlen("exec:");
    pid_t pid = 0;

    if (*cmd == '\0') {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "open %s: empty command", target);
        return NULL;
    }
    int fd = spawn_command(cmd, target, &pid, errp);
    if (fd < 0) {
        return NULL;
    }
    VmaOutput *o = output_new(fd, target, &exec_ops, errp);
    if (!o) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return NULL;
    }
    o->child = pid;
    return o;
}

static VmaOutput *open_fifo(const char *target, GError **errp)
{
    int fd = open(target, O_WRONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        int e = errno;
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "open %s: %s", target,
                    e == ENXIO ? "no process has the FIFO open for reading" : g_strerror(e));
        return NULL;
    }
    return output_new(fd, target, &plain_ops, errp);
}

static VmaOutput *open_file(const char *target, bool direct, GError **errp)
{
    struct stat st;
    size_t len = strlen(target);

    /* the final name must be free now (O_EXCL semantics: a dangling symlink counts) */
    if (lstat(target, &st) == 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_EXISTS, "create %s: %s", target,
                    g_strerror(EEXIST));
        return NULL;
    }
    if (errno != ENOENT) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "create %s: %s", target,
                    g_strerror(errno));
        return NULL;
    }
    if (target[len - 1] == '/') {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "create %s: %s", target,
                    g_strerror(EISDIR));
        return NULL;
    }

    g_autofree char *dir = g_path_get_dirname(target);
    bool dir_sync = true;
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0 && errno == EACCES) {
        /* a directory we may write but not read: no directory flush then */
        dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        dir_sync = false;
    }
    if (dir_fd < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "create %s: %s", target,
                    g_strerror(errno));
        return NULL;
    }

    /* a shell of the handle, so that create_tmp can use its fields */
    VmaOutput tmp = { .name = (char *)target, .dir_fd = dir_fd };
    tmp.final_base = g_path_get_basename(target);
    int fd = create_tmp(&tmp, errp);
    if (fd < 0) {
        g_free(tmp.final_base);
        close(dir_fd);
        return NULL;
    }
    bool has_direct = false;
    if (direct) {
        /* file systems without O_DIRECT (tmpfs) get ordinary buffered writes */
        int fl = fcntl(fd, F_GETFL);
        has_direct = fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0;
    }
    VmaOutput *o = output_new(fd, target, &file_ops, errp);
    if (!o) {
        (void)unlinkat(dir_fd, tmp.tmp_base, 0);
        g_free(tmp.tmp_base);
        g_free(tmp.final_base);
        close(dir_fd);
        return NULL;
    }
    o->dir_fd = dir_fd;
    o->dir_sync = dir_sync;
    o->final_base = tmp.final_base;
    o->tmp_base = tmp.tmp_base;
    if (has_direct) {
        o->direct = true;
        o->stage = g_aligned_alloc(1, DIRECT_CHUNK_SIZE, DIRECT_ALIGN);
    }
    o->writeback = !has_direct;
    return o;
}

VmaOutput *vma_output_open(const char *target, bool direct, GError **errp)
{
    struct stat st;

    g_return_val_if_fail(target != NULL, NULL);

    if (g_str_has_prefix(target, "exec:")) {
        return open_exec(target, errp);
    }
    if (*target == '\0') {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "open archive: empty file name");
        return NULL;
    }
    if (stat(target, &st) == 0 && S_ISFIFO(st.st_mode)) {
        return open_fifo(target, errp);
    }
    return open_file(target, direct, errp);
}

VmaOutput *vma_output_new_fd(int fd, const char *name, GError **errp)
{
    g_return_val_if_fail(fd >= 0 && name != NULL, NULL);
    return output_new(fd, name, &plain_ops, errp);
}

/* ---- use ---------------------------------------------------------------------------- */

int vma_output_writev(VmaOutput *o, struct iovec *iov, int cnt)
{
    return o->ops->writev(o, iov, cnt);
}

int vma_output_finish(VmaOutput *o)
{
    return o->ops->finish ? o->ops->finish(o) : 0;
}

bool vma_output_wake(VmaOutput *o)
{
    uint64_t one = 1;
    int expected = FATE_OPEN;

    if (!atomic_compare_exchange_strong(&o->fate, &expected, FATE_WOKEN) &&
        expected == FATE_COMMITTED) {
        return false;
    }
    while (write(o->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
        /* EAGAIN: a full eventfd is already signalled */
    }
    return true;
}

uint64_t vma_output_get_bytes(VmaOutput *o)
{
    return atomic_load(&o->bytes);
}

bool vma_output_close(VmaOutput *o, bool failed, GError **errp)
{
    g_return_val_if_fail(o != NULL && !o->closed, false);

    o->closed = true;
    return o->ops->close(o, failed, errp);
}

void vma_output_free(VmaOutput *o)
{
    if (!o) {
        return;
    }
    if (!o->closed) {
        vma_output_close(o, true, NULL);
    }
    close_fd(&o->wake_fd);
    g_aligned_free(o->stage);
    g_free(o->tmp_base);
    g_free(o->final_base);
    g_free(o->name);
    g_free(o);
}
