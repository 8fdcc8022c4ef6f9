/*
 * util/size.c — parsing sizes (util/size.h, docs/sizes.md).
 *
 * Digits are read by hand rather than with strtoull, which would take a sign, leading
 * blanks and (with base 0) hex: every byte of the text is looked at once, in order.
 */
#include <inttypes.h>
#include <string.h>

#include "util/size.h"

static const char suffixes[] = "KMGT"; /* 2^10, 2^20, 2^30, 2^40 */

char *size_format(uint64_t v)
{
    unsigned i = sizeof(suffixes) - 1;

    if (v != 0) {
        while (i > 0) {
            unsigned shift = 10 * i;
            if ((v & ((UINT64_C(1) << shift) - 1)) == 0) {
                return g_strdup_printf("%" PRIu64 "%c", v >> shift, suffixes[i - 1]);
            }
            i--;
        }
    }
    return g_strdup_printf("%" PRIu64, v);
}

static bool bad(GError **errp, const char *option, const char *text, const char *what,
                const char *limit)
{
    g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s%s'%s' %s%s",
                option ? option : "", option ? ": " : "", text, what, limit ? limit : "");
    return false;
}

bool size_parse(const char *option, const char *text, uint64_t min, uint64_t max,
                uint64_t *out, GError **errp)
{
    const char *p = text;
    uint64_t v = 0;
    bool overflow = false;
    unsigned shift = 0;

    if (!g_ascii_isdigit(*p)) {
        goto not_a_size;
    }
    for (; g_ascii_isdigit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            overflow = true; /* keep reading: junk after the digits is the first error */
        } else {
            v = v * 10 + d;
        }
    }
    if (*p != '\0') {
        const char *s = strchr(suffixes, g_ascii_toupper(*p));
        if (s == NULL) {
            goto not_a_size;
        }
        shift = 10 * (unsigned)(s - suffixes + 1);
        p++;
        if (g_ascii_toupper(*p) == 'I' && g_ascii_toupper(p[1]) == 'B') {
            p += 2;
        } else if (g_ascii_toupper(*p) == 'B') {
            p++;
        }
        if (*p != '\0') {
            goto not_a_size;
        }
    }
    if (overflow || v > (UINT64_MAX >> shift) || (v << shift) > max) {
        g_autofree char *lim = size_format(max);
        g_autofree char *msg = g_strdup_printf(": at most %s", lim);
        return bad(errp, option, text, "is too large", msg);
    }
    v <<= shift;
    if (v < min) {
        g_autofree char *lim = size_format(min);
        g_autofree char *msg = g_strdup_printf(": at least %s", lim);
        return bad(errp, option, text, "is too small", msg);
    }
    *out = v;
    return true;

not_a_size:
    return bad(errp, option, text,
               "is not a size (a byte count, or a number with K, M, G or T, as in 64K, "
               "10MB or 1GiB)", NULL);
}
