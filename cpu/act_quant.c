/* Activations to the 8-bit block types (and to f16/bf16 for half-precision
 * weights), bit for bit as llama.cpp's CPU backend produces them on an AVX2
 * machine.  That is not quite the scalar reference in formats/quant.c: ggml's
 * AVX2 quantize_row_q8_0/q8_1 multiply by 127/amax (not 1/d) and round half to
 * even (_mm256_round_ps), so we do the same, or greedy outputs would drift
 * from llama.cpp's. */
#include <math.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "internal.h"
#include "kernels.h"
#include "ops.h"

/* Round to nearest, ties to even, for |f| < 2^22: adding 1.5*2^23 leaves the
 * integer in the low mantissa bits.  Same result as _mm256_round_ps(x,
 * _MM_ROUND_NEAREST) and ggml's nearest_int, and it vectorizes. */
static inline int round_even(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static float block_absmax(const float *x, int n)
{
    float m = 0.0f;
    for (int j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        m = a > m ? a : m;
    }
    return m;
}

/* One block of 32: the rounded fp16 scale d and the sum of the quants. */
static int quantize_block32(const float *x, int8_t *qs, float *d_out)
{
    const float amax = block_absmax(x, 32);
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        int q = round_even(x[j] * id);
        qs[j] = (int8_t)q;
        sum += q;
    }
    *d_out = d;
    return sum;
}

static void quantize_q8_0(const float *x, void *dst, int64_t n)
{
    lm_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        float d;
        quantize_block32(x + i * 32, b[i].qs, &d);
        b[i].d = lm_f32_to_fp16(d);
    }
}

static void quantize_q8_1(const float *x, void *dst, int64_t n)
{
    lm_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        float d;
        int sum = quantize_block32(x + i * 32, b[i].qs, &d);
        b[i].d = lm_f32_to_fp16(d);
        b[i].s = lm_f32_to_fp16(d * (float)sum);
    }
}

/* ggml's quantize_row_q8_K_ref (x86 has no SIMD version): the scale comes
 * from the signed value of largest magnitude, -127/max. */
static void quantize_q8_k(const float *x, void *dst, int64_t n)
{
    lm_block_q8_k *b = dst;
    for (int64_t i = 0; i < n / LM_QK_K; i++, x += LM_QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < LM_QK_K; j++) {
            float a = fabsf(x[j]);
            if (a > amax) {
                amax = a;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < LM_QK_K; j++) {
            int v = round_even(iscale * x[j]);
            b[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < LM_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += b[i].qs[g * 16 + j];
            b[i].bsums[g] = (int16_t)sum;
        }
        b[i].d = 1.0f / iscale;
    }
}

#if defined(__x86_64__) || defined(__i386__)
/* quantize_q8_k with AVX2, the same bits: the largest magnitude by vector
 * max (which, like the scalar test, passes over a NaN), the first value of
 * that magnitude giving the sign; each level iscale * x plus 1.5 * 2^23
 * (round_even's two roundings, a multiply and an add: no fma in the
 * target, so none can be contracted), capped at 127; bsums from the int32
 * levels.  The scalar version took 5% of a 1B Q6_K prompt. */
__attribute__((target("avx2"))) static void quantize_q8_k_avx2(const float *x, void *dst,
                                                                int64_t n)
{
    lm_block_q8_k *b = dst;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 magic = _mm256_set1_ps(12582912.f);
    const __m256i low23 = _mm256_set1_epi32(0x007fffff), bias = _mm256_set1_epi32(0x00400000);
    const __m256i cap = _mm256_set1_epi32(127);
    for (int64_t i = 0; i < n / LM_QK_K; i++, x += LM_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < LM_QK_K; j += 8)
            m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), m);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float max = 0.0f;
        for (int j = 0; j < LM_QK_K; j++)
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        const float iscale = -127.f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        for (int g = 0; g < LM_QK_K / 16; g++) {
            __m256i v[2];
            for (int k = 0; k < 2; k++) {
                const __m256 t = _mm256_add_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + 16 * g + 8 * k)), magic);
                v[k] = _mm256_min_epi32(
                    _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t), low23), bias), cap);
            }
            /* 16 levels to bytes: packs keeps each 128-bit half's order */
            const __m256i w = _mm256_packs_epi32(v[0], v[1]);
            const __m128i q8 = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
            _mm_storeu_si128((__m128i *)(b[i].qs + 16 * g),
                             _mm_shuffle_epi32(q8, _MM_SHUFFLE(3, 1, 2, 0)));
            __m256i s = _mm256_add_epi32(v[0], v[1]);
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
            b[i].bsums[g] = (int16_t)_mm_cvtsi128_si32(s4);
        }
        b[i].d = 1.0f / iscale;
    }
}
#endif

static void quantize_q8_k_any(const float *x, void *dst, int64_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    if (lm_cpu_use_avx2()) {
        quantize_q8_k_avx2(x, dst, n);
        return;
    }
#endif
    quantize_q8_k(x, dst, n);
}

static void convert_f32(const float *x, void *dst, int64_t n)
{
    memcpy(dst, x, (size_t)n * sizeof(float));
}

static void convert_f16(const float *x, void *dst, int64_t n)
{
    lm_floats_to_half(dst, x, n);
}

static void convert_bf16(const float *x, void *dst, int64_t n)
{
    lm_bf16 *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = lm_f32_to_bf16(x[i]);
}

typedef void (*act_fn)(const float *x, void *dst, int64_t n);

static const act_fn act_table[LM_TYPE_COUNT] = {
    [LM_TYPE_Q8_0] = quantize_q8_0, [LM_TYPE_Q8_1] = quantize_q8_1,
    [LM_TYPE_Q8_K] = quantize_q8_k_any, [LM_TYPE_F32] = convert_f32,
    [LM_TYPE_F16] = convert_f16,    [LM_TYPE_BF16] = convert_bf16,
};

void lm_quantize_act(uint32_t act_type, const float *x, void *dst, int64_t n)
{
    act_table[act_type](x, dst, n);
}
