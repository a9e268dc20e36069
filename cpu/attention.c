/* Causal attention over the fp16 KV cache, as llama.cpp computes it without
 * flash attention: q rounded to fp16 for the K products, softmax in f32 with
 * a double sum, the probabilities rounded to fp16 for the V product.
 *
 * The query heads that share a KV head (grouped-query attention) are done
 * together, so each K and V row is read once per group.  AVX2+F16C versions
 * are chosen at run time like the matmul kernels. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels.h"
#include "ops.h"

#define MAX_GROUP 16   /* query heads per KV head handled in one pass */
#define MAX_HEAD_DIM 1024

static float round_half(float x)
{
    return lm_half_to_float(lm_float_to_half(x));
}

static float dot_f16_portable(const float *q, const lm_fp16 *k, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += q[i] * lm_half_to_float(k[i]);
    return s;
}

static void axpy_f16_portable(float *out, float w, const lm_fp16 *v, int n)
{
    for (int i = 0; i < n; i++)
        out[i] += w * lm_half_to_float(v[i]);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static float dot_f16_avx2(const float *q, const lm_fp16 *k, int n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
        __m256 k1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), k0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), k1, acc1);
    }
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++)
        s += q[i] * lm_half_to_float(k[i]);
    return s;
}

AVX2 static void axpy_f16_avx2(float *out, float w, const lm_fp16 *v, int n)
{
    const __m256 wv = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i)));
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(wv, vv, _mm256_loadu_ps(out + i)));
    }
    for (; i < n; i++)
        out[i] += w * lm_half_to_float(v[i]);
}
#endif

typedef float (*dot_fn)(const float *q, const lm_fp16 *k, int n);
typedef void (*axpy_fn)(float *out, float w, const lm_fp16 *v, int n);

/* Softmax of scores[0..n) in place, returning nothing; probabilities are
 * rounded to fp16 as they will be multiplied in that precision. */
static void softmax_to_half_precision(float *scores, int n)
{
    float max = -INFINITY;
    for (int p = 0; p < n; p++)
        max = scores[p] > max ? scores[p] : max;
    double sum = 0.0;
    for (int p = 0; p < n; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    const float inv = (float)(1.0 / sum);
    for (int p = 0; p < n; p++)
        scores[p] = round_half(scores[p] * inv);
}

/* The query heads [h0, h0+ng) of one token, which share one KV head, over
 * cache positions [0, n_pos). */
static void attend_group(float *out, const float *q, const lm_fp16 *k_cache,
                         const lm_fp16 *v_cache, int n_pos, int ng, int kv_stride, int head_dim,
                         float *scores, dot_fn dot, axpy_fn axpy)
{
    const float scale = 1.0f / sqrtf((float)head_dim);
    float qh[MAX_GROUP][MAX_HEAD_DIM];
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < head_dim; i++)
            qh[g][i] = round_half(q[g * head_dim + i]);
    for (int p = 0; p < n_pos; p++) {
        const lm_fp16 *k = k_cache + (size_t)p * kv_stride;
        for (int g = 0; g < ng; g++)
            scores[(size_t)g * n_pos + p] = dot(qh[g], k, head_dim) * scale;
    }
    for (int g = 0; g < ng; g++)
        softmax_to_half_precision(scores + (size_t)g * n_pos, n_pos);
    memset(out, 0, (size_t)ng * head_dim * sizeof(float));
    for (int p = 0; p < n_pos; p++) {
        const lm_fp16 *v = v_cache + (size_t)p * kv_stride;
        for (int g = 0; g < ng; g++)
            axpy(out + g * head_dim, scores[(size_t)g * n_pos + p], v, head_dim);
    }
}

size_t lm_attention_scratch_floats(int n_ctx, int n_head, int n_head_kv)
{
    const int group = n_head / n_head_kv;
    return (size_t)(group < MAX_GROUP ? group : MAX_GROUP) * n_ctx;
}

void lm_attention(float *out, const float *q, const lm_fp16 *k_cache, const lm_fp16 *v_cache,
                  int n, int pos0, int n_head, int n_head_kv, int head_dim, float *scratch,
                  int n_ctx)
{
    dot_fn dot = dot_f16_portable;
    axpy_fn axpy = axpy_f16_portable;
#if defined(__x86_64__) || defined(__i386__)
    if (lm_cpu_use_avx2()) {
        dot = dot_f16_avx2;
        axpy = axpy_f16_avx2;
    }
#endif
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
        float *scores = scratch + (size_t)omp_get_thread_num() * per_thread;
        attend_group(out + (size_t)t * q_stride + h0 * head_dim,
                     q + (size_t)t * q_stride + h0 * head_dim, k_cache + kvh * head_dim,
                     v_cache + kvh * head_dim, pos0 + t + 1, ng, kv_stride, head_dim, scores, dot,
                     axpy);
    }
}
