/* config.json of a Hugging Face model folder (hf_config.h). */
#include "hf_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

/* Hugging Face class names to the GGUF architecture llama.cpp writes
 * (Mistral's checkpoints are llama's layout). */
static const struct {
    const char *hf, *gguf;
} arches[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "llama"},
    {"Qwen2ForCausalLM", "qwen2"},
};

/* Field caps: far above any real model, low enough that products of them
 * stay inside 64 bits. */
#define MAX_WIDTH (1u << 20)
#define MAX_LAYERS 4096u
#define MAX_VOCAB (1u << 24)
#define MAX_CTX (1u << 24)

/* key as an integer in [lo, hi]; absent: fallback, or an error when
 * fallback is 0. */
static int get_uint(const char *path, json_t *cfg, const char *key, uint32_t lo, uint32_t hi,
                    uint32_t fallback, uint32_t *out)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (fallback == 0) {
            lm_set_error("%s: no \"%s\"", path, key);
            return -1;
        }
        *out = fallback;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)lo ||
        json_integer_value(v) > (json_int_t)hi) {
        lm_set_error("%s: \"%s\" is not an integer from %u to %u", path, key, lo, hi);
        return -1;
    }
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

/* key as a finite positive number; absent: fallback (0: an error). */
static int get_float(const char *path, json_t *cfg, const char *key, double fallback, float *out)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (fallback == 0) {
            lm_set_error("%s: no \"%s\"", path, key);
            return -1;
        }
        *out = (float)fallback;
        return 0;
    }
    const double d = json_number_value(v);
    if (!json_is_number(v) || !isfinite(d) || d <= 0 || d > 1e30) {
        lm_set_error("%s: \"%s\" is not a positive number", path, key);
        return -1;
    }
    *out = (float)d;
    return 0;
}

static int read_rope_scaling(const char *path, json_t *cfg, lm_hf_config *c)
{
    json_t *rs = json_object_get(cfg, "rope_scaling");
    if (!rs || json_is_null(rs))
        return 0;
    if (!json_is_object(rs)) {
        lm_set_error("%s: \"rope_scaling\" is not an object", path);
        return -1;
    }
    json_t *type = json_object_get(rs, "rope_type");
    if (!type)
        type = json_object_get(rs, "type");
    const char *t = json_string_value(type);
    if (!t || (strcmp(t, "linear") != 0 && strcmp(t, "llama3") != 0)) {
        lm_set_error("%s: rope_scaling of type '%s': lamina converts none, linear or llama3",
                     path, t ? t : "?");
        return -1;
    }
    snprintf(c->rope_scaling, sizeof c->rope_scaling, "%s", t);
    if (get_float(path, rs, "factor", strcmp(t, "llama3") == 0 ? 8.0 : 0, &c->rope_factor) != 0)
        return -1;
    /* llama3's defaults are the converter's */
    if (strcmp(t, "llama3") == 0 &&
        (get_float(path, rs, "low_freq_factor", 1.0, &c->rope_low_freq_factor) != 0 ||
         get_float(path, rs, "high_freq_factor", 4.0, &c->rope_high_freq_factor) != 0 ||
         get_uint(path, rs, "original_max_position_embeddings", 1, MAX_CTX, 8192,
                  &c->rope_orig_ctx) != 0))
        return -1;
    if (strcmp(t, "llama3") == 0 && c->rope_high_freq_factor <= c->rope_low_freq_factor) {
        lm_set_error("%s: llama3 rope_scaling's high_freq_factor is not above its low_freq_factor",
                     path);
        return -1;
    }
    return 0;
}

/* RoPE: transformers before 5 writes rope_theta and rope_scaling at the
 * top; 5 writes them in "rope_parameters" (rope_type "default" meaning no
 * scaling). */
static int read_rope(const char *path, json_t *cfg, lm_hf_config *c)
{
    json_t *params = json_object_get(cfg, "rope_parameters");
    if (json_is_object(params)) {
        if (get_float(path, params, "rope_theta", 10000.0, &c->rope_base) != 0)
            return -1;
        const char *type = json_string_value(json_object_get(params, "rope_type"));
        if (!type || !strcmp(type, "default"))
            return 0;
        json_t *wrapped = json_pack("{sO}", "rope_scaling", params);
        const int rc = wrapped ? read_rope_scaling(path, wrapped, c) : -1;
        json_decref(wrapped);
        return rc;
    }
    if (get_float(path, cfg, "rope_theta", 10000.0, &c->rope_base) != 0)
        return -1;
    return read_rope_scaling(path, cfg, c);
}

static int from_json(const char *path, json_t *cfg, lm_hf_config *c)
{
    *c = (lm_hf_config){0};
    if (!json_is_object(cfg)) {
        lm_set_error("%s: not a JSON object", path);
        return -1;
    }
    const char *hf_arch = json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0));
    if (!hf_arch) {
        lm_set_error("%s: no \"architectures\" list", path);
        return -1;
    }
    for (size_t i = 0; i < sizeof arches / sizeof *arches && !c->arch[0]; i++)
        if (strcmp(hf_arch, arches[i].hf) == 0)
            snprintf(c->arch, sizeof c->arch, "%s", arches[i].gguf);
    if (!c->arch[0]) {
        char shown[80];
        lm_set_error("%s: architecture '%s': lamina converts LlamaForCausalLM, "
                     "MistralForCausalLM and Qwen2ForCausalLM", path,
                     lm_printable(hf_arch, strlen(hf_arch), shown, sizeof shown));
        return -1;
    }
    snprintf(c->hf_arch, sizeof c->hf_arch, "%s", hf_arch);
    if (get_uint(path, cfg, "hidden_size", 1, MAX_WIDTH, 0, &c->n_embd) != 0 ||
        get_uint(path, cfg, "intermediate_size", 1, MAX_WIDTH, 0, &c->n_ff) != 0 ||
        get_uint(path, cfg, "num_hidden_layers", 1, MAX_LAYERS, 0, &c->n_layer) != 0 ||
        get_uint(path, cfg, "num_attention_heads", 1, MAX_WIDTH, 0, &c->n_head) != 0 ||
        get_uint(path, cfg, "num_key_value_heads", 1, MAX_WIDTH, c->n_head, &c->n_head_kv) != 0 ||
        get_uint(path, cfg, "head_dim", 1, MAX_WIDTH, c->n_embd / c->n_head ? c->n_embd / c->n_head : 1,
                 &c->head_dim) != 0 ||
        get_uint(path, cfg, "vocab_size", 1, MAX_VOCAB, 0, &c->n_vocab) != 0 ||
        get_uint(path, cfg, "max_position_embeddings", 1, MAX_CTX, 0, &c->n_ctx_train) != 0 ||
        get_float(path, cfg, "rms_norm_eps", 0, &c->norm_eps) != 0 ||
        read_rope(path, cfg, c) != 0)
        return -1;
    if (c->n_head % c->n_head_kv != 0) {
        lm_set_error("%s: %u attention heads do not share %u KV heads evenly", path, c->n_head,
                     c->n_head_kv);
        return -1;
    }
    if (c->head_dim % 2 != 0) {
        lm_set_error("%s: head size %u is odd (RoPE rotates pairs)", path, c->head_dim);
        return -1;
    }
    json_t *tied = json_object_get(cfg, "tie_word_embeddings");
    c->tied = json_is_true(tied);
    json_t *hd = json_object_get(cfg, "head_dim");
    c->head_dim_given = hd && !json_is_null(hd);
    return 0;
}

int lm_hf_config_parse(const char *path, const char *text, size_t len, lm_hf_config *out)
{
    json_error_t err;
    json_t *cfg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!cfg) {
        char shown[80];
        lm_set_error("%s: not valid JSON (%s, line %d)", path,
                     lm_printable(err.text, strlen(err.text), shown, sizeof shown), err.line);
        return -1;
    }
    const int rc = from_json(path, cfg, out);
    json_decref(cfg);
    return rc;
}

int lm_hf_config_read(const char *dir, lm_hf_config *out)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path) {
        lm_set_error("%s: path too long", dir);
        return -1;
    }
    json_error_t err;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!cfg) {
        char shown[80];
        lm_set_error("%s: %s", path, lm_printable(err.text, strlen(err.text), shown, sizeof shown));
        return -1;
    }
    const int rc = from_json(path, cfg, out);
    json_decref(cfg);
    return rc;
}
