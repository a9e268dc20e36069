/* Turning logits into the next token: greedy, or temperature sampling with
 * top-k, top-p, min-p and a repetition penalty, from a seeded PRNG so that
 * --seed gives reproducible runs.  The order of the steps is llama.cpp's:
 * penalties, top-k, top-p, min-p, temperature, draw. */
#ifndef LM_SAMPLER_H
#define LM_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    float temp;           /* <= 0: greedy (argmax) */
    int32_t top_k;        /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int32_t repeat_last_n;/* how many recent tokens the penalty looks at */
    uint64_t seed;
} lm_sampler_params;

lm_sampler_params lm_sampler_default_params(void);

typedef struct lm_sampler lm_sampler;

lm_sampler *lm_sampler_new(const lm_sampler_params *p, int32_t n_vocab);
void lm_sampler_free(lm_sampler *s);
/* Picks a token from n_vocab logits (which it may modify). */
int32_t lm_sampler_sample(lm_sampler *s, float *logits);
/* Records a token as generated or as part of the prompt (for the penalty). */
void lm_sampler_accept(lm_sampler *s, int32_t token);

/* For speculative decoding, which needs the distribution rather than a
 * draw.  The candidates lm_sampler_sample would draw from (after the
 * penalty, top-k, top-p, min-p) and their probabilities at the temperature,
 * into ids and probs (n_vocab entries each); returns how many (at least 1
 * for a vocabulary with a finite logit).  With temp <= 0 it is the argmax
 * alone, probability 1.  logits are modified. */
int32_t lm_sampler_dist(lm_sampler *s, float *logits, int32_t *ids, float *probs);
/* Whether it picks the argmax (temp <= 0). */
bool lm_sampler_is_greedy(const lm_sampler *s);
/* A uniform number in [0, 1) from the sampler's generator. */
double lm_sampler_uniform(lm_sampler *s);
/* dst's penalty window becomes src's (same repeat_last_n). */
void lm_sampler_copy_history(lm_sampler *dst, const lm_sampler *src);

#endif
