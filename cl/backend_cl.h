/* The OpenCL backend's state, shared by its files: backend_cl.c (the
 * layer, streaming, creation) and moe_cl.c (a mixture of experts'
 * feed-forward).  Private to cl/. */
#ifndef LM_BACKEND_CL_H
#define LM_BACKEND_CL_H

#include "cl_device.h" /* first: it fixes the OpenCL version to 1.2 */

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "block.h"

/* Kernels with a fixed role, by name. */
enum { K_QUANT_Q8_0, K_QUANT_Q8_K, K_ROUND_F16, K_ROUND_BF16, K_RMSNORM, K_ROPE, K_SWIGLU,
       K_ADD, K_ADD_BIAS, K_STORE_KV, K_ATTENTION, K_GEGLU, K_SCALE, K_COLUMNS,
       K_MOE_GATHER, K_MOE_SCATTER, K_MOE_COMBINE, K_SCALE_ROWS, K_COUNT };
extern const char *const lm_cl_kernel_names[K_COUNT];

/* Per weight type: the suffix of its matvec_ and dequant_ kernels (NULL:
 * no kernel for the type). */
extern const char *const lm_cl_type_suffix[LM_TYPE_COUNT];

#define MAX_PROFILE 48

/* A mixture of experts' device scratch, n_batch rows each (NULL for a
 * dense model), and the host side of the routing. */
typedef struct {
    cl_mem logits;  /* the router's: n_expert per row */
    cl_mem x;       /* the rows one expert takes, gathered: n_embd */
    cl_mem gate, up; /* its feed-forward: n_ff_exp */
    cl_mem down;    /* its output: n_embd */
    cl_mem out;     /* every (row, pick)'s output: n_expert_used x n_embd per row */
    cl_mem weights; /* every (row, pick)'s weight; the shared expert's gate */
    cl_mem list;    /* per expert in turn, the (row, pick)s that chose it */
    float *logits_host, *probs_host, *weights_host;
    int32_t *picked_host;
    int *list_host;
} lm_cl_moe;

/* The device's expert cache (expert_cache_cl.c), for the layers it runs
 * without their experts resident (LM_RUN_RESIDENT_DENSE). */
typedef struct {
    int key;       /* layer * n_expert + expert, or -1 */
    uint64_t used; /* when it was last used: the least recent goes first */
    uint64_t pass; /* the last pass that used it */
    cl_mem buf;    /* the expert's gate, up and down */
} lm_cl_expert_slot;

typedef struct {
    int n_slots, n_expert;
    bool frequent; /* give up the least often used first */
    lm_cl_expert_slot *slots;
    int *where;     /* per key: its slot, or -1 */
    uint64_t *uses; /* per key: how often passes used it */
    uint64_t tick, pass;
    lm_backend_expert_stats stats;
} lm_cl_experts;

typedef struct {
    cl_mem w[LM_W_PER_LAYER]; /* the tensors' bytes as in the file */
} cl_layer;

/* Streaming: as many slots as the streamer has staging buffers. */
#define N_SLOTS 2
typedef struct {
    cl_layer dev; /* device buffers, each as large as the role's largest streamed tensor */
} cl_slot;

/* Pinned host memory handed out by pinned_alloc. */
typedef struct {
    cl_mem buf;
    void *ptr;
} cl_pinned;

typedef struct {
    lm_backend base;
    cl_context ctx;
    cl_command_queue queue;
    cl_command_queue xfer;     /* uploads of streamed layers, beside the kernels */
    cl_device_id device;
    cl_program program;
    cl_kernel k[K_COUNT];
    cl_kernel matvec[LM_TYPE_COUNT], dequant[LM_TYPE_COUNT];
    lm_cl_mem mem;
    cl_layer *layers;
    uint8_t *run;              /* per layer an lm_layer_run */
    cl_slot slot[N_SLOTS];
    int n_slots;
    uint64_t slot_bytes[LM_W_PER_LAYER];
    cl_pinned *pinned;
    int n_pinned;
    cl_mem out_norm, out_w;
    cl_mem *k_cache, *v_cache;
    cl_mem act[LM_A_COUNT];    /* the block's activations, n_batch rows each */
    int width[LM_A_COUNT];     /* floats per row of each */
    cl_mem scores;
    cl_mem rope_cs[2];         /* per lm_rope_kind: cos, sin of the pass's rows */
    cl_mem gelu_table;         /* lm_gelu_table(), made on first use */
    cl_mem aq, ad, as, ab, af; /* quantized activations */
    cl_mem wf;                 /* a weight dequantized for SGEMM (made on first use) */
    size_t wf_floats;
    cl_mem logits;
    int logits_rows;
    float *rope_host;
    int *rows_host;            /* ROW_INFO ints per row (cl/common.cl) ... */
    int rows_n;                /* ... of the rows rows_dev and rope_cs hold */
    cl_mem rows_dev;
    lm_run *runs;              /* n_batch */
    int gemm_min;              /* fewest tokens that take the GEMM path */
    long fail_after;           /* LAMINA_CL_FAIL_AFTER (-1: none) ... */
    long layer_calls;          /* ... and the layers run so far */
    struct { const char *name; double ms; long calls; } prof[MAX_PROFILE];
    int n_prof;
    /* the layer and pass bound for the block's operations */
    int il, n;
    const cl_mem *w;           /* per role: the layer's weights (NULL: absent) */
    lm_cl_moe moe;             /* a mixture of experts' scratch (cl/moe_cl.c) */
    lm_cl_experts experts;     /* the device's expert cache (n_slots 0: none) */
    bool any_dense;            /* a layer runs LM_RUN_RESIDENT_DENSE */
    const lm_layer_view *view; /* the bound layer's (for the experts' host bytes) */
    struct lm_expert_trace *trace; /* the bound layer's routing record (or NULL) */
} cl_backend;

typedef struct {
    size_t size;
    const void *p;
} karg;
#define A(v) ((karg){sizeof(v), &(v)})

/* Sets k's arguments and enqueues it over gws (dims of them) on the queue. */
int lm_cl_launch(cl_backend *cb, cl_kernel k, const char *name, cl_uint dims, const size_t *gws,
                 int nargs, const karg *args);

#define LAUNCH(cb, kid, dims, gws, ...)                                                     \
    lm_cl_launch(cb, (cb)->k[kid], lm_cl_kernel_names[kid], dims, gws,                      \
                 (int)(sizeof((karg[]){__VA_ARGS__}) / sizeof(karg)), (karg[]){__VA_ARGS__})

/* y (n rows of t->ne[1]) = x (n rows of t->ne[0]) times the matrix of t's
 * type at byte w_off of W, transposed */
int lm_cl_product(cl_backend *cb, const lm_gguf_tensor *t, cl_mem W, uint64_t w_off, cl_mem x,
                  int n, cl_mem y);
/* Blocking copies between the host and a device buffer; 0, or -1 with an
 * error naming `what`. */
int lm_cl_write(cl_backend *cb, cl_mem dst, const void *src, size_t bytes, const char *what);
int lm_cl_read(cl_backend *cb, cl_mem src, void *dst, size_t bytes, const char *what);
/* A read-write device buffer counted in cb->mem; NULL with an error. */
cl_mem lm_cl_scratch(cl_backend *cb, size_t bytes, const char *what);

/* ---- a mixture of experts (moe_cl.c) ---- */

/* The block's moe and sigmoid_gate operations (block.h). */
int lm_cl_op_moe(void *ctx, lm_act out, lm_act in);
int lm_cl_op_sigmoid_gate(void *ctx, lm_act x, lm_act g, int dim);
/* Makes (for a model with experts) and frees cb->moe. */
int lm_cl_moe_create(cl_backend *cb);
void lm_cl_moe_free(cl_backend *cb);

/* ---- the device's expert cache (expert_cache_cl.c) ---- */

/* Slots of lm_expert_slot_bytes (expert_cache.h) for `bytes` of device
 * memory (at least two); 0, or -1 with an error. */
int lm_cl_experts_create(cl_backend *cb, uint64_t bytes, bool frequent);
void lm_cl_experts_free(cl_backend *cb);
/* A layer's pass begins: the slots it uses are given up after the others. */
void lm_cl_experts_begin_pass(cl_backend *cb);
/* Whether expert e of layer il is in a slot now (a lookup: no use counted). */
bool lm_cl_experts_cached(const cl_backend *cb, int il, int e);
/* Expert e of layer il in a slot, copied there from the view's host bytes
 * if it was not: *buf holds its gate, up and down at off[0..2].  An expert
 * from the host's expert cache must have been wanted from it (every one
 * that is not cached, before the first is got).  0, or -1 with an error. */
int lm_cl_experts_get(cl_backend *cb, const lm_layer_view *view, int il, int e, cl_mem *buf,
                      uint64_t off[3]);

#endif
