/* The CPU backend: the block's operations (src/arch/block.h) on the OpenMP
 * threads over host arrays, reading the quantized weights where the
 * executor says they are. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "backend.h"
#include "error.h"
#include "expert_cache.h"
#include "expert_trace.h"
#include "kernels.h"
#include "ops.h"
#include "quant.h"

typedef struct {
    lm_backend base;
    lm_fp16 **k_cache, **v_cache; /* per layer: n_seq x n_ctx rows of n_head_kv*head_dim */
    lm_run *runs;                 /* n_batch: the runs of the current pass */
    float *act[LM_A_COUNT];       /* n_batch rows each; LM_A_X is the caller's */
    int width[LM_A_COUNT];        /* floats per row of each */
    float *scores;                /* per thread: n_ctx */
    /* a mixture of experts' scratch (NULL for a dense model): the router's
     * logits and probabilities, each row's picks and weights, the rows one
     * expert takes (gathered), its FFN, and every (row, pick)'s output */
    float *moe_logits, *moe_probs, *moe_weights, *moe_x, *moe_gate, *moe_up, *moe_down;
    float *moe_out;
    int32_t *moe_picked;
    int *moe_slots;
    void *scratch;                /* lm_cpu_matmul's activation blocks */
    /* the layer and pass bound for the block's operations */
    int il, n, n_runs;
    const lm_layer_view *w;
} cpu_backend;

/* Where sequence seq's cache rows start in a layer's cache. */
static size_t seq_base(const lm_backend *b, int seq)
{
    const lm_hparams *hp = &b->model->hp;
    return (size_t)seq * b->n_ctx * hp->n_head_kv * hp->head_dim;
}

/* ---- the block's operations (src/arch/block.h) over host arrays --------- */

static const float *weight_f32(const cpu_backend *cb, int w)
{
    return (const float *)cb->w->data[w];
}

static int op_rmsnorm(void *ctx, lm_act out, lm_act in, int w, int dim)
{
    cpu_backend *cb = ctx;
    lm_rmsnorm(cb->act[out], cb->act[in], weight_f32(cb, w), cb->n * (cb->width[in] / dim), dim,
               cb->base.model->hp.norm_eps);
    return 0;
}

static int op_matmul(void *ctx, lm_act out, int w, lm_act in)
{
    cpu_backend *cb = ctx;
    const lm_gguf_tensor *t = cb->base.model->layers[cb->il].t[w];
    lm_cpu_matmul(t->type, cb->w->data[w], (int64_t)t->ne[1], (int64_t)t->ne[0], cb->act[in],
                  cb->n, cb->act[out], cb->scratch);
    return 0;
}

static int op_add_bias(void *ctx, lm_act x, int w, int dim)
{
    cpu_backend *cb = ctx;
    lm_add_bias(cb->act[x], weight_f32(cb, w), cb->n, dim);
    return 0;
}

/* each run from its own first position, as if it were alone */
static int op_rope(void *ctx, lm_act x, int n_heads, lm_rope_kind kind)
{
    cpu_backend *cb = ctx;
    const lm_model *m = cb->base.model;
    const lm_rope_params *rp = kind == LM_ROPE_SWA ? &m->rope_swa : &m->rope;
    const int head_dim = (int)m->hp.head_dim;
    for (int i = 0; i < cb->n_runs; i++) {
        const lm_run *r = &cb->runs[i];
        lm_rope(cb->act[x] + (size_t)r->row0 * n_heads * head_dim, r->n, n_heads, head_dim,
                r->pos0, rp);
    }
    return 0;
}

/* each run over its own sequence's cache */
static int op_attention(void *ctx, lm_act out, lm_act q, lm_act k, lm_act v, int window,
                        float kq_scale)
{
    cpu_backend *cb = ctx;
    const lm_backend *b = &cb->base;
    const lm_hparams *hp = &b->model->hp;
    const int q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    for (int i = 0; i < cb->n_runs; i++) {
        const lm_run *r = &cb->runs[i];
        lm_fp16 *kc = cb->k_cache[cb->il] + seq_base(b, r->seq);
        lm_fp16 *vc = cb->v_cache[cb->il] + seq_base(b, r->seq);
        lm_store_fp16(kc, cb->act[k] + (size_t)r->row0 * kv_dim, r->n, kv_dim, r->pos0);
        lm_store_fp16(vc, cb->act[v] + (size_t)r->row0 * kv_dim, r->n, kv_dim, r->pos0);
        lm_attention(cb->act[out] + (size_t)r->row0 * q_dim, cb->act[q] + (size_t)r->row0 * q_dim,
                     kc, vc, r->n, r->pos0, hp->n_head, hp->n_head_kv, hp->head_dim, window,
                     kq_scale, cb->scores, b->n_ctx);
    }
    return 0;
}

static int op_swiglu(void *ctx, lm_act gate, lm_act up, int dim)
{
    cpu_backend *cb = ctx;
    lm_swiglu(cb->act[gate], cb->act[gate], cb->act[up], (int64_t)cb->n * dim);
    return 0;
}

static int op_geglu(void *ctx, lm_act gate, lm_act up, int dim)
{
    cpu_backend *cb = ctx;
    lm_geglu(cb->act[gate], cb->act[up], (int64_t)cb->n * dim);
    return 0;
}

static int op_columns(void *ctx, lm_act out, lm_act in, int in_width, int col0, int width)
{
    cpu_backend *cb = ctx;
    for (int t = 0; t < cb->n; t++)
        memcpy(cb->act[out] + (size_t)t * cb->width[out],
               cb->act[in] + (size_t)t * in_width + col0, (size_t)width * sizeof(float));
    return 0;
}

/* expert e's matrix of a stacked (3-D) tensor of role w */
/* Expert e's matrix of stacked tensor w, in the layer's view. */
static const void *expert_matrix(const cpu_backend *cb, int w, int e)
{
    const lm_gguf_tensor *t = cb->base.model->layers[cb->il].t[w];
    return (const uint8_t *)cb->w->data[w] +
           (size_t)e * t->ne[1] * lm_row_size(t->type, (int64_t)t->ne[0]);
}

static void expert_matmul(cpu_backend *cb, int w, const void *matrix, const float *x, int n,
                          float *y)
{
    const lm_gguf_tensor *t = cb->base.model->layers[cb->il].t[w];
    lm_cpu_matmul(t->type, matrix, (int64_t)t->ne[1], (int64_t)t->ne[0], x, n, y, cb->scratch);
}

/* Expert e's SwiGLU FFN (matrices gate, up, down) over the rows of x that
 * picked it, each output into its pick's place in moe_out. */
static void run_expert(cpu_backend *cb, int e, const float *x, const void *const mats[3])
{
    const lm_hparams *hp = &cb->base.model->hp;
    const int n = cb->n, K = (int)hp->n_expert_used, D = (int)hp->n_embd;
    const int F = (int)hp->n_ff_exp;
    int rows = 0;
    for (int s = 0; s < n * K; s++)
        if (cb->moe_picked[s] == e) {
            memcpy(cb->moe_x + (size_t)rows * D, x + (size_t)(s / K) * D, D * sizeof(float));
            cb->moe_slots[rows++] = s;
        }
    expert_matmul(cb, LM_W_GATE_EXPS, mats[0], cb->moe_x, rows, cb->moe_gate);
    expert_matmul(cb, LM_W_UP_EXPS, mats[1], cb->moe_x, rows, cb->moe_up);
    lm_swiglu(cb->moe_gate, cb->moe_gate, cb->moe_up, (int64_t)rows * F);
    expert_matmul(cb, LM_W_DOWN_EXPS, mats[2], cb->moe_gate, rows, cb->moe_down);
    for (int i = 0; i < rows; i++)
        memcpy(cb->moe_out + (size_t)cb->moe_slots[i] * D, cb->moe_down + (size_t)i * D,
               D * sizeof(float));
}

static int op_moe(void *ctx, lm_act out, lm_act in)
{
    cpu_backend *cb = ctx;
    const lm_model *m = cb->base.model;
    const lm_hparams *hp = &m->hp;
    const int n = cb->n, E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    const int D = (int)hp->n_embd;
    const float *x = cb->act[in];
    const lm_gguf_tensor *router = m->layers[cb->il].t[LM_W_FFN_ROUTER];
    lm_cpu_matmul(router->type, cb->w->data[LM_W_FFN_ROUTER], E, D, x, n, cb->moe_logits,
                  cb->scratch);
    for (int t = 0; t < n; t++)
        lm_moe_route(cb->moe_logits + (size_t)t * E, E, K, hp->expert_norm, cb->moe_probs,
                     cb->moe_picked + (size_t)t * K, cb->moe_weights + (size_t)t * K);
    /* the experts any row picked, each computed once over its rows (the
     * order does not change a number: each writes its own picks' places) */
    int32_t used[LM_MAX_EXPERTS];
    bool picked[LM_MAX_EXPERTS] = {false};
    int n_used = 0;
    for (int s = 0; s < n * K; s++)
        picked[cb->moe_picked[s]] = true;
    for (int e = 0; e < E; e++)
        if (picked[e])
            used[n_used++] = e;
    lm_expert_trace_add(cb->w->trace, cb->il, n, used, n_used);
    lm_expert_cache *cache = cb->w->experts;
    if (cache) /* read what is not cached while the rest computes */
        lm_expert_cache_want(cache, cb->il, used, n_used);
    for (int i = 0; i < n_used; i++) {
        const void *mats[3];
        if (!cache) {
            for (int r = 0; r < 3; r++)
                mats[r] = expert_matrix(cb, LM_W_GATE_EXPS + r, used[i]);
        } else if (lm_expert_cache_acquire(cache, cb->il, used[i], mats) != 0) {
            return -1;
        }
        run_expert(cb, used[i], x, mats);
        if (cache)
            lm_expert_cache_release(cache, cb->il, used[i]);
    }
    /* per row: each pick's output times its weight, added highest first */
    for (int t = 0; t < n; t++) {
        float *o = cb->act[out] + (size_t)t * D;
        const float *w = cb->moe_weights + (size_t)t * K;
        const float *eo = cb->moe_out + (size_t)t * K * D;
        for (int d = 0; d < D; d++) {
            float acc = eo[d] * w[0];
            for (int k = 1; k < K; k++) {
                const float p = eo[(size_t)k * D + d] * w[k];
                acc = acc + p;
            }
            o[d] = acc;
        }
    }
    return 0;
}

static int op_sigmoid_gate(void *ctx, lm_act x, lm_act g, int dim)
{
    cpu_backend *cb = ctx;
    for (int t = 0; t < cb->n; t++) {
        /* ggml_silu of one value (libm's expf: no vector chunk), then / g */
        const float v = cb->act[g][t];
        const float gate = v / (1.0f + expf(-v)) / v;
        float *row = cb->act[x] + (size_t)t * dim;
        for (int d = 0; d < dim; d++)
            row[d] *= gate;
    }
    return 0;
}

static int op_scale(void *ctx, lm_act x, float factor, int dim)
{
    cpu_backend *cb = ctx;
    lm_scale(cb->act[x], factor, (int64_t)cb->n * dim);
    return 0;
}

static int op_add(void *ctx, lm_act x, lm_act y, int dim)
{
    cpu_backend *cb = ctx;
    lm_add(cb->act[x], cb->act[y], (int64_t)cb->n * dim);
    return 0;
}

static const lm_block_ops block_ops = {
    .rmsnorm = op_rmsnorm, .matmul = op_matmul, .add_bias = op_add_bias, .rope = op_rope,
    .attention = op_attention, .swiglu = op_swiglu, .geglu = op_geglu, .scale = op_scale,
    .columns = op_columns, .moe = op_moe, .sigmoid_gate = op_sigmoid_gate,
    .add = op_add,
};

/* x_flags do not matter here: x is always the host's */
static int cpu_forward_layer(lm_backend *b, int il, const lm_layer_view *w, float *x,
                             const lm_rows *rows, unsigned x_flags)
{
    (void)x_flags;
    cpu_backend *cb = (cpu_backend *)b;
    const lm_model *m = b->model;
    if (lm_backend_check_rows(b, rows) != 0)
        return -1;
    if (!cb->k_cache[il]) {
        lm_set_error("internal: layer %d is not one the CPU backend was given", il);
        return -1;
    }
    cb->il = il;
    cb->w = w;
    cb->n = rows->n;
    cb->n_runs = lm_rows_runs(rows, cb->runs);
    cb->act[LM_A_X] = x;
    const lm_block blk = {
        .ops = &block_ops, .ctx = cb, .model = m, .layer = &m->layers[il], .il = il};
    return m->hp.arch->block(&blk);
}

static int cpu_output(lm_backend *b, const float *x, int n, float *logits)
{
    cpu_backend *cb = (cpu_backend *)b;
    const lm_model *m = b->model;
    if (n > b->n_batch) {
        lm_set_error("internal: output batch of %d exceeds %d", n, b->n_batch);
        return -1;
    }
    float *xn = cb->act[LM_A_XN];
    lm_rmsnorm(xn, x, (const float *)m->output_norm->data, n, m->hp.n_embd, m->hp.norm_eps);
    lm_cpu_matmul(m->output->type, m->output->data, (int64_t)m->output->ne[1],
                  (int64_t)m->output->ne[0], xn, n, logits, cb->scratch);
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
    for (int a = 0; a < LM_A_COUNT; a++)
        if (a != LM_A_X)
            free(cb->act[a]);
    float *moe[] = {cb->moe_logits, cb->moe_probs, cb->moe_weights, cb->moe_x,
                    cb->moe_gate,   cb->moe_up,    cb->moe_down,    cb->moe_out};
    for (size_t i = 0; i < sizeof moe / sizeof *moe; i++)
        free(moe[i]);
    free(cb->moe_picked);
    free(cb->moe_slots);
    free(cb->scores);
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
            if (t && (t->n_dims >= 2 || w == LM_W_SHEXP_ROUTER)) { /* a matrix's, or a one-row one */
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
    /* GATE and UP hold the dense FFN's or the shared expert's, the wider */
    const size_t ff = hp->n_ff_shexp > hp->n_ff ? hp->n_ff_shexp : hp->n_ff;
    const size_t width[LM_A_COUNT] = {
        [LM_A_X] = hp->n_embd,  [LM_A_XN] = hp->n_embd, [LM_A_TMP] = hp->n_embd,
        [LM_A_Q] = q_dim,       [LM_A_ATT] = q_dim,     [LM_A_K] = kv_dim,
        [LM_A_V] = kv_dim,      [LM_A_GATE] = ff,       [LM_A_UP] = ff,
        [LM_A_WIDE] = lm_arch_wide_width(m),
    };
    for (int a = 0; a < LM_A_COUNT; a++) {
        cb->width[a] = (int)width[a];
        if (a != LM_A_X && width[a] && !(cb->act[a] = malloc(nb * width[a] * sizeof(float))))
            goto oom;
    }
    cb->scores = malloc((size_t)omp_get_max_threads() *
                        lm_attention_scratch_floats(n_ctx, hp->head_dim) * sizeof(float));
    cb->scratch = malloc(max_scratch(m, n_batch) + 64);
    cb->runs = malloc(nb * sizeof *cb->runs);
    if (!cb->runs || !cb->scores || !cb->scratch)
        goto oom;
    if (hp->n_expert) {
        const size_t E = hp->n_expert, K = hp->n_expert_used, F = hp->n_ff_exp;
        const size_t slots = nb * K, f = sizeof(float);
        cb->moe_logits = malloc(nb * E * f);
        cb->moe_probs = malloc(E * f);
        cb->moe_weights = malloc(slots * f);
        cb->moe_x = malloc(nb * hp->n_embd * f); /* an expert takes a row at most once */
        cb->moe_gate = malloc(nb * F * f);
        cb->moe_up = malloc(nb * F * f);
        cb->moe_down = malloc(nb * hp->n_embd * f);
        cb->moe_out = malloc(slots * hp->n_embd * f);
        cb->moe_picked = malloc(slots * sizeof *cb->moe_picked);
        cb->moe_slots = malloc(nb * sizeof *cb->moe_slots);
        if (!cb->moe_logits || !cb->moe_probs || !cb->moe_weights || !cb->moe_x ||
            !cb->moe_gate || !cb->moe_up || !cb->moe_down || !cb->moe_out || !cb->moe_picked ||
            !cb->moe_slots)
            goto oom;
    }
    return &cb->base;
oom:
    lm_set_error("out of memory for the CPU backend (%d sequences of %d positions, batch %d)",
                 n_seq, n_ctx, n_batch);
    cpu_free(cb ? &cb->base : NULL);
    return NULL;
}
