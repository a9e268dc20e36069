/* The Qwen 3 block (dense models): llama's, with Q and K normed per head
 * before RoPE and no biases.  As llama.cpp's qwen3 graph. */
#include <math.h>

#include "arch.h"

int lm_arch_qwen3_block(const lm_block *b)
{
    const lm_block_ops *o = b->ops;
    void *c = b->ctx;
    const lm_hparams *hp = &b->model->hp;
    const int n_embd = (int)hp->n_embd, head_dim = (int)hp->head_dim;

    /* attention */
    LM_TRY(o->rmsnorm(c, LM_A_XN, LM_A_X, LM_W_ATTN_NORM, n_embd));
    LM_TRY(o->matmul(c, LM_A_Q, LM_W_Q, LM_A_XN));
    LM_TRY(o->matmul(c, LM_A_K, LM_W_K, LM_A_XN));
    LM_TRY(o->matmul(c, LM_A_V, LM_W_V, LM_A_XN));
    LM_TRY(o->rmsnorm(c, LM_A_Q, LM_A_Q, LM_W_Q_NORM, head_dim));
    LM_TRY(o->rmsnorm(c, LM_A_K, LM_A_K, LM_W_K_NORM, head_dim));
    LM_TRY(o->rope(c, LM_A_Q, (int)hp->n_head, LM_ROPE_GLOBAL));
    LM_TRY(o->rope(c, LM_A_K, (int)hp->n_head_kv, LM_ROPE_GLOBAL));
    LM_TRY(o->attention(c, LM_A_ATT, LM_A_Q, LM_A_K, LM_A_V, 0, 1.0f / sqrtf((float)head_dim)));
    LM_TRY(o->matmul(c, LM_A_TMP, LM_W_O, LM_A_ATT));
    LM_TRY(o->add(c, LM_A_X, LM_A_TMP, n_embd));

    /* feed-forward */
    LM_TRY(o->rmsnorm(c, LM_A_XN, LM_A_X, LM_W_FFN_NORM, n_embd));
    LM_TRY(lm_block_swiglu_ffn(b));
    LM_TRY(o->add(c, LM_A_X, LM_A_TMP, n_embd));
    return 0;
}
