/* Tensor types and their block layouts, exactly as ggml defines them.
 *
 * One registry table (lm_type_info) describes every type: its name, how many
 * values a block holds, how many bytes a block takes, and its scalar reference
 * dequantizer and quantizer.  Every fast kernel (cpu/, cl/) is tested against
 * these references. */
#ifndef LM_QUANT_H
#define LM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Numbered as ggml_type, since that is what GGUF stores. */
typedef enum {
    LM_TYPE_F32 = 0,
    LM_TYPE_F16 = 1,
    LM_TYPE_Q4_0 = 2,
    LM_TYPE_Q4_1 = 3,
    LM_TYPE_Q5_0 = 6,
    LM_TYPE_Q5_1 = 7,
    LM_TYPE_Q8_0 = 8,
    LM_TYPE_Q8_1 = 9,  /* activations only (dot products with Q4_1/Q5_1) */
    LM_TYPE_Q4_K = 12,
    LM_TYPE_Q5_K = 13,
    LM_TYPE_Q6_K = 14,
    LM_TYPE_Q8_K = 15, /* activations only (dot products with k-quants) */
    LM_TYPE_BF16 = 30,
    LM_TYPE_COUNT = 31
} lm_type;

typedef uint16_t lm_fp16;  /* IEEE half, raw bits */
typedef uint16_t lm_bf16;  /* bfloat16, raw bits */

#define LM_QK4_0 32
#define LM_QK4_1 32
#define LM_QK5_0 32
#define LM_QK5_1 32
#define LM_QK8_0 32
#define LM_QK8_1 32
#define LM_QK_K 256
#define LM_K_SCALE_SIZE 12

typedef struct { lm_fp16 d; uint8_t qs[LM_QK4_0 / 2]; } lm_block_q4_0;
typedef struct { lm_fp16 d, m; uint8_t qs[LM_QK4_1 / 2]; } lm_block_q4_1;
typedef struct { lm_fp16 d; uint8_t qh[4]; uint8_t qs[LM_QK5_0 / 2]; } lm_block_q5_0;
typedef struct { lm_fp16 d, m; uint8_t qh[4]; uint8_t qs[LM_QK5_1 / 2]; } lm_block_q5_1;
typedef struct { lm_fp16 d; int8_t qs[LM_QK8_0]; } lm_block_q8_0;
typedef struct { lm_fp16 d, s; int8_t qs[LM_QK8_1]; } lm_block_q8_1; /* s = d * sum(qs) */
typedef struct {
    lm_fp16 d, dmin;
    uint8_t scales[LM_K_SCALE_SIZE]; /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[LM_QK_K / 2];
} lm_block_q4_k;
typedef struct {
    lm_fp16 d, dmin;
    uint8_t scales[LM_K_SCALE_SIZE];
    uint8_t qh[LM_QK_K / 8];
    uint8_t qs[LM_QK_K / 2];
} lm_block_q5_k;
typedef struct {
    uint8_t ql[LM_QK_K / 2];
    uint8_t qh[LM_QK_K / 4];
    int8_t scales[LM_QK_K / 16];
    lm_fp16 d;
} lm_block_q6_k;
typedef struct {
    float d;
    int8_t qs[LM_QK_K];
    int16_t bsums[LM_QK_K / 16]; /* sum of each group of 16 qs */
} lm_block_q8_k;

_Static_assert(sizeof(lm_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(lm_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(lm_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(lm_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(lm_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(lm_block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(lm_block_q4_k) == 144, "q4_k layout");
_Static_assert(sizeof(lm_block_q5_k) == 176, "q5_k layout");
_Static_assert(sizeof(lm_block_q6_k) == 210, "q6_k layout");
_Static_assert(sizeof(lm_block_q8_k) == 292, "q8_k layout");

typedef void (*lm_dequantize_fn)(const void *src, float *dst, int64_t n);
typedef void (*lm_quantize_fn)(const float *src, void *dst, int64_t n);

typedef struct {
    const char *name;         /* "Q4_K", as ggml and llama.cpp print it */
    int block_size;           /* values per block */
    size_t type_size;         /* bytes per block */
    bool weight_type;         /* may appear in a model file (not Q8_1/Q8_K) */
    lm_dequantize_fn dequantize; /* n is a multiple of block_size */
    lm_quantize_fn quantize;     /* reference (round-to-nearest) quantizer */
} lm_type_info;

/* NULL for a number that is not a known type. */
const lm_type_info *lm_type_get(uint32_t type);
const char *lm_type_name(uint32_t type); /* "?" if unknown */
/* Bytes for n values of type; 0 if n is not a multiple of the block size or
 * the type is unknown. */
size_t lm_row_size(uint32_t type, int64_t n);

float lm_fp16_to_f32(lm_fp16 h);
lm_fp16 lm_f32_to_fp16(float f);   /* round to nearest even */
float lm_bf16_to_f32(lm_bf16 h);
lm_bf16 lm_f32_to_bf16(float f);   /* round to nearest even */

#endif
