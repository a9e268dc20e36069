/* Quick measurements the planner predicts with: RAM read bandwidth, the
 * uncached read bandwidth of the model file's disk, and the CPU's speed on
 * each weight type (bytes of weights per second through lm_cpu_matmul, one
 * token and a batch).  Each takes well under a second; the results are
 * cached per machine in $XDG_CACHE_HOME/lamina/probes (keyed by the thread
 * count and the file's device) so the next start reuses them; --reprobe
 * measures again. */
#ifndef LM_PROBE_H
#define LM_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "quant.h"

typedef struct {
    double ram_bw;                       /* bytes/s */
    double disk_bw;                      /* bytes/s, uncached */
    double cpu_decode_bw[LM_TYPE_COUNT]; /* weight bytes/s, one token; 0: not measured */
    double cpu_prompt_bw[LM_TYPE_COUNT]; /* weight bytes/s per token of a 32-token batch */
    bool from_cache;
} lm_probes;

/* Measures (or loads from the cache) what the model needs. */
int lm_probe(const lm_model *m, bool reprobe, lm_probes *p);

#endif
