/* The Phi-3 block: llama's, with Q, K and V from one matrix and the gate
 * and up from one (the gate's rows first), and the queries scaled by
 * 1/sqrt(head_dim) before attention rather than the scores.  As llama.cpp's
 * phi3 graph (whose sliding window is off, so it is here). */
#include <math.h>

#include "arch.h"
#include "error.h"

/* Phi-3's 128k-context files turn RoPE by per-frequency factors (LongRoPE,
 * rope_factors_long/short) that lamina does not apply: refused rather than
 * answered wrongly.  The 4k-context files have none. */
int lm_arch_phi3_hparams(lm_model *m)
{
    if (lm_gguf_find_tensor(m->gguf, "rope_factors_long.weight") ||
        lm_gguf_find_tensor(m->gguf, "rope_factors_short.weight")) {
        lm_set_error("phi3: LongRoPE factors (rope_factors_long/short) are not supported");
        return -1;
    }
    return 0;
}

int lm_arch_phi3_block(const lm_block *b)
{
    const lm_block_ops *o = b->ops;
    void *c = b->ctx;
    const lm_hparams *hp = &b->model->hp;
    const int n_embd = (int)hp->n_embd, head_dim = (int)hp->head_dim, n_ff = (int)hp->n_ff;
    const int q_dim = (int)hp->n_head * head_dim, kv_dim = (int)hp->n_head_kv * head_dim;

    /* attention */
    LM_TRY(o->rmsnorm(c, LM_A_XN, LM_A_X, LM_W_ATTN_NORM, n_embd));
    LM_TRY(o->matmul(c, LM_A_WIDE, LM_W_QKV, LM_A_XN));
    const int qkv_dim = q_dim + 2 * kv_dim;
    LM_TRY(o->columns(c, LM_A_Q, LM_A_WIDE, qkv_dim, 0, q_dim));
    LM_TRY(o->columns(c, LM_A_K, LM_A_WIDE, qkv_dim, q_dim, kv_dim));
    LM_TRY(o->columns(c, LM_A_V, LM_A_WIDE, qkv_dim, q_dim + kv_dim, kv_dim));
    LM_TRY(o->rope(c, LM_A_Q, (int)hp->n_head, LM_ROPE_GLOBAL));
    LM_TRY(o->rope(c, LM_A_K, (int)hp->n_head_kv, LM_ROPE_GLOBAL));
    LM_TRY(o->scale(c, LM_A_Q, 1.0f / sqrtf((float)head_dim), q_dim));
    LM_TRY(o->attention(c, LM_A_ATT, LM_A_Q, LM_A_K, LM_A_V, 0, 1.0f));
    LM_TRY(o->matmul(c, LM_A_TMP, LM_W_O, LM_A_ATT));
    LM_TRY(o->add(c, LM_A_X, LM_A_TMP, n_embd));

    /* feed-forward */
    LM_TRY(o->rmsnorm(c, LM_A_XN, LM_A_X, LM_W_FFN_NORM, n_embd));
    LM_TRY(o->matmul(c, LM_A_WIDE, LM_W_UP, LM_A_XN));
    LM_TRY(o->columns(c, LM_A_GATE, LM_A_WIDE, 2 * n_ff, 0, n_ff));
    LM_TRY(o->columns(c, LM_A_UP, LM_A_WIDE, 2 * n_ff, n_ff, n_ff));
    LM_TRY(o->swiglu(c, LM_A_GATE, LM_A_UP, n_ff));
    LM_TRY(o->matmul(c, LM_A_TMP, LM_W_DOWN, LM_A_GATE));
    LM_TRY(o->add(c, LM_A_X, LM_A_TMP, n_embd));
    return 0;
}
