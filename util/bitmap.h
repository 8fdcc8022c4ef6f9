/*
 * util/bitmap.h — bitmaps: a dense one (one bit per unit, all of it allocated up front)
 * and a sparse one (chunks allocated on first touch, under an optional budget shared
 * by several bitmaps).
 *
 * Dense: bits [0, nbits); an operation on a bit or a range outside it is a bug
 * (asserted). find_next_* return the first matching bit at or after start, or nbits
 * when there is none (also for start >= nbits). The number of set bits is kept, so
 * bitmap_count() is O(1). Bits past nbits in the last word are kept clear.
 *
 * Sparse: the same bit numbering, in chunks of SPARSE_BITMAP_CHUNK_BITS bits (512
 * bytes) held in a hash table; memory grows with the chunks actually touched, never
 * with nbits, so nbits may come from an untrusted header. A budget caps the chunks of
 * all bitmaps sharing it: a set that would need one chunk more fails (-ENOSPC) and
 * changes nothing. Clear bits cost nothing, so there is no clear operation.
 *
 * Not thread-safe: callers lock (block/block-copy.c: bc->lock; vma-writer.c: w->lock).
 *
 * Who uses what:
 *   Bitmap        block/block-copy.c (todo and busy clusters: test, and the range
 *                 operations to claim and release a run)
 *   SparseBitmap  vma-reader.c (seen clusters of each device, budget over all devices:
 *                 a hostile stream cannot make it allocate beyond the budget),
 *                 vma-writer.c (done clusters: test_and_set, find_next_clear for the
 *                 first missing cluster at close)
 */
#ifndef VMA_UTIL_BITMAP_H
#define VMA_UTIL_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

typedef struct Bitmap Bitmap;

/* nbits bits, all set or all clear. Aborts when out of memory, as g_new does. */
Bitmap *bitmap_new(uint64_t nbits, bool set);
void bitmap_free(Bitmap *bm);                  /* NULL is fine */
uint64_t bitmap_size(const Bitmap *bm);        /* nbits */
uint64_t bitmap_count(const Bitmap *bm);       /* bits set */

bool bitmap_test(const Bitmap *bm, uint64_t bit);
void bitmap_set(Bitmap *bm, uint64_t bit);
void bitmap_clear(Bitmap *bm, uint64_t bit);
/* Set (clear) bit and return its old value. */
bool bitmap_test_and_set(Bitmap *bm, uint64_t bit);
bool bitmap_test_and_clear(Bitmap *bm, uint64_t bit);

/* Bits [start, start + n); n may be 0. */
void bitmap_set_range(Bitmap *bm, uint64_t start, uint64_t n);
void bitmap_clear_range(Bitmap *bm, uint64_t start, uint64_t n);
uint64_t bitmap_count_range(const Bitmap *bm, uint64_t start, uint64_t n);

uint64_t bitmap_find_next_set(const Bitmap *bm, uint64_t start);
uint64_t bitmap_find_next_clear(const Bitmap *bm, uint64_t start);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Bitmap, bitmap_free)

#define SPARSE_BITMAP_CHUNK_BITS 4096u

typedef struct SparseBitmap SparseBitmap;

/* Chunks allowed over every bitmap that shares it; used counts the allocated ones. */
typedef struct SparseBitmapBudget {
    uint64_t used;
    uint64_t max;
} SparseBitmapBudget;

/* budget: NULL for none; it must outlive the bitmap (free gives its chunks back). */
SparseBitmap *sparse_bitmap_new(uint64_t nbits, SparseBitmapBudget *budget);
void sparse_bitmap_free(SparseBitmap *sb);     /* NULL is fine */
uint64_t sparse_bitmap_size(const SparseBitmap *sb);
uint64_t sparse_bitmap_count(const SparseBitmap *sb);
bool sparse_bitmap_test(const SparseBitmap *sb, uint64_t bit);
/* 1: bit was clear and is set now; 0: it was set already; -ENOSPC: it needs a new
 * chunk and the budget is used up (nothing changed). */
int sparse_bitmap_test_and_set(SparseBitmap *sb, uint64_t bit);
uint64_t sparse_bitmap_find_next_clear(const SparseBitmap *sb, uint64_t start);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SparseBitmap, sparse_bitmap_free)

#endif
