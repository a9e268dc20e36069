/* lamina quantize --auto: the best type whose model fits the RAM budget.
 *
 * The seed article's "automatically detects available CPU RAM and chooses
 * the appropriate quantization level", made explicit: the candidates, best
 * first, are F16, Q8_0, Q6_K, Q5_K_M and Q4_K_M (Q5_K and Q4_K in
 * llama.cpp's mixes) and Q4_0.  A candidate fits when its weights (exactly
 * what lamina quantize would write, quant_rules.h) plus the KV cache for
 * n_ctx positions, the activation buffers and the program's own overhead
 * (plan.h) fit the budget.  A candidate larger than the input is skipped:
 * it would add bytes, not precision.  When none fits, the smallest is
 * chosen: layers then stream from disk, and the fewest bytes per token
 * stream fastest. */
#ifndef LM_QUANT_AUTO_H
#define LM_QUANT_AUTO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "quant_rules.h"

#define LM_QUANT_AUTO_CANDIDATES 6

typedef struct {
    lm_quant_target target;
    uint64_t weights;   /* tensor bytes at this target */
    uint64_t need;      /* weights + KV + buffers + overhead */
    bool larger_than_input;
} lm_quant_auto_candidate;

typedef struct {
    lm_quant_auto_candidate cand[LM_QUANT_AUTO_CANDIDATES];
    int chosen;          /* index into cand */
    bool fits;           /* false: none fits; chosen is the smallest */
    uint64_t budget, kv_bytes, buffer_bytes; /* buffer_bytes: activations + overhead */
    int n_ctx;
} lm_quant_auto;

/* ram_budget 0: the default (MemAvailable less a margin, plan.h); n_ctx 0:
 * the context lamina run uses by default; pure: sizes as --pure writes
 * them.  0, or -1 with lm_set_error. */
int lm_quant_auto_choose(const char *in, uint64_t ram_budget, int n_ctx, int n_batch, bool pure,
                         lm_quant_auto *out);

/* One line per candidate and the choice, on f. */
void lm_quant_auto_print(const lm_quant_auto *a, FILE *f);

#endif
