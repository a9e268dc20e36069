/* The CPU forward pass against a plain reference written here from the
 * papers' formulas (double precision, dequantized weights), on small models
 * the test writes itself: llama (tied and untied) and qwen2 (biases, NeoX
 * RoPE), F32 and quantized weights; batched prompt evaluation against token
 * by token decoding; the errors for a full context and a bad token id. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "model.h"
#include "model_writer.h"
#include "quant.h"
#include "session.h"

/* ---- the reference ------------------------------------------------------ */

static double *dequant(const lm_gguf_tensor *t)
{
    const uint64_t n = t->ne[0] * (t->n_dims > 1 ? t->ne[1] : 1) * (t->n_dims > 2 ? t->ne[2] : 1);
    float *f = malloc(n * sizeof(float));
    double *d = malloc(n * sizeof(double));
    lm_type_get(t->type)->dequantize(t->data, f, (int64_t)n);
    for (uint64_t i = 0; i < n; i++)
        d[i] = f[i];
    free(f);
    return d;
}

/* y = W x for W of rows x cols */
static void ref_matvec(const lm_gguf_tensor *t, const double *x, double *y)
{
    double *w = dequant(t);
    const uint64_t cols = t->ne[0], rows = t->ne[1];
    for (uint64_t r = 0; r < rows; r++) {
        double s = 0;
        for (uint64_t c = 0; c < cols; c++)
            s += w[r * cols + c] * x[c];
        y[r] = s;
    }
    free(w);
}

/* y = W_e x for expert e of a stacked tensor */
static void ref_expert_matvec(const lm_gguf_tensor *t, int e, const double *x, double *y)
{
    double *w = dequant(t);
    const uint64_t cols = t->ne[0], rows = t->ne[1];
    const double *we = w + (uint64_t)e * rows * cols;
    for (uint64_t r = 0; r < rows; r++) {
        double s = 0;
        for (uint64_t c = 0; c < cols; c++)
            s += we[r * cols + c] * x[c];
        y[r] = s;
    }
    free(w);
}

/* The mixture of experts' SwiGLU FFN of xn into out: the router's softmax,
 * the n_used most probable experts, their weights renormalized where the
 * model says so. */
static void ref_moe(const lm_model *m, const lm_layer *L, const double *xn, double *out)
{
    const lm_hparams *hp = &m->hp;
    const int E = (int)hp->n_expert, K = (int)hp->n_expert_used, F = (int)hp->n_ff_exp;
    double probs[64], w[64], max = -INFINITY, sum = 0, wsum = 0;
    int picked[64];
    assert_true(E <= 64);
    ref_matvec(L->t[LM_W_FFN_ROUTER], xn, probs);
    for (int e = 0; e < E; e++)
        max = fmax(max, probs[e]);
    for (int e = 0; e < E; e++)
        sum += (probs[e] = exp(probs[e] - max));
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            bool taken = false;
            for (int j = 0; j < k; j++)
                taken |= picked[j] == e;
            if (!taken && (best < 0 || probs[e] > probs[best]))
                best = e;
        }
        picked[k] = best;
        wsum += (w[k] = probs[best] / sum);
    }
    double *g = malloc(F * sizeof(double)), *u = malloc(F * sizeof(double));
    double *d = malloc(hp->n_embd * sizeof(double));
    for (uint32_t i = 0; i < hp->n_embd; i++)
        out[i] = 0;
    for (int k = 0; k < K; k++) {
        ref_expert_matvec(L->t[LM_W_GATE_EXPS], picked[k], xn, g);
        ref_expert_matvec(L->t[LM_W_UP_EXPS], picked[k], xn, u);
        for (int i = 0; i < F; i++)
            g[i] = g[i] / (1 + exp(-g[i])) * u[i];
        ref_expert_matvec(L->t[LM_W_DOWN_EXPS], picked[k], g, d);
        for (uint32_t i = 0; i < hp->n_embd; i++)
            out[i] += d[i] * (hp->expert_norm ? w[k] / wsum : w[k]);
    }
    if (L->t[LM_W_DOWN_SHEXP]) { /* qwen2moe: the shared expert, sigmoid-gated */
        const int S = (int)hp->n_ff_shexp;
        double *gs = malloc(S * sizeof(double)), *us = malloc(S * sizeof(double)), gate;
        ref_matvec(L->t[LM_W_GATE_SHEXP], xn, gs);
        ref_matvec(L->t[LM_W_UP_SHEXP], xn, us);
        for (int i = 0; i < S; i++)
            gs[i] = gs[i] / (1 + exp(-gs[i])) * us[i];
        ref_matvec(L->t[LM_W_DOWN_SHEXP], gs, d);
        ref_matvec(L->t[LM_W_SHEXP_ROUTER], xn, &gate);
        gate = 1 / (1 + exp(-gate));
        for (uint32_t i = 0; i < hp->n_embd; i++)
            out[i] += d[i] * gate;
        free(gs);
        free(us);
    }
    free(g);
    free(u);
    free(d);
}

static void ref_rmsnorm(double *out, const double *x, const lm_gguf_tensor *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    const double scale = 1.0 / sqrt(ss / n + eps);
    const float *g = w->data;
    for (int i = 0; i < n; i++)
        out[i] = x[i] * scale * g[i];
}

static void ref_rope(double *v, int n_heads, int head_dim, int pos, bool neox, float base)
{
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < head_dim / 2; i++) {
            const double theta = pos * pow(base, -2.0 * i / head_dim);
            const int a = neox ? i : 2 * i, b = neox ? i + head_dim / 2 : 2 * i + 1;
            double *x = v + h * head_dim;
            const double x0 = x[a], x1 = x[b];
            x[a] = x0 * cos(theta) - x1 * sin(theta);
            x[b] = x0 * sin(theta) + x1 * cos(theta);
        }
}

static void add_bias(double *x, const lm_gguf_tensor *b, int n)
{
    if (!b)
        return;
    const float *f = b->data;
    for (int i = 0; i < n; i++)
        x[i] += f[i];
}

/* RMS norm of each of n_heads heads of head_dim in place (Q/K norms). */
static void ref_head_norms(double *x, const lm_gguf_tensor *w, int n_heads, int head_dim,
                           float eps)
{
    for (int h = 0; h < n_heads; h++)
        ref_rmsnorm(x + h * head_dim, x + h * head_dim, w, head_dim, eps);
}

static double gelu_tanh(double x)
{
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * x * (1 + 0.044715 * x * x)));
}

/* Logits (n_tokens x n_vocab) of a whole sequence, position by position, by
 * the papers' formulas for every architecture lamina runs: llama, qwen2
 * (Q/K/V biases), qwen3 (Q/K norms), phi3 (fused Q|K|V and gate|up), gemma3
 * (scaled embeddings, Q/K norms, post-norms, GELU, sliding windows with
 * their own RoPE base). */
static double *ref_forward(const lm_model *m, const int32_t *tokens, int n_tokens)
{
    const lm_hparams *hp = &m->hp;
    const int E = hp->n_embd, HD = hp->head_dim, Q = hp->n_head * HD, KV = hp->n_head_kv * HD;
    double *kc = calloc((size_t)hp->n_layer * n_tokens * KV, sizeof(double));
    double *vc = calloc((size_t)hp->n_layer * n_tokens * KV, sizeof(double));
    double *logits = malloc((size_t)n_tokens * hp->n_vocab * sizeof(double));
    double *x = malloc(E * sizeof(double)), *xn = malloc(E * sizeof(double));
    double *q = malloc(Q * sizeof(double)), *att = malloc(Q * sizeof(double));
    double *tmp = malloc(E * sizeof(double)), *g = malloc(hp->n_ff * sizeof(double));
    double *u = malloc(hp->n_ff * sizeof(double)), *sc = malloc(n_tokens * sizeof(double));
    double *wide = malloc((Q + 2 * KV + 2 * hp->n_ff) * sizeof(double));
    double *emb = dequant(m->tok_embd);
    const bool gelu = strcmp(hp->arch_name, "gemma3") == 0;
    const bool fused_up = strcmp(hp->arch_name, "phi3") == 0;
    /* gemma3 scales its queries by its own factor; the others by 1/sqrt(HD) */
    const double kq_scale = hp->attn_scale > 0 ? hp->attn_scale : 1 / sqrt((double)HD);
    for (int t = 0; t < n_tokens; t++) {
        memcpy(x, emb + (size_t)tokens[t] * E, E * sizeof(double));
        for (int i = 0; i < E; i++)
            x[i] *= hp->embd_scale;
        for (uint32_t il = 0; il < hp->n_layer; il++) {
            const lm_layer *L = &m->layers[il];
            double *k = kc + ((size_t)il * n_tokens + t) * KV, *v = vc + ((size_t)il * n_tokens + t) * KV;
            const bool swa = lm_layer_is_swa(hp, (int)il);
            const int first = swa && t >= (int)hp->n_swa ? t - (int)hp->n_swa + 1 : 0;
            ref_rmsnorm(xn, x, L->t[LM_W_ATTN_NORM], E, hp->norm_eps);
            if (L->t[LM_W_QKV]) {
                ref_matvec(L->t[LM_W_QKV], xn, wide);
                memcpy(q, wide, Q * sizeof(double));
                memcpy(k, wide + Q, KV * sizeof(double));
                memcpy(v, wide + Q + KV, KV * sizeof(double));
            } else {
                ref_matvec(L->t[LM_W_Q], xn, q);
                ref_matvec(L->t[LM_W_K], xn, k);
                ref_matvec(L->t[LM_W_V], xn, v);
            }
            add_bias(q, L->t[LM_W_Q_BIAS], Q);
            add_bias(k, L->t[LM_W_K_BIAS], KV);
            add_bias(v, L->t[LM_W_V_BIAS], KV);
            if (L->t[LM_W_Q_NORM]) {
                ref_head_norms(q, L->t[LM_W_Q_NORM], hp->n_head, HD, hp->norm_eps);
                ref_head_norms(k, L->t[LM_W_K_NORM], hp->n_head_kv, HD, hp->norm_eps);
            }
            const float base = swa ? hp->rope_base_swa : hp->rope_base;
            ref_rope(q, hp->n_head, HD, t, hp->rope_neox, base);
            ref_rope(k, hp->n_head_kv, HD, t, hp->rope_neox, base);
            for (uint32_t h = 0; h < hp->n_head; h++) {
                const int kvh = h / (hp->n_head / hp->n_head_kv);
                double max = -INFINITY, sum = 0;
                for (int p = first; p <= t; p++) {
                    const double *kp = kc + ((size_t)il * n_tokens + p) * KV + kvh * HD;
                    double s = 0;
                    for (int i = 0; i < HD; i++)
                        s += q[h * HD + i] * kp[i];
                    sc[p] = s * kq_scale;
                    max = fmax(max, sc[p]);
                }
                for (int p = first; p <= t; p++)
                    sum += (sc[p] = exp(sc[p] - max));
                for (int i = 0; i < HD; i++) {
                    double o = 0;
                    for (int p = first; p <= t; p++)
                        o += sc[p] / sum * vc[((size_t)il * n_tokens + p) * KV + kvh * HD + i];
                    att[h * HD + i] = o;
                }
            }
            ref_matvec(L->t[LM_W_O], att, tmp);
            if (L->t[LM_W_ATTN_POST_NORM])
                ref_rmsnorm(tmp, tmp, L->t[LM_W_ATTN_POST_NORM], E, hp->norm_eps);
            for (int i = 0; i < E; i++)
                x[i] += tmp[i];
            ref_rmsnorm(xn, x, L->t[LM_W_FFN_NORM], E, hp->norm_eps);
            if (hp->n_expert) {
                ref_moe(m, L, xn, tmp);
                for (int i = 0; i < E; i++)
                    x[i] += tmp[i];
                continue;
            }
            if (fused_up) {
                ref_matvec(L->t[LM_W_UP], xn, wide);
                memcpy(g, wide, hp->n_ff * sizeof(double));
                memcpy(u, wide + hp->n_ff, hp->n_ff * sizeof(double));
            } else {
                ref_matvec(L->t[LM_W_GATE], xn, g);
                ref_matvec(L->t[LM_W_UP], xn, u);
            }
            for (uint32_t i = 0; i < hp->n_ff; i++)
                g[i] = (gelu ? gelu_tanh(g[i]) : g[i] / (1 + exp(-g[i]))) * u[i];
            ref_matvec(L->t[LM_W_DOWN], g, tmp);
            if (L->t[LM_W_FFN_POST_NORM])
                ref_rmsnorm(tmp, tmp, L->t[LM_W_FFN_POST_NORM], E, hp->norm_eps);
            for (int i = 0; i < E; i++)
                x[i] += tmp[i];
        }
        ref_rmsnorm(xn, x, m->output_norm, E, hp->norm_eps);
        ref_matvec(m->output, xn, logits + (size_t)t * hp->n_vocab);
    }
    free(kc); free(vc); free(x); free(xn); free(q); free(att); free(tmp); free(g); free(u);
    free(sc); free(emb); free(wide);
    return logits;
}

/* ---- the checks --------------------------------------------------------- */

static char model_path[256];

static lm_model *write_and_load(const test_model_shape *shape)
{
    assert_int_equal(test_write_model_tmp(shape, model_path, sizeof model_path), 0);
    lm_model *m = lm_model_load(model_path);
    if (!m)
        fail_msg("load: %s", lm_last_error());
    return m;
}

static void remove_model(void)
{
    test_remove_model_tmp(model_path);
}

static const int32_t prompt[] = {5, 12, 63, 40, 1, 2, 33, 20, 9, 57, 14, 30};
#define N_PROMPT ((int)(sizeof prompt / sizeof *prompt))

/* Largest difference relative to the largest reference logit. */
static double relative_error(const float *got, const double *want, size_t n)
{
    double max_diff = 0, max_ref = 1e-6;
    for (size_t i = 0; i < n; i++) {
        max_diff = fmax(max_diff, fabs(got[i] - want[i]));
        max_ref = fmax(max_ref, fabs(want[i]));
    }
    return max_diff / max_ref;
}

static void check_against_reference(const test_model_shape *shape, double tolerance)
{
    lm_model *m = write_and_load(shape);
    const int V = (int)m->hp.n_vocab;
    double *want = ref_forward(m, prompt, N_PROMPT);

    /* the whole prompt in batches of 5: all logits */
    lm_session *s = lm_session_new(m, 64, 5);
    assert_non_null(s);
    float *got = malloc((size_t)N_PROMPT * V * sizeof(float));
    assert_int_equal(lm_session_eval(s, prompt, N_PROMPT, true, got), 0);
    double err = relative_error(got, want, (size_t)N_PROMPT * V);
    print_message("%s %s: batched max relative error %.2e (tolerance %.0e)\n", shape->arch,
                  lm_type_name(shape->weight_type), err, tolerance);
    assert_true(err < tolerance);

    /* token by token, each step's logits against the same reference row */
    lm_session_rewind(s, 0);
    for (int t = 0; t < N_PROMPT; t++) {
        assert_int_equal(lm_session_eval(s, &prompt[t], 1, false, got), 0);
        assert_true(relative_error(got, want + (size_t)t * V, V) < tolerance);
    }
    assert_int_equal(lm_session_seq_pos(s, 0), N_PROMPT);
    free(got);
    free(want);
    lm_session_free(s);
    lm_model_free(m);
    remove_model();
}

static void llama_f32(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_F32, 2, 64, 4, 2, 96, false, 1, NULL, 0, NULL, 0, 0, 0, 0};
    check_against_reference(&shape, 2e-3); /* fp16 KV cache and fp16 probabilities */
}

static void llama_tied_q8_0(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_Q8_0, 2, 64, 4, 1, 96, true, 2, NULL, 0, NULL, 0, 0, 0, 0};
    check_against_reference(&shape, 2e-2); /* activations quantized to 8 bits */
}

static void llama_q4_1(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_Q4_1, 3, 64, 2, 2, 128, false, 3, NULL, 0, NULL, 0, 0, 0, 0};
    check_against_reference(&shape, 2e-2);
}

static void qwen2_f16(void **state)
{
    (void)state;
    test_model_shape shape = {"qwen2", LM_TYPE_F16, 2, 64, 4, 2, 96, false, 4, NULL, 0, NULL, 0, 0, 0, 0};
    check_against_reference(&shape, 2e-3);
}

static void qwen2_q5_0(void **state)
{
    (void)state;
    test_model_shape shape = {"qwen2", LM_TYPE_Q5_0, 2, 64, 4, 2, 96, true, 5, NULL, 0, NULL, 0, 0, 0, 0};
    check_against_reference(&shape, 3e-2);
}

static void qwen3_q8_0(void **state)
{
    (void)state;
    /* a head size that is not embedding/heads (attention.key_length) */
    test_model_shape shape = {"qwen3", LM_TYPE_Q8_0, 2, 64, 4, 2, 96, false, 8, NULL, 0, NULL,
                              32, 0, 0, 0};
    check_against_reference(&shape, 2e-2);
}

static void phi3_f16(void **state)
{
    (void)state;
    test_model_shape shape = {"phi3", LM_TYPE_F16, 2, 64, 4, 4, 96, false, 9, NULL, 0, NULL, 0, 0, 0, 0};
    check_against_reference(&shape, 2e-3);
}

static void phi3_q4_0_gqa(void **state)
{
    (void)state;
    test_model_shape shape = {"phi3", LM_TYPE_Q4_0, 2, 64, 4, 2, 96, true, 10, NULL, 0, NULL, 0, 0, 0, 0};
    check_against_reference(&shape, 3e-2);
}

/* gemma3 with 7 layers: layer 5 global, the others sliding windows of 4
 * positions, which the 12-token prompt goes past */
static void gemma3_f32(void **state)
{
    (void)state;
    test_model_shape shape = {"gemma3", LM_TYPE_F32, 7, 64, 4, 1, 96, true, 11, NULL, 0, NULL,
                              32, 4, 0, 0};
    check_against_reference(&shape, 5e-3); /* and fp16 GELU */
}

static void gemma3_q8_0(void **state)
{
    (void)state;
    test_model_shape shape = {"gemma3", LM_TYPE_Q8_0, 7, 64, 2, 2, 96, true, 12, NULL, 0, NULL,
                              0, 3, 0, 0};
    check_against_reference(&shape, 3e-2);
}

/* Mixtures of experts: Mixtral's layout (llama with experts) and qwen3moe;
 * 8 experts, 2 used: the 12 rows of the prompt go to different ones */
static void mixtral_q8_0(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_Q8_0, 2, 64, 4, 2, 96, false, 13, NULL, 0, NULL,
                              0, 0, 8, 2};
    check_against_reference(&shape, 2e-2);
}

/* qwen2moe: qwen2's biases, 8 experts of which 2 used, not renormalized,
 * and a shared expert */
static void qwen2moe_q8_0(void **state)
{
    (void)state;
    test_model_shape shape = {"qwen2moe", LM_TYPE_Q8_0, 2, 64, 4, 2, 96, false, 16, NULL, 0,
                              NULL, 0, 0, 8, 2};
    check_against_reference(&shape, 2e-2);
}

static void qwen3moe_f16(void **state)
{
    (void)state;
    test_model_shape shape = {"qwen3moe", LM_TYPE_F16, 2, 64, 4, 2, 64, true, 14, NULL, 0,
                              NULL, 32, 0, 8, 3};
    check_against_reference(&shape, 2e-3);
}

/* RoPE scaling keys: linear divides every frequency by the factor; llama3
 * keeps the highest frequencies, divides the lowest by the factor. */
static void rope_scaling_keys(void **state)
{
    (void)state;
    test_model_shape plain = {"llama", LM_TYPE_F32, 1, 64, 4, 2, 96, false, 7, NULL, 0, NULL, 0, 0, 0, 0};
    lm_model *m = write_and_load(&plain);
    assert_float_equal(m->rope.freq_scale, 1.0f, 0.0);
    assert_null(m->rope.freq_div);
    lm_model_free(m);
    remove_model();

    test_model_shape linear = plain;
    linear.rope_scaling = "linear";
    linear.rope_factor = 4.0f;
    m = write_and_load(&linear);
    assert_float_equal(m->rope.freq_scale, 0.25f, 0.0);
    lm_model_free(m);
    remove_model();

    test_model_shape llama3 = plain;
    llama3.rope_scaling = "llama3";
    llama3.rope_factor = 8.0f;
    m = write_and_load(&llama3);
    assert_non_null(m->rope.freq_div);
    assert_float_equal(m->rope.freq_div[0], 1.0f, 0.0); /* wavelength 2*pi < 256/4 */
    assert_float_equal(m->rope.freq_div[7], 8.0f, 0.0); /* wavelength > 256 */
    lm_model_free(m);
    remove_model();

    test_model_shape bad = plain;
    bad.rope_scaling = "yarn-ish";
    bad.rope_factor = 2.0f;
    assert_int_equal(test_write_model_tmp(&bad, model_path, sizeof model_path), 0);
    assert_null(lm_model_load(model_path));
    assert_non_null(strstr(lm_last_error(), "unsupported RoPE scaling"));
    remove_model();
}

static void errors_are_reported(void **state)
{
    (void)state;
    test_model_shape shape = {"llama", LM_TYPE_F32, 1, 64, 4, 2, 96, false, 6, NULL, 0, NULL, 0, 0, 0, 0};
    lm_model *m = write_and_load(&shape);
    lm_session *s = lm_session_new(m, 8, 4);
    assert_non_null(s);
    int32_t bad = 9999;
    assert_int_equal(lm_session_eval(s, &bad, 1, false, NULL), -1);
    assert_non_null(strstr(lm_last_error(), "outside the vocabulary"));
    assert_int_equal(lm_session_eval(s, prompt, 8, false, NULL), 0);
    assert_int_equal(lm_session_eval(s, prompt, 1, false, NULL), -1);
    assert_non_null(strstr(lm_last_error(), "do not fit the context"));
    lm_session_free(s);
    lm_model_free(m);
    remove_model();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama_f32),     cmocka_unit_test(llama_tied_q8_0),
        cmocka_unit_test(llama_q4_1),    cmocka_unit_test(qwen2_f16),
        cmocka_unit_test(qwen2_q5_0),    cmocka_unit_test(qwen3_q8_0),
        cmocka_unit_test(phi3_f16),      cmocka_unit_test(phi3_q4_0_gqa),
        cmocka_unit_test(gemma3_f32),    cmocka_unit_test(gemma3_q8_0),
        cmocka_unit_test(mixtral_q8_0),  cmocka_unit_test(qwen3moe_f16),
        cmocka_unit_test(qwen2moe_q8_0),
        cmocka_unit_test(rope_scaling_keys),
        cmocka_unit_test(errors_are_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
