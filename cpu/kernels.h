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

/* The kernel paths, one table chosen at start (cpu_path.c): what the CPU
 * has, and what LAMINA_CPU=portable|avx2|avx512|avx512vnni asks for.  Each
 * path includes the ones before it. */
typedef enum {
    LM_CPU_PORTABLE,   /* C for any CPU */
    LM_CPU_AVX2,       /* AVX2 + FMA + F16C */
    LM_CPU_AVX512,     /* AVX-512 F/BW/VL (AVX2 kernels: no kernel needs it without VNNI) */
    LM_CPU_AVX512VNNI, /* AVX-512 F/BW/VL + VNNI: vpdpbusd tiles (dot_avx512.c) */
    LM_CPU_PATH_COUNT
} lm_cpu_path;

/* The path the kernels take: LAMINA_CPU's if set (a path the CPU lacks, or
 * an unknown name, is refused: see lm_cpu_path_check), else the best the
 * CPU has.  LAMINA_NO_AVX2=1, the older switch, means LAMINA_CPU=portable
 * where LAMINA_CPU is not set. */
lm_cpu_path lm_cpu_active_path(void);
/* The best path the running CPU has. */
lm_cpu_path lm_cpu_detect_path(void);
/* "portable", "avx2", "avx512", "avx512vnni". */
const char *lm_cpu_path_name(lm_cpu_path p);
/* What the path and the CPU are, for --version and bench: "avx2 (this CPU:
 * AVX2 FMA F16C; AVX-512: no)". */
void lm_cpu_path_describe(char *buf, size_t len);
/* 0, or -1 with a one-line error when LAMINA_CPU names no path or one this
 * CPU cannot run; programs check it at start. */
int lm_cpu_path_check(void);

/* Whether the AVX2 kernels are used (every path but the portable one). */
bool lm_cpu_use_avx2(void);

/* The product on a given path (tests compare the paths the CPU has); a path
 * the CPU lacks must not be asked for. */
void lm_cpu_matmul_on(lm_cpu_path path, uint32_t weight_type, const void *W, int64_t rows,
                      int64_t cols, const float *x, int64_t n_tok, float *y, void *scratch);

/* One row of weights dequantized to f32 (the embedding lookup uses it). */
void lm_cpu_get_row(uint32_t weight_type, const void *W, int64_t cols, int64_t row, float *out);

#endif
