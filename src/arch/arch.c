/* The table of architectures (arch.h). */
#include "arch.h"

#include <string.h>

#define LLAMA_TENSORS                                                                      \
    (LM_ROLE(LM_W_ATTN_NORM) | LM_ROLE(LM_W_Q) | LM_ROLE(LM_W_K) | LM_ROLE(LM_W_V) |      \
     LM_ROLE(LM_W_O) | LM_ROLE(LM_W_FFN_NORM) | LM_ROLE(LM_W_GATE) | LM_ROLE(LM_W_UP) |   \
     LM_ROLE(LM_W_DOWN))
#define QKV_BIASES (LM_ROLE(LM_W_Q_BIAS) | LM_ROLE(LM_W_K_BIAS) | LM_ROLE(LM_W_V_BIAS))
#define QK_NORMS (LM_ROLE(LM_W_Q_NORM) | LM_ROLE(LM_W_K_NORM))
#define DENSE_FFN (LM_ROLE(LM_W_GATE) | LM_ROLE(LM_W_UP) | LM_ROLE(LM_W_DOWN))
#define EXPERT_FFN                                                                        \
    (LM_ROLE(LM_W_FFN_ROUTER) | LM_ROLE(LM_W_GATE_EXPS) | LM_ROLE(LM_W_UP_EXPS) |         \
     LM_ROLE(LM_W_DOWN_EXPS))
#define SHARED_EXPERT                                                                     \
    (LM_ROLE(LM_W_SHEXP_ROUTER) | LM_ROLE(LM_W_GATE_SHEXP) | LM_ROLE(LM_W_UP_SHEXP) |     \
     LM_ROLE(LM_W_DOWN_SHEXP))

static const lm_arch_desc archs[] = {
    /* Llama 2/3, TinyLlama, SmolLM2, Mistral; Mixtral (experts, their weights
     * renormalized) */
    {.name = "llama", .required = LLAMA_TENSORS, .optional = QKV_BIASES, .norm_eps = 1e-5f,
     .moe = LM_MOE_MAYBE, .expert_norm = true, .block = lm_arch_llama_block},
    /* Qwen 2 and 2.5: biases on Q, K and V, NeoX RoPE */
    {.name = "qwen2", .required = LLAMA_TENSORS, .optional = QKV_BIASES, .rope_neox = true,
     .norm_eps = 1e-6f, .block = lm_arch_llama_block},
    /* Qwen 2 MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): qwen2's attention;
     * experts whose weights are not renormalized, and a shared expert every
     * token goes through, scaled by a sigmoid gate of its own */
    {.name = "qwen2moe", .required = (LLAMA_TENSORS & ~DENSE_FFN) | EXPERT_FFN | SHARED_EXPERT,
     .optional = QKV_BIASES, .rope_neox = true, .moe = LM_MOE_ALWAYS, .expert_ff_key = true,
     .norm_eps = 1e-6f, .block = lm_arch_llama_block},
    /* Qwen 3 (dense): Q and K normed per head, no biases */
    {.name = "qwen3", .required = LLAMA_TENSORS | QK_NORMS, .rope_neox = true,
     .norm_eps = 1e-6f, .block = lm_arch_qwen3_block},
    /* Qwen 3 MoE (30B-A3B, 235B-A22B): qwen3's attention, experts only */
    {.name = "qwen3moe", .required = (LLAMA_TENSORS & ~DENSE_FFN) | QK_NORMS | EXPERT_FFN,
     .rope_neox = true, .moe = LM_MOE_ALWAYS, .expert_norm = true, .expert_ff_key = true,
     .norm_eps = 1e-6f,
     .block = lm_arch_qwen3_block},
    /* Phi-3: Q, K, V in one matrix, gate and up in one */
    {.name = "phi3",
     .required = LM_ROLE(LM_W_ATTN_NORM) | LM_ROLE(LM_W_QKV) | LM_ROLE(LM_W_O) |
                 LM_ROLE(LM_W_FFN_NORM) | LM_ROLE(LM_W_UP) | LM_ROLE(LM_W_DOWN),
     .rope_neox = true, .fused_gate_up = true, .norm_eps = 1e-5f,
     .read_hparams = lm_arch_phi3_hparams, .block = lm_arch_phi3_block},
    /* Gemma 3 (text): Q/K norms, post-norms, GELU, sliding windows */
    {.name = "gemma3",
     .required = LLAMA_TENSORS | QK_NORMS | LM_ROLE(LM_W_ATTN_POST_NORM) |
                 LM_ROLE(LM_W_FFN_POST_NORM),
     .rope_neox = true, .norm_eps = 1e-6f, .read_hparams = lm_arch_gemma3_hparams,
     .block = lm_arch_gemma3_block},
};

const lm_arch_desc *lm_arch_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        if (strlen(archs[i].name) == len && memcmp(archs[i].name, name, len) == 0)
            return &archs[i];
    return NULL;
}

uint32_t lm_arch_required(const lm_hparams *hp)
{
    return hp->n_expert ? (hp->arch->required & ~DENSE_FFN) | EXPERT_FFN : hp->arch->required;
}

uint32_t lm_arch_wide_width(const lm_model *m)
{
    const lm_hparams *hp = &m->hp;
    uint32_t wide = 0;
    if (hp->arch->required & LM_ROLE(LM_W_QKV))
        wide = (hp->n_head + 2 * hp->n_head_kv) * hp->head_dim;
    if (hp->arch->fused_gate_up && 2 * hp->n_ff > wide)
        wide = 2 * hp->n_ff;
    if (hp->n_ff_shexp && hp->n_embd > wide) /* the shared expert's output */
        wide = hp->n_embd;
    return wide;
}

const char *lm_arch_names(void)
{
    return "llama, qwen2, qwen2moe, qwen3, qwen3moe, phi3, gemma3";
}
