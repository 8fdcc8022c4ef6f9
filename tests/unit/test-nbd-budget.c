/*
 * test-nbd-budget.c — the NBD server's byte budget (nbd/budget.c): the admission rules
 * as a table, and take/put with the accounting and the wake-up of waiting connections.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "nbd/internal.h"

#define MiB (1024u * 1024)
#define R NBD_CONN_RESERVE

static void test_admit_table(void **state)
{
    static const struct {
        size_t total, cap, shared, conn, len;
        bool ok;
        const char *why;
    } table[] = {
        { 256 * MiB, 32 * MiB, 0, 0, 4096, true, "small, idle server" },
        { 256 * MiB, 32 * MiB, 256 * MiB, 0, R, true, "within the reserve, budget full" },
        { 256 * MiB, 32 * MiB, 256 * MiB, R / 2, R / 2, true, "fills the reserve exactly" },
        { 256 * MiB, 32 * MiB, 256 * MiB, R / 2, R, false, "beyond the reserve, budget full" },
        { 256 * MiB, 32 * MiB, 0, 0, 32 * MiB, true, "a maximal request" },
        { 256 * MiB, 32 * MiB, 30 * MiB, 32 * MiB, 32 * MiB, false, "the connection's cap" },
        { 256 * MiB, 32 * MiB, 30 * MiB, 32 * MiB, 4096, true, "the cap counts beyond the reserve" },
        { 256 * MiB, 32 * MiB, 32 * MiB, 32 * MiB + R, 4096, false, "cap reached: small waits" },
        { 256 * MiB, 32 * MiB, 200 * MiB, 0, 32 * MiB, true, "fits the rest of the budget" },
        { 256 * MiB, 32 * MiB, 240 * MiB, 0, 32 * MiB, false, "does not fit the budget" },
        { 256 * MiB, 32 * MiB, 240 * MiB, 0, 32 * MiB - 14 * MiB, true, "fits exactly" },
        /* bigger than the budget or the cap: alone */
        { 8 * MiB, 4 * MiB, 0, 0, 32 * MiB, true, "bigger than the budget, server idle" },
        { 8 * MiB, 4 * MiB, 1, 0, 32 * MiB, false, "bigger than the budget, not alone" },
        { 64 * MiB, 4 * MiB, 10 * MiB, 0, 16 * MiB, true, "over the cap, conn holds nothing" },
        { 64 * MiB, 4 * MiB, 10 * MiB, R + 1, 16 * MiB, false, "over the cap, conn holds some" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
        bool ok = nbd_budget_admit(table[i].total, table[i].cap, table[i].shared,
                                   table[i].conn, table[i].len);
        if (ok != table[i].ok) {
            fail_msg("case %zu (%s): admit %d, expected %d", i, table[i].why, ok, table[i].ok);
        }
    }
}

static NbdConn *conn_new(NbdBudget *b)
{
    NbdConn *c = g_new0(NbdConn, 1);
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(c->wake_fd >= 0);
    c->budget = b;
    return c;
}

static void conn_free(NbdConn *c)
{
    nbd_budget_forget(c->budget, c);
    close(c->wake_fd);
    g_free(c);
}

static bool woken(NbdConn *c)
{
    uint64_t v = 0;
    return read(c->wake_fd, &v, sizeof(v)) == sizeof(v) && v > 0;
}

static void test_take_put(void **state)
{
    NbdBudget b;
    nbd_budget_init(&b, 64 * MiB);
    assert_int_equal(b.conn_cap, 32 * MiB);   /* an eighth, but at least one request */

    NbdConn *hostile = conn_new(&b), *good = conn_new(&b), *third = conn_new(&b);

    /* the hostile connection takes what it may, and no more */
    assert_true(nbd_budget_take(&b, hostile, 32 * MiB));
    assert_false(nbd_budget_take(&b, hostile, 32 * MiB));
    assert_int_equal(b.shared_used, 32 * MiB - R);
    /* another one takes the rest of the shared budget */
    assert_true(nbd_budget_take(&b, third, 32 * MiB));
    assert_int_equal(b.shared_used, 64 * MiB - 2 * R);
    /* a well-behaved client's small requests still go, out of its reserve */
    assert_true(nbd_budget_take(&b, good, MiB));
    assert_true(nbd_budget_take(&b, good, MiB));
    /* beyond its reserve it waits, and is woken by a release */
    assert_false(nbd_budget_take(&b, good, 8 * MiB));
    assert_false(woken(good));
    nbd_budget_put(&b, good, MiB);
    assert_true(woken(good));
    assert_true(woken(hostile));           /* every waiter retries */
    assert_false(woken(third));            /* it never waited */
    nbd_budget_put(&b, third, 32 * MiB);
    assert_true(nbd_budget_take(&b, good, 8 * MiB));
    assert_int_equal(good->budget_used, 9 * MiB);

    nbd_budget_put(&b, good, 9 * MiB);
    nbd_budget_put(&b, hostile, 32 * MiB);
    assert_int_equal(b.shared_used, 0);
    conn_free(hostile);
    conn_free(good);
    conn_free(third);
    nbd_budget_clear(&b);
}

/* A request bigger than the whole budget runs once nobody holds any of it. */
static void test_bigger_than_budget(void **state)
{
    NbdBudget b;
    nbd_budget_init(&b, NBD_MIN_BUFFER_BUDGET);
    NbdConn *a = conn_new(&b), *c = conn_new(&b);

    assert_true(nbd_budget_take(&b, a, R + 4096));     /* holds a little shared */
    assert_false(nbd_budget_take(&b, c, NBD_MAX_PAYLOAD));
    nbd_budget_put(&b, a, R + 4096);
    assert_true(woken(c));
    assert_true(nbd_budget_take(&b, c, NBD_MAX_PAYLOAD));
    assert_false(nbd_budget_take(&b, a, R + 4096));     /* now the big one is alone */
    assert_true(nbd_budget_take(&b, a, R));             /* but the reserve is a's own */
    nbd_budget_put(&b, c, NBD_MAX_PAYLOAD);
    nbd_budget_put(&b, a, R);
    conn_free(a);
    conn_free(c);
    nbd_budget_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit_table),
        cmocka_unit_test(test_take_put),
        cmocka_unit_test(test_bigger_than_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
