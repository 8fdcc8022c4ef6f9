/*
 * util/io.h — full reads and writes: loops over pread/pwrite/read/write (and the vector
 * forms) that retry EINTR and go on after a short transfer.
 *
 * One return convention for every function here: 0 when the whole length was
 * transferred, -errno on failure. The descriptor is never left in an unknown state
 * beyond the bytes already moved.
 *   - A write that makes no progress (write() returning 0 for a non-empty buffer) is
 *     -EIO.
 *   - End of file: the plain read functions treat it as an error, -EIO, for callers
 *     that read back what they wrote and cannot meet a shorter file. The _upto
 *     functions stop at end of file and return 0 with *done < len: that is how a short
 *     read at end of file is reported, and the only case where *done < len with 0.
 *     *done holds the bytes transferred on every return, failures included.
 *   - EAGAIN is returned as -EAGAIN (a non-blocking descriptor): callers that poll do
 *     it themselves (vma-writer.c waits with its own poll and then calls again).
 * The vector functions consume the iovec array they are given (iov_consume): on return
 * it describes what was not transferred. At most IOV_MAX entries go to one system call.
 * Any thread; no state.
 *
 * Who uses what:
 *   full_pwrite       backup-spill.c (fleecing spill), block/file.c (writes), cli/extract.c
 *   full_pread        backup-spill.c (spill read-back: a short file is an error)
 *   full_pread_upto   block/file.c (reads that may meet the end of a file)
 *   full_preadv_upto  cli/create.c (1 MiB reads into cluster buffers), block/file.c
 *                     (vector reads: block-copy's merged reads of claimed runs)
 *   full_pwritev      none yet (block/file.c writes element by element for O_DIRECT)
 *   full_write        vmad.c (pid file)
 *   full_writev       vma-writer.c-like stream writers on blocking descriptors
 *   full_read_upto    streams read whole (stdin, pipes)
 *   iov_consume       vma-writer.c (its EAGAIN-aware writev loop), the loops here
 */
#ifndef VMA_UTIL_IO_H
#define VMA_UTIL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Exactly len bytes at off; -EIO at end of file before len bytes. */
int full_pread(int fd, void *buf, size_t len, uint64_t off);
/* Up to len bytes at off; *done < len only at end of file. */
int full_pread_upto(int fd, void *buf, size_t len, uint64_t off, size_t *done);
/* Every byte of buf at off. */
int full_pwrite(int fd, const void *buf, size_t len, uint64_t off);

/* Up to the iovecs' total length at off; *done < total only at end of file. */
int full_preadv_upto(int fd, struct iovec *iov, int cnt, uint64_t off, size_t *done);
/* Every byte of the iovecs at off. */
int full_pwritev(int fd, struct iovec *iov, int cnt, uint64_t off);

/* Stream forms (the file position moves). */
int full_read_upto(int fd, void *buf, size_t len, size_t *done);
int full_write(int fd, const void *buf, size_t len);
int full_writev(int fd, struct iovec *iov, int cnt);

/* Drop the first n bytes from the iovec array *iov of *cnt entries: fully consumed
 * entries are skipped (*iov advances, *cnt shrinks), a partly consumed one is trimmed
 * in place. n must not exceed the array's total length. */
void iov_consume(struct iovec **iov, int *cnt, size_t n);

#endif
