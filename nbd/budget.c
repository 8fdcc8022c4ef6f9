/*
 * nbd/budget.c — the server-wide byte budget for request payloads and reply buffers.
 *
 * Every READ and WRITE takes its length from the budget before its buffer exists (a
 * WRITE before its payload is read, a READ before it is queued for a worker) and gives
 * it back when the buffer is freed (a WRITE after it executed, a READ after its reply
 * was sent, or dropped because the client is gone). A connection whose next request
 * does not fit stops reading requests; it goes on sending the replies it has, which is
 * what frees budget, so it never waits for budget it holds itself.
 *
 * The rules (nbd_budget_admit, pure):
 *   - each connection has a reserve of NBD_CONN_RESERVE bytes of its own: requests that
 *     fit in it never wait for other connections;
 *   - beyond its reserve a connection draws from the shared budget, at most
 *     NbdBudget.conn_cap bytes (an eighth of the budget, but at least one maximal
 *     request), so one connection cannot hold the whole budget;
 *   - a request bigger than those limits still runs alone: on a connection that holds
 *     nothing of the shared budget it may exceed conn_cap, and when nobody holds any of
 *     it, it may exceed the budget.
 * So the buffers of the whole server stay below total + NBD_CONN_RESERVE per connection
 * (+ one request above total, in the "alone" case). A client that never reads its replies
 * holds at most NBD_CONN_RESERVE + conn_cap and stalls only itself.
 *
 * Waiting: a connection that is refused registers itself; every release wakes all
 * registered connections (their eventfd), which try again. Any thread.
 */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "nbd/internal.h"

static size_t shared_part(size_t used)
{
    return used > NBD_CONN_RESERVE ? used - NBD_CONN_RESERVE : 0;
}

bool nbd_budget_admit(size_t total, size_t conn_cap, size_t shared_used, size_t conn_used,
                      size_t len)
{
    size_t before = shared_part(conn_used);
    size_t after = shared_part(conn_used + len);
    size_t more = after - before;

    if (more == 0) {
        return true;                                   /* within the reserve */
    }
    if (after > conn_cap && before > 0) {
        return false;                                  /* this connection's share */
    }
    if (shared_used + more > total && shared_used > 0) {
        return false;                                  /* the server's budget */
    }
    return true;
}

void nbd_budget_init(NbdBudget *b, size_t total)
{
    g_mutex_init(&b->lock);
    b->total = total;
    b->conn_cap = MAX(total / 8, (size_t)NBD_MAX_PAYLOAD);
    b->shared_used = 0;
    b->waiters = NULL;
}

void nbd_budget_clear(NbdBudget *b)
{
    assert(b->shared_used == 0 && b->waiters == NULL);
    g_mutex_clear(&b->lock);
}

static void wake(NbdConn *c)
{
    uint64_t one = 1;

    while (write(c->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

bool nbd_budget_take(NbdBudget *b, NbdConn *c, size_t len)
{
    bool ok;

    g_mutex_lock(&b->lock);
    ok = nbd_budget_admit(b->total, b->conn_cap, b->shared_used, c->budget_used, len);
    if (ok) {
        b->shared_used += shared_part(c->budget_used + len) - shared_part(c->budget_used);
        c->budget_used += len;
        if (c->budget_waiting) {
            b->waiters = g_list_remove(b->waiters, c);
            c->budget_waiting = false;
        }
    } else if (!c->budget_waiting) {
        b->waiters = g_list_prepend(b->waiters, c);
        c->budget_waiting = true;
    }
    g_mutex_unlock(&b->lock);
    return ok;
}

void nbd_budget_put(NbdBudget *b, NbdConn *c, size_t len)
{
    if (len == 0) {
        return;
    }
    g_mutex_lock(&b->lock);
    assert(c->budget_used >= len);
    b->shared_used -= shared_part(c->budget_used) - shared_part(c->budget_used - len);
    c->budget_used -= len;
    /* wake everyone waiting, under the lock: a registered connection is alive */
    for (GList *l = b->waiters; l != NULL; l = l->next) {
        NbdConn *w = l->data;
        w->budget_waiting = false;
        wake(w);
    }
    g_list_free(b->waiters);
    b->waiters = NULL;
    g_mutex_unlock(&b->lock);
}

void nbd_budget_forget(NbdBudget *b, NbdConn *c)
{
    g_mutex_lock(&b->lock);
    if (c->budget_waiting) {
        b->waiters = g_list_remove(b->waiters, c);
        c->budget_waiting = false;
    }
    assert(c->budget_used == 0);
    g_mutex_unlock(&b->lock);
}
