/*
 * test-nbd-proto.c — unit tests of the NBD server's pure pieces: the errno -> NBD
 * error mapping (a table), request validation (a table), the option parsers, the
 * transmission flags, and the wire layout of the packed structs.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "nbd/internal.h"
#include "nbd/proto.h"
#include "test-helpers.h"

/* ---- errno -> NBD ---- */

static void test_errno_mapping(void **state)
{
    static const struct {
        int err;
        uint32_t nbd;
    } table[] = {
        { 0, NBD_SUCCESS },
        { EPERM, NBD_EPERM },
        { EACCES, NBD_EPERM },
        { EROFS, NBD_EPERM },
        { EIO, NBD_EIO },
        { ENOMEM, NBD_ENOMEM },
        { EINVAL, NBD_EINVAL },
        { ENOSPC, NBD_ENOSPC },
        { EDQUOT, NBD_ENOSPC },
        { EFBIG, NBD_ENOSPC },
        { EOVERFLOW, NBD_EOVERFLOW },
        { ENOTSUP, NBD_ENOTSUP },
        { EOPNOTSUPP, NBD_ENOTSUP },
        { ESHUTDOWN, NBD_ESHUTDOWN },
        { EBADF, NBD_EIO },
        { ENXIO, NBD_EIO },
        { EAGAIN, NBD_EIO },
        { 9999, NBD_EIO },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
        assert_int_equal(nbd_errno_to_wire(table[i].err), table[i].nbd);
        assert_int_equal(nbd_errno_to_wire(-table[i].err), table[i].nbd);
    }
    /* the wire values are the protocol's */
    assert_int_equal(NBD_EPERM, 1);
    assert_int_equal(NBD_EIO, 5);
    assert_int_equal(NBD_ENOMEM, 12);
    assert_int_equal(NBD_EINVAL, 22);
    assert_int_equal(NBD_ENOSPC, 28);
    assert_int_equal(NBD_EOVERFLOW, 75);
    assert_int_equal(NBD_ENOTSUP, 95);
    assert_int_equal(NBD_ESHUTDOWN, 108);
}

/* ---- request checks ---- */

static void test_request_check(void **state)
{
    const uint64_t size = 1 << 20;
    enum { W = 1, RO = 0 };
    static const struct {
        uint16_t type, flags;
        uint64_t offset;
        uint32_t len;
        bool writable, structured, meta;
        int expect;
    } table[] = {
        /* READ */
        { NBD_CMD_READ, 0, 0, 4096, W, 0, 0, 0 },
        { NBD_CMD_READ, 0, size - 1, 1, RO, 0, 0, 0 },
        { NBD_CMD_READ, 0, size, 1, W, 0, 0, -EINVAL },
        { NBD_CMD_READ, 0, size, 0, W, 0, 0, 0 },
        { NBD_CMD_READ, 0, size + 1, 0, W, 0, 0, -EINVAL },
        { NBD_CMD_READ, 0, UINT64_MAX, 2, W, 0, 0, -EINVAL },
        { NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD + 1, W, 0, 0, -EINVAL },
        { NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, W, 0, 0, 0 },
        { NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, W, 0, 0, -EINVAL },
        { NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, W, 1, 0, 0 },
        { NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 512, W, 1, 0, -EINVAL },
        { NBD_CMD_READ, 0x8000, 0, 512, W, 1, 1, -EINVAL },
        /* WRITE */
        { NBD_CMD_WRITE, 0, 0, 4096, W, 0, 0, 0 },
        { NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 4096, W, 0, 0, 0 },
        { NBD_CMD_WRITE, 0, 0, 4096, RO, 0, 0, -EPERM },
        { NBD_CMD_WRITE, 0, size - 1, 2, W, 0, 0, -ENOSPC },
        { NBD_CMD_WRITE, 0, UINT64_MAX - 1, 4, W, 0, 0, -ENOSPC },
        { NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD + 1, W, 0, 0, -EINVAL },
        { NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 1, W, 1, 0, -EINVAL },
        /* FLUSH: offset and length ignored */
        { NBD_CMD_FLUSH, 0, 0, 0, W, 0, 0, 0 },
        { NBD_CMD_FLUSH, 0, size * 2, 7, RO, 0, 0, 0 },
        { NBD_CMD_FLUSH, NBD_CMD_FLAG_REQ_ONE, 0, 0, W, 0, 0, -EINVAL },
        /* TRIM */
        { NBD_CMD_TRIM, 0, 0, 65536, W, 0, 0, 0 },
        { NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0, 65536, W, 0, 0, 0 },
        { NBD_CMD_TRIM, 0, 0, 65536, RO, 0, 0, -EPERM },
        { NBD_CMD_TRIM, 0, size, 1, W, 0, 0, -EINVAL },
        { NBD_CMD_TRIM, 0, 0, UINT32_MAX, W, 0, 0, -EINVAL },
        /* CACHE */
        { NBD_CMD_CACHE, 0, 0, 65536, RO, 0, 0, 0 },
        { NBD_CMD_CACHE, 0, size, 1, RO, 0, 0, -EINVAL },
        /* WRITE_ZEROES */
        { NBD_CMD_WRITE_ZEROES, 0, 0, 65536, W, 0, 0, 0 },
        { NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_FUA,
          0, 65536, W, 0, 0, 0 },
        { NBD_CMD_WRITE_ZEROES, 0, 0, 65536, RO, 0, 0, -EPERM },
        { NBD_CMD_WRITE_ZEROES, 0, size, 1, W, 0, 0, -ENOSPC },
        { NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_DF, 0, 1, W, 1, 0, -EINVAL },
        /* BLOCK_STATUS: needs base:allocation */
        { NBD_CMD_BLOCK_STATUS, 0, 0, 65536, W, 1, 1, 0 },
        { NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, UINT32_MAX, RO, 1, 1, -EINVAL },
        { NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, size, RO, 1, 1, 0 },
        { NBD_CMD_BLOCK_STATUS, 0, 0, 65536, W, 1, 0, -EINVAL },
        { NBD_CMD_BLOCK_STATUS, 0, 0, 0, W, 1, 1, -EINVAL },
        { NBD_CMD_BLOCK_STATUS, 0, size, 1, W, 1, 1, -EINVAL },
        /* unknown commands */
        { 8, 0, 0, 0, W, 1, 1, -EINVAL },
        { 0xffff, 0, 0, 0, W, 1, 1, -EINVAL },
        { NBD_CMD_DISC + 100, 0, 0, 0, W, 1, 1, -EINVAL },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
        NbdRequest req = { .type = table[i].type, .flags = table[i].flags,
                           .offset = table[i].offset, .len = table[i].len, .cookie = i };
        int r = nbd_request_check(&req, size, table[i].writable, table[i].structured,
                                  table[i].meta);
        if (r != table[i].expect) {
            fail_msg("row %zu: type %u flags 0x%x offset %" G_GUINT64_FORMAT " len %u: got %d, "
                     "expected %d", i, table[i].type, table[i].flags, table[i].offset,
                     table[i].len, r, table[i].expect);
        }
    }
}

/* ---- option parsers ---- */

static size_t build_info(uint8_t *buf, const char *name, uint32_t name_len_field,
                         uint16_t n, const uint16_t *infos)
{
    size_t nl = strlen(name), pos;

    pos = th_put_be32(buf, 0, name_len_field);
    memcpy(buf + pos, name, nl);
    pos = th_put_be16(buf, pos + nl, n);
    for (uint16_t i = 0; i < n && infos != NULL; i++) {
        pos = th_put_be16(buf, pos, infos[i]);
    }
    return pos;
}

static void test_parse_info(void **state)
{
    uint8_t buf[256];
    NbdInfoRequest ir;
    const uint16_t infos[] = { NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE };
    size_t len;

    len = build_info(buf, "disk0", 5, 2, infos);
    assert_int_equal(nbd_parse_info_request(buf, (uint32_t)len, &ir), 0);
    assert_int_equal(ir.name_len, 5);
    assert_memory_equal(ir.name, "disk0", 5);
    assert_int_equal(ir.n_infos, 2);

    len = build_info(buf, "", 0, 0, NULL);           /* default export, no infos */
    assert_int_equal(nbd_parse_info_request(buf, (uint32_t)len, &ir), 0);
    assert_int_equal(ir.name_len, 0);

    len = build_info(buf, "disk0", 500, 0, NULL);    /* name length beyond data */
    assert_int_equal(nbd_parse_info_request(buf, (uint32_t)len, &ir), -EINVAL);
    len = build_info(buf, "disk0", UINT32_MAX, 0, NULL);
    assert_int_equal(nbd_parse_info_request(buf, (uint32_t)len, &ir), -EINVAL);
    len = build_info(buf, "disk0", 5, 2, infos);     /* says 3 infos, has 2 */
    th_put_be16(buf, 9, 3);
    assert_int_equal(nbd_parse_info_request(buf, (uint32_t)len, &ir), -EINVAL);
    len = build_info(buf, "disk0", 5, 1, infos);     /* one info plus a trailing one */
    assert_int_equal(nbd_parse_info_request(buf, (uint32_t)len + 2, &ir), -EINVAL);
    assert_int_equal(nbd_parse_info_request(buf, 5, &ir), -EINVAL);
    assert_int_equal(nbd_parse_info_request(buf, 0, &ir), -EINVAL);
    len = build_info(buf, "a\0b", 3, 0, NULL);        /* strlen stops at NUL: build by hand */
    memcpy(buf + 4, "a\0b", 3);
    th_put_be16(buf, 7, 0);
    assert_int_equal(nbd_parse_info_request(buf, 9, &ir), -EINVAL);

    /* a name of NBD_MAX_STRING + 1 bytes */
    g_autofree uint8_t *big = g_malloc0(NBD_MAX_STRING + 16);
    th_put_be32(big, 0, NBD_MAX_STRING + 1);
    memset(big + 4, 'x', NBD_MAX_STRING + 1);
    assert_int_equal(nbd_parse_info_request(big, NBD_MAX_STRING + 7, &ir), -EINVAL);
}

static size_t put_str(uint8_t *buf, size_t pos, const char *s)
{
    pos = th_put_be32(buf, pos, (uint32_t)strlen(s));
    memcpy(buf + pos, s, strlen(s));
    return pos + strlen(s);
}

static void test_parse_meta(void **state)
{
    uint8_t buf[512];
    NbdMetaRequest mr;
    size_t len;

    len = put_str(buf, 0, "disk0");
    len = th_put_be32(buf, len, 2);
    len = put_str(buf, len, "qemu:dirty-bitmap:b0");
    len = put_str(buf, len, "base:allocation");
    assert_int_equal(nbd_parse_meta_request(buf, (uint32_t)len, &mr), 0);
    assert_int_equal(mr.name_len, 5);
    assert_int_equal(mr.n_queries, 2);
    assert_true(mr.base_allocation);
    assert_false(mr.base_namespace);

    len = put_str(buf, 0, "");
    len = th_put_be32(buf, len, 1);
    len = put_str(buf, len, "base:");
    assert_int_equal(nbd_parse_meta_request(buf, (uint32_t)len, &mr), 0);
    assert_true(mr.base_namespace);
    assert_false(mr.base_allocation);

    len = put_str(buf, 0, "disk0");
    len = th_put_be32(buf, len, 0);
    assert_int_equal(nbd_parse_meta_request(buf, (uint32_t)len, &mr), 0);
    assert_int_equal(mr.n_queries, 0);
    /* trailing garbage */
    assert_int_equal(nbd_parse_meta_request(buf, (uint32_t)len + 1, &mr), -EINVAL);
    /* query count larger than the data */
    len = put_str(buf, 0, "disk0");
    len = th_put_be32(buf, len, 1000000);
    len = put_str(buf, len, "base:allocation");
    assert_int_equal(nbd_parse_meta_request(buf, (uint32_t)len, &mr), -EINVAL);
    /* query length beyond the data */
    len = put_str(buf, 0, "disk0");
    len = th_put_be32(buf, len, 1);
    len = th_put_be32(buf, len, 100);
    assert_int_equal(nbd_parse_meta_request(buf, (uint32_t)len + 10, &mr), -EINVAL);
    /* export name length beyond the data */
    len = th_put_be32(buf, 0, 0xfffffff0);
    assert_int_equal(nbd_parse_meta_request(buf, 64, &mr), -EINVAL);
    /* too short to hold the counts */
    assert_int_equal(nbd_parse_meta_request(buf, 7, &mr), -EINVAL);
    /* near-miss names do not select */
    len = put_str(buf, 0, "d");
    len = th_put_be32(buf, len, 2);
    len = put_str(buf, len, "base:allocatio");
    len = put_str(buf, len, "base:allocationX");
    assert_int_equal(nbd_parse_meta_request(buf, (uint32_t)len, &mr), 0);
    assert_false(mr.base_allocation);
    assert_false(mr.base_namespace);
}

/* ---- transmission flags ---- */

static void test_tx_flags(void **state)
{
    NbdExport w = { .name = "w", .size = 1 << 20, .writable = true };
    NbdExport r = { .name = "r", .size = 1 << 20, .writable = false };
    const uint16_t base = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                          NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;
    const uint16_t wr = NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                        NBD_FLAG_SEND_FAST_ZERO;

    assert_int_equal(nbd_export_tx_flags(&w, false), base | wr);
    assert_int_equal(nbd_export_tx_flags(&w, true), base | wr | NBD_FLAG_SEND_DF);
    assert_int_equal(nbd_export_tx_flags(&r, false), base | NBD_FLAG_READ_ONLY);
    assert_int_equal(nbd_export_tx_flags(&r, true),
                     base | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_DF);
    /* what QEMU's server sends for a writable export with structured replies */
    assert_int_equal(nbd_export_tx_flags(&w, true), 0xded);
}

/* ---- wire layout ---- */

static void test_wire_layout(void **state)
{
    assert_int_equal(offsetof(NbdRequestWire, flags), 4);
    assert_int_equal(offsetof(NbdRequestWire, type), 6);
    assert_int_equal(offsetof(NbdRequestWire, cookie), 8);
    assert_int_equal(offsetof(NbdRequestWire, offset), 16);
    assert_int_equal(offsetof(NbdRequestWire, length), 24);
    assert_int_equal(offsetof(NbdChunkHeader, type), 6);
    assert_int_equal(offsetof(NbdChunkHeader, cookie), 8);
    assert_int_equal(offsetof(NbdChunkHeader, length), 16);
    assert_int_equal(offsetof(NbdOptionReply, type), 12);
    assert_int_equal(offsetof(NbdInfoExport, flags), 10);
    assert_int_equal(offsetof(NbdInfoBlockSize, maximum), 10);

    /* magics spell what the protocol says */
    uint64_t m = htobe64(NBD_MAGIC);
    assert_memory_equal(&m, "NBDMAGIC", 8);
    m = htobe64(NBD_OPTS_MAGIC);
    assert_memory_equal(&m, "IHAVEOPT", 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_mapping),
        cmocka_unit_test(test_request_check),
        cmocka_unit_test(test_parse_info),
        cmocka_unit_test(test_parse_meta),
        cmocka_unit_test(test_tx_flags),
        cmocka_unit_test(test_wire_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
