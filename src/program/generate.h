/* The decode loop shared by `run` and `chat`: evaluate the prompt, then
 * sample, print and feed back one token at a time, with the timings the
 * statistics report. */
#ifndef LM_GENERATE_H
#define LM_GENERATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sampler.h"
#include "session.h"

typedef struct {
    int n_prompt;
    int n_decoded;        /* tokens sampled (the first comes from the prompt pass) */
    double prompt_s;      /* prompt pass */
    double decode_s;      /* the passes for tokens after the first */
    double first_token_s; /* from the start to the first token on out */
    /* speculative decoding (lm_generate_spec) */
    bool spec;
    uint64_t spec_rounds, spec_drafted, spec_accepted, spec_tokens;
    double spec_draft_s, spec_target_s;
} lm_gen_stats;

/* Evaluates n_prompt tokens at the session's position, then generates up to
 * n_predict tokens (-1: until end of generation or a full context), writing
 * their text to out as they come.  Returns 0 or -1 with lm_set_error. */
int lm_generate(lm_session *s, lm_sampler *sampler, const int32_t *prompt, int n_prompt,
                int n_predict, FILE *out, lm_gen_stats *st);

/* lm_generate with speculative decoding (speculative.h): the same tokens
 * for a greedy sampler, the same distribution otherwise. */
struct lm_spec;
int lm_generate_spec(struct lm_spec *x, const lm_model *m, const int32_t *prompt, int n_prompt,
                     int n_predict, FILE *out, lm_gen_stats *st);

/* How generated tokens are written: as text, or as space-separated ids
 * (`run --ids`, which the reference tests compare with llama.cpp's). */
void lm_generate_print_ids(bool ids);

/* Decode tokens/s: the tokens after the first (which the prompt pass gave)
 * over the time they took. */
double lm_gen_decode_tokens_per_s(const lm_gen_stats *st);

/* The statistics as lines on f (stderr), and as a JSON object in path. */
void lm_gen_stats_print(const lm_gen_stats *st, FILE *f);
int lm_gen_stats_write_json(const lm_gen_stats *st, const char *path);

#endif
