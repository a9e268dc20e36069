/* Runs teach the planner.  An engine that followed a plan records, when it
 * is freed, what its passes took part by part (those whose every row wants
 * logits: sequences decoding, alone or batched, and speculative
 * verification): the compute of its CPU layers and of its device layers,
 * the output head, and the rates of its disk reads and copies to the
 * device, each against what the probe behind it predicted for those rows.  Each figure keeps what the last LM_LEARN_RUNS runs
 * measured (in the probe's unit: layer 0's ms, the disk's bytes/s), keyed
 * as the probes are (threads, disk, model shape, device), and the next plan
 * of any placement scales the probe to their median (lm_learned_load, then
 * lm_plan_make); a probe taken again later is corrected the same way.  What the figures cannot say (how
 * reads and compute overlapped, the overheads of a pass) is learned per
 * plan: measured over predicted from this run's own figures, the median of
 * the last runs of the same plan (threads, model, placement of every kind,
 * sequences, prefetch) scaling its prediction (lm_plan_apply_learned);
 * that one is learned from one-token passes, what the plan predicts.
 * A mixture of experts' expert cache keeps the hit rate runs measured, per
 * model, placement, cache size and eviction, and the next plan of the same
 * cache predicts with it; any other cache's is predicted by replaying the
 * routing the model's last run recorded (expert_trace.h), which also picks
 * the eviction where the plan is to choose it; only with neither is it
 * what a uniform router would give.
 * Kept beside the probes in $XDG_CACHE_HOME/lamina/learned; --reprobe
 * ignores it.  A run during which other processes held the cores teaches
 * nothing (probe.h's watch). */
#ifndef LM_PLAN_LEARN_H
#define LM_PLAN_LEARN_H

#include "model.h"
#include "plan.h"

#define LM_LEARN_RUNS 5

struct lm_session;

/* Each figure's correction over the probe p or d (NULL: no device; its
 * figures stay the probes') from the runs that measured it. */
void lm_learned_load(const lm_model *m, const lm_probes *p, const lm_device_probes *d,
                     lm_learned *l);

/* Scales plan's predictions by what runs of this very plan measured (sets
 * learned_runs, learned_factor). */
void lm_plan_apply_learned(const lm_model *m, lm_plan *plan);

/* Records what s's one-token passes took (if it ran enough of them on a
 * quiet machine). */
void lm_session_learn(const struct lm_session *s);

#endif
