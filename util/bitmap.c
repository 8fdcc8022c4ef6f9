/*
 * util/bitmap.c — dense and sparse bitmaps (util/bitmap.h).
 *
 * Both store bits in 64-bit words, bit i in word i / 64 at position i % 64, and search
 * a word at a time (count trailing zeros), so a scan over a fully set or fully clear
 * region costs one step per 64 bits, and the sparse one skips full chunks by their
 * count. Invariant of the dense bitmap: the bits past nbits in its last word are 0,
 * so the searches and counts need no special case for them.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "util/bitmap.h"

#define WORD_BITS 64u

struct Bitmap {
    uint64_t nbits;
    uint64_t count;        /* bits set */
    uint64_t *words;       /* ceil(nbits / 64) */
};

static inline uint64_t nwords(uint64_t nbits)
{
    return nbits / WORD_BITS + (nbits % WORD_BITS != 0);
}

/* Bits [b, b + len) of one word; 0 < len, b + len <= 64. */
static inline uint64_t word_mask(unsigned b, unsigned len)
{
    return (len == WORD_BITS ? UINT64_MAX : ((UINT64_C(1) << len) - 1)) << b;
}

/* First bit at or after from within words[0..n) whose value in `want`-polarity is set:
 * for want = false the words are inverted. UINT64_MAX when none. */
static uint64_t scan_words(const uint64_t *words, uint64_t n, uint64_t from, bool want)
{
    uint64_t w = from / WORD_BITS;

    if (w >= n) {
        return UINT64_MAX;
    }
    uint64_t word = (want ? words[w] : ~words[w]) & (UINT64_MAX << (from % WORD_BITS));
    for (;;) {
        if (word != 0) {
            return w * WORD_BITS + (uint64_t)__builtin_ctzll(word);
        }
        if (++w >= n) {
            return UINT64_MAX;
        }
        word = want ? words[w] : ~words[w];
    }
}

/* ---- dense -------------------------------------------------------------------------- */

Bitmap *bitmap_new(uint64_t nbits, bool set)
{
    Bitmap *bm = g_new0(Bitmap, 1);
    uint64_t n = nwords(nbits);

    bm->nbits = nbits;
    bm->words = g_new0(uint64_t, n);
    if (set && n > 0) {
        memset(bm->words, 0xff, n * sizeof(uint64_t));
        if (nbits % WORD_BITS != 0) {
            bm->words[n - 1] = word_mask(0, nbits % WORD_BITS);
        }
        bm->count = nbits;
    }
    return bm;
}

void bitmap_free(Bitmap *bm)
{
    if (bm != NULL) {
        g_free(bm->words);
        g_free(bm);
    }
}

uint64_t bitmap_size(const Bitmap *bm)
{
    return bm->nbits;
}

uint64_t bitmap_count(const Bitmap *bm)
{
    return bm->count;
}

bool bitmap_test(const Bitmap *bm, uint64_t bit)
{
    assert(bit < bm->nbits);
    return (bm->words[bit / WORD_BITS] >> (bit % WORD_BITS)) & 1;
}

bool bitmap_test_and_set(Bitmap *bm, uint64_t bit)
{
    assert(bit < bm->nbits);
    uint64_t *w = &bm->words[bit / WORD_BITS];
    uint64_t m = UINT64_C(1) << (bit % WORD_BITS);
    bool old = (*w & m) != 0;

    if (!old) {
        *w |= m;
        bm->count++;
    }
    return old;
}

bool bitmap_test_and_clear(Bitmap *bm, uint64_t bit)
{
    assert(bit < bm->nbits);
    uint64_t *w = &bm->words[bit / WORD_BITS];
    uint64_t m = UINT64_C(1) << (bit % WORD_BITS);
    bool old = (*w & m) != 0;

    if (old) {
        *w &= ~m;
        bm->count--;
    }
    return old;
}

void bitmap_set(Bitmap *bm, uint64_t bit)
{
    bitmap_test_and_set(bm, bit);
}

void bitmap_clear(Bitmap *bm, uint64_t bit)
{
    bitmap_test_and_clear(bm, bit);
}

static void change_range(Bitmap *bm, uint64_t start, uint64_t n, bool set)
{
    assert(start <= bm->nbits && n <= bm->nbits - start);
    uint64_t end = start + n;

    while (start < end) {
        unsigned b = (unsigned)(start % WORD_BITS);
        unsigned len = (unsigned)MIN((uint64_t)(WORD_BITS - b), end - start);
        uint64_t *w = &bm->words[start / WORD_BITS];
        uint64_t m = word_mask(b, len);
        unsigned before = (unsigned)__builtin_popcountll(*w & m);

        if (set) {
            *w |= m;
            bm->count += len - before;
        } else {
            *w &= ~m;
            bm->count -= before;
        }
        start += len;
    }
}

void bitmap_set_range(Bitmap *bm, uint64_t start, uint64_t n)
{
    change_range(bm, start, n, true);
}

void bitmap_clear_range(Bitmap *bm, uint64_t start, uint64_t n)
{
    change_range(bm, start, n, false);
}

uint64_t bitmap_count_range(const Bitmap *bm, uint64_t start, uint64_t n)
{
    assert(start <= bm->nbits && n <= bm->nbits - start);
    uint64_t end = start + n, count = 0;

    while (start < end) {
        unsigned b = (unsigned)(start % WORD_BITS);
        unsigned len = (unsigned)MIN((uint64_t)(WORD_BITS - b), end - start);
        count += (uint64_t)__builtin_popcountll(bm->words[start / WORD_BITS] &
                                                word_mask(b, len));
        start += len;
    }
    return count;
}

uint64_t bitmap_find_next_set(const Bitmap *bm, uint64_t start)
{
    if (start >= bm->nbits) {
        return bm->nbits;
    }
    uint64_t r = scan_words(bm->words, nwords(bm->nbits), start, true);
    return r < bm->nbits ? r : bm->nbits;
}

uint64_t bitmap_find_next_clear(const Bitmap *bm, uint64_t start)
{
    if (start >= bm->nbits) {
        return bm->nbits;
    }
    uint64_t r = scan_words(bm->words, nwords(bm->nbits), start, false);
    return r < bm->nbits ? r : bm->nbits; /* the clear tail bits past nbits do not count */
}

/* ---- sparse ------------------------------------------------------------------------- */

#define CHUNK_WORDS (SPARSE_BITMAP_CHUNK_BITS / WORD_BITS)

typedef struct SparseChunk {
    uint64_t idx;                      /* the hash key: bits [idx * 4096, +4096) */
    uint32_t count;                    /* bits set */
    uint64_t words[CHUNK_WORDS];
} SparseChunk;

struct SparseBitmap {
    uint64_t nbits;
    uint64_t count;                    /* bits set */
    GHashTable *chunks;                /* &chunk->idx -> SparseChunk, on first touch */
    SparseChunk *last;                 /* the chunk last set in: sequential sets skip the
                                        * hash lookup */
    SparseBitmapBudget *budget;
};

SparseBitmap *sparse_bitmap_new(uint64_t nbits, SparseBitmapBudget *budget)
{
    SparseBitmap *sb = g_new0(SparseBitmap, 1);

    sb->nbits = nbits;
    sb->budget = budget;
    sb->chunks = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    return sb;
}

void sparse_bitmap_free(SparseBitmap *sb)
{
    if (sb != NULL) {
        if (sb->budget != NULL) {
            sb->budget->used -= g_hash_table_size(sb->chunks);
        }
        g_hash_table_destroy(sb->chunks);
        g_free(sb);
    }
}

uint64_t sparse_bitmap_size(const SparseBitmap *sb)
{
    return sb->nbits;
}

uint64_t sparse_bitmap_count(const SparseBitmap *sb)
{
    return sb->count;
}

static SparseChunk *chunk_lookup(const SparseBitmap *sb, uint64_t idx)
{
    if (sb->last != NULL && sb->last->idx == idx) {
        return sb->last;
    }
    return g_hash_table_lookup(sb->chunks, &idx);
}

bool sparse_bitmap_test(const SparseBitmap *sb, uint64_t bit)
{
    assert(bit < sb->nbits);
    const SparseChunk *c = chunk_lookup(sb, bit / SPARSE_BITMAP_CHUNK_BITS);
    uint64_t i = bit % SPARSE_BITMAP_CHUNK_BITS;

    return c != NULL && ((c->words[i / WORD_BITS] >> (i % WORD_BITS)) & 1);
}

int sparse_bitmap_test_and_set(SparseBitmap *sb, uint64_t bit)
{
    assert(bit < sb->nbits);
    uint64_t idx = bit / SPARSE_BITMAP_CHUNK_BITS;
    uint64_t i = bit % SPARSE_BITMAP_CHUNK_BITS;
    SparseChunk *c = chunk_lookup(sb, idx);

    if (c == NULL) {
        if (sb->budget != NULL) {
            if (sb->budget->used >= sb->budget->max) {
                return -ENOSPC;
            }
            sb->budget->used++;
        }
        c = g_new0(SparseChunk, 1);
        c->idx = idx;
        g_hash_table_insert(sb->chunks, &c->idx, c);
    }
    sb->last = c;
    uint64_t m = UINT64_C(1) << (i % WORD_BITS);
    if (c->words[i / WORD_BITS] & m) {
        return 0;
    }
    c->words[i / WORD_BITS] |= m;
    c->count++;
    sb->count++;
    return 1;
}

uint64_t sparse_bitmap_find_next_clear(const SparseBitmap *sb, uint64_t start)
{
    /* one lookup per chunk from start on; only chunks that exist (bounded by the
     * memory spent on them) are passed over, so the scan ends at the first missing one */
    for (uint64_t idx = start / SPARSE_BITMAP_CHUNK_BITS;; idx++) {
        uint64_t base = idx * SPARSE_BITMAP_CHUNK_BITS;
        uint64_t from = MAX(start, base);
        if (from >= sb->nbits) {
            break;
        }
        const SparseChunk *c = chunk_lookup(sb, idx);
        if (c == NULL) {
            return from;
        }
        uint64_t limit = MIN((uint64_t)SPARSE_BITMAP_CHUNK_BITS, sb->nbits - base);
        if (c->count == limit && from == base) {
            continue;
        }
        uint64_t r = scan_words(c->words, CHUNK_WORDS, from - base, false);
        if (r < limit) {
            return base + r;
        }
        if (limit < SPARSE_BITMAP_CHUNK_BITS) {
            break; /* the last, partial chunk */
        }
    }
    return sb->nbits;
}
