/* Causal attention over the fp16 KV cache as cpu/attention.c computes it,
 * bit for bit: q rounded to fp16; each score a dot product in the order of
 * ggml_vec_dot_f16 (one token: 4 accumulators of 16 lanes over steps of 64)
 * or of tinyBLAS (2 or more tokens: one 16-lane accumulator), both fused,
 * then times 1/sqrt(head_dim); softmax with ggml's exponential, each 16-lane
 * chunk tree-summed in float and added in double, every value times
 * (float)(1/sum) and rounded to fp16; the V product over positions in the
 * same vec_dot / tinyBLAS order (position p into slot p % 64 or p % 16).
 * Work-item (t, h): query head h of token t (position pos0 + t); scores
 * holds n_ctx floats for each.  batched: the pass has 2 or more tokens. */

/* 16 floats summed as a 512-bit tree reduction (gg_reduce16). */
inline float reduce16(const float *a)
{
    float t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = a[i + 8] + a[i];
    for (int i = 0; i < 4; i++)
        t4[i] = t8[i + 4] + t8[i];
    const float x0 = t4[0] + t4[2], x1 = t4[1] + t4[3];
    return x0 + x1;
}

inline float kq_dot(const float *qh, global const half *k, int hd, int tiny)
{
    float acc[4][16];
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 16; l++)
            acc[j][l] = 0.0f;
    if (tiny) {
        for (int i = 0; i < hd; i += 16)
            for (int l = 0; l < 16; l++)
                acc[0][l] = fma(vload_half(i + l, k), qh[i + l], acc[0][l]);
        return reduce16(acc[0]);
    }
    const int np = hd & ~63;
    for (int i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++) {
                const int e = i + j * 16 + l;
                acc[j][l] = fma(vload_half(e, k), qh[e], acc[j][l]);
            }
    for (int l = 0; l < 16; l++) {
        acc[0][l] = acc[0][l] + acc[2][l];
        acc[1][l] = acc[1][l] + acc[3][l];
        acc[0][l] = acc[0][l] + acc[1][l];
    }
    acc_t sum = reduce16(acc[0]);
    for (int i = np; i < hd; i++)
        sum += (acc_t)(vload_half(i, k) * qh[i]);
    return (float)sum;
}

/* reduce16 of the 16 components of v */
inline float reduce16v(float16 v)
{
    const float8 t8 = v.hi + v.lo;
    const float4 t4 = t8.hi + t8.lo;
    return (t4.s0 + t4.s2) + (t4.s1 + t4.s3);
}

/* kq_dot for head_dim % 16 == 0, 16 lanes as one vector */
inline float kq_dot16(const float *qh, global const half *k, int hd, int tiny)
{
    if (tiny) {
        float16 acc = 0.0f;
        for (int i = 0; i < hd; i += 16)
            acc = fma(vload_half16(0, k + i), vload16(0, qh + i), acc);
        return reduce16v(acc);
    }
    float16 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    const int np = hd & ~63;
    for (int i = 0; i < np; i += 64) {
        a0 = fma(vload_half16(0, k + i), vload16(0, qh + i), a0);
        a1 = fma(vload_half16(0, k + i + 16), vload16(0, qh + i + 16), a1);
        a2 = fma(vload_half16(0, k + i + 32), vload16(0, qh + i + 32), a2);
        a3 = fma(vload_half16(0, k + i + 48), vload16(0, qh + i + 48), a3);
    }
    acc_t sum = reduce16v((a0 + a2) + (a1 + a3));
    for (int i = np; i < hd; i++)
        sum += (acc_t)(vload_half(i, k) * qh[i]);
    return (float)sum;
}

/* Slot j of the V product for 8 dimensions at once: positions j, j + ns,
 * ... fused in order, as the CPU's slot p % ns accumulates them. */
inline float8 v_chain(global const half *vb, global const float *s, int n_pos, int kv_stride,
                      int j, int ns)
{
    float8 acc = 0.0f;
    for (int p = j; p < n_pos; p += ns)
        acc = fma(vload_half8(0, vb + (size_t)p * kv_stride), (float8)s[p], acc);
    return acc;
}

/* Lane l of the V product's 16: slot l (tinyBLAS), or the 4 accumulators'
 * lane l added as ggml_vec_dot_f16 adds them. */
inline float8 v_lane(global const half *vb, global const float *s, int n_pos, int kv_stride,
                     int l, int tiny)
{
    if (tiny)
        return v_chain(vb, s, n_pos, kv_stride, l, 16);
    return (v_chain(vb, s, n_pos, kv_stride, l, 64) + v_chain(vb, s, n_pos, kv_stride, 32 + l, 64)) +
           (v_chain(vb, s, n_pos, kv_stride, 16 + l, 64) + v_chain(vb, s, n_pos, kv_stride, 48 + l, 64));
}

#define MAX_HD 256

/* rows: ROW_INFO ints per row of the pass (common.cl) */
kernel void attention(global float *out, global const float *q, global const half *k_all,
                      global const half *v_all, global float *scores, global const int *rows,
                      int n_head, int n_head_kv, int head_dim, int n_ctx, int window,
                      float kq_scale)
{
    const int h = get_global_id(0) % n_head, t = get_global_id(0) / n_head;
    const int q_stride = n_head * head_dim, kv_stride = n_head_kv * head_dim;
    const int base = rows[t * ROW_INFO], batched = rows[t * ROW_INFO + 2];
    const int n_pos = rows[t * ROW_INFO + 1] + 1, kvh = h / (n_head / n_head_kv);
    global const half *k_cache = k_all + (size_t)base * kv_stride;
    global const half *v_cache = v_all + (size_t)base * kv_stride;
    global const float *qg = q + (size_t)t * q_stride + h * head_dim;
    global float *s = scores + get_global_id(0) * (size_t)n_ctx;
    global float *o = out + (size_t)t * q_stride + h * head_dim;
    /* a sliding window masks the positions before `first`: probability 0 */
    const int first = window > 0 && n_pos > window ? n_pos - window : 0;
    const int tiny_kq = batched && head_dim % 16 == 0, tiny_kqv = batched;
    float qh[MAX_HD];
    for (int i = 0; i < head_dim; i++)
        qh[i] = round_half(qg[i]);
    float max = -INFINITY;
    for (int p = first; p < n_pos; p++) {
        global const half *kp = k_cache + (size_t)p * kv_stride + kvh * head_dim;
        s[p] = (head_dim % 16 == 0 ? kq_dot16(qh, kp, head_dim, tiny_kq)
                                   : kq_dot(qh, kp, head_dim, tiny_kq)) *
               kq_scale;
        max = s[p] > max ? s[p] : max;
    }
    for (int p = 0; p < first; p++)
        s[p] = 0.0f;
    for (int p = first; p < n_pos; p++)
        s[p] = expf_ggml(s[p] - max);
    acc_t sum = 0;
    for (int c = 0; c < n_pos; c += 16) {
        float e[16];
        for (int l = 0; l < 16; l++)
            e[l] = c + l < n_pos ? s[c + l] : 0.0f;
        sum += (acc_t)reduce16(e);
    }
    const float inv = (float)((acc_t)1 / sum);
    for (int p = 0; p < n_pos; p++)
        s[p] = round_half(s[p] * inv);
    const int ns = tiny_kqv ? 16 : 64;
    global const half *vb = v_cache + kvh * head_dim;
    if (head_dim % 8 == 0) { /* 8 dimensions at a time, reduce16's tree built as it goes */
        for (int d = 0; d < head_dim; d += 8) {
            float8 t4[4];
            for (int i = 0; i < 4; i++)
                t4[i] = (v_lane(vb + d, s, n_pos, kv_stride, i + 12, tiny_kqv) +
                         v_lane(vb + d, s, n_pos, kv_stride, i + 4, tiny_kqv)) +
                        (v_lane(vb + d, s, n_pos, kv_stride, i + 8, tiny_kqv) +
                         v_lane(vb + d, s, n_pos, kv_stride, i, tiny_kqv));
            vstore8((t4[0] + t4[2]) + (t4[1] + t4[3]), 0, o + d);
        }
        return;
    }
    for (int d = 0; d < head_dim; d++) {
        float slot[64];
        for (int j = 0; j < ns; j++)
            slot[j] = 0.0f;
        for (int p = 0; p < n_pos; p++)
            slot[p % ns] = fma(vload_half(d, vb + (size_t)p * kv_stride), s[p], slot[p % ns]);
        float lane[16];
        for (int l = 0; l < 16; l++)
            lane[l] = tiny_kqv ? slot[l] : (slot[l] + slot[32 + l]) + (slot[16 + l] + slot[48 + l]);
        o[d] = reduce16(lane);
    }
}
