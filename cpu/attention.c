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
 * The query heads that share a KV head (grouped-query attention) are done
 * together.  AVX2+FMA+F16C versions are chosen at run time; the portable code
 * gives the same bits. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels.h"
#include "ops.h"

#define MAX_GROUP 16   /* query heads per KV head handled in one pass */
#define MAX_HEAD_DIM 1024

#define GG_LANES 16    /* one __m512 of floats */
#define GG_STEP 64     /* ggml_vec_dot_f16: 4 accumulators x 16 lanes */
#define GG_KV_PAD 256  /* llama.cpp rounds the visible KV cells up to this */

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
static void kqv_portable(float *out, const float *prob, int n_pos, const lm_fp16 *v,
                         int kv_stride, int hd, int tiny, float *slots)
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

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* reduce16 of the 16 lanes lo (0-7) and hi (8-15) */
AVX2 static float reduce16_avx2(__m256 lo, __m256 hi)
{
    const __m256 t8 = _mm256_add_ps(hi, lo);
    __m128 t4 = _mm_add_ps(_mm256_extractf128_ps(t8, 1), _mm256_castps256_ps128(t8));
    t4 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    t4 = _mm_add_ss(t4, _mm_movehdup_ps(t4));
    return _mm_cvtss_f32(t4);
}

AVX2 static __m256 load_h8(const lm_fp16 *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* kq_portable for hd % 16 == 0 (tiny) or hd % 64 == 0 (vec_dot) */
AVX2 static float kq_avx2(const float *qh, const lm_fp16 *k, int hd, int tiny)
{
    if (tiny) {
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
        for (int i = 0; i < hd; i += GG_LANES) {
            lo = _mm256_fmadd_ps(load_h8(k + i), _mm256_loadu_ps(qh + i), lo);
            hi = _mm256_fmadd_ps(load_h8(k + i + 8), _mm256_loadu_ps(qh + i + 8), hi);
        }
        return reduce16_avx2(lo, hi);
    }
    __m256 acc[8];
    for (int j = 0; j < 8; j++)
        acc[j] = _mm256_setzero_ps();
    for (int i = 0; i < hd; i += GG_STEP)
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_fmadd_ps(load_h8(k + i + 8 * j), _mm256_loadu_ps(qh + i + 8 * j),
                                     acc[j]);
    /* accumulator j of 16 lanes is acc[2j] (lo), acc[2j+1] (hi) */
    const __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    const __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    return reduce16_avx2(lo, hi);
}

/* kqv_portable for hd % 8 == 0 */
AVX2 static void kqv_avx2(float *out, const float *prob, int n_pos, const lm_fp16 *v,
                          int kv_stride, int hd, int tiny, float *slots)
{
    const int ns = tiny ? GG_LANES : GG_STEP;
    const int used = n_pos < ns ? n_pos : ns;
    memset(slots, 0, (size_t)ns * hd * sizeof(float));
    for (int p = 0; p < n_pos; p++) {
        float *a = slots + (size_t)(p % ns) * hd;
        const lm_fp16 *vr = v + (size_t)p * kv_stride;
        const __m256 w = _mm256_set1_ps(prob[p]);
        for (int d = 0; d < hd; d += 8)
            _mm256_storeu_ps(a + d, _mm256_fmadd_ps(load_h8(vr + d), w, _mm256_loadu_ps(a + d)));
    }
    (void)used;
    for (int d = 0; d < hd; d += 8) {
        __m256 lane[GG_LANES];
        for (int l = 0; l < GG_LANES; l++) {
            if (tiny) {
                lane[l] = _mm256_loadu_ps(slots + (size_t)l * hd + d);
            } else {
                const __m256 a0 = _mm256_add_ps(_mm256_loadu_ps(slots + (size_t)l * hd + d),
                                                _mm256_loadu_ps(slots + (size_t)(32 + l) * hd + d));
                const __m256 a1 = _mm256_add_ps(_mm256_loadu_ps(slots + (size_t)(16 + l) * hd + d),
                                                _mm256_loadu_ps(slots + (size_t)(48 + l) * hd + d));
                lane[l] = _mm256_add_ps(a0, a1);
            }
        }
        __m256 t8[8], t4[4];
        for (int i = 0; i < 8; i++)
            t8[i] = _mm256_add_ps(lane[i + 8], lane[i]);
        for (int i = 0; i < 4; i++)
            t4[i] = _mm256_add_ps(t8[i + 4], t8[i]);
        const __m256 x0 = _mm256_add_ps(t4[0], t4[2]), x1 = _mm256_add_ps(t4[1], t4[3]);
        _mm256_storeu_ps(out + d, _mm256_add_ps(x0, x1));
    }
}
#endif

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

typedef float (*kq_fn)(const float *qh, const lm_fp16 *k, int hd, int tiny);
typedef void (*kqv_fn)(float *out, const float *prob, int n_pos, const lm_fp16 *v,
                       int kv_stride, int hd, int tiny, float *slots);

/* The query heads [h0, h0+ng) of one token, which share one KV head, over
 * cache positions [first, n_pos) (those before are masked), the scores
 * times kq_scale.  batched: the batch has 2 or more tokens, so
 * llama.cpp's matrix products go through tinyBLAS (which needs the inner
 * length to be a multiple of 16; otherwise ggml falls back to vec_dot). */
static void attend_group(float *out, const float *q, const lm_fp16 *k_cache,
                         const lm_fp16 *v_cache, int first, int n_pos, int ng, int kv_stride,
                         int head_dim, float kq_scale, float *scratch, int batched)
{
    const int tiny_kq = batched && head_dim % GG_LANES == 0;
    const int tiny_kqv = batched; /* the padded length is a multiple of 256 */
    kq_fn kq = kq_portable;
    kqv_fn kqv = kqv_portable;
#if defined(__x86_64__) || defined(__i386__)
    if (lm_cpu_use_avx2()) {
        if (head_dim % (tiny_kq ? GG_LANES : GG_STEP) == 0)
            kq = kq_avx2;
        if (head_dim % 8 == 0)
            kqv = kqv_avx2;
    }
#endif
    float *sc = scratch, *tmp = scratch + gg_pad(n_pos, GG_LANES);
    float *slots = tmp + gg_pad(n_pos, GG_LANES);
    float qh[MAX_HEAD_DIM];
    for (int g = 0; g < ng; g++) {
        lm_round_to_half(qh, q + g * head_dim, head_dim, 1.0f);
        for (int p = first; p < n_pos; p++)
            sc[p] = kq(qh, k_cache + (size_t)p * kv_stride, head_dim, tiny_kq) * kq_scale;
        gg_softmax_half(sc, first, n_pos, tmp);
        kqv(out + g * head_dim, sc, n_pos, v_cache, kv_stride, head_dim, tiny_kqv, slots);
    }
}

size_t lm_attention_scratch_floats(int n_ctx, int n_head, int n_head_kv)
{
    (void)n_head;
    (void)n_head_kv;
    return 2 * (size_t)gg_pad(n_ctx, GG_LANES) + (size_t)GG_STEP * MAX_HEAD_DIM;
}

void lm_attention(float *out, const float *q, const lm_fp16 *k_cache, const lm_fp16 *v_cache,
                  int n, int pos0, int n_head, int n_head_kv, int head_dim, int window,
                  float kq_scale, float *scratch, int n_ctx)
{
    const int group = n_head / n_head_kv;
    const int chunk = group < MAX_GROUP ? group : MAX_GROUP;
    const int chunks_per_kv = (group + chunk - 1) / chunk;
    const int kv_stride = n_head_kv * head_dim, q_stride = n_head * head_dim;
    const size_t per_thread = lm_attention_scratch_floats(n_ctx, n_head, n_head_kv);
    const int jobs = n * n_head_kv * chunks_per_kv;
#pragma omp parallel for schedule(dynamic, 1) if (jobs >= 2 && (int64_t)n * (pos0 + n) >= 64)
    for (int job = 0; job < jobs; job++) {
        /* later tokens see more positions: hand them out first */
        const int t = n - 1 - job / (n_head_kv * chunks_per_kv);
        const int kvh = job % (n_head_kv * chunks_per_kv) / chunks_per_kv;
        const int h0 = kvh * group + job % chunks_per_kv * chunk;
        const int ng = group - (h0 - kvh * group) < chunk ? group - (h0 - kvh * group) : chunk;
        float *scratch_t = scratch + (size_t)omp_get_thread_num() * per_thread;
        const int n_pos = pos0 + t + 1;
        const int first = window > 0 && n_pos > window ? n_pos - window : 0;
        attend_group(out + (size_t)t * q_stride + h0 * head_dim,
                     q + (size_t)t * q_stride + h0 * head_dim, k_cache + kvh * head_dim,
                     v_cache + kvh * head_dim, first, n_pos, ng, kv_stride, head_dim, kq_scale,
                     scratch_t, n >= 2);
    }
}
