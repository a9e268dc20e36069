/* AVX-512 VNNI kernels for Q4_K, Q5_K and Q6_K: decode (one token, 16
 * rows at a time: Q4_K and Q6_K a row at a time, Q5_K side by side in
 * lanes) and a packed panel for prompts and batches; both keep the k-quant contract (dot_portable.c's dot_q45_k),
 * so they give the portable dots' and the AVX2 tiles' bits. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifdef LM_HAVE_AVX512VNNI

#include "avx512_inline.h"

/* ---- Q5_K decode: 16 rows in lanes (and what the panels share) -----------
 *
 * The k-quant contract (dot_portable.c's dot_q45_k): per super-block the
 * exact integer sum isum = sum_j s_j (levels . activations of sub-block j),
 * then one fma into the row's accumulator.  Here the 16 rows sit side by
 * side in the lanes: vpdpbusd adds a 4-byte group of each row's levels
 * times the same 4 activation bytes, broadcast; a sub-block's 8 groups go
 * into one register before a single vpmulld by the rows' s_j.  That is one
 * multiply instruction per 64 products, plus one per sub-block, where
 * ggml's order (8 float lanes a row) needed two per 64. */

/* The 16 rows' block header from its first 16 bytes, in one transpose:
 * dd holds d (low half) and dmin (high half) of row i in lane i, which
 * spares a vpgatherdd per block (one AMD Zen 5 core, a Q4_K decode of a
 * matrix in cache: 19.9-20.3 GB/s with it, 21.2 without); then the 6-bit
 * scales and mins from the 12 bytes at +4 (ggml's get_scale_min_k4 in four
 * dword operations, as k4_scales_mins): bytes of sc[0] are s_0..s_3, of sc[1]
 * s_4..s_7; of mn[0] m_0..m_3, of mn[1] m_4..m_7. */
VINLINE void k4_header16(const uint8_t *const rows[PANEL_ROWS], size_t o, __m512i *dd,
                         __m512i sc[2], __m512i mn[2])
{
    __m512i u[4]; /* dword 0: d and dmin; dwords 1..3: the 12 scale bytes */
    transpose16(rows, o, u);
    *dd = u[0];
    const __m512i m3f = _mm512_set1_epi32(0x3f3f3f3f), m0f = _mm512_set1_epi32(0x0f0f0f0f),
                  m03 = _mm512_set1_epi32(0x03030303);
    sc[0] = _mm512_and_si512(u[1], m3f);
    sc[1] = _mm512_or_si512(_mm512_and_si512(u[3], m0f),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u[1], 6), m03), 4));
    mn[0] = _mm512_and_si512(u[2], m3f);
    mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u[3], 4), m0f),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u[2], 6), m03), 4));
}

/* Unsigned byte j (< 4) of each lane of v, as an int32. */
VINLINE __m512i byte_u32(__m512i v, const int j)
{
    return _mm512_and_si512(_mm512_srli_epi32(v, 8 * j), _mm512_set1_epi32(0xFF));
}

/* Signed byte j (< 4) of each lane of v, as an int32. */
VINLINE __m512i sbyte_i32(__m512i v, const int j)
{
    return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * j), 24);
}

/* Bytes 2i and 2i+1 of each lane of v as the int16 pair (low, high). */
VINLINE __m512i bytes_pair(__m512i v, const int i)
{
    const __m512i w = _mm512_srli_epi32(v, 16 * i), ff = _mm512_set1_epi32(0xFF);
    return _mm512_or_si512(_mm512_and_si512(w, ff),
                           _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w, 8), ff), 16));
}

/* The levels of sub-blocks 2c (lo) and 2c+1 (hi) in one 4-byte group
 * register g of nibble pairs; Q5_K (q5) adds the fifth bits from qh, the
 * same group's qh bytes (bit 2c of qh[l] tops sub-block 2c, bit 2c+1 the
 * next, as tile_q45k takes them). */
VINLINE void q45_levels(const bool q5, __m512i g, __m512i qh, const int c, __m512i *lo,
                        __m512i *hi)
{
    const __m512i nib = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    *lo = _mm512_and_si512(g, nib);
    *hi = _mm512_and_si512(_mm512_srli_epi16(g, 4), nib);
    if (q5) {
        *lo = _mm512_or_si512(*lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2 * c), one), 4));
        *hi = _mm512_or_si512(*hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2 * c + 1), one), 4));
    }
}

/* Q5_K's fifth bits of the 16 rows' block at o: qh[k] holds qh bytes
 * 4k..4k+3 of each row (none for Q4_K: zeros). */
VINLINE void q5k_high_bits(const bool q5, const uint8_t *const rows[PANEL_ROWS], size_t o,
                           __m512i qh[8])
{
    if (q5) {
        transpose16(rows, o + offsetof(lm_block_q5_k, qh), qh);
        transpose16(rows, o + offsetof(lm_block_q5_k, qh) + 16, qh + 4);
    } else {
        for (int i = 0; i < 8; i++)
            qh[i] = _mm512_setzero_si512();
    }
}

/* The activations' sums over sub-blocks 2i and 2i+1 (bsums 4i + 4i+1 and
 * 4i+2 + 4i+3, exact in int16) as the int16 pair that meets (m_2i,
 * m_2i+1) in vpdpwssd, in every lane. */
VINLINE __m512i bsum_pair(const lm_block_q8_k *xb, const int i)
{
    const int p0 = xb->bsums[4 * i] + xb->bsums[4 * i + 1];
    const int p1 = xb->bsums[4 * i + 2] + xb->bsums[4 * i + 3];
    return _mm512_set1_epi32((int)(((uint32_t)p1 << 16) | ((uint32_t)p0 & 0xFFFF)));
}

/* The 4 activation bytes at p in every lane (vpdpbusd's signed operand),
 * broadcast from memory: through a general register (what set1 of a
 * memcpy'd word compiles to) each would also take a shuffle. */
VINLINE __m512i act4(const int8_t *p)
{
    return _mm512_broadcastd_epi32(_mm_loadu_si32(p));
}

/* One token against nr (<= 16) Q5_K rows starting at w (the fifth bits
 * from qh as tile_q45k takes them): y[i], i < nr.  (Q4_K reads a row at a
 * time: decode_q4_k below.) */
static VNNI void decode_q5_k(const uint8_t *w, size_t ws, int nr, int64_t nb,
                             const uint8_t *ahead, size_t ahead_len, const uint8_t *x, float *y)
{
    const bool q5 = true;
    const uint8_t *rows[PANEL_ROWS];
    panel_row_ptrs(w, ws, nr, rows);
    const size_t bsize = sizeof(lm_block_q5_k), xsize = sizeof(lm_block_q8_k);
    const size_t qs_at = offsetof(lm_block_q5_k, qs);
    __m512 acc = _mm512_setzero_ps(), summ = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * bsize;
        const lm_block_q8_k *xb = (const lm_block_q8_k *)(x + b * xsize);
        __m512i dd, sc[2], mn[2];
        k4_header16(rows, o, &dd, sc, mn);
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
        const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
        /* imin = sum_j m_j (bsums[2j] + bsums[2j+1]), exact */
        __m512i imin = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            imin = _mm512_dpwssd_epi32(imin, bytes_pair(mn[i / 2], i % 2), bsum_pair(xb, i));
        __m512i isum = _mm512_setzero_si512();
        __m512i qh[8];
        q5k_high_bits(q5, rows, o, qh);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            prefetch_ahead(ahead, ahead_len, PANEL_ROWS * bsize / 4, 4 * b + c);
            /* sub-blocks 2c (low nibbles) and 2c+1 (high): 8 groups each */
            __m512i dlo = _mm512_setzero_si512(), dhi = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int half = 0; half < 2; half++) {
                __m512i g[4];
                transpose16(rows, o + qs_at + 32 * c + 16 * half, g);
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    const int k = 4 * half + q;
                    __m512i lo, hi;
                    q45_levels(q5, g[q], qh[k], c, &lo, &hi);
                    dlo = _mm512_dpbusd_epi32(dlo, lo, act4(xb->qs + 64 * c + 4 * k));
                    dhi = _mm512_dpbusd_epi32(dhi, hi, act4(xb->qs + 64 * c + 32 + 4 * k));
                }
            }
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dlo, byte_u32(sc[c / 2], (2 * c) % 4)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dhi, byte_u32(sc[c / 2], (2 * c + 1) % 4)));
        }
        const __m512 xd = _mm512_set1_ps(xb->d);
        acc = _mm512_fmadd_ps(_mm512_mul_ps(xd, dw), _mm512_cvtepi32_ps(isum), acc);
        summ = _mm512_fmadd_ps(_mm512_mul_ps(xd, dmin), _mm512_cvtepi32_ps(imin), summ);
    }
    _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), _mm512_sub_ps(acc, summ));
}

/* ---- Q6_K: what its decoder and its panel packing share -------------------- */

/* Bytes 2i and 2i+1 of each lane of v, signed, as the int16 pair. */
VINLINE __m512i sbytes_pair(__m512i v, const int i)
{
    const __m512i lo = _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 16 * i), 24);
    const __m512i hi = _mm512_srai_epi32(_mm512_slli_epi32(v, 16 - 16 * i), 24);
    return _mm512_or_si512(_mm512_and_si512(lo, _mm512_set1_epi32(0xFFFF)),
                           _mm512_slli_epi32(hi, 16));
}

/* Levels 0..63 of 32-level vector j (< 4) of a half, for one 4-byte group:
 * the low nibbles of ql bytes 0..31 (l0) for j = 0, of ql bytes 32..63 (l1)
 * for j = 1, their high nibbles for j = 2, 3; bits 2j, 2j+1 of qh on top.
 * The qh bits are shifted straight to bits 4, 5 and one vpternlogd puts
 * nibble and top together: 3-4 instructions a level where 4-6 were. */
VINLINE __m512i q6_level(__m512i l0, __m512i l1, __m512i hb, const int j)
{
    const __m512i lo4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
    const __m512i l = j % 2 ? l1 : l0;
    const __m512i nib = j < 2 ? l : _mm512_srli_epi16(l, 4); /* masked below */
    const __m512i at45 = j == 0   ? _mm512_slli_epi16(hb, 4)
                         : j == 1 ? _mm512_slli_epi16(hb, 2)
                         : j == 2 ? hb
                                  : _mm512_srli_epi16(hb, 2);
    /* (nib & 0x0F) | top: vpternlogd 0xEC is (a & c) | b */
    return _mm512_ternarylogic_epi32(nib, _mm512_and_si512(at45, top2), lo4, 0xEC);
}

/* A row's Q6_K block at row, against the token's 256 activations a[4]
 * (64 a register) and 32 * bsums (lane 4q + c: group 4c + q): 16 int32
 * lanes whose sum is the block's exact integer sum isum.
 *
 * The row's levels come in ggml's order without a transpose: the low
 * nibbles of ql bytes 64h..64h+63 are elements 128h..128h+63, their high
 * nibbles the next 64, and qh byte 32h + l tops element 128h + 32j + l
 * with its bits 2j, 2j+1; so one register of qh's half twice over,
 * shifted by 4, 2, 0 or 2 bits a 256-bit half, puts every top at bits 4
 * and 5.  vpdpbusd then leaves in lane i of chunk c the products of
 * elements 64c + 4i..4i+3, whose 16-group is 4c + i / 4; the four chunks'
 * quarters are summed into lane 4q + c, which meets its group's scale
 * (permuted the same way) after the offset 32 * bsums comes off:
 * sum_g scale_g (dot_g - 32 bsum_g), the portable dot's integer. */
VINLINE __m512i q6k_row_isum(const uint8_t *row, const __m512i a[4], __m512i bs32)
{
    const __m512i ql0 = _mm512_loadu_si512(row + offsetof(lm_block_q6_k, ql));
    const __m512i ql1 = _mm512_loadu_si512(row + offsetof(lm_block_q6_k, ql) + 64);
    const __m512i qh = _mm512_loadu_si512(row + offsetof(lm_block_q6_k, qh));
    const __m512i lo4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
    /* bits 0, 1 (low 256 bits: j = 0) or 2, 3 (j = 1) up to 4, 5; for the
     * high nibbles bits 4, 5 (j = 2) stay, 6, 7 (j = 3) come down by 2 */
    const __m512i up = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i down = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512i d[4];
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i ql = h ? ql1 : ql0;
        const __m512i t =
            h ? _mm512_shuffle_i64x2(qh, qh, 0xEE) : _mm512_shuffle_i64x2(qh, qh, 0x44);
        const __m512i lo = _mm512_ternarylogic_epi32(
            ql, _mm512_and_si512(_mm512_sllv_epi16(t, up), top2), lo4, 0xEC);
        const __m512i hi = _mm512_ternarylogic_epi32(
            _mm512_srli_epi16(ql, 4), _mm512_and_si512(_mm512_srlv_epi16(t, down), top2), lo4,
            0xEC);
        d[2 * h] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, a[2 * h]);
        d[2 * h + 1] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, a[2 * h + 1]);
    }
    /* lane 4q + c: quarter q of d[c] summed */
    const __m512i t0 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
    const __m512i t1 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(d[2], d[3]), _mm512_unpackhi_epi32(d[2], d[3]));
    const __m512i u =
        _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
    const __m512i sc = _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
        _mm512_cvtepi8_epi32(
            _mm_loadu_si128((const __m128i *)(row + offsetof(lm_block_q6_k, scales)))));
    return _mm512_mullo_epi32(_mm512_sub_epi32(u, bs32), sc);
}

/* The lane sums of four rows' vectors v[0..3], one quarter a row: quarter
 * r holds 4 partial sums of row r (integers: any order is exact). */
VINLINE __m512i sum_rows4(const __m512i v[4])
{
    const __m512i b0 = _mm512_add_epi32(_mm512_shuffle_i32x4(v[0], v[1], 0x44),
                                        _mm512_shuffle_i32x4(v[0], v[1], 0xEE));
    const __m512i b1 = _mm512_add_epi32(_mm512_shuffle_i32x4(v[2], v[3], 0x44),
                                        _mm512_shuffle_i32x4(v[2], v[3], 0xEE));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(b0, b1, 0x88), _mm512_shuffle_i32x4(b0, b1, 0xDD));
}

/* Four sum_rows4 results (rows 4m..4m+3 in c[m]) to one register: lane i
 * the whole sum of row i. */
VINLINE __m512i sum_rows16(const __m512i c[4])
{
#define PS(v) _mm512_castsi512_ps(v)
#define SI(v) _mm512_castps_si512(v)
    /* quarter r of d0: two partial sums of row r, then of row 4 + r */
    const __m512i d0 =
        _mm512_add_epi32(SI(_mm512_shuffle_ps(PS(c[0]), PS(c[1]), _MM_SHUFFLE(1, 0, 1, 0))),
                         SI(_mm512_shuffle_ps(PS(c[0]), PS(c[1]), _MM_SHUFFLE(3, 2, 3, 2))));
    const __m512i d1 =
        _mm512_add_epi32(SI(_mm512_shuffle_ps(PS(c[2]), PS(c[3]), _MM_SHUFFLE(1, 0, 1, 0))),
                         SI(_mm512_shuffle_ps(PS(c[2]), PS(c[3]), _MM_SHUFFLE(3, 2, 3, 2))));
    /* lane 4r + i: row r + 4i */
    const __m512i e =
        _mm512_add_epi32(SI(_mm512_shuffle_ps(PS(d0), PS(d1), _MM_SHUFFLE(2, 0, 2, 0))),
                         SI(_mm512_shuffle_ps(PS(d0), PS(d1), _MM_SHUFFLE(3, 1, 3, 1))));
#undef PS
#undef SI
    return _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), e);
}

/* One token against nr (<= 16) Q6_K rows starting at w: y[i] for i < nr,
 * a row at a time (q6k_row_isum), where transposing 16 rows into lanes
 * had taken some 300 shuffles a block and 1190 instructions in all (one
 * Zen 5 core, a matrix in cache: 22-28 GB/s, 2 threads from RAM 38-41).
 * The 16 rows' integer sums come together in lanes for the float steps:
 * acc = fma(d_w d_x, isum, acc), as dot_portable.c's dot_q6_k. */
static VNNI void decode_q6_k(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *ahead,
                             size_t ahead_len, const uint8_t *x, float *y)
{
    const uint8_t *rows[PANEL_ROWS];
    panel_row_ptrs(w, ws, nr, rows);
    const size_t bsize = sizeof(lm_block_q6_k), xsize = sizeof(lm_block_q8_k);
    const size_t at_d = offsetof(lm_block_q6_k, d);
    const size_t span = (PANEL_ROWS * bsize / 4 + 63) & ~(size_t)63;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * bsize;
        const lm_block_q8_k *xb = (const lm_block_q8_k *)(x + b * xsize);
        __m512i a[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            a[c] = _mm512_loadu_si512(xb->qs + 64 * c);
        const __m512i bs32 = _mm512_slli_epi32(
            _mm512_permutexvar_epi32(
                _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
                _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)xb->bsums))),
            5);
        __m512i c[4];
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++) {
            prefetch_ahead(ahead, ahead_len, span, 4 * b + m);
            __m512i v[4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                v[r] = 4 * m + r < nr ? q6k_row_isum(rows[4 * m + r] + o, a, bs32)
                                      : _mm512_setzero_si512();
            c[m] = sum_rows4(v);
        }
        const __m512i isum = sum_rows16(c);
        /* d: the high half of the dword before it (scales 14, 15 and d, all
         * inside the block) */
        const __m512 dw = _mm512_cvtph_ps(
            _mm512_cvtepi32_epi16(_mm512_srli_epi32(dwords16(rows, o + at_d - 2), 16)));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xb->d)), _mm512_cvtepi32_ps(isum),
                              acc);
    }
    _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), acc);
}

/* ---- Q4_K decode, a row at a time --------------------------------------
 *
 * decode_q6_k's way for Q4_K.  Byte i of a row's qs register k (qs bytes
 * 64k..64k+63) holds in its low nibble element 128k + i (i < 32) or
 * 128k + 32 + i (i >= 32), in its high nibble the element 32 later; so
 * the token's activations, rearranged once a block into a[4] (elements
 * 0..31 and 64..95, 32..63 and 96..127, then the same 128 on), meet the
 * nibbles of two loads in four vpdpbusd.  Chunk c's half h then belongs to
 * sub-block base_c + 2h (base 0, 1, 4, 5), and after the quarter sums lane
 * 4q + c meets s of sub-block base_c + 2 (q / 2). */

/* The row's 16 lanes whose sum is sum_j s_j (levels . activations of
 * sub-block j); sv: the row's scales as q4k_row_scales lays them. */
VINLINE __m512i q4k_row_isum(const uint8_t *qs, const __m512i a[4], __m512i sv)
{
    const __m512i nib = _mm512_set1_epi8(0x0F);
    __m512i d[4];
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
        const __m512i q = _mm512_loadu_si512(qs + 64 * k);
        d[2 * k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q, nib), a[2 * k]);
        d[2 * k + 1] = _mm512_dpbusd_epi32(
            _mm512_setzero_si512(), _mm512_and_si512(_mm512_srli_epi16(q, 4), nib), a[2 * k + 1]);
    }
    const __m512i t0 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
    const __m512i t1 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(d[2], d[3]), _mm512_unpackhi_epi32(d[2], d[3]));
    const __m512i u =
        _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
    return _mm512_mullo_epi32(u, sv);
}

/* Row r's scales for q4k_row_isum, from the 16 rows' s_0..s_3 (sc[0]) and
 * s_4..s_7 (sc[1]) bytes in lanes: lane 4q + c holds s of sub-block
 * base_c + 2 (q / 2), that is bytes (s0 s1 s4 s5) in quarters 0 and 1 and
 * (s2 s3 s6 s7) in quarters 2 and 3, one a lane. */
VINLINE __m512i q4k_row_scales(__m512i lo_pairs, __m512i hi_pairs, const int r)
{
    const __m512i idx = _mm512_set1_epi32(r);
    const __m512i dw =
        _mm512_mask_blend_epi32((__mmask16)0xFF00, _mm512_permutexvar_epi32(idx, lo_pairs),
                                _mm512_permutexvar_epi32(idx, hi_pairs));
    return _mm512_and_si512(_mm512_srlv_epi32(dw, _mm512_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24, 0,
                                                                    8, 16, 24, 0, 8, 16, 24)),
                            _mm512_set1_epi32(0xFF));
}

/* One token against nr (<= 16) Q4_K rows starting at w: y[i] for i < nr.
 * The header (d, dmin, scales and mins) of the 16 rows comes in lanes by
 * one transpose, and with it imin; isum a row at a time (q4k_row_isum),
 * where transposing every 16 bytes of levels had taken 840 instructions a
 * block.  The float steps are the portable dot's: acc = fma(d_x d_w, isum,
 * acc), summ = fma(d_x dmin, imin, summ), y = acc - summ. */
static VNNI void decode_q4_k(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *ahead,
                             size_t ahead_len, const uint8_t *x, float *y)
{
    const uint8_t *rows[PANEL_ROWS];
    panel_row_ptrs(w, ws, nr, rows);
    const size_t bsize = sizeof(lm_block_q4_k), xsize = sizeof(lm_block_q8_k);
    const size_t qs_at = offsetof(lm_block_q4_k, qs);
    const size_t span = (PANEL_ROWS * bsize / 4 + 63) & ~(size_t)63;
    __m512 acc = _mm512_setzero_ps(), summ = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * bsize;
        const lm_block_q8_k *xb = (const lm_block_q8_k *)(x + b * xsize);
        __m512i a[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) { /* elements 128(c/2) + 32(c%2) + 0..31, then 64 on */
            const int8_t *p = xb->qs + 128 * (c / 2) + 32 * (c % 2);
            a[c] =
                _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                                   _mm256_loadu_si256((const __m256i *)(p + 64)), 1);
        }
        __m512i dd, sc[2], mn[2];
        k4_header16(rows, o, &dd, sc, mn);
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
        const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
        /* imin = sum_j m_j (bsums[2j] + bsums[2j+1]), exact */
        __m512i imin = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            imin = _mm512_dpwssd_epi32(imin, bytes_pair(mn[i / 2], i % 2), bsum_pair(xb, i));
        /* (s0 s1 s4 s5) and (s2 s3 s6 s7) of each row (vpternlogd 0xE4: c ? a : b) */
        const __m512i m16 = _mm512_set1_epi32(0xFFFF);
        const __m512i lo_pairs =
            _mm512_ternarylogic_epi32(sc[0], _mm512_slli_epi32(sc[1], 16), m16, 0xE4);
        const __m512i hi_pairs =
            _mm512_ternarylogic_epi32(_mm512_srli_epi32(sc[0], 16), sc[1], m16, 0xE4);
        __m512i c4[4];
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++) {
            prefetch_ahead(ahead, ahead_len, span, 4 * b + m);
            __m512i v[4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                v[r] = 4 * m + r < nr ? q4k_row_isum(rows[4 * m + r] + o + qs_at, a,
                                                     q4k_row_scales(lo_pairs, hi_pairs, 4 * m + r))
                                      : _mm512_setzero_si512();
            c4[m] = sum_rows4(v);
        }
        const __m512i isum = sum_rows16(c4);
        const __m512 xd = _mm512_set1_ps(xb->d);
        acc = _mm512_fmadd_ps(_mm512_mul_ps(xd, dw), _mm512_cvtepi32_ps(isum), acc);
        summ = _mm512_fmadd_ps(_mm512_mul_ps(xd, dmin), _mm512_cvtepi32_ps(imin), summ);
    }
    _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), _mm512_sub_ps(acc, summ));
}

/* ---- Prompts and batches: a packed panel of 16 rows --------------------
 *
 * Decode unpacks every block for its one token.  A prompt packs 16 rows'
 * blocks once into what the decoders' inner step consumes (the levels as
 * bytes, the scales as int32) and runs that step for each of up to
 * KTILE_TOKS tokens at a time.  Both kinds then take the same step: for the
 * 32-level vector v (< 8) of a block and group k (< 8), register L[8v + k]
 * holds the levels of elements 32v + 4k..32v + 4k + 3 of the 16 rows, which
 * meet the activation bytes at the same place in vpdpbusd; groups k < 4 lie
 * under scale register S[2v], the others under S[2v + 1] (Q4_K/Q5_K: all 8
 * under s_v in S[2v], so they share one vpmulld).  The float steps that
 * follow are the decoders'. */

enum kq { KQ_Q4_K, KQ_Q5_K, KQ_Q6_K };

/* A packed block of 16 rows: d and dmin as f32 (Q6_K: no dmin), 16 scale
 * registers of int32 (Q4_K/Q5_K: s_v in S[2v]; Q6_K: scale g in S[g]), 8 correction registers of int16 pairs meeting pairs of the
 * activations' bsums (Q4_K/Q5_K: (m_2i, m_2i+1) against the sums of bsums
 * 4i, 4i+1 and 4i+2, 4i+3, in M[0..3]; Q6_K: (scale_2i, scale_2i+1) against
 * bsums 2i, 2i+1), and the 64 level registers. */
#define KP_D 0
#define KP_DMIN 64
#define KP_S 128
#define KP_M (KP_S + 16 * 64)
#define KP_L (KP_M + 8 * 64)
#define KP_BYTES (KP_L + 64 * 64)
/* Tokens per inner tile: each takes 4 registers (a scale group's dot, the
 * integer sum, the float sum and the mins' sum).  6 and 8 ran within this
 * VM's noise of 4 (1B FFN down, 128 tokens, one Zen 5 core: Q4_K 340-392
 * GFLOP/s, Q6_K 300-320 with any of them). */
#define KTILE_TOKS 4
/* Tokens served by one packing of a panel: up to 128 (packing a Q6_K panel
 * took 14% of a 1B prompt at 64, and the prompt ran 140 -> 155 tokens/s
 * at 128), fewer when their activations would pass 1 MB of the L2. */
#define KPANEL_TOKS 128
#define KPANEL_ACT_BYTES (1 << 20)

VINLINE void store_reg(uint8_t *p, int i, __m512i v)
{
    _mm512_store_si512(p + 64 * i, v);
}

/* Packs block b of 16 Q4_K/Q5_K rows. */
VINLINE void pack_q45k_block(const bool q5, const uint8_t *const rows[PANEL_ROWS], int64_t b,
                             uint8_t *pb)
{
    const size_t bsize = q5 ? sizeof(lm_block_q5_k) : sizeof(lm_block_q4_k);
    const size_t qs_at = q5 ? offsetof(lm_block_q5_k, qs) : offsetof(lm_block_q4_k, qs);
    const size_t o = (size_t)b * bsize;
    __m512i dd, sc[2], mn[2];
    k4_header16(rows, o, &dd, sc, mn);
    _mm512_store_ps(pb + KP_D, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)));
    _mm512_store_ps(pb + KP_DMIN, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))));
    for (int v = 0; v < 8; v++) /* (S[2v + 1] unused: one scale a vector) */
        store_reg(pb + KP_S, 2 * v, byte_u32(sc[v / 4], v % 4));
    for (int i = 0; i < 8; i++)
        store_reg(pb + KP_M, i, i < 4 ? bytes_pair(mn[i / 2], i % 2) : _mm512_setzero_si512());
    __m512i qh[8];
    q5k_high_bits(q5, rows, o, qh);
    for (int c = 0; c < 4; c++)
        for (int half = 0; half < 2; half++) {
            __m512i g[4];
            transpose16(rows, o + qs_at + 32 * c + 16 * half, g);
            for (int q = 0; q < 4; q++) {
                const int k = 4 * half + q;
                __m512i lo, hi;
                q45_levels(q5, g[q], qh[k], c, &lo, &hi);
                store_reg(pb + KP_L, 8 * (2 * c) + k, lo);
                store_reg(pb + KP_L, 8 * (2 * c + 1) + k, hi);
            }
        }
}

/* Packs block b of 16 Q6_K rows. */
VINLINE void pack_q6k_block(const uint8_t *const rows[PANEL_ROWS], int64_t b, uint8_t *pb)
{
    const size_t o = (size_t)b * sizeof(lm_block_q6_k);
    const size_t at_ql = offsetof(lm_block_q6_k, ql), at_qh = offsetof(lm_block_q6_k, qh),
                 at_sc = offsetof(lm_block_q6_k, scales), at_d = offsetof(lm_block_q6_k, d);
    _mm512_store_ps(pb + KP_D, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(
                                   dwords16(rows, o + at_d - 2), 16))));
    _mm512_store_ps(pb + KP_DMIN, _mm512_setzero_ps());
    __m512i sc[4];
    transpose16(rows, o + at_sc, sc);
    for (int g = 0; g < 16; g++)
        store_reg(pb + KP_S, g, sbyte_i32(sc[g / 4], g % 4));
    for (int i = 0; i < 8; i++)
        store_reg(pb + KP_M, i, sbytes_pair(sc[i / 2], i % 2));
    for (int h = 0; h < 2; h++)
        for (int part = 0; part < 2; part++) {
            __m512i l0[4], l1[4], hb[4];
            transpose16(rows, o + at_ql + 64 * h + 16 * part, l0);
            transpose16(rows, o + at_ql + 64 * h + 32 + 16 * part, l1);
            transpose16(rows, o + at_qh + 32 * h + 16 * part, hb);
            for (int j = 0; j < 4; j++)
                for (int q = 0; q < 4; q++)
                    store_reg(pb + KP_L, 8 * (4 * h + j) + 4 * part + q,
                              q6_level(l0[q], l1[q], hb[q], j));
        }
}

/* Packs nr (<= 16) rows starting at w into a panel of nb blocks. */
VINLINE void pack_kpanel(const enum kq kind, const uint8_t *w, size_t ws, int nr, int64_t nb,
                         uint8_t *panel)
{
    const uint8_t *rows[PANEL_ROWS];
    panel_row_ptrs(w, ws, nr, rows);
    for (int64_t b = 0; b < nb; b++) {
        if (kind == KQ_Q6_K)
            pack_q6k_block(rows, b, panel + b * KP_BYTES);
        else
            pack_q45k_block(kind == KQ_Q5_K, rows, b, panel + b * KP_BYTES);
    }
}

static VNNI void pack_q4_k(const uint8_t *w, size_t ws, int nr, int64_t nb, uint8_t *panel)
{
    pack_kpanel(KQ_Q4_K, w, ws, nr, nb, panel);
}

static VNNI void pack_q5_k(const uint8_t *w, size_t ws, int nr, int64_t nb, uint8_t *panel)
{
    pack_kpanel(KQ_Q5_K, w, ws, nr, nb, panel);
}

static VNNI void pack_q6_k(const uint8_t *w, size_t ws, int nr, int64_t nb, uint8_t *panel)
{
    pack_kpanel(KQ_Q6_K, w, ws, nr, nb, panel);
}

/* One panel against T (<= KTILE_TOKS, a constant after inlining) tokens:
 * y[t * ys + i] for rows i < nr.  q6: Q6_K's float steps (no mins; the
 * -32 offset taken out through the bsums), else Q4_K's.  Meanwhile it asks
 * for the ahead_len bytes at ahead (the rows the next packing reads; 0:
 * none), a share a block. */
VINLINE void kpanel_tile(const bool q6, int64_t nb, const uint8_t *panel, const uint8_t *x,
                         size_t xs, float *y, int64_t ys, int nr, const uint8_t *ahead,
                         size_t ahead_len, const int T)
{
    const size_t span = ((ahead_len + (size_t)nb - 1) / (size_t)nb + 63) & ~(size_t)63;
    __m512 acc[KTILE_TOKS], summ[KTILE_TOKS];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        acc[t] = _mm512_setzero_ps();
        summ[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = panel + b * KP_BYTES;
        prefetch_ahead(ahead, ahead_len, span, b);
        const lm_block_q8_k *xb[KTILE_TOKS];
        __m512i isum[KTILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            xb[t] = (const lm_block_q8_k *)(x + t * xs) + b;
            isum[t] = _mm512_setzero_si512();
        }
        /* scale group sg: groups 4sg..4sg+3 under S[sg] (Q6_K), or 8sg..8sg+7
         * under S[2sg] (Q4_K/Q5_K); one dot register a token */
        const int G = q6 ? 4 : 8;
#pragma GCC unroll 16
        for (int sg = 0; sg < 64 / G; sg++) {
            __m512i d[KTILE_TOKS];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                d[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int k = 0; k < G; k++) {
                const int g = sg * G + k; /* 8v + k of the layout */
                const __m512i l = _mm512_load_si512(pb + KP_L + 64 * g);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                    d[t] = _mm512_dpbusd_epi32(d[t], l, act4(xb[t]->qs + 4 * g));
            }
            const __m512i sv = _mm512_load_si512(pb + KP_S + 64 * (q6 ? sg : 2 * sg));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
            {
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(d[t], sv));
                /* keeps the sum a chain: GCC otherwise regroups the adds
                 * and keeps every group's dot alive, spilling them */
                __asm__("" : "+v"(isum[t]));
            }
        }
        const __m512 dw = _mm512_load_ps(pb + KP_D);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const __m512 xd = _mm512_set1_ps(xb[t]->d);
            __m512i corr = _mm512_setzero_si512();
            if (q6) {
                /* sum_g scale_g bsums_g, exact, two groups a step */
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    corr = _mm512_dpwssd_epi32(
                        corr, _mm512_load_si512(pb + KP_M + 64 * i),
                        _mm512_set1_epi32((int)load_u32((const uint8_t *)(xb[t]->bsums + 2 * i))));
                isum[t] = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(corr, 5));
            } else {
                /* imin = sum_j m_j (bsums[2j] + bsums[2j+1]), exact */
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    corr = _mm512_dpwssd_epi32(corr, _mm512_load_si512(pb + KP_M + 64 * i),
                                               bsum_pair(xb[t], i));
                }
                const __m512 dmin = _mm512_load_ps(pb + KP_DMIN);
                summ[t] = _mm512_fmadd_ps(_mm512_mul_ps(xd, dmin), _mm512_cvtepi32_ps(corr), summ[t]);
            }
            /* d_x d_w: one rounding, the same either way round */
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(xd, dw), _mm512_cvtepi32_ps(isum[t]), acc[t]);
        }
    }
    const __mmask16 keep = (__mmask16)((1u << nr) - 1);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + t * ys, keep, q6 ? acc[t] : _mm512_sub_ps(acc[t], summ[t]));
}

typedef void (*kpanel_tile_fn)(int64_t nb, const uint8_t *panel, const uint8_t *x, size_t xs,
                               float *y, int64_t ys, int nr, const uint8_t *ahead,
                               size_t ahead_len);
#define KPANEL_TILE_FN(NAME, Q6, T)                                                           \
    static VNNI void kpanel_##NAME##_##T(int64_t nb, const uint8_t *panel, const uint8_t *x,  \
                                         size_t xs, float *y, int64_t ys, int nr,             \
                                         const uint8_t *ahead, size_t ahead_len)              \
    {                                                                                         \
        kpanel_tile(Q6, nb, panel, x, xs, y, ys, nr, ahead, ahead_len, T);                    \
    }
#define KPANEL_TILE_FNS(NAME, Q6)                                                             \
    KPANEL_TILE_FN(NAME, Q6, 1)                                                               \
    KPANEL_TILE_FN(NAME, Q6, 2)                                                               \
    KPANEL_TILE_FN(NAME, Q6, 3)                                                               \
    KPANEL_TILE_FN(NAME, Q6, 4)
KPANEL_TILE_FNS(q45, false)
KPANEL_TILE_FNS(q6, true)

typedef void (*decode_k_fn)(const uint8_t *w, size_t ws, int nr, int64_t nb,
                            const uint8_t *ahead, size_t ahead_len, const uint8_t *x, float *y);
typedef void (*pack_k_fn)(const uint8_t *w, size_t ws, int nr, int64_t nb, uint8_t *panel);

/* How one k-quant type runs: its decoder, packer and panel tiles. */
typedef struct {
    decode_k_fn decode;
    pack_k_fn pack;
    kpanel_tile_fn tiles[KTILE_TOKS];
} kquant_kernels;

/* Rows [r0, r1) for all tokens: one token is decoded from the rows, more
 * take packed panels; returns -1 (nothing written) if its buffers cannot be
 * had, and the caller takes the tile path. */
static int kquant_rows(const kquant_kernels *kk, const void *vw, size_t ws, int64_t cols,
                       int64_t r0, int64_t r1, const void *vx, size_t xs, int64_t n_tok,
                       float *y, int64_t ys)
{
    const uint8_t *W = vw, *x = vx;
    const int64_t nb = cols / LM_QK_K;
    if (n_tok == 1) {
        for (int64_t r = r0; r < r1; r += PANEL_ROWS) {
            const int nr = (int)(r1 - r < PANEL_ROWS ? r1 - r : PANEL_ROWS);
            const uint8_t *next = W + (size_t)(r + nr) * ws; /* (the run's next panel) */
            kk->decode(W + (size_t)r * ws, ws, nr, nb, next, (size_t)(r1 - r - nr) * ws, x, y + r);
        }
        return 0;
    }
    uint8_t *panel = aligned_alloc(64, (size_t)nb * KP_BYTES);
    if (!panel)
        return -1;
    int64_t run = KPANEL_ACT_BYTES / (int64_t)xs;
    run = run > KPANEL_TOKS ? KPANEL_TOKS : run < KTILE_TOKS ? KTILE_TOKS : run;
    for (int64_t t0 = 0; t0 < n_tok; t0 += run) {
        const int64_t t1 = t0 + run < n_tok ? t0 + run : n_tok;
        for (int64_t r = r0; r < r1; r += PANEL_ROWS) {
            const int nr = (int)(r1 - r < PANEL_ROWS ? r1 - r : PANEL_ROWS);
            kk->pack(W + (size_t)r * ws, ws, nr, nb, panel);
            /* the first tile asks for the rows of the next packing, which
             * would otherwise come from RAM a miss at a time */
            const int64_t next_nr = r1 - r - nr < PANEL_ROWS ? r1 - r - nr : PANEL_ROWS;
            const uint8_t *next = W + (size_t)(r + nr) * ws;
            size_t next_len = (size_t)next_nr * ws;
            for (int64_t t = t0; t < t1; t += KTILE_TOKS) {
                const int nt = (int)(t1 - t < KTILE_TOKS ? t1 - t : KTILE_TOKS);
                kk->tiles[nt - 1](nb, panel, x + (size_t)t * xs, xs, y + t * ys + r, ys, nr,
                                  next, next_len);
                next_len = 0;
            }
        }
    }
    free(panel);
    return 0;
}

#define KQ_TILES(NAME)                                                                         \
    {kpanel_##NAME##_1, kpanel_##NAME##_2, kpanel_##NAME##_3, kpanel_##NAME##_4}
static const kquant_kernels q4_k = {decode_q4_k, pack_q4_k, KQ_TILES(q45)};
static const kquant_kernels q5_k = {decode_q5_k, pack_q5_k, KQ_TILES(q45)};
static const kquant_kernels q6_k = {decode_q6_k, pack_q6_k, KQ_TILES(q6)};

int lm_vnni_q4_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1, const void *x,
                 size_t xs, int64_t n_tok, float *y, int64_t ys)
{
    return kquant_rows(&q4_k, w, ws, cols, r0, r1, x, xs, n_tok, y, ys);
}

int lm_vnni_q5_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1, const void *x,
                 size_t xs, int64_t n_tok, float *y, int64_t ys)
{
    return kquant_rows(&q5_k, w, ws, cols, r0, r1, x, xs, n_tok, y, ys);
}

int lm_vnni_q6_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1, const void *x,
                 size_t xs, int64_t n_tok, float *y, int64_t ys)
{
    return kquant_rows(&q6_k, w, ws, cols, r0, r1, x, xs, n_tok, y, ys);
}

#endif
