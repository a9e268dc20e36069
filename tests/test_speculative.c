/* Speculative decoding (src/engine/speculative.h).
 *
 *  - lm_session_verify gives, for a run of n tokens, bit for bit the logits
 *    of feeding them one pass at a time (CPU and OpenCL; the default model
 *    after a long prompt, where attention's summation order shows);
 *  - greedy decoding with a draft model or with prompt lookup gives plain
 *    greedy decoding's tokens, with a fixed proposal length and with the
 *    adaptive one, on the CPU, under a plan streamed from disk, and on the
 *    OpenCL device;
 *  - with sampling, the tokens follow the target's distribution: over 3000
 *    seeds the second generated token's counts against its exact law (one
 *    pass per first token), by a chi-square test at p = 1e-4;
 *  - a draft with another vocabulary is refused. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "model_writer.h"
#include "planned_session.h"
#include "sampler.h"
#include "session.h"
#include "speculative.h"
#include "tokenizer.h"

#define N_CTX 128
#define N_BATCH 32
#define N_GEN 40
#define LONG_PROMPT 100

static lm_model *g_target, *g_draft, *g_real;
static char g_target_path[256], g_draft_path[256];
static const int32_t g_prompt[] = {5, 17, 33, 2, 40, 41, 9, 5, 17, 33};
#define N_PROMPT ((int)(sizeof g_prompt / sizeof *g_prompt))

static int setup(void **state)
{
    (void)state;
    test_model_shape target = {"llama", LM_TYPE_Q8_0, 4, 256, 4, 2, 512, false, 17, NULL, 0, NULL, 0, 0, 0, 0};
    test_model_shape draft = {"llama", LM_TYPE_Q4_0, 2, 128, 4, 2, 256, false, 18, NULL, 0, NULL, 0, 0, 0, 0};
    if (test_write_model_tmp(&target, g_target_path, sizeof g_target_path) != 0 ||
        test_write_model_tmp(&draft, g_draft_path, sizeof g_draft_path) != 0 ||
        !(g_target = lm_model_load(g_target_path)) || !(g_draft = lm_model_load(g_draft_path)))
        return -1;
    const char *path = getenv("LAMINA_TEST_MODEL");
    if (path && *path)
        g_real = lm_model_load(path);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lm_model_free(g_target);
    lm_model_free(g_draft);
    lm_model_free(g_real);
    test_remove_model_tmp(g_target_path);
    test_remove_model_tmp(g_draft_path);
    return 0;
}

static lm_model *need_real(void)
{
    if (g_real)
        return g_real;
    if (getenv("CI"))
        fail_msg("the default model is needed under CI ($LAMINA_TEST_MODEL)");
    skip();
    return NULL;
}

/* ---- verification rows are one-token passes, bit for bit */

static void check_verify_bits(const lm_model *m, const char *backend, const char *what)
{
    lm_session *a = lm_session_new_backend(m, N_CTX, 1, N_BATCH, backend, NULL);
    lm_session *b = lm_session_new_backend(m, N_CTX, 1, N_BATCH, backend, NULL);
    assert_non_null(a);
    assert_non_null(b);
    const size_t nv = m->hp.n_vocab;
    const int32_t run[] = {7, 11, 13, 3, 21, 8};
    const int n = (int)(sizeof run / sizeof *run);
    float *va = malloc(n * nv * sizeof(float)), *vb = malloc(n * nv * sizeof(float));
    /* a long prompt: over few positions the two summation orders of
     * attention (one token, several) often round alike */
    int32_t prompt[LONG_PROMPT];
    for (int i = 0; i < LONG_PROMPT; i++)
        prompt[i] = (int32_t)(1 + (i * 37) % (TEST_N_VOCAB - 1));
    assert_int_equal(lm_session_eval(a, prompt, LONG_PROMPT, false, NULL), 0);
    assert_int_equal(lm_session_eval(b, prompt, LONG_PROMPT, false, NULL), 0);
    assert_int_equal(lm_session_verify(a, 0, n, run, va), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(lm_session_eval(b, &run[i], 1, false, vb + i * nv), 0);
    for (int i = 0; i < n; i++)
        if (memcmp(va + i * nv, vb + i * nv, nv * sizeof(float)) != 0)
            fail_msg("%s: verification row %d differs from a one-token pass", what, i);
    /* and after forgetting the last three, the rest goes on as if they never were */
    lm_session_seq_rm(a, 0, LONG_PROMPT + 3);
    lm_session_seq_rm(b, 0, LONG_PROMPT + 3);
    assert_int_equal(lm_session_verify(a, 0, 2, run + 4, va), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(lm_session_eval(b, &run[4 + i], 1, false, vb + i * nv), 0);
    assert_memory_equal(va, vb, 2 * nv * sizeof(float));
    free(va);
    free(vb);
    lm_session_free(a);
    lm_session_free(b);
}

static void test_verify_bits_cpu(void **state)
{
    (void)state;
    check_verify_bits(g_target, "cpu", "test model, cpu");
}

static void test_verify_bits_real(void **state)
{
    (void)state;
    check_verify_bits(need_real(), "cpu", "SmolLM2, cpu");
}

/* ---- greedy: the tokens of plain decoding */

/* Plain greedy decoding's tokens (up to N_GEN, or an end of generation). */
static int plain_greedy(lm_session *s, const int32_t *prompt, int n_prompt, int32_t *out)
{
    const size_t nv = s->model->hp.n_vocab;
    float *logits = malloc(nv * sizeof(float));
    lm_sampler_params sp = lm_sampler_default_params();
    sp.temp = 0;
    lm_sampler *smp = lm_sampler_new(&sp, (int32_t)nv);
    assert_int_equal(lm_session_eval(s, prompt, n_prompt, false, logits), 0);
    int n = 0;
    for (; n < N_GEN; n++) {
        out[n] = lm_sampler_sample(smp, logits);
        if (lm_tokenizer_is_eog(s->model->tokenizer, out[n]) || n + 1 == N_GEN)
            break;
        assert_int_equal(lm_session_eval(s, &out[n], 1, false, logits), 0);
    }
    free(logits);
    lm_sampler_free(smp);
    return n + 1;
}

static int spec_greedy(lm_session *t, lm_session *d, bool lookup, bool fixed, int draft_max,
                       const int32_t *prompt, int n_prompt, int32_t *out, lm_spec_stats *stats)
{
    lm_spec_params p = lm_spec_default_params();
    p.lookup = lookup;
    p.fixed = fixed;
    p.draft_max = draft_max;
    p.draft_p_min = 0.0f; /* propose all the way: the most rejections */
    lm_sampler_params sp = lm_sampler_default_params();
    sp.temp = 0;
    lm_spec *x = lm_spec_new(t, d, &p, &sp);
    assert_non_null(x);
    assert_int_equal(lm_spec_prompt(x, prompt, n_prompt, &out[0]), 0);
    int n = 1;
    while (n < N_GEN && !lm_tokenizer_is_eog(t->model->tokenizer, out[n - 1])) {
        int32_t got[LM_SPEC_MAX_DRAFT + 1];
        const int k = lm_spec_next(x, got, N_GEN - n);
        assert_true(k >= 1);
        for (int i = 0; i < k && n < N_GEN; i++) {
            out[n++] = got[i];
            if (lm_tokenizer_is_eog(t->model->tokenizer, got[i]))
                break;
        }
    }
    *stats = *lm_spec_get_stats(x);
    lm_spec_free(x);
    return n;
}

/* Greedy with a draft (fixed k = 4, then adaptive) and with lookup, each
 * against plain decoding on an engine made by make(). */
static void check_greedy(const lm_model *t, const lm_model *d, const int32_t *prompt,
                         int n_prompt, lm_session *(*make)(const lm_model *), const char *what)
{
    int32_t want[N_GEN], got[N_GEN];
    lm_session *s = make(t);
    assert_non_null(s);
    const int n_want = plain_greedy(s, prompt, n_prompt, want);
    lm_session_free(s);
    struct {
        bool lookup, fixed;
        int k;
    } modes[] = {{false, true, 4}, {false, false, 16}, {true, true, 8}, {true, false, 16}};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        if (!modes[i].lookup && !d)
            continue;
        lm_session *ts = make(t);
        lm_session *ds = modes[i].lookup ? NULL
                                         : lm_session_new_backend(d, N_CTX, 1, N_BATCH, "cpu", NULL);
        lm_spec_stats st;
        const int n_got = spec_greedy(ts, ds, modes[i].lookup, modes[i].fixed, modes[i].k, prompt,
                                      n_prompt, got, &st);
        if (n_got != n_want || memcmp(got, want, (size_t)n_want * sizeof *got) != 0) {
            for (int j = 0; j < n_want || j < n_got; j++)
                fprintf(stderr, "%s: %d: plain %d, speculative %d\n", what, j,
                        j < n_want ? want[j] : -1, j < n_got ? got[j] : -1);
            fail_msg("%s, %s, %s k %d: the tokens differ from plain greedy decoding", what,
                     modes[i].lookup ? "lookup" : "draft", modes[i].fixed ? "fixed" : "adaptive",
                     modes[i].k);
        }
        if (modes[i].fixed && !modes[i].lookup)
            assert_true(st.drafted > 0 && st.accepted < st.drafted); /* rejections were met */
        lm_session_free(ts);
        lm_session_free(ds);
    }
}

static lm_session *make_cpu(const lm_model *m)
{
    return lm_session_new_backend(m, N_CTX, 1, N_BATCH, "cpu", NULL);
}

static lm_session *make_streamed(const lm_model *m)
{
    const lm_placement place[] = {LM_PLACE_DISK, LM_PLACE_RAM, LM_PLACE_DISK, LM_PLACE_DISK};
    return test_planned_session(m, place, false, true, false, N_CTX, 1, N_BATCH);
}

static void test_greedy_cpu(void **state)
{
    (void)state;
    check_greedy(g_target, g_draft, g_prompt, N_PROMPT, make_cpu, "test models, cpu");
}

static void test_greedy_streamed(void **state)
{
    (void)state;
    check_greedy(g_target, g_draft, g_prompt, N_PROMPT, make_streamed,
                 "test models, target streamed from disk");
}

/* SmolLM2 with prompt lookup, on a prompt that repeats itself */
static void test_greedy_real_lookup(void **state)
{
    (void)state;
    lm_model *m = need_real();
    int32_t *ids;
    size_t n;
    const char *text = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
                       "def mul(a, b):\n";
    assert_int_equal(lm_tokenize(m->tokenizer, text, strlen(text), true, true, &ids, &n), 0);
    check_greedy(m, NULL, ids, (int)n, make_cpu, "SmolLM2, cpu");
    free(ids);
}

#ifdef LAMINA_OPENCL
static lm_session *make_opencl(const lm_model *m)
{
    return lm_session_new_backend(m, N_CTX, 1, N_BATCH, "opencl", NULL);
}

static void test_verify_bits_opencl(void **state)
{
    (void)state;
    check_verify_bits(g_target, "opencl", "test model, opencl");
}

static void test_verify_bits_real_opencl(void **state)
{
    (void)state;
    check_verify_bits(need_real(), "opencl", "SmolLM2, opencl");
}

static void test_greedy_opencl(void **state)
{
    (void)state;
    check_greedy(g_target, g_draft, g_prompt, N_PROMPT, make_opencl, "test models, opencl");
}
#endif

/* ---- sampling: the target's distribution */

#define N_RUNS 3000
/* Under the sanitizers (LAMINA_SANITIZED) the runs are for memory errors,
 * not for statistics, and ten times slower: a fifth of them, the same law. */
static int n_runs(void)
{
    const char *san = getenv("LAMINA_SANITIZED");
    return san && *san ? N_RUNS / 5 : N_RUNS;
}

/* The exact law of the second generated token: sum over the first t1 of
 * p(t1) p(t2 | t1), each from the target with the sampler's transforms. */
static void exact_second(const lm_sampler_params *sp, const int32_t *prompt, int n_prompt,
                         double *law)
{
    const int nv = (int)g_target->hp.n_vocab;
    lm_session *s = make_cpu(g_target);
    lm_sampler *smp = lm_sampler_new(sp, nv);
    float *logits = malloc((size_t)nv * sizeof(float));
    int32_t *ids = malloc((size_t)nv * sizeof *ids);
    float *p1 = calloc((size_t)nv, sizeof *p1), *probs = malloc((size_t)nv * sizeof *probs);
    assert_int_equal(lm_session_eval(s, prompt, n_prompt, false, logits), 0);
    int len = lm_sampler_dist(smp, logits, ids, probs);
    for (int i = 0; i < len; i++)
        p1[ids[i]] = probs[i];
    memset(law, 0, (size_t)nv * sizeof *law);
    for (int32_t t1 = 0; t1 < nv; t1++) {
        if (p1[t1] == 0.0f)
            continue;
        lm_session_seq_rm(s, 0, n_prompt);
        assert_int_equal(lm_session_eval(s, &t1, 1, false, logits), 0);
        len = lm_sampler_dist(smp, logits, ids, probs);
        for (int i = 0; i < len; i++)
            law[ids[i]] += (double)p1[t1] * probs[i];
    }
    free(logits);
    free(ids);
    free(p1);
    free(probs);
    lm_sampler_free(smp);
    lm_session_free(s);
}

/* Pearson's chi-square of counts against law (cells of fewer than 5
 * expected pooled), and the critical value at p = 1e-4 (Wilson-Hilferty). */
static void chi_square(const int *counts, const double *law, int n, int total, double *chi2,
                       double *crit)
{
    double pooled_e = 0, pooled_o = 0, x = 0;
    int cells = 0;
    for (int i = 0; i < n; i++) {
        const double e = law[i] * total;
        if (e < 5) {
            pooled_e += e;
            pooled_o += counts[i];
            continue;
        }
        x += (counts[i] - e) * (counts[i] - e) / e;
        cells++;
    }
    if (pooled_e > 0) {
        x += (pooled_o - pooled_e) * (pooled_o - pooled_e) / (pooled_e > 1 ? pooled_e : 1);
        cells++;
    }
    const double dof = cells - 1, z = 3.719;
    const double c = 1 - 2 / (9 * dof) + z * sqrt(2 / (9 * dof));
    *chi2 = x;
    *crit = dof * c * c * c;
}

static void check_sampling(bool lookup)
{
    const int nv = (int)g_target->hp.n_vocab;
    lm_sampler_params sp = lm_sampler_default_params();
    sp.temp = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    double *law = malloc((size_t)nv * sizeof *law);
    int *counts = calloc((size_t)nv, sizeof *counts);
    /* for lookup, a prompt where every first token has occurred, so that
     * there is always something to propose */
    int32_t prompt[TEST_N_VOCAB];
    int n_prompt = N_PROMPT;
    memcpy(prompt, g_prompt, sizeof g_prompt);
    if (lookup)
        for (n_prompt = 0; n_prompt < nv - 1; n_prompt++)
            prompt[n_prompt] = (int32_t)(1 + (n_prompt * 37) % (nv - 1));
    exact_second(&sp, prompt, n_prompt, law);
    lm_session *t = make_cpu(g_target), *d = lookup ? NULL : make_cpu(g_draft);
    lm_spec_params p = lm_spec_default_params();
    p.lookup = lookup;
    p.fixed = true;
    p.draft_max = 3;
    p.draft_p_min = 0.0f;
    uint64_t proposed = 0, accepted = 0;
    const int runs = n_runs();
    for (int run = 0; run < runs; run++) {
        sp.seed = 1000 + (uint64_t)run;
        lm_spec *x = lm_spec_new(t, d, &p, &sp);
        assert_non_null(x);
        int32_t first, got[LM_SPEC_MAX_DRAFT + 1];
        assert_int_equal(lm_spec_prompt(x, prompt, n_prompt, &first), 0);
        assert_true(lm_spec_next(x, got, 4) >= 1);
        counts[got[0]]++;
        proposed += lm_spec_get_stats(x)->drafted;
        accepted += lm_spec_get_stats(x)->accepted;
        lm_spec_free(x);
    }
    double chi2, crit;
    chi_square(counts, law, nv, runs, &chi2, &crit);
    fprintf(stderr, "%s: second token over %d seeds: chi-square %.1f (critical %.1f at p = 1e-4); "
                    "%llu proposed, %llu accepted\n", lookup ? "lookup" : "draft", runs, chi2,
            crit, (unsigned long long)proposed, (unsigned long long)accepted);
    assert_true(proposed > 0 && accepted > 0 && accepted < proposed);
    assert_true(chi2 < crit);
    free(law);
    free(counts);
    lm_session_free(t);
    lm_session_free(d);
}

static void test_sampling_draft(void **state)
{
    (void)state;
    check_sampling(false);
}

static void test_sampling_lookup(void **state)
{
    (void)state;
    check_sampling(true);
}

/* ---- a draft must share the vocabulary */

static void test_vocab_mismatch(void **state)
{
    (void)state;
    lm_model *real = need_real();
    assert_int_equal(lm_spec_check_vocab(real, g_draft), -1);
    assert_non_null(strstr(lm_last_error(), "vocabulary"));
    assert_int_equal(lm_spec_check_vocab(g_target, g_draft), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_bits_cpu),
        cmocka_unit_test(test_verify_bits_real),
        cmocka_unit_test(test_greedy_cpu),
        cmocka_unit_test(test_greedy_streamed),
        cmocka_unit_test(test_greedy_real_lookup),
#ifdef LAMINA_OPENCL
        cmocka_unit_test(test_verify_bits_opencl),
        cmocka_unit_test(test_verify_bits_real_opencl),
        cmocka_unit_test(test_greedy_opencl),
#endif
        cmocka_unit_test(test_sampling_draft),
        cmocka_unit_test(test_sampling_lookup),
        cmocka_unit_test(test_vocab_mismatch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
