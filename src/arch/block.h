/* A transformer block written once per architecture (one file each in
 * src/arch/) from the operations every backend provides.
 *
 * An architecture's block reads like llama2.c's forward(): norms, products
 * by weight role, RoPE, attention, activations, residual adds.  It names
 * activations (lm_act), never memory: the backend keeps them where it
 * computes (host arrays on the CPU, device buffers in OpenCL), so the
 * activations of a layer never leave the device between its operations.
 * Before calling the block the backend binds the layer (its weights, by
 * role) and the pass (its rows); every operation covers all the pass's
 * rows. */
#ifndef LM_BLOCK_H
#define LM_BLOCK_H

#include "model.h"

/* The activations of a pass, each rows x (its width). */
typedef enum {
    LM_A_X,    /* the residual stream: n_embd */
    LM_A_XN,   /* a normed copy of it: n_embd */
    LM_A_Q,    /* n_head * head_dim */
    LM_A_K,    /* n_head_kv * head_dim: this pass's keys ... */
    LM_A_V,    /* ... and values */
    LM_A_ATT,  /* attention's output: n_head * head_dim */
    LM_A_GATE, /* n_ff */
    LM_A_UP,   /* n_ff */
    LM_A_TMP,  /* a product back to n_embd */
    LM_A_WIDE, /* a fused product (Q|K|V, gate|up), for the archs that have one */
    LM_A_COUNT
} lm_act;

/* Which RoPE a layer turns its heads with. */
typedef enum { LM_ROPE_GLOBAL, LM_ROPE_SWA } lm_rope_kind;

typedef struct lm_block_ops {
    /* out = in * rsqrt(mean(in^2) + eps) * weight (role w), over each dim
     * values of in (a row, or with dim = head_dim each head); in place is
     * allowed */
    int (*rmsnorm)(void *ctx, lm_act out, lm_act in, int w, int dim);
    /* out = in x W^T for the layer's tensor of role w (dims from its shape) */
    int (*matmul)(void *ctx, lm_act out, int w, lm_act in);
    /* x += the bias vector of role w, per row of dim */
    int (*add_bias)(void *ctx, lm_act x, int w, int dim);
    /* rotates each of n_heads heads of every row at the row's position */
    int (*rope)(void *ctx, lm_act x, int n_heads, lm_rope_kind kind);
    /* stores k and v at the rows' positions in the layer's cache, then out =
     * each row's attention over its own sequence's cache up to its position
     * (window > 0: only the last `window` positions, its own included), the
     * scores q.k times kq_scale */
    int (*attention)(void *ctx, lm_act out, lm_act q, lm_act k, lm_act v, int window,
                     float kq_scale);
    /* gate = silu(gate) * up, per row of dim */
    int (*swiglu)(void *ctx, lm_act gate, lm_act up, int dim);
    /* gate = gelu(gate) * up (GELU's tanh form), per row of dim */
    int (*geglu)(void *ctx, lm_act gate, lm_act up, int dim);
    /* out = columns [col0, col0 + width) of each row of in, whose rows hold
     * in_width floats (a fused product's, not the buffer's widest) */
    int (*columns)(void *ctx, lm_act out, lm_act in, int in_width, int col0, int width);
    /* out = the mixture of experts' feed-forward of in (roles LM_W_FFN_ROUTER,
     * LM_W_GATE_EXPS, LM_W_UP_EXPS, LM_W_DOWN_EXPS): per row the router's
     * softmax picks the model's n_expert_used experts (the highest first),
     * their weights renormalized where hp->expert_norm; each picked
     * expert's SwiGLU FFN times its weight, added in that order */
    int (*moe)(void *ctx, lm_act out, lm_act in);
    /* each row of x (dim floats) *= the sigmoid of g's one float for that
     * row, as ggml computes it: silu(g) / g */
    int (*sigmoid_gate)(void *ctx, lm_act x, lm_act g, int dim);
    /* x *= factor, per row of dim */
    int (*scale)(void *ctx, lm_act x, float factor, int dim);
    /* x += y, per row of dim */
    int (*add)(void *ctx, lm_act x, lm_act y, int dim);
} lm_block_ops;

/* One layer of one pass, bound by the backend. */
typedef struct {
    const lm_block_ops *ops;
    void *ctx;            /* the backend's: weights and rows bound */
    const lm_model *model;
    const lm_layer *layer; /* which tensors this layer has */
    int il;
} lm_block;

/* In a block: an operation, returning -1 (its error set) if it fails. */
#define LM_TRY(op)         \
    do {                   \
        if ((op) != 0)     \
            return -1;     \
    } while (0)

/* TMP = the SwiGLU feed-forward of XN: the dense one (GATE, UP, DOWN), or
 * the mixture of experts where the model has them, plus its shared expert
 * where it has one (src/arch/ffn.c). */
int lm_block_swiglu_ffn(const lm_block *b);

/* out = in x W^T (+ bias, where the layer has the role `bias`; -1: none). */
static inline int lm_block_linear(const lm_block *b, lm_act out, int w, int bias, lm_act in)
{
    if (b->ops->matmul(b->ctx, out, w, in) != 0)
        return -1;
    if (bias < 0 || !b->layer->t[bias])
        return 0;
    return b->ops->add_bias(b->ctx, out, bias, (int)b->layer->t[bias]->ne[0]);
}

#endif
