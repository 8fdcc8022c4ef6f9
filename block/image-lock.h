/*
 * image-lock.h — QEMU-compatible locking of image files (library-private to vmad).
 *
 * A node that opens an image announces, with shared byte-range locks on the image file,
 * which permissions it uses and which it refuses to share with other users of the file,
 * at the offsets QEMU 7.2 uses: byte IMAGE_LOCK_PERM_BASE + i while the node holds
 * permission bit i, byte IMAGE_LOCK_SHARED_BASE + i while it does not share bit i. So
 * QEMU (qemu-system, qemu-io, qemu-img, qemu-storage-daemon) and vmad see each other's
 * claims both ways. The locks are open file description locks (F_OFD_SETLK): two opens of
 * one file in one process exclude each other as two processes do, and the locks go away
 * with the descriptor (close, exit, kill -9).
 *
 * Thread: the caller's (node open, main loop thread). Nothing here keeps state.
 */
#ifndef BLOCK_IMAGE_LOCK_H
#define BLOCK_IMAGE_LOCK_H

#include <glib.h>
#include <stdbool.h>

/* QEMU's permission bits (include/block/block-common.h of QEMU 7.2). */
#define IMAGE_PERM_CONSISTENT_READ  0x1u
#define IMAGE_PERM_WRITE            0x2u
#define IMAGE_PERM_WRITE_UNCHANGED  0x4u
#define IMAGE_PERM_RESIZE           0x8u
#define IMAGE_PERM_ALL              0xfu
#define IMAGE_PERM_COUNT            4

#define IMAGE_LOCK_PERM_BASE   100
#define IMAGE_LOCK_SHARED_BASE 200

/* QEMU's `locking` option of the file driver. */
typedef enum ImageLocking {
    IMAGE_LOCKING_AUTO,      /* lock if the kernel has OFD locks (default) */
    IMAGE_LOCKING_ON,        /* lock; without OFD locks fall back to POSIX locks, warned */
    IMAGE_LOCKING_OFF,       /* take no locks and check none */
} ImageLocking;

/* "on", "off", "auto" (NULL: auto). Anything else fails with QEMU's message
 * "Parameter 'locking' does not accept value '<v>'". */
bool image_locking_parse(const char *text, ImageLocking *out, GError **errp);

/* What vmad's raw node takes and shares: as QEMU's node under a guest disk, it uses
 * consistent read, and write and resize when writable; it shares consistent read and
 * write-unchanged only. Read-write: bytes 100, 101, 103, 201, 203; read-only: 100, 201,
 * 203. */
void image_lock_raw_perms(bool read_only, unsigned *perm, unsigned *shared);

/* Take the locks for (perm, shared) on fd, then check that no other open of the file
 * holds a conflicting byte (an exclusive probe with F_OFD_GETLK, as QEMU does): a
 * permission we use that someone does not share fails with "Failed to get \"<perm>\"
 * lock"; a permission we do not share that someone uses with "Failed to get shared
 * \"<perm>\" lock". QEMU's hint "Is another process using the image [<filename>]?"
 * follows on the same line. A lock system call that fails gives "Failed to lock byte
 * <n>[: <errno text>]". On failure every byte this call locked is released again. */
bool image_lock_apply(int fd, unsigned perm, unsigned shared, bool use_ofd,
                      const char *filename, GError **errp);

/* The whole open-time step of a raw node: parse locking, pick OFD or POSIX locks (or
 * none), and apply image_lock_raw_perms(read_only). */
bool image_lock_open(int fd, const char *filename, bool read_only, const char *locking,
                     GError **errp);

#endif /* BLOCK_IMAGE_LOCK_H */
