/* GGUF reader and writer.
 *
 * Reader: the file is mapped read-only and parsed with a bounds-checked
 * cursor.  Nothing read from the file is trusted: every length and count is
 * checked against the bytes that remain before it is used, every product or
 * sum is done with overflow checks, and memory is only allocated in
 * proportion to what has actually been found in the file (so a header that
 * claims a billion entries costs nothing until the entries are there).
 *
 * Writer: metadata is serialized as it is added; tensors are copied.  The
 * file is assembled on lm_gguf_write(). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise */

#include "gguf.h"

#include "atomic_file.h"
#include "error.h"
#include "file_map.h"
#include "quant.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor data and scalar arrays are used in place, so the host must share
 * the file's byte order. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lamina reads little-endian GGUF files and needs a little-endian host"
#endif

#define MAX_STRING_LEN ((uint64_t)1 << 30)
#define HEADER_BYTES 24u        /* magic, version, n_tensors, n_kv */
#define MIN_KV_BYTES 13u        /* key length, type, one-byte value */
#define MIN_TENSOR_BYTES 24u    /* name length, n_dims, type, offset */
#define ALIGNMENT_KEY "general.alignment"

/* A stand-in for the data of empty arrays, so callers never see NULL. */
static const uint64_t empty_array[1];

/* Size of one element of a scalar metadata type; 0 for STRING and ARRAY. */
static size_t scalar_size(uint32_t type)
{
    switch (type) {
    case LM_GGUF_UINT8: case LM_GGUF_INT8: case LM_GGUF_BOOL: return 1;
    case LM_GGUF_UINT16: case LM_GGUF_INT16: return 2;
    case LM_GGUF_UINT32: case LM_GGUF_INT32: case LM_GGUF_FLOAT32: return 4;
    case LM_GGUF_UINT64: case LM_GGUF_INT64: case LM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *lm_gguf_type_name(lm_gguf_type type)
{
    static const char *const names[LM_GGUF_NTYPES] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return (unsigned)type < LM_GGUF_NTYPES ? names[type] : "?";
}

static bool is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* FNV-1a: cheap, and good enough for keys and tensor names. */
static uint64_t hash_bytes(const char *s, uint64_t len)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (uint64_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
    return h;
}

static bool str_eq_bytes(lm_gguf_str s, const char *p, uint64_t len)
{
    return s.len == len && (len == 0 || memcmp(s.data, p, len) == 0);
}

bool lm_gguf_str_eq(lm_gguf_str s, const char *cstr)
{
    return str_eq_bytes(s, cstr, strlen(cstr));
}

bool lm_gguf_str_copy(lm_gguf_str s, char *buf, size_t len)
{
    if (len == 0)
        return false;
    const size_t n = s.len < len - 1 ? (size_t)s.len : len - 1;
    if (n)
        memcpy(buf, s.data, n);
    buf[n] = '\0';
    return n == s.len;
}

/* Names from a hostile file may hold newlines or escapes; error messages
 * must stay one short printable line. */
static const char *printable(lm_gguf_str s, char buf[80])
{
    return lm_printable(s.data, (size_t)s.len, buf, 72);
}

/* ------------------------------------------------------------------ */
/* Name index: open addressing over indices into an array of names.    */

typedef struct {
    uint64_t *slots; /* index + 1; 0 is empty */
    uint64_t mask;
} name_index;

static lm_gguf_str kv_name(const void *items, uint64_t i)
{
    return ((const lm_gguf_kv *)items)[i].key;
}

static lm_gguf_str tensor_name(const void *items, uint64_t i)
{
    return ((const lm_gguf_tensor *)items)[i].name;
}

typedef lm_gguf_str (*name_of_fn)(const void *items, uint64_t i);

/* Index n items; on a duplicate name, returns -1 and sets *dup to it. */
static int index_build(name_index *ix, const void *items, uint64_t n,
                       name_of_fn name_of, uint64_t *dup)
{
    uint64_t cap = 16;
    while (cap < 2 * n) /* n is bounded by the file size, so this ends */
        cap *= 2;
    if (cap > SIZE_MAX / sizeof *ix->slots)
        return -2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots)
        return -2;
    ix->mask = cap - 1;
    for (uint64_t i = 0; i < n; i++) {
        lm_gguf_str s = name_of(items, i);
        uint64_t h = hash_bytes(s.data, s.len) & ix->mask;
        for (; ix->slots[h]; h = (h + 1) & ix->mask) {
            if (str_eq_bytes(name_of(items, ix->slots[h] - 1), s.data, s.len)) {
                *dup = i;
                return -1;
            }
        }
        ix->slots[h] = i + 1;
    }
    return 0;
}

static const void *index_find(const name_index *ix, const void *items,
                              size_t item_size, name_of_fn name_of, const char *name)
{
    if (!ix->slots || !name)
        return NULL;
    uint64_t len = strlen(name);
    for (uint64_t h = hash_bytes(name, len) & ix->mask; ix->slots[h];
         h = (h + 1) & ix->mask) {
        uint64_t i = ix->slots[h] - 1;
        if (str_eq_bytes(name_of(items, i), name, len))
            return (const char *)items + i * item_size;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */

struct lm_gguf {
    char *path;
    lm_file_map file;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    lm_gguf_kv *kvs;
    uint64_t n_kv, kv_cap;
    lm_gguf_tensor *tensors;
    uint64_t n_tensors, tensor_cap;
    name_index kv_index, tensor_index;
};

/* A bounds-checked position in the mapping.  what names the structure being
 * read, for "truncated file" messages. */
typedef struct {
    lm_gguf *g;
    uint64_t pos;
    char what[128];
} cursor;

static uint64_t remaining(const cursor *c) { return c->g->file.size - c->pos; }

static int truncated(const cursor *c)
{
    lm_set_error("%s: truncated file (%s runs past end of file at offset %llu)",
                 c->g->path, c->what, (unsigned long long)c->pos);
    return -1;
}

static int out_of_memory(const lm_gguf *g)
{
    lm_set_error("%s: out of memory", g->path);
    return -1;
}

/* Point *p at the next n bytes and step over them. */
static int take(cursor *c, uint64_t n, const uint8_t **p)
{
    if (n > remaining(c))
        return truncated(c);
    *p = c->g->file.map + c->pos;
    c->pos += n;
    return 0;
}

static int read_u32(cursor *c, uint32_t *v)
{
    const uint8_t *p;
    if (take(c, 4, &p))
        return -1;
    memcpy(v, p, 4);
    return 0;
}

static int read_u64(cursor *c, uint64_t *v)
{
    const uint8_t *p;
    if (take(c, 8, &p))
        return -1;
    memcpy(v, p, 8);
    return 0;
}

static int read_str(cursor *c, lm_gguf_str *s)
{
    uint64_t len;
    const uint8_t *p;
    if (read_u64(c, &len))
        return -1;
    if (len >= MAX_STRING_LEN) {
        lm_set_error("%s: %s has a string of length %llu (limit %llu)", c->g->path,
                     c->what, (unsigned long long)len, (unsigned long long)MAX_STRING_LEN);
        return -1;
    }
    if (take(c, len, &p))
        return -1;
    s->data = (const char *)p;
    s->len = len;
    return 0;
}

/* Grow *items (of *cap elements) to hold at least need; doubling keeps the
 * cost linear while memory follows what the file really contains. */
static int grow(void **items, uint64_t *cap, uint64_t need, size_t item_size)
{
    if (need <= *cap)
        return 0;
    uint64_t n = *cap ? *cap * 2 : 16;
    if (n < need)
        n = need;
    size_t bytes;
    if (__builtin_mul_overflow(n, (uint64_t)item_size, &bytes))
        return -1;
    void *p = realloc(*items, bytes);
    if (!p)
        return -1;
    *items = p;
    *cap = n;
    return 0;
}

static int read_header(cursor *c, uint64_t *n_tensors, uint64_t *n_kv)
{
    lm_gguf *g = c->g;
    uint32_t magic, version;
    snprintf(c->what, sizeof c->what, "header");
    if (read_u32(c, &magic))
        return -1;
    if (magic == __builtin_bswap32(LM_GGUF_MAGIC)) {
        lm_set_error("%s: big-endian GGUF is not supported", g->path);
        return -1;
    }
    if (magic != LM_GGUF_MAGIC) {
        lm_set_error("%s: not a GGUF file (bad magic)", g->path);
        return -1;
    }
    if (read_u32(c, &version))
        return -1;
    /* Big-endian writers may keep the magic's byte order but not the version's. */
    if ((version & 0xffff) == 0 && version != 0) {
        lm_set_error("%s: big-endian GGUF is not supported", g->path);
        return -1;
    }
    if (version != 2 && version != 3) {
        lm_set_error("%s: unsupported GGUF version %u (only versions 2 and 3 are supported)",
                     g->path, version);
        return -1;
    }
    g->version = version;
    if (read_u64(c, n_tensors) || read_u64(c, n_kv))
        return -1;
    /* Each entry takes a minimum number of bytes, which bounds the counts. */
    if (*n_tensors > remaining(c) / MIN_TENSOR_BYTES) {
        lm_set_error("%s: truncated or corrupt file (tensor count %llu is too large for a file of %llu bytes)",
                     g->path, (unsigned long long)*n_tensors, (unsigned long long)g->file.size);
        return -1;
    }
    if (*n_kv > (remaining(c) - *n_tensors * MIN_TENSOR_BYTES) / MIN_KV_BYTES) {
        lm_set_error("%s: truncated or corrupt file (metadata key count %llu is too large for a file of %llu bytes)",
                     g->path, (unsigned long long)*n_kv, (unsigned long long)g->file.size);
        return -1;
    }
    return 0;
}

/* Read n scalars of elem_type into an aligned heap copy, so that callers may
 * use the array directly whatever its position in the file. */
static int read_scalar_array(cursor *c, lm_gguf_kv *kv)
{
    size_t esize = scalar_size(kv->elem_type);
    uint64_t bytes;
    const uint8_t *p;
    if (__builtin_mul_overflow(kv->n, (uint64_t)esize, &bytes) || bytes > remaining(c))
        return truncated(c);
    if (take(c, bytes, &p))
        return -1;
    if (bytes == 0)
        return 0;
    void *copy = malloc(bytes);
    if (!copy)
        return out_of_memory(c->g);
    memcpy(copy, p, bytes);
    kv->data = copy;
    return 0;
}

/* Two passes: first check that all n strings are in the file, then build
 * the table.  The table is thus never larger than twice those bytes. */
static int read_string_array(cursor *c, lm_gguf_kv *kv)
{
    uint64_t start = c->pos;
    lm_gguf_str s;
    if (kv->n > remaining(c) / 8)
        return truncated(c);
    for (uint64_t i = 0; i < kv->n; i++)
        if (read_str(c, &s))
            return -1;
    if (kv->n == 0)
        return 0;
    if (kv->n > SIZE_MAX / sizeof s)
        return out_of_memory(c->g);
    lm_gguf_str *table = malloc(kv->n * sizeof *table);
    if (!table)
        return out_of_memory(c->g);
    c->pos = start;
    for (uint64_t i = 0; i < kv->n; i++)
        (void)read_str(c, &table[i]); /* cannot fail: checked above */
    kv->data = table;
    return 0;
}

static int read_array(cursor *c, lm_gguf_kv *kv, char *keybuf)
{
    uint32_t elem_type;
    if (read_u32(c, &elem_type) || read_u64(c, &kv->n))
        return -1;
    if (elem_type == LM_GGUF_ARRAY) {
        lm_set_error("%s: key '%s' is a nested array, which is not supported",
                     c->g->path, keybuf);
        return -1;
    }
    if (elem_type >= LM_GGUF_NTYPES) {
        lm_set_error("%s: key '%s' is an array of unknown value type %u",
                     c->g->path, keybuf, elem_type);
        return -1;
    }
    kv->elem_type = (lm_gguf_type)elem_type;
    kv->data = empty_array;
    if (elem_type == LM_GGUF_STRING)
        return read_string_array(c, kv);
    return read_scalar_array(c, kv);
}

/* Scalars are widened into the union: unsigned types into u64, signed types
 * into i64 (sign-extended), floats into f64. */
static int read_scalar(cursor *c, lm_gguf_kv *kv)
{
    const uint8_t *p;
    if (kv->type == LM_GGUF_STRING)
        return read_str(c, &kv->v.str);
    if (take(c, scalar_size(kv->type), &p))
        return -1;
    switch (kv->type) {
    case LM_GGUF_UINT8: kv->v.u64 = p[0]; break;
    case LM_GGUF_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case LM_GGUF_BOOL: kv->v.b = p[0] != 0; break;
    case LM_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); kv->v.u64 = x; break; }
    case LM_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); kv->v.i64 = x; break; }
    case LM_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); kv->v.u64 = x; break; }
    case LM_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); kv->v.i64 = x; break; }
    case LM_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); kv->v.f64 = x; break; }
    case LM_GGUF_UINT64: memcpy(&kv->v.u64, p, 8); break;
    case LM_GGUF_INT64: memcpy(&kv->v.i64, p, 8); break;
    case LM_GGUF_FLOAT64: memcpy(&kv->v.f64, p, 8); break;
    default: break;
    }
    return 0;
}

static int read_kv(cursor *c, uint64_t i)
{
    lm_gguf *g = c->g;
    uint32_t type;
    char keybuf[80];
    if (grow((void **)&g->kvs, &g->kv_cap, i + 1, sizeof *g->kvs))
        return out_of_memory(g);
    lm_gguf_kv *kv = &g->kvs[i];
    memset(kv, 0, sizeof *kv);
    g->n_kv = i + 1; /* so that lm_gguf_close frees what this entry owns */
    snprintf(c->what, sizeof c->what, "metadata entry %llu", (unsigned long long)i);
    if (read_str(c, &kv->key))
        return -1;
    printable(kv->key, keybuf);
    snprintf(c->what, sizeof c->what, "metadata entry %llu ('%s')",
             (unsigned long long)i, keybuf);
    if (read_u32(c, &type))
        return -1;
    if (type >= LM_GGUF_NTYPES) {
        lm_set_error("%s: key '%s' has unknown value type %u", g->path, keybuf, type);
        return -1;
    }
    kv->type = (lm_gguf_type)type;
    if (type == LM_GGUF_ARRAY)
        return read_array(c, kv, keybuf);
    return read_scalar(c, kv);
}

static int read_tensor_dims(cursor *c, lm_gguf_tensor *t, const char *name)
{
    lm_gguf *g = c->g;
    int64_t count = 1;
    if (read_u32(c, &t->n_dims))
        return -1;
    if (t->n_dims > LM_GGUF_MAX_DIMS) {
        lm_set_error("%s: tensor '%s' has %u dimensions (at most %d are supported)",
                     g->path, name, t->n_dims, LM_GGUF_MAX_DIMS);
        return -1;
    }
    for (uint32_t d = 0; d < LM_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (read_u64(c, &t->ne[d]))
            return -1;
        if (t->ne[d] == 0) {
            lm_set_error("%s: tensor '%s' has a zero dimension (ne[%u] = 0)",
                         g->path, name, d);
            return -1;
        }
        if (t->ne[d] > INT64_MAX || __builtin_mul_overflow(count, (int64_t)t->ne[d], &count)) {
            lm_set_error("%s: tensor '%s' has too many elements (dimensions overflow)",
                         g->path, name);
            return -1;
        }
    }
    return 0;
}

/* Check the type and compute nbytes, overflow-safe (lm_row_size works in
 * size_t and cannot report overflow, so the block arithmetic is done here). */
static int tensor_size(const lm_gguf *g, lm_gguf_tensor *t, const char *name)
{
    const lm_type_info *info = lm_type_get(t->type);
    if (!info) {
        lm_set_error("%s: tensor '%s' has unknown type %u", g->path, name, t->type);
        return -1;
    }
    if (!info->weight_type) {
        lm_set_error("%s: tensor '%s' has type %u (%s), which is not a weight type",
                     g->path, name, t->type, info->name);
        return -1;
    }
    if (t->ne[0] % (uint64_t)info->block_size != 0) {
        lm_set_error("%s: tensor '%s' has rows of %llu values, not a multiple of the %s block size %d",
                     g->path, name, (unsigned long long)t->ne[0], info->name, info->block_size);
        return -1;
    }
    uint64_t bytes = t->ne[0] / (uint64_t)info->block_size;
    bool overflow = __builtin_mul_overflow(bytes, (uint64_t)info->type_size, &bytes);
    for (int d = 1; d < LM_GGUF_MAX_DIMS; d++)
        overflow |= __builtin_mul_overflow(bytes, t->ne[d], &bytes);
    if (overflow || bytes > INT64_MAX) {
        lm_set_error("%s: tensor '%s' is too large", g->path, name);
        return -1;
    }
    t->nbytes = bytes;
    return 0;
}

static int read_tensor_info(cursor *c, uint64_t i)
{
    lm_gguf *g = c->g;
    char name[80];
    if (grow((void **)&g->tensors, &g->tensor_cap, i + 1, sizeof *g->tensors))
        return out_of_memory(g);
    lm_gguf_tensor *t = &g->tensors[i];
    memset(t, 0, sizeof *t);
    snprintf(c->what, sizeof c->what, "tensor info %llu", (unsigned long long)i);
    if (read_str(c, &t->name))
        return -1;
    g->n_tensors = i + 1;
    printable(t->name, name);
    if (read_tensor_dims(c, t, name) || read_u32(c, &t->type) || read_u64(c, &t->offset))
        return -1;
    return tensor_size(g, t, name);
}

/* general.alignment may be stored as any integer type; it must be a power
 * of two, since offsets are aligned by masking. */
static int apply_alignment(lm_gguf *g)
{
    const lm_gguf_kv *kv = lm_gguf_find(g, ALIGNMENT_KEY);
    uint32_t a;
    if (!kv)
        return 0;
    if (lm_gguf_get_u32(g, ALIGNMENT_KEY, &a) || !is_pow2(a)) {
        lm_set_error("%s: general.alignment must be a nonzero power of two that fits in uint32",
                     g->path);
        return -1;
    }
    g->alignment = a;
    return 0;
}

/* Tensor data starts at the first aligned offset after the tensor infos. */
static int place_tensors(lm_gguf *g, uint64_t infos_end)
{
    char name[80];
    uint64_t start;
    if (__builtin_add_overflow(infos_end, g->alignment - 1, &start)) {
        lm_set_error("%s: data section offset overflows", g->path);
        return -1;
    }
    g->data_offset = start & ~(g->alignment - 1);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        lm_gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        printable(t->name, name);
        if (t->offset % g->alignment != 0) {
            lm_set_error("%s: tensor '%s' data offset %llu is not a multiple of the alignment %llu",
                         g->path, name, (unsigned long long)t->offset,
                         (unsigned long long)g->alignment);
            return -1;
        }
        if (__builtin_add_overflow(g->data_offset, t->offset, &t->file_offset) ||
            __builtin_add_overflow(t->file_offset, t->nbytes, &end) || end > g->file.size) {
            lm_set_error("%s: tensor '%s' data runs past end of file (offset %llu + %llu bytes, file size %llu)",
                         g->path, name, (unsigned long long)t->offset,
                         (unsigned long long)t->nbytes, (unsigned long long)g->file.size);
            return -1;
        }
        t->data = g->file.map + t->file_offset;
    }
    return 0;
}

static int build_indexes(lm_gguf *g)
{
    char name[80];
    uint64_t dup = 0;
    int rc = index_build(&g->kv_index, g->kvs, g->n_kv, kv_name, &dup);
    if (rc == -1)
        lm_set_error("%s: duplicate key '%s'", g->path, printable(g->kvs[dup].key, name));
    if (rc == 0) {
        rc = index_build(&g->tensor_index, g->tensors, g->n_tensors, tensor_name, &dup);
        if (rc == -1)
            lm_set_error("%s: duplicate tensor name '%s'", g->path,
                         printable(g->tensors[dup].name, name));
    }
    if (rc == -2)
        return out_of_memory(g);
    return rc;
}

static int parse(lm_gguf *g)
{
    cursor c = { .g = g, .pos = 0 };
    uint64_t n_tensors, n_kv;
    if (read_header(&c, &n_tensors, &n_kv))
        return -1;
    for (uint64_t i = 0; i < n_kv; i++)
        if (read_kv(&c, i))
            return -1;
    for (uint64_t i = 0; i < n_tensors; i++)
        if (read_tensor_info(&c, i))
            return -1;
    if (build_indexes(g) || apply_alignment(g))
        return -1;
    return place_tensors(g, c.pos);
}

lm_gguf *lm_gguf_open(const char *path)
{
    lm_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        lm_set_error("%s: out of memory", path);
        return NULL;
    }
    g->alignment = LM_GGUF_DEFAULT_ALIGNMENT;
    if (lm_file_map_open(&g->file, path, 1, "GGUF", "empty file") != 0 || parse(g)) {
        lm_gguf_close(g);
        return NULL;
    }
    return g;
}

void lm_gguf_close(lm_gguf *g)
{
    if (!g)
        return;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].type == LM_GGUF_ARRAY && g->kvs[i].data != empty_array)
            free((void *)g->kvs[i].data);
    free(g->kvs);
    free(g->tensors);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    lm_file_map_close(&g->file);
    free(g->path);
    free(g);
}

const char *lm_gguf_path(const lm_gguf *g) { return g->path; }
uint32_t lm_gguf_version(const lm_gguf *g) { return g->version; }
uint64_t lm_gguf_file_size(const lm_gguf *g) { return g->file.size; }
uint64_t lm_gguf_alignment(const lm_gguf *g) { return g->alignment; }
uint64_t lm_gguf_data_offset(const lm_gguf *g) { return g->data_offset; }
int lm_gguf_fd(const lm_gguf *g) { return g->file.fd; }

void lm_gguf_release_pages(const lm_gguf *g, const void *p, uint64_t len)
{
    lm_file_map_release(&g->file, p, len);
}
uint64_t lm_gguf_n_kv(const lm_gguf *g) { return g->n_kv; }
uint64_t lm_gguf_n_tensors(const lm_gguf *g) { return g->n_tensors; }

const lm_gguf_kv *lm_gguf_kv_at(const lm_gguf *g, uint64_t i)
{
    return i < g->n_kv ? &g->kvs[i] : NULL;
}

const lm_gguf_tensor *lm_gguf_tensor_at(const lm_gguf *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const lm_gguf_kv *lm_gguf_find(const lm_gguf *g, const char *key)
{
    return index_find(&g->kv_index, g->kvs, sizeof *g->kvs, kv_name, key);
}

const lm_gguf_tensor *lm_gguf_find_tensor(const lm_gguf *g, const char *name)
{
    return index_find(&g->tensor_index, g->tensors, sizeof *g->tensors, tensor_name, name);
}

/* ---- typed getters ---- */

static bool is_unsigned_int(lm_gguf_type t)
{
    return t == LM_GGUF_UINT8 || t == LM_GGUF_UINT16 || t == LM_GGUF_UINT32 ||
           t == LM_GGUF_UINT64;
}

static bool is_signed_int(lm_gguf_type t)
{
    return t == LM_GGUF_INT8 || t == LM_GGUF_INT16 || t == LM_GGUF_INT32 ||
           t == LM_GGUF_INT64;
}

/* An integer kv's value, if it lies in [lo, hi]. */
static int int_in_range(const lm_gguf_kv *kv, int64_t lo, uint64_t hi, int64_t *out)
{
    if (!kv)
        return -1;
    if (is_unsigned_int(kv->type) && kv->v.u64 <= hi) {
        *out = (int64_t)kv->v.u64; /* hi <= INT64_MAX for our callers */
        return 0;
    }
    if (is_signed_int(kv->type) && kv->v.i64 >= lo &&
        (kv->v.i64 < 0 || (uint64_t)kv->v.i64 <= hi)) {
        *out = kv->v.i64;
        return 0;
    }
    return -1;
}

int lm_gguf_get_u32(const lm_gguf *g, const char *key, uint32_t *out)
{
    int64_t v;
    if (int_in_range(lm_gguf_find(g, key), 0, UINT32_MAX, &v))
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int lm_gguf_get_i32(const lm_gguf *g, const char *key, int32_t *out)
{
    int64_t v;
    if (int_in_range(lm_gguf_find(g, key), INT32_MIN, INT32_MAX, &v))
        return -1;
    *out = (int32_t)v;
    return 0;
}

int lm_gguf_get_f32(const lm_gguf *g, const char *key, float *out)
{
    const lm_gguf_kv *kv = lm_gguf_find(g, key);
    if (!kv || (kv->type != LM_GGUF_FLOAT32 && kv->type != LM_GGUF_FLOAT64))
        return -1;
    *out = (float)kv->v.f64;
    return 0;
}

int lm_gguf_get_bool(const lm_gguf *g, const char *key, bool *out)
{
    const lm_gguf_kv *kv = lm_gguf_find(g, key);
    if (!kv || kv->type != LM_GGUF_BOOL)
        return -1;
    *out = kv->v.b;
    return 0;
}

int lm_gguf_get_str(const lm_gguf *g, const char *key, lm_gguf_str *out)
{
    const lm_gguf_kv *kv = lm_gguf_find(g, key);
    if (!kv || kv->type != LM_GGUF_STRING)
        return -1;
    *out = kv->v.str;
    return 0;
}

int lm_gguf_get_arr(const lm_gguf *g, const char *key, lm_gguf_type elem_type,
                    const void **data, uint64_t *n)
{
    const lm_gguf_kv *kv = lm_gguf_find(g, key);
    if (!kv || kv->type != LM_GGUF_ARRAY || kv->elem_type != elem_type)
        return -1;
    *data = kv->data;
    *n = kv->n;
    return 0;
}

/* Explain why a require_* getter failed. */
static int require_failed(const lm_gguf *g, const char *key, const char *expected)
{
    const lm_gguf_kv *kv = lm_gguf_find(g, key);
    if (!kv)
        lm_set_error("%s: missing key '%s'", g->path, key);
    else if (kv->type == LM_GGUF_ARRAY)
        lm_set_error("%s: key '%s' has type array of %s, expected %s", g->path, key,
                     lm_gguf_type_name(kv->elem_type), expected);
    else if (is_unsigned_int(kv->type) || is_signed_int(kv->type))
        lm_set_error("%s: key '%s' has type %s with a value out of range for %s",
                     g->path, key, lm_gguf_type_name(kv->type), expected);
    else
        lm_set_error("%s: key '%s' has type %s, expected %s", g->path, key,
                     lm_gguf_type_name(kv->type), expected);
    return -1;
}

int lm_gguf_require_u32(const lm_gguf *g, const char *key, uint32_t *out)
{
    if (lm_gguf_get_u32(g, key, out) == 0)
        return 0;
    return require_failed(g, key, "uint32");
}

int lm_gguf_require_f32(const lm_gguf *g, const char *key, float *out)
{
    if (lm_gguf_get_f32(g, key, out) == 0)
        return 0;
    return require_failed(g, key, "float32");
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool failed; /* out of memory: sticky, reported once at the end */
} buffer;

static void buf_put(buffer *b, const void *data, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_u32(buffer *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(buffer *b, uint64_t v) { buf_put(b, &v, 8); }

static void buf_str(buffer *b, const char *s)
{
    size_t len = strlen(s);
    buf_u64(b, len);
    buf_put(b, s, len);
}

static void buf_gguf_str(buffer *b, lm_gguf_str s)
{
    buf_u64(b, s.len);
    buf_put(b, s.data, (size_t)s.len);
}

typedef struct {
    char *name;
    uint32_t n_dims;
    uint64_t ne[LM_GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t nbytes;
    void *data;          /* or NULL, and the data comes from fill */
    lm_gguf_fill_fn fill;
    void *user;
} writer_tensor;

struct lm_gguf_writer {
    uint32_t alignment;
    buffer meta;      /* serialized key/value pairs, in order of addition */
    uint64_t n_kv;
    char **keys;      /* for duplicate checks */
    uint64_t key_cap;
    writer_tensor *tensors;
    uint64_t n_tensors, tensor_cap;
};

lm_gguf_writer *lm_gguf_writer_new(void)
{
    lm_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) {
        lm_set_error("gguf writer: out of memory");
        return NULL;
    }
    w->alignment = LM_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void lm_gguf_writer_free(lm_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->keys);
    free(w->tensors);
    free(w->meta.p);
    free(w);
}

/* An invalid value is kept and reported by lm_gguf_write, since this
 * function cannot return an error. */
void lm_gguf_writer_set_alignment(lm_gguf_writer *w, uint32_t alignment)
{
    w->alignment = alignment;
}

/* Record key as used and write its name and type; -1 if it was used. */
static int begin_kv(lm_gguf_writer *w, const char *key, lm_gguf_type type)
{
    if (!key) {
        lm_set_error("gguf writer: NULL key");
        return -1;
    }
    for (uint64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->keys[i], key) == 0) {
            lm_set_error("gguf writer: duplicate key '%s'", key);
            return -1;
        }
    }
    char *copy = strdup(key);
    if (!copy || grow((void **)&w->keys, &w->key_cap, w->n_kv + 1, sizeof *w->keys)) {
        free(copy);
        lm_set_error("gguf writer: out of memory");
        return -1;
    }
    w->keys[w->n_kv++] = copy;
    buf_str(&w->meta, key);
    buf_u32(&w->meta, type);
    return 0;
}

static int end_kv(lm_gguf_writer *w)
{
    if (w->meta.failed) {
        lm_set_error("gguf writer: out of memory");
        return -1;
    }
    return 0;
}

/* general.alignment set with a type other than uint32. */
static bool is_alignment_key(const char *key)
{
    if (key && strcmp(key, ALIGNMENT_KEY) == 0) {
        lm_set_error("gguf writer: %s must be a uint32", ALIGNMENT_KEY);
        return true;
    }
    return false;
}

static int add_scalar(lm_gguf_writer *w, const char *key, lm_gguf_type type, const void *v)
{
    if (begin_kv(w, key, type))
        return -1;
    buf_put(&w->meta, v, scalar_size(type));
    return end_kv(w);
}

int lm_gguf_add_scalar(lm_gguf_writer *w, const char *key, lm_gguf_type type,
                       const void *value)
{
    uint32_t u32;
    if (scalar_size(type) == 0 || !value) {
        lm_set_error("gguf writer: key '%s': %s is not a scalar type", key ? key : "?",
                     lm_gguf_type_name(type));
        return -1;
    }
    if (type == LM_GGUF_UINT32) {
        memcpy(&u32, value, 4);
        return lm_gguf_add_u32(w, key, u32);
    }
    if (type == LM_GGUF_BOOL)
        return lm_gguf_add_bool(w, key, *(const bool *)value);
    return is_alignment_key(key) ? -1 : add_scalar(w, key, type, value);
}

/* general.alignment is not a plain key: it decides the layout, so it is
 * routed to the alignment setting and written once by lm_gguf_write. */
int lm_gguf_add_u32(lm_gguf_writer *w, const char *key, uint32_t v)
{
    if (key && strcmp(key, ALIGNMENT_KEY) == 0) {
        if (!is_pow2(v)) {
            lm_set_error("gguf writer: alignment %u is not a power of two", v);
            return -1;
        }
        lm_gguf_writer_set_alignment(w, v);
        return 0;
    }
    return add_scalar(w, key, LM_GGUF_UINT32, &v);
}

int lm_gguf_add_i32(lm_gguf_writer *w, const char *key, int32_t v)
{
    return is_alignment_key(key) ? -1 : add_scalar(w, key, LM_GGUF_INT32, &v);
}

int lm_gguf_add_f32(lm_gguf_writer *w, const char *key, float v)
{
    return is_alignment_key(key) ? -1 : add_scalar(w, key, LM_GGUF_FLOAT32, &v);
}

int lm_gguf_add_bool(lm_gguf_writer *w, const char *key, bool v)
{
    uint8_t byte = v ? 1 : 0;
    return is_alignment_key(key) ? -1 : add_scalar(w, key, LM_GGUF_BOOL, &byte);
}

int lm_gguf_add_str(lm_gguf_writer *w, const char *key, const char *v)
{
    if (!v) {
        lm_set_error("gguf writer: key '%s' has a NULL string", key ? key : "?");
        return -1;
    }
    if (is_alignment_key(key) || begin_kv(w, key, LM_GGUF_STRING))
        return -1;
    buf_str(&w->meta, v);
    return end_kv(w);
}

int lm_gguf_add_arr(lm_gguf_writer *w, const char *key, lm_gguf_type elem_type,
                    const void *data, uint64_t n)
{
    size_t esize = scalar_size(elem_type);
    uint64_t bytes;
    if (esize == 0) {
        lm_set_error("gguf writer: key '%s': arrays of %s need another function",
                     key ? key : "?", lm_gguf_type_name(elem_type));
        return -1;
    }
    if (__builtin_mul_overflow(n, (uint64_t)esize, &bytes) || bytes > SIZE_MAX ||
        (n > 0 && !data)) {
        lm_set_error("gguf writer: key '%s': invalid array", key ? key : "?");
        return -1;
    }
    if (is_alignment_key(key) || begin_kv(w, key, LM_GGUF_ARRAY))
        return -1;
    buf_u32(&w->meta, elem_type);
    buf_u64(&w->meta, n);
    buf_put(&w->meta, data, (size_t)bytes);
    return end_kv(w);
}

int lm_gguf_add_str_arr(lm_gguf_writer *w, const char *key, const char *const *v, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (!v[i]) {
            lm_set_error("gguf writer: key '%s': string %llu is NULL", key ? key : "?",
                         (unsigned long long)i);
            return -1;
        }
    }
    if (is_alignment_key(key) || begin_kv(w, key, LM_GGUF_ARRAY))
        return -1;
    buf_u32(&w->meta, LM_GGUF_STRING);
    buf_u64(&w->meta, n);
    for (uint64_t i = 0; i < n; i++)
        buf_str(&w->meta, v[i]);
    return end_kv(w);
}

/* Validate a tensor's shape and type; fills t->ne and t->nbytes. */
static int check_new_tensor(const lm_gguf_writer *w, writer_tensor *t, const char *name,
                            const uint64_t *ne)
{
    const lm_type_info *info = lm_type_get(t->type);
    if (!info || !info->weight_type) {
        lm_set_error("gguf writer: tensor '%s' has invalid type %u", name, t->type);
        return -1;
    }
    if (t->n_dims > LM_GGUF_MAX_DIMS || (t->n_dims > 0 && !ne)) {
        lm_set_error("gguf writer: tensor '%s' has %u dimensions", name, t->n_dims);
        return -1;
    }
    for (uint32_t d = 0; d < LM_GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < t->n_dims ? ne[d] : 1;
        if (t->ne[d] == 0 || t->ne[d] > INT64_MAX) {
            lm_set_error("gguf writer: tensor '%s' has invalid ne[%u]", name, d);
            return -1;
        }
    }
    uint64_t bytes = lm_row_size(t->type, (int64_t)t->ne[0]);
    if (bytes == 0) {
        lm_set_error("gguf writer: tensor '%s': row of %llu is not a multiple of the %s block size",
                     name, (unsigned long long)t->ne[0], info->name);
        return -1;
    }
    for (int d = 1; d < LM_GGUF_MAX_DIMS; d++) {
        if (__builtin_mul_overflow(bytes, t->ne[d], &bytes) || bytes > SIZE_MAX) {
            lm_set_error("gguf writer: tensor '%s' is too large", name);
            return -1;
        }
    }
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        if (strcmp(w->tensors[i].name, name) == 0) {
            lm_set_error("gguf writer: duplicate tensor name '%s'", name);
            return -1;
        }
    }
    t->nbytes = bytes;
    return 0;
}

int lm_gguf_add_tensor(lm_gguf_writer *w, const char *name, uint32_t type,
                       uint32_t n_dims, const uint64_t *ne, const void *data)
{
    writer_tensor t = { .n_dims = n_dims, .type = type };
    if (!name || !data) {
        lm_set_error("gguf writer: tensor with NULL name or data");
        return -1;
    }
    if (check_new_tensor(w, &t, name, ne))
        return -1;
    t.name = strdup(name);
    t.data = malloc((size_t)t.nbytes);
    if (!t.name || !t.data ||
        grow((void **)&w->tensors, &w->tensor_cap, w->n_tensors + 1, sizeof *w->tensors)) {
        free(t.name);
        free(t.data);
        lm_set_error("gguf writer: out of memory");
        return -1;
    }
    memcpy(t.data, data, (size_t)t.nbytes);
    w->tensors[w->n_tensors++] = t;
    return 0;
}

int lm_gguf_add_tensor_fill(lm_gguf_writer *w, const char *name, uint32_t type,
                            uint32_t n_dims, const uint64_t *ne, lm_gguf_fill_fn fill,
                            void *user)
{
    writer_tensor t = { .n_dims = n_dims, .type = type, .fill = fill, .user = user };
    if (!name || !fill) {
        lm_set_error("gguf writer: tensor with NULL name or fill function");
        return -1;
    }
    if (check_new_tensor(w, &t, name, ne))
        return -1;
    t.name = strdup(name);
    if (!t.name ||
        grow((void **)&w->tensors, &w->tensor_cap, w->n_tensors + 1, sizeof *w->tensors)) {
        free(t.name);
        lm_set_error("gguf writer: out of memory");
        return -1;
    }
    w->tensors[w->n_tensors++] = t;
    return 0;
}

int lm_gguf_add_kv(lm_gguf_writer *w, const lm_gguf_kv *kv)
{
    if (!kv || !kv->key.data) {
        lm_set_error("gguf writer: NULL key/value");
        return -1;
    }
    char *key = strndup(kv->key.data, (size_t)kv->key.len);
    if (!key) {
        lm_set_error("gguf writer: out of memory");
        return -1;
    }
    int rc = -1;
    size_t esize = scalar_size(kv->type);
    if (esize) {
        /* Narrow the widened value back to its own width (little-endian). */
        union { uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64; float f32; double f64; } v;
        switch (kv->type) {
        case LM_GGUF_UINT8: case LM_GGUF_INT8: v.u8 = (uint8_t)kv->v.u64; break;
        case LM_GGUF_BOOL: v.u8 = kv->v.b ? 1 : 0; break;
        case LM_GGUF_UINT16: case LM_GGUF_INT16: v.u16 = (uint16_t)kv->v.u64; break;
        case LM_GGUF_UINT32: case LM_GGUF_INT32: v.u32 = (uint32_t)kv->v.u64; break;
        case LM_GGUF_FLOAT32: v.f32 = (float)kv->v.f64; break;
        case LM_GGUF_FLOAT64: v.f64 = kv->v.f64; break;
        default: v.u64 = kv->v.u64; break;
        }
        if (kv->type == LM_GGUF_UINT32)
            rc = lm_gguf_add_u32(w, key, v.u32);
        else
            rc = is_alignment_key(key) ? -1 : add_scalar(w, key, kv->type, &v);
    } else if (kv->type == LM_GGUF_STRING) {
        if (!is_alignment_key(key) && !begin_kv(w, key, LM_GGUF_STRING)) {
            buf_gguf_str(&w->meta, kv->v.str);
            rc = end_kv(w);
        }
    } else if (kv->type == LM_GGUF_ARRAY) {
        size_t el = scalar_size(kv->elem_type);
        if (el == 0 && kv->elem_type != LM_GGUF_STRING) {
            lm_set_error("gguf writer: key '%s': arrays of %s cannot be written", key,
                         lm_gguf_type_name(kv->elem_type));
        } else if (!is_alignment_key(key) && !begin_kv(w, key, LM_GGUF_ARRAY)) {
            buf_u32(&w->meta, kv->elem_type);
            buf_u64(&w->meta, kv->n);
            if (el)
                buf_put(&w->meta, kv->data, (size_t)(kv->n * el));
            else
                for (uint64_t i = 0; i < kv->n; i++)
                    buf_gguf_str(&w->meta, ((const lm_gguf_str *)kv->data)[i]);
            rc = end_kv(w);
        }
    } else {
        lm_set_error("gguf writer: key '%s' has invalid type %u", key, (unsigned)kv->type);
    }
    free(key);
    return rc;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

/* Everything before the tensor data: header, metadata, tensor infos and the
 * padding up to the data section. */
static void build_head(const lm_gguf_writer *w, buffer *b)
{
    bool write_alignment = w->alignment != LM_GGUF_DEFAULT_ALIGNMENT;
    uint64_t offset = 0;
    buf_u32(b, LM_GGUF_MAGIC);
    buf_u32(b, 3);
    buf_u64(b, w->n_tensors);
    buf_u64(b, w->n_kv + write_alignment);
    if (write_alignment) {
        buf_str(b, ALIGNMENT_KEY);
        buf_u32(b, LM_GGUF_UINT32);
        buf_u32(b, w->alignment);
    }
    buf_put(b, w->meta.p, w->meta.len);
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        buf_str(b, t->name);
        buf_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            buf_u64(b, t->ne[d]);
        buf_u32(b, t->type);
        buf_u64(b, offset);
        offset = align_up(offset + t->nbytes, w->alignment);
    }
    static const uint8_t zeros[64];
    while (!b->failed && b->len % w->alignment != 0) {
        size_t pad = w->alignment - b->len % w->alignment;
        buf_put(b, zeros, pad < sizeof zeros ? pad : sizeof zeros);
    }
}

static int write_padding(FILE *f, uint64_t n)
{
    for (; n > 0; n--)
        if (fputc(0, f) == EOF)
            return -1;
    return 0;
}

#define FILL_CHUNK_BYTES ((size_t)4 << 20)

/* A filled tensor's data, a chunk of whole rows at a time through buf (at
 * least FILL_CHUNK_BYTES or one row).  -1: a write failed (errno); -2: fill
 * failed (error set). */
static int write_filled(const writer_tensor *t, FILE *f, uint8_t **buf, size_t *cap)
{
    const uint64_t n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    const size_t row = (size_t)(t->nbytes / n_rows);
    const size_t want = row > FILL_CHUNK_BYTES ? row : FILL_CHUNK_BYTES;
    const uint64_t rows_per_chunk = want / row;
    if (*cap < want) {
        free(*buf);
        *cap = 0;
        if (!(*buf = malloc(want))) {
            lm_set_error("gguf writer: out of memory");
            return -2;
        }
        *cap = want;
    }
    for (uint64_t r = 0; r < n_rows; r += rows_per_chunk) {
        const uint64_t n = n_rows - r < rows_per_chunk ? n_rows - r : rows_per_chunk;
        if (t->fill(t->user, *buf, r, n) != 0)
            return -2;
        if (fwrite(*buf, row, (size_t)n, f) != n)
            return -1;
    }
    return 0;
}

/* Each tensor's data is padded to the alignment, the last one included, as
 * ggml does. */
static int write_file(const lm_gguf_writer *w, FILE *f, const buffer *head)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    if (fwrite(head->p, 1, head->len, f) != head->len)
        return -1;
    for (uint64_t i = 0; i < w->n_tensors && rc == 0; i++) {
        const writer_tensor *t = &w->tensors[i];
        if (t->fill)
            rc = write_filled(t, f, &buf, &cap);
        else if (fwrite(t->data, 1, (size_t)t->nbytes, f) != t->nbytes)
            rc = -1;
        if (rc == 0 && write_padding(f, align_up(t->nbytes, w->alignment) - t->nbytes))
            rc = -1;
    }
    free(buf);
    return rc ? rc : fflush(f);
}

int lm_gguf_write(lm_gguf_writer *w, const char *path)
{
    buffer head = { 0 };
    if (!is_pow2(w->alignment)) {
        lm_set_error("%s: alignment %u is not a power of two", path, w->alignment);
        return -1;
    }
    build_head(w, &head);
    if (head.failed) {
        free(head.p);
        lm_set_error("%s: out of memory", path);
        return -1;
    }
    /* whole or not at all (atomic_file.h); synced before returning, which
     * also keeps a write-back of gigabytes from slowing whatever reads the
     * disk next (the speed probes, say) */
    lm_atomic_file out;
    if (lm_atomic_open(&out, path) != 0) {
        free(head.p);
        return -1;
    }
    int rc = write_file(w, out.f, &head);
    int write_errno = rc == -1 ? (errno ? errno : EIO) : 0;
    free(head.p);
    if (rc == -2) { /* a fill callback failed and said why */
        lm_atomic_abort(&out);
        return -1;
    }
    return lm_atomic_commit(&out, write_errno);
}
