/*
 * test-block-copy.c — unit tests of block/block-copy.c over a real file node, with a
 * counting filter between the BlockCopy and the file: how many reads reach the source,
 * and which clusters are handed over, how often.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "block/block-copy.h"
#include "util/bitmap.h"
#include "vma.h"

#define CS 65536u
#define NCLUSTERS 40u

typedef struct Counts {
    gint reads;                 /* preadv calls that reached the source */
    gint copied[NCLUSTERS];     /* hand-overs per cluster */
    gint from_write;
    gint failed;
    gint status_calls;          /* block status queries that reached the source */
    uint64_t status_lo;         /* the lowest and highest byte they asked about */
    uint64_t status_hi;
} Counts;

static int count_preadv(BlockNode *n, const struct iovec *iov, int iovcnt, uint64_t len,
                        uint64_t offset)
{
    Counts *c = n->opaque;
    g_atomic_int_inc(&c->reads);
    return bnode_preadv(n->child, iov, iovcnt, offset);
}

static int count_block_status(BlockNode *n, uint64_t offset, uint64_t len, uint64_t *pnum,
                              bool *is_hole)
{
    Counts *c = n->opaque;
    g_atomic_int_inc(&c->status_calls);
    c->status_lo = MIN(c->status_lo, offset);  /* one thread here */
    c->status_hi = MAX(c->status_hi, offset + len);
    return bnode_block_status(n->child, offset, len, pnum, is_hole);
}

static const BlockDriver counting = {
    .name = "counting",
    .is_filter = true,
    .preadv = count_preadv,
    .block_status = count_block_status,
};

static void copied(void *opaque, uint64_t cluster, void *buf, bool from_write)
{
    Counts *c = opaque;
    assert_true(cluster < NCLUSTERS);
    g_atomic_int_inc(&c->copied[cluster]);
    if (from_write) {
        g_atomic_int_inc(&c->from_write);
        /* the old data: cluster k holds bytes k+1 */
        assert_int_equal(((uint8_t *)buf)[0], (uint8_t)(cluster + 1));
        assert_int_equal(((uint8_t *)buf)[CS - 1], (uint8_t)(cluster + 1));
    }
    vma_cluster_free(buf);
}

static void read_failed(void *opaque, uint64_t cluster, int r)
{
    g_atomic_int_inc(&((Counts *)opaque)->failed);
}

static bool rate_wait(void *opaque, uint64_t bytes)
{
    return true;
}

static const BlockCopyOps ops = { copied, read_failed, rate_wait };

/* A file of NCLUSTERS clusters (cluster k holds bytes k+1) under the counting filter,
 * and a BlockCopy over it reporting to c. */
typedef struct Fixture {
    char *dir, *path;
    BlockNode *file, *src;
} Fixture;

static BlockCopy *fixture_open(Fixture *f, Counts *c)
{
    f->dir = g_dir_make_tmp("test-block-copy-XXXXXX", NULL);
    assert_non_null(f->dir);
    f->path = g_build_filename(f->dir, "disk.raw", NULL);
    g_autofree uint8_t *data = g_malloc((size_t)NCLUSTERS * CS);
    for (unsigned k = 0; k < NCLUSTERS; k++) {
        memset(data + (size_t)k * CS, (int)(k + 1), CS);
    }
    assert_true(g_file_set_contents(f->path, (char *)data, (gssize)NCLUSTERS * CS, NULL));

    BlockDevOptions o = { .node_name = "d", .filename = f->path };
    g_autoptr(GError) err = NULL;
    f->file = bnode_open(NULL, &o, &err);
    assert_non_null(f->file);
    f->src = bnode_new_filter(&counting, f->file, c);
    return block_copy_new(f->src, &ops, c);
}

static void fixture_close(Fixture *f, BlockCopy *bc)
{
    block_copy_free(bc);
    bnode_unref(f->src);
    bnode_unref(f->file);
    g_unlink(f->path);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
}

static void test_merged_reads(void **state)
{
    Counts c = { 0 };
    Fixture f;
    BlockCopy *bc = fixture_open(&f, &c);

    /* a 1 MiB write over uncopied data at a cluster boundary: one read */
    block_copy_before_write(bc, 0, 16 * CS);
    assert_int_equal(c.reads, 1);
    assert_int_equal(c.from_write, 16);
    /* an unaligned 1 MiB write over clusters 16..32: 17 clusters, the most per run is
     * BLOCK_COPY_MAX_RUN (16), so two reads */
    block_copy_before_write(bc, 16 * CS + 100, 16 * CS);
    assert_int_equal(c.reads, 3);
    assert_int_equal(c.from_write, 33);
    /* copied clusters are not read again, by a write or by the background copy */
    block_copy_before_write(bc, 5 * CS, 20 * CS);
    block_copy_chunk(bc, 0, 16);
    block_copy_chunk(bc, 16, 16);
    assert_int_equal(c.reads, 3);
    /* the rest (33..39) in one background read */
    block_copy_chunk(bc, 32, NCLUSTERS - 32);
    assert_int_equal(c.reads, 4);
    for (unsigned k = 0; k < NCLUSTERS; k++) {
        assert_int_equal(c.copied[k], 1); /* exactly once */
    }
    assert_int_equal(c.failed, 0);

    fixture_close(&f, bc);
}

/* An incremental's todo: the cursor finds the dirty clusters, and the background copy
 * of a chunk looks up and reads only its dirty ones. */
static void test_restricted(void **state)
{
    Counts c = { .status_lo = UINT64_MAX };
    Fixture f;
    BlockCopy *bc = fixture_open(&f, &c);

    g_autoptr(Bitmap) dirty = bitmap_new(NCLUSTERS, false);
    const uint64_t want[] = { 3, 5, 17, 18, 39 };
    for (unsigned i = 0; i < G_N_ELEMENTS(want); i++) {
        bitmap_set(dirty, want[i]);
    }
    assert_int_equal(block_copy_restrict(bc, dirty), G_N_ELEMENTS(want));

    assert_int_equal(block_copy_next_todo(bc, 0), 3);
    assert_int_equal(block_copy_next_todo(bc, 4), 5);
    assert_int_equal(block_copy_next_todo(bc, 6), 17);
    assert_int_equal(block_copy_next_todo(bc, 19), 39);
    assert_int_equal(block_copy_next_todo(bc, NCLUSTERS), NCLUSTERS);

    /* chunk 0..15: block status of clusters 3..5 only, two reads (3 and 5) */
    block_copy_chunk(bc, 0, 16);
    assert_int_equal(c.reads, 2);
    assert_true(c.status_calls >= 1);
    assert_int_equal(c.status_lo, 3 * CS);
    assert_int_equal(c.status_hi, 6 * CS);
    assert_int_equal(block_copy_next_todo(bc, 0), 17);
    /* a write over 17 copies it; the chunk from 17 then reads 18 only */
    block_copy_before_write(bc, 17 * CS, CS);
    assert_int_equal(c.reads, 3);
    c.status_lo = UINT64_MAX;
    c.status_hi = 0;
    block_copy_chunk(bc, 17, 16);
    assert_int_equal(c.reads, 4);
    assert_int_equal(c.status_lo, 18 * CS);
    assert_int_equal(c.status_hi, 19 * CS);
    /* the last cluster, at the end of the disk */
    block_copy_chunk(bc, block_copy_next_todo(bc, 19), 1);
    assert_int_equal(block_copy_next_todo(bc, 0), NCLUSTERS);
    assert_int_equal(c.reads, 5);
    for (unsigned k = 0; k < NCLUSTERS; k++) {
        bool d = bitmap_test(dirty, k);
        assert_int_equal(c.copied[k], d ? 1 : 0);
    }
    assert_int_equal(c.from_write, 1);
    assert_int_equal(c.failed, 0);

    fixture_close(&f, bc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merged_reads),
        cmocka_unit_test(test_restricted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
