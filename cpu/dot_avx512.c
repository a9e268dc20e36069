/* AVX-512 VNNI kernels: for Q4_0 and Q8_0 a panel GEMM (prompts and
 * batches) and a 16-row decode, for Q4_K, Q5_K and Q6_K a 16-row decode;
 * each gives the AVX2 kernels' bits (dot_avx2.c's tile32, tile_q45k and
 * tile_q6k).
 *
 * The weights are read in the file's blocks and packed, 16 rows at a time,
 * into a panel where 4-byte groups of the 16 rows lie side by side: one
 * 512-bit register then holds the same 4 elements of 16 rows, and vpdpbusd
 * against those 4 activation bytes broadcast adds them into 16 row lanes at
 * once.  No horizontal sum is left, and one float step serves 16 rows.  A
 * panel is packed once and used by every token of the product (up to
 * PANEL_TOKS of them; longer prompts pack it again for the next run of
 * tokens, so that their activations stay in the L2 cache).
 *
 * Why the bits are tile32's: the integer sums are exact, and they are
 * taken over the same halves of a block (elements 0..15 and 16..31); each
 * half is scaled by the same product d_w d_x and fused into its own
 * accumulator, and the halves are added at the end, exactly the float
 * steps tile32 and cl/matvec.cl's dot32 take.  vpdpbusd multiplies unsigned
 * by signed bytes, so the weights are stored with an offset (Q4_0's
 * nibbles 0..15 as they are, Q8_0's bytes + 128) and the offset times the
 * half's activation sum, computed once per token, starts each sum.
 *
 * Decode (one token) reads the same groups straight from the file's rows,
 * 16 rows at a time transposed in registers (a packed panel would be used
 * once): on 2 cores of an Intel Xeon a 1B decode is bound by the cores,
 * not by RAM, and this is 1.23x (Q4_0) and 1.25x (Q8_0) the AVX2 tiles. */
#include "config.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "x86_inline.h"

#ifdef LM_HAVE_AVX512VNNI

#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define VINLINE static inline __attribute__((always_inline)) VNNI

#define PANEL_ROWS 16
/* Tokens served by one packing of a panel: their activations (at most
 * 64 x 4.25 KB for a 4096-wide row) stay in L2 while the panels pass. */
#define PANEL_TOKS 64
/* Tokens per inner tile: 4 x 2 accumulators and 8 weight registers, of
 * the 32. */
#define TILE_TOKS 4
/* Decode asks for each of its 16 rows' data this many blocks ahead: the
 * hardware prefetchers alone left a 1B Q4_0 decode at 68-70% of the RAM
 * bandwidth, this at 74-79% (Intel Xeon, 2 threads; 4 blocks: 69-71%, 16:
 * 75%, 32: 81% but slower in tokens/s; Q8_0, at 90% either way, unmoved). */
#define PREFETCH_BLOCKS 8

enum pkind { P_Q4_0, P_Q8_0 };

/* Bytes of a weight block in the file, and where its quants start. */
static const int wsize[] = {18, 34};
/* A packed block: 16 scales as f32, then ngroups 4-byte groups of 16 rows
 * (Q4_0: 4 groups of nibble pairs, the low nibbles elements 4g..4g+3, the
 * high ones 16+4g..; Q8_0: 8 groups of bytes, elements 4g..4g+3). */
static const int ngroups[] = {4, 8};
static const int pbytes[] = {64 + 4 * 64, 64 + 8 * 64};
/* The weights' offset: stored value = w + off, so sum w x = sum (w+off) x -
 * off sum x. */
static const int woff[] = {8, 128};

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
 * rows repeating the last one (their results are dropped); returns the
 * rows' byte offsets from rows[0], for the gathers of their scales. */
VINLINE __m512i panel_row_ptrs(const uint8_t *w, size_t ws, int nr,
                               const uint8_t *rows[PANEL_ROWS])
{
    for (int i = 0; i < PANEL_ROWS; i++)
        rows[i] = w + (size_t)(i < nr ? i : nr - 1) * ws;
    const __m512i i16 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_mullo_epi32(_mm512_min_epi32(i16, _mm512_set1_epi32(nr - 1)),
                              _mm512_set1_epi32((int)ws));
}

/* Block b's 16 scales and weight groups, read from the file's rows (row i
 * at rows[i], roff[i] bytes after rows[0]): g[j] for j < ngroups (Q4_0: 4
 * groups of nibble pairs; Q8_0: 8 groups of bytes + 128). */
VINLINE __m512 block_from_rows(enum pkind k, const uint8_t *const rows[PANEL_ROWS], __m512i roff,
                               int64_t b, __m512i g[8])
{
    const size_t o = (size_t)b * wsize[k];
    /* the 16 rows' d: one 32-bit gather, the low halves kept */
    const __m256i dh = _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(roff, rows[0] + o, 1));
    transpose16(rows, o + 2, g);
    if (k == P_Q8_0) {
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        transpose16(rows, o + 18, g + 4);
        for (int j = 0; j < 8; j++)
            g[j] = _mm512_xor_si512(g[j], flip);
    }
    return _mm512_cvtph_ps(dh);
}

/* Packs nr (<= 16) rows starting at w into a panel of nb blocks. */
VINLINE void pack_panel(enum pkind k, const uint8_t *w, size_t ws, int nr, int64_t nb,
                        uint8_t *panel)
{
    const uint8_t *rows[PANEL_ROWS];
    const __m512i roff = panel_row_ptrs(w, ws, nr, rows);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *pb = panel + b * pbytes[k];
        __m512i g[8];
        _mm512_store_ps(pb, block_from_rows(k, rows, roff, b, g));
        for (int j = 0; j < ngroups[k]; j++)
            _mm512_store_si512(pb + 64 + 64 * j, g[j]);
    }
}

/* -off * (sum of activation bytes 0..15, 16..31) for every Q8_0 block of
 * n_tok rows: what starts each half's integer sum. */
static void activation_offsets(enum pkind k, const uint8_t *x, size_t xs, int64_t n_tok,
                               int64_t nb, int32_t *out)
{
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t b = 0; b < nb; b++) {
            const int8_t *q = (const int8_t *)(x + t * xs + b * 34 + 2);
            int32_t lo = 0, hi = 0;
            for (int i = 0; i < 16; i++) {
                lo += q[i];
                hi += q[16 + i];
            }
            out[(t * nb + b) * 2] = -woff[k] * lo;
            out[(t * nb + b) * 2 + 1] = -woff[k] * hi;
        }
}

VINLINE uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* One panel against T tokens (T a constant after inlining): y[t * ys + i]
 * for rows i < nr.  Lane i of lo[t] (hi[t]) is row i's sum over elements
 * 0..15 (16..31) of each block, its integer sum times d_w d_x fused in.
 * The weights come packed (panel), or when rows is not NULL straight from
 * the file's rows, transposed in registers (decode: a panel would be used
 * once). */
VINLINE void panel_tile(enum pkind k, int64_t nb, const uint8_t *panel,
                        const uint8_t *const *rows, __m512i roff, const uint8_t *x, size_t xs,
                        const int32_t *xoff, float *y, int64_t ys, int nr, const int T)
{
    __m512 lo[TILE_TOKS], hi[TILE_TOKS];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        lo[t] = hi[t] = _mm512_setzero_ps();
    const __m512i nib = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        __m512i w[8]; /* w[g]: elements 4g..4g+3 of the 16 rows */
        __m512 dw;
        if (rows) {
            if ((b & 3) == 0) /* a cache line holds 2-4 blocks of a row */
#pragma GCC unroll 16
                for (int i = 0; i < PANEL_ROWS; i++)
                    _mm_prefetch((const char *)rows[i] + (b + PREFETCH_BLOCKS) * wsize[k],
                                 _MM_HINT_T0);
            dw = block_from_rows(k, rows, roff, b, w);
        } else {
            const uint8_t *pb = panel + b * pbytes[k];
            dw = _mm512_load_ps(pb);
#pragma GCC unroll 8
            for (int g = 0; g < ngroups[k]; g++)
                w[g] = _mm512_load_si512(pb + 64 + 64 * g);
        }
        if (k == P_Q4_0) {
#pragma GCC unroll 4
            for (int g = 3; g >= 0; g--) {
                w[4 + g] = _mm512_and_si512(_mm512_srli_epi16(w[g], 4), nib);
                w[g] = _mm512_and_si512(w[g], nib);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *xb = x + t * xs + b * 34;
            const int32_t *off = xoff + (t * nb + b) * 2;
            __m512i il = _mm512_set1_epi32(off[0]), ih = _mm512_set1_epi32(off[1]);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                il = _mm512_dpbusd_epi32(il, w[g], _mm512_set1_epi32((int)load_u32(xb + 2 + 4 * g)));
                ih = _mm512_dpbusd_epi32(ih, w[4 + g],
                                         _mm512_set1_epi32((int)load_u32(xb + 18 + 4 * g)));
            }
            const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(load_u32(xb) & 0xFFFF)));
            lo[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(il), scale, lo[t]);
            hi[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ih), scale, hi[t]);
        }
    }
    const __mmask16 keep = (__mmask16)((1u << nr) - 1);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + t * ys, keep, _mm512_add_ps(lo[t], hi[t]));
}

#define PANEL_TILE_FN(K, T)                                                                   \
    static VNNI void panel_##K##_##T(int64_t nb, const uint8_t *panel, const uint8_t *x,     \
                                     size_t xs, const int32_t *xoff, float *y, int64_t ys,   \
                                     int nr)                                                 \
    {                                                                                         \
        panel_tile(K, nb, panel, NULL, _mm512_setzero_si512(), x, xs, xoff, y, ys, nr, T);    \
    }
typedef void (*panel_tile_fn)(int64_t nb, const uint8_t *panel, const uint8_t *x, size_t xs,
                              const int32_t *xoff, float *y, int64_t ys, int nr);
PANEL_TILE_FN(P_Q4_0, 1)
PANEL_TILE_FN(P_Q4_0, 2)
PANEL_TILE_FN(P_Q4_0, 3)
PANEL_TILE_FN(P_Q4_0, 4)
PANEL_TILE_FN(P_Q8_0, 1)
PANEL_TILE_FN(P_Q8_0, 2)
PANEL_TILE_FN(P_Q8_0, 3)
PANEL_TILE_FN(P_Q8_0, 4)
static const panel_tile_fn panel_tiles[2][TILE_TOKS] = {
    {panel_P_Q4_0_1, panel_P_Q4_0_2, panel_P_Q4_0_3, panel_P_Q4_0_4},
    {panel_P_Q8_0_1, panel_P_Q8_0_2, panel_P_Q8_0_3, panel_P_Q8_0_4},
};

static VNNI void pack_q4_0(const uint8_t *w, size_t ws, int nr, int64_t nb, uint8_t *panel)
{
    pack_panel(P_Q4_0, w, ws, nr, nb, panel);
}

static VNNI void pack_q8_0(const uint8_t *w, size_t ws, int nr, int64_t nb, uint8_t *panel)
{
    pack_panel(P_Q8_0, w, ws, nr, nb, panel);
}

/* One token against nr (<= 16) rows starting at w, from the file's rows. */
static VNNI void decode_q4_0(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *x,
                             const int32_t *xoff, float *y)
{
    const uint8_t *rows[PANEL_ROWS];
    const __m512i roff = panel_row_ptrs(w, ws, nr, rows);
    panel_tile(P_Q4_0, nb, NULL, rows, roff, x, 0, xoff, y, 0, nr, 1);
}

static VNNI void decode_q8_0(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *x,
                             const int32_t *xoff, float *y)
{
    const uint8_t *rows[PANEL_ROWS];
    const __m512i roff = panel_row_ptrs(w, ws, nr, rows);
    panel_tile(P_Q8_0, nb, NULL, rows, roff, x, 0, xoff, y, 0, nr, 1);
}

/* Rows [r0, r1) for all tokens; returns -1 (nothing written) if its
 * buffers cannot be had, and the caller takes the tile path. */
static int panel_rows(enum pkind k, const void *vw, size_t ws, int64_t cols, int64_t r0,
                      int64_t r1, const void *vx, size_t xs, int64_t n_tok, float *y,
                      int64_t ys)
{
    const uint8_t *W = vw, *x = vx;
    const int64_t nb = cols / 32;
    if (ws > INT32_MAX / PANEL_ROWS) /* the rows' offsets are int32 */
        return -1;
    /* one token: no panel, the rows are read where they lie */
    uint8_t *panel = n_tok == 1 ? NULL
                                : aligned_alloc(64, (size_t)(nb * pbytes[k] + 63) / 64 * 64);
    int32_t *xoff = malloc((size_t)(n_tok * nb * 2) * sizeof *xoff);
    if ((n_tok > 1 && !panel) || !xoff) {
        free(panel);
        free(xoff);
        return -1;
    }
    activation_offsets(k, x, xs, n_tok, nb, xoff);
    if (n_tok == 1) {
        for (int64_t r = r0; r < r1; r += PANEL_ROWS) {
            const int nr = (int)(r1 - r < PANEL_ROWS ? r1 - r : PANEL_ROWS);
            (k == P_Q4_0 ? decode_q4_0 : decode_q8_0)(W + (size_t)r * ws, ws, nr, nb, x, xoff,
                                                      y + r);
        }
        free(xoff);
        return 0;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += PANEL_TOKS) {
        const int64_t t1 = t0 + PANEL_TOKS < n_tok ? t0 + PANEL_TOKS : n_tok;
        for (int64_t r = r0; r < r1; r += PANEL_ROWS) {
            const int nr = (int)(r1 - r < PANEL_ROWS ? r1 - r : PANEL_ROWS);
            (k == P_Q4_0 ? pack_q4_0 : pack_q8_0)(W + (size_t)r * ws, ws, nr, nb, panel);
            for (int64_t t = t0; t < t1; t += TILE_TOKS) {
                const int nt = (int)(t1 - t < TILE_TOKS ? t1 - t : TILE_TOKS);
                panel_tiles[k][nt - 1](nb, panel, x + (size_t)t * xs, xs, xoff + t * nb * 2,
                                       y + t * ys + r, ys, nr);
            }
        }
    }
    free(panel);
    free(xoff);
    return 0;
}

static int panel_q4_0(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1,
                      const void *x, size_t xs, int64_t n_tok, float *y, int64_t ys)
{
    return panel_rows(P_Q4_0, w, ws, cols, r0, r1, x, xs, n_tok, y, ys);
}

static int panel_q8_0(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1,
                      const void *x, size_t xs, int64_t n_tok, float *y, int64_t ys)
{
    return panel_rows(P_Q8_0, w, ws, cols, r0, r1, x, xs, n_tok, y, ys);
}

/* ---- Q4_K decode: 16 rows in lanes, each row's 8 lanes of ggml's order ----
 *
 * tile_q45k (dot_avx2.c) keeps 8 int32 lanes per row and token: lane k sums
 * s_j x (elements 32j+4k..32j+4k+3) over the 8 sub-blocks j, and each lane
 * has its own float accumulator, added in hsum8's order at the end.  Here
 * lane k of every row is one register (acc[k], the 16 rows side by side);
 * the 4-element group products come from vpmaddubsw against the activation
 * bytes broadcast, and vpdpwssd multiplies them by the rows' s_j (int16) and
 * adds them in: the same exact integers, the same float steps, its bits. */

/* The 16 rows' 6-bit scales and mins from their 12 bytes at +4 (ggml's
 * get_scale_min_k4 in four dword operations, as k4_scales_mins): bytes of
 * sc[0] are s_0..s_3, of sc[1] s_4..s_7; of mn[0] m_0..m_3, of mn[1]
 * m_4..m_7; row i in lane i. */
VINLINE void k4_scales16(const uint8_t *const rows[PANEL_ROWS], size_t o, __m512i sc[2],
                         __m512i mn[2])
{
    __m512i u[4]; /* dwords 0..2 of each row's scales (u[3]: qs, unused) */
    transpose16(rows, o + 4, u);
    const __m512i m3f = _mm512_set1_epi32(0x3f3f3f3f), m0f = _mm512_set1_epi32(0x0f0f0f0f),
                  m03 = _mm512_set1_epi32(0x03030303);
    sc[0] = _mm512_and_si512(u[0], m3f);
    sc[1] = _mm512_or_si512(_mm512_and_si512(u[2], m0f),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u[0], 6), m03), 4));
    mn[0] = _mm512_and_si512(u[1], m3f);
    mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u[2], 4), m0f),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u[1], 6), m03), 4));
}

/* Byte j (< 4) of each lane of v, as the int16 pair (b, b) for vpdpwssd. */
VINLINE __m512i byte_pair(__m512i v, const int j)
{
    const __m512i b = _mm512_and_si512(_mm512_srli_epi32(v, 8 * j), _mm512_set1_epi32(0xFF));
    return _mm512_or_si512(b, _mm512_slli_epi32(b, 16));
}

/* Bytes 2i and 2i+1 of each lane of v as the int16 pair (low, high). */
VINLINE __m512i bytes_pair(__m512i v, const int i)
{
    const __m512i w = _mm512_srli_epi32(v, 16 * i), ff = _mm512_set1_epi32(0xFF);
    return _mm512_or_si512(_mm512_and_si512(w, ff),
                           _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w, 8), ff), 16));
}

/* Each row's 8 lane accumulators (acc[k]: lane k of the 16 rows) summed in
 * hsum8's order: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). */
VINLINE __m512 sum_lanes8(const __m512 acc[8])
{
    return _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
        _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7])));
}

/* One token against nr (<= 16) Q4_K (q5 false) or Q5_K (q5 true, the fifth
 * bits from qh as tile_q45k takes them) rows starting at w: y[i], i < nr. */
VINLINE void decode_q45k(const bool q5, const uint8_t *w, size_t ws, int nr, int64_t nb,
                         const uint8_t *x, float *y)
{
    const uint8_t *rows[PANEL_ROWS];
    const __m512i ridx = panel_row_ptrs(w, ws, nr, rows);
    const size_t bsize = q5 ? sizeof(lm_block_q5_k) : sizeof(lm_block_q4_k);
    const size_t xsize = sizeof(lm_block_q8_k);
    const size_t qs_at = q5 ? offsetof(lm_block_q5_k, qs) : offsetof(lm_block_q4_k, qs);
    __m512 acc[8], summ = _mm512_setzero_ps();
    for (int k = 0; k < 8; k++)
        acc[k] = _mm512_setzero_ps();
    const __m512i nib = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * bsize;
        for (int i = 0; i < PANEL_ROWS; i++)
            _mm_prefetch((const char *)rows[i] + o + 2 * bsize, _MM_HINT_T0);
        const lm_block_q8_k *xb = (const lm_block_q8_k *)(x + b * xsize);
        /* d (low half) and dmin (high half) of each row */
        const __m512i dd = _mm512_i32gather_epi32(ridx, rows[0] + o, 1);
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
        const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
        __m512i sc[2], mn[2];
        k4_scales16(rows, o, sc, mn);
        /* imin = sum_j m_j (bsums[2j] + bsums[2j+1]), exact */
        __m512i imin = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const int p0 = xb->bsums[4 * i] + xb->bsums[4 * i + 1];
            const int p1 = xb->bsums[4 * i + 2] + xb->bsums[4 * i + 3];
            const int pair = (int)(((uint32_t)p1 << 16) | ((uint32_t)p0 & 0xFFFF));
            imin = _mm512_dpwssd_epi32(imin, bytes_pair(mn[i / 2], i % 2), _mm512_set1_epi32(pair));
        }
        __m512i sumi[8];
        for (int k = 0; k < 8; k++)
            sumi[k] = _mm512_setzero_si512();
        __m512i qh[8]; /* Q5_K: qh bytes 4k..4k+3 of each row, group k */
        if (q5) {
            transpose16(rows, o + offsetof(lm_block_q5_k, qh), qh);
            transpose16(rows, o + offsetof(lm_block_q5_k, qh) + 16, qh + 4);
        }
        const __m512i one = _mm512_set1_epi8(1);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            /* sub-blocks 2c (low nibbles) and 2c+1 (high) */
            const __m512i s_lo = byte_pair(sc[c / 2], (2 * c) % 4);
            const __m512i s_hi = byte_pair(sc[c / 2], (2 * c + 1) % 4);
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                __m512i g[4];
                transpose16(rows, o + qs_at + 32 * c + 16 * half, g);
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    const int k = 4 * half + q;
                    __m512i lo = _mm512_and_si512(g[q], nib);
                    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(g[q], 4), nib);
                    if (q5) { /* bit 2c of qh[l] tops sub-block 2c, bit 2c+1 the next */
                        lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[k], 2 * c), one), 4));
                        hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[k], 2 * c + 1), one), 4));
                    }
                    const __m512i a0 = _mm512_set1_epi32((int)load_u32((const uint8_t *)xb->qs + 64 * c + 4 * k));
                    const __m512i a1 = _mm512_set1_epi32((int)load_u32((const uint8_t *)xb->qs + 64 * c + 32 + 4 * k));
                    sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(lo, a0), s_lo);
                    sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(hi, a1), s_hi);
                }
            }
        }
        const __m512 xd = _mm512_set1_ps(xb->d);
        const __m512 scale = _mm512_mul_ps(xd, dw);
        for (int k = 0; k < 8; k++)
            acc[k] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[k]), acc[k]);
        /* tile_q45k's summ = fmaf(d_x * dmin, (float)imin, summ) */
        summ = _mm512_fmadd_ps(_mm512_mul_ps(xd, dmin), _mm512_cvtepi32_ps(imin), summ);
    }
    const __m512 s = sum_lanes8(acc);
    _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), _mm512_sub_ps(s, summ));
}

static VNNI void decode_q4_k(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *x,
                             float *y)
{
    decode_q45k(false, w, ws, nr, nb, x, y);
}

static VNNI void decode_q5_k(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *x,
                             float *y)
{
    decode_q45k(true, w, ws, nr, nb, x, y);
}

typedef void (*decode_k_fn)(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *x,
                            float *y);

/* The k-quants: decode only (rows [r0, r1) of one token), 16 rows a call;
 * prompts take the tiles. */
static int decode_rows_k(decode_k_fn decode, const void *vw, size_t ws, int64_t cols,
                         int64_t r0, int64_t r1, const void *x, int64_t n_tok, float *y)
{
    if (n_tok != 1 || ws > INT32_MAX / PANEL_ROWS) /* the rows' offsets are int32 */
        return -1;
    const uint8_t *W = vw;
    for (int64_t r = r0; r < r1; r += PANEL_ROWS) {
        const int nr = (int)(r1 - r < PANEL_ROWS ? r1 - r : PANEL_ROWS);
        decode(W + (size_t)r * ws, ws, nr, cols / LM_QK_K, x, y + r);
    }
    return 0;
}

static int panel_q4_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1,
                      const void *x, size_t xs, int64_t n_tok, float *y, int64_t ys)
{
    (void)xs;
    (void)ys;
    return decode_rows_k(decode_q4_k, w, ws, cols, r0, r1, x, n_tok, y);
}

static int panel_q5_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1,
                      const void *x, size_t xs, int64_t n_tok, float *y, int64_t ys)
{
    (void)xs;
    (void)ys;
    return decode_rows_k(decode_q5_k, w, ws, cols, r0, r1, x, n_tok, y);
}

/* ---- Q6_K decode: 16 rows in lanes, each row's 8 lanes of tile_q6k ------ */

/* Signed byte j (< 4) of each lane of v as the int16 pair (b, b). */
VINLINE __m512i sbyte_pair(__m512i v, const int j)
{
    const __m512i b = _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * j), 24);
    return _mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi32(0xFFFF)),
                           _mm512_slli_epi32(b, 16));
}

/* One token against nr (<= 16) Q6_K rows starting at w: y[i] for i < nr.
 * tile_q6k's lanes: lane k of row r sums, over the 16 scales' groups,
 * scale x (levels 0..63 times activations) for the bytes 4k..4k+3 of each
 * 32-level vector, the low half of a vector (k < 4) under scale 8h+2j, the
 * high half under 8h+2j+1; then -32 sum_g scale_g bsums_g into lane 0. */
static VNNI void decode_q6_k(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *x,
                             float *y)
{
    const uint8_t *rows[PANEL_ROWS];
    const __m512i ridx = panel_row_ptrs(w, ws, nr, rows);
    const size_t bsize = sizeof(lm_block_q6_k), xsize = sizeof(lm_block_q8_k);
    const size_t at_ql = offsetof(lm_block_q6_k, ql), at_qh = offsetof(lm_block_q6_k, qh),
                 at_sc = offsetof(lm_block_q6_k, scales), at_d = offsetof(lm_block_q6_k, d);
    __m512 acc[8];
    for (int k = 0; k < 8; k++)
        acc[k] = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi8(0x0F), three = _mm512_set1_epi8(3);
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * bsize;
        for (int i = 0; i < PANEL_ROWS; i++) {
            _mm_prefetch((const char *)rows[i] + o + 2 * bsize, _MM_HINT_T0);
            _mm_prefetch((const char *)rows[i] + o + 2 * bsize + 128, _MM_HINT_T0);
        }
        const lm_block_q8_k *xb = (const lm_block_q8_k *)(x + b * xsize);
        /* d: the high half of the dword before it (scales 14, 15 and d, all
         * inside the block) */
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
            _mm512_srli_epi32(_mm512_i32gather_epi32(ridx, rows[0] + o + at_d - 2, 1), 16)));
        __m512i sc[4]; /* scales 4m..4m+3 of each row, signed bytes */
        transpose16(rows, o + at_sc, sc);
        __m512i sumi[8];
        for (int k = 0; k < 8; k++)
            sumi[k] = _mm512_setzero_si512();
        /* sum_g scale_g bsums_g, exact */
        __m512i ioff = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++)
            ioff = _mm512_dpwssd_epi32(ioff, sbyte_pair(sc[g / 4], g % 4),
                                       _mm512_set1_epi32((int)(uint16_t)xb->bsums[g]));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++)
#pragma GCC unroll 2
            for (int part = 0; part < 2; part++) { /* bytes 0..15 (k < 4), 16..31 */
                __m512i l0[4], l1[4], hb[4];
                transpose16(rows, o + at_ql + 64 * h + 16 * part, l0);
                transpose16(rows, o + at_ql + 64 * h + 32 + 16 * part, l1);
                transpose16(rows, o + at_qh + 32 * h + 16 * part, hb);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    const int idx = 8 * h + 2 * j + part;
                    const __m512i sp = sbyte_pair(sc[idx / 4], idx % 4);
#pragma GCC unroll 4
                    for (int q = 0; q < 4; q++) {
                        const int k = 4 * part + q;
                        const __m512i l = j % 2 ? l1[q] : l0[q];
                        const __m512i nibble = j < 2 ? _mm512_and_si512(l, lo4)
                                                     : _mm512_and_si512(_mm512_srli_epi16(l, 4), lo4);
                        const __m512i top = _mm512_and_si512(_mm512_srli_epi16(hb[q], 2 * j), three);
                        const __m512i lv = _mm512_or_si512(nibble, _mm512_slli_epi16(top, 4));
                        const __m512i a = _mm512_set1_epi32(
                            (int)load_u32((const uint8_t *)xb->qs + 128 * h + 32 * j + 4 * k));
                        sumi[k] = _mm512_dpwssd_epi32(sumi[k], _mm512_maddubs_epi16(lv, a), sp);
                    }
                }
            }
        sumi[0] = _mm512_sub_epi32(sumi[0], _mm512_slli_epi32(ioff, 5));
        const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(xb->d));
        for (int k = 0; k < 8; k++)
            acc[k] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sumi[k]), acc[k]);
    }
    const __m512 s = sum_lanes8(acc);
    _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), s);
}

static int panel_q6_k(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1,
                      const void *x, size_t xs, int64_t n_tok, float *y, int64_t ys)
{
    (void)xs;
    (void)ys;
    return decode_rows_k(decode_q6_k, w, ws, cols, r0, r1, x, n_tok, y);
}

/* From how many tokens each wins, measured on a 2048 x 2048 product, 2
 * threads, Intel Xeon: Q4_0 1.3x the tiles at 2 tokens, 1.7x at 4; Q8_0,
 * whose panels are twice as large to pack, 0.85x at 2, even at 3, 1.15x
 * at 4. */
const lm_panel lm_panel_avx512vnni[LM_TYPE_COUNT] = {
    [LM_TYPE_Q4_0] = {panel_q4_0, 2},
    [LM_TYPE_Q8_0] = {panel_q8_0, 4},
    [LM_TYPE_Q4_K] = {panel_q4_k, INT_MAX}, /* decode only */
    [LM_TYPE_Q5_K] = {panel_q5_k, INT_MAX},
    [LM_TYPE_Q6_K] = {panel_q6_k, INT_MAX},
};

#else /* the compiler cannot build them: every type takes the AVX2 tiles */

const lm_panel lm_panel_avx512vnni[LM_TYPE_COUNT];

#endif
