/*
 * fuzz-chain.c — libFuzzer harness for the chain entry of delta archives
 * (vma-chain.c: vma_chain_info_parse, the `vmabackup-chain.conf` config blob that an
 * incremental or differential archive carries; docs/vma-format.md section 9).
 *
 * The input is the blob as an archive stores it: untrusted bytes. A parse either fails
 * with VMA_ERROR_FORMAT and leaves the info cleared, or gives an info whose kind is
 * incremental or differential; then formatting it and parsing the text again must give
 * the same info (the writer and the reader agree on every entry the reader accepts).
 *
 *   make fuzz-build && build-fuzz/fuzz/fuzz-chain tests/fuzz/corpus/chain
 */
#include <assert.h>
#include <string.h>

#include "vma.h"
#include "tests/fuzz/fuzz-common.h"

static const uint8_t zero_uuid[16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;
    VmaChainInfo info = {0};

    if (!vma_chain_info_parse(data, size, &info, &err)) {
        assert(err != NULL && err->domain == VMA_ERROR && err->code == VMA_ERROR_FORMAT);
        assert(info.kind == VMA_CHAIN_FULL && info.bitmap == NULL);
        assert(memcmp(info.base_uuid, zero_uuid, sizeof(zero_uuid)) == 0);
        return 0;
    }
    assert(err == NULL);
    assert(info.kind == VMA_CHAIN_INCREMENTAL || info.kind == VMA_CHAIN_DIFFERENTIAL);

    size_t len = 0;
    g_autofree char *text = vma_chain_info_format(&info, &len);
    if (text != NULL) {
        VmaChainInfo again = {0};
        assert(strlen(text) == len);
        bool ok = vma_chain_info_parse(text, len, &again, &err);
        assert(ok && err == NULL);
        assert(again.kind == info.kind);
        assert(memcmp(again.base_uuid, info.base_uuid, sizeof(info.base_uuid)) == 0);
        assert((again.bitmap == NULL) == (info.bitmap == NULL));
        assert(again.bitmap == NULL || strcmp(again.bitmap, info.bitmap) == 0);
        vma_chain_info_clear(&again);
    } else {
        /* the writer refuses only a bitmap name it could not store safely */
        assert(info.bitmap != NULL);
    }
    vma_chain_info_clear(&info);
    return 0;
}
