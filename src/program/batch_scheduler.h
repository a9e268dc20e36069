/* Continuous batching for `lamina batch`: every pass over the weights
 * carries one row for each sequence that is generating and prompt runs of
 * sequences still reading their prompts, so that one read of the weights
 * serves them all; a sequence that ends leaves its slot to the next request
 * at once, without waiting for the others.
 *
 * A sequence's output must not depend on what shares its passes.  The
 * engine computes each sequence's run on its own, but the length of a run
 * sets the order of its sums, so a prompt is always cut the same way: runs
 * of exactly min(tokens left, chunk), chunk fixed for the whole batch (-b),
 * and a pass takes whole runs only.  Generated tokens go one per pass.
 * That is also how `lamina run -b CHUNK` feeds the engine, so greedy text
 * is the same as run's, whatever --parallel and whatever else is in the
 * batch. */
#ifndef LM_BATCH_SCHEDULER_H
#define LM_BATCH_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "batch_seq.h"
#include "session.h"
#include "speculative.h"

/* Prompt-lookup speculation of one slot (lamina serve --lookup): its
 * tokens so far, to find n-grams in, and this pass's proposals. */
typedef struct {
    int32_t *hist;         /* prompt and generated tokens (n_ctx room), NULL: unused */
    int n_hist;
    lm_sampler *scratch;   /* the request's sampling, for the verdict */
    int32_t props[LM_SPEC_MAX_DRAFT];
    int n_prop;            /* proposals in this pass */
    int pos;               /* where the pending token went in this pass */
    double acc, rej;       /* decayed counts of accepted and rejected proposals */
    int since_probe;
} lm_slot_lookup;

typedef struct {
    lm_session *s;
    lm_batch_seq *seqs;    /* s->n_seq slots, sequence i in slot i */
    int lookup;            /* 0, or the most proposals per slot a pass (--lookup) */
    lm_slot_lookup *spec;  /* per slot, with lookup */
    bool *single;          /* per pass: the rows computed as one-token passes */
    int32_t *ids;          /* n_vocab: a distribution, for the verdict */
    float *probs;
    uint64_t proposed, accepted; /* all passes */
    int chunk;             /* prompt tokens per run */
    int32_t *tokens;       /* per pass: s->n_batch rows */
    int *row_seq;
    bool *want;
    int *wanted;           /* per pass: the slot of each row that wants logits */
    bool *placed;          /* per pass and slot: has its rows in the pass */
    float *logits;         /* n_seq rows of n_vocab */
    uint64_t prompt_tokens, generated_tokens; /* all passes */
} lm_batch_scheduler;

/* Slots for every sequence of s; chunk must be at most s->n_batch -
 * (s->n_seq - 1), so that a prompt run always fits next to the rows of the
 * other sequences.  0, or -1 with lm_set_error. */
int lm_batch_scheduler_init(lm_batch_scheduler *b, lm_session *s, int chunk);
void lm_batch_scheduler_free(lm_batch_scheduler *b);

/* Prompt-lookup speculation for the generating slots: up to max_prop
 * proposals each a pass, checked in the same pass (single-order rows, so
 * greedy text stays the same).  s->n_batch must leave room for them: chunk
 * + n_seq * (1 + max_prop) rows.  0 or -1. */
int lm_batch_scheduler_lookup(lm_batch_scheduler *b, int max_prop);

/* Whether any slot holds a request that has not finished. */
bool lm_batch_scheduler_busy(const lm_batch_scheduler *b);

/* One pass: rows from every unfinished sequence that fit, then a token
 * sampled for each whose logits came out.  Afterwards a slot with finish
 * set holds a finished request, for the caller to answer, end, and clear
 * from the cache (lm_batch_scheduler_clear).  0, or -1 with lm_set_error
 * (the engine failed). */
int lm_batch_scheduler_pass(lm_batch_scheduler *b);

/* Ends slot i's request and forgets its cache. */
void lm_batch_scheduler_clear(lm_batch_scheduler *b, int i);

#endif
