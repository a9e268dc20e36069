/* lamina synth: a model with random weights at a chosen shape, type and
 * architecture (--arch: llama, qwen2, qwen3, phi3, gemma3), for tests and
 * benchmarks at sizes no one wants to download.
 *
 * The tokenizer is copied from a real model, so every subcommand works on
 * the result; the weights are random, scaled so that activations stay O(1)
 * through any number of layers (the text is meaningless but finite).
 * Quantized blocks are made directly, random quants under fixed-range
 * scales, not by quantizing random floats, and each tensor is produced while
 * the file is written (lm_gguf_add_tensor_fill), so a 70B file takes disk
 * time and a few MiB of memory. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "gguf.h"
#include "quant.h"
#include "rng.h"
#include "timing.h"

typedef struct {
    const char *name;
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv;
    uint32_t head_dim;              /* 0: n_embd / n_head */
    uint32_t n_expert, n_expert_used; /* a mixture of experts (0: dense) ... */
    uint32_t n_ff_exp;              /* ... and an expert's width (0: n_ff) */
} synth_shape;

static const synth_shape shapes[] = {
    {"tiny", 4, 256, 768, 8, 4, 0, 0, 0, 0},
    {"smollm2-135m", 30, 576, 1536, 9, 3, 0, 0, 0, 0},
    {"1b", 16, 2048, 8192, 32, 8, 0, 0, 0, 0},      /* Llama 3.2 1B */
    {"7b", 32, 4096, 11008, 32, 32, 0, 0, 0, 0},    /* Llama 2 7B */
    {"13b", 40, 5120, 13824, 40, 40, 0, 0, 0, 0},   /* Llama 2 13B */
    {"70b", 80, 8192, 28672, 64, 8, 0, 0, 0, 0},    /* Llama 2/3 70B */
    /* mixtures of experts, for --arch llama (Mixtral's layout), qwen3moe or
     * qwen2moe (with a shared expert feed_forward_length wide) */
    {"moe-tiny", 4, 256, 512, 8, 4, 0, 8, 2, 256},
    {"mixtral-8x7b", 32, 4096, 14336, 32, 8, 0, 8, 2, 0},
    {"qwen3-30b-a3b", 48, 2048, 6144, 32, 4, 128, 128, 8, 768},
};
#define N_SHAPES (sizeof shapes / sizeof *shapes)

#define DEFAULT_TOKENIZER "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* Uniform in [-1, 1). */
static inline float rng_uniform(uint64_t s[4])
{
    return (float)((double)(lm_rng_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void rng_bytes(uint64_t s[4], uint8_t *p, size_t n)
{
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t r = lm_rng_next(s);
        memcpy(p, &r, 8);
    }
    if (n) {
        uint64_t r = lm_rng_next(s);
        memcpy(p, &r, n);
    }
}

/* ---- progress on stderr ---- */

typedef struct {
    double t0, last;
    uint64_t bytes;
    uint32_t layer, n_layer; /* layer: the one being written, 1-based; 0 before */
    bool quiet, tty;
} progress;

static void progress_print(progress *p, bool final)
{
    double now = lm_now_seconds();
    if (p->quiet || (!final && now - p->last < (p->tty ? 0.25 : 1.0)))
        return;
    p->last = now;
    const double secs = now - p->t0 > 1e-9 ? now - p->t0 : 1e-9;
    fprintf(stderr, "%ssynth: layer %u/%u, %.2f GiB written, %.0f MB/s%s", p->tty ? "\r" : "",
            p->layer, p->n_layer, (double)p->bytes / (1024.0 * 1024.0 * 1024.0),
            (double)p->bytes / secs / 1e6, p->tty ? (final ? "\033[K\n" : "\033[K") : "\n");
}

/* ---- one tensor's data ---- */

typedef struct {
    uint32_t type;
    uint64_t ne0;         /* values per row */
    size_t row_bytes;
    float scale;          /* matrices: values within about +-scale */
    float base;           /* F32 vectors: base + scale * uniform */
    uint64_t seed;        /* the tensor's own stream */
    uint32_t layer;       /* for progress: 1-based, 0 for token_embd */
    uint8_t d[32][2], m[16][2]; /* block scales (d[16..31] = -d[0..15]) and mins, fp16 */
    progress *prog;
} gen;

static void put_fp16(uint8_t *p, float f)
{
    lm_fp16 h = lm_f32_to_fp16(f);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* The scale per block, d, and for the types with one, the min m, chosen so
 * that the values are spread over about [-s, s] with mean about 0; the 16
 * choices vary d (and m with it) by +-25%.  Types without a min (Q4_0: d*(q-8))
 * lean to one side, so half their blocks take -d instead.  K-quant sub-block scales and mins
 * are all 32 (6 bits), so a Q4_K value is d*32*q - dmin*32 with q in 0..15. */
static void gen_scales(gen *g)
{
    const float s = g->scale;
    float d = 0, m = 0;
    switch (g->type) {
    case LM_TYPE_Q4_0: d = s / 8; break;
    case LM_TYPE_Q4_1: d = 2 * s / 15; m = -s; break;
    case LM_TYPE_Q5_0: d = s / 16; break;
    case LM_TYPE_Q5_1: d = 2 * s / 31; m = -s; break;
    case LM_TYPE_Q8_0: d = s / 127; break;
    case LM_TYPE_Q4_K: d = 2 * s / (15 * 32); m = s / 32; break;
    case LM_TYPE_Q5_K: d = 2 * s / (31 * 32); m = s / 32; break;
    case LM_TYPE_Q6_K: d = s / (32 * 32); break;
    default: break;
    }
    for (int i = 0; i < 16; i++) {
        const float f = 0.75f + (float)i / 30.0f;
        put_fp16(g->d[i], d * f);
        put_fp16(g->d[i + 16], -d * f);
        put_fp16(g->m[i], m * f);
    }
}

/* Sub-block scales and mins of Q4_K/Q5_K, all 32, in ggml's 12-byte packing
 * (get_scale_min_k4): bytes 0-7 hold the low 6 bits of scales 0-3 and mins
 * 0-3 and, in their top 2 bits, the high bits of scales and mins 4-7; bytes
 * 8-11 the low 4 bits of those, here 0. */
static const uint8_t k_scales[LM_K_SCALE_SIZE] = {0xA0, 0xA0, 0xA0, 0xA0, 0xA0, 0xA0,
                                                  0xA0, 0xA0, 0,    0,    0,    0};

/* One row of random blocks at p: random bytes everywhere, then the scale
 * fields replaced, each picked by the random bits that were in it. */
static void gen_row(const gen *g, uint64_t rng[4], uint8_t *p)
{
    const lm_type_info *info = lm_type_get(g->type);
    const uint64_t n_blocks = g->ne0 / (uint64_t)info->block_size;
    const size_t bs = info->type_size;
    switch (g->type) {
    case LM_TYPE_F32:
        for (uint64_t i = 0; i < g->ne0; i++) {
            float f = g->base + g->scale * rng_uniform(rng);
            memcpy(p + 4 * i, &f, 4);
        }
        return;
    case LM_TYPE_F16:
    case LM_TYPE_BF16:
        for (uint64_t i = 0; i < g->ne0; i++) {
            float f = g->base + g->scale * rng_uniform(rng);
            uint16_t h = g->type == LM_TYPE_F16 ? lm_f32_to_fp16(f) : lm_f32_to_bf16(f);
            memcpy(p + 2 * i, &h, 2);
        }
        return;
    default: break;
    }
    rng_bytes(rng, p, g->row_bytes);
    for (uint64_t b = 0; b < n_blocks; b++) {
        uint8_t *q = p + b * bs;
        const int k = q[0] & 15, signed_k = q[0] & 31;
        switch (g->type) {
        case LM_TYPE_Q4_0:
        case LM_TYPE_Q5_0:
            memcpy(q, g->d[signed_k], 2);
            break;
        case LM_TYPE_Q4_1:
        case LM_TYPE_Q5_1:
            memcpy(q, g->d[k], 2);
            memcpy(q + 2, g->m[k], 2);
            break;
        case LM_TYPE_Q8_0:
            memcpy(q, g->d[k], 2);
            for (int i = 2; i < 34; i++) /* -128 is not a value ggml's quantizer makes */
                if (q[i] == 0x80)
                    q[i] = 0x81;
            break;
        case LM_TYPE_Q4_K:
        case LM_TYPE_Q5_K:
            memcpy(q, g->d[k], 2);
            memcpy(q + 2, g->m[k], 2);
            memcpy(q + 4, k_scales, sizeof k_scales);
            break;
        case LM_TYPE_Q6_K:
            memset(q + 192, 32, 16);
            memcpy(q + 208, g->d[signed_k], 2);
            break;
        }
    }
}

/* Row r's stream depends only on the tensor and r, so the file is the same
 * however the writer chunks it.  One thread makes about 4 GB/s, faster than
 * disks write, so there are no more. */
static int gen_fill(void *user, void *buf, uint64_t row0, uint64_t n_rows)
{
    gen *g = user;
    uint8_t *out = buf;
    for (uint64_t r = 0; r < n_rows; r++) {
        uint64_t rng[4];
        lm_rng_seed(rng, g->seed ^ ((row0 + r) * 0xD1B54A32D192ED03ull));
        gen_row(g, rng, out + (size_t)r * g->row_bytes);
    }
    progress *p = g->prog;
    p->layer = g->layer;
    p->bytes += n_rows * g->row_bytes;
    progress_print(p, false);
    return 0;
}

/* ---- the model ---- */

static const synth_shape *find_shape(const char *name)
{
    for (size_t i = 0; i < N_SHAPES; i++)
        if (strcasecmp(shapes[i].name, name) == 0)
            return &shapes[i];
    return NULL;
}

static int parse_type(const char *name, uint32_t *type)
{
    char list[256] = "";
    for (uint32_t t = 0; t < LM_TYPE_COUNT; t++) {
        const lm_type_info *info = lm_type_get(t);
        if (!info || !info->weight_type)
            continue;
        if (strcasecmp(info->name, name) == 0) {
            *type = t;
            return 0;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", *list ? ", " : "",
                 info->name);
    }
    lm_set_error("unknown type '%s' for --type (%s)", name, list);
    return -1;
}

static int check_widths(const synth_shape *sh, uint32_t type)
{
    const lm_type_info *info = lm_type_get(type);
    const struct { const char *what; uint32_t n; } widths[] = {
        {"embedding", sh->n_embd}, {"feed-forward", sh->n_ff},
        {"expert feed-forward", sh->n_ff_exp}};
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++) {
        if (widths[i].n % (uint32_t)info->block_size != 0) {
            lm_set_error("type %s needs row lengths that are multiples of %d, and shape '%s' has "
                         "%s %u (use a type with blocks of 32, such as Q4_0 or Q8_0)",
                         info->name, info->block_size, sh->name, widths[i].what, widths[i].n);
            return -1;
        }
    }
    return 0;
}

/* Every tokenizer.* key of the source, and its vocabulary size. */
static int copy_tokenizer(lm_gguf_writer *w, const char *path, uint32_t *n_vocab)
{
    lm_gguf *src = lm_gguf_open(path);
    if (!src)
        return -1;
    const void *tokens;
    uint64_t n = 0;
    int rc = 0;
    if (lm_gguf_get_arr(src, "tokenizer.ggml.tokens", LM_GGUF_STRING, &tokens, &n) != 0 ||
        n == 0 || n > (1u << 24)) {
        lm_set_error("%s: no tokenizer.ggml.tokens to copy the tokenizer from", path);
        rc = -1;
    }
    for (uint64_t i = 0; i < lm_gguf_n_kv(src) && rc == 0; i++) {
        const lm_gguf_kv *kv = lm_gguf_kv_at(src, i);
        if (kv->key.len > 10 && memcmp(kv->key.data, "tokenizer.", 10) == 0)
            rc = lm_gguf_add_kv(w, kv);
    }
    *n_vocab = (uint32_t)n;
    lm_gguf_close(src);
    return rc;
}

/* The architectures synth writes, and what each adds to llama's tensors. */
typedef enum {
    ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3, ARCH_PHI3, ARCH_GEMMA3, ARCH_QWEN3MOE, ARCH_QWEN2MOE
} synth_arch;
static const char *const arch_names[] = {"llama",  "qwen2",    "qwen3",   "phi3",
                                         "gemma3", "qwen3moe", "qwen2moe"};
#define N_ARCHS (sizeof arch_names / sizeof *arch_names)

static int find_arch(const char *name, synth_arch *arch)
{
    for (size_t i = 0; i < N_ARCHS; i++)
        if (strcasecmp(arch_names[i], name) == 0) {
            *arch = (synth_arch)i;
            return 0;
        }
    lm_set_error("unknown architecture '%s' for --arch (llama, qwen2, qwen3, phi3, gemma3, "
                 "qwen3moe, qwen2moe)", name);
    return -1;
}

/* "<arch>.<suffix>" */
static const char *arch_key(char *key, size_t size, synth_arch arch, const char *suffix)
{
    snprintf(key, size, "%s.%s", arch_names[arch], suffix);
    return key;
}

static uint32_t head_dim_of(const synth_shape *sh)
{
    return sh->head_dim ? sh->head_dim : sh->n_embd / sh->n_head;
}

/* an expert's width: Mixtral's layout (--arch llama) has no key for it and
 * uses feed_forward_length */
static uint32_t ff_exp_of(const synth_shape *sh, synth_arch arch)
{
    return sh->n_ff_exp && arch != ARCH_LLAMA ? sh->n_ff_exp : sh->n_ff;
}

static int add_hparams(lm_gguf_writer *w, const synth_shape *sh, uint32_t n_layer,
                       synth_arch arch)
{
    char name[96], k[96];
#define KEY(suffix) arch_key(k, sizeof k, arch, suffix)
    snprintf(name, sizeof name, "lamina synthetic %s", sh->name);
    /* gemma3: windows of 512 positions (its 270M's) and a global base of 1e6 */
    if (arch == ARCH_GEMMA3 && lm_gguf_add_u32(w, KEY("attention.sliding_window"), 512))
        return -1;
    if (sh->n_expert &&
        (lm_gguf_add_u32(w, KEY("expert_count"), sh->n_expert) ||
         lm_gguf_add_u32(w, KEY("expert_used_count"), sh->n_expert_used) ||
         (arch != ARCH_LLAMA &&
          lm_gguf_add_u32(w, KEY("expert_feed_forward_length"), ff_exp_of(sh, arch))) ||
         /* qwen2moe's shared expert: feed_forward_length wide */
         (arch == ARCH_QWEN2MOE &&
          lm_gguf_add_u32(w, KEY("expert_shared_feed_forward_length"), sh->n_ff))))
        return -1;
    return lm_gguf_add_str(w, "general.architecture", arch_names[arch]) ||
           lm_gguf_add_str(w, "general.name", name) ||
           lm_gguf_add_u32(w, "general.quantization_version", 2) ||
           lm_gguf_add_u32(w, KEY("block_count"), n_layer) ||
           lm_gguf_add_u32(w, KEY("context_length"), 4096) ||
           lm_gguf_add_u32(w, KEY("embedding_length"), sh->n_embd) ||
           lm_gguf_add_u32(w, KEY("feed_forward_length"), sh->n_ff) ||
           lm_gguf_add_u32(w, KEY("attention.head_count"), sh->n_head) ||
           lm_gguf_add_u32(w, KEY("attention.head_count_kv"), sh->n_head_kv) ||
           lm_gguf_add_u32(w, KEY("rope.dimension_count"), head_dim_of(sh)) ||
           lm_gguf_add_u32(w, KEY("attention.key_length"), head_dim_of(sh)) ||
           lm_gguf_add_u32(w, KEY("attention.value_length"), head_dim_of(sh)) ||
           lm_gguf_add_f32(w, KEY("rope.freq_base"), arch == ARCH_GEMMA3 ? 1e6f : 10000.0f) ||
           lm_gguf_add_f32(w, KEY("attention.layer_norm_rms_epsilon"),
                           arch == ARCH_LLAMA || arch == ARCH_PHI3 ? 1e-5f : 1e-6f);
#undef KEY
}

typedef struct {
    gen *gens;
    size_t n, cap;
    uint64_t seed, total_bytes;
    progress *prog;
} tensor_list;

/* A matrix of rows x cols (ne = {cols, rows}), or a vector when rows is 0,
 * or (depth > 1) depth such matrices stacked. */
static int add_stack(lm_gguf_writer *w, tensor_list *tl, const char *name, uint32_t type,
                     uint64_t cols, uint64_t rows, uint64_t depth, float scale, float base,
                     uint32_t layer)
{
    gen *g = &tl->gens[tl->n];
    uint64_t seed = tl->seed + tl->n * 0x9E3779B97F4A7C15ull;
    *g = (gen){.type = type, .ne0 = cols, .row_bytes = lm_row_size(type, (int64_t)cols),
               .scale = scale, .base = base, .seed = lm_splitmix64(&seed), .layer = layer,
               .prog = tl->prog};
    gen_scales(g);
    const uint64_t ne[3] = {cols, rows, depth};
    if (lm_gguf_add_tensor_fill(w, name, type, depth > 1 ? 3 : rows ? 2 : 1, ne, gen_fill, g) != 0)
        return -1;
    tl->n++;
    tl->total_bytes += g->row_bytes * (rows ? rows : 1) * depth;
    return 0;
}

static int add(lm_gguf_writer *w, tensor_list *tl, const char *name, uint32_t type,
               uint64_t cols, uint64_t rows, float scale, float base, uint32_t layer)
{
    return add_stack(w, tl, name, type, cols, rows, 1, scale, base, layer);
}

static int add3(lm_gguf_writer *w, tensor_list *tl, const char *name, uint32_t type,
                uint64_t cols, uint64_t rows, uint64_t depth, float scale, uint32_t layer)
{
    return add_stack(w, tl, name, type, cols, rows, depth, scale, 0, layer);
}

/* A layer's tensors beyond llama's: biases (qwen2), per-head norms (qwen3,
 * gemma3), post-norms (gemma3). */
static int add_extras(lm_gguf_writer *w, tensor_list *tl, synth_arch arch, uint32_t il,
                      uint64_t embd, uint64_t head_dim, uint64_t kv)
{
    char n[64];
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%u." suffix, il), n)
    const uint32_t L = il + 1;
    if (arch == ARCH_QWEN2 || arch == ARCH_QWEN2MOE)
        return add(w, tl, NAME("attn_q.bias"), LM_TYPE_F32, embd, 0, 0.1f, 0, L) ||
               add(w, tl, NAME("attn_k.bias"), LM_TYPE_F32, kv, 0, 0.1f, 0, L) ||
               add(w, tl, NAME("attn_v.bias"), LM_TYPE_F32, kv, 0, 0.1f, 0, L);
    if ((arch == ARCH_QWEN3 || arch == ARCH_QWEN3MOE || arch == ARCH_GEMMA3) &&
        (add(w, tl, NAME("attn_q_norm.weight"), LM_TYPE_F32, head_dim, 0, 0.2f, 1.0f, L) ||
         add(w, tl, NAME("attn_k_norm.weight"), LM_TYPE_F32, head_dim, 0, 0.2f, 1.0f, L)))
        return -1;
    if (arch == ARCH_GEMMA3)
        return add(w, tl, NAME("post_attention_norm.weight"), LM_TYPE_F32, embd, 0, 0.2f, 1.0f,
                   L) ||
               add(w, tl, NAME("post_ffw_norm.weight"), LM_TYPE_F32, embd, 0, 0.2f, 1.0f, L);
    return 0;
#undef NAME
}

/* A layer's mixture of experts: ffn_gate_inp [embd, n_expert] and each
 * expert's gate, up and down stacked (3-D) */
static int add_experts(lm_gguf_writer *w, tensor_list *tl, uint32_t il, uint64_t embd,
                       uint64_t ff, uint32_t n_expert, uint32_t type, float in, float fs)
{
    char n[4][64];
    static const char *const suffix[4] = {"ffn_gate_inp.weight", "ffn_gate_exps.weight",
                                          "ffn_up_exps.weight", "ffn_down_exps.weight"};
    for (int i = 0; i < 4; i++)
        snprintf(n[i], sizeof n[i], "blk.%u.%s", il, suffix[i]);
    const uint32_t L = il + 1;
    return add(w, tl, n[0], LM_TYPE_F32, embd, n_expert, 4 * in, 0, L) ||
           add3(w, tl, n[1], type, embd, ff, n_expert, in, L) ||
           add3(w, tl, n[2], type, embd, ff, n_expert, in, L) ||
           add3(w, tl, n[3], type, ff, embd, n_expert, fs, L);
}

/* qwen2moe's shared expert, ff wide, and its gate's one row (a vector, F32,
 * as the converter writes it) */
static int add_shared_expert(lm_gguf_writer *w, tensor_list *tl, uint32_t il, uint64_t embd,
                             uint64_t ff, uint32_t type, float in)
{
    char n[4][64];
    static const char *const suffix[4] = {"ffn_gate_inp_shexp.weight", "ffn_gate_shexp.weight",
                                          "ffn_up_shexp.weight", "ffn_down_shexp.weight"};
    for (int i = 0; i < 4; i++)
        snprintf(n[i], sizeof n[i], "blk.%u.%s", il, suffix[i]);
    const uint32_t L = il + 1;
    return add(w, tl, n[0], LM_TYPE_F32, embd, 0, 4 * in, 0, L) ||
           add(w, tl, n[1], type, embd, ff, in, 0, L) || add(w, tl, n[2], type, embd, ff, in, 0, L) ||
           add(w, tl, n[3], type, ff, embd, 1.0f / sqrtf((float)ff), 0, L);
}

static int add_tensors(lm_gguf_writer *w, tensor_list *tl, const synth_shape *sh,
                       uint32_t n_layer, uint32_t n_vocab, uint32_t type, synth_arch arch)
{
    const uint64_t embd = sh->n_embd, ff = sh->n_ff, head_dim = head_dim_of(sh);
    const uint64_t q = (uint64_t)sh->n_head * head_dim, kv = (uint64_t)sh->n_head_kv * head_dim;
    const float in = 1.0f / sqrtf((float)embd), fs = 1.0f / sqrtf((float)ff);
    if (add(w, tl, "token_embd.weight", type, embd, n_vocab, 1.0f, 0, 0))
        return -1;
    for (uint32_t il = 0; il < n_layer; il++) {
        char n[10][64];
        static const char *const suffix[10] = {
            "attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
            "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
            "ffn_down.weight", "attn_qkv.weight"};
        for (int i = 0; i < 10; i++)
            snprintf(n[i], sizeof n[i], "blk.%u.%s", il, suffix[i]);
        const uint32_t L = il + 1;
        if (add(w, tl, n[0], LM_TYPE_F32, embd, 0, 0.2f, 1.0f, L))
            return -1;
        if (arch == ARCH_PHI3 ? add(w, tl, n[9], type, embd, q + 2 * kv, 2 * in, 0, L)
                              : add(w, tl, n[1], type, embd, q, 2 * in, 0, L) ||
                                    add(w, tl, n[2], type, embd, kv, 2 * in, 0, L) ||
                                    add(w, tl, n[3], type, embd, kv, in, 0, L))
            return -1;
        if (add(w, tl, n[4], type, q, embd, in, 0, L) ||
            add(w, tl, n[5], LM_TYPE_F32, embd, 0, 0.2f, 1.0f, L))
            return -1;
        if (sh->n_expert) { /* the router (F32, as llama-quantize keeps it), the experts */
            const uint64_t fe = ff_exp_of(sh, arch);
            if (add_experts(w, tl, il, embd, fe, sh->n_expert, type, in, 1.0f / sqrtf((float)fe)) ||
                (arch == ARCH_QWEN2MOE && add_shared_expert(w, tl, il, embd, ff, type, in)) ||
                add_extras(w, tl, arch, il, embd, head_dim, kv))
                return -1;
            continue;
        }
        /* phi3: ffn_up holds the gate's rows, then the up's */
        if (arch == ARCH_PHI3 ? add(w, tl, n[7], type, embd, 2 * ff, in, 0, L)
                              : add(w, tl, n[6], type, embd, ff, in, 0, L) ||
                                    add(w, tl, n[7], type, embd, ff, in, 0, L))
            return -1;
        if (add(w, tl, n[8], type, ff, embd, fs, 0, L) ||
            add_extras(w, tl, arch, il, embd, head_dim, kv))
            return -1;
    }
    return add(w, tl, "output_norm.weight", LM_TYPE_F32, embd, 0, 0.2f, 1.0f, n_layer) ||
           add(w, tl, "output.weight", type, embd, n_vocab, in, 0, n_layer);
}

static void list_shapes(char *buf, size_t size)
{
    buf[0] = '\0';
    for (size_t i = 0; i < N_SHAPES; i++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? ", " : "", shapes[i].name);
}

static int synth(const lm_cli *o)
{
    char names[128];
    list_shapes(names, sizeof names);
    if (o->n_positional > 0) {
        lm_set_error("unexpected argument '%s' (see lamina synth --help)", o->positional[0]);
        return -1;
    }
    if (!o->output) {
        lm_set_error("no output file given (use -o OUT.gguf)");
        return -1;
    }
    if (!o->shape) {
        lm_set_error("no shape given (use --shape NAME: %s)", names);
        return -1;
    }
    const synth_shape *sh = find_shape(o->shape);
    if (!sh) {
        lm_set_error("unknown shape '%s' (%s)", o->shape, names);
        return -1;
    }
    uint32_t type = LM_TYPE_Q4_0;
    synth_arch arch = ARCH_LLAMA;
    if ((o->type && parse_type(o->type, &type) != 0) || check_widths(sh, type) != 0 ||
        (o->arch && find_arch(o->arch, &arch) != 0))
        return -1;
    const bool moe_arch = arch == ARCH_QWEN3MOE || arch == ARCH_QWEN2MOE;
    if (sh->n_expert ? arch != ARCH_LLAMA && !moe_arch : moe_arch) {
        if (sh->n_expert)
            lm_set_error("shape '%s' has experts: use --arch llama (Mixtral's layout), qwen3moe "
                         "or qwen2moe", sh->name);
        else
            lm_set_error("--arch %s needs a shape with experts, not '%s' (moe-tiny, "
                         "mixtral-8x7b, qwen3-30b-a3b)", arch_names[arch], sh->name);
        return -1;
    }
    const char *tok = o->tokenizer_from;
    if (!tok)
        tok = getenv("LAMINA_TEST_MODEL");
    if (!tok || !*tok)
        tok = DEFAULT_TOKENIZER;
    const uint32_t n_layer = o->n_layers > 0 ? (uint32_t)o->n_layers : sh->n_layer;

    progress prog = {.n_layer = n_layer, .quiet = o->quiet, .tty = isatty(2) == 1};
    tensor_list tl = {.seed = o->seed_given ? o->sampling.seed : 1, .prog = &prog};
    tl.cap = 3 + 19 * (size_t)n_layer;
    tl.gens = calloc(tl.cap, sizeof *tl.gens);
    lm_gguf_writer *w = lm_gguf_writer_new();
    uint32_t n_vocab = 0;
    int rc = -1;
    if (!tl.gens || !w) {
        lm_set_error("out of memory");
        goto done;
    }
    if (add_hparams(w, sh, n_layer, arch) != 0)
        goto done;
    if (copy_tokenizer(w, tok, &n_vocab) != 0 ||
        add_tensors(w, &tl, sh, n_layer, n_vocab, type, arch))
        goto done;
    prog.t0 = prog.last = lm_now_seconds();
    if (lm_gguf_write(w, o->output) != 0)
        goto done;
    progress_print(&prog, true);
    printf("%s\n", o->output);
    rc = 0;
done:
    lm_gguf_writer_free(w);
    free(tl.gens);
    return rc;
}

int lm_cmd_synth(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "synth", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (synth(&o) != 0) {
        fprintf(stderr, "lamina synth: %s\n", lm_last_error());
        return 1;
    }
    return 0;
}
