/*
 * faultinj.c — an LD_PRELOAD shim that makes I/O calls fail on request (tests only).
 *
 * Built as $(BUILDDIR)/tests/faultinj.so; tests/functional/faults-lib.bash preloads it
 * into one vma or vmad process. It wraps read, pread(64), preadv(64), write, pwrite(64),
 * writev, pwritev(64), fdatasync, fsync and fallocate(64), and for every call checks the
 * rules in $FAULTINJ, in order:
 *
 *     FAULTINJ="RULE;RULE;..."    RULE = "key=value,key=value,..."
 *
 *   op=NAME|NAME...   calls the rule applies to: read pread preadv write pwrite writev
 *                     pwritev fdatasync fsync fallocate, or * for all (pread covers
 *                     pread64, and so on)                              (required)
 *   path=GLOB         only descriptors whose /proc/self/fd link matches (fnmatch):
 *                     "*.vma", "*tmp-disk-*", "pipe:*", "* (deleted)" ... (default: all)
 *   thread=GLOB       only calls from threads whose name matches ("backup-copy")
 *   if=PATH           only while PATH exists: a test arms and disarms the rule by
 *                     creating and removing the file (checked on every matching call)
 *   offset=N          only positioned calls (pread, preadv, pwrite, pwritev, fallocate)
 *                     whose byte range contains offset N: "the read of byte N fails"
 *   after=N           let the first N matching calls through          (default 0)
 *   every=K           then act on every K-th matching call            (default 1)
 *   count=N           act at most N times                             (default: no limit)
 *   mode=fail|short|eintr|delay
 *                     fail: return -1 with errno = err, doing nothing; short: do the
 *                     call with half the length (a short transfer; sync calls and
 *                     fallocate are passed through); eintr: return -1 with EINTR,
 *                     doing nothing; delay: sleep ms= milliseconds, then do the call
 *                     (a slow disk; the log line is written before the sleep, so a
 *                     test can act while the call hangs)           (default fail).
 *   ms=N              delay's sleep                               (default 1000)
 *                     Keep short rules to files and pipes (a path pattern that starts
 *                     with '/' or 'pipe:'): an eventfd transfers 8 bytes or fails, it
 *                     is never short
 *   err=EIO|ENOSPC|EDQUOT|EROFS|EAGAIN|EINTR|EBADF|NUMBER              (default EIO)
 *
 * A call matched by a rule counts for that rule whether or not it acts; the first rule
 * that acts decides. $FAULTINJ_LOG names a file that gets one line per injected fault
 * ("faultinj: pwrite fd=5 /x/a.vma thread=vma-writer fail ENOSPC"), so a test can prove
 * that its fault happened.
 *
 * Children do not inherit the shim: the constructor removes FAULTINJ and FAULTINJ_LOG
 * from the environment and sets LD_PRELOAD to $FAULTINJ_RESTORE_PRELOAD (what the test
 * had before it preloaded us; unset if that is unset or empty). An `exec:` command of a
 * backup is therefore not sabotaged.
 *
 * The wrappers allocate nothing and take no lock (counters are atomics), so they are
 * safe in any thread and under the sanitizers (whose interceptors we call through
 * dlsym(RTLD_NEXT)). A malformed $FAULTINJ aborts the process with a message: a test
 * that thinks it injects faults must not silently run without them.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 16
#define MAX_GLOB 256

enum {
    OP_READ = 1 << 0,
    OP_PREAD = 1 << 1,
    OP_PREADV = 1 << 2,
    OP_WRITE = 1 << 3,
    OP_PWRITE = 1 << 4,
    OP_WRITEV = 1 << 5,
    OP_PWRITEV = 1 << 6,
    OP_FDATASYNC = 1 << 7,
    OP_FSYNC = 1 << 8,
    OP_FALLOCATE = 1 << 9,
};

static const struct {
    const char *name;
    unsigned op;
} op_names[] = {
    { "read", OP_READ },           { "pread", OP_PREAD },         { "preadv", OP_PREADV },
    { "write", OP_WRITE },         { "pwrite", OP_PWRITE },       { "writev", OP_WRITEV },
    { "pwritev", OP_PWRITEV },     { "fdatasync", OP_FDATASYNC }, { "fsync", OP_FSYNC },
    { "fallocate", OP_FALLOCATE },
};

enum { MODE_FAIL, MODE_SHORT, MODE_EINTR, MODE_DELAY };

static const struct {
    const char *name;
    int err;
} err_names[] = {
    { "EIO", EIO },       { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT }, { "EROFS", EROFS },
    { "EAGAIN", EAGAIN }, { "EINTR", EINTR },   { "EBADF", EBADF },   { "EPIPE", EPIPE },
    { "EFBIG", EFBIG },   { "EINVAL", EINVAL }, { "ENOMEM", ENOMEM },
};

typedef struct Rule {
    unsigned ops;
    char path[MAX_GLOB];     /* "" = any */
    char thread[MAX_GLOB];   /* "" = any */
    char armed[MAX_GLOB];    /* "" = always */
    long long at;            /* offset=: byte the call's range must contain; -1 = any */
    unsigned long after, every;
    long count;              /* < 0: no limit */
    int mode, err;
    unsigned long ms;        /* delay */
    unsigned long seen;      /* matching calls (atomic) */
    unsigned long acted;     /* faults injected (atomic) */
} Rule;

static Rule rules[MAX_RULES];
static int nrules;
static char log_path[4096];

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    syscall(SYS_write, 2, "faultinj: ", 10);
    syscall(SYS_write, 2, msg, strlen(msg));
    syscall(SYS_write, 2, "\n", 1);
    abort();
}

static const char *op_name(unsigned op)
{
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
        if (op_names[i].op == op) {
            return op_names[i].name;
        }
    }
    return "?";
}

static const char *err_name(int err)
{
    for (size_t i = 0; i < sizeof(err_names) / sizeof(err_names[0]); i++) {
        if (err_names[i].err == err) {
            return err_names[i].name;
        }
    }
    return "errno";
}

static unsigned long parse_num(const char *key, const char *v)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0') {
        die("%s=%s: not a number", key, v);
    }
    return n;
}

static void parse_rule(char *text)
{
    if (nrules == MAX_RULES) {
        die("more than %d rules", MAX_RULES);
    }
    Rule *r = &rules[nrules];
    memset(r, 0, sizeof(*r));
    r->every = 1;
    r->count = -1;
    r->mode = MODE_FAIL;
    r->err = EIO;
    r->at = -1;
    r->ms = 1000;

    char *save = NULL;
    for (char *kv = strtok_r(text, ",", &save); kv != NULL; kv = strtok_r(NULL, ",", &save)) {
        char *v = strchr(kv, '=');
        if (v == NULL) {
            die("'%s': expected key=value", kv);
        }
        *v++ = '\0';
        if (strcmp(kv, "op") == 0) {
            char *s2 = NULL;
            for (char *o = strtok_r(v, "|", &s2); o != NULL; o = strtok_r(NULL, "|", &s2)) {
                size_t i;
                if (strcmp(o, "*") == 0) {
                    r->ops = ~0u;
                    continue;
                }
                for (i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
                    if (strcmp(o, op_names[i].name) == 0) {
                        r->ops |= op_names[i].op;
                        break;
                    }
                }
                if (i == sizeof(op_names) / sizeof(op_names[0])) {
                    die("op=%s: unknown call", o);
                }
            }
        } else if (strcmp(kv, "path") == 0 || strcmp(kv, "thread") == 0 ||
                   strcmp(kv, "if") == 0) {
            char *dst = kv[0] == 'p' ? r->path : kv[0] == 't' ? r->thread : r->armed;
            if (strlen(v) >= MAX_GLOB) {
                die("%s: pattern too long", kv);
            }
            strcpy(dst, v);
        } else if (strcmp(kv, "offset") == 0) {
            r->at = (long long)parse_num(kv, v);
        } else if (strcmp(kv, "after") == 0) {
            r->after = parse_num(kv, v);
        } else if (strcmp(kv, "every") == 0) {
            r->every = parse_num(kv, v);
            if (r->every == 0) {
                die("every=0");
            }
        } else if (strcmp(kv, "count") == 0) {
            r->count = (long)parse_num(kv, v);
        } else if (strcmp(kv, "mode") == 0) {
            if (strcmp(v, "fail") == 0) {
                r->mode = MODE_FAIL;
            } else if (strcmp(v, "short") == 0) {
                r->mode = MODE_SHORT;
            } else if (strcmp(v, "eintr") == 0) {
                r->mode = MODE_EINTR;
            } else if (strcmp(v, "delay") == 0) {
                r->mode = MODE_DELAY;
            } else {
                die("mode=%s: expected fail, short, eintr or delay", v);
            }
        } else if (strcmp(kv, "ms") == 0) {
            r->ms = parse_num(kv, v);
        } else if (strcmp(kv, "err") == 0) {
            size_t i;
            for (i = 0; i < sizeof(err_names) / sizeof(err_names[0]); i++) {
                if (strcmp(v, err_names[i].name) == 0) {
                    r->err = err_names[i].err;
                    break;
                }
            }
            if (i == sizeof(err_names) / sizeof(err_names[0])) {
                r->err = (int)parse_num(kv, v);
            }
        } else {
            die("unknown key '%s'", kv);
        }
    }
    if (r->ops == 0) {
        die("a rule without op=");
    }
    nrules++;
}

__attribute__((constructor)) static void faultinj_init(void)
{
    const char *spec = getenv("FAULTINJ");
    const char *logp = getenv("FAULTINJ_LOG");
    const char *restore = getenv("FAULTINJ_RESTORE_PRELOAD");

    if (spec != NULL) {
        char buf[4096];
        if (strlen(spec) >= sizeof(buf)) {
            die("FAULTINJ too long");
        }
        strcpy(buf, spec);
        char *save = NULL;
        for (char *r = strtok_r(buf, ";", &save); r != NULL; r = strtok_r(NULL, ";", &save)) {
            parse_rule(r);
        }
    }
    if (logp != NULL && strlen(logp) < sizeof(log_path)) {
        strcpy(log_path, logp);
    }
    /* our children run without us */
    if (restore != NULL && restore[0] != '\0') {
        setenv("LD_PRELOAD", restore, 1);
    } else {
        unsetenv("LD_PRELOAD");
    }
    unsetenv("FAULTINJ");
    unsetenv("FAULTINJ_LOG");
    unsetenv("FAULTINJ_RESTORE_PRELOAD");
}

/* ---- deciding --------------------------------------------------------------------- */

static void fd_path(int fd, char *buf, size_t size)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, size - 1);
    buf[n < 0 ? 0 : n] = '\0';
}

static void log_fault(unsigned op, int fd, const char *path, const char *thread,
                      const Rule *r)
{
    if (log_path[0] == '\0') {
        return;
    }
    char line[1024];
    int n = snprintf(line, sizeof(line), "faultinj: %s fd=%d %s thread=%s %s %s\n",
                     op_name(op), fd, path, thread,
                     r->mode == MODE_FAIL    ? "fail"
                     : r->mode == MODE_SHORT ? "short"
                     : r->mode == MODE_EINTR ? "eintr"
                                             : "delay",
                     r->mode == MODE_FAIL ? err_name(r->err) : "-");
    int lfd = (int)syscall(SYS_openat, AT_FDCWD, log_path,
                           O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (lfd >= 0) {
        syscall(SYS_write, lfd, line, (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1));
        syscall(SYS_close, lfd);
    }
}

/* The rule that acts on this call of [off, off+len) (off < 0: not positioned), or NULL. */
static const Rule *decide(unsigned op, int fd, long long off, unsigned long long len)
{
    char path[1024], thread[17];
    bool have_path = false, have_thread = false;

    for (int i = 0; i < nrules; i++) {
        Rule *r = &rules[i];
        if (!(r->ops & op)) {
            continue;
        }
        if (r->at >= 0 && (off < 0 || r->at < off || (unsigned long long)(r->at - off) >= len)) {
            continue;
        }
        if (r->path[0] != '\0') {
            if (!have_path) {
                fd_path(fd, path, sizeof(path));
                have_path = true;
            }
            if (fnmatch(r->path, path, 0) != 0) {
                continue;
            }
        }
        if (r->thread[0] != '\0') {
            if (!have_thread) {
                memset(thread, 0, sizeof(thread));
                prctl(PR_GET_NAME, thread);
                have_thread = true;
            }
            if (fnmatch(r->thread, thread, 0) != 0) {
                continue;
            }
        }
        if (r->armed[0] != '\0' && syscall(SYS_faccessat, AT_FDCWD, r->armed, F_OK) != 0) {
            continue;
        }
        unsigned long n = __atomic_fetch_add(&r->seen, 1, __ATOMIC_RELAXED);
        if (n < r->after || (n - r->after) % r->every != 0) {
            continue;
        }
        if (r->count >= 0 &&
            __atomic_fetch_add(&r->acted, 1, __ATOMIC_RELAXED) >= (unsigned long)r->count) {
            continue;
        }
        if (log_path[0] != '\0') {
            if (!have_path) {
                fd_path(fd, path, sizeof(path));
            }
            if (!have_thread) {
                memset(thread, 0, sizeof(thread));
                prctl(PR_GET_NAME, thread);
            }
            log_fault(op, fd, path, thread, r);
        }
        if (r->mode == MODE_DELAY) {
            struct timespec ts = { .tv_sec = (time_t)(r->ms / 1000),
                                   .tv_nsec = (long)(r->ms % 1000) * 1000000L };
            while (syscall(SYS_nanosleep, &ts, &ts) < 0 && errno == EINTR) {
            }
            return NULL; /* then the call itself */
        }
        return r;
    }
    return NULL;
}

/* For fail and eintr: set errno and return true (the caller returns -1). */
static bool fails(const Rule *r)
{
    if (r == NULL || r->mode == MODE_SHORT) {
        return false;
    }
    errno = r->mode == MODE_EINTR ? EINTR : r->err;
    return true;
}

static size_t shorten(const Rule *r, size_t len)
{
    if (r != NULL && r->mode == MODE_SHORT && len > 1) {
        return len / 2;
    }
    return len;
}

static unsigned long long iov_total(const struct iovec *iov, int cnt)
{
    unsigned long long total = 0;
    for (int i = 0; i < cnt; i++) {
        total += iov[i].iov_len;
    }
    return total;
}

/* Shorten an iovec array to about half its bytes; returns the new count (>= 1). */
static int shorten_iov(const Rule *r, const struct iovec *iov, int cnt, struct iovec *out)
{
    size_t total = 0;
    for (int i = 0; i < cnt; i++) {
        total += iov[i].iov_len;
    }
    size_t want = shorten(r, total);
    int n = 0;
    while (n < cnt && n < IOV_MAX && (want > 0 || n == 0)) {
        out[n] = iov[n];
        if (out[n].iov_len > want) {
            out[n].iov_len = want;
        }
        want -= out[n].iov_len;
        n++;
    }
    return n;
}

/* ---- the wrappers ----------------------------------------------------------------- */

/* real_NAME: the next definition of NAME (a sanitizer's interceptor, or libc's),
 * looked up on first use; several threads may look it up at once and store the same. */
#define REAL(name, type)                                                                   \
    static type real_##name##_ptr;                                                         \
    type real_##name = __atomic_load_n(&real_##name##_ptr, __ATOMIC_ACQUIRE);              \
    if (real_##name == NULL) {                                                             \
        real_##name = (type)dlsym(RTLD_NEXT, #name);                                       \
        if (real_##name == NULL) {                                                         \
            die("dlsym %s: %s", #name, dlerror());                                         \
        }                                                                                  \
        __atomic_store_n(&real_##name##_ptr, real_##name, __ATOMIC_RELEASE);               \
    }

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);
typedef ssize_t (*preadv_fn)(int, const struct iovec *, int, off_t);
typedef int (*sync_fn)(int);
typedef int (*fallocate_fn)(int, int, off_t, off_t);

ssize_t read(int fd, void *buf, size_t len)
{
    REAL(read, read_fn);
    const Rule *r = decide(OP_READ, fd, -1, 0);
    return fails(r) ? -1 : real_read(fd, buf, shorten(r, len));
}

ssize_t write(int fd, const void *buf, size_t len)
{
    REAL(write, write_fn);
    const Rule *r = decide(OP_WRITE, fd, -1, 0);
    return fails(r) ? -1 : real_write(fd, buf, shorten(r, len));
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
    REAL(pread, pread_fn);
    const Rule *r = decide(OP_PREAD, fd, off, len);
    return fails(r) ? -1 : real_pread(fd, buf, shorten(r, len), off);
}

ssize_t pread64(int fd, void *buf, size_t len, off_t off)
{
    REAL(pread64, pread_fn);
    const Rule *r = decide(OP_PREAD, fd, off, len);
    return fails(r) ? -1 : real_pread64(fd, buf, shorten(r, len), off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    REAL(pwrite, pwrite_fn);
    const Rule *r = decide(OP_PWRITE, fd, off, len);
    return fails(r) ? -1 : real_pwrite(fd, buf, shorten(r, len), off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    REAL(pwrite64, pwrite_fn);
    const Rule *r = decide(OP_PWRITE, fd, off, len);
    return fails(r) ? -1 : real_pwrite64(fd, buf, shorten(r, len), off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev, readv_fn);
    const Rule *r = decide(OP_WRITEV, fd, -1, 0);
    if (fails(r)) {
        return -1;
    }
    if (r != NULL && cnt > 0) {
        struct iovec v[IOV_MAX];
        return real_writev(fd, v, shorten_iov(r, iov, cnt, v));
    }
    return real_writev(fd, iov, cnt);
}

#define PRWV(name, opbit)                                                                  \
    ssize_t name(int fd, const struct iovec *iov, int cnt, off_t off)                      \
    {                                                                                      \
        REAL(name, preadv_fn);                                                             \
        const Rule *r = decide(opbit, fd, off, iov_total(iov, cnt));                          \
        if (fails(r)) {                                                                    \
            return -1;                                                                     \
        }                                                                                  \
        if (r != NULL && cnt > 0) {                                                        \
            struct iovec v[IOV_MAX];                                                       \
            return real_##name(fd, v, shorten_iov(r, iov, cnt, v), off);                   \
        }                                                                                  \
        return real_##name(fd, iov, cnt, off);                                             \
    }

PRWV(preadv, OP_PREADV)
PRWV(preadv64, OP_PREADV)
PRWV(pwritev, OP_PWRITEV)
PRWV(pwritev64, OP_PWRITEV)

int fdatasync(int fd)
{
    REAL(fdatasync, sync_fn);
    return fails(decide(OP_FDATASYNC, fd, -1, 0)) ? -1 : real_fdatasync(fd);
}

int fsync(int fd)
{
    REAL(fsync, sync_fn);
    return fails(decide(OP_FSYNC, fd, -1, 0)) ? -1 : real_fsync(fd);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    REAL(fallocate, fallocate_fn);
    return fails(decide(OP_FALLOCATE, fd, off, (unsigned long long)len)) ? -1 : real_fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    REAL(fallocate64, fallocate_fn);
    return fails(decide(OP_FALLOCATE, fd, off, (unsigned long long)len)) ? -1 : real_fallocate64(fd, mode, off, len);
}
