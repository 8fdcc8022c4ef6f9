/*
 * vma-input.h — the archive reader's input front end (vma-input.c): a strictly
 * sequential byte source over a descriptor that undoes whole-stream compression
 * (zstd, gzip, lzop, bzip2) in-process. Internal to libvma; used by vma-reader.c and
 * its unit tests only.
 *
 * Threads: an input is used by one thread at a time (the reader's).
 */
#ifndef VMA_INPUT_H
#define VMA_INPUT_H

#include <glib.h>
#include <stdint.h>
#include <sys/types.h>

#include "vma.h"

typedef struct VmaInput VmaInput;

/* Take ownership of fd (closed by vma_input_free(), also on failure), read the first
 * bytes and detect the compression by magic bytes. name is used in messages. Input
 * that starts with none of the known magics is passed through as it is (the archive
 * reader checks the VMA magic). */
VmaInput *vma_input_new(int fd, const char *name, GError **errp);
void vma_input_free(VmaInput *in);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaInput, vma_input_free)

VmaCompression vma_input_get_compression(VmaInput *in);
/* Read len bytes of the (decompressed) stream into buf. Returns len, or fewer only at
 * the clean end of the stream (0 once it has ended), or -1 with an error (I/O error,
 * corrupt or truncated compressed data). Errors are latched: every later call fails
 * with the same error. */
ssize_t vma_input_read(VmaInput *in, void *buf, size_t len, GError **errp);

/* Bytes consumed from the descriptor so far (compressed bytes, if it is). */
uint64_t vma_input_get_consumed(VmaInput *in);
/* Bytes of stream returned by vma_input_read() so far. */
uint64_t vma_input_get_produced(VmaInput *in);
/* Size of a regular input file, 0 when the input is not a regular file. */
uint64_t vma_input_get_size(VmaInput *in);

#endif /* VMA_INPUT_H */
