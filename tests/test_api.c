/* The installed interface (lamina.h) used as a program would use it: load,
 * tokenize, evaluate, rewind, turn tokens into text, report errors, and the
 * engine: a context of several sequences, batches, sampling. */
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
    test_model_shape shape = {"llama", LM_TYPE_Q4_0, 2, 64, 4, 2, 96, false, 11, NULL, 0, NULL, 0, 0, 0, 0};
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

/* The engine as an application drives it: two sequences in one batch each
 * get what they get alone; a copied prefix; greedy sampling; errors. */
static void engine_batches_sequences(void **state)
{
    (void)state;
    lamina_model *m = lamina_model_load(path);
    assert_non_null(m);
    lamina_context_params cp = lamina_context_default_params();
    cp.n_ctx = 64;
    cp.n_seq = 2;
    cp.backend = "cpu";
    lamina_context *ctx = lamina_context_new(m, &cp);
    assert_non_null(ctx);
    assert_int_equal(lamina_n_seq(ctx), 2);
    assert_int_equal(lamina_n_ctx_seq(ctx), 32);

    /* alone: sequence 0 gets 3 tokens; then sequence 1 gets 2 */
    const int32_t a[] = {5, 9, 13}, b[] = {7, 3};
    float alone_a[TEST_N_VOCAB], alone_b[TEST_N_VOCAB];
    const int32_t zeros[3] = {0, 0, 0}, ones[2] = {1, 1};
    lamina_batch ba = {3, a, zeros, NULL};
    assert_int_equal(lamina_decode(ctx, &ba), 0);
    assert_null(lamina_get_logits_ith(ctx, 0)); /* only the last asked for logits */
    memcpy(alone_a, lamina_get_logits_ith(ctx, 2), sizeof alone_a);
    lamina_batch bb = {2, b, ones, NULL};
    assert_int_equal(lamina_decode(ctx, &bb), 0);
    memcpy(alone_b, lamina_get_logits_ith(ctx, 1), sizeof alone_b);
    assert_int_equal(lamina_seq_pos(ctx, 0), 3);
    assert_int_equal(lamina_seq_pos(ctx, 1), 2);

    /* together, after forgetting both */
    lamina_seq_rm(ctx, 0, 0);
    lamina_seq_rm(ctx, 1, 0);
    const int32_t tok[] = {5, 9, 13, 7, 3}, seq[] = {0, 0, 0, 1, 1};
    const int8_t want[] = {0, 0, 1, 0, 1};
    lamina_batch both = {5, tok, seq, want};
    assert_int_equal(lamina_decode(ctx, &both), 0);
    assert_memory_equal(lamina_get_logits_ith(ctx, 2), alone_a, sizeof alone_a);
    assert_memory_equal(lamina_get_logits_ith(ctx, 4), alone_b, sizeof alone_b);

    /* greedy sampling picks the largest logit */
    lamina_sampler_params sp = lamina_sampler_default_params();
    sp.temp = 0;
    lamina_sampler *smpl = lamina_sampler_new(m, &sp);
    assert_non_null(smpl);
    int32_t best = 0;
    for (int i = 1; i < TEST_N_VOCAB; i++)
        if (alone_a[i] > alone_a[best])
            best = i;
    assert_int_equal(lamina_sampler_sample(smpl, ctx, 2), best);
    assert_int_equal(lamina_sampler_sample(smpl, ctx, 0), -1);

    /* sequence 1 becomes a copy of sequence 0 */
    assert_int_equal(lamina_seq_cp(ctx, 0, 1, -1), 0);
    assert_int_equal(lamina_seq_pos(ctx, 1), 3);

    /* errors: a sequence that does not exist, a full sequence */
    const int32_t two = 2;
    lamina_batch bad = {1, a, &two, NULL};
    assert_int_equal(lamina_decode(ctx, &bad), -1);
    assert_non_null(strstr(lamina_last_error(), "sequence 2 does not exist"));
    int32_t many[40] = {0};
    int32_t seq0[40] = {0};
    lamina_batch full = {40, many, seq0, NULL};
    assert_int_equal(lamina_decode(ctx, &full), -1);
    assert_non_null(strstr(lamina_last_error(), "full"));
    assert_int_equal(lamina_seq_pos(ctx, 0), 3);

    lamina_sampler_free(smpl);
    lamina_context_free(ctx);
    lamina_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_is_set),
        cmocka_unit_test(missing_file_reports_error),
        cmocka_unit_test(generate_and_rewind),
        cmocka_unit_test(engine_batches_sequences),
    };
    return cmocka_run_group_tests(tests, write_model, remove_model);
}
