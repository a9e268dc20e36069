/* A mixture of experts' routing trace (expert_trace.h): the stored text
 * parsed strictly, a cache replayed by hand-counted cases (least recently
 * and least often used part ways), one-row passes counted alone when the
 * trace has them, and a session's routing stored when it is freed and
 * read back for the same model. */
#define _POSIX_C_SOURCE 200809L /* setenv, mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "expert_trace.h"
#include "model_writer.h"
#include "quant.h"
#include "session.h"

static lm_expert_trace *parse(const char *text, int n_layer, int n_expert)
{
    return lm_expert_trace_parse(text, strlen(text), n_layer, n_expert);
}

static void test_parse(void **state)
{
    (void)state;
    lm_expert_trace *t = parse("lamina-expert-trace 1 2 4\n0 3 0 2\n1 1 3\n", 2, 4);
    assert_non_null(t);
    assert_int_equal(lm_expert_trace_wants(t), 3);
    lm_expert_trace_free(t);
    const char *bad[] = {
        "",                                            /* no header */
        "lamina-expert-trace 1 2 4\n",                 /* no record */
        "lamina-expert-trace 1 3 4\n0 1 0\n",          /* another shape */
        "lamina-expert-trace 2 2 4\n0 1 0\n",          /* another version */
        "lamina-expert-trace 1 2 4\n2 1 0\n",          /* layer out of range */
        "lamina-expert-trace 1 2 4\n0 1 4\n",          /* expert out of range */
        "lamina-expert-trace 1 2 4\n0 1 1 1\n",        /* an expert twice */
        "lamina-expert-trace 1 2 4\n0 0 1\n",          /* no rows */
        "lamina-expert-trace 1 2 4\n0 1\n",            /* no expert */
        "lamina-expert-trace 1 2 4\n0 1 1",            /* a line not ended */
        "lamina-expert-trace 1 2 4\n\n",               /* an empty line */
        "lamina-expert-trace 1 2 4\n0 1 -1\n",         /* a sign */
        "lamina-expert-trace 1 2 4\n0 1 1x\n",         /* junk */
        "lamina-expert-trace 1 2 4\n0 99999999999 1\n", /* too many rows */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t = parse(bad[i], 2, 4);
        if (t)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        assert_null(t);
    }
}

/* Passes of one row: 0, 1, 0, 2, 1, 0 through two slots.  Least recently
 * used: 0 and 1 read, 0 hit, 2 takes 1's slot, 1 takes 0's, 0 takes 2's: one
 * hit in six.  Least often used: 2 takes 1's slot (used once, 0 twice),
 * 1 takes 2's (once against 0's twice), 0 hits: two in six. */
static void test_replay(void **state)
{
    (void)state;
    lm_expert_trace *t = parse("lamina-expert-trace 1 1 4\n0 1 0\n0 1 1\n0 1 0\n0 1 2\n"
                               "0 1 1\n0 1 0\n",
                               1, 4);
    assert_non_null(t);
    const bool apart[1] = {true}, none[1] = {false};
    uint64_t wants;
    assert_float_equal(lm_expert_trace_hit_rate(t, apart, 2, LM_EVICT_RECENT, &wants), 1.0 / 6,
                       1e-12);
    assert_int_equal(wants, 6);
    assert_float_equal(lm_expert_trace_hit_rate(t, apart, 2, LM_EVICT_FREQUENT, &wants), 2.0 / 6,
                       1e-12);
    /* every expert fits: only the first use of each misses */
    assert_float_equal(lm_expert_trace_hit_rate(t, apart, 4, LM_EVICT_RECENT, &wants), 3.0 / 6,
                       1e-12);
    /* no layer read apart: nothing to count */
    assert_float_equal(lm_expert_trace_hit_rate(t, none, 4, LM_EVICT_RECENT, &wants), 0, 0);
    assert_int_equal(wants, 0);
    lm_expert_trace_free(t);

    /* a prompt's pass of four rows fills the cache; the one-row passes
     * after it are what count: 3 then 2 (two slots: 2 and 3 were read
     * last, so both hit) */
    t = parse("lamina-expert-trace 1 1 4\n0 4 0 1 2 3\n0 1 3\n0 1 2\n", 1, 4);
    assert_non_null(t);
    assert_float_equal(lm_expert_trace_hit_rate(t, apart, 2, LM_EVICT_RECENT, &wants), 1.0,
                       1e-12);
    assert_int_equal(wants, 2);
    lm_expert_trace_free(t);
}

/* A session of a model with experts stores its routing when freed, and
 * the model's next plan finds it; a run too short stores nothing. */
static void test_session_stores(void **state)
{
    (void)state;
    char dir[] = "/tmp/lamina-trace-XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    setenv("XDG_CACHE_HOME", dir, 1);
    test_model_shape shape = {"qwen3moe", LM_TYPE_Q8_0, 2, 64, 4, 2, 64, false, 31, NULL, 0,
                              NULL, 0, 0, 8, 2};
    assert_int_equal(test_write_model_tmp(&shape, path, sizeof path), 0);
    lm_model *m = lm_model_load(path);
    assert_non_null(m);
    float logits[TEST_N_VOCAB];
    for (int n_tok = 8; n_tok <= 80; n_tok += 72) {
        lm_session *s = lm_session_new(m, 128, 8);
        assert_non_null(s);
        const int32_t first = 5;
        assert_int_equal(lm_session_eval(s, &first, 1, false, logits), 0);
        for (int i = 1; i < n_tok; i++) {
            int32_t best = 0;
            for (int v = 1; v < TEST_N_VOCAB; v++)
                best = logits[v] > logits[best] ? v : best;
            assert_int_equal(lm_session_eval(s, &best, 1, false, logits), 0);
        }
        lm_session_free(s);
        lm_expert_trace *t = lm_expert_trace_load(m);
        if (n_tok == 8) { /* 8 tokens x 2 layers x 2 experts: too few */
            assert_null(t);
            continue;
        }
        assert_non_null(t);
        assert_int_equal(lm_expert_trace_wants(t), (uint64_t)n_tok * 2 * 2);
        lm_expert_trace_free(t);
    }
    lm_model_free(m);
    test_remove_model_tmp(path);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_session_stores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
