#define _GNU_SOURCE /* mkdtemp */
#include "model_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "quant.h"

float test_random(uint64_t *state)
{
    /* splitmix64: good enough and tiny */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / (double)(1ull << 53)) * 2.0f - 1.0f;
}

/* depth matrices of rows x cols stacked (a 3-D tensor when depth > 1) */
static int add_stack(lm_gguf_writer *w, const char *name, uint32_t type, uint64_t cols,
                     uint64_t rows, uint64_t depth, float scale, uint64_t *seed)
{
    rows *= depth;
    float *f = malloc(cols * rows * sizeof(float));
    size_t bytes = lm_row_size(type, (int64_t)cols) * rows;
    void *q = malloc(bytes);
    if (!f || !q || bytes == 0) {
        free(f);
        free(q);
        return -1;
    }
    for (uint64_t i = 0; i < cols * rows; i++)
        f[i] = scale * test_random(seed);
    lm_type_get(type)->quantize(f, q, (int64_t)(cols * rows));
    uint64_t ne[3] = {cols, rows / depth, depth};
    int rc = lm_gguf_add_tensor(w, name, type, depth > 1 ? 3 : 2, ne, q);
    free(f);
    free(q);
    return rc;
}

static int add_matrix(lm_gguf_writer *w, const char *name, uint32_t type, uint64_t cols,
                      uint64_t rows, float scale, uint64_t *seed)
{
    return add_stack(w, name, type, cols, rows, 1, scale, seed);
}

static int add_vector(lm_gguf_writer *w, const char *name, uint64_t n, float base, float spread,
                      uint64_t *seed)
{
    float *f = malloc(n * sizeof(float));
    if (!f)
        return -1;
    for (uint64_t i = 0; i < n; i++)
        f[i] = base + spread * test_random(seed);
    uint64_t ne[1] = {n};
    int rc = lm_gguf_add_tensor(w, name, LM_TYPE_F32, 1, ne, f);
    free(f);
    return rc;
}

static int add_vocab(lm_gguf_writer *w)
{
    static char storage[TEST_N_VOCAB][16];
    const char *tokens[TEST_N_VOCAB];
    int32_t types[TEST_N_VOCAB];
    int n = 0;
    snprintf(storage[n], sizeof storage[n], "<|endoftext|>");
    types[n++] = 3;
    for (char c = 'a'; c <= 'z'; c++, n++) {
        snprintf(storage[n], sizeof storage[n], "%c", c);
        types[n] = 1;
    }
    for (char c = 'A'; c <= 'Z'; c++, n++) {
        snprintf(storage[n], sizeof storage[n], "%c", c);
        types[n] = 1;
    }
    const char *extra[] = {"\xC4\xA0", "ab", "\xC4\xA0" "a", "\xC4\xA0" "ab", "0", "1", "2",
                           "3", "4", "5", "."};
    for (size_t i = 0; i < sizeof extra / sizeof *extra && n < TEST_N_VOCAB; i++, n++) {
        snprintf(storage[n], sizeof storage[n], "%s", extra[i]);
        types[n] = 1;
    }
    for (int i = 0; i < TEST_N_VOCAB; i++)
        tokens[i] = storage[i];
    const char *merges[] = {"\xC4\xA0 a", ("\xC4\xA0" "a b"), "a b"};
    if (n != TEST_N_VOCAB)
        return -1;
    return lm_gguf_add_str(w, "tokenizer.ggml.model", "gpt2") ||
           lm_gguf_add_str(w, "tokenizer.ggml.pre", "gpt2") ||
           lm_gguf_add_str_arr(w, "tokenizer.ggml.tokens", tokens, TEST_N_VOCAB) ||
           lm_gguf_add_arr(w, "tokenizer.ggml.token_type", LM_GGUF_INT32, types, TEST_N_VOCAB) ||
           lm_gguf_add_str_arr(w, "tokenizer.ggml.merges", merges, 3) ||
           lm_gguf_add_u32(w, "tokenizer.ggml.bos_token_id", 0) ||
           lm_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", 0) ||
           lm_gguf_add_bool(w, "tokenizer.ggml.add_bos_token", false);
}

/* A layer's router (F32) and its experts' gate, up and down, stacked */
static int add_experts(lm_gguf_writer *w, uint32_t il, const test_model_shape *s, float in_scale,
                       float ff_scale, uint64_t *seed)
{
    char n[4][64];
    const char *suffix[4] = {"ffn_gate_inp.weight", "ffn_gate_exps.weight",
                             "ffn_up_exps.weight", "ffn_down_exps.weight"};
    for (int i = 0; i < 4; i++)
        snprintf(n[i], sizeof n[i], "blk.%u.%s", il, suffix[i]);
    return add_stack(w, n[0], LM_TYPE_F32, s->n_embd, s->n_expert, 1, 4.0f * in_scale, seed) ||
           add_stack(w, n[1], s->weight_type, s->n_embd, s->n_ff, s->n_expert, in_scale, seed) ||
           add_stack(w, n[2], s->weight_type, s->n_embd, s->n_ff, s->n_expert, in_scale, seed) ||
           add_stack(w, n[3], s->weight_type, s->n_ff, s->n_embd, s->n_expert, ff_scale, seed);
}

/* qwen2moe's shared expert (n_ff wide) and its gate's one row (a vector) */
static int add_shared_expert(lm_gguf_writer *w, uint32_t il, const test_model_shape *s,
                             float in_scale, float ff_scale, uint64_t *seed)
{
    char n[4][64];
    const char *suffix[4] = {"ffn_gate_inp_shexp.weight", "ffn_gate_shexp.weight",
                             "ffn_up_shexp.weight", "ffn_down_shexp.weight"};
    for (int i = 0; i < 4; i++)
        snprintf(n[i], sizeof n[i], "blk.%u.%s", il, suffix[i]);
    return add_vector(w, n[0], s->n_embd, 0.0f, 4.0f * in_scale, seed) ||
           add_matrix(w, n[1], s->weight_type, s->n_embd, s->n_ff, in_scale, seed) ||
           add_matrix(w, n[2], s->weight_type, s->n_embd, s->n_ff, in_scale, seed) ||
           add_matrix(w, n[3], s->weight_type, s->n_ff, s->n_embd, ff_scale, seed);
}

/* "<arch>.<suffix>" in the caller's key buffer */
#define ARCH_KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, s->arch), key)

static int add_hparams(lm_gguf_writer *w, const test_model_shape *s)
{
    char key[96];
    const bool gemma3 = strcmp(s->arch, "gemma3") == 0;
    if (s->head_dim && (lm_gguf_add_u32(w, ARCH_KEY("attention.key_length"), s->head_dim) ||
                        lm_gguf_add_u32(w, ARCH_KEY("attention.value_length"), s->head_dim)))
        return -1;
    if (gemma3 && lm_gguf_add_u32(w, ARCH_KEY("attention.sliding_window"), s->n_swa ? s->n_swa : 4))
        return -1;
    if (s->n_expert && (lm_gguf_add_u32(w, ARCH_KEY("expert_count"), s->n_expert) ||
                        lm_gguf_add_u32(w, ARCH_KEY("expert_used_count"), s->n_expert_used) ||
                        lm_gguf_add_u32(w, ARCH_KEY("expert_feed_forward_length"), s->n_ff)))
        return -1;
    if (strcmp(s->arch, "qwen2moe") == 0 &&
        lm_gguf_add_u32(w, ARCH_KEY("expert_shared_feed_forward_length"), s->n_ff))
        return -1;
    return lm_gguf_add_str(w, "general.architecture", s->arch) ||
           lm_gguf_add_str(w, "general.name", s->name ? s->name : "lamina test model") ||
           lm_gguf_add_u32(w, ARCH_KEY("block_count"), s->n_layer) ||
           lm_gguf_add_u32(w, ARCH_KEY("context_length"), 256) ||
           lm_gguf_add_u32(w, ARCH_KEY("embedding_length"), s->n_embd) ||
           lm_gguf_add_u32(w, ARCH_KEY("feed_forward_length"), s->n_ff) ||
           lm_gguf_add_u32(w, ARCH_KEY("attention.head_count"), s->n_head) ||
           lm_gguf_add_u32(w, ARCH_KEY("attention.head_count_kv"), s->n_head_kv) ||
           /* gemma3's local layers turn with 10000: the global ones differ */
           lm_gguf_add_f32(w, ARCH_KEY("rope.freq_base"), gemma3 ? 1e6f : 10000.0f) ||
           lm_gguf_add_f32(w, ARCH_KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
}

static int add_rope_scaling(lm_gguf_writer *w, const test_model_shape *s)
{
    char key[96];
    if (!s->rope_scaling)
        return 0;
    return lm_gguf_add_str(w, ARCH_KEY("rope.scaling.type"), s->rope_scaling) ||
           lm_gguf_add_f32(w, ARCH_KEY("rope.scaling.factor"), s->rope_factor) ||
           lm_gguf_add_u32(w, ARCH_KEY("rope.scaling.original_context_length"), 256);
#undef ARCH_KEY
}

int test_write_model_tmp(const test_model_shape *shape, char *path, size_t path_len)
{
    char dir[] = "/tmp/lamina-test-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, path_len, "%s/model.gguf", dir);
    return test_write_model(path, shape);
}

int test_remove_model_tmp(const char *path)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    unlink(path);
    return rmdir(dir);
}

int test_write_model(const char *path, const test_model_shape *s)
{
    lm_gguf_writer *w = lm_gguf_writer_new();
    if (!w)
        return -1;
    uint64_t seed = s->seed;
    const uint64_t hd = s->head_dim ? s->head_dim : s->n_embd / s->n_head;
    const uint64_t q = s->n_head * hd, kv = s->n_head_kv * hd;
    const float in_scale = 1.0f / sqrtf((float)s->n_embd), ff_scale = 1.0f / sqrtf((float)s->n_ff);
    const bool qwen2 = strncmp(s->arch, "qwen2", 5) == 0, phi3 = strcmp(s->arch, "phi3") == 0;
    const bool gemma3 = strcmp(s->arch, "gemma3") == 0;
    const bool qk_norm = gemma3 || strncmp(s->arch, "qwen3", 5) == 0;
    int rc = add_hparams(w, s) || add_rope_scaling(w, s) || add_vocab(w) ||
             add_matrix(w, "token_embd.weight", s->weight_type, s->n_embd, TEST_N_VOCAB, 1.0f,
                        &seed) ||
             add_vector(w, "output_norm.weight", s->n_embd, 1.0f, 0.2f, &seed);
    if (!rc && !s->tied)
        rc = add_matrix(w, "output.weight", s->weight_type, s->n_embd, TEST_N_VOCAB, in_scale,
                        &seed);
    for (uint32_t il = 0; il < s->n_layer && !rc; il++) {
        char n[17][64];
        const char *suffix[17] = {"attn_norm.weight", "attn_q.weight", "attn_k.weight",
                                  "attn_v.weight", "attn_output.weight", "ffn_norm.weight",
                                  "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight",
                                  "attn_q.bias", "attn_k.bias", "attn_v.bias",
                                  "attn_q_norm.weight", "attn_k_norm.weight",
                                  "post_attention_norm.weight", "post_ffw_norm.weight",
                                  "attn_qkv.weight"};
        for (int i = 0; i < 17; i++)
            snprintf(n[i], sizeof n[i], "blk.%u.%s", il, suffix[i]);
        if (phi3) { /* Q|K|V and gate|up fused */
            rc = add_vector(w, n[0], s->n_embd, 1.0f, 0.2f, &seed) ||
                 add_matrix(w, n[16], s->weight_type, s->n_embd, q + 2 * kv, 2.0f * in_scale,
                            &seed) ||
                 add_matrix(w, n[4], s->weight_type, q, s->n_embd, in_scale, &seed) ||
                 add_vector(w, n[5], s->n_embd, 1.0f, 0.2f, &seed) ||
                 add_matrix(w, n[7], s->weight_type, s->n_embd, 2 * s->n_ff, in_scale, &seed) ||
                 add_matrix(w, n[8], s->weight_type, s->n_ff, s->n_embd, ff_scale, &seed);
            continue;
        }
        rc = add_vector(w, n[0], s->n_embd, 1.0f, 0.2f, &seed) ||
             add_matrix(w, n[1], s->weight_type, s->n_embd, q, 2.0f * in_scale, &seed) ||
             add_matrix(w, n[2], s->weight_type, s->n_embd, kv, 2.0f * in_scale, &seed) ||
             add_matrix(w, n[3], s->weight_type, s->n_embd, kv, in_scale, &seed) ||
             add_matrix(w, n[4], s->weight_type, q, s->n_embd, in_scale, &seed) ||
             add_vector(w, n[5], s->n_embd, 1.0f, 0.2f, &seed);
        if (!rc && s->n_expert)
            rc = add_experts(w, il, s, in_scale, ff_scale, &seed);
        if (!rc && strcmp(s->arch, "qwen2moe") == 0)
            rc = add_shared_expert(w, il, s, in_scale, ff_scale, &seed);
        else if (!rc)
            rc = add_matrix(w, n[6], s->weight_type, s->n_embd, s->n_ff, in_scale, &seed) ||
             add_matrix(w, n[7], s->weight_type, s->n_embd, s->n_ff, in_scale, &seed) ||
             add_matrix(w, n[8], s->weight_type, s->n_ff, s->n_embd, ff_scale, &seed);
        if (!rc && qk_norm)
            rc = add_vector(w, n[12], hd, 1.0f, 0.2f, &seed) ||
                 add_vector(w, n[13], hd, 1.0f, 0.2f, &seed);
        if (!rc && gemma3)
            rc = add_vector(w, n[14], s->n_embd, 1.0f, 0.2f, &seed) ||
                 add_vector(w, n[15], s->n_embd, 1.0f, 0.2f, &seed);
        if (!rc && qwen2)
            rc = add_vector(w, n[9], q, 0.0f, 0.1f, &seed) ||
                 add_vector(w, n[10], kv, 0.0f, 0.1f, &seed) ||
                 add_vector(w, n[11], kv, 0.0f, 0.1f, &seed);
    }
    if (!rc)
        rc = lm_gguf_write(w, path);
    lm_gguf_writer_free(w);
    return rc;
}
