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

void lm_batch_scheduler_free(lm_batch_scheduler *b)
{
    for (int i = 0; b->seqs && i < b->s->n_seq; i++)
        lm_batch_seq_end(&b->seqs[i]);
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

int lm_batch_scheduler_pass(lm_batch_scheduler *b)
{
    lm_session *s = b->s;
    const size_t n_vocab = s->model->hp.n_vocab;
    int rows = 0, n_wanted = 0, prompt_rows = 0;
    bool *placed = b->placed;
    memset(placed, 0, (size_t)s->n_seq * sizeof *placed);
    /* every generating sequence: its last token */
    for (int i = 0; i < s->n_seq; i++) {
        lm_batch_seq *q = &b->seqs[i];
        if (running(q) && q->n_fed == q->n_prompt) {
            add_run(b, &rows, &n_wanted, i, &q->next, 1, true);
            placed[i] = true;
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
        add_run(b, &rows, &n_wanted, i, q->prompt + q->n_fed, run, run == left);
        prompt_rows += run;
    }
    if (rows == 0)
        return 0;
    if (lm_session_decode(s, rows, b->tokens, b->row_seq, b->want, b->logits) != 0)
        return -1;
    b->prompt_tokens += (uint64_t)prompt_rows;
    for (int r = 0; r < rows; r++) {
        lm_batch_seq *q = &b->seqs[b->row_seq[r]];
        if (q->n_fed < q->n_prompt)
            q->n_fed++;
    }
    for (int k = 0; k < n_wanted; k++) {
        const int i = b->wanted[k];
        lm_batch_seq *q = &b->seqs[i];
        const bool cache_full = lm_session_seq_pos(s, i) >= s->n_ctx;
        const int before = q->n_generated;
        if (lm_batch_seq_sample(q, s->model, b->logits + (size_t)k * n_vocab, cache_full) != 0)
            return -1;
        b->generated_tokens += (uint64_t)(q->n_generated - before);
    }
    return 0;
}

void lm_batch_scheduler_clear(lm_batch_scheduler *b, int i)
{
    lm_batch_seq_end(&b->seqs[i]);
    lm_session_seq_rm(b->s, i, 0);
}
