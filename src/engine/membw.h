/* Measured RAM read bandwidth: the limit decoding is chased against. */
#ifndef LM_MEMBW_H
#define LM_MEMBW_H

/* Bytes per second that the OpenMP threads read from a buffer much larger
 * than the caches (best of a few passes); 0 if it could not be measured. */
double lm_ram_read_bandwidth(void);

#endif
