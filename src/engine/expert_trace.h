/* The routing a run's passes made: per pass and layer of a mixture of
 * experts, the distinct experts its rows picked, in the order the backends
 * compute them (either backend records it, wherever the layer ran).  A
 * session keeps the routing of its first passes and, when it is freed,
 * stores it in the cache directory ($XDG_CACHE_HOME/lamina/routes/), one
 * file per model, the last run's; the planner replays it through a model
 * of the expert cache (expert_cache.h) to predict the hit rate of any
 * cache size and eviction before a run of that cache has measured one.
 * Real routers are far from uniform: a cache holding a fifth of the
 * experts may serve nine tenths of the wants. */
#ifndef LM_EXPERT_TRACE_H
#define LM_EXPERT_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "expert_cache.h"
#include "model.h"

typedef struct lm_expert_trace lm_expert_trace;

/* Fewer wants than this (a run of a few tokens) are not stored: they would
 * replace a longer run's routing with too little to predict from. */
#define LM_TRACE_MIN_WANTS 256

/* An empty trace for m's experts; NULL for a dense model (or out of memory:
 * a run then goes untraced). */
lm_expert_trace *lm_expert_trace_new(const lm_model *m);
void lm_expert_trace_free(lm_expert_trace *t);

/* A pass of `rows` rows through layer il wants experts[0..n) (distinct);
 * NULL t: nothing.  Once the trace is full, later passes are not kept. */
void lm_expert_trace_add(lm_expert_trace *t, int il, int rows, const int32_t *experts, int n);

/* Passes and layers' wants recorded (the pairs of a layer and an expert). */
uint64_t lm_expert_trace_wants(const lm_expert_trace *t);

/* Stores t as m's trace (written whole or not at all); a trace of fewer
 * than min_wants wants is not stored.  Silent: a cache that cannot be
 * written costs the next plan its prediction, nothing else. */
void lm_expert_trace_save(const lm_expert_trace *t, const lm_model *m, uint64_t min_wants);
/* m's stored trace, or NULL (none, or not one of m's). */
lm_expert_trace *lm_expert_trace_load(const lm_model *m);

/* The trace in text (as stored) parsed for m's shape; NULL if it is not a
 * well-formed trace of a model with n_layer layers of n_expert experts. */
lm_expert_trace *lm_expert_trace_parse(const char *text, size_t len, int n_layer, int n_expert);

/* The share of the wants of the layers in apart[] (per layer) a cache of
 * n_slots experts with that eviction would have found cached, replaying t
 * as expert_cache.c serves a pass: every expert the pass wants is kept
 * until the pass is done, the cached ones are used first, the others each
 * take an empty slot or the one to give up first.  Counted are the
 * one-row passes' wants (decoding's, what a plan predicts for), or every
 * pass's in a trace of none; the passes before them fill the cache.
 * *wants gets how many wants that share is of (0: none; the rate is then 0). */
double lm_expert_trace_hit_rate(const lm_expert_trace *t, const bool *apart, int n_slots,
                                lm_expert_evict evict, uint64_t *wants);

#endif
