/* AVX-512 VNNI kernels for Q4_0 and Q8_0: a panel GEMM (prompts and
 * batches) and a 16-row decode, each giving the AVX2 kernels' bits
 * (dot_avx2.c's tile32); the k-quants' are in dot_avx512_kquant.c, and the
 * table at the end chooses among them.
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

#include "avx512_inline.h"

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

/* From how many tokens each wins, measured on a 2048 x 2048 product, 2
 * threads, Intel Xeon: Q4_0 1.3x the tiles at 2 tokens, 1.7x at 4; Q8_0,
 * whose panels are twice as large to pack, 0.85x at 2, even at 3, 1.15x
 * at 4; Q4_K 1.18x at 2, Q5_K 1.12x, Q6_K 0.99x at 2, 1.46x at 3. */
const lm_panel lm_panel_avx512vnni[LM_TYPE_COUNT] = {
    [LM_TYPE_Q4_0] = {panel_q4_0, 2},
    [LM_TYPE_Q8_0] = {panel_q8_0, 4},
    [LM_TYPE_Q4_K] = {lm_vnni_q4_k, 2},
    [LM_TYPE_Q5_K] = {lm_vnni_q5_k, 2},
    [LM_TYPE_Q6_K] = {lm_vnni_q6_k, 3},
};

#else /* the compiler cannot build them: every type takes the AVX2 tiles */

const lm_panel lm_panel_avx512vnni[LM_TYPE_COUNT];

#endif
