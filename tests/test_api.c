/* The installed interface (lamina.h) used as a program would use it: load,
 * tokenize, evaluate, rewind, turn tokens into text, and report errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lamina.h"
#include "model_writer.h"
#include "quant.h"

static char path[256];

static int write_model(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_Q4_0, 2, 64, 4, 2, 96, false, 11, NULL, 0, NULL};
    return test_write_model_tmp(&shape, path, sizeof path);
}

static int remove_model(void **state)
{
    (void)state;
    return test_remove_model_tmp(path);
}

static void version_is_set(void **state)
{
    (void)state;
    assert_true(strlen(lamina_version()) > 0);
}

static void missing_file_reports_error(void **state)
{
    (void)state;
    assert_null(lamina_model_load("/nonexistent/model.gguf"));
    assert_non_null(strstr(lamina_last_error(), "No such file"));
    lamina_model_free(NULL);     /* freeing nothing is fine */
    lamina_session_free(NULL);
}

static void generate_and_rewind(void **state)
{
    (void)state;
    lamina_model *m = lamina_model_load(path);
    assert_non_null(m);
    assert_int_equal(lamina_n_vocab(m), TEST_N_VOCAB);

    int32_t *ids;
    size_t n;
    assert_int_equal(lamina_tokenize(m, "ab ab", &ids, &n), 0);
    assert_int_equal(n, 2);

    lamina_session *s = lamina_session_new(m, 32);
    assert_non_null(s);
    float *first = malloc(TEST_N_VOCAB * sizeof(float));
    float *again = malloc(TEST_N_VOCAB * sizeof(float));
    assert_int_equal(lamina_eval(s, ids, (int)n, first), 0);
    for (int i = 0; i < TEST_N_VOCAB; i++)
        assert_true(isfinite(first[i]));

    /* the same prompt after a rewind gives the same logits */
    lamina_rewind(s, 0);
    assert_int_equal(lamina_eval(s, ids, (int)n, again), 0);
    assert_memory_equal(first, again, TEST_N_VOCAB * sizeof(float));

    char piece[32];
    assert_int_equal(lamina_token_to_piece(m, ids[1], piece, sizeof piece), 3);
    assert_memory_equal(piece, " ab", 3);
    assert_int_equal(lamina_token_to_piece(m, 99999, piece, sizeof piece), -1);
    assert_true(lamina_token_is_eog(m, 0));
    assert_false(lamina_token_is_eog(m, ids[0]));

    int32_t bad = -5;
    assert_int_equal(lamina_eval(s, &bad, 1, NULL), -1);
    assert_non_null(strstr(lamina_last_error(), "outside the vocabulary"));

    free(first);
    free(again);
    free(ids);
    lamina_session_free(s);
    lamina_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_is_set),
        cmocka_unit_test(missing_file_reports_error),
        cmocka_unit_test(generate_and_rewind),
    };
    return cmocka_run_group_tests(tests, write_model, remove_model);
}
