/*
 * fuzz-nbd.c — libFuzzer harness for everything our NBD server does with a client's
 * bytes: the handshake (options and their parsers) and the transmission phase
 * (request headers, payloads, every command on a real file).
 *
 * The server runs in process on a UNIX socket with three exports of a 1 MiB file: w
 * (writable), r (read-only) and wb (writable, with the change bitmaps b, enabled, and
 * d, disabled, as meta contexts qemu:dirty-bitmap:b and :d). Each input is one client
 * connection. Its first byte picks the start: even — the input bytes follow the
 * server's greeting as they are (client flags, options, ...); odd — the harness
 * negotiates structured replies, meta contexts and GO itself and the input is the
 * transmission stream: bit 2 set — export wb with base:allocation and both bitmaps;
 * else base:allocation on r (bit 1) or w. The client side then half-closes and reads replies until the
 * server hangs up. A crash, a sanitizer report or a hang is a finding.
 *
 *   make fuzz FUZZ=nbd FUZZ_SECONDS=600    (docs/fuzzing.md; it passes -detect_leaks=0)
 *   build-fuzz/fuzz/fuzz-nbd -detect_leaks=0 -timeout=20 tests/fuzz/corpus/nbd
 *
 * Leak checking after each input would see the server's connection still being torn
 * down on its own threads (false reports); check leaks instead by replaying the corpus
 * with the standalone build under AddressSanitizer, which checks at exit.
 *
 * Built with -DFUZZ_STANDALONE it is a plain program that runs the files named on its
 * command line once each (replaying a corpus or a crash without libFuzzer).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "blockdev.h"
#include "nbd-server.h"
#include "nbd/proto.h"
#include "tests/fuzz/fuzz-common.h"


static char *sock_path;

static void setup_once(void)
{
    g_autoptr(GError) err = NULL;
    char *dir = g_dir_make_tmp("fuzz-nbd-XXXXXX", &err);
    g_autofree char *img = NULL;
    int fd;

    if (dir == NULL) {
        g_error("fuzz-nbd: %s", err->message);
    }
    img = g_build_filename(dir, "disk.raw", NULL);
    sock_path = g_build_filename(dir, "nbd.sock", NULL);
    fd = open(img, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0 || pwrite(fd, "data", 4, 65536) != 4) {
        g_error("fuzz-nbd: %s: %s", img, g_strerror(errno));
    }
    close(fd);
    BlockDevOptions w = { .node_name = "w", .filename = img };
    /* the same image read-only: without locking, which would refuse it beside w */
    BlockDevOptions r = { .node_name = "r", .filename = img, .read_only = true,
                          .locking = "off" };
    NbdServerAddress addr = { .type = "unix", .path = sock_path };
    if (!blockdev_add(&w, &err) || !blockdev_add(&r, &err) ||
        !nbd_server_start(&addr, 0, &err) || !nbd_server_add_export("w", NULL, true, &err) ||
        !nbd_server_add_export("r", NULL, false, &err)) {
        g_error("fuzz-nbd: setup: %s", err->message);
    }
    g_autoptr(BlockDev) bd = blockdev_find("w", &err);
    DirtyBitmapSet *set = bd != NULL ? blockdev_get_dirty_bitmaps(bd) : NULL;
    static const NbdExportBitmap bitmaps[] = { { .name = "b" }, { .node = "w", .name = "d" } };
    if (set == NULL || !dirty_set_add(set, "w", "b", 4096, false, false, &err) ||
        !dirty_set_add(set, "w", "d", 65536, false, true, &err) ||
        !nbd_server_add_export_bitmaps("wb", "w", "wb", true, bitmaps, 2, &err)) {
        g_error("fuzz-nbd: setup bitmaps: %s", err->message);
    }
    dirty_set_mark(set, 65536, 4096);   /* something dirty before any input */
    g_free(dir);
}

static bool recv_n(int fd, void *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
        if (r <= 0) {
            return false;
        }
        got += (size_t)r;
    }
    return true;
}

static void send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
    NbdOptionHeader h = { .magic = htobe64(NBD_OPTS_MAGIC), .option = htobe32(opt),
                          .length = htobe32(len) };
    (void)!send(fd, &h, sizeof(h), MSG_NOSIGNAL);
    if (len > 0) {
        (void)!send(fd, data, len, MSG_NOSIGNAL);
    }
}

/* Read option replies up to a final one; false if the server hung up or refused. */
static bool final_reply(int fd)
{
    for (;;) {
        NbdOptionReply r;
        char skip[512];
        if (!recv_n(fd, &r, sizeof(r))) {
            return false;
        }
        uint32_t len = be32toh(r.length);
        while (len > 0) {
            uint32_t n = len < sizeof(skip) ? len : (uint32_t)sizeof(skip);
            if (!recv_n(fd, skip, n)) {
                return false;
            }
            len -= n;
        }
        uint32_t type = be32toh(r.type);
        if (type != NBD_REP_INFO && type != NBD_REP_META_CONTEXT && type != NBD_REP_SERVER) {
            return type == NBD_REP_ACK;
        }
    }
}

static size_t put_string(uint8_t *buf, size_t pos, const char *str)
{
    uint32_t be = htobe32((uint32_t)strlen(str));

    memcpy(buf + pos, &be, 4);
    memcpy(buf + pos + 4, str, strlen(str));
    return pos + 4 + strlen(str);
}

static bool negotiate(int fd, const char *name, bool bitmaps)
{
    uint32_t cflags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint32_t nl = (uint32_t)strlen(name);
    uint8_t buf[128];
    uint32_t be;
    uint16_t zero = 0;
    size_t pos = 0;

    (void)!send(fd, &cflags, 4, MSG_NOSIGNAL);
    send_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    if (!final_reply(fd)) {
        return false;
    }
    pos = put_string(buf, 0, name);
    be = htobe32(bitmaps ? 3 : 1);
    memcpy(buf + pos, &be, 4);
    pos += 4;
    pos = put_string(buf, pos, "base:allocation");
    if (bitmaps) {
        pos = put_string(buf, pos, "qemu:dirty-bitmap:b");
        pos = put_string(buf, pos, "qemu:dirty-bitmap:d");
    }
    send_opt(fd, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t)pos);
    if (!final_reply(fd)) {
        return false;
    }
    be = htobe32(nl);
    memcpy(buf, &be, 4);
    memcpy(buf + 4, name, nl);
    memcpy(buf + 4 + nl, &zero, 2);
    send_opt(fd, NBD_OPT_GO, buf, nl + 6);
    return final_reply(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    char greeting[18];

    if (!ready) {
        setup_once();
        ready = true;
    }
    if (size == 0) {
        return 0;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_strlcpy(sun.sun_path, sock_path, sizeof(sun.sun_path));
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        g_error("fuzz-nbd: connect: %s", g_strerror(errno));
    }
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (!recv_n(fd, greeting, sizeof(greeting))) {
        close(fd);
        return 0;
    }
    uint8_t mode = data[0];
    data++;
    size--;
    if ((mode & 1) && !negotiate(fd, (mode & 4) ? "wb" : (mode & 2) ? "r" : "w", mode & 4)) {
        close(fd);
        return 0;
    }

    /* Send the input while draining replies, then half-close and drain to EOF. */
    size_t sent = 0;
    bool open_w = true;
    char sink[65536];
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN | (open_w ? POLLOUT : 0) };
        if (poll(&p, 1, 10000) <= 0) {
            break; /* a hang would show up as a libFuzzer timeout */
        }
        if (p.revents & POLLIN) {
            ssize_t r = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                break;
            }
        } else if (p.revents & (POLLHUP | POLLERR)) {
            break;
        }
        if (open_w && (p.revents & POLLOUT)) {
            if (sent < size) {
                ssize_t w = send(fd, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0) {
                    sent += (size_t)w;
                } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    open_w = false;
                }
            }
            if (open_w && sent == size) {
                shutdown(fd, SHUT_WR);
                open_w = false;
            }
        }
    }
    close(fd);
    return 0;
}

