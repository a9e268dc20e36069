/* The CPU matrix kernels against a double-precision reference built from the
 * registry's dequantizers.
 *
 * Tight check: W dequantized, the activations quantized by the kernels'
 * quantizer and dequantized again, summed in double.  Then the kernels and
 * the reference see the same numbers and may differ only in summation order
 * (plus, for Q4_1/Q5_1, ggml's fp16-rounded block sums s, which the reference
 * models).  Loose check: the same against the f32 activations, within the
 * bound activation quantization allows.  Every kernel path the CPU has
 * (portable, AVX2, AVX-512, AVX-512 VNNI); odd row counts, 1..3 blocks and
 * the model's real widths, token counts that leave partial tiles.  And the
 * VNNI path's results against the AVX2 path's, bit for bit. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "kernels.h"
#include "ops.h"
#include "quant.h"

/* ---- deterministic random numbers --------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static double rnd_uniform(void) /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float rnd_normal(void)
{
    double u = rnd_uniform() + 1e-12, v = rnd_uniform();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ---- the reference -------------------------------------------------------- */

/* The per-block m of a Q4_1/Q5_1 weight block (both start with d, m). */
static float affine_min(uint32_t type, const uint8_t *row, int64_t b)
{
    const size_t bs = lm_type_get(type)->type_size;
    lm_fp16 m;
    memcpy(&m, row + b * bs + 2, sizeof m);
    return lm_fp16_to_f32(m);
}

typedef struct {
    uint32_t type;
    int64_t rows, cols, n_tok;
    uint8_t *w;     /* quantized weights */
    float *wd;      /* dequantized */
    float *x;       /* f32 activations */
    uint8_t *xq;    /* activations in the vec_dot_type */
    float *xd;      /* dequantized */
    double *exact;  /* reference on xd (with Q8_1's s modelled) */
    double *mag;    /* sum |w * xd| */
    double *loose;  /* allowed error against the f32 activations */
    double *ref_f;  /* reference on x */
} problem;

static void make_problem(problem *p, uint32_t type, int64_t rows, int64_t cols, int64_t n_tok)
{
    const lm_type_info *ti = lm_type_get(type);
    const uint32_t at = lm_cpu_vec_dot_type(type);
    const lm_type_info *ai = lm_type_get(at);
    const size_t w_row = lm_row_size(type, cols), x_row = lm_row_size(at, cols);
    p->type = type;
    p->rows = rows;
    p->cols = cols;
    p->n_tok = n_tok;
    float *wf = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++)
        wf[i] = rnd_normal() * 0.05f + (i % 7 == 0 ? 0.02f : 0.0f);
    p->w = malloc(w_row * (size_t)rows);
    ti->quantize(wf, p->w, rows * cols);
    p->wd = malloc((size_t)(rows * cols) * sizeof(float));
    ti->dequantize(p->w, p->wd, rows * cols);
    free(wf);

    p->x = malloc((size_t)(n_tok * cols) * sizeof(float));
    for (int64_t i = 0; i < n_tok * cols; i++)
        p->x[i] = rnd_normal() * (i % 13 == 0 ? 3.0f : 1.0f);
    p->xq = malloc(x_row * (size_t)n_tok);
    p->xd = malloc((size_t)(n_tok * cols) * sizeof(float));
    for (int64_t t = 0; t < n_tok; t++) {
        lm_quantize_act(at, p->x + t * cols, p->xq + t * x_row, cols);
        ai->dequantize(p->xq + t * x_row, p->xd + t * cols, cols);
    }

    const size_t ny = (size_t)(rows * n_tok) * sizeof(double);
    p->exact = malloc(ny);
    p->mag = malloc(ny);
    p->loose = malloc(ny);
    p->ref_f = malloc(ny);
    const int abs = ai->block_size;
    for (int64_t t = 0; t < n_tok; t++) {
        const float *xd = p->xd + t * cols, *x = p->x + t * cols;
        for (int64_t r = 0; r < rows; r++) {
            const float *wd = p->wd + r * cols;
            double s = 0, m = 0, sf = 0, tol = 0;
            for (int64_t c0 = 0; c0 < cols; c0 += abs) {
                float amax = 0;
                for (int64_t c = c0; c < c0 + abs; c++)
                    amax = fmaxf(amax, fabsf(x[c]));
                for (int64_t c = c0; c < c0 + abs; c++) {
                    s += (double)wd[c] * xd[c];
                    m += fabs((double)wd[c] * xd[c]);
                    sf += (double)wd[c] * x[c];
                    /* activation rounding: half a step of the block's scale */
                    tol += fabs((double)wd[c]) * (amax / 254.0 * 1.001 + 1e-7 * fabs(x[c]));
                }
            }
            if (at == LM_TYPE_Q8_1) { /* ggml adds m_w * s_x, s rounded to fp16 */
                const lm_block_q8_1 *xb = (const lm_block_q8_1 *)(p->xq + t * x_row);
                for (int64_t b = 0; b < cols / 32; b++) {
                    int sq = 0;
                    for (int j = 0; j < 32; j++)
                        sq += xb[b].qs[j];
                    const double mw = affine_min(type, p->w + r * w_row, b);
                    const double sx = lm_fp16_to_f32(xb[b].s);
                    const double exact_s = (double)lm_fp16_to_f32(xb[b].d) * sq;
                    s += mw * (sx - exact_s);
                    m += fabs(mw * sx);
                    tol += fabs(mw * (sx - exact_s));
                }
            }
            p->exact[t * rows + r] = s;
            p->mag[t * rows + r] = m;
            p->ref_f[t * rows + r] = sf;
            p->loose[t * rows + r] = tol;
        }
    }
}

static void free_problem(problem *p)
{
    free(p->w);
    free(p->wd);
    free(p->x);
    free(p->xq);
    free(p->xd);
    free(p->exact);
    free(p->mag);
    free(p->loose);
    free(p->ref_f);
}

static double worst_rel = 0; /* largest tight error seen, reported at the end */

/* The product on one kernel path, into a fresh y (NaN-filled first, so that
 * an output left unwritten shows). */
static float *run_path(const problem *p, lm_cpu_path path)
{
    const int64_t ny = p->rows * p->n_tok;
    float *y = malloc((size_t)ny * sizeof(float));
    void *scratch = malloc(lm_cpu_matmul_scratch_size(p->type, p->cols, p->n_tok));
    for (int64_t i = 0; i < ny; i++)
        y[i] = NAN;
    lm_cpu_matmul_on(path, p->type, p->w, p->rows, p->cols, p->x, p->n_tok, y, scratch);
    free(scratch);
    return y;
}

static void check_matmul(const problem *p, lm_cpu_path path_id)
{
    const char *path = lm_cpu_path_name(path_id);
    const int64_t ny = p->rows * p->n_tok;
    float *y = run_path(p, path_id);
    for (int64_t i = 0; i < ny; i++) {
        const double err = fabs(y[i] - p->exact[i]);
        const double tight = 1e-5 * p->mag[i] + 1e-30;
        if (err / (p->mag[i] + 1e-30) > worst_rel)
            worst_rel = err / (p->mag[i] + 1e-30);
        if (!(err <= tight) || !(fabs(y[i] - p->ref_f[i]) <= p->loose[i] + tight)) {
            print_error("%s %s rows=%lld cols=%lld n_tok=%lld: y[%lld]=%.9g exact=%.9g "
                        "(tol %.3g) f32 ref=%.9g (tol %.3g)\n",
                        path, lm_type_name(p->type), (long long)p->rows, (long long)p->cols,
                        (long long)p->n_tok, (long long)i, y[i], p->exact[i], tight,
                        p->ref_f[i], p->loose[i] + tight);
            fail();
        }
    }
    free(y);
}

/* Every path this CPU has, from the portable one up (LAMINA_CPU does not
 * narrow the tests: each path is checked where the CPU can run it). */
static void check_all_paths(const problem *p)
{
    for (int path = LM_CPU_PORTABLE; path <= (int)lm_cpu_detect_path(); path++)
        check_matmul(p, (lm_cpu_path)path);
}

/* ---- the tests ---------------------------------------------------------- */

static const uint32_t weight_types[] = {
    LM_TYPE_F32,  LM_TYPE_F16,  LM_TYPE_BF16, LM_TYPE_Q4_0, LM_TYPE_Q4_1, LM_TYPE_Q5_0,
    LM_TYPE_Q5_1, LM_TYPE_Q8_0, LM_TYPE_Q4_K, LM_TYPE_Q5_K, LM_TYPE_Q6_K,
};
#define N_TYPES (sizeof weight_types / sizeof weight_types[0])

static void matmul_one_type(uint32_t type)
{
    const int bs = lm_type_get(type)->block_size;
    const int64_t cols_list[] = {bs, 2 * bs, 3 * bs, bs == 256 ? 768 : 576, 1536,
                                 bs == 1 ? 37 : 4 * bs};
    const int64_t tok_list[] = {1, 2, 3, 5, 17};
    const int64_t rows_list[] = {37, 1, 4};
    for (size_t ic = 0; ic < sizeof cols_list / sizeof cols_list[0]; ic++)
        for (size_t it = 0; it < sizeof tok_list / sizeof tok_list[0]; it++)
            for (size_t ir = 0; ir < sizeof rows_list / sizeof rows_list[0]; ir++) {
                problem p;
                make_problem(&p, type, rows_list[ir], cols_list[ic], tok_list[it]);
                check_all_paths(&p);
                free_problem(&p);
            }
}

static void test_matmul_all_types(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TYPES; i++) {
        assert_true(lm_cpu_supports(weight_types[i]));
        matmul_one_type(weight_types[i]);
    }
    char path[256];
    lm_cpu_path_describe(path, sizeof path);
    print_message("worst error / sum|w*x| = %.3g (kernels: %s)\n", worst_rel, path);
    /* the paths this CPU cannot run are not tested here: say so */
    for (int p = lm_cpu_detect_path() + 1; p < LM_CPU_PATH_COUNT; p++)
        print_message("skipped: the %s path (this CPU lacks it)\n", lm_cpu_path_name(p));
}

/* A prompt-sized product exercises the parallel paths and full tiles. */
static void test_matmul_prompt(void **state)
{
    (void)state;
    const uint32_t types[] = {LM_TYPE_Q4_1, LM_TYPE_Q8_0, LM_TYPE_Q4_K, LM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        problem p;
        make_problem(&p, types[i], 193, 512, 64);
        check_all_paths(&p);
        free_problem(&p);
    }
}

/* The AVX-512 VNNI panels give the AVX2 tiles' results bit for bit (the
 * OpenCL kernels and the fixtures rely on one order per type), and for the
 * k-quants so do the portable dots (the k-quant contract of
 * dot_portable.c): every type, token counts on both sides of the panel
 * threshold and past one packing's run of tokens (64 for Q4_0 and Q8_0, up
 * to 128 for the k-quants), row counts that leave partial panels. */
static bool is_kquant(uint32_t type)
{
    return type == LM_TYPE_Q4_K || type == LM_TYPE_Q5_K || type == LM_TYPE_Q6_K;
}

static int compare_paths(const problem *p, const float *a, lm_cpu_path path_b)
{
    float *b = run_path(p, path_b);
    const size_t n = (size_t)(p->rows * p->n_tok);
    for (size_t j = 0; j < n; j++)
        if (memcmp(&a[j], &b[j], sizeof a[j]) != 0) {
            print_error("%s rows=%lld n_tok=%lld: y[%zu] avx2 %.9g, %s %.9g\n",
                        lm_type_name(p->type), (long long)p->rows, (long long)p->n_tok, j, a[j],
                        lm_cpu_path_name(path_b), b[j]);
            fail();
        }
    free(b);
    return (int)n;
}

static void test_paths_same_bits(void **state)
{
    (void)state;
    if (lm_cpu_detect_path() < LM_CPU_AVX2) {
        print_message("skipped: the avx2 path (this CPU lacks it)\n");
        skip();
    }
    const bool vnni = lm_cpu_detect_path() >= LM_CPU_AVX512VNNI;
    if (!vnni)
        print_message("skipped: the avx512vnni path (this CPU lacks it)\n");
    const int64_t tok_list[] = {1, 2, 3, 4, 5, 7, 64, 70, 133};
    const int64_t rows_list[] = {16, 37, 193};
    int compared = 0, kquant = 0;
    for (size_t i = 0; i < N_TYPES; i++)
        for (size_t it = 0; it < sizeof tok_list / sizeof tok_list[0]; it++)
            for (size_t ir = 0; ir < sizeof rows_list / sizeof rows_list[0]; ir++) {
                const int64_t bs = lm_type_get(weight_types[i])->block_size;
                problem p;
                make_problem(&p, weight_types[i], rows_list[ir], bs == 256 ? 512 : 576,
                             tok_list[it]);
                float *a = run_path(&p, LM_CPU_AVX2);
                if (vnni)
                    compared += compare_paths(&p, a, LM_CPU_AVX512VNNI);
                if (is_kquant(p.type))
                    kquant += compare_paths(&p, a, LM_CPU_PORTABLE);
                free(a);
                free_problem(&p);
            }
    print_message("avx512vnni = avx2 bit for bit on %d outputs; k-quants: portable = avx2 on "
                  "%d\n", compared, kquant);
}

/* The fp16 roundings of the hot paths (F16C where the AVX2 kernels run)
 * give the reference conversion's bits: every fp16 value and the halfway
 * points around it, values past the largest half and into its subnormals,
 * and random floats of every exponent, at lengths that leave a tail. */
static void test_half_rounding(void **state)
{
    (void)state;
    enum { N = 3 * 65536 + 4099 };
    float *x = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
    lm_fp16 *h = malloc(N * sizeof(lm_fp16));
    int n = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        const float f = lm_fp16_to_f32((lm_fp16)i);
        if (isnan(f))
            continue;
        x[n++] = f;
        x[n++] = nextafterf(f, INFINITY);
        x[n++] = f * 1.0004882f; /* about half an fp16 step above */
    }
    srand(7);
    while (n < N) {
        uint32_t bits = ((uint32_t)rand() << 16) ^ (uint32_t)rand();
        float f;
        memcpy(&f, &bits, sizeof f);
        x[n++] = isnan(f) ? 65520.0f : f;
    }
    for (int len = N - 7; len <= N; len += 7) {
        lm_round_to_half(got, x, len, 1.0f);
        lm_store_fp16(h, x, 1, len, 0);
        for (int i = 0; i < len; i++) {
            const lm_fp16 want = lm_f32_to_fp16(x[i]);
            const float back = lm_fp16_to_f32(want);
            if (h[i] != want || memcmp(&got[i], &back, sizeof back) != 0) {
                print_error("%.9g: stored %#x, rounded %.9g; want %#x (%.9g)\n", x[i], h[i],
                            got[i], want, back);
                fail();
            }
        }
    }
    lm_round_to_half(got, x, 1000, 0.37f); /* the scaled form: the product, then rounded */
    for (int i = 0; i < 1000; i++) {
        const float back = lm_fp16_to_f32(lm_f32_to_fp16(x[i] * 0.37f));
        assert_memory_equal(&got[i], &back, sizeof back);
    }
    free(x);
    free(got);
    free(h);
}

/* The Q8_K activations (AVX2 where the kernels run) are the reference
 * quantizer's bit for bit: random rows of every scale, extremes of equal
 * magnitude and both signs (the first one gives the sign), a zero block. */
static void test_act_quant_q8_k(void **state)
{
    (void)state;
    enum { BLOCKS = 64, N = BLOCKS * 256 };
    float *x = malloc(N * sizeof(float));
    lm_block_q8_k *got = malloc(BLOCKS * sizeof *got), *want = malloc(BLOCKS * sizeof *want);
    srand(11);
    for (int i = 0; i < N; i++)
        x[i] = (float)((double)rand() / RAND_MAX - 0.5) * ldexpf(1.0f, i / 256 % 24 - 12);
    x[256 + 7] = 9.0f, x[256 + 90] = -9.0f;   /* block 1: + first */
    x[512 + 3] = -9.0f, x[512 + 200] = 9.0f;  /* block 2: - first */
    x[768 + 5] = 1.0f, x[768 + 6] = 127.49f;  /* block 3 */
    memset(x + 1024, 0, 256 * sizeof(float)); /* block 4 */
    memset(got, 0x5a, BLOCKS * sizeof *got);
    memset(want, 0xa5, BLOCKS * sizeof *want);
    lm_quantize_act(LM_TYPE_Q8_K, x, got, N);
    lm_type_get(LM_TYPE_Q8_K)->quantize(x, want, N);
    for (int b = 0; b < BLOCKS; b++) {
        assert_memory_equal(got[b].qs, want[b].qs, sizeof got[b].qs);
        assert_memory_equal(got[b].bsums, want[b].bsums, sizeof got[b].bsums);
        assert_memory_equal(&got[b].d, &want[b].d, sizeof got[b].d);
    }
    free(x);
    free(got);
    free(want);
}

static void test_vec_dot_types(void **state)
{
    (void)state;
    assert_int_equal(lm_cpu_vec_dot_type(LM_TYPE_Q4_0), LM_TYPE_Q8_0);
    assert_int_equal(lm_cpu_vec_dot_type(LM_TYPE_Q4_1), LM_TYPE_Q8_1);
    assert_int_equal(lm_cpu_vec_dot_type(LM_TYPE_Q5_1), LM_TYPE_Q8_1);
    assert_int_equal(lm_cpu_vec_dot_type(LM_TYPE_Q8_0), LM_TYPE_Q8_0);
    assert_int_equal(lm_cpu_vec_dot_type(LM_TYPE_Q6_K), LM_TYPE_Q8_K);
    assert_int_equal(lm_cpu_vec_dot_type(LM_TYPE_F16), LM_TYPE_F16);
    assert_false(lm_cpu_supports(LM_TYPE_Q8_K));
    assert_false(lm_cpu_supports(LM_TYPE_Q8_1));
    assert_false(lm_cpu_supports(999));
}

/* Activations are quantized the way ggml's AVX2 code does it: scale by
 * 127/amax, round half to even. */
static void test_act_quant_rounding(void **state)
{
    (void)state;
    float x[32] = {0};
    x[0] = 127.0f; /* amax 127: the multiplier is exactly 1 */
    x[1] = 2.5f;
    x[2] = -3.5f;
    x[3] = 0.5f;
    x[4] = -126.5f;
    lm_block_q8_0 b0;
    lm_quantize_act(LM_TYPE_Q8_0, x, &b0, 32);
    assert_int_equal(b0.qs[0], 127);
    assert_int_equal(b0.qs[1], 2);
    assert_int_equal(b0.qs[2], -4);
    assert_int_equal(b0.qs[3], 0);
    assert_int_equal(b0.qs[4], -126);
    assert_true(lm_fp16_to_f32(b0.d) == 1.0f);

    lm_block_q8_1 b1;
    lm_quantize_act(LM_TYPE_Q8_1, x, &b1, 32);
    assert_memory_equal(b1.qs, b0.qs, 32);
    assert_true(lm_fp16_to_f32(b1.s) == lm_fp16_to_f32(lm_f32_to_fp16(127 + 2 - 4 - 126)));

    float zero[32] = {0};
    lm_quantize_act(LM_TYPE_Q8_0, zero, &b0, 32);
    assert_true(lm_fp16_to_f32(b0.d) == 0.0f);
    for (int j = 0; j < 32; j++)
        assert_int_equal(b0.qs[j], 0);

    /* Q8_K: the scale from the signed extreme, bsums of 16. */
    float xk[256];
    for (int j = 0; j < 256; j++)
        xk[j] = (float)((j * 37) % 101 - 50) / 10.0f;
    xk[100] = -20.0f;
    lm_block_q8_k bk;
    lm_quantize_act(LM_TYPE_Q8_K, xk, &bk, 256);
    assert_int_equal(bk.qs[100], -127); /* iscale = -127/max, times max */
    assert_true(fabsf(bk.d - 20.0f / 127.0f) < 1e-7f);
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += bk.qs[16 * g + j];
        assert_int_equal(bk.bsums[g], s);
    }
}

static void test_get_row(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TYPES; i++) {
        const uint32_t type = weight_types[i];
        const lm_type_info *ti = lm_type_get(type);
        const int64_t rows = 5, cols = 2 * 256;
        float *wf = malloc(rows * cols * sizeof(float));
        float *all = malloc(rows * cols * sizeof(float));
        float row[512];
        for (int64_t j = 0; j < rows * cols; j++)
            wf[j] = rnd_normal();
        uint8_t *w = malloc(lm_row_size(type, cols) * rows);
        ti->quantize(wf, w, rows * cols);
        ti->dequantize(w, all, rows * cols);
        for (int64_t r = 0; r < rows; r++) {
            lm_cpu_get_row(type, w, cols, r, row);
            assert_memory_equal(row, all + r * cols, cols * sizeof(float));
        }
        free(w);
        free(all);
        free(wf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vec_dot_types),
        cmocka_unit_test(test_half_rounding),
        cmocka_unit_test(test_act_quant_rounding),
        cmocka_unit_test(test_act_quant_q8_k),
        cmocka_unit_test(test_get_row),
        cmocka_unit_test(test_matmul_all_types),
        cmocka_unit_test(test_matmul_prompt),
        cmocka_unit_test(test_paths_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
