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
