#define _GNU_SOURCE
#include "timing.h"

#include <sys/resource.h>
#include <time.h>

double lm_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t lm_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

void lm_repeats_add(lm_repeats *r, double cost)
{
    if (r->n == 0 || cost < r->best) {
        r->next = r->best;
        r->best = cost;
    } else if (r->n == 1 || cost < r->next) {
        r->next = cost;
    }
    r->n++;
}

bool lm_repeats_agree(const lm_repeats *r, double within)
{
    return r->n < 2 || r->next <= r->best * within;
}
