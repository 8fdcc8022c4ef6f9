/*
 * block/block-copy.c — the claim/copy state of one disk of a backup.
 *
 * Two bitmaps of one bit per 64 KiB cluster (bc->lock):
 *   todo  — the cluster still holds its data of the instant and nobody has claimed it;
 *   busy  — somebody claimed it and is reading its old data right now.
 * A cluster goes todo -> busy -> (neither) exactly once; whoever flips todo->busy (a
 * copy-before-write or a background worker) owns it: reads it, clears busy, and hands
 * the data to ops->copied. So every cluster is copied exactly once, and while todo is
 * set nobody has written to it since the instant (every write runs
 * block_copy_before_write() first, which claims or waits for each of its clusters).
 *
 * Merged reads: a claimer takes a run of adjacent todo clusters (at most
 * BLOCK_COPY_MAX_RUN) at once and reads the run with one preadv into one buffer per
 * cluster. A 1 MiB guest write over uncopied data is one 1 MiB read, not sixteen 64 KiB
 * read-and-hand-over rounds.
 *
 * Waiting: a copy-before-write waits only while a cluster of its range is busy, that is
 * while another thread does one local read (of one run); busy is cleared right after the
 * read, before the data is handed on, so a guest write never waits for the archive or
 * for a worker's rate-limit sleep (taken before claiming) or hand-over (after release).
 * Nobody waits for anything while holding a claim, so nobody can deadlock.
 *
 * Failure: a read error is reported once through ops->read_failed, naming the first
 * cluster that fails when a failed merged read is retried cluster by cluster (the run's
 * first cluster if the retry succeeds: one failed read fails the copy all the same). The owner
 * then calls block_copy_cancel(): nothing is claimed any more and every waiter returns,
 * so guest writes go through untouched.
 *
 * Lock: bc->lock protects todo and busy; it is the innermost lock (the job may hold its
 * own around block_copy_cancel and block_copy_next_todo) and never held across I/O or
 * a callback.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "block/block-copy.h"
#include "util/bitmap.h"
#include "vma.h"

#define CLUSTER VMA_CLUSTER_SIZE

struct BlockCopy {
    /* Immutable. */
    BlockNode *source;
    uint64_t size;
    uint64_t nclusters;
    const BlockCopyOps *ops;
    void *opaque;

    gint cancelled;           /* atomic; waiters re-check it under lock */
    GMutex lock;              /* protects todo, busy */
    GCond cond;               /* a busy bit was cleared, or cancelled */
    Bitmap *todo;             /* bit set: unclaimed, still holds its old data */
    Bitmap *busy;             /* bit set: claimed, its old data is being read */
};

BlockCopy *block_copy_new(BlockNode *source, const BlockCopyOps *ops, void *opaque)
{
    BlockCopy *bc = g_new0(BlockCopy, 1);

    bc->source = bnode_ref(source);
    bc->size = source->size;
    bc->nclusters = (bc->size + CLUSTER - 1) / CLUSTER;
    bc->ops = ops;
    bc->opaque = opaque;
    g_mutex_init(&bc->lock);
    g_cond_init(&bc->cond);
    bc->todo = bitmap_new(bc->nclusters, true);
    bc->busy = bitmap_new(bc->nclusters, false);
    return bc;
}

uint64_t block_copy_restrict(BlockCopy *bc, const Bitmap *dirty)
{
    uint64_t left = 0;

    assert(bitmap_size(dirty) == bc->nclusters);
    g_mutex_lock(&bc->lock);
    for (uint64_t c = 0; c < bc->nclusters; c++) {
        if (bitmap_test(dirty, c)) {
            left++;
        } else {
            bitmap_clear(bc->todo, c);
        }
    }
    g_mutex_unlock(&bc->lock);
    return left;
}

void block_copy_free(BlockCopy *bc)
{
    if (bc == NULL) {
        return;
    }
    bnode_unref(bc->source);
    g_mutex_clear(&bc->lock);
    g_cond_clear(&bc->cond);
    bitmap_free(bc->todo);
    bitmap_free(bc->busy);
    g_free(bc);
}

static bool cancelled(BlockCopy *bc)
{
    return g_atomic_int_get(&bc->cancelled) != 0;
}

void block_copy_cancel(BlockCopy *bc)
{
    g_mutex_lock(&bc->lock);
    g_atomic_int_set(&bc->cancelled, 1);
    g_cond_broadcast(&bc->cond);
    g_mutex_unlock(&bc->lock);
}

/* Claim [first, first+n), all todo (bc->lock held). */
static void claim_locked(BlockCopy *bc, uint64_t first, uint64_t n)
{
    assert(bitmap_count_range(bc->todo, first, n) == n);
    bitmap_clear_range(bc->todo, first, n);
    bitmap_set_range(bc->busy, first, n);
}

static void release(BlockCopy *bc, uint64_t first, uint64_t n)
{
    g_mutex_lock(&bc->lock);
    bitmap_clear_range(bc->busy, first, n);
    g_cond_broadcast(&bc->cond);
    g_mutex_unlock(&bc->lock);
}

/* Bytes of cluster c inside the disk. */
static uint64_t cluster_bytes(BlockCopy *bc, uint64_t c)
{
    return MIN((uint64_t)CLUSTER, bc->size - c * CLUSTER);
}

/* Read the claimed run [first, first+n) with one preadv, release it, hand it on. */
static void copy_run(BlockCopy *bc, uint64_t first, unsigned n, bool from_write)
{
    void *bufs[BLOCK_COPY_MAX_RUN];
    struct iovec iov[BLOCK_COPY_MAX_RUN];

    assert(n > 0 && n <= BLOCK_COPY_MAX_RUN);
    for (unsigned i = 0; i < n; i++) {
        bufs[i] = vma_cluster_alloc();
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = cluster_bytes(bc, first + i);
    }
    int r = bnode_preadv(bc->source, iov, (int)n, first * CLUSTER);
    uint64_t bad = first;
    if (r < 0 && n > 1) {
        /* Name the cluster that fails. A read error fails the copy even when the
         * retry reads everything (then the run's first cluster is named). */
        for (unsigned i = 0; i < n; i++) {
            int r2 = bnode_preadv(bc->source, &iov[i], 1, (first + i) * CLUSTER);
            if (r2 < 0) {
                bad = first + i;
                r = r2;
                break;
            }
        }
    }
    release(bc, first, n);
    if (r < 0) {
        for (unsigned i = 0; i < n; i++) {
            vma_cluster_free(bufs[i]);
        }
        bc->ops->read_failed(bc->opaque, bad, r);
        return;
    }
    uint64_t tail = iov[n - 1].iov_len;
    if (tail < CLUSTER) {
        memset((uint8_t *)bufs[n - 1] + tail, 0, CLUSTER - tail);
    }
    for (unsigned i = 0; i < n; i++) {
        bc->ops->copied(bc->opaque, first + i, bufs[i], from_write);
    }
}

void block_copy_before_write(BlockCopy *bc, uint64_t offset, uint64_t len)
{
    if (len == 0 || offset >= bc->size) {
        return;
    }
    uint64_t c = offset / CLUSTER;
    uint64_t last = MIN((offset + len - 1) / CLUSTER, bc->nclusters - 1);

    while (c <= last) {
        g_mutex_lock(&bc->lock);
        while (!cancelled(bc) && !bitmap_test(bc->todo, c) && bitmap_test(bc->busy, c)) {
            g_cond_wait(&bc->cond, &bc->lock);
        }
        if (cancelled(bc)) {
            g_mutex_unlock(&bc->lock);
            return;
        }
        if (!bitmap_test(bc->todo, c)) {
            /* copied already */
            g_mutex_unlock(&bc->lock);
            c++;
            continue;
        }
        uint64_t end = c;
        while (end <= last && end - c < BLOCK_COPY_MAX_RUN && bitmap_test(bc->todo, end)) {
            end++;
        }
        claim_locked(bc, c, end - c);
        g_mutex_unlock(&bc->lock);
        copy_run(bc, c, (unsigned)(end - c), true);
        c = end;
    }
}

/* Mark in data[] the clusters of [first, first+n) that hold any allocated data. */
static void find_data(BlockCopy *bc, uint64_t first, unsigned n, bool *data)
{
    uint64_t start = first * CLUSTER;
    uint64_t end = MIN((first + n) * CLUSTER, bc->size);
    uint64_t pos = start;

    memset(data, 0, n * sizeof(bool));
    while (pos < end) {
        uint64_t pnum = 0;
        bool hole = false;
        if (bnode_block_status(bc->source, pos, end - pos, &pnum, &hole) < 0 || pnum == 0) {
            /* unknown: read the rest */
            hole = false;
            pnum = end - pos;
        }
        if (!hole) {
            for (uint64_t c = pos / CLUSTER; c <= (pos + pnum - 1) / CLUSTER; c++) {
                data[c - first] = true;
            }
        }
        pos += pnum;
    }
}

uint64_t block_copy_next_todo(BlockCopy *bc, uint64_t from)
{
    g_mutex_lock(&bc->lock);
    uint64_t c = bitmap_find_next_set(bc->todo, from);
    g_mutex_unlock(&bc->lock);
    return c;
}

void block_copy_chunk(BlockCopy *bc, uint64_t first, unsigned n)
{
    bool data[BLOCK_COPY_MAX_RUN];
    unsigned lo = n, hi = 0;   /* the todo clusters of the chunk lie in [lo, hi) */

    assert(n > 0 && n <= BLOCK_COPY_MAX_RUN && first + n <= bc->nclusters);
    /* Nothing to do when copy-before-writes took the whole chunk already. */
    g_mutex_lock(&bc->lock);
    for (unsigned i = 0; i < n; i++) {
        if (bitmap_test(bc->todo, first + i)) {
            lo = MIN(lo, i);
            hi = i + 1;
        }
    }
    g_mutex_unlock(&bc->lock);
    if (lo >= hi) {
        return;
    }

    /* Block status only where something is left (a cluster that is not todo now never
     * becomes todo again): one dirty cluster of an incremental costs its own lookup,
     * not the chunk's. */
    memset(data, 0, sizeof(data));
    find_data(bc, first + lo, hi - lo, data + lo);
    uint64_t to_read = 0;
    for (unsigned i = 0; i < n; i++) {
        if (data[i]) {
            to_read += cluster_bytes(bc, first + i);
        }
    }
    /* Wait for the limiter before claiming: a guest write must never wait for it. */
    if (!bc->ops->rate_wait(bc->opaque, to_read)) {
        return;
    }

    /* Claim each run of todo clusters alike in data-ness just before reading it; a
     * copy-before-write that needs a later cluster of the chunk takes it itself. */
    unsigned i = 0;
    while (i < n && !cancelled(bc)) {
        g_mutex_lock(&bc->lock);
        if (!bitmap_test(bc->todo, first + i)) {
            g_mutex_unlock(&bc->lock);
            i++;
            continue;
        }
        unsigned j = i;
        while (j < n && bitmap_test(bc->todo, first + j) && data[j] == data[i]) {
            j++;
        }
        claim_locked(bc, first + i, j - i);
        g_mutex_unlock(&bc->lock);
        if (data[i]) {
            copy_run(bc, first + i, j - i, false);
        } else {
            /* a hole that nobody wrote since the instant (todo was still set) */
            release(bc, first + i, j - i);
            for (unsigned k = i; k < j; k++) {
                bc->ops->copied(bc->opaque, first + k, NULL, false);
            }
        }
        i = j;
    }
}
