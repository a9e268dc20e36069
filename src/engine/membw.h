/* Measured RAM read bandwidth: the limit decoding is chased against. */
#ifndef LM_MEMBW_H
#define LM_MEMBW_H

#include <stdbool.h>

/* Bytes per second that the OpenMP threads read from a buffer much larger
 * than the caches (best of a few passes); 0 if it could not be measured.
 * agreed (may be NULL): whether the passes agreed (timing.h's repeats). */
double lm_ram_read_bandwidth(bool *agreed);

#endif
