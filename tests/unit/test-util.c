/*
 * test-util.c — unit tests of util/: full I/O, fd closing, bitmaps, size parsing and
 * the rate limiter.
 *
 * Full I/O is driven two ways. The stream forms (read, write, writev) run over real
 * pipes and socketpairs with a tiny buffer, a peer thread that moves a few bytes at a
 * time, and SIGUSR1 (installed without SA_RESTART) sent at the blocked thread, so the
 * kernel produces short transfers and EINTR. The positional forms work on regular
 * files, where the kernel never transfers short; this program therefore defines
 * pread/pwrite/preadv/pwritev itself (the executable's definitions take precedence over
 * libc's for util/io.c's calls): while `chaos` is on, every other call fails with EINTR
 * and the others move at most 3 bytes (of the first iovec only), otherwise they go
 * straight to the system calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "util/bitmap.h"
#include "util/fd.h"
#include "util/io.h"
#include "util/ratelimit.h"
#include "util/size.h"

/* ---- the interposed positional calls ------------------------------------------------ */

static bool chaos;
static unsigned chaos_calls;
static unsigned chaos_eintr;

/* true: fail this call with EINTR; else *len is cut to at most 3 */
static bool chaos_step(size_t *len)
{
    if (!chaos) {
        return false;
    }
    if (chaos_calls++ % 2 == 0) {
        chaos_eintr++;
        errno = EINTR;
        return true;
    }
    *len = MIN(*len, 3);
    return false;
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
    if (chaos_step(&len)) {
        return -1;
    }
    return syscall(SYS_pread64, fd, buf, len, off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (chaos_step(&len)) {
        return -1;
    }
    return syscall(SYS_pwrite64, fd, buf, len, off);
}

ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
    size_t len = iov[0].iov_len;

    if (chaos) {
        if (chaos_step(&len)) {
            return -1;
        }
        return syscall(SYS_pread64, fd, iov[0].iov_base, len, off);
    }
    return syscall(SYS_preadv, fd, iov, cnt, (unsigned long)off, 0UL);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    size_t len = iov[0].iov_len;

    assert_true(cnt <= IOV_MAX);
    if (chaos) {
        if (chaos_step(&len)) {
            return -1;
        }
        return syscall(SYS_pwrite64, fd, iov[0].iov_base, len, off);
    }
    return syscall(SYS_pwritev, fd, iov, cnt, (unsigned long)off, 0UL);
}

/* ---- helpers ------------------------------------------------------------------------ */

static volatile sig_atomic_t signals_seen;

static void on_usr1(int sig)
{
    signals_seen++;
}

static int setup_signal(void **state)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1; /* no SA_RESTART: blocked calls return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 31 + seed + i / 251);
    }
}

static int temp_file(char **path)
{
    GError *err = NULL;
    int fd = g_file_open_tmp("test-util-XXXXXX", path, &err);

    assert_null(err);
    assert_true(fd >= 0);
    return fd;
}

/* A thread that reads a pipe or socket a few bytes at a time, signalling the writer
 * between reads, until EOF; collects what it read. */
typedef struct Drain {
    int fd;
    pthread_t victim;
    GByteArray *got;
} Drain;

static void *drain_thread(void *opaque)
{
    Drain *d = opaque;
    uint8_t buf[700];

    for (unsigned i = 0;; i++) {
        if (i % 4 == 0) {
            pthread_kill(d->victim, SIGUSR1);
            g_usleep(200);
        }
        ssize_t n = read(d->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        assert_true(n >= 0);
        if (n == 0) {
            break;
        }
        g_byte_array_append(d->got, buf, (guint)n);
    }
    return NULL;
}

/* ---- full I/O: streams -------------------------------------------------------------- */

static void test_write_short_and_eintr(void **state)
{
    const size_t len = 256 * 1024;
    g_autofree uint8_t *buf = g_malloc(len);
    int p[2];

    fill_pattern(buf, len, 1);
    assert_int_equal(pipe(p), 0);
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    Drain d = {.fd = p[0], .victim = pthread_self(), .got = g_byte_array_new()};
    pthread_t t;
    signals_seen = 0;
    assert_int_equal(pthread_create(&t, NULL, drain_thread, &d), 0);

    assert_int_equal(full_write(p[1], buf, len), 0);
    close_fd(&p[1]);
    pthread_join(t, NULL);
    assert_true(signals_seen > 0);
    assert_int_equal(d.got->len, len);
    assert_memory_equal(d.got->data, buf, len);
    g_byte_array_unref(d.got);
    close_fd(&p[0]);
}

static void test_writev_socket(void **state)
{
    /* 300 iovecs of odd sizes over a socket with a small send buffer: writev returns
     * short in the middle of an entry, and entries of length 0 are passed over */
    enum { N = 300 };
    struct iovec iov[N];
    g_autofree uint8_t *buf = g_malloc(N * 401);
    size_t total = 0;
    int sv[2], sz = 4096;

    fill_pattern(buf, N * 401, 2);
    for (int i = 0; i < N; i++) {
        size_t l = (i % 7 == 0) ? 0 : (size_t)(i * 13 % 401);
        iov[i].iov_base = buf + total;
        iov[i].iov_len = l;
        total += l;
    }
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    Drain d = {.fd = sv[1], .victim = pthread_self(), .got = g_byte_array_new()};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_thread, &d), 0);

    assert_int_equal(full_writev(sv[0], iov, N), 0);
    close_fd(&sv[0]);
    pthread_join(t, NULL);
    assert_int_equal(d.got->len, total);
    assert_memory_equal(d.got->data, buf, total);
    g_byte_array_unref(d.got);
    close_fd(&sv[1]);
}

typedef struct Feed {
    int fd;
    pthread_t victim;
    const uint8_t *data;
    size_t len;
} Feed;

/* Write a few bytes at a time, signal the reader while it waits for more. */
static void *feed_thread(void *opaque)
{
    Feed *f = opaque;

    for (size_t off = 0; off < f->len;) {
        g_usleep(300);
        pthread_kill(f->victim, SIGUSR1);
        size_t n = MIN((size_t)37, f->len - off);
        assert_int_equal(full_write(f->fd, f->data + off, n), 0);
        off += n;
    }
    close(f->fd);
    return NULL;
}

static void test_read_short_eintr_eof(void **state)
{
    const size_t len = 3000;
    g_autofree uint8_t *src = g_malloc(len);
    g_autofree uint8_t *dst = g_malloc0(len + 100);
    int p[2];

    fill_pattern(src, len, 3);
    assert_int_equal(pipe(p), 0);
    Feed f = {.fd = p[1], .victim = pthread_self(), .data = src, .len = len};
    pthread_t t;
    signals_seen = 0;
    assert_int_equal(pthread_create(&t, NULL, feed_thread, &f), 0);

    /* ask for more than comes: EOF is 0 with done < len */
    size_t done = 12345;
    assert_int_equal(full_read_upto(p[0], dst, len + 100, &done), 0);
    pthread_join(t, NULL);
    assert_true(signals_seen > 0);
    assert_int_equal(done, len);
    assert_memory_equal(dst, src, len);
    close_fd(&p[0]);
}

static void test_stream_errors(void **state)
{
    int p[2];
    uint8_t b[16] = {0};
    size_t done = 99;

    assert_int_equal(full_write(-1, b, sizeof(b)), -EBADF);
    assert_int_equal(full_read_upto(-1, b, sizeof(b), &done), -EBADF);
    assert_int_equal(done, 0);
    assert_int_equal(pipe(p), 0);
    close_fd(&p[0]);
    assert_int_equal(full_write(p[1], b, sizeof(b)), -EPIPE);
    struct iovec iov = {.iov_base = b, .iov_len = sizeof(b)};
    assert_int_equal(full_writev(p[1], &iov, 1), -EPIPE);
    close_fd(&p[1]);
    /* nothing to write is done at once, even on a bad descriptor */
    assert_int_equal(full_write(-1, b, 0), 0);
    assert_int_equal(full_writev(-1, &iov, 0), 0);
}

/* ---- full I/O: positional (chaos) ----------------------------------------------------- */

static void test_pwrite_pread_chaos(void **state)
{
    g_autofree char *path = NULL;
    int fd = temp_file(&path);
    const size_t len = 1000;
    g_autofree uint8_t *src = g_malloc(len);
    g_autofree uint8_t *dst = g_malloc0(len + 50);

    fill_pattern(src, len, 4);
    chaos = true;
    chaos_calls = chaos_eintr = 0;
    assert_int_equal(full_pwrite(fd, src, len, 100), 0);
    assert_true(chaos_eintr > 100); /* about len / 3 */
    assert_int_equal(full_pread(fd, dst, len, 100), 0);
    assert_memory_equal(dst, src, len);

    /* past the end: the strict form says -EIO, the _upto form says how much */
    assert_int_equal(full_pread(fd, dst, len + 50, 100), -EIO);
    size_t done = 0;
    memset(dst, 0, len + 50);
    assert_int_equal(full_pread_upto(fd, dst, len + 50, 100, &done), 0);
    assert_int_equal(done, len);
    assert_memory_equal(dst, src, len);
    assert_int_equal(full_pread_upto(fd, dst, 10, 5000, &done), 0);
    assert_int_equal(done, 0);
    chaos = false;

    assert_int_equal(full_pwrite(-1, src, 1, 0), -EBADF);
    assert_int_equal(full_pread(-1, dst, 1, 0), -EBADF);
    assert_int_equal(full_pread_upto(-1, dst, 1, 0, &done), -EBADF);
    assert_int_equal(done, 0);
    close_fd(&fd);
    g_unlink(path);
}

static void test_pwritev_preadv_chaos(void **state)
{
    g_autofree char *path = NULL;
    int fd = temp_file(&path);
    enum { N = IOV_MAX + 200 }; /* more entries than one call may take */
    static struct iovec iov[N];
    g_autofree uint8_t *src = g_malloc(N * 3);
    g_autofree uint8_t *dst = g_malloc0(N * 3 + 10);
    size_t total = 0;

    fill_pattern(src, N * 3, 5);
    for (int i = 0; i < N; i++) {
        iov[i].iov_base = src + total;
        iov[i].iov_len = (size_t)(i % 4); /* 0, 1, 2, 3 */
        total += iov[i].iov_len;
    }
    /* without chaos: the IOV_MAX split (the interposed pwritev asserts cnt) */
    assert_int_equal(full_pwritev(fd, iov, N, 7), 0);
    size_t done = 0;
    assert_int_equal(full_pread_upto(fd, dst, total + 10, 7, &done), 0);
    assert_int_equal(done, total);
    assert_memory_equal(dst, src, total);

    /* with chaos: short vector transfers in the middle of entries */
    for (int i = 0, o = 0; i < N; o += i % 4, i++) {
        iov[i].iov_base = src + o;
        iov[i].iov_len = (size_t)(i % 4);
    }
    chaos = true;
    chaos_calls = 0;
    assert_int_equal(full_pwritev(fd, iov, N, 1000000), 0);
    struct iovec rio[3] = {
        {.iov_base = dst, .iov_len = 5},
        {.iov_base = dst + 5, .iov_len = 0},
        {.iov_base = dst + 5, .iov_len = total + 5}, /* 5 more than the file has */
    };
    memset(dst, 0, total + 10);
    assert_int_equal(full_preadv_upto(fd, rio, 3, 1000000, &done), 0);
    chaos = false;
    assert_int_equal(done, total);
    assert_memory_equal(dst, src, total);
    close_fd(&fd);
    g_unlink(path);
}

static void test_iov_consume(void **state)
{
    char a[4], b[6], c[2];
    struct iovec v[3] = {{a, 4}, {b, 6}, {c, 2}};
    struct iovec *p = v;
    int cnt = 3;

    iov_consume(&p, &cnt, 0);
    assert_ptr_equal(p, &v[0]);
    assert_int_equal(cnt, 3);
    iov_consume(&p, &cnt, 4); /* exactly the first entry */
    assert_ptr_equal(p, &v[1]);
    assert_int_equal(cnt, 2);
    iov_consume(&p, &cnt, 5); /* into the second */
    assert_ptr_equal(p->iov_base, b + 5);
    assert_int_equal(p->iov_len, 1);
    iov_consume(&p, &cnt, 3); /* the rest */
    assert_int_equal(cnt, 0);
}

/* ---- descriptors -------------------------------------------------------------------- */

static int autofd_holder = -1;

static void open_in_scope(bool keep)
{
    g_autofd int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    assert_true(fd >= 0);
    autofd_holder = fd;
    if (keep) {
        autofd_holder = steal_fd(&fd);
        assert_int_equal(fd, -1);
    }
}

static void test_close_fd(void **state)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int none = -1;

    assert_true(fd >= 0);
    errno = ENOSPC;
    close_fd(&fd);
    assert_int_equal(fd, -1);
    assert_int_equal(errno, ENOSPC); /* kept for the caller's message */
    close_fd(&fd);                   /* twice is fine */
    close_fd(&none);
    assert_int_equal(errno, ENOSPC);

    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_int_equal(close_fd_checked(&fd), 0);
    assert_int_equal(fd, -1);
    assert_int_equal(close_fd_checked(&fd), 0);
    int bad = 1000000;
    assert_int_equal(close_fd_checked(&bad), -EBADF);
    assert_int_equal(bad, -1);

    open_in_scope(false);
    assert_int_equal(fcntl(autofd_holder, F_GETFD), -1); /* closed at scope end */
    open_in_scope(true);
    assert_true(fcntl(autofd_holder, F_GETFD) >= 0);     /* stolen: still open */
    close_fd(&autofd_holder);
}

/* ---- dense bitmap ------------------------------------------------------------------- */

/* Check bm against a bool model bit by bit, and the counts and searches. */
static void check_model(const Bitmap *bm, const bool *model, uint64_t n)
{
    uint64_t count = 0;

    assert_int_equal(bitmap_size(bm), n);
    for (uint64_t i = 0; i < n; i++) {
        assert_int_equal(bitmap_test(bm, i), model[i]);
        count += model[i];
    }
    assert_int_equal(bitmap_count(bm), count);
    for (uint64_t s = 0; s <= n + 1; s++) {
        uint64_t ns = n, nc = n;
        for (uint64_t i = s; i < n; i++) {
            if (model[i] && ns == n) {
                ns = i;
            }
            if (!model[i] && nc == n) {
                nc = i;
            }
        }
        assert_int_equal(bitmap_find_next_set(bm, s), ns);
        assert_int_equal(bitmap_find_next_clear(bm, s), nc);
    }
}

static void test_bitmap_ranges(void **state)
{
    /* sizes around word boundaries: empty, one bit, partial, exact, one past */
    static const uint64_t sizes[] = {0, 1, 63, 64, 65, 127, 128, 130, 200};

    for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
        uint64_t n = sizes[k];
        g_autoptr(Bitmap) bm = bitmap_new(n, false);
        g_autofree bool *model = g_new0(bool, n + 1);
        GRand *rnd = g_rand_new_with_seed((guint32)n);

        check_model(bm, model, n);
        for (int step = 0; step < 60; step++) {
            uint64_t s = n ? (uint64_t)g_rand_int_range(rnd, 0, (gint32)n + 1) : 0;
            uint64_t len = (uint64_t)g_rand_int_range(rnd, 0, (gint32)(n - s) + 1);
            bool set = g_rand_boolean(rnd);
            uint64_t expect = 0;
            for (uint64_t i = s; i < s + len; i++) {
                expect += model[i];
                model[i] = set;
            }
            assert_int_equal(bitmap_count_range(bm, s, len), expect);
            if (set) {
                bitmap_set_range(bm, s, len);
            } else {
                bitmap_clear_range(bm, s, len);
            }
            if (n > 0 && step % 3 == 0) {
                uint64_t b = (uint64_t)g_rand_int_range(rnd, 0, (gint32)n);
                assert_int_equal(bitmap_test_and_set(bm, b), model[b]);
                model[b] = true;
            }
            check_model(bm, model, n);
        }
        g_rand_free(rnd);
    }
}

static void test_bitmap_edges(void **state)
{
    /* all set: the bits past nbits stay clear, so find_next_clear says "none" */
    g_autoptr(Bitmap) bm = bitmap_new(130, true);

    assert_int_equal(bitmap_count(bm), 130);
    assert_int_equal(bitmap_find_next_clear(bm, 0), 130);
    assert_int_equal(bitmap_find_next_set(bm, 129), 129);
    assert_int_equal(bitmap_find_next_set(bm, 130), 130);
    assert_int_equal(bitmap_find_next_set(bm, UINT64_MAX), 130);
    assert_true(bitmap_test_and_clear(bm, 129));
    assert_false(bitmap_test_and_clear(bm, 129));
    assert_int_equal(bitmap_find_next_clear(bm, 0), 129);
    bitmap_clear(bm, 0);
    bitmap_clear(bm, 0);
    assert_int_equal(bitmap_count(bm), 128);
    bitmap_set(bm, 0);
    assert_int_equal(bitmap_find_next_clear(bm, 0), 129);
    /* a range across three words */
    bitmap_clear_range(bm, 60, 70);
    assert_int_equal(bitmap_count(bm), 60);
    assert_int_equal(bitmap_find_next_clear(bm, 0), 60);
    assert_int_equal(bitmap_find_next_set(bm, 60), 130);
    bitmap_set_range(bm, 63, 2);
    assert_int_equal(bitmap_find_next_set(bm, 60), 63);
    assert_int_equal(bitmap_find_next_clear(bm, 63), 65);
    assert_int_equal(bitmap_count_range(bm, 0, 130), 62);
    assert_int_equal(bitmap_count_range(bm, 130, 0), 0);

    g_autoptr(Bitmap) empty = bitmap_new(0, true);
    assert_int_equal(bitmap_count(empty), 0);
    assert_int_equal(bitmap_find_next_set(empty, 0), 0);
    assert_int_equal(bitmap_find_next_clear(empty, 0), 0);
    bitmap_set_range(empty, 0, 0);

    /* a large one: the searches take whole words */
    g_autoptr(Bitmap) big = bitmap_new(UINT64_C(1) << 24, false);
    bitmap_set(big, (UINT64_C(1) << 24) - 1);
    assert_int_equal(bitmap_find_next_set(big, 0), (UINT64_C(1) << 24) - 1);
}

/* ---- sparse bitmap ------------------------------------------------------------------ */

static void test_sparse_bitmap(void **state)
{
    const uint64_t CH = SPARSE_BITMAP_CHUNK_BITS;
    SparseBitmapBudget budget = {.used = 0, .max = 3};
    /* a hostile size: 2^40 bits declared, nothing allocated for it */
    SparseBitmap *a = sparse_bitmap_new(UINT64_C(1) << 40, &budget);
    SparseBitmap *b = sparse_bitmap_new(2 * CH + 10, &budget);

    assert_int_equal(sparse_bitmap_size(a), UINT64_C(1) << 40);
    assert_int_equal(budget.used, 0);
    assert_false(sparse_bitmap_test(a, 12345));
    assert_int_equal(sparse_bitmap_find_next_clear(a, 0), 0);
    assert_int_equal(sparse_bitmap_find_next_clear(a, (UINT64_C(1) << 40) - 1),
                     (UINT64_C(1) << 40) - 1);
    assert_int_equal(sparse_bitmap_find_next_clear(a, UINT64_C(1) << 40), UINT64_C(1) << 40);

    assert_int_equal(sparse_bitmap_test_and_set(a, (UINT64_C(1) << 40) - 1), 1);
    assert_int_equal(sparse_bitmap_test_and_set(a, (UINT64_C(1) << 40) - 1), 0);
    assert_true(sparse_bitmap_test(a, (UINT64_C(1) << 40) - 1));
    assert_int_equal(budget.used, 1);

    /* b: fill chunk 0 fully and the last partial chunk; chunk 1 stays missing */
    for (uint64_t i = 0; i < CH; i++) {
        assert_int_equal(sparse_bitmap_test_and_set(b, i), 1);
    }
    assert_int_equal(sparse_bitmap_find_next_clear(b, 0), CH);
    for (uint64_t i = 2 * CH; i < 2 * CH + 10; i++) {
        assert_int_equal(sparse_bitmap_test_and_set(b, i), 1);
    }
    assert_int_equal(budget.used, 3);
    assert_int_equal(sparse_bitmap_count(b), CH + 10);
    assert_int_equal(sparse_bitmap_find_next_clear(b, 0), CH);
    assert_int_equal(sparse_bitmap_find_next_clear(b, 2 * CH), 2 * CH + 10); /* none */
    /* the budget is shared and used up: a new chunk is refused, changing nothing */
    assert_int_equal(sparse_bitmap_test_and_set(b, CH + 5), -ENOSPC);
    assert_int_equal(sparse_bitmap_test_and_set(a, 0), -ENOSPC);
    assert_false(sparse_bitmap_test(b, CH + 5));
    assert_int_equal(sparse_bitmap_count(b), CH + 10);
    /* bits in chunks that exist still work */
    assert_int_equal(sparse_bitmap_test_and_set(a, (UINT64_C(1) << 40) - 2), 1);
    assert_int_equal(sparse_bitmap_count(a), 2);
    /* a hole inside an allocated chunk */
    SparseBitmapBudget none = {.used = 0, .max = UINT64_MAX};
    SparseBitmap *c = sparse_bitmap_new(100, &none);
    for (uint64_t i = 0; i < 100; i++) {
        if (i != 64 && i != 99) {
            assert_int_equal(sparse_bitmap_test_and_set(c, i), 1);
        }
    }
    assert_int_equal(sparse_bitmap_find_next_clear(c, 0), 64);
    assert_int_equal(sparse_bitmap_find_next_clear(c, 65), 99);
    assert_int_equal(sparse_bitmap_test_and_set(c, 99), 1);
    assert_int_equal(sparse_bitmap_find_next_clear(c, 65), 100);
    sparse_bitmap_free(c);
    assert_int_equal(none.used, 0);

    sparse_bitmap_free(b);
    assert_int_equal(budget.used, 1); /* freeing gives the chunks back */
    sparse_bitmap_free(a);
    assert_int_equal(budget.used, 0);
    sparse_bitmap_free(NULL);

    g_autoptr(SparseBitmap) u = sparse_bitmap_new(10, NULL); /* no budget */
    assert_int_equal(sparse_bitmap_test_and_set(u, 9), 1);
    assert_int_equal(sparse_bitmap_find_next_clear(u, 9), 10);
}

/* ---- sizes -------------------------------------------------------------------------- */

static void test_size_accepted(void **state)
{
    static const struct {
        const char *text;
        uint64_t v;
    } ok[] = {
        {"0", 0},
        {"512", 512},
        {"007", 7},
        {"64K", 64 << 10},
        {"64k", 64 << 10},
        {"64KB", 64 << 10},
        {"64kb", 64 << 10},
        {"64KiB", 64 << 10},
        {"64kib", 64 << 10},
        {"256M", UINT64_C(256) << 20},
        {"10MB", UINT64_C(10) << 20},
        {"2m", UINT64_C(2) << 20},
        {"1G", UINT64_C(1) << 30},
        {"1GiB", UINT64_C(1) << 30},
        {"1g", UINT64_C(1) << 30},
        {"1T", UINT64_C(1) << 40},
        {"1TiB", UINT64_C(1) << 40},
        {"16777215T", UINT64_C(16777215) << 40},
        {"18446744073709551615", UINT64_MAX},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++) {
        g_autoptr(GError) err = NULL;
        uint64_t v = 1;
        if (!size_parse("--x", ok[i].text, 0, UINT64_MAX, &v, &err)) {
            fail_msg("'%s': %s", ok[i].text, err->message);
        }
        assert_int_equal(v, ok[i].v);
    }
}

static void test_size_refused(void **state)
{
    static const char *const bad[] = {
        "", "-1", "+1", " 1", "1 ", "K", "B", "1B", "0x10", "1.5G", "1e3", "10Q", "1KK",
        "1KBB", "1KiBB", "1iB", "1Ki", "1k b", "1\n", "12Q",
    };
    static const char *const big[] = {
        "18446744073709551616", "99999999999999999999999", "16777216T", "16777216TiB",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;
        uint64_t v = 77;
        assert_false(size_parse("--speed", bad[i], 0, UINT64_MAX, &v, &err));
        assert_int_equal(v, 77);
        assert_true(g_error_matches(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE));
        g_autofree char *want = g_strdup_printf(
            "--speed: '%s' is not a size (a byte count, or a number with K, M, G or T, "
            "as in 64K, 10MB or 1GiB)", bad[i]);
        assert_string_equal(err->message, want);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(big); i++) {
        g_autoptr(GError) err = NULL;
        uint64_t v = 77;
        assert_false(size_parse("--speed", big[i], 0, UINT64_MAX, &v, &err));
        g_autofree char *want = g_strdup_printf(
            "--speed: '%s' is too large: at most 18446744073709551615", big[i]);
        assert_string_equal(err->message, want);
    }
    /* junk after an overflowing number is reported as junk */
    g_autoptr(GError) e1 = NULL;
    uint64_t v = 0;
    assert_false(size_parse(NULL, "99999999999999999999x", 0, UINT64_MAX, &v, &e1));
    assert_non_null(strstr(e1->message, "is not a size"));
    assert_true(g_str_has_prefix(e1->message, "'99999999999999999999x'")); /* no option */
}

static void test_size_limits(void **state)
{
    uint64_t v = 0;
    g_autoptr(GError) e1 = NULL;
    g_autoptr(GError) e2 = NULL;
    g_autoptr(GError) e3 = NULL;

    assert_true(size_parse("--backup-buffer-size", "64K", 64 << 10, UINT64_MAX, &v, NULL));
    assert_int_equal(v, 64 << 10);
    assert_false(size_parse("--backup-buffer-size", "65535", 64 << 10, UINT64_MAX, &v, &e1));
    assert_string_equal(e1->message,
                        "--backup-buffer-size: '65535' is too small: at least 64K");
    assert_true(size_parse("--speed", "8388607T", 0, G_MAXINT64, &v, NULL));
    assert_false(size_parse("--speed", "8388608T", 0, G_MAXINT64, &v, &e2));
    assert_string_equal(e2->message, "--speed: '8388608T' is too large: at most "
                                     "9223372036854775807");
    assert_false(size_parse("--x", "2G", 0, UINT64_C(1) << 30, &v, &e3));
    assert_string_equal(e3->message, "--x: '2G' is too large: at most 1G");
}

static void test_size_format(void **state)
{
    static const struct {
        uint64_t v;
        const char *text;
    } cases[] = {
        {0, "0"}, {1, "1"}, {1000, "1000"}, {1024, "1K"}, {65536, "64K"},
        {UINT64_C(3) << 20, "3M"}, {(UINT64_C(1) << 30) + 1024, "1048577K"},
        {UINT64_C(5) << 40, "5T"}, {UINT64_MAX, "18446744073709551615"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *s = size_format(cases[i].v);
        assert_string_equal(s, cases[i].text);
        /* what it prints parses back to the same value */
        uint64_t v = 0;
        assert_true(size_parse(NULL, s, 0, UINT64_MAX, &v, NULL));
        assert_int_equal(v, cases[i].v);
    }
}

/* ---- rate limiter ------------------------------------------------------------------- */

static void test_ratelimit(void **state)
{
    RateLimit rl;

    /* unlimited: always now, nothing accumulates */
    ratelimit_init(&rl, 0);
    assert_int_equal(ratelimit_reserve(&rl, 1 << 20, 500), 500);
    assert_int_equal(ratelimit_next(&rl), 0);

    /* 1 MiB/s: the first request goes at once, each later one when the ones before are
     * paid for */
    ratelimit_init(&rl, 1 << 20);
    assert_int_equal(ratelimit_reserve(&rl, 512 << 10, 1000), 1000);
    assert_int_equal(ratelimit_next(&rl), 1000 + 500000);
    assert_int_equal(ratelimit_reserve(&rl, 512 << 10, 1001), 1000 + 500000);
    assert_int_equal(ratelimit_next(&rl), 1000 + 1000000);
    assert_int_equal(ratelimit_reserve(&rl, 0, 2000), 2000); /* nothing: no wait */
    assert_int_equal(ratelimit_next(&rl), 1000 + 1000000);

    /* idle time is not saved up */
    assert_int_equal(ratelimit_reserve(&rl, 1 << 20, 10000000), 10000000);
    assert_int_equal(ratelimit_next(&rl), 11000000);

    /* fractions of a microsecond are carried: 3 bytes at 2 MB/s is 1.5 us */
    ratelimit_init(&rl, 2000000);
    int64_t t = 0;
    for (int i = 0; i < 1000; i++) {
        t = ratelimit_reserve(&rl, 3, 0);
    }
    assert_int_equal(t, 1498);    /* 999 * 1.5, rounded down */
    assert_int_equal(ratelimit_next(&rl), 1500);

    /* huge values neither overflow nor wrap */
    ratelimit_init(&rl, 1);
    assert_int_equal(ratelimit_reserve(&rl, UINT64_MAX, 0), 0);
    assert_int_equal(ratelimit_next(&rl), INT64_MAX);
    ratelimit_init(&rl, UINT64_MAX);
    assert_int_equal(ratelimit_reserve(&rl, UINT64_MAX, 7), 7);
    assert_int_equal(ratelimit_next(&rl), 7 + 1000000);

    /* a new speed applies to what comes next */
    ratelimit_init(&rl, 1000);
    ratelimit_reserve(&rl, 1000, 0);
    ratelimit_set_speed(&rl, 2000);
    assert_int_equal(ratelimit_reserve(&rl, 1000, 0), 1000000);
    assert_int_equal(ratelimit_next(&rl), 1500000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_short_and_eintr),
        cmocka_unit_test(test_writev_socket),
        cmocka_unit_test(test_read_short_eintr_eof),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_pwrite_pread_chaos),
        cmocka_unit_test(test_pwritev_preadv_chaos),
        cmocka_unit_test(test_iov_consume),
        cmocka_unit_test(test_close_fd),
        cmocka_unit_test(test_bitmap_ranges),
        cmocka_unit_test(test_bitmap_edges),
        cmocka_unit_test(test_sparse_bitmap),
        cmocka_unit_test(test_size_accepted),
        cmocka_unit_test(test_size_refused),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_size_format),
        cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests(tests, setup_signal, NULL);
}
