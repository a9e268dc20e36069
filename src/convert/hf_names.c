/* Hugging Face tensor names to GGUF's (hf_names.h). */
#include "hf_names.h"

#include <stdio.h>
#include <string.h>

/* The names outside the layers. */
static const struct {
    const char *hf, *gguf;
} globals[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

/* A layer's names, after "model.layers.N.": the part up to the last dot
 * (the suffix, "weight" or "bias", is carried over). */
static const struct {
    const char *hf, *gguf;
    lm_hf_rows rows; /* for llama; qwen2 keeps every tensor's rows */
} per_layer[] = {
    {"input_layernorm", "attn_norm", LM_HF_KEEP_ROWS},
    {"self_attn.q_proj", "attn_q", LM_HF_PERMUTE_Q},
    {"self_attn.k_proj", "attn_k", LM_HF_PERMUTE_K},
    {"self_attn.v_proj", "attn_v", LM_HF_KEEP_ROWS},
    {"self_attn.o_proj", "attn_output", LM_HF_KEEP_ROWS},
    {"post_attention_layernorm", "ffn_norm", LM_HF_KEEP_ROWS},
    {"mlp.gate_proj", "ffn_gate", LM_HF_KEEP_ROWS},
    {"mlp.up_proj", "ffn_up", LM_HF_KEEP_ROWS},
    {"mlp.down_proj", "ffn_down", LM_HF_KEEP_ROWS},
};

#define COUNT(a) (sizeof a / sizeof *a)

/* "model.layers.N." with N a decimal below n_layer: the rest, and N. */
static const char *after_layer(const char *hf, uint32_t n_layer, uint32_t *layer)
{
    static const char prefix[] = "model.layers.";
    if (strncmp(hf, prefix, sizeof prefix - 1) != 0)
        return NULL;
    const char *p = hf + sizeof prefix - 1;
    uint64_t n = 0;
    const char *digits = p;
    while (*p >= '0' && *p <= '9' && n < n_layer)
        n = n * 10 + (uint64_t)(*p++ - '0');
    if (p == digits || *p != '.' || n >= n_layer || (p - digits > 1 && *digits == '0'))
        return NULL;
    *layer = (uint32_t)n;
    return p + 1;
}

lm_hf_name_result lm_hf_tensor_name(const char *hf, bool permute_qk, uint32_t n_layer, char *out,
                                    size_t len, lm_hf_rows *rows)
{
    *rows = LM_HF_KEEP_ROWS;
    for (size_t i = 0; i < COUNT(globals); i++)
        if (strcmp(hf, globals[i].hf) == 0) {
            int n = snprintf(out, len, "%s", globals[i].gguf);
            return n > 0 && (size_t)n < len ? LM_HF_NAME_OK : LM_HF_NAME_UNKNOWN;
        }
    uint32_t layer;
    const char *rest = after_layer(hf, n_layer, &layer);
    if (!rest)
        return LM_HF_NAME_UNKNOWN;
    if (strcmp(rest, "self_attn.rotary_emb.inv_freq") == 0)
        return LM_HF_NAME_SKIP;
    const char *dot = strrchr(rest, '.');
    if (!dot || (strcmp(dot, ".weight") != 0 && strcmp(dot, ".bias") != 0))
        return LM_HF_NAME_UNKNOWN;
    const size_t stem = (size_t)(dot - rest);
    for (size_t i = 0; i < COUNT(per_layer); i++)
        if (strlen(per_layer[i].hf) == stem && strncmp(rest, per_layer[i].hf, stem) == 0) {
            int n = snprintf(out, len, "blk.%u.%s%s", layer, per_layer[i].gguf, dot);
            if (n <= 0 || (size_t)n >= len)
                return LM_HF_NAME_UNKNOWN;
            *rows = permute_qk ? per_layer[i].rows : LM_HF_KEEP_ROWS;
            return LM_HF_NAME_OK;
        }
    return LM_HF_NAME_UNKNOWN;
}

int lm_hf_permute_rows(const void *src, void *dst, uint64_t n_rows, size_t row_bytes,
                       uint32_t n_head)
{
    if (n_head == 0 || n_rows % ((uint64_t)2 * n_head) != 0)
        return -1;
    const uint64_t head_rows = n_rows / n_head, half = head_rows / 2;
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (uint64_t h = 0; h < n_head; h++)
        for (uint64_t i = 0; i < half; i++)
            for (uint64_t j = 0; j < 2; j++) {
                const uint64_t to = h * head_rows + 2 * i + j;
                const uint64_t from = h * head_rows + j * half + i;
                memcpy(d + to * row_bytes, s + from * row_bytes, row_bytes);
            }
    return 0;
}
