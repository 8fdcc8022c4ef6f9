/*
 * image-lock.c — QEMU-compatible image locking (see image-lock.h for the byte layout).
 *
 * Every lock we take is a shared (read) lock on one byte; nobody ever holds an exclusive
 * lock there. A conflict is therefore found not by failing to lock but by asking the
 * kernel whether an exclusive lock *could* be taken on a byte (F_OFD_GETLK with F_WRLCK):
 * it could not exactly when another open file description holds the byte. Our own
 * description's locks never conflict with themselves, so the check may run after we
 * locked our bytes, which is the order QEMU uses too: lock first, then check, and undo the
 * locks when the check fails. Two vmads (or vmad and QEMU) opening at the same moment thus
 * both see the other's bytes and both back off rather than both succeeding.
 *
 * POSIX locks (F_SETLK) are the fallback of locking=on on a kernel without OFD locks.
 * They are per process, so they do not separate two nodes of one vmad, and closing any
 * descriptor of the file drops them all; QEMU has the same limits and warns likewise.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "block/image-lock.h"

static const char *const perm_names[IMAGE_PERM_COUNT] = {
    "consistent read", "write", "write unchanged", "resize",
};

bool image_locking_parse(const char *text, ImageLocking *out, GError **errp)
{
    if (text == NULL || strcmp(text, "auto") == 0) {
        *out = IMAGE_LOCKING_AUTO;
    } else if (strcmp(text, "on") == 0) {
        *out = IMAGE_LOCKING_ON;
    } else if (strcmp(text, "off") == 0) {
        *out = IMAGE_LOCKING_OFF;
    } else {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Parameter 'locking' does not accept value '%s'", text);
        return false;
    }
    return true;
}

void image_lock_raw_perms(bool read_only, unsigned *perm, unsigned *shared)
{
    *perm = IMAGE_PERM_CONSISTENT_READ;
    if (!read_only) {
        *perm |= IMAGE_PERM_WRITE | IMAGE_PERM_RESIZE;
    }
    *shared = IMAGE_PERM_CONSISTENT_READ | IMAGE_PERM_WRITE_UNCHANGED;
}

/* One byte: F_RDLCK to take, F_UNLCK to release. 0 or -errno. */
static int lock_byte(int fd, bool use_ofd, int off, short type)
{
    struct flock fl = {
        .l_type = type,
        .l_whence = SEEK_SET,
        .l_start = off,
        .l_len = 1,
    };

    while (fcntl(fd, use_ofd ? F_OFD_SETLK : F_SETLK, &fl) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

/* 0 if an exclusive lock on the byte could be taken, -EAGAIN if another holder has it,
 * other -errno if the kernel would not say. */
static int probe_byte(int fd, bool use_ofd, int off)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = off,
        .l_len = 1,
    };

    if (fcntl(fd, use_ofd ? F_OFD_GETLK : F_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
}

/* The bytes (perm, shared) asks for, ascending; returns how many (at most 8). */
static unsigned wanted_bytes(unsigned perm, unsigned shared, int bytes[2 * IMAGE_PERM_COUNT])
{
    unsigned n = 0;

    for (unsigned i = 0; i < IMAGE_PERM_COUNT; i++) {
        if (perm & (1u << i)) {
            bytes[n++] = IMAGE_LOCK_PERM_BASE + (int)i;
        }
    }
    for (unsigned i = 0; i < IMAGE_PERM_COUNT; i++) {
        if (!(shared & (1u << i))) {
            bytes[n++] = IMAGE_LOCK_SHARED_BASE + (int)i;
        }
    }
    return n;
}

static void unlock_bytes(int fd, bool use_ofd, const int *bytes, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        (void)lock_byte(fd, use_ofd, bytes[i], F_UNLCK);
    }
}

/* The first conflict with another holder, as QEMU orders them: permissions we use
 * first, then permissions we do not share. */
static bool check_conflicts(int fd, bool use_ofd, unsigned perm, unsigned shared,
                            const char *filename, GError **errp)
{
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < IMAGE_PERM_COUNT; i++) {
            unsigned bit = 1u << i;
            bool in_use = (perm & bit) != 0;
            bool unshared = (shared & bit) == 0;
            if (pass == 0 ? !in_use : !unshared) {
                continue;
            }
            /* we use bit i: nobody may refuse to share it (byte 200+i); we refuse to
             * share it: nobody may use it (byte 100+i) */
            int off = (pass == 0 ? IMAGE_LOCK_SHARED_BASE : IMAGE_LOCK_PERM_BASE) + (int)i;
            if (probe_byte(fd, use_ofd, off) != 0) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                            "Failed to get %s\"%s\" lock. "
                            "Is another process using the image [%s]?",
                            pass == 0 ? "" : "shared ", perm_names[i], filename);
                return false;
            }
        }
    }
    return true;
}

bool image_lock_apply(int fd, unsigned perm, unsigned shared, bool use_ofd,
                      const char *filename, GError **errp)
{
    int bytes[2 * IMAGE_PERM_COUNT];
    unsigned n = wanted_bytes(perm, shared, bytes);

    for (unsigned i = 0; i < n; i++) {
        int r = lock_byte(fd, use_ofd, bytes[i], F_RDLCK);
        if (r < 0) {
            unlock_bytes(fd, use_ofd, bytes, i);
            if (r == -EAGAIN || r == -EACCES) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY, "Failed to lock byte %d",
                            bytes[i]);
            } else {
                g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                            "Failed to lock byte %d: %s", bytes[i], g_strerror(-r));
            }
            return false;
        }
    }
    if (!check_conflicts(fd, use_ofd, perm, shared, filename, errp)) {
        unlock_bytes(fd, use_ofd, bytes, n);
        return false;
    }
    return true;
}

/* Whether the kernel knows OFD locks: F_OFD_GETLK on the image itself (EINVAL: no). */
static bool have_ofd_locks(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};

    return fcntl(fd, F_OFD_GETLK, &fl) == 0 || errno != EINVAL;
}

bool image_lock_open(int fd, const char *filename, bool read_only, const char *locking,
                     GError **errp)
{
    ImageLocking mode = IMAGE_LOCKING_AUTO;
    unsigned perm = 0, shared = 0;

    if (!image_locking_parse(locking, &mode, errp)) {
        return false;
    }
    if (mode == IMAGE_LOCKING_OFF) {
        return true;
    }
    bool use_ofd = have_ofd_locks(fd);
    if (!use_ofd) {
        if (mode == IMAGE_LOCKING_AUTO) {
            return true;
        }
        g_warning("%s: the kernel has no OFD locks: using POSIX locks, which two opens of "
                  "one image in this process do not see and which closing any descriptor "
                  "of the file drops", filename);
    }
    image_lock_raw_perms(read_only, &perm, &shared);
    return image_lock_apply(fd, perm, shared, use_ofd, filename, errp);
}
