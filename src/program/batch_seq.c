#define _GNU_SOURCE /* memmem */
#include "batch_seq.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

static int append(lm_batch_seq *q, const char *bytes, size_t n)
{
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 256;
        while (cap < q->len + n + 1)
            cap *= 2;
        char *grown = realloc(q->text, cap);
        if (!grown) {
            lm_set_error("out of memory");
            return -1;
        }
        q->text = grown;
        q->cap = cap;
    }
    memcpy(q->text + q->len, bytes, n);
    q->len += n;
    q->text[q->len] = '\0';
    return 0;
}

static int append_piece(lm_batch_seq *q, const lm_tokenizer *tok, int32_t id)
{
    char buf[256];
    int len = lm_token_to_piece(tok, id, false, buf, sizeof buf);
    if (len < 0) {
        lm_set_error("token %d has no text", id);
        return -1;
    }
    if ((size_t)len <= sizeof buf)
        return append(q, buf, (size_t)len);
    char *big = malloc((size_t)len);
    if (!big) {
        lm_set_error("out of memory");
        return -1;
    }
    lm_token_to_piece(tok, id, false, big, (size_t)len);
    int rc = append(q, big, (size_t)len);
    free(big);
    return rc;
}

/* With echo the text starts with the prompt: as given, or the ids' text. */
static int echo_prompt(lm_batch_seq *q, const lm_tokenizer *tok)
{
    if (q->req.prompt)
        return append(q, q->req.prompt, strlen(q->req.prompt));
    for (int i = 0; i < q->n_prompt; i++)
        if (append_piece(q, tok, q->prompt[i]) != 0)
            return -1;
    return 0;
}

int lm_batch_seq_start(lm_batch_seq *q, const lm_model *m, lm_batch_request *req,
                       int32_t *prompt, int n, int max_tokens, uint64_t admitted)
{
    *q = (lm_batch_seq){
        .busy = true, .req = *req, .admitted = admitted, .prompt = prompt, .n_prompt = n,
        .max_tokens = max_tokens,
    };
    memset(req, 0, sizeof *req);
    const int32_t n_vocab = (int32_t)m->hp.n_vocab;
    if (!(q->sampler = lm_sampler_new(&q->req.sampling, n_vocab)))
        goto fail;
    for (int i = 0; i < n; i++)
        lm_sampler_accept(q->sampler, prompt[i]);
    if (q->req.frequency_penalty != 0 || q->req.presence_penalty != 0) {
        q->counts = calloc((size_t)n_vocab, sizeof *q->counts);
        q->seen = malloc((size_t)n_vocab * sizeof *q->seen);
        if (!q->counts || !q->seen) {
            lm_set_error("out of memory");
            goto fail;
        }
    }
    if (q->req.echo && echo_prompt(q, m->tokenizer) != 0)
        goto fail;
    q->echo_len = q->len;
    if (max_tokens == 0)
        q->finish = "length";
    return 0;
fail:
    lm_batch_seq_end(q);
    return -1;
}

/* OpenAI's penalties, on the tokens generated so far: each one's logit
 * loses frequency_penalty per occurrence and presence_penalty once.  (The
 * sampler's repeat_penalty is llama.cpp's, a factor over a window.) */
static void apply_penalties(const lm_batch_seq *q, float *logits)
{
    for (int i = 0; q->counts && i < q->n_seen; i++) {
        const int32_t t = q->seen[i];
        logits[t] -= q->req.frequency_penalty * (float)q->counts[t] + q->req.presence_penalty;
    }
}

/* Whether a stop string has appeared in the text since it was last looked
 * at (the new piece, with room for a stop string that began in earlier
 * ones); the text is cut where the first one starts. */
static bool cut_at_stop(lm_batch_seq *q, size_t before)
{
    const char *first = NULL;
    for (size_t i = 0; i < q->req.n_stop; i++) {
        const size_t n = strlen(q->req.stop[i]);
        size_t from = before > q->echo_len + n - 1 ? before - (n - 1) : q->echo_len;
        const char *hit = memmem(q->text + from, q->len - from, q->req.stop[i], n);
        if (hit && (!first || hit < first))
            first = hit;
    }
    if (first) {
        q->len = (size_t)(first - q->text);
        q->text[q->len] = '\0';
    }
    return first != NULL;
}

int lm_batch_seq_sample(lm_batch_seq *q, const lm_model *m, float *logits, bool cache_full)
{
    apply_penalties(q, logits);
    return lm_batch_seq_take(q, m, lm_sampler_sample(q->sampler, logits), cache_full);
}

int lm_batch_seq_take(lm_batch_seq *q, const lm_model *m, int32_t id, bool cache_full)
{
    if (lm_tokenizer_is_eog(m->tokenizer, id)) {
        q->finish = "stop";
        return 0;
    }
    lm_sampler_accept(q->sampler, id);
    if (q->counts && q->counts[id]++ == 0)
        q->seen[q->n_seen++] = id;
    q->n_generated++;
    q->next = id;
    const size_t before = q->len;
    if (append_piece(q, m->tokenizer, id) != 0)
        return -1;
    if (cut_at_stop(q, before))
        q->finish = "stop";
    else if ((q->max_tokens >= 0 && q->n_generated >= q->max_tokens) || cache_full)
        q->finish = "length";
    return 0;
}

void lm_batch_seq_end(lm_batch_seq *q)
{
    lm_batch_request_free(&q->req);
    lm_sampler_free(q->sampler);
    free(q->prompt);
    free(q->text);
    free(q->counts);
    free(q->seen);
    memset(q, 0, sizeof *q);
}
