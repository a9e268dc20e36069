/* A model as the executor sees it: hyperparameters from the GGUF metadata,
 * and for every layer the tensors it needs (pointing into the file).
 *
 * The architectures are src/arch/'s: the table there says which tensors each
 * reads and its block computes a layer. */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "ops.h"
#include "tokenizer.h"

struct lm_arch_desc; /* src/arch/arch.h */

typedef struct {
    const struct lm_arch_desc *arch; /* its block and what it reads */
    const char *arch_name;
    uint32_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    uint32_t n_ctx_train;
    uint32_t n_rot;       /* dimensions RoPE turns (normally head_dim) */
    bool rope_neox;       /* rotate (i, i+n_rot/2) pairs instead of (2i, 2i+1) */
    float rope_base;
    float norm_eps;
    bool tied_embeddings; /* output head reuses token_embd */
    float embd_scale;     /* the embeddings are multiplied by this (1: not) */
    float attn_scale;     /* an architecture's scale of the queries (gemma3) */
    /* sliding-window attention: layer il sees only the last n_swa positions
     * unless swa_period is 0 or (il + 1) is a multiple of it */
    uint32_t n_swa, swa_period;
    float rope_base_swa;  /* RoPE base of the sliding-window layers */
    /* mixture of experts (0 experts: a dense feed-forward) */
    uint32_t n_expert, n_expert_used; /* experts, and how many each token uses */
    uint32_t n_ff_exp;    /* an expert's feed-forward width */
    uint32_t n_ff_shexp;  /* the shared expert's width (qwen2moe; 0: none) */
    bool expert_norm;     /* the used experts' weights are renormalized to sum 1 */
} lm_hparams;

#define LM_MAX_EXPERTS 512

/* Whether layer il attends over a sliding window (hp->n_swa positions). */
static inline bool lm_layer_is_swa(const lm_hparams *hp, int il)
{
    return hp->n_swa > 0 && hp->swa_period > 0 && (uint32_t)(il + 1) % hp->swa_period != 0;
}

/* One tensor of a layer: where its bytes are and what they are. */
typedef struct {
    const lm_gguf_tensor *info; /* NULL for an absent optional tensor */
} lm_weight;

enum {
    LM_W_ATTN_NORM, LM_W_Q, LM_W_K, LM_W_V, LM_W_O, LM_W_Q_BIAS, LM_W_K_BIAS, LM_W_V_BIAS,
    LM_W_FFN_NORM, LM_W_GATE, LM_W_UP, LM_W_DOWN,
    LM_W_Q_NORM, LM_W_K_NORM,                /* per head, before RoPE */
    LM_W_ATTN_POST_NORM, LM_W_FFN_POST_NORM, /* on attention's and the FFN's output */
    LM_W_QKV,                                /* Q, K and V in one matrix (phi3) */
    LM_W_FFN_ROUTER,                         /* mixture of experts: the router ... */
    LM_W_GATE_EXPS, LM_W_UP_EXPS, LM_W_DOWN_EXPS, /* ... and every expert's FFN (3-D) */
    LM_W_SHEXP_ROUTER,                       /* a shared expert: its gate's one row ... */
    LM_W_GATE_SHEXP, LM_W_UP_SHEXP, LM_W_DOWN_SHEXP, /* ... and its FFN (qwen2moe) */
    LM_W_PER_LAYER
};

/* Whether role w is one of the experts' stacked (3-D) tensors. */
static inline bool lm_role_is_expert_stack(int w)
{
    return w == LM_W_GATE_EXPS || w == LM_W_UP_EXPS || w == LM_W_DOWN_EXPS;
}

typedef struct {
    const lm_gguf_tensor *t[LM_W_PER_LAYER];
    uint64_t nbytes;      /* all of this layer's weight bytes */
} lm_layer;

/* The bytes of one layer's tensors, wherever they are now (the file mapping,
 * a staging buffer): what a backend's forward_layer reads. */
struct lm_expert_cache;
struct lm_expert_trace;
typedef struct {
    const void *data[LM_W_PER_LAYER];
    int device_slot; /* >= 0: a device already holds the layer in this slot */
    /* NULL: data[] holds every expert; else the experts' stacked tensors
     * are not in data[] and come one by one from this cache */
    struct lm_expert_cache *experts;
    /* NULL, or where a mixture's layer records its routing (expert_trace.h) */
    struct lm_expert_trace *trace;
} lm_layer_view;

typedef struct lm_model {
    lm_gguf *gguf;
    lm_tokenizer *tokenizer;
    lm_hparams hp;
    lm_layer *layers;
    const lm_gguf_tensor *tok_embd, *output_norm, *output;
    lm_rope_params rope;
    lm_rope_params rope_swa; /* the sliding-window layers' (hp.rope_base_swa) */
    float *rope_freq_div; /* what rope.freq_div points to, or NULL */
    uint64_t weight_bytes; /* every tensor */
} lm_model;

lm_model *lm_model_load(const char *path);

/* The metadata key "ARCH.suffix" of m's file: 0, or -1 when absent (or of
 * another type), leaving *out as it was. */
int lm_model_key_u32(const lm_model *m, const char *suffix, uint32_t *out);
int lm_model_key_f32(const lm_model *m, const char *suffix, float *out);
void lm_model_free(lm_model *m);

/* The view of layer il's tensors inside the file mapping. */
void lm_model_layer_view(const lm_model *m, int il, lm_layer_view *view);

/* Bytes read from weights per decoded token (every layer plus the head;
 * of a mixture of experts, the experts one token uses). */
uint64_t lm_model_bytes_per_token(const lm_model *m);

#endif
