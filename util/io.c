/*
 * util/io.c — full reads and writes; the convention is in util/io.h.
 *
 * Two loops do all the work, one for a buffer and one for an iovec array; each takes the
 * direction and an offset (STREAM: the file position). Their shape: one system call for
 * what is left, EINTR retried, progress added, and a call that moves nothing ends the
 * loop (end of file for reads, -EIO for writes, which would otherwise spin).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include "util/io.h"

void iov_consume(struct iovec **iov, int *cnt, size_t n)
{
    while (*cnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*cnt)--;
    }
    if (*cnt > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

/* Empty entries are passed over: a call on nothing but empty ones would return 0, which
 * for a write means no progress (-EIO). */
static void skip_empty(struct iovec **iov, int *cnt)
{
    while (*cnt > 0 && (*iov)->iov_len == 0) {
        (*iov)++;
        (*cnt)--;
    }
}

#define STREAM UINT64_MAX /* no offset: read/write at the file position */

static ssize_t xfer_once(int fd, void *buf, size_t len, uint64_t off, bool wr)
{
    if (off == STREAM) {
        return wr ? write(fd, buf, len) : read(fd, buf, len);
    }
    return wr ? pwrite(fd, buf, len, (off_t)off) : pread(fd, buf, len, (off_t)off);
}

static ssize_t xferv_once(int fd, struct iovec *iov, int cnt, uint64_t off, bool wr)
{
    cnt = cnt > IOV_MAX ? IOV_MAX : cnt;
    if (off == STREAM) {
        return wr ? writev(fd, iov, cnt) : readv(fd, iov, cnt);
    }
    return wr ? pwritev(fd, iov, cnt, (off_t)off) : preadv(fd, iov, cnt, (off_t)off);
}

/* What one call's result n means for the loop: 1 go on (n > 0 bytes moved, or EINTR),
 * 0 stop at end of file, -errno stop with an error (a write that moved nothing: -EIO). */
static int step(ssize_t n, bool wr)
{
    if (n < 0) {
        return errno == EINTR ? 1 : -errno;
    }
    if (n == 0) {
        return wr ? -EIO : 0;
    }
    return 1;
}

/* Move len bytes; *done says how many moved. 0 (for reads also at end of file) or
 * -errno; a write that moves nothing is -EIO. */
static int xfer(int fd, void *buf, size_t len, uint64_t off, bool wr, size_t *done)
{
    size_t got = 0;
    int ret = 0;

    while (got < len) {
        ssize_t n = xfer_once(fd, (char *)buf + got, len - got,
                              off == STREAM ? STREAM : off + got, wr);
        if ((ret = step(n, wr)) <= 0) {
            break;
        }
        if (n > 0) {
            got += (size_t)n;
        }
    }
    *done = got;
    return ret < 0 ? ret : 0;
}

/* The same over an iovec array, which it consumes. */
static int xferv(int fd, struct iovec *iov, int cnt, uint64_t off, bool wr, size_t *done)
{
    size_t got = 0;
    int ret = 0;

    for (skip_empty(&iov, &cnt); cnt > 0; skip_empty(&iov, &cnt)) {
        ssize_t n = xferv_once(fd, iov, cnt, off == STREAM ? STREAM : off + got, wr);
        if ((ret = step(n, wr)) <= 0) {
            break;
        }
        if (n > 0) {
            got += (size_t)n;
            iov_consume(&iov, &cnt, (size_t)n);
        }
    }
    *done = got;
    return ret < 0 ? ret : 0;
}

int full_pread_upto(int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
    return xfer(fd, buf, len, off, false, done);
}

int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    int r = xfer(fd, buf, len, off, false, &done);

    return r == 0 && done < len ? -EIO : r;
}

int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done;

    return xfer(fd, (void *)buf, len, off, true, &done);
}

int full_preadv_upto(int fd, struct iovec *iov, int cnt, uint64_t off, size_t *done)
{
    return xferv(fd, iov, cnt, off, false, done);
}

int full_pwritev(int fd, struct iovec *iov, int cnt, uint64_t off)
{
    size_t done;

    return xferv(fd, iov, cnt, off, true, &done);
}

int full_read_upto(int fd, void *buf, size_t len, size_t *done)
{
    return xfer(fd, buf, len, STREAM, false, done);
}

int full_write(int fd, const void *buf, size_t len)
{
    size_t done;

    return xfer(fd, (void *)buf, len, STREAM, true, &done);
}

int full_writev(int fd, struct iovec *iov, int cnt)
{
    size_t done;

    return xferv(fd, iov, cnt, STREAM, true, &done);
}
