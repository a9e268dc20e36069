/* The attention's inner loops with AVX2 and AVX-512, giving the bits of the
 * portable ones in attention.c (see attention_kernels.h for the contract).
 *
 * A prompt's scores and outputs take tinyBLAS's order: each score is one
 * 16-lane accumulator of fmas over the head dimension, then the tree sum
 * reduce16 of its lanes; each output dimension is a dot product over the
 * positions, position p in slot p % 16.  One score at a time and one head
 * at a time, a 2048-token prompt spent half its time here (1B shape, 2
 * threads: 190 tokens/s, llama.cpp 217).  So:
 *  - positions go 16 (AVX-512) or 8 (AVX2) at a time, their accumulators
 *    summed by one transposing tree whose every addition is one of
 *    reduce16's, and an output's 16 slots stay in registers;
 *  - a call serves up to 16 rows (the heads that share a KV head, and
 *    consecutive tokens of the prompt), so a block of K or V is read from
 *    the cache once for all of them;
 *  - those blocks are first copied side by side: rows of the cache lie a
 *    whole KV row apart (8 KB in a 7B shape), and 16 or 64 of them alias
 *    in a few sets of L1. */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "attention_kernels.h"
#include "ops.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "x86_inline.h"

#define AVX2 LM_X86_AVX2

/* reduce16 of the 16 lanes lo (0-7) and hi (8-15) */
LM_X86_INLINE float reduce16_avx2(__m256 lo, __m256 hi)
{
    const __m256 t8 = _mm256_add_ps(hi, lo);
    __m128 t4 = _mm_add_ps(_mm256_extractf128_ps(t8, 1), _mm256_castps256_ps128(t8));
    t4 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    t4 = _mm_add_ss(t4, _mm_movehdup_ps(t4));
    return _mm_cvtss_f32(t4);
}

LM_X86_INLINE __m256 load_h8(const lm_fp16 *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* ---- one token (decode): ggml_vec_dot_f16's order, a row at a time ---- */

/* One score, hd % 64 == 0 */
LM_X86_INLINE float kq_vec_dot_avx2(const float *qh, const lm_fp16 *k, int hd)
{
    __m256 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        acc[j] = _mm256_setzero_ps();
    for (int i = 0; i < hd; i += GG_STEP)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            acc[j] =
                _mm256_fmadd_ps(load_h8(k + i + 8 * j), _mm256_loadu_ps(qh + i + 8 * j), acc[j]);
    /* accumulator j of 16 lanes is acc[2j] (lo), acc[2j+1] (hi) */
    const __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    const __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    return reduce16_avx2(lo, hi);
}

AVX2 static void kq_rows_vec_dot_avx2(const lm_attn_row *rows, int nr, const lm_fp16 *k,
                                      int kv_stride, int hd, int tiny, float kq_scale, float *work)
{
    (void)tiny, (void)work;
    for (int r = 0; r < nr; r++)
        for (int p = rows[r].first; p < rows[r].n_pos; p++)
            rows[r].sc[p] = kq_vec_dot_avx2(rows[r].qh, k + (size_t)p * kv_stride, hd) * kq_scale;
}

/* The 16 slots' reduce16, one output dimension a lane: vertical adds. */
LM_X86_INLINE __m256 reduce16_slots_avx2(const __m256 s[16])
{
    __m256 t8[8], t4[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        t8[i] = _mm256_add_ps(s[i + 8], s[i]);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        t4[i] = _mm256_add_ps(t8[i + 4], t8[i]);
    return _mm256_add_ps(_mm256_add_ps(t4[0], t4[2]), _mm256_add_ps(t4[1], t4[3]));
}

/* Outputs with slot p % 64 in memory, hd % 8 == 0. */
AVX2 static void kqv_rows_vec_dot_avx2(const lm_attn_row *rows, int nr, const lm_fp16 *v,
                                       int kv_stride, int hd, int tiny, float *slots)
{
    (void)tiny;
    for (int r = 0; r < nr; r++) {
        const float *prob = rows[r].sc;
        memset(slots, 0, (size_t)GG_STEP * hd * sizeof(float));
        for (int p = 0; p < rows[r].n_pos; p++) {
            float *a = slots + (size_t)(p % GG_STEP) * hd;
            const lm_fp16 *vr = v + (size_t)p * kv_stride;
            const __m256 w = _mm256_set1_ps(prob[p]);
            for (int d = 0; d < hd; d += 8)
                _mm256_storeu_ps(a + d,
                                 _mm256_fmadd_ps(load_h8(vr + d), w, _mm256_loadu_ps(a + d)));
        }
        for (int d = 0; d < hd; d += 8) {
            __m256 lane[GG_LANES];
#pragma GCC unroll 16
            for (int l = 0; l < GG_LANES; l++) {
                const __m256 a0 = _mm256_add_ps(_mm256_loadu_ps(slots + (size_t)l * hd + d),
                                                _mm256_loadu_ps(slots + (size_t)(32 + l) * hd + d));
                const __m256 a1 = _mm256_add_ps(_mm256_loadu_ps(slots + (size_t)(16 + l) * hd + d),
                                                _mm256_loadu_ps(slots + (size_t)(48 + l) * hd + d));
                lane[l] = _mm256_add_ps(a0, a1);
            }
            _mm256_storeu_ps(rows[r].out + d, reduce16_slots_avx2(lane));
        }
    }
}

/* ---- the softmax: gg_softmax_half's loops that ops.c has no SIMD for ---- */

/* The largest of the scores (any order gives it), each minus it, and the
 * 16-lane chunks' reduce16 in vectors, summed in double in turn. */
AVX2 static void softmax_half_avx2(float *s, int first, int n, float *tmp)
{
    memset(s, 0, (size_t)first * sizeof(float)); /* masked: probability 0 */
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int p = first;
    for (; p + 8 <= n; p += 8)
        mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + p));
    float m8[8], max = -INFINITY;
    _mm256_storeu_ps(m8, mv);
    for (int i = 0; i < 8; i++)
        max = m8[i] > max ? m8[i] : max;
    for (; p < n; p++)
        max = s[p] > max ? s[p] : max;
    const __m256 mx = _mm256_set1_ps(max);
    for (p = first; p + 8 <= n; p += 8)
        _mm256_storeu_ps(tmp + p, _mm256_sub_ps(_mm256_loadu_ps(s + p), mx));
    for (; p < n; p++)
        tmp[p] = s[p] - max;
    lm_expf_ggml_n(s + first, tmp + first, n - first);
    double sum = 0.0;
    int c = 0;
    for (; c + GG_LANES <= n; c += GG_LANES)
        sum += (double)reduce16_avx2(_mm256_loadu_ps(s + c), _mm256_loadu_ps(s + c + 8));
    if (c < n) { /* the last chunk, padded with zeros */
        float e[GG_LANES] = {0};
        memcpy(e, s + c, (size_t)(n - c) * sizeof(float));
        sum += (double)reduce16_avx2(_mm256_loadu_ps(e), _mm256_loadu_ps(e + 8));
    }
    lm_round_to_half(s, s, n, (float)(1.0 / sum));
}

/* ---- prompts: tinyBLAS's order, blocks of positions for all rows ---- */

/* The positions the rows see together: [*lo, *hi), lo a multiple of 16. */
static void rows_span(const lm_attn_row *rows, int nr, int *lo, int *hi)
{
    *lo = rows[0].first;
    *hi = rows[0].n_pos;
    for (int r = 1; r < nr; r++) {
        *lo = rows[r].first < *lo ? rows[r].first : *lo;
        *hi = rows[r].n_pos > *hi ? rows[r].n_pos : *hi;
    }
    *lo &= ~(GG_LANES - 1);
}

/* Row r's positions inside the block [p0, p0 + w): [*a, *b), from p0;
 * false if none. */
static bool row_in_block(const lm_attn_row *row, int p0, int w, int *a, int *b)
{
    const int lo = row->first > p0 ? row->first : p0;
    const int hi = row->n_pos < p0 + w ? row->n_pos : p0 + w;
    *a = lo - p0;
    *b = hi - p0;
    return lo < hi;
}

/* reduce16 of 8 positions' accumulators (lo[j]: lanes 0-7 of position j,
 * hi[j]: lanes 8-15), lane j of the result for position j.  Stage by stage
 * each addition is reduce16's: t8 = hi + lo, t4 = t8[4..7] + t8[0..3],
 * x0 = t4[0] + t4[2], x1 = t4[1] + t4[3], x0 + x1; the shuffles only line
 * up the operands of 2, 4 and 8 positions. */
LM_X86_INLINE __m256 reduce16_x8_avx2(const __m256 lo[8], const __m256 hi[8])
{
    __m256 c[4], d[2];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) { /* c[k]: t4 of positions 2k (low half), 2k + 1 */
        const __m256 a = _mm256_add_ps(hi[2 * k], lo[2 * k]);
        const __m256 b = _mm256_add_ps(hi[2 * k + 1], lo[2 * k + 1]);
        c[k] =
            _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x31), _mm256_permute2f128_ps(a, b, 0x20));
    }
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++) /* half r of d[n]: x0, x1 of 4n + r, then of 4n + 2 + r */
        d[n] = _mm256_add_ps(_mm256_shuffle_ps(c[2 * n], c[2 * n + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(c[2 * n], c[2 * n + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* lane 4r + i: position r + 2i */
    const __m256 e = _mm256_add_ps(_mm256_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(e, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Rows [p0, p0 + W) of K (past p_end: the last row again, whose scores are
 * dropped) as floats, side by side at kf, hd apart. */
LM_X86_INLINE void k_block_to_float(float *kf, const lm_fp16 *k, int kv_stride, int p0, int p_end,
                                    int W, int hd)
{
    for (int j = 0; j < W; j++) {
        const lm_fp16 *src = k + (size_t)(p0 + j < p_end ? p0 + j : p_end - 1) * kv_stride;
        for (int i = 0; i < hd; i += 8)
            _mm256_storeu_ps(kf + (size_t)j * hd + i, load_h8(src + i));
    }
}

/* Scores, 8 positions at a time (hd % 16 == 0): the block of K converted
 * once for every row, its 8 scores summed by one transposing tree. */
LM_X86_INLINE void kq_rows_tiny_avx2_body(const lm_attn_row *rows, int nr, const lm_fp16 *k,
                                          int kv_stride, int hd, int tiny, float kq_scale,
                                          float *kf)
{
    (void)tiny;
    const __m256 scale = _mm256_set1_ps(kq_scale);
    int p_lo, p_hi;
    rows_span(rows, nr, &p_lo, &p_hi);
    for (int p0 = p_lo; p0 < p_hi; p0 += 8) {
        k_block_to_float(kf, k, kv_stride, p0, p_hi, 8, hd);
        for (int r = 0; r < nr; r++) {
            int a, b;
            if (!row_in_block(&rows[r], p0, 8, &a, &b))
                continue;
            const float *q = rows[r].qh;
            __m256 lo[8], hi[8];
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                lo[j] = hi[j] = _mm256_setzero_ps();
            for (int i = 0; i < hd; i += GG_LANES) {
                const __m256 ql = _mm256_loadu_ps(q + i), qhi = _mm256_loadu_ps(q + i + 8);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    lo[j] = _mm256_fmadd_ps(_mm256_loadu_ps(kf + (size_t)j * hd + i), ql, lo[j]);
                    hi[j] =
                        _mm256_fmadd_ps(_mm256_loadu_ps(kf + (size_t)j * hd + i + 8), qhi, hi[j]);
                }
            }
            float t[8];
            _mm256_storeu_ps(t, _mm256_mul_ps(reduce16_x8_avx2(lo, hi), scale));
            memcpy(rows[r].sc + p0 + a, t + a, (size_t)(b - a) * sizeof(float));
        }
    }
}

/* kq_rows_tiny_avx2_body with the common head sizes as constants: the rows of a
 * block then lie at fixed offsets, where GCC otherwise kept 16 pointers. */
AVX2 static void kq_rows_tiny_avx2(const lm_attn_row *rows, int nr, const lm_fp16 *k, int kv_stride,
                                   int hd, int tiny, float kq_scale, float *kf)
{
    switch (hd) {
    case 64:
        kq_rows_tiny_avx2_body(rows, nr, k, kv_stride, 64, tiny, kq_scale, kf);
        break;
    case 128:
        kq_rows_tiny_avx2_body(rows, nr, k, kv_stride, 128, tiny, kq_scale, kf);
        break;
    case 256:
        kq_rows_tiny_avx2_body(rows, nr, k, kv_stride, 256, tiny, kq_scale, kf);
        break;
    default:
        kq_rows_tiny_avx2_body(rows, nr, k, kv_stride, hd, tiny, kq_scale, kf);
    }
}

/* Rows [p0, p1) of V (hd values each, kv_stride apart) side by side at
 * dst, hd apart; hd % 8 == 0. */
LM_X86_INLINE void copy_rows(lm_fp16 *dst, const lm_fp16 *v, int kv_stride, int p0, int p1, int hd)
{
    for (int p = p0; p < p1; p++) {
        const lm_fp16 *src = v + (size_t)p * kv_stride;
        lm_fp16 *d = dst + (size_t)(p - p0) * hd;
        int i = 0;
        for (; i + 16 <= hd; i += 16)
            _mm256_storeu_si256((__m256i *)(d + i), _mm256_loadu_si256((const __m256i *)(src + i)));
        if (i < hd)
            _mm_storeu_si128((__m128i *)(d + i), _mm_loadu_si128((const __m128i *)(src + i)));
    }
}

/* Outputs: for each chunk of positions (copied), row and group of 8
 * dimensions, the group's 16 slots (p % 16) in registers, kept in memory
 * between chunks.  A row's positions before first (probability 0) add
 * exact zeros to slots that hold +0, so its blocks before first are
 * skipped. */
LM_X86_INLINE void kqv_rows_tiny_avx2_body(const lm_attn_row *rows, int nr, const lm_fp16 *v,
                                           int kv_stride, int hd, int tiny, float *work)
{
    (void)tiny;
    float *slots = work; /* row r, dimension group d: 16 x 8 floats */
    lm_fp16 *vbuf = (lm_fp16 *)(work + (size_t)LM_ATTN_ROWS * GG_LANES * hd);
    memset(slots, 0, (size_t)GG_LANES * nr * hd * sizeof(float));
    int p_lo, p_hi;
    rows_span(rows, nr, &p_lo, &p_hi);
    for (int pc = p_lo; pc < p_hi; pc += LM_KQV_CHUNK) {
        const int w = p_hi - pc < LM_KQV_CHUNK ? p_hi - pc : LM_KQV_CHUNK;
        copy_rows(vbuf, v, kv_stride, pc, pc + w, hd);
        for (int r = 0; r < nr; r++) {
            int a, b;
            if (!row_in_block(&rows[r], pc, w, &a, &b))
                continue;
            a &= ~(GG_LANES - 1);
            const float *pr = rows[r].sc + pc;
            for (int d = 0; d < hd; d += 8) {
                float *sl = slots + ((size_t)r * hd + d) * GG_LANES;
                __m256 s[GG_LANES];
#pragma GCC unroll 16
                for (int l = 0; l < GG_LANES; l++)
                    s[l] = _mm256_loadu_ps(sl + 8 * l);
                const lm_fp16 *vd = vbuf + d; /* position pc + i at row i */
                int i = a;
                for (; i + GG_LANES <= b; i += GG_LANES)
#pragma GCC unroll 16
                    for (int l = 0; l < GG_LANES; l++)
                        s[l] = _mm256_fmadd_ps(load_h8(vd + (size_t)(i + l) * hd),
                                               _mm256_broadcast_ss(pr + i + l), s[l]);
#pragma GCC unroll 16
                for (int l = 0; l < GG_LANES; l++)
                    if (i + l < b)
                        s[l] = _mm256_fmadd_ps(load_h8(vd + (size_t)(i + l) * hd),
                                               _mm256_broadcast_ss(pr + i + l), s[l]);
#pragma GCC unroll 16
                for (int l = 0; l < GG_LANES; l++)
                    _mm256_storeu_ps(sl + 8 * l, s[l]);
            }
        }
    }
    for (int r = 0; r < nr; r++)
        for (int d = 0; d < hd; d += 8) {
            const float *sl = slots + ((size_t)r * hd + d) * GG_LANES;
            __m256 s[GG_LANES];
#pragma GCC unroll 16
            for (int l = 0; l < GG_LANES; l++)
                s[l] = _mm256_loadu_ps(sl + 8 * l);
            _mm256_storeu_ps(rows[r].out + d, reduce16_slots_avx2(s));
        }
}

/* kqv_rows_tiny_avx2_body with the common head sizes as constants: the rows of a
 * block then lie at fixed offsets, where GCC otherwise kept 16 pointers. */
AVX2 static void kqv_rows_tiny_avx2(const lm_attn_row *rows, int nr, const lm_fp16 *v,
                                    int kv_stride, int hd, int tiny, float *work)
{
    switch (hd) {
    case 64:
        kqv_rows_tiny_avx2_body(rows, nr, v, kv_stride, 64, tiny, work);
        break;
    case 128:
        kqv_rows_tiny_avx2_body(rows, nr, v, kv_stride, 128, tiny, work);
        break;
    case 256:
        kqv_rows_tiny_avx2_body(rows, nr, v, kv_stride, 256, tiny, work);
        break;
    default:
        kqv_rows_tiny_avx2_body(rows, nr, v, kv_stride, hd, tiny, work);
    }
}

#ifdef LM_HAVE_AVX512VNNI
#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f")))
#define AVX512_INLINE static inline __attribute__((always_inline)) AVX512

AVX512_INLINE __m512 load_h16(const lm_fp16 *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* reduce16 of 16 positions' accumulators, lane j of the result for
 * position j: reduce16_x8_avx2's stages on twice the positions. */
AVX512_INLINE __m512 reduce16_x16(const __m512 a[16])
{
    __m512 b[8], c[4], d[2];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) /* b[k]: t8 of positions 2k (lanes 0-7), 2k + 1 */
        b[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0xEE),
                             _mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0x44));
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) /* quarter r of c[m]: t4 of position 4m + r */
        c[m] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * m], b[2 * m + 1], 0xDD),
                             _mm512_shuffle_f32x4(b[2 * m], b[2 * m + 1], 0x88));
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++) /* quarter r of d[n]: x0, x1 of 8n + r, then of 8n + 4 + r */
        d[n] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * n], c[2 * n + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(c[2 * n], c[2 * n + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* lane 4r + i: position r + 4i */
    const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), e);
}

/* Scores, 16 positions at a time: kq_rows_tiny_avx2 on twice the
 * positions. */
AVX512_INLINE void kq_rows_tiny_avx512_body(const lm_attn_row *rows, int nr, const lm_fp16 *k,
                                            int kv_stride, int hd, int tiny, float kq_scale,
                                            float *kf)
{
    (void)tiny;
    const __m512 scale = _mm512_set1_ps(kq_scale);
    int p_lo, p_hi;
    rows_span(rows, nr, &p_lo, &p_hi);
    for (int p0 = p_lo; p0 < p_hi; p0 += 16) {
        k_block_to_float(kf, k, kv_stride, p0, p_hi, 16, hd);
        for (int r = 0; r < nr; r++) {
            int a, b;
            if (!row_in_block(&rows[r], p0, 16, &a, &b))
                continue;
            const float *q = rows[r].qh;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                acc[j] = _mm512_setzero_ps();
            for (int i = 0; i < hd; i += GG_LANES) {
                const __m512 qv = _mm512_loadu_ps(q + i);
#pragma GCC unroll 16
                for (int j = 0; j < 16; j++)
                    acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(kf + (size_t)j * hd + i), qv, acc[j]);
            }
            const __mmask16 keep = (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
            _mm512_mask_storeu_ps(rows[r].sc + p0, keep, _mm512_mul_ps(reduce16_x16(acc), scale));
        }
    }
}

/* kq_rows_tiny_avx512_body with the common head sizes as constants: the rows of a
 * block then lie at fixed offsets, where GCC otherwise kept 16 pointers. */
AVX512 static void kq_rows_tiny_avx512(const lm_attn_row *rows, int nr, const lm_fp16 *k,
                                       int kv_stride, int hd, int tiny, float kq_scale, float *kf)
{
    switch (hd) {
    case 64:
        kq_rows_tiny_avx512_body(rows, nr, k, kv_stride, 64, tiny, kq_scale, kf);
        break;
    case 128:
        kq_rows_tiny_avx512_body(rows, nr, k, kv_stride, 128, tiny, kq_scale, kf);
        break;
    case 256:
        kq_rows_tiny_avx512_body(rows, nr, k, kv_stride, 256, tiny, kq_scale, kf);
        break;
    default:
        kq_rows_tiny_avx512_body(rows, nr, k, kv_stride, hd, tiny, kq_scale, kf);
    }
}

/* Outputs: kqv_rows_tiny_avx2 on 16 dimensions at a time. */
AVX512_INLINE void kqv_rows_tiny_avx512_body(const lm_attn_row *rows, int nr, const lm_fp16 *v,
                                             int kv_stride, int hd, int tiny, float *work)
{
    (void)tiny;
    float *slots = work; /* row r, dimension group d: 16 x 16 floats */
    lm_fp16 *vbuf = (lm_fp16 *)(work + (size_t)LM_ATTN_ROWS * GG_LANES * hd);
    memset(slots, 0, (size_t)GG_LANES * nr * hd * sizeof(float));
    int p_lo, p_hi;
    rows_span(rows, nr, &p_lo, &p_hi);
    for (int pc = p_lo; pc < p_hi; pc += LM_KQV_CHUNK) {
        const int w = p_hi - pc < LM_KQV_CHUNK ? p_hi - pc : LM_KQV_CHUNK;
        copy_rows(vbuf, v, kv_stride, pc, pc + w, hd);
        for (int r = 0; r < nr; r++) {
            int a, b;
            if (!row_in_block(&rows[r], pc, w, &a, &b))
                continue;
            a &= ~(GG_LANES - 1);
            const float *pr = rows[r].sc + pc;
            for (int d = 0; d < hd; d += 16) {
                float *sl = slots + ((size_t)r * hd + d) * GG_LANES;
                __m512 s[GG_LANES];
#pragma GCC unroll 16
                for (int l = 0; l < GG_LANES; l++)
                    s[l] = _mm512_loadu_ps(sl + 16 * l);
                const lm_fp16 *vd = vbuf + d; /* position pc + i at row i */
                int i = a;
                for (; i + GG_LANES <= b; i += GG_LANES)
#pragma GCC unroll 16
                    for (int l = 0; l < GG_LANES; l++)
                        s[l] = _mm512_fmadd_ps(load_h16(vd + (size_t)(i + l) * hd),
                                               _mm512_set1_ps(pr[i + l]), s[l]);
#pragma GCC unroll 16
                for (int l = 0; l < GG_LANES; l++)
                    if (i + l < b)
                        s[l] = _mm512_fmadd_ps(load_h16(vd + (size_t)(i + l) * hd),
                                               _mm512_set1_ps(pr[i + l]), s[l]);
#pragma GCC unroll 16
                for (int l = 0; l < GG_LANES; l++)
                    _mm512_storeu_ps(sl + 16 * l, s[l]);
            }
        }
    }
    for (int r = 0; r < nr; r++)
        for (int d = 0; d < hd; d += 16) {
            const float *sl = slots + ((size_t)r * hd + d) * GG_LANES;
            __m512 t8[8], t4[4];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                t8[i] =
                    _mm512_add_ps(_mm512_loadu_ps(sl + 16 * (i + 8)), _mm512_loadu_ps(sl + 16 * i));
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                t4[i] = _mm512_add_ps(t8[i + 4], t8[i]);
            _mm512_storeu_ps(rows[r].out + d, _mm512_add_ps(_mm512_add_ps(t4[0], t4[2]),
                                                            _mm512_add_ps(t4[1], t4[3])));
        }
}

/* kqv_rows_tiny_avx512_body with the common head sizes as constants: the rows of a
 * block then lie at fixed offsets, where GCC otherwise kept 16 pointers. */
AVX512 static void kqv_rows_tiny_avx512(const lm_attn_row *rows, int nr, const lm_fp16 *v,
                                        int kv_stride, int hd, int tiny, float *work)
{
    switch (hd) {
    case 64:
        kqv_rows_tiny_avx512_body(rows, nr, v, kv_stride, 64, tiny, work);
        break;
    case 128:
        kqv_rows_tiny_avx512_body(rows, nr, v, kv_stride, 128, tiny, work);
        break;
    case 256:
        kqv_rows_tiny_avx512_body(rows, nr, v, kv_stride, 256, tiny, work);
        break;
    default:
        kqv_rows_tiny_avx512_body(rows, nr, v, kv_stride, hd, tiny, work);
    }
}
#endif /* LM_HAVE_AVX512VNNI */

lm_kq_rows_fn lm_kq_rows_x86(lm_cpu_path path, int hd, int tiny)
{
#ifdef LM_HAVE_AVX512VNNI
    if (path >= LM_CPU_AVX512 && tiny && hd % GG_LANES == 0)
        return kq_rows_tiny_avx512;
#endif
    if (path >= LM_CPU_AVX2 && tiny && hd % GG_LANES == 0)
        return kq_rows_tiny_avx2;
    if (path >= LM_CPU_AVX2 && !tiny && hd % GG_STEP == 0)
        return kq_rows_vec_dot_avx2;
    return NULL;
}

lm_kqv_rows_fn lm_kqv_rows_x86(lm_cpu_path path, int hd, int tiny)
{
#ifdef LM_HAVE_AVX512VNNI
    if (path >= LM_CPU_AVX512 && tiny && hd % 16 == 0)
        return kqv_rows_tiny_avx512;
#endif
    if (path >= LM_CPU_AVX2 && hd % 8 == 0)
        return tiny ? kqv_rows_tiny_avx2 : kqv_rows_vec_dot_avx2;
    return NULL;
}

lm_softmax_fn lm_softmax_x86(lm_cpu_path path)
{
    return path >= LM_CPU_AVX2 ? softmax_half_avx2 : NULL;
}

#else /* not x86 */

lm_softmax_fn lm_softmax_x86(lm_cpu_path path)
{
    (void)path;
    return NULL;
}

lm_kq_rows_fn lm_kq_rows_x86(lm_cpu_path path, int hd, int tiny)
{
    (void)path, (void)hd, (void)tiny;
    return NULL;
}

lm_kqv_rows_fn lm_kqv_rows_x86(lm_cpu_path path, int hd, int tiny)
{
    (void)path, (void)hd, (void)tiny;
    return NULL;
}

#endif
