/* What the AVX-512 VNNI kernels share (dot_avx512.c for Q4_0 and Q8_0,
 * dot_avx512_kquant.c for the k-quants): 16 weight rows side by side in
 * the lanes of a register, read from the file's rows by a register
 * transpose.  Only included by files built when LM_HAVE_AVX512VNNI is set. */
#ifndef LM_CPU_AVX512_INLINE_H
#define LM_CPU_AVX512_INLINE_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "x86_inline.h"

#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define VINLINE static inline __attribute__((always_inline)) VNNI

/* Rows in the lanes of one register. */
#define PANEL_ROWS 16
/* Tokens served by one packing of a panel: their activations (at most
 * 64 x 4.25 KB for a 4096-wide Q8_0 row, 64 x 9.1 KB for an 8192-wide
 * Q8_K one) stay in L2 while the panels pass. */
#define PANEL_TOKS 64

/* Bytes at rows[i] + o, 16 of them for each of 16 rows, as 4 registers of
 * 4-byte groups: out[g] holds group g (bytes 4g..4g+3) of row i in lane i. */
VINLINE void transpose16(const uint8_t *const rows[PANEL_ROWS], size_t o, __m512i out[4])
{
    /* lane 4g + j of z[k] <- group g of row 4k + j */
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m512i z[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rows[4 * k] + o)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * k + 1] + o)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * k + 2] + o)), 2);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * k + 3] + o)), 3);
        z[k] = _mm512_permutexvar_epi32(idx, v);
    }
    /* a 4 x 4 transpose of 128-bit lanes */
    const __m512i t0 = _mm512_shuffle_i32x4(z[0], z[1], 0x44), t1 = _mm512_shuffle_i32x4(z[0], z[1], 0xEE);
    const __m512i t2 = _mm512_shuffle_i32x4(z[2], z[3], 0x44), t3 = _mm512_shuffle_i32x4(z[2], z[3], 0xEE);
    out[0] = _mm512_shuffle_i32x4(t0, t2, 0x88);
    out[1] = _mm512_shuffle_i32x4(t0, t2, 0xDD);
    out[2] = _mm512_shuffle_i32x4(t1, t3, 0x88);
    out[3] = _mm512_shuffle_i32x4(t1, t3, 0xDD);
}

/* The 16 row pointers of a panel of nr (<= 16) rows starting at w, missing
 * rows repeating the last one (their results are dropped). */
VINLINE void panel_row_ptrs(const uint8_t *w, size_t ws, int nr, const uint8_t *rows[PANEL_ROWS])
{
    for (int i = 0; i < PANEL_ROWS; i++)
        rows[i] = w + (size_t)(i < nr ? i : nr - 1) * ws;
}

VINLINE uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The dword at rows[i] + o of each of the 16 rows, row i in lane i: 16
 * scalar loads, unpacked and inserted.  This replaces a vpgatherdd per
 * block in the decoders: one AMD Zen 5 core, a Q4_0 decode of a matrix in
 * cache (bench/matmul_bench.c case 16) ran 23.0-24.3 GB/s with the gather
 * and 28.0-28.4 with this; on Intel since the GDS mitigation a gather is
 * microcode. */
VINLINE __m512i dwords16(const uint8_t *const rows[PANEL_ROWS], size_t o)
{
    __m128i q[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const __m128i a = _mm_cvtsi32_si128((int)load_u32(rows[4 * k] + o));
        const __m128i b = _mm_cvtsi32_si128((int)load_u32(rows[4 * k + 1] + o));
        const __m128i c = _mm_cvtsi32_si128((int)load_u32(rows[4 * k + 2] + o));
        const __m128i d = _mm_cvtsi32_si128((int)load_u32(rows[4 * k + 3] + o));
        q[k] = _mm_unpacklo_epi64(_mm_unpacklo_epi32(a, b), _mm_unpacklo_epi32(c, d));
    }
    const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(q[0]), q[1], 1);
    const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(q[2]), q[3], 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Each row's 8 lane accumulators (acc[k]: lane k of the 16 rows) summed in
 * hsum8's order: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). */
VINLINE __m512 sum_lanes8(const __m512 acc[8])
{
    return _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
        _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7])));
}

/* The k-quant kernels (dot_avx512_kquant.c), as lm_panel_fn. */
int lm_vnni_q4_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1, const void *x,
                 size_t xs, int64_t n_tok, float *y, int64_t ys);
int lm_vnni_q5_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1, const void *x,
                 size_t xs, int64_t n_tok, float *y, int64_t ys);
int lm_vnni_q6_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1, const void *x,
                 size_t xs, int64_t n_tok, float *y, int64_t ys);

#endif
