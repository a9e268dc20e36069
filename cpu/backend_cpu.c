/* The CPU backend: a transformer layer on the OpenMP threads, reading the
 * quantized weights where the executor says they are. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"
#include "quant.h"

typedef struct {
    lm_backend base;
    lm_fp16 **k_cache, **v_cache; /* per layer: n_seq x n_ctx rows of n_head_kv*head_dim */
    lm_run *runs;                 /* n_batch: the runs of the current pass */
    float *xn, *q, *k, *v, *att, *gate, *up, *tmp; /* n_batch rows each */
    float *scores;                /* per thread: n_ctx */
    void *scratch;                /* lm_cpu_matmul's activation blocks */
} cpu_backend;

static void matmul(cpu_backend *cb, const lm_gguf_tensor *t, const void *data, const float *x,
                   int n, float *y)
{
    lm_cpu_matmul(t->type, data, (int64_t)t->ne[1], (int64_t)t->ne[0], x, n, y, cb->scratch);
}

static const float *f32_data(const void *p)
{
    return (const float *)p;
}

/* Where sequence seq's cache rows start in a layer's cache. */
static size_t seq_base(const lm_backend *b, int seq)
{
    const lm_hparams *hp = &b->model->hp;
    return (size_t)seq * b->n_ctx * hp->n_head_kv * hp->head_dim;
}

static int cpu_forward_layer(lm_backend *b, int il, const lm_layer_view *w, float *x,
                             const lm_rows *rows)
{
    cpu_backend *cb = (cpu_backend *)b;
    const lm_model *m = b->model;
    const lm_hparams *hp = &m->hp;
    const lm_layer *L = &m->layers[il];
    const int n = rows->n, n_embd = hp->n_embd, q_dim = hp->n_head * hp->head_dim;
    const int kv_dim = hp->n_head_kv * hp->head_dim;

    if (lm_backend_check_rows(b, rows) != 0)
        return -1;
    if (!cb->k_cache[il]) {
        lm_set_error("internal: layer %d is not one the CPU backend was given", il);
        return -1;
    }
    const int n_runs = lm_rows_runs(rows, cb->runs);
    /* attention */
    lm_rmsnorm(cb->xn, x, f32_data(w->data[LM_W_ATTN_NORM]), n, n_embd, hp->norm_eps);
    matmul(cb, L->t[LM_W_Q], w->data[LM_W_Q], cb->xn, n, cb->q);
    matmul(cb, L->t[LM_W_K], w->data[LM_W_K], cb->xn, n, cb->k);
    matmul(cb, L->t[LM_W_V], w->data[LM_W_V], cb->xn, n, cb->v);
    if (w->data[LM_W_Q_BIAS])
        lm_add_bias(cb->q, f32_data(w->data[LM_W_Q_BIAS]), n, q_dim);
    if (w->data[LM_W_K_BIAS])
        lm_add_bias(cb->k, f32_data(w->data[LM_W_K_BIAS]), n, kv_dim);
    if (w->data[LM_W_V_BIAS])
        lm_add_bias(cb->v, f32_data(w->data[LM_W_V_BIAS]), n, kv_dim);
    /* each run over its own sequence's cache, as if it were alone */
    for (int i = 0; i < n_runs; i++) {
        const lm_run *r = &cb->runs[i];
        float *q = cb->q + (size_t)r->row0 * q_dim, *k = cb->k + (size_t)r->row0 * kv_dim;
        float *v = cb->v + (size_t)r->row0 * kv_dim, *att = cb->att + (size_t)r->row0 * q_dim;
        lm_fp16 *kc = cb->k_cache[il] + seq_base(b, r->seq);
        lm_fp16 *vc = cb->v_cache[il] + seq_base(b, r->seq);
        lm_rope(q, r->n, hp->n_head, hp->head_dim, r->pos0, &m->rope);
        lm_rope(k, r->n, hp->n_head_kv, hp->head_dim, r->pos0, &m->rope);
        lm_store_fp16(kc, k, r->n, kv_dim, r->pos0);
        lm_store_fp16(vc, v, r->n, kv_dim, r->pos0);
        lm_attention(att, q, kc, vc, r->n, r->pos0, hp->n_head, hp->n_head_kv, hp->head_dim,
                     cb->scores, b->n_ctx);
    }
    matmul(cb, L->t[LM_W_O], w->data[LM_W_O], cb->att, n, cb->tmp);
    lm_add(x, cb->tmp, (int64_t)n * n_embd);

    /* feed-forward */
    lm_rmsnorm(cb->xn, x, f32_data(w->data[LM_W_FFN_NORM]), n, n_embd, hp->norm_eps);
    matmul(cb, L->t[LM_W_GATE], w->data[LM_W_GATE], cb->xn, n, cb->gate);
    matmul(cb, L->t[LM_W_UP], w->data[LM_W_UP], cb->xn, n, cb->up);
    lm_swiglu(cb->gate, cb->gate, cb->up, (int64_t)n * hp->n_ff);
    matmul(cb, L->t[LM_W_DOWN], w->data[LM_W_DOWN], cb->gate, n, cb->tmp);
    lm_add(x, cb->tmp, (int64_t)n * n_embd);
    return 0;
}

static int cpu_output(lm_backend *b, const float *x, int n, float *logits)
{
    cpu_backend *cb = (cpu_backend *)b;
    const lm_model *m = b->model;
    if (n > b->n_batch) {
        lm_set_error("internal: output batch of %d exceeds %d", n, b->n_batch);
        return -1;
    }
    lm_rmsnorm(cb->xn, x, f32_data(m->output_norm->data), n, m->hp.n_embd, m->hp.norm_eps);
    matmul(cb, m->output, m->output->data, cb->xn, n, logits);
    return 0;
}

static int cpu_seq_copy(lm_backend *b, int src, int dst, int n)
{
    cpu_backend *cb = (cpu_backend *)b;
    const lm_hparams *hp = &b->model->hp;
    const size_t bytes = (size_t)n * hp->n_head_kv * hp->head_dim * sizeof(lm_fp16);
    if (src == dst)
        return 0;
    for (uint32_t il = 0; il < hp->n_layer; il++)
        if (cb->k_cache[il]) {
            memcpy(cb->k_cache[il] + seq_base(b, dst), cb->k_cache[il] + seq_base(b, src), bytes);
            memcpy(cb->v_cache[il] + seq_base(b, dst), cb->v_cache[il] + seq_base(b, src), bytes);
        }
    return 0;
}

static void cpu_free(lm_backend *b)
{
    cpu_backend *cb = (cpu_backend *)b;
    if (!cb)
        return;
    for (uint32_t il = 0; cb->k_cache && il < b->model->hp.n_layer; il++) {
        free(cb->k_cache[il]);
        free(cb->v_cache[il]);
    }
    free(cb->k_cache);
    free(cb->v_cache);
    float *bufs[] = {cb->xn, cb->q, cb->k, cb->v, cb->att, cb->gate, cb->up, cb->tmp, cb->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        free(bufs[i]);
    free(cb->scratch);
    free(cb->runs);
    free(cb);
}

static const lm_backend_ops cpu_ops = {
    .name = "cpu",
    .forward_layer = cpu_forward_layer,
    .output = cpu_output,
    .seq_copy = cpu_seq_copy,
    .free = cpu_free,
};

/* The largest activation scratch any product of this model needs. */
static size_t max_scratch(const lm_model *m, int n_batch)
{
    size_t most = lm_cpu_matmul_scratch_size(m->output->type, m->hp.n_embd, n_batch);
    for (uint32_t il = 0; il < m->hp.n_layer; il++)
        for (int w = 0; w < LM_W_PER_LAYER; w++) {
            const lm_gguf_tensor *t = m->layers[il].t[w];
            if (t && t->n_dims == 2) {
                size_t s = lm_cpu_matmul_scratch_size(t->type, (int64_t)t->ne[0], n_batch);
                if (s > most)
                    most = s;
            }
        }
    return most;
}

lm_backend *lm_backend_cpu_new(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                               const lm_backend_share *share)
{
    const lm_hparams *hp = &m->hp;
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb)
        goto oom;
    cb->base = (lm_backend){
        .ops = &cpu_ops, .model = m, .n_ctx = n_ctx, .n_seq = n_seq, .n_batch = n_batch};
    const size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    cb->k_cache = calloc(hp->n_layer, sizeof *cb->k_cache);
    cb->v_cache = calloc(hp->n_layer, sizeof *cb->v_cache);
    if (!cb->k_cache || !cb->v_cache)
        goto oom;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        if (share && share->layers && share->layers[il] == LM_RUN_NONE)
            continue; /* another backend keeps this layer's cache */
        cb->k_cache[il] = malloc((size_t)n_seq * n_ctx * kv_dim * sizeof(lm_fp16));
        cb->v_cache[il] = malloc((size_t)n_seq * n_ctx * kv_dim * sizeof(lm_fp16));
        if (!cb->k_cache[il] || !cb->v_cache[il])
            goto oom;
    }
    const size_t nb = (size_t)n_batch;
    cb->xn = malloc(nb * hp->n_embd * sizeof(float));
    cb->tmp = malloc(nb * hp->n_embd * sizeof(float));
    cb->q = malloc(nb * q_dim * sizeof(float));
    cb->att = malloc(nb * q_dim * sizeof(float));
    cb->k = malloc(nb * kv_dim * sizeof(float));
    cb->v = malloc(nb * kv_dim * sizeof(float));
    cb->gate = malloc(nb * hp->n_ff * sizeof(float));
    cb->up = malloc(nb * hp->n_ff * sizeof(float));
    cb->scores = malloc((size_t)omp_get_max_threads() *
                        lm_attention_scratch_floats(n_ctx, hp->n_head, hp->n_head_kv) *
                        sizeof(float));
    cb->scratch = malloc(max_scratch(m, n_batch) + 64);
    cb->runs = malloc(nb * sizeof *cb->runs);
    if (!cb->runs || !cb->xn || !cb->tmp || !cb->q || !cb->att || !cb->k || !cb->v || !cb->gate || !cb->up ||
        !cb->scores || !cb->scratch)
        goto oom;
    return &cb->base;
oom:
    lm_set_error("out of memory for the CPU backend (%d sequences of %d positions, batch %d)",
                 n_seq, n_ctx, n_batch);
    cpu_free(cb ? &cb->base : NULL);
    return NULL;
}
