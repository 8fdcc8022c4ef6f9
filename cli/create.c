/*
 * create.c — `vma create [-v] [-c CFG]... ARCHIVE [-d format=raw:NAME=PATH]... | [NAME=PATH]...`
 *
 * Writes a new archive from disk images and config files. ARCHIVE is a new file (it must not exist), an existing FIFO, exec:<command>
 * (the stream goes to the command's stdin), or - for standard output (not a terminal).
 * Devices are given either all with -d or all as legacy positional operands; a device
 * without "NAME=" is called disk<index> (index from 0 in the order given); the name
 * "vmstate" makes the image a VM state stream. A config is stored under the base name of
 * its file.
 *
 * Formats: format=raw images (regular files, block devices) are read here; any other
 * format name is passed to a private qemu-nbd (cli/nbd-image.c), which opens the image
 * (qcow2 with its backing chain, vmdk, ...) read-only. Without format= the image is
 * probed as the deployed tool does, but only by magic numbers of formats that announce
 * themselves (cli_nbd_probe_format: qcow2, qed, vmdk, vdi, vhdx, vpc); everything else
 * is raw, never guessed further. Through qemu-nbd, block status (base:allocation) finds
 * the clusters that read as zeros — unallocated in the whole backing chain, or zero
 * clusters — and they become zero clusters without being read; data is read in 1 MiB
 * requests.
 *
 * Reading: everything is opened and checked before the archive is created, so a bad
 * operand leaves nothing behind. Up to two threads read images, one image each at a
 * time, sequentially in 1 MiB preadv() calls straight into 64 KiB cluster buffers that
 * are handed to the writer (vma_writer_write_cluster takes ownership). Holes of regular
 * files are found with SEEK_DATA/SEEK_HOLE and sent as zero clusters without being read;
 * all-zero clusters that were read are sent as zero clusters too. Block devices have no
 * hole information and are read completely.
 *
 * Failure (a read error, the writer's latched error, an interrupt): the first error is
 * kept, the writer is cancelled so that blocked threads return, and freeing the writer
 * removes the partial archive. -v prints the deployed tool's progress lines on stderr
 * ("progress N% transferred/total zero-bytes", then "image NAME: size=.. zeros=..
 * saved=.." per device).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/nbd-image.h"
#include "util/fd.h"
#include "util/io.h"

#define READ_BATCH 16u /* clusters per preadv: 1 MiB */
#define READER_THREADS 2u

typedef struct Image {
    char *name;
    char *path;
    char *format;          /* given with format=, or probed; "raw": read directly */
    CliNbdImage *nbd;      /* other formats: through qemu-nbd (fd is then -1) */
    int fd;
    uint64_t size;
    bool is_blockdev;
    int dev_id;
} Image;

typedef struct Create {
    VmaWriter *w;
    GPtrArray *images;     /* Image* */
    gint next_image;       /* atomic: next image a reader thread takes */

    GMutex lock;           /* protects error, workers_running */
    GCond done_cond;       /* signalled when a worker ends */
    GError *error;         /* first error of any thread */
    guint workers_running;
} Create;

static void image_free(Image *im)
{
    if (!im) {
        return;
    }
    close_fd(&im->fd);
    cli_nbd_image_free(im->nbd);
    g_free(im->format);
    g_free(im->name);
    g_free(im->path);
    g_free(im);
}

static void create_usage(FILE *out)
{
    fprintf(out,
            "Usage: vma create [-v] [-c CONFIG]... ARCHIVE -d [format=FMT:]NAME=PATH...\n"
            "       vma create [-v] [-c CONFIG]... ARCHIVE [NAME=]PATH...\n"
            "\n"
            "Write a new VMA archive from disk images and config files. Images in a format\n"
            "other than raw (qcow2, vmdk, ... any format qemu-img knows) are read through\n"
            "qemu-nbd; without format= the format is probed (qcow2, qed, vmdk, vdi, vhdx,\n"
            "vpc by their magic, else raw). ARCHIVE must not\n"
            "exist; it is written under a hidden temporary name in the same directory and\n"
            "renamed when complete. It may also be an existing FIFO, exec:COMMAND (the\n"
            "stream goes to the command's stdin) or - (standard output, not a terminal).\n"
            "A device without NAME= is called disk<index>; the name 'vmstate' stores the\n"
            "image as a VM state stream.\n"
            "\n"
            "  -c, --config FILE  store FILE as a config (under its base name); repeatable\n"
            "  -d, --device SPEC  add a device: [format=FMT:]NAME=PATH; repeatable\n"
            "  -v, --verbose      print progress and per-image statistics on stderr\n"
            "  -h, --help         show this help\n");
}

/* Any thread: latch the first error (takes ownership of err) and cancel the writer. */
static void create_fail(Create *cr, GError *err)
{
    bool first;

    g_mutex_lock(&cr->lock);
    first = cr->error == NULL;
    if (first) {
        cr->error = err;
    }
    g_mutex_unlock(&cr->lock);
    if (first) {
        vma_writer_cancel(cr->w, err->message);
    } else {
        g_error_free(err);
    }
}

static bool create_failed(Create *cr)
{
    bool failed;

    g_mutex_lock(&cr->lock);
    failed = cr->error != NULL;
    g_mutex_unlock(&cr->lock);
    return failed;
}

static bool send_cluster(Create *cr, Image *im, uint64_t cl, void *buf, GError **errp)
{
    if (buf && vma_buffer_is_zero(buf, VMA_CLUSTER_SIZE)) {
        vma_cluster_free(buf);
        buf = NULL;
    }
    return vma_writer_write_cluster(cr->w, (uint8_t)im->dev_id, (uint32_t)cl, buf, 0, errp);
}

/* Read want bytes at off through qemu-nbd into the cluster buffers of iov: one request
 * into a bounce buffer (one round trip per MiB, not per cluster). */
static int nbd_preadv(Image *im, struct iovec *iov, unsigned n, size_t want, uint64_t off,
                      size_t *got)
{
    /* one per reader thread, kept for its images and freed when the thread ends */
    static GPrivate bounce_key = G_PRIVATE_INIT(g_free);
    uint8_t *bounce = g_private_get(&bounce_key);

    if (!bounce) {
        bounce = g_malloc((size_t)READ_BATCH * VMA_CLUSTER_SIZE);
        g_private_set(&bounce_key, bounce);
    }
    int r = cli_nbd_image_pread(im->nbd, bounce, want, off);
    if (r < 0) {
        return r;
    }
    size_t done = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy(iov[i].iov_base, bounce + done, iov[i].iov_len);
        done += iov[i].iov_len;
    }
    *got = want;
    return 0;
}

/* Reader thread: read clusters [cl, end) of an image and hand them to the writer. */
static bool copy_clusters(Create *cr, Image *im, uint64_t cl, uint64_t end, GError **errp)
{
    while (cl < end) {
        void *bufs[READ_BATCH];
        struct iovec iov[READ_BATCH];
        unsigned n = (unsigned)MIN((uint64_t)READ_BATCH, end - cl);
        uint64_t off = cl * VMA_CLUSTER_SIZE;
        size_t want = (size_t)MIN((uint64_t)n * VMA_CLUSTER_SIZE, im->size - off);

        if (cli_interrupted()) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_CANCELLED, "interrupted");
            return false;
        }
        if (create_failed(cr)) {
            return vma_writer_check(cr->w, errp);
        }
        for (unsigned i = 0; i < n; i++) {
            bufs[i] = vma_cluster_alloc();
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = VMA_CLUSTER_SIZE;
        }
        /* the last cluster of the image may be partial: read only what the image has */
        iov[n - 1].iov_len = want - (size_t)(n - 1) * VMA_CLUSTER_SIZE;
        size_t got = 0;
        int r = im->nbd ? nbd_preadv(im, iov, n, want, off, &got)
                        : full_preadv_upto(im->fd, iov, (int)n, off, &got);
        if (r < 0 || got < want) {
            for (unsigned i = 0; i < n; i++) {
                vma_cluster_free(bufs[i]);
            }
            if (r < 0 && im->nbd) {
                g_autofree char *msg = cli_nbd_image_last_error(im->nbd);
                g_set_error(errp, VMA_ERROR, VMA_ERROR_IO,
                            "read image %s (%s) at offset %" G_GUINT64_FORMAT ": %s", im->path,
                            im->format, off, msg);
            } else if (r < 0) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_IO,
                            "read image %s at offset %" G_GUINT64_FORMAT ": %s", im->path, off,
                            g_strerror(-r));
            } else {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_IO,
                            "read image %s: unexpected end of file at offset %" G_GUINT64_FORMAT
                            " (did it shrink?)", im->path, off + (uint64_t)got);
            }
            return false;
        }
        /* the tail of the last, partial cluster of the image */
        if (want < (size_t)n * VMA_CLUSTER_SIZE) {
            size_t in_last = want - (size_t)(n - 1) * VMA_CLUSTER_SIZE;
            memset((char *)bufs[n - 1] + in_last, 0, VMA_CLUSTER_SIZE - in_last);
        }
        for (unsigned i = 0; i < n; i++) {
            if (!send_cluster(cr, im, cl + i, bufs[i], errp)) {
                for (unsigned k = i + 1; k < n; k++) {
                    vma_cluster_free(bufs[k]);
                }
                return false;
            }
        }
        cl += n;
    }
    return true;
}

/* Reader thread: one image, front to back; holes become zero clusters unread. */
static bool copy_image_nbd(Create *cr, Image *im, GError **errp);

static bool copy_image(Create *cr, Image *im, GError **errp)
{
    if (im->nbd) {
        return copy_image_nbd(cr, im, errp);
    }
    uint64_t ncl = (im->size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
    bool seek_ok = !im->is_blockdev;
    uint64_t cl = 0;

    while (cl < ncl) {
        uint64_t end = ncl;

        if (seek_ok) {
            off_t data = lseek(im->fd, (off_t)(cl * VMA_CLUSTER_SIZE), SEEK_DATA);
            if (data < 0 && errno == ENXIO) {
                data = (off_t)im->size; /* only a hole is left */
            } else if (data < 0) {
                seek_ok = false;        /* not supported here: read everything */
                data = (off_t)(cl * VMA_CLUSTER_SIZE);
            }
            if (seek_ok) {
                uint64_t data_cl = (uint64_t)data / VMA_CLUSTER_SIZE;
                for (; cl < data_cl && cl < ncl; cl++) {
                    if (!send_cluster(cr, im, cl, NULL, errp)) {
                        return false;
                    }
                }
                if (cl >= ncl) {
                    break;
                }
                off_t hole = lseek(im->fd, data, SEEK_HOLE);
                uint64_t hole_end = hole < 0 ? im->size : (uint64_t)hole;
                end = MIN(ncl, (hole_end + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE);
                end = MAX(end, cl + 1);
            }
        }
        if (!copy_clusters(cr, im, cl, end, errp)) {
            return false;
        }
        cl = end;
    }
    return true;
}

/* Reader thread: an image through qemu-nbd, front to back. Block status says which
 * clusters read as zeros: those become zero clusters without being read. */
static bool copy_image_nbd(Create *cr, Image *im, GError **errp)
{
    uint64_t ncl = (im->size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
    uint64_t cl = 0;

    while (cl < ncl) {
        uint64_t off = cl * VMA_CLUSTER_SIZE, pnum = 0;
        bool zero = false;
        int r = cli_nbd_image_block_status(im->nbd, off, im->size - off, &pnum, &zero);
        if (r < 0) {
            g_autofree char *msg = cli_nbd_image_last_error(im->nbd);
            g_set_error(errp, VMA_ERROR, VMA_ERROR_IO,
                        "block status of image %s (%s) at offset %" G_GUINT64_FORMAT ": %s",
                        im->path, im->format, off, msg);
            return false;
        }
        uint64_t run_end = off + pnum;
        if (zero) {
            /* whole clusters inside the zero run (the last, partial one of the image
             * counts when the run reaches the end) */
            uint64_t end = run_end >= im->size ? ncl : run_end / VMA_CLUSTER_SIZE;
            if (end > cl) {
                for (; cl < end; cl++) {
                    if (!send_cluster(cr, im, cl, NULL, errp)) {
                        return false;
                    }
                }
                continue;
            }
        }
        /* data (or a zero run smaller than a cluster): read up to the run's end */
        uint64_t end = MIN(ncl, (run_end + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE);
        end = MAX(end, cl + 1);
        if (!copy_clusters(cr, im, cl, end, errp)) {
            return false;
        }
        cl = end;
    }
    return true;
}

/* Reader thread: takes images one at a time until none is left or anything failed. */
static gpointer reader_thread(gpointer opaque)
{
    Create *cr = opaque;

    for (;;) {
        gint i = g_atomic_int_add(&cr->next_image, 1);
        if (i < 0 || (guint)i >= cr->images->len || create_failed(cr)) {
            break;
        }
        GError *err = NULL;
        if (!copy_image(cr, g_ptr_array_index(cr->images, (guint)i), &err)) {
            create_fail(cr, err);
            break;
        }
    }
    g_mutex_lock(&cr->lock);
    cr->workers_running--;
    g_cond_signal(&cr->done_cond);
    g_mutex_unlock(&cr->lock);
    return NULL;
}

/* ---- operands --------------------------------------------------------------------- */

/* Split "[format=F:][NAME=]PATH" (-d and the legacy operands alike; without format=
 * the image is probed when it is opened). */
static bool parse_device(const char *spec, guint index, Image *im, GError **errp)
{
    const char *p = spec;

    if (g_str_has_prefix(p, "format=")) {
        const char *colon = strchr(p + 7, ':');
        if (!colon) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                        "device '%s': format not terminated by ':'", spec);
            return false;
        }
        g_autofree char *fmt = g_strndup(p + 7, (gsize)(colon - (p + 7)));
        if (!cli_map_format_ok(fmt)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                        "device '%s': bad format name '%s'", spec, fmt);
            return false;
        }
        im->format = g_steal_pointer(&fmt);
        p = colon + 1;
    }
    const char *eq = strchr(p, '=');
    if (eq) {
        im->name = g_strndup(p, (gsize)(eq - p));
        im->path = g_strdup(eq + 1);
    } else {
        im->name = g_strdup_printf("disk%u", index);
        im->path = g_strdup(p);
    }
    if (im->path[0] == '\0') {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "device '%s': no image path", spec);
        return false;
    }
    return true;
}

static bool check_device_name(const char *name, GError **errp)
{
    if (!cli_check_name("device", name, errp)) {
        return false;
    }
    for (const char *s = name; *s; s++) {
        if (g_ascii_isspace(*s)) {
            /* the listing ("devname: NAME") and the restore map could not carry it */
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                        "refusing device name \"%s\": contains white space", name);
            return false;
        }
    }
    return true;
}

/* An image in another format than raw, through qemu-nbd (read-only). */
static bool open_image_nbd(Image *im, GError **errp)
{
    g_autoptr(GError) err = NULL;

    im->nbd = cli_nbd_image_open(im->path, im->format, false, NULL, &err);
    if (!im->nbd) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "open image %s", err->message);
        return false;
    }
    im->size = cli_nbd_image_size(im->nbd);
    return true;
}

static bool open_image(Image *im, GError **errp)
{
    g_autoptr(GError) err = NULL;

    if (!im->format) {
        /* probed as the deployed tool does, but only by the magic of formats that
         * announce themselves: anything else is raw */
        const char *f = cli_nbd_probe_format(im->path, errp);
        if (!f) {
            return false;
        }
        im->format = g_strdup(f);
    }
    if (strcmp(im->format, "raw") != 0) {
        if (!open_image_nbd(im, errp)) {
            return false;
        }
    } else {
        im->fd = open(im->path, O_RDONLY | O_CLOEXEC);
        if (im->fd < 0) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "open image %s: %s", im->path,
                        g_strerror(errno));
            return false;
        }
        if (!cli_fd_get_size(im->fd, im->path, &im->size, &im->is_blockdev, &err)) {
            g_set_error(errp, VMA_ERROR, err->code, "image %s", err->message);
            return false;
        }
        posix_fadvise(im->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    if (im->size == 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "image %s: size is 0", im->path);
        return false;
    }
    if (im->size > VMA_MAX_DEVICE_SIZE && strcmp(im->name, VMA_VMSTATE_NAME) != 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "image %s: size %" G_GUINT64_FORMAT " exceeds the format's 256 TiB",
                    im->path, im->size);
        return false;
    }
    return true;
}

/* A config file, whole; the format stores at most 65535 bytes. */
static GBytes *read_config_file(const char *file, GError **errp)
{
    g_autofd int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "read config %s: %s", file,
                    g_strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID, "config %s: not a regular file", file);
        return NULL;
    }
    if ((uint64_t)st.st_size > VMA_MAX_BLOB_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID,
                    "config %s: too large (%" G_GUINT64_FORMAT " bytes, at most %u)", file,
                    (uint64_t)st.st_size, VMA_MAX_BLOB_SIZE);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    g_autofree char *buf = g_malloc(len + 1);
    size_t got = 0;
    int r = full_pread_upto(fd, buf, len, 0, &got);
    if (r < 0 || got < len) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "read config %s: %s", file,
                    r < 0 ? g_strerror(-r) : "file shrank while reading");
        return NULL;
    }
    return g_bytes_new_take(g_steal_pointer(&buf), len);
}

/* ---- progress ----------------------------------------------------------------------- */

static void progress_totals(Create *cr, uint64_t *total, uint64_t *done, uint64_t *zero)
{
    *total = *done = *zero = 0;
    for (guint i = 0; i < cr->images->len; i++) {
        Image *im = g_ptr_array_index(cr->images, i);
        VmaDeviceStatus st;
        if (vma_writer_get_device_status(cr->w, (uint8_t)im->dev_id, &st)) {
            *total += st.size;
            *done += MIN(st.transferred, st.size);
            *zero += st.zero_bytes;
        }
    }
}

static void progress_line(Create *cr, int *last_percent)
{
    uint64_t total, done, zero;

    progress_totals(cr, &total, &done, &zero);
    if (total == 0) {
        return;
    }
    int percent = (int)(done * 100 / total);
    if (percent != *last_percent) {
        fprintf(stderr,
                "progress %d%% %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                "\n", percent, done, total, zero);
        fflush(stderr);
        *last_percent = percent;
    }
}

/* ---- main --------------------------------------------------------------------------- */

static int run_create(Create *cr, const char *archive, GPtrArray *configs, bool verbose)
{
    g_autoptr(GError) err = NULL;
    GThread *threads[READER_THREADS];
    guint nthreads = MIN(READER_THREADS, cr->images->len);
    VmaWriterOptions opts;

    memset(&opts, 0, sizeof(opts));
    if (strcmp(archive, "-") == 0) {
        int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
            return cli_failf("create", "standard output: %s", g_strerror(errno));
        }
        cr->w = vma_writer_new_fd(fd, "standard output", &opts, &err);
    } else {
        cr->w = vma_writer_new(archive, &opts, &err);
    }
    if (!cr->w) {
        return cli_fail("create", err);
    }
    for (guint i = 0; i < configs->len; i += 2) {
        GBytes *data = g_ptr_array_index(configs, i + 1);
        gsize len = 0;
        const void *p = g_bytes_get_data(data, &len);
        if (!vma_writer_add_config(cr->w, g_ptr_array_index(configs, i), p ? p : "", len,
                                   &err)) {
            vma_writer_free(cr->w);
            return cli_fail("create", err);
        }
    }
    for (guint i = 0; i < cr->images->len; i++) {
        Image *im = g_ptr_array_index(cr->images, i);
        im->dev_id = vma_writer_register_device(cr->w, im->name, im->size, &err);
        if (im->dev_id < 0) {
            vma_writer_free(cr->w);
            return cli_fail("create", err);
        }
    }
    if (!vma_writer_start(cr->w, &err)) {
        vma_writer_free(cr->w);
        return cli_fail("create", err);
    }

    CliTtyProgress *tty = cli_tty_progress_new("create", !verbose);
    int last_percent = -1;
    cr->workers_running = nthreads;
    for (guint i = 0; i < nthreads; i++) {
        threads[i] = g_thread_new("vma-read", reader_thread, cr);
    }
    g_mutex_lock(&cr->lock);
    while (cr->workers_running > 0) {
        gint64 deadline = g_get_monotonic_time() + G_USEC_PER_SEC / 10;
        g_cond_wait_until(&cr->done_cond, &cr->lock, deadline);
        g_mutex_unlock(&cr->lock);
        if (cli_interrupted()) {
            create_fail(cr, g_error_new(VMA_ERROR, VMA_ERROR_CANCELLED, "interrupted"));
        }
        if (verbose) {
            progress_line(cr, &last_percent);
        } else {
            uint64_t total, done, zero;
            progress_totals(cr, &total, &done, &zero);
            cli_tty_progress_update(tty, done, total);
        }
        g_mutex_lock(&cr->lock);
    }
    g_mutex_unlock(&cr->lock);
    for (guint i = 0; i < nthreads; i++) {
        g_thread_join(threads[i]);
    }
    cli_tty_progress_end(tty);

    if (cr->error) {
        vma_writer_free(cr->w); /* cancels and removes the partial archive */
        cr->w = NULL;
        return cli_fail("create", cr->error);
    }
    if (verbose) {
        progress_line(cr, &last_percent);
    }
    if (!vma_writer_close(cr->w, &err)) {
        vma_writer_free(cr->w);
        cr->w = NULL;
        return cli_fail("create", err);
    }
    if (verbose) {
        for (guint i = 0; i < cr->images->len; i++) {
            Image *im = g_ptr_array_index(cr->images, i);
            VmaDeviceStatus st;
            if (vma_writer_get_device_status(cr->w, (uint8_t)im->dev_id, &st)) {
                fprintf(stderr,
                        "image %s: size=%" G_GUINT64_FORMAT " zeros=%" G_GUINT64_FORMAT
                        " saved=%" G_GUINT64_FORMAT "\n",
                        im->name, st.size, st.zero_bytes, st.size - MIN(st.zero_bytes, st.size));
            }
        }
    }
    vma_writer_free(cr->w);
    cr->w = NULL;
    return CLI_EXIT_OK;
}

int cli_create_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"device", required_argument, NULL, 'd'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    g_autoptr(GPtrArray) config_files = g_ptr_array_new();
    g_autoptr(GPtrArray) device_specs = g_ptr_array_new();
    bool verbose = false;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hvc:d:", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            g_ptr_array_add(config_files, optarg);
            break;
        case 'd':
            g_ptr_array_add(device_specs, optarg);
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            create_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option("create", c, argv);
        }
    }
    if (optind >= argc) {
        return cli_usage_error("create", "missing ARCHIVE operand");
    }
    const char *archive = argv[optind++];
    int stdout_flags = -1;
    if (strcmp(archive, "-") == 0) {
        /* '-' is standard output, as for vma backup */
        struct stat sb;
        if (fstat(STDOUT_FILENO, &sb) < 0) {
            return cli_failf("create", "standard output: %s", g_strerror(errno));
        }
        if (isatty(STDOUT_FILENO)) {
            return cli_failf("create", "refusing to write the archive to a terminal");
        }
        /* the writer makes a pipe non-blocking; the open file description is shared */
        stdout_flags = fcntl(STDOUT_FILENO, F_GETFL);
    }
    bool legacy = optind < argc;
    if (legacy && device_specs->len > 0) {
        return cli_usage_error("create", "give all devices with -d or all as NAME=PATH "
                                         "operands, not both");
    }
    for (; optind < argc; optind++) {
        g_ptr_array_add(device_specs, argv[optind]);
    }

    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) configs = g_ptr_array_new_with_free_func(NULL);
    g_autoptr(GPtrArray) owned = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) blobs = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    Create cr;
    memset(&cr, 0, sizeof(cr));
    cr.images = g_ptr_array_new_with_free_func((GDestroyNotify)image_free);
    g_mutex_init(&cr.lock);
    g_cond_init(&cr.done_cond);
    int rc = CLI_EXIT_FAILURE;

    for (guint i = 0; i < device_specs->len; i++) {
        Image *im = g_new0(Image, 1);
        im->fd = -1;
        g_ptr_array_add(cr.images, im);
        if (!parse_device(g_ptr_array_index(device_specs, i), i, im, &err)) {
            rc = cli_usage_error("create", "%s", err->message);
            goto out;
        }
        if (!check_device_name(im->name, &err)) {
            rc = cli_fail("create", err);
            goto out;
        }
        for (guint k = 0; k < i; k++) {
            Image *other = g_ptr_array_index(cr.images, k);
            if (strcmp(other->name, im->name) == 0) {
                rc = cli_failf("create", "device name %s given twice", im->name);
                goto out;
            }
        }
    }
    for (guint i = 0; i < config_files->len; i++) {
        const char *file = g_ptr_array_index(config_files, i);
        GBytes *b = read_config_file(file, &err);
        if (!b) {
            rc = cli_fail("create", err);
            goto out;
        }
        g_ptr_array_add(blobs, b);
        char *name = g_path_get_basename(file);
        g_ptr_array_add(owned, name);
        if (!cli_check_name("config", name, &err)) {
            rc = cli_fail("create", err);
            goto out;
        }
        for (guint k = 0; k < configs->len; k += 2) {
            if (strcmp(g_ptr_array_index(configs, k), name) == 0) {
                rc = cli_failf("create", "two configs named %s", name);
                goto out;
            }
        }
        g_ptr_array_add(configs, name);
        g_ptr_array_add(configs, b);
    }
    for (guint i = 0; i < cr.images->len; i++) {
        if (!open_image(g_ptr_array_index(cr.images, i), &err)) {
            rc = cli_fail("create", err);
            goto out;
        }
    }

    cli_install_interrupt_handlers();
    rc = run_create(&cr, archive, configs, verbose);
    if (stdout_flags >= 0) {
        fcntl(STDOUT_FILENO, F_SETFL, stdout_flags);
    }

out:
    if (cr.error) {
        g_error_free(cr.error);
    }
    g_ptr_array_free(cr.images, true);
    g_mutex_clear(&cr.lock);
    g_cond_clear(&cr.done_cond);
    return rc;
}
