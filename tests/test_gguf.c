/* Tests for formats/gguf.c: writer -> reader round trips, and hostile files
 * assembled byte by byte, each of which must be refused with a message that
 * names the file and the problem. */
#define _DEFAULT_SOURCE /* mkdtemp */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "gguf.h"
#include "quant.h"

/* ------------------------------------------------------------------ */
/* Temporary files                                                     */

static char tmp_dir[64];

static const char *tmp_path(const char *name)
{
    static char path[160];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static int make_tmp_dir(void **state)
{
    (void)state;
    strcpy(tmp_dir, "/tmp/lamina_gguf_XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    return rmdir(tmp_dir); /* fails, and so reports, if a test left a file */
}

/* ------------------------------------------------------------------ */
/* Hand-assembled files                                                */

typedef struct {
    uint8_t b[4096];
    size_t len;
} bytes;

static void put(bytes *f, const void *p, size_t n)
{
    assert_true(f->len + n <= sizeof f->b);
    memcpy(f->b + f->len, p, n);
    f->len += n;
}

static void put_u32(bytes *f, uint32_t v) { put(f, &v, 4); }
static void put_u64(bytes *f, uint64_t v) { put(f, &v, 8); }

static void put_str(bytes *f, const char *s)
{
    put_u64(f, strlen(s));
    put(f, s, strlen(s));
}

static void put_header(bytes *f, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put_u32(f, LM_GGUF_MAGIC);
    put_u32(f, version);
    put_u64(f, n_tensors);
    put_u64(f, n_kv);
}

static void put_kv_u32(bytes *f, const char *key, uint32_t v)
{
    put_str(f, key);
    put_u32(f, LM_GGUF_UINT32);
    put_u32(f, v);
}

static void put_tensor_info(bytes *f, const char *name, uint32_t n_dims, const uint64_t *ne,
                            uint32_t type, uint64_t offset)
{
    put_str(f, name);
    put_u32(f, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        put_u64(f, ne[d]);
    put_u32(f, type);
    put_u64(f, offset);
}

static void pad_to(bytes *f, size_t alignment)
{
    static const uint8_t zero[64];
    put(f, zero, (alignment - f->len % alignment) % alignment);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* Open path, expect failure with a one-line message that starts with the
 * path and contains want; remove the file. */
static void expect_refused(const char *path, const char *want)
{
    lm_clear_error();
    lm_gguf *g = lm_gguf_open(path);
    const char *msg = lm_last_error();
    if (g || !strstr(msg, want))
        print_error("expected '%s', got %s: '%s'\n", want, g ? "success" : "error", msg);
    assert_null(g);
    assert_non_null(strstr(msg, want));
    assert_int_equal(strncmp(msg, path, strlen(path)), 0);
    assert_null(strchr(msg, '\n'));
    unlink(path);
}

static void expect_bytes_refused(const bytes *f, const char *want)
{
    const char *path = tmp_path("hostile.gguf");
    write_file(path, f->b, f->len);
    expect_refused(path, want);
}

/* A file with one tensor and no metadata; data_len zero bytes of data. */
static void expect_tensor_refused(uint32_t n_dims, const uint64_t *ne, uint32_t type,
                                  uint64_t offset, size_t data_len, const char *want)
{
    static bytes f;
    static const uint8_t zero[1024];
    f.len = 0;
    put_header(&f, 3, 1, 0);
    put_tensor_info(&f, "blk.0.attn_q.weight", n_dims, ne, type, offset);
    pad_to(&f, 32);
    put(&f, zero, data_len);
    expect_bytes_refused(&f, want);
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */

static lm_gguf *write_and_open(lm_gguf_writer *w, const char *path)
{
    assert_int_equal(lm_gguf_write(w, path), 0);
    lm_gguf_writer_free(w);
    lm_gguf *g = lm_gguf_open(path);
    if (!g)
        print_error("%s\n", lm_last_error());
    assert_non_null(g);
    return g;
}

static void add_every_scalar(lm_gguf_writer *w)
{
    uint8_t u8 = 250; int8_t i8 = -120; uint16_t u16 = 65000; int16_t i16 = -32000;
    int64_t i64 = INT64_MIN + 5; uint64_t u64 = UINT64_MAX - 1; double f64 = 1e300;
    assert_int_equal(lm_gguf_add_scalar(w, "u8", LM_GGUF_UINT8, &u8), 0);
    assert_int_equal(lm_gguf_add_scalar(w, "i8", LM_GGUF_INT8, &i8), 0);
    assert_int_equal(lm_gguf_add_scalar(w, "u16", LM_GGUF_UINT16, &u16), 0);
    assert_int_equal(lm_gguf_add_scalar(w, "i16", LM_GGUF_INT16, &i16), 0);
    assert_int_equal(lm_gguf_add_u32(w, "u32", 4000000000u), 0);
    assert_int_equal(lm_gguf_add_i32(w, "i32", -2000000000), 0);
    assert_int_equal(lm_gguf_add_f32(w, "f32", 0.25f), 0);
    assert_int_equal(lm_gguf_add_bool(w, "bool", true), 0);
    assert_int_equal(lm_gguf_add_str(w, "str", "hello"), 0);
    assert_int_equal(lm_gguf_add_str(w, "empty", ""), 0);
    assert_int_equal(lm_gguf_add_scalar(w, "u64", LM_GGUF_UINT64, &u64), 0);
    assert_int_equal(lm_gguf_add_scalar(w, "i64", LM_GGUF_INT64, &i64), 0);
    assert_int_equal(lm_gguf_add_scalar(w, "f64", LM_GGUF_FLOAT64, &f64), 0);
}

static void check_every_scalar(const lm_gguf *g)
{
    const lm_gguf_kv *kv;
    assert_non_null(kv = lm_gguf_find(g, "u8"));
    assert_int_equal(kv->type, LM_GGUF_UINT8);
    assert_int_equal(kv->v.u64, 250);
    assert_int_equal(lm_gguf_find(g, "i8")->v.i64, -120);
    assert_int_equal(lm_gguf_find(g, "u16")->v.u64, 65000);
    assert_int_equal(lm_gguf_find(g, "i16")->v.i64, -32000);
    assert_int_equal(lm_gguf_find(g, "u32")->v.u64, 4000000000u);
    assert_int_equal(lm_gguf_find(g, "i32")->v.i64, -2000000000);
    assert_true(lm_gguf_find(g, "f32")->v.f64 == 0.25);
    assert_true(lm_gguf_find(g, "bool")->v.b);
    assert_true(lm_gguf_find(g, "u64")->v.u64 == UINT64_MAX - 1);
    assert_true(lm_gguf_find(g, "i64")->v.i64 == INT64_MIN + 5);
    assert_true(lm_gguf_find(g, "f64")->v.f64 == 1e300);
    assert_true(lm_gguf_str_eq(lm_gguf_find(g, "str")->v.str, "hello"));
    assert_int_equal(lm_gguf_find(g, "empty")->v.str.len, 0);
    assert_null(lm_gguf_find(g, "nope"));
}

static void check_getters(const lm_gguf *g)
{
    uint32_t u32; int32_t i32; float f; bool b; lm_gguf_str s;
    assert_int_equal(lm_gguf_get_u32(g, "u8", &u32), 0);
    assert_int_equal(u32, 250);
    assert_int_equal(lm_gguf_get_u32(g, "u32", &u32), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(lm_gguf_get_u32(g, "i8", &u32), -1);      /* negative */
    assert_int_equal(lm_gguf_get_u32(g, "u64", &u32), -1);     /* too big */
    assert_int_equal(lm_gguf_get_u32(g, "f32", &u32), -1);
    assert_int_equal(lm_gguf_get_i32(g, "i16", &i32), 0);
    assert_int_equal(i32, -32000);
    assert_int_equal(lm_gguf_get_i32(g, "u16", &i32), 0);
    assert_int_equal(i32, 65000);
    assert_int_equal(lm_gguf_get_i32(g, "u32", &i32), -1);     /* > INT32_MAX */
    assert_int_equal(lm_gguf_get_i32(g, "i64", &i32), -1);
    assert_int_equal(lm_gguf_get_f32(g, "f32", &f), 0);
    assert_true(f == 0.25f);
    assert_int_equal(lm_gguf_get_f32(g, "f64", &f), 0);
    assert_int_equal(lm_gguf_get_f32(g, "i32", &f), -1);
    assert_int_equal(lm_gguf_get_bool(g, "bool", &b), 0);
    assert_true(b);
    assert_int_equal(lm_gguf_get_bool(g, "u8", &b), -1);
    assert_int_equal(lm_gguf_get_str(g, "str", &s), 0);
    assert_true(lm_gguf_str_eq(s, "hello"));
    assert_int_equal(lm_gguf_get_str(g, "nope", &s), -1);
}

static void check_require(const lm_gguf *g)
{
    uint32_t u32; float f;
    assert_int_equal(lm_gguf_require_u32(g, "u16", &u32), 0);
    assert_int_equal(u32, 65000);
    assert_int_equal(lm_gguf_require_u32(g, "nope", &u32), -1);
    assert_non_null(strstr(lm_last_error(), ": missing key 'nope'"));
    assert_int_equal(lm_gguf_require_u32(g, "str", &u32), -1);
    assert_non_null(strstr(lm_last_error(), ": key 'str' has type string, expected uint32"));
    assert_int_equal(lm_gguf_require_f32(g, "bool", &f), -1);
    assert_non_null(strstr(lm_last_error(), ": key 'bool' has type bool, expected float32"));
    assert_int_equal(lm_gguf_require_u32(g, "i8", &u32), -1);
    assert_non_null(strstr(lm_last_error(), "key 'i8' has type int8"));
}

static void test_scalars_round_trip(void **state)
{
    (void)state;
    const char *path = tmp_path("scalars.gguf");
    lm_gguf_writer *w = lm_gguf_writer_new();
    add_every_scalar(w);
    lm_gguf *g = write_and_open(w, path);
    assert_int_equal(lm_gguf_version(g), 3);
    assert_int_equal(lm_gguf_n_kv(g), 13);
    assert_int_equal(lm_gguf_n_tensors(g), 0);
    assert_int_equal(lm_gguf_alignment(g), 32);
    assert_true(lm_gguf_str_eq(lm_gguf_kv_at(g, 0)->key, "u8")); /* order kept */
    assert_null(lm_gguf_kv_at(g, 13));
    check_every_scalar(g);
    check_getters(g);
    check_require(g);
    lm_gguf_close(g);
    unlink(path);
}

/* One array of each scalar type, with distinctive values. */
static const uint8_t a_u8[] = {0, 1, 255};
static const int8_t a_i8[] = {-128, 0, 127};
static const uint16_t a_u16[] = {1, 65535};
static const int16_t a_i16[] = {-32768, 7};
static const uint32_t a_u32[] = {1, 2, 3, 4000000000u};
static const int32_t a_i32[] = {-5, 5};
static const float a_f32[] = {-1.5f, 0.0f, 3.25f};
static const bool a_bool[] = {true, false, true};
static const uint64_t a_u64[] = {UINT64_MAX};
static const int64_t a_i64[] = {INT64_MIN, -1, 9};
static const double a_f64[] = {3.141592653589793, -2e-300};

static const struct {
    const char *key;
    lm_gguf_type type;
    const void *data;
    uint64_t n;
    size_t bytes;
} arrays[] = {
#define ARR(t, a) {"arr." #a, t, a, sizeof a / sizeof a[0], sizeof a}
    ARR(LM_GGUF_UINT8, a_u8), ARR(LM_GGUF_INT8, a_i8), ARR(LM_GGUF_UINT16, a_u16),
    ARR(LM_GGUF_INT16, a_i16), ARR(LM_GGUF_UINT32, a_u32), ARR(LM_GGUF_INT32, a_i32),
    ARR(LM_GGUF_FLOAT32, a_f32), ARR(LM_GGUF_BOOL, a_bool), ARR(LM_GGUF_UINT64, a_u64),
    ARR(LM_GGUF_INT64, a_i64), ARR(LM_GGUF_FLOAT64, a_f64),
#undef ARR
};

/* Every array of the table above, an empty one, and two string arrays
 * (check_string_array reads "tokens" back). */
static void add_every_array(lm_gguf_writer *w)
{
    const char *tokens[] = {"<s>", "", "\xe2\x96\x81the", ""};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        assert_int_equal(lm_gguf_add_arr(w, arrays[i].key, arrays[i].type, arrays[i].data,
                                         arrays[i].n), 0);
    assert_int_equal(lm_gguf_add_arr(w, "arr.empty", LM_GGUF_FLOAT32, NULL, 0), 0);
    assert_int_equal(lm_gguf_add_str_arr(w, "tokens", tokens, 4), 0);
    assert_int_equal(lm_gguf_add_str_arr(w, "no.strings", NULL, 0), 0);
}

static void check_string_array(const lm_gguf *g)
{
    const void *data;
    uint64_t n;
    assert_int_equal(lm_gguf_get_arr(g, "tokens", LM_GGUF_STRING, &data, &n), 0);
    assert_int_equal(n, 4);
    const lm_gguf_str *tok = data;
    assert_true(lm_gguf_str_eq(tok[0], "<s>"));
    assert_true(lm_gguf_str_eq(tok[1], ""));
    assert_true(lm_gguf_str_eq(tok[2], "\xe2\x96\x81the"));
    assert_true(lm_gguf_str_eq(tok[3], ""));
    assert_int_equal(lm_gguf_get_arr(g, "tokens", LM_GGUF_INT32, &data, &n), -1);
    assert_int_equal(lm_gguf_get_arr(g, "no.strings", LM_GGUF_STRING, &data, &n), 0);
    assert_int_equal(n, 0);
    assert_non_null(data);
}

static void test_arrays_round_trip(void **state)
{
    (void)state;
    const char *path = tmp_path("arrays.gguf");
    lm_gguf_writer *w = lm_gguf_writer_new();
    add_every_array(w);
    assert_int_equal(lm_gguf_add_u32(w, "after", 7), 0); /* parsing resumes correctly */
    lm_gguf *g = write_and_open(w, path);

    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        const void *data;
        uint64_t n;
        assert_int_equal(lm_gguf_get_arr(g, arrays[i].key, arrays[i].type, &data, &n), 0);
        assert_int_equal(n, arrays[i].n);
        assert_memory_equal(data, arrays[i].data, arrays[i].bytes);
        assert_int_equal((uintptr_t)data % 8, 0); /* usable in place */
    }
    const lm_gguf_kv *kv = lm_gguf_find(g, "arr.empty");
    assert_int_equal(kv->type, LM_GGUF_ARRAY);
    assert_int_equal(kv->elem_type, LM_GGUF_FLOAT32);
    assert_int_equal(kv->n, 0);
    check_string_array(g);
    uint32_t after;
    assert_int_equal(lm_gguf_get_u32(g, "after", &after), 0);
    assert_int_equal(after, 7);
    lm_gguf_close(g);
    unlink(path);
}

typedef struct {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[4];
} tensor_spec;

static const tensor_spec tensor_specs[] = {
    {"token_embd.weight", LM_TYPE_F32, 2, {8, 3}},
    {"blk.0.attn_norm.weight", LM_TYPE_F16, 1, {64}},
    {"blk.0.attn_q.weight", LM_TYPE_Q4_0, 2, {64, 2}},
    {"blk.0.ffn_up.weight", LM_TYPE_Q8_0, 3, {32, 1, 2}},
    {"blk.0.ffn_down.weight", LM_TYPE_Q4_K, 2, {256, 2}},
    {"output.weight", LM_TYPE_BF16, 4, {3, 1, 1, 1}},
};
#define N_SPECS (sizeof tensor_specs / sizeof tensor_specs[0])

static size_t spec_bytes(const tensor_spec *s)
{
    size_t n = lm_row_size(s->type, (int64_t)s->ne[0]);
    for (uint32_t d = 1; d < s->n_dims; d++)
        n *= s->ne[d];
    return n;
}

/* Tensor i's data: a byte pattern that differs from tensor to tensor. */
static void fill_pattern(uint8_t *p, size_t n, size_t i)
{
    for (size_t k = 0; k < n; k++)
        p[k] = (uint8_t)(k * 7 + i * 31 + 1);
}

static void check_tensor(const lm_gguf *g, size_t i, const uint8_t *want)
{
    const tensor_spec *s = &tensor_specs[i];
    const lm_gguf_tensor *t = lm_gguf_find_tensor(g, s->name);
    uint64_t alignment = lm_gguf_alignment(g);
    uint8_t back[1024];
    assert_non_null(t);
    assert_ptr_equal(t, lm_gguf_tensor_at(g, i));
    assert_int_equal(t->type, s->type);
    assert_int_equal(t->n_dims, s->n_dims);
    for (uint32_t d = 0; d < 4; d++)
        assert_int_equal(t->ne[d], d < s->n_dims ? s->ne[d] : 1);
    assert_int_equal(t->nbytes, spec_bytes(s));
    assert_int_equal(t->offset % alignment, 0);
    assert_int_equal(t->file_offset, lm_gguf_data_offset(g) + t->offset);
    assert_int_equal(t->file_offset % alignment, 0);
    assert_memory_equal(t->data, want, t->nbytes);
    /* The fd is kept for streaming reads at file_offset. */
    assert_int_equal(pread(lm_gguf_fd(g), back, t->nbytes, (off_t)t->file_offset),
                     (ssize_t)t->nbytes);
    assert_memory_equal(back, want, t->nbytes);
}

static void tensors_round_trip(uint32_t alignment)
{
    const char *path = tmp_path("tensors.gguf");
    uint8_t data[N_SPECS][1024];
    lm_gguf_writer *w = lm_gguf_writer_new();
    if (alignment != LM_GGUF_DEFAULT_ALIGNMENT)
        lm_gguf_writer_set_alignment(w, alignment);
    assert_int_equal(lm_gguf_add_str(w, "general.architecture", "llama"), 0);
    for (size_t i = 0; i < N_SPECS; i++) {
        const tensor_spec *s = &tensor_specs[i];
        assert_true(spec_bytes(s) <= sizeof data[i]);
        fill_pattern(data[i], spec_bytes(s), i);
        assert_int_equal(lm_gguf_add_tensor(w, s->name, s->type, s->n_dims, s->ne, data[i]), 0);
    }
    lm_gguf *g = write_and_open(w, path);
    assert_int_equal(lm_gguf_alignment(g), alignment);
    assert_int_equal(lm_gguf_data_offset(g) % alignment, 0);
    assert_int_equal(lm_gguf_file_size(g) % alignment, 0);
    /* general.alignment is only written when it is not the default. */
    assert_int_equal(lm_gguf_find(g, "general.alignment") != NULL,
                     alignment != LM_GGUF_DEFAULT_ALIGNMENT);
    assert_int_equal(lm_gguf_n_tensors(g), N_SPECS);
    for (size_t i = 0; i < N_SPECS; i++)
        check_tensor(g, i, data[i]);
    assert_null(lm_gguf_find_tensor(g, "missing.weight"));
    assert_null(lm_gguf_tensor_at(g, N_SPECS));
    assert_non_null(strstr(lm_gguf_path(g), "tensors.gguf"));
    lm_gguf_close(g);
    unlink(path);
}

static void test_tensors_align32(void **state) { (void)state; tensors_round_trip(32); }
static void test_tensors_align64(void **state) { (void)state; tensors_round_trip(64); }

/* A version 2 file is laid out like version 3. */
static void test_version2_accepted(void **state)
{
    (void)state;
    bytes f = {0};
    const char *path = tmp_path("v2.gguf");
    put_header(&f, 2, 0, 1);
    put_kv_u32(&f, "n", 9);
    write_file(path, f.b, f.len);
    lm_gguf *g = lm_gguf_open(path);
    assert_non_null(g);
    assert_int_equal(lm_gguf_version(g), 2);
    lm_gguf_close(g);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* Tensors filled at write time, and key/values copied from a reader    */

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    uint8_t *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return p;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *pa = read_all(a, &na), *pb = read_all(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
}

typedef struct {
    const uint8_t *data;
    size_t row_bytes;
    uint64_t next_row, n_rows, calls;
} fill_source;

/* Copies rows from data, checking they are asked for in order. */
static int fill_copy(void *user, void *buf, uint64_t row0, uint64_t n_rows)
{
    fill_source *src = user;
    assert_int_equal(row0, src->next_row);
    assert_true(n_rows > 0 && row0 + n_rows <= src->n_rows);
    memcpy(buf, src->data + row0 * src->row_bytes, n_rows * src->row_bytes);
    src->next_row += n_rows;
    src->calls++;
    return 0;
}

static int fill_fail(void *user, void *buf, uint64_t row0, uint64_t n_rows)
{
    (void)user, (void)buf, (void)row0, (void)n_rows;
    lm_set_error("the generator broke");
    return -1;
}

/* The same tensors written from memory and through fill callbacks, the big
 * one over several chunks of a few MiB, give the same bytes. */
static void fill_matches(uint32_t alignment)
{
    enum { BIG_COLS = 1000, BIG_ROWS = 2500 }; /* 10 MB of F32: three chunks */
    const uint64_t big_ne[2] = {BIG_COLS, BIG_ROWS};
    const size_t big_bytes = (size_t)BIG_COLS * BIG_ROWS * 4;
    uint8_t data[N_SPECS][1024];
    uint8_t *big = malloc(big_bytes);
    assert_non_null(big);
    fill_pattern(big, big_bytes, 99);
    fill_source src[N_SPECS + 1];
    lm_gguf_writer *plain = lm_gguf_writer_new(), *filled = lm_gguf_writer_new();
    lm_gguf_writer_set_alignment(plain, alignment);
    lm_gguf_writer_set_alignment(filled, alignment);
    assert_int_equal(lm_gguf_add_str(plain, "general.architecture", "llama"), 0);
    assert_int_equal(lm_gguf_add_str(filled, "general.architecture", "llama"), 0);
    for (size_t i = 0; i <= N_SPECS; i++) {
        const bool is_big = i == N_SPECS;
        const tensor_spec s = is_big ? (tensor_spec){"big", LM_TYPE_F32, 2, {BIG_COLS, BIG_ROWS}}
                                     : tensor_specs[i];
        const uint8_t *d = is_big ? big : data[i];
        if (!is_big)
            fill_pattern(data[i], spec_bytes(&s), i);
        src[i] = (fill_source){.data = d, .row_bytes = lm_row_size(s.type, (int64_t)s.ne[0]),
                               .n_rows = spec_bytes(&s) / lm_row_size(s.type, (int64_t)s.ne[0])};
        assert_int_equal(lm_gguf_add_tensor(plain, s.name, s.type, s.n_dims, is_big ? big_ne : s.ne,
                                            d), 0);
        assert_int_equal(lm_gguf_add_tensor_fill(filled, s.name, s.type, s.n_dims,
                                                 is_big ? big_ne : s.ne, fill_copy, &src[i]), 0);
    }
    assert_int_equal(lm_gguf_write(plain, tmp_path("plain.gguf")), 0);
    assert_int_equal(lm_gguf_write(filled, tmp_path("filled.gguf")), 0);
    for (size_t i = 0; i <= N_SPECS; i++)
        assert_int_equal(src[i].next_row, src[i].n_rows);
    assert_true(src[N_SPECS].calls >= 3);
    assert_same_file(tmp_path("plain.gguf"), tmp_path("filled.gguf"));
    lm_gguf *g = lm_gguf_open(tmp_path("filled.gguf"));
    assert_non_null(g);
    assert_memory_equal(lm_gguf_find_tensor(g, "big")->data, big, big_bytes);
    lm_gguf_close(g);
    lm_gguf_writer_free(plain);
    lm_gguf_writer_free(filled);
    free(big);
    unlink(tmp_path("plain.gguf"));
    unlink(tmp_path("filled.gguf"));
}

static void test_fill_align32(void **state) { (void)state; fill_matches(32); }
static void test_fill_align64(void **state) { (void)state; fill_matches(64); }

/* A failing fill fails the write with its message and leaves no file. */
static void test_fill_error(void **state)
{
    (void)state;
    const uint64_t ne[2] = {32, 4};
    lm_gguf_writer *w = lm_gguf_writer_new();
    assert_int_equal(lm_gguf_add_tensor_fill(w, "t", LM_TYPE_Q8_0, 2, ne, NULL, NULL), -1);
    assert_int_equal(lm_gguf_add_tensor_fill(w, "t", LM_TYPE_Q8_0, 2, ne, fill_fail, NULL), 0);
    assert_int_equal(lm_gguf_add_tensor_fill(w, "t", LM_TYPE_Q8_0, 2, ne, fill_fail, NULL), -1);
    assert_non_null(strstr(lm_last_error(), "duplicate tensor name 't'"));
    assert_int_equal(lm_gguf_write(w, tmp_path("broken.gguf")), -1);
    assert_non_null(strstr(lm_last_error(), "the generator broke"));
    assert_int_equal(access(tmp_path("broken.gguf"), F_OK), -1);
    lm_gguf_writer_free(w);
}

/* Every key of a file copied with lm_gguf_add_kv gives the same file. */
static void test_add_kv_copy(void **state)
{
    (void)state;
    lm_gguf_writer *w = lm_gguf_writer_new();
    lm_gguf_writer_set_alignment(w, 64);
    add_every_scalar(w);
    add_every_array(w);
    lm_gguf *g = write_and_open(w, tmp_path("kv_a.gguf"));
    w = lm_gguf_writer_new();
    for (uint64_t i = 0; i < lm_gguf_n_kv(g); i++) /* general.alignment included */
        assert_int_equal(lm_gguf_add_kv(w, lm_gguf_kv_at(g, i)), 0);
    assert_int_equal(lm_gguf_add_kv(w, lm_gguf_find(g, "u8")), -1);
    assert_non_null(strstr(lm_last_error(), "duplicate key 'u8'"));
    lm_gguf_close(g);
    assert_int_equal(lm_gguf_write(w, tmp_path("kv_b.gguf")), 0);
    lm_gguf_writer_free(w);
    assert_same_file(tmp_path("kv_a.gguf"), tmp_path("kv_b.gguf"));
    unlink(tmp_path("kv_a.gguf"));
    unlink(tmp_path("kv_b.gguf"));
}

/* ------------------------------------------------------------------ */
/* Writer misuse                                                       */

static void test_writer_errors(void **state)
{
    (void)state;
    const uint64_t ne[2] = {33, 1};
    uint8_t data[256] = {0};
    lm_gguf_writer *w = lm_gguf_writer_new();
    assert_int_equal(lm_gguf_add_u32(w, "a", 1), 0);
    assert_int_equal(lm_gguf_add_f32(w, "a", 1), -1);
    assert_non_null(strstr(lm_last_error(), "duplicate key 'a'"));
    assert_int_equal(lm_gguf_add_tensor(w, "t", LM_TYPE_Q8_0, 2, ne, data), -1);
    assert_non_null(strstr(lm_last_error(), "not a multiple"));
    assert_int_equal(lm_gguf_add_tensor(w, "t", 99, 1, ne, data), -1);
    assert_int_equal(lm_gguf_add_tensor(w, "t", LM_TYPE_F32, 2, ne, data), 0);
    assert_int_equal(lm_gguf_add_tensor(w, "t", LM_TYPE_F32, 2, ne, data), -1);
    assert_non_null(strstr(lm_last_error(), "duplicate tensor name 't'"));
    assert_int_equal(lm_gguf_add_arr(w, "s", LM_GGUF_STRING, data, 1), -1);
    assert_int_equal(lm_gguf_add_u32(w, "general.alignment", 48), -1);
    lm_gguf_writer_set_alignment(w, 48);
    assert_int_equal(lm_gguf_write(w, tmp_path("never.gguf")), -1);
    assert_non_null(strstr(lm_last_error(), "not a power of two"));
    assert_int_equal(access(tmp_path("never.gguf"), F_OK), -1);
    /* Alignment given as a key is the same as setting it. */
    assert_int_equal(lm_gguf_add_u32(w, "general.alignment", 128), 0);
    lm_gguf *g = write_and_open(w, tmp_path("a128.gguf"));
    assert_int_equal(lm_gguf_alignment(g), 128);
    assert_int_equal(lm_gguf_find_tensor(g, "t")->file_offset % 128, 0);
    lm_gguf_close(g);
    unlink(tmp_path("a128.gguf"));
}

/* ------------------------------------------------------------------ */
/* Hostile and broken files                                            */

static void test_missing_file(void **state)
{
    (void)state;
    expect_refused(tmp_path("missing.gguf"), "missing.gguf: No such file or directory");
}

static void test_empty_file(void **state)
{
    (void)state;
    bytes f = {0};
    expect_bytes_refused(&f, "empty file");
}

static void test_bad_magic(void **state)
{
    (void)state;
    bytes f = {0};
    put(&f, "GGML", 4);
    put_u32(&f, 3);
    put_u64(&f, 0);
    put_u64(&f, 0);
    expect_bytes_refused(&f, "not a GGUF file (bad magic)");
}

static void test_big_endian(void **state)
{
    (void)state;
    bytes f = {0};
    put(&f, "FUGG", 4);
    put(&f, "\0\0\0\3", 4);
    put_u64(&f, 0);
    put_u64(&f, 0);
    expect_bytes_refused(&f, "big-endian GGUF is not supported");
}

static void test_bad_versions(void **state)
{
    (void)state;
    bytes f = {0};
    put_header(&f, 1, 0, 0);
    expect_bytes_refused(&f, "unsupported GGUF version 1");
    f.len = 0;
    put_header(&f, 4, 0, 0);
    expect_bytes_refused(&f, "unsupported GGUF version 4");
}

/* A small but varied valid file, for the truncation test. */
static void write_truncation_subject(const char *path)
{
    const char *tokens[] = {"a", "", "bc"};
    const int32_t types[] = {1, 2, 3};
    const uint64_t ne_f32[2] = {8, 2}, ne_q[1] = {64};
    float f32[16];
    uint8_t q8[68];
    fill_pattern((uint8_t *)f32, sizeof f32, 0);
    fill_pattern(q8, sizeof q8, 1);
    lm_gguf_writer *w = lm_gguf_writer_new();
    lm_gguf_writer_set_alignment(w, 64);
    assert_int_equal(lm_gguf_add_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(lm_gguf_add_str_arr(w, "tokenizer.ggml.tokens", tokens, 3), 0);
    assert_int_equal(lm_gguf_add_arr(w, "tokenizer.ggml.token_type", LM_GGUF_INT32, types, 3), 0);
    assert_int_equal(lm_gguf_add_f32(w, "eps", 1e-5f), 0);
    assert_int_equal(lm_gguf_add_tensor(w, "a.weight", LM_TYPE_F32, 2, ne_f32, f32), 0);
    assert_int_equal(lm_gguf_add_tensor(w, "b.weight", LM_TYPE_Q8_0, 1, ne_q, q8), 0);
    assert_int_equal(lm_gguf_write(w, path), 0);
    lm_gguf_writer_free(w);
}

/* Cut a valid file at every length: each cut must be refused, and a cut
 * inside the tensor data must be blamed on a tensor.  Cuts in the padding
 * after the last tensor leave a valid file. */
static void test_truncated_everywhere(void **state)
{
    (void)state;
    const char *path = tmp_path("cut.gguf");
    write_truncation_subject(path);
    lm_gguf *g = lm_gguf_open(path);
    assert_non_null(g);
    uint64_t size = lm_gguf_file_size(g), data_start = lm_gguf_data_offset(g), data_end = 0;
    for (uint64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
        if (t->file_offset + t->nbytes > data_end)
            data_end = t->file_offset + t->nbytes;
    }
    lm_gguf_close(g);
    assert_true(data_start < data_end && data_end <= size);

    for (uint64_t len = size; len-- > 0;) {
        assert_int_equal(truncate(path, (off_t)len), 0);
        lm_clear_error();
        g = lm_gguf_open(path);
        if (len >= data_end) {
            assert_non_null(g);
            lm_gguf_close(g);
            continue;
        }
        if (g)
            print_error("cut at %llu was accepted\n", (unsigned long long)len);
        assert_null(g);
        assert_int_equal(strncmp(lm_last_error(), path, strlen(path)), 0);
        if (len >= data_start)
            assert_non_null(strstr(lm_last_error(), "data runs past end of file"));
        else if (len > 0)
            assert_non_null(strstr(lm_last_error(), ": "));
    }
    unlink(path);
}

static void test_truncated_message(void **state)
{
    (void)state;
    bytes f = {0};
    const uint64_t ne[1] = {32};
    put_header(&f, 3, 2, 0);
    put_tensor_info(&f, "a", 1, ne, LM_TYPE_F32, 0);
    put_str(&f, "b");
    put_u32(&f, 1);
    put_u64(&f, 32);
    put_u64(&f, 0); /* ... the type and offset are missing; pad so counts look plausible */
    put_u64(&f, 0);
    put_u64(&f, 0);
    f.len -= 20;
    expect_bytes_refused(&f, "truncated file (tensor info 1 runs past end of file at offset");
}

static void test_huge_string_length(void **state)
{
    (void)state;
    bytes f = {0};
    put_header(&f, 3, 0, 1);
    put_u64(&f, (uint64_t)1 << 63); /* key length */
    put(&f, "general.name\0\0\0\0\0\0\0\0", 20);
    expect_bytes_refused(&f, "string of length 9223372036854775808");

    f.len = 0;
    put_header(&f, 3, 0, 1);
    put_str(&f, "general.name");
    put_u32(&f, LM_GGUF_STRING);
    put_u64(&f, (uint64_t)1 << 63); /* value length */
    put(&f, "xxxxxxxxxxxxxxxx", 16);
    expect_bytes_refused(&f, "string of length");

    f.len = 0; /* under the cap but past the end of the file */
    put_header(&f, 3, 0, 1);
    put_str(&f, "general.name");
    put_u32(&f, LM_GGUF_STRING);
    put_u64(&f, 1000);
    put(&f, "xxxxxxxxxxxxxxxx", 16);
    expect_bytes_refused(&f, "truncated file (metadata entry 0 ('general.name') runs past end");
}

static void test_huge_counts(void **state)
{
    (void)state;
    bytes f = {0};
    put_header(&f, 3, 0, (uint64_t)1 << 62);
    put_kv_u32(&f, "a", 1);
    expect_bytes_refused(&f, "metadata key count 4611686018427387904 is too large");

    f.len = 0;
    put_header(&f, 3, UINT64_MAX, 1);
    put_kv_u32(&f, "a", 1);
    expect_bytes_refused(&f, "tensor count 18446744073709551615 is too large");

    f.len = 0; /* an array that claims more elements than the file holds */
    put_header(&f, 3, 0, 1);
    put_str(&f, "tokens");
    put_u32(&f, LM_GGUF_ARRAY);
    put_u32(&f, LM_GGUF_STRING);
    put_u64(&f, UINT64_MAX);
    put_str(&f, "a");
    expect_bytes_refused(&f, "truncated file");

    f.len = 0; /* n * element size overflows */
    put_header(&f, 3, 0, 1);
    put_str(&f, "scores");
    put_u32(&f, LM_GGUF_ARRAY);
    put_u32(&f, LM_GGUF_FLOAT64);
    put_u64(&f, (uint64_t)1 << 61);
    put_u64(&f, 0);
    expect_bytes_refused(&f, "truncated file");
}

static void test_bad_value_types(void **state)
{
    (void)state;
    bytes f = {0};
    put_header(&f, 3, 0, 1);
    put_str(&f, "k");
    put_u32(&f, 13);
    put_u32(&f, 0);
    expect_bytes_refused(&f, "key 'k' has unknown value type 13");

    f.len = 0;
    put_header(&f, 3, 0, 1);
    put_str(&f, "nested");
    put_u32(&f, LM_GGUF_ARRAY);
    put_u32(&f, LM_GGUF_ARRAY);
    put_u64(&f, 1);
    put_u32(&f, LM_GGUF_UINT8);
    put_u64(&f, 0);
    expect_bytes_refused(&f, "key 'nested' is a nested array");

    f.len = 0; /* a hostile key cannot break the one-line message */
    put_header(&f, 3, 0, 1);
    put_str(&f, "bad\nkey");
    put_u32(&f, 99);
    expect_bytes_refused(&f, "key 'bad?key' has unknown value type 99");
}

static void test_bad_dims(void **state)
{
    (void)state;
    const uint64_t five[5] = {32, 1, 1, 1, 1};
    const uint64_t zero[2] = {32, 0};
    const uint64_t overflow[2] = {(uint64_t)1 << 32, (uint64_t)1 << 32};
    const uint64_t over_int64[1] = {(uint64_t)1 << 63};
    const uint64_t too_many_bytes[1] = {(uint64_t)1 << 62};
    const uint64_t odd_row[1] = {33};
    expect_tensor_refused(5, five, LM_TYPE_F32, 0, 128, "'blk.0.attn_q.weight' has 5 dimensions");
    expect_tensor_refused(2, zero, LM_TYPE_F32, 0, 128, "'blk.0.attn_q.weight' has a zero dimension");
    expect_tensor_refused(2, overflow, LM_TYPE_F32, 0, 128, "dimensions overflow");
    expect_tensor_refused(1, over_int64, LM_TYPE_F32, 0, 128, "dimensions overflow");
    expect_tensor_refused(1, too_many_bytes, LM_TYPE_F32, 0, 128, "is too large");
    expect_tensor_refused(1, odd_row, LM_TYPE_Q4_0, 0, 128,
                          "not a multiple of the Q4_0 block size 32");
}

static void test_bad_tensor_types(void **state)
{
    (void)state;
    const uint64_t ne[1] = {256};
    expect_tensor_refused(1, ne, 99, 0, 1024, "tensor 'blk.0.attn_q.weight' has unknown type 99");
    expect_tensor_refused(1, ne, 4, 0, 1024, "has unknown type 4"); /* a hole in the table */
    expect_tensor_refused(1, ne, LM_TYPE_Q8_K, 0, 1024, "type 15 (Q8_K), which is not a weight type");
}

static void test_bad_tensor_placement(void **state)
{
    (void)state;
    const uint64_t ne[1] = {32}; /* 128 bytes of F32 */
    expect_tensor_refused(1, ne, LM_TYPE_F32, 16, 256,
                          "'blk.0.attn_q.weight' data offset 16 is not a multiple of the alignment 32");
    expect_tensor_refused(1, ne, LM_TYPE_F32, 0, 127,
                          "'blk.0.attn_q.weight' data runs past end of file");
    expect_tensor_refused(1, ne, LM_TYPE_F32, 128, 128, "data runs past end of file");
    expect_tensor_refused(1, ne, LM_TYPE_F32, UINT64_MAX - 31, 128,
                          "data runs past end of file");
}

static void test_duplicates(void **state)
{
    (void)state;
    bytes f = {0};
    const uint64_t ne[1] = {8};
    put_header(&f, 3, 0, 3);
    put_kv_u32(&f, "a", 1);
    put_kv_u32(&f, "b", 2);
    put_kv_u32(&f, "a", 3);
    expect_bytes_refused(&f, "duplicate key 'a'");

    f.len = 0;
    put_header(&f, 3, 2, 0);
    put_tensor_info(&f, "w", 1, ne, LM_TYPE_F32, 0);
    put_tensor_info(&f, "w", 1, ne, LM_TYPE_F32, 32);
    pad_to(&f, 32);
    put(&f, (uint8_t[64]){0}, 64);
    expect_bytes_refused(&f, "duplicate tensor name 'w'");
}

static void test_bad_alignment(void **state)
{
    (void)state;
    const uint32_t bad[] = {48, 0, 3};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bytes f = {0};
        put_header(&f, 3, 0, 1);
        put_kv_u32(&f, "general.alignment", bad[i]);
        expect_bytes_refused(&f, "general.alignment must be a nonzero power of two");
    }
    bytes f = {0};
    put_header(&f, 3, 0, 1);
    put_str(&f, "general.alignment");
    put_u32(&f, LM_GGUF_STRING);
    put_str(&f, "64");
    expect_bytes_refused(&f, "general.alignment must be");
}

/* What reaches a terminal from a file: well-formed UTF-8 stays; C0, DEL,
 * C1 (U+0080..U+009F) and malformed sequences become '?'; long text is cut. */
static void test_printable(void **state)
{
    (void)state;
    char buf[32];
    static const struct { const char *in, *want; } cases[] = {
        {"plain name", "plain name"},
        {"caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\xa6\x99", "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\xa6\x99"},
        {"a\033[31mb\007\n\t\x7f", "a?[31mb????"},
        {"csi\xc2\x9b" "2J", "csi?2J"},
        {"lead\xc3 x\x80\xff", "lead? x??"},
        {"\xc0\xaf\xe0\x80\xaf", "?????"},   /* overlong */
        {"\xed\xa0\x80", "???"},             /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", "????"},       /* past U+10FFFF */
        {"0123456789012345678901234567890123456789", "0123456789012345678901234567..."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_string_equal(lm_printable(cases[i].in, strlen(cases[i].in), buf, sizeof buf),
                            cases[i].want);
    /* every error message goes through it */
    lm_set_error("tensor '%s'", "x\033]0;title\007");
    assert_string_equal(lm_last_error(), "tensor 'x?]0;title?'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_printable),
        cmocka_unit_test(test_scalars_round_trip),
        cmocka_unit_test(test_arrays_round_trip),
        cmocka_unit_test(test_tensors_align32),
        cmocka_unit_test(test_tensors_align64),
        cmocka_unit_test(test_version2_accepted),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_fill_align32),
        cmocka_unit_test(test_fill_align64),
        cmocka_unit_test(test_fill_error),
        cmocka_unit_test(test_add_kv_copy),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_big_endian),
        cmocka_unit_test(test_bad_versions),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_truncated_message),
        cmocka_unit_test(test_huge_string_length),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_bad_value_types),
        cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_bad_tensor_types),
        cmocka_unit_test(test_bad_tensor_placement),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_bad_alignment),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
