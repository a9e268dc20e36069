/* The SwiGLU feed-forward the llama-like blocks share: dense, or a mixture
 * of experts where the model has them (Mixtral, Qwen 3 MoE). */
#include "arch.h"

int lm_block_swiglu_ffn(const lm_block *b)
{
    const lm_block_ops *o = b->ops;
    void *c = b->ctx;
    const lm_hparams *hp = &b->model->hp;
    if (hp->n_expert)
        return o->moe(c, LM_A_TMP, LM_A_XN);
    LM_TRY(o->matmul(c, LM_A_GATE, LM_W_GATE, LM_A_XN));
    LM_TRY(o->matmul(c, LM_A_UP, LM_W_UP, LM_A_XN));
    LM_TRY(o->swiglu(c, LM_A_GATE, LM_A_UP, (int)hp->n_ff));
    return o->matmul(c, LM_A_TMP, LM_W_DOWN, LM_A_GATE);
}
