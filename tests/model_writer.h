/* Small llama-shaped GGUF models with random weights and a tiny byte-level
 * vocabulary, written by the tests themselves so that the forward pass can
 * be checked without any downloaded file. */
#ifndef LM_TEST_MODEL_WRITER_H
#define LM_TEST_MODEL_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *arch;     /* "llama", "qwen2", "qwen3", "phi3" or "gemma3" */
    uint32_t weight_type; /* lm_type of the 2-D matrices */
    uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff;
    bool tied;            /* no output.weight */
    uint64_t seed;
    const char *rope_scaling; /* NULL, "linear" or "llama3" */
    float rope_factor;
    const char *name;     /* general.name; NULL: "lamina test model" */
    uint32_t head_dim;    /* attention.key_length; 0: n_embd / n_head, no key */
    uint32_t n_swa;       /* gemma3's attention.sliding_window (0: 4) */
    uint32_t n_expert, n_expert_used; /* llama (Mixtral), qwen3moe or qwen2moe (with a
                                         shared expert) experts, each of n_ff width
                                         (0: dense) */
} test_model_shape;

/* The vocabulary the writer uses: 64 tokens, the byte-level forms of
 * 'a'..'z', 'A'..'Z', '0'..'9', space (as U+0120) and a few merges; token 0
 * is <|endoftext|>. */
#define TEST_N_VOCAB 64

/* Writes the model to path; 0 or -1.  Weights are uniform in [-s, s] with s
 * chosen so activations stay O(1). */
int test_write_model(const char *path, const test_model_shape *shape);

/* Writes the model as model.gguf in a new directory under /tmp and puts
 * the file's name in path (at least 64 bytes); 0 or -1. */
int test_write_model_tmp(const test_model_shape *shape, char *path, size_t path_len);
/* Removes what test_write_model_tmp made (the file and its directory). */
int test_remove_model_tmp(const char *path);

/* Deterministic uniform floats in [-1, 1). */
float test_random(uint64_t *state);

#endif
