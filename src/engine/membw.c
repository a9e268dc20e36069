#include "membw.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "timing.h"

/* 256 MiB: far past any last-level cache of the machines we run on, small
 * enough to allocate anywhere lamina runs. */
#define PROBE_BYTES ((size_t)256 << 20)
#define PROBE_PASSES 4

/* Sums the words so the compiler cannot drop the loads; four independent
 * accumulators keep the loads in flight. */
static uint64_t read_range(const uint64_t *p, size_t n)
{
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        d += p[i + 3];
    }
    return a ^ b ^ c ^ d;
}

double lm_ram_read_bandwidth(bool *agreed)
{
    const size_t n = PROBE_BYTES / sizeof(uint64_t);
    uint64_t *buf = malloc(PROBE_BYTES);
    if (!buf)
        return 0.0;
    memset(buf, 1, PROBE_BYTES); /* touch every page before timing */
    lm_repeats rep = {0};
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < PROBE_PASSES; pass++) {
        uint64_t acc = 0;
        const double t0 = lm_now_seconds();
#pragma omp parallel reduction(^ : acc)
        {
            const size_t per = n / (size_t)omp_get_num_threads();
            const size_t start = per * (size_t)omp_get_thread_num();
            acc ^= read_range(buf + start, per);
        }
        const double dt = lm_now_seconds() - t0;
        sink ^= acc;
        if (dt > 0)
            lm_repeats_add(&rep, dt);
    }
    (void)sink;
    free(buf);
    if (agreed)
        *agreed = lm_repeats_agree(&rep, LM_PROBE_AGREE);
    return rep.n > 0 ? PROBE_BYTES / rep.best : 0.0;
}
