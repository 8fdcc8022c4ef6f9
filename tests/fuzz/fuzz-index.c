/*
 * fuzz-index.c — libFuzzer harness for the archive index behind the `vma` block driver
 * and `vma serve` (vma-index.c: one pass over the extent headers of a seekable archive,
 * then reads and block status at any offset).
 *
 * Input: a plain archive. The harness recomputes its header and extent-header MD5 sums
 * (FUZZ_SUMS in fuzz-common.h) so that mutations reach the checks behind them, writes
 * it to a memfd, learns the device names from the stream reader's header, and opens the
 * index of each device. An open either fails with an error or gives an index whose
 * promises are checked: block status runs are positive and within the request, a zero
 * run reads as zeros, reads anywhere inside the device succeed, reads past it fail.
 * The work per input is bounded (the first 64 MiB of each device, at most 64 runs).
 *
 *   make fuzz-build && build-fuzz/fuzz/fuzz-index -max_len=262144 tests/fuzz/corpus/index
 *
 * Built with -DFUZZ_STANDALONE it is a plain program that runs the files named on its
 * command line once each.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vma.h"
#define FUZZ_SUMS
#include "tests/fuzz/fuzz-common.h"

#define WALK_LIMIT (64u << 20)
#define RUNS_MAX 64
#define READ_MAX (1u << 20)

static uint8_t buf[READ_MAX];

static void check_index(VmaIndex *ix)
{
    uint64_t size = vma_index_get_size(ix);
    uint64_t end = MIN(size, (uint64_t)WALK_LIMIT);
    uint64_t off = 0;

    assert(vma_index_get_archive_count(ix) == 1);
    for (int runs = 0; off < end && runs < RUNS_MAX; runs++) {
        uint64_t pnum = 0;
        bool is_zero = false;
        int ret = vma_index_block_status(ix, off, end - off, &pnum, &is_zero);
        assert(ret == 0);
        assert(pnum > 0 && pnum <= end - off);
        size_t n = (size_t)MIN(pnum, (uint64_t)READ_MAX);
        struct iovec iov[2] = {{buf, n / 2}, {buf + n / 2, n - n / 2}};
        memset(buf, 0xa5, n);
        assert(vma_index_preadv(ix, iov, 2, off) == 0);
        if (is_zero) {
            for (size_t i = 0; i < n; i++) {
                assert(buf[i] == 0);
            }
        }
        off += pnum;
    }
    if (size > 0) {
        struct iovec last = {buf, 1};
        assert(vma_index_preadv(ix, &last, 1, size - 1) == 0);
    }
    struct iovec past = {buf, 2};
    assert(vma_index_preadv(ix, &past, 1, size == 0 ? 0 : size - 1) < 0 || size == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree uint8_t *a = g_memdup2(data, size ? size : 1);
    fix_sums(a, size);

    int fd = memfd_create("fuzz-index", MFD_CLOEXEC);
    if (fd < 0 || (size > 0 && write(fd, a, size) != (ssize_t)size)) {
        g_error("memfd: %s", g_strerror(errno));
    }
    g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);

    /* the device names, from the header as the stream reader sees it */
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    {
        g_autoptr(GError) err = NULL;
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        assert(rfd >= 0);
        g_autoptr(VmaReader) r = vma_reader_open_fd(rfd, "fuzz.vma", &err);
        if (r != NULL) {
            for (unsigned id = 1; id < 256 && names->len < 3; id++) {
                const VmaDeviceInfo *d = vma_reader_get_device(r, (uint8_t)id);
                if (d != NULL) {
                    g_ptr_array_add(names, g_strdup(d->name));
                }
            }
        }
    }
    g_ptr_array_add(names, g_strdup("drive-scsi0"));   /* also when the header failed */

    for (guint i = 0; i < names->len; i++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(VmaIndex) ix = vma_index_open(path, g_ptr_array_index(names, i), NULL, &err);
        assert((ix == NULL) == (err != NULL));
        if (ix != NULL) {
            assert(vma_index_get_memory(ix) > 0);
            check_index(ix);
        }
    }
    close(fd);
    return 0;
}
