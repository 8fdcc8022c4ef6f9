/*
 * vma-chain.c — the chain entry of delta (incremental / differential) archives.
 *
 * A delta archive is an ordinary VMA stream whose devices may lack clusters: a missing
 * cluster is unchanged since the archive's base. What makes it a delta archive is one
 * config entry, VMA_CHAIN_CONFIG_NAME, a small text (docs/vma-format.md, "Delta
 * archives"):
 *
 *     format: 1
 *     kind: incremental | differential
 *     base: <uuid of the base archive, lower-case 8-4-4-4-12>
 *     bitmap: <dirty bitmap name>          (optional, informational)
 *
 * one "key: value" per line, LF line ends, keys written in this order. The entry comes
 * from an untrusted archive, so the parser refuses everything it does not understand
 * exactly: bytes that are not printable (control characters, CR, NUL, DEL), a line
 * without ": ", an empty value, a key given twice, a missing format/kind/base, an
 * unknown kind, a uuid not in the lower-case form. Unknown keys are ignored with
 * format 1 (room for informational keys) and refused with any other format (a later
 * format may change the meaning of what a format-1 reader would understand). The final
 * LF may be missing. Errors are VMA_ERROR_FORMAT, one phrase naming the entry and the
 * line.
 */
#include <string.h>

#include <uuid/uuid.h>

#include "vma.h"

static const char *kind_name(VmaChainKind kind)
{
    switch (kind) {
    case VMA_CHAIN_INCREMENTAL:
        return "incremental";
    case VMA_CHAIN_DIFFERENTIAL:
        return "differential";
    case VMA_CHAIN_FULL:
        break;
    }
    return NULL;
}

const char *vma_chain_kind_name(VmaChainKind kind)
{
    const char *name = kind_name(kind);
    return name ? name : "full";
}

static bool text_is_printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return true;
}

char *vma_chain_info_format(const VmaChainInfo *info, size_t *len)
{
    const char *kind = kind_name(info->kind);
    char uuid[37];

    if (!kind || (info->bitmap && (info->bitmap[0] == '\0' ||
                                   !text_is_printable(info->bitmap, strlen(info->bitmap))))) {
        return NULL;
    }
    vma_uuid_unparse(info->base_uuid, uuid);
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "format: 1\nkind: %s\nbase: %s\n", kind, uuid);
    if (info->bitmap) {
        g_string_append_printf(s, "bitmap: %s\n", info->bitmap);
    }
    if (len) {
        *len = s->len;
    }
    return g_string_free(s, false);
}

/* The lower-case 8-4-4-4-12 form and nothing else (uuid_parse also takes upper case). */
static bool parse_uuid_lower(const char *s, uint8_t out[16])
{
    if (strlen(s) != 36) {
        return false;
    }
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return uuid_parse(s, out) == 0;
}

static bool known_key(const char *key)
{
    return strcmp(key, "format") == 0 || strcmp(key, "kind") == 0 ||
           strcmp(key, "base") == 0 || strcmp(key, "bitmap") == 0;
}

bool vma_chain_info_parse(const void *data, size_t len, VmaChainInfo *out, GError **errp)
{
    const char *text = data;
    g_autoptr(GHashTable) fields = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                         g_free);
    g_autoptr(GPtrArray) unknown = g_ptr_array_new_with_free_func(g_free);
    guint line = 0;
    size_t pos = 0;

    memset(out, 0, sizeof(*out));
    if (len == 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: empty", VMA_CHAIN_CONFIG_NAME);
        return false;
    }
    while (pos < len) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;

        line++;
        pos += n + (nl ? 1 : 0);
        if (!text_is_printable(start, n)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: line %u: contains a control character", VMA_CHAIN_CONFIG_NAME,
                        line);
            return false;
        }
        const char *sep = g_strstr_len(start, (gssize)n, ": ");
        if (!sep || sep == start) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "%s: line %u: not of the form 'key: value'", VMA_CHAIN_CONFIG_NAME,
                        line);
            return false;
        }
        char *key = g_strndup(start, (gsize)(sep - start));
        char *value = g_strndup(sep + 2, (gsize)(n - (size_t)(sep - start) - 2));
        if (value[0] == '\0') {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: line %u: empty value of '%s'",
                        VMA_CHAIN_CONFIG_NAME, line, key);
            g_free(key);
            g_free(value);
            return false;
        }
        if (g_hash_table_contains(fields, key)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: line %u: duplicate key '%s'",
                        VMA_CHAIN_CONFIG_NAME, line, key);
            g_free(key);
            g_free(value);
            return false;
        }
        if (!known_key(key)) {
            g_ptr_array_add(unknown, g_strdup(key));
        }
        g_hash_table_insert(fields, key, value);
    }

    static const char *const required[] = {"format", "kind", "base"};
    for (size_t i = 0; i < G_N_ELEMENTS(required); i++) {
        if (!g_hash_table_contains(fields, required[i])) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: missing key '%s'",
                        VMA_CHAIN_CONFIG_NAME, required[i]);
            return false;
        }
    }

    const char *format = g_hash_table_lookup(fields, "format");
    guint64 fmt = 0;
    if (!g_ascii_string_to_unsigned(format, 10, 1, G_MAXUINT32, &fmt, NULL)) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: bad format '%s'",
                    VMA_CHAIN_CONFIG_NAME, format);
        return false;
    }
    if (fmt != 1 && unknown->len > 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: unknown key '%s' in format %" G_GUINT64_FORMAT
                    " (this reader knows format 1)",
                    VMA_CHAIN_CONFIG_NAME, (const char *)g_ptr_array_index(unknown, 0), fmt);
        return false;
    }

    const char *kind = g_hash_table_lookup(fields, "kind");
    if (strcmp(kind, "incremental") == 0) {
        out->kind = VMA_CHAIN_INCREMENTAL;
    } else if (strcmp(kind, "differential") == 0) {
        out->kind = VMA_CHAIN_DIFFERENTIAL;
    } else {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: unknown kind '%s'",
                    VMA_CHAIN_CONFIG_NAME, kind);
        return false;
    }

    const char *base = g_hash_table_lookup(fields, "base");
    if (!parse_uuid_lower(base, out->base_uuid)) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                    "%s: bad base uuid '%s' (want lower-case 8-4-4-4-12 hex)",
                    VMA_CHAIN_CONFIG_NAME, base);
        out->kind = VMA_CHAIN_FULL;
        return false;
    }
    out->bitmap = g_strdup(g_hash_table_lookup(fields, "bitmap"));
    return true;
}

void vma_chain_info_clear(VmaChainInfo *info)
{
    if (!info) {
        return;
    }
    g_free(info->bitmap);
    memset(info, 0, sizeof(*info));
}

bool vma_chain_info_from_reader(VmaReader *r, VmaChainInfo *out, GError **errp)
{
    guint count = vma_reader_get_config_count(r);
    bool found = false;

    memset(out, 0, sizeof(*out));
    for (guint i = 0; i < count; i++) {
        const char *name = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        if (!vma_reader_get_config(r, i, &name, &data, &len) ||
            strcmp(name, VMA_CHAIN_CONFIG_NAME) != 0) {
            continue;
        }
        if (found) {
            vma_chain_info_clear(out);
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "more than one config %s",
                        VMA_CHAIN_CONFIG_NAME);
            return false;
        }
        if (!vma_chain_info_parse(data, len, out, errp)) {
            return false;
        }
        found = true;
    }
    return true;
}
