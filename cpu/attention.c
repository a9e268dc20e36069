/* Causal attention over the fp16 KV cache, reproducing llama.cpp's CPU
 * arithmetic bit for bit (ggml AVX-512 build, flash attention off, f16 cache):
 *
 *  - KQ: q rounded to fp16, each score a dot product of 16-lane fused
 *    multiply-add accumulators in the summation order of ggml_vec_dot_f16
 *    (one token) or of llamafile's tinyBLAS (2+ tokens in the batch), then
 *    times 1/sqrt(head_dim);
 *  - softmax over the KV cells padded to 256 (padding is -inf): ggml_v_expf
 *    in 16-lane chunks, each chunk tree-summed in float and added in double,
 *    every value times (float)(1/sum), then rounded to fp16;
 *  - KQV: V is transposed in llama.cpp's cache, so each output dimension is a
 *    dot product over positions, again in vec_dot or tinyBLAS order.
 *
 * A job takes up to 16 query rows that share a KV head: the heads of a
 * grouped-query group, and consecutive tokens of a prompt.  AVX2 and
 * AVX-512 versions of the inner loops (attention_x86.c) are chosen at run
 * time; the portable code gives the same bits. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "attention_kernels.h"
#include "ops.h"

static int gg_pad(int n, int to)
{
    return (n + to - 1) / to * to;
}

/* Horizontal sum of 16 floats in the order of a 512-bit tree reduction:
 * upper 8 + lower 8, then 4 + 4, then (0+2, 1+3), then 0 + 1. */
static float gg_reduce16(const float *a)
{
    float t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = a[i + 8] + a[i];
    for (int i = 0; i < 4; i++)
        t4[i] = t8[i + 4] + t8[i];
    const float x0 = t4[0] + t4[2], x1 = t4[1] + t4[3];
    return x0 + x1;
}

/* ---- portable kernels ---- */

/* One score, q already rounded to fp16.  vec_dot order: per 64-element step,
 * element e goes to accumulator (e/16)%4, lane e%16; the accumulators are
 * added 0+2, 1+3, then the two; reduce16; elements past the last whole step
 * added in double.  tinyBLAS order (hd % 16 == 0): one 16-lane accumulator
 * over steps of 16, then reduce16. */
static float kq_portable(const float *qh, const lm_fp16 *k, int hd, int tiny)
{
    float acc[4][GG_LANES];
    memset(acc, 0, sizeof acc);
    if (tiny) {
        for (int i = 0; i < hd; i += GG_LANES)
            for (int l = 0; l < GG_LANES; l++)
                acc[0][l] = fmaf(lm_half_to_float(k[i + l]), qh[i + l], acc[0][l]);
        return gg_reduce16(acc[0]);
    }
    const int np = hd & ~(GG_STEP - 1);
    for (int i = 0; i < np; i += GG_STEP)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < GG_LANES; l++) {
                const int e = i + j * GG_LANES + l;
                acc[j][l] = fmaf(lm_half_to_float(k[e]), qh[e], acc[j][l]);
            }
    for (int l = 0; l < GG_LANES; l++) {
        acc[0][l] = acc[0][l] + acc[2][l];
        acc[1][l] = acc[1][l] + acc[3][l];
        acc[0][l] = acc[0][l] + acc[1][l];
    }
    double sum = gg_reduce16(acc[0]);
    for (int i = np; i < hd; i++)
        sum += (double)(lm_half_to_float(k[i]) * qh[i]);
    return (float)sum;
}

/* Output = sum over positions p of prob[p] * V[p], in the dot-product order
 * over p (see kq_portable), computed for all dimensions at once: position p
 * accumulates into slot p % 64 (vec_dot) or p % 16 (tinyBLAS), slots are then
 * combined like the accumulator lanes.  Positions past n_pos hold zero
 * probability and would add exact zeros, so they are skipped; the vec_dot
 * double tail cannot occur since llama.cpp's padded length is a multiple of
 * 256.  slots: 64 * hd floats. */
static void kqv_portable(float *out, const float *prob, int n_pos, const lm_fp16 *v, int kv_stride,
                         int hd, int tiny, float *slots)
{
    const int ns = tiny ? GG_LANES : GG_STEP;
    memset(slots, 0, (size_t)ns * hd * sizeof(float));
    for (int p = 0; p < n_pos; p++) {
        float *a = slots + (size_t)(p % ns) * hd;
        const lm_fp16 *vr = v + (size_t)p * kv_stride;
        for (int d = 0; d < hd; d++)
            a[d] = fmaf(lm_half_to_float(vr[d]), prob[p], a[d]);
    }
    for (int d = 0; d < hd; d++) {
        float lane[GG_LANES];
        for (int l = 0; l < GG_LANES; l++) {
            if (tiny) {
                lane[l] = slots[(size_t)l * hd + d];
            } else {
                const float a0 = slots[(size_t)l * hd + d] + slots[(size_t)(32 + l) * hd + d];
                const float a1 =
                    slots[(size_t)(16 + l) * hd + d] + slots[(size_t)(48 + l) * hd + d];
                lane[l] = a0 + a1;
            }
        }
        out[d] = gg_reduce16(lane);
    }
}

/* ggml_compute_forward_soft_max_f32 on one row of n valid scores that ggml
 * sees padded with -inf to a multiple of 16: exponentials by ggml_v_expf
 * (lm_expf_ggml), each 16-lane chunk summed by gg_reduce16 and added in
 * double (chunks of padding add exact zeros and are skipped), then every
 * value scaled by (float)(1/sum) and rounded to fp16 (the KQ x V product
 * converts them).  tmp: n floats. */
static void gg_softmax_half(float *s, int first, int n, float *tmp)
{
    /* positions before `first` are masked (a sliding window): probability
     * 0, as ggml's -inf gives */
    for (int p = 0; p < first; p++)
        s[p] = 0.0f;
    float max = -INFINITY;
    for (int p = first; p < n; p++)
        max = s[p] > max ? s[p] : max;
    for (int p = first; p < n; p++)
        tmp[p] = s[p] - max;
    lm_expf_ggml_n(s + first, tmp + first, n - first);
    double sum = 0.0;
    for (int c = 0; c < n; c += GG_LANES) {
        float e[GG_LANES];
        for (int l = 0; l < GG_LANES; l++)
            e[l] = c + l < n ? s[c + l] : 0.0f;
        sum += (double)gg_reduce16(e);
    }
    lm_round_to_half(s, s, n, (float)(1.0 / sum));
}

/* kq_portable for each row and position: the lm_kq_rows_fn */
static void kq_rows_portable(const lm_attn_row *rows, int nr, const lm_fp16 *k, int kv_stride,
                             int hd, int tiny, float kq_scale, float *work)
{
    (void)work;
    for (int r = 0; r < nr; r++)
        for (int p = rows[r].first; p < rows[r].n_pos; p++)
            rows[r].sc[p] = kq_portable(rows[r].qh, k + (size_t)p * kv_stride, hd, tiny) * kq_scale;
}

/* kqv_portable for each row: the lm_kqv_rows_fn */
static void kqv_rows_portable(const lm_attn_row *rows, int nr, const lm_fp16 *v, int kv_stride,
                              int hd, int tiny, float *work)
{
    for (int r = 0; r < nr; r++)
        kqv_portable(rows[r].out, rows[r].sc, rows[r].n_pos, v, kv_stride, hd, tiny, work);
}

/* How the rows are cut into jobs: each job takes `heads` query heads that
 * share a KV head, for `toks` consecutive tokens. */
typedef struct {
    int heads, toks;
} job_shape;

static job_shape shape_jobs(int group, int n)
{
    job_shape js;
    js.heads = group < LM_ATTN_ROWS ? group : LM_ATTN_ROWS;
    js.toks = LM_ATTN_ROWS / js.heads;
    js.toks = js.toks < n ? js.toks : n;
    return js;
}

/* One thread's scratch: its rows' queries rounded to fp16, their scores
 * (a padded context apart), the softmax's temporary row and the kernels'
 * work area. */
size_t lm_attention_scratch_floats(int n_ctx, int head_dim)
{
    return (size_t)LM_ATTN_ROWS * head_dim + (size_t)(LM_ATTN_ROWS + 1) * gg_pad(n_ctx, GG_LANES) +
           LM_ATTN_WORK(head_dim);
}

void lm_attention(float *out, const float *q, const lm_fp16 *k_cache, const lm_fp16 *v_cache, int n,
                  int pos0, int n_head, int n_head_kv, int head_dim, int window, float kq_scale,
                  float *scratch, int n_ctx)
{
    lm_attention_on(lm_cpu_active_path(), out, q, k_cache, v_cache, n, pos0, n_head, n_head_kv,
                    head_dim, window, kq_scale, scratch, n_ctx);
}

/* batched: the batch has 2 or more tokens, so llama.cpp's matrix products
 * go through tinyBLAS (which needs the inner length to be a multiple of
 * 16; otherwise ggml falls back to vec_dot). */
void lm_attention_on(lm_cpu_path path, float *out, const float *q, const lm_fp16 *k_cache,
                     const lm_fp16 *v_cache, int n, int pos0, int n_head, int n_head_kv,
                     int head_dim, int window, float kq_scale, float *scratch, int n_ctx)
{
    const int group = n_head / n_head_kv, batched = n >= 2;
    const int tiny_kq = batched && head_dim % GG_LANES == 0, tiny_kqv = batched;
    lm_kq_rows_fn kq_rows = lm_kq_rows_x86(path, head_dim, tiny_kq);
    lm_kqv_rows_fn kqv_rows = lm_kqv_rows_x86(path, head_dim, tiny_kqv);
    if (!kq_rows)
        kq_rows = kq_rows_portable;
    if (!kqv_rows)
        kqv_rows = kqv_rows_portable;
    lm_softmax_fn softmax = lm_softmax_x86(path);
    if (!softmax)
        softmax = gg_softmax_half;
    const job_shape js = shape_jobs(group, n);
    const int head_jobs = (group + js.heads - 1) / js.heads, tok_jobs = (n + js.toks - 1) / js.toks;
    const int kv_stride = n_head_kv * head_dim, q_stride = n_head * head_dim;
    const int sc_stride = gg_pad(n_ctx, GG_LANES);
    const size_t per_thread = lm_attention_scratch_floats(n_ctx, head_dim);
    const int jobs = tok_jobs * n_head_kv * head_jobs;
#pragma omp parallel for schedule(dynamic, 1) if (jobs >= 2 && (int64_t)n * (pos0 + n) >= 64)
    for (int job = 0; job < jobs; job++) {
        /* later tokens see more positions: hand them out first */
        const int t0 = (tok_jobs - 1 - job / (n_head_kv * head_jobs)) * js.toks;
        const int t1 = t0 + js.toks < n ? t0 + js.toks : n;
        const int kvh = job % (n_head_kv * head_jobs) / head_jobs;
        const int h0 = kvh * group + job % head_jobs * js.heads;
        const int h1 = h0 + js.heads < (kvh + 1) * group ? h0 + js.heads : (kvh + 1) * group;
        float *qh = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *sc = qh + (size_t)LM_ATTN_ROWS * head_dim;
        float *tmp = sc + (size_t)LM_ATTN_ROWS * sc_stride, *work = tmp + sc_stride;
        lm_attn_row rows[LM_ATTN_ROWS];
        int nr = 0;
        for (int t = t0; t < t1; t++) {
            const int n_pos = pos0 + t + 1;
            const int first = window > 0 && n_pos > window ? n_pos - window : 0;
            for (int h = h0; h < h1; h++, nr++) {
                float *qr = qh + (size_t)nr * head_dim;
                lm_round_to_half(qr, q + (size_t)t * q_stride + (size_t)h * head_dim, head_dim,
                                 1.0f);
                rows[nr] = (lm_attn_row){.qh = qr,
                                         .sc = sc + (size_t)nr * sc_stride,
                                         .out = out + (size_t)t * q_stride + (size_t)h * head_dim,
                                         .first = first,
                                         .n_pos = n_pos};
            }
        }
        kq_rows(rows, nr, k_cache + kvh * head_dim, kv_stride, head_dim, tiny_kq, kq_scale, work);
        for (int r = 0; r < nr; r++)
            softmax(rows[r].sc, rows[r].first, rows[r].n_pos, tmp);
        kqv_rows(rows, nr, v_cache + kvh * head_dim, kv_stride, head_dim, tiny_kqv, work);
    }
}
