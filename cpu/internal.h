/* What the files behind kernels.h share: the activation quantizers, the
 * block dot products and the tile kernels, each kept in one table per
 * instruction set so matmul.c picks a row of a table instead of switching
 * on the type in many places. */
#ifndef LM_CPU_INTERNAL_H
#define LM_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* Largest tile a tile kernel is asked for: rows x tokens. */
#define LM_TILE_ROWS 4
#define LM_TILE_TOKS 4

/* Dot product of n values: one weight row against one activation row (the
 * activations already in the weight type's vec_dot_type). */
typedef float (*lm_dot_fn)(int64_t n, const void *w, const void *x);

/* y[t*y_stride + r] = dot(row r of w, row t of x) for r < nr, t < nt, with
 * nr <= LM_TILE_ROWS and nt <= LM_TILE_TOKS.  Weight rows are w_stride bytes
 * apart and activation rows x_stride bytes apart.  Loading a weight block
 * once for several tokens is what makes prompts fast.  For one token (nt
 * 1), a tile that reads its rows side by side asks for the ahead_len bytes
 * at ahead (the next tile's rows, x86_inline.h's prefetch_ahead) while it
 * works; NULL, 0: none. */
typedef void (*lm_tile_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                           size_t x_stride, int nt, float *y, int64_t y_stride, const void *ahead,
                           size_t ahead_len);

/* Portable C dot products, indexed by weight type (NULL: unsupported). */
extern const lm_dot_fn lm_dot_portable[LM_TYPE_COUNT];

/* AVX2 tile kernels, indexed by weight type (NULL: use the portable dot).
 * Only call them when lm_cpu_use_avx2() says so. */
extern const lm_tile_fn lm_tile_avx2[LM_TYPE_COUNT];

/* Rows [r0, r1) of y = W x for all n_tok tokens (y[t*y_stride + r]), the
 * activations already quantized; W is the whole matrix (row r at r*w_stride).
 * Returns 0, or -1 having written nothing when it cannot get its buffers.
 * Gives the AVX2 tile's results bit for bit. */
typedef int (*lm_panel_fn)(const void *w, size_t w_stride, int64_t cols, int64_t r0, int64_t r1,
                           const void *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride);

/* A panel kernel, and the fewest tokens (2 or more) for which a packed
 * panel beats the tiles (packing costs about a token's work on it).  One
 * token (decode) takes it too, reading the rows unpacked, unless
 * decode_on_tiles: a type whose AVX2 tiles decode faster (the bits are the
 * same either way). */
typedef struct {
    lm_panel_fn fn;
    int min_toks;
    bool decode_on_tiles;
} lm_panel;

/* AVX-512 VNNI panel kernels for prompts and batches, indexed by weight
 * type (fn NULL: the tiles).  Only call them on the avx512vnni path. */
extern const lm_panel lm_panel_avx512vnni[LM_TYPE_COUNT];

/* Converts n f32 values into act_type (Q8_0, Q8_1, Q8_K, F32, F16 or BF16)
 * exactly as ggml's quantize_row_* does on an AVX2 machine; n is a multiple of
 * the block size. */
void lm_quantize_act(uint32_t act_type, const float *x, void *dst, int64_t n);

/* The eight 6-bit scales and mins of a Q4_K/Q5_K block (ggml's
 * get_scale_min_k4 for j = 0..7). */
static inline void lm_k4_scales(const uint8_t s[LM_K_SCALE_SIZE], uint8_t sc[8], uint8_t m[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 0x0F) | ((s[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

#endif
