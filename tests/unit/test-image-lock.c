/*
 * test-image-lock.c — block/image-lock.c against the kernel's OFD locks: the bytes a raw
 * node takes, the conflicts between two opens of one file in one process (an open file
 * description each, as two processes would have), QEMU's messages, and that a refused
 * open leaves no byte behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

#include "block/image-lock.h"

typedef struct Fixture {
    char *dir;
    char *path;
} Fixture;

static int setup(void **state)
{
    Fixture *f = g_new0(Fixture, 1);

    f->dir = g_dir_make_tmp("test-image-lock.XXXXXX", NULL);
    assert_non_null(f->dir);
    f->path = g_build_filename(f->dir, "a.raw", NULL);
    assert_true(g_file_set_contents(f->path, "", 0, NULL));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;

    g_unlink(f->path);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
    g_free(f);
    return 0;
}

static int open_rw(const Fixture *f)
{
    int fd = open(f->path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* The bytes in [0, 300) some other open file description holds, as a string of offsets
 * ("100 101 ..."), seen from a fresh descriptor. */
static char *held_bytes(const Fixture *f)
{
    int fd = open_rw(f);
    GString *s = g_string_new(NULL);

    for (int off = 0; off < 300; off++) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
        assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
        if (fl.l_type != F_UNLCK) {
            g_string_append_printf(s, "%s%d", s->len ? " " : "", off);
        }
    }
    close(fd);
    return g_string_free(s, FALSE);
}

static void expect_refused(const Fixture *f, int fd, bool read_only, const char *first)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *want = g_strdup_printf("%s. Is another process using the image [%s]?",
                                            first, f->path);

    assert_false(image_lock_open(fd, f->path, read_only, NULL, &err));
    assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_BUSY));
    assert_string_equal(err->message, want);
}

static void test_parse_and_perms(void **state)
{
    ImageLocking m = IMAGE_LOCKING_OFF;
    g_autoptr(GError) err = NULL;
    unsigned perm = 0, shared = 0;

    assert_true(image_locking_parse(NULL, &m, &err) && m == IMAGE_LOCKING_AUTO);
    assert_true(image_locking_parse("auto", &m, &err) && m == IMAGE_LOCKING_AUTO);
    assert_true(image_locking_parse("on", &m, &err) && m == IMAGE_LOCKING_ON);
    assert_true(image_locking_parse("off", &m, &err) && m == IMAGE_LOCKING_OFF);
    assert_false(image_locking_parse("yes", &m, &err));
    assert_string_equal(err->message, "Parameter 'locking' does not accept value 'yes'");

    image_lock_raw_perms(false, &perm, &shared);
    assert_int_equal(perm, IMAGE_PERM_CONSISTENT_READ | IMAGE_PERM_WRITE | IMAGE_PERM_RESIZE);
    assert_int_equal(shared, IMAGE_PERM_CONSISTENT_READ | IMAGE_PERM_WRITE_UNCHANGED);
    image_lock_raw_perms(true, &perm, &shared);
    assert_int_equal(perm, IMAGE_PERM_CONSISTENT_READ);
    assert_int_equal(shared, IMAGE_PERM_CONSISTENT_READ | IMAGE_PERM_WRITE_UNCHANGED);
}

static void test_bytes(void **state)
{
    Fixture *f = *state;
    g_autoptr(GError) err = NULL;
    int fd = open_rw(f);

    assert_true(image_lock_open(fd, f->path, false, "on", &err));
    g_autofree char *rw = held_bytes(f);
    assert_string_equal(rw, "100 101 103 201 203");
    close(fd);
    g_autofree char *none = held_bytes(f);
    assert_string_equal(none, "");

    fd = open_rw(f);
    assert_true(image_lock_open(fd, f->path, true, "auto", &err));
    g_autofree char *ro = held_bytes(f);
    assert_string_equal(ro, "100 201 203");
    close(fd);

    fd = open_rw(f);
    assert_true(image_lock_open(fd, f->path, false, "off", &err));
    g_autofree char *off = held_bytes(f);
    assert_string_equal(off, "");
    assert_false(image_lock_open(fd, f->path, false, "x", &err));
    assert_string_equal(err->message, "Parameter 'locking' does not accept value 'x'");
    close(fd);
}

static void test_conflicts(void **state)
{
    Fixture *f = *state;
    g_autoptr(GError) err = NULL;
    int a = open_rw(f), b = open_rw(f), c = open_rw(f);

    /* a writer excludes writers and readers (they do not share write) */
    assert_true(image_lock_open(a, f->path, false, NULL, &err));
    expect_refused(f, b, false, "Failed to get \"write\" lock");
    expect_refused(f, b, true, "Failed to get shared \"write\" lock");
    /* locking=off neither takes nor checks */
    assert_true(image_lock_open(b, f->path, false, "off", &err));
    /* once a is gone, nothing is held: the refused opens of b left no byte behind */
    close(a);
    g_autofree char *after = held_bytes(f);
    assert_string_equal(after, "");

    /* readers share; a writer then finds them */
    assert_true(image_lock_open(b, f->path, true, NULL, &err));
    assert_true(image_lock_open(c, f->path, true, NULL, &err));
    a = open_rw(f);
    expect_refused(f, a, false, "Failed to get \"write\" lock");

    /* a QEMU writer that shares everything (qemu-io on a raw file: bytes 100, 101) */
    close(b);
    close(c);
    assert_true(image_lock_apply(a, IMAGE_PERM_CONSISTENT_READ | IMAGE_PERM_WRITE,
                                 IMAGE_PERM_ALL, true, f->path, &err));
    b = open_rw(f);
    expect_refused(f, b, false, "Failed to get shared \"write\" lock");
    expect_refused(f, b, true, "Failed to get shared \"write\" lock");
    close(a);
    close(b);
}

/* Someone holding an exclusive lock on one of the bytes (not QEMU's protocol, but
 * possible): "Failed to lock byte N", and the bytes locked before it are released. */
static void test_lock_failure(void **state)
{
    Fixture *f = *state;
    g_autoptr(GError) err = NULL;
    int x = open_rw(f), a = open_rw(f);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 103, .l_len = 1};

    assert_int_equal(fcntl(x, F_OFD_SETLK, &fl), 0);
    assert_false(image_lock_open(a, f->path, false, NULL, &err));
    assert_string_equal(err->message, "Failed to lock byte 103");
    close(x);
    g_autofree char *left = held_bytes(f);
    assert_string_equal(left, "");
    close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_perms),
        cmocka_unit_test_setup_teardown(test_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
