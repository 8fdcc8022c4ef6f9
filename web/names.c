/*
 * names.c — the names a request may carry: VM ids and vzdump archive names.
 *
 * A request names a VM by id and an archive by its file name; both become path
 * components under the run and backup directories, so only the exact shapes below
 * pass, checked byte by byte (no '/', no '.', no escapes can sneak through):
 *   vmid      [1-9][0-9]{0,8}                       (Proxmox's vmid)
 *   archive   vzdump-qemu-<vmid>-YYYY_MM_DD-HH_MM_SS.vma[.zst]
 * The time stamp must be a real local time (vzdump writes strftime of localtime); it is
 * the backup's time for listing and for retention, as in Proxmox.
 */
#include <string.h>

#include "web/web.h"

G_DEFINE_QUARK(vma-web-error-quark, web_error)

bool web_vmid_valid(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > 9 || id[0] < '1' || id[0] > '9') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (id[i] < '0' || id[i] > '9') {
            return false;
        }
    }
    return true;
}

/* n decimal digits at s into *v */
static bool digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

bool web_archive_name_parse(const char *name, const char *vmid, gint64 *when, bool *zstd)
{
    static const char prefix[] = "vzdump-qemu-";
    size_t idlen = strlen(vmid);
    const char *p = name;
    int y, mo, d, h, mi, s;

    if (!web_vmid_valid(vmid) || strncmp(p, prefix, sizeof(prefix) - 1) != 0) {
        return false;
    }
    p += sizeof(prefix) - 1;
    if (strncmp(p, vmid, idlen) != 0 || p[idlen] != '-') {
        return false;
    }
    p += idlen + 1;
    /* YYYY_MM_DD-HH_MM_SS */
    if (strlen(p) < 19 || !digits(p, 4, &y) || p[4] != '_' || !digits(p + 5, 2, &mo) ||
        p[7] != '_' || !digits(p + 8, 2, &d) || p[10] != '-' || !digits(p + 11, 2, &h) ||
        p[13] != '_' || !digits(p + 14, 2, &mi) || p[16] != '_' || !digits(p + 17, 2, &s)) {
        return false;
    }
    p += 19;
    bool z;
    if (strcmp(p, ".vma") == 0) {
        z = false;
    } else if (strcmp(p, ".vma.zst") == 0) {
        z = true;
    } else {
        return false;
    }
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) {
        return false;
    }
    g_autoptr(GTimeZone) tz = g_time_zone_new_local();
    g_autoptr(GDateTime) dt = g_date_time_new(tz, y, mo, d, h, mi, s);
    /* g_date_time_new refuses 31 February; a round trip refuses what it normalised */
    if (dt == NULL || g_date_time_get_day_of_month(dt) != d) {
        return false;
    }
    if (when != NULL) {
        *when = g_date_time_to_unix(dt);
    }
    if (zstd != NULL) {
        *zstd = z;
    }
    return true;
}

char *web_archive_name(const char *vmid, gint64 when, bool zstd)
{
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local(when);
    g_autofree char *stamp = g_date_time_format(dt, "%Y_%m_%d-%H_%M_%S");

    return g_strdup_printf("vzdump-qemu-%s-%s.vma%s", vmid, stamp, zstd ? ".zst" : "");
}
