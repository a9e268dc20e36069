/* The inner loops of the CPU attention (attention.c), in llama.cpp's
 * summation orders, shared between the portable C there and the x86 SIMD
 * versions in attention_x86.c.  Every version gives the portable bits. */
#ifndef LM_CPU_ATTENTION_KERNELS_H
#define LM_CPU_ATTENTION_KERNELS_H

#include "kernels.h"
#include "quant.h"

#define GG_LANES 16 /* one __m512 of floats */
#define GG_STEP 64  /* ggml_vec_dot_f16: 4 accumulators x 16 lanes */

/* One query row: a head of one token.  A call takes up to LM_ATTN_ROWS
 * rows that share one KV head (grouped-query heads, consecutive tokens of
 * a prompt), so that each row of K and V is read once for all of them. */
typedef struct {
    const float *qh;  /* hd values, already rounded to fp16 */
    float *sc;        /* by position: the scores, then the probabilities */
    float *out;       /* hd outputs */
    int first, n_pos; /* the positions it sees: [first, n_pos) */
} lm_attn_row;

#define LM_ATTN_ROWS 16

/* Scores sc[p] = (qh . k_p) * kq_scale of each row for p in [first,
 * n_pos), k_p at k + p * kv_stride.  tiny: tinyBLAS's order (one 16-lane
 * accumulator, hd % 16 == 0), else ggml_vec_dot_f16's.  work: at least
 * LM_ATTN_WORK(hd) floats of scratch. */
typedef void (*lm_kq_rows_fn)(const lm_attn_row *rows, int nr, const lm_fp16 *k, int kv_stride,
                              int hd, int tiny, float kq_scale, float *work);

/* out = sum over positions p < n_pos of prob[p] * v_p (prob: the row's sc),
 * in the order of a dot product over p (vec_dot: slot p % 64; tiny: slot
 * p % 16); positions before first have probability 0 and may be skipped. */
typedef void (*lm_kqv_rows_fn)(const lm_attn_row *rows, int nr, const lm_fp16 *v, int kv_stride,
                               int hd, int tiny, float *work);

/* Positions one pass of the SIMD outputs takes: their rows of V are copied
 * side by side (rows of the cache lie a whole KV row apart, so that 64 of
 * them alias in a few sets of L1) and stay in L1 while every row and every
 * group of dimensions goes over them. */
#define LM_KQV_CHUNK 64

/* The scratch of one call: the rows' 16 output slots of hd floats each
 * (one row's 64 slots for vec_dot's order) and the copied rows of V; the
 * scores take 16 rows of K as floats. */
#define LM_ATTN_WORK(hd) ((size_t)LM_ATTN_ROWS * GG_LANES * (hd) + (size_t)LM_KQV_CHUNK * (hd) / 2)

/* The softmax of a row of n scores, positions before first masked, into
 * probabilities rounded to fp16 (attention.c's gg_softmax_half).  tmp: n
 * floats. */
typedef void (*lm_softmax_fn)(float *s, int first, int n, float *tmp);

/* The versions a path can run for this head_dim and order; NULL where it
 * has none (the caller takes the one below it). */
lm_kq_rows_fn lm_kq_rows_x86(lm_cpu_path path, int hd, int tiny);
lm_kqv_rows_fn lm_kqv_rows_x86(lm_cpu_path path, int hd, int tiny);
lm_softmax_fn lm_softmax_x86(lm_cpu_path path);

#endif
