#include "batch_scheduler.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int lm_batch_scheduler_init(lm_batch_scheduler *b, lm_session *s, int chunk)
{
    memset(b, 0, sizeof *b);
    if (chunk < 1 || chunk > s->n_batch - (s->n_seq - 1)) {
        lm_set_error("prompt runs of %d tokens do not fit passes of %d rows for %d sequences",
                     chunk, s->n_batch, s->n_seq);
        return -1;
    }
    const size_t rows = (size_t)s->n_batch, n_seq = (size_t)s->n_seq;
    b->s = s;
    b->chunk = chunk;
    b->seqs = calloc(n_seq, sizeof *b->seqs);
    b->tokens = malloc(rows * sizeof *b->tokens);
    b->row_seq = malloc(rows * sizeof *b->row_seq);
    b->want = malloc(rows * sizeof *b->want);
    b->wanted = malloc(n_seq * sizeof *b->wanted);
    b->placed = malloc(n_seq * sizeof *b->placed);
    b->logits = malloc(n_seq * s->model->hp.n_vocab * sizeof *b->logits);
    if (!b->seqs || !b->tokens || !b->row_seq || !b->want || !b->wanted || !b->placed ||
        !b->logits) {
        lm_batch_scheduler_free(b);
        lm_set_error("out of memory for %d sequences", s->n_seq);
        return -1;
    }
    return 0;
}

static void spec_reset(lm_slot_lookup *sl)
{
    free(sl->hist);
    lm_sampler_free(sl->scratch);
    memset(sl, 0, sizeof *sl);
}

int lm_batch_scheduler_lookup(lm_batch_scheduler *b, int max_prop)
{
    const size_t n_seq = (size_t)b->s->n_seq, nv = b->s->model->hp.n_vocab;
    if (max_prop < 1 || max_prop > LM_SPEC_MAX_DRAFT ||
        b->s->n_batch < b->chunk + (int)n_seq * (1 + max_prop)) {
        lm_set_error("internal: passes of %d rows cannot check %d proposals for %zu sequences",
                     b->s->n_batch, max_prop, n_seq);
        return -1;
    }
    float *logits = realloc(b->logits, (size_t)b->s->n_batch * nv * sizeof *logits);
    if (logits)
        b->logits = logits;
    b->spec = calloc(n_seq, sizeof *b->spec);
    b->single = calloc((size_t)b->s->n_batch, sizeof *b->single);
    b->ids = malloc(nv * sizeof *b->ids);
    b->probs = malloc(nv * sizeof *b->probs);
    if (!logits || !b->spec || !b->single || !b->ids || !b->probs) {
        lm_set_error("out of memory for speculation");
        return -1;
    }
    b->lookup = max_prop;
    return 0;
}

void lm_batch_scheduler_free(lm_batch_scheduler *b)
{
    for (int i = 0; b->seqs && i < b->s->n_seq; i++)
        lm_batch_seq_end(&b->seqs[i]);
    for (int i = 0; b->spec && i < b->s->n_seq; i++)
        spec_reset(&b->spec[i]);
    free(b->spec);
    free(b->single);
    free(b->ids);
    free(b->probs);
    free(b->seqs);
    free(b->tokens);
    free(b->row_seq);
    free(b->want);
    free(b->wanted);
    free(b->placed);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

static bool running(const lm_batch_seq *q)
{
    return q->busy && !q->finish;
}

bool lm_batch_scheduler_busy(const lm_batch_scheduler *b)
{
    for (int i = 0; i < b->s->n_seq; i++)
        if (running(&b->seqs[i]))
            return true;
    return false;
}

/* Appends n rows of sequence i to the pass; the last wants logits if
 * asked. */
static void add_run(lm_batch_scheduler *b, int *rows, int *n_wanted, int i,
                    const int32_t *tokens, int n, bool logits)
{
    for (int r = 0; r < n; r++) {
        b->tokens[*rows + r] = tokens[r];
        b->row_seq[*rows + r] = i;
        b->want[*rows + r] = logits && r == n - 1;
    }
    *rows += n;
    if (logits)
        b->wanted[(*n_wanted)++] = i;
}

/* The prompt still reading that was admitted first among those not yet in
 * this pass (placed[]), or -1. */
static int oldest_prompt(const lm_batch_scheduler *b, const bool *placed)
{
    int best = -1;
    for (int i = 0; i < b->s->n_seq; i++) {
        const lm_batch_seq *q = &b->seqs[i];
        if (running(q) && !placed[i] && q->n_fed < q->n_prompt &&
            (best < 0 || q->admitted < b->seqs[best].admitted))
            best = i;
    }
    return best;
}

/* While a slot's proposals are mostly wrong, it proposes only now and then. */
#define LOOKUP_MIN_ACCEPTANCE 0.3
#define LOOKUP_PROBE_EVERY 16

/* Slot i's proposals for this pass (0 to max), from its own tokens. */
static int lookup_propose(lm_batch_scheduler *b, int i, int max)
{
    lm_batch_seq *q = &b->seqs[i];
    lm_slot_lookup *sl = &b->spec[i];
    /* OpenAI's penalties count tokens as they are sampled: not along a
     * proposal (such requests decode plainly) */
    if (q->counts)
        return 0;
    if (!sl->hist) { /* from the first token on: every token goes in */
        sl->hist = malloc((size_t)b->s->n_ctx * sizeof *sl->hist);
        sl->scratch = lm_sampler_new(&q->req.sampling, (int32_t)b->s->model->hp.n_vocab);
        if (!sl->hist || !sl->scratch) {
            spec_reset(sl);
            return 0;
        }
        memcpy(sl->hist, q->prompt, (size_t)q->n_prompt * sizeof *sl->hist);
        sl->n_hist = q->n_prompt;
        sl->hist[sl->n_hist++] = q->next;
        sl->acc = 1.4, sl->rej = 0.6;
    }
    if (max < 1)
        return 0;
    if (sl->acc / (sl->acc + sl->rej) < LOOKUP_MIN_ACCEPTANCE &&
        ++sl->since_probe < LOOKUP_PROBE_EVERY)
        return 0;
    sl->since_probe = 0;
    return lm_lookup_propose(sl->hist, sl->n_hist, 1, 4, max, sl->props);
}

/* The verdict on slot i's checking rows (logits: 1 + n_prop rows): the
 * tokens kept go through the ending rules, the rest leave the cache. */
static int lookup_judge(lm_batch_scheduler *b, int i, float *logits)
{
    lm_batch_seq *q = &b->seqs[i];
    lm_slot_lookup *sl = &b->spec[i];
    const lm_model *m = b->s->model;
    int32_t out[LM_SPEC_MAX_DRAFT + 1];
    const int n_out = lm_spec_judge(q->sampler, sl->scratch, logits, (int32_t)m->hp.n_vocab,
                                    sl->props, sl->n_prop, NULL, NULL, NULL, b->ids, b->probs,
                                    out);
    const int accepted = n_out - 1;
    lm_session_seq_rm(b->s, i, sl->pos + 1 + accepted);
    b->proposed += (uint64_t)sl->n_prop;
    b->accepted += (uint64_t)accepted;
    sl->acc = 0.9 * sl->acc + accepted;
    sl->rej = 0.9 * sl->rej + (accepted < sl->n_prop);
    for (int j = 0; j < n_out && !q->finish; j++) {
        const int before = q->n_generated;
        if (lm_batch_seq_take(q, m, out[j], sl->pos + 1 + j >= b->s->n_ctx) != 0)
            return -1;
        b->generated_tokens += (uint64_t)(q->n_generated - before);
        if (sl->n_hist < b->s->n_ctx)
            sl->hist[sl->n_hist++] = out[j];
    }
    sl->n_prop = 0;
    return 0;
}

int lm_batch_scheduler_pass(lm_batch_scheduler *b)
{
    lm_session *s = b->s;
    const size_t n_vocab = s->model->hp.n_vocab;
    int rows = 0, n_wanted = 0, prompt_rows = 0, generating = 0;
    bool *placed = b->placed;
    memset(placed, 0, (size_t)s->n_seq * sizeof *placed);
    for (int i = 0; i < s->n_seq; i++)
        generating += running(&b->seqs[i]) && b->seqs[i].n_fed == b->seqs[i].n_prompt;
    /* every generating sequence: its last token, and with lookup the
     * tokens it proposes to follow it, each row computed alone */
    for (int i = 0; i < s->n_seq; i++) {
        lm_batch_seq *q = &b->seqs[i];
        if (!running(q) || q->n_fed < q->n_prompt)
            continue;
        const int start = rows;
        add_run(b, &rows, &n_wanted, i, &q->next, 1, true);
        placed[i] = true;
        generating--;
        if (!b->lookup)
            continue;
        lm_slot_lookup *sl = &b->spec[i];
        const int pos = lm_session_seq_pos(s, i);
        int max = b->lookup;
        const int room = s->n_ctx - 1 - pos, left = q->max_tokens - q->n_generated - 1;
        const int free_rows = s->n_batch - rows - generating - b->chunk;
        max = max < room ? max : room;
        max = q->max_tokens < 0 || max < left ? max : left;
        max = max < free_rows ? max : free_rows;
        sl->n_prop = lookup_propose(b, i, max);
        sl->pos = pos;
        b->single[start] = sl->n_prop > 0;
        for (int j = 0; j < sl->n_prop; j++) {
            b->tokens[rows] = sl->props[j];
            b->row_seq[rows] = i;
            b->want[rows] = true;
            b->single[rows++] = true;
        }
    }
    /* then whole prompt runs, oldest first, while they fit; one that does
     * not waits for the next pass (never a shorter run: see the header) */
    for (int i; (i = oldest_prompt(b, placed)) >= 0;) {
        lm_batch_seq *q = &b->seqs[i];
        const int left = q->n_prompt - q->n_fed, run = left < b->chunk ? left : b->chunk;
        placed[i] = true;
        if (rows + run > s->n_batch)
            continue;
        for (int r = 0; b->single && r < run; r++)
            b->single[rows + r] = false;
        add_run(b, &rows, &n_wanted, i, q->prompt + q->n_fed, run, run == left);
        prompt_rows += run;
    }
    if (rows == 0)
        return 0;
    if (lm_session_decode_single(s, rows, b->tokens, b->row_seq, b->want, b->single,
                                 b->logits) != 0)
        return -1;
    b->prompt_tokens += (uint64_t)prompt_rows;
    for (int r = 0; r < rows; r++) {
        lm_batch_seq *q = &b->seqs[b->row_seq[r]];
        if (q->n_fed < q->n_prompt)
            q->n_fed++;
    }
    /* the logits come in row order: a slot's checking rows side by side */
    size_t at = 0;
    for (int k = 0; k < n_wanted; k++) {
        const int i = b->wanted[k];
        lm_batch_seq *q = &b->seqs[i];
        if (b->lookup && b->spec[i].n_prop > 0) {
            const int n_rows = 1 + b->spec[i].n_prop;
            if (lookup_judge(b, i, b->logits + at * n_vocab) != 0)
                return -1;
            at += (size_t)n_rows;
            continue;
        }
        const bool cache_full = lm_session_seq_pos(s, i) >= s->n_ctx;
        const int before = q->n_generated;
        if (lm_batch_seq_sample(q, s->model, b->logits + at * n_vocab, cache_full) != 0)
            return -1;
        at++;
        b->generated_tokens += (uint64_t)(q->n_generated - before);
        if (b->lookup && b->spec[i].hist && b->spec[i].n_hist < s->n_ctx && !q->finish)
            b->spec[i].hist[b->spec[i].n_hist++] = q->next;
    }
    return 0;
}

void lm_batch_scheduler_clear(lm_batch_scheduler *b, int i)
{
    lm_batch_seq_end(&b->seqs[i]);
    if (b->spec)
        spec_reset(&b->spec[i]);
    lm_session_seq_rm(b->s, i, 0);
}
