#define _GNU_SOURCE /* asprintf */
/* POST /v1/completions and /v1/chat/completions: the body parsed as a
 * batch line's body is (batch_request.h), the prompt made into tokens
 * (request_prompt.h), a job queued for the engine, and the answer: one
 * JSON body when the job is done, or with "stream": true Server-Sent
 * Events in OpenAI's chunk format as the text comes, ending with
 * "data: [DONE]".  A client that goes away frees its slot within one
 * look at its socket (every WAIT_MS) or at the next write. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "openai_json.h"
#include "rng.h"
#include "server_internal.h"
#include "timing.h"

/* How often a waiting connection looks at its client's socket. */
#define WAIT_MS 100

/* A request without a seed gets its own, from the clock and a counter. */
static uint64_t fresh_seed(void)
{
    static _Thread_local uint64_t state;
    if (!state)
        state = (uint64_t)(lm_now_seconds() * 1e9) ^ (uint64_t)(uintptr_t)&state;
    return lm_splitmix64(&state);
}

static lm_batch_answer answer_of(const lm_request *r, const lm_job *job)
{
    return (lm_batch_answer){
        .kind = job->kind, .model = r->srv->cfg.model_name, .text = job->text ? job->text : "",
        .text_len = job->len, .finish_reason = job->finish ? job->finish : "stop",
        .prompt_tokens = job->n_prompt, .completion_tokens = job->n_completion,
    };
}

/* ---- the whole body at once */

static enum MHD_Result reply_done(lm_request *r)
{
    lm_server *srv = r->srv;
    lm_job *job = r->job;
    /* the job is done: nothing changes it any more */
    if (job->status)
        return lm_reply_error(r, (unsigned)(job->status == 499 ? 500 : job->status),
                              job->error_type, NULL, NULL, "%s", job->error);
    const lm_batch_answer a = answer_of(r, job);
    json_t *body = lm_openai_body(&a, job->id, job->created);
    pthread_mutex_lock(&srv->jobs.lock);
    srv->jobs.count.requests++;
    pthread_mutex_unlock(&srv->jobs.lock);
    return lm_reply_json(r, 200, body);
}

static enum MHD_Result wait_and_reply(lm_request *r)
{
    lm_jobs *j = &r->srv->jobs;
    pthread_mutex_lock(&j->lock);
    while (r->job->state != LM_JOB_DONE) {
        lm_wait_progress(j, WAIT_MS);
        if (r->job->state != LM_JOB_DONE && lm_client_gone(r)) {
            r->job->cancel = true;
            pthread_cond_signal(&j->work);
            pthread_mutex_unlock(&j->lock);
            return MHD_NO; /* closes the connection; completed() lets the job go */
        }
    }
    pthread_mutex_unlock(&j->lock);
    return reply_done(r);
}

/* ---- Server-Sent Events */

enum { PHASE_ROLE, PHASE_TEXT, PHASE_USAGE, PHASE_DONE, PHASE_END };

/* Makes the next event into r->out from body (consumed). */
static int set_event(lm_request *r, json_t *body)
{
    char *json = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    free(r->out);
    r->out = NULL;
    r->out_len = r->out_off = 0;
    if (!json)
        return -1;
    const int n = asprintf(&r->out, "data: %s\n\n", json);
    free(json);
    if (n < 0) {
        r->out = NULL;
        return -1;
    }
    r->out_len = (size_t)n;
    return 0;
}

/* The next event, waiting for text if there is none yet.  0; 1 at the end
 * of the stream; -1 when the client went away or memory ran out. */
static int next_event(lm_request *r)
{
    lm_jobs *j = &r->srv->jobs;
    lm_job *job = r->job;
    /* what the chunks name; the text and counts are read under the lock */
    lm_batch_answer a = {.kind = job->kind, .model = r->srv->cfg.model_name};
    if (r->phase == PHASE_ROLE) {
        r->phase = PHASE_TEXT;
        if (job->kind == LM_BATCH_CHAT)
            return set_event(r, lm_openai_chunk(&a, job->id, job->created, LM_CHUNK_ROLE, NULL,
                                                0, NULL));
    }
    if (r->phase == PHASE_TEXT) {
        pthread_mutex_lock(&j->lock);
        while (job->ready <= r->sent && job->state != LM_JOB_DONE) {
            lm_wait_progress(j, WAIT_MS);
            if (job->ready <= r->sent && job->state != LM_JOB_DONE && lm_client_gone(r)) {
                job->cancel = true;
                pthread_cond_signal(&j->work);
                pthread_mutex_unlock(&j->lock);
                return -1;
            }
        }
        /* a copy of the new text: the engine may grow the buffer meanwhile */
        const bool done = job->state == LM_JOB_DONE;
        const size_t from = r->sent, to = job->ready > from ? job->ready : from;
        char *piece = malloc(to - from + 1);
        if (piece)
            memcpy(piece, job->text + from, to - from);
        a = answer_of(r, job);
        pthread_mutex_unlock(&j->lock);
        if (!piece)
            return -1;
        r->sent = to;
        json_t *chunk;
        if (done && job->status) {
            chunk = lm_openai_error(job->error, job->error_type, NULL, NULL);
            r->phase = PHASE_DONE;
        } else {
            chunk = lm_openai_chunk(&a, job->id, job->created, LM_CHUNK_TEXT, piece, to - from,
                                    done ? a.finish_reason : NULL);
            if (done)
                r->phase = job->include_usage ? PHASE_USAGE : PHASE_DONE;
        }
        free(piece);
        if (done && !job->status) {
            pthread_mutex_lock(&j->lock);
            j->count.requests++;
            pthread_mutex_unlock(&j->lock);
        }
        return set_event(r, chunk);
    }
    if (r->phase == PHASE_USAGE) {
        r->phase = PHASE_DONE;
        a = answer_of(r, job); /* done: nothing changes it any more */
        return set_event(r, lm_openai_chunk(&a, job->id, job->created, LM_CHUNK_USAGE, NULL, 0,
                                            NULL));
    }
    if (r->phase == PHASE_DONE) {
        static const char done[] = "data: [DONE]\n\n";
        free(r->out);
        r->out = strdup(done);
        r->out_len = r->out ? sizeof done - 1 : 0;
        r->out_off = 0;
        r->phase = PHASE_END;
        return r->out ? 0 : -1;
    }
    return 1;
}

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    lm_request *r = cls;
    (void)pos;
    while (r->out_off == r->out_len) {
        const int rc = next_event(r);
        if (rc > 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = r->out_len - r->out_off;
    if (n > max)
        n = max;
    memcpy(buf, r->out + r->out_off, n);
    r->out_off += n;
    return (ssize_t)n;
}

static enum MHD_Result start_stream(lm_request *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, read_stream, r, NULL);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    const enum MHD_Result rc = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* ---- the request */

static enum MHD_Result reject(lm_request *r, unsigned status, const char *type,
                              const char *param, const char *code, const char *message)
{
    pthread_mutex_lock(&r->srv->jobs.lock);
    r->srv->jobs.count.rejected++;
    pthread_mutex_unlock(&r->srv->jobs.lock);
    return lm_reply_error(r, status, type, param, code, "%s", message);
}

enum MHD_Result lm_serve_completion(lm_request *r)
{
    lm_server *srv = r->srv;
    pthread_mutex_lock(&srv->jobs.lock);
    const bool ready = srv->jobs.ready, stopping = srv->jobs.stopping;
    const lm_prompt_maker *pm = srv->prompts;
    pthread_mutex_unlock(&srv->jobs.lock);
    if (stopping || !ready)
        return reject(r, 503, "unavailable_error", NULL, NULL,
                      stopping ? "the server is shutting down" : "the model is still loading");
    const lm_batch_kind kind = r->route == ROUTE_CHAT ? LM_BATCH_CHAT : LM_BATCH_COMPLETION;
    lm_batch_request req;
    int32_t *ids = NULL;
    int n = 0;
    if (lm_batch_request_parse_body(r->body ? r->body : "", r->len, kind, &srv->cfg.sampling,
                                    &req) != 0 ||
        lm_prompt_tokens(pm, &req, &ids, &n) != 0) {
        char message[512];
        snprintf(message, sizeof message, "%s", lm_last_error());
        const char *code = !req.is_json ? "invalid_json"
                           : strstr(message, "context holds") ? "context_length_exceeded"
                                                              : NULL;
        const char *param = req.bad_param;
        const enum MHD_Result rc = reject(r, 400, "invalid_request_error", param, code, message);
        lm_batch_request_free(&req);
        return rc;
    }
    if (!req.seed_given)
        req.sampling.seed = fresh_seed();
    const bool stream = req.stream;
    const int max = lm_request_max_tokens(&req, srv->cfg.default_max_tokens);
    lm_job *job = lm_job_new(&req, ids, n, max);
    if (!job) {
        lm_batch_request_free(&req);
        free(ids);
        return reject(r, 500, "server_error", NULL, NULL, "out of memory");
    }
    lm_openai_id(job->id, sizeof job->id, kind == LM_BATCH_CHAT ? "chatcmpl-" : "cmpl-");
    r->job = job; /* the connection's reference, released by completed() */
    const int queued = lm_jobs_submit(&srv->jobs, job);
    if (queued != 0)
        return reject(r, 503, "unavailable_error", NULL, NULL,
                      queued > 0 ? "the server is shutting down"
                                 : "the queue is full (--queue); retry later");
    /* a queued or long request sends nothing while it waits (a stream, until
     * its first token; a whole answer, until the end): the idle timeout must
     * not cut it.  A client that leaves is still noticed (lm_client_gone). */
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)0);
    return stream ? start_stream(r) : wait_and_reply(r);
}
