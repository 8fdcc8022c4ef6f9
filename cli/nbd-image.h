/*
 * cli/nbd-image.h — disk images in any QEMU format (and rbd: names), read and written
 * through a private qemu-nbd (cli/nbd-image.c). Used by create (-d format=qcow2:...)
 * and extract -r (format=qcow2 map lines, rbd: targets).
 *
 * Threads: one image is used by one thread at a time (create: its reader thread;
 * extract: the main thread). Different images may be used by different threads at once.
 */
#ifndef VMA_CLI_NBD_IMAGE_H
#define VMA_CLI_NBD_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

typedef struct CliNbdImage CliNbdImage;

/* Formats qemu-nbd is asked to open; "raw" included. NULL-terminated. */
extern const char *const cli_nbd_formats[];

/* Whether format is a format name of cli_nbd_formats. */
bool cli_nbd_format_known(const char *format);

/* The format of the image file at path, by its first bytes, as `vma create` probes an
 * image given without format=: qcow2, qed, vmdk, vdi, vhdx, vpc (by their magic), else
 * raw. Sets errp only when the file cannot be read. */
const char *cli_nbd_probe_format(const char *path, GError **errp);

/*
 * Start qemu-nbd on a private socket (libnbd's systemd socket activation) for path in
 * format (a qemu-img format; path may be a QEMU filename such as rbd:pool/image:conf=F)
 * and connect to it. cache: qemu-nbd's --cache mode, NULL for its default (writeback).
 * What qemu-nbd prints on stderr is kept and becomes part of an error message.
 */
CliNbdImage *cli_nbd_image_open(const char *path, const char *format, bool writable,
                                const char *cache, GError **errp);
uint64_t cli_nbd_image_size(CliNbdImage *im);

/* 0 or -errno; on failure cli_nbd_image_last_error() says why. Writes are asynchronous:
 * a few are kept in flight (the data is copied), and their errors come back from a later
 * call at the latest from cli_nbd_image_finish(). */
int cli_nbd_image_pread(CliNbdImage *im, void *buf, size_t len, uint64_t offset);
int cli_nbd_image_pwrite(CliNbdImage *im, const void *buf, size_t len, uint64_t offset);
/* Write zeros; the range may be deallocated (NBD write-zeroes without NO_HOLE). */
int cli_nbd_image_zero(CliNbdImage *im, uint64_t len, uint64_t offset);
/* The run at offset (at most len) that reads as zeros (*is_zero) or may hold data. */
int cli_nbd_image_block_status(CliNbdImage *im, uint64_t offset, uint64_t len,
                               uint64_t *pnum, bool *is_zero);
/* A message for the last failed call: libnbd's, with qemu-nbd's stderr when it has any. */
char *cli_nbd_image_last_error(CliNbdImage *im);

/* Wait for the writes in flight, flush (writable images), disconnect and wait for
 * qemu-nbd to exit. False with the first error. */
bool cli_nbd_image_finish(CliNbdImage *im, GError **errp);
/* Disconnect without flushing (after a failure) and free; NULL is fine. */
void cli_nbd_image_free(CliNbdImage *im);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CliNbdImage, cli_nbd_image_free)

#endif /* VMA_CLI_NBD_IMAGE_H */
