/* Wall-clock time and peak memory, for statistics and the streamer. */
#ifndef LM_TIMING_H
#define LM_TIMING_H

#include <stdbool.h>
#include <stdint.h>

/* Seconds on a monotonic clock. */
double lm_now_seconds(void);
/* Peak resident set size of this process in bytes. */
uint64_t lm_peak_rss_bytes(void);

/* Repeats of one measurement, each a cost (seconds per unit of work: lower
 * is better).  The best is what the machine can do; another repeat near it
 * says the best was no accident.  When none comes near, the repeats
 * disagree: something else held the machine for a while, and the figure
 * must not be kept as settled. */
typedef struct {
    double best, next; /* the lowest cost and the one after it */
    int n;
} lm_repeats;

void lm_repeats_add(lm_repeats *r, double cost);
/* Whether another repeat came within the factor `within` (1.25: 25%) of the
 * best; true with fewer than two repeats. */
bool lm_repeats_agree(const lm_repeats *r, double within);

#endif
