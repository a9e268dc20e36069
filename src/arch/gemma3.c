/* The Gemma 3 block: embeddings scaled by sqrt(n_embd); norms before and
 * after attention and the feed-forward; Q and K normed per head; GELU-gated
 * feed-forward; five sliding-window layers (their own RoPE base) to each
 * global one.  The norms' weights already hold Gemma's 1 + w (the GGUF
 * converter adds the 1).  As llama.cpp's gemma3 graph. */
#include <math.h>

#include "arch.h"
#include "error.h"

int lm_arch_gemma3_hparams(lm_model *m)
{
    lm_hparams *hp = &m->hp;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    /* the queries are scaled before attention (which then scales by 1): Gemma
     * 3 27B's by 1/sqrt(n_embd/n_head), the others' by 1/sqrt(head_dim)
     * (query_pre_attn_scalar); llama.cpp tells 27B by its 62 layers */
    hp->attn_scale = hp->n_layer == 62 ? 1.0f / sqrtf((float)(hp->n_embd / hp->n_head))
                                       : 1.0f / sqrtf((float)hp->head_dim);
    hp->swa_period = 6;
    hp->rope_base_swa = 10000.0f;
    lm_model_key_u32(m, "attention.sliding_window", &hp->n_swa);
    if (hp->n_swa == 0) {
        lm_set_error("gemma3: attention.sliding_window is missing or 0");
        return -1;
    }
    /* Gemma 2's soft-capped logits; no Gemma 3 has them, and lamina's output
     * head does not cap: refused rather than answered wrongly */
    float softcap = 0.0f;
    lm_model_key_f32(m, "final_logit_softcapping", &softcap);
    if (softcap != 0.0f) {
        lm_set_error("gemma3: final_logit_softcapping %g is not supported", softcap);
        return -1;
    }
    return 0;
}

int lm_arch_gemma3_block(const lm_block *b)
{
    const lm_block_ops *o = b->ops;
    void *c = b->ctx;
    const lm_hparams *hp = &b->model->hp;
    const int n_embd = (int)hp->n_embd, head_dim = (int)hp->head_dim;
    const int q_dim = (int)hp->n_head * head_dim;
    const bool swa = lm_layer_is_swa(hp, b->il);
    const lm_rope_kind rope = swa ? LM_ROPE_SWA : LM_ROPE_GLOBAL;

    /* attention */
    LM_TRY(o->rmsnorm(c, LM_A_XN, LM_A_X, LM_W_ATTN_NORM, n_embd));
    LM_TRY(o->matmul(c, LM_A_Q, LM_W_Q, LM_A_XN));
    LM_TRY(o->matmul(c, LM_A_K, LM_W_K, LM_A_XN));
    LM_TRY(o->matmul(c, LM_A_V, LM_W_V, LM_A_XN));
    LM_TRY(o->rmsnorm(c, LM_A_Q, LM_A_Q, LM_W_Q_NORM, head_dim));
    LM_TRY(o->rmsnorm(c, LM_A_K, LM_A_K, LM_W_K_NORM, head_dim));
    LM_TRY(o->rope(c, LM_A_Q, (int)hp->n_head, rope));
    LM_TRY(o->rope(c, LM_A_K, (int)hp->n_head_kv, rope));
    LM_TRY(o->scale(c, LM_A_Q, hp->attn_scale, q_dim));
    LM_TRY(o->attention(c, LM_A_ATT, LM_A_Q, LM_A_K, LM_A_V, swa ? (int)hp->n_swa : 0, 1.0f));
    LM_TRY(o->matmul(c, LM_A_TMP, LM_W_O, LM_A_ATT));
    LM_TRY(o->rmsnorm(c, LM_A_TMP, LM_A_TMP, LM_W_ATTN_POST_NORM, n_embd));
    LM_TRY(o->add(c, LM_A_X, LM_A_TMP, n_embd));

    /* feed-forward */
    LM_TRY(o->rmsnorm(c, LM_A_XN, LM_A_X, LM_W_FFN_NORM, n_embd));
    LM_TRY(o->matmul(c, LM_A_GATE, LM_W_GATE, LM_A_XN));
    LM_TRY(o->matmul(c, LM_A_UP, LM_W_UP, LM_A_XN));
    LM_TRY(o->geglu(c, LM_A_GATE, LM_A_UP, (int)hp->n_ff));
    LM_TRY(o->matmul(c, LM_A_TMP, LM_W_DOWN, LM_A_GATE));
    LM_TRY(o->rmsnorm(c, LM_A_TMP, LM_A_TMP, LM_W_FFN_POST_NORM, n_embd));
    LM_TRY(o->add(c, LM_A_X, LM_A_TMP, n_embd));
    return 0;
}
