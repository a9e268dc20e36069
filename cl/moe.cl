/* A mixture of experts' steps around its experts' products
 * (cl/moe_cl.c), as cpu/backend_cpu.c's op_moe does them: each expert
 * takes the rows that picked it (gathered), its output goes to each
 * (row, pick)'s place, and each row's picks are weighted and added in
 * their order. */

/* Row i of dst = the row of x whose (row, pick) is list[list0 + i] (each
 * row has k_used picks). */
kernel void moe_gather(global float *dst, global const float *x, global const int *list,
                       int list0, int dim, int k_used)
{
    const size_t g = get_global_id(0);
    const size_t i = g / dim, d = g % dim;
    dst[g] = x[(size_t)(list[list0 + i] / k_used) * dim + d];
}

/* The place of (row, pick) list[list0 + i] in out = row i of src. */
kernel void moe_scatter(global float *out, global const float *src, global const int *list,
                        int list0, int dim)
{
    const size_t g = get_global_id(0);
    const size_t i = g / dim, d = g % dim;
    out[(size_t)list[list0 + i] * dim + d] = src[g];
}

/* Row t of out = its picks' outputs (eo: k_used rows per row) times their
 * weights, added in the picks' order (the highest first). */
kernel void moe_combine(global float *out, global const float *eo, global const float *w, int dim,
                        int k_used)
{
    const size_t g = get_global_id(0);
    const size_t t = g / dim, d = g % dim;
    global const float *e = eo + t * k_used * dim + d;
    global const float *wt = w + t * k_used;
    float acc = e[0] * wt[0];
    for (int k = 1; k < k_used; k++) {
        const float p = e[(size_t)k * dim] * wt[k];
        acc = acc + p;
    }
    out[g] = acc;
}

/* Row t of x (dim floats) *= s[t]. */
kernel void scale_rows(global float *x, global const float *s, int dim)
{
    const size_t g = get_global_id(0);
    x[g] *= s[g / dim];
}
