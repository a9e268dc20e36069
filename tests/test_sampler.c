/* Sampler tests.  Every random test uses a fixed seed, so the statistical
 * checks are deterministic: they either always pass or always fail. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sampler.h"

/* Parameters with every filter off, temperature 1: plain softmax sampling. */
static lm_sampler_params plain(uint64_t seed)
{
    lm_sampler_params p = lm_sampler_default_params();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

/* The sampler may modify logits, so each draw gets a fresh copy. */
static int32_t sample_copy(lm_sampler *s, const float *logits, int32_t n)
{
    float buf[16];
    assert_true(n <= 16);
    memcpy(buf, logits, (size_t)n * sizeof *buf);
    return lm_sampler_sample(s, buf);
}

/* counts[i] = how often token i was drawn in `draws` samples. */
static void histogram(const lm_sampler_params *p, const float *logits, int32_t n, int draws,
                      int *counts)
{
    lm_sampler *s = lm_sampler_new(p, n);
    assert_non_null(s);
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int i = 0; i < draws; i++) {
        int32_t t = sample_copy(s, logits, n);
        assert_true(t >= 0 && t < n);
        counts[t]++;
    }
    lm_sampler_free(s);
}

static void test_defaults(void **state)
{
    (void)state;
    lm_sampler_params p = lm_sampler_default_params();
    assert_true(p.temp == 0.8f);
    assert_int_equal(p.top_k, 40);
    assert_true(p.top_p == 0.95f);
    assert_true(p.min_p == 0.05f);
    assert_true(p.repeat_penalty == 1.0f);
    assert_int_equal(p.repeat_last_n, 64);
}

static void test_greedy_argmax(void **state)
{
    (void)state;
    const float logits[6] = {0.1f, 2.5f, -1.0f, 3.0f, 3.0f, 1.0f};
    lm_sampler_params p = lm_sampler_default_params();
    p.temp = 0.0f;
    lm_sampler *s = lm_sampler_new(&p, 6);
    assert_non_null(s);
    for (int i = 0; i < 50; i++)
        assert_int_equal(sample_copy(s, logits, 6), 3); /* tie 3/4: lowest id */
    lm_sampler_free(s);
}

static void test_greedy_nan_inf(void **state)
{
    (void)state;
    float logits[4] = {NAN, 1.0f, INFINITY, NAN};
    lm_sampler_params p = plain(1);
    p.temp = -1.0f;
    lm_sampler *s = lm_sampler_new(&p, 4);
    assert_int_equal(lm_sampler_sample(s, logits), 2);
    float all_nan[4] = {NAN, NAN, NAN, NAN};
    int32_t t = lm_sampler_sample(s, all_nan);
    assert_true(t >= 0 && t < 4);
    lm_sampler_free(s);

    /* Sampling, not greedy: +inf wins outright, NaN never drawn. */
    float mixed[4] = {NAN, 1.0f, INFINITY, 2.0f};
    lm_sampler_params q = plain(2);
    int counts[4];
    histogram(&q, mixed, 4, 200, counts);
    assert_int_equal(counts[2], 200);
}

static void test_same_seed_same_sequence(void **state)
{
    (void)state;
    const float logits[8] = {1.0f, 1.2f, 0.8f, 1.1f, 0.9f, 1.0f, 0.7f, 1.3f};
    lm_sampler_params pa = plain(12345), pb = plain(12345), pc = plain(12346);
    lm_sampler *a = lm_sampler_new(&pa, 8);
    lm_sampler *b = lm_sampler_new(&pb, 8);
    lm_sampler *c = lm_sampler_new(&pc, 8);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        int32_t ta = sample_copy(a, logits, 8);
        assert_int_equal(ta, sample_copy(b, logits, 8));
        differ += ta != sample_copy(c, logits, 8);
    }
    /* Independent streams over 8 near-uniform tokens disagree ~85% of the time. */
    assert_true(differ > 500);
    lm_sampler_free(a);
    lm_sampler_free(b);
    lm_sampler_free(c);
}

static void test_top_k_1_is_greedy(void **state)
{
    (void)state;
    const float logits[5] = {0.5f, 0.4f, 0.6f, 0.59f, -2.0f};
    lm_sampler_params p = lm_sampler_default_params();
    p.temp = 5.0f; /* a hot temperature would spread the draws without top-k */
    p.top_k = 1;
    p.seed = 7;
    int counts[5];
    histogram(&p, logits, 5, 500, counts);
    assert_int_equal(counts[2], 500);
}

/* Frequencies over 20000 draws match softmax(logits / temp) within 0.015
 * absolute (the largest standard error here is ~0.0035). */
static void check_softmax_freqs(float temp, uint64_t seed)
{
    const float logits[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    const int draws = 20000;
    lm_sampler_params p = plain(seed);
    p.temp = temp;
    int counts[4];
    histogram(&p, logits, 4, draws, counts);
    double z = 0.0, e[4];
    for (int i = 0; i < 4; i++)
        z += e[i] = exp(logits[i] / temp);
    for (int i = 0; i < 4; i++) {
        double freq = (double)counts[i] / draws;
        assert_true(fabs(freq - e[i] / z) < 0.015);
    }
}

static void test_softmax_frequencies(void **state)
{
    (void)state;
    check_softmax_freqs(1.0f, 42);
    check_softmax_freqs(0.5f, 43);
}

/* probs 0.5, 0.3, 0.15, 0.05 as logits. */
static void four_probs(float *logits)
{
    const double p[4] = {0.5, 0.3, 0.15, 0.05};
    for (int i = 0; i < 4; i++)
        logits[i] = (float)log(p[i]);
}

static void test_top_p(void **state)
{
    (void)state;
    float logits[4];
    four_probs(logits);
    /* Nucleus for 0.75: 0.5 < 0.75, 0.5 + 0.3 >= 0.75, so tokens 0 and 1. */
    for (int k = 0; k <= 4; k += 4) { /* both the untruncated and top-k paths */
        lm_sampler_params p = plain(99);
        p.top_p = 0.75f;
        p.top_k = k;
        int counts[4];
        histogram(&p, logits, 4, 5000, counts);
        assert_true(counts[0] > 0 && counts[1] > 0);
        assert_int_equal(counts[2], 0);
        assert_int_equal(counts[3], 0);
        /* renormalised over the nucleus: 0.5/0.8 = 0.625 */
        assert_true(fabs(counts[0] / 5000.0 - 0.625) < 0.03);
    }
    /* A tiny top_p still keeps the best token. */
    lm_sampler_params p = plain(5);
    p.top_p = 0.01f;
    int counts[4];
    histogram(&p, logits, 4, 300, counts);
    assert_int_equal(counts[0], 300);
}

static void test_top_p_after_top_k(void **state)
{
    (void)state;
    float logits[4];
    four_probs(logits);
    /* top_k 2 leaves 0.625/0.375; top_p 0.6 over those keeps token 0 alone,
     * where over the whole vocabulary it would keep tokens 0 and 1. */
    lm_sampler_params p = plain(3);
    p.top_k = 2;
    p.top_p = 0.6f;
    int counts[4];
    histogram(&p, logits, 4, 1000, counts);
    assert_int_equal(counts[0], 1000);
}

static void test_min_p(void **state)
{
    (void)state;
    float logits[4];
    four_probs(logits);
    /* min_p 0.25 of p_max 0.5 is 0.125: drops only the 0.05 token. */
    for (int k = 0; k <= 4; k += 4) {
        lm_sampler_params p = plain(11);
        p.min_p = 0.25f;
        p.top_k = k;
        int counts[4];
        histogram(&p, logits, 4, 5000, counts);
        assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
        assert_int_equal(counts[3], 0);
    }
    /* Combined with top_p 0.9 (tokens 0-2): min_p 0.5 keeps 0 and 1. */
    lm_sampler_params p = plain(12);
    p.top_p = 0.9f;
    p.min_p = 0.5f;
    int counts[4];
    histogram(&p, logits, 4, 5000, counts);
    assert_true(counts[0] > 0 && counts[1] > 0);
    assert_int_equal(counts[2] + counts[3], 0);
}

static void test_repetition_penalty(void **state)
{
    (void)state;
    /* Token 0 leads (2.0 vs 1.8); penalised by 1.5 it drops to 1.33.
     * Token 2 is negative: penalised it must fall further (-1 -> -1.5),
     * not rise. */
    const float logits[3] = {2.0f, 1.8f, -1.0f};
    lm_sampler_params p = plain(1);
    p.temp = 0.0f;
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 4;
    lm_sampler *s = lm_sampler_new(&p, 3);
    assert_int_equal(sample_copy(s, logits, 3), 0);
    lm_sampler_accept(s, 0);
    lm_sampler_accept(s, 0); /* repeated: still penalised once */
    lm_sampler_accept(s, 2);
    float buf[3] = {2.0f, 1.8f, -1.0f};
    assert_int_equal(lm_sampler_sample(s, buf), 1);
    assert_true(fabsf(buf[0] - 2.0f / 1.5f) < 1e-6f);
    assert_true(fabsf(buf[2] - -1.5f) < 1e-6f);
    /* Four more tokens push 0 out of the window of 4. */
    for (int i = 0; i < 4; i++)
        lm_sampler_accept(s, 1);
    assert_int_equal(sample_copy(s, logits, 3), 0);
    lm_sampler_free(s);
}

static void test_single_finite(void **state)
{
    (void)state;
    float logits[6];
    for (int i = 0; i < 6; i++)
        logits[i] = -INFINITY;
    logits[4] = -100.0f;
    lm_sampler_params cases[3] = {plain(1), lm_sampler_default_params(), plain(2)};
    cases[2].top_p = 0.5f;
    cases[2].temp = 3.0f;
    for (int c = 0; c < 3; c++) {
        int counts[6];
        histogram(&cases[c], logits, 6, 200, counts);
        assert_int_equal(counts[4], 200);
    }
    lm_sampler_params g = plain(1);
    g.temp = 0.0f;
    int counts[6];
    histogram(&g, logits, 6, 10, counts);
    assert_int_equal(counts[4], 10);
}

/* A 150k vocabulary: the thresholded top-p gather must agree with a brute
 * force full sort, and top-k must only draw from the k best. */
enum { BIG = 150000 };

static float *big_logits(uint64_t seed)
{
    float *l = malloc(BIG * sizeof *l);
    assert_non_null(l);
    uint64_t x = seed;
    for (int i = 0; i < BIG; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        l[i] = (float)((x >> 40) % 2000) / 100.0f - 10.0f; /* -10 .. 10 */
    }
    return l;
}

static int cmp_float_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The logit of the last token inside the top-p nucleus, by full sort. */
static float nucleus_cutoff(const float *l, float top_p)
{
    float *sorted = malloc(BIG * sizeof *sorted);
    memcpy(sorted, l, BIG * sizeof *sorted);
    qsort(sorted, BIG, sizeof *sorted, cmp_float_desc);
    double z = 0.0, cum = 0.0;
    for (int i = 0; i < BIG; i++)
        z += exp((double)sorted[i] - sorted[0]);
    float cut = sorted[BIG - 1];
    for (int i = 0; i < BIG; i++) {
        cum += exp((double)sorted[i] - sorted[0]);
        if (cum >= top_p * z) {
            cut = sorted[i];
            break;
        }
    }
    free(sorted);
    return cut;
}

static void test_big_vocab(void **state)
{
    (void)state;
    float *l = big_logits(77);
    float *buf = malloc(BIG * sizeof *buf);
    const float cut = nucleus_cutoff(l, 0.5f);

    lm_sampler_params p = plain(5);
    p.top_p = 0.5f;
    lm_sampler *s = lm_sampler_new(&p, BIG);
    for (int i = 0; i < 300; i++) {
        memcpy(buf, l, BIG * sizeof *buf);
        assert_true(l[lm_sampler_sample(s, buf)] >= cut);
    }
    lm_sampler_free(s);

    lm_sampler_params q = lm_sampler_default_params();
    q.seed = 6;
    q.min_p = 0.0f;
    q.top_p = 1.0f;
    s = lm_sampler_new(&q, BIG);
    float *sorted = malloc(BIG * sizeof *sorted);
    memcpy(sorted, l, BIG * sizeof *sorted);
    qsort(sorted, BIG, sizeof *sorted, cmp_float_desc);
    for (int i = 0; i < 300; i++) {
        memcpy(buf, l, BIG * sizeof *buf);
        assert_true(l[lm_sampler_sample(s, buf)] >= sorted[39]);
    }
    lm_sampler_free(s);
    free(sorted);
    free(buf);
    free(l);
}

/* Many ties and a flat distribution: the nucleus is a long run of equal
 * logits cut by id order.  The drawn tokens must lie inside the prefix a full
 * sort finds (one token of slack for rounding at the cut) and reach close to
 * its end. */
static void test_big_vocab_ties(void **state)
{
    (void)state;
    float *l = malloc(BIG * sizeof *l), *buf = malloc(BIG * sizeof *buf);
    for (int i = 0; i < BIG; i++)
        l[i] = (float)(i % 7) * 0.05f;
    /* rank in (logit desc, id asc) order, computed per tie group */
    int group_start[7], per_group[7] = {0};
    for (int i = 0; i < BIG; i++)
        per_group[i % 7]++;
    double z = 0.0;
    for (int g = 0; g < 7; g++)
        z += per_group[g] * exp(l[g] - l[6]);
    int acc = 0;
    for (int g = 6; g >= 0; g--) {
        group_start[g] = acc;
        acc += per_group[g];
    }
    int cut = 0; /* brute-force nucleus length */
    double cum = 0.0;
    for (int g = 6; g >= 0 && cum < 0.3 * z; g--)
        for (int j = 0; j < per_group[g] && cum < 0.3 * z; j++, cut++)
            cum += exp(l[g] - l[6]);

    lm_sampler_params p = plain(8);
    p.top_p = 0.3f;
    lm_sampler *s = lm_sampler_new(&p, BIG);
    int max_rank = 0;
    for (int i = 0; i < 300; i++) {
        memcpy(buf, l, BIG * sizeof *buf);
        int32_t t = lm_sampler_sample(s, buf);
        int rank = group_start[t % 7] + t / 7;
        assert_true(rank <= cut);
        if (rank > max_rank)
            max_rank = rank;
    }
    assert_true(max_rank > cut * 9 / 10);
    lm_sampler_free(s);
    free(buf);
    free(l);
}

static void test_new_rejects_bad_vocab(void **state)
{
    (void)state;
    lm_sampler_params p = lm_sampler_default_params();
    assert_null(lm_sampler_new(&p, 0));
    lm_sampler_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_greedy_argmax),
        cmocka_unit_test(test_greedy_nan_inf),
        cmocka_unit_test(test_same_seed_same_sequence),
        cmocka_unit_test(test_top_k_1_is_greedy),
        cmocka_unit_test(test_softmax_frequencies),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_top_p_after_top_k),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_single_finite),
        cmocka_unit_test(test_big_vocab),
        cmocka_unit_test(test_big_vocab_ties),
        cmocka_unit_test(test_new_rejects_bad_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
