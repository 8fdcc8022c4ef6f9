/*
 * block/dirty-bitmap.h — change bitmaps of a node (QEMU's block dirty bitmaps) and their
 * persistent form (daemon-private).
 *
 * Every protocol node has one DirtyBitmapSet (BlockNode.dirty): its named bitmaps. Each
 * write request that reaches the node (write, write-zeroes, discard; whoever sends it:
 * the guest through the registry, a filter, a live restore) marks its range in every
 * enabled bitmap when it completes, also when it failed (bnode_* in block/block.c). A
 * bitmap is one bit per `granularity` bytes (a power of two, 4 KiB .. 64 MiB).
 *
 * States of a bitmap (QEMU's words): enabled ("recording") or disabled; busy while a
 * backup holds it (frozen bits + a successor that records, see dirty_bitmap_freeze())
 * or an NBD export shows it (its live bits, read by dirty_bitmap_status());
 * persistent (stored in the state directory at clean close); inconsistent (loaded from
 * a state file that says the bitmap may have missed writes: no bits, not recording, only
 * remove or clear make it usable again).
 *
 * Chain bookkeeping (vmad's own, persisted): a bitmap that a backup has reset counts
 * from that backup; `base` is its archive uuid and base_size the disk size then. A
 * bitmap without a base (new, cleared, disabled, loaded inconsistent) makes the next
 * backup a full one, which becomes its base.
 *
 * Threads: dirty_set_mark() and dirty_bitmap_status() run on any I/O thread; everything
 * else on the main loop (QMP handlers, backup start) or the backup's controller thread
 * (dirty_bitmap_release).
 * One mutex per set protects all of its bitmaps; it is taken alone and never held
 * across I/O.
 */
#ifndef BLOCK_DIRTY_BITMAP_H
#define BLOCK_DIRTY_BITMAP_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/bitmap.h"

#define DIRTY_BITMAP_ERROR (dirty_bitmap_error_quark())
GQuark dirty_bitmap_error_quark(void);

typedef enum DirtyBitmapErrorCode {
    DIRTY_BITMAP_ERROR_INVALID,      /* a bad argument (granularity, name) */
    DIRTY_BITMAP_ERROR_NOT_FOUND,    /* "Dirty bitmap 'x' not found" */
    DIRTY_BITMAP_ERROR_EXISTS,       /* "Bitmap already exists: x" */
    DIRTY_BITMAP_ERROR_BUSY,         /* in use by a backup or an export */
    DIRTY_BITMAP_ERROR_INCONSISTENT, /* may have missed writes */
    DIRTY_BITMAP_ERROR_SIZE,         /* merge of different sizes */
    DIRTY_BITMAP_ERROR_STATE,        /* a state file could not be read or written */
} DirtyBitmapErrorCode;

#define DIRTY_BITMAP_MIN_GRANULARITY 4096u
#define DIRTY_BITMAP_MAX_GRANULARITY (64u << 20)
#define DIRTY_BITMAP_DEFAULT_GRANULARITY 65536u
#define DIRTY_BITMAP_MAX_NAME 1023u

typedef struct DirtyBitmapSet DirtyBitmapSet;
typedef struct DirtyBitmap DirtyBitmap;

/* The bitmaps of a node of size bytes (none yet). */
DirtyBitmapSet *dirty_set_new(uint64_t size);
void dirty_set_free(DirtyBitmapSet *set);     /* NULL is fine */
uint64_t dirty_set_disk_size(const DirtyBitmapSet *set);

/* A write of [offset, offset+len) completed (or failed): mark every enabled bitmap.
 * Any thread. */
void dirty_set_mark(DirtyBitmapSet *set, uint64_t offset, uint64_t len);

/* ---- QMP operations (main loop); messages are QEMU's (node = the node's name) ---- */

/* granularity 0: the default. */
bool dirty_set_add(DirtyBitmapSet *set, const char *node, const char *name,
                   uint32_t granularity, bool persistent, bool disabled, GError **errp);
bool dirty_set_remove(DirtyBitmapSet *set, const char *name, GError **errp);
bool dirty_set_clear(DirtyBitmapSet *set, const char *name, GError **errp);
bool dirty_set_enable(DirtyBitmapSet *set, const char *name, GError **errp);
bool dirty_set_disable(DirtyBitmapSet *set, const char *name, GError **errp);
/* OR bitmap src_name of src (may be set itself) into target of set. */
bool dirty_set_merge(DirtyBitmapSet *set, const char *target, DirtyBitmapSet *src,
                     const char *src_name, GError **errp);
/* The checks of dirty_set_merge() without the merge. */
bool dirty_set_merge_check(DirtyBitmapSet *set, const char *target, DirtyBitmapSet *src,
                           const char *src_name, GError **errp);

typedef struct DirtyBitmapInfo {
    char *name;
    uint64_t count;          /* dirty bytes, granule-rounded */
    uint32_t granularity;
    bool recording;
    bool busy;
    bool persistent;
    bool inconsistent;
} DirtyBitmapInfo;

/* The set's bitmaps, newest first (QEMU's order); array of DirtyBitmapInfo *, owning. */
GPtrArray *dirty_set_query(DirtyBitmapSet *set);
void dirty_bitmap_info_free(DirtyBitmapInfo *info);

/* Any persistent bitmap in the set? */
bool dirty_set_has_persistent(DirtyBitmapSet *set);

/* ---- a backup's use of a bitmap ---- */

/*
 * Take bitmap name for a backup (main loop, before the instant): it must exist and be
 * neither busy nor inconsistent (errors say why and what to do); it is busy from now on.
 * *has_base / base[16] / *base_size: what its bits count from (no base: the backup must
 * be a full one). Returns the bitmap (owned by the set; valid until release).
 */
DirtyBitmap *dirty_bitmap_acquire(DirtyBitmapSet *set, const char *name, bool *has_base,
                                  uint8_t base[16], uint64_t *base_size, GError **errp);
/*
 * At the instant (every write before it has marked, none after it has started): take
 * the bits. reset: the bitmap restarts empty (its successor records from here; the old
 * bits come back on a failed release); else it keeps them and goes on recording.
 * Returns the frozen bits (granularity-sized bits, owned by the bitmap until release).
 */
const Bitmap *dirty_bitmap_freeze(DirtyBitmap *bm, bool reset, uint32_t *granularity);
/*
 * The backup ended. success with new_base: the bitmap now counts from new_base (an
 * archive uuid; disk size recorded). Failure: frozen bits merged back when they were
 * reset, so nothing is lost. No longer busy. Any thread.
 */
void dirty_bitmap_release(DirtyBitmap *bm, bool success, const uint8_t *new_base);
const char *dirty_bitmap_name(const DirtyBitmap *bm);

/* ---- an NBD export's use of a bitmap (nbd/server.c) ---- */

/*
 * Take bitmap name for an NBD export (main loop): it must exist (NOT_FOUND, "Dirty
 * bitmap 'x' not found"), and, when refuse_enabled, not record ("Enabled bitmap 'x'
 * incompatible with readonly export": QEMU's check for a read-only export of a disk that
 * others may write); then neither busy nor inconsistent (QEMU's texts). It is busy until
 * dirty_bitmap_release_export(): remove, clear, enable, disable, merge into it and
 * backups from it are refused meanwhile. It keeps recording if it was enabled.
 */
DirtyBitmap *dirty_bitmap_acquire_export(DirtyBitmapSet *set, const char *name,
                                         bool refuse_enabled, GError **errp);
/* The export is gone (no reader left): not busy any more. Main loop. */
void dirty_bitmap_release_export(DirtyBitmap *bm);
/*
 * The state of bytes [offset, offset + len) of the disk (len > 0, within the disk):
 * *dirty tells whether the granule holding offset is dirty; returns how many bytes from
 * offset share that state (1 .. len; granule-aligned ends, except at offset + len).
 * Any thread (an NBD BLOCK_STATUS request); the live bits, as writes mark them.
 */
uint64_t dirty_bitmap_status(DirtyBitmap *bm, uint64_t offset, uint64_t len, bool *dirty);
uint32_t dirty_bitmap_granularity(const DirtyBitmap *bm);

/*
 * The clusters of cluster_size bytes (a power of two) of a disk of size bytes that hold
 * a dirty bit of bits (granularity bytes each), as a new Bitmap of one bit per cluster.
 */
Bitmap *dirty_bits_to_clusters(const Bitmap *bits, uint32_t granularity, uint64_t size,
                               uint32_t cluster_size);

/* ---- persistence (block/dirty-bitmap-store.c; main loop) ---- */

/*
 * The state file of a disk: one per image, named after the node and the image path,
 * in the state directory. Format (all little-endian), documented in docs/internals.md:
 *   header: magic "VMADBMP1", version, flags (bit 0 IN_USE), image dev, ino, size,
 *           mtime (s, ns), bitmap count, header CRC
 *   per bitmap: name length, granularity, flags (enabled, has base), base uuid,
 *           base size, bit count, name, raw bitmap words, CRC of the entry
 */
#define DIRTY_STATE_MAGIC "VMADBMP1"
#define DIRTY_STATE_VERSION 1u        /* written for image files (no mark) */
#define DIRTY_STATE_VERSION_MARK 2u   /* written when the identity has a mark (rbd) */
#define DIRTY_STATE_MAX_MARK 4096u    /* bytes of a mark record */

/* The state directory (vmad --state-dir); NULL: the default (see vmad.8). */
void dirty_state_set_dir(const char *dir);
const char *dirty_state_get_dir(void);
/* The state file path for a node over image filename (g_free). */
char *dirty_state_path(const char *node, const char *filename);

/*
 * Load the persistent bitmaps of a node over image `filename` into set (which must be
 * empty). No state file: nothing. A file with IN_USE set (vmad did not stop cleanly),
 * or whose image identity, size or mtime differ from the image now (changed offline),
 * or that is damaged: every bitmap it names comes back inconsistent (a file too damaged
 * to name them: none, with a warning). writable: the disk is open for writing: when any
 * persistent bitmap is loaded, the file is first rewritten with IN_USE set, durably.
 * False only when that mark cannot be written (then the disk must not be opened).
 */
bool dirty_state_load(DirtyBitmapSet *set, const char *node, const char *filename,
                      bool writable, GError **errp);
/*
 * Write the state file of set (atomically: temp file, fsync, rename, fsync of the
 * directory). in_use: mark that bitmaps may change from now on (a disk opened for
 * writing); else record the image's identity (stat of filename) for the next load (clean close).
 * A set without persistent bitmaps removes the file.
 */
bool dirty_state_save(DirtyBitmapSet *set, const char *node, const char *filename,
                      bool in_use, GError **errp);

/*
 * The same for a protocol node n named node, by its driver: a driver with state ops
 * (block.h: state_seal, state_check, state_drop; rbd) has no file identity; its state
 * file (version 2) holds the record of a mark the driver made of the image at the clean
 * close, and a load asks the driver whether the image is unchanged since that mark (the
 * ranges written since are added to the enabled bitmaps) — see dirty-bitmap-store.c.
 * Other drivers: dirty_state_load() / dirty_state_save() on n->filename.
 */
struct BlockNode;
bool dirty_state_load_node(struct BlockNode *n, const char *node, GError **errp);
bool dirty_state_save_node(struct BlockNode *n, const char *node, bool in_use,
                           GError **errp);

/* Serialise / parse the state file body (for the unit tests and the fuzzer). */
typedef struct DirtyStateIdentity {
    uint64_t dev, ino, size;
    int64_t mtime_sec, mtime_nsec;
    /* version 2: the driver's mark record (1..DIRTY_STATE_MAX_MARK bytes), else NULL.
     * decode sets a new reference (the caller unrefs it, also after a failure). */
    GBytes *mark;
} DirtyStateIdentity;
GBytes *dirty_state_encode(DirtyBitmapSet *set, bool in_use, const DirtyStateIdentity *id);
/* Fills the (empty) set; *in_use and *id from the header. A damaged file: false with
 * errp set, and the bitmaps it could name are in the set as inconsistent. */
bool dirty_state_decode(DirtyBitmapSet *set, const void *data, size_t len, bool *in_use,
                        DirtyStateIdentity *id, GError **errp);
/* For dirty-bitmap-store.c: every persistent bitmap of set (under the set's lock; fn must
 * not call back). bits NULL: inconsistent. A bitmap held by a backup is given as if the
 * backup failed (bits ∪ frozen, no new base). */
void dirty_set_foreach_persistent(DirtyBitmapSet *set,
                                  void (*fn)(const char *name, uint32_t granularity,
                                             bool enabled, bool has_base,
                                             const uint8_t *base, uint64_t base_size,
                                             const Bitmap *bits, void *opaque),
                                  void *opaque);
/* Add a loaded persistent bitmap; words_le NULL (or nbits not the set's): inconsistent.
 * False when the name is taken. */
bool dirty_set_insert_loaded(DirtyBitmapSet *set, const char *name, uint32_t granularity,
                             bool enabled, bool has_base, const uint8_t *base,
                             uint64_t base_size, const uint8_t *words_le, uint64_t nbits);
/* Mark every persistent bitmap of set inconsistent (no bits, no base). */
void dirty_set_make_inconsistent(DirtyBitmapSet *set);

#endif /* BLOCK_DIRTY_BITMAP_H */
