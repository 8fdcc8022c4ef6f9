/*
 * vma-chain.c — TEMPORARY stand-in for the chain config entry of delta archives
 * (CHAIN-SPEC; the chain branch provides the real one). Formats and parses
 * "vmabackup-chain.conf".
 */
#include <string.h>

#include <uuid/uuid.h>

#include "vma.h"

char *vma_chain_info_format(const VmaChainInfo *info, size_t *len)
{
    char uuid[37];

    uuid_unparse_lower(info->base_uuid, uuid);
    char *s = g_strdup_printf("format: 1\nkind: %s\nbase: %s\nbitmap: %s\n",
                              info->kind == VMA_CHAIN_DIFFERENTIAL ? "differential"
                                                                   : "incremental",
                              uuid, info->bitmap ? info->bitmap : "");
    if (len != NULL) {
        *len = strlen(s);
    }
    return s;
}

bool vma_chain_info_parse(const void *data, size_t len, VmaChainInfo *out, GError **errp)
{
    g_autofree char *text = g_strndup(data, len);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

    memset(out, 0, sizeof(*out));
    for (guint i = 0; lines[i] != NULL; i++) {
        if (g_str_has_prefix(lines[i], "kind: ")) {
            out->kind = strcmp(lines[i] + 6, "differential") == 0 ? VMA_CHAIN_DIFFERENTIAL
                                                                   : VMA_CHAIN_INCREMENTAL;
        } else if (g_str_has_prefix(lines[i], "base: ")) {
            if (uuid_parse(lines[i] + 6, out->base_uuid) != 0) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "bad base uuid");
                return false;
            }
        } else if (g_str_has_prefix(lines[i], "bitmap: ")) {
            out->bitmap = g_strdup(lines[i] + 8);
        }
    }
    return true;
}

void vma_chain_info_clear(VmaChainInfo *info)
{
    g_clear_pointer(&info->bitmap, g_free);
}
