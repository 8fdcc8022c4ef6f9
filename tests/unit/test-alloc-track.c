/*
 * test-alloc-track.c — unit tests of the alloc-track driver (block/alloc-track.c) and of
 * the block-stream job over it (block/stream.c).
 *
 * Every test builds the live-restore graph of the issue on real files: a backing disk
 * "arch0" (random data with holes), an empty target "tgt0" and the alloc-track node
 * "drive-scsi0" over both, and checks what the node reads, what lands on the target file,
 * and what the record in the state directory says.
 *
 * The race tests make a backing read block (a test filter over arch0 whose reads wait
 * for a gate), so that a copy holds its clusters at a known moment, and check that a
 * guest write to the same cluster waits for the copy and wins, and that a read during a
 * partial write's fill sees the write.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "block/alloc-track.h"
#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "block/job.h"
#include "block/stream.h"
#include "blockdev.h"

#define CL ALLOC_TRACK_CLUSTER
#define NCL 64u
#define SIZE ((uint64_t)NCL * CL)

typedef struct Fixture {
    char *dir;
    char *src;       /* backing file */
    char *tgt;       /* target file */
    char *state;     /* state directory */
    uint8_t *data;   /* the backing's content */
} Fixture;

static void write_file(const char *path, const void *buf, uint64_t len)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

static void read_file_at(const char *path, void *buf, uint64_t len, uint64_t off)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void add(const char *node, const char *file, bool ro)
{
    g_autoptr(GError) err = NULL;
    BlockDevOptions o = {.node_name = node, .filename = file, .read_only = ro};
    if (!blockdev_add(&o, &err)) {
        fail_msg("add %s: %s", node, err->message);
    }
}

static bool add_track(GError **errp)
{
    BlockDevOptions o = {.node_name = "drive-scsi0", .driver = "alloc-track", .file = "tgt0",
                         .backing = "arch0"};
    return blockdev_add(&o, errp);
}

static void open_graph(void)
{
    g_autoptr(GError) err = NULL;
    if (!add_track(&err)) {
        fail_msg("add drive-scsi0: %s", err->message);
    }
}

/* Backing: random data, clusters 10..19 a hole (zeros); target: empty (sparse). */
static int setup(void **state)
{
    Fixture *f = g_new0(Fixture, 1);
    f->dir = g_dir_make_tmp("test-alloc-track-XXXXXX", NULL);
    assert_non_null(f->dir);
    f->src = g_build_filename(f->dir, "src.raw", NULL);
    f->tgt = g_build_filename(f->dir, "tgt.raw", NULL);
    f->state = g_build_filename(f->dir, "state", NULL);
    f->data = g_malloc(SIZE);
    for (uint64_t i = 0; i < SIZE; i++) {
        f->data[i] = (uint8_t)g_random_int();
    }
    memset(f->data + 10 * CL, 0, 10 * CL);
    write_file(f->src, f->data, SIZE);
    int fd = open(f->src, O_RDWR);
    assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               10 * CL, 10 * CL), 0);
    close(fd);
    fd = open(f->tgt, O_CREAT | O_TRUNC | O_RDWR, 0600);
    assert_int_equal(ftruncate(fd, (off_t)SIZE), 0);
    close(fd);
    dirty_state_set_dir(f->state);
    add("arch0", f->src, true);
    add("tgt0", f->tgt, false);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    stream_shutdown();
    blockdev_close_all();
    dirty_state_set_dir(NULL);
    g_autoptr(GDir) d = g_dir_open(f->state, 0, NULL);
    const char *name;
    while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(f->state, name, NULL);
        g_unlink(p);
    }
    g_rmdir(f->state);
    g_unlink(f->src);
    g_unlink(f->tgt);
    g_rmdir(f->dir);
    g_free(f->dir);
    g_free(f->src);
    g_free(f->tgt);
    g_free(f->state);
    g_free(f->data);
    g_free(f);
    return 0;
}

static BlockDev *disk(const char *name)
{
    BlockDev *bd = blockdev_find(name, NULL);
    assert_non_null(bd);
    return bd;
}

/* Is cluster c set in the record file? */
static bool record_bit(Fixture *f, uint64_t c)
{
    g_autofree char *path = alloc_track_record_path(f->state, "drive-scsi0", f->tgt);
    uint8_t b = 0;
    read_file_at(path, &b, 1, 4096 + c / 8);
    return (b >> (c % 8)) & 1;
}

static uint64_t allocated(void)
{
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    g_autoptr(BlockNode) n = blockdev_get_base(bd);
    return alloc_track_allocated_bytes(n);
}

/* ---- tests ---- */

static void test_copy_on_read(void **state)
{
    Fixture *f = *state;
    open_graph();
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    g_autofree uint8_t *buf = g_malloc(3 * CL);
    g_autofree uint8_t *on_tgt = g_malloc(3 * CL);

    assert_int_equal(allocated(), 0);
    /* unaligned, across three clusters */
    assert_int_equal(blockdev_pread(bd, buf, 2 * CL + 100, 3 * CL + 7), 0);
    assert_memory_equal(buf, f->data + 3 * CL + 7, 2 * CL + 100);
    /* the three whole clusters are on the target now */
    read_file_at(f->tgt, on_tgt, 3 * CL, 3 * CL);
    assert_memory_equal(on_tgt, f->data + 3 * CL, 3 * CL);
    assert_int_equal(allocated(), 3 * CL);
    /* the copies are marked lazily: in the record only after a sync */
    g_autoptr(BlockNode) n = blockdev_get_base(bd);
    assert_int_equal(alloc_track_sync(n), 0);
    assert_true(record_bit(f, 3) && record_bit(f, 4) && record_bit(f, 5));
    assert_false(record_bit(f, 6));
}

static void test_partial_write(void **state)
{
    Fixture *f = *state;
    open_graph();
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    g_autofree uint8_t *buf = g_malloc(2 * CL);
    uint8_t w[100];

    memset(w, 0xab, sizeof(w));
    /* 100 bytes inside cluster 7 and the head of cluster 30 (write-zeroes) */
    assert_int_equal(blockdev_pwrite(bd, w, sizeof(w), 7 * CL + 1000, 0), 0);
    assert_int_equal(blockdev_write_zeroes(bd, 4096, 30 * CL, 0), 0);
    /* the rest of each cluster is the backing's, on the target too */
    memcpy(f->data + 7 * CL + 1000, w, sizeof(w));
    memset(f->data + 30 * CL, 0, 4096);
    assert_int_equal(blockdev_pread(bd, buf, CL, 7 * CL), 0);
    assert_memory_equal(buf, f->data + 7 * CL, CL);
    read_file_at(f->tgt, buf, CL, 7 * CL);
    assert_memory_equal(buf, f->data + 7 * CL, CL);
    read_file_at(f->tgt, buf, CL, 30 * CL);
    assert_memory_equal(buf, f->data + 30 * CL, CL);
    /* guest writes are in the record before they are acknowledged */
    assert_true(record_bit(f, 7));
    assert_true(record_bit(f, 30));
    assert_false(record_bit(f, 8));
    /* a discard of a whole cluster marks it too */
    assert_int_equal(blockdev_discard(bd, CL, 40 * CL), 0);
    assert_true(record_bit(f, 40));
}

/* A cluster copied on read (marked, not yet recorded) and then written by the guest must
 * be recorded before the write returns, or a resumed restore would copy over it. */
static void test_write_after_copy_is_recorded(void **state)
{
    Fixture *f = *state;
    open_graph();
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    g_autofree uint8_t *buf = g_malloc(CL);

    assert_int_equal(blockdev_pread(bd, buf, CL, 12 * CL), 0);   /* hole: zeros */
    assert_false(record_bit(f, 12));
    memset(buf, 0x5a, CL);
    assert_int_equal(blockdev_pwrite(bd, buf, CL, 12 * CL, 0), 0);
    assert_true(record_bit(f, 12));
}

static void test_block_status(void **state)
{
    open_graph();
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    uint64_t pnum = 0;
    bool hole = false;
    uint8_t w[512] = {1};

    /* unallocated: the backing's status (data, then its hole at clusters 10..19) */
    assert_int_equal(blockdev_block_status(bd, 0, SIZE, &pnum, &hole), 0);
    assert_false(hole);
    assert_int_equal(pnum, 10 * CL);
    assert_int_equal(blockdev_block_status(bd, 10 * CL, SIZE - 10 * CL, &pnum, &hole), 0);
    assert_true(hole);
    assert_int_equal(pnum, 10 * CL);
    /* allocated: the target's status (a written cluster is data there) */
    assert_int_equal(blockdev_pwrite(bd, w, sizeof(w), 15 * CL, 0), 0);
    assert_int_equal(blockdev_block_status(bd, 15 * CL, CL, &pnum, &hole), 0);
    assert_false(hole);
    assert_int_equal(blockdev_block_status(bd, 14 * CL, 2 * CL, &pnum, &hole), 0);
    assert_true(hole);
    assert_int_equal(pnum, CL);
}

/* ---- races: a backing whose reads wait at a gate ---- */

typedef struct Gate {
    GMutex lock;
    GCond cond;
    bool armed;        /* reads wait while armed */
    unsigned waiting;  /* reads waiting now */
} Gate;

static Gate gate;

static int gate_preadv(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                       uint64_t offset)
{
    g_mutex_lock(&gate.lock);
    gate.waiting++;
    g_cond_broadcast(&gate.cond);
    while (gate.armed) {
        g_cond_wait(&gate.cond, &gate.lock);
    }
    gate.waiting--;
    g_mutex_unlock(&gate.lock);
    return bnode_preadv(n->child, iov, iovcnt, offset);
}

static const BlockDriver gate_filter = {
    .name = "test-gate",
    .is_filter = true,
    .preadv = gate_preadv,
};

static BlockNode *gate_insert(void)
{
    g_autoptr(BlockDev) arch = disk("arch0");
    g_autoptr(BlockNode) top = blockdev_get_top(arch);
    BlockNode *filter = bnode_new_filter(&gate_filter, top, NULL);
    BlockDev *bds[1] = {arch};
    assert_true(blockdev_insert_filters(bds, 1, &filter, NULL));
    g_mutex_lock(&gate.lock);
    gate.armed = true;
    g_mutex_unlock(&gate.lock);
    return filter;
}

static void gate_wait_reader(void)
{
    g_mutex_lock(&gate.lock);
    while (gate.waiting == 0) {
        g_cond_wait(&gate.cond, &gate.lock);
    }
    g_mutex_unlock(&gate.lock);
}

static void gate_open(void)
{
    g_mutex_lock(&gate.lock);
    gate.armed = false;
    g_cond_broadcast(&gate.cond);
    g_mutex_unlock(&gate.lock);
}

static void gate_remove(BlockNode *filter)
{
    g_autoptr(BlockDev) arch = disk("arch0");
    BlockDev *bds[1] = {arch};
    blockdev_remove_filters(bds, 1, &filter);
    bnode_unref(filter);
}

typedef struct Op {
    BlockDev *bd;
    uint8_t *buf;
    uint64_t len, off;
    bool write;
    gint done;
    int r;
} Op;

static gpointer op_main(gpointer opaque)
{
    Op *op = opaque;
    op->r = op->write ? blockdev_pwrite(op->bd, op->buf, op->len, op->off, 0)
                      : blockdev_pread(op->bd, op->buf, op->len, op->off);
    g_atomic_int_set(&op->done, 1);
    return NULL;
}

static void test_write_wins_over_copy(void **state)
{
    Fixture *f = *state;
    open_graph();
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    BlockNode *filter = gate_insert();
    g_autofree uint8_t *rbuf = g_malloc(CL);
    g_autofree uint8_t *wbuf = g_malloc(CL);
    memset(wbuf, 0xee, CL);

    /* a read of cluster 5 copies it and is held inside the backing read */
    Op rd = {.bd = bd, .buf = rbuf, .len = CL, .off = 5 * CL};
    GThread *t1 = g_thread_new("read", op_main, &rd);
    gate_wait_reader();
    /* a guest write of the whole cluster must wait for that copy */
    Op wr = {.bd = bd, .buf = wbuf, .len = CL, .off = 5 * CL, .write = true};
    GThread *t2 = g_thread_new("write", op_main, &wr);
    g_usleep(100 * 1000);
    assert_int_equal(g_atomic_int_get(&wr.done), 0);
    gate_open();
    g_thread_join(t1);
    g_thread_join(t2);
    assert_int_equal(rd.r, 0);
    assert_int_equal(wr.r, 0);
    assert_memory_equal(rbuf, f->data + 5 * CL, CL);   /* the read saw the old data */
    /* the write landed after the copy: the target has the guest's data */
    read_file_at(f->tgt, rbuf, CL, 5 * CL);
    assert_memory_equal(rbuf, wbuf, CL);
    assert_int_equal(blockdev_pread(bd, rbuf, CL, 5 * CL), 0);
    assert_memory_equal(rbuf, wbuf, CL);
    gate_remove(filter);
}

static void test_read_waits_for_partial_write(void **state)
{
    Fixture *f = *state;
    open_graph();
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    BlockNode *filter = gate_insert();
    g_autofree uint8_t *rbuf = g_malloc(CL);
    uint8_t w[512];
    memset(w, 0x77, sizeof(w));

    /* a partial write of cluster 9 fills it from the backing first: held there */
    Op wr = {.bd = bd, .buf = w, .len = sizeof(w), .off = 9 * CL + 512, .write = true};
    GThread *t1 = g_thread_new("write", op_main, &wr);
    gate_wait_reader();
    Op rd = {.bd = bd, .buf = rbuf, .len = CL, .off = 9 * CL};
    GThread *t2 = g_thread_new("read", op_main, &rd);
    g_usleep(100 * 1000);
    assert_int_equal(g_atomic_int_get(&rd.done), 0);
    gate_open();
    g_thread_join(t1);
    g_thread_join(t2);
    assert_int_equal(wr.r, 0);
    assert_int_equal(rd.r, 0);
    memcpy(f->data + 9 * CL + 512, w, sizeof(w));
    assert_memory_equal(rbuf, f->data + 9 * CL, CL);
    gate_remove(filter);
}

/* ---- stream, drop, resume ---- */

static void test_stream_chunks_and_drop(void **state)
{
    Fixture *f = *state;
    open_graph();
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    g_autoptr(BlockNode) n = blockdev_get_base(bd);
    g_autofree uint8_t *buf = g_malloc(SIZE);
    uint8_t w[4096];
    uint64_t copied = 0;

    memset(w, 0x33, sizeof(w));
    assert_int_equal(blockdev_pwrite(bd, w, sizeof(w), 50 * CL + 4096, 0), 0);
    memcpy(f->data + 50 * CL + 4096, w, sizeof(w));
    g_autoptr(GError) err = NULL;
    assert_false(alloc_track_drop_backing(n, &err));
    assert_non_null(strstr(err->message, "not restored yet"));
    assert_int_equal(alloc_track_stream_chunk(n, 0, SIZE, &copied), 0);
    /* the hole (10 clusters) and the written cluster were not read from the backing */
    assert_int_equal(copied, (uint64_t)(NCL - 11) * CL);
    assert_int_equal(alloc_track_next_unallocated(n, 0), SIZE);
    assert_true(alloc_track_drop_backing(n, NULL));
    for (uint64_t c = 0; c < NCL; c++) {
        assert_true(record_bit(f, c));   /* the drop recorded everything */
    }
    g_autofree char *name = alloc_track_backing_name(n);
    assert_null(name);
    /* the backing is unused: it can go, and the disk still reads right */
    assert_true(blockdev_del("arch0", NULL));
    assert_int_equal(blockdev_pread(bd, buf, SIZE, 0), 0);
    assert_memory_equal(buf, f->data, SIZE);
    read_file_at(f->tgt, buf, SIZE, 0);
    assert_memory_equal(buf, f->data, SIZE);
}

static void test_resume_keeps_guest_writes(void **state)
{
    Fixture *f = *state;
    open_graph();
    g_autofree uint8_t *buf = g_malloc(SIZE);
    uint8_t w[4096];

    memset(w, 0x42, sizeof(w));
    {
        g_autoptr(BlockDev) bd = disk("drive-scsi0");
        assert_int_equal(blockdev_pwrite(bd, w, sizeof(w), 20 * CL, 0), 0);
        assert_int_equal(blockdev_pread(bd, buf, CL, 2 * CL), 0);
    }
    memcpy(f->data + 20 * CL, w, sizeof(w));
    /* "restart": close everything, open the same graph again */
    blockdev_close_all();
    add("arch0", f->src, true);
    add("tgt0", f->tgt, false);
    open_graph();
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    g_autoptr(BlockNode) n = blockdev_get_base(bd);
    /* the written cluster and the copied one (recorded at close) count as restored */
    assert_int_equal(alloc_track_allocated_bytes(n), 2 * CL);
    uint64_t copied = 0;
    assert_int_equal(alloc_track_stream_chunk(n, 0, SIZE, &copied), 0);
    assert_int_equal(blockdev_pread(bd, buf, SIZE, 0), 0);
    assert_memory_equal(buf, f->data, SIZE);
}

static void test_record_of_another_restore(void **state)
{
    Fixture *f = *state;
    open_graph();
    blockdev_close_all();
    /* same node name, a backing of another size */
    g_autofree char *other = g_build_filename(f->dir, "other.raw", NULL);
    write_file(other, f->data, SIZE / 2);
    add("arch0", other, true);
    add("tgt0", f->tgt, false);
    g_autoptr(GError) err = NULL;
    assert_false(add_track(&err));
    assert_non_null(strstr(err->message, "belongs to another restore"));
    g_unlink(other);
}

static void test_open_errors(void **state)
{
    g_autoptr(GError) err = NULL;
    BlockDevOptions o = {.node_name = "x", .driver = "alloc-track", .file = "tgt0",
                         .backing = "nope"};
    assert_false(blockdev_add(&o, &err));
    assert_string_equal(err->message, "add x: backing: Cannot find node-name='nope'");
    g_clear_error(&err);
    o.backing = "tgt0";
    assert_false(blockdev_add(&o, &err));
    assert_non_null(strstr(err->message, "two other nodes"));
    g_clear_error(&err);
    o.file = "arch0";
    o.backing = "tgt0";
    assert_false(blockdev_add(&o, &err));
    assert_non_null(strstr(err->message, "read-only"));
}

/* ---- the job ---- */

static GMutex ev_lock;
static GString *ev_log;

static void on_event(const JobEvent *ev, void *opaque)
{
    g_mutex_lock(&ev_lock);
    if (ev->kind == JOB_EVENT_STATUS_CHANGE) {
        g_string_append_printf(ev_log, "%s:%s ", ev->id, ev->status);
    } else {
        g_string_append_printf(ev_log, "%s:%s(%s,%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT
                               "%s%s) ", ev->id,
                               ev->kind == JOB_EVENT_COMPLETED ? "COMPLETED" : "CANCELLED",
                               ev->type, ev->len, ev->offset, ev->error ? "," : "",
                               ev->error ? ev->error : "");
    }
    g_mutex_unlock(&ev_lock);
}

static void test_stream_job(void **state)
{
    Fixture *f = *state;
    open_graph();
    ev_log = g_string_new("");
    job_set_event_handler(on_event, NULL);
    g_autoptr(GError) err = NULL;

    StreamOptions o = {.job_id = "r0", .device = "drive-scsi0"};
    assert_true(stream_start(&o, &err));
    assert_false(stream_start(&o, &err));
    assert_string_equal(err->message, "Job ID 'r0' already in use");
    g_clear_error(&err);
    stream_wait();
    assert_string_equal(ev_log->str, "r0:created r0:running r0:waiting r0:pending "
                                     "r0:COMPLETED(stream,4194304,4194304) r0:concluded "
                                     "r0:null ");
    g_autoptr(BlockDev) bd = disk("drive-scsi0");
    g_autofree uint8_t *buf = g_malloc(SIZE);
    read_file_at(f->tgt, buf, SIZE, 0);
    assert_memory_equal(buf, f->data, SIZE);
    assert_true(blockdev_del("arch0", NULL));

    /* nothing left to do: completes at once with len 0 */
    g_string_truncate(ev_log, 0);
    o.job_id = NULL;
    assert_true(stream_start(&o, &err));
    stream_wait();
    assert_string_equal(ev_log->str, "drive-scsi0:created drive-scsi0:running "
                                     "drive-scsi0:waiting drive-scsi0:pending "
                                     "drive-scsi0:COMPLETED(stream,0,0) "
                                     "drive-scsi0:concluded drive-scsi0:null ");
    job_set_event_handler(NULL, NULL);
    g_string_free(ev_log, TRUE);
}

static void test_stream_errors(void **state)
{
    open_graph();
    g_autoptr(GError) err = NULL;
    struct {
        StreamOptions o;
        const char *msg;
    } cases[] = {
        {{.device = "nope"}, "Cannot find device='nope' nor node-name='nope'"},
        {{.device = "drive-scsi0", .speed = -1}, "Parameter 'speed' expects a non-negative value"},
        {{.device = "drive-scsi0", .job_id = "1x"}, "Invalid job ID '1x'"},
        {{.device = "drive-scsi0", .base = "a", .base_node = "b"},
         "'base' and 'base-node' cannot be specified at the same time"},
        {{.device = "drive-scsi0", .base = "a"}, "Can't find 'a' in the backing chain"},
        {{.device = "drive-scsi0", .base_node = "tgt0"},
         "Node 'tgt0' is not a backing image of 'drive-scsi0'"},
        {{.device = "drive-scsi0", .backing_file = "x"},
         "backing file specified, but streaming the entire chain"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        assert_false(stream_start(&cases[i].o, &err));
        assert_string_equal(err->message, cases[i].msg);
        g_clear_error(&err);
    }
    assert_false(stream_cancel("nope", &err));
    assert_true(g_error_matches(err, STREAM_ERROR, STREAM_ERROR_NO_JOB));
    assert_string_equal(err->message, "Block job 'nope' not found");
    g_clear_error(&err);

    /* a slow job: busy node, cancel keeps what was copied */
    StreamOptions slow = {.job_id = "s0", .device = "drive-scsi0", .speed = 1 << 20};
    assert_true(stream_start(&slow, &err));
    StreamOptions again = {.job_id = "s1", .device = "drive-scsi0"};
    assert_false(stream_start(&again, &err));
    assert_string_equal(err->message,
                        "Node 'drive-scsi0' is busy: block device is in use by block job: stream");
    g_clear_error(&err);
    g_autoptr(GPtrArray) jobs = stream_query_jobs();
    assert_int_equal(jobs->len, 1);
    JobInfo *ji = g_ptr_array_index(jobs, 0);
    assert_string_equal(ji->type, "stream");
    assert_string_equal(ji->status, "running");
    assert_int_equal(ji->total_progress, SIZE);
    assert_true(stream_cancel("s0", NULL));
    stream_wait();
    assert_true(allocated() < SIZE);
    assert_true(allocated() > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy_on_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_after_copy_is_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_wins_over_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_waits_for_partial_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_chunks_and_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_keeps_guest_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_of_another_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
