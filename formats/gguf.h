/* GGUF reader and writer (versions 2 and 3).
 *
 * The reader maps the file read-only and checks every length, count, offset
 * and dimension against the file size and against fixed caps before use.
 * Everything returned lives as long as the lm_gguf handle: strings (keys,
 * values, tensor names, elements of string arrays) point into the mapping;
 * scalar arrays are copied into malloc'd buffers, so their data is aligned
 * for the element type and may be used in place; string arrays get a
 * malloc'd table of lm_gguf_str.  Empty arrays have n = 0 and a non-NULL data.
 * Nested arrays (arrays of arrays) are rejected.  On any failure it returns
 * NULL / -1 with lm_set_error() describing "<path>: <problem>". */
#ifndef LM_GGUF_H
#define LM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define LM_GGUF_DEFAULT_ALIGNMENT 32
#define LM_GGUF_MAX_DIMS 4

/* Metadata value types, numbered as in the GGUF specification. */
typedef enum {
    LM_GGUF_UINT8 = 0, LM_GGUF_INT8 = 1, LM_GGUF_UINT16 = 2, LM_GGUF_INT16 = 3,
    LM_GGUF_UINT32 = 4, LM_GGUF_INT32 = 5, LM_GGUF_FLOAT32 = 6, LM_GGUF_BOOL = 7,
    LM_GGUF_STRING = 8, LM_GGUF_ARRAY = 9, LM_GGUF_UINT64 = 10, LM_GGUF_INT64 = 11,
    LM_GGUF_FLOAT64 = 12,
    LM_GGUF_NTYPES
} lm_gguf_type;

typedef struct {
    const char *data; /* not NUL-terminated */
    uint64_t len;
} lm_gguf_str;

typedef struct {
    lm_gguf_str key;
    lm_gguf_type type;
    /* For scalars: the value, widened: UINT* in .u64, INT* in .i64
     * (sign-extended), FLOAT32/FLOAT64 in .f64, BOOL in .b (any nonzero byte
     * is true).  For strings: .str.  For arrays: elem_type, n and data
     * (an aligned copy of the little-endian elements, BOOL as one byte
     * each, or for string arrays a table of n lm_gguf_str). */
    union {
        uint64_t u64; int64_t i64; double f64; bool b;
        lm_gguf_str str;
    } v;
    lm_gguf_type elem_type;
    uint64_t n;
    const void *data;
} lm_gguf_kv;

typedef struct {
    lm_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[LM_GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
    uint32_t type;                 /* lm_type (formats/quant.h) */
    uint64_t offset;               /* from the start of the data section */
    uint64_t nbytes;
    const void *data;              /* into the mapping */
    uint64_t file_offset;          /* absolute, for pread-based streaming */
} lm_gguf_tensor;

typedef struct lm_gguf lm_gguf;

lm_gguf *lm_gguf_open(const char *path);
void lm_gguf_close(lm_gguf *g);

const char *lm_gguf_path(const lm_gguf *g);
uint32_t lm_gguf_version(const lm_gguf *g);
uint64_t lm_gguf_file_size(const lm_gguf *g);
uint64_t lm_gguf_alignment(const lm_gguf *g);
uint64_t lm_gguf_data_offset(const lm_gguf *g); /* absolute offset of tensor data */
int lm_gguf_fd(const lm_gguf *g);

/* Lets go of the mapping's pages inside [p, p+len) (a tensor copied
 * elsewhere, to a device): they leave this process's resident memory and
 * come back from the file if read again.  Pages shared with the bytes
 * around are kept. */
void lm_gguf_release_pages(const lm_gguf *g, const void *p, uint64_t len);

uint64_t lm_gguf_n_kv(const lm_gguf *g);
const lm_gguf_kv *lm_gguf_kv_at(const lm_gguf *g, uint64_t i);
const lm_gguf_kv *lm_gguf_find(const lm_gguf *g, const char *key); /* NULL if absent */

/* Typed getters: 0 on success; -1 if absent or of a type that does not
 * convert exactly (any integer type to an integer in range; f32/f64 to
 * float).  They do not set an error when the key is absent, so callers can
 * use defaults; lm_gguf_require_* do, naming the file and key. */
int lm_gguf_get_u32(const lm_gguf *g, const char *key, uint32_t *out);
int lm_gguf_get_i32(const lm_gguf *g, const char *key, int32_t *out);
int lm_gguf_get_f32(const lm_gguf *g, const char *key, float *out);
int lm_gguf_get_bool(const lm_gguf *g, const char *key, bool *out);
int lm_gguf_get_str(const lm_gguf *g, const char *key, lm_gguf_str *out);
/* An array of elem_type; data and n as in lm_gguf_kv. */
int lm_gguf_get_arr(const lm_gguf *g, const char *key, lm_gguf_type elem_type,
                    const void **data, uint64_t *n);
int lm_gguf_require_u32(const lm_gguf *g, const char *key, uint32_t *out);
int lm_gguf_require_f32(const lm_gguf *g, const char *key, float *out);

uint64_t lm_gguf_n_tensors(const lm_gguf *g);
const lm_gguf_tensor *lm_gguf_tensor_at(const lm_gguf *g, uint64_t i);
const lm_gguf_tensor *lm_gguf_find_tensor(const lm_gguf *g, const char *name);

bool lm_gguf_str_eq(lm_gguf_str s, const char *cstr);
/* s as a C string in buf (strings in the mapping are not terminated);
 * false when it did not fit (buf then holds what did). */
bool lm_gguf_str_copy(lm_gguf_str s, char *buf, size_t len);
/* "uint32", "string", ...; "?" for a number that is not a type. */
const char *lm_gguf_type_name(lm_gguf_type type);

/* ---- writer: builds a GGUF v3 file in memory order, then writes it ----
 * Keys and tensors are written in the order they are added.  Adding a
 * duplicate key or tensor name fails.  general.alignment is written (first)
 * only when the alignment is not the default; lm_gguf_add_u32 with that key
 * is the same as lm_gguf_writer_set_alignment.  An alignment that is not a
 * power of two makes lm_gguf_write fail.  Tensor data is padded with zeros to
 * the alignment, the last tensor's included. */
typedef struct lm_gguf_writer lm_gguf_writer;

lm_gguf_writer *lm_gguf_writer_new(void);
void lm_gguf_writer_free(lm_gguf_writer *w);
void lm_gguf_writer_set_alignment(lm_gguf_writer *w, uint32_t alignment);
int lm_gguf_add_u32(lm_gguf_writer *w, const char *key, uint32_t v);
int lm_gguf_add_i32(lm_gguf_writer *w, const char *key, int32_t v);
int lm_gguf_add_f32(lm_gguf_writer *w, const char *key, float v);
int lm_gguf_add_bool(lm_gguf_writer *w, const char *key, bool v);
int lm_gguf_add_str(lm_gguf_writer *w, const char *key, const char *v);
/* Any scalar type (not STRING/ARRAY): value points to a uint8_t, int8_t,
 * ..., float, bool, ..., double matching type. */
int lm_gguf_add_scalar(lm_gguf_writer *w, const char *key, lm_gguf_type type,
                       const void *value);
/* Arrays of scalars (elem_type not STRING/ARRAY): n elements copied from data. */
int lm_gguf_add_arr(lm_gguf_writer *w, const char *key, lm_gguf_type elem_type,
                    const void *data, uint64_t n);
int lm_gguf_add_str_arr(lm_gguf_writer *w, const char *key, const char *const *v, uint64_t n);
/* A tensor of type with dims ne[0..n_dims-1]; data holds lm_row_size bytes
 * per row and is copied. */
int lm_gguf_add_tensor(lm_gguf_writer *w, const char *name, uint32_t type,
                       uint32_t n_dims, const uint64_t *ne, const void *data);
/* A tensor whose data is produced while the file is written, so files far
 * larger than memory can be made: fill is called, in order, for consecutive
 * ranges of rows (a row is ne[0] values, lm_row_size bytes; every dimension
 * above the first counts towards the rows), each range a few MiB at most, with
 * buf to receive n_rows rows starting at row0.  It returns 0, or -1 after
 * lm_set_error, which makes lm_gguf_write fail (and remove the file).  The
 * file is byte for byte what lm_gguf_add_tensor with the same data writes. */
typedef int (*lm_gguf_fill_fn)(void *user, void *buf, uint64_t row0, uint64_t n_rows);
int lm_gguf_add_tensor_fill(lm_gguf_writer *w, const char *name, uint32_t type,
                            uint32_t n_dims, const uint64_t *ne, lm_gguf_fill_fn fill,
                            void *user);
/* A key/value pair from a reader (lm_gguf_kv_at), copied with its exact
 * types: any scalar, string, or array, strings taken byte for byte. */
int lm_gguf_add_kv(lm_gguf_writer *w, const lm_gguf_kv *kv);
int lm_gguf_write(lm_gguf_writer *w, const char *path);

#endif
