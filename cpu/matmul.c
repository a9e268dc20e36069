/* lm_cpu_matmul: quantize the activations once, then sweep the weight rows
 * on the OpenMP threads.  Each thread owns one contiguous run of rows (a
 * static split: decode streams each weight byte exactly once, and neighbours
 * never share a cache line of y); within it, rows go in blocks small enough
 * to stay in L1/L2 while every token tile passes over them, so a prompt
 * loads each weight block once per LM_TILE_TOKS tokens instead of per token. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels.h"
#include "x86_inline.h"

/* The activation type each weight type meets (ggml's vec_dot_type).  F16 and
 * BF16 weights take f16/bf16 activations as ggml does, so rounding matches. */
static const uint8_t vec_dot_type[LM_TYPE_COUNT] = {
    [LM_TYPE_F32] = LM_TYPE_F32,   [LM_TYPE_F16] = LM_TYPE_F16,   [LM_TYPE_BF16] = LM_TYPE_BF16,
    [LM_TYPE_Q4_0] = LM_TYPE_Q8_0, [LM_TYPE_Q4_1] = LM_TYPE_Q8_1, [LM_TYPE_Q5_0] = LM_TYPE_Q8_0,
    [LM_TYPE_Q5_1] = LM_TYPE_Q8_1, [LM_TYPE_Q8_0] = LM_TYPE_Q8_0, [LM_TYPE_Q4_K] = LM_TYPE_Q8_K,
    [LM_TYPE_Q5_K] = LM_TYPE_Q8_K, [LM_TYPE_Q6_K] = LM_TYPE_Q8_K,
};

#define SCRATCH_ALIGN 64
/* Below this many multiply-adds a product runs on one thread: waking the
 * others costs more than it saves. */
#define PARALLEL_MIN_MACS 65536
/* Bytes of weight rows kept hot while the token tiles pass over them. */
#define ROW_BLOCK_BYTES 24576
/* Products of at most this many tokens split their rows into chunks that
 * threads take as they come free, about CHUNKS_PER_THREAD each, whole
 * 16-row groups (a chunk's y never shares a cache line with another's).
 * Each chunk starts its reads cold (a new run of panels, its first rows
 * asked for at once), so fewer and longer ones read faster: with 2 rather
 * than 8, 1B decodes on AMD Zen 5 (2 threads, builds alternated) ran Q4_0
 * 58 -> 66-68 tokens/s, Q4_K 53-58 -> 54-63, Q6_K 35-42 -> 44-45, 7B Q4_K
 * 9.4-10.8 -> 10.7-11.8; 2 still lets a thread that lost its core for a
 * moment hand half its share to the other. */
#define DYNAMIC_MAX_TOKS 1
#define CHUNKS_PER_THREAD 2
#define CHUNK_ROWS_ALIGN 16
/* Rows a panel takes at once: threads split a product in whole panels. */
#define PANEL_ROWS 16

bool lm_cpu_supports(uint32_t weight_type)
{
    return weight_type < LM_TYPE_COUNT && lm_dot_portable[weight_type] != NULL;
}

uint32_t lm_cpu_vec_dot_type(uint32_t weight_type)
{
    return lm_cpu_supports(weight_type) ? vec_dot_type[weight_type] : weight_type;
}

size_t lm_cpu_matmul_scratch_size(uint32_t weight_type, int64_t cols, int64_t n_tok)
{
    return (size_t)n_tok * lm_row_size(lm_cpu_vec_dot_type(weight_type), cols) + SCRATCH_ALIGN;
}

/* The tile kernel for portable dots: the same contract, one dot at a time. */
static void tile_by_dots(lm_dot_fn dot, int64_t n, const uint8_t *w, size_t w_stride, int nr,
                         const uint8_t *x, size_t x_stride, int nt, float *y, int64_t y_stride)
{
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++)
            y[t * y_stride + r] = dot(n, w + (size_t)r * w_stride, x + (size_t)t * x_stride);
}

/* Rows [r0, r1) of the product for every token, in row blocks x token tiles. */
static void sweep_rows(uint32_t type, lm_tile_fn tile, const uint8_t *W, size_t w_row,
                       int64_t rows, int64_t cols, const uint8_t *xq, size_t x_row, int64_t n_tok,
                       float *y, int64_t r0, int64_t r1)
{
    int64_t block = (int64_t)(ROW_BLOCK_BYTES / w_row) / LM_TILE_ROWS * LM_TILE_ROWS;
    if (block < LM_TILE_ROWS)
        block = LM_TILE_ROWS;
    for (int64_t rb = r0; rb < r1; rb += block) {
        const int64_t re = rb + block < r1 ? rb + block : r1;
        for (int64_t t = 0; t < n_tok; t += LM_TILE_TOKS) {
            const int nt = (int)(n_tok - t < LM_TILE_TOKS ? n_tok - t : LM_TILE_TOKS);
            for (int64_t r = rb; r < re; r += LM_TILE_ROWS) {
                const int nr = (int)(re - r < LM_TILE_ROWS ? re - r : LM_TILE_ROWS);
                const uint8_t *w = W + (size_t)r * w_row;
                const uint8_t *x = xq + (size_t)t * x_row;
                float *yt = y + t * rows + r;
                /* decode: the next tile of this thread's rows, asked for
                 * while this one runs (x86_inline.h's prefetch_ahead) */
                const int64_t next = n_tok == 1 ? r1 - r - nr : 0;
                const size_t ahead = (size_t)(next < LM_TILE_ROWS ? next : LM_TILE_ROWS) * w_row;
                if (tile)
                    tile(cols, w, w_row, nr, x, x_row, nt, yt, rows, w + (size_t)nr * w_row,
                         ahead);
                else
                    tile_by_dots(lm_dot_portable[type], cols, w, w_row, nr, x, x_row, nt, yt,
                                 rows);
            }
        }
    }
}

/* The tile kernel a path uses for a type (NULL: the portable dots). */
static lm_tile_fn tile_for(lm_cpu_path path, uint32_t type)
{
    return path >= LM_CPU_AVX2 ? lm_tile_avx2[type] : NULL;
}

/* The panel kernel, for one token (read from the rows, no packing) or
 * enough tokens that a packed panel beats the tiles (NULL: none for this
 * path, type and token count). */
static lm_panel_fn panel_for(lm_cpu_path path, uint32_t type, int64_t n_tok)
{
    const lm_panel *p = &lm_panel_avx512vnni[type];
    const bool wins = n_tok == 1 ? !p->decode_on_tiles : n_tok >= p->min_toks;
    return path >= LM_CPU_AVX512VNNI && p->fn && wins ? p->fn : NULL;
}

/* Rows [r0, r1) of the product: the panel kernel where there is one (it
 * may decline), else the tiles.  A decode run first asks for its first
 * rows, which nothing before it has asked for (x86_inline.h's
 * prefetch_first_panel); the kernels ask for the rest as they go. */
static void run_rows(uint32_t type, lm_tile_fn tile, lm_panel_fn panel, const uint8_t *W,
                     size_t w_row, int64_t rows, int64_t cols, const uint8_t *xq, size_t x_row,
                     int64_t n_tok, float *y, int64_t r0, int64_t r1)
{
    if (n_tok == 1)
        prefetch_first_panel(W + (size_t)r0 * w_row, w_row, r1 - r0);
    if (!panel || panel(W, w_row, cols, r0, r1, xq, x_row, n_tok, y, rows) != 0)
        sweep_rows(type, tile, W, w_row, rows, cols, xq, x_row, n_tok, y, r0, r1);
}

static void matmul(uint32_t type, const void *W, int64_t rows, int64_t cols, const float *x,
                   int64_t n_tok, float *y, void *scratch, lm_cpu_path path)
{
    const uint32_t act = vec_dot_type[type];
    const size_t w_row = lm_row_size(type, cols), x_row = lm_row_size(act, cols);
    uint8_t *xq = (uint8_t *)(((uintptr_t)scratch + SCRATCH_ALIGN - 1) &
                              ~(uintptr_t)(SCRATCH_ALIGN - 1));
    const lm_tile_fn tile = tile_for(path, type);
    const lm_panel_fn panel = panel_for(path, type, n_tok);
    const int parallel = rows * cols * n_tok >= PARALLEL_MIN_MACS;

#pragma omp parallel if (parallel)
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_tok; t++)
            lm_quantize_act(act, x + t * cols, xq + (size_t)t * x_row, cols);
        /* The implicit barrier above publishes xq to every thread. */
        const int nth = omp_get_num_threads(), ith = omp_get_thread_num();
        if (n_tok <= DYNAMIC_MAX_TOKS && nth > 1) {
            /* decode: chunks taken as threads come free, so that a thread
             * that lost its core for a moment does not hold the others at
             * the barrier (a static split spent ~10% of a 1B decode there) */
            int64_t chunk = (rows + (int64_t)nth * CHUNKS_PER_THREAD - 1) /
                            ((int64_t)nth * CHUNKS_PER_THREAD);
            chunk = (chunk + CHUNK_ROWS_ALIGN - 1) / CHUNK_ROWS_ALIGN * CHUNK_ROWS_ALIGN;
            const int64_t n_chunks = (rows + chunk - 1) / chunk;
#pragma omp for schedule(dynamic, 1) nowait
            for (int64_t c = 0; c < n_chunks; c++) {
                const int64_t r0 = c * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
                run_rows(type, tile, panel, W, w_row, rows, cols, xq, x_row, n_tok, y, r0, r1);
            }
        } else if (panel) {
            const int64_t panels = (rows + PANEL_ROWS - 1) / PANEL_ROWS;
            const int64_t r0 = panels * ith / nth * PANEL_ROWS;
            int64_t r1 = panels * (ith + 1) / nth * PANEL_ROWS;
            if (r1 > rows)
                r1 = rows;
            if (r0 < r1)
                run_rows(type, tile, panel, W, w_row, rows, cols, xq, x_row, n_tok, y, r0, r1);
        } else {
            const int64_t tiles = (rows + LM_TILE_ROWS - 1) / LM_TILE_ROWS;
            const int64_t r0 = tiles * ith / nth * LM_TILE_ROWS;
            int64_t r1 = tiles * (ith + 1) / nth * LM_TILE_ROWS;
            if (r1 > rows)
                r1 = rows;
            if (r0 < r1)
                run_rows(type, tile, NULL, W, w_row, rows, cols, xq, x_row, n_tok, y, r0, r1);
        }
    }
}

void lm_cpu_matmul(uint32_t weight_type, const void *W, int64_t rows, int64_t cols,
                   const float *x, int64_t n_tok, float *y, void *scratch)
{
    matmul(weight_type, W, rows, cols, x, n_tok, y, scratch, lm_cpu_active_path());
}

void lm_cpu_matmul_on(lm_cpu_path path, uint32_t weight_type, const void *W, int64_t rows,
                      int64_t cols, const float *x, int64_t n_tok, float *y, void *scratch)
{
    matmul(weight_type, W, rows, cols, x, n_tok, y, scratch, path);
}

void lm_cpu_matmul_portable(uint32_t weight_type, const void *W, int64_t rows, int64_t cols,
                            const float *x, int64_t n_tok, float *y, void *scratch)
{
    matmul(weight_type, W, rows, cols, x, n_tok, y, scratch, LM_CPU_PORTABLE);
}

void lm_cpu_get_row(uint32_t weight_type, const void *W, int64_t cols, int64_t row, float *out)
{
    const size_t w_row = lm_row_size(weight_type, cols);
    lm_type_get(weight_type)->dequantize((const uint8_t *)W + (size_t)row * w_row, out, cols);
}
