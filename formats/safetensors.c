/* The safetensors reader (safetensors.h says what it checks and why). */
#include "safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "file_map.h"

struct lm_safetensors {
    char *path;
    lm_file_map file;
    uint64_t data_start;
    lm_st_tensor *tensors;     /* by file offset */
    uint64_t n_tensors;
    const lm_st_tensor **by_name; /* sorted by name, for lm_st_find */
    json_t *header;            /* owns the names and the metadata strings */
};

static const struct {
    const char *name;
    size_t size;
} dtypes[LM_ST_NDTYPES] = {
    [LM_ST_BOOL] = {"BOOL", 1},     [LM_ST_U8] = {"U8", 1},
    [LM_ST_I8] = {"I8", 1},         [LM_ST_F8_E5M2] = {"F8_E5M2", 1},
    [LM_ST_F8_E4M3] = {"F8_E4M3", 1}, [LM_ST_I16] = {"I16", 2},
    [LM_ST_U16] = {"U16", 2},       [LM_ST_F16] = {"F16", 2},
    [LM_ST_BF16] = {"BF16", 2},     [LM_ST_I32] = {"I32", 4},
    [LM_ST_U32] = {"U32", 4},       [LM_ST_F32] = {"F32", 4},
    [LM_ST_F64] = {"F64", 8},       [LM_ST_I64] = {"I64", 8},
    [LM_ST_U64] = {"U64", 8},
};

const char *lm_st_dtype_name(lm_st_dtype d)
{
    return (unsigned)d < LM_ST_NDTYPES ? dtypes[d].name : "?";
}

size_t lm_st_dtype_size(lm_st_dtype d)
{
    return (unsigned)d < LM_ST_NDTYPES ? dtypes[d].size : 0;
}

/* A name from the file, made safe to print on one line. */
static const char *printable(const char *s, char buf[80])
{
    return lm_printable(s, strlen(s), buf, 72);
}

static int parse_dtype(const char *path, const char *name, json_t *v, lm_st_dtype *out)
{
    char nb[80];
    const char *s = json_string_value(v);
    if (!s) {
        lm_set_error("%s: tensor '%s': \"dtype\" is not a string", path, printable(name, nb));
        return -1;
    }
    for (int d = 0; d < LM_ST_NDTYPES; d++)
        if (strcmp(s, dtypes[d].name) == 0) {
            *out = (lm_st_dtype)d;
            return 0;
        }
    char db[80];
    lm_set_error("%s: tensor '%s': unknown dtype '%s'", path, printable(name, nb),
                 printable(s, db));
    return -1;
}

/* A JSON integer in [0, max]. */
static bool get_u64(json_t *v, uint64_t max, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) > max)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int parse_tensor(lm_safetensors *st, const char *name, json_t *info, lm_st_tensor *t)
{
    char nb[80];
    const char *path = st->path;
    if (!json_is_object(info)) {
        lm_set_error("%s: tensor '%s' is not described by an object", path, printable(name, nb));
        return -1;
    }
    json_t *shape = json_object_get(info, "shape"), *offs = json_object_get(info, "data_offsets");
    if (!json_object_get(info, "dtype") || !shape || !offs) {
        lm_set_error("%s: tensor '%s' lacks \"dtype\", \"shape\" or \"data_offsets\"", path,
                     printable(name, nb));
        return -1;
    }
    t->name = name;
    if (parse_dtype(path, name, json_object_get(info, "dtype"), &t->dtype) != 0)
        return -1;
    if (!json_is_array(shape) || json_array_size(shape) > LM_ST_MAX_DIMS) {
        lm_set_error("%s: tensor '%s': \"shape\" is not an array of at most %d dimensions",
                     path, printable(name, nb), LM_ST_MAX_DIMS);
        return -1;
    }
    t->n_dims = (uint32_t)json_array_size(shape);
    /* elements and bytes must fit the file: a bound that also keeps the
     * products from overflowing */
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (!get_u64(json_array_get(shape, d), st->file.size, &t->shape[d])) {
            lm_set_error("%s: tensor '%s': dimension %u is not an integer from 0 to the "
                         "file's size", path, printable(name, nb), d);
            return -1;
        }
        if (t->shape[d] != 0 && n > st->file.size / t->shape[d]) {
            lm_set_error("%s: tensor '%s' has more elements than the file has bytes", path,
                         printable(name, nb));
            return -1;
        }
        n *= t->shape[d];
    }
    for (uint32_t d = t->n_dims; d < LM_ST_MAX_DIMS; d++)
        t->shape[d] = 1;
    t->n_elements = n;
    const size_t esize = dtypes[t->dtype].size;
    if (n > st->file.size / esize) {
        lm_set_error("%s: tensor '%s' is larger than the file", path, printable(name, nb));
        return -1;
    }
    t->nbytes = n * esize;
    uint64_t begin, end;
    const uint64_t data_size = st->file.size - st->data_start;
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !get_u64(json_array_get(offs, 0), data_size, &begin) ||
        !get_u64(json_array_get(offs, 1), data_size, &end) || end < begin) {
        lm_set_error("%s: tensor '%s': \"data_offsets\" is not [begin, end] inside the file's "
                     "%llu bytes of data", path, printable(name, nb), (unsigned long long)data_size);
        return -1;
    }
    if (end - begin != t->nbytes) {
        lm_set_error("%s: tensor '%s': data_offsets hold %llu bytes, its dtype and shape %llu",
                     path, printable(name, nb), (unsigned long long)(end - begin),
                     (unsigned long long)t->nbytes);
        return -1;
    }
    t->file_offset = st->data_start + begin;
    t->data = st->file.map + t->file_offset;
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const lm_st_tensor *x = a, *y = b;
    if (x->file_offset != y->file_offset)
        return x->file_offset < y->file_offset ? -1 : 1;
    /* empty tensors share an offset with their neighbour: largest last */
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const lm_st_tensor *const *)a)->name, (*(const lm_st_tensor *const *)b)->name);
}

static int parse_metadata(lm_safetensors *st, json_t *meta)
{
    if (!json_is_object(meta)) {
        lm_set_error("%s: \"__metadata__\" is not an object", st->path);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v)) {
            char kb[80];
            lm_set_error("%s: __metadata__ '%s' is not a string", st->path, printable(key, kb));
            return -1;
        }
    }
    return 0;
}

static int parse(lm_safetensors *st)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | st->file.map[i];
    if (n > LM_ST_MAX_HEADER || n > st->file.size - 8) {
        lm_set_error("%s: not a safetensors file (a header of %llu bytes in a file of %llu)",
                     st->path, (unsigned long long)n, (unsigned long long)st->file.size);
        return -1;
    }
    st->data_start = 8 + n;
    json_error_t err;
    st->header = json_loadb((const char *)st->file.map + 8, (size_t)n,
                            JSON_REJECT_DUPLICATES, &err);
    if (!st->header) {
        char eb[80];
        lm_set_error("%s: the header is not valid JSON (%s, at byte %d)", st->path,
                     lm_printable(err.text, strlen(err.text), eb, 72), err.position);
        return -1;
    }
    if (!json_is_object(st->header)) {
        lm_set_error("%s: the header is not a JSON object", st->path);
        return -1;
    }
    size_t n_entries = json_object_size(st->header);
    json_t *meta = json_object_get(st->header, "__metadata__");
    if (meta && parse_metadata(st, meta) != 0)
        return -1;
    st->n_tensors = n_entries - (meta != NULL);
    st->tensors = calloc(st->n_tensors ? st->n_tensors : 1, sizeof *st->tensors);
    st->by_name = calloc(st->n_tensors ? st->n_tensors : 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name) {
        lm_set_error("%s: out of memory for %llu tensors", st->path,
                     (unsigned long long)st->n_tensors);
        return -1;
    }
    const char *name;
    json_t *info;
    uint64_t i = 0;
    json_object_foreach(st->header, name, info) {
        if (strcmp(name, "__metadata__") == 0)
            continue;
        if (parse_tensor(st, name, info, &st->tensors[i]) != 0)
            return -1;
        i++;
    }
    /* the tensors must tile the data section: each starts where the one
     * before it ends, and the last ends at the end of the file */
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, by_offset);
    uint64_t at = st->data_start;
    for (i = 0; i < st->n_tensors; i++) {
        const lm_st_tensor *t = &st->tensors[i];
        if (t->file_offset != at) {
            char nb[80];
            lm_set_error("%s: tensor '%s' %s (its data starts at byte %llu of the data, "
                         "expected %llu)", st->path, printable(t->name, nb),
                         t->file_offset < at ? "overlaps the one before it"
                                             : "leaves a gap before it",
                         (unsigned long long)(t->file_offset - st->data_start),
                         (unsigned long long)(at - st->data_start));
            return -1;
        }
        at += t->nbytes;
        st->by_name[i] = t;
    }
    if (at != st->file.size) {
        lm_set_error("%s: %llu bytes after the last tensor's data (truncated or padded file)",
                     st->path, (unsigned long long)(st->file.size - at));
        return -1;
    }
    qsort(st->by_name, st->n_tensors, sizeof *st->by_name, by_name);
    return 0;
}

lm_safetensors *lm_st_open(const char *path)
{
    lm_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        lm_set_error("%s: out of memory", path);
        return NULL;
    }
    if (lm_file_map_open(&st->file, path, 8, "safetensors",
                         "shorter than its header length") != 0 ||
        parse(st) != 0) {
        lm_st_close(st);
        return NULL;
    }
    return st;
}

void lm_st_close(lm_safetensors *st)
{
    if (!st)
        return;
    free(st->tensors);
    free(st->by_name);
    json_decref(st->header);
    lm_file_map_close(&st->file);
    free(st->path);
    free(st);
}

const char *lm_st_path(const lm_safetensors *st) { return st->path; }
uint64_t lm_st_file_size(const lm_safetensors *st) { return st->file.size; }
uint64_t lm_st_n_tensors(const lm_safetensors *st) { return st->n_tensors; }

const lm_st_tensor *lm_st_tensor_at(const lm_safetensors *st, uint64_t i)
{
    return i < st->n_tensors ? &st->tensors[i] : NULL;
}

const lm_st_tensor *lm_st_find(const lm_safetensors *st, const char *name)
{
    lm_st_tensor key = {.name = name};
    const lm_st_tensor *kp = &key;
    const lm_st_tensor **hit =
        bsearch(&kp, st->by_name, st->n_tensors, sizeof *st->by_name, by_name);
    return hit ? *hit : NULL;
}

const char *lm_st_metadata(const lm_safetensors *st, const char *key)
{
    return json_string_value(json_object_get(json_object_get(st->header, "__metadata__"), key));
}

void lm_st_release_pages(const lm_safetensors *st, const void *p, uint64_t len)
{
    lm_file_map_release(&st->file, p, len);
}
