/*
 * test-nbd-server.c — the control API of nbd-server.h, in process: start/stop, export
 * add/remove in both modes, errors, and what a connected client sees when its export
 * is removed or the server stops. The client is a few lines of raw protocol.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "blockdev.h"
#include "nbd-server.h"
#include "nbd/proto.h"
#include "test-helpers.h"

typedef struct Fixture {
    char *dir;
    char *sock;
    char *img;
    char *img_ro;
} Fixture;

static int setup(void **state)
{
    Fixture *f = g_new0(Fixture, 1);
    g_autoptr(GError) err = NULL;

    f->dir = th_tmpdir_new("test-nbd-server");
    f->sock = g_build_filename(f->dir, "nbd.sock", NULL);
    f->img = th_file_new(f->dir, "a.raw", 1 << 20);
    f->img_ro = th_file_new(f->dir, "b.raw", 1 << 20);
    BlockDevOptions a = { .node_name = "disk-a", .filename = f->img };
    BlockDevOptions b = { .node_name = "disk-b", .filename = f->img_ro, .read_only = true };
    assert_true(blockdev_add(&a, &err));
    assert_true(blockdev_add(&b, &err));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;

    nbd_server_stop(NULL);
    blockdev_close_all();
    th_tmpdir_remove(f->dir);
    g_free(f->dir);
    g_free(f->sock);
    g_free(f->img);
    g_free(f->img_ro);
    g_free(f);
    return 0;
}

/* ---- a tiny raw client ---- */

static int client_connect(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { .tv_sec = 20 };

    assert_true(fd >= 0);
    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}


/* Handshake and GO; returns the final reply type. */
static uint32_t client_go(int fd, const char *name)
{
    NbdGreeting g;
    uint32_t cflags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    size_t nl = strlen(name);
    uint8_t data[64];

    assert_int_equal(th_recv_all(fd, &g, sizeof(g)), 0);
    assert_true(be64toh(g.magic) == NBD_MAGIC);
    th_send_all(fd, &cflags, 4);
    assert_true(nl + 6 <= sizeof(data));
    th_put_be32(data, 0, (uint32_t)nl);
    memcpy(data + 4, name, nl);
    th_put_be16(data, 4 + nl, 0);
    NbdOptionHeader h = { .magic = htobe64(NBD_OPTS_MAGIC), .option = htobe32(NBD_OPT_GO),
                          .length = htobe32((uint32_t)(nl + 6)) };
    th_send_all(fd, &h, sizeof(h));
    th_send_all(fd, data, nl + 6);
    for (;;) {
        NbdOptionReply r;
        uint8_t skip[256];
        assert_int_equal(th_recv_all(fd, &r, sizeof(r)), 0);
        uint32_t len = be32toh(r.length);
        assert_true(len <= sizeof(skip));
        assert_int_equal(th_recv_all(fd, skip, len), 0);
        if (be32toh(r.type) != NBD_REP_INFO) {
            return be32toh(r.type);
        }
    }
}

/* One READ with a simple reply; returns the NBD error, or -1 if the connection died. */
static int client_read(int fd, uint64_t off, uint32_t len)
{
    NbdRequestWire rq = { .magic = htobe32(NBD_REQUEST_MAGIC), .type = htobe16(NBD_CMD_READ),
                          .cookie = htobe64(42), .offset = htobe64(off), .length = htobe32(len) };
    NbdSimpleReply rp;
    g_autofree uint8_t *buf = g_malloc(len);

    if (send(fd, &rq, sizeof(rq), MSG_NOSIGNAL) != (ssize_t)sizeof(rq)) {
        return -1;
    }
    if (th_recv_all(fd, &rp, sizeof(rp)) < 0) {
        return -1;
    }
    assert_true(be32toh(rp.magic) == NBD_SIMPLE_REPLY_MAGIC);
    assert_true(be64toh(rp.cookie) == 42);
    if (rp.error == 0 && th_recv_all(fd, buf, len) < 0) {
        return -1;
    }
    return (int)be32toh(rp.error);
}

static bool at_eof(int fd)
{
    char c;
    return recv(fd, &c, 1, 0) == 0;
}

/* ---- tests ---- */

static void test_start_stop_errors(void **state)
{
    Fixture *f = *state;
    g_autoptr(GError) err = NULL;
    NbdServerAddress addr = { .type = "unix", .path = f->sock };

    assert_false(nbd_server_add_export("disk-a", NULL, true, &err));
    assert_non_null(strstr(err->message, "not running"));
    g_clear_error(&err);
    assert_false(nbd_server_stop(&err));
    g_clear_error(&err);

    NbdServerAddress bad = { .type = "carrier-pigeon" };
    assert_false(nbd_server_start(&bad, 0, &err));
    g_clear_error(&err);
    g_autofree char *longpath = g_strnfill(200, 'x');
    NbdServerAddress toolong = { .type = "unix", .path = longpath };
    assert_false(nbd_server_start(&toolong, 0, &err));
    g_clear_error(&err);

    assert_true(nbd_server_start(&addr, 4, &err));
    assert_true(g_file_test(f->sock, G_FILE_TEST_EXISTS));
    assert_false(nbd_server_start(&addr, 4, &err));
    assert_non_null(strstr(err->message, "already running"));
    g_clear_error(&err);

    assert_true(nbd_server_add_export("disk-a", NULL, true, &err));
    assert_true(nbd_server_add_export("disk-a", "second-name", false, &err));
    assert_true(nbd_server_add_export("disk-b", NULL, false, &err));
    assert_false(nbd_server_add_export("disk-b", "b-rw", true, &err));
    assert_non_null(strstr(err->message, "read-only"));
    g_clear_error(&err);
    assert_false(nbd_server_add_export("disk-a", NULL, true, &err));
    assert_non_null(strstr(err->message, "exists"));
    g_clear_error(&err);
    assert_false(nbd_server_add_export("no-such-node", NULL, true, &err));
    assert_non_null(strstr(err->message, "no-such-node"));
    g_clear_error(&err);

    g_auto(GStrv) names = nbd_server_list_exports();
    assert_int_equal(g_strv_length(names), 3);
    assert_string_equal(names[0], "disk-a");
    assert_string_equal(names[1], "second-name");
    assert_string_equal(names[2], "disk-b");
    assert_true(nbd_server_is_exported("disk-a"));
    assert_true(nbd_server_is_exported("disk-b"));
    assert_false(nbd_server_is_exported("disk-c"));

    /* an exported node cannot be deleted */
    assert_false(blockdev_del("disk-b", &err));
    g_clear_error(&err);

    assert_false(nbd_server_remove_export("nope", false, &err));
    g_clear_error(&err);
    assert_true(nbd_server_remove_export("disk-b", false, &err));
    assert_false(nbd_server_is_exported("disk-b"));
    assert_true(blockdev_del("disk-b", &err));

    assert_true(nbd_server_stop(&err));
    assert_false(g_file_test(f->sock, G_FILE_TEST_EXISTS));
    assert_false(nbd_server_is_exported("disk-a"));
    /* after stop, the node is free again, and the server can start anew */
    assert_true(blockdev_del("disk-a", &err));
    assert_true(nbd_server_start(&addr, 0, &err));
    assert_true(nbd_server_stop(&err));
}

static void test_remove_with_clients(void **state)
{
    Fixture *f = *state;
    g_autoptr(GError) err = NULL;
    NbdServerAddress addr = { .type = "unix", .path = f->sock };

    assert_true(nbd_server_start(&addr, 0, &err));
    assert_true(nbd_server_add_export("disk-a", NULL, true, &err));
    assert_true(nbd_server_add_export("disk-b", NULL, false, &err));

    int a = client_connect(f->sock);
    int b = client_connect(f->sock);
    assert_int_equal(client_go(a, "disk-a"), NBD_REP_ACK);
    assert_int_equal(client_go(b, "disk-b"), NBD_REP_ACK);
    assert_int_equal(client_read(a, 0, 4096), 0);
    assert_int_equal(client_read(b, 4096, 4096), 0);

    /* safe removal refuses while a client is connected */
    assert_false(nbd_server_remove_export("disk-a", false, &err));
    assert_non_null(strstr(err->message, "clients"));
    g_clear_error(&err);
    /* hard removal disconnects that client only */
    assert_true(nbd_server_remove_export("disk-a", true, &err));
    assert_true(at_eof(a) || client_read(a, 0, 512) == -1);
    assert_int_equal(client_read(b, 0, 512), 0);
    close(a);
    /* the export is gone for new clients */
    a = client_connect(f->sock);
    assert_int_equal(client_go(a, "disk-a"), NBD_REP_ERR_UNKNOWN);
    close(a);

    /* stop disconnects the rest and removes the socket */
    assert_true(nbd_server_stop(&err));
    assert_true(at_eof(b) || client_read(b, 0, 512) == -1);
    close(b);
    assert_false(g_file_test(f->sock, G_FILE_TEST_EXISTS));
}

static void test_connection_limit(void **state)
{
    Fixture *f = *state;
    g_autoptr(GError) err = NULL;
    NbdServerAddress addr = { .type = "unix", .path = f->sock };
    int fds[3];

    assert_true(nbd_server_start(&addr, 2, &err));
    assert_true(nbd_server_add_export("disk-a", NULL, true, &err));
    fds[0] = client_connect(f->sock);
    fds[1] = client_connect(f->sock);
    assert_int_equal(client_go(fds[0], "disk-a"), NBD_REP_ACK);
    assert_int_equal(client_go(fds[1], "disk-a"), NBD_REP_ACK);
    fds[2] = client_connect(f->sock);
    assert_true(at_eof(fds[2]));
    close(fds[2]);
    close(fds[0]);
    /* a slot frees up once the server has noticed the hang-up */
    bool ok = false;
    for (int i = 0; i < 100 && !ok; i++) {
        int fd = client_connect(f->sock);
        NbdGreeting g;
        ok = th_recv_all(fd, &g, sizeof(g)) == 0;
        close(fd);
        if (!ok) {
            g_usleep(50 * 1000);
        }
    }
    assert_true(ok);
    close(fds[1]);
    assert_true(nbd_server_stop(&err));
}

/* TCP on loopback (port 0: the kernel picks one), and a host that does not resolve. */
static void test_tcp_listen(void **state)
{
    g_autoptr(GError) err = NULL;
    NbdServerAddress addr = { .type = "inet", .host = "127.0.0.1", .port = "0" };

    assert_true(nbd_server_start(&addr, 0, &err));
    assert_true(nbd_server_stop(&err));
    NbdServerAddress bad = { .type = "inet", .host = "no.such.host.invalid", .port = "10809" };
    assert_false(nbd_server_start(&bad, 0, &err));
    g_clear_error(&err);
    /* no TLS: nothing but loopback, not even the wildcard address */
    const char *open_hosts[] = { "0.0.0.0", "::", NULL, "192.0.2.1" };
    for (size_t i = 0; i < G_N_ELEMENTS(open_hosts); i++) {
        NbdServerAddress wide = { .type = "inet", .host = open_hosts[i], .port = "0" };
        assert_false(nbd_server_start(&wide, 0, &err));
        assert_non_null(strstr(err->message, "not a loopback address"));
        g_clear_error(&err);
    }
    NbdServerAddress v6 = { .type = "inet", .host = "::1", .port = "0" };
    if (nbd_server_start(&v6, 0, &err)) {
        assert_true(nbd_server_stop(&err));
    } else {
        /* no IPv6 on this machine: only the address family may be the reason */
        assert_null(strstr(err->message, "not a loopback address"));
        g_clear_error(&err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_stop_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_with_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_listen, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
