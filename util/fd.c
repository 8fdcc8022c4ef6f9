/*
 * util/fd.c — closing descriptors (util/fd.h).
 */
#include <errno.h>
#include <unistd.h>

#include "util/fd.h"

void close_fd(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        *fd = -1;
        errno = saved;
    }
}

int close_fd_checked(int *fd)
{
    int r = 0;

    if (*fd >= 0) {
        /* never retried, not even after EINTR: the descriptor is released already */
        if (close(*fd) < 0) {
            r = -errno;
        }
        *fd = -1;
    }
    return r;
}
