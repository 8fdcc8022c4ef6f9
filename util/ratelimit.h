/*
 * util/ratelimit.h — a rate limiter as arithmetic: it says when bytes may go, the
 * caller sleeps (with its own lock, condition and cancellation) and the caller's clock
 * (monotonic microseconds, g_get_monotonic_time()) drives it, so tests need no sleeps.
 *
 * Model: a schedule. `next` is the instant by which everything reserved so far is paid
 * for at bytes_per_sec. ratelimit_reserve() of n bytes at time now first pulls `next`
 * up to now (idle time is not saved up: no burst after a pause), returns that as the
 * moment the n bytes may start, and moves `next` on by n / bytes_per_sec. So the first
 * request after a pause goes at once, and every later one waits until the ones before
 * it are paid for. Fractions of a microsecond are carried, not lost, so small requests
 * at high rates keep the rate too.
 *
 * Two ways to use it:
 *   - throttle before: t = ratelimit_reserve(rl, n, now); sleep until t; transfer n
 *     (backup.c's background copy: the wait comes before claiming clusters).
 *   - pace after: transfer n; ratelimit_reserve(rl, n, now); sleep until
 *     ratelimit_next(rl) (cli/extract.c: a restore of N bytes at R takes N / R).
 * A limit of 0 means none: reserve returns now and nothing accumulates.
 *
 * Not thread-safe: callers lock (backup.c: job->lock; cli/extract.c: one thread).
 *
 * Who uses what: backup.c (speed), cli/extract.c (throttling.bps of a restore map).
 */
#ifndef VMA_UTIL_RATELIMIT_H
#define VMA_UTIL_RATELIMIT_H

#include <stdint.h>

typedef struct RateLimit {
    uint64_t bytes_per_sec;   /* 0: unlimited */
    int64_t next_us;          /* everything reserved is paid for at this instant */
    uint64_t carry;           /* remainder of bytes * 10^6 / bytes_per_sec, < bytes_per_sec */
} RateLimit;

void ratelimit_init(RateLimit *rl, uint64_t bytes_per_sec);
/* Change the limit; what was reserved stays reserved. */
void ratelimit_set_speed(RateLimit *rl, uint64_t bytes_per_sec);
/* Reserve bytes at now_us; returns when they may start (<= now_us: at once). */
int64_t ratelimit_reserve(RateLimit *rl, uint64_t bytes, int64_t now_us);
/* When everything reserved so far is paid for. */
int64_t ratelimit_next(const RateLimit *rl);

#endif
