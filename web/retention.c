/*
 * retention.c — which backups a retention policy keeps: Proxmox's prune selection.
 *
 * The options are applied in a fixed order: keep-last, keep-hourly, keep-daily,
 * keep-weekly, keep-monthly, keep-yearly. Each one walks the backups from the newest to
 * the oldest and puts each into a period (the backup itself for keep-last; the local
 * hour, day, ISO week (Monday to Sunday, ISO week-numbering year), month or year). It
 * keeps the newest backup of each period it has not seen yet until it has kept N, then
 * stops; an older backup of a period it already kept from is removed by it. Periods in
 * which an earlier option already kept a backup are skipped: the option neither keeps
 * nor removes there, so its N counts only periods not covered yet, and a backup it skips
 * is left for the next options. Whatever no option keeps is removed. With no option set
 * at all everything is kept (Proxmox's keep-all). A protected backup is never removed
 * and does not count towards any option.
 */
#include <stdlib.h>
#include <string.h>

#include "web/web.h"

#define WEB_PRUNE_MAX 100000
#define MARK_NONE (-3)
#define MARK_PROTECTED (-1)
#define MARK_KEEP_ALL (-2)

const char *const web_keep_names[WEB_KEEP_N] = {
    "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly",
};

static const char *const period_formats[WEB_KEEP_N] = {
    NULL, "%Y/%m/%d/%H", "%Y/%m/%d", "%G/%V", "%Y/%m", "%Y",
};

typedef struct Sorted {
    WebPruneItem *item;
    size_t index;
} Sorted;

static int newest_first(const void *a, const void *b)
{
    const Sorted *x = a, *y = b;

    if (x->item->when != y->item->when) {
        return x->item->when > y->item->when ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

static char *period_of(const WebPruneItem *it, size_t index, WebKeep k)
{
    if (k == WEB_KEEP_LAST) {
        return g_strdup_printf("#%zu", index);
    }
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local(it->when);
    return dt != NULL ? g_date_time_format(dt, period_formats[k]) : g_strdup("?");
}

static bool is_kept_by_option(int mark)
{
    return mark >= 0 && mark < WEB_KEEP_N;
}

void web_prune_select(WebPruneItem *items, size_t n, const WebPrunePolicy *p)
{
    bool any = false;

    for (int k = 0; k < WEB_KEEP_N; k++) {
        any |= p->keep[k] > 0;
    }
    for (size_t i = 0; i < n; i++) {
        items[i].mark = items[i].protect ? MARK_PROTECTED : any ? MARK_NONE : MARK_KEEP_ALL;
    }
    if (!any) {
        return;
    }
    g_autofree Sorted *s = g_new(Sorted, n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        s[i] = (Sorted){ &items[i], i };
    }
    qsort(s, n, sizeof(*s), newest_first);

    for (int k = 0; k < WEB_KEEP_N; k++) {
        if (p->keep[k] <= 0) {
            continue;
        }
        g_autoptr(GHashTable) covered = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                              g_free, NULL);
        g_autoptr(GHashTable) taken = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                            g_free, NULL);
        for (size_t i = 0; i < n; i++) {
            if (is_kept_by_option(s[i].item->mark)) {
                g_hash_table_add(covered, period_of(s[i].item, s[i].index, k));
            }
        }
        for (size_t i = 0; i < n; i++) {
            WebPruneItem *it = s[i].item;
            if (it->mark != MARK_NONE) {
                continue;
            }
            g_autofree char *period = period_of(it, s[i].index, k);
            if (g_hash_table_contains(covered, period)) {
                continue;
            }
            if (g_hash_table_contains(taken, period)) {
                it->mark = WEB_KEEP_N;
                continue;
            }
            if (g_hash_table_size(taken) >= (guint)p->keep[k]) {
                break;
            }
            g_hash_table_add(taken, g_steal_pointer(&period));
            it->mark = k;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (items[i].mark == MARK_NONE) {
            items[i].mark = WEB_KEEP_N;
        }
    }
}

bool web_prune_policy_from_json(JsonObject *o, WebPrunePolicy *p, GError **errp)
{
    g_autoptr(GList) members = json_object_get_members(o);

    memset(p, 0, sizeof(*p));
    for (GList *l = members; l != NULL; l = l->next) {
        const char *name = l->data;
        int k;
        for (k = 0; k < WEB_KEEP_N; k++) {
            if (strcmp(name, web_keep_names[k]) == 0) {
                break;
            }
        }
        if (k == WEB_KEEP_N) {
            g_set_error(errp, WEB_ERROR, WEB_ERROR_INVALID,
                        "unknown retention option '%s' (keep-last, keep-hourly, keep-daily, "
                        "keep-weekly, keep-monthly, keep-yearly)", name);
            return false;
        }
        JsonNode *v = json_object_get_member(o, name);
        if (JSON_NODE_HOLDS_NULL(v)) {
            continue;
        }
        if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_INT64 ||
            json_node_get_int(v) < 0 || json_node_get_int(v) > WEB_PRUNE_MAX) {
            g_set_error(errp, WEB_ERROR, WEB_ERROR_INVALID,
                        "%s: expected an integer from 0 to %d", name, WEB_PRUNE_MAX);
            return false;
        }
        p->keep[k] = (int)json_node_get_int(v);
    }
    return true;
}

JsonObject *web_prune_policy_to_json(const WebPrunePolicy *p)
{
    JsonObject *o = json_object_new();

    for (int k = 0; k < WEB_KEEP_N; k++) {
        if (p->keep[k] > 0) {
            json_object_set_int_member(o, web_keep_names[k], p->keep[k]);
        }
    }
    return o;
}
