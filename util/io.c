/*
 * util/io.c — full reads and writes; the convention is in util/io.h.
 *
 * Every loop has the same shape: one system call for what is left, EINTR retried,
 * progress added, a call that moves nothing ends the loop (end of file for reads, -EIO
 * for writes, which would otherwise spin).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
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

/* Leading empty entries would make a vector call return 0 with bytes still to go. */
static void skip_empty(struct iovec **iov, int *cnt)
{
    while (*cnt > 0 && (*iov)->iov_len == 0) {
        (*iov)++;
        (*cnt)--;
    }
}

int full_pread_upto(int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
    size_t got = 0;
    int ret = 0;

    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ret = -errno;
            break;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    *done = got;
    return ret;
}

int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    int r = full_pread_upto(fd, buf, len, off, &done);

    if (r == 0 && done < len) {
        return -EIO;
    }
    return r;
}

int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t put = 0;

    while (put < len) {
        ssize_t n = pwrite(fd, (const char *)buf + put, len - put, (off_t)(off + put));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        put += (size_t)n;
    }
    return 0;
}

int full_preadv_upto(int fd, struct iovec *iov, int cnt, uint64_t off, size_t *done)
{
    size_t got = 0;
    int ret = 0;

    for (skip_empty(&iov, &cnt); cnt > 0; skip_empty(&iov, &cnt)) {
        ssize_t n = preadv(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ret = -errno;
            break;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
        iov_consume(&iov, &cnt, (size_t)n);
    }
    *done = got;
    return ret;
}

int full_pwritev(int fd, struct iovec *iov, int cnt, uint64_t off)
{
    uint64_t put = 0;

    for (skip_empty(&iov, &cnt); cnt > 0; skip_empty(&iov, &cnt)) {
        ssize_t n = pwritev(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt, (off_t)(off + put));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        put += (uint64_t)n;
        iov_consume(&iov, &cnt, (size_t)n);
    }
    return 0;
}

int full_read_upto(int fd, void *buf, size_t len, size_t *done)
{
    size_t got = 0;
    int ret = 0;

    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ret = -errno;
            break;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    *done = got;
    return ret;
}

int full_write(int fd, const void *buf, size_t len)
{
    size_t put = 0;

    while (put < len) {
        ssize_t n = write(fd, (const char *)buf + put, len - put);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        put += (size_t)n;
    }
    return 0;
}

int full_writev(int fd, struct iovec *iov, int cnt)
{
    for (skip_empty(&iov, &cnt); cnt > 0; skip_empty(&iov, &cnt)) {
        ssize_t n = writev(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        iov_consume(&iov, &cnt, (size_t)n);
    }
    return 0;
}
