/* A mixture of experts' feed-forward on the device (block.h's moe and
 * sigmoid_gate), computed as cpu/backend_cpu.c's op_moe computes it, so
 * the logits stay the CPU's bit for bit:
 *  - the router's product on the device; its logits come back to the host,
 *    which routes each row with cpu/moe.c's lm_moe_route (the softmax's
 *    exponentials and the top-k are the CPU's own, not a kernel's copy);
 *  - each expert any row picked runs once over those rows (gathered), its
 *    three matrices read in place in the layer's stacked tensors at the
 *    expert's offset, through the same matvec kernels as a dense layer;
 *  - every (row, pick)'s output is weighted and added in the picks' order.
 * The shared expert's sigmoid gate is one value per row, computed on the
 * host with libm's expf as the CPU does, since a device's exp need not
 * round as glibc's does. */
#include "backend_cl.h" /* first: it fixes the OpenCL version to 1.2 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "expert_cache.h"
#include "expert_trace.h"
#include "ops.h"
#include "quant.h"

/* Expert e's matrix of stacked tensor t starts this many bytes in. */
static uint64_t expert_offset(const lm_gguf_tensor *t, int e)
{
    return (uint64_t)e * t->ne[1] * lm_row_size(t->type, (int64_t)t->ne[0]);
}

/* Expert e's SwiGLU FFN over the count rows of x whose (row, pick)s are at
 * list0 in the uploaded list, each output into its pick's place.  Its
 * matrices: in the layer's stacked tensors on the device, or in a slot of
 * the device's expert cache. */
static int run_expert(cl_backend *cb, int e, cl_mem x, int list0, int count)
{
    const lm_model *m = cb->base.model;
    const lm_layer *L = &m->layers[cb->il];
    lm_cl_moe *mo = &cb->moe;
    const int D = (int)m->hp.n_embd, F = (int)m->hp.n_ff_exp, K = (int)m->hp.n_expert_used;
    const size_t gx = (size_t)count * D, gf = (size_t)count * F;
    const lm_gguf_tensor *gate = L->t[LM_W_GATE_EXPS], *up = L->t[LM_W_UP_EXPS],
                         *down = L->t[LM_W_DOWN_EXPS];
    cl_mem W[3] = {cb->w[LM_W_GATE_EXPS], cb->w[LM_W_UP_EXPS], cb->w[LM_W_DOWN_EXPS]};
    uint64_t off[3] = {expert_offset(gate, e), expert_offset(up, e), expert_offset(down, e)};
    if (cb->run[cb->il] == LM_RUN_RESIDENT_DENSE) {
        if (lm_cl_experts_get(cb, cb->view, cb->il, e, &W[0], off) != 0)
            return -1;
        W[1] = W[2] = W[0];
    }
    return LAUNCH(cb, K_MOE_GATHER, 1, &gx, A(mo->x), A(x), A(mo->list), A(list0), A(D),
                  A(K)) != 0 ||
                   lm_cl_product(cb, gate, W[0], off[0], mo->x, count, mo->gate) != 0 ||
                   lm_cl_product(cb, up, W[1], off[1], mo->x, count, mo->up) != 0 ||
                   LAUNCH(cb, K_SWIGLU, 1, &gf, A(mo->gate), A(mo->up)) != 0 ||
                   lm_cl_product(cb, down, W[2], off[2], mo->gate, count, mo->down) != 0 ||
                   LAUNCH(cb, K_MOE_SCATTER, 1, &gx, A(mo->out), A(mo->down), A(mo->list),
                          A(list0), A(D)) != 0
               ? -1
               : 0;
}

int lm_cl_op_moe(void *ctx, lm_act out, lm_act in)
{
    cl_backend *cb = ctx;
    const lm_model *m = cb->base.model;
    const lm_hparams *hp = &m->hp;
    lm_cl_moe *mo = &cb->moe;
    const int n = cb->n, E = (int)hp->n_expert, K = (int)hp->n_expert_used, D = (int)hp->n_embd;
    if (lm_cl_product(cb, m->layers[cb->il].t[LM_W_FFN_ROUTER], cb->w[LM_W_FFN_ROUTER], 0,
                      cb->act[in], n, mo->logits) != 0 ||
        lm_cl_read(cb, mo->logits, mo->logits_host, (size_t)n * E * sizeof(float),
                   "the router's logits") != 0)
        return -1;
    for (int t = 0; t < n; t++)
        lm_moe_route(mo->logits_host + (size_t)t * E, E, K, hp->expert_norm, mo->probs_host,
                     mo->picked_host + (size_t)t * K, mo->weights_host + (size_t)t * K);
    /* per expert in turn, the (row, pick)s that chose it, in row order */
    int start[LM_MAX_EXPERTS + 1], n_list = 0, n_used = 0;
    int32_t used[LM_MAX_EXPERTS];
    for (int e = 0; e < E; e++) {
        start[e] = n_list;
        for (int s = 0; s < n * K; s++)
            if (mo->picked_host[s] == e)
                mo->list_host[n_list++] = s;
        if (n_list > start[e])
            used[n_used++] = e;
    }
    start[E] = n_list;
    lm_expert_trace_add(cb->trace, cb->il, n, used, n_used);
    if (lm_cl_write(cb, mo->list, mo->list_host, (size_t)n_list * sizeof(int), "expert rows") !=
            0 ||
        lm_cl_write(cb, mo->weights, mo->weights_host, (size_t)n * K * sizeof(float),
                    "expert weights") != 0)
        return -1;
    if (cb->run[cb->il] == LM_RUN_RESIDENT_DENSE) {
        /* the cached experts first, then the others, read from disk by the
         * host's expert cache where they come from there (asked for all at
         * once, so its reads run ahead) */
        int32_t order[LM_MAX_EXPERTS], misses[LM_MAX_EXPERTS];
        int n_hit = 0, n_miss = 0;
        for (int i = 0; i < n_used; i++)
            if (lm_cl_experts_cached(cb, cb->il, used[i]))
                order[n_hit++] = used[i];
            else
                misses[n_miss++] = used[i];
        /* (the host's cache puts those it holds first: taken in its order,
         * a read never waits for a slot a later expert of the pass holds) */
        if (cb->view->experts && n_miss)
            lm_expert_cache_want(cb->view->experts, cb->il, misses, n_miss);
        memcpy(order + n_hit, misses, (size_t)n_miss * sizeof *misses);
        lm_cl_experts_begin_pass(cb);
        for (int i = 0; i < n_used; i++) {
            const int e = order[i];
            if (run_expert(cb, e, cb->act[in], start[e], start[e + 1] - start[e]) != 0) {
                if (cb->view->experts)
                    lm_expert_cache_abandon(cb->view->experts);
                return -1;
            }
        }
    } else {
        for (int i = 0; i < n_used; i++) {
            const int e = used[i];
            if (run_expert(cb, e, cb->act[in], start[e], start[e + 1] - start[e]) != 0)
                return -1;
        }
    }
    const size_t g = (size_t)n * D;
    return LAUNCH(cb, K_MOE_COMBINE, 1, &g, A(cb->act[out]), A(mo->out), A(mo->weights), A(D),
                  A(K));
}

int lm_cl_op_sigmoid_gate(void *ctx, lm_act x, lm_act g, int dim)
{
    cl_backend *cb = ctx;
    lm_cl_moe *mo = &cb->moe;
    const int n = cb->n;
    float *gate = mo->weights_host; /* n_batch x n_expert_used floats: room for n */
    if (lm_cl_read(cb, cb->act[g], gate, (size_t)n * sizeof(float), "the shared expert's gate") !=
        0)
        return -1;
    for (int t = 0; t < n; t++) {
        /* ggml_silu of one value (libm's expf), then / g, as on the CPU */
        const float v = gate[t];
        gate[t] = v / (1.0f + expf(-v)) / v;
    }
    const size_t count = (size_t)n * dim;
    return lm_cl_write(cb, mo->weights, gate, (size_t)n * sizeof(float), "the shared expert's gate") !=
                   0 ||
                   LAUNCH(cb, K_SCALE_ROWS, 1, &count, A(cb->act[x]), A(mo->weights), A(dim)) != 0
               ? -1
               : 0;
}

int lm_cl_moe_create(cl_backend *cb)
{
    const lm_hparams *hp = &cb->base.model->hp;
    lm_cl_moe *mo = &cb->moe;
    if (!hp->n_expert)
        return 0;
    const size_t nb = (size_t)cb->base.n_batch, f = sizeof(float);
    const size_t E = hp->n_expert, K = hp->n_expert_used, F = hp->n_ff_exp, D = hp->n_embd;
    mo->logits_host = malloc(nb * E * f);
    mo->probs_host = malloc(E * f);
    mo->weights_host = malloc(nb * K * f);
    mo->picked_host = malloc(nb * K * sizeof *mo->picked_host);
    mo->list_host = malloc(nb * K * sizeof *mo->list_host);
    if (!mo->logits_host || !mo->probs_host || !mo->weights_host || !mo->picked_host ||
        !mo->list_host) {
        lm_set_error("out of memory");
        return -1;
    }
    /* an expert takes a row at most once: n_batch rows at most */
    return (mo->logits = lm_cl_scratch(cb, nb * E * f, "the router's logits")) &&
                   (mo->x = lm_cl_scratch(cb, nb * D * f, "an expert's rows")) &&
                   (mo->gate = lm_cl_scratch(cb, nb * F * f, "an expert's feed-forward")) &&
                   (mo->up = lm_cl_scratch(cb, nb * F * f, "an expert's feed-forward")) &&
                   (mo->down = lm_cl_scratch(cb, nb * D * f, "an expert's output")) &&
                   (mo->out = lm_cl_scratch(cb, nb * K * D * f, "the experts' outputs")) &&
                   (mo->weights = lm_cl_scratch(cb, nb * K * f, "the experts' weights")) &&
                   (mo->list = lm_cl_scratch(cb, nb * K * sizeof(int), "expert rows"))
               ? 0
               : -1;
}

void lm_cl_moe_free(cl_backend *cb)
{
    lm_cl_moe *mo = &cb->moe;
    cl_mem bufs[] = {mo->logits, mo->x, mo->gate, mo->up, mo->down, mo->out, mo->weights,
                     mo->list};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        lm_cl_release(&cb->mem, bufs[i]);
    free(mo->logits_host);
    free(mo->probs_host);
    free(mo->weights_host);
    free(mo->picked_host);
    free(mo->list_host);
    memset(mo, 0, sizeof *mo);
}
