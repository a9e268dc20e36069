/* Mixture-of-experts routing as llama.cpp's CPU graph computes it
 * (build_moe_ffn with softmax gating): the router's softmax in the order of
 * ggml_soft_max_f32 (AVX-512 build: 16-lane ggml_v_expf chunks, each summed
 * as a 512-bit tree and added in double, the tail by expf), the top n_used
 * by argsort (highest first), their probabilities renormalized by a sum in
 * double clamped below at fp16's smallest normal. */
#include <math.h>

#include "ops.h"

/* 16 floats summed as a 512-bit tree reduction (_mm512_reduce_add_ps) */
static float reduce16(const float *a)
{
    float t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = a[i + 8] + a[i];
    for (int i = 0; i < 4; i++)
        t4[i] = t8[i + 4] + t8[i];
    return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

void lm_moe_route(const float *logits, int n_expert, int n_used, bool norm, float *probs,
                  int32_t *selected, float *weights)
{
    float max = -INFINITY;
    for (int e = 0; e < n_expert; e++)
        max = logits[e] > max ? logits[e] : max;
    double sum = 0;
    int e = 0;
    for (; e + 15 < n_expert; e += 16) {
        float d[16];
        for (int l = 0; l < 16; l++)
            d[l] = logits[e + l] - max;
        lm_expf_ggml_n(probs + e, d, 16);
        sum += (double)reduce16(probs + e);
    }
    for (; e < n_expert; e++) {
        probs[e] = expf(logits[e] - max);
        sum += (double)probs[e];
    }
    const float inv = (float)(1.0 / sum);
    for (e = 0; e < n_expert; e++)
        probs[e] *= inv;
    /* the n_used highest, highest first (ties: the lower index) */
    for (int k = 0; k < n_used; k++) {
        int best = -1;
        for (e = 0; e < n_expert; e++) {
            bool taken = false;
            for (int j = 0; j < k && !taken; j++)
                taken = selected[j] == e;
            if (!taken && (best < 0 || probs[e] > probs[best]))
                best = e;
        }
        selected[k] = best;
        weights[k] = probs[best];
    }
    if (!norm)
        return;
    double wsum = 0;
    for (int k = 0; k < n_used; k++)
        wsum += (double)weights[k];
    float s = (float)wsum;
    s = s < 6.103515625e-5f ? 6.103515625e-5f : s;
    for (int k = 0; k < n_used; k++)
        weights[k] /= s;
}
