/*
 * cli/nbd-image.c — images in QEMU formats through a private qemu-nbd.
 *
 * We do not parse qcow2, vmdk or any other format ourselves: qemu-nbd opens the image
 * (every format and protocol QEMU has, rbd: names through qemu-block-extra's rbd driver)
 * and serves it as raw bytes; libnbd's nbd_connect_systemd_socket_activation starts it
 * with a listening socket of its own (no path in the file system, no port) and connects.
 * qemu-nbd is not persistent: it exits when we disconnect, and nbd_close waits for it.
 *
 * qemu-nbd's command line: --format=FMT (never probed by qemu-nbd: the format is ours to
 * name, see cli_nbd_probe_format), --read-only for sources, --discard=unmap for targets
 * (write-zeroes may then deallocate: a qcow2 target gets zero clusters, not written
 * zeros), --cache=MODE when the restore map gives one (qemu-nbd's default, writeback,
 * otherwise; the restore ends with a flush, which qemu-nbd passes to the image).
 * qemu-nbd's stderr is a memfd while it starts, so that its complaint ("Unknown driver
 * 'foo'", "Could not open 'x'") becomes part of our one-line error, not loose lines.
 *
 * Reads and block status are synchronous (one image is read front to back by one
 * thread). Writes are asynchronous: each is copied into one of WRITE_SLOTS buffers and
 * sent with nbd_aio_pwrite; a write that finds every slot busy waits (nbd_poll) for one
 * to complete. So several writes are in flight while the caller reads the next ones
 * from the archive, and qemu-nbd (which runs requests concurrently) writes them in
 * parallel, as qemu-img convert does with its coroutines. Requests in flight may complete
 * in any order: callers never write one byte twice while it is in flight (extract writes
 * every byte at most once). The first failed write is latched and returned by every
 * later call.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>

#include <libnbd.h>

#include "cli/cli.h"
#include "cli/nbd-image.h"
#include "util/fd.h"
#include "util/io.h"

#define WRITE_SLOTS 8u
#define SLOT_SIZE (1u << 20)
#define MAX_REQUEST (32u << 20)
#define MAX_ZERO (1u << 30)

const char *const cli_nbd_formats[] = {
    "raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vhdx", "vpc", "parallels",
    "bochs", "cloop", "dmg", "luks", NULL,
};

typedef struct WriteSlot {
    CliNbdImage *im;
    void *buf;
    bool busy;
} WriteSlot;

struct CliNbdImage {
    struct nbd_handle *h;
    char *name;              /* "PATH (FORMAT)" for messages */
    int errfd;               /* memfd: qemu-nbd's stderr */
    uint64_t size;
    bool writable;
    bool can_zero, can_flush, has_alloc;
    uint32_t max_request;
    WriteSlot slots[WRITE_SLOTS];
    unsigned busy;           /* slots in flight */
    int write_err;           /* first failed write (-errno), latched */
    char *last_error;
};

static const uint8_t zeros[1u << 20];

bool cli_nbd_format_known(const char *format)
{
    for (const char *const *f = cli_nbd_formats; *f; f++) {
        if (strcmp(*f, format) == 0) {
            return true;
        }
    }
    return false;
}

const char *cli_nbd_probe_format(const char *path, GError **errp)
{
    uint8_t b[512] = {0};
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "open image %s: %s", path,
                    g_strerror(errno));
        return NULL;
    }
    int r = full_pread_upto(fd, b, sizeof(b), 0, &got);
    close_fd(&fd);
    if (r < 0) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "read image %s: %s", path, g_strerror(-r));
        return NULL;
    }
    static const struct {
        const char *format;
        size_t offset;
        const char *magic;
        size_t len;
    } magics[] = {
        {"qcow2", 0, "QFI\xfb\0\0\0", 7},        /* version 2 and 3 follow */
        {"qed", 0, "QED\0", 4},
        {"vmdk", 0, "KDMV", 4},
        {"vmdk", 0, "# Disk DescriptorFile", 21},
        {"vdi", 64, "\x7f\x10\xda\xbe", 4},
        {"vhdx", 0, "vhdxfile", 8},
        {"vpc", 0, "conectix", 8},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(magics); i++) {
        if (got >= magics[i].offset + magics[i].len &&
            memcmp(b + magics[i].offset, magics[i].magic, magics[i].len) == 0) {
            if (strcmp(magics[i].format, "qcow2") == 0 && b[7] != 2 && b[7] != 3) {
                continue;
            }
            return magics[i].format;
        }
    }
    return "raw";
}

/* What qemu-nbd wrote to stderr, on one line ("" when nothing). */
static char *server_stderr(CliNbdImage *im)
{
    char buf[2048];
    size_t got = 0;

    if (im->errfd < 0 || full_pread_upto(im->errfd, buf, sizeof(buf) - 1, 0, &got) < 0) {
        return g_strdup("");
    }
    buf[got] = '\0';
    g_strstrip(buf);
    for (char *p = buf; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }
    return g_strdup(buf);
}

static int set_error(CliNbdImage *im, int err)
{
    g_autofree char *serr = server_stderr(im);
    const char *msg = nbd_get_error();

    g_free(im->last_error);
    im->last_error = g_strdup_printf("%s%s%s", msg ? msg : g_strerror(err),
                                     serr[0] ? ": " : "", serr);
    return -err;
}

static int nbd_fail(CliNbdImage *im)
{
    int e = nbd_get_errno();
    return set_error(im, e > 0 ? e : EIO);
}

char *cli_nbd_image_last_error(CliNbdImage *im)
{
    return g_strdup(im->last_error ? im->last_error : "unknown error");
}

CliNbdImage *cli_nbd_image_open(const char *path, const char *format, bool writable,
                                const char *cache, GError **errp)
{
    g_autoptr(CliNbdImage) im = g_new0(CliNbdImage, 1);
    g_autofree char *fmt_arg = g_strdup_printf("--format=%s", format);
    g_autofree char *cache_arg = cache ? g_strdup_printf("--cache=%s", cache) : NULL;
    char *argv[8];
    int argc = 0;

    im->errfd = -1;
    im->name = g_strdup_printf("%s (%s)", path, format);
    im->writable = writable;
    argv[argc++] = (char *)"qemu-nbd";
    argv[argc++] = fmt_arg;
    argv[argc++] = (char *)(writable ? "--discard=unmap" : "--read-only");
    if (cache_arg) {
        argv[argc++] = cache_arg;
    }
    argv[argc++] = (char *)"--";
    argv[argc++] = (char *)path;
    argv[argc] = NULL;

    im->h = nbd_create();
    if (!im->h) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "%s: %s", im->name, nbd_get_error());
        return NULL;
    }
    nbd_add_meta_context(im->h, LIBNBD_CONTEXT_BASE_ALLOCATION);

    /* qemu-nbd's stderr goes to a memfd while it starts (and for its whole life) */
    im->errfd = memfd_create("qemu-nbd-stderr", MFD_CLOEXEC);
    int saved = im->errfd >= 0 ? fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3) : -1;
    if (saved >= 0) {
        dup2(im->errfd, STDERR_FILENO);
    }
    int r = nbd_connect_systemd_socket_activation(im->h, argv);
    int err = r < 0 ? nbd_get_errno() : 0;
    if (saved >= 0) {
        dup2(saved, STDERR_FILENO);
        close(saved);
    }
    if (r < 0) {
        set_error(im, err > 0 ? err : EIO);
        g_set_error(errp, CLI_ERROR, err == ENOENT ? CLI_ERROR_IO : CLI_ERROR_INVALID,
                    "%s through qemu-nbd: %s", im->name, im->last_error);
        return NULL;
    }
    int64_t size = nbd_get_size(im->h);
    if (size < 0) {
        nbd_fail(im);
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "%s: %s", im->name, im->last_error);
        return NULL;
    }
    im->size = (uint64_t)size;
    im->can_zero = nbd_can_zero(im->h) == 1;
    im->can_flush = nbd_can_flush(im->h) == 1;
    im->has_alloc = nbd_can_meta_context(im->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    int64_t max = nbd_get_block_size(im->h, LIBNBD_SIZE_MAXIMUM);
    im->max_request = max > 0 && max < MAX_REQUEST ? (uint32_t)max : MAX_REQUEST;
    if (writable && nbd_is_read_only(im->h) == 1) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID, "%s: qemu-nbd serves it read-only",
                    im->name);
        return NULL;
    }
    for (unsigned i = 0; i < WRITE_SLOTS; i++) {
        im->slots[i].im = im;
    }
    return g_steal_pointer(&im);
}

uint64_t cli_nbd_image_size(CliNbdImage *im)
{
    return im->size;
}

int cli_nbd_image_pread(CliNbdImage *im, void *buf, size_t len, uint64_t offset)
{
    while (len > 0) {
        size_t n = MIN(len, (size_t)im->max_request);
        if (nbd_pread(im->h, buf, n, offset, 0) < 0) {
            return nbd_fail(im);
        }
        buf = (char *)buf + n;
        len -= n;
        offset += n;
    }
    return 0;
}

/* A write completed (inside nbd_poll or any libnbd call of this thread). */
static int write_done(void *opaque, int *error)
{
    WriteSlot *s = opaque;
    CliNbdImage *im = s->im;

    if (*error != 0 && im->write_err == 0) {
        im->write_err = -*error;
        g_free(im->last_error);
        im->last_error = g_strdup(g_strerror(*error));
    }
    s->busy = false;
    im->busy--;
    return 1;
}

/* Wait until fewer than max writes are in flight; the latched error or 0. */
static int wait_writes(CliNbdImage *im, unsigned max)
{
    while (im->busy > max && im->write_err == 0) {
        if (nbd_poll(im->h, -1) < 0) {
            return nbd_fail(im);
        }
    }
    return im->write_err;
}

int cli_nbd_image_pwrite(CliNbdImage *im, const void *buf, size_t len, uint64_t offset)
{
    while (len > 0) {
        int r = wait_writes(im, WRITE_SLOTS - 1);
        if (r < 0) {
            return r;
        }
        WriteSlot *s = NULL;
        for (unsigned i = 0; i < WRITE_SLOTS && !s; i++) {
            s = im->slots[i].busy ? NULL : &im->slots[i];
        }
        if (!s->buf) {
            s->buf = g_malloc(SLOT_SIZE);
        }
        size_t n = MIN(len, (size_t)SLOT_SIZE);
        memcpy(s->buf, buf, n);
        s->busy = true;
        im->busy++;
        nbd_completion_callback cb = {.callback = write_done, .user_data = s};
        if (nbd_aio_pwrite(im->h, s->buf, n, offset, cb, 0) < 0) {
            s->busy = false;
            im->busy--;
            return nbd_fail(im);
        }
        buf = (const char *)buf + n;
        len -= n;
        offset += n;
    }
    return 0;
}

int cli_nbd_image_zero(CliNbdImage *im, uint64_t len, uint64_t offset)
{
    if (im->write_err < 0) {
        return im->write_err;
    }
    while (len > 0) {
        if (im->can_zero) {
            uint64_t n = MIN(len, (uint64_t)MAX_ZERO);
            if (nbd_zero(im->h, n, offset, 0) < 0) {
                return nbd_fail(im);
            }
            len -= n;
            offset += n;
        } else {
            size_t n = (size_t)MIN(len, (uint64_t)sizeof(zeros));
            int r = cli_nbd_image_pwrite(im, zeros, n, offset);
            if (r < 0) {
                return r;
            }
            len -= n;
            offset += n;
        }
    }
    return im->write_err;
}

typedef struct StatusRun {
    uint64_t offset;
    uint64_t run;
    bool set, zero, closed;
} StatusRun;

static int status_extent(void *opaque, const char *metacontext, uint64_t offset,
                         uint32_t *entries, size_t nr_entries, int *error)
{
    StatusRun *sr = opaque;

    if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 || offset != sr->offset) {
        return 0;
    }
    for (size_t i = 0; i + 1 < nr_entries && !sr->closed; i += 2) {
        bool zero = (entries[i + 1] & LIBNBD_STATE_ZERO) != 0;
        if (!sr->set) {
            sr->set = true;
            sr->zero = zero;
        } else if (zero != sr->zero) {
            sr->closed = true;
            break;
        }
        sr->run += entries[i];
    }
    return 0;
}

int cli_nbd_image_block_status(CliNbdImage *im, uint64_t offset, uint64_t len,
                               uint64_t *pnum, bool *is_zero)
{
    StatusRun sr = {.offset = offset};

    if (!im->has_alloc) {
        *pnum = len;
        *is_zero = false;
        return 0;
    }
    nbd_extent_callback cb = {.callback = status_extent, .user_data = &sr};
    if (nbd_block_status(im->h, MIN(len, (uint64_t)MAX_ZERO), offset, cb, 0) < 0) {
        return nbd_fail(im);
    }
    if (!sr.set || sr.run == 0) {
        return set_error(im, EIO);
    }
    *pnum = MIN(sr.run, len);
    *is_zero = sr.zero;
    return 0;
}

bool cli_nbd_image_finish(CliNbdImage *im, GError **errp)
{
    int r = wait_writes(im, 0);

    if (r == 0 && im->writable && im->can_flush && nbd_flush(im->h, 0) < 0) {
        r = nbd_fail(im);
    }
    if (r < 0) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "write %s: %s", im->name, im->last_error);
        return false;
    }
    if (nbd_shutdown(im->h, 0) < 0) {
        nbd_fail(im);
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "close %s: %s", im->name, im->last_error);
        return false;
    }
    nbd_close(im->h);   /* waits for qemu-nbd to exit */
    im->h = NULL;
    return true;
}

void cli_nbd_image_free(CliNbdImage *im)
{
    if (!im) {
        return;
    }
    if (im->h) {
        nbd_close(im->h);
    }
    for (unsigned i = 0; i < WRITE_SLOTS; i++) {
        g_free(im->slots[i].buf);
    }
    close_fd(&im->errfd);
    g_free(im->name);
    g_free(im->last_error);
    g_free(im);
}
