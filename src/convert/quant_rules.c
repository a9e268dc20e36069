/* The per-tensor type rules (quant_rules.h says what they are and why). */
#include "quant_rules.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "arch.h"
#include "error.h"
#include "quant.h"

/* llama.cpp's llama_ftype numbers, which general.file_type holds. */
enum {
    FTYPE_ALL_F32 = 0, FTYPE_F16 = 1, FTYPE_Q4_0 = 2, FTYPE_Q4_1 = 3, FTYPE_Q8_0 = 7,
    FTYPE_Q5_0 = 8, FTYPE_Q5_1 = 9, FTYPE_Q4_K_S = 14, FTYPE_Q4_K_M = 15, FTYPE_Q5_K_S = 16,
    FTYPE_Q5_K_M = 17, FTYPE_Q6_K = 18, FTYPE_BF16 = 32
};

/* Plain Q4_K and Q5_K are every matrix at that type but the output head
 * (llama-quantize's "Q4_K" is its Q4_K_M mix); their file type is the
 * nearest of llama.cpp's, the _S mix.  llama-quantize's Q5_K_S has no rule
 * beyond the head, so it is plain Q5_K by another name. */
static const lm_quant_target targets[] = {
    {"F32", LM_TYPE_F32, LM_MIX_NONE, FTYPE_ALL_F32},
    {"F16", LM_TYPE_F16, LM_MIX_NONE, FTYPE_F16},
    {"BF16", LM_TYPE_BF16, LM_MIX_NONE, FTYPE_BF16},
    {"Q4_0", LM_TYPE_Q4_0, LM_MIX_NONE, FTYPE_Q4_0},
    {"Q4_1", LM_TYPE_Q4_1, LM_MIX_NONE, FTYPE_Q4_1},
    {"Q5_0", LM_TYPE_Q5_0, LM_MIX_NONE, FTYPE_Q5_0},
    {"Q5_1", LM_TYPE_Q5_1, LM_MIX_NONE, FTYPE_Q5_1},
    {"Q8_0", LM_TYPE_Q8_0, LM_MIX_NONE, FTYPE_Q8_0},
    {"Q4_K", LM_TYPE_Q4_K, LM_MIX_NONE, FTYPE_Q4_K_S},
    {"Q5_K", LM_TYPE_Q5_K, LM_MIX_NONE, FTYPE_Q5_K_S},
    {"Q6_K", LM_TYPE_Q6_K, LM_MIX_NONE, FTYPE_Q6_K},
    {"Q4_K_S", LM_TYPE_Q4_K, LM_MIX_S, FTYPE_Q4_K_S},
    {"Q5_K_S", LM_TYPE_Q5_K, LM_MIX_NONE, FTYPE_Q5_K_S},
    {"Q4_K_M", LM_TYPE_Q4_K, LM_MIX_M, FTYPE_Q4_K_M},
    {"Q5_K_M", LM_TYPE_Q5_K, LM_MIX_M, FTYPE_Q5_K_M},
};
#define N_TARGETS (sizeof targets / sizeof *targets)

const char *lm_quant_target_list(void)
{
    static char list[160];
    if (!list[0])
        for (size_t i = 0; i < N_TARGETS; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     targets[i].name);
    return list;
}

int lm_quant_target_parse(const char *name, lm_quant_target *out)
{
    for (size_t i = 0; i < N_TARGETS; i++)
        if (strcasecmp(targets[i].name, name) == 0) {
            *out = targets[i];
            return 0;
        }
    lm_set_error("unknown type '%s' (%s)", name, lm_quant_target_list());
    return -1;
}

/* "ARCH.suffix" as a u32, or fallback when the file has no such number. */
static uint32_t arch_u32(const lm_gguf *g, lm_gguf_str arch, const char *suffix,
                         uint32_t fallback)
{
    char key[128];
    uint32_t v;
    snprintf(key, sizeof key, "%.*s.%s", (int)(arch.len < 64 ? arch.len : 64), arch.data, suffix);
    return lm_gguf_get_u32(g, key, &v) == 0 ? v : fallback;
}

int lm_quant_model_of(const lm_gguf *g, bool pure, lm_quant_model *out)
{
    *out = (lm_quant_model){.pure = pure};
    out->tied = lm_gguf_find_tensor(g, "output.weight") == NULL;
    lm_gguf_str arch;
    if (lm_gguf_get_str(g, "general.architecture", &arch) != 0) {
        lm_set_error("%s: no general.architecture", lm_gguf_path(g));
        return -1;
    }
    /* llama-quantize's rules have cases for architectures lamina does not
     * run (Falcon, RWKV, Mamba, ...) that these rules leave out */
    if (!lm_arch_find(arch.data, (size_t)arch.len)) {
        char shown[80];
        lm_set_error("%s: architecture '%s' is not one lamina runs (%s), so its quantization "
                     "rules are not lamina's", lm_gguf_path(g),
                     lm_printable(arch.data, (size_t)arch.len, shown, sizeof shown),
                     lm_arch_names());
        return -1;
    }
    /* one shard of a split model holds only some of its tensors */
    uint32_t n_split;
    if (lm_gguf_get_u32(g, "split.count", &n_split) == 0 && n_split > 1) {
        lm_set_error("%s: one shard of a model split in %u files; merge them first "
                     "(llama-gguf-split --merge)", lm_gguf_path(g), n_split);
        return -1;
    }
    out->n_layer = arch_u32(g, arch, "block_count", 0);
    if (out->n_layer == 0) {
        lm_set_error("%s: no %.*s.block_count", lm_gguf_path(g), (int)(arch.len < 64 ? arch.len : 64),
                     arch.data);
        return -1;
    }
    out->n_expert = arch_u32(g, arch, "expert_count", 0);
    /* llama.cpp's 70B model type, the one size its rules single out:
     * 80 layers of llama with grouped-query attention, or of qwen2 */
    const uint32_t n_head = arch_u32(g, arch, "attention.head_count", 0);
    const uint32_t n_head_kv = arch_u32(g, arch, "attention.head_count_kv", n_head);
    out->is_70b = out->n_layer == 80 && ((lm_gguf_str_eq(arch, "llama") && n_head != n_head_kv) ||
                                         lm_gguf_str_eq(arch, "qwen2"));
    return 0;
}

static bool ends_with(const char *s, const char *tail)
{
    const size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* ggml_n_dims: trailing dimensions of 1 do not count */
static uint32_t effective_dims(const lm_gguf_tensor *t)
{
    uint32_t n = t->n_dims;
    while (n > 1 && t->ne[n - 1] == 1)
        n--;
    return n;
}

static bool quantizable(const lm_gguf_tensor *t, const char *name)
{
    return effective_dims(t) >= 2 && ends_with(name, "weight") && !strstr(name, "_norm.weight") &&
           !strstr(name, "ffn_gate_inp.weight") && !strstr(name, "ffn_gate_tid2eid.weight");
}

/* llama-quantize's layers that get more bits: the first and last eighth,
 * and every third one between. */
static bool more_bits(int il, int n)
{
    return il < n / 8 || il >= 7 * n / 8 || (il - n / 8) % 3 == 2;
}

static uint32_t mixed_type(const lm_quant_target *tg, const lm_quant_model *m, const char *name,
                           int64_t ne0)
{
    uint32_t type = tg->base;
    const bool head = strcmp(name, "output.weight") == 0 ||
                      (m->tied && strcmp(name, "token_embd.weight") == 0);
    if (head)
        return ne0 % lm_type_get(type)->block_size != 0 || type == LM_TYPE_Q8_0 ? LM_TYPE_Q8_0
                                                                               : LM_TYPE_Q6_K;
    int il = -1;
    if (sscanf(name, "blk.%d.", &il) != 1 || il < 0 || (uint32_t)il >= m->n_layer)
        il = -1;
    const bool mix = tg->mix == LM_MIX_M, q4 = tg->base == LM_TYPE_Q4_K;
    const bool small_mix = tg->mix == LM_MIX_S; /* Q4_K_S */
    if (strstr(name, "attn_qkv.weight")) {
        if (mix)
            type = q4 ? LM_TYPE_Q5_K : LM_TYPE_Q6_K;
    } else if (strstr(name, "attn_v.weight")) {
        if (mix && il >= 0 && more_bits(il, (int)m->n_layer))
            type = LM_TYPE_Q6_K;
        else if (small_mix && il >= 0 && il < 4)
            type = LM_TYPE_Q5_K;
        /* 70B: attn_v is 8x smaller than attn_q, so more bits cost little */
        if (m->is_70b && type == LM_TYPE_Q4_K)
            type = LM_TYPE_Q5_K;
        if (m->n_expert == 8)
            type = LM_TYPE_Q8_0;
    } else if (strstr(name, "attn_k.weight")) {
        if (m->n_expert == 8)
            type = LM_TYPE_Q8_0;
    } else if (strstr(name, "attn_output.weight")) {
        if ((mix || small_mix) && q4 && m->n_expert == 8)
            type = LM_TYPE_Q5_K;
    } else if (strstr(name, "ffn_down")) {
        if (mix && il >= 0 && more_bits(il, (int)m->n_layer))
            type = LM_TYPE_Q6_K;
        else if (small_mix && il >= 0 && il < (int)m->n_layer / 8)
            type = LM_TYPE_Q5_K;
    }
    return type;
}

/* llama-quantize's neighbours for widths a type cannot take. */
static uint32_t fallback(uint32_t type, int64_t ne0)
{
    if (ne0 % lm_type_get(type)->block_size == 0)
        return type;
    switch (type) {
    case LM_TYPE_Q4_K: type = LM_TYPE_Q5_0; break;
    case LM_TYPE_Q5_K: type = LM_TYPE_Q5_1; break;
    case LM_TYPE_Q6_K: type = LM_TYPE_Q8_0; break;
    default: break;
    }
    return ne0 % lm_type_get(type)->block_size == 0 ? type : LM_TYPE_F16;
}

lm_quant_choice lm_quant_tensor_type(const lm_quant_target *tg, const lm_quant_model *m,
                                     const lm_gguf_tensor *t)
{
    char name[256];
    lm_gguf_str_copy(t->name, name, sizeof name); /* a longer name matches no rule */
    if (!quantizable(t, name))
        return (lm_quant_choice){.type = t->type, .converted = false, .wanted = t->type};
    const bool float_target = tg->base == LM_TYPE_F32 || tg->base == LM_TYPE_F16 ||
                              tg->base == LM_TYPE_BF16;
    const uint32_t wanted = float_target || m->pure ? tg->base
                                                    : mixed_type(tg, m, name, (int64_t)t->ne[0]);
    return (lm_quant_choice){.type = fallback(wanted, (int64_t)t->ne[0]), .converted = true,
                             .wanted = wanted};
}
