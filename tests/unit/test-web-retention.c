/*
 * test-web-retention.c — vma-web's pure pieces: the names a request may carry
 * (web/names.c) and Proxmox's prune selection (web/retention.c), as tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "web/web.h"

static void test_vmid(void **state)
{
    const char *good[] = { "1", "100", "999999999" };
    const char *bad[] = { "", "0", "0100", "1000000000", "10a", "-1", "..", "1/2", " 1" };

    for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
        assert_true(web_vmid_valid(good[i]));
    }
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        assert_false(web_vmid_valid(bad[i]));
    }
}

static void test_archive_names(void **state)
{
    gint64 when;
    bool zstd;

    assert_true(web_archive_name_parse("vzdump-qemu-100-2024_02_29-23_59_59.vma", "100", &when,
                                       &zstd));
    assert_false(zstd);
    assert_int_equal(when, 1709251199); /* TZ=UTC */
    assert_true(web_archive_name_parse("vzdump-qemu-100-2024_01_01-00_00_00.vma.zst", "100",
                                       NULL, &zstd));
    assert_true(zstd);
    const char *bad[] = {
        "vzdump-qemu-100-2023_02_29-00_00_00.vma", /* no 29 February */
        "vzdump-qemu-100-2024_13_01-00_00_00.vma", "vzdump-qemu-100-2024_01_01-24_00_00.vma",
        "vzdump-qemu-101-2024_01_01-00_00_00.vma", "vzdump-qemu-10-2024_01_01-00_00_00.vma",
        "vzdump-qemu-100-2024_01_01-00_00_00.vma.gz", "vzdump-qemu-100-2024_01_01-00_00_00.vmaX",
        "vzdump-qemu-100-2024_01_01-00_00_00.vma/..", "../vzdump-qemu-100-2024_01_01-00_00_00.vma",
        "vzdump-qemu-100-2024-01-01-00_00_00.vma", "vzdump-lxc-100-2024_01_01-00_00_00.vma",
        "vzdump-qemu-100-2024_01_01-00_00_0.vma", "", "vzdump-qemu-100-",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        assert_false(web_archive_name_parse(bad[i], "100", NULL, NULL));
    }
    g_autofree char *n = web_archive_name("100", 1709251199, true);
    assert_string_equal(n, "vzdump-qemu-100-2024_02_29-23_59_59.vma.zst");
}

static gint64 at(int y, int mo, int d, int h)
{
    g_autoptr(GDateTime) dt = g_date_time_new_utc(y, mo, d, h, 0, 0);
    return g_date_time_to_unix(dt);
}

/* marks as a string: one letter per item, l h d w m y = the option, '-' removed,
 * 'p' protected, 'a' keep-all */
static char *marks(WebPruneItem *it, size_t n)
{
    char *s = g_malloc0(n + 1);

    for (size_t i = 0; i < n; i++) {
        s[i] = it[i].mark == WEB_KEEP_N ? '-' : it[i].mark == -1 ? 'p' : it[i].mark == -2 ? 'a'
                                                                     : "lhdwmy"[it[i].mark];
    }
    return s;
}

static void test_prune(void **state)
{
    /* A..N newest first: two on 10 January 2024, one a day back to 1 January (ISO weeks
     * 2 and 1), then 20 December 2023 (week 51), 5 December, 15 November */
    const gint64 t[14] = { at(2024, 1, 10, 12), at(2024, 1, 10, 10), at(2024, 1, 9, 10),
                           at(2024, 1, 8, 10),  at(2024, 1, 7, 10),  at(2024, 1, 6, 10),
                           at(2024, 1, 5, 10),  at(2024, 1, 4, 10),  at(2024, 1, 3, 10),
                           at(2024, 1, 2, 10),  at(2024, 1, 1, 10),  at(2023, 12, 20, 10),
                           at(2023, 12, 5, 10), at(2023, 11, 15, 10) };
    static const struct {
        int keep[WEB_KEEP_N]; /* last hourly daily weekly monthly yearly */
        int protect;          /* index or -1 */
        const char *want;     /* A..N */
    } cases[] = {
        { { 0 }, -1, "aaaaaaaaaaaaaa" },
        { { 2, 0, 3, 1, 2, 0 }, -1, "llddd------w-m" }, /* December covered by weekly */
        { { 1 }, -1, "l-------------" },
        { { 0, 2 }, -1, "hh------------" },             /* 12:00 and 10:00 */
        { { 0, 0, 3 }, -1, "d-dd----------" },          /* the newest of each day */
        { { 0, 0, 0, 2 }, -1, "w---w---------" },       /* Monday-to-Sunday weeks */
        { { 0, 0, 0, 0, 2 }, -1, "m----------m--" },
        { { 0, 0, 0, 0, 0, 5 }, -1, "y----------y--" },
        { { 3, 0, 2 }, -1, "llldd---------" },          /* daily skips the covered days */
        { { 2 }, 1, "lpl-----------" },                 /* protected counts for nothing */
    };

    for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
        WebPruneItem it[14] = { 0 };
        WebPrunePolicy p = { 0 };
        for (size_t i = 0; i < 14; i++) {
            /* shuffled input order: the selection sorts by time itself */
            size_t j = (i * 5) % 14;
            it[j].when = t[i];
            it[j].protect = (int)i == cases[c].protect;
        }
        memcpy(p.keep, cases[c].keep, sizeof(p.keep));
        web_prune_select(it, 14, &p);
        WebPruneItem sorted[14];
        for (size_t i = 0; i < 14; i++) {
            sorted[i] = it[(i * 5) % 14];
        }
        g_autofree char *got = marks(sorted, 14);
        if (strcmp(got, cases[c].want) != 0) {
            fail_msg("case %zu: got %s, want %s", c, got, cases[c].want);
        }
    }
}

static void test_policy_json(void **state)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    WebPrunePolicy p;
    g_autoptr(GError) err = NULL;

    assert_true(json_parser_load_from_data(parser, "{\"keep-last\": 3, \"keep-weekly\": null}",
                                           -1, NULL));
    assert_true(web_prune_policy_from_json(json_node_get_object(json_parser_get_root(parser)),
                                           &p, &err));
    assert_int_equal(p.keep[WEB_KEEP_LAST], 3);
    assert_int_equal(p.keep[WEB_KEEP_WEEKLY], 0);
    const char *bad[] = { "{\"keep-all\": 1}", "{\"keep-last\": -1}", "{\"keep-last\": 1.5}",
                          "{\"keep-last\": \"2\"}", "{\"keep-last\": 100001}" };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) e = NULL;
        assert_true(json_parser_load_from_data(parser, bad[i], -1, NULL));
        assert_false(web_prune_policy_from_json(
            json_node_get_object(json_parser_get_root(parser)), &p, &e));
        assert_true(g_error_matches(e, WEB_ERROR, WEB_ERROR_INVALID));
    }
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmid),
        cmocka_unit_test(test_archive_names),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_policy_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
