/*
 * fuzz-reader-sums.c — libFuzzer harness for the archive reader behind its checksums,
 * and for the streaming path of each decompression front end with valid compressed
 * data of any content.
 *
 * Input: one mode byte, then a plain archive. Before the reader sees it the harness
 * recomputes the MD5 sum of the header (when header_size lies within the input) and of
 * every extent header it finds by following the block counts, so mutations of sizes,
 * blob pointers, blockinfo entries and data reach the checks behind the sums. Then the
 * mode byte picks how the stream is delivered:
 *   bits 0-2  0 plain, 1 zstd, 2 gzip, 3 bzip2, 4 lzop, 5-7 plain
 *   bits 3-4  the stream is cut into 1-4 pieces, compressed one after the other as
 *             zstd frames, gzip members, bzip2 streams or lzop files (concatenation)
 *   bits 5-6  lzop block size: 1, 8, 64 or 256 KiB
 *   bit  7    lzop checksums: Adler-32 (clear) or CRC-32 (set), of both the
 *             decompressed and the compressed data
 * The uuid of each extent is left alone: libFuzzer's memcmp hooks find it.
 *
 *   make fuzz-build && build-fuzz/fuzz/fuzz-reader-sums -max_len=65536 \
 *       tests/fuzz/corpus/reader-sums
 *
 * Built with -DFUZZ_STANDALONE it is a plain program that runs the files named on its
 * command line once each.
 */
#include <string.h>

#include <bzlib.h>
#include <lzo/lzo1x.h>
#include <zlib.h>
#include <zstd.h>

#define FUZZ_READER
#define FUZZ_SUMS
#include "tests/fuzz/fuzz-common.h"

static void put_be32(GByteArray *out, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    g_byte_array_append(out, b, 4);
}

static void add_zstd(GByteArray *out, const uint8_t *p, size_t len)
{
    size_t cap = ZSTD_compressBound(len), at = out->len;
    g_byte_array_set_size(out, (guint)(at + cap));
    size_t n = ZSTD_compress(out->data + at, cap, p, len, 1);
    assert(!ZSTD_isError(n));
    g_byte_array_set_size(out, (guint)(at + n));
}

static void add_gzip(GByteArray *out, const uint8_t *p, size_t len)
{
    z_stream zs = { 0 };
    int ret = deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    assert(ret == Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len), at = out->len;
    g_byte_array_set_size(out, (guint)(at + cap));
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)len;
    zs.next_out = out->data + at;
    zs.avail_out = (uInt)cap;
    ret = deflate(&zs, Z_FINISH);
    assert(ret == Z_STREAM_END);
    g_byte_array_set_size(out, (guint)(at + zs.total_out));
    deflateEnd(&zs);
}

static void add_bzip2(GByteArray *out, const uint8_t *p, size_t len)
{
    unsigned cap = (unsigned)(len + len / 100 + 600), at = out->len;
    g_byte_array_set_size(out, at + cap);
    int ret = BZ2_bzBuffToBuffCompress((char *)out->data + at, &cap, (char *)p,
                                       (unsigned)len, 1, 0, 0);
    assert(ret == BZ_OK);
    g_byte_array_set_size(out, at + cap);
}

/* One lzop file (lzop 1.04's layout: version 0x1040, method LZO1X-1, no name). */
static void add_lzop(GByteArray *out, const uint8_t *p, size_t len, size_t block, bool crc)
{
    static const uint8_t magic[9] = { 0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a };
    static lzo_align_t wrk[(LZO1X_1_MEM_COMPRESS + sizeof(lzo_align_t) - 1) /
                           sizeof(lzo_align_t)];
    uint32_t flags = crc ? 0x300u | 0x1000u : 0x3u;    /* CRC32_D|_C|H_CRC32 : ADLER32_D|_C */
    g_autoptr(GByteArray) h = g_byte_array_new();
    static const uint8_t fixed[] = { 0x10, 0x40, 0x20, 0xa0, 0x09, 0x40, 1, 5 };

    g_byte_array_append(out, magic, sizeof(magic));
    g_byte_array_append(h, fixed, sizeof(fixed));   /* version, lib, needed, method, level */
    put_be32(h, flags);
    put_be32(h, 0100644);                           /* mode */
    put_be32(h, 0);                                 /* mtime low */
    put_be32(h, 0);                                 /* mtime high */
    g_byte_array_append(h, (const uint8_t *)"", 1); /* name length 0 */
    g_byte_array_append(out, h->data, h->len);
    put_be32(out, crc ? (uint32_t)crc32(crc32(0, NULL, 0), h->data, h->len)
                      : (uint32_t)adler32(adler32(0, NULL, 0), h->data, h->len));

    g_autofree uint8_t *cbuf = g_malloc(block + block / 16 + 64 + 3);
    for (size_t off = 0; off < len; off += block) {
        size_t n = MIN(block, len - off);
        lzo_uint clen = 0;
        int ret = lzo1x_1_compress(p + off, n, cbuf, &clen, wrk);
        assert(ret == LZO_E_OK);
        bool stored = clen >= n;
        uLong dsum = crc ? crc32(crc32(0, NULL, 0), p + off, (uInt)n)
                         : adler32(adler32(0, NULL, 0), p + off, (uInt)n);
        put_be32(out, (uint32_t)n);
        put_be32(out, (uint32_t)(stored ? n : clen));
        put_be32(out, (uint32_t)dsum);
        if (!stored) {
            put_be32(out, crc ? (uint32_t)crc32(crc32(0, NULL, 0), cbuf, (uInt)clen)
                              : (uint32_t)adler32(adler32(0, NULL, 0), cbuf, (uInt)clen));
            g_byte_array_append(out, cbuf, (guint)clen);
        } else {
            g_byte_array_append(out, p + off, (guint)n);
        }
    }
    put_be32(out, 0);                               /* end of file */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool lzo_ready;

    if (!lzo_ready) {
        if (lzo_init() != LZO_E_OK) {
            g_error("lzo_init failed");
        }
        lzo_ready = true;
    }
    if (size == 0) {
        return 0;
    }
    uint8_t mode = data[0];
    g_autofree uint8_t *a = g_malloc(size);    /* never NULL, also for an empty archive */
    memcpy(a, data + 1, size - 1);
    size--;
    fix_sums(a, size);

    unsigned comp = mode & 7, pieces = ((mode >> 3) & 3) + 1;
    static const size_t blocks[4] = { 1u << 10, 8u << 10, 64u << 10, 256u << 10 };
    size_t block = blocks[(mode >> 5) & 3];
    if (comp == 0 || comp > 4) {
        fuzz_read_archive(a, size);
        return 0;
    }
    g_autoptr(GByteArray) out = g_byte_array_new();
    for (unsigned i = 0; i < pieces; i++) {
        size_t from = size * i / pieces, to = size * (i + 1) / pieces;
        switch (comp) {
        case 1:
            add_zstd(out, a + from, to - from);
            break;
        case 2:
            add_gzip(out, a + from, to - from);
            break;
        case 3:
            add_bzip2(out, a + from, to - from);
            break;
        default:
            add_lzop(out, a + from, to - from, block, mode & 0x80);
            break;
        }
    }
    fuzz_read_archive(out->data, out->len);
    return 0;
}
