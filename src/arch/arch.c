/* The table of architectures (arch.h). */
#include "arch.h"

#include <string.h>

#define LLAMA_TENSORS                                                                      \
    (LM_ROLE(LM_W_ATTN_NORM) | LM_ROLE(LM_W_Q) | LM_ROLE(LM_W_K) | LM_ROLE(LM_W_V) |      \
     LM_ROLE(LM_W_O) | LM_ROLE(LM_W_FFN_NORM) | LM_ROLE(LM_W_GATE) | LM_ROLE(LM_W_UP) |   \
     LM_ROLE(LM_W_DOWN))
#define QKV_BIASES (LM_ROLE(LM_W_Q_BIAS) | LM_ROLE(LM_W_K_BIAS) | LM_ROLE(LM_W_V_BIAS))

static const lm_arch_desc archs[] = {
    /* Llama 2/3, TinyLlama, SmolLM2, Mistral */
    {"llama", LLAMA_TENSORS, QKV_BIASES, false, 1e-5f, NULL, lm_arch_llama_block},
    /* Qwen 2 and 2.5: biases on Q, K and V, NeoX RoPE */
    {"qwen2", LLAMA_TENSORS, QKV_BIASES, true, 1e-6f, NULL, lm_arch_llama_block},
    /* Gemma 3 (text): Q/K norms, post-norms, GELU, sliding windows */
    {"gemma3",
     LLAMA_TENSORS | LM_ROLE(LM_W_Q_NORM) | LM_ROLE(LM_W_K_NORM) |
         LM_ROLE(LM_W_ATTN_POST_NORM) | LM_ROLE(LM_W_FFN_POST_NORM),
     0, true, 1e-6f, lm_arch_gemma3_hparams, lm_arch_gemma3_block},
};

const lm_arch_desc *lm_arch_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        if (strlen(archs[i].name) == len && memcmp(archs[i].name, name, len) == 0)
            return &archs[i];
    return NULL;
}

const char *lm_arch_names(void)
{
    return "llama, qwen2, gemma3";
}
