/* The public interface: thin wrappers over the internal types. */
#include "lamina.h"

#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>

#include "config.h"
#include "engine_open.h"
#include "error.h"
#include "model.h"
#include "sampler.h"
#include "session.h"

struct lamina_model {
    lm_model m;
};
struct lamina_session {
    lm_session s;
};

const char *lamina_version(void)
{
    return PACKAGE_VERSION;
}

const char *lamina_last_error(void)
{
    return lm_last_error();
}

lamina_model *lamina_model_load(const char *path)
{
    return (lamina_model *)lm_model_load(path);
}

void lamina_model_free(lamina_model *model)
{
    lm_model_free(model ? &model->m : NULL);
}

int32_t lamina_n_vocab(const lamina_model *model)
{
    return (int32_t)model->m.hp.n_vocab;
}

int lamina_token_is_eog(const lamina_model *model, int32_t id)
{
    return lm_tokenizer_is_eog(model->m.tokenizer, id);
}

int lamina_tokenize(const lamina_model *model, const char *text, int32_t **ids, size_t *n_ids)
{
    size_t len = 0;
    while (text[len])
        len++;
    return lm_tokenize(model->m.tokenizer, text, len, true, true, ids, n_ids);
}

int lamina_token_to_piece(const lamina_model *model, int32_t id, char *buf, size_t cap)
{
    return lm_token_to_piece(model->m.tokenizer, id, false, buf, cap);
}

lamina_session *lamina_session_new(const lamina_model *model, int n_ctx)
{
    return (lamina_session *)lm_session_new(&model->m, n_ctx, 512);
}

void lamina_session_free(lamina_session *session)
{
    lm_session_free(session ? &session->s : NULL);
}

int lamina_eval(lamina_session *session, const int32_t *ids, int n, float *logits)
{
    return lm_session_eval(&session->s, ids, n, false, logits);
}

void lamina_rewind(lamina_session *session, int pos)
{
    lm_session_rewind(&session->s, pos);
}

/* ---- the engine ---------------------------------------------------------- */

struct lamina_context {
    lm_session *s;
    int32_t n_vocab;
    float *logits;  /* n_batch rows: the last batch's wanted rows */
    int *row_of;    /* per token of the last batch: its row in logits, or -1 */
    int *seq;       /* n_batch: the batch's sequences as the engine takes them */
    bool *want;
};

lamina_context_params lamina_context_default_params(void)
{
    return (lamina_context_params){.n_seq = 1, .n_batch = 512, .quiet = 1};
}

lamina_context *lamina_context_new(const lamina_model *model, const lamina_context_params *params)
{
    const lamina_context_params d = lamina_context_default_params();
    const lamina_context_params *p = params ? params : &d;
    const lm_model *m = &model->m;
    if (p->n_threads > 0)
        omp_set_num_threads(p->n_threads);
    lm_engine_params e = lm_engine_default_params();
    e.n_ctx = p->n_ctx > 0 ? p->n_ctx : (m->hp.n_ctx_train < 4096 ? (int)m->hp.n_ctx_train : 4096);
    e.n_seq = p->n_seq > 0 ? p->n_seq : 1;
    e.n_batch = p->n_batch > 0 ? p->n_batch : 512;
    e.backend = p->backend;
    e.device = p->device;
    e.ram_budget = p->ram_budget;
    e.vram_budget = p->vram_budget;
    e.quiet = p->quiet != 0;
    lamina_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        lm_set_error("out of memory");
        return NULL;
    }
    ctx->n_vocab = (int32_t)m->hp.n_vocab;
    if (!(ctx->s = lm_engine_open(m, &e))) {
        free(ctx);
        return NULL;
    }
    const size_t nb = (size_t)ctx->s->n_batch;
    ctx->logits = malloc(nb * (size_t)ctx->n_vocab * sizeof *ctx->logits);
    ctx->row_of = malloc(nb * sizeof *ctx->row_of);
    ctx->seq = malloc(nb * sizeof *ctx->seq);
    ctx->want = malloc(nb * sizeof *ctx->want);
    if (!ctx->logits || !ctx->row_of || !ctx->seq || !ctx->want) {
        lamina_context_free(ctx);
        lm_set_error("out of memory for a batch of %zu", nb);
        return NULL;
    }
    for (size_t i = 0; i < nb; i++)
        ctx->row_of[i] = -1;
    return ctx;
}

void lamina_context_free(lamina_context *ctx)
{
    if (!ctx)
        return;
    lm_session_free(ctx->s);
    free(ctx->logits);
    free(ctx->row_of);
    free(ctx->seq);
    free(ctx->want);
    free(ctx);
}

int lamina_n_seq(const lamina_context *ctx)
{
    return ctx->s->n_seq;
}

int lamina_n_ctx_seq(const lamina_context *ctx)
{
    return ctx->s->n_ctx;
}

int lamina_decode(lamina_context *ctx, const lamina_batch *batch)
{
    const int n = batch->n_tokens;
    if (n < 1 || n > ctx->s->n_batch) {
        lm_set_error("a batch holds 1 to %d tokens, not %d", ctx->s->n_batch, n);
        return -1;
    }
    int rows = 0;
    for (int i = 0; i < n; i++) {
        ctx->seq[i] = batch->seq_id[i];
        ctx->want[i] = batch->logits ? batch->logits[i] != 0 : i == n - 1;
        ctx->row_of[i] = ctx->want[i] ? rows++ : -1;
    }
    const int rc = lm_session_decode(ctx->s, n, batch->token, ctx->seq, ctx->want, ctx->logits);
    if (rc != 0)
        for (int i = 0; i < n; i++)
            ctx->row_of[i] = -1;
    for (int i = n; i < ctx->s->n_batch; i++)
        ctx->row_of[i] = -1;
    return rc;
}

float *lamina_get_logits_ith(lamina_context *ctx, int i)
{
    if (i < 0 || i >= ctx->s->n_batch || ctx->row_of[i] < 0)
        return NULL;
    return ctx->logits + (size_t)ctx->row_of[i] * ctx->n_vocab;
}

int lamina_seq_pos(const lamina_context *ctx, int32_t seq)
{
    return lm_session_seq_pos(ctx->s, seq);
}

void lamina_seq_rm(lamina_context *ctx, int32_t seq, int pos)
{
    lm_session_seq_rm(ctx->s, seq, pos);
}

int lamina_seq_cp(lamina_context *ctx, int32_t src, int32_t dst, int n)
{
    return lm_session_seq_copy(ctx->s, src, dst, n);
}

/* ---- sampling ------------------------------------------------------------ */

struct lamina_sampler {
    lm_sampler *s;
};

lamina_sampler_params lamina_sampler_default_params(void)
{
    const lm_sampler_params d = lm_sampler_default_params();
    return (lamina_sampler_params){d.temp, d.top_k, d.top_p, d.min_p, d.repeat_penalty,
                                   d.repeat_last_n, d.seed};
}

lamina_sampler *lamina_sampler_new(const lamina_model *model, const lamina_sampler_params *params)
{
    const lamina_sampler_params d = lamina_sampler_default_params();
    const lamina_sampler_params *p = params ? params : &d;
    const lm_sampler_params sp = {p->temp, p->top_k, p->top_p, p->min_p, p->repeat_penalty,
                                  p->repeat_last_n, p->seed};
    lamina_sampler *s = malloc(sizeof *s);
    if (!s || !(s->s = lm_sampler_new(&sp, (int32_t)model->m.hp.n_vocab))) {
        free(s);
        lm_set_error("out of memory");
        return NULL;
    }
    return s;
}

void lamina_sampler_free(lamina_sampler *sampler)
{
    if (sampler)
        lm_sampler_free(sampler->s);
    free(sampler);
}

int32_t lamina_sampler_sample(lamina_sampler *sampler, lamina_context *ctx, int i)
{
    float *logits = lamina_get_logits_ith(ctx, i);
    if (!logits) {
        lm_set_error("token %d of the last batch has no logits", i);
        return -1;
    }
    const int32_t t = lm_sampler_sample(sampler->s, logits);
    lm_sampler_accept(sampler->s, t);
    return t;
}

void lamina_sampler_accept(lamina_sampler *sampler, int32_t token)
{
    lm_sampler_accept(sampler->s, token);
}
