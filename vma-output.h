/*
 * vma-output.h — the archive writer's outputs (vma-output.c): where the stream of
 * vma-writer.c goes. A new regular file (optionally O_DIRECT, written under a hidden
 * temporary name and renamed into place when complete), an existing FIFO, the stdin of
 * an "exec:" shell command, or a descriptor the caller passed. Internal to libvma;
 * used by vma-writer.c and its unit tests only.
 *
 * Threads: the constructors and vma_output_close() run in the thread that owns the
 * writer (its constructor and close); vma_output_writev() and vma_output_finish() run in
 * the writer thread only, and never at the same time as close; vma_output_wake() and
 * vma_output_get_bytes() are safe from any thread at any time until vma_output_free().
 */
#ifndef VMA_OUTPUT_H
#define VMA_OUTPUT_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vma.h"

typedef struct VmaOutput VmaOutput;

/* Open target as vma_writer_new() describes it: "exec:CMD", an existing FIFO, or a new
 * regular file (VMA_ERROR_EXISTS if the name exists; O_DIRECT if direct and the file
 * system allows it). For a new file the final name is checked here, so that the caller
 * learns at once that it is taken, and the data goes to ".NAME.tmp-XXXXXX" in the same
 * directory until vma_output_close() renames it. */
VmaOutput *vma_output_open(const char *target, bool direct, GError **errp);
/* Over a descriptor the caller opened; takes ownership of fd (closed on failure too).
 * Nothing is ever removed or renamed for it. */
VmaOutput *vma_output_new_fd(int fd, const char *name, GError **errp);
/* Free the handle; accepts NULL. Removes the temporary file of a new file that was not
 * renamed into place; an unclosed command is closed and waited for as after a failure. */
void vma_output_free(VmaOutput *o);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaOutput, vma_output_free)

/* Writer thread: append every byte of iov[0..cnt) (the iovecs are consumed). Returns 0
 * or -errno; -ECANCELED once vma_output_wake() was called and the output would block. */
int vma_output_writev(VmaOutput *o, struct iovec *iov, int cnt);
/* Writer thread: the stream is complete; write what is staged (O_DIRECT tail). */
int vma_output_finish(VmaOutput *o);

/* Any thread: make a writer thread blocked on a full pipe return -ECANCELED, now and
 * in every later wait, and a close waiting for a command end it (the writer has failed
 * and latched its error); the output is abandoned: close keeps nothing. Returns false,
 * doing nothing, once close has committed the output (found it complete and kept it):
 * the failure came too late to matter. */
bool vma_output_wake(VmaOutput *o);
/* Bytes written to the output so far. */
uint64_t vma_output_get_bytes(VmaOutput *o);

/* Finish the output once the writer thread has stopped. failed says that the stream is
 * not a complete archive (error or cancel). On success: flush a regular file, close, wait
 * for a command (exit status 0 required), and put a new file under its final name
 * (never replacing a file created there meanwhile) with its directory flushed. After a
 * failure: close, end a command that does not exit (SIGTERM, then SIGKILL to its process
 * group) and remove a new file. Returns false with errp set when something failed here;
 * a command's failure is VMA_ERROR_FAILED (the writer prefers it over the broken pipe it
 * causes). A new file is left under neither name unless this returns true with failed
 * false. Woken before close commits, close keeps nothing and fails (VMA_ERROR_CANCELLED
 * unless something else failed first). Call once. */
bool vma_output_close(VmaOutput *o, bool failed, GError **errp);

#endif /* VMA_OUTPUT_H */
