/* Type registry and scalar reference (de)quantizers.
 *
 * The dequantizers reproduce ggml's dequantize_row_* bit for bit: the same
 * bit layouts and the same float operations in the same order, so a value
 * decoded here equals the value llama.cpp decodes from the same GGUF bytes.
 * The quantizers for the legacy formats (Q4_0 .. Q8_1) and Q8_K follow ggml's
 * round-to-nearest quantize_row_*_ref; the k-quant weight quantizers
 * (Q4_K, Q5_K, Q6_K) are simpler min/max ones that produce the exact layout
 * but not ggml's searched scales. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * fp16 / bf16 */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float lm_fp16_to_f32(lm_fp16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;

    if (exp == 0x1f) /* inf or nan: keep the payload so nan stays nan */
        return f32_from_bits(sign | 0x7f800000 | (mant << 13));
    if (exp != 0)
        return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0)
        return f32_from_bits(sign);
    /* Subnormal half: mant * 2^-24 is exact in f32 (a normal there). */
    float mag = ldexpf((float)mant, -24);
    return sign ? -mag : mag;
}

/* Shift right by `shift` (1..31), rounding to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t value, unsigned shift)
{
    uint32_t kept = value >> shift;
    uint32_t rest = value & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1)))
        kept++;
    return kept;
}

lm_fp16 lm_f32_to_fp16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffff;

    if (x > 0x7f800000) /* nan: quiet it, keep the top payload bits */
        return sign | 0x7e00 | (uint16_t)((x >> 13) & 0x3ff);
    /* 65520 is halfway between 65504 (max half, odd mantissa) and 65536:
     * ties-to-even goes up, so it and everything above becomes inf. */
    if (x >= 0x477ff000)
        return sign | 0x7c00;

    uint32_t exp = x >> 23;
    if (exp >= 113) { /* normal half: rebias, round away 13 mantissa bits */
        uint32_t h = ((exp - 112) << 10) | ((x & 0x7fffff) >> 13);
        uint32_t rest = x & 0x1fff;
        /* A carry out of the mantissa correctly bumps the exponent. */
        if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
            h++;
        return sign | (uint16_t)h;
    }
    /* Below 2^-14: subnormal half in units of 2^-24.  Below 2^-25 (exp 102)
     * everything rounds to zero, which also covers f32 subnormals. */
    if (exp < 102)
        return sign;
    uint32_t full = (x & 0x7fffff) | 0x800000;
    /* Rounding up to 0x400 yields the smallest normal, as it should. */
    return sign | (uint16_t)shift_round_even(full, 126 - exp);
}

float lm_bf16_to_f32(lm_bf16 h)
{
    return f32_from_bits((uint32_t)h << 16);
}

lm_bf16 lm_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) /* nan: set the quiet bit */
        return (lm_bf16)((x >> 16) | 0x40);
    /* Adding 0x7fff (+1 when the kept lsb is odd) rounds to nearest even;
     * the carry into the exponent turns the largest finite values into inf,
     * as ggml's (and hardware's) conversion does. */
    return (lm_bf16)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/* ---------------------------------------------------------------------------
 * Small helpers shared by the quantizers */

/* Round to nearest, ties to even, like ggml's nearest_int.  Adding 1.5 * 2^23
 * leaves the rounded integer in the float's low mantissa bits: the same
 * result as lrintf in the default rounding mode, without a call into libm
 * (which the quantizers' inner loops would otherwise make per value). */
static int nearest_int(float f)
{
    if (!(fabsf(f) <= 4194303.0f)) /* out of the trick's range, or NaN */
        return (int)lrintf(f);
    const float shifted = f + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

static int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The value of largest magnitude, with its sign (first one wins on ties). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static float absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

static void min_max(const float *x, int n, float *min, float *max)
{
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min)
            *min = x[j];
        if (x[j] > *max)
            *max = x[j];
    }
}

static float safe_inverse(float d)
{
    return d != 0.0f ? 1.0f / d : 0.0f;
}

/* ---------------------------------------------------------------------------
 * F32, F16, BF16 */

static void dequantize_f32(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void quantize_f32(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dequantize_f16(const void *src, float *dst, int64_t n)
{
    const lm_fp16 *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = lm_fp16_to_f32(h[i]);
}

static void quantize_f16(const float *src, void *dst, int64_t n)
{
    lm_fp16 *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = lm_f32_to_fp16(src[i]);
}

static void dequantize_bf16(const void *src, float *dst, int64_t n)
{
    const lm_bf16 *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = lm_bf16_to_f32(h[i]);
}

static void quantize_bf16(const float *src, void *dst, int64_t n)
{
    lm_bf16 *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = lm_f32_to_bf16(src[i]);
}

/* ---------------------------------------------------------------------------
 * Legacy 32-value blocks.  Byte j of qs holds element j in its low nibble and
 * element j + 16 in its high nibble; for the 5-bit types bit j of the
 * little-endian 32-bit qh is the fifth bit of element j. */

static void pack_nibbles32(const uint8_t *levels, uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((levels[j] & 0x0f) | ((levels[j + 16] & 0x0f) << 4));
}

static void pack_fifth_bits32(const uint8_t *levels, uint8_t qh[4])
{
    uint32_t bits = 0;
    for (int j = 0; j < 32; j++)
        bits |= (uint32_t)((levels[j] >> 4) & 1) << j;
    for (int b = 0; b < 4; b++)
        qh[b] = (uint8_t)(bits >> (8 * b));
}

static uint32_t load_qh32(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
           (uint32_t)qh[3] << 24;
}

static void dequantize_q4_0(const void *src, float *dst, int64_t n)
{
    const lm_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / LM_QK4_0; i++, dst += LM_QK4_0) {
        const float d = lm_fp16_to_f32(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = ((b[i].qs[j] & 0x0f) - 8) * d;
            dst[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void quantize_q4_0(const float *src, void *dst, int64_t n)
{
    lm_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / LM_QK4_0; i++, src += LM_QK4_0) {
        /* The extreme value maps to level 0 (-8 * d) exactly. */
        const float d = signed_absmax(src, LM_QK4_0) / -8.0f;
        const float id = safe_inverse(d);
        uint8_t levels[LM_QK4_0];
        for (int j = 0; j < LM_QK4_0; j++) {
            int level = (int8_t)(src[j] * id + 8.5f); /* truncation, as ggml */
            levels[j] = (uint8_t)(level < 15 ? level : 15);
        }
        b[i].d = lm_f32_to_fp16(d);
        pack_nibbles32(levels, b[i].qs);
    }
}

static void dequantize_q4_1(const void *src, float *dst, int64_t n)
{
    const lm_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / LM_QK4_1; i++, dst += LM_QK4_1) {
        const float d = lm_fp16_to_f32(b[i].d);
        const float m = lm_fp16_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (b[i].qs[j] & 0x0f) * d + m;
            dst[j + 16] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void quantize_q4_1(const float *src, void *dst, int64_t n)
{
    lm_block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / LM_QK4_1; i++, src += LM_QK4_1) {
        float min, max;
        min_max(src, LM_QK4_1, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = safe_inverse(d);
        uint8_t levels[LM_QK4_1];
        for (int j = 0; j < LM_QK4_1; j++) {
            int level = (int8_t)((src[j] - min) * id + 0.5f);
            levels[j] = (uint8_t)(level < 15 ? level : 15);
        }
        b[i].d = lm_f32_to_fp16(d);
        b[i].m = lm_f32_to_fp16(min);
        pack_nibbles32(levels, b[i].qs);
    }
}

/* Five-bit level of element j of a Q5_0/Q5_1 block, 0..31. */
static int q5_level(const uint8_t *qs, uint32_t qh, int j)
{
    if (j < 16)
        return (qs[j] & 0x0f) | (((qh >> j) << 4) & 0x10);
    return (qs[j - 16] >> 4) | ((qh >> (j - 4)) & 0x10); /* bit j, moved to 4 */
}

static void dequantize_q5_0(const void *src, float *dst, int64_t n)
{
    const lm_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / LM_QK5_0; i++, dst += LM_QK5_0) {
        const float d = lm_fp16_to_f32(b[i].d);
        const uint32_t qh = load_qh32(b[i].qh);
        for (int j = 0; j < LM_QK5_0; j++)
            dst[j] = (q5_level(b[i].qs, qh, j) - 16) * d;
    }
}

static void quantize_q5_0(const float *src, void *dst, int64_t n)
{
    lm_block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / LM_QK5_0; i++, src += LM_QK5_0) {
        const float d = signed_absmax(src, LM_QK5_0) / -16.0f;
        const float id = safe_inverse(d);
        uint8_t levels[LM_QK5_0];
        for (int j = 0; j < LM_QK5_0; j++) {
            int level = (int8_t)(src[j] * id + 16.5f);
            levels[j] = (uint8_t)(level < 31 ? level : 31);
        }
        b[i].d = lm_f32_to_fp16(d);
        pack_nibbles32(levels, b[i].qs);
        pack_fifth_bits32(levels, b[i].qh);
    }
}

static void dequantize_q5_1(const void *src, float *dst, int64_t n)
{
    const lm_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / LM_QK5_1; i++, dst += LM_QK5_1) {
        const float d = lm_fp16_to_f32(b[i].d);
        const float m = lm_fp16_to_f32(b[i].m);
        const uint32_t qh = load_qh32(b[i].qh);
        for (int j = 0; j < LM_QK5_1; j++)
            dst[j] = q5_level(b[i].qs, qh, j) * d + m;
    }
}

static void quantize_q5_1(const float *src, void *dst, int64_t n)
{
    lm_block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / LM_QK5_1; i++, src += LM_QK5_1) {
        float min, max;
        min_max(src, LM_QK5_1, &min, &max);
        const float d = (max - min) / 31.0f;
        const float id = safe_inverse(d);
        uint8_t levels[LM_QK5_1];
        for (int j = 0; j < LM_QK5_1; j++) {
            /* ggml does not clamp here; 31 is the most (x - min) * id + 0.5
             * can truncate to, bar rounding in id, so clamp for safety. */
            int level = (uint8_t)((src[j] - min) * id + 0.5f);
            levels[j] = (uint8_t)(level < 31 ? level : 31);
        }
        b[i].d = lm_f32_to_fp16(d);
        b[i].m = lm_f32_to_fp16(min);
        pack_nibbles32(levels, b[i].qs);
        pack_fifth_bits32(levels, b[i].qh);
    }
}

static void dequantize_q8_0(const void *src, float *dst, int64_t n)
{
    const lm_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / LM_QK8_0; i++, dst += LM_QK8_0) {
        const float d = lm_fp16_to_f32(b[i].d);
        for (int j = 0; j < LM_QK8_0; j++)
            dst[j] = b[i].qs[j] * d;
    }
}

static void quantize_q8_0(const float *src, void *dst, int64_t n)
{
    lm_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / LM_QK8_0; i++, src += LM_QK8_0) {
        const float d = absmax(src, LM_QK8_0) / 127.0f;
        const float id = safe_inverse(d);
        for (int j = 0; j < LM_QK8_0; j++)
            b[i].qs[j] = (int8_t)roundf(src[j] * id);
        b[i].d = lm_f32_to_fp16(d);
    }
}

static void dequantize_q8_1(const void *src, float *dst, int64_t n)
{
    const lm_block_q8_1 *b = src;
    for (int64_t i = 0; i < n / LM_QK8_1; i++, dst += LM_QK8_1) {
        const float d = lm_fp16_to_f32(b[i].d);
        for (int j = 0; j < LM_QK8_1; j++)
            dst[j] = b[i].qs[j] * d;
    }
}

static void quantize_q8_1(const float *src, void *dst, int64_t n)
{
    lm_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / LM_QK8_1; i++, src += LM_QK8_1) {
        const float d = absmax(src, LM_QK8_1) / 127.0f;
        const float id = safe_inverse(d);
        int sum = 0;
        for (int j = 0; j < LM_QK8_1; j++) {
            b[i].qs[j] = (int8_t)roundf(src[j] * id);
            sum += b[i].qs[j];
        }
        b[i].d = lm_f32_to_fp16(d);
        /* Dot kernels with Q4_1/Q5_1 use s to apply the block's offset m
         * once instead of per element. */
        b[i].s = lm_f32_to_fp16((float)sum * d);
    }
}

/* ---------------------------------------------------------------------------
 * K-quants: 256-value super-blocks.
 *
 * Q4_K and Q5_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min
 * packed into 12 bytes.  Sub-blocks 0..3 keep theirs in the low 6 bits of
 * bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7 keep their low 4 bits
 * in the nibbles of bytes 8..11 and their top 2 bits in the spare top bits
 * of bytes 0..3 (scale) and 4..7 (min).  Values are d*sc*q - dmin*m. */

#define K_SUBBLOCKS 8
#define K_SUBBLOCK_SIZE 32

static void k4_scale_min(int j, const uint8_t *scales, int *sc, int *m)
{
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
        *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* Inverse of k4_scale_min; scales must start zeroed. */
static void k4_pack_scale_min(int j, int sc, int m, uint8_t *scales)
{
    if (j < 4) {
        scales[j] = (uint8_t)sc;
        scales[j + 4] = (uint8_t)m;
    } else {
        scales[j + 4] = (uint8_t)((sc & 0x0f) | ((m & 0x0f) << 4));
        scales[j - 4] |= (uint8_t)((sc >> 4) << 6);
        scales[j] |= (uint8_t)((m >> 4) << 6);
    }
}

/* Q4_K stores pairs of sub-blocks in 32 bytes: sub-block 2p in the low
 * nibbles, sub-block 2p+1 in the high nibbles.  Q5_K adds, for each pair,
 * bit 2p (low) and bit 2p+1 (high) of qh[l] as the fifth bit. */
static void dequantize_q4_k(const void *src, float *dst, int64_t n)
{
    const lm_block_q4_k *b = src;
    for (int64_t i = 0; i < n / LM_QK_K; i++) {
        const float d = lm_fp16_to_f32(b[i].d);
        const float dmin = lm_fp16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int pair = 0; pair < 4; pair++, q += 32) {
            int sc, m;
            k4_scale_min(2 * pair, b[i].scales, &sc, &m);
            const float d_lo = d * sc, m_lo = dmin * m;
            k4_scale_min(2 * pair + 1, b[i].scales, &sc, &m);
            const float d_hi = d * sc, m_hi = dmin * m;
            for (int l = 0; l < 32; l++)
                *dst++ = d_lo * (q[l] & 0x0f) - m_lo;
            for (int l = 0; l < 32; l++)
                *dst++ = d_hi * (q[l] >> 4) - m_hi;
        }
    }
}

static void dequantize_q5_k(const void *src, float *dst, int64_t n)
{
    const lm_block_q5_k *b = src;
    for (int64_t i = 0; i < n / LM_QK_K; i++) {
        const float d = lm_fp16_to_f32(b[i].d);
        const float dmin = lm_fp16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs;
        const uint8_t *qh = b[i].qh;
        for (int pair = 0; pair < 4; pair++, ql += 32) {
            const uint8_t bit_lo = (uint8_t)(1u << (2 * pair));
            const uint8_t bit_hi = (uint8_t)(2u << (2 * pair));
            int sc, m;
            k4_scale_min(2 * pair, b[i].scales, &sc, &m);
            const float d_lo = d * sc, m_lo = dmin * m;
            k4_scale_min(2 * pair + 1, b[i].scales, &sc, &m);
            const float d_hi = d * sc, m_hi = dmin * m;
            for (int l = 0; l < 32; l++)
                *dst++ = d_lo * ((ql[l] & 0x0f) + (qh[l] & bit_lo ? 16 : 0)) - m_lo;
            for (int l = 0; l < 32; l++)
                *dst++ = d_hi * ((ql[l] >> 4) + (qh[l] & bit_hi ? 16 : 0)) - m_hi;
        }
    }
}

/* One sub-block's affine fit x ~ scale * l - offset, l in 0..max_level,
 * chosen as ggml's reference quantizer chooses it (so that our Q4_K/Q5_K
 * files match llama-quantize's): start from the min/max fit, then try
 * n_steps + 1 slightly different level spacings and keep the weighted
 * least-squares fit (weights favour large values) with the smallest
 * weighted squared error.  The offset stays >= 0 (the format's min is
 * subtracted).  Levels land in levels[]; returns the scale, *offset_out
 * the offset. */
static float fit_affine_levels(const float *x, int max_level, float spacing_from,
                               int n_steps, uint8_t *levels, float *offset_out)
{
    const int n = K_SUBBLOCK_SIZE;
    float weight[K_SUBBLOCK_SIZE], sum_sq = 0.0f;
    for (int i = 0; i < n; i++)
        sum_sq += x[i] * x[i];
    const float rms = sqrtf(sum_sq / (float)n);
    for (int i = 0; i < n; i++)
        weight[i] = rms + fabsf(x[i]);

    float min = x[0], max = x[0], sum_w = weight[0], sum_x = weight[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += weight[i];
        sum_x += weight[i] * x[i];
    }
    if (min > 0.0f)
        min = 0.0f;
    if (max == min) {
        memset(levels, 0, (size_t)n);
        *offset_out = -min;
        return 0.0f;
    }

    float inv = (float)max_level / (max - min), scale = 1.0f / inv, best = 0.0f;
    for (int i = 0; i < n; i++) {
        levels[i] = (uint8_t)clamp_int(nearest_int(inv * (x[i] - min)), 0, max_level);
        const float diff = scale * levels[i] + min - x[i];
        best += weight[i] * (diff * diff); /* ggml's order */
    }
    for (int step = 0; step <= n_steps; step++) {
        inv = (spacing_from + 0.1f * (float)step + (float)max_level) / (max - min);
        uint8_t trial[K_SUBBLOCK_SIZE];
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = clamp_int(nearest_int(inv * (x[i] - min)), 0, max_level);
            trial[i] = (uint8_t)l;
            sum_l += weight[i] * l;
            sum_l2 += weight[i] * l * l;
            sum_xl += weight[i] * l * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det <= 0.0f)
            continue;
        float fit_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float fit_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (fit_min > 0.0f) {
            fit_min = 0.0f;
            fit_scale = sum_xl / sum_l2;
        }
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            const float diff = fit_scale * trial[i] + fit_min - x[i];
            err += weight[i] * (diff * diff); /* ggml's order */
        }
        if (err < best) {
            memcpy(levels, trial, (size_t)n);
            best = err;
            scale = fit_scale;
            min = fit_min;
        }
    }
    *offset_out = -min;
    return scale;
}

/* Quantize one super-block to levels 0..max_level with 6-bit scales and
 * mins, the shared core of Q4_K and Q5_K.  Each sub-block is fitted
 * (fit_affine_levels); the scales and mins are quantized to 6 bits against
 * the super-block's largest, and the levels recomputed with the stored
 * (rounded) values so that rounding errors do not add up.  A sub-block whose
 * stored scale is 0 keeps the levels of its fit, as ggml's does. */
static void quantize_k_affine(const float *x, int max_level, float spacing_from, int n_steps,
                              lm_fp16 *d_out, lm_fp16 *dmin_out, uint8_t *scales,
                              uint8_t *levels)
{
    float sub_scale[K_SUBBLOCKS], sub_min[K_SUBBLOCKS];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < K_SUBBLOCKS; j++) {
        sub_scale[j] = fit_affine_levels(x + j * K_SUBBLOCK_SIZE, max_level, spacing_from,
                                         n_steps, levels + j * K_SUBBLOCK_SIZE, &sub_min[j]);
        if (sub_scale[j] > max_scale)
            max_scale = sub_scale[j];
        if (sub_min[j] > max_min)
            max_min = sub_min[j];
    }

    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    memset(scales, 0, LM_K_SCALE_SIZE);
    for (int j = 0; j < K_SUBBLOCKS; j++) {
        /* ggml stores these through uint8_t before clamping; the values are
         * never negative, so clamping the int is the same. */
        const int ls = clamp_int(nearest_int(inv_scale * sub_scale[j]), 0, 63);
        const int lm = clamp_int(nearest_int(inv_min * sub_min[j]), 0, 63);
        k4_pack_scale_min(j, ls, lm, scales);
    }
    *d_out = lm_f32_to_fp16(max_scale / 63.0f);
    *dmin_out = lm_f32_to_fp16(max_min / 63.0f);

    for (int j = 0; j < K_SUBBLOCKS; j++) {
        int ls, lm;
        k4_scale_min(j, scales, &ls, &lm);
        const float step = lm_fp16_to_f32(*d_out) * (float)ls;
        if (step == 0.0f)
            continue;
        const float offset = lm_fp16_to_f32(*dmin_out) * (float)lm;
        for (int l = 0; l < K_SUBBLOCK_SIZE; l++) {
            const int idx = j * K_SUBBLOCK_SIZE + l;
            levels[idx] = (uint8_t)clamp_int(nearest_int((x[idx] + offset) / step), 0, max_level);
        }
    }
}

static void quantize_q4_k(const float *src, void *dst, int64_t n)
{
    lm_block_q4_k *b = dst;
    for (int64_t i = 0; i < n / LM_QK_K; i++, src += LM_QK_K) {
        uint8_t levels[LM_QK_K];
        quantize_k_affine(src, 15, -1.0f, 20, &b[i].d, &b[i].dmin, b[i].scales, levels);
        for (int pair = 0; pair < 4; pair++) {
            const uint8_t *lo = levels + 64 * pair, *hi = lo + 32;
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * pair + l] = (uint8_t)(lo[l] | (hi[l] << 4));
        }
    }
}

static void quantize_q5_k(const float *src, void *dst, int64_t n)
{
    lm_block_q5_k *b = dst;
    for (int64_t i = 0; i < n / LM_QK_K; i++, src += LM_QK_K) {
        uint8_t levels[LM_QK_K];
        quantize_k_affine(src, 31, -0.5f, 15, &b[i].d, &b[i].dmin, b[i].scales, levels);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int pair = 0; pair < 4; pair++) {
            const uint8_t *lo = levels + 64 * pair, *hi = lo + 32;
            for (int l = 0; l < 32; l++) {
                b[i].qs[32 * pair + l] =
                    (uint8_t)((lo[l] & 0x0f) | ((hi[l] & 0x0f) << 4));
                b[i].qh[l] |= (uint8_t)(((lo[l] >> 4) << (2 * pair)) |
                                        ((hi[l] >> 4) << (2 * pair + 1)));
            }
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales; q = 6 bits - 32.  Each half of
 * 128 values uses 64 bytes of ql and 32 of qh: for l < 32, ql[l] holds
 * elements l (low nibble) and l+64 (high), ql[l+32] holds l+32 and l+96, and
 * qh[l] holds the top two bits of l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5,
 * 6-7. */
static void dequantize_q6_k(const void *src, float *dst, int64_t n)
{
    const lm_block_q6_k *b = src;
    for (int64_t i = 0; i < n / LM_QK_K; i++) {
        const float d = lm_fp16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql;
        const uint8_t *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, dst += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                /* (d * sc) * q, in ggml's order, for identical rounding. */
                dst[l] = d * sc[is] * q1;
                dst[l + 32] = d * sc[is + 2] * q2;
                dst[l + 64] = d * sc[is + 4] * q3;
                dst[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* One Q6_K sub-block of 16: a symmetric fit x ~ scale * l, l in -32..31,
 * chosen as ggml's reference quantizer chooses it.  The first try maps the
 * extreme value to -32 (the only level with no positive twin); 18 nearby
 * spacings are tried too, each with its least-squares scale weighted by x^2,
 * and the one explaining the most of x is kept.  Levels (offset by 32) land
 * in levels[]; returns the scale. */
static float fit_symmetric_levels(const float *x, uint8_t *levels)
{
    const int n = 16, half = 32;
    const float extreme = signed_absmax(x, n);
    if (fabsf(extreme) < 1e-15f) {
        memset(levels, 0, (size_t)n); /* as ggml leaves them; d * 0 is 0 anyway */
        return 0.0f;
    }
    float scale = 0.0f, best = 0.0f;
    for (int step = 0; step <= 18; step++) {
        /* step 0 is the plain mapping; then the spacings -0.9 .. +0.9 */
        const int is = step == 0 ? 0 : step <= 9 ? step - 10 : step - 9;
        const float inv = -((float)half + 0.1f * (float)is) / extreme;
        float sum_lx = 0.0f, sum_l2 = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = clamp_int(nearest_int(inv * x[i]), -half, half - 1);
            const float w = x[i] * x[i];
            sum_lx += w * x[i] * l;
            sum_l2 += w * l * l;
        }
        if (step == 0) {
            scale = sum_l2 != 0.0f ? sum_lx / sum_l2 : 0.0f;
            best = scale * sum_lx;
        } else if (!(sum_l2 > 0.0f && sum_lx * sum_lx > best * sum_l2)) {
            continue;
        } else {
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
        for (int i = 0; i < n; i++)
            levels[i] = (uint8_t)(clamp_int(nearest_int(inv * x[i]), -half, half - 1) + half);
    }
    return scale;
}

/* Sub-block scales are quantized to int8 against the super-block's extreme
 * scale, which maps to -128; the levels are then recomputed with the stored
 * scales (a sub-block whose stored scale is 0 keeps its fit's levels). */
static void quantize_q6_k_levels(const float *x, lm_block_q6_k *b, uint8_t *levels)
{
    float sub_scale[16];
    float extreme = 0.0f;
    for (int j = 0; j < 16; j++) {
        sub_scale[j] = fit_symmetric_levels(x + 16 * j, levels + 16 * j);
        if (fabsf(sub_scale[j]) > fabsf(extreme))
            extreme = sub_scale[j];
    }
    if (fabsf(extreme) < 1e-15f) {
        memset(b, 0, sizeof *b);
        memset(levels, 0, LM_QK_K); /* an all-zero block, as ggml writes it */
        return;
    }

    const float iscale = -128.0f / extreme;
    b->d = lm_f32_to_fp16(1.0f / iscale);
    const float d = lm_fp16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        const int sc = nearest_int(iscale * sub_scale[j]);
        b->scales[j] = (int8_t)(sc < 127 ? sc : 127);
        const float step = d * b->scales[j];
        if (step == 0.0f)
            continue;
        for (int l = 0; l < 16; l++) {
            const int q = nearest_int(x[16 * j + l] / step);
            levels[16 * j + l] = (uint8_t)(clamp_int(q, -32, 31) + 32);
        }
    }
}

static void quantize_q6_k(const float *src, void *dst, int64_t n)
{
    lm_block_q6_k *b = dst;
    for (int64_t i = 0; i < n / LM_QK_K; i++, src += LM_QK_K) {
        uint8_t levels[LM_QK_K];
        quantize_q6_k_levels(src, &b[i], levels);
        for (int half = 0; half < 2; half++) {
            const uint8_t *L = levels + 128 * half;
            uint8_t *ql = b[i].ql + 64 * half;
            uint8_t *qh = b[i].qh + 32 * half;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((L[l] & 0x0f) | ((L[l + 64] & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((L[l + 32] & 0x0f) | ((L[l + 96] & 0x0f) << 4));
                qh[l] = (uint8_t)((L[l] >> 4) | ((L[l + 32] >> 4) << 2) |
                                  ((L[l + 64] >> 4) << 4) | ((L[l + 96] >> 4) << 6));
            }
        }
    }
}

/* Q8_K: activations for k-quant dot products.  d is a float, and bsums hold
 * the sums of each 16 qs so kernels can apply the weights' mins cheaply. */
static void dequantize_q8_k(const void *src, float *dst, int64_t n)
{
    const lm_block_q8_k *b = src;
    for (int64_t i = 0; i < n / LM_QK_K; i++, dst += LM_QK_K)
        for (int j = 0; j < LM_QK_K; j++)
            dst[j] = b[i].d * b[i].qs[j];
}

static void quantize_q8_k(const float *src, void *dst, int64_t n)
{
    lm_block_q8_k *b = dst;
    for (int64_t i = 0; i < n / LM_QK_K; i++, src += LM_QK_K) {
        const float max = signed_absmax(src, LM_QK_K);
        memset(b[i].bsums, 0, sizeof b[i].bsums);
        if (max == 0.0f) {
            b[i].d = 0.0f;
            memset(b[i].qs, 0, sizeof b[i].qs);
            continue;
        }
        /* The extreme maps to -127; its opposite could reach +127.5, hence
         * the clamp. */
        const float iscale = -127.0f / max;
        for (int j = 0; j < LM_QK_K; j++) {
            const int q = nearest_int(iscale * src[j]);
            b[i].qs[j] = (int8_t)(q < 127 ? q : 127);
            b[i].bsums[j / 16] = (int16_t)(b[i].bsums[j / 16] + b[i].qs[j]);
        }
        b[i].d = 1.0f / iscale;
    }
}

/* ---------------------------------------------------------------------------
 * Registry */

static const lm_type_info type_table[LM_TYPE_COUNT] = {
    [LM_TYPE_F32] = {"F32", 1, sizeof(float), true, dequantize_f32, quantize_f32},
    [LM_TYPE_F16] = {"F16", 1, sizeof(lm_fp16), true, dequantize_f16, quantize_f16},
    [LM_TYPE_BF16] = {"BF16", 1, sizeof(lm_bf16), true, dequantize_bf16, quantize_bf16},
    [LM_TYPE_Q4_0] = {"Q4_0", LM_QK4_0, sizeof(lm_block_q4_0), true,
                      dequantize_q4_0, quantize_q4_0},
    [LM_TYPE_Q4_1] = {"Q4_1", LM_QK4_1, sizeof(lm_block_q4_1), true,
                      dequantize_q4_1, quantize_q4_1},
    [LM_TYPE_Q5_0] = {"Q5_0", LM_QK5_0, sizeof(lm_block_q5_0), true,
                      dequantize_q5_0, quantize_q5_0},
    [LM_TYPE_Q5_1] = {"Q5_1", LM_QK5_1, sizeof(lm_block_q5_1), true,
                      dequantize_q5_1, quantize_q5_1},
    [LM_TYPE_Q8_0] = {"Q8_0", LM_QK8_0, sizeof(lm_block_q8_0), true,
                      dequantize_q8_0, quantize_q8_0},
    [LM_TYPE_Q8_1] = {"Q8_1", LM_QK8_1, sizeof(lm_block_q8_1), false,
                      dequantize_q8_1, quantize_q8_1},
    [LM_TYPE_Q4_K] = {"Q4_K", LM_QK_K, sizeof(lm_block_q4_k), true,
                      dequantize_q4_k, quantize_q4_k},
    [LM_TYPE_Q5_K] = {"Q5_K", LM_QK_K, sizeof(lm_block_q5_k), true,
                      dequantize_q5_k, quantize_q5_k},
    [LM_TYPE_Q6_K] = {"Q6_K", LM_QK_K, sizeof(lm_block_q6_k), true,
                      dequantize_q6_k, quantize_q6_k},
    [LM_TYPE_Q8_K] = {"Q8_K", LM_QK_K, sizeof(lm_block_q8_k), false,
                      dequantize_q8_k, quantize_q8_k},
};

const lm_type_info *lm_type_get(uint32_t type)
{
    if (type >= LM_TYPE_COUNT || type_table[type].name == NULL)
        return NULL;
    return &type_table[type];
}

const char *lm_type_name(uint32_t type)
{
    const lm_type_info *info = lm_type_get(type);
    return info ? info->name : "?";
}

size_t lm_row_size(uint32_t type, int64_t n)
{
    const lm_type_info *info = lm_type_get(type);
    if (!info || n < 0 || n % info->block_size != 0)
        return 0;
    return (size_t)(n / info->block_size) * info->type_size;
}
