/* One request of `lamina batch` while it holds a sequence of the engine:
 * its prompt tokens and how many have gone through, its sampler, the text
 * it has generated, and the rules that end it (an end-of-generation token,
 * a stop string, max_tokens, a full context).  The scheduler
 * (batch_scheduler.h) decides which of its tokens go into which pass. */
#ifndef LM_BATCH_SEQ_H
#define LM_BATCH_SEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch_request.h"
#include "model.h"
#include "sampler.h"

typedef struct {
    bool busy;
    lm_batch_request req;  /* the request (owned) */
    uint64_t admitted;     /* order of admission: earlier prompts go first */
    int32_t *prompt;       /* its tokens (owned) */
    int n_prompt;
    int n_fed;             /* prompt tokens already in the cache */
    int32_t next;          /* once the prompt is in: the token the next pass feeds */
    int max_tokens;        /* -1: until the end or a full context */
    int n_generated;       /* tokens sampled and kept (an end-of-generation one is not) */
    lm_sampler *sampler;
    char *text;            /* the completion so far (echo: after the prompt) */
    size_t len, cap, echo_len;
    int *counts;           /* per vocabulary entry, for frequency/presence
                              penalties (NULL without them) */
    int32_t *seen;         /* the entries with counts > 0, n_seen of them */
    int n_seen;
    const char *finish;    /* NULL while it runs, then "stop" or "length" */
} lm_batch_seq;

/* Takes over req and prompt (n tokens, all in the vocabulary, fewer than
 * the context): a sampler with the request's parameters, the prompt's
 * tokens given to it, the echoed prompt text.  With max_tokens 0 it is
 * finished at once.  0, or -1 with lm_set_error (q is then free and req
 * and prompt freed). */
int lm_batch_seq_start(lm_batch_seq *q, const lm_model *m, lm_batch_request *req,
                       int32_t *prompt, int n, int max_tokens, uint64_t admitted);

/* The logits of the sequence's last row (modified): samples a token and
 * applies the ending rules.  cache_full: the token sampled could not be
 * fed (its position would be past the context).  0 or -1. */
int lm_batch_seq_sample(lm_batch_seq *q, const lm_model *m, float *logits, bool cache_full);

/* What follows the choice of token id (sampled, or taken by speculative
 * decoding): the ending rules, the sampler's history, the text. */
int lm_batch_seq_take(lm_batch_seq *q, const lm_model *m, int32_t id, bool cache_full);

/* The completion text, prompt included with echo. */
static inline const char *lm_batch_seq_text(const lm_batch_seq *q, size_t *len)
{
    *len = q->len;
    return q->text ? q->text : "";
}

/* Frees everything and marks q free. */
void lm_batch_seq_end(lm_batch_seq *q);

#endif
