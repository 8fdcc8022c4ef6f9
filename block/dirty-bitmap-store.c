/*
 * block/dirty-bitmap-store.c — the state file of a disk's persistent bitmaps.
 *
 * Never trust a bitmap that could have missed a write. The life of a state file:
 *   open for writing  -> the file is rewritten with IN_USE set and made durable (file
 *                        and directory fsync) before the disk takes any write;
 *   clean close       -> bitmaps written, IN_USE clear, the image's dev/ino, size and
 *                        mtime recorded (after the last write and flush);
 *   load              -> IN_USE still set (crash, kill -9, power loss), an identity,
 *                        size or mtime that differs (changed offline), or a damaged
 *                        file: every bitmap it names comes back inconsistent.
 * Every write of the file is atomic: a temporary file in the same directory, fsync,
 * rename over the old one, fsync of the directory. So a crash leaves the old or the new
 * file, and both are safe: the old one is IN_USE (or the write never started).
 *
 * Format (little-endian; the file is input: every field is checked on load):
 *   header, 64 bytes: magic "VMADBMP1", u32 version (1), u32 flags (bit 0 IN_USE),
 *     u64 dev, u64 ino, u64 size, i64 mtime_sec, i64 mtime_nsec, u32 count, u32 CRC-32
 *     of the 60 bytes before it;
 *   count entries, each: a 48-byte entry header — u32 name_len (1..1023), u32
 *     granularity (power of two, 4 KiB..64 MiB), u32 flags (bit 0 enabled, bit 1 has
 *     base), u32 zero, u8 base[16], u64 base_size, u64 nbits (= ceil(size/granularity))
 *     —, the name (no NUL), ceil(nbits/64) u64 words of bits, u32 CRC-32 of the entry
 *     header, name and words.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "block/dirty-bitmap.h"

#define HEADER_SIZE 64u
#define ENTRY_SIZE 48u
#define FLAG_IN_USE 1u
#define EFLAG_ENABLED 1u
#define EFLAG_BASE 2u
#define MAX_BITMAPS 65535u
#define MAX_FILE_SIZE (1ull << 30)

static char *state_dir;

void dirty_state_set_dir(const char *dir)
{
    g_free(state_dir);
    state_dir = g_strdup(dir);
}

const char *dirty_state_get_dir(void)
{
    static char *dflt;

    if (state_dir != NULL) {
        return state_dir;
    }
    if (dflt == NULL) {
        /* root: /var/lib/vmad; others: $XDG_STATE_HOME/vmad (~/.local/state/vmad) */
        if (geteuid() == 0) {
            dflt = g_strdup("/var/lib/vmad");
        } else {
            const char *xdg = g_getenv("XDG_STATE_HOME");
            dflt = xdg != NULL && xdg[0] == '/'
                       ? g_build_filename(xdg, "vmad", NULL)
                       : g_build_filename(g_get_home_dir(), ".local", "state", "vmad", NULL);
        }
    }
    return dflt;
}

char *dirty_state_path(const char *node, const char *filename)
{
    /* one file per image: the same node name over another image is another disk */
    char *real = realpath(filename, NULL);
    g_autofree char *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256,
                                                          real ? real : filename, -1);
    free(real);
    g_autofree char *base = g_strdup_printf("%s-%.16s.bitmaps", node, sum);
    return g_build_filename(dirty_state_get_dir(), base, NULL);
}

/* ---- encoding ---- */

static void put32(GByteArray *b, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    g_byte_array_append(b, (const guint8 *)&v, 4);
}

static void put64(GByteArray *b, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    g_byte_array_append(b, (const guint8 *)&v, 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return GUINT32_FROM_LE(v);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return GUINT64_FROM_LE(v);
}

typedef struct EncodeState {
    GByteArray *out;
    uint32_t count;
} EncodeState;

static void encode_one(const char *name, uint32_t granularity, bool enabled, bool has_base,
                       const uint8_t *base, uint64_t base_size, const Bitmap *bits,
                       void *opaque)
{
    EncodeState *es = opaque;
    GByteArray *b = es->out;
    size_t start = b->len;
    uint64_t nbits = bits != NULL ? bitmap_size(bits) : 0;
    uint8_t zero_uuid[16] = {0};

    put32(b, (uint32_t)strlen(name));
    put32(b, granularity);
    put32(b, (enabled ? EFLAG_ENABLED : 0) | (has_base ? EFLAG_BASE : 0));
    put32(b, 0);
    g_byte_array_append(b, has_base ? base : zero_uuid, 16);
    put64(b, has_base ? base_size : 0);
    /* an inconsistent bitmap is stored with nbits 0: it loads inconsistent again */
    put64(b, nbits);
    g_byte_array_append(b, (const guint8 *)name, (guint)strlen(name));
    uint64_t nwords = (nbits + 63) / 64;
    g_autofree uint64_t *words = g_new0(uint64_t, nwords ? nwords : 1);
    for (uint64_t i = nbits ? bitmap_find_next_set(bits, 0) : 0; i < nbits;) {
        uint64_t end = bitmap_find_next_clear(bits, i);
        for (uint64_t k = i; k < end; k++) {
            words[k / 64] |= UINT64_C(1) << (k % 64);
        }
        i = end < nbits ? bitmap_find_next_set(bits, end) : nbits;
    }
    for (uint64_t w = 0; w < nwords; w++) {
        put64(b, words[w]);
    }
    uint32_t crc = (uint32_t)crc32(0, b->data + start, (uInt)(b->len - start));
    put32(b, crc);
    es->count++;
}

GBytes *dirty_state_encode(DirtyBitmapSet *set, bool in_use, const DirtyStateIdentity *id)
{
    EncodeState es = {.out = g_byte_array_new()};

    g_byte_array_append(es.out, (const guint8 *)DIRTY_STATE_MAGIC, 8);
    put32(es.out, DIRTY_STATE_VERSION);
    put32(es.out, in_use ? FLAG_IN_USE : 0);
    put64(es.out, id->dev);
    put64(es.out, id->ino);
    put64(es.out, id->size);
    put64(es.out, (uint64_t)id->mtime_sec);
    put64(es.out, (uint64_t)id->mtime_nsec);
    put32(es.out, 0);   /* count, filled in below */
    put32(es.out, 0);   /* header CRC */
    dirty_set_foreach_persistent(set, encode_one, &es);
    uint32_t count = GUINT32_TO_LE(es.count);
    memcpy(es.out->data + 56, &count, 4);
    uint32_t crc = GUINT32_TO_LE((uint32_t)crc32(0, es.out->data, 60));
    memcpy(es.out->data + 60, &crc, 4);
    return g_byte_array_free_to_bytes(es.out);
}

bool dirty_state_decode(DirtyBitmapSet *set, const void *data, size_t len, bool *in_use,
                        DirtyStateIdentity *id, GError **errp)
{
    const uint8_t *p = data;

    if (len < HEADER_SIZE || memcmp(p, DIRTY_STATE_MAGIC, 8) != 0) {
        g_set_error_literal(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                            "not a bitmap state file (bad magic or too short)");
        return false;
    }
    if (get32(p + 60) != (uint32_t)crc32(0, p, 60)) {
        g_set_error_literal(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                            "header checksum mismatch");
        return false;
    }
    if (get32(p + 8) != DIRTY_STATE_VERSION) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                    "unsupported version %u", get32(p + 8));
        return false;
    }
    uint32_t flags = get32(p + 12);
    *in_use = (flags & FLAG_IN_USE) != 0;
    id->dev = get64(p + 16);
    id->ino = get64(p + 24);
    id->size = get64(p + 32);
    id->mtime_sec = (int64_t)get64(p + 40);
    id->mtime_nsec = (int64_t)get64(p + 48);
    uint32_t count = get32(p + 56);
    if (count > MAX_BITMAPS) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                    "too many bitmaps (%u)", count);
        return false;
    }

    size_t off = HEADER_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        if (len - off < ENTRY_SIZE) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap %u: truncated", i);
            return false;
        }
        const uint8_t *e = p + off;
        g_autofree char *name = NULL;
        uint32_t name_len = get32(e);
        uint32_t gran = get32(e + 4);
        uint32_t eflags = get32(e + 8);
        uint64_t base_size = get64(e + 32);
        uint64_t nbits = get64(e + 40);
        if (name_len == 0 || name_len > DIRTY_BITMAP_MAX_NAME) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap %u: bad name length %u", i, name_len);
            return false;
        }
        if (name_len > len - off - ENTRY_SIZE) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap %u: truncated", i);
            return false;
        }
        if (gran < DIRTY_BITMAP_MIN_GRANULARITY || gran > DIRTY_BITMAP_MAX_GRANULARITY ||
            (gran & (gran - 1)) != 0) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap %u: bad granularity %u", i, gran);
            goto damaged;
        }
        uint64_t want = (id->size + gran - 1) / gran;
        if (nbits != 0 && nbits != want) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap %u: %" G_GUINT64_FORMAT " bits for a disk of %"
                        G_GUINT64_FORMAT " bytes", i, nbits, id->size);
            goto damaged;
        }
        uint64_t words = (nbits + 63) / 64;
        size_t left = len - off - ENTRY_SIZE;
        if (name_len > left || words > (left - name_len) / 8 ||
            (left - name_len - words * 8) < 4) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap %u: truncated", i);
            goto damaged;
        }
        size_t body = ENTRY_SIZE + name_len + (size_t)words * 8;
        if (get32(e + body) != (uint32_t)crc32(0, e, (uInt)body)) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap %u: checksum mismatch", i);
            goto damaged;
        }
        name = g_strndup((const char *)e + ENTRY_SIZE, name_len);
        if (strlen(name) != name_len) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap %u: NUL in name", i);
            return false;
        }
        const uint8_t *bits = nbits != 0 ? e + ENTRY_SIZE + name_len : NULL;
        if (!dirty_set_insert_loaded(set, name, gran, (eflags & EFLAG_ENABLED) != 0,
                                     (eflags & EFLAG_BASE) != 0, e + 16, base_size, bits,
                                     nbits)) {
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                        "bitmap '%s' is listed twice", name);
            return false;
        }
        off += body + 4;
        continue;
damaged:
        /* the entry's name is still readable: that bitmap comes back inconsistent */
        name = g_strndup((const char *)e + ENTRY_SIZE, name_len);
        if (strlen(name) == name_len) {
            (void)dirty_set_insert_loaded(set, name, DIRTY_BITMAP_DEFAULT_GRANULARITY, false,
                                          false, NULL, 0, NULL, 0);
        }
        return false;
    }
    if (off != len) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                    "%zu bytes of garbage after the last bitmap", len - off);
        return false;
    }
    return true;
}

/* ---- files ---- */

static bool identity_of(const char *filename, DirtyStateIdentity *id, GError **errp)
{
    struct stat st;

    if (stat(filename, &st) < 0) {
        /* a node without a local image file (rbd) has no identity to check yet */
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                    "%s: %s (persistent bitmaps need a local image file)", filename,
                    g_strerror(errno));
        return false;
    }
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = (uint64_t)st.st_size;
    id->mtime_sec = st.st_mtim.tv_sec;
    id->mtime_nsec = st.st_mtim.tv_nsec;
    return true;
}

static bool fsync_dir(const char *dir, GError **errp)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) < 0) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE, "fsync %s: %s", dir,
                    g_strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    close(fd);
    return true;
}

static bool write_atomic(const char *path, GBytes *data, GError **errp)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *tmp = g_strdup_printf("%s.tmp.XXXXXX", path);
    gsize len = 0;
    const uint8_t *p = g_bytes_get_data(data, &len);

    if (g_mkdir_with_parents(dir, 0700) < 0) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE, "create %s: %s", dir,
                    g_strerror(errno));
        return false;
    }
    int fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE, "create %s: %s", tmp,
                    g_strerror(errno));
        return false;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t r = write(fd, p + done, len - done);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE, "write %s: %s",
                        tmp, g_strerror(e));
            return false;
        }
        done += (size_t)r;
    }
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE, "fsync %s: %s", tmp,
                    g_strerror(e));
        return false;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE, "rename %s: %s", path,
                    g_strerror(e));
        return false;
    }
    return fsync_dir(dir, errp);
}

bool dirty_state_save(DirtyBitmapSet *set, const char *node, const char *filename,
                      bool in_use, GError **errp)
{
    g_autofree char *path = dirty_state_path(node, filename);
    DirtyStateIdentity id = {0};

    if (!dirty_set_has_persistent(set)) {
        if (unlink(path) == 0) {
            g_autofree char *dir = g_path_get_dirname(path);
            return fsync_dir(dir, errp);
        }
        return true;
    }
    /* in use: the identity is only what the bit counts are checked against */
    if (!identity_of(filename, &id, errp)) {
        return false;
    }
    g_autoptr(GBytes) data = dirty_state_encode(set, in_use, &id);
    if (!write_atomic(path, data, errp)) {
        g_prefix_error(errp, "save bitmaps of %s: ", node);
        return false;
    }
    return true;
}

bool dirty_state_load(DirtyBitmapSet *set, const char *node, const char *filename,
                      bool writable, GError **errp)
{
    g_autofree char *path = dirty_state_path(node, filename);
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autoptr(GError) err = NULL;
    struct stat st;

    if (stat(path, &st) < 0) {
        return true;  /* no persistent bitmaps */
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_FILE_SIZE ||
        !g_file_get_contents(path, &data, &len, &err)) {
        g_warning("%s: bitmap state file %s unreadable (%s): its bitmaps are lost",
                  node, path, err ? err->message : "not a regular file of sane size");
        return true;
    }
    bool in_use = false;
    DirtyStateIdentity rec = {0}, now = {0};
    if (!dirty_state_decode(set, data, len, &in_use, &rec, &err)) {
        g_warning("%s: bitmap state file %s is damaged (%s): its bitmaps are inconsistent",
                  node, path, err->message);
        dirty_set_make_inconsistent(set);
    } else if (in_use) {
        g_warning("%s: vmad did not stop cleanly with the disk open: its persistent "
                  "bitmaps are inconsistent", node);
        dirty_set_make_inconsistent(set);
    } else if (!identity_of(filename, &now, NULL) || now.dev != rec.dev ||
               now.ino != rec.ino || now.size != rec.size ||
               now.mtime_sec != rec.mtime_sec || now.mtime_nsec != rec.mtime_nsec ||
               rec.size != dirty_set_disk_size(set)) {
        g_warning("%s: the image %s changed while vmad was not running: its persistent "
                  "bitmaps are inconsistent", node, filename);
        dirty_set_make_inconsistent(set);
    }
    if (writable && dirty_set_has_persistent(set)) {
        return dirty_state_save(set, node, filename, true, errp);
    }
    return true;
}
