/* The OpenCL backend: the block's operations (src/arch/block.h) as kernels
 * over device buffers, so a layer's activations stay on the device.  A resident layer's weights are uploaded
 * once at creation, as their GGUF bytes; a streamed layer's arrive each pass
 * in one of two device slots, copied asynchronously from a pinned staging
 * buffer on a second (transfer) queue by the streamer's I/O thread while the
 * previous layer computes.  The KV cache of every layer it runs lives on the
 * device.  One token goes through
 * the fused dequantize+matvec kernels over activations quantized on the
 * device as the CPU quantizes them; so do prompts, by default, as a 2-D
 * range over (row, token).  Every kernel repeats the CPU backend's float
 * operations in the CPU's order (see the comments in the cl/ kernels), so on a
 * conforming device the logits equal the CPU path's bit for bit.
 *
 * The other prompt path dequantizes each weight into a scratch buffer and
 * multiplies with CLBlast's SGEMM over f32 activations.  On real GPUs it is
 * much faster for long prompts, but it neither quantizes the activations nor
 * sums in the CPU's order, so its logits differ slightly and greedy text can
 * part from the CPU's after a few tokens.  It is therefore opt-in:
 * LAMINA_CL_GEMM=1 sends products of 2 or more tokens to it, and
 * LAMINA_CL_GEMM_MIN=n those of n or more tokens. */
#define _GNU_SOURCE
#include "backend_cl.h" /* first: it fixes the OpenCL version to 1.2 */

#include <clblast_c.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "backend.h"
#include "error.h"
#include "kernels.h"
#include "probe.h"
#include "quant.h"
#include "timing.h"

const char *const lm_cl_kernel_names[K_COUNT] = {
    "quantize_q8_0", "quantize_q8_k", "round_to_f16", "round_to_bf16", "rmsnorm", "rope",
    "swiglu", "add", "add_bias", "store_kv", "attention", "geglu", "scale", "columns",
    "moe_gather", "moe_scatter", "moe_combine", "scale_rows",
};

/* Per weight type: the suffix of its matvec_ and dequant_ kernels. */
const char *const lm_cl_type_suffix[LM_TYPE_COUNT] = {
    [LM_TYPE_F32] = "f32",   [LM_TYPE_F16] = "f16",   [LM_TYPE_BF16] = "bf16",
    [LM_TYPE_Q4_0] = "q4_0", [LM_TYPE_Q4_1] = "q4_1", [LM_TYPE_Q5_0] = "q5_0",
    [LM_TYPE_Q5_1] = "q5_1", [LM_TYPE_Q8_0] = "q8_0", [LM_TYPE_Q4_K] = "q4_k",
    [LM_TYPE_Q5_K] = "q5_k", [LM_TYPE_Q6_K] = "q6_k",
};

static bool profiling;

void lm_backend_opencl_profile(bool on)
{
    profiling = on;
}

/* ---- launching --------------------------------------------------------- */

static void profile_event(cl_backend *cb, const char *name, cl_event ev)
{
    cl_ulong t0 = 0, t1 = 0;
    clWaitForEvents(1, &ev);
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    clReleaseEvent(ev);
    int i = 0;
    while (i < cb->n_prof && strcmp(cb->prof[i].name, name) != 0)
        i++;
    if (i == cb->n_prof) {
        if (i == MAX_PROFILE)
            return;
        cb->prof[cb->n_prof++].name = name;
    }
    cb->prof[i].ms += (double)(t1 - t0) * 1e-6;
    cb->prof[i].calls++;
}

int lm_cl_launch(cl_backend *cb, cl_kernel k, const char *name, cl_uint dims, const size_t *gws,
                 int nargs, const karg *args)
{
    for (int i = 0; i < nargs; i++) {
        cl_int err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].p);
        if (err != CL_SUCCESS) {
            lm_set_error("clSetKernelArg(%s, %d): %s (%d)", name, i, lm_cl_error_name(err), err);
            return -1;
        }
    }
    cl_event ev;
    cl_int err = clEnqueueNDRangeKernel(cb->queue, k, dims, NULL, gws, NULL, 0, NULL,
                                        profiling ? &ev : NULL);
    if (err != CL_SUCCESS) {
        lm_set_error("clEnqueueNDRangeKernel(%s): %s (%d)", name, lm_cl_error_name(err), err);
        return -1;
    }
    if (profiling)
        profile_event(cb, name, ev);
    return 0;
}

/* ---- products ------------------------------------------------------------ */

/* The activations of n rows of cols floats in x, as the weight type wants them. */
static int quantize_act(cl_backend *cb, uint32_t type, cl_mem x, int n, int cols, cl_mem *af)
{
    const uint32_t act = lm_cpu_vec_dot_type(type);
    const size_t count = (size_t)n * cols;
    *af = x;
    switch (act) { /* one row per activation type, not per weight type */
    case LM_TYPE_Q8_0:
    case LM_TYPE_Q8_1:
        return LAUNCH(cb, K_QUANT_Q8_0, 1, (size_t[]){count / 32}, A(x), A(cb->aq), A(cb->ad),
                      A(cb->as));
    case LM_TYPE_Q8_K:
        return LAUNCH(cb, K_QUANT_Q8_K, 1, (size_t[]){count / 256}, A(x), A(cb->aq), A(cb->ad),
                      A(cb->ab));
    case LM_TYPE_F16:
    case LM_TYPE_BF16:
        *af = cb->af;
        return LAUNCH(cb, act == LM_TYPE_F16 ? K_ROUND_F16 : K_ROUND_BF16, 1, &count, A(x),
                      A(cb->af));
    }
    return 0;
}

static int ensure_wf(cl_backend *cb, size_t floats)
{
    if (floats <= cb->wf_floats)
        return 0;
    lm_cl_release(&cb->mem, cb->wf);
    cb->wf = lm_cl_alloc(&cb->mem, cb->ctx, CL_MEM_READ_WRITE, floats * sizeof(float),
                         "the GEMM weight scratch");
    cb->wf_floats = cb->wf ? floats : 0;
    return cb->wf ? 0 : -1;
}

int lm_cl_product(cl_backend *cb, const lm_gguf_tensor *t, cl_mem W, uint64_t w_off, cl_mem x,
                  int n, cl_mem y)
{
    const int cols = (int)t->ne[0], rows = (int)t->ne[1];
    const cl_ulong off = w_off;
    if (n < cb->gemm_min) {
        cl_mem af;
        const cl_ulong row_bytes = lm_row_size(t->type, cols);
        if (quantize_act(cb, t->type, x, n, cols, &af) != 0)
            return -1;
        /* the 32-value block types take up to 4 tokens per work-item */
        const int per = lm_type_get(t->type)->block_size == 32 ? 4 : 1;
        return lm_cl_launch(cb, cb->matvec[t->type], lm_cl_type_suffix[t->type], 2,
                      (size_t[]){(size_t)rows, (size_t)((n + per - 1) / per)}, 12,
                      (karg[]){A(W), A(off), A(row_bytes), A(cols), A(rows), A(cb->aq), A(cb->ad),
                               A(cb->as), A(cb->ab), A(af), A(y), A(n)});
    }
    cl_mem wf = W;
    size_t wf_off = (size_t)(w_off / sizeof(float)); /* F32 weights: SGEMM reads them in place */
    if (t->type != LM_TYPE_F32 || w_off % sizeof(float)) {
        const size_t count = (size_t)rows * cols;
        const size_t bs = (size_t)lm_type_get(t->type)->block_size;
        if (ensure_wf(cb, count) != 0 ||
            lm_cl_launch(cb, cb->dequant[t->type], "dequant", 1, (size_t[]){count / bs}, 3,
                   (karg[]){A(W), A(off), A(cb->wf)}) != 0)
            return -1;
        wf = cb->wf;
        wf_off = 0;
    }
    cl_event ev;
    CLBlastStatusCode st =
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, (size_t)n,
                     (size_t)rows, (size_t)cols, 1.0f, x, 0, (size_t)cols, wf, wf_off, (size_t)cols,
                     0.0f, y, 0, (size_t)rows, &cb->queue, &ev);
    if (st != CLBlastSuccess) {
        lm_set_error("CLBlastSgemm(%d x %d x %d): status %d", n, rows, cols, (int)st);
        return -1;
    }
    if (profiling)
        profile_event(cb, "clblast_sgemm", ev);
    else
        clReleaseEvent(ev);
    return 0;
}

/* ---- the layer ------------------------------------------------------------ */

int lm_cl_write(cl_backend *cb, cl_mem dst, const void *src, size_t bytes, const char *what)
{
    cl_int err = clEnqueueWriteBuffer(cb->queue, dst, CL_TRUE, 0, bytes, src, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        lm_set_error("clEnqueueWriteBuffer(%s): %s (%d)", what, lm_cl_error_name(err), err);
        return -1;
    }
    return 0;
}

int lm_cl_read(cl_backend *cb, cl_mem src, void *dst, size_t bytes, const char *what)
{
    cl_int err = clEnqueueReadBuffer(cb->queue, src, CL_TRUE, 0, bytes, dst, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        lm_set_error("clEnqueueReadBuffer(%s): %s (%d)", what, lm_cl_error_name(err), err);
        return -1;
    }
    return 0;
}

/* A read-only buffer holding bytes from the host; NULL with an error. */
static cl_mem upload_bytes(cl_backend *cb, const void *data, size_t bytes, const char *what)
{
    cl_mem buf = lm_cl_alloc(&cb->mem, cb->ctx, CL_MEM_READ_ONLY, bytes, what);
    if (buf && lm_cl_write(cb, buf, data, bytes, what) != 0) {
        lm_cl_release(&cb->mem, buf);
        return NULL;
    }
    return buf;
}

enum { ROW_INFO = 3 }; /* as in cl/common.cl */

/* The rows of the pass for the kernels (ROW_INFO ints each), and the cos
 * and sin of every (position, frequency) of them, computed with the CPU's
 * cosf/sinf so RoPE rounds as there; uploaded when the rows change. */
static int upload_rows(cl_backend *cb, const lm_rows *rows)
{
    const lm_backend *b = &cb->base;
    const lm_hparams *hp = &b->model->hp;
    const int half = (int)hp->n_rot / 2, n = rows->n;
    const int n_runs = lm_rows_runs(rows, cb->runs);
    int *info = cb->rows_host + (size_t)ROW_INFO * b->n_batch; /* the second half: new rows */
    for (int i = 0; i < n_runs; i++)
        for (int t = 0; t < cb->runs[i].n; t++) {
            int *row = info + (size_t)(cb->runs[i].row0 + t) * ROW_INFO;
            row[0] = cb->runs[i].seq * b->n_ctx;
            row[1] = cb->runs[i].pos0 + t;
            row[2] = cb->runs[i].n >= 2;
        }
    const size_t bytes = (size_t)n * ROW_INFO * sizeof(int);
    if (cb->rows_n == n && memcmp(cb->rows_host, info, bytes) == 0)
        return 0;
    memcpy(cb->rows_host, info, bytes);
    cb->rows_n = -1; /* until both uploads are done */
    if (lm_cl_write(cb, cb->rows_dev, cb->rows_host, bytes, "row table") != 0)
        return -1;
    const lm_rope_params *kinds[2] = {&b->model->rope, &b->model->rope_swa};
    for (int k = 0; k < 2 && cb->rope_cs[k]; k++) {
        for (int t = 0; t < n; t++) {
            float *row = cb->rope_host + (size_t)t * hp->n_rot;
            lm_rope_angles(kinds[k], rows->pos[t], row, row + half);
        }
        if (lm_cl_write(cb, cb->rope_cs[k], cb->rope_host, (size_t)n * hp->n_rot * sizeof(float),
                      "rope table") != 0)
            return -1;
    }
    cb->rows_n = n;
    return 0;
}

static int rmsnorm(cl_backend *cb, cl_mem out, cl_mem x, cl_mem w, int n, int dim)
{
    const float eps = cb->base.model->hp.norm_eps;
    return LAUNCH(cb, K_RMSNORM, 1, (size_t[]){(size_t)n}, A(out), A(x), A(w), A(dim), A(eps));
}

static int rope(cl_backend *cb, cl_mem x, int n, int n_heads, lm_rope_kind kind)
{
    const lm_hparams *hp = &cb->base.model->hp;
    const int head_dim = (int)hp->head_dim, n_rot = (int)hp->n_rot, neox = hp->rope_neox;
    return LAUNCH(cb, K_ROPE, 1, (size_t[]){(size_t)n * n_heads * (n_rot / 2)}, A(x),
                  A(cb->rope_cs[kind]), A(n_heads), A(head_dim), A(n_rot), A(neox));
}

static int add_bias(cl_backend *cb, cl_mem x, cl_mem b, int n, int dim)
{
    return LAUNCH(cb, K_ADD_BIAS, 1, (size_t[]){(size_t)n * dim}, A(x), A(b), A(dim));
}

static int add(cl_backend *cb, cl_mem x, cl_mem y, size_t count)
{
    return LAUNCH(cb, K_ADD, 1, &count, A(x), A(y));
}

/* LAMINA_CL_FAIL_AFTER=N makes the N+1st layer of a backend fail as a lost
 * device would: the tests use it to check that --backend auto carries on on
 * the CPU.  (A real lost device cannot be had on demand.)  Read when the
 * backend is made, so a test can give one backend of its process the fault. */
static bool injected_failure(cl_backend *cb)
{
    if (cb->fail_after < 0 || cb->layer_calls++ < cb->fail_after)
        return false;
    lm_set_error("clEnqueueNDRangeKernel: CL_DEVICE_NOT_AVAILABLE (-2) "
                 "(injected by LAMINA_CL_FAIL_AFTER)");
    return true;
}

/* ---- the block's operations (src/arch/block.h) --------------------------- */

static int op_rmsnorm(void *ctx, lm_act out, lm_act in, int w, int dim)
{
    cl_backend *cb = ctx;
    return rmsnorm(cb, cb->act[out], cb->act[in], cb->w[w], cb->n * (cb->width[in] / dim), dim);
}

static int op_matmul(void *ctx, lm_act out, int w, lm_act in)
{
    cl_backend *cb = ctx;
    return lm_cl_product(cb, cb->base.model->layers[cb->il].t[w], cb->w[w], 0, cb->act[in], cb->n,
                   cb->act[out]);
}

static int op_add_bias(void *ctx, lm_act x, int w, int dim)
{
    cl_backend *cb = ctx;
    return add_bias(cb, cb->act[x], cb->w[w], cb->n, dim);
}

static int op_rope(void *ctx, lm_act x, int n_heads, lm_rope_kind kind)
{
    cl_backend *cb = ctx;
    if (!cb->rope_cs[kind]) {
        lm_set_error("internal: no table for RoPE kind %d", (int)kind);
        return -1;
    }
    return rope(cb, cb->act[x], cb->n, n_heads, kind);
}

static int op_attention(void *ctx, lm_act out, lm_act q, lm_act k, lm_act v, int window,
                        float kq_scale)
{
    cl_backend *cb = ctx;
    const lm_hparams *hp = &cb->base.model->hp;
    const int n_head = hp->n_head, n_head_kv = hp->n_head_kv, head_dim = hp->head_dim;
    const int kv_dim = n_head_kv * head_dim, n_ctx = cb->base.n_ctx, n = cb->n;
    cl_mem kc = cb->k_cache[cb->il], vc = cb->v_cache[cb->il];
    return LAUNCH(cb, K_STORE_KV, 1, (size_t[]){(size_t)n * kv_dim}, A(kc), A(cb->act[k]),
                  A(kv_dim), A(cb->rows_dev)) != 0 ||
                   LAUNCH(cb, K_STORE_KV, 1, (size_t[]){(size_t)n * kv_dim}, A(vc),
                          A(cb->act[v]), A(kv_dim), A(cb->rows_dev)) != 0 ||
                   LAUNCH(cb, K_ATTENTION, 1, (size_t[]){(size_t)n * n_head}, A(cb->act[out]),
                          A(cb->act[q]), A(kc), A(vc), A(cb->scores), A(cb->rows_dev),
                          A(n_head), A(n_head_kv), A(head_dim), A(n_ctx), A(window),
                          A(kq_scale)) != 0
               ? -1
               : 0;
}

static int op_swiglu(void *ctx, lm_act gate, lm_act up, int dim)
{
    cl_backend *cb = ctx;
    return LAUNCH(cb, K_SWIGLU, 1, (size_t[]){(size_t)cb->n * dim}, A(cb->act[gate]),
                  A(cb->act[up]));
}

static int op_geglu(void *ctx, lm_act gate, lm_act up, int dim)
{
    cl_backend *cb = ctx;
    if (!cb->gelu_table &&
        !(cb->gelu_table = upload_bytes(cb, lm_gelu_table(), (1u << 16) * sizeof(lm_fp16),
                                        "the GELU table")))
        return -1;
    return LAUNCH(cb, K_GEGLU, 1, (size_t[]){(size_t)cb->n * dim}, A(cb->act[gate]),
                  A(cb->act[up]), A(cb->gelu_table));
}

static int op_columns(void *ctx, lm_act out, lm_act in, int in_width, int col0, int width)
{
    cl_backend *cb = ctx;
    return LAUNCH(cb, K_COLUMNS, 1, (size_t[]){(size_t)cb->n * width}, A(cb->act[out]),
                  A(cb->act[in]), A(in_width), A(col0), A(width));
}

static int op_scale(void *ctx, lm_act x, float factor, int dim)
{
    cl_backend *cb = ctx;
    return LAUNCH(cb, K_SCALE, 1, (size_t[]){(size_t)cb->n * dim}, A(cb->act[x]), A(factor));
}

static int op_add(void *ctx, lm_act x, lm_act y, int dim)
{
    cl_backend *cb = ctx;
    return add(cb, cb->act[x], cb->act[y], (size_t)cb->n * dim);
}

static const lm_block_ops block_ops = {
    .rmsnorm = op_rmsnorm, .matmul = op_matmul, .add_bias = op_add_bias, .rope = op_rope,
    .attention = op_attention, .swiglu = op_swiglu, .geglu = op_geglu, .scale = op_scale,
    .columns = op_columns, .moe = lm_cl_op_moe, .sigmoid_gate = lm_cl_op_sigmoid_gate,
    .add = op_add,
};

/* Layer il over the rows of x with its weights in w (NULL where the layer
 * has no such tensor); x_flags: backend.h. */
static int run_layer(cl_backend *cb, int il, const cl_mem *w, float *x, const lm_rows *rows,
                     unsigned x_flags)
{
    const lm_model *m = cb->base.model;
    if (injected_failure(cb))
        return -1;
    if (lm_backend_check_rows(&cb->base, rows) != 0)
        return -1;
    const size_t xbytes = (size_t)rows->n * m->hp.n_embd * sizeof(float);
    if ((!(x_flags & LM_X_ON_BACKEND) &&
         lm_cl_write(cb, cb->act[LM_A_X], x, xbytes, "activations") != 0) ||
        upload_rows(cb, rows) != 0)
        return -1;
    cb->il = il;
    cb->n = rows->n;
    cb->w = w;
    const lm_block blk = {
        .ops = &block_ops, .ctx = cb, .model = m, .layer = &m->layers[il], .il = il};
    if (m->hp.arch->block(&blk) != 0)
        return -1;
    if (!(x_flags & LM_X_STAYS))
        return lm_cl_read(cb, cb->act[LM_A_X], x, xbytes, "activations");
    /* done before returning all the same: a streamed layer's slot is
     * refilled as soon as this returns, and the layer's time is its own */
    return lm_cl_check(clFinish(cb->queue), "clFinish");
}

static int cl_forward_layer(lm_backend *b, int il, const lm_layer_view *view, float *x,
                            const lm_rows *rows, unsigned x_flags)
{
    cl_backend *cb = (cl_backend *)b;
    /* streamed: the slot upload_staged filled; resident: uploaded at creation */
    const bool staged = view->device_slot >= 0 && view->device_slot < cb->n_slots;
    if (cb->run[il] == LM_RUN_NONE ||
        (!staged && cb->run[il] != LM_RUN_RESIDENT && cb->run[il] != LM_RUN_RESIDENT_DENSE)) {
        lm_set_error("internal: layer %d's weights are not on the device", il);
        return -1;
    }
    /* a slot has a buffer for every role some streamed layer has; this
     * layer's absent tensors (a bias, say) must read as absent */
    cl_mem w[LM_W_PER_LAYER];
    for (int i = 0; i < LM_W_PER_LAYER; i++)
        w[i] = !b->model->layers[il].t[i] ? NULL
               : staged                   ? cb->slot[view->device_slot].dev.w[i]
                                          : cb->layers[il].w[i];
    cb->trace = view->trace;
    cb->view = view;
    if (run_layer(cb, il, w, x, rows, x_flags) == 0)
        return 0;
    /* the kernels already queued may still read the slot, which the caller
     * hands back to the I/O thread to refill as soon as this returns */
    clFinish(cb->queue);
    return -1;
}

static int cl_output(lm_backend *b, const float *x_host, int n, float *logits)
{
    cl_backend *cb = (cl_backend *)b;
    const lm_model *m = b->model;
    if (n > b->n_batch || !cb->out_w) {
        lm_set_error("internal: output batch of %d (of %d) or no output head on the device", n,
                     b->n_batch);
        return -1;
    }
    if (n > cb->logits_rows) {
        lm_cl_release(&cb->mem, cb->logits);
        cb->logits_rows = 0;
        cb->logits = lm_cl_alloc(&cb->mem, cb->ctx, CL_MEM_READ_WRITE,
                                 (size_t)n * m->hp.n_vocab * sizeof(float), "logits");
        if (!cb->logits)
            return -1;
        cb->logits_rows = n;
    }
    cl_mem x = cb->act[LM_A_X], xn = cb->act[LM_A_XN];
    if (lm_cl_write(cb, x, x_host, (size_t)n * m->hp.n_embd * sizeof(float), "activations") != 0 ||
        rmsnorm(cb, xn, x, cb->out_norm, n, (int)m->hp.n_embd) != 0 ||
        lm_cl_product(cb, m->output, cb->out_w, 0, xn, n, cb->logits) != 0)
        return -1;
    return lm_cl_read(cb, cb->logits, logits, (size_t)n * m->hp.n_vocab * sizeof(float), "logits");
}

static int cl_seq_copy(lm_backend *b, int src, int dst, int n)
{
    cl_backend *cb = (cl_backend *)b;
    const lm_hparams *hp = &b->model->hp;
    const size_t row = (size_t)hp->n_head_kv * hp->head_dim * 2; /* fp16 */
    if (src == dst || n <= 0)
        return 0;
    for (uint32_t il = 0; il < hp->n_layer; il++)
        for (int kv = 0; kv < 2 && cb->k_cache[il]; kv++) {
            cl_mem c = kv ? cb->v_cache[il] : cb->k_cache[il];
            cl_int err = clEnqueueCopyBuffer(cb->queue, c, c, (size_t)src * b->n_ctx * row,
                                             (size_t)dst * b->n_ctx * row, (size_t)n * row, 0,
                                             NULL, NULL);
            if (err != CL_SUCCESS) {
                lm_set_error("clEnqueueCopyBuffer(KV cache): %s (%d)", lm_cl_error_name(err), err);
                return -1;
            }
        }
    return 0;
}

static void print_profile(cl_backend *cb)
{
    double total = 0;
    for (int i = 0; i < cb->n_prof; i++)
        total += cb->prof[i].ms;
    if (total <= 0)
        return;
    /* largest first: a few entries, a selection sort is plenty */
    for (int i = 0; i < cb->n_prof; i++)
        for (int j = i + 1; j < cb->n_prof; j++)
            if (cb->prof[j].ms > cb->prof[i].ms) {
                __typeof__(cb->prof[0]) t = cb->prof[i];
                cb->prof[i] = cb->prof[j];
                cb->prof[j] = t;
            }
    fprintf(stderr, "lamina: OpenCL profile (%.1f ms of kernels):\n", total);
    for (int i = 0; i < cb->n_prof; i++)
        fprintf(stderr, "  %-16s %9.1f ms %5.1f%% %8ld calls\n", cb->prof[i].name,
                cb->prof[i].ms, 100.0 * cb->prof[i].ms / total, cb->prof[i].calls);
}

static void free_layer(cl_backend *cb, cl_layer *l)
{
    for (int w = 0; w < LM_W_PER_LAYER; w++) {
        lm_cl_release(&cb->mem, l->w[w]);
        l->w[w] = NULL;
    }
}

static void cl_free(lm_backend *b)
{
    cl_backend *cb = (cl_backend *)b;
    if (!cb)
        return;
    if (profiling)
        print_profile(cb);
    if (cb->queue)
        clFinish(cb->queue);
    if (cb->xfer)
        clFinish(cb->xfer);
    for (int i = 0; i < N_SLOTS; i++)
        free_layer(cb, &cb->slot[i].dev);
    for (int i = 0; i < cb->n_pinned; i++) {
        clEnqueueUnmapMemObject(cb->queue, cb->pinned[i].buf, cb->pinned[i].ptr, 0, NULL, NULL);
        clFinish(cb->queue);
        clReleaseMemObject(cb->pinned[i].buf);
    }
    free(cb->pinned);
    const uint32_t n_layer = b->model->hp.n_layer;
    for (uint32_t il = 0; il < n_layer; il++) {
        if (cb->layers)
            free_layer(cb, &cb->layers[il]);
        if (cb->k_cache)
            lm_cl_release(&cb->mem, cb->k_cache[il]);
        if (cb->v_cache)
            lm_cl_release(&cb->mem, cb->v_cache[il]);
    }
    free(cb->layers);
    free(cb->run);
    free(cb->k_cache);
    free(cb->v_cache);
    lm_cl_release(&cb->mem, cb->out_w);
    lm_cl_release(&cb->mem, cb->out_norm);
    for (int a = 0; a < LM_A_COUNT; a++)
        lm_cl_release(&cb->mem, cb->act[a]);
    lm_cl_moe_free(cb);
    lm_cl_experts_free(cb);
    cl_mem bufs[] = {cb->scores, cb->rope_cs[0], cb->rope_cs[1], cb->gelu_table, cb->aq, cb->ad, cb->as, cb->ab,
                     cb->af,     cb->wf,      cb->logits, cb->rows_dev};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        lm_cl_release(&cb->mem, bufs[i]);
    for (int i = 0; i < K_COUNT; i++)
        if (cb->k[i])
            clReleaseKernel(cb->k[i]);
    for (int t = 0; t < LM_TYPE_COUNT; t++) {
        if (cb->matvec[t])
            clReleaseKernel(cb->matvec[t]);
        if (cb->dequant[t])
            clReleaseKernel(cb->dequant[t]);
    }
    if (cb->program)
        clReleaseProgram(cb->program);
    if (cb->queue)
        clReleaseCommandQueue(cb->queue);
    if (cb->xfer)
        clReleaseCommandQueue(cb->xfer);
    if (cb->ctx)
        clReleaseContext(cb->ctx);
    free(cb->rope_host);
    free(cb->rows_host);
    free(cb->runs);
    free(cb);
}

/* The exact quantized kernels for every product, unless the GEMM path is
 * asked for (see the top of this file): LAMINA_CL_GEMM=1 from 2 tokens,
 * LAMINA_CL_GEMM_MIN=n from n tokens. */
int lm_backend_opencl_gemm_min(void)
{
    const char *gm = getenv("LAMINA_CL_GEMM_MIN"), *g = getenv("LAMINA_CL_GEMM");
    if (gm && atoi(gm) > 0)
        return atoi(gm);
    return g && g[0] && strcmp(g, "0") != 0 ? 2 : INT_MAX;
}

static uint64_t cl_peak(lm_backend *b)
{
    return ((cl_backend *)b)->mem.peak;
}

/* ---- streaming ------------------------------------------------------------ */

/* Pinned host memory mapped for the host to write: drivers copy from it to
 * the device by DMA, without the bounce buffer pageable memory needs. */
static void *map_pinned(cl_backend *cb, size_t bytes, cl_mem *buf)
{
    cl_int err;
    *buf = clCreateBuffer(cb->ctx, CL_MEM_READ_ONLY | CL_MEM_ALLOC_HOST_PTR, bytes, NULL, &err);
    if (lm_cl_check(err, "clCreateBuffer(pinned staging)") != 0) {
        *buf = NULL;
        return NULL;
    }
    void *p = clEnqueueMapBuffer(cb->queue, *buf, CL_TRUE, CL_MAP_WRITE, 0, bytes, 0, NULL, NULL,
                                 &err);
    if (lm_cl_check(err, "clEnqueueMapBuffer(pinned staging)") != 0) {
        clReleaseMemObject(*buf);
        *buf = NULL;
        return NULL;
    }
    return p;
}

static void *cl_pinned_alloc(lm_backend *b, uint64_t bytes)
{
    cl_backend *cb = (cl_backend *)b;
    cl_pinned *grown = realloc(cb->pinned, (size_t)(cb->n_pinned + 1) * sizeof *grown);
    if (!grown) {
        lm_set_error("out of memory");
        return NULL;
    }
    cb->pinned = grown;
    cl_pinned *p = &cb->pinned[cb->n_pinned];
    if (!(p->ptr = map_pinned(cb, (size_t)(bytes ? bytes : 1), &p->buf)))
        return NULL;
    cb->n_pinned++;
    return p->ptr;
}

/* The slots streamed layers are copied into, made at creation (so that the
 * I/O thread never allocates). */
static int make_slots(cl_backend *cb)
{
    for (int i = 0; i < cb->n_slots; i++)
        for (int w = 0; w < LM_W_PER_LAYER; w++)
            if (cb->slot_bytes[w] &&
                !(cb->slot[i].dev.w[w] = lm_cl_alloc(&cb->mem, cb->ctx, CL_MEM_READ_ONLY,
                                                     cb->slot_bytes[w], "a streamed layer's slot")))
                return -1;
    return 0;
}

static int cl_upload_staged(lm_backend *b, int slot, int il, const lm_layer_view *view)
{
    cl_backend *cb = (cl_backend *)b;
    const lm_layer *L = &b->model->layers[il];
    if (slot < 0 || slot >= cb->n_slots || cb->run[il] != LM_RUN_STREAMED) {
        lm_set_error("internal: layer %d is not streamed to the device", il);
        return -1;
    }
    for (int w = 0; w < LM_W_PER_LAYER; w++) {
        const lm_gguf_tensor *t = L->t[w];
        if (!t)
            continue;
        cl_int err = clEnqueueWriteBuffer(cb->xfer, cb->slot[slot].dev.w[w], CL_FALSE, 0,
                                          t->nbytes, view->data[w], 0, NULL, NULL);
        if (err != CL_SUCCESS) {
            clFinish(cb->xfer);
            lm_set_error("clEnqueueWriteBuffer(layer %d to the device): %s (%d)", il,
                         lm_cl_error_name(err), err);
            return -1;
        }
    }
    /* blocks in the driver, not spinning here */
    return lm_cl_check(clFinish(cb->xfer), "clFinish(layer upload)");
}

double lm_backend_opencl_h2d_bandwidth(lm_backend *b, uint64_t bytes, bool *agreed)
{
    cl_backend *cb = (cl_backend *)b;
    cl_mem host, dev = lm_cl_alloc(&cb->mem, cb->ctx, CL_MEM_READ_ONLY, bytes, "the probe");
    void *p = dev ? map_pinned(cb, bytes, &host) : NULL;
    lm_repeats rep = {0};
    if (p) {
        memset(p, 1, bytes);
        for (int i = 0; i < 4; i++) {
            const double t0 = lm_now_seconds();
            if (clEnqueueWriteBuffer(cb->xfer, dev, CL_TRUE, 0, bytes, p, 0, NULL, NULL) !=
                CL_SUCCESS)
                break;
            lm_repeats_add(&rep, lm_now_seconds() - t0);
        }
        clEnqueueUnmapMemObject(cb->queue, host, p, 0, NULL, NULL);
        clFinish(cb->queue);
        clReleaseMemObject(host);
    }
    lm_cl_release(&cb->mem, dev);
    *agreed = lm_repeats_agree(&rep, LM_PROBE_AGREE);
    return rep.n > 0 && rep.best > 0 ? (double)bytes / rep.best : 0.0;
}

static lm_backend_expert_stats cl_expert_stats(lm_backend *b)
{
    return ((cl_backend *)b)->experts.stats;
}

static const lm_backend_ops cl_ops = {
    .name = "opencl",
    .forward_layer = cl_forward_layer,
    .output = cl_output,
    .seq_copy = cl_seq_copy,
    .free = cl_free,
    .device_peak_bytes = cl_peak,
    .pinned_alloc = cl_pinned_alloc,
    .upload_staged = cl_upload_staged,
    .expert_stats = cl_expert_stats,
};

/* ---- creation -------------------------------------------------------------- */

/* A tensor from the file mapping into a device buffer of its own; the
 * mapping's pages go, so that the bytes are not resident twice (on a
 * CPU-type device, both copies would be in this process's RAM). */
static cl_mem upload(cl_backend *cb, const lm_gguf_tensor *t, const void *data, const char *what)
{
    if (!t)
        return NULL;
    cl_mem buf = lm_cl_alloc(&cb->mem, cb->ctx, CL_MEM_READ_ONLY, t->nbytes, what);
    if (buf && lm_cl_write(cb, buf, data, t->nbytes, what) != 0) {
        lm_cl_release(&cb->mem, buf);
        return NULL;
    }
    if (buf)
        lm_gguf_release_pages(cb->base.model->gguf, data, t->nbytes);
    return buf;
}

/* Checks that the device can run layer il, and uploads its tensors if it
 * stays resident (a streamed layer's come through upload_staged). */
static int take_layer(cl_backend *cb, int il, const lm_layer_view *view)
{
    const lm_layer *L = &cb->base.model->layers[il];
    for (int w = 0; w < LM_W_PER_LAYER; w++) {
        const lm_gguf_tensor *t = L->t[w];
        if (t && t->n_dims >= 2 && !lm_cl_type_suffix[t->type]) {
            lm_set_error("layer %d: OpenCL has no kernel for %s weights", il,
                         lm_type_name(t->type));
            return -1;
        }
        if (cb->run[il] != LM_RUN_RESIDENT &&
            (cb->run[il] != LM_RUN_RESIDENT_DENSE || lm_role_is_expert_stack(w)))
            continue; /* (a dense-resident layer's experts: the expert cache) */
        if (t && !(cb->layers[il].w[w] = upload(cb, t, view->data[w], "layer weights"))) {
            free_layer(cb, &cb->layers[il]);
            return -1;
        }
    }
    return 0;
}

static int create_kernels(cl_backend *cb)
{
    cl_int err;
    for (int i = 0; i < K_COUNT; i++) {
        cb->k[i] = clCreateKernel(cb->program, lm_cl_kernel_names[i], &err);
        if (lm_cl_check(err, "clCreateKernel") != 0)
            return -1;
    }
    for (int t = 0; t < LM_TYPE_COUNT; t++) {
        if (!lm_cl_type_suffix[t])
            continue;
        char name[64];
        snprintf(name, sizeof name, "matvec_%s", lm_cl_type_suffix[t]);
        cb->matvec[t] = clCreateKernel(cb->program, name, &err);
        if (lm_cl_check(err, "clCreateKernel") != 0)
            return -1;
        snprintf(name, sizeof name, "dequant_%s", lm_cl_type_suffix[t]);
        cb->dequant[t] = clCreateKernel(cb->program, name, &err);
        if (lm_cl_check(err, "clCreateKernel") != 0)
            return -1;
    }
    return 0;
}

cl_mem lm_cl_scratch(cl_backend *cb, size_t bytes, const char *what)
{
    return lm_cl_alloc(&cb->mem, cb->ctx, CL_MEM_READ_WRITE, bytes, what);
}

static int create_buffers(cl_backend *cb)
{
    const lm_hparams *hp = &cb->base.model->hp;
    const size_t nb = (size_t)cb->base.n_batch, f = sizeof(float);
    const size_t q_dim = (size_t)hp->n_head * hp->head_dim, kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    /* GATE and UP are as wide as the widest feed-forward: the dense or
     * shared expert's (an expert's has scratch of its own, cl/moe_cl.c) */
    const size_t ff = hp->n_ff_shexp > hp->n_ff ? hp->n_ff_shexp : hp->n_ff;
    size_t widest = hp->n_embd > ff ? hp->n_embd : ff;
    widest = widest > q_dim ? widest : q_dim;
    widest = widest > hp->n_ff_exp ? widest : hp->n_ff_exp; /* an expert's down product */
    cb->k_cache = calloc(hp->n_layer, sizeof *cb->k_cache);
    cb->v_cache = calloc(hp->n_layer, sizeof *cb->v_cache);
    cb->rope_host = malloc(nb * hp->n_rot * f);
    cb->rows_host = malloc(2 * nb * ROW_INFO * sizeof(int));
    cb->runs = malloc(nb * sizeof *cb->runs);
    if (!cb->k_cache || !cb->v_cache || !cb->rope_host || !cb->rows_host || !cb->runs) {
        lm_set_error("out of memory");
        return -1;
    }
    const size_t cache_bytes = (size_t)cb->base.n_seq * cb->base.n_ctx * kv_dim * 2;
    for (uint32_t il = 0; il < hp->n_layer; il++)
        if (cb->run[il] != LM_RUN_NONE &&
            (!(cb->k_cache[il] = lm_cl_scratch(cb, cache_bytes, "the K cache")) ||
             !(cb->v_cache[il] = lm_cl_scratch(cb, cache_bytes, "the V cache"))))
            return -1;
    const size_t width[LM_A_COUNT] = {
        [LM_A_X] = hp->n_embd, [LM_A_XN] = hp->n_embd, [LM_A_TMP] = hp->n_embd,
        [LM_A_Q] = q_dim,      [LM_A_ATT] = q_dim,     [LM_A_K] = kv_dim,
        [LM_A_V] = kv_dim,     [LM_A_GATE] = ff,       [LM_A_UP] = ff,
        [LM_A_WIDE] = lm_arch_wide_width(cb->base.model),
    };
    for (int a = 0; a < LM_A_COUNT; a++) {
        cb->width[a] = (int)width[a];
        if (width[a] && !(cb->act[a] = lm_cl_scratch(cb, nb * width[a] * f, "activations")))
            return -1;
    }
    if (hp->n_swa > 0 &&
        !(cb->rope_cs[LM_ROPE_SWA] = lm_cl_scratch(cb, nb * hp->n_rot * f, "rope table")))
        return -1;
    return (cb->scores = lm_cl_scratch(cb, nb * hp->n_head * cb->base.n_ctx * f,
                                         "attention scores")) &&
                   (cb->rope_cs[LM_ROPE_GLOBAL] = lm_cl_scratch(cb, nb * hp->n_rot * f, "rope table")) &&
                   (cb->rows_dev = lm_cl_scratch(cb, nb * ROW_INFO * sizeof(int), "row table")) &&
                   (cb->aq = lm_cl_scratch(cb, nb * widest, "quantized activations")) &&
                   (cb->ad = lm_cl_scratch(cb, nb * widest / 32 * f, "quantized activations")) &&
                   (cb->as = lm_cl_scratch(cb, nb * widest / 32 * f, "quantized activations")) &&
                   (cb->ab = lm_cl_scratch(cb, nb * widest / 16 * 4, "quantized activations")) &&
                   (cb->af = lm_cl_scratch(cb, nb * widest * f, "rounded activations"))
               ? 0
               : -1;
}

/* What the share gives this backend: per layer whether it runs it, and the
 * size of each slot buffer (the largest streamed tensor of each role). */
static int take_share(cl_backend *cb, const lm_backend_share *share)
{
    const lm_model *m = cb->base.model;
    cb->n_slots = share && share->n_slots > 0 && share->n_slots < N_SLOTS ? share->n_slots : N_SLOTS;
    cb->run = malloc(m->hp.n_layer);
    if (!cb->run) {
        lm_set_error("out of memory");
        return -1;
    }
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        cb->run[il] = share && share->layers ? share->layers[il] : LM_RUN_RESIDENT;
        /* (only a mixture's layers have experts to keep apart) */
        if (cb->run[il] == LM_RUN_RESIDENT_DENSE && !m->layers[il].t[LM_W_GATE_EXPS])
            cb->run[il] = LM_RUN_RESIDENT;
        cb->any_dense |= cb->run[il] == LM_RUN_RESIDENT_DENSE;
        for (int w = 0; w < LM_W_PER_LAYER && cb->run[il] == LM_RUN_STREAMED; w++) {
            const lm_gguf_tensor *t = m->layers[il].t[w];
            if (t && t->nbytes > cb->slot_bytes[w])
                cb->slot_bytes[w] = t->nbytes;
        }
    }
    return 0;
}

lm_backend *lm_backend_opencl_new(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                                  const char *device_spec, const lm_backend_share *share)
{
    cl_platform_id platform;
    cl_int err;
    cl_backend *cb = calloc(1, sizeof *cb);
    if (!cb) {
        lm_set_error("out of memory");
        return NULL;
    }
    cb->base = (lm_backend){
        .ops = &cl_ops, .model = m, .n_ctx = n_ctx, .n_seq = n_seq, .n_batch = n_batch};
    cb->rows_n = -1;
    const char *fail = getenv("LAMINA_CL_FAIL_AFTER");
    cb->fail_after = fail && *fail ? strtol(fail, NULL, 10) : -1;
    cb->gemm_min = lm_backend_opencl_gemm_min();
    if (m->hp.head_dim > 256) { /* MAX_HD in cl/attention.cl */
        lm_set_error("OpenCL attention supports head sizes up to 256, not %u",
                     (unsigned)m->hp.head_dim);
        goto fail;
    }
    cb->layers = calloc(m->hp.n_layer, sizeof *cb->layers);
    if (!cb->layers) {
        lm_set_error("out of memory");
        goto fail;
    }
    if (take_share(cb, share) != 0)
        goto fail;
    if (lm_cl_pick_device(device_spec, &platform, &cb->device) != 0)
        goto fail;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)platform, 0};
    cb->ctx = clCreateContext(props, 1, &cb->device, NULL, NULL, &err);
    if (lm_cl_check(err, "clCreateContext") != 0)
        goto fail;
    cb->queue = clCreateCommandQueue(cb->ctx, cb->device,
                                     profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (lm_cl_check(err, "clCreateCommandQueue") != 0)
        goto fail;
    cb->xfer = clCreateCommandQueue(cb->ctx, cb->device, 0, &err);
    if (lm_cl_check(err, "clCreateCommandQueue") != 0)
        goto fail;
    if (!(cb->program = lm_cl_program_build(cb->ctx, cb->device)) || create_kernels(cb) != 0 ||
        create_buffers(cb) != 0 || lm_cl_moe_create(cb) != 0 || make_slots(cb) != 0 ||
        (cb->any_dense && lm_cl_experts_create(cb, share->expert_cache_bytes,
                                               share->evict_frequent) != 0))
        goto fail;
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        lm_layer_view view;
        lm_model_layer_view(m, (int)il, &view);
        if (cb->run[il] != LM_RUN_NONE && take_layer(cb, (int)il, &view) != 0)
            goto fail;
    }
    if (share && share->no_head)
        return &cb->base;
    if (!lm_cl_type_suffix[m->output->type]) {
        lm_set_error("OpenCL has no kernel for the %s output head", lm_type_name(m->output->type));
        goto fail;
    }
    if (!(cb->out_norm = upload(cb, m->output_norm, m->output_norm->data, "the output norm")) ||
        !(cb->out_w = upload(cb, m->output, m->output->data, "the output head")))
        goto fail;
    return &cb->base;
fail:
    cl_free(&cb->base);
    return NULL;
}
