/* Runs teach the planner.  An engine that followed a plan records, when it
 * is freed, what its one-token passes took against what the probes
 * predicted; the next plan of the same shape (threads, model, placement of
 * every kind, sequences, prefetch) is scaled by the median of the last
 * LM_LEARN_RUNS such ratios, so that a prediction far from what runs
 * measured is corrected the next time.  Kept beside the probes in
 * $XDG_CACHE_HOME/lamina/learned; --reprobe ignores it.  A run during
 * which other processes held the cores teaches nothing (probe.h's
 * watch). */
#ifndef LM_PLAN_LEARN_H
#define LM_PLAN_LEARN_H

#include "model.h"
#include "plan.h"

#define LM_LEARN_RUNS 5

struct lm_session;

/* Scales plan's predictions by what runs of its shape measured (sets
 * learned_runs, learned_factor, probe_token_ms). */
void lm_plan_apply_learned(const lm_model *m, lm_plan *plan);

/* Records what s's one-token passes took (if it ran enough of them on a
 * quiet machine). */
void lm_session_learn(const struct lm_session *s);

#endif
