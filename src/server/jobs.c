#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

int lm_jobs_init(lm_jobs *j, int queue_cap, int n_slots)
{
    memset(j, 0, sizeof *j);
    j->q_cap = queue_cap;
    j->n_slots = n_slots;
    if (!(j->queue = calloc((size_t)queue_cap, sizeof *j->queue)))
        return -1;
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* timed waits survive clock changes */
    pthread_cond_init(&j->work, &attr);
    pthread_cond_init(&j->progress, &attr);
    pthread_condattr_destroy(&attr);
    return 0;
}

void lm_jobs_destroy(lm_jobs *j)
{
    for (int i = 0; i < j->q_len; i++)
        lm_job_release_locked(j->queue[(j->q_head + i) % j->q_cap]);
    free(j->queue);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->work);
    pthread_cond_destroy(&j->progress);
    memset(j, 0, sizeof *j);
}

lm_job *lm_job_new(lm_batch_request *req, int32_t *prompt, int n_prompt, int max_tokens)
{
    lm_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->req = *req;
    memset(req, 0, sizeof *req);
    job->prompt = prompt;
    job->n_prompt = n_prompt;
    job->max_tokens = max_tokens;
    job->kind = job->req.kind;
    job->include_usage = job->req.include_usage;
    job->created = time(NULL);
    job->t_submit = lm_now_seconds();
    job->refs = 1;
    return job;
}

int lm_jobs_submit(lm_jobs *j, lm_job *job)
{
    pthread_mutex_lock(&j->lock);
    int rc = j->stopping ? 1 : j->q_len == j->q_cap ? -1 : 0;
    if (rc == 0) {
        j->queue[(j->q_head + j->q_len++) % j->q_cap] = job;
        job->refs++;
        pthread_cond_signal(&j->work);
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

void lm_job_release_locked(lm_job *job)
{
    if (!job || --job->refs > 0)
        return;
    lm_batch_request_free(&job->req);
    free(job->prompt);
    free(job->text);
    free(job);
}

void lm_job_fail_locked(lm_job *job, int status, const char *type, const char *message)
{
    job->state = LM_JOB_DONE;
    job->status = status;
    job->error_type = type;
    snprintf(job->error, sizeof job->error, "%s", message);
    job->t_done = lm_now_seconds();
}

int lm_job_set_text_locked(lm_job *job, const char *text, size_t len, size_t stable)
{
    if (len + 1 > job->cap) {
        size_t cap = job->cap ? job->cap : 256;
        while (cap < len + 1)
            cap *= 2;
        char *grown = realloc(job->text, cap);
        if (!grown)
            return -1;
        job->text = grown;
        job->cap = cap;
    }
    /* what a stream may already have sent never changes: copy from there */
    size_t from = stable < job->len ? stable : job->len;
    if (from > len)
        from = len;
    memcpy(job->text + from, text + from, len - from);
    job->len = len;
    job->text[len] = '\0';
    return 0;
}
