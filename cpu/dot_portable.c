/* Portable C dot products: every weight type against its activation type.
 * Each block's integer dot product is exact; the float arithmetic per block
 * follows ggml's AVX2 kernels ((d_w * d_x) * sumi, plus m_w * s_x for the
 * "_1" types) so this path and the AVX2 one differ only in summation order.
 * The k-quants are the exception: their float steps are the contract every
 * path keeps bit for bit (the AVX2 tiles, the VNNI decoders and panels,
 * cl/matvec.cl), one per super-block: see dot_q45_k and dot_q6_k. */
#include <math.h>

#include "internal.h"

static inline float h2f(lm_fp16 h)
{
    return lm_fp16_to_f32(h);
}

/* The 32 unsigned levels of a 4-bit block: low nibbles first, then high. */
static inline void nibbles32(const uint8_t *qs, int *q)
{
    for (int j = 0; j < 16; j++) {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
}

/* Adds the fifth bit of each of the 32 levels (ggml's qh, little endian). */
static inline void fifth_bits32(const uint8_t qh[4], int *q)
{
    uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                 (uint32_t)qh[3] << 24;
    for (int j = 0; j < 32; j++)
        q[j] |= (int)((h >> j) & 1) << 4;
}

static inline int idot32(const int *q, int offset, const int8_t *x)
{
    int s = 0;
    for (int j = 0; j < 32; j++)
        s += (q[j] - offset) * x[j];
    return s;
}

static float dot_q4_0(int64_t n, const void *vw, const void *vx)
{
    const lm_block_q4_0 *w = vw;
    const lm_block_q8_0 *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int q[32];
        nibbles32(w[i].qs, q);
        sum += h2f(w[i].d) * h2f(x[i].d) * (float)idot32(q, 8, x[i].qs);
    }
    return sum;
}

static float dot_q4_1(int64_t n, const void *vw, const void *vx)
{
    const lm_block_q4_1 *w = vw;
    const lm_block_q8_1 *x = vx;
    float sum = 0.0f, summ = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int q[32];
        nibbles32(w[i].qs, q);
        sum += h2f(w[i].d) * h2f(x[i].d) * (float)idot32(q, 0, x[i].qs);
        summ += h2f(w[i].m) * h2f(x[i].s);
    }
    return sum + summ;
}

static float dot_q5_0(int64_t n, const void *vw, const void *vx)
{
    const lm_block_q5_0 *w = vw;
    const lm_block_q8_0 *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int q[32];
        nibbles32(w[i].qs, q);
        fifth_bits32(w[i].qh, q);
        sum += h2f(w[i].d) * h2f(x[i].d) * (float)idot32(q, 16, x[i].qs);
    }
    return sum;
}

static float dot_q5_1(int64_t n, const void *vw, const void *vx)
{
    const lm_block_q5_1 *w = vw;
    const lm_block_q8_1 *x = vx;
    float sum = 0.0f, summ = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int q[32];
        nibbles32(w[i].qs, q);
        fifth_bits32(w[i].qh, q);
        sum += h2f(w[i].d) * h2f(x[i].d) * (float)idot32(q, 0, x[i].qs);
        summ += h2f(w[i].m) * h2f(x[i].s);
    }
    return sum + summ;
}

static float dot_q8_0(int64_t n, const void *vw, const void *vx)
{
    const lm_block_q8_0 *w = vw;
    const lm_block_q8_0 *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int s = 0;
        for (int j = 0; j < 32; j++)
            s += w[i].qs[j] * x[i].qs[j];
        sum += h2f(w[i].d) * h2f(x[i].d) * (float)s;
    }
    return sum;
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 with a 6-bit scale and min each.  The
 * mins meet the activation sums (bsums), so they cost no per-value work.
 *
 * The k-quant contract, kept bit for bit by every path: per super-block the
 * whole integer sum isum = sum_j s_j (levels . activations of sub-block j)
 * and imin = sum_j m_j (bsums of sub-block j), both exact, then two float
 * steps: acc = fma(d_x d_w, isum, acc) and summ = fma(d_x dmin, imin, summ),
 * the row's result acc - summ.  Summing in integers before any scale lets a
 * kernel add a sub-block's products before one multiply by its scale (one
 * vpdpbusd per 64 products and a vpmulld per sub-block), where ggml's AVX2
 * order (8 float lanes a row) needs a scale multiply per 4 products. */
static float dot_q45_k(int64_t n, const void *vw, const void *vx, int bits)
{
    const lm_block_q8_k *x = vx;
    const size_t bsize = bits == 4 ? sizeof(lm_block_q4_k) : sizeof(lm_block_q5_k);
    float sum = 0.0f, summ = 0.0f;
    for (int64_t i = 0; i < n / LM_QK_K; i++) {
        const uint8_t *blk = (const uint8_t *)vw + (size_t)i * bsize;
        const lm_block_q4_k *w4 = (const lm_block_q4_k *)blk;
        const lm_block_q5_k *w5 = (const lm_block_q5_k *)blk;
        const uint8_t *qs = bits == 4 ? w4->qs : w5->qs;
        uint8_t sc[8], m[8];
        lm_k4_scales(bits == 4 ? w4->scales : w5->scales, sc, m);
        int isum = 0, imin = 0;
        for (int j = 0; j < 8; j++) {
            const int shift = (j & 1) * 4;
            const uint8_t *q = qs + (j / 2) * 32;
            const int8_t *a = x[i].qs + j * 32;
            int s = 0;
            for (int l = 0; l < 32; l++) {
                int v = (q[l] >> shift) & 0x0F;
                if (bits == 5)
                    v |= ((w5->qh[l] >> j) & 1) << 4;
                s += v * a[l];
            }
            isum += sc[j] * s;
            imin += m[j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        const float d = x[i].d * h2f(w4->d); /* d and dmin lead both layouts */
        const float dmin = x[i].d * h2f(w4->dmin);
        sum = fmaf(d, (float)isum, sum);
        summ = fmaf(dmin, (float)imin, summ);
    }
    return sum - summ;
}

static float dot_q4_k(int64_t n, const void *w, const void *x)
{
    return dot_q45_k(n, w, x, 4);
}

static float dot_q5_k(int64_t n, const void *w, const void *x)
{
    return dot_q45_k(n, w, x, 5);
}

/* Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; levels are 0..63 and
 * the -32 offset is taken out with the activation sums.  The contract (see
 * dot_q45_k): isum - 32 sum_g s_g bsums_g exact, then one
 * acc = fma(d_w d_x, that, acc) per super-block. */
static float dot_q6_k(int64_t n, const void *vw, const void *vx)
{
    const lm_block_q6_k *w = vw;
    const lm_block_q8_k *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LM_QK_K; i++) {
        int isum = 0, ioff = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            const int8_t *sc = w[i].scales + 8 * h;
            const int8_t *a = x[i].qs + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                int q1 = (ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4;
                int q2 = (ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4;
                int q3 = (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4;
                int q4 = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4;
                isum += sc[is + 0] * q1 * a[l] + sc[is + 2] * q2 * a[l + 32] +
                        sc[is + 4] * q3 * a[l + 64] + sc[is + 6] * q4 * a[l + 96];
            }
        }
        for (int g = 0; g < 16; g++)
            ioff += w[i].scales[g] * x[i].bsums[g];
        sum = fmaf(h2f(w[i].d) * x[i].d, (float)(isum - 32 * ioff), sum);
    }
    return sum;
}

static float dot_f32(int64_t n, const void *vw, const void *vx)
{
    const float *w = vw, *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)w[i] * x[i];
    return (float)sum;
}

static float dot_f16(int64_t n, const void *vw, const void *vx)
{
    const lm_fp16 *w = vw, *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)h2f(w[i]) * h2f(x[i]);
    return (float)sum;
}

static float dot_bf16(int64_t n, const void *vw, const void *vx)
{
    const lm_bf16 *w = vw, *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)lm_bf16_to_f32(w[i]) * lm_bf16_to_f32(x[i]);
    return (float)sum;
}

const lm_dot_fn lm_dot_portable[LM_TYPE_COUNT] = {
    [LM_TYPE_F32] = dot_f32,   [LM_TYPE_F16] = dot_f16,   [LM_TYPE_BF16] = dot_bf16,
    [LM_TYPE_Q4_0] = dot_q4_0, [LM_TYPE_Q4_1] = dot_q4_1, [LM_TYPE_Q5_0] = dot_q5_0,
    [LM_TYPE_Q5_1] = dot_q5_1, [LM_TYPE_Q8_0] = dot_q8_0, [LM_TYPE_Q4_K] = dot_q4_k,
    [LM_TYPE_Q5_K] = dot_q5_k, [LM_TYPE_Q6_K] = dot_q6_k,
};
