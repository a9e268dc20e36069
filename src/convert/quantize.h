/* A GGUF model rewritten with its matrices at another type (lamina quantize).
 *
 * Tensors are converted one range of rows at a time while the output is
 * written (lm_gguf_add_tensor_fill), with the input's pages let go behind
 * the reader, so a model of any size takes a few MiB of memory besides the
 * page cache.  Each row is decoded to f32 by the type's reference
 * dequantizer and encoded by its reference quantizer (formats/quant.h), on
 * all threads; a tensor that keeps its type is copied byte for byte.  The
 * metadata is copied, with general.file_type (and general.quantization_version)
 * set for the new types.  The output is written whole or not at all. */
#ifndef LM_QUANTIZE_H
#define LM_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "quant.h"
#include "quant_rules.h"

typedef struct {
    const char *in, *out;
    lm_quant_target target;
    bool pure;   /* every converted matrix at the target's type (quant_rules.h) */
    bool quiet;  /* no progress on stderr */
} lm_quantize_params;

typedef struct {
    uint64_t in_bytes, out_bytes;  /* tensor data */
    uint64_t n_params;             /* values in the tensors */
    uint32_t n_tensors, n_converted, n_fallback;
    uint32_t n_requantized;        /* converted from an already quantized type */
    uint32_t type_count[LM_TYPE_COUNT]; /* tensors written per lm_type */
    uint32_t fallback[LM_TYPE_COUNT][LM_TYPE_COUNT]; /* [wanted][written]: tensors */
    double seconds;
} lm_quantize_stats;

/* dst = rows [row0, row0 + n) at dst_type (ne0 values a row), each
 * decoded from its src row at src_type by the reference dequantizer and
 * encoded by the reference quantizer, on all threads; src row map(r, user)
 * gives row r (NULL map: row r).  0, or -1 when out of memory. */
typedef uint64_t (*lm_row_map_fn)(uint64_t row, const void *user);
int lm_convert_rows(const void *src, uint32_t src_type, void *dst, uint32_t dst_type, int64_t ne0,
                    uint64_t row0, uint64_t n, lm_row_map_fn map, const void *user);

/* What lm_quantize_file would write from g (sizes and types; seconds 0),
 * without writing: 0, or -1 with lm_set_error. */
int lm_quantize_predict(const lm_gguf *g, const lm_quant_target *target, bool pure,
                        lm_quantize_stats *st);

/* 0, or -1 with lm_set_error (the output is then not there). */
int lm_quantize_file(const lm_quantize_params *p, lm_quantize_stats *st);

#endif
