/* The CPU attention (cpu/attention.c, cpu/attention_x86.c): every kernel
 * path this CPU has gives the portable path's bits, for one token (decode,
 * ggml_vec_dot_f16's order) and for several (tinyBLAS's order), for head
 * sizes that take each kernel or fall back, positions that leave partial
 * blocks, grouped-query heads beyond one pass, and a sliding window.  And
 * the portable path against a double-precision softmax attention, within
 * what its fp16 roundings of the queries and the probabilities allow. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels.h"
#include "ops.h"

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static float rnd_sym(float scale) /* [-scale, scale) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0) * scale;
}

typedef struct {
    int n_head, n_head_kv, head_dim;
} heads;

/* A double-precision attention of row t, head h (positions [first, n_pos)). */
static void reference_row(double *o, const float *q, const float *kf, const float *vf, int n_pos,
                          int first, const heads *hs, int h, float kq_scale)
{
    const int hd = hs->head_dim, kvh = h / (hs->n_head / hs->n_head_kv);
    const int kv_dim = hs->n_head_kv * hd;
    double *w = malloc((size_t)n_pos * sizeof *w), max = -INFINITY, sum = 0;
    assert_non_null(w);
    for (int p = first; p < n_pos; p++) {
        double s = 0;
        for (int d = 0; d < hd; d++)
            s += (double)q[h * hd + d] * kf[(size_t)p * kv_dim + kvh * hd + d];
        w[p] = s * kq_scale;
        max = w[p] > max ? w[p] : max;
    }
    for (int p = first; p < n_pos; p++)
        sum += w[p] = exp(w[p] - max);
    for (int d = 0; d < hd; d++) {
        o[d] = 0;
        for (int p = first; p < n_pos; p++)
            o[d] += w[p] / sum * vf[(size_t)p * kv_dim + kvh * hd + d];
    }
    free(w);
}

static void check_case(const heads *hs, int n, int pos0, int window)
{
    const int hd = hs->head_dim, n_ctx = pos0 + n + 7; /* a cache wider than used */
    const int q_dim = hs->n_head * hd, kv_dim = hs->n_head_kv * hd;
    const float kq_scale = 1.0f / sqrtf((float)hd);
    float *q = malloc((size_t)n * q_dim * sizeof *q);
    float *kf = malloc((size_t)n_ctx * kv_dim * sizeof *kf);
    float *vf = malloc((size_t)n_ctx * kv_dim * sizeof *vf);
    lm_fp16 *k = malloc((size_t)n_ctx * kv_dim * sizeof *k);
    lm_fp16 *v = malloc((size_t)n_ctx * kv_dim * sizeof *v);
    const size_t scratch_floats =
        lm_attention_scratch_floats(n_ctx, hd) * (size_t)omp_get_max_threads();
    float *scratch = malloc(scratch_floats * sizeof *scratch);
    float *want = malloc((size_t)n * q_dim * sizeof *want);
    float *got = malloc((size_t)n * q_dim * sizeof *got);
    assert_true(q && kf && vf && k && v && scratch && want && got);
    for (size_t i = 0; i < (size_t)n * q_dim; i++)
        q[i] = rnd_sym(2.0f);
    for (size_t i = 0; i < (size_t)n_ctx * kv_dim; i++) {
        kf[i] = rnd_sym(2.0f);
        vf[i] = rnd_sym(1.0f);
    }
    lm_store_fp16(k, kf, n_ctx, kv_dim, 0);
    lm_store_fp16(v, vf, n_ctx, kv_dim, 0);
    for (size_t i = 0; i < (size_t)n_ctx * kv_dim; i++) { /* what the cache holds */
        kf[i] = lm_half_to_float(k[i]);
        vf[i] = lm_half_to_float(v[i]);
    }

    lm_attention_on(LM_CPU_PORTABLE, want, q, k, v, n, pos0, hs->n_head, hs->n_head_kv, hd, window,
                    kq_scale, scratch, n_ctx);
    /* the portable path against the reference: q and the probabilities
     * are rounded to fp16 on the way (relative 2^-11 each) */
    double o[1024];
    for (int t = 0; t < n; t++)
        for (int h = 0; h < hs->n_head; h++) {
            const int n_pos = pos0 + t + 1;
            const int first = window > 0 && n_pos > window ? n_pos - window : 0;
            reference_row(o, q + (size_t)t * q_dim, kf, vf, n_pos, first, hs, h, kq_scale);
            for (int d = 0; d < hd; d++) {
                const float y = want[(size_t)t * q_dim + h * hd + d];
                if (!(fabs(y - o[d]) <= 4e-3)) {
                    print_error("portable: t=%d head %d dim %d: %.7g, reference %.7g\n", t, h, d, y,
                                o[d]);
                    fail();
                }
            }
        }
    for (int path = LM_CPU_AVX2; path <= (int)lm_cpu_detect_path(); path++) {
        memset(got, 0xFF, (size_t)n * q_dim * sizeof *got);
        lm_attention_on((lm_cpu_path)path, got, q, k, v, n, pos0, hs->n_head, hs->n_head_kv, hd,
                        window, kq_scale, scratch, n_ctx);
        for (size_t i = 0; i < (size_t)n * q_dim; i++)
            if (memcmp(&got[i], &want[i], sizeof got[i]) != 0) {
                print_error("%s: heads %d/%d of %d, %d tokens at %d, window %d: out[%zu] = "
                            "%.9g, portable %.9g\n",
                            lm_cpu_path_name((lm_cpu_path)path), hs->n_head, hs->n_head_kv, hd, n,
                            pos0, window, i, got[i], want[i]);
                fail();
            }
    }
    free(q), free(kf), free(vf), free(k), free(v), free(scratch), free(want), free(got);
}

static void test_attention_paths(void **state)
{
    (void)state;
    /* 64, 128 and 256: every kernel, the sizes it has as constants; 80: tinyBLAS order by SIMD,
     * vec_dot's scores portable; 40: only the outputs by SIMD (AVX2); 32 and 24 heads on one KV
     * head: two passes, the second one whole or not */
    const heads hs[] = {{8, 2, 64}, {4, 4, 128}, {2, 1, 256}, {6, 2, 80},
                        {2, 1, 40}, {32, 1, 64}, {24, 1, 64}};
    const int tokens[] = {1, 2, 7, 33};
    const int pos0s[] = {0, 5, 100};
    const int windows[] = {0, 13};
    for (size_t h = 0; h < sizeof hs / sizeof hs[0]; h++)
        for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
            for (size_t p = 0; p < sizeof pos0s / sizeof pos0s[0]; p++)
                for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++)
                    check_case(&hs[h], tokens[t], pos0s[p], windows[w]);
    for (int p = LM_CPU_AVX2; p <= (int)lm_cpu_detect_path(); p++)
        print_message("the %s path: the portable bits\n", lm_cpu_path_name((lm_cpu_path)p));
    for (int p = lm_cpu_detect_path() + 1; p < LM_CPU_PATH_COUNT; p++)
        print_message("skipped: the %s path (this CPU lacks it)\n",
                      lm_cpu_path_name((lm_cpu_path)p));
}

/* A long prompt: many full blocks, and a window that skips blocks. */
static void test_attention_long(void **state)
{
    (void)state;
    const heads hs = {4, 1, 64};
    check_case(&hs, 40, 600, 0);
    check_case(&hs, 40, 600, 257);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_paths),
        cmocka_unit_test(test_attention_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
