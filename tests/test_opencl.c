/* The OpenCL kernels on the first device against the CPU references, on
 * random data: every weight type's fused matvec (over activations the device
 * quantizes) against lm_cpu_matmul_portable, every dequantizer against the
 * scalar reference in formats/quant.c (bit for bit), the activation
 * quantizers against the CPU's blocks; then the whole backend against the CPU
 * backend on small models the test writes itself.  No device: the test fails
 * when CI is set, and skips (exit 77) with a message otherwise. */
#define _POSIX_C_SOURCE 200809L /* setenv, truncate */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cl_device.h"
#include "error.h"
#include "expert_cache.h"
#include "kernels.h"
#include "model.h"
#include "model_writer.h"
#include "planned_session.h"
#include "quant.h"
#include "session.h"

static cl_context ctx;
static cl_command_queue queue;
static cl_program prog;

static const uint32_t types[] = {LM_TYPE_F32,  LM_TYPE_F16,  LM_TYPE_BF16, LM_TYPE_Q8_0,
                                 LM_TYPE_Q4_0, LM_TYPE_Q4_1, LM_TYPE_Q5_0, LM_TYPE_Q5_1,
                                 LM_TYPE_Q4_K, LM_TYPE_Q5_K, LM_TYPE_Q6_K};

static void lower(const char *s, char *out)
{
    while ((*out++ = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s)))
        s++;
}

static cl_mem buffer(size_t bytes, const void *data)
{
    cl_int err;
    cl_mem m = clCreateBuffer(ctx, CL_MEM_READ_WRITE | (data ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes, (void *)data, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static void run_kernel(const char *name, cl_uint dims, const size_t *gws, int nargs,
                       const size_t *sizes, const void *const *args)
{
    cl_int err;
    cl_kernel k = clCreateKernel(prog, name, &err);
    assert_int_equal(err, CL_SUCCESS);
    for (int i = 0; i < nargs; i++)
        assert_int_equal(clSetKernelArg(k, (cl_uint)i, sizes[i], args[i]), CL_SUCCESS);
    assert_int_equal(clEnqueueNDRangeKernel(queue, k, dims, NULL, gws, NULL, 0, NULL, NULL),
                     CL_SUCCESS);
    assert_int_equal(clFinish(queue), CL_SUCCESS);
    clReleaseKernel(k);
}

static float *random_floats(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = test_random(&seed) * (i % 7 == 0 ? 3.0f : 1.0f);
    return x;
}

/* Each type's matvec against the CPU product, for 1 and 5 tokens (a CPU
 * tile of 4 and one of 1, which differ in how they add the affine term).
 * The kernels repeat the AVX2 tiles' float operations in their order, so
 * where the CPU uses them (lm_cpu_use_avx2) the results are identical;
 * against the portable kernels, which sum in another order, within a few
 * roundings: 1e-5 of the row's scale. */
static void matvec_case(int NT)
{
    enum { ROWS = 13, COLS = 512 };
    const bool exact = lm_cpu_use_avx2();
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const uint32_t type = types[ti], act = lm_cpu_vec_dot_type(type);
        const size_t row = lm_row_size(type, COLS);
        float *wf = random_floats((size_t)ROWS * COLS, 1 + ti), *x = random_floats(NT * COLS, 99);
        uint8_t *w = malloc(row * ROWS);
        lm_type_get(type)->quantize(wf, w, (int64_t)ROWS * COLS);
        float y_cpu[5 * ROWS], y_cl[5 * ROWS];
        void *scratch = malloc(lm_cpu_matmul_scratch_size(type, COLS, NT));
        if (exact)
            lm_cpu_matmul(type, w, ROWS, COLS, x, NT, y_cpu, scratch);
        else
            lm_cpu_matmul_portable(type, w, ROWS, COLS, x, NT, y_cpu, scratch);

        /* the matrix second in a stack of two, as an expert's is read */
        uint8_t *stack = malloc(2 * row * ROWS);
        memset(stack, 0xa5, row * ROWS);
        memcpy(stack + row * ROWS, w, row * ROWS);
        cl_mem W = buffer(2 * row * ROWS, stack), X = buffer(sizeof(float) * NT * COLS, x);
        cl_mem aq = buffer(NT * COLS, NULL), ad = buffer(NT * COLS / 8, NULL),
               as = buffer(NT * COLS / 8, NULL), ab = buffer(NT * COLS / 4, NULL),
               af = buffer(NT * COLS * 4, NULL), Y = buffer(sizeof(float) * NT * ROWS, NULL);
        cl_mem a_f = act == LM_TYPE_F32 ? X : af;
        if (act == LM_TYPE_Q8_0 || act == LM_TYPE_Q8_1)
            run_kernel("quantize_q8_0", 1, (size_t[]){NT * COLS / 32}, 4,
                       (size_t[]){8, 8, 8, 8}, (const void *[]){&X, &aq, &ad, &as});
        else if (act == LM_TYPE_Q8_K)
            run_kernel("quantize_q8_k", 1, (size_t[]){NT * COLS / 256}, 4,
                       (size_t[]){8, 8, 8, 8}, (const void *[]){&X, &aq, &ad, &ab});
        else if (act != LM_TYPE_F32)
            run_kernel(act == LM_TYPE_F16 ? "round_to_f16" : "round_to_bf16", 1,
                       (size_t[]){NT * COLS}, 2, (size_t[]){8, 8}, (const void *[]){&X, &af});
        char name[32] = "matvec_";
        lower(lm_type_name(type), name + 7);
        cl_ulong rb = row, off = row * ROWS;
        int cols = COLS, rows = ROWS, n_tok = NT;
        const int per = lm_type_get(type)->block_size == 32 ? 4 : 1; /* tokens per work-item */
        run_kernel(name, 2, (size_t[]){ROWS, (size_t)(NT + per - 1) / per}, 12,
                   (size_t[]){8, 8, 8, 4, 4, 8, 8, 8, 8, 8, 8, 4},
                   (const void *[]){&W, &off, &rb, &cols, &rows, &aq, &ad, &as, &ab, &a_f, &Y,
                                    &n_tok});
        assert_int_equal(clEnqueueReadBuffer(queue, Y, CL_TRUE, 0, sizeof(float) * NT * ROWS,
                                             y_cl, 0, NULL, NULL), CL_SUCCESS);
        for (int i = 0; i < NT * ROWS; i++)
            if (exact ? memcmp(&y_cl[i], &y_cpu[i], sizeof(float)) != 0
                      : fabsf(y_cl[i] - y_cpu[i]) > 1e-5f * (1.0f + fabsf(y_cpu[i]))) {
                fprintf(stderr, "%s row %d: cl %.9g cpu %.9g\n", name, i, y_cl[i], y_cpu[i]);
                fail();
            }
        cl_mem bufs[] = {W, X, aq, ad, as, ab, af, Y};
        for (size_t i = 0; i < 8; i++)
            clReleaseMemObject(bufs[i]);
        free(wf);
        free(x);
        free(w);
        free(stack);
        free(scratch);
    }
}

static void test_matvec(void **state)
{
    (void)state;
    matvec_case(1);
    matvec_case(5);
}

/* Each dequantizer against the scalar reference: identical floats. */
static void test_dequant(void **state)
{
    (void)state;
    enum { N = 1024 };
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const uint32_t type = types[ti];
        const size_t bytes = lm_row_size(type, N);
        float *src = random_floats(N, 7 + ti), ref[N], got[N];
        uint8_t *q = malloc(bytes);
        lm_type_get(type)->quantize(src, q, N);
        lm_type_get(type)->dequantize(q, ref, N);
        /* the matrix second in a stack of two, as an expert's is read */
        uint8_t *stack = malloc(2 * bytes);
        memset(stack, 0xa5, bytes);
        memcpy(stack + bytes, q, bytes);
        cl_mem W = buffer(2 * bytes, stack), Y = buffer(sizeof got, NULL);
        cl_ulong off = bytes;
        char name[32] = "dequant_";
        lower(lm_type_name(type), name + 8);
        run_kernel(name, 1, (size_t[]){N / (size_t)lm_type_get(type)->block_size}, 3,
                   (size_t[]){8, 8, 8}, (const void *[]){&W, &off, &Y});
        assert_int_equal(clEnqueueReadBuffer(queue, Y, CL_TRUE, 0, sizeof got, got, 0, NULL,
                                             NULL), CL_SUCCESS);
        for (int i = 0; i < N; i++)
            if (memcmp(&got[i], &ref[i], sizeof(float)) != 0) {
                fprintf(stderr, "%s value %d: cl %.9g ref %.9g\n", name, i, got[i], ref[i]);
                fail();
            }
        clReleaseMemObject(W);
        clReleaseMemObject(Y);
        free(src);
        free(stack);
        free(q);
    }
}

/* The whole backend against the CPU backend: a prompt of 7 tokens, then
 * decoded tokens.  On the default path (every product on the quantized
 * kernels) the logits are the CPU's bit for bit where the CPU uses its AVX2
 * kernels (tol < 0: exact; within 2e-3 of the largest against the portable
 * ones); with the prompt on dequantize+SGEMM (f32 activations where the CPU
 * uses 8-bit ones) within 6e-2, the size of the CPU's own activation
 * rounding. */
/* A session that follows a hand-made plan: layer il placed at place[il]. */
static lm_session *planned(const lm_model *m, const lm_placement *place, bool head_on_device,
                           bool prefetch)
{
    return test_planned_session(m, place, head_on_device, prefetch, false, 32, 1, 8);
}

/* Both layers on the device, a mixture's with their experts in a device
 * cache of two experts (so a pass gives up slots it used itself), copied
 * from the file mapping or, through a host cache of two experts, from
 * disk.  (A dense model's layers are simply resident.) */
static lm_session *experts_cached_session(const lm_model *m, bool from_disk)
{
    lm_plan plan = {.n_layer = 2, .prefetch = true, .learned_factor = 1.0,
                    .device_experts_apart = true, .device_experts_from_disk = from_disk};
    lm_learned_none(&plan.learned);
    plan.place = calloc(2, sizeof *plan.place);
    plan.layer_bytes = calloc(2, sizeof *plan.layer_bytes);
    plan.layer_ms = calloc(2, sizeof *plan.layer_ms);
    if (!plan.place || !plan.layer_bytes || !plan.layer_ms) {
        lm_plan_free(&plan);
        return NULL;
    }
    plan.place[0] = plan.place[1] = LM_PLACE_DEVICE;
    plan.expert_slot_bytes = lm_expert_slot_bytes(m);
    plan.device_expert_cache_bytes = 2 * plan.expert_slot_bytes;
    plan.expert_cache_bytes = from_disk ? 2 * plan.expert_slot_bytes : 0;
    lm_session *s = lm_session_new_planned(m, 32, 1, 8, &plan, NULL, false);
    if (!s)
        fprintf(stderr, "%s\n", lm_last_error());
    return s;
}

/* The splits and streams a plan can make, each against the CPU backend:
 * a layer streamed to the device from disk and one from RAM (with and
 * without prefetch), a layer on the device beside one on the CPU, and a
 * mixture's experts through the device's cache (from RAM, from disk). */
#define N_PLANNED 6
static lm_session *planned_sessions(const lm_model *m, int i)
{
    if (i >= 4)
        return experts_cached_session(m, i == 5);
    static const lm_placement splits[N_PLANNED][2] = {
        {LM_PLACE_DEVICE_DISK, LM_PLACE_DEVICE_RAM},
        {LM_PLACE_DEVICE_RAM, LM_PLACE_DEVICE_DISK},
        {LM_PLACE_DISK, LM_PLACE_DEVICE_RAM},
        {LM_PLACE_DEVICE, LM_PLACE_RAM},
    };
    return planned(m, splits[i], i == 0, i != 1);
}

static void compare_backends_with(const test_model_shape *shape, const char *gemm_min,
                                  float tol)
{
    if (gemm_min)
        setenv("LAMINA_CL_GEMM_MIN", gemm_min, 1);
    else
        unsetenv("LAMINA_CL_GEMM_MIN");
    const bool exact = tol < 0;
    char path[256];
    assert_int_equal(test_write_model_tmp(shape, path, sizeof path), 0);
    lm_model *m = lm_model_load(path);
    assert_non_null(m);
    lm_session *cpu = lm_session_new(m, 32, 8);
    lm_session *gpus[1 + N_PLANNED] = {lm_session_new_backend(m, 32, 1, 8, "opencl", NULL)};
    const int n_gpus = shape->n_layer == 2 ? 1 + N_PLANNED : 1;
    for (int i = 1; i < n_gpus; i++)
        gpus[i] = planned_sessions(m, i - 1);
    if (!gpus[0])
        fprintf(stderr, "%s\n", lm_last_error());
    assert_non_null(cpu);
    for (int i = 0; i < n_gpus; i++)
        assert_non_null(gpus[i]);
    const int32_t prompt[] = {1, 5, 9, 17, 33, 2, 40, 11, 3, 7};
    float a[TEST_N_VOCAB], b[TEST_N_VOCAB];
    for (int step = 0; step < 4; step++) {
        const int n = step == 0 ? 7 : 1;
        const int32_t *tok = step == 0 ? prompt : prompt + 6 + step;
        assert_int_equal(lm_session_eval(cpu, tok, n, false, a), 0);
        for (int g = 0; g < n_gpus; g++) {
            assert_int_equal(lm_session_eval(gpus[g], tok, n, false, b), 0);
            float scale = 0;
            for (int i = 0; i < TEST_N_VOCAB; i++)
                scale = fmaxf(scale, fabsf(a[i]));
            for (int i = 0; i < TEST_N_VOCAB; i++)
                if (exact ? memcmp(&a[i], &b[i], sizeof(float)) != 0
                          : fabsf(a[i] - b[i]) > tol * scale + 1e-5f) {
                    fprintf(stderr, "%s %s gemm_min %s session %d step %d logit %d: cpu %.9g "
                            "cl %.9g\n", shape->arch, lm_type_name(shape->weight_type),
                            gemm_min ? gemm_min : "(default)", g, step, i, a[i], b[i]);
                    fail();
                }
        }
    }
    for (int g = 0; g < n_gpus; g++) {
        assert_true(lm_session_device_peak(gpus[g]) > 0);
        lm_session_free(gpus[g]);
    }
    lm_session_free(cpu);
    lm_model_free(m);
    test_remove_model_tmp(path);
}

static void compare_backends(const test_model_shape *shape)
{
    compare_backends_with(shape, NULL, lm_cpu_use_avx2() ? -1.0f : 2e-3f);
    compare_backends_with(shape, "2", 6e-2f);
}

static void test_backend_llama(void **state)
{
    (void)state;
    for (uint32_t t = 0; t < 3; t++) {
        const uint32_t wt[] = {LM_TYPE_F32, LM_TYPE_Q4_1, LM_TYPE_Q4_K};
        test_model_shape s = {"llama", wt[t], 2, 256, 4, 2, 512, t == 1, 5 + t, NULL, 0, NULL, 0, 0, 0, 0};
        compare_backends(&s);
    }
}

static void test_backend_qwen2(void **state)
{
    (void)state;
    test_model_shape s = {"qwen2", LM_TYPE_Q8_0, 2, 256, 4, 2, 512, false, 11, NULL, 0, NULL, 0, 0, 0, 0};
    compare_backends(&s);
}

/* The other architectures' operations on the device: per-head norms, a
 * head size of its own, fused products, GELU, sliding windows (gemma3's
 * window of 3 over the 10-token prompt, five local layers to a global one) */
static void test_backend_archs(void **state)
{
    (void)state;
    test_model_shape qwen3 = {"qwen3", LM_TYPE_Q8_0, 2, 256, 4, 2, 512, false, 12, NULL, 0, NULL,
                              32, 0, 0, 0};
    test_model_shape phi3 = {"phi3", LM_TYPE_Q4_K, 2, 256, 4, 2, 512, true, 13, NULL, 0, NULL,
                             0, 0, 0, 0};
    test_model_shape gemma3 = {"gemma3", LM_TYPE_Q4_0, 7, 256, 4, 1, 512, true, 14, NULL, 0,
                               NULL, 128, 3, 0, 0};
    compare_backends(&qwen3);
    compare_backends(&phi3);
    compare_backends(&gemma3);
}

/* Mixtures of experts on the device: the router's products, each expert
 * read at its offset in the stacked tensors, the picks weighted and added,
 * a shared expert's sigmoid gate; Mixtral's layout, qwen3moe and qwen2moe,
 * resident, streamed and beside CPU layers.  A 7-token prompt routes its
 * rows to most of the 8 experts. */
static void test_backend_moe(void **state)
{
    (void)state;
    test_model_shape mixtral = {"llama", LM_TYPE_Q4_K, 2, 256, 4, 2, 256, false, 21, NULL, 0,
                                NULL, 0, 0, 8, 2};
    test_model_shape qwen3moe = {"qwen3moe", LM_TYPE_Q8_0, 2, 256, 4, 2, 256, true, 22, NULL, 0,
                                 NULL, 0, 0, 8, 3};
    test_model_shape qwen2moe = {"qwen2moe", LM_TYPE_Q4_0, 2, 256, 4, 2, 256, false, 23, NULL,
                                 0, NULL, 0, 0, 8, 2};
    compare_backends(&mixtral);
    compare_backends(&qwen3moe);
    compare_backends(&qwen2moe);
}

/* A layer streamed to the device from a file cut short under it: the I/O
 * thread's short read comes back from the pass as a one-line error. */
static void test_streamed_short_read(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_Q4_0, 2, 256, 4, 2, 512, false, 3, NULL, 0, NULL, 0, 0, 0, 0};
    char path[256];
    assert_int_equal(test_write_model_tmp(&shape, path, sizeof path), 0);
    lm_model *m = lm_model_load(path);
    assert_non_null(m);
    const lm_gguf_tensor *last = m->layers[1].t[LM_W_DOWN];
    /* the streamed layer's last tensor loses its end; nothing mapped is
     * touched.  Before the session starts: its I/O thread reads at once. */
    assert_int_equal(truncate(path, (off_t)(last->file_offset + last->nbytes / 2)), 0);
    const lm_placement place[2] = {LM_PLACE_RAM, LM_PLACE_DEVICE_DISK};
    lm_session *s = planned(m, place, false, true);
    assert_non_null(s);
    const int32_t prompt[] = {1, 5, 9};
    assert_int_equal(lm_session_eval(s, prompt, 3, false, NULL), -1);
    assert_non_null(strstr(lm_last_error(), "short read"));
    assert_null(strchr(lm_last_error(), '\n'));
    lm_session_free(s);
    lm_model_free(m);
    test_remove_model_tmp(path);
}

static void test_errors(void **state)
{
    (void)state;
    cl_platform_id pf;
    cl_device_id dev;
    assert_int_equal(lm_cl_pick_device("no-such-device-xyz", &pf, &dev), -1);
    assert_non_null(strstr(lm_last_error(), "no OpenCL device has that"));
    assert_int_equal(lm_cl_pick_device("999", &pf, &dev), -1);
    assert_string_equal(lm_cl_error_name(CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
    assert_int_equal(lm_cl_check(CL_INVALID_KERNEL_NAME, "clCreateKernel"), -1);
    assert_string_equal(lm_last_error(), "clCreateKernel: CL_INVALID_KERNEL_NAME (-46)");

}

int main(void)
{
    cl_platform_id pf;
    cl_device_id dev;
    cl_int err;
    if (lm_cl_pick_device(NULL, &pf, &dev) != 0) {
        const char *ci = getenv("CI");
        fprintf(stderr, "test_opencl: %s: %s\n", ci && *ci ? "FAIL (CI is set)" : "SKIP",
                lm_last_error());
        return ci && *ci ? 1 : 77;
    }
    char label[512];
    lm_cl_device_label(dev, label, sizeof label);
    fprintf(stderr, "test_opencl: on %s\n", label);
    ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    queue = clCreateCommandQueue(ctx, dev, 0, &err);
    if (!ctx || !queue || !(prog = lm_cl_program_build(ctx, dev))) {
        fprintf(stderr, "test_opencl: %s\n", lm_last_error());
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant),      cmocka_unit_test(test_matvec),
        cmocka_unit_test(test_backend_llama), cmocka_unit_test(test_backend_qwen2),
        cmocka_unit_test(test_backend_archs), cmocka_unit_test(test_backend_moe),
        cmocka_unit_test(test_streamed_short_read), cmocka_unit_test(test_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    clReleaseProgram(prog);
    clReleaseCommandQueue(queue);
    clReleaseContext(ctx);
    return rc;
}
