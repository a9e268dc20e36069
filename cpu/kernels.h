/* CPU matrix kernels over quantized weights.
 *
 * Weights stay in their GGUF blocks; the activations are quantized once per
 * product to the 8-bit type that pairs with the weight type (Q8_0 for
 * Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the k-quants; F32 weights
 * take f32 activations, F16 and BF16 weights activations rounded to their
 * own type, as ggml does), and each weight block meets them in an integer
 * dot product.  AVX2 versions are chosen at run time; the portable C
 * versions are the fallback and are themselves tested against the scalar
 * reference dequantizer in formats/quant.c. */
#ifndef LM_CPU_KERNELS_H
#define LM_CPU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Which activation type the given weight type pairs with. */
uint32_t lm_cpu_vec_dot_type(uint32_t weight_type);

/* True if this weight type has a matmul kernel. */
bool lm_cpu_supports(uint32_t weight_type);

/* Bytes of scratch lm_cpu_matmul needs for n_tok rows of cols activations. */
size_t lm_cpu_matmul_scratch_size(uint32_t weight_type, int64_t cols, int64_t n_tok);

/* y[t*rows + r] = sum_c W[r, c] * x[t*cols + c]  for t < n_tok, r < rows.
 * W is rows x cols in weight_type blocks (row r starts at r*lm_row_size(cols)).
 * cols must be a multiple of the type's block size.  Runs on the OpenMP
 * threads (omp_get_max_threads()); must not be called from inside a parallel
 * region.  scratch holds lm_cpu_matmul_scratch_size() bytes. */
void lm_cpu_matmul(uint32_t weight_type, const void *W, int64_t rows, int64_t cols,
                   const float *x, int64_t n_tok, float *y, void *scratch);

/* The same product computed with the portable C kernels only (tests use it to
 * check the AVX2 path; also the path used when AVX2 is absent). */
void lm_cpu_matmul_portable(uint32_t weight_type, const void *W, int64_t rows, int64_t cols,
                            const float *x, int64_t n_tok, float *y, void *scratch);

/* Whether the running CPU has AVX2+FMA+F16C and the AVX2 kernels are used.
 * LAMINA_NO_AVX2=1 in the environment forces the portable kernels. */
bool lm_cpu_use_avx2(void);

/* One row of weights dequantized to f32 (the embedding lookup uses it). */
void lm_cpu_get_row(uint32_t weight_type, const void *W, int64_t cols, int64_t row, float *out);

#endif
