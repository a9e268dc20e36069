#include "ops.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

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

void lm_rope_angles(const lm_rope_params *rp, int pos, float *cs, float *sn)
{
    float theta = (float)pos;
    for (int i = 0; i < rp->n_rot / 2; i++) {
        float a = rp->freq_div ? theta / rp->freq_div[i] : theta;
        a *= rp->freq_scale;
        cs[i] = cosf(a);
        sn[i] = sinf(a);
        theta *= rp->theta_scale;
    }
}

void lm_rope(float *x, int n, int n_heads, int head_dim, int pos0, const lm_rope_params *rp)
{
    const int half = rp->n_rot / 2;
    const bool neox = rp->neox;
#pragma omp parallel for if (n >= LM_PARALLEL_MIN_ROWS)
    for (int t = 0; t < n; t++) {
        float cs[512], sn[512]; /* n_rot <= head_dim <= 1024, checked at load */
        lm_rope_angles(rp, pos0 + t, cs, sn);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((int64_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                /* normal mode turns neighbours, NeoX mode the two halves */
                const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                const float x0 = v[a], x1 = v[b];
                /* llama.cpp's build contracts these into fused multiply-adds:
                 * the x0 product is exact, the x1 product is rounded */
                v[a] = fmaf(x0, cs[i], -(x1 * sn[i]));
                v[b] = fmaf(x0, sn[i], x1 * cs[i]);
            }
        }
    }
}

/* ggml_v_expf (AVX-512 variant), one lane: a range reduction by a rounded
 * multiple of ln 2 in two parts, a degree-5 polynomial, then scaling by 2^n.
 * Faithful within about 1.5 ulp, so it does not always agree with expf. */
float lm_expf_ggml(float x)
{
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    if (fabsf(n) > 192.0f)
        return n <= 0.0f ? 0.0f : INFINITY;
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                              fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                         u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    return ldexpf(j, (int)n);
}

#if defined(__x86_64__) || defined(__i386__)
/* Eight lanes of lm_expf_ggml with AVX2+FMA: the same fused operations in
 * the same order.  2^n is built from the exponent bits, exact while n lies in
 * [-126, 127] (then j * 2^n rounds once, as the AVX-512 scalef does); lanes
 * outside that range are redone by the scalar routine. */
__attribute__((target("avx2,fma"))) static void expf_ggml_avx2(float *y, const float *x, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        const __m256 r = _mm256_set1_ps(0x1.8p23f);
        const __m256 z = _mm256_fmadd_ps(xv, _mm256_set1_ps(0x1.715476p+0f), r);
        const __m256 nn = _mm256_sub_ps(z, r);
        const __m256 b =
            _mm256_fnmadd_ps(nn, _mm256_set1_ps(0x1.7f7d1cp-20f),
                             _mm256_fnmadd_ps(nn, _mm256_set1_ps(0x1.62e4p-1f), xv));
        const __m256 u = _mm256_mul_ps(b, b);
        const __m256 j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b,
                                            _mm256_set1_ps(0x1.573e2ep-5f)),
                            u,
                            _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b,
                                            _mm256_set1_ps(0x1.fffdb6p-2f))),
            u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
        const __m256 out_of_range =
            _mm256_or_ps(_mm256_cmp_ps(nn, _mm256_set1_ps(-126.0f), _CMP_LT_OQ),
                         _mm256_cmp_ps(nn, _mm256_set1_ps(127.0f), _CMP_GT_OQ));
        const __m256i e = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(nn), _mm256_set1_epi32(127)), 23);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(j, _mm256_castsi256_ps(e)));
        if (_mm256_movemask_ps(out_of_range))
            for (int l = 0; l < 8; l++)
                y[i + l] = lm_expf_ggml(x[i + l]);
    }
    for (; i < n; i++)
        y[i] = lm_expf_ggml(x[i]);
}
#endif

void lm_expf_ggml_n(float *y, const float *x, int n)
{
#if defined(__x86_64__) || defined(__i386__)
    if (lm_cpu_use_avx2()) {
        expf_ggml_avx2(y, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        y[i] = lm_expf_ggml(x[i]);
}

void lm_swiglu(float *out, const float *gate, const float *up, int64_t count)
{
    /* ggml_vec_swiglu_f32: x / (1 + e^-x) * up with ggml's vector exponential
     * in 16-lane chunks of each row; a row tail (n_ff % 16, zero for real
     * models) would use expf.  Rows are not known here, so every element takes
     * the vector routine. */
    const int64_t blk = 256;
#pragma omp parallel for if (count >= 16384)
    for (int64_t i0 = 0; i0 < count; i0 += blk) {
        const int m = (int)(count - i0 < blk ? count - i0 : blk);
        float neg[256], e[256];
        for (int i = 0; i < m; i++)
            neg[i] = 0.0f - gate[i0 + i];
        lm_expf_ggml_n(e, neg, m);
        for (int i = 0; i < m; i++)
            out[i0 + i] = gate[i0 + i] / (1.0f + e[i]) * up[i0 + i];
    }
}

void lm_add(float *x, const float *y, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        x[i] += y[i];
}

/* ggml_gelu_f32, whose values over every fp16 input ggml tabulates */
static float gelu_tanh(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, coef_a = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + coef_a * x * x)));
}

/* gelu_tanh of every fp16 value, rounded to fp16 (ggml_table_gelu_f16) */
static lm_fp16 gelu_table[1 << 16];

static void make_gelu_table(void)
{
    for (uint32_t i = 0; i < (1u << 16); i++)
        gelu_table[i] = lm_float_to_half(gelu_tanh(lm_half_to_float((lm_fp16)i)));
}

const lm_fp16 *lm_gelu_table(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_gelu_table);
    return gelu_table;
}

void lm_geglu(float *gate, const float *up, int64_t count)
{
    const lm_fp16 *table = lm_gelu_table();
#pragma omp parallel for if (count >= 16384)
    for (int64_t i = 0; i < count; i++) {
        const float x = gate[i];
        /* ggml_vec_geglu_f32 with GGML_GELU_FP16 (its default) */
        if (x <= -10.0f)
            gate[i] = 0.0f;
        else if (x >= 10.0f)
            gate[i] = x * up[i];
        else
            gate[i] = lm_half_to_float(table[lm_float_to_half(x)]) * up[i];
    }
}

void lm_scale(float *x, float factor, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        x[i] *= factor;
}

void lm_add_bias(float *x, const float *b, int n, int dim)
{
    for (int t = 0; t < n; t++)
        lm_add(x + (int64_t)t * dim, b, dim);
}

/* F16C's vcvtps2ph with rounding 0 is IEEE's round to nearest even, the
 * reference conversion's, and test_cpu_kernels holds them to the same bits;
 * at 8 values an instruction it took the 5-6% of a 1B prompt that the
 * conversions one at a time had (the softmax's probabilities and the
 * queries are rounded to fp16, as llama.cpp's are). */
#if defined(__x86_64__) || defined(__i386__)
#define F16C __attribute__((target("avx2,f16c")))

F16C static int64_t store_fp16_f16c(lm_fp16 *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
}

F16C static int64_t round_to_half_f16c(float *dst, const float *src, int64_t n, float mul)
{
    const __m256 m = _mm256_set1_ps(mul);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + i), m);
        _mm256_storeu_ps(dst + i,
                         _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)));
    }
    return i;
}
#endif

void lm_floats_to_half(lm_fp16 *dst, const float *src, int64_t n)
{
    int64_t i = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (lm_cpu_use_avx2())
        i = store_fp16_f16c(dst, src, n);
#endif
    for (; i < n; i++)
        dst[i] = lm_float_to_half(src[i]);
}

void lm_store_fp16(lm_fp16 *cache, const float *src, int n, int kv_dim, int pos0)
{
    lm_floats_to_half(cache + (int64_t)pos0 * kv_dim, src, (int64_t)n * kv_dim);
}

void lm_round_to_half(float *dst, const float *src, int64_t n, float mul)
{
    int64_t i = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (lm_cpu_use_avx2())
        i = round_to_half_f16c(dst, src, n, mul);
#endif
    for (; i < n; i++)
        dst[i] = lm_half_to_float(lm_float_to_half(src[i] * mul));
}
