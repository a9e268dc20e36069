/* lm_quantize_file (quantize.h). */
#define _POSIX_C_SOURCE 200809L
#include "quantize.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "gguf.h"
#include "timing.h"

typedef struct {
    double t0, last;
    uint64_t written, total;
    uint32_t index, n_tensors;
    bool quiet, tty;
} progress;

static void progress_print(progress *p, bool final)
{
    const double now = lm_now_seconds();
    if (p->quiet || (!final && now - p->last < (p->tty ? 0.25 : 2.0)))
        return;
    p->last = now;
    const double secs = now - p->t0 > 1e-9 ? now - p->t0 : 1e-9;
    fprintf(stderr, "%squantize: tensor %u/%u, %.2f of %.2f GiB written, %.0f MB/s%s",
            p->tty ? "\r" : "", p->index, p->n_tensors, (double)p->written / (1 << 30),
            (double)p->total / (1 << 30), (double)p->written / secs / 1e6,
            p->tty ? (final ? "\033[K\n" : "\033[K") : "\n");
}

typedef struct {
    const lm_gguf *g;
    const lm_gguf_tensor *t;
    uint32_t type;          /* what is written */
    uint32_t index;         /* 1-based, for progress */
    progress *prog;
} tensor_job;

int lm_convert_rows(const void *src, uint32_t src_type, void *dst, uint32_t dst_type, int64_t ne0,
                    uint64_t row0, uint64_t n, lm_row_map_fn map, const void *user)
{
    const size_t src_row = lm_row_size(src_type, ne0), dst_row = lm_row_size(dst_type, ne0);
    const lm_dequantize_fn decode = lm_type_get(src_type)->dequantize;
    const lm_quantize_fn encode = lm_type_get(dst_type)->quantize;
    int failed = 0;
#pragma omp parallel reduction(| : failed) if (n * (uint64_t)ne0 > (1u << 16))
    {
        /* every thread must reach the worksharing loop, so a thread
         * without its buffer only reports the failure */
        float *row = malloc((size_t)ne0 * sizeof *row);
        failed |= row == NULL;
#pragma omp for schedule(static)
        for (int64_t k = 0; k < (int64_t)n; k++)
            if (row) {
                const uint64_t r = row0 + (uint64_t)k, from = map ? map(r, user) : r;
                decode((const uint8_t *)src + from * src_row, row, ne0);
                encode(row, (uint8_t *)dst + (uint64_t)k * dst_row, ne0);
            }
        free(row);
    }
    return failed ? -1 : 0;
}

/* lm_gguf_fill_fn: rows [row0, row0 + n) of the tensor at its new type. */
static int fill(void *user, void *buf, uint64_t row0, uint64_t n)
{
    tensor_job *j = user;
    const lm_gguf_tensor *t = j->t;
    const int64_t ne0 = (int64_t)t->ne[0];
    const size_t src_row = lm_row_size(t->type, ne0), dst_row = lm_row_size(j->type, ne0);
    const uint8_t *src = (const uint8_t *)t->data + row0 * src_row;
    if (j->type == t->type) {
        memcpy(buf, src, n * src_row);
    } else if (lm_convert_rows(t->data, t->type, buf, j->type, ne0, row0, n, NULL, NULL) != 0) {
        lm_set_error("out of memory converting %.*s", (int)t->name.len, t->name.data);
        return -1;
    }
    /* read once: these pages need not stay in this process */
    lm_gguf_release_pages(j->g, src, n * src_row);
    j->prog->index = j->index;
    j->prog->written += n * dst_row;
    progress_print(j->prog, false);
    return 0;
}

static bool key_is(const lm_gguf_kv *kv, const char *key)
{
    return lm_gguf_str_eq(kv->key, key);
}

/* Every key of the input, then the quantization version and the file type
 * last, in that order, as llama-quantize writes them (so that the same
 * input and type give a byte-identical file); the split keys of a sharded
 * input are dropped, as the output is one file. */
static int copy_metadata(lm_gguf_writer *w, const lm_gguf *g, uint32_t ftype)
{
    for (uint64_t i = 0; i < lm_gguf_n_kv(g); i++) {
        const lm_gguf_kv *kv = lm_gguf_kv_at(g, i);
        if (key_is(kv, "general.file_type") || key_is(kv, "general.quantization_version") ||
            key_is(kv, "split.no") || key_is(kv, "split.count") ||
            key_is(kv, "split.tensors.count"))
            continue;
        if (lm_gguf_add_kv(w, kv) != 0)
            return -1;
    }
    if (lm_gguf_add_u32(w, "general.quantization_version", 2) != 0 ||
        lm_gguf_add_u32(w, "general.file_type", ftype) != 0)
        return -1;
    return 0;
}

/* The layer of "blk.N.*", -1 for the rest. */
static long layer_of(const lm_gguf_str *name)
{
    static const char prefix[] = "blk.";
    const size_t k = sizeof prefix - 1;
    if (name->len <= k || memcmp(name->data, prefix, k) != 0)
        return -1;
    long layer = 0;
    size_t i = k;
    for (; i < name->len && name->data[i] >= '0' && name->data[i] <= '9' && layer < 1000000; i++)
        layer = layer * 10 + (name->data[i] - '0');
    return i > k && i < name->len && name->data[i] == '.' ? layer : -1;
}

/* llama-quantize's tensor order: the tensors outside the layers first, then
 * layer by layer, by name within each (byte order). */
static int tensor_order(const void *pa, const void *pb)
{
    const lm_gguf_tensor *a = ((const tensor_job *)pa)->t, *b = ((const tensor_job *)pb)->t;
    const long la = layer_of(&a->name), lb = layer_of(&b->name);
    if (la != lb)
        return la < lb ? -1 : 1;
    const size_t n = a->name.len < b->name.len ? a->name.len : b->name.len;
    const int c = memcmp(a->name.data, b->name.data, n);
    return c != 0 ? c : (a->name.len > b->name.len) - (a->name.len < b->name.len);
}

static bool is_quantized(uint32_t type)
{
    return lm_type_get(type)->block_size > 1;
}

/* Adds t to the stats; returns the type it is written at. */
static uint32_t count_tensor(const lm_quant_target *target, const lm_quant_model *qm,
                             const lm_gguf_tensor *t, lm_quantize_stats *st)
{
    const lm_quant_choice c = lm_quant_tensor_type(target, qm, t);
    uint64_t rows = 1;
    for (uint32_t d = 1; d < t->n_dims; d++)
        rows *= t->ne[d];
    st->n_params += rows * t->ne[0];
    st->in_bytes += t->nbytes;
    st->out_bytes += rows * lm_row_size(c.type, (int64_t)t->ne[0]);
    st->n_tensors++;
    st->type_count[c.type]++;
    st->n_converted += c.converted && c.type != t->type;
    if (c.converted && c.type != c.wanted) {
        st->n_fallback++;
        st->fallback[c.wanted][c.type]++;
    }
    st->n_requantized += c.converted && c.type != t->type && is_quantized(t->type);
    return c.type;
}

int lm_quantize_predict(const lm_gguf *g, const lm_quant_target *target, bool pure,
                        lm_quantize_stats *st)
{
    *st = (lm_quantize_stats){0};
    lm_quant_model qm;
    if (lm_quant_model_of(g, pure, &qm) != 0)
        return -1;
    for (uint64_t i = 0; i < lm_gguf_n_tensors(g); i++)
        count_tensor(target, &qm, lm_gguf_tensor_at(g, i), st);
    return 0;
}

int lm_quantize_file(const lm_quantize_params *p, lm_quantize_stats *st)
{
    *st = (lm_quantize_stats){0};
    const double t0 = lm_now_seconds();
    lm_gguf *g = lm_gguf_open(p->in);
    if (!g)
        return -1;
    lm_quant_model qm;
    lm_gguf_writer *w = NULL;
    const uint64_t n = lm_gguf_n_tensors(g);
    tensor_job *jobs = calloc(n ? n : 1, sizeof *jobs);
    progress prog = {.quiet = p->quiet, .tty = isatty(2) == 1, .n_tensors = (uint32_t)n};
    int rc = -1;
    if (!jobs || !(w = lm_gguf_writer_new())) {
        lm_set_error("out of memory");
        goto done;
    }
    if (lm_quant_model_of(g, p->pure, &qm) != 0)
        goto done;
    for (uint64_t i = 0; i < n; i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
        jobs[i] = (tensor_job){.g = g, .t = t, .type = count_tensor(&p->target, &qm, t, st),
                               .prog = &prog};
    }
    prog.total = st->out_bytes;
    qsort(jobs, n, sizeof *jobs, tensor_order);
    for (uint64_t i = 0; i < n; i++)
        jobs[i].index = (uint32_t)i + 1;
    if (copy_metadata(w, g, p->target.ftype) != 0)
        goto done;
    for (uint64_t i = 0; i < n; i++) {
        const lm_gguf_tensor *t = jobs[i].t;
        char name[256];
        if (!lm_gguf_str_copy(t->name, name, sizeof name)) {
            lm_set_error("%s: a tensor name of %llu bytes", p->in, (unsigned long long)t->name.len);
            goto done;
        }
        if (lm_gguf_add_tensor_fill(w, name, jobs[i].type, t->n_dims, t->ne, fill, &jobs[i]) != 0)
            goto done;
    }
    prog.t0 = prog.last = lm_now_seconds();
    if (lm_gguf_write(w, p->out) != 0)
        goto done;
    progress_print(&prog, true);
    st->seconds = lm_now_seconds() - t0;
    rc = 0;
done:
    lm_gguf_writer_free(w);
    free(jobs);
    lm_gguf_close(g);
    return rc;
}
