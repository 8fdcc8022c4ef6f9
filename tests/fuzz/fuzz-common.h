/*
 * fuzz-common.h — pieces the harnesses share: a main() for replaying inputs without
 * libFuzzer (-DFUZZ_STANDALONE), and the archive walk of the two reader harnesses.
 *
 * Harnesses are single files: they include this header once, after their
 * LLVMFuzzerTestOneInput() prototype.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <glib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef FUZZ_STANDALONE
/* Run each file named on the command line once: a corpus or a crash reproducer replayed
 * under a plain sanitizer build, where leaks are checked at exit. */
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        g_autofree char *buf = NULL;
        gsize len = 0;
        if (!g_file_get_contents(argv[i], &buf, &len, NULL)) {
            fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[i]);
            return 1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    }
    return 0;
}
#endif

#ifdef FUZZ_READER
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vma.h"

/* Everything a consumer does with an archive: open it (compression detected by magic),
 * look at every config and device, walk every cluster touching every stored byte, then
 * the completeness check. The checks here are on the API's promises: a failure comes
 * with an error and is latched; clusters are in range and their data is where the mask
 * says; the statistics add up. With FUZZ_DEBUG set in the environment the outcome is
 * printed on stderr (to check what a seed reaches). */
static void fuzz_report(const char *what, const GError *err, uint64_t clusters)
{
    static int debug = -1;

    if (debug < 0) {
        debug = getenv("FUZZ_DEBUG") != NULL;
    }
    if (debug) {
        fprintf(stderr, "%s: %" G_GUINT64_FORMAT " clusters: %s\n", what, clusters,
                err != NULL ? err->message : "ok");
    }
}

static void fuzz_read_archive(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;
    int fd = memfd_create("fuzz-archive", MFD_CLOEXEC);
    size_t done = 0;

    if (fd < 0) {
        g_error("memfd_create: %s", g_strerror(errno));
    }
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            g_error("write memfd: %s", g_strerror(errno));
        }
        done += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        g_error("lseek memfd: %s", g_strerror(errno));
    }

    g_autoptr(VmaReader) r = vma_reader_open_fd(fd, "fuzz.vma", &err);
    if (r == NULL) {
        assert(err != NULL && err->message[0] != '\0');
        fuzz_report("open", err, 0);
        return;
    }
    (void)vma_compression_name(vma_reader_get_compression(r));
    for (guint i = 0; i < vma_reader_get_config_count(r); i++) {
        const char *name = NULL;
        const uint8_t *cdata = NULL;
        size_t len = 0;
        bool ok = vma_reader_get_config(r, i, &name, &cdata, &len);
        assert(ok && name != NULL && (len == 0 || cdata != NULL));
        (void)strlen(name);
        volatile uint8_t sink = 0;
        for (size_t j = 0; j < len; j++) {
            sink ^= cdata[j];
        }
        (void)sink;
    }
    uint64_t total = 0;
    for (guint id = 0; id <= 255; id++) {
        const VmaDeviceInfo *d = vma_reader_get_device(r, id);
        if (d != NULL) {
            assert(id >= 1 && id <= VMA_MAX_DEVICES);
            assert(d->size > 0 && d->size <= VMA_MAX_DEVICE_SIZE);
            (void)strlen(d->name);
            if (!d->is_vmstate) {
                total += (d->size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
            }
        }
    }

    VmaCluster c;
    uint64_t clusters = 0, data_bytes = 0;
    int ret;
    while ((ret = vma_reader_next_cluster(r, &c, &err)) == 1) {
        const VmaDeviceInfo *d = vma_reader_get_device(r, c.dev_id);
        size_t len = (size_t)__builtin_popcount(c.mask) * VMA_BLOCK_SIZE;

        assert(d != NULL);
        assert(d->is_vmstate || (uint64_t)c.cluster_num * VMA_CLUSTER_SIZE < d->size);
        assert(len == 0 || c.data != NULL);
        volatile uint8_t sink = 0;
        for (size_t j = 0; j < len; j += 512) {
            sink ^= c.data[j];
        }
        if (len > 0) {
            sink ^= c.data[len - 1];
        }
        (void)sink;
        clusters++;
        data_bytes += len;
    }

    VmaReaderStats st;
    vma_reader_get_stats(r, &st);
    assert(st.clusters_seen == clusters && st.data_bytes == data_bytes);
    assert(st.clusters_total == total);
    if (ret < 0) {
        assert(err != NULL);
        g_autoptr(GError) again = NULL;
        assert(vma_reader_next_cluster(r, &c, &again) == -1 && again != NULL);
        assert(strcmp(again->message, err->message) == 0);
        fuzz_report("read", err, clusters);
        return;
    }
    assert(err == NULL);
    assert(vma_reader_next_cluster(r, &c, NULL) == 0);
    bool complete = vma_reader_check_complete(r, 0, &err);
    assert(complete == (err == NULL));
    fuzz_report(vma_compression_name(vma_reader_get_compression(r)), err, clusters);
    g_clear_error(&err);
    for (guint id = 1; id <= VMA_MAX_DEVICES; id++) {
        if (vma_reader_get_device(r, id) != NULL) {
            bool ok = vma_reader_check_complete(r, id, &err);
            assert(ok == (err == NULL));
            assert(ok || !complete);
            g_clear_error(&err);
        }
    }
}
#endif /* FUZZ_READER */

#endif /* FUZZ_COMMON_H */

#ifdef FUZZ_SUMS
/* Mutations behind the checksums: recompute the MD5 sum of the header (when header_size
 * lies within the input) and of every extent header found by following the block
 * counts, so that mutated sizes, pointers, blockinfo and data reach the checks behind
 * the sums (fuzz-reader-sums.c, fuzz-index.c). The uuids are left alone: libFuzzer's
 * memcmp hooks find them. */
#include <string.h>

#include "vma.h"

#define HDR_FIXED 12288u
#define HDR_MAX 524288u
#define EXT_HDR 512u
#define OFF_HDR_MD5 32u
#define OFF_HDR_SIZE 56u
#define OFF_EXT_COUNT 6u
#define OFF_EXT_MD5 24u

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* MD5 of len bytes at p with the 16 bytes at p + sum_off taken as zero, stored there. */
static void fix_md5(uint8_t *p, size_t len, size_t sum_off)
{
    GChecksum *cs = g_checksum_new(G_CHECKSUM_MD5);
    gsize n = 16;

    memset(p + sum_off, 0, 16);
    g_checksum_update(cs, p, (gssize)len);
    g_checksum_get_digest(cs, p + sum_off, &n);
    g_checksum_free(cs);
}

static void fix_sums(uint8_t *a, size_t size)
{
    if (size < HDR_FIXED) {
        return;
    }
    uint32_t head = get_be32(a + OFF_HDR_SIZE);
    if (head < HDR_FIXED || head > HDR_MAX || head > size) {
        return;
    }
    fix_md5(a, head, OFF_HDR_MD5);
    for (size_t off = head; off + EXT_HDR <= size;) {
        unsigned blocks = (unsigned)a[off + OFF_EXT_COUNT] << 8 | a[off + OFF_EXT_COUNT + 1];
        fix_md5(a + off, EXT_HDR, OFF_EXT_MD5);
        off += EXT_HDR + (size_t)blocks * VMA_BLOCK_SIZE;
    }
}
#endif /* FUZZ_SUMS */
