/* Speculative decoding: several tokens per pass over the target's weights.
 *
 * A cheap proposer (a draft model with the same vocabulary, kept resident,
 * or prompt lookup: n-grams already in the prompt and the output) guesses
 * the next k tokens; the target checks all of them in one pass
 * (lm_session_verify, whose weight traffic is one token's), and every guess
 * it agrees with is a pass saved.
 *
 * Output: with a greedy sampler, exactly plain decoding's tokens (the
 * verification rows are computed as one-token passes are, bit for bit); with
 * sampling, the standard rejection rule (accept a guess d with probability
 * min(1, p(d)/q(d)), else draw from max(0, p - q) normalised), so that the
 * tokens follow the target's distribution.
 *
 * k adapts: from the measured acceptance and the measured cost of a draft
 * step and of a target pass of n rows, each round proposes the k that
 * maximises expected tokens per second, and none (a plain pass) when no k
 * beats plain decoding, so speculation does not make a run slower. */
#ifndef LM_SPECULATIVE_H
#define LM_SPECULATIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "sampler.h"
#include "session.h"

#define LM_SPEC_MAX_DRAFT 32

typedef struct {
    int draft_max;     /* most tokens proposed a round (llama.cpp's --draft-max) */
    int draft_min;     /* fewer proposed than this: a plain pass instead */
    float draft_p_min; /* a draft model stops proposing below this confidence */
    bool p_min_auto;   /* draft_p_min is where the threshold starts: it falls
                          while proposals cut short by it are all accepted,
                          and rises after a rejection */
    bool lookup;       /* propose from n-grams of the history, not a draft model */
    bool fixed;        /* always propose draft_max (no adaptation): for tests */
} lm_spec_params;

lm_spec_params lm_spec_default_params(void);

typedef struct {
    uint64_t rounds;        /* target passes after the prompt */
    uint64_t spec_rounds;   /* of them, passes that verified a proposal */
    uint64_t drafted, accepted;
    uint64_t tokens;        /* tokens produced by the rounds */
    double draft_s, target_s;
} lm_spec_stats;

typedef struct lm_spec lm_spec;

/* Over target (sequence 0) and, unless p->lookup, draft (sequence 0; same
 * vocabulary, checked here).  sp: the sampling of the run; the draft
 * samples with the same parameters.  NULL with lm_set_error. */
lm_spec *lm_spec_new(lm_session *target, lm_session *draft, const lm_spec_params *p,
                     const lm_sampler_params *sp);
void lm_spec_free(lm_spec *x);

/* Whether the two models' vocabularies are the same (ids, texts and the
 * special tokens); -1 with lm_set_error saying how they differ. */
int lm_spec_check_vocab(const lm_model *target, const lm_model *draft);

/* Evaluates the prompt (in both models) and draws the first token into
 * *first.  What the caches already hold of the prompt from an earlier call
 * (a conversation's past turns) is kept, the rest evaluated.  0 or -1. */
int lm_spec_prompt(lm_spec *x, const int32_t *prompt, int n_prompt, int32_t *first);

/* One round: up to max_out (>= 1) new tokens into out, the last of which is
 * the target's own (a correction or a bonus); returns how many, 0 when the
 * context is full, -1 on error.  Tokens after an end-of-generation one are
 * the caller's to drop. */
int lm_spec_next(lm_spec *x, int32_t *out, int max_out);

const lm_spec_stats *lm_spec_get_stats(const lm_spec *x);

/* The target's verdict on a checking pass: logits holds n_prop + 1 rows
 * (after the pending token, then after each proposal; modified), props the
 * proposals, q_* the proposer's law at each (q_len[i] entries of n_vocab
 * strides; NULL: each proposal was certain, as lookup's are).  Accepted
 * proposals, then the target's own token, go to out (n_prop + 1 room);
 * returns how many.  target draws (and is not changed otherwise: the
 * caller accepts the tokens it keeps); scratch (the same parameters) and
 * ids/probs (n_vocab each) are working space. */
int lm_spec_judge(lm_sampler *target, lm_sampler *scratch, float *logits, int32_t n_vocab,
                  const int32_t *props, int n_prop, const int32_t *q_ids, const float *q_probs,
                  const int *q_len, int32_t *ids, float *probs, int32_t *out);

/* Prompt lookup: up to max tokens that followed the most recent earlier
 * occurrence of the longest suffix of hist (n-grams of ngram_max down to
 * ngram_min tokens) into out; returns how many (0: no match). */
int lm_lookup_propose(const int32_t *hist, int n_hist, int ngram_min, int ngram_max, int max,
                      int32_t *out);

#endif
