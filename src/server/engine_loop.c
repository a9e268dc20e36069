#include "engine_loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "openai_json.h"
#include "timing.h"

/* Up to this long between looks at the stop flag while idle. */
#define IDLE_WAIT_NS 100000000L

static void wait_work(lm_jobs *j)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += IDLE_WAIT_NS;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&j->work, &j->lock, &until);
}

/* How many bytes at the end of the generated text could be the start of
 * a stop string: a stream holds them back until it is known whether they
 * end the text (and are cut) or not. */
static size_t stop_prefix_tail(const lm_batch_seq *q)
{
    size_t hold = 0;
    const size_t generated = q->len - q->echo_len;
    for (size_t i = 0; i < q->req.n_stop; i++) {
        const char *s = q->req.stop[i];
        size_t k = strlen(s) - 1;
        if (k > generated)
            k = generated;
        for (; k > hold; k--)
            if (memcmp(q->text + q->len - k, s, k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* Copies slot i's text and state to its job; ends the slot if finished. */
static void publish(lm_engine_loop *e, lm_job **slots, int i)
{
    lm_jobs *j = e->jobs;
    lm_batch_seq *q = &e->sched->seqs[i];
    lm_job *job = slots[i];
    size_t len;
    const char *text = lm_batch_seq_text(q, &len);
    if (lm_job_set_text_locked(job, text, len, job->ready) != 0) {
        lm_job_fail_locked(job, 500, "server_error", "out of memory for the text");
    } else {
        size_t hold = 0;
        if (!q->finish) {
            hold = stop_prefix_tail(q);
            const size_t partial = lm_utf8_incomplete_tail(text, len - hold);
            hold += partial;
        }
        job->ready = len - hold;
        job->n_completion = q->n_generated;
        if (job->ready > 0 && job->t_first == 0) {
            job->t_first = lm_now_seconds();
            j->count.ttft_seconds += job->t_first - job->t_submit;
            j->count.ttft_count++;
        }
        if (q->finish) {
            job->finish = q->finish;
            job->state = LM_JOB_DONE;
            job->t_done = lm_now_seconds();
            if (!job->t_first) {
                job->t_first = job->t_done;
                j->count.ttft_seconds += job->t_first - job->t_submit;
                j->count.ttft_count++;
            j->count.ttft_count++;
            }
            j->count.prompt_tokens += (uint64_t)job->n_prompt;
            j->count.completion_tokens += (uint64_t)job->n_completion;
            if (e->verbose)
                fprintf(stderr, "lamina serve: %s: %d prompt + %d generated tokens in %.2f s "
                                "(first text after %.2f s), %s\n", job->id, job->n_prompt,
                        job->n_completion, job->t_done - job->t_submit,
                        job->t_first - job->t_submit, job->finish);
        }
    }
    if (job->state == LM_JOB_DONE) {
        lm_batch_scheduler_clear(e->sched, i);
        lm_job_release_locked(job);
        slots[i] = NULL;
        j->busy_slots--;
    }
}

/* Ends slot i's job with an error (engine failure, shutdown, cancel). */
static void end_slot(lm_engine_loop *e, lm_job **slots, int i, int status, const char *type,
                     const char *message)
{
    lm_job *job = slots[i];
    lm_job_fail_locked(job, status, type, message);
    e->jobs->count.failed++;
    lm_batch_scheduler_clear(e->sched, i);
    lm_job_release_locked(job);
    slots[i] = NULL;
    e->jobs->busy_slots--;
}

/* Free slots take queued jobs, oldest first. */
static void admit(lm_engine_loop *e, lm_job **slots, uint64_t *admitted)
{
    lm_jobs *j = e->jobs;
    for (int i = 0; i < j->n_slots && j->q_len > 0; i++) {
        if (slots[i])
            continue;
        lm_job *job = j->queue[j->q_head];
        j->q_head = (j->q_head + 1) % j->q_cap;
        j->q_len--;
        if (job->cancel) {
            lm_job_fail_locked(job, 499, "cancelled", "the client went away");
            j->count.failed++;
            lm_job_release_locked(job);
            i--; /* the slot is still free */
            continue;
        }
        lm_batch_seq *q = &e->sched->seqs[i];
        int32_t *prompt = job->prompt;
        job->prompt = NULL;
        lm_batch_request req = job->req;
        /* the slot takes the request over; the job keeps what it answers with */
        memset(&job->req, 0, sizeof job->req);
        slots[i] = job;
        j->busy_slots++;
        job->state = LM_JOB_RUNNING;
        if (lm_batch_seq_start(q, e->sched->s->model, &req, prompt, job->n_prompt,
                               job->max_tokens, (*admitted)++) != 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", lm_last_error());
            end_slot(e, slots, i, 500, "server_error", why);
            continue;
        }
        if (q->finish) /* max_tokens 0 */
            publish(e, slots, i);
    }
}

/* Refuses the queued jobs (shutdown). */
static void refuse_queue(lm_jobs *j)
{
    while (j->q_len > 0) {
        lm_job *job = j->queue[j->q_head];
        j->q_head = (j->q_head + 1) % j->q_cap;
        j->q_len--;
        lm_job_fail_locked(job, 503, "unavailable_error", "the server is shutting down");
        j->count.failed++;
        lm_job_release_locked(job);
    }
}

int lm_engine_loop_run(lm_engine_loop *e)
{
    lm_jobs *j = e->jobs;
    lm_job **slots = calloc((size_t)j->n_slots, sizeof *slots);
    if (!slots) {
        lm_set_error("out of memory");
        return -1;
    }
    uint64_t admitted = 0;
    double drain_until = 0;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        if (*e->stop && !j->stopping) {
            j->stopping = true;
            drain_until = lm_now_seconds() + e->drain_seconds;
            if (e->on_stop) {
                pthread_mutex_unlock(&j->lock);
                e->on_stop(e->on_stop_arg);
                pthread_mutex_lock(&j->lock);
            }
        }
        if (j->stopping)
            refuse_queue(j);
        const bool drained = j->stopping && lm_now_seconds() >= drain_until;
        for (int i = 0; i < j->n_slots; i++)
            if (slots[i] && (slots[i]->cancel || drained))
                end_slot(e, slots, i, drained ? 503 : 499,
                         drained ? "unavailable_error" : "cancelled",
                         drained ? "the server shut down before the request finished"
                                 : "the client went away");
        admit(e, slots, &admitted);
        pthread_cond_broadcast(&j->progress);
        if (j->busy_slots == 0) {
            if (j->stopping)
                break;
            wait_work(j);
            continue;
        }
        pthread_mutex_unlock(&j->lock);
        const double t0 = lm_now_seconds();
        const int rc = lm_batch_scheduler_pass(e->sched);
        char why[256] = "";
        if (rc != 0)
            snprintf(why, sizeof why, "the engine failed: %s", lm_last_error());
        pthread_mutex_lock(&j->lock);
        j->count.busy_seconds += lm_now_seconds() - t0;
        j->count.spec_proposed = e->sched->proposed;
        j->count.spec_accepted = e->sched->accepted;
        for (int i = 0; i < j->n_slots; i++) {
            if (!slots[i])
                continue;
            if (rc != 0)
                end_slot(e, slots, i, 500, "server_error", why);
            else
                publish(e, slots, i);
        }
        if (rc != 0)
            fprintf(stderr, "lamina serve: %s\n", why);
    }
    pthread_cond_broadcast(&j->progress);
    pthread_mutex_unlock(&j->lock);
    free(slots);
    return 0;
}
