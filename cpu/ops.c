#include "ops.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* Rows below this count are cheaper to do on one thread than to hand out. */
#define LM_PARALLEL_MIN_ROWS 4

/* fp16 -> f32 by table, as ggml does: 256 KiB, filled once at load. */
static float half_table[1 << 16];

__attribute__((constructor)) static void init_half_table(void)
{
    for (uint32_t i = 0; i < (1u << 16); i++)
        half_table[i] = lm_fp16_to_f32((lm_fp16)i);
}

float lm_half_to_float(lm_fp16 h)
{
    return half_table[h];
}

lm_fp16 lm_float_to_half(float f)
{
    return lm_f32_to_fp16(f);
}

void lm_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps)
{
#pragma omp parallel for if (n >= LM_PARALLEL_MIN_ROWS)
    for (int t = 0; t < n; t++) {
        const float *xr = x + (int64_t)t * dim;
        float *o = out + (int64_t)t * dim;
        double sum = 0.0; /* ggml sums squares in double too */
        for (int i = 0; i < dim; i++)
            sum += (double)(xr[i] * xr[i]);
        const float scale = 1.0f / sqrtf((float)(sum / dim) + eps);
        for (int i = 0; i < dim; i++)
            o[i] = xr[i] * scale * w[i];
    }
}

void lm_rope(float *x, int n, int n_heads, int head_dim, int n_rot, bool neox, int pos0,
             const float *inv_freq)
{
    const int half = n_rot / 2;
#pragma omp parallel for if (n >= LM_PARALLEL_MIN_ROWS)
    for (int t = 0; t < n; t++) {
        float cs[512], sn[512]; /* n_rot <= head_dim; checked at load (<= 1024 dims) */
        const float pos = (float)(pos0 + t);
        for (int i = 0; i < half && i < 512; i++) {
            const float theta = pos * inv_freq[i];
            cs[i] = cosf(theta);
            sn[i] = sinf(theta);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((int64_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                /* normal mode turns neighbours, NeoX mode the two halves */
                const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * cs[i] - x1 * sn[i];
                v[b] = x0 * sn[i] + x1 * cs[i];
            }
        }
    }
}

void lm_swiglu(float *out, const float *gate, const float *up, int64_t count)
{
#pragma omp parallel for if (count >= 16384)
    for (int64_t i = 0; i < count; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void lm_add(float *x, const float *y, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        x[i] += y[i];
}

void lm_add_bias(float *x, const float *b, int n, int dim)
{
    for (int t = 0; t < n; t++)
        lm_add(x + (int64_t)t * dim, b, dim);
}

void lm_store_fp16(lm_fp16 *cache, const float *src, int n, int kv_dim, int pos0)
{
    lm_fp16 *dst = cache + (int64_t)pos0 * kv_dim;
    for (int64_t i = 0; i < (int64_t)n * kv_dim; i++)
        dst[i] = lm_float_to_half(src[i]);
}

/* One query head against the cache, as llama.cpp computes it without flash
 * attention: q rounded to fp16 for the K products, softmax in f32, the
 * probabilities rounded to fp16 for the V product. */
static void attend_one(float *out, const float *q, const lm_fp16 *k_cache,
                       const lm_fp16 *v_cache, int n_pos, int kv_stride, int head_dim,
                       float *scores)
{
    const float scale = 1.0f / sqrtf((float)head_dim);
    float qh[1024];
    for (int i = 0; i < head_dim; i++)
        qh[i] = lm_half_to_float(lm_float_to_half(q[i]));
    float max = -INFINITY;
    for (int p = 0; p < n_pos; p++) {
        const lm_fp16 *k = k_cache + (int64_t)p * kv_stride;
        float dot = 0.0f;
        for (int i = 0; i < head_dim; i++)
            dot += qh[i] * lm_half_to_float(k[i]);
        scores[p] = dot * scale;
        if (scores[p] > max)
            max = scores[p];
    }
    double sum = 0.0;
    for (int p = 0; p < n_pos; p++) {
        scores[p] = expf(scores[p] - max);
        sum += scores[p];
    }
    const float inv = (float)(1.0 / sum);
    memset(out, 0, (size_t)head_dim * sizeof(float));
    for (int p = 0; p < n_pos; p++) {
        const float w = lm_half_to_float(lm_float_to_half(scores[p] * inv));
        const lm_fp16 *v = v_cache + (int64_t)p * kv_stride;
        for (int i = 0; i < head_dim; i++)
            out[i] += w * lm_half_to_float(v[i]);
    }
}

void lm_attention(float *out, const float *q, const lm_fp16 *k_cache, const lm_fp16 *v_cache,
                  int n, int pos0, int n_head, int n_head_kv, int head_dim, float *scratch,
                  int n_ctx)
{
    const int group = n_head / n_head_kv;
    const int kv_stride = n_head_kv * head_dim;
    const int q_stride = n_head * head_dim;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (n * n_head >= 8)
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < n_head; h++) {
            float *scores = scratch + (int64_t)omp_get_thread_num() * n_ctx;
            const int kvh = h / group;
            attend_one(out + (int64_t)t * q_stride + h * head_dim,
                       q + (int64_t)t * q_stride + h * head_dim, k_cache + kvh * head_dim,
                       v_cache + kvh * head_dim, pos0 + t + 1, kv_stride, head_dim, scores);
        }
    }
}
