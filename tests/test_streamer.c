/* Layers streamed from the file through the staging buffers give exactly
 * the logits of layers read from the mapping, with and without prefetch and
 * whichever layers stream; a file cut short while streaming is a clear
 * error, not a crash; the planner keeps what it promises inside the budget
 * and refuses a budget too small with the minimum that would work. */
#define _POSIX_C_SOURCE 200809L /* setenv, truncate */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "model_writer.h"
#include "plan.h"
#include "quant.h"
#include "session.h"
#include "streamer.h"
#include "timing.h"

static char path[256];
static const int32_t prompt[] = {5, 12, 63, 40, 1, 2, 33, 20, 9};
#define N_PROMPT ((int)(sizeof prompt / sizeof *prompt))
#define N_LAYER 4

static int write_model(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_Q4_1, N_LAYER, 64, 4, 2, 96, false, 21, NULL, 0, NULL, 0, 0, 0, 0};
    return test_write_model_tmp(&shape, path, sizeof path);
}

static int remove_model(void **state)
{
    (void)state;
    return test_remove_model_tmp(path);
}

/* Logits of the prompt (all rows) and of 3 more single tokens. */
static float *run(const lm_model *m, const int *streamed, int n_streamed, bool prefetch)
{
    const size_t V = m->hp.n_vocab;
    lm_session *s = lm_session_new(m, 32, 4);
    assert_non_null(s);
    if (n_streamed)
        assert_int_equal(lm_session_stream_layers(s, streamed, n_streamed, prefetch, true), 0);
    float *out = malloc((N_PROMPT + 3) * V * sizeof(float));
    assert_int_equal(lm_session_eval(s, prompt, N_PROMPT, true, out), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lm_session_eval(s, &prompt[i], 1, false, out + (N_PROMPT + i) * V), 0);
    lm_session_free(s);
    return out;
}

static void streamed_equals_mapped(void **state)
{
    (void)state;
    lm_model *m = lm_model_load(path);
    assert_non_null(m);
    const size_t bytes = (N_PROMPT + 3) * m->hp.n_vocab * sizeof(float);
    float *want = run(m, NULL, 0, true);
    const int all[N_LAYER] = {0, 1, 2, 3}, some[2] = {1, 3};
    float *got = run(m, all, N_LAYER, true);
    assert_memory_equal(got, want, bytes);
    free(got);
    got = run(m, all, N_LAYER, false);
    assert_memory_equal(got, want, bytes);
    free(got);
    got = run(m, some, 2, true);
    assert_memory_equal(got, want, bytes);
    free(got);
    free(want);
    lm_model_free(m);
}

static void truncated_file_is_an_error(void **state)
{
    (void)state;
    char copy[300];
    snprintf(copy, sizeof copy, "%.*s/cut.gguf", (int)(strrchr(path, '/') - path), path);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, copy);
    assert_int_equal(system(cmd), 0);
    lm_model *m = lm_model_load(copy);
    assert_non_null(m);
    const lm_gguf_tensor *last = m->layers[N_LAYER - 1].t[LM_W_DOWN];
    lm_session *s = lm_session_new(m, 32, 4);
    const int layers[1] = {N_LAYER - 1};
    /* the last layer's last tensor loses its end; nothing mapped is touched.
     * Before streaming starts: the I/O thread reads at once. */
    assert_int_equal(truncate(copy, (off_t)(last->file_offset + last->nbytes / 2)), 0);
    assert_int_equal(lm_session_stream_layers(s, layers, 1, true, false), 0);
    assert_int_equal(lm_session_eval(s, prompt, 2, false, NULL), -1);
    assert_non_null(strstr(lm_last_error(), "short read"));
    assert_non_null(strstr(lm_last_error(), "cut.gguf"));
    lm_session_free(s);
    lm_model_free(m);
    unlink(copy);
}

static void plan_respects_the_budget(void **state)
{
    (void)state;
    lm_model *m = lm_model_load(path);
    assert_non_null(m);
    lm_probes probes = {.ram_bw = 1e10, .disk_bw = 1e9};
    probes.cpu_decode_bw[LM_TYPE_Q4_1] = 1e10;
    probes.cpu_prompt_bw[LM_TYPE_Q4_1] = 4e10;
    lm_plan_request req = {.n_ctx = 32, .n_batch = 4, .prefetch = true, .force_ram_layers = -1,
                           .n_prompt = 1, .ram_budget = (uint64_t)1 << 30};
    lm_plan plan;
    assert_int_equal(lm_plan_make(m, &req, &probes, NULL, &plan), 0);
    for (int il = 0; il < N_LAYER; il++)
        assert_int_equal(plan.place[il], LM_PLACE_RAM);
    assert_true(plan.tokens_per_s > 0);
    lm_plan_free(&plan);

    /* room for the fixed costs, two staging buffers and one resident layer */
    const uint64_t fixed_and_staging = plan.ram_total - plan.ram_weights +
                                       2 * lm_streamer_layer_bytes(m, 0);
    req.ram_budget = fixed_and_staging + m->layers[0].nbytes;
    assert_int_equal(lm_plan_make(m, &req, &probes, NULL, &plan), 0);
    assert_int_equal(plan.place[0], LM_PLACE_RAM);
    for (int il = 1; il < N_LAYER; il++)
        assert_int_equal(plan.place[il], LM_PLACE_DISK);
    assert_true(plan.ram_total <= req.ram_budget);
    lm_plan_free(&plan);

    req.ram_budget = 1 << 20;
    assert_int_equal(lm_plan_make(m, &req, &probes, NULL, &plan), -1);
    assert_non_null(strstr(lm_last_error(), "at least"));
    lm_model_free(m);
}

/* Device probes for a made-up device: `speedup` times the CPU's speed on
 * a layer, copies at copy_bw. */
static lm_device_probes fake_device(const lm_model *m, const lm_probes *p, double speedup,
                                    double copy_bw)
{
    lm_device_probes d = {.memory = (uint64_t)8 << 30, .h2d_bw = copy_bw};
    d.layer_ms = (double)m->layers[0].nbytes / p->cpu_decode_bw[LM_TYPE_Q4_1] * 1e3 / speedup;
    d.layer_prompt_ms = d.layer_ms / 4;
    d.head_ms = (double)m->output->nbytes / p->cpu_decode_bw[m->output->type] * 1e3 / speedup;
    return d;
}

static int count_place(const lm_plan *plan, lm_placement p)
{
    int n = 0;
    for (int il = 0; il < plan->n_layer; il++)
        n += plan->place[il] == p;
    return n;
}

/* Probes with the same CPU speed on every type: 10 GB/s a token, 40 in a
 * batch; RAM 10 GB/s, disk 1 GB/s. */
static lm_probes flat_probes(void)
{
    lm_probes p = {.ram_bw = 1e10, .disk_bw = 1e9};
    for (int t = 0; t < LM_TYPE_COUNT; t++)
        p.cpu_decode_bw[t] = 1e10, p.cpu_prompt_bw[t] = 4e10;
    return p;
}

static void plan_splits_between_cpu_and_device(void **state)
{
    (void)state;
    lm_model *m = lm_model_load(path);
    assert_non_null(m);
    const lm_probes probes = flat_probes();
    lm_plan_request req = {.n_ctx = 32, .n_batch = 4, .prefetch = true, .force_ram_layers = -1,
                           .n_prompt = 1, .ram_budget = (uint64_t)1 << 30, .gpu_layers = -1,
                           .use = LM_USE_AUTO};
    lm_plan plan;

    /* a device slower than the CPU (PoCL, say): auto keeps everything on the CPU */
    lm_device_probes slow = fake_device(m, &probes, 0.3, 1e10);
    assert_int_equal(lm_plan_make(m, &req, &probes, &slow, &plan), 0);
    assert_int_equal(count_place(&plan, LM_PLACE_RAM), N_LAYER);
    assert_false(plan.head_on_device);
    assert_true(plan.device_total == 0);
    lm_plan_free(&plan);

    /* a device predicted a few percent faster: not worth leaving the simpler
     * plan for (LM_PLAN_SWITCH_MARGIN), so that probe noise cannot flip it */
    lm_device_probes close = fake_device(m, &probes, 1.05, 1e12);
    assert_int_equal(lm_plan_make(m, &req, &probes, &close, &plan), 0);
    assert_int_equal(count_place(&plan, LM_PLACE_RAM), N_LAYER);
    lm_plan_free(&plan);

    /* a fast device with room for everything: all resident, the head too */
    lm_device_probes fast = fake_device(m, &probes, 10, 1e10);
    assert_int_equal(lm_plan_make(m, &req, &probes, &fast, &plan), 0);
    assert_int_equal(count_place(&plan, LM_PLACE_DEVICE), N_LAYER);
    assert_true(plan.head_on_device);
    const uint64_t all_resident = plan.device_total;
    lm_plan_free(&plan);

    /* a VRAM budget one layer short: the last layer is streamed to the device */
    req.use = LM_USE_DEVICE;
    req.vram_budget = all_resident - 1;
    assert_int_equal(lm_plan_make(m, &req, &probes, &fast, &plan), 0);
    assert_true(plan.device_total <= req.vram_budget);
    assert_int_equal(count_place(&plan, LM_PLACE_DEVICE_RAM) + count_place(&plan, LM_PLACE_DEVICE),
                     N_LAYER);
    assert_true(count_place(&plan, LM_PLACE_DEVICE_RAM) >= 1);
    assert_int_equal(plan.place[0], LM_PLACE_DEVICE);
    assert_true(plan.copy_ms > 0);
    lm_plan_free(&plan);

    /* --gpu-layers 1: the last layer on the device, the others on the CPU */
    req.vram_budget = 0;
    req.gpu_layers = 1;
    assert_int_equal(lm_plan_make(m, &req, &probes, &fast, &plan), 0);
    assert_int_equal(plan.place[N_LAYER - 1], LM_PLACE_DEVICE);
    assert_int_equal(count_place(&plan, LM_PLACE_RAM), N_LAYER - 1);
    assert_false(plan.head_on_device);
    lm_plan_free(&plan);

    /* ... and too many of them is an error */
    req.gpu_layers = N_LAYER + 1;
    assert_int_equal(lm_plan_make(m, &req, &probes, &fast, &plan), -1);
    assert_non_null(strstr(lm_last_error(), "--gpu-layers"));

    /* a CPU-type device (PoCL): its buffers are this RAM, so they count
     * against the RAM budget too (with 4 layers, streaming them costs as
     * much as keeping them: two slots and two staging buffers) */
    lm_device_probes host_dev = fast;
    host_dev.is_cpu = true;
    req.gpu_layers = -1;
    assert_int_equal(lm_plan_make(m, &req, &probes, &host_dev, &plan), 0);
    assert_int_equal(count_place(&plan, LM_PLACE_DEVICE), N_LAYER);
    assert_true(plan.ram_total >= plan.device_total);
    const uint64_t roomy = plan.ram_total;
    lm_plan_free(&plan);
    req.ram_budget = roomy - 1;
    assert_int_equal(lm_plan_make(m, &req, &probes, &host_dev, &plan), -1);
    assert_non_null(strstr(lm_last_error(), "the CPU device's buffers"));
    req.ram_budget = (uint64_t)1 << 30;

    /* a VRAM budget that cannot hold the slots says the minimum */
    req.gpu_layers = -1;
    req.vram_budget = 4096;
    assert_int_equal(lm_plan_make(m, &req, &probes, &fast, &plan), -1);
    assert_non_null(strstr(lm_last_error(), "VRAM budget"));
    assert_non_null(strstr(lm_last_error(), "at least"));
    lm_model_free(m);
}

/* What runs measured scales its own figure and nothing else; the probes'
 * own prediction stays beside it; a device that runs measured slower than
 * its probe loses the layers it was given (a poisoned, far too fast
 * device probe is corrected). */
static void plan_follows_learned_figures(void **state)
{
    (void)state;
    lm_model *m = lm_model_load(path);
    assert_non_null(m);
    const lm_probes probes = flat_probes();
    lm_plan_request req = {.n_ctx = 32, .n_batch = 4, .prefetch = false, .force_ram_layers = 1,
                           .n_prompt = 1, .ram_budget = (uint64_t)1 << 30, .gpu_layers = -1,
                           .use = LM_USE_CPU};
    lm_plan plain, slow;
    assert_int_equal(lm_plan_make(m, &req, &probes, NULL, &plain), 0);
    assert_int_equal(count_place(&plain, LM_PLACE_DISK), N_LAYER - 1);
    lm_learned learned;
    lm_learned_none(&learned);
    learned.factor[LM_FIG_CPU_LAYER] = 3.0;
    learned.runs[LM_FIG_CPU_LAYER] = 2;
    learned.factor[LM_FIG_DISK] = 0.5;
    learned.runs[LM_FIG_DISK] = 1;
    req.learned = &learned;
    assert_int_equal(lm_plan_make(m, &req, &probes, NULL, &slow), 0);
    assert_float_equal(slow.cpu_ms, 3.0 * plain.cpu_ms, 1e-9 * plain.cpu_ms);
    assert_float_equal(slow.disk_ms, 0.5 * plain.disk_ms, 1e-9 * plain.disk_ms);
    assert_float_equal(slow.head_ms, plain.head_ms, 1e-12);
    assert_float_equal(slow.probe_token_ms, plain.token_ms, 1e-9 * plain.token_ms);
    assert_float_equal(slow.figures_token_ms, slow.token_ms, 1e-12);
    /* without prefetch a layer is its read plus its compute */
    const double want = plain.head_ms + 3.0 * plain.cpu_ms + 0.5 * plain.disk_ms;
    assert_float_equal(slow.token_ms, want, 1e-9 * want);
    lm_plan_free(&plain);
    lm_plan_free(&slow);

    /* a device probe 10x the CPU: auto puts every layer there, until runs
     * measured the device's layers 20x slower than it said */
    req.use = LM_USE_AUTO;
    req.force_ram_layers = -1;
    req.prefetch = true;
    req.learned = NULL;
    lm_device_probes fast = fake_device(m, &probes, 10, 1e10);
    lm_plan plan;
    assert_int_equal(lm_plan_make(m, &req, &probes, &fast, &plan), 0);
    assert_int_equal(count_place(&plan, LM_PLACE_DEVICE), N_LAYER);
    lm_plan_free(&plan);
    lm_learned_none(&learned);
    learned.factor[LM_FIG_DEVICE_LAYER] = 20.0;
    learned.factor[LM_FIG_DEVICE_HEAD] = 20.0;
    learned.runs[LM_FIG_DEVICE_LAYER] = learned.runs[LM_FIG_DEVICE_HEAD] = 1;
    req.learned = &learned;
    assert_int_equal(lm_plan_make(m, &req, &probes, &fast, &plan), 0);
    assert_int_equal(count_place(&plan, LM_PLACE_RAM), N_LAYER);
    assert_false(plan.head_on_device);
    lm_plan_free(&plan);
    lm_model_free(m);
}

/* A best that no other repeat comes near is not to be trusted. */
static void repeats_agree_near_the_best(void **state)
{
    (void)state;
    lm_repeats r = {0};
    lm_repeats_add(&r, 2.0);
    assert_true(lm_repeats_agree(&r, 1.3)); /* one alone: nothing to disagree with */
    lm_repeats_add(&r, 1.0);
    assert_false(lm_repeats_agree(&r, 1.3));
    lm_repeats_add(&r, 5.0);
    assert_false(lm_repeats_agree(&r, 1.3));
    lm_repeats_add(&r, 1.2);
    assert_true(lm_repeats_agree(&r, 1.3));
    assert_float_equal(r.best, 1.0, 0);
    assert_float_equal(r.next, 1.2, 0);
    assert_int_equal(r.n, 4);
}

static void sizes_parse(void **state)
{
    (void)state;
    uint64_t b;
    assert_int_equal(lm_parse_size("512M", &b), 0);
    assert_true(b == (uint64_t)512 << 20);
    assert_int_equal(lm_parse_size("1.5G", &b), 0);
    assert_true(b == (uint64_t)3 << 29);
    assert_int_equal(lm_parse_size("4GiB", &b), 0);
    assert_true(b == (uint64_t)4 << 30);
    assert_int_equal(lm_parse_size("1000", &b), 0);
    assert_true(b == 1000);
    assert_int_equal(lm_parse_size("lots", &b), -1);
    assert_int_equal(lm_parse_size("-2G", &b), -1);
    assert_int_equal(lm_parse_size("2Q", &b), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(streamed_equals_mapped),
        cmocka_unit_test(truncated_file_is_an_error),
        cmocka_unit_test(plan_respects_the_budget),
        cmocka_unit_test(plan_splits_between_cpu_and_device),
        cmocka_unit_test(plan_follows_learned_figures),
        cmocka_unit_test(repeats_agree_near_the_best),
        cmocka_unit_test(sizes_parse),
    };
    return cmocka_run_group_tests(tests, write_model, remove_model);
}
