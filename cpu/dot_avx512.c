/* AVX-512 VNNI kernels for the 32-element block types (Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0): a panel GEMM (prompts and batches) and a 16-row decode
 * (Q8_0 decodes on the AVX2 tiles instead, see the table), each giving the
 * AVX2 kernels' bits (dot_avx2.c's tile32 and tile32_lanes); the k-quants'
 * are in dot_avx512_kquant.c, and the table at the end chooses among them.
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
 * Why the bits are the AVX2 tiles': the integer sums are exact, and they
 * are taken over the same parts of a block, the halves (elements 0..15 and
 * 16..31) where tile32 folds them (Q4_0, Q5_1, Q8_0), the 8 groups of 4
 * elements where tile32_lanes keeps ggml's lanes (Q4_1, Q5_0); each part is
 * scaled by the same product d_w d_x and fused into its own accumulator,
 * and the parts are added at the end in the tile's order, then the affine
 * types' m_w s_x, summed on the side.  cl/matvec.cl takes the same steps.
 * vpdpbusd multiplies unsigned by signed bytes, so signed weights are
 * stored with an offset (Q4_0's nibbles 0..15 as they are, Q5_0's 5-bit
 * levels, Q8_0's bytes + 128) and the offset times the part's activation
 * sum, computed once per token, starts each sum.
 *
 * Decode (one token) reads the same groups straight from the file's rows,
 * 16 rows at a time transposed in registers (a packed panel would be used
 * once): on 2 cores of an Intel Xeon a 1B decode is bound by the cores,
 * not by RAM, and this is 1.23x (Q4_0) and 1.25x (Q8_0) the AVX2 tiles. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "x86_inline.h"

#ifdef LM_HAVE_AVX512VNNI

#include "avx512_inline.h"

/* Tokens per inner tile: in the folded order 4 x 2 accumulators and 8
 * weight registers, of the 32; in ggml's lane order 2 x 8 accumulators. */
#define TILE_TOKS 4
#define LANES_TILE_TOKS 2

enum pkind { P_Q4_0, P_Q8_0, P_Q5_1, P_Q4_1, P_Q5_0 };

/* Where a weight block's fields lie in the file: its size, its quants, and
 * Q5_0/Q5_1's 32 fifth bits (0: none).  d is at 0, and m (the _1 types,
 * affine) right after it. */
static const int wsize[] = {18, 34, 24, 20, 22};
static const int qs_at[] = {2, 2, 8, 4, 6};
static const int qh_at[] = {0, 0, 4, 0, 2};
static const bool affine[] = {false, false, true, true, false};
/* The float order each type keeps (dot_avx2.c): tile32's two folded halves
 * (Q4_0, Q8_0, Q5_1) or tile32_lanes' 8 lanes of 4 elements (Q4_1, Q5_0). */
static const bool lanes[] = {false, false, false, true, true};
/* The activation block each meets: Q8_0 (34 bytes, quants at 2) or Q8_1
 * (36 bytes, its s at 2, quants at 4). */
static const int xsize[] = {34, 34, 36, 36, 34};
static const int xq_at[] = {2, 2, 4, 4, 2};
/* A packed block: 16 scales d as f32, the 16 m as f32 (affine types), then
 * ngroups 4-byte groups of 16 rows: 4 groups of nibble pairs (Q4_0, Q4_1:
 * the low nibbles elements 4g..4g+3, the high ones 16+4g..) or 8 groups of
 * bytes, elements 4g..4g+3 (Q8_0's + 128, the 5-bit types' levels). */
static const int ngroups[] = {4, 8, 8, 4, 8};
/* The weights' offset: stored value = w + off, so sum w x = sum (w+off) x -
 * off sum x (the _1 types' levels are unsigned already). */
static const int woff[] = {8, 128, 0, 0, 16};

/* Where a packed block's groups start (after d, and m for the affine
 * types), and its size. */
static inline int groups_at(const enum pkind k)
{
    return affine[k] ? 128 : 64;
}

static inline int pbytes(const enum pkind k)
{
    return groups_at(k) + 64 * ngroups[k];
}

/* Group g (< 8: elements 4g..4g+3) of 16 rows' levels 0..15 (nib) with
 * their fifth bits added from qh (each row's 32 bits in its lane): byte b
 * of a row's group takes bit 4g + b. */
VINLINE __m512i add_fifth_bits(__m512i nib, __m512i qh, const int g)
{
    /* each dword's 4 bytes <- the qh byte holding bits 4g..4g+3 */
    const char q = (char)(g / 2);
    const __m512i spread = _mm512_shuffle_epi8(
        qh, _mm512_set4_epi32(0x0C0C0C0C + q * 0x01010101, 0x08080808 + q * 0x01010101,
                              0x04040404 + q * 0x01010101, q * 0x01010101));
    const __m512i bit = _mm512_set1_epi32(g % 2 ? (int)0x80402010 : 0x08040201);
    return _mm512_mask_add_epi8(nib, _mm512_test_epi8_mask(spread, bit), nib,
                                _mm512_set1_epi8(16));
}

/* Block b's 16 scales d (returned), m (*mw, affine types) and weight
 * groups, read from the file's rows (row i at rows[i]): g[j] for j <
 * ngroups, as a packed block holds them. */
VINLINE __m512 block_from_rows(const enum pkind k, const uint8_t *const rows[PANEL_ROWS],
                               int64_t b, __m512i g[8], __m512 *mw)
{
    const size_t o = (size_t)b * wsize[k];
    /* the 16 rows' d (low halves) and m (high halves) */
    const __m512i dm = dwords16(rows, o);
    if (affine[k])
        *mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
    transpose16(rows, o + qs_at[k], g);
    if (k == P_Q8_0) {
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        transpose16(rows, o + 18, g + 4);
        for (int j = 0; j < 8; j++)
            g[j] = _mm512_xor_si512(g[j], flip);
    } else if (qh_at[k]) {
        const __m512i qh = dwords16(rows, o + qh_at[k]);
        const __m512i nib = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
        for (int j = 3; j >= 0; j--) {
            g[4 + j] = add_fifth_bits(_mm512_and_si512(_mm512_srli_epi16(g[j], 4), nib), qh, 4 + j);
            g[j] = add_fifth_bits(_mm512_and_si512(g[j], nib), qh, j);
        }
    }
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
}

/* Packs nr (<= 16) rows starting at w into a panel of nb blocks. */
VINLINE void pack_panel(const enum pkind k, const uint8_t *w, size_t ws, int nr, int64_t nb,
                        uint8_t *panel)
{
    const uint8_t *rows[PANEL_ROWS];
    panel_row_ptrs(w, ws, nr, rows);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *pb = panel + b * pbytes(k);
        __m512i g[8];
        __m512 mw;
        _mm512_store_ps(pb, block_from_rows(k, rows, b, g, &mw));
        if (affine[k])
            _mm512_store_ps(pb + 64, mw);
        uint8_t *pg = pb + groups_at(k);
        for (int j = 0; j < ngroups[k]; j++)
            _mm512_store_si512(pg + 64 * j, g[j]);
    }
}

/* What starts each integer sum of n_tok activation rows: -off times the
 * sum of the activation bytes it covers, per block 2 sums (the halves,
 * elements 0..15 and 16..31) in the folded order, 8 (the 4-element groups)
 * in the lane order. */
static void activation_offsets(const enum pkind k, const uint8_t *x, size_t xs, int64_t n_tok,
                               int64_t nb, int32_t *out)
{
    const int nsum = lanes[k] ? 8 : 2, len = 32 / nsum;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t b = 0; b < nb; b++) {
            const int8_t *q = (const int8_t *)(x + t * xs + b * xsize[k] + xq_at[k]);
            for (int s = 0; s < nsum; s++) {
                int32_t sum = 0;
                for (int i = 0; i < len; i++)
                    sum += q[s * len + i];
                out[(t * nb + b) * nsum + s] = -woff[k] * sum;
            }
        }
}

/* One panel against T tokens (T a constant after inlining): y[t * ys + i]
 * for rows i < nr.  The weights come packed (panel), or when rows is not
 * NULL straight from the file's rows, transposed in registers (decode: a
 * panel would be used once).
 *
 * Folded order (tile32): lane i of lo[t] (hi[t]) is row i's sum over
 * elements 0..15 (16..31) of each block, its integer sum times d_w d_x
 * fused in; the halves are added at the end, then the affine sum.
 * Lane order (tile32_lanes): acc[t][j] is lane j of ggml's 8, the sums of
 * elements 4j..4j+3, each block's times d_w d_x fused in, summed in
 * hsum8's order at the end, then the affine sum.  The affine types' sum
 * m_w s_x is fused into its own accumulator block by block. */
VINLINE void panel_tile(const enum pkind k, int64_t nb, const uint8_t *panel,
                        const uint8_t *const *rows, const uint8_t *ahead,
                        size_t ahead_len, const uint8_t *x, size_t xs,
                        const int32_t *xoff, float *y, int64_t ys, int nr, const int T)
{
    __m512 lo[TILE_TOKS], hi[TILE_TOKS], acc[TILE_TOKS][8], summ[TILE_TOKS];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        lo[t] = hi[t] = summ[t] = _mm512_setzero_ps();
        if (lanes[k])
            for (int j = 0; j < 8; j++)
                acc[t][j] = _mm512_setzero_ps();
    }
    const __m512i nib = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        __m512i w[8]; /* w[g]: elements 4g..4g+3 of the 16 rows */
        __m512 dw, mw = _mm512_setzero_ps();
        if (rows) {
            prefetch_ahead(ahead, ahead_len, PANEL_ROWS * (size_t)wsize[k], b);
            dw = block_from_rows(k, rows, b, w, &mw);
        } else {
            const uint8_t *pb = panel + b * pbytes(k);
            dw = _mm512_load_ps(pb);
            if (affine[k])
                mw = _mm512_load_ps(pb + 64);
            const uint8_t *pg = pb + groups_at(k);
#pragma GCC unroll 8
            for (int g = 0; g < ngroups[k]; g++)
                w[g] = _mm512_load_si512(pg + 64 * g);
        }
        if (ngroups[k] == 4) { /* nibble pairs: low nibbles, then high */
#pragma GCC unroll 4
            for (int g = 3; g >= 0; g--) {
                w[4 + g] = _mm512_and_si512(_mm512_srli_epi16(w[g], 4), nib);
                w[g] = _mm512_and_si512(w[g], nib);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *xb = x + t * xs + b * xsize[k];
            const uint8_t *xq = xb + xq_at[k];
            const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(load_u32(xb) & 0xFFFF)));
            if (lanes[k]) {
                const int32_t *off = xoff ? xoff + (t * nb + b) * 8 : NULL;
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++) {
                    const __m512i s = _mm512_dpbusd_epi32(
                        off ? _mm512_set1_epi32(off[g]) : _mm512_setzero_si512(), w[g],
                        _mm512_set1_epi32((int)load_u32(xq + 4 * g)));
                    acc[t][g] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(s), acc[t][g]);
                }
            } else {
                const int32_t *off = xoff ? xoff + (t * nb + b) * 2 : NULL;
                __m512i il = off ? _mm512_set1_epi32(off[0]) : _mm512_setzero_si512();
                __m512i ih = off ? _mm512_set1_epi32(off[1]) : _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++) {
                    il = _mm512_dpbusd_epi32(il, w[g], _mm512_set1_epi32((int)load_u32(xq + 4 * g)));
                    ih = _mm512_dpbusd_epi32(ih, w[4 + g],
                                             _mm512_set1_epi32((int)load_u32(xq + 16 + 4 * g)));
                }
                lo[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(il), scale, lo[t]);
                hi[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ih), scale, hi[t]);
            }
            if (affine[k]) /* m_w s_x, the s of the Q8_1 block */
                summ[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(_cvtsh_ss(load_u32(xb) >> 16)), summ[t]);
        }
    }
    const __mmask16 keep = (__mmask16)((1u << nr) - 1);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        __m512 s = lanes[k] ? sum_lanes8(acc[t]) : _mm512_add_ps(lo[t], hi[t]);
        if (affine[k])
            s = _mm512_add_ps(s, summ[t]);
        _mm512_mask_storeu_ps(y + t * ys, keep, s);
    }
}

typedef void (*panel_tile_fn)(int64_t nb, const uint8_t *panel, const uint8_t *x, size_t xs,
                              const int32_t *xoff, float *y, int64_t ys, int nr);
typedef void (*pack_fn)(const uint8_t *w, size_t ws, int nr, int64_t nb, uint8_t *panel);
typedef void (*decode_fn)(const uint8_t *w, size_t ws, int nr, int64_t nb, const uint8_t *ahead,
                          size_t ahead_len, const uint8_t *x, const int32_t *xoff, float *y);

/* One type's kernels: its packer, its panel tiles for 1..TILE_TOKS tokens
 * (lane order: 1..LANES_TILE_TOKS) and its decoder, which reads the rows
 * unpacked (NULL: the type decodes on the AVX2 tiles, decode_on_tiles in
 * the table at the end). */
typedef struct {
    pack_fn pack;
    panel_tile_fn tiles[TILE_TOKS];
    decode_fn decode;
} panel_kernels;

#define PANEL_TILE_FN(K, T)                                                                   \
    static VNNI void panel_##K##_##T(int64_t nb, const uint8_t *panel, const uint8_t *x,     \
                                     size_t xs, const int32_t *xoff, float *y, int64_t ys,   \
                                     int nr)                                                 \
    {                                                                                         \
        panel_tile(K, nb, panel, NULL, NULL, 0, x, xs, xoff, y, ys, nr, T);                   \
    }
#define PACK_FN(K)                                                                            \
    static VNNI void pack_##K(const uint8_t *w, size_t ws, int nr, int64_t nb, uint8_t *panel) \
    {                                                                                         \
        pack_panel(K, w, ws, nr, nb, panel);                                                  \
    }
#define DECODE_FN(K)                                                                          \
    static VNNI void decode_##K(const uint8_t *w, size_t ws, int nr, int64_t nb,             \
                                const uint8_t *ahead, size_t ahead_len, const uint8_t *x,     \
                                const int32_t *xoff, float *y)                                \
    {                                                                                         \
        const uint8_t *rows[PANEL_ROWS];                                                      \
        panel_row_ptrs(w, ws, nr, rows);                                                      \
        panel_tile(K, nb, NULL, rows, ahead, ahead_len, x, 0, xoff, y, 0, nr, 1);             \
    }
#define FOLDED_KERNELS(K, DECODE)                                                             \
    PANEL_TILE_FN(K, 1)                                                                       \
    PANEL_TILE_FN(K, 2)                                                                       \
    PANEL_TILE_FN(K, 3)                                                                       \
    PANEL_TILE_FN(K, 4)                                                                       \
    PACK_FN(K)                                                                                \
    static const panel_kernels kernels_##K = {                                                \
        pack_##K, {panel_##K##_1, panel_##K##_2, panel_##K##_3, panel_##K##_4}, DECODE};
#define LANE_KERNELS(K)                                                                       \
    PANEL_TILE_FN(K, 1)                                                                       \
    PANEL_TILE_FN(K, 2)                                                                       \
    PACK_FN(K)                                                                                \
    DECODE_FN(K)                                                                              \
    static const panel_kernels kernels_##K = {pack_##K, {panel_##K##_1, panel_##K##_2},       \
                                              decode_##K};
DECODE_FN(P_Q4_0)
DECODE_FN(P_Q5_1)
FOLDED_KERNELS(P_Q4_0, decode_P_Q4_0)
FOLDED_KERNELS(P_Q8_0, NULL)
FOLDED_KERNELS(P_Q5_1, decode_P_Q5_1)
LANE_KERNELS(P_Q4_1)
LANE_KERNELS(P_Q5_0)

/* Rows [r0, r1) for all tokens; returns -1 (nothing written) if its
 * buffers cannot be had, or for one token if the type has no decoder, and
 * the caller takes the tile path. */
static int panel_rows(const enum pkind k, const panel_kernels *pk, const void *vw, size_t ws,
                      int64_t cols, int64_t r0, int64_t r1, const void *vx, size_t xs,
                      int64_t n_tok, float *y, int64_t ys)
{
    const uint8_t *W = vw, *x = vx;
    const int64_t nb = cols / 32;
    const int nsum = lanes[k] ? 8 : 2, tile_toks = lanes[k] ? LANES_TILE_TOKS : TILE_TOKS;
    if (n_tok == 1 && !pk->decode)
        return -1;
    /* one token: no panel, the rows are read where they lie */
    uint8_t *panel = n_tok == 1 ? NULL
                                : aligned_alloc(64, (size_t)(nb * pbytes(k) + 63) / 64 * 64);
    int32_t *xoff = woff[k] ? malloc((size_t)(n_tok * nb * nsum) * sizeof *xoff) : NULL;
    if ((n_tok > 1 && !panel) || (woff[k] && !xoff)) {
        free(panel);
        free(xoff);
        return -1;
    }
    if (xoff)
        activation_offsets(k, x, xs, n_tok, nb, xoff);
    if (n_tok == 1) {
        for (int64_t r = r0; r < r1; r += PANEL_ROWS) {
            const int nr = (int)(r1 - r < PANEL_ROWS ? r1 - r : PANEL_ROWS);
            const uint8_t *next = W + (size_t)(r + nr) * ws; /* (the run's next panel) */
            pk->decode(W + (size_t)r * ws, ws, nr, nb, next, (size_t)(r1 - r - nr) * ws, x, xoff,
                       y + r);
        }
        free(xoff);
        return 0;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += PANEL_TOKS) {
        const int64_t t1 = t0 + PANEL_TOKS < n_tok ? t0 + PANEL_TOKS : n_tok;
        for (int64_t r = r0; r < r1; r += PANEL_ROWS) {
            const int nr = (int)(r1 - r < PANEL_ROWS ? r1 - r : PANEL_ROWS);
            pk->pack(W + (size_t)r * ws, ws, nr, nb, panel);
            for (int64_t t = t0; t < t1; t += tile_toks) {
                const int nt = (int)(t1 - t < tile_toks ? t1 - t : tile_toks);
                pk->tiles[nt - 1](nb, panel, x + (size_t)t * xs, xs,
                                  xoff ? xoff + t * nb * nsum : NULL, y + t * ys + r, ys, nr);
            }
        }
    }
    free(panel);
    free(xoff);
    return 0;
}

#define PANEL_FN(name, K)                                                                     \
    static int name(const void *w, size_t ws, int64_t cols, int64_t r0, int64_t r1,          \
                    const void *x, size_t xs, int64_t n_tok, float *y, int64_t ys)            \
    {                                                                                         \
        return panel_rows(K, &kernels_##K, w, ws, cols, r0, r1, x, xs, n_tok, y, ys);         \
    }
PANEL_FN(panel_q4_0, P_Q4_0)
PANEL_FN(panel_q8_0, P_Q8_0)
PANEL_FN(panel_q5_1, P_Q5_1)
PANEL_FN(panel_q4_1, P_Q4_1)
PANEL_FN(panel_q5_0, P_Q5_0)

/* From how many tokens each wins, measured on a 2048 x 2048 product, 2
 * threads, Intel Xeon: Q4_0 1.3x the tiles at 2 tokens, 1.7x at 4; Q8_0,
 * whose panels are twice as large to pack, 0.85x at 2, even at 3, 1.15x
 * at 4; Q4_1 1.5x at 2, Q5_0 1.48x, Q5_1 1.33x; Q4_K 1.18x at 2, Q5_K
 * 1.12x, Q6_K 0.99x at 2, 1.46x at 3. */
const lm_panel lm_panel_avx512vnni[LM_TYPE_COUNT] = {
    [LM_TYPE_Q4_0] = {panel_q4_0, 2, false},
    [LM_TYPE_Q4_1] = {panel_q4_1, 2, false},
    [LM_TYPE_Q5_0] = {panel_q5_0, 2, false},
    [LM_TYPE_Q5_1] = {panel_q5_1, 2, false},
    /* Q8_0 decodes on the AVX2 tiles: 4 rows of 34-byte blocks read as
     * they lie beat the 16-row transposes.  bench/matmul_bench.c (8192 x
     * 2048 from RAM; 1024 x 2048 in cache): AMD Zen 5, one thread, 35 vs 31
     * and 41 vs 31 GB/s; Intel Xeon (family 6, model 207), two, 18.8 vs
     * 17.5 and 41 vs 29.  A 1B decode on Zen 5 ran 51 tokens/s against 39. */
    [LM_TYPE_Q8_0] = {panel_q8_0, 4, true},
    [LM_TYPE_Q4_K] = {lm_vnni_q4_k, 2, false},
    [LM_TYPE_Q5_K] = {lm_vnni_q5_k, 2, false},
    [LM_TYPE_Q6_K] = {lm_vnni_q6_k, 3, false},
};

#else /* the compiler cannot build them: every type takes the AVX2 tiles */

const lm_panel lm_panel_avx512vnni[LM_TYPE_COUNT];

#endif
