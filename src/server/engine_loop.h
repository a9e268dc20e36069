/* The engine thread of `lamina serve`: continuous batching over the jobs
 * (jobs.h).  Between passes, with the lock held, it takes queued jobs into
 * free slots, ends the slots whose clients went away, and copies each
 * sequence's new text to its job; the pass itself (lm_batch_scheduler_pass)
 * runs without the lock, so connections are served while the weights
 * stream.  A sequence's text does not depend on what shares its passes
 * (batch_scheduler.h), so a greedy request gives `lamina run`'s text. */
#ifndef LM_SERVER_ENGINE_LOOP_H
#define LM_SERVER_ENGINE_LOOP_H

#include <signal.h>

#include "batch_scheduler.h"
#include "jobs.h"

typedef struct {
    lm_jobs *jobs;
    lm_batch_scheduler *sched;
    volatile sig_atomic_t *stop; /* set by SIGINT/SIGTERM */
    double drain_seconds;        /* after stop: how long running jobs may finish */
    int verbose;                 /* a line per request on stderr */
    void (*on_stop)(void *arg);  /* called once when the stop flag is seen */
    void *on_stop_arg;
} lm_engine_loop;

/* Runs until *stop, then drains: queued jobs are refused, running ones
 * finish within drain_seconds or are cancelled.  Returns 0. */
int lm_engine_loop_run(lm_engine_loop *e);

#endif
