/* The layer's elementwise and row operations, as cpu/ops.c computes them. */

/* One work-item per row: squares summed in double (as ggml) where the
 * device has it. */
kernel void rmsnorm(global float *out, global const float *x, global const float *w, int dim,
                    float eps)
{
    const size_t t = get_global_id(0);
    global const float *xr = x + t * dim;
    global float *o = out + t * dim;
    acc_t sum = 0;
    for (int i = 0; i < dim; i++)
        sum += (acc_t)(xr[i] * xr[i]);
    const float scale = 1.0f / sqrt((float)(sum / dim) + eps);
    for (int i = 0; i < dim; i++)
        o[i] = xr[i] * scale * w[i];
}

/* Work-item (t, head, i) turns one pair; cs holds cos then sin of each
 * (token, frequency), computed on the host with the CPU's cosf/sinf. */
kernel void rope(global float *x, global const float *cs, int n_heads, int head_dim, int n_rot,
                 int neox)
{
    const int nh = n_rot / 2;
    const size_t id = get_global_id(0);
    const int i = id % nh, h = id / nh % n_heads, t = id / nh / n_heads;
    global float *v = x + ((size_t)t * n_heads + h) * head_dim;
    const int a = neox ? i : 2 * i, b = neox ? i + nh : 2 * i + 1;
    const float c = cs[(size_t)t * n_rot + i], s = cs[(size_t)t * n_rot + nh + i];
    const float x0 = v[a], x1 = v[b];
    /* as the CPU backend (and llama.cpp's build) computes it */
    v[a] = fma(x0, c, -(x1 * s));
    v[b] = fma(x0, s, x1 * c);
}

/* lm_swiglu: g / (1 + e^-g) * up with ggml's exponential. */
kernel void swiglu(global float *gate, global const float *up)
{
    const size_t i = get_global_id(0);
    const float g = gate[i];
    gate[i] = g / (1.0f + expf_ggml(0.0f - g)) * up[i];
}

/* lm_geglu: GELU of the input rounded to fp16, looked up in the CPU's table
 * of fp16 results (65536 entries), times up. */
kernel void geglu(global float *gate, global const float *up, global const ushort *table)
{
    const size_t i = get_global_id(0);
    const float x = gate[i];
    if (x <= -10.0f) {
        gate[i] = 0.0f;
    } else if (x >= 10.0f) {
        gate[i] = x * up[i];
    } else {
        ushort h;
        vstore_half_rte(x, 0, (private half *)&h);
        gate[i] = h2f(table[h]) * up[i];
    }
}

/* out = columns [col0, col0 + width) of in's rows (of in_width) */
kernel void columns(global float *out, global const float *in, int in_width, int col0, int width)
{
    const size_t i = get_global_id(0), t = i / width;
    out[i] = in[t * in_width + col0 + i % width];
}

kernel void scale(global float *x, float factor)
{
    x[get_global_id(0)] *= factor;
}

kernel void add(global float *x, global const float *y)
{
    const size_t i = get_global_id(0);
    x[i] += y[i];
}

kernel void add_bias(global float *x, global const float *b, int dim)
{
    const size_t i = get_global_id(0);
    x[i] += b[i % dim];
}

/* n rows of kv_dim floats into the fp16 cache at row pos0. */
/* rows (common.cl): a row goes to its sequence's cache at its position */
kernel void store_kv(global half *cache, global const float *src, int kv_dim,
                     global const int *rows)
{
    const size_t i = get_global_id(0), t = i / kv_dim;
    const size_t dst = (size_t)(rows[t * ROW_INFO] + rows[t * ROW_INFO + 1]) * kv_dim + i % kv_dim;
    vstore_half_rte(src[i], dst, cache);
}
