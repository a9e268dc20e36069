/* Tests for formats/safetensors.c: well-formed files read back exactly, and
 * hostile ones (each field wrong in turn) refused with one line naming the
 * file and the problem.  The files are assembled here byte by byte. */
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
#include "safetensors.h"

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
    strcpy(tmp_dir, "/tmp/lamina_st_XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    return rmdir(tmp_dir); /* fails, and so reports, if a test left a file */
}

/* Writes a file: the 8-byte length of header (or header_len when it is not
 * ~0), the header, then data_len bytes counting 0, 1, 2, ... */
static const char *write_file(const char *header, uint64_t header_len, size_t data_len)
{
    const char *path = tmp_path("t.safetensors");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = header_len != ~(uint64_t)0 ? header_len : strlen(header);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(n >> (8 * i));
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, strlen(header), f), strlen(header));
    for (size_t i = 0; i < data_len; i++)
        fputc((int)(i & 0xff), f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void test_reads_a_well_formed_file(void **state)
{
    (void)state;
    /* out of order in the header, a metadata object, padding spaces as
     * Hugging Face's writer adds them */
    const char *h = "{\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]},"
                    "\"__metadata__\":{\"format\":\"pt\"},"
                    "\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                    "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[32,32]}}   ";
    const char *path = write_file(h, ~(uint64_t)0, 32);
    lm_safetensors *st = lm_st_open(path);
    assert_non_null(st);
    assert_int_equal(lm_st_n_tensors(st), 3);
    const lm_st_tensor *a = lm_st_tensor_at(st, 0);
    assert_string_equal(a->name, "a");
    assert_int_equal(a->dtype, LM_ST_BF16);
    assert_int_equal(a->n_dims, 1);
    assert_int_equal(a->shape[0], 4);
    assert_int_equal(a->nbytes, 8);
    assert_int_equal(a->file_offset, 8 + strlen(h));
    assert_int_equal(((const uint8_t *)a->data)[1], 1);
    const lm_st_tensor *b = lm_st_find(st, "b");
    assert_non_null(b);
    assert_int_equal(b->n_dims, 2);
    assert_int_equal(b->shape[0], 2);
    assert_int_equal(b->shape[1], 3);
    assert_int_equal(b->n_elements, 6);
    assert_int_equal(((const uint8_t *)b->data)[0], 8);
    assert_non_null(lm_st_find(st, "empty"));
    assert_null(lm_st_find(st, "c"));
    assert_string_equal(lm_st_metadata(st, "format"), "pt");
    assert_null(lm_st_metadata(st, "nothing"));
    assert_string_equal(lm_st_dtype_name(b->dtype), "F32");
    lm_st_close(st);
    assert_int_equal(unlink(path), 0);
}

/* The file made from header and data_len bytes is refused, the error
 * naming the file and holding `want`, on one line. */
static void refused(const char *header, uint64_t header_len, size_t data_len, const char *want)
{
    const char *path = write_file(header, header_len, data_len);
    lm_safetensors *st = lm_st_open(path);
    if (st) {
        lm_st_close(st);
        fail_msg("accepted: %s", header);
    }
    const char *err = lm_last_error();
    if (!strstr(err, want) || !strstr(err, "t.safetensors") || strchr(err, '\n'))
        fail_msg("error '%s' for %s: want '%s'", err, header, want);
    assert_int_equal(unlink(path), 0);
}

#define T(off) "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" off "}}"

static void test_refuses_hostile_files(void **state)
{
    (void)state;
    refused("", 0, 0, "not valid JSON");
    refused("{", ~(uint64_t)0, 0, "not valid JSON");
    refused("[1,2]", ~(uint64_t)0, 0, "not a JSON object");
    refused("{}", 1000, 0, "a header of 1000 bytes");
    refused("{}", (uint64_t)1 << 62, 0, "not a safetensors file");
    refused("{\"x\":1}", ~(uint64_t)0, 0, "not described by an object");
    refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", ~(uint64_t)0, 8, "lacks");
    refused("{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", ~(uint64_t)0, 8,
            "unknown dtype 'Q4'");
    refused("{\"x\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", ~(uint64_t)0, 8,
            "not a string");
    refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", ~(uint64_t)0, 8,
            "dimension 0");
    refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", ~(uint64_t)0,
            8, "dimension 0");
    refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
            ~(uint64_t)0, 4, "at most 8");
    /* dimensions whose product overflows 64 bits */
    refused("{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],"
            "\"data_offsets\":[0,8]}}", ~(uint64_t)0, 8, "dimension 0");
    refused("{\"x\":{\"dtype\":\"U8\",\"shape\":[50,50],\"data_offsets\":[0,8]}}",
            ~(uint64_t)0, 8, "more elements than the file has bytes");
    refused(T("[0,4]"), ~(uint64_t)0, 8, "data_offsets hold 4 bytes, its dtype and shape 8");
    refused(T("[8,0]"), ~(uint64_t)0, 8, "is not [begin, end]");
    refused(T("[0,16]"), ~(uint64_t)0, 8, "is not [begin, end]");
    refused(T("[0]"), ~(uint64_t)0, 8, "is not [begin, end]");
    refused(T("[4,12]"), ~(uint64_t)0, 12, "leaves a gap");
    refused(T("[0,8]"), ~(uint64_t)0, 12, "4 bytes after the last tensor");
    refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", ~(uint64_t)0, 12,
            "overlaps");
    refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", ~(uint64_t)0, 16,
            "not valid JSON");
    refused("{\"__metadata__\":{\"a\":1}}", ~(uint64_t)0, 0, "is not a string");
    refused("{\"__metadata__\":[]}", ~(uint64_t)0, 0, "not an object");
    /* a name with a newline: still one line */
    refused("{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", ~(uint64_t)0,
            8, "data_offsets hold");
    /* invalid UTF-8 and NUL inside the header */
    refused("{\"\xff\":{}}", ~(uint64_t)0, 0, "not valid JSON");
    refused("{\"a\\u0000b\":{}}", ~(uint64_t)0, 0, "not valid JSON");
}

static void test_refuses_short_and_missing_files(void **state)
{
    (void)state;
    const char *path = tmp_path("short.safetensors");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("abc", f);
    fclose(f);
    assert_null(lm_st_open(path));
    assert_non_null(strstr(lm_last_error(), "shorter than its header length"));
    assert_int_equal(unlink(path), 0);
    assert_null(lm_st_open(tmp_path("none.safetensors")));
    assert_non_null(strstr(lm_last_error(), "No such file"));
    assert_null(lm_st_open(tmp_dir));
    assert_non_null(strstr(lm_last_error(), "not a regular file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_a_well_formed_file),
        cmocka_unit_test(test_refuses_hostile_files),
        cmocka_unit_test(test_refuses_short_and_missing_files),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
