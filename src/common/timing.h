/* Wall-clock time and peak memory, for statistics and the streamer. */
#ifndef LM_TIMING_H
#define LM_TIMING_H

#include <stdint.h>

/* Seconds on a monotonic clock. */
double lm_now_seconds(void);
/* Peak resident set size of this process in bytes. */
uint64_t lm_peak_rss_bytes(void);

#endif
