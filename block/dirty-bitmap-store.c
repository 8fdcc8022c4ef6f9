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
 * Images without a local file (rbd: librbd updates an image's modify time only about
 * once a minute, so no timestamp can tell that it changed) have a driver-made mark
 * instead of dev/ino/mtime (block.h: state_seal, state_check, state_drop):
 *   open for writing  -> the state file is checked (below), rewritten IN_USE (no mark),
 *                        and only then every mark of this state file is dropped: from
 *                        here a crash leaves the bitmaps inconsistent anyway;
 *   clean close       -> the driver makes a new mark of the image as it is now (rbd: a
 *                        snapshot, taken after the last write and flush), the file is
 *                        written with its record, then older marks are dropped; a
 *                        read-only node keeps the mark it loaded (it wrote nothing);
 *   load              -> IN_USE, no mark, another size, or a mark the driver cannot
 *                        vouch for (gone, another image): inconsistent. Else the driver
 *                        lists every range written since the mark and those are added
 *                        to the enabled bitmaps: bits of the close ∪ writes since the
 *                        close = every write since each bitmap's base.
 * A crash between making a new mark and writing the file leaves an extra mark; it
 * carries the state file's tag, so the next seal or drop removes it.
 *
 * Format (little-endian; the file is input: every field is checked on load):
 *   header, 64 bytes: magic "VMADBMP1", u32 version (1; 2 when a mark follows), u32
 *     flags (bit 0 IN_USE), u64 dev, u64 ino, u64 size, i64 mtime_sec, i64 mtime_nsec,
 *     u32 count, u32 CRC-32 of the 60 bytes before it (dev, ino, mtime 0 with a mark);
 *   version 2 only: u32 mark_len (1..4096), the mark record (driver-defined bytes),
 *     u32 CRC-32 of mark_len and the record;
 *   count entries, each: a 48-byte entry header — u32 name_len (1..1023), u32
 *     granularity (power of two, 4 KiB..64 MiB), u32 flags (bit 0 enabled, bit 1 has
 *     base), u32 zero, u8 base[16], u64 base_size, u64 nbits (= ceil(size/granularity))
 *     —, the name (no NUL), ceil(nbits/64) u64 words of bits, u32 CRC-32 of the entry
 *     header, name and words.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "block/block.h"
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
    put32(es.out, id->mark != NULL ? DIRTY_STATE_VERSION_MARK : DIRTY_STATE_VERSION);
    put32(es.out, in_use ? FLAG_IN_USE : 0);
    put64(es.out, id->dev);
    put64(es.out, id->ino);
    put64(es.out, id->size);
    put64(es.out, (uint64_t)id->mtime_sec);
    put64(es.out, (uint64_t)id->mtime_nsec);
    put32(es.out, 0);   /* count, filled in below */
    put32(es.out, 0);   /* header CRC */
    if (id->mark != NULL) {
        gsize mlen = 0;
        const uint8_t *m = g_bytes_get_data(id->mark, &mlen);
        assert(mlen >= 1 && mlen <= DIRTY_STATE_MAX_MARK);
        size_t start = es.out->len;
        put32(es.out, (uint32_t)mlen);
        g_byte_array_append(es.out, m, (guint)mlen);
        put32(es.out, (uint32_t)crc32(0, es.out->data + start, (uInt)(es.out->len - start)));
    }
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
    uint32_t version = get32(p + 8);
    if (version != DIRTY_STATE_VERSION && version != DIRTY_STATE_VERSION_MARK) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                    "unsupported version %u (this vmad reads versions 1 and 2)", version);
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
    id->mark = NULL;
    if (version == DIRTY_STATE_VERSION_MARK) {
        uint32_t mlen = len - off >= 4 ? get32(p + off) : 0;
        if (len - off < 4 || mlen == 0 || mlen > DIRTY_STATE_MAX_MARK ||
            len - off - 4 < (size_t)mlen + 4) {
            g_set_error_literal(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                                "the image mark is truncated or of a bad length");
            return false;
        }
        if (get32(p + off + 4 + mlen) != (uint32_t)crc32(0, p + off, (uInt)(4 + mlen))) {
            g_set_error_literal(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                                "image mark checksum mismatch");
            return false;
        }
        id->mark = g_bytes_new(p + off + 4, mlen);
        off += 4 + (size_t)mlen + 4;
    }
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

/* No persistent bitmap left: remove the state file (true when there is none). */
static bool remove_state(const char *path, GError **errp)
{
    if (unlink(path) == 0) {
        g_autofree char *dir = g_path_get_dirname(path);
        return fsync_dir(dir, errp);
    }
    return true;
}

static bool write_state(DirtyBitmapSet *set, const char *node, const char *path,
                        bool in_use, const DirtyStateIdentity *id, GError **errp)
{
    g_autoptr(GBytes) data = dirty_state_encode(set, in_use, id);
    if (!write_atomic(path, data, errp)) {
        g_prefix_error(errp, "save bitmaps of %s: ", node);
        return false;
    }
    return true;
}

bool dirty_state_save(DirtyBitmapSet *set, const char *node, const char *filename,
                      bool in_use, GError **errp)
{
    g_autofree char *path = dirty_state_path(node, filename);
    DirtyStateIdentity id = {0};

    if (!dirty_set_has_persistent(set)) {
        return remove_state(path, errp);
    }
    /* in use: the identity is only what the bit counts are checked against */
    if (!identity_of(filename, &id, errp)) {
        return false;
    }
    return write_state(set, node, path, in_use, &id, errp);
}

/* The state file's contents into *data (g_free); false when there is none (or it is
 * unreadable: a warning, its bitmaps are lost). */
static bool read_state(const char *node, const char *path, char **data, gsize *len)
{
    g_autoptr(GError) err = NULL;
    struct stat st;

    if (stat(path, &st) < 0) {
        return false;  /* no persistent bitmaps */
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_FILE_SIZE ||
        !g_file_get_contents(path, data, len, &err)) {
        g_warning("%s: bitmap state file %s unreadable (%s): its bitmaps are lost",
                  node, path, err ? err->message : "not a regular file of sane size");
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

    if (!read_state(node, path, &data, &len)) {
        return true;
    }
    bool in_use = false;
    DirtyStateIdentity rec = {0}, now = {0};
    bool decoded = dirty_state_decode(set, data, len, &in_use, &rec, &err);
    g_clear_pointer(&rec.mark, g_bytes_unref);   /* a file image has no mark */
    if (!decoded) {
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

/* ---- nodes whose driver marks the image (rbd) ---- */

/* The tag of a state file's marks: 12 hex of sha256 of its name. */
static char *mark_tag(const char *path)
{
    g_autofree char *base = g_path_get_basename(path);
    g_autofree char *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256, base, -1);
    return g_strndup(sum, 12);
}

typedef struct Changed {
    DirtyBitmapSet *set;
    uint64_t bytes;
} Changed;

static void changed_cb(void *opaque, uint64_t offset, uint64_t len)
{
    Changed *c = opaque;
    uint64_t size = dirty_set_disk_size(c->set);

    if (offset < size && len > 0) {
        len = MIN(len, size - offset);
        dirty_set_mark(c->set, offset, len);
        c->bytes += len;
    }
}

bool dirty_state_save_node(BlockNode *n, const char *node, bool in_use, GError **errp)
{
    if (n->drv->state_seal == NULL) {
        return dirty_state_save(n->dirty, node, n->filename, in_use, errp);
    }
    g_autofree char *path = dirty_state_path(node, n->filename);
    g_autofree char *tag = mark_tag(path);
    DirtyStateIdentity id = {.size = n->size};

    if (!dirty_set_has_persistent(n->dirty)) {
        if (!remove_state(path, errp)) {
            return false;
        }
        if (!n->read_only) {
            n->drv->state_drop(n, tag, NULL);
            g_clear_pointer(&n->state_mark, g_bytes_unref);
        }
        return true;
    }
    if (in_use) {
        /* no mark: a file marked in use loads inconsistent whatever the image holds */
        return write_state(n->dirty, node, path, true, &id, errp);
    }
    g_autoptr(GBytes) mark = n->drv->state_seal(n, tag, n->state_mark, errp);
    if (mark == NULL) {
        g_prefix_error(errp, "save bitmaps of %s: ", node);
        return false;
    }
    gsize mlen = g_bytes_get_size(mark);
    if (mlen == 0 || mlen > DIRTY_STATE_MAX_MARK) {
        g_set_error(errp, DIRTY_BITMAP_ERROR, DIRTY_BITMAP_ERROR_STATE,
                    "save bitmaps of %s: the image mark is %zu bytes", node, (size_t)mlen);
        return false;
    }
    id.mark = mark;
    if (!write_state(n->dirty, node, path, false, &id, errp)) {
        return false;
    }
    if (!n->read_only) {
        n->drv->state_drop(n, tag, mark);   /* the file names the new mark now */
    }
    g_clear_pointer(&n->state_mark, g_bytes_unref);
    n->state_mark = g_steal_pointer(&mark);
    return true;
}

bool dirty_state_load_node(BlockNode *n, const char *node, GError **errp)
{
    if (n->drv->state_check == NULL) {
        return dirty_state_load(n->dirty, node, n->filename, !n->read_only, errp);
    }
    g_autofree char *path = dirty_state_path(node, n->filename);
    g_autofree char *tag = mark_tag(path);
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autoptr(GError) err = NULL;
    bool in_use = false;
    DirtyStateIdentity rec = {0};

    if (!read_state(node, path, &data, &len)) {
        return true;
    }
    bool decoded = dirty_state_decode(n->dirty, data, len, &in_use, &rec, &err);
    g_autoptr(GBytes) mark = g_steal_pointer(&rec.mark);
    Changed ch = {.set = n->dirty};
    if (!decoded) {
        g_warning("%s: bitmap state file %s is damaged (%s): its bitmaps are inconsistent",
                  node, path, err->message);
        dirty_set_make_inconsistent(n->dirty);
    } else if (in_use) {
        g_warning("%s: vmad did not stop cleanly with the disk open: its persistent "
                  "bitmaps are inconsistent", node);
        dirty_set_make_inconsistent(n->dirty);
    } else if (mark == NULL || rec.size != n->size ||
               rec.size != dirty_set_disk_size(n->dirty)) {
        g_warning("%s: the state file %s records %s: its persistent bitmaps are "
                  "inconsistent", node, path,
                  mark == NULL ? "no mark of the image" : "another image size");
        dirty_set_make_inconsistent(n->dirty);
    } else if (!n->drv->state_check(n, mark, changed_cb, &ch, &err)) {
        g_warning("%s: cannot tell what changed in %s since vmad stopped (%s): its "
                  "persistent bitmaps are inconsistent", node, n->filename, err->message);
        dirty_set_make_inconsistent(n->dirty);
    } else {
        if (ch.bytes > 0) {
            g_message("%s: %" G_GUINT64_FORMAT " bytes of %s were written while vmad was "
                      "not running: added to its enabled persistent bitmaps", node,
                      ch.bytes, n->filename);
        }
        n->state_mark = g_steal_pointer(&mark);   /* still marks the image */
    }
    if (n->read_only || !dirty_set_has_persistent(n->dirty)) {
        return true;
    }
    if (!dirty_state_save_node(n, node, true, errp)) {
        return false;
    }
    /* in use from here on: the marks are not needed any more, and a snapshot would make
     * every write copy its object */
    n->drv->state_drop(n, tag, NULL);
    g_clear_pointer(&n->state_mark, g_bytes_unref);
    return true;
}
