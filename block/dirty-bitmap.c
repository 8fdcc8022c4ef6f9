/*
 * block/dirty-bitmap.c — a node's change bitmaps: marking, the QMP operations, and the
 * freeze/release a backup does (see block/dirty-bitmap.h for the states).
 *
 * The tracker is part of each protocol node rather than a filter: bitmaps must see every
 * write that reaches the disk for the disk's whole life, whatever filters a backup or a
 * live restore puts above it and in whatever order; a node-level hook in the bnode_*
 * write entry points is crossed by all of them exactly once, and dies with the node.
 *
 * A backup's successor: dirty_bitmap_freeze() at the instant moves the bits into
 * `frozen` (reset) or copies them (no reset) while `bits` goes on recording — so `bits`
 * is QEMU's anonymous successor and `frozen` the parent's frozen state. Release on
 * success drops `frozen`; on failure a reset bitmap gets `frozen` ORed back into `bits`:
 * old bits ∪ writes since the instant, nothing lost.
 *
 * Invariant: a bitmap with has_base set holds, in bits ∪ frozen, every byte written since
 * the instant of the backup `base` (so an incremental of it is complete). Anything that
 * could break it (clear, disable, an inconsistent load) drops the base.
 *
 * Lock: set->lock protects every field of every bitmap of the set and the list; taken
 * alone, never across I/O. n_enabled is an atomic hint read without the lock by
 * dirty_set_mark() so that a node without enabled bitmaps pays nothing.
 */
#include <assert.h>
#include <string.h>

#include "block/dirty-bitmap.h"

G_DEFINE_QUARK(dirty-bitmap-error-quark, dirty_bitmap_error)

struct DirtyBitmap {
    DirtyBitmapSet *set;
    char *name;
    uint32_t granularity;
    uint64_t nbits;
    Bitmap *bits;          /* recording (the successor while frozen) */
    Bitmap *frozen;        /* while a backup holds it: the bits of its instant */
    bool frozen_reset;     /* frozen was taken out of bits (merge back on failure) */
    bool enabled;
    bool persistent;
    bool inconsistent;
    bool busy;
    bool has_base;
    uint8_t base[16];
    uint64_t base_size;
};

struct DirtyBitmapSet {
    uint64_t size;         /* immutable */
    GMutex lock;
    GPtrArray *bitmaps;    /* DirtyBitmap *, in add order (queries list newest first) */
    gint n_enabled;        /* atomic copy of the number of enabled bitmaps */
};

static uint64_t nbits_for(uint64_t size, uint32_t granularity)
{
    return (size + granularity - 1) / granularity;
}

static void bitmap_obj_free(gpointer p)
{
    DirtyBitmap *bm = p;

    bitmap_free(bm->bits);
    bitmap_free(bm->frozen);
    g_free(bm->name);
    g_free(bm);
}

DirtyBitmapSet *dirty_set_new(uint64_t size)
{
    DirtyBitmapSet *set = g_new0(DirtyBitmapSet, 1);

    set->size = size;
    g_mutex_init(&set->lock);
    set->bitmaps = g_ptr_array_new_with_free_func(bitmap_obj_free);
    return set;
}

void dirty_set_free(DirtyBitmapSet *set)
{
    if (set == NULL) {
        return;
    }
    g_ptr_array_unref(set->bitmaps);
    g_mutex_clear(&set->lock);
    g_free(set);
}

uint64_t dirty_set_disk_size(const DirtyBitmapSet *set)
{
    return set->size;
}

static void update_enabled_locked(DirtyBitmapSet *set)
{
    gint n = 0;

    for (guint i = 0; i < set->bitmaps->len; i++) {
        DirtyBitmap *bm = g_ptr_array_index(set->bitmaps, i);
        n += bm->enabled ? 1 : 0;
    }
    g_atomic_int_set(&set->n_enabled, n);
}

/* Set the bits of bm covering bytes [offset, offset+len) of bits b. */
static void mark_bits(Bitmap *b, uint32_t granularity, uint64_t offset, uint64_t len)
{
    uint64_t first = offset / granularity;
    uint64_t last = (offset + len - 1) / granularity;

    bitmap_set_range(b, first, last - first + 1);
}

void dirty_set_mark(DirtyBitmapSet *set, uint64_t offset, uint64_t len)
{
    if (set == NULL || len == 0 || g_atomic_int_get(&set->n_enabled) == 0) {
        return;
    }
    if (offset >= set->size) {
        return;
    }
    len = MIN(len, set->size - offset);
    g_mutex_lock(&set->lock);
    for (guint i = 0; i < set->bitmaps->len; i++) {
        DirtyBitmap *bm = g_ptr_array_index(set->bitmaps, i);
        if (bm->enabled) {
            mark_bits(bm->bits, bm->granularity, offset, len);
        }
    }
    g_mutex_unlock(&set->lock);
}

/* ---- lookups and checks ---- */

static DirtyBitmap *find_locked(DirtyBitmapSet *set, const char *name)
{
    for (guint i = 0; i < set->bitmaps->len; i++) {
        DirtyBitmap *bm = g_ptr_array_index(set->bitmaps, i);
        if (strcmp(bm->name, name) == 0) {
            return bm;
        }
    }
    return NULL;
}

enum { CHECK_BUSY = 1, CHECK_INCONSISTENT = 2 };

/* QEMU's bdrv_dirty_bitmap_check: the bitmap named name, or NULL with errp set. */
static DirtyBitmap *lookup_locked(DirtyBitmapSet *set, const char *name, unsigned checks,
                                  GError **errp)
{
    DirtyBitmap *bm = find_locked(set, name);

    if (bm == NULL) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_NOT_FOUND,
                    "Dirty bitmap '%s' not found", name);
        return NULL;
    }
    if ((checks & CHECK_BUSY) && bm->busy) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_BUSY,
                    "Bitmap '%s' is currently in use by another operation and cannot be used",
                    name);
        return NULL;
    }
    if ((checks & CHECK_INCONSISTENT) && bm->inconsistent) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INCONSISTENT,
                    "Bitmap '%s' is inconsistent and cannot be used", name);
        return NULL;
    }
    return bm;
}

static DirtyBitmap *new_bitmap_locked(DirtyBitmapSet *set, const char *name,
                                      uint32_t granularity)
{
    DirtyBitmap *bm = g_new0(DirtyBitmap, 1);

    bm->set = set;
    bm->name = g_strdup(name);
    bm->granularity = granularity;
    bm->nbits = nbits_for(set->size, granularity);
    bm->bits = bitmap_new(bm->nbits, false);
    g_ptr_array_add(set->bitmaps, bm);
    return bm;
}

static bool check_name(const char *name, GError **errp)
{
    if (name[0] == '\0') {
        g_set_error_literal(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INVALID,
                            "Bitmap name cannot be empty");
        return false;
    }
    if (strlen(name) > DIRTY_BITMAP_MAX_NAME) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INVALID,
                    "Bitmap name too long: %s", name);
        return false;
    }
    return true;
}

/* ---- QMP operations ---- */

bool dirty_set_add(DirtyBitmapSet *set, const char *node, const char *name,
                   uint32_t granularity, bool persistent, bool disabled, GError **errp)
{
    if (granularity == 0) {
        granularity = DIRTY_BITMAP_DEFAULT_GRANULARITY;
    }
    if (granularity < 512 || (granularity & (granularity - 1)) != 0) {
        g_set_error_literal(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INVALID,
                            "Granularity must be power of 2 and at least 512");
        return false;
    }
    if (granularity < DIRTY_BITMAP_MIN_GRANULARITY ||
        granularity > DIRTY_BITMAP_MAX_GRANULARITY) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INVALID,
                    "Granularity must be between %u and %u", DIRTY_BITMAP_MIN_GRANULARITY,
                    DIRTY_BITMAP_MAX_GRANULARITY);
        return false;
    }
    if (!check_name(name, errp)) {
        return false;
    }
    g_mutex_lock(&set->lock);
    if (find_locked(set, name) != NULL) {
        g_mutex_unlock(&set->lock);
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_EXISTS,
                    "Bitmap already exists: %s", name);
        return false;
    }
    DirtyBitmap *bm = new_bitmap_locked(set, name, granularity);
    bm->enabled = !disabled;
    bm->persistent = persistent;
    update_enabled_locked(set);
    g_mutex_unlock(&set->lock);
    return true;
}

bool dirty_set_remove(DirtyBitmapSet *set, const char *name, GError **errp)
{
    g_mutex_lock(&set->lock);
    DirtyBitmap *bm = lookup_locked(set, name, CHECK_BUSY, errp);
    if (bm != NULL) {
        g_ptr_array_remove(set->bitmaps, bm);
        update_enabled_locked(set);
    }
    g_mutex_unlock(&set->lock);
    return bm != NULL;
}

bool dirty_set_clear(DirtyBitmapSet *set, const char *name, GError **errp)
{
    /* Unlike QEMU, clear accepts an inconsistent bitmap: it is how one is made usable
     * again (it then records from now on, and the next backup from it is a full one). */
    g_mutex_lock(&set->lock);
    DirtyBitmap *bm = lookup_locked(set, name, CHECK_BUSY, errp);
    if (bm != NULL) {
        bitmap_clear_range(bm->bits, 0, bm->nbits);
        if (bm->inconsistent) {
            bm->inconsistent = false;
            bm->enabled = true;
        }
        bm->has_base = false;
        update_enabled_locked(set);
    }
    g_mutex_unlock(&set->lock);
    return bm != NULL;
}

bool dirty_set_enable(DirtyBitmapSet *set, const char *name, GError **errp)
{
    g_mutex_lock(&set->lock);
    DirtyBitmap *bm = lookup_locked(set, name, CHECK_BUSY | CHECK_INCONSISTENT, errp);
    if (bm != NULL) {
        bm->enabled = true;
        update_enabled_locked(set);
    }
    g_mutex_unlock(&set->lock);
    return bm != NULL;
}

bool dirty_set_disable(DirtyBitmapSet *set, const char *name, GError **errp)
{
    g_mutex_lock(&set->lock);
    DirtyBitmap *bm = lookup_locked(set, name, CHECK_BUSY | CHECK_INCONSISTENT, errp);
    if (bm != NULL) {
        if (bm->enabled) {
            /* it will miss writes: it no longer holds everything since its base */
            bm->has_base = false;
        }
        bm->enabled = false;
        update_enabled_locked(set);
    }
    g_mutex_unlock(&set->lock);
    return bm != NULL;
}

/* OR the bits of src (granularity sg) into dst (granularity dg), both over size bytes. */
static void or_bits(Bitmap *dst, uint32_t dg, const Bitmap *src, uint32_t sg, uint64_t size)
{
    uint64_t n = bitmap_size(src);
    uint64_t b = bitmap_find_next_set(src, 0);

    while (b < n) {
        uint64_t e = bitmap_find_next_clear(src, b);
        uint64_t start = b * sg;
        uint64_t end = MIN(e * sg, size);
        if (end > start) {
            mark_bits(dst, dg, start, end - start);
        }
        b = e < n ? bitmap_find_next_set(src, e) : n;
    }
}

bool dirty_set_merge_check(DirtyBitmapSet *set, const char *target, DirtyBitmapSet *src,
                           const char *src_name, GError **errp)
{
    g_mutex_lock(&src->lock);
    bool ok = lookup_locked(src, src_name, CHECK_BUSY | CHECK_INCONSISTENT, errp) != NULL;
    g_mutex_unlock(&src->lock);
    if (!ok) {
        return false;
    }
    g_mutex_lock(&set->lock);
    ok = lookup_locked(set, target, CHECK_BUSY | CHECK_INCONSISTENT, errp) != NULL;
    g_mutex_unlock(&set->lock);
    if (ok && set->size != src->size) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_SIZE,
                    "Bitmaps are of different sizes (destination size is %" G_GUINT64_FORMAT
                    ", source size is %" G_GUINT64_FORMAT ") and can't be merged",
                    set->size, src->size);
        ok = false;
    }
    return ok;
}

bool dirty_set_merge(DirtyBitmapSet *set, const char *target, DirtyBitmapSet *src,
                     const char *src_name, GError **errp)
{
    /* Copy the source first (its own lock), then OR under the target's lock: the two
     * locks are never held together. */
    g_mutex_lock(&src->lock);
    DirtyBitmap *s = lookup_locked(src, src_name, CHECK_BUSY | CHECK_INCONSISTENT, errp);
    g_autoptr(Bitmap) copy = NULL;
    uint32_t sg = 0;
    if (s != NULL) {
        sg = s->granularity;
        copy = bitmap_new(s->nbits, false);
        or_bits(copy, sg, s->bits, sg, src->size);
    }
    g_mutex_unlock(&src->lock);
    if (s == NULL) {
        return false;
    }

    g_mutex_lock(&set->lock);
    DirtyBitmap *t = lookup_locked(set, target, CHECK_BUSY | CHECK_INCONSISTENT, errp);
    if (t != NULL && set->size != src->size) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_SIZE,
                    "Bitmaps are of different sizes (destination size is %" G_GUINT64_FORMAT
                    ", source size is %" G_GUINT64_FORMAT ") and can't be merged",
                    set->size, src->size);
        t = NULL;
    } else if (t != NULL) {
        or_bits(t->bits, t->granularity, copy, sg, set->size);
    }
    g_mutex_unlock(&set->lock);
    return t != NULL;
}

void dirty_bitmap_info_free(DirtyBitmapInfo *info)
{
    if (info != NULL) {
        g_free(info->name);
        g_free(info);
    }
}

GPtrArray *dirty_set_query(DirtyBitmapSet *set)
{
    GPtrArray *list = g_ptr_array_new_with_free_func((GDestroyNotify)dirty_bitmap_info_free);

    if (set == NULL) {
        return list;
    }
    g_mutex_lock(&set->lock);
    for (guint i = set->bitmaps->len; i-- > 0;) {
        DirtyBitmap *bm = g_ptr_array_index(set->bitmaps, i);
        DirtyBitmapInfo *info = g_new0(DirtyBitmapInfo, 1);
        const Bitmap *shown = bm->frozen != NULL ? bm->frozen : bm->bits;
        info->name = g_strdup(bm->name);
        info->granularity = bm->granularity;
        info->count = bm->inconsistent ? 0 : bitmap_count(shown) * bm->granularity;
        info->recording = bm->enabled && !bm->inconsistent;
        info->busy = bm->busy;
        info->persistent = bm->persistent;
        info->inconsistent = bm->inconsistent;
        g_ptr_array_add(list, info);
    }
    g_mutex_unlock(&set->lock);
    return list;
}

bool dirty_set_has_persistent(DirtyBitmapSet *set)
{
    bool any = false;

    g_mutex_lock(&set->lock);
    for (guint i = 0; i < set->bitmaps->len && !any; i++) {
        any = ((DirtyBitmap *)g_ptr_array_index(set->bitmaps, i))->persistent;
    }
    g_mutex_unlock(&set->lock);
    return any;
}

void dirty_set_make_inconsistent(DirtyBitmapSet *set)
{
    g_mutex_lock(&set->lock);
    for (guint i = 0; i < set->bitmaps->len; i++) {
        DirtyBitmap *bm = g_ptr_array_index(set->bitmaps, i);
        if (bm->persistent) {
            bm->inconsistent = true;
            bm->enabled = false;
            bm->has_base = false;
            bitmap_clear_range(bm->bits, 0, bm->nbits);
        }
    }
    update_enabled_locked(set);
    g_mutex_unlock(&set->lock);
}

/* ---- a backup's use ---- */

DirtyBitmap *dirty_bitmap_acquire(DirtyBitmapSet *set, const char *name, bool *has_base,
                                  uint8_t base[16], uint64_t *base_size, GError **errp)
{
    g_mutex_lock(&set->lock);
    DirtyBitmap *bm = lookup_locked(set, name, CHECK_BUSY, errp);
    if (bm != NULL && bm->inconsistent) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INCONSISTENT,
                    "Bitmap '%s' is inconsistent and cannot be used: it may have missed "
                    "writes (vmad did not stop cleanly, or the image changed while vmad "
                    "was not running); clear it with block-dirty-bitmap-clear (the next "
                    "backup from it is then a full one) or remove it", name);
        bm = NULL;
    }
    if (bm != NULL) {
        bm->busy = true;
        *has_base = bm->has_base;
        memcpy(base, bm->base, 16);
        *base_size = bm->base_size;
    }
    g_mutex_unlock(&set->lock);
    return bm;
}

const Bitmap *dirty_bitmap_freeze(DirtyBitmap *bm, bool reset, uint32_t *granularity)
{
    DirtyBitmapSet *set = bm->set;

    g_mutex_lock(&set->lock);
    assert(bm->busy && bm->frozen == NULL);
    if (reset) {
        bm->frozen = bm->bits;
        bm->bits = bitmap_new(bm->nbits, false);
    } else {
        bm->frozen = bitmap_new(bm->nbits, false);
        or_bits(bm->frozen, bm->granularity, bm->bits, bm->granularity, set->size);
    }
    bm->frozen_reset = reset;
    *granularity = bm->granularity;
    const Bitmap *frozen = bm->frozen;
    g_mutex_unlock(&set->lock);
    return frozen;
}

void dirty_bitmap_release(DirtyBitmap *bm, bool success, const uint8_t *new_base)
{
    DirtyBitmapSet *set = bm->set;

    g_mutex_lock(&set->lock);
    if (bm->frozen != NULL && !success && bm->frozen_reset) {
        or_bits(bm->bits, bm->granularity, bm->frozen, bm->granularity, set->size);
    }
    g_clear_pointer(&bm->frozen, bitmap_free);
    if (success && new_base != NULL) {
        bm->has_base = true;
        memcpy(bm->base, new_base, 16);
        bm->base_size = set->size;
    }
    bm->busy = false;
    g_mutex_unlock(&set->lock);
}

const char *dirty_bitmap_name(const DirtyBitmap *bm)
{
    return bm->name;
}

/* ---- an NBD export's use ---- */

DirtyBitmap *dirty_bitmap_acquire_export(DirtyBitmapSet *set, const char *name,
                                         bool refuse_enabled, GError **errp)
{
    g_mutex_lock(&set->lock);
    DirtyBitmap *bm = lookup_locked(set, name, 0, errp);
    if (bm != NULL && refuse_enabled && bm->enabled && !bm->inconsistent) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_INVALID,
                    "Enabled bitmap '%s' incompatible with readonly export", name);
        bm = NULL;
    }
    if (bm != NULL) {
        bm = lookup_locked(set, name, CHECK_BUSY | CHECK_INCONSISTENT, errp);
    }
    if (bm != NULL) {
        bm->busy = true;
    }
    g_mutex_unlock(&set->lock);
    return bm;
}

void dirty_bitmap_release_export(DirtyBitmap *bm)
{
    DirtyBitmapSet *set = bm->set;

    g_mutex_lock(&set->lock);
    assert(bm->busy && bm->frozen == NULL);
    bm->busy = false;
    g_mutex_unlock(&set->lock);
}

uint64_t dirty_bitmap_status(DirtyBitmap *bm, uint64_t offset, uint64_t len, bool *dirty)
{
    DirtyBitmapSet *set = bm->set;
    uint64_t g = bm->granularity;

    assert(len > 0 && offset < set->size && len <= set->size - offset);
    g_mutex_lock(&set->lock);
    uint64_t bit = offset / g;
    bool d = bitmap_test(bm->bits, bit);
    uint64_t next = d ? bitmap_find_next_clear(bm->bits, bit)
                      : bitmap_find_next_set(bm->bits, bit);
    g_mutex_unlock(&set->lock);
    *dirty = d;
    /* next <= nbits, and nbits * g >= size >= offset + len */
    return MIN(next * g, offset + len) - offset;
}

uint32_t dirty_bitmap_granularity(const DirtyBitmap *bm)
{
    return bm->granularity;
}

Bitmap *dirty_bits_to_clusters(const Bitmap *bits, uint32_t granularity, uint64_t size,
                               uint32_t cluster_size)
{
    uint64_t nclusters = (size + cluster_size - 1) / cluster_size;
    Bitmap *out = bitmap_new(nclusters, false);

    if (nclusters > 0) {
        or_bits(out, cluster_size, bits, granularity, size);
    }
    return out;
}

/* ---- for the state file (dirty-bitmap-store.c) ---- */

void dirty_set_foreach_persistent(DirtyBitmapSet *set,
                                  void (*fn)(const char *name, uint32_t granularity,
                                             bool enabled, bool has_base,
                                             const uint8_t *base, uint64_t base_size,
                                             const Bitmap *bits, void *opaque),
                                  void *opaque)
{
    g_mutex_lock(&set->lock);
    for (guint i = 0; i < set->bitmaps->len; i++) {
        DirtyBitmap *bm = g_ptr_array_index(set->bitmaps, i);
        if (!bm->persistent) {
            continue;
        }
        /* A bitmap held by a backup is stored as if the backup failed: bits ∪ frozen.
         * An inconsistent one is stored as such (no base, not enabled, flagged by the
         * caller). */
        g_autoptr(Bitmap) all = bitmap_new(bm->nbits, false);
        or_bits(all, bm->granularity, bm->bits, bm->granularity, set->size);
        if (bm->frozen != NULL) {
            or_bits(all, bm->granularity, bm->frozen, bm->granularity, set->size);
        }
        fn(bm->name, bm->granularity, bm->enabled && !bm->inconsistent,
           bm->has_base && !bm->inconsistent && bm->frozen == NULL, bm->base, bm->base_size,
           bm->inconsistent ? NULL : all, opaque);
    }
    g_mutex_unlock(&set->lock);
}

/* words_le NULL: the bitmap comes back inconsistent. False when the name is taken. */
bool dirty_set_insert_loaded(DirtyBitmapSet *set, const char *name, uint32_t granularity,
                             bool enabled, bool has_base, const uint8_t *base,
                             uint64_t base_size, const uint8_t *words_le, uint64_t nbits)
{
    g_mutex_lock(&set->lock);
    if (find_locked(set, name) != NULL) {
        g_mutex_unlock(&set->lock);
        return false;
    }
    DirtyBitmap *bm = new_bitmap_locked(set, name, granularity);
    bm->persistent = true;
    if (words_le == NULL || nbits != bm->nbits) {
        bm->inconsistent = true;
    } else {
        for (uint64_t w = 0; w < (nbits + 63) / 64; w++) {
            uint64_t v;
            memcpy(&v, words_le + w * 8, 8);
            v = GUINT64_FROM_LE(v);
            while (v != 0) {
                unsigned b = (unsigned)__builtin_ctzll(v);
                uint64_t bit = w * 64 + b;
                if (bit < nbits) {
                    bitmap_set(bm->bits, bit);
                }
                v &= v - 1;
            }
        }
        bm->enabled = enabled;
        bm->has_base = has_base;
        if (has_base) {
            memcpy(bm->base, base, 16);
            bm->base_size = base_size;
        }
    }
    update_enabled_locked(set);
    g_mutex_unlock(&set->lock);
    return true;
}
