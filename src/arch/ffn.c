/* The SwiGLU feed-forward the llama-like blocks share: dense, or a mixture
 * of experts where the model has them (Mixtral, Qwen 3 MoE), with a shared
 * expert where it has one (Qwen 2 MoE). */
#include "arch.h"

/* out = the SwiGLU FFN of XN through gate, up and down of width ff. */
static int swiglu_ffn(const lm_block *b, lm_act out, int gate, int up, int down, int ff)
{
    const lm_block_ops *o = b->ops;
    void *c = b->ctx;
    LM_TRY(o->matmul(c, LM_A_GATE, gate, LM_A_XN));
    LM_TRY(o->matmul(c, LM_A_UP, up, LM_A_XN));
    LM_TRY(o->swiglu(c, LM_A_GATE, LM_A_UP, ff));
    return o->matmul(c, out, down, LM_A_GATE);
}

int lm_block_swiglu_ffn(const lm_block *b)
{
    const lm_block_ops *o = b->ops;
    void *c = b->ctx;
    const lm_hparams *hp = &b->model->hp;
    if (!hp->n_expert)
        return swiglu_ffn(b, LM_A_TMP, LM_W_GATE, LM_W_UP, LM_W_DOWN, (int)hp->n_ff);
    LM_TRY(o->moe(c, LM_A_TMP, LM_A_XN));
    if (!b->layer->t[LM_W_DOWN_SHEXP])
        return 0;
    /* the shared expert, scaled by its gate (one value per row, in UP once
     * the FFN is done with it), added to the routed experts' sum */
    LM_TRY(swiglu_ffn(b, LM_A_WIDE, LM_W_GATE_SHEXP, LM_W_UP_SHEXP, LM_W_DOWN_SHEXP,
                      (int)hp->n_ff_shexp));
    LM_TRY(o->matmul(c, LM_A_UP, LM_W_SHEXP_ROUTER, LM_A_XN));
    LM_TRY(o->sigmoid_gate(c, LM_A_WIDE, LM_A_UP, (int)hp->n_embd));
    return o->add(c, LM_A_TMP, LM_A_WIDE, (int)hp->n_embd);
}
