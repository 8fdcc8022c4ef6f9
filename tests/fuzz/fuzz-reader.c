/*
 * fuzz-reader.c — libFuzzer harness for the archive reader as a consumer meets it: the
 * input bytes are the archive file, exactly as `vma list/verify/extract` would read
 * them. Compression is detected by magic, so one harness covers the plain reader
 * (header, blobs, extents, the cluster walk, the completeness check) and every
 * decompression front end (zstd, gzip, lzop with its container parsed by us, bzip2),
 * including their concatenation and truncation handling.
 *
 * The MD5 sums of the header and of each extent header stop most mutations of a plain
 * archive at the checksum test; fuzz-reader-sums.c recomputes them to get behind it.
 * This harness keeps them, so that the checks in their real order are what it sees.
 *
 *   make fuzz-build && build-fuzz/fuzz/fuzz-reader -max_len=65536 tests/fuzz/corpus/reader
 *
 * Built with -DFUZZ_STANDALONE it is a plain program that runs the files named on its
 * command line once each.
 */
#define FUZZ_READER
#include "tests/fuzz/fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_read_archive(data, size);
    return 0;
}
