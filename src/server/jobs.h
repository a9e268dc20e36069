/* What the connection threads of `lamina serve` and its engine thread
 * share: the requests (jobs) waiting in a bounded queue or holding a slot
 * of the engine, the text each has generated so far, and the counters
 * /metrics reports.  One lock guards all of it; the engine thread holds it
 * only between passes, never while the weights are read or computed. */
#ifndef LM_SERVER_JOBS_H
#define LM_SERVER_JOBS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "batch_request.h"

typedef enum { LM_JOB_QUEUED, LM_JOB_RUNNING, LM_JOB_DONE } lm_job_state;

typedef struct {
    /* Set by the connection thread before lm_jobs_submit; the engine takes
     * req and prompt over when the job gets a slot. */
    lm_batch_request req;
    int32_t *prompt;
    int n_prompt;
    int max_tokens;             /* -1: until the end or a full context */
    lm_batch_kind kind;
    bool include_usage;         /* read by the connection after the engine took req */
    char id[64];
    time_t created;
    double t_submit;

    /* Under the lock. */
    lm_job_state state;
    bool cancel;                /* the client went away (or shutdown): end it */
    char *text;                 /* the completion so far */
    size_t len, cap;
    size_t ready;               /* how much of text a stream may send now: never the
                                   start of a stop string or of a character */
    const char *finish;         /* once done without error: "stop" or "length" */
    int n_completion;           /* tokens generated */
    int status;                 /* once done with an error: its HTTP status, else 0 */
    const char *error_type;
    char error[256];
    double t_first, t_done;     /* first text, end */
    int refs;                   /* the connection and the engine: freed at 0 */
} lm_job;

typedef struct {
    uint64_t requests;          /* answered with 200 */
    uint64_t rejected;          /* answered 4xx/5xx before reaching the engine */
    uint64_t failed;            /* ended by an error, a cancellation or shutdown */
    uint64_t prompt_tokens, completion_tokens;
    double busy_seconds;        /* engine time with at least one sequence */
    double ttft_seconds;        /* sum over requests of submit to first text */
    uint64_t ttft_count;        /* requests in that sum */
    uint64_t spec_proposed, spec_accepted; /* --lookup: tokens proposed, accepted */
} lm_server_counters;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t work;        /* the engine waits here: a new job, a cancel, stop */
    pthread_cond_t progress;    /* connections wait here: text or state changed */
    lm_job **queue;             /* ring of q_cap */
    int q_cap, q_head, q_len;
    int n_slots, busy_slots;
    bool ready;                 /* the model is loaded and the engine runs */
    bool stopping;              /* shutdown: no new jobs */
    int connections;            /* requests being handled */
    lm_server_counters count;
} lm_jobs;

int lm_jobs_init(lm_jobs *j, int queue_cap, int n_slots);
void lm_jobs_destroy(lm_jobs *j);

/* A job for a parsed request (taken over) and its prompt tokens (taken
 * over), with one reference (the caller's).  NULL when out of memory. */
lm_job *lm_job_new(lm_batch_request *req, int32_t *prompt, int n_prompt, int max_tokens);

/* Queues the job (a second reference, the engine's).  0; -1 when the queue
 * is full, 1 when the server is stopping.  Takes the lock. */
int lm_jobs_submit(lm_jobs *j, lm_job *job);

/* Drops a reference (with the lock held). */
void lm_job_release_locked(lm_job *job);

/* Marks a job done with an error (lock held): status and message. */
void lm_job_fail_locked(lm_job *job, int status, const char *type, const char *message);

/* Appends bytes to the job's text (lock held).  0 or -1. */
int lm_job_set_text_locked(lm_job *job, const char *text, size_t len, size_t stable);

#endif
