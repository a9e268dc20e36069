/* A Hugging Face model folder's config.json, for lamina convert: the
 * hyperparameters of the architectures it converts, each checked (present
 * where required, integers in range, heads dividing the width), with
 * llama.cpp's converter's defaults where the file may leave one out. */
#ifndef LM_HF_CONFIG_H
#define LM_HF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char arch[16];          /* GGUF general.architecture: "llama" or "qwen2" */
    char hf_arch[64];       /* config's architectures[0]: "LlamaForCausalLM", ... */
    uint32_t n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim, n_vocab, n_ctx_train;
    float norm_eps;
    float rope_base;        /* rope_theta, 10000 when absent */
    bool tied;              /* tie_word_embeddings: no lm_head */
    /* rope_scaling: "" (none), "linear" or "llama3" */
    char rope_scaling[16];
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    uint32_t rope_orig_ctx;
    bool head_dim_given;    /* "head_dim" in the file (then written as key/value lengths) */
} lm_hf_config;

/* Reads dir/config.json: 0, or -1 with lm_set_error naming the file and
 * the field at fault. */
int lm_hf_config_read(const char *dir, lm_hf_config *out);

/* The same from JSON text (len bytes; path names it in errors). */
int lm_hf_config_parse(const char *path, const char *text, size_t len, lm_hf_config *out);

#endif
