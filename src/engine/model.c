/* Loading a model: metadata to hyperparameters, tensor names to layers, and
 * every shape and type checked here once, so the backends can trust them. */
#define _GNU_SOURCE
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "error.h"
#include "kernels.h"
#include "quant.h"

/* Per-layer tensor names (after "blk.N."); which of them a model needs is
 * its architecture's (src/arch/arch.c). */
static const char *const layer_tensor_names[LM_W_PER_LAYER] = {
    [LM_W_ATTN_NORM] = "attn_norm.weight",
    [LM_W_Q] = "attn_q.weight",
    [LM_W_K] = "attn_k.weight",
    [LM_W_V] = "attn_v.weight",
    [LM_W_O] = "attn_output.weight",
    [LM_W_Q_BIAS] = "attn_q.bias",
    [LM_W_K_BIAS] = "attn_k.bias",
    [LM_W_V_BIAS] = "attn_v.bias",
    [LM_W_FFN_NORM] = "ffn_norm.weight",
    [LM_W_GATE] = "ffn_gate.weight",
    [LM_W_UP] = "ffn_up.weight",
    [LM_W_DOWN] = "ffn_down.weight",
    [LM_W_Q_NORM] = "attn_q_norm.weight",
    [LM_W_K_NORM] = "attn_k_norm.weight",
    [LM_W_ATTN_POST_NORM] = "post_attention_norm.weight",
    [LM_W_FFN_POST_NORM] = "post_ffw_norm.weight",
    [LM_W_QKV] = "attn_qkv.weight",
    [LM_W_FFN_ROUTER] = "ffn_gate_inp.weight",
    [LM_W_GATE_EXPS] = "ffn_gate_exps.weight",
    [LM_W_UP_EXPS] = "ffn_up_exps.weight",
    [LM_W_DOWN_EXPS] = "ffn_down_exps.weight",
    [LM_W_SHEXP_ROUTER] = "ffn_gate_inp_shexp.weight",
    [LM_W_GATE_SHEXP] = "ffn_gate_shexp.weight",
    [LM_W_UP_SHEXP] = "ffn_up_shexp.weight",
    [LM_W_DOWN_SHEXP] = "ffn_down_shexp.weight",
};

static int arch_key_u32(const lm_gguf *g, const char *arch, const char *suffix, uint32_t *out,
                        bool required)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (required)
        return lm_gguf_require_u32(g, key, out);
    return lm_gguf_get_u32(g, key, out);
}

static int arch_key_f32(const lm_gguf *g, const char *arch, const char *suffix, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return lm_gguf_get_f32(g, key, out);
}

int lm_model_key_u32(const lm_model *m, const char *suffix, uint32_t *out)
{
    return arch_key_u32(m->gguf, m->hp.arch_name, suffix, out, false);
}

int lm_model_key_f32(const lm_model *m, const char *suffix, float *out)
{
    return arch_key_f32(m->gguf, m->hp.arch_name, suffix, out);
}

/* A mixture of experts' counts and widths, for the architectures that can
 * have one; 0 or -1 with an error. */
static int read_experts(lm_model *m)
{
    lm_hparams *hp = &m->hp;
    const char *path = lm_gguf_path(m->gguf);
    arch_key_u32(m->gguf, hp->arch_name, "expert_count", &hp->n_expert, false);
    if (hp->n_expert == 0) {
        if (hp->arch->moe == LM_MOE_ALWAYS) {
            lm_set_error("%s: %s needs %s.expert_count", path, hp->arch_name, hp->arch_name);
            return -1;
        }
        return 0;
    }
    if (hp->arch->moe == LM_MOE_NEVER) {
        lm_set_error("%s: lamina runs %s without experts (expert_count %u)", path, hp->arch_name,
                     hp->n_expert);
        return -1;
    }
    hp->n_ff_exp = hp->n_ff;
    if (hp->arch->expert_ff_key)
        arch_key_u32(m->gguf, hp->arch_name, "expert_feed_forward_length", &hp->n_ff_exp, false);
    if (arch_key_u32(m->gguf, hp->arch_name, "expert_used_count", &hp->n_expert_used, true) != 0)
        return -1;
    if (hp->n_expert > LM_MAX_EXPERTS || hp->n_expert_used == 0 ||
        hp->n_expert_used > hp->n_expert || hp->n_ff_exp == 0 || hp->n_ff_exp > (1u << 22)) {
        lm_set_error("%s: inconsistent experts (%u experts, %u used, width %u; at most %d)",
                     path, hp->n_expert, hp->n_expert_used, hp->n_ff_exp, LM_MAX_EXPERTS);
        return -1;
    }
    hp->expert_norm = hp->arch->expert_norm;
    if (hp->arch->required & LM_ROLE(LM_W_DOWN_SHEXP)) {
        hp->n_ff_shexp = hp->n_ff;
        arch_key_u32(m->gguf, hp->arch_name, "expert_shared_feed_forward_length",
                     &hp->n_ff_shexp, false);
        if (hp->n_ff_shexp == 0 || hp->n_ff_shexp > (1u << 22)) {
            lm_set_error("%s: a shared expert of width %u", path, hp->n_ff_shexp);
            return -1;
        }
    }
    return 0;
}

static int read_hparams(lm_model *m)
{
    const lm_gguf *g = m->gguf;
    const char *path = lm_gguf_path(g);
    lm_hparams *hp = &m->hp;
    lm_gguf_str arch;

    if (lm_gguf_get_str(g, "general.architecture", &arch) != 0) {
        lm_set_error("%s: missing key 'general.architecture'", path);
        return -1;
    }
    if (!(hp->arch = lm_arch_find(arch.data, arch.len))) {
        lm_set_error("%s: unsupported architecture '%.*s' (lamina runs %s)", path,
                     (int)(arch.len > 64 ? 64 : arch.len), arch.data, lm_arch_names());
        return -1;
    }
    hp->arch_name = hp->arch->name;
    const char *a = hp->arch_name;
    if (arch_key_u32(g, a, "block_count", &hp->n_layer, true) ||
        arch_key_u32(g, a, "embedding_length", &hp->n_embd, true) ||
        arch_key_u32(g, a, "feed_forward_length", &hp->n_ff, true) ||
        arch_key_u32(g, a, "attention.head_count", &hp->n_head, true))
        return -1;
    hp->n_head_kv = hp->n_head;
    arch_key_u32(g, a, "attention.head_count_kv", &hp->n_head_kv, false);
    hp->n_ctx_train = 2048;
    arch_key_u32(g, a, "context_length", &hp->n_ctx_train, false);
    hp->rope_base = 10000.0f;
    arch_key_f32(g, a, "rope.freq_base", &hp->rope_base);
    hp->norm_eps = hp->arch->norm_eps;
    arch_key_f32(g, a, "attention.layer_norm_rms_epsilon", &hp->norm_eps);
    hp->rope_neox = hp->arch->rope_neox;

    if (hp->n_layer == 0 || hp->n_layer > 4096 || hp->n_embd == 0 || hp->n_embd > (1u << 20) ||
        hp->n_head == 0 || hp->n_head > 4096 || hp->n_head_kv == 0 ||
        hp->n_head % hp->n_head_kv != 0 || hp->n_ff == 0 || hp->n_ff > (1u << 22)) {
        lm_set_error("%s: inconsistent hyperparameters (layers %u, embedding %u, heads %u/%u, "
                     "ffn %u)", path, hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_ff);
        return -1;
    }
    /* the head size is embedding/heads unless the file says otherwise */
    hp->head_dim = hp->n_embd / hp->n_head;
    const bool key_length = arch_key_u32(g, a, "attention.key_length", &hp->head_dim, false) == 0;
    uint32_t value_length = hp->head_dim;
    arch_key_u32(g, a, "attention.value_length", &value_length, false);
    if ((!key_length && hp->n_embd % hp->n_head != 0) || hp->head_dim == 0 ||
        value_length != hp->head_dim) {
        lm_set_error("%s: head size: embedding %u, %u heads, key length %u, value length %u "
                     "(unsupported)", path, hp->n_embd, hp->n_head, hp->head_dim, value_length);
        return -1;
    }
    if (hp->head_dim > 1024) {
        lm_set_error("%s: head size %u is larger than lamina supports (1024)", path, hp->head_dim);
        return -1;
    }
    hp->n_rot = hp->head_dim;
    arch_key_u32(g, a, "rope.dimension_count", &hp->n_rot, false);
    if (hp->n_rot == 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0) {
        lm_set_error("%s: rope.dimension_count %u does not fit head size %u", path, hp->n_rot,
                     hp->head_dim);
        return -1;
    }
    hp->embd_scale = 1.0f;
    hp->rope_base_swa = hp->rope_base;
    if (read_experts(m) != 0)
        return -1;
    return hp->arch->read_hparams ? hp->arch->read_hparams(m) : 0;
}

/* Checks a tensor's type and shape; ne1 == 0 means a vector, ne2 != 0 a
 * stack of ne2 matrices (experts). */
static int check_tensor3(const lm_gguf *g, const lm_gguf_tensor *t, uint64_t ne0, uint64_t ne1,
                         uint64_t ne2)
{
    uint64_t want_dims = ne2 ? 3 : ne1 ? 2 : 1;
    uint64_t got1 = t->n_dims > 1 ? t->ne[1] : 0, got2 = t->n_dims > 2 ? t->ne[2] : 0;
    if (t->n_dims != want_dims || t->ne[0] != ne0 || got1 != ne1 || got2 != ne2) {
        lm_set_error("%s: tensor '%.*s' has shape [%llu, %llu, %llu], expected [%llu, %llu, "
                     "%llu]", lm_gguf_path(g), (int)t->name.len, t->name.data,
                     (unsigned long long)t->ne[0], (unsigned long long)got1,
                     (unsigned long long)got2, (unsigned long long)ne0,
                     (unsigned long long)ne1, (unsigned long long)ne2);
        return -1;
    }
    bool is_vector = ne1 == 0;
    if ((is_vector && t->type != LM_TYPE_F32) || (!is_vector && !lm_cpu_supports(t->type))) {
        lm_set_error("%s: tensor '%.*s' has type %s, which lamina cannot use there",
                     lm_gguf_path(g), (int)t->name.len, t->name.data, lm_type_name(t->type));
        return -1;
    }
    return 0;
}

static int check_tensor(const lm_gguf *g, const lm_gguf_tensor *t, uint64_t ne0, uint64_t ne1)
{
    return check_tensor3(g, t, ne0, ne1, 0);
}

static const lm_gguf_tensor *need_tensor(const lm_gguf *g, const char *name)
{
    const lm_gguf_tensor *t = lm_gguf_find_tensor(g, name);
    if (!t)
        lm_set_error("%s: missing tensor '%s'", lm_gguf_path(g), name);
    return t;
}

/* Expected [ne0, ne1] of each layer tensor. */
static void layer_tensor_shape(const lm_hparams *hp, int w, uint64_t *ne0, uint64_t *ne1,
                               uint64_t *ne2)
{
    /* an architecture whose ffn_up holds the gate's rows, then the up's */
    const uint64_t up = hp->arch->fused_gate_up ? 2 * (uint64_t)hp->n_ff : hp->n_ff;
    uint64_t q = (uint64_t)hp->n_head * hp->head_dim, kv = (uint64_t)hp->n_head_kv * hp->head_dim;
    const uint64_t shapes[LM_W_PER_LAYER][2] = {
        [LM_W_ATTN_NORM] = {hp->n_embd, 0}, [LM_W_Q] = {hp->n_embd, q},
        [LM_W_K] = {hp->n_embd, kv},        [LM_W_V] = {hp->n_embd, kv},
        [LM_W_O] = {q, hp->n_embd},         [LM_W_Q_BIAS] = {q, 0},
        [LM_W_K_BIAS] = {kv, 0},            [LM_W_V_BIAS] = {kv, 0},
        [LM_W_FFN_NORM] = {hp->n_embd, 0},  [LM_W_GATE] = {hp->n_embd, hp->n_ff},
        [LM_W_UP] = {hp->n_embd, up},       [LM_W_DOWN] = {hp->n_ff, hp->n_embd},
        [LM_W_Q_NORM] = {hp->head_dim, 0},  [LM_W_K_NORM] = {hp->head_dim, 0},
        [LM_W_ATTN_POST_NORM] = {hp->n_embd, 0}, [LM_W_FFN_POST_NORM] = {hp->n_embd, 0},
        [LM_W_QKV] = {hp->n_embd, q + 2 * kv},
        [LM_W_FFN_ROUTER] = {hp->n_embd, hp->n_expert},
        [LM_W_GATE_EXPS] = {hp->n_embd, hp->n_ff_exp},
        [LM_W_UP_EXPS] = {hp->n_embd, hp->n_ff_exp},
        [LM_W_DOWN_EXPS] = {hp->n_ff_exp, hp->n_embd},
        [LM_W_SHEXP_ROUTER] = {hp->n_embd, 1},
        [LM_W_GATE_SHEXP] = {hp->n_embd, hp->n_ff_shexp},
        [LM_W_UP_SHEXP] = {hp->n_embd, hp->n_ff_shexp},
        [LM_W_DOWN_SHEXP] = {hp->n_ff_shexp, hp->n_embd},
    };
    *ne0 = shapes[w][0];
    *ne1 = shapes[w][1];
    *ne2 = lm_role_is_expert_stack(w) ? hp->n_expert : 0;
}

static int load_layers(lm_model *m)
{
    const lm_gguf *g = m->gguf;
    m->layers = calloc(m->hp.n_layer, sizeof *m->layers);
    if (!m->layers) {
        lm_set_error("out of memory");
        return -1;
    }
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        lm_layer *L = &m->layers[il];
        for (int w = 0; w < LM_W_PER_LAYER; w++) {
            const uint32_t role = LM_ROLE(w), required = lm_arch_required(&m->hp);
            if (!((required | m->hp.arch->optional) & role))
                continue;
            char name[96];
            snprintf(name, sizeof name, "blk.%u.%s", il, layer_tensor_names[w]);
            const lm_gguf_tensor *t = lm_gguf_find_tensor(g, name);
            if (!t) {
                if (required & role) {
                    lm_set_error("%s: missing tensor '%s'", lm_gguf_path(g), name);
                    return -1;
                }
                continue;
            }
            uint64_t ne0, ne1, ne2;
            layer_tensor_shape(&m->hp, w, &ne0, &ne1, &ne2);
            /* the shared expert's gate is one row: a vector in most files */
            if (w == LM_W_SHEXP_ROUTER && t->n_dims == 1)
                ne1 = 0;
            if (check_tensor3(g, t, ne0, ne1, ne2) != 0)
                return -1;
            L->t[w] = t;
            L->nbytes += t->nbytes;
        }
    }
    return 0;
}

static int load_globals(lm_model *m)
{
    const lm_gguf *g = m->gguf;
    const lm_hparams *hp = &m->hp;
    if (!(m->tok_embd = need_tensor(g, "token_embd.weight")) ||
        !(m->output_norm = need_tensor(g, "output_norm.weight")))
        return -1;
    uint64_t n_vocab = m->tok_embd->n_dims == 2 ? m->tok_embd->ne[1] : 0;
    if (n_vocab == 0 || n_vocab > (1u << 24)) {
        lm_set_error("%s: tensor 'token_embd.weight' has an unusable shape", lm_gguf_path(g));
        return -1;
    }
    m->hp.n_vocab = (uint32_t)n_vocab;
    if (check_tensor(g, m->tok_embd, hp->n_embd, n_vocab) ||
        check_tensor(g, m->output_norm, hp->n_embd, 0))
        return -1;
    m->output = lm_gguf_find_tensor(g, "output.weight");
    m->hp.tied_embeddings = m->output == NULL;
    if (!m->output)
        m->output = m->tok_embd;
    else if (check_tensor(g, m->output, hp->n_embd, n_vocab))
        return -1;
    return 0;
}

/* Llama 3.1's frequency-dependent scaling, from the metadata keys, for files
 * that carry the keys but not the 'rope_freqs.weight' tensor: wavelengths
 * longer than original_context/low_freq_factor are divided by factor,
 * shorter than original_context/high_freq_factor kept, and those in between
 * blended (the formula of Meta's reference code). */
static float llama3_divisor(const lm_model *m, float inv_freq)
{
    const lm_gguf *g = m->gguf;
    const char *a = m->hp.arch_name;
    float factor = 8.0f, low = 1.0f, high = 4.0f, orig = 8192.0f;
    uint32_t orig_ctx;
    arch_key_f32(g, a, "rope.scaling.factor", &factor);
    arch_key_f32(g, a, "rope.scaling.low_freq_factor", &low);
    arch_key_f32(g, a, "rope.scaling.high_freq_factor", &high);
    if (arch_key_u32(g, a, "rope.scaling.original_context_length", &orig_ctx, false) == 0)
        orig = (float)orig_ctx;
    const float wavelen = 2.0f * (float)M_PI / inv_freq;
    if (wavelen < orig / high)
        return 1.0f;
    if (wavelen > orig / low)
        return factor;
    const float smooth = (orig / wavelen - low) / (high - low);
    return 1.0f / ((1.0f - smooth) / factor + smooth);
}

/* What kind of RoPE scaling the metadata asks for: "none", "linear" (all
 * positions divided by the factor) or "llama3". */
static int rope_scaling(const lm_model *m, bool *llama3, float *linear_scale)
{
    char key[128];
    lm_gguf_str type;
    *llama3 = false;
    *linear_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->hp.arch_name);
    if (lm_gguf_get_str(m->gguf, key, &type) != 0 || lm_gguf_str_eq(type, "none"))
        return 0;
    if (lm_gguf_str_eq(type, "llama3")) {
        *llama3 = true;
        return 0;
    }
    if (lm_gguf_str_eq(type, "linear")) {
        float factor = 1.0f;
        arch_key_f32(m->gguf, m->hp.arch_name, "rope.scaling.factor", &factor);
        if (!(factor > 0.0f)) {
            lm_set_error("%s: rope.scaling.factor must be positive", lm_gguf_path(m->gguf));
            return -1;
        }
        *linear_scale = 1.0f / factor;
        return 0;
    }
    lm_set_error("%s: unsupported RoPE scaling '%.*s' (lamina knows linear and llama3)",
                 lm_gguf_path(m->gguf), (int)(type.len > 32 ? 32 : type.len), type.data);
    return -1;
}

/* RoPE as ggml turns it (see lm_rope_params).  Llama 3.1 files carry the
 * per-frequency divisors in 'rope_freqs.weight'; files with only the
 * metadata keys get them computed here. */
static int init_rope(lm_model *m)
{
    const lm_hparams *hp = &m->hp;
    const uint32_t n = hp->n_rot / 2;
    bool llama3;
    float linear_scale;
    if (rope_scaling(m, &llama3, &linear_scale) != 0)
        return -1;
    const lm_gguf_tensor *factors = lm_gguf_find_tensor(m->gguf, "rope_freqs.weight");
    if (factors && (factors->type != LM_TYPE_F32 || factors->ne[0] != n || factors->n_dims != 1)) {
        lm_set_error("%s: tensor 'rope_freqs.weight' should be F32 [%u]", lm_gguf_path(m->gguf), n);
        return -1;
    }
    m->rope = (lm_rope_params){
        .n_rot = (int)hp->n_rot,
        .neox = hp->rope_neox,
        .theta_scale = powf(hp->rope_base, -2.0f / (float)hp->n_rot),
        .freq_scale = linear_scale,
    };
    if (!factors && !llama3)
        return 0;
    m->rope_freq_div = malloc(n * sizeof(float));
    if (!m->rope_freq_div) {
        lm_set_error("out of memory");
        return -1;
    }
    float inv_freq = 1.0f;
    for (uint32_t i = 0; i < n; i++) {
        if (factors)
            memcpy(&m->rope_freq_div[i], (const char *)factors->data + i * sizeof(float),
                   sizeof(float));
        else
            m->rope_freq_div[i] = llama3_divisor(m, inv_freq);
        inv_freq *= m->rope.theta_scale;
    }
    m->rope.freq_div = m->rope_freq_div;
    return 0;
}

/* The sliding-window layers' RoPE: their own base, never scaled (as
 * llama.cpp turns Gemma 3's local layers). */
static void init_rope_swa(lm_model *m)
{
    const lm_hparams *hp = &m->hp;
    m->rope_swa = m->rope;
    if (hp->rope_base_swa == hp->rope_base)
        return;
    m->rope_swa.theta_scale = powf(hp->rope_base_swa, -2.0f / (float)hp->n_rot);
    m->rope_swa.freq_scale = 1.0f;
    m->rope_swa.freq_div = NULL;
}

lm_model *lm_model_load(const char *path)
{
    lm_model *m = calloc(1, sizeof *m);
    if (!m) {
        lm_set_error("out of memory");
        return NULL;
    }
    m->gguf = lm_gguf_open(path);
    if (!m->gguf || read_hparams(m) || load_globals(m) || load_layers(m) || init_rope(m))
        goto fail;
    init_rope_swa(m);
    m->tokenizer = lm_tokenizer_from_gguf(m->gguf);
    if (!m->tokenizer)
        goto fail;
    if (lm_tokenizer_n_vocab(m->tokenizer) != (int32_t)m->hp.n_vocab) {
        lm_set_error("%s: tokenizer has %d tokens but token_embd.weight has %u rows", path,
                     lm_tokenizer_n_vocab(m->tokenizer), m->hp.n_vocab);
        goto fail;
    }
    for (uint64_t i = 0; i < lm_gguf_n_tensors(m->gguf); i++)
        m->weight_bytes += lm_gguf_tensor_at(m->gguf, i)->nbytes;
    return m;
fail:
    lm_model_free(m);
    return NULL;
}

void lm_model_free(lm_model *m)
{
    if (!m)
        return;
    lm_tokenizer_free(m->tokenizer);
    free(m->rope_freq_div);
    free(m->layers);
    lm_gguf_close(m->gguf);
    free(m);
}

void lm_model_layer_view(const lm_model *m, int il, lm_layer_view *view)
{
    for (int w = 0; w < LM_W_PER_LAYER; w++) {
        const lm_gguf_tensor *t = m->layers[il].t[w];
        view->data[w] = t ? t->data : NULL;
    }
    view->device_slot = -1;
    view->experts = NULL;
    view->trace = NULL;
}

uint64_t lm_model_bytes_per_token(const lm_model *m)
{
    uint64_t bytes = m->output->nbytes + m->output_norm->nbytes;
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        bytes += m->layers[il].nbytes;
        /* a mixture of experts computes n_expert_used of them per token */
        for (int w = 0; w < LM_W_PER_LAYER; w++) {
            const lm_gguf_tensor *t = m->layers[il].t[w];
            if (t && lm_role_is_expert_stack(w))
                bytes -= t->nbytes / m->hp.n_expert * (m->hp.n_expert - m->hp.n_expert_used);
        }
    }
    return bytes;
}
