/*
 * util/ratelimit.c — the schedule of util/ratelimit.h.
 */
#include "util/ratelimit.h"

#define USEC_PER_SEC UINT64_C(1000000)

void ratelimit_init(RateLimit *rl, uint64_t bytes_per_sec)
{
    rl->bytes_per_sec = bytes_per_sec;
    rl->next_us = 0;
    rl->carry = 0;
}

void ratelimit_set_speed(RateLimit *rl, uint64_t bytes_per_sec)
{
    rl->bytes_per_sec = bytes_per_sec;
    rl->carry = 0;
}

int64_t ratelimit_reserve(RateLimit *rl, uint64_t bytes, int64_t now_us)
{
    if (rl->bytes_per_sec == 0 || bytes == 0) {
        return now_us;
    }
    if (rl->next_us < now_us) {
        rl->next_us = now_us;
        rl->carry = 0;
    }
    int64_t start = rl->next_us;
    /* 128 bits: bytes * 10^6 overflows 64 bits from 18 TB on */
    unsigned __int128 t = (unsigned __int128)bytes * USEC_PER_SEC + rl->carry;
    unsigned __int128 us = t / rl->bytes_per_sec;
    rl->carry = (uint64_t)(t % rl->bytes_per_sec);
    if (us > (unsigned __int128)(INT64_MAX - rl->next_us)) {
        rl->next_us = INT64_MAX;
    } else {
        rl->next_us += (int64_t)us;
    }
    return start;
}

int64_t ratelimit_next(const RateLimit *rl)
{
    return rl->next_us;
}
