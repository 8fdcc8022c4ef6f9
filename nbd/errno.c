/*
 * nbd/errno.c — the server's single errno -> NBD error mapping.
 *
 * The protocol allows only eight error values. Data paths in blockdev.c and in the
 * request code return -errno; every reply converts through this one function, so the
 * table in tests/unit/test-nbd-proto.c covers every error a client can ever see.
 */
#include <errno.h>

#include "nbd/proto.h"

uint32_t nbd_errno_to_wire(int err)
{
    if (err < 0) {
        err = -err;
    }
    switch (err) {
    case 0:
        return NBD_SUCCESS;
    case EPERM:
    case EACCES:
    case EROFS:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}
