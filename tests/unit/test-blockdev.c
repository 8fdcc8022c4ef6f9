/*
 * test-blockdev.c — unit tests of the block layer (blockdev.c).
 *
 * Data is checked against an in-memory model of the disk: every write is applied to
 * the model too, and the whole disk is compared after each step.
 *
 * The O_DIRECT test needs a file system that accepts O_DIRECT (tmpfs does not), so it
 * works in a directory under $BUILDDIR (the build tree) and is skipped, saying why,
 * when even that refuses O_DIRECT.
 *
 * The hook test runs writer threads on two disks while the hook is installed on both
 * and checks the atomicity the header promises: no write that passed without the hook
 * started after a hooked write had finished, and every write that started after the
 * install returned was hooked, with its exact range.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "blockdev.h"

/* ---- helpers ---- */

static GPtrArray *tmpdirs; /* created and not yet removed (a failed test leaves some) */

static void rm_tmpdir(const char *dir);

static char *make_tmpdir_raw(bool in_build_tree);

static char *make_tmpdir(bool in_build_tree)
{
    char *dir = make_tmpdir_raw(in_build_tree);

    if (tmpdirs == NULL) {
        tmpdirs = g_ptr_array_new_with_free_func(g_free);
    }
    g_ptr_array_add(tmpdirs, g_strdup(dir));
    return dir;
}

static int remove_leftovers(void **state)
{
    if (tmpdirs != NULL) {
        while (tmpdirs->len > 0) {
            rm_tmpdir(g_ptr_array_index(tmpdirs, tmpdirs->len - 1));
        }
        g_clear_pointer(&tmpdirs, g_ptr_array_unref);
    }
    blockdev_close_all();
    return 0;
}

static char *make_tmpdir_raw(bool in_build_tree)
{
    g_autoptr(GError) err = NULL;
    char *dir;

    if (in_build_tree) {
        const char *b = getenv("BUILDDIR");
        g_autofree char *tmpl = g_build_filename(b && *b ? b : ".", "tmp-blockdev-XXXXXX", NULL);
        dir = g_mkdtemp(g_steal_pointer(&tmpl));
        if (dir == NULL) {
            fail_msg("mkdtemp in the build tree: %s", g_strerror(errno));
        }
        return dir;
    }
    dir = g_dir_make_tmp("test-blockdev-XXXXXX", &err);
    if (dir == NULL) {
        fail_msg("make temp dir: %s", err->message);
    }
    return dir;
}

static void rm_tmpdir(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(dir, name, NULL);
        g_unlink(p);
    }
    g_rmdir(dir);
    for (guint i = 0; tmpdirs != NULL && i < tmpdirs->len; i++) {
        if (strcmp(g_ptr_array_index(tmpdirs, i), dir) == 0) {
            g_ptr_array_remove_index(tmpdirs, i);
            break;
        }
    }
}

static char *make_file(const char *dir, const char *name, uint64_t size)
{
    char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
    return path;
}

static BlockDev *add_disk(const char *node, const char *path, bool ro, bool direct)
{
    g_autoptr(GError) err = NULL;
    BlockDevOptions o = { .node_name = node, .filename = path, .read_only = ro,
                          .direct = direct };

    if (!blockdev_add(&o, &err)) {
        fail_msg("blockdev_add %s: %s", node, err->message);
    }
    BlockDev *bd = blockdev_find(node, &err);
    assert_non_null(bd);
    return bd;
}

static void drop_disk(BlockDev *bd)
{
    g_autofree char *name = g_strdup(blockdev_get_name(bd));
    g_autoptr(GError) err = NULL;

    blockdev_unref(bd);
    if (!blockdev_del(name, &err)) {
        fail_msg("blockdev_del %s: %s", name, err->message);
    }
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 9)) ^ seed);
    }
}

static void check_disk(BlockDev *bd, const uint8_t *model, uint64_t size)
{
    g_autofree uint8_t *buf = g_malloc(size);

    assert_int_equal(blockdev_pread(bd, buf, size, 0), 0);
    for (uint64_t i = 0; i < size; i++) {
        if (buf[i] != model[i]) {
            fail_msg("byte %" PRIu64 " is 0x%02x, expected 0x%02x", i, buf[i], model[i]);
        }
    }
}

static uint64_t allocated_bytes(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

/* ---- registry ---- */

static void test_registry(void **state)
{
    g_autofree char *dir = make_tmpdir(false);
    g_autofree char *path = make_file(dir, "a.raw", 1 << 20);
    g_autoptr(GError) err = NULL;
    BlockDevOptions o = { .node_name = "drive-a", .filename = path };

    assert_true(blockdev_add(&o, &err));
    assert_false(blockdev_add(&o, &err));
    assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_EXISTS));
    g_clear_error(&err);

    /* its own image: a read-only node of a file another node writes is refused */
    g_autofree char *path_b = make_file(dir, "b.raw", 1 << 20);
    BlockDevOptions o2 = { .node_name = "drive-b", .filename = path_b, .read_only = true };
    assert_true(blockdev_add(&o2, &err));

    GPtrArray *list = blockdev_list();
    assert_int_equal(list->len, 2);
    assert_string_equal(blockdev_get_name(g_ptr_array_index(list, 0)), "drive-a");
    assert_string_equal(blockdev_get_name(g_ptr_array_index(list, 1)), "drive-b");
    for (guint i = 0; i < list->len; i++) {
        blockdev_unref(g_ptr_array_index(list, i));
    }
    g_ptr_array_unref(list);

    BlockDev *bd = blockdev_find("drive-a", &err);
    assert_non_null(bd);
    assert_int_equal(blockdev_get_size(bd), 1 << 20);
    assert_false(blockdev_is_read_only(bd));
    assert_string_equal(blockdev_get_filename(bd), path);
    /* in use: cannot be deleted */
    assert_false(blockdev_del("drive-a", &err));
    assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_BUSY));
    g_clear_error(&err);
    blockdev_unref(bd);
    assert_true(blockdev_del("drive-a", &err));
    assert_null(blockdev_find("drive-a", &err));
    assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND));
    g_clear_error(&err);
    assert_false(blockdev_del("drive-a", &err));
    g_clear_error(&err);

    /* failures carry node and path */
    BlockDevOptions bad = { .node_name = "drive-x", .filename = "/nonexistent/x.raw" };
    assert_false(blockdev_add(&bad, &err));
    assert_non_null(strstr(err->message, "drive-x"));
    assert_non_null(strstr(err->message, "/nonexistent/x.raw"));
    g_clear_error(&err);
    BlockDevOptions isdir = { .node_name = "drive-d", .filename = dir };
    assert_false(blockdev_add(&isdir, &err));
    assert_non_null(strstr(err->message, "drive-d"));
    g_clear_error(&err);
    g_autofree char *fifo = g_build_filename(dir, "fifo", NULL);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    BlockDevOptions notfile = { .node_name = "drive-f", .filename = fifo };
    assert_false(blockdev_add(&notfile, &err));
    assert_non_null(strstr(err->message, "not a regular file or block device"));
    g_clear_error(&err);
    BlockDevOptions noname = { .node_name = "", .filename = path };
    assert_false(blockdev_add(&noname, &err));
    g_clear_error(&err);

    blockdev_close_all();
    assert_null(blockdev_find("drive-b", &err));
    g_clear_error(&err);
    rm_tmpdir(dir);
}

/* ---- I/O ---- */

static void test_read_write(void **state)
{
    const uint64_t size = 1 << 20;
    g_autofree char *dir = make_tmpdir(false);
    g_autofree char *path = make_file(dir, "rw.raw", size);
    g_autofree uint8_t *model = g_malloc0(size);
    g_autofree uint8_t *buf = g_malloc(size);
    BlockDev *bd = add_disk("rw", path, false, false);

    check_disk(bd, model, size);
    struct { uint64_t off, len; } w[] = {
        { 0, 4096 }, { 1, 1 }, { 4095, 2 }, { 1000, 70000 }, { size - 3, 3 },
        { 65536, 131072 }, { size - 4096, 4096 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(w); i++) {
        fill_pattern(buf, w[i].len, (unsigned)i + 1);
        assert_int_equal(blockdev_pwrite(bd, buf, w[i].len, w[i].off, i % 2 ? BLOCKDEV_FUA : 0), 0);
        memcpy(model + w[i].off, buf, w[i].len);
        check_disk(bd, model, size);
    }
    /* ranges */
    assert_int_equal(blockdev_pread(bd, buf, 1, size), -EINVAL);
    assert_int_equal(blockdev_pread(bd, buf, 2, size - 1), -EINVAL);
    assert_int_equal(blockdev_pread(bd, buf, 4096, UINT64_MAX - 100), -EINVAL);
    assert_int_equal(blockdev_pwrite(bd, buf, 2, size - 1, 0), -ENOSPC);
    assert_int_equal(blockdev_write_zeroes(bd, 4096, size, 0), -ENOSPC);
    assert_int_equal(blockdev_discard(bd, 4096, size - 1), -EINVAL);
    assert_int_equal(blockdev_pread(bd, buf, 0, size), 0);
    assert_int_equal(blockdev_flush(bd), 0);
    check_disk(bd, model, size);
    drop_disk(bd);

    /* read-only */
    bd = add_disk("ro", path, true, false);
    assert_true(blockdev_is_read_only(bd));
    check_disk(bd, model, size);
    assert_int_equal(blockdev_pwrite(bd, buf, 1, 0, 0), -EPERM);
    assert_int_equal(blockdev_write_zeroes(bd, 1, 0, 0), -EPERM);
    assert_int_equal(blockdev_discard(bd, 4096, 0), -EPERM);
    assert_int_equal(blockdev_flush(bd), 0);
    drop_disk(bd);
    rm_tmpdir(dir);
}

static void test_zeroes_discard_status(void **state)
{
    const uint64_t size = 4 << 20;
    g_autofree char *dir = make_tmpdir(false);
    g_autofree char *path = make_file(dir, "z.raw", size);
    g_autofree uint8_t *model = g_malloc0(size);
    g_autofree uint8_t *buf = g_malloc(size);
    BlockDev *bd = add_disk("z", path, false, false);
    uint64_t pnum;
    bool hole;

    /* all hole */
    assert_int_equal(blockdev_block_status(bd, 0, size, &pnum, &hole), 0);
    assert_true(hole);
    assert_int_equal(pnum, size);

    fill_pattern(buf, size, 9);
    assert_int_equal(blockdev_pwrite(bd, buf, size, 0, 0), 0);
    memcpy(model, buf, size);
    assert_int_equal(blockdev_block_status(bd, 0, size, &pnum, &hole), 0);
    assert_false(hole);
    assert_int_equal(pnum, size);

    /* write-zeroes, unmapping: reads zero, and (where punching works) becomes a hole */
    assert_int_equal(blockdev_write_zeroes(bd, 1 << 20, 1 << 20, 0), 0);
    memset(model + (1 << 20), 0, 1 << 20);
    check_disk(bd, model, size);
    assert_int_equal(blockdev_block_status(bd, 0, size, &pnum, &hole), 0);
    assert_false(hole);
    assert_int_equal(pnum, 1 << 20);
    assert_int_equal(blockdev_block_status(bd, 1 << 20, size - (1 << 20), &pnum, &hole), 0);
    if (hole) {
        assert_int_equal(pnum, 1 << 20);
    } else {
        print_message("note: the file system did not punch a hole\n");
    }
    assert_int_equal(blockdev_block_status(bd, 2 << 20, 4096, &pnum, &hole), 0);
    assert_false(hole);
    assert_int_equal(pnum, 4096);

    /* unaligned write-zeroes */
    assert_int_equal(blockdev_write_zeroes(bd, 10001, 3000000, 0), 0);
    memset(model + 3000000, 0, 10001);
    check_disk(bd, model, size);

    /* NO_UNMAP keeps the blocks allocated */
    uint64_t before = allocated_bytes(path);
    assert_int_equal(blockdev_write_zeroes(bd, 512 << 10, 2 << 20, BLOCKDEV_NO_UNMAP | BLOCKDEV_FUA), 0);
    memset(model + (2 << 20), 0, 512 << 10);
    check_disk(bd, model, size);
    assert_true(allocated_bytes(path) >= before);

    /* FAST_ZERO: zero quickly or refuse with -ENOTSUP, never write slowly */
    int r = blockdev_write_zeroes(bd, 65536, 65536, BLOCKDEV_FAST_ZERO);
    assert_true(r == 0 || r == -ENOTSUP);
    if (r == 0) {
        memset(model + 65536, 0, 65536);
    }
    check_disk(bd, model, size);

    /* discard: a hint; where it punches, the range reads as zeros and is a hole */
    assert_int_equal(blockdev_discard(bd, 1 << 20, 3 << 20), 0);
    assert_int_equal(blockdev_block_status(bd, 3 << 20, 1 << 20, &pnum, &hole), 0);
    if (hole) {
        memset(model + (3 << 20), 0, 1 << 20);
        assert_int_equal(pnum, 1 << 20);
    }
    check_disk(bd, model, size);

    /* invalid status queries */
    assert_int_equal(blockdev_block_status(bd, size, 1, &pnum, &hole), -EINVAL);
    assert_int_equal(blockdev_block_status(bd, 0, 0, &pnum, &hole), -EINVAL);
    drop_disk(bd);
    rm_tmpdir(dir);
}

/* ---- O_DIRECT ---- */

typedef struct DirectWriter {
    BlockDev *bd;
    uint8_t *model;
    unsigned id;
    unsigned nthreads;
    int errors;
} DirectWriter;

/* Thread i writes the bytes j with j % nthreads == i, in short runs, so that every
 * 512-byte block is modified by all threads: only a working range lock around the
 * read-modify-write keeps all their bytes. */
static gpointer direct_writer(gpointer opaque)
{
    DirectWriter *w = opaque;
    uint8_t b[7];

    for (uint64_t base = 0; base < 64 * 1024; base += 7 * w->nthreads) {
        uint64_t off = base + 7 * w->id;
        memset(b, (int)(0x10 + w->id), sizeof(b));
        if (blockdev_pwrite(w->bd, b, sizeof(b), off, 0) != 0) {
            w->errors++;
        }
        memcpy(w->model + off, b, sizeof(b));
    }
    return NULL;
}

static void test_direct_unaligned(void **state)
{
    g_autofree char *dir = make_tmpdir(true);
    const uint64_t size = (1 << 20) + 1000; /* the last block is partial */
    g_autofree char *path = make_file(dir, "d.raw", size);
    g_autoptr(GError) err = NULL;
    BlockDevOptions o = { .node_name = "direct0", .filename = path, .direct = true };

    if (!blockdev_add(&o, &err)) {
        rm_tmpdir(dir);
        if (strstr(err->message, "O_DIRECT not supported") != NULL) {
            print_message("skipping: %s\n", err->message);
            skip();
        }
        fail_msg("%s", err->message);
    }
    BlockDev *bd = blockdev_find("direct0", NULL);
    assert_true(blockdev_is_direct(bd));
    g_autofree uint8_t *model = g_malloc0(size);
    g_autofree uint8_t *raw = g_malloc(size + 64);
    uint8_t *buf = raw + 3; /* deliberately misaligned memory */

    struct { uint64_t off, len; } w[] = {
        { 0, 4096 }, { 1, 1 }, { 511, 2 }, { 4095, 4098 }, { 100, 300000 },
        { size - 1000, 1000 }, { size - 5000, 5000 }, { size - 1, 1 }, { 1 << 19, 1 << 19 },
        { 12345, 1048576 - 12345 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(w); i++) {
        fill_pattern(buf, w[i].len, (unsigned)i + 40);
        assert_int_equal(blockdev_pwrite(bd, buf, w[i].len, w[i].off, 0), 0);
        memcpy(model + w[i].off, buf, w[i].len);
        check_disk(bd, model, size);
        /* unaligned reads of the same range into misaligned memory */
        assert_int_equal(blockdev_pread(bd, buf, w[i].len, w[i].off), 0);
        assert_memory_equal(buf, model + w[i].off, w[i].len);
    }
    /* aligned buffer, aligned range: the direct path */
    void *al = NULL;
    assert_int_equal(posix_memalign(&al, 4096, 65536), 0);
    fill_pattern(al, 65536, 77);
    assert_int_equal(blockdev_pwrite(bd, al, 65536, 65536, BLOCKDEV_FUA), 0);
    memcpy(model + 65536, al, 65536);
    assert_int_equal(blockdev_write_zeroes(bd, 3333, 70000, BLOCKDEV_NO_UNMAP), 0);
    memset(model + 70000, 0, 3333);
    check_disk(bd, model, size);
    free(al);
    /* the file did not grow */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, size);

    /* concurrent unaligned writers sharing blocks */
    enum { NT = 4 };
    DirectWriter dw[NT];
    GThread *t[NT];
    for (unsigned i = 0; i < NT; i++) {
        dw[i] = (DirectWriter){ .bd = bd, .model = model, .id = i, .nthreads = NT };
        t[i] = g_thread_new("dw", direct_writer, &dw[i]);
    }
    for (unsigned i = 0; i < NT; i++) {
        g_thread_join(t[i]);
        assert_int_equal(dw[i].errors, 0);
    }
    check_disk(bd, model, size);

    /* the bytes are on disk as seen without O_DIRECT */
    assert_int_equal(blockdev_flush(bd), 0);
    g_autofree char *contents = NULL;
    gsize len = 0;
    assert_true(g_file_get_contents(path, &contents, &len, NULL));
    assert_int_equal(len, size);
    assert_memory_equal(contents, model, size);

    drop_disk(bd);
    rm_tmpdir(dir);
}

/* ---- hooks ---- */

enum { HOOK_WRITERS = 4, HOOK_WRITES = 4000 };

typedef struct HookState {
    gint clock;                /* atomic event counter */
    gint installed_at;         /* clock value after install returned; 0 before */
    gint max_unhooked_start;   /* max start tick of a write that was not hooked */
    gint min_hooked_end;       /* min end tick of a hooked write */
    gint late_unhooked;        /* writes started after install returned, not hooked */
    gint wrong_range;          /* hook saw a range other than the write's */
    gint hook_calls;
    gint hook_running;
    gint stop;
    gint errors;               /* failed writes (threads must not assert) */
    gint removing;             /* set just before blockdev_hooks_remove() */
    gint removed;              /* hook_calls value when remove returned, or -1 */
    gint calls_after_remove;
} HookState;

typedef struct HookThread {
    HookState *hs;
    BlockDev *bd;
    unsigned id;
    /* set before each write, read by the hook on the same thread */
    uint64_t cur_off, cur_len;
    bool hooked;
} HookThread;

static GPrivate current_thread;

static int test_hook(void *opaque, BlockDev *bd, uint64_t offset, uint64_t len)
{
    HookState *hs = opaque;
    HookThread *ht = g_private_get(&current_thread);

    g_atomic_int_inc(&hs->hook_running);
    g_atomic_int_inc(&hs->hook_calls);
    if (g_atomic_int_get(&hs->removed) >= 0) {
        g_atomic_int_inc(&hs->calls_after_remove);
    }
    if (ht != NULL) {
        if (ht->bd != bd || ht->cur_off != offset || ht->cur_len != len) {
            g_atomic_int_inc(&hs->wrong_range);
        }
        ht->hooked = true;
        if (ht->id == 0) {
            g_usleep(200); /* a slow hook: install/remove must wait for it */
        }
    }
    g_atomic_int_dec_and_test(&hs->hook_running);
    return ht != NULL && ht->id == 1 ? -EIO : 0; /* a failing hook does not fail writes */
}

static void atomic_max(gint *p, gint v)
{
    gint old;
    do {
        old = g_atomic_int_get(p);
    } while (v > old && !g_atomic_int_compare_and_exchange(p, old, v));
}

static void atomic_min(gint *p, gint v)
{
    gint old;
    do {
        old = g_atomic_int_get(p);
    } while (v < old && !g_atomic_int_compare_and_exchange(p, old, v));
}

static gpointer hook_writer(gpointer opaque)
{
    HookThread *ht = opaque;
    HookState *hs = ht->hs;
    uint8_t buf[512];
    uint64_t size = blockdev_get_size(ht->bd);

    g_private_set(&current_thread, ht);
    memset(buf, (int)ht->id, sizeof(buf));
    for (unsigned i = 0; i < HOOK_WRITES && !g_atomic_int_get(&hs->stop); i++) {
        ht->cur_off = ((uint64_t)i * 4096 + ht->id * 512 + 7) % (size - 1024);
        ht->cur_len = 1 + (i % 3) * 200;
        ht->hooked = false;
        gint installed = g_atomic_int_get(&hs->installed_at);
        gint start = g_atomic_int_add(&hs->clock, 1) + 1;
        int r;
        switch (i % 5) {
        case 3:
            r = blockdev_write_zeroes(ht->bd, ht->cur_len, ht->cur_off, 0);
            break;
        case 4:
            r = blockdev_discard(ht->bd, ht->cur_len, ht->cur_off);
            break;
        default:
            r = blockdev_pwrite(ht->bd, buf, ht->cur_len, ht->cur_off, 0);
            break;
        }
        gint end = g_atomic_int_add(&hs->clock, 1) + 1;
        /* read after the write: a removal that began while it ran may rightly leave it
         * unhooked; one that had not begun by its end may not */
        gint removing = g_atomic_int_get(&hs->removing);
        if (r != 0) {
            g_atomic_int_inc(&hs->errors);
        }
        if (ht->hooked) {
            atomic_min(&hs->min_hooked_end, end);
        } else {
            atomic_max(&hs->max_unhooked_start, start);
            if (installed != 0 && !removing) {
                g_atomic_int_inc(&hs->late_unhooked);
            }
        }
    }
    return NULL;
}

static void test_hooks_atomic(void **state)
{
    g_autofree char *dir = make_tmpdir(false);
    g_autofree char *pa = make_file(dir, "ha.raw", 8 << 20);
    g_autofree char *pb = make_file(dir, "hb.raw", 8 << 20);
    BlockDev *bds[2] = { add_disk("hook-a", pa, false, false), add_disk("hook-b", pb, false, false) };
    HookState hs = { .min_hooked_end = G_MAXINT, .removed = -1 };
    HookThread ht[HOOK_WRITERS];
    GThread *t[HOOK_WRITERS];
    g_autoptr(GError) err = NULL;

    for (unsigned i = 0; i < HOOK_WRITERS; i++) {
        ht[i] = (HookThread){ .hs = &hs, .bd = bds[i % 2], .id = i };
        t[i] = g_thread_new("hook-writer", hook_writer, &ht[i]);
    }
    g_usleep(2000);
    assert_true(blockdev_hooks_install(bds, 2, test_hook, &hs, &err));
    g_atomic_int_set(&hs.installed_at, g_atomic_int_add(&hs.clock, 1) + 1);

    /* a second hook on the same disks is refused */
    assert_false(blockdev_hooks_install(bds + 1, 1, test_hook, &hs, &err));
    assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_BUSY));
    g_clear_error(&err);

    g_usleep(20000);
    g_atomic_int_set(&hs.removing, 1);
    blockdev_hooks_remove(bds, 2);
    /* remove returned: no hook call is running, and none starts any more */
    assert_int_equal(g_atomic_int_get(&hs.hook_running), 0);
    g_atomic_int_set(&hs.removed, g_atomic_int_get(&hs.hook_calls));
    for (unsigned i = 0; i < HOOK_WRITERS; i++) {
        g_thread_join(t[i]);
    }

    print_message("hook calls %d, max unhooked start %d, min hooked end %d\n",
                  hs.hook_calls, hs.max_unhooked_start, hs.min_hooked_end);
    assert_true(hs.hook_calls > 0);
    assert_int_equal(hs.wrong_range, 0);
    assert_int_equal(hs.late_unhooked, 0);
    assert_int_equal(hs.calls_after_remove, 0);
    assert_int_equal(hs.errors, 0);

    /* Atomicity, in a run where the hook stays installed to the end (after a removal,
     * unhooked writes follow hooked ones legitimately). */
    HookState hs2 = { .min_hooked_end = G_MAXINT, .removed = -1 };
    for (unsigned i = 0; i < HOOK_WRITERS; i++) {
        ht[i] = (HookThread){ .hs = &hs2, .bd = bds[i % 2], .id = i };
        t[i] = g_thread_new("hook-writer", hook_writer, &ht[i]);
    }
    g_usleep(2000);
    assert_true(blockdev_hooks_install(bds, 2, test_hook, &hs2, &err));
    g_atomic_int_set(&hs2.installed_at, g_atomic_int_add(&hs2.clock, 1) + 1);
    for (unsigned i = 0; i < HOOK_WRITERS; i++) {
        g_thread_join(t[i]);
    }
    print_message("run 2: hook calls %d, max unhooked start %d, min hooked end %d\n",
                  hs2.hook_calls, hs2.max_unhooked_start, hs2.min_hooked_end);
    assert_true(hs2.hook_calls > 0);
    assert_int_equal(hs2.wrong_range, 0);
    assert_int_equal(hs2.late_unhooked, 0);
    assert_int_equal(hs2.errors, 0);
    /* one instant separates unhooked from hooked writes, across both disks */
    assert_true(hs2.max_unhooked_start < hs2.min_hooked_end);
    blockdev_hooks_remove(bds, 2);

    drop_disk(bds[0]);
    drop_disk(bds[1]);
    rm_tmpdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_zeroes_discard_status),
        cmocka_unit_test(test_direct_unaligned),
        cmocka_unit_test(test_hooks_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, remove_leftovers);
}
