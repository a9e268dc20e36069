/* lamina batch: a file of requests in the OpenAI Batch format in
 * (batch_request.h), a file of results out (batch_result.h), the requests
 * served --parallel at a time by continuous batching (batch_scheduler.h).
 * Results are written as requests finish, so a stopped run keeps what it
 * finished and --resume goes on from there. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch_input.h"
#include "batch_progress.h"
#include "batch_request.h"
#include "batch_result.h"
#include "batch_scheduler.h"
#include "cli.h"
#include "error.h"
#include "request_prompt.h"
#include "rng.h"
#include "session.h"
#include "tokenizer.h"

typedef struct {
    const lm_cli *o;
    lm_model *m;
    lm_session *s;
    lm_batch_input in;
    int next_line;          /* the next line of in to admit */
    uint64_t admitted;
    lm_batch_scheduler sched;
    FILE *out;
    const char *model_name; /* the "model" of each response */
    uint64_t seed;          /* --seed, or from the clock */
    lm_prompt_maker prompts;
    lm_batch_progress progress;
} batch;

/* ---- answers */

static int answer_failure(batch *b, const lm_batch_line *line, const lm_batch_request *req)
{
    char message[512], id[128];
    snprintf(message, sizeof message, "%s", lm_last_error());
    b->progress.failed++;
    if (req->custom_id) /* from the user's file, on the way to a terminal */
        lm_batch_progress_note(&b->progress, "lamina: line %d (custom_id '%s'): %s",
                               line->number, lm_printable(req->custom_id, strlen(req->custom_id),
                                                          id, sizeof id), message);
    else
        lm_batch_progress_note(&b->progress, "lamina: line %d: %s", line->number, message);
    if (!req->is_json) {
        char with_line[600];
        snprintf(with_line, sizeof with_line, "line %d: %s", line->number, message);
        return lm_batch_result_put(b->out, lm_batch_result_not_json(with_line));
    }
    return lm_batch_result_put(b->out,
                               lm_batch_result_invalid(req->custom_id, message, req->bad_param));
}

static int answer(batch *b, int slot)
{
    const lm_batch_seq *q = &b->sched.seqs[slot];
    lm_batch_answer a = {
        .custom_id = q->req.custom_id, .kind = q->req.kind, .model = b->model_name,
        .finish_reason = q->finish, .prompt_tokens = q->n_prompt,
        .completion_tokens = q->n_generated,
    };
    a.text = lm_batch_seq_text(q, &a.text_len);
    b->progress.ok++;
    const int rc = lm_batch_result_put(b->out, lm_batch_result_ok(&a));
    lm_batch_scheduler_clear(&b->sched, slot);
    return rc;
}

/* ---- admission */

/* A request without a seed draws from --seed (or the clock) mixed with its
 * custom_id: requests differ from each other, and each one's text stays
 * the same when the batch is run again with --seed, resumed, or run with
 * another --parallel. */
static uint64_t request_seed(uint64_t seed, const char *custom_id)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)custom_id; p && *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    uint64_t x = seed ^ h;
    return lm_splitmix64(&x);
}

/* Gives slot i the next request that can be served, answering those that
 * cannot (and any that finish at once, max_tokens 0) on the way.  1 when
 * the slot got one, 0 at the end of the input, -1 on a fatal error. */
static int admit(batch *b, int slot)
{
    while (b->next_line < b->in.n_lines) {
        const lm_batch_line *line = &b->in.lines[b->next_line++];
        if (line->answered)
            continue;
        lm_batch_request req;
        int32_t *ids;
        int n, rc;
        if (lm_batch_request_parse(line->text, line->len, &b->o->sampling, &req) != 0 ||
            lm_prompt_tokens(&b->prompts, &req, &ids, &n) != 0) {
            rc = answer_failure(b, line, &req);
            lm_batch_request_free(&req);
            if (rc != 0)
                return -1;
            continue;
        }
        if (!req.seed_given)
            req.sampling.seed = request_seed(b->seed, req.custom_id);
        const int max = lm_request_max_tokens(&req, b->o->n_predict);
        if (lm_batch_seq_start(&b->sched.seqs[slot], b->m, &req, ids, n, max, b->admitted++))
            return -1;
        if (!b->sched.seqs[slot].finish)
            return 1;
        if (answer(b, slot) != 0)
            return -1;
    }
    return 0;
}

/* ---- the run */

/* Passes until every request is answered: free slots take new requests,
 * a pass runs, finished requests are answered. */
static int run_batch(batch *b)
{
    bool input_left = true;
    for (;;) {
        for (int i = 0; input_left && i < b->s->n_seq; i++) {
            if (b->sched.seqs[i].busy)
                continue;
            const int got = admit(b, i);
            if (got < 0)
                return -1;
            input_left = got > 0;
        }
        lm_batch_progress_show(&b->progress, false);
        if (!lm_batch_scheduler_busy(&b->sched))
            return 0;
        if (lm_batch_scheduler_pass(&b->sched) != 0)
            return -1;
        b->progress.prompt_tokens = b->sched.prompt_tokens;
        b->progress.generated_tokens = b->sched.generated_tokens;
        for (int i = 0; i < b->s->n_seq; i++)
            if (b->sched.seqs[i].busy && b->sched.seqs[i].finish && answer(b, i) != 0)
                return -1;
    }
}

static int check_options(const lm_cli *o)
{
    if (o->n_positional > 0)
        lm_set_error("unexpected argument '%s'", o->positional[0]);
    else if (!o->model)
        lm_set_error("no model given (use -m MODEL.gguf)");
    else if (!o->input)
        lm_set_error("no requests given (use -i FILE, or -i - for stdin)");
    else if (!o->output)
        lm_set_error("no results file given (use -o FILE, or -o - for stdout)");
    else if (o->resume && strcmp(o->output, "-") == 0)
        lm_set_error("--resume reads the results file: give it with -o FILE");
    else if (o->draft)
        lm_set_error("batch takes --lookup; a draft model per sequence (--draft) is not there yet");
    else
        return 0;
    return -1;
}

/* Reads the requests, and with --resume the results already there; opens
 * the results file (appending with --resume). */
static int open_files(batch *b)
{
    const lm_cli *o = b->o;
    if (lm_batch_input_read(&b->in, o->input) != 0)
        return -1;
    if (o->resume) {
        json_t *done = json_object();
        int n_anonymous = 0;
        if (!done || lm_batch_results_read(o->output, done, &n_anonymous) != 0) {
            json_decref(done);
            return -1;
        }
        lm_batch_input_mark_answered(&b->in, done, n_anonymous);
        json_decref(done);
    }
    b->out = strcmp(o->output, "-") == 0 ? stdout : fopen(o->output, o->resume ? "ab" : "wb");
    if (!b->out) {
        lm_set_error("%s: cannot write the results: %s", o->output, strerror(errno));
        return -1;
    }
    return 0;
}

/* The model, the session and the slots.  Each prompt run takes -b tokens
 * (at most a sequence's context), and a pass has room for one run next to
 * a row of every other sequence. */
static int start_engine(batch *b)
{
    const lm_cli *o = b->o;
    if (!(b->m = lm_cli_load_model(o)))
        return -1;
    const int n_ctx = lm_cli_context(o, b->m), n_seq = o->n_parallel;
    const int seq_ctx = n_ctx / n_seq, chunk = o->n_batch < seq_ctx ? o->n_batch : seq_ctx;
    if (lm_prompt_maker_init(&b->prompts, o, b->m, seq_ctx, n_seq) != 0)
        return -1; /* a bad --chat-template name stops the batch */
    /* with --lookup a pass also checks each sequence's proposals */
    const int c = chunk > 0 ? chunk : 1;
    const int rows = c + (o->lookup ? n_seq * (1 + o->draft_max) : n_seq - 1);
    if (!(b->s = lm_cli_session(o, b->m, n_ctx, rows)))
        return -1;
    if (lm_batch_scheduler_init(&b->sched, b->s, chunk) != 0)
        return -1;
    return o->lookup ? lm_batch_scheduler_lookup(&b->sched, o->draft_max) : 0;
}

int lm_cmd_batch(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "batch", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    batch b = {.o = &o};
    b.seed = o.seed_given ? o.sampling.seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    rc = 1;
    if (check_options(&o) != 0 || open_files(&b) != 0)
        goto done;
    const int skipped = b.in.n_lines - b.in.n_pending;
    if (b.in.n_pending > 0) {
        if (start_engine(&b) != 0)
            goto done;
        b.model_name = lm_cli_model_name(&o);
    }
    lm_batch_progress_start(&b.progress, stderr, o.quiet, b.in.n_pending, skipped);
    if (b.in.n_pending > 0 && run_batch(&b) != 0)
        goto done;
    lm_batch_progress_summary(&b.progress);
    if (b.s)
        lm_cli_print_profile(&o, b.s, stderr);
    rc = 0;
done:
    if (rc)
        lm_cli_fail();
    if (b.out && (b.out == stdout ? fflush(b.out) : fclose(b.out)) != 0 && rc == 0) {
        lm_set_error("%s: cannot write the results: %s", o.output, strerror(errno));
        rc = lm_cli_fail();
    }
    lm_batch_scheduler_free(&b.sched);
    lm_batch_input_free(&b.in);
    lm_prompt_maker_free(&b.prompts);
    lm_session_free(b.s);
    lm_model_free(b.m);
    return rc;
}
