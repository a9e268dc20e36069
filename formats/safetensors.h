/* safetensors reader (Hugging Face's tensor file format).
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON (an
 * object: tensor name -> {"dtype", "shape", "data_offsets": [begin, end]},
 * and an optional "__metadata__" object of strings), then the tensors'
 * bytes, offsets counted from the end of the header.  The header is parsed
 * with jansson (duplicate keys rejected) and every field checked before use:
 * known dtypes only, shapes of at most LM_ST_MAX_DIMS non-negative
 * dimensions whose byte size does not overflow, each tensor's offsets equal
 * to its size and inside the file, and the tensors tiling the data section
 * with no gap and no overlap (what Hugging Face's own reader demands).  The
 * file is mapped read-only; tensor data points into the mapping.  On any
 * failure: NULL / -1 with lm_set_error() saying "<path>: <problem>" on one
 * line. */
#ifndef LM_SAFETENSORS_H
#define LM_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_ST_MAX_DIMS 8
/* Hugging Face's reader refuses headers over 100 MB; so does this one. */
#define LM_ST_MAX_HEADER ((uint64_t)100000000)

typedef enum {
    LM_ST_BOOL, LM_ST_U8, LM_ST_I8, LM_ST_F8_E5M2, LM_ST_F8_E4M3, LM_ST_I16, LM_ST_U16,
    LM_ST_F16, LM_ST_BF16, LM_ST_I32, LM_ST_U32, LM_ST_F32, LM_ST_F64, LM_ST_I64, LM_ST_U64,
    LM_ST_NDTYPES
} lm_st_dtype;

typedef struct {
    const char *name;            /* NUL-terminated, owned by the handle */
    lm_st_dtype dtype;
    uint32_t n_dims;             /* 0: a scalar */
    uint64_t shape[LM_ST_MAX_DIMS]; /* outermost first, as the file has it */
    uint64_t n_elements;
    uint64_t file_offset;        /* from the start of the file */
    uint64_t nbytes;
    const void *data;            /* into the mapping */
} lm_st_tensor;

typedef struct lm_safetensors lm_safetensors;

lm_safetensors *lm_st_open(const char *path);
void lm_st_close(lm_safetensors *st);

const char *lm_st_path(const lm_safetensors *st);
uint64_t lm_st_file_size(const lm_safetensors *st);
/* Tensors in the order of their bytes in the file. */
uint64_t lm_st_n_tensors(const lm_safetensors *st);
const lm_st_tensor *lm_st_tensor_at(const lm_safetensors *st, uint64_t i);
const lm_st_tensor *lm_st_find(const lm_safetensors *st, const char *name);
/* A string of "__metadata__", or NULL. */
const char *lm_st_metadata(const lm_safetensors *st, const char *key);
/* Lets the pages of [p, p + len) go (read once, as a converter does). */
void lm_st_release_pages(const lm_safetensors *st, const void *p, uint64_t len);

/* "F16", "BF16", ...; bytes per element. */
const char *lm_st_dtype_name(lm_st_dtype d);
size_t lm_st_dtype_size(lm_st_dtype d);

#endif
