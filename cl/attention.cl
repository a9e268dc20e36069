/* Causal attention over the fp16 KV cache as cpu/attention.c computes it: q
 * rounded to fp16 for the K products, softmax in f32 with a double sum,
 * probabilities rounded to fp16 for the V product.  Work-item (t, h): query
 * head h of token t (position pos0 + t); scores holds n_ctx floats for each. */
kernel void attention(global float *out, global const float *q, global const half *k_cache,
                      global const half *v_cache, global float *scores, int pos0, int n_head,
                      int n_head_kv, int head_dim, int n_ctx)
{
    const int h = get_global_id(0) % n_head, t = get_global_id(0) / n_head;
    const int n_pos = pos0 + t + 1, kvh = h / (n_head / n_head_kv);
    const int q_stride = n_head * head_dim, kv_stride = n_head_kv * head_dim;
    global const float *qh = q + (size_t)t * q_stride + h * head_dim;
    global float *s = scores + get_global_id(0) * (size_t)n_ctx;
    global float *o = out + (size_t)t * q_stride + h * head_dim;
    const float scale = 1.0f / sqrt((float)head_dim);
    float max = -INFINITY;
    for (int p = 0; p < n_pos; p++) {
        global const half *k = k_cache + (size_t)p * kv_stride + kvh * head_dim;
        float d = 0.0f;
        for (int i = 0; i < head_dim; i++)
            d += round_half(qh[i]) * vload_half(i, k);
        s[p] = d * scale;
        max = fmax(max, s[p]);
    }
    acc_t sum = 0;
    for (int p = 0; p < n_pos; p++) {
        s[p] = exp(s[p] - max);
        sum += s[p];
    }
    const float inv = (float)((acc_t)1 / sum);
    for (int p = 0; p < n_pos; p++)
        s[p] = round_half(s[p] * inv);
    for (int i = 0; i < head_dim; i++) {
        float acc = 0.0f;
        for (int p = 0; p < n_pos; p++)
            acc += s[p] * vload_half(i, v_cache + (size_t)p * kv_stride + kvh * head_dim);
        o[i] = acc;
    }
}
