/*
 * blockdev.h — the node registry of vmad: named disks over raw image files or block
 * devices, and their I/O entry points.
 *
 * A BlockDev is reference counted; the registry (blockdev_add/find/del) holds one
 * reference per node name. All I/O functions are safe from any thread at once and
 * return 0 or -errno (data path). Control functions take GError **errp.
 *
 * A disk is the top of a chain of block nodes (block/block.h): its protocol node (the
 * `file` or `host_device` driver) and the filters inserted above it, e.g. a backup's
 * copy-before-write. Every I/O function below passes the disk's write gate and runs the
 * request down the chain from the top; filters are inserted above a set of disks at one
 * instant (blockdev_insert_filters()), so every disk of the set sees them from the same
 * point in time.
 */
#ifndef BLOCKDEV_H
#define BLOCKDEV_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct BlockDev BlockDev;

typedef struct BlockDevOptions {
    const char *node_name;   /* e.g. "drive-scsi0" */
    const char *driver;      /* "file", "host_device"; NULL: by the kind of file */
    const char *filename;    /* raw image file or block device */
    bool read_only;
    bool direct;             /* O_DIRECT; unaligned requests are handled by bouncing */
    const char *locking;     /* QEMU's locking option: "on", "off", "auto" (NULL: auto) */
    /* alloc-track (live restore): node names of the target and of the source */
    const char *file;
    const char *backing;
    /* driver "rbd" (QEMU's BlockdevOptionsRbd; filename unused): */
    const char *pool;
    const char *rbd_namespace; /* QEMU's "namespace"; NULL: none */
    const char *image;
    const char *conf;        /* ceph.conf; NULL: librbd's default search */
    const char *user;        /* cephx id without "client."; NULL: admin */
    const char *snapshot;    /* open this snapshot, read-only */
    /* driver vma: the archive's device, and older archives of its chain (NULL or a
     * NULL-terminated list) */
    const char *device;
    const char *const *base;
    /* driver "nbd" (QEMU's BlockdevOptionsNbd; filename unused): */
    const char *server_type; /* server.type: "unix" or "inet" */
    const char *server_path; /* server.path (unix) */
    const char *server_host; /* server.host, server.port (inet) */
    const char *server_port;
    const char *nbd_export;  /* QEMU's "export"; NULL: "" */
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
/* The driver of the disk's protocol node ("file", "host_device"): query-block's drv. */
const char *blockdev_get_driver(BlockDev *bd);
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

#endif /* BLOCKDEV_H */
