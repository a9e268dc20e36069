/* lm_convert_hf (convert.h). */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "gguf.h"
#include "hf_config.h"
#include "hf_names.h"
#include "hf_tokenizer.h"
#include "quant.h"
#include "quant_auto.h"
#include "quantize.h"
#include "safetensors.h"
#include "timing.h"

#define MAX_SHARDS 1024

typedef struct {
    lm_safetensors *shard[MAX_SHARDS];
    uint32_t n_shards;
} checkpoint;

static void checkpoint_close(checkpoint *c)
{
    for (uint32_t i = 0; i < c->n_shards; i++)
        lm_st_close(c->shard[i]);
    c->n_shards = 0;
}

/* A shard's file name from the index: a plain name in the folder. */
static bool plain_name(const char *f)
{
    const size_t n = strlen(f);
    return n > 12 && !strchr(f, '/') && strcmp(f + n - 12, ".safetensors") == 0 && f[0] != '.';
}

static int open_shard(checkpoint *c, const char *dir, const char *file)
{
    for (uint32_t i = 0; i < c->n_shards; i++) {
        const char *p = lm_st_path(c->shard[i]);
        const size_t n = strlen(p), k = strlen(file);
        if (n > k && p[n - k - 1] == '/' && strcmp(p + n - k, file) == 0)
            return 0; /* already open */
    }
    if (c->n_shards == MAX_SHARDS) {
        lm_set_error("%s: more than %d safetensors shards", dir, MAX_SHARDS);
        return -1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (!(c->shard[c->n_shards] = lm_st_open(path)))
        return -1;
    c->n_shards++;
    return 0;
}

/* model.safetensors, or every shard model.safetensors.index.json names. */
static int open_checkpoint(checkpoint *c, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (access(path, F_OK) != 0) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (access(path, F_OK) != 0) {
            lm_set_error("%s: no model.safetensors or model.safetensors.index.json", dir);
            return -1;
        }
        return open_shard(c, dir, "model.safetensors");
    }
    json_error_t err;
    json_t *index = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    json_t *map = json_object_get(index, "weight_map");
    if (!json_is_object(map)) {
        lm_set_error("%s: no \"weight_map\" object", path);
        json_decref(index);
        return -1;
    }
    const char *name;
    json_t *file;
    int rc = 0;
    json_object_foreach(map, name, file) {
        const char *f = json_string_value(file);
        if (!f || !plain_name(f)) {
            char shown[80];
            lm_set_error("%s: tensor '%s' is in '%s', not a .safetensors file of the folder",
                         path, lm_printable(name, strlen(name), shown, sizeof shown),
                         f ? f : "?");
            rc = -1;
            break;
        }
        if ((rc = open_shard(c, dir, f)) != 0)
            break;
    }
    json_decref(index);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Tensors                                                             */

typedef struct {
    const lm_safetensors *st;
    const lm_st_tensor *src;
    char name[96];
    uint32_t src_type, type;
    lm_hf_rows rows;
    uint32_t n_head; /* for the permutation */
    uint64_t n_rows;
    uint32_t n_dims;
    uint64_t ne[4];
} tensor_job;

static uint32_t lm_type_of(lm_st_dtype d)
{
    return d == LM_ST_F32 ? LM_TYPE_F32 : d == LM_ST_F16 ? LM_TYPE_F16 : LM_TYPE_BF16;
}

/* lm_row_map_fn: GGUF row r of a permuted q/k matrix comes from this
 * checkpoint row (hf_names.h: row 2i+j of a head is row j*half+i) */
static uint64_t permuted_row(uint64_t r, const void *user)
{
    const tensor_job *j = user;
    const uint64_t head_rows = j->n_rows / j->n_head, half = head_rows / 2;
    const uint64_t h = r / head_rows, in_head = r % head_rows;
    return h * head_rows + (in_head % 2) * half + in_head / 2;
}

static int fill(void *user, void *buf, uint64_t row0, uint64_t n)
{
    const tensor_job *j = user;
    const int64_t ne0 = (int64_t)j->ne[0];
    const size_t src_row = lm_row_size(j->src_type, ne0);
    const bool permuted = j->rows != LM_HF_KEEP_ROWS;
    if (lm_convert_rows(j->src->data, j->src_type, buf, j->type, ne0, row0, n,
                        permuted ? permuted_row : NULL, j) != 0) {
        lm_set_error("out of memory converting %s", j->name);
        return -1;
    }
    /* read once; permuted tensors read back and forth inside a head, so
     * they are let go when done */
    const uint8_t *src = j->src->data;
    if (!permuted)
        lm_st_release_pages(j->st, src + row0 * src_row, n * src_row);
    else if (row0 + n == j->n_rows)
        lm_st_release_pages(j->st, src, j->n_rows * src_row);
    return 0;
}

/* The shape GGUF name must have (outermost first, as safetensors gives
 * it); false for a name the table does not know. */
static bool expected_shape(const lm_hf_config *c, const char *name, uint32_t *n_dims,
                           uint64_t shape[2])
{
    const uint64_t q = (uint64_t)c->n_head * c->head_dim, kv = (uint64_t)c->n_head_kv * c->head_dim;
    const char *role = name;
    if (!strncmp(name, "blk.", 4) && (role = strchr(name + 4, '.')))
        role++;
    else
        role = name;
    static const char *const vectors[] = {"output_norm.weight", "attn_norm.weight",
                                          "ffn_norm.weight"};
    for (size_t i = 0; i < 3; i++)
        if (!strcmp(role, vectors[i])) {
            *n_dims = 1, shape[0] = c->n_embd;
            return true;
        }
    const struct {
        const char *role;
        uint64_t rows, cols; /* cols 0: a vector of rows */
    } t[] = {
        {"token_embd.weight", c->n_vocab, c->n_embd}, {"output.weight", c->n_vocab, c->n_embd},
        {"attn_q.weight", q, c->n_embd},             {"attn_k.weight", kv, c->n_embd},
        {"attn_v.weight", kv, c->n_embd},            {"attn_output.weight", c->n_embd, q},
        {"ffn_gate.weight", c->n_ff, c->n_embd},     {"ffn_up.weight", c->n_ff, c->n_embd},
        {"ffn_down.weight", c->n_embd, c->n_ff},     {"attn_q.bias", q, 0},
        {"attn_k.bias", kv, 0},                      {"attn_v.bias", kv, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!strcmp(role, t[i].role)) {
            *n_dims = t[i].cols ? 2 : 1;
            shape[0] = t[i].rows, shape[1] = t[i].cols;
            return true;
        }
    return false;
}

static int plan_tensor(const lm_hf_config *c, const lm_safetensors *st, const lm_st_tensor *t,
                       uint32_t float_type, tensor_job *j, bool *skip)
{
    *skip = false;
    char shown[80];
    const char *path = lm_st_path(st);
    const lm_hf_name_result r =
        lm_hf_tensor_name(t->name, !strcmp(c->arch, "llama"), c->n_layer, j->name,
                          sizeof j->name, &j->rows);
    if (r == LM_HF_NAME_SKIP || (r == LM_HF_NAME_OK && c->tied && !strcmp(j->name, "output.weight"))) {
        *skip = true;
        return 0;
    }
    uint32_t n_dims;
    uint64_t shape[2];
    if (r != LM_HF_NAME_OK || !expected_shape(c, j->name, &n_dims, shape)) {
        lm_set_error("%s: tensor '%s' is not one a %s model has", path,
                     lm_printable(t->name, strlen(t->name), shown, sizeof shown), c->hf_arch);
        return -1;
    }
    if (t->dtype != LM_ST_F32 && t->dtype != LM_ST_F16 && t->dtype != LM_ST_BF16) {
        lm_set_error("%s: tensor '%s' is %s: lamina converts F32, F16 and BF16 checkpoints",
                     path, lm_printable(t->name, strlen(t->name), shown, sizeof shown),
                     lm_st_dtype_name(t->dtype));
        return -1;
    }
    if (t->n_dims != n_dims || t->shape[0] != shape[0] || (n_dims == 2 && t->shape[1] != shape[1])) {
        lm_set_error("%s: tensor '%s' has not the shape config.json gives it", path,
                     lm_printable(t->name, strlen(t->name), shown, sizeof shown));
        return -1;
    }
    j->st = st;
    j->src = t;
    j->src_type = lm_type_of(t->dtype);
    j->type = n_dims == 1 ? LM_TYPE_F32 : float_type;
    j->n_dims = n_dims;
    j->ne[0] = n_dims == 2 ? shape[1] : shape[0];
    j->ne[1] = n_dims == 2 ? shape[0] : 1;
    j->n_rows = j->ne[1];
    if (j->rows != LM_HF_KEEP_ROWS) {
        if (n_dims == 1) { /* llama checkpoints have no q/k biases */
            lm_set_error("%s: tensor '%s': biases on llama's q/k projections are not converted",
                         path, lm_printable(t->name, strlen(t->name), shown, sizeof shown));
            return -1;
        }
        j->n_head = j->rows == LM_HF_PERMUTE_Q ? c->n_head : c->n_head_kv;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Metadata                                                            */

static int add_arch_u32(lm_gguf_writer *w, const char *arch, const char *suffix, uint32_t v)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return lm_gguf_add_u32(w, key, v);
}

static int add_arch_f32(lm_gguf_writer *w, const char *arch, const char *suffix, float v)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return lm_gguf_add_f32(w, key, v);
}

/* general.name as gguf-py's Metadata.id_to_title makes it from the folder's
 * name (its other heuristics, which split names like Org/Name-7B-Instruct
 * into basename, size label and finetune keys, are not ported): words split
 * at '-' and spaces, each all-lowercase one title-cased unless it is a
 * version (v1.2) or starts with a digit. */
const char *lm_hf_folder_name(const char *dir, char *buf, size_t len)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/')
        b--;
    snprintf(buf, len, "%.*s", (int)(n - b), dir + b);
    return buf;
}

static const char *model_name(const char *dir, char *buf, size_t len)
{
    char base[256];
    lm_hf_folder_name(dir, base, sizeof base);
    if (strchr(base, ' ')) { /* a sentence: kept as it is */
        snprintf(buf, len, "%s", base);
        return buf;
    }
    size_t o = 0;
    for (char *w = strtok(base, "-"); w && o + 1 < len; w = strtok(NULL, "-")) {
        bool lower = false, upper = false;
        for (const char *q = w; *q; q++)
            lower |= islower((unsigned char)*q), upper |= isupper((unsigned char)*q);
        const bool version = (w[0] == 'v' && isdigit((unsigned char)w[1]) &&
                              strspn(w + 1, "0123456789.") == strlen(w + 1)) ||
                             isdigit((unsigned char)w[0]);
        if (o)
            buf[o++] = ' ';
        for (size_t i = 0; w[i] && o + 1 < len; i++) {
            char ch = w[i];
            if (lower && !upper && !version) /* str.title(): a letter after a non-letter */
                ch = i == 0 || !isalpha((unsigned char)w[i - 1]) ? (char)toupper((unsigned char)ch)
                                                                 : ch;
            buf[o++] = ch;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* general.size_label: gguf-py's model_weight_count_rounded_notation of the
 * parameter count ("135M", "6.7B") */
static const char *size_label(uint64_t n, char *buf, size_t len)
{
    const double d = (double)n;
    double scaled;
    char suffix;
    if (d > 1e12)
        scaled = d * 1e-12, suffix = 'T';
    else if (d > 1e9)
        scaled = d * 1e-9, suffix = 'B';
    else if (d > 1e6)
        scaled = d * 1e-6, suffix = 'M';
    else
        scaled = d * 1e-3, suffix = 'K';
    char digits[32]; /* str(round(scaled)).lstrip('0'): round() is half to even */
    snprintf(digits, sizeof digits, "%.0f", nearbyint(scaled));
    const size_t n_digits = strlen(digits) - strspn(digits, "0");
    const int fix = n_digits < 2 ? 2 - (int)n_digits : 0;
    snprintf(buf, len, "%.*f%c", fix, scaled, suffix);
    return buf;
}

/* The keys llama.cpp's converter writes, in its order. */
static int add_metadata(lm_gguf_writer *w, const char *dir, const lm_hf_config *c,
                        const lm_hf_tokenizer *t, uint32_t ftype, uint64_t n_params)
{
    const char *a = c->arch;
    char name[512], label[32], key[96];
    /* || evaluates in order, so the keys go in this order, and stops at
     * the first failure */
    int rc = lm_gguf_add_str(w, "general.architecture", a) ||
             lm_gguf_add_str(w, "general.type", "model") ||
             lm_gguf_add_str(w, "general.name", model_name(dir, name, sizeof name)) ||
             lm_gguf_add_str(w, "general.size_label", size_label(n_params, label, sizeof label)) ||
             add_arch_u32(w, a, "block_count", c->n_layer) ||
             add_arch_u32(w, a, "context_length", c->n_ctx_train) ||
             add_arch_u32(w, a, "embedding_length", c->n_embd) ||
             add_arch_u32(w, a, "feed_forward_length", c->n_ff) ||
             add_arch_u32(w, a, "attention.head_count", c->n_head) ||
             add_arch_u32(w, a, "attention.head_count_kv", c->n_head_kv);
    if (!strcmp(c->rope_scaling, "linear")) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", a);
        rc = rc || lm_gguf_add_str(w, key, "linear") ||
             add_arch_f32(w, a, "rope.scaling.factor", c->rope_factor);
    }
    rc = rc || add_arch_f32(w, a, "rope.freq_base", c->rope_base) ||
         add_arch_f32(w, a, "attention.layer_norm_rms_epsilon", c->norm_eps);
    if (c->head_dim_given)
        rc = rc || add_arch_u32(w, a, "attention.key_length", c->head_dim) ||
             add_arch_u32(w, a, "attention.value_length", c->head_dim);
    rc = rc || lm_gguf_add_u32(w, "general.file_type", ftype);
    if (!strcmp(a, "llama")) /* the converter's llama class adds these; qwen2's does not */
        rc = rc || add_arch_u32(w, a, "vocab_size", c->n_vocab) ||
             add_arch_u32(w, a, "rope.dimension_count", c->head_dim);
    rc = rc || lm_gguf_add_u32(w, "general.quantization_version", 2) ||
         lm_gguf_add_str(w, "tokenizer.ggml.model", "gpt2") ||
         lm_gguf_add_str(w, "tokenizer.ggml.pre", t->pre[0] ? t->pre : "default") ||
         lm_gguf_add_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)t->tokens, t->n_vocab) ||
         lm_gguf_add_arr(w, "tokenizer.ggml.token_type", LM_GGUF_INT32, t->types, t->n_vocab) ||
         lm_gguf_add_str_arr(w, "tokenizer.ggml.merges", (const char *const *)t->merges, t->n_merges);
    /* the converter's llama class ends with add_bos_token false for a
     * vocabulary of 49152 (Granite's small models, and SmolLM's) */
    lm_hf_special sp = t->special;
    const bool no_bos = !strcmp(a, "llama") && c->n_vocab == 49152;
    if (no_bos)
        for (int i = 0; i < sp.n_adds; i++)
            if (sp.adds[i].type == LM_HF_BOS)
                sp.adds[i].value = false;
    for (int i = 0; i < sp.n_ids; i++)
        rc = rc || lm_gguf_add_u32(w, lm_hf_special_id_key(sp.ids[i].type), sp.ids[i].id);
    for (int i = 0; i < sp.n_adds; i++)
        rc = rc || lm_gguf_add_bool(w, lm_hf_special_add_key(sp.adds[i].type), sp.adds[i].value);
    if (t->chat_template)
        rc = rc || lm_gguf_add_str(w, "tokenizer.chat_template", t->chat_template);
    bool bos_said = false;
    for (int i = 0; i < sp.n_adds; i++)
        bos_said |= sp.adds[i].type == LM_HF_BOS;
    if (no_bos && !bos_said)
        rc = rc || lm_gguf_add_bool(w, "tokenizer.ggml.add_bos_token", false);
    return rc ? -1 : 0;
}

#define LM_MAX_ROPE_FACTORS 4096

/* llama 3's RoPE scaling as a tensor of per-frequency divisors
 * (rope_freqs.weight, n = head_dim / 2), as the converter's
 * generate_extra_tensors computes it: in float, as torch does with its
 * float32 tensors (a Python number meeting one is rounded to float). */
static void llama3_rope_factors(const lm_hf_config *c, float *out, uint32_t n)
{
    const float base = c->rope_base, factor = c->rope_factor, low = c->rope_low_freq_factor,
                high = c->rope_high_freq_factor;
    const float old_ctx = (float)c->rope_orig_ctx;
    const float low_wavelen = (float)((double)c->rope_orig_ctx / (double)low);
    const float high_wavelen = (float)((double)c->rope_orig_ctx / (double)high);
    const float span = (float)((double)high - (double)low);
    for (uint32_t i = 0; i < n; i++) {
        const float freq = 1.0f / powf(base, (float)(2 * i) / (float)c->head_dim);
        const float wavelen = (float)(2.0 * 3.141592653589793) / freq; /* math.pi */
        if (wavelen < high_wavelen)
            out[i] = 1.0f;
        else if (wavelen > low_wavelen)
            out[i] = factor;
        else {
            const float smooth = (old_ctx / wavelen - low) / span;
            out[i] = 1.0f / ((1.0f - smooth) / factor + smooth);
        }
    }
}

/* ------------------------------------------------------------------ */

/* The float GGUF at path. */
static int write_float(const lm_convert_params *p, const char *path, uint32_t float_type,
                       uint32_t ftype, lm_convert_stats *st)
{
    lm_hf_config c;
    lm_hf_tokenizer tok = {0};
    checkpoint ck = {0};
    lm_gguf_writer *w = NULL;
    tensor_job *jobs = NULL;
    int rc = -1;
    if (lm_hf_config_read(p->dir, &c) != 0)
        return -1;
    if (!strcmp(c.rope_scaling, "llama3") && strcmp(c.arch, "llama") != 0) {
        lm_set_error("%s/config.json: llama3 RoPE scaling in a %s model", p->dir, c.hf_arch);
        return -1;
    }
    if (lm_hf_tokenizer_read(p->dir, c.n_vocab, &tok) != 0 ||
        open_checkpoint(&ck, p->dir) != 0)
        goto done;
    uint64_t n = 0;
    for (uint32_t s = 0; s < ck.n_shards; s++)
        n += lm_st_n_tensors(ck.shard[s]);
    if (!(jobs = calloc(n ? n : 1, sizeof *jobs)) || !(w = lm_gguf_writer_new())) {
        lm_set_error("out of memory");
        goto done;
    }
    uint64_t k = 0, n_params = 0;
    if (!strcmp(c.rope_scaling, "llama3")) { /* first, as the converter writes it */
        float factors[LM_MAX_ROPE_FACTORS];
        const uint64_t n_freq = c.head_dim / 2;
        if (n_freq > LM_MAX_ROPE_FACTORS) {
            lm_set_error("%s/config.json: head size %u too large for llama3 RoPE scaling", p->dir,
                         c.head_dim);
            goto done;
        }
        llama3_rope_factors(&c, factors, (uint32_t)n_freq);
        if (lm_gguf_add_tensor(w, "rope_freqs.weight", LM_TYPE_F32, 1, &n_freq, factors) != 0)
            goto done;
        n_params += n_freq;
        st->out_bytes += n_freq * sizeof(float);
        st->n_tensors++;
    }
    for (uint32_t s = 0; s < ck.n_shards; s++)
        for (uint64_t i = 0; i < lm_st_n_tensors(ck.shard[s]); i++) {
            bool skip;
            const lm_st_tensor *t = lm_st_tensor_at(ck.shard[s], i);
            if (plan_tensor(&c, ck.shard[s], t, float_type, &jobs[k], &skip) != 0)
                goto done;
            st->in_bytes += t->nbytes;
            if (skip) {
                st->n_skipped++;
                continue;
            }
            if (lm_gguf_add_tensor_fill(w, jobs[k].name, jobs[k].type, jobs[k].n_dims, jobs[k].ne,
                                        fill, &jobs[k]) != 0)
                goto done;
            st->out_bytes += jobs[k].ne[1] * lm_row_size(jobs[k].type, (int64_t)jobs[k].ne[0]);
            st->n_tensors++;
            uint64_t elems = 1;
            for (uint32_t d = 0; d < jobs[k].n_dims; d++)
                elems *= jobs[k].ne[d];
            n_params += elems;
            k++;
        }
    /* every tensor the model needs: the writer refuses a name twice, so
     * the count says whether one is missing */
    const uint32_t per_layer = 9 + (!strcmp(c.arch, "qwen2") ? 3 : 0);
    const uint64_t want = 2 + !c.tied + (uint64_t)c.n_layer * per_layer;
    if (k != want) {
        lm_set_error("%s: %llu of the %llu tensors a %s model of %u layers has", p->dir,
                     (unsigned long long)k, (unsigned long long)want, c.hf_arch, c.n_layer);
        goto done;
    }
    if (add_metadata(w, p->dir, &c, &tok, ftype, n_params) != 0)
        goto done;
    st->n_files = ck.n_shards;
    if (!p->quiet)
        fprintf(stderr, "convert: %s: %u tensors from %u file(s), writing %s\n", p->dir,
                st->n_tensors, st->n_files, path);
    if (lm_gguf_write(w, path) != 0)
        goto done;
    rc = 0;
done:
    lm_gguf_writer_free(w);
    free(jobs);
    checkpoint_close(&ck);
    lm_hf_tokenizer_free(&tok);
    return rc;
}

static bool is_float(uint32_t type)
{
    return type == LM_TYPE_F32 || type == LM_TYPE_F16 || type == LM_TYPE_BF16;
}

int lm_convert_hf(const lm_convert_params *p, lm_convert_stats *st)
{
    *st = (lm_convert_stats){0};
    const double t0 = lm_now_seconds();
    if (!p->auto_type && is_float(p->target.base)) {
        if (write_float(p, p->out, p->target.base, p->target.ftype, st) != 0)
            return -1;
        snprintf(st->type, sizeof st->type, "%s", p->target.name);
        st->seconds = lm_now_seconds() - t0;
        return 0;
    }
    /* quantized, or chosen by size: F16 beside the output first */
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.f16-convert", p->out) >= (int)sizeof tmp) {
        lm_set_error("%s: path too long", p->out);
        return -1;
    }
    lm_quant_target f16, target = p->target;
    if (lm_quant_target_parse("F16", &f16) != 0 || write_float(p, tmp, LM_TYPE_F16, f16.ftype, st) != 0)
        return -1;
    int rc = 0;
    if (p->auto_type) {
        lm_quant_auto a;
        rc = lm_quant_auto_choose(tmp, p->ram_budget, p->n_ctx, p->n_batch, false, &a);
        if (rc == 0) {
            if (!p->quiet)
                lm_quant_auto_print(&a, stderr);
            target = a.cand[a.chosen].target;
        }
    }
    if (rc == 0 && target.base == LM_TYPE_F16) {
        if (rename(tmp, p->out) != 0) {
            lm_set_error("%s: cannot rename to %s", tmp, p->out);
            rc = -1;
        }
    } else if (rc == 0) {
        lm_quantize_params q = {.in = tmp, .out = p->out, .target = target, .quiet = p->quiet};
        lm_quantize_stats qs;
        rc = lm_quantize_file(&q, &qs);
        st->out_bytes = qs.out_bytes;
    }
    unlink(tmp); /* gone already when renamed */
    if (rc != 0)
        return -1;
    snprintf(st->type, sizeof st->type, "%s", target.name);
    st->seconds = lm_now_seconds() - t0;
    return 0;
}
