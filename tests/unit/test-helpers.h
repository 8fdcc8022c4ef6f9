/*
 * test-helpers.h — what the cmocka programs in tests/unit/ share, so that no test keeps
 * its own copy: temporary directories and files, whole-file reads, the path of a file in
 * tests/data, a reproducible byte pattern, big-endian stores and loads for hand-built
 * wire data, socket transfers that fail the test when short, and a descriptor check.
 *
 * Every helper that can fail ends the current test with fail_msg() and a message naming
 * the object, so a caller never checks a result. Header-only (static inline): each
 * tests/unit/test-*.c is a program of its own, linked from its one object file.
 *
 * Include after <cmocka.h> (which needs <setjmp.h>, <stdarg.h>, <stddef.h> first).
 */
#ifndef VMA_TEST_HELPERS_H
#define VMA_TEST_HELPERS_H

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

/* A new empty directory under $TMPDIR (or /tmp) named PREFIX-XXXXXX; g_free the path,
 * th_tmpdir_remove the directory. */
static inline char *th_tmpdir_new(const char *prefix)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *tmpl = g_strdup_printf("%s-XXXXXX", prefix);
    char *dir = g_dir_make_tmp(tmpl, &err);

    if (dir == NULL) {
        fail_msg("make a temporary directory %s: %s", tmpl, err->message);
    }
    return dir;
}

/* The same in $BUILDDIR (or the current directory): a file system that accepts O_DIRECT,
 * which a tmpfs /tmp does not. */
static inline char *th_tmpdir_new_in_build(const char *prefix)
{
    const char *b = g_getenv("BUILDDIR");
    g_autofree char *name = g_strdup_printf("%s-XXXXXX", prefix);
    char *tmpl = g_build_filename(b != NULL && *b != '\0' ? b : ".", name, NULL);

    if (g_mkdtemp(tmpl) == NULL) {
        int e = errno;
        g_free(tmpl);
        fail_msg("make a temporary directory %s in the build tree: %s", name, g_strerror(e));
    }
    return tmpl;
}

/* Remove DIR and everything below it (it need not exist). */
static inline void th_tmpdir_remove(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    if (d != NULL) {
        while ((name = g_dir_read_name(d)) != NULL) {
            g_autofree char *p = g_build_filename(dir, name, NULL);
            if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK)) {
                th_tmpdir_remove(p);
            } else {
                g_unlink(p);
            }
        }
        g_dir_close(d);
    }
    g_rmdir(dir);
}

/* DIR/NAME, created or truncated, SIZE bytes long and all holes; returns its path. */
static inline char *th_file_new(const char *dir, const char *name, uint64_t size)
{
    char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0) {
        fail_msg("create %s: %s", path, g_strerror(errno));
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        fail_msg("truncate %s to %" G_GUINT64_FORMAT ": %s", path, size, g_strerror(errno));
    }
    close(fd);
    return path;
}

/* DIR/NAME holding exactly LEN bytes of DATA; returns its path. */
static inline char *th_file_write(const char *dir, const char *name, const void *data,
                                  size_t len)
{
    g_autoptr(GError) err = NULL;
    char *path = g_build_filename(dir, name, NULL);

    if (!g_file_set_contents(path, data, (gssize)len, &err)) {
        fail_msg("write %s: %s", path, err->message);
    }
    return path;
}

/* The whole content of PATH. */
static inline GBytes *th_file_read(const char *path)
{
    g_autoptr(GError) err = NULL;
    char *contents = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &contents, &len, &err)) {
        fail_msg("read %s: %s", path, err->message);
    }
    return g_bytes_new_take(contents, len);
}

/* The path of NAME in the test data directory: $TESTDATA (tests/run.sh sets it), else
 * tests/data relative to the current directory. */
static inline char *th_testdata_path(const char *name)
{
    const char *dir = g_getenv("TESTDATA");

    return g_build_filename(dir != NULL && *dir != '\0' ? dir : "tests/data", name, NULL);
}

/* The whole content of NAME in the test data directory. */
static inline GBytes *th_testdata_read(const char *name)
{
    g_autofree char *path = th_testdata_path(name);

    return th_file_read(path);
}

/* LEN bytes of a pattern that depends on SEED and on every byte's offset (a block
 * written at the wrong place or from the wrong seed differs). */
static inline void th_fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 9)) ^ seed);
    }
}

/* Store V big-endian at BUF + POS; return the position after it. */
static inline size_t th_put_be16(uint8_t *buf, size_t pos, uint16_t v)
{
    v = htobe16(v);
    memcpy(buf + pos, &v, sizeof(v));
    return pos + sizeof(v);
}

static inline size_t th_put_be32(uint8_t *buf, size_t pos, uint32_t v)
{
    v = htobe32(v);
    memcpy(buf + pos, &v, sizeof(v));
    return pos + sizeof(v);
}

static inline size_t th_put_be64(uint8_t *buf, size_t pos, uint64_t v)
{
    v = htobe64(v);
    memcpy(buf + pos, &v, sizeof(v));
    return pos + sizeof(v);
}

/* The big-endian value at P. */
static inline uint32_t th_get_be32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return be32toh(v);
}

static inline uint64_t th_get_be64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return be64toh(v);
}

/* Send all LEN bytes on socket FD (no SIGPIPE), or fail the test. */
static inline void th_send_all(int fd, const void *buf, size_t len)
{
    ssize_t r = send(fd, buf, len, MSG_NOSIGNAL);

    if (r != (ssize_t)len) {
        fail_msg("send %zu bytes: %s", len, r < 0 ? g_strerror(errno) : "short send");
    }
}

/* Receive exactly LEN bytes from socket FD: 0, or -1 at EOF or on an error (a test of
 * a peer that hangs up expects that; the caller asserts). */
static inline int th_recv_all(int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t r = recv(fd, (char *)buf + got, len - got, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Whether FD is an open descriptor of this process. */
static inline bool th_fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

#endif /* VMA_TEST_HELPERS_H */
