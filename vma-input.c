/*
 * vma-input.c — the archive reader's input front end: a strictly sequential byte source
 * over a descriptor (file, pipe, stdin) that undoes whole-stream compression in-process.
 *
 * Design notes
 * * Never seeks: the descriptor may be a pipe. The first bytes are read into the raw
 *   buffer and compared with the magic numbers of zstd (28 B5 2F FD, and the zstd
 *   skippable-frame magics), gzip (1F 8B), lzop (89 4C 5A 4F 00 0D 0A 1A 0A) and bzip2
 *   ("BZh" + level digit); anything else is passed through unchanged (the archive reader
 *   then checks the VMA magic and reports "not a VMA archive").
 * * One raw buffer holds bytes read from the descriptor and not yet consumed: 64 KiB
 *   at first (opening an archive to read its header stays cheap); for compressed input
 *   4 MiB once the input is longer than that. Plain archives are copied out of it in
 *   small pieces (extent headers), and read straight into the caller's buffer when a
 *   read of 1 MiB or more (the data of a full extent, up to 3.7 MiB) finds it empty:
 *   bulk data is read with large read() calls and copied once. Regular files get
 *   POSIX_FADV_SEQUENTIAL.
 * * Decompressors write directly into the caller's buffer: the libzstd streaming API,
 *   zlib inflate in gzip mode, libbz2. lzop is a container of independent LZO1X blocks
 *   (at most 64 MiB each): its file header and block headers are parsed here, each
 *   block is decompressed with liblzo2 into a block buffer and copied out; header and
 *   block checksums (Adler-32 or CRC-32, as the flags say) are verified with zlib's.
 * * Concatenation: zstd frames, gzip members, bzip2 streams and lzop files that follow
 *   one another are decoded in turn (pigz/pbzip2 style output). Anything else after the
 *   end of the compressed data is an error ("trailing garbage"), and so is input that
 *   ends inside compressed data ("truncated ... stream") — a compressed archive never
 *   ends cleanly in the middle of its compressed data.
 * * Every length from the input (lzop block sizes, name and extra-field lengths) is
 *   bounded before use; allocation is bounded by the 64 MiB lzop block limit.
 * * Errors are latched: once the input failed, every later read fails the same way.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bzlib.h>
#include <lzo/lzo1x.h>
#include <zlib.h>
#include <zstd.h>

#include "vma-input.h"
#include "util/fd.h"

#define RAW_BUF_MIN (64u << 10)      /* first size of the raw buffer */
#define RAW_BUF_MAX (4u << 20)       /* its size once the input is past RAW_BUF_MAX */
#define DIRECT_READ_MIN (1u << 20)   /* plain reads this large bypass the raw buffer */
#define LZOP_MAX_BLOCK (64u << 20)   /* lzop's own block size limit */

/* lzop header flags used here */
#define LZOP_F_ADLER32_D 0x00000001u
#define LZOP_F_ADLER32_C 0x00000002u
#define LZOP_F_H_EXTRA_FIELD 0x00000040u
#define LZOP_F_CRC32_D 0x00000100u
#define LZOP_F_CRC32_C 0x00000200u
#define LZOP_F_H_FILTER 0x00000800u
#define LZOP_F_H_CRC32 0x00001000u
#define LZOP_MAX_EXTRA_FIELD (1u << 20)

static const uint8_t zstd_magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
static const uint8_t gzip_magic[2] = { 0x1f, 0x8b };
static const uint8_t lzop_magic[9] = { 0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a };

struct VmaInput {
    int fd;
    char *name;
    VmaCompression comp;
    uint64_t size;           /* regular file size, else 0 */

    uint8_t *raw;            /* bytes read from fd: [raw_pos, raw_len) not yet consumed */
    size_t raw_cap;
    size_t raw_pos;
    size_t raw_len;
    bool raw_eof;            /* read() returned 0 */
    uint64_t raw_total;      /* bytes read from fd */
    uint64_t produced;       /* stream bytes returned to the caller */
    bool ended;              /* the stream ended cleanly */
    GError *err;             /* latched error */

    ZSTD_DStream *zstd;
    size_t zstd_hint;        /* last ZSTD_decompressStream result: 0 = frame complete */

    z_stream gz;
    bool gz_init;
    bool gz_member_done;

    bz_stream bz;
    bool bz_init;
    bool bz_stream_done;

    struct {
        bool in_file;        /* inside an lzop file (header parsed, no end marker yet) */
        unsigned files;      /* lzop files completed */
        uint32_t flags;
        uint8_t *out;        /* decoded block: [out_pos, out_len) not yet returned */
        size_t out_cap;
        size_t out_pos;
        size_t out_len;
        uint8_t *cbuf;       /* compressed block */
        size_t cbuf_cap;
    } lzop;
};

const char *vma_compression_name(VmaCompression c)
{
    switch (c) {
    case VMA_COMPRESSION_ZSTD:
        return "zstd";
    case VMA_COMPRESSION_GZIP:
        return "gzip";
    case VMA_COMPRESSION_LZOP:
        return "lzop";
    case VMA_COMPRESSION_BZIP2:
        return "bzip2";
    case VMA_COMPRESSION_NONE:
        break;
    }
    return "none";
}

/* ---- raw buffer --------------------------------------------------------------------- */

static size_t raw_avail(const VmaInput *in)
{
    return in->raw_len - in->raw_pos;
}

/* Offset in the input of the next unconsumed raw byte. */
static uint64_t raw_offset(const VmaInput *in)
{
    return in->raw_total - raw_avail(in);
}

static ssize_t read_fd(VmaInput *in, void *buf, size_t len, GError **errp)
{
    for (;;) {
        ssize_t n = read(in->fd, buf, len);
        if (n >= 0) {
            if (n == 0) {
                in->raw_eof = true;
            }
            in->raw_total += (uint64_t)n;
            return n;
        }
        if (errno != EINTR) {
            int err = errno;
            g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "read %s: %s", in->name,
                        g_strerror(err));
            return -1;
        }
    }
}

/* Move unconsumed bytes to the front and read once more. Returns the bytes added,
 * 0 at end of input, -1 on error. */
static ssize_t raw_fill(VmaInput *in, GError **errp)
{
    if (in->raw_pos > 0) {
        memmove(in->raw, in->raw + in->raw_pos, raw_avail(in));
        in->raw_len -= in->raw_pos;
        in->raw_pos = 0;
    }
    if (in->raw_cap < RAW_BUF_MAX && in->raw_total >= RAW_BUF_MAX &&
        in->comp != VMA_COMPRESSION_NONE) {
        /* a long compressed stream: switch to large reads */
        in->raw = g_realloc(in->raw, RAW_BUF_MAX);
        in->raw_cap = RAW_BUF_MAX;
    }
    if (in->raw_eof || in->raw_len == in->raw_cap) {
        return 0;
    }
    ssize_t n = read_fd(in, in->raw + in->raw_len, in->raw_cap - in->raw_len, errp);
    if (n > 0) {
        in->raw_len += (size_t)n;
    }
    return n;
}

/* Make at least n (<= RAW_BUF_MIN) bytes available unless the input ends first.
 * Returns the bytes available (fewer than n only at end of input) or -1. */
static ssize_t raw_ensure(VmaInput *in, size_t n, GError **errp)
{
    assert(n <= RAW_BUF_MIN);
    while (raw_avail(in) < n && !in->raw_eof) {
        if (raw_fill(in, errp) < 0) {
            return -1;
        }
    }
    return (ssize_t)MIN(raw_avail(in), n);
}

/* Copy up to len raw bytes to dst (dst may be NULL to skip them). Returns the bytes
 * copied (fewer than len only at end of input) or -1. */
static ssize_t raw_take(VmaInput *in, void *dst, size_t len, GError **errp)
{
    size_t got = 0;

    while (got < len) {
        if (raw_avail(in) == 0) {
            ssize_t n = raw_fill(in, errp);
            if (n < 0) {
                return -1;
            }
            if (n == 0) {
                break;
            }
        }
        size_t n = MIN(raw_avail(in), len - got);
        if (dst != NULL) {
            memcpy((uint8_t *)dst + got, in->raw + in->raw_pos, n);
        }
        in->raw_pos += n;
        got += n;
    }
    return (ssize_t)got;
}

static void set_truncated(VmaInput *in, GError **errp)
{
    g_set_error(errp, VMA_ERROR, VMA_ERROR_TRUNCATED,
                "read %s: truncated %s stream (input ends at byte %" G_GUINT64_FORMAT ")",
                in->name, vma_compression_name(in->comp), in->raw_total);
}

static void set_trailing_garbage(VmaInput *in, GError **errp)
{
    g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                "read %s: trailing garbage after %s data at input byte %" G_GUINT64_FORMAT,
                in->name, vma_compression_name(in->comp), raw_offset(in));
}

/* ---- plain --------------------------------------------------------------------------- */

static ssize_t plain_read(VmaInput *in, uint8_t *dst, size_t len, GError **errp)
{
    for (;;) {
        size_t avail = raw_avail(in);
        if (avail > 0) {
            size_t n = MIN(avail, len);
            memcpy(dst, in->raw + in->raw_pos, n);
            in->raw_pos += n;
            return (ssize_t)n;
        }
        if (in->raw_eof) {
            return 0;
        }
        if (len >= DIRECT_READ_MIN) {
            return read_fd(in, dst, len, errp);
        }
        if (raw_fill(in, errp) < 0) {
            return -1;
        }
    }
}

/* ---- what the stream decoders share ------------------------------------------------- */

/* After one decoder call that took `used` input bytes and gave `out` bytes: out when it
 * gave any; -1 (errp set) when it made no progress at the end of the input (truncated)
 * or with input left (a stalled decoder: cannot happen with a sane one, but do not
 * spin); 0: call it again. */
static ssize_t decoder_progress(VmaInput *in, const char *codec, size_t used, size_t out,
                                GError **errp)
{
    if (out > 0) {
        return (ssize_t)out;
    }
    if (used == 0 && raw_avail(in) == 0 && in->raw_eof) {
        set_truncated(in, errp);
        return -1;
    }
    if (used == 0 && raw_avail(in) > 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "read %s: %s decoder stalled at input byte %" G_GUINT64_FORMAT, in->name,
                    codec, raw_offset(in));
        return -1;
    }
    return 0;
}

/* After a finished member (gzip) or stream (bzip2): 1 when another one begins (its
 * magic follows), 0 at the end of the input, -1 (errp set) for anything else. */
static int next_member(VmaInput *in, const void *magic, size_t n, GError **errp)
{
    ssize_t a = raw_ensure(in, n, errp);

    if (a <= 0) {
        return (int)a;
    }
    if ((size_t)a < n || memcmp(in->raw + in->raw_pos, magic, n) != 0) {
        set_trailing_garbage(in, errp);
        return -1;
    }
    return 1;
}

/* ---- zstd ---------------------------------------------------------------------------- */

static ssize_t zstd_read(VmaInput *in, uint8_t *dst, size_t len, GError **errp)
{
    for (;;) {
        if (raw_avail(in) == 0 && !in->raw_eof && raw_fill(in, errp) < 0) {
            return -1;
        }
        ZSTD_inBuffer ib = { in->raw + in->raw_pos, raw_avail(in), 0 };
        ZSTD_outBuffer ob = { dst, len, 0 };
        size_t ret = ZSTD_decompressStream(in->zstd, &ob, &ib);
        if (ZSTD_isError(ret)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "read %s: corrupt zstd data near input byte %" G_GUINT64_FORMAT ": %s",
                        in->name, raw_offset(in), ZSTD_getErrorName(ret));
            return -1;
        }
        in->raw_pos += ib.pos;
        if (ib.pos > 0 || ob.pos > 0) {
            /* a call without progress (empty input after a finished frame) would
             * report the header size of a next frame: keep the frame-complete 0 */
            in->zstd_hint = ret;
        }
        if (ob.pos == 0 && ib.pos == 0 && raw_avail(in) == 0 && in->raw_eof &&
            in->zstd_hint == 0) {
            return 0; /* the input ended after a complete frame */
        }
        ssize_t r = decoder_progress(in, "zstd", ib.pos, ob.pos, errp);
        if (r != 0) {
            return r;
        }
    }
}

/* ---- gzip ---------------------------------------------------------------------------- */

static ssize_t gzip_read(VmaInput *in, uint8_t *dst, size_t len, GError **errp)
{
    z_stream *z = &in->gz;

    len = MIN(len, (size_t)UINT_MAX);
    for (;;) {
        if (in->gz_member_done) {
            /* another member may follow (concatenated gzip files, pigz) */
            int m = next_member(in, gzip_magic, sizeof(gzip_magic), errp);
            if (m <= 0) {
                return m;
            }
            inflateReset(z);
            in->gz_member_done = false;
        }
        if (raw_avail(in) == 0 && !in->raw_eof && raw_fill(in, errp) < 0) {
            return -1;
        }
        size_t avail_in = MIN(raw_avail(in), (size_t)UINT_MAX);
        z->next_in = in->raw + in->raw_pos;
        z->avail_in = (uInt)avail_in;
        z->next_out = dst;
        z->avail_out = (uInt)len;
        int ret = inflate(z, Z_NO_FLUSH);
        size_t used = avail_in - z->avail_in;
        size_t out = len - z->avail_out;
        in->raw_pos += used;
        if (ret == Z_STREAM_END) {
            in->gz_member_done = true;
            if (out > 0) {
                return (ssize_t)out;
            }
            continue;
        }
        if (ret != Z_OK && ret != Z_BUF_ERROR) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "read %s: corrupt gzip data near input byte %" G_GUINT64_FORMAT ": %s",
                        in->name, raw_offset(in), z->msg ? z->msg : zError(ret));
            return -1;
        }
        ssize_t r = decoder_progress(in, "gzip", used, out, errp);
        if (r != 0) {
            return r;
        }
    }
}

/* ---- bzip2 --------------------------------------------------------------------------- */

static bool bzip2_init(VmaInput *in, GError **errp)
{
    memset(&in->bz, 0, sizeof(in->bz));
    int ret = BZ2_bzDecompressInit(&in->bz, 0, 0);
    if (ret != BZ_OK) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FAILED,
                    "read %s: cannot initialise the bzip2 decoder (error %d)", in->name, ret);
        return false;
    }
    in->bz_init = true;
    return true;
}

static ssize_t bzip2_read(VmaInput *in, uint8_t *dst, size_t len, GError **errp)
{
    bz_stream *bz = &in->bz;

    len = MIN(len, (size_t)UINT_MAX);
    for (;;) {
        if (in->bz_stream_done) {
            int m = next_member(in, "BZh", 3, errp);
            if (m <= 0) {
                return m;
            }
            BZ2_bzDecompressEnd(bz);
            in->bz_init = false;
            if (!bzip2_init(in, errp)) {
                return -1;
            }
            in->bz_stream_done = false;
        }
        if (raw_avail(in) == 0 && !in->raw_eof && raw_fill(in, errp) < 0) {
            return -1;
        }
        size_t avail_in = MIN(raw_avail(in), (size_t)UINT_MAX);
        bz->next_in = (char *)(in->raw + in->raw_pos);
        bz->avail_in = (unsigned)avail_in;
        bz->next_out = (char *)dst;
        bz->avail_out = (unsigned)len;
        int ret = BZ2_bzDecompress(bz);
        size_t used = avail_in - bz->avail_in;
        size_t out = len - bz->avail_out;
        in->raw_pos += used;
        if (ret == BZ_STREAM_END) {
            in->bz_stream_done = true;
            if (out > 0) {
                return (ssize_t)out;
            }
            continue;
        }
        if (ret != BZ_OK) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "read %s: corrupt bzip2 data near input byte %" G_GUINT64_FORMAT
                        " (error %d)", in->name, raw_offset(in), ret);
            return -1;
        }
        ssize_t r = decoder_progress(in, "bzip2", used, out, errp);
        if (r != 0) {
            return r;
        }
    }
}

/* ---- lzop ---------------------------------------------------------------------------- */

/* Running checksums over lzop header bytes: both kinds, the flags pick one at the end. */
typedef struct LzopSum {
    uLong adler;
    uLong crc;
} LzopSum;

/* Read exactly len header bytes (into dst, or skipped if NULL), summing them if sum. */
static bool lzop_get(VmaInput *in, void *dst, size_t len, LzopSum *sum, const char *what,
                     GError **errp)
{
    uint8_t tmp[256];

    while (len > 0) {
        size_t n = dst != NULL ? len : MIN(len, sizeof(tmp));
        uint8_t *p = dst != NULL ? dst : tmp;
        ssize_t got = raw_take(in, p, n, errp);
        if (got < 0) {
            return false;
        }
        if ((size_t)got < n) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_TRUNCATED,
                        "read %s: truncated lzop stream (input ends inside the %s at byte %"
                        G_GUINT64_FORMAT ")", in->name, what, in->raw_total);
            return false;
        }
        if (sum != NULL) {
            sum->adler = adler32(sum->adler, p, (uInt)n);
            sum->crc = crc32(sum->crc, p, (uInt)n);
        }
        len -= n;
        if (dst != NULL) {
            break;
        }
    }
    return true;
}

static bool lzop_get_u8(VmaInput *in, uint8_t *v, LzopSum *sum, GError **errp)
{
    return lzop_get(in, v, 1, sum, "file header", errp);
}

static bool lzop_get_u16(VmaInput *in, uint16_t *v, LzopSum *sum, GError **errp)
{
    uint8_t b[2];

    if (!lzop_get(in, b, 2, sum, "file header", errp)) {
        return false;
    }
    *v = (uint16_t)(b[0] << 8 | b[1]);
    return true;
}

static bool lzop_get_u32(VmaInput *in, uint32_t *v, LzopSum *sum, const char *what,
                         GError **errp)
{
    uint8_t b[4];

    if (!lzop_get(in, b, 4, sum, what, errp)) {
        return false;
    }
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return true;
}

/* Parse one lzop file header (magic included). */
static bool lzop_parse_header(VmaInput *in, GError **errp)
{
    uint64_t start = raw_offset(in);
    uint8_t magic[sizeof(lzop_magic)];
    LzopSum sum = { adler32(0, NULL, 0), crc32(0, NULL, 0) };
    uint16_t version, lib_version, needed = 0;
    uint8_t method, level = 0, name_len;
    uint32_t flags, filter = 0, mode, mtime_low, mtime_high = 0, stored;
    uint8_t name[255];

    if (!lzop_get(in, magic, sizeof(magic), NULL, "file header", errp)) {
        return false;
    }
    if (memcmp(magic, lzop_magic, sizeof(magic)) != 0) {
        set_trailing_garbage(in, errp);
        return false;
    }
    if (!lzop_get_u16(in, &version, &sum, errp) ||
        !lzop_get_u16(in, &lib_version, &sum, errp)) {
        return false;
    }
    if (version < 0x0900) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "read %s: unsupported lzop file version 0x%04x", in->name, version);
        return false;
    }
    if (version >= 0x0940 && !lzop_get_u16(in, &needed, &sum, errp)) {
        return false;
    }
    if (!lzop_get_u8(in, &method, &sum, errp)) {
        return false;
    }
    if (version >= 0x0940 && !lzop_get_u8(in, &level, &sum, errp)) {
        return false;
    }
    if (!lzop_get_u32(in, &flags, &sum, "file header", errp)) {
        return false;
    }
    if ((flags & LZOP_F_H_FILTER) && !lzop_get_u32(in, &filter, &sum, "file header", errp)) {
        return false;
    }
    if (!lzop_get_u32(in, &mode, &sum, "file header", errp) ||
        !lzop_get_u32(in, &mtime_low, &sum, "file header", errp)) {
        return false;
    }
    if (version >= 0x0940 && !lzop_get_u32(in, &mtime_high, &sum, "file header", errp)) {
        return false;
    }
    if (!lzop_get_u8(in, &name_len, &sum, errp) ||
        (name_len > 0 && !lzop_get(in, name, name_len, &sum, "file header", errp))) {
        return false;
    }
    uint32_t computed = (uint32_t)((flags & LZOP_F_H_CRC32) ? sum.crc : sum.adler);
    if (!lzop_get_u32(in, &stored, NULL, "file header", errp)) {
        return false;
    }
    if (stored != computed) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_CHECKSUM,
                    "read %s: wrong lzop header checksum (header at input byte %"
                    G_GUINT64_FORMAT ")", in->name, start);
        return false;
    }
    if (flags & LZOP_F_H_EXTRA_FIELD) {
        uint32_t extra_len, extra_sum;
        if (!lzop_get_u32(in, &extra_len, NULL, "file header", errp)) {
            return false;
        }
        if (extra_len > LZOP_MAX_EXTRA_FIELD) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "read %s: lzop extra field of %u bytes is too large", in->name,
                        extra_len);
            return false;
        }
        /* the extra field carries nothing we use: skip it and its checksum */
        if (!lzop_get(in, NULL, extra_len, NULL, "file header", errp) ||
            !lzop_get_u32(in, &extra_sum, NULL, "file header", errp)) {
            return false;
        }
    }
    if (flags & LZOP_F_H_FILTER) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "read %s: lzop filter %u is not supported", in->name, filter);
        return false;
    }
    if (method < 1 || method > 3) {
        /* 1, 2, 3 are the LZO1X variants; all decode with lzo1x_decompress_safe */
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "read %s: unsupported lzop compression method %u", in->name, method);
        return false;
    }
    if (needed > 0x1040) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "read %s: lzop file needs lzop version 0x%04x to extract", in->name,
                    needed);
        return false;
    }
    in->lzop.flags = flags;
    return true;
}

static bool lzop_grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap < need) {
        g_free(*buf);
        *buf = g_try_malloc(need);
        *cap = *buf != NULL ? need : 0;
    }
    return *buf != NULL;
}

/* Decode the next block of the current lzop file into lzop.out. Returns 1 with a
 * block, 0 at the file's end marker, -1 on error. */
static int lzop_next_block(VmaInput *in, GError **errp)
{
    uint64_t start = raw_offset(in);
    uint32_t flags = in->lzop.flags;
    uint32_t dst_len, src_len;
    uint32_t d_adler = 0, d_crc = 0, c_adler = 0, c_crc = 0;
    const char *what = "block header";

    if (!lzop_get_u32(in, &dst_len, NULL, what, errp)) {
        return -1;
    }
    if (dst_len == 0) {
        return 0;
    }
    if (!lzop_get_u32(in, &src_len, NULL, what, errp)) {
        return -1;
    }
    if (dst_len > LZOP_MAX_BLOCK || src_len == 0 || src_len > dst_len) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "read %s: lzop block at input byte %" G_GUINT64_FORMAT
                    " has invalid sizes (%u bytes compressed to %u)",
                    in->name, start, dst_len, src_len);
        return -1;
    }
    if (((flags & LZOP_F_ADLER32_D) && !lzop_get_u32(in, &d_adler, NULL, what, errp)) ||
        ((flags & LZOP_F_CRC32_D) && !lzop_get_u32(in, &d_crc, NULL, what, errp))) {
        return -1;
    }
    if (src_len < dst_len &&
        (((flags & LZOP_F_ADLER32_C) && !lzop_get_u32(in, &c_adler, NULL, what, errp)) ||
         ((flags & LZOP_F_CRC32_C) && !lzop_get_u32(in, &c_crc, NULL, what, errp)))) {
        return -1;
    }
    if (!lzop_grow(&in->lzop.out, &in->lzop.out_cap, dst_len)) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FAILED,
                    "read %s: out of memory for an lzop block of %u bytes", in->name, dst_len);
        return -1;
    }
    if (src_len == dst_len) {
        /* stored uncompressed */
        if (!lzop_get(in, in->lzop.out, src_len, NULL, "block data", errp)) {
            return -1;
        }
    } else {
        if (!lzop_grow(&in->lzop.cbuf, &in->lzop.cbuf_cap, src_len)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FAILED,
                        "read %s: out of memory for an lzop block of %u bytes", in->name,
                        src_len);
            return -1;
        }
        if (!lzop_get(in, in->lzop.cbuf, src_len, NULL, "block data", errp)) {
            return -1;
        }
        if (((flags & LZOP_F_ADLER32_C) &&
             adler32(adler32(0, NULL, 0), in->lzop.cbuf, src_len) != c_adler) ||
            ((flags & LZOP_F_CRC32_C) &&
             crc32(crc32(0, NULL, 0), in->lzop.cbuf, src_len) != c_crc)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_CHECKSUM,
                        "read %s: lzop block at input byte %" G_GUINT64_FORMAT
                        ": wrong checksum of the compressed data", in->name, start);
            return -1;
        }
        lzo_uint out_len = dst_len;
        int ret = lzo1x_decompress_safe(in->lzop.cbuf, src_len, in->lzop.out, &out_len, NULL);
        if (ret != LZO_E_OK || out_len != dst_len) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "read %s: corrupt lzop block at input byte %" G_GUINT64_FORMAT
                        " (lzo error %d)", in->name, start, ret);
            return -1;
        }
    }
    if (((flags & LZOP_F_ADLER32_D) &&
         adler32(adler32(0, NULL, 0), in->lzop.out, dst_len) != d_adler) ||
        ((flags & LZOP_F_CRC32_D) &&
         crc32(crc32(0, NULL, 0), in->lzop.out, dst_len) != d_crc)) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_CHECKSUM,
                    "read %s: lzop block at input byte %" G_GUINT64_FORMAT
                    ": wrong checksum of the decompressed data", in->name, start);
        return -1;
    }
    in->lzop.out_pos = 0;
    in->lzop.out_len = dst_len;
    return 1;
}

static ssize_t lzop_read(VmaInput *in, uint8_t *dst, size_t len, GError **errp)
{
    for (;;) {
        if (in->lzop.out_pos < in->lzop.out_len) {
            size_t n = MIN(len, in->lzop.out_len - in->lzop.out_pos);
            memcpy(dst, in->lzop.out + in->lzop.out_pos, n);
            in->lzop.out_pos += n;
            return (ssize_t)n;
        }
        if (!in->lzop.in_file) {
            if (in->lzop.files > 0) {
                /* another lzop file may follow (concatenated) */
                ssize_t a = raw_ensure(in, 1, errp);
                if (a < 0) {
                    return -1;
                }
                if (a == 0) {
                    return 0;
                }
            }
            if (!lzop_parse_header(in, errp)) {
                return -1;
            }
            in->lzop.in_file = true;
            continue;
        }
        int ret = lzop_next_block(in, errp);
        if (ret < 0) {
            return -1;
        }
        if (ret == 0) {
            in->lzop.in_file = false;
            in->lzop.files++;
        }
    }
}

/* ---- public -------------------------------------------------------------------------- */

static bool starts_with(const VmaInput *in, size_t avail, const uint8_t *magic, size_t len)
{
    return avail >= len && memcmp(in->raw + in->raw_pos, magic, len) == 0;
}

VmaInput *vma_input_new(int fd, const char *name, GError **errp)
{
    g_autoptr(VmaInput) in = g_new0(VmaInput, 1);
    struct stat st;

    in->fd = fd;
    in->name = g_strdup(name);
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        in->size = (uint64_t)st.st_size;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    in->raw = g_malloc(RAW_BUF_MIN);
    in->raw_cap = RAW_BUF_MIN;

    ssize_t avail = raw_ensure(in, sizeof(lzop_magic), errp);
    if (avail < 0) {
        return NULL;
    }
    const uint8_t *p = in->raw + in->raw_pos;
    if (starts_with(in, (size_t)avail, zstd_magic, sizeof(zstd_magic)) ||
        (avail >= 4 && (p[0] & 0xf0) == 0x50 && p[1] == 0x2a && p[2] == 0x4d &&
         p[3] == 0x18)) {
        in->comp = VMA_COMPRESSION_ZSTD;
        in->zstd = ZSTD_createDStream();
        if (in->zstd == NULL) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FAILED,
                        "read %s: cannot create the zstd decoder", name);
            return NULL;
        }
        ZSTD_initDStream(in->zstd);
        in->zstd_hint = 1;
    } else if (starts_with(in, (size_t)avail, gzip_magic, sizeof(gzip_magic))) {
        in->comp = VMA_COMPRESSION_GZIP;
        if (inflateInit2(&in->gz, 16 + MAX_WBITS) != Z_OK) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FAILED,
                        "read %s: cannot initialise the gzip decoder", name);
            return NULL;
        }
        in->gz_init = true;
    } else if (starts_with(in, (size_t)avail, lzop_magic, sizeof(lzop_magic))) {
        in->comp = VMA_COMPRESSION_LZOP;
        if (lzo_init() != LZO_E_OK) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FAILED,
                        "read %s: cannot initialise liblzo2", name);
            return NULL;
        }
    } else if (avail >= 4 && memcmp(p, "BZh", 3) == 0 && p[3] >= '1' && p[3] <= '9') {
        in->comp = VMA_COMPRESSION_BZIP2;
        if (!bzip2_init(in, errp)) {
            return NULL;
        }
    } else {
        in->comp = VMA_COMPRESSION_NONE;
    }
    return g_steal_pointer(&in);
}

void vma_input_free(VmaInput *in)
{
    if (in == NULL) {
        return;
    }
    close_fd(&in->fd);
    if (in->zstd != NULL) {
        ZSTD_freeDStream(in->zstd);
    }
    if (in->gz_init) {
        inflateEnd(&in->gz);
    }
    if (in->bz_init) {
        BZ2_bzDecompressEnd(&in->bz);
    }
    g_free(in->lzop.out);
    g_free(in->lzop.cbuf);
    g_free(in->raw);
    g_free(in->name);
    g_clear_error(&in->err);
    g_free(in);
}

VmaCompression vma_input_get_compression(VmaInput *in)
{
    return in->comp;
}

ssize_t vma_input_read(VmaInput *in, void *buf, size_t len, GError **errp)
{
    uint8_t *dst = buf;
    size_t got = 0;

    if (in->err != NULL) {
        g_propagate_error(errp, g_error_copy(in->err));
        return -1;
    }
    assert(len <= SSIZE_MAX);
    while (got < len && !in->ended) {
        ssize_t n;
        switch (in->comp) {
        case VMA_COMPRESSION_ZSTD:
            n = zstd_read(in, dst + got, len - got, &in->err);
            break;
        case VMA_COMPRESSION_GZIP:
            n = gzip_read(in, dst + got, len - got, &in->err);
            break;
        case VMA_COMPRESSION_LZOP:
            n = lzop_read(in, dst + got, len - got, &in->err);
            break;
        case VMA_COMPRESSION_BZIP2:
            n = bzip2_read(in, dst + got, len - got, &in->err);
            break;
        case VMA_COMPRESSION_NONE:
        default:
            n = plain_read(in, dst + got, len - got, &in->err);
            break;
        }
        if (n < 0) {
            assert(in->err != NULL);
            g_propagate_error(errp, g_error_copy(in->err));
            return -1;
        }
        if (n == 0) {
            in->ended = true;
        }
        got += (size_t)n;
    }
    in->produced += got;
    return (ssize_t)got;
}

uint64_t vma_input_get_consumed(VmaInput *in)
{
    return raw_offset(in);
}

uint64_t vma_input_get_produced(VmaInput *in)
{
    return in->produced;
}

uint64_t vma_input_get_size(VmaInput *in)
{
    return in->size;
}
