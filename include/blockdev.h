/*
 * blockdev.h — vmad's block layer: named disks over raw image files or block devices.
 *
 * A BlockDev is reference counted; the registry (blockdev_add/find/del) holds one
 * reference per node name. All I/O functions are safe from any thread at once and
 * return 0 or -errno (data path). Control functions take GError **errp.
 *
 * Every write path (pwrite, write-zeroes, discard) runs the installed before-write hook
 * first, for the exact byte range, and only then touches the disk. Hooks are installed
 * on a set of disks atomically: blockdev_hooks_install() waits until no write is in
 * flight on any disk of the set, installs the hook on all of them, and only then lets
 * writes through again — so every disk of the set sees the hook from the same instant.
 */
#ifndef BLOCKDEV_H
#define BLOCKDEV_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct BlockDev BlockDev;

typedef struct BlockDevOptions {
    const char *node_name;   /* e.g. "drive-scsi0" */
    const char *filename;    /* raw image file or block device */
    bool read_only;
    bool direct;             /* O_DIRECT; unaligned requests are handled by bouncing */
    const char *locking;     /* QEMU's locking option: "on", "off", "auto" (NULL: auto) */
} BlockDevOptions;

/* Flags for blockdev_pwrite / blockdev_write_zeroes */
#define BLOCKDEV_FUA        0x1u  /* data durable before return */
#define BLOCKDEV_NO_UNMAP   0x2u  /* write-zeroes must leave the range allocated */
#define BLOCKDEV_FAST_ZERO  0x4u  /* fail with -ENOTSUP unless zeroing is cheap */

/* ---- registry (main loop thread) ---- */
bool blockdev_add(const BlockDevOptions *opts, GError **errp);
/* A new reference to the named disk, or NULL with DeviceNotFound-style error. */
BlockDev *blockdev_find(const char *node_name, GError **errp);
/* Fails while the disk is in use (exported, in a job: any reference besides the
 * registry's). */
bool blockdev_del(const char *node_name, GError **errp);
/* New references to every registered disk, in registration order (free with
 * blockdev_unref on each and g_ptr_array_unref). */
GPtrArray *blockdev_list(void);
/* Drop every disk from the registry (shutdown). */
void blockdev_close_all(void);

BlockDev *blockdev_ref(BlockDev *bd);
void blockdev_unref(BlockDev *bd);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BlockDev, blockdev_unref)

/* ---- properties (any thread) ---- */
const char *blockdev_get_name(BlockDev *bd);
const char *blockdev_get_filename(BlockDev *bd);
uint64_t blockdev_get_size(BlockDev *bd);
bool blockdev_is_read_only(BlockDev *bd);
bool blockdev_is_direct(BlockDev *bd);

/* ---- I/O (any thread; 0 or -errno) ---- */
int blockdev_pread(BlockDev *bd, void *buf, uint64_t len, uint64_t offset);
int blockdev_pwrite(BlockDev *bd, const void *buf, uint64_t len, uint64_t offset,
                    unsigned flags);
int blockdev_write_zeroes(BlockDev *bd, uint64_t len, uint64_t offset, unsigned flags);
int blockdev_discard(BlockDev *bd, uint64_t len, uint64_t offset);
int blockdev_flush(BlockDev *bd);
/* Allocation status at offset: *pnum = length (<= len) of the run that is all data
 * (*is_hole = false) or all hole (*is_hole = true), from SEEK_DATA/SEEK_HOLE. */
int blockdev_block_status(BlockDev *bd, uint64_t offset, uint64_t len, uint64_t *pnum,
                          bool *is_hole);
/* Reads that bypass nothing and are not hooked: the backup job's source reads. Same as
 * blockdev_pread; named for clarity at call sites. */
#define blockdev_pread_nohook blockdev_pread

/* ---- before-write hooks ---- */

/* Called on the writing thread before a write/write-zeroes/discard of [offset, offset+len)
 * reaches the disk. Return 0 to let the write through. A non-zero return is logged by
 * the hook's owner; the write still proceeds (a backup failure never fails a guest
 * write). The hook may block (e.g. to copy old data) but must not call back into
 * blockdev write functions of the same disk. */
typedef int (*BlockDevBeforeWriteFn)(void *opaque, BlockDev *bd, uint64_t offset,
                                     uint64_t len);

/* Install fn/opaque on all n disks at one instant (see the file comment). Fails if any
 * of them already has a hook. Main loop thread. */
bool blockdev_hooks_install(BlockDev *const *bds, size_t n, BlockDevBeforeWriteFn fn,
                            void *opaque, GError **errp);
/* Remove the hook from the n disks; returns after every call of it has finished. */
void blockdev_hooks_remove(BlockDev *const *bds, size_t n);

#endif /* BLOCKDEV_H */
