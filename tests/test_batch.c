/* Many sequences in one pass: a sequence's logits do not depend on what
 * else is in its passes.
 *
 * Eight prompts of different lengths start at staggered passes and decode
 * greedily side by side in one engine; each must give, bit for bit, the
 * logits (and so the tokens) it gives alone in a one-sequence engine on the
 * CPU.  Prompts go in runs of CHUNK tokens in both (a run's length picks
 * attention's summation order, as llama.cpp's does).  Checked on the CPU, on
 * the OpenCL device, and under a split plan whose layers are streamed from
 * disk and to the device; then a prefix copied from one sequence to
 * another (seq_copy) continues as if evaluated there. */
#define _POSIX_C_SOURCE 200809L
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
#include "session.h"

#define N_SEQ 8
#define CHUNK 4
#define N_GEN 10
#define N_CTX 64
#define N_BATCH (N_SEQ * CHUNK)

static const int prompt_len[N_SEQ] = {1, 3, 5, 8, 13, 2, 21, 7};

typedef struct {
    int32_t prompt[32];
    int32_t out[N_GEN]; /* the greedy tokens */
    float *logits;      /* N_GEN rows of n_vocab: what each was picked from */
} sequence;

/* A model and each sequence's results alone on the CPU. */
typedef struct {
    lm_model *model;
    int n_vocab;
    sequence ref[N_SEQ];
} fixture;

static fixture g_tiny, g_real; /* a test model (always), SmolLM2 (when present) */
static char g_path[256];

static int32_t argmax(const float *l, int n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

static void alloc_logits(sequence *seqs, int n_vocab)
{
    for (int k = 0; k < N_SEQ; k++)
        seqs[k].logits = malloc((size_t)N_GEN * n_vocab * sizeof(float));
}

static void free_logits(sequence *seqs)
{
    for (int k = 0; k < N_SEQ; k++)
        free(seqs[k].logits);
}

/* One pass's rows, filled by the schedulers below. */
typedef struct {
    int n;
    int32_t tok[N_BATCH];
    int seq[N_BATCH];
    bool want[N_BATCH];
} pass;

static void add_rows(pass *p, int seq, const int32_t *tok, int n, bool want_last)
{
    for (int i = 0; i < n; i++) {
        p->tok[p->n] = tok[i];
        p->seq[p->n] = seq;
        p->want[p->n] = want_last && i == n - 1;
        p->n++;
    }
}

/* Runs sequence k in slot slot[k] of engine s (slot -1: not run), starting
 * at pass stagger*k, to N_GEN greedy tokens; fills out[k]. */
static void run_batched(lm_session *s, sequence *out, const int *slot, int stagger)
{
    int fed[N_SEQ] = {0}, gen[N_SEQ] = {0};
    const int n_vocab = (int)s->model->hp.n_vocab;
    float *logits = malloc((size_t)N_BATCH * n_vocab * sizeof(float));
    for (int pass_no = 0;; pass_no++) {
        pass p = {0};
        int kind[N_BATCH];
        for (int k = 0; k < N_SEQ; k++) {
            if (slot[k] < 0 || pass_no < stagger * k || gen[k] == N_GEN)
                continue;
            const int first = p.n;
            if (fed[k] < prompt_len[k]) {
                const int run = prompt_len[k] - fed[k] < CHUNK ? prompt_len[k] - fed[k] : CHUNK;
                add_rows(&p, slot[k], out[k].prompt + fed[k], run, fed[k] + run == prompt_len[k]);
                fed[k] += run;
            } else {
                add_rows(&p, slot[k], &out[k].out[gen[k] - 1], 1, true);
            }
            for (int r = first; r < p.n; r++)
                kind[r] = k;
        }
        if (p.n == 0)
            break;
        if (lm_session_decode(s, p.n, p.tok, p.seq, p.want, logits) != 0)
            fail_msg("decode: %s", lm_last_error());
        int o = 0;
        for (int r = 0; r < p.n; r++) {
            if (!p.want[r])
                continue;
            const int k = kind[r];
            float *row = out[k].logits + (size_t)gen[k] * n_vocab;
            memcpy(row, logits + (size_t)o++ * n_vocab, (size_t)n_vocab * sizeof(float));
            out[k].out[gen[k]++] = argmax(row, n_vocab);
        }
    }
    free(logits);
}

/* Random prompts, and each sequence alone in a one-sequence CPU engine. */
static int make_fixture(fixture *f, lm_model *m, int32_t lo, int32_t hi)
{
    f->model = m;
    f->n_vocab = (int)m->hp.n_vocab;
    uint64_t rng = 99;
    for (int k = 0; k < N_SEQ; k++)
        for (int i = 0; i < prompt_len[k]; i++)
            f->ref[k].prompt[i] = lo + (int32_t)((test_random(&rng) + 1.0f) * 0.5f * (float)(hi - lo));
    alloc_logits(f->ref, f->n_vocab);
    lm_session *s = lm_session_new_backend(m, N_CTX, 1, N_BATCH, "cpu", NULL);
    if (!s)
        return -1;
    for (int k = 0; k < N_SEQ; k++) {
        int slot[N_SEQ];
        for (int j = 0; j < N_SEQ; j++)
            slot[j] = j == k ? 0 : -1;
        lm_session_seq_rm(s, 0, 0);
        run_batched(s, f->ref, slot, 0);
    }
    lm_session_free(s);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_Q4_0, 4, 256, 4, 2, 512, false, 17, NULL, 0, NULL, 0, 0, 0, 0};
    lm_model *m;
    if (test_write_model_tmp(&shape, g_path, sizeof g_path) != 0 || !(m = lm_model_load(g_path)) ||
        make_fixture(&g_tiny, m, 1, TEST_N_VOCAB - 1) != 0)
        return -1;
    /* the real model: its attention shows a run's summation order in the
     * logits' last bits, which the test model's may not */
    const char *path = getenv("LAMINA_TEST_MODEL");
    if (path && *path && (m = lm_model_load(path)) && make_fixture(&g_real, m, 200, 20000) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fixture *fs[] = {&g_tiny, &g_real};
    for (int i = 0; i < 2; i++)
        if (fs[i]->model) {
            free_logits(fs[i]->ref);
            lm_model_free(fs[i]->model);
        }
    test_remove_model_tmp(g_path);
    return 0;
}

static void expect_same(const fixture *f, const sequence *got, const char *what)
{
    const size_t bytes = (size_t)N_GEN * f->n_vocab * sizeof(float);
    for (int k = 0; k < N_SEQ; k++)
        for (int g = 0; g < N_GEN; g++)
            if (got[k].out[g] != f->ref[k].out[g] || memcmp(got[k].logits, f->ref[k].logits, bytes)) {
                fprintf(stderr, "%s: sequence %d (prompt of %d) token %d: got %d, alone %d%s\n",
                        what, k, prompt_len[k], g, got[k].out[g], f->ref[k].out[g],
                        got[k].out[g] == f->ref[k].out[g] ? " (logits differ)" : "");
                fail();
            }
}

/* The eight sequences in one engine, in slots given in reverse order (so
 * slot numbers differ from the reference's 0), staggered by two passes. */
static void check_engine(const fixture *f, lm_session *s, const char *what)
{
    assert_non_null(s);
    sequence got[N_SEQ];
    int slot[N_SEQ];
    alloc_logits(got, f->n_vocab);
    for (int k = 0; k < N_SEQ; k++) {
        memcpy(got[k].prompt, f->ref[k].prompt, sizeof got[k].prompt);
        slot[k] = N_SEQ - 1 - k;
    }
    run_batched(s, got, slot, 2);
    expect_same(f, got, what);
    /* and again after clearing every sequence, all starting together */
    for (int k = 0; k < N_SEQ; k++)
        lm_session_seq_rm(s, k, 0);
    run_batched(s, got, slot, 0);
    expect_same(f, got, what);
    free_logits(got);
    lm_session_free(s);
}

static const fixture *need_real(void)
{
    if (g_real.model)
        return &g_real;
    if (getenv("CI"))
        fail_msg("the default model is needed under CI ($LAMINA_TEST_MODEL)");
    skip();
    return NULL;
}

static void test_real_cpu(void **state)
{
    (void)state;
    const fixture *f = need_real();
    check_engine(f, lm_session_new_backend(f->model, N_CTX, N_SEQ, N_BATCH, "cpu", NULL),
                 "SmolLM2, cpu");
}

static void test_cpu(void **state)
{
    (void)state;
    check_engine(&g_tiny, lm_session_new_backend(g_tiny.model, N_CTX, N_SEQ, N_BATCH, "cpu", NULL),
                 "cpu");
}

/* A hand-made plan over the four layers. */
static lm_session *planned(const lm_placement *place, bool head_on_device)
{
    return test_planned_session(g_tiny.model, place, head_on_device, true, false, N_CTX, N_SEQ,
                                N_BATCH);
}

static void test_cpu_streamed(void **state)
{
    (void)state;
    const lm_placement place[] = {LM_PLACE_DISK, LM_PLACE_RAM, LM_PLACE_DISK, LM_PLACE_DISK};
    check_engine(&g_tiny, planned(place, false), "cpu, streamed from disk");
}

#ifdef LAMINA_OPENCL
static void test_opencl(void **state)
{
    (void)state;
    check_engine(&g_tiny,
                 lm_session_new_backend(g_tiny.model, N_CTX, N_SEQ, N_BATCH, "opencl", NULL),
                 "opencl");
}

static void test_split_streamed(void **state)
{
    (void)state;
    const lm_placement place[] = {LM_PLACE_DISK, LM_PLACE_DEVICE_DISK, LM_PLACE_DEVICE_RAM,
                                  LM_PLACE_DEVICE};
    check_engine(&g_tiny, planned(place, true), "split cpu/opencl, streamed from disk");
}

/* The device fails in the middle of a run with eight sequences in flight
 * (LAMINA_CL_FAIL_AFTER, as a lost device would): the engine goes on on the
 * CPU, replaying each sequence's runs, and every sequence's logits are
 * still those it gets alone. */
static void test_device_fails_midway(void **state)
{
    (void)state;
    const lm_placement place[] = {LM_PLACE_DEVICE, LM_PLACE_DEVICE_DISK, LM_PLACE_DEVICE,
                                  LM_PLACE_DEVICE};
    setenv("LAMINA_CL_FAIL_AFTER", "37", 1); /* the 10th pass, staggered sequences in it */
    lm_session *s = test_planned_session(g_tiny.model, place, true, true, true, N_CTX, N_SEQ,
                                         N_BATCH);
    unsetenv("LAMINA_CL_FAIL_AFTER");
    check_engine(&g_tiny, s, "device failing midway, then the CPU");
}

static void test_real_opencl(void **state)
{
    (void)state;
    const fixture *f = need_real();
    check_engine(f, lm_session_new_backend(f->model, N_CTX, N_SEQ, N_BATCH, "opencl", NULL),
                 "SmolLM2, opencl");
}
#endif

/* A prefix evaluated once in one sequence and copied to three others
 * continues in each exactly as if it had been evaluated there. */
static void test_seq_copy(void **state)
{
    (void)state;
    lm_session *s = lm_session_new_backend(g_tiny.model, N_CTX, 4, N_BATCH, "cpu", NULL);
    assert_non_null(s);
    const int32_t prefix[] = {3, 9, 27, 17, 51, 33, 8}, tail[4] = {5, 6, 7, 8};
    float a[TEST_N_VOCAB], b[TEST_N_VOCAB];
    int zeros[8] = {0};
    bool want_none[8] = {false};
    assert_int_equal(lm_session_decode(s, 4, prefix, zeros, want_none, NULL), 0);
    assert_int_equal(lm_session_decode(s, 3, prefix + 4, zeros, want_none, NULL), 0);
    for (int dst = 1; dst < 4; dst++) {
        assert_int_equal(lm_session_seq_copy(s, 0, dst, -1), 0);
        assert_int_equal(lm_session_seq_pos(s, dst), 7);
    }
    /* each copy continues with its own token; compared with sequence 0
     * cleared and given the whole prompt the same way */
    lm_session *alone = lm_session_new_backend(g_tiny.model, N_CTX, 1, N_BATCH, "cpu", NULL);
    assert_non_null(alone);
    for (int dst = 1; dst < 4; dst++) {
        const bool want = true;
        assert_int_equal(lm_session_decode(s, 1, &tail[dst], &dst, &want, a), 0);
        lm_session_seq_rm(alone, 0, 0);
        assert_int_equal(lm_session_decode(alone, 4, prefix, zeros, want_none, NULL), 0);
        assert_int_equal(lm_session_decode(alone, 3, prefix + 4, zeros, want_none, NULL), 0);
        assert_int_equal(lm_session_decode(alone, 1, &tail[dst], zeros, &want, b), 0);
        assert_memory_equal(a, b, sizeof a);
    }
    /* a copy of the first 4 positions, then the rest fed to it */
    assert_int_equal(lm_session_seq_copy(s, 0, 3, 4), 0);
    assert_int_equal(lm_session_seq_pos(s, 3), 4);
    int threes[3] = {3, 3, 3};
    const bool want3[3] = {false, false, true};
    assert_int_equal(lm_session_decode(s, 3, prefix + 4, threes, want3, a), 0);
    lm_session_seq_rm(alone, 0, 0);
    assert_int_equal(lm_session_decode(alone, 4, prefix, zeros, want_none, NULL), 0);
    assert_int_equal(lm_session_decode(alone, 3, prefix + 4, zeros, want3, b), 0);
    assert_memory_equal(a, b, sizeof a);
    /* bad input: a sequence out of range, rows of one sequence split */
    int bad[3] = {0, 1, 0};
    assert_int_equal(lm_session_decode(s, 3, prefix, bad, want_none, NULL), -1);
    assert_non_null(strstr(lm_last_error(), "not consecutive"));
    int nine = 9;
    assert_int_equal(lm_session_decode(s, 1, prefix, &nine, want_none, NULL), -1);
    assert_non_null(strstr(lm_last_error(), "sequence 9 does not exist"));
    assert_int_equal(lm_session_seq_copy(s, 0, 7, -1), -1);
    lm_session_free(alone);
    lm_session_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu),
        cmocka_unit_test(test_cpu_streamed),
        cmocka_unit_test(test_real_cpu),
#ifdef LAMINA_OPENCL
        cmocka_unit_test(test_opencl),
        cmocka_unit_test(test_split_streamed),
        cmocka_unit_test(test_real_opencl),
        cmocka_unit_test(test_device_fails_midway),
#endif
        cmocka_unit_test(test_seq_copy),
    };
    return cmocka_run_group_tests_name("batch", tests, setup, teardown);
}
