/* The parts of a transformer layer that are not weight products, on the
 * CPU: RMSNorm, RoPE, attention over an fp16 KV cache, SwiGLU.  Each works
 * on n rows and spreads the rows over the OpenMP threads when it pays. */
#ifndef LM_CPU_OPS_H
#define LM_CPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "quant.h"

/* out[t] = x[t] / rms(x[t]) * w, for n rows of dim. */
void lm_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps);

/* How RoPE turns: pair i at position p by the angle
 *   freq_scale * (p * theta_scale^i) / freq_div[i]
 * where p * theta_scale^i is computed by repeated multiplication in float,
 * rounding at every step, exactly as ggml does. */
typedef struct {
    int n_rot;           /* dimensions turned (pairs: n_rot/2) */
    bool neox;           /* turn (i, i+n_rot/2) instead of (2i, 2i+1) */
    float theta_scale;   /* base^(-2/n_rot) in float */
    float freq_scale;    /* 1, or 1/factor for linear scaling */
    const float *freq_div; /* n_rot/2 divisors (llama3 scaling), or NULL */
} lm_rope_params;

/* cos and sin of the n_rot/2 angles at position pos. */
void lm_rope_angles(const lm_rope_params *rp, int pos, float *cs, float *sn);

/* Rotates n_heads heads of head_dim in each of n rows; row t is at position
 * pos0 + t. */
void lm_rope(float *x, int n, int n_heads, int head_dim, int pos0, const lm_rope_params *rp);

/* out[t] = silu(gate[t]) * up[t], elementwise over n*dim values (in place
 * into gate is allowed). */
/* expf as ggml's AVX-512 vector routine computes it (not always equal to expf) */
float lm_expf_ggml(float x);
/* y[i] = lm_expf_ggml(x[i]), vectorized where the CPU allows */
void lm_expf_ggml_n(float *y, const float *x, int n);

void lm_swiglu(float *out, const float *gate, const float *up, int64_t count);

/* x[i] += y[i] */
void lm_add(float *x, const float *y, int64_t count);

/* gate = gelu(gate) * up over count values, GELU's tanh form as ggml's CPU
 * computes it: on the input rounded to fp16, the result rounded to fp16. */
void lm_geglu(float *gate, const float *up, int64_t count);

/* The fp16 GELU of every fp16 input that lm_geglu looks up (65536). */
const lm_fp16 *lm_gelu_table(void);

/* One row's routing among n_expert experts (cpu/moe.c): probs (n_expert)
 * the router's softmax, selected the n_used highest (highest first) and
 * weights their probabilities, renormalized to sum 1 when norm. */
void lm_moe_route(const float *logits, int n_expert, int n_used, bool norm, float *probs,
                  int32_t *selected, float *weights);

/* x *= factor over count values. */
void lm_scale(float *x, float factor, int64_t count);

/* out[t] = b + x[t] for n rows of dim (the qwen2 biases). */
void lm_add_bias(float *x, const float *b, int n, int dim);

/* Causal attention for n query rows at positions pos0.., against a cache
 * holding positions 0..pos0+n-1 (rows of n_head_kv*head_dim fp16, k and v).
 * q: n rows of n_head*head_dim; out likewise.  window > 0: a row sees only
 * the last `window` positions (its own included).  The scores are q.k times
 * kq_scale.  scratch: one lm_attention_scratch_floats() area per OpenMP
 * thread. */
void lm_attention(float *out, const float *q, const lm_fp16 *k_cache, const lm_fp16 *v_cache,
                  int n, int pos0, int n_head, int n_head_kv, int head_dim, int window,
                  float kq_scale, float *scratch, int n_ctx);

/* lm_attention with the kernels of the given path (tests compare the
 * paths the CPU has); a path the CPU lacks must not be asked for. */
void lm_attention_on(lm_cpu_path path, float *out, const float *q, const lm_fp16 *k_cache,
                     const lm_fp16 *v_cache, int n, int pos0, int n_head, int n_head_kv,
                     int head_dim, int window, float kq_scale, float *scratch, int n_ctx);

size_t lm_attention_scratch_floats(int n_ctx, int head_dim);

/* Stores n rows of kv_dim floats as fp16 at cache row pos0. */
void lm_store_fp16(lm_fp16 *cache, const float *src, int n, int kv_dim, int pos0);

/* Fast fp16 <-> f32 for the hot paths (a table one way, hardware or the
 * reference conversion the other). */
float lm_half_to_float(lm_fp16 h);
lm_fp16 lm_float_to_half(float f);

/* dst[i] = src[i] as fp16 (to nearest, ties to even), n values. */
void lm_floats_to_half(lm_fp16 *dst, const float *src, int64_t n);

/* dst[i] = src[i] * mul rounded to fp16 and back (to nearest, ties to even:
 * lm_float_to_half's rounding), n values; in place is allowed. */
void lm_round_to_half(float *dst, const float *src, int64_t n, float mul);

#endif
