/* The one narrow door between the executor and the devices.
 *
 * A backend runs whole transformer layers over n tokens, keeping the KV
 * cache of the layers it runs, and the output head.  The executor tells it
 * where the layer's weight bytes are right now (lm_layer_view: the file
 * mapping, or a staging buffer the streamer filled), so residency and
 * streaming stay outside.  A new kind of device is a new file that fills
 * lm_backend_ops; nothing else changes. */
#ifndef LM_BACKEND_H
#define LM_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

typedef struct lm_backend lm_backend;

/* Which layers a backend runs, and how their weights reach it.  A plan that
 * splits the model gives each backend its share; the KV cache is kept only
 * for the layers a backend runs. */
typedef enum {
    LM_RUN_NONE,     /* another backend runs this layer */
    LM_RUN_RESIDENT, /* runs it; a device keeps the weights from creation on */
    LM_RUN_STREAMED, /* runs it; the weights come through the streamer each pass */
    LM_RUN_RESIDENT_DENSE, /* runs it; a device keeps all but a mixture's experts from
                              creation on, the experts in its expert cache */
} lm_layer_run;

typedef struct lm_backend_share {
    const uint8_t *layers; /* per layer an lm_layer_run; NULL: all, resident */
    bool no_head;          /* another backend runs the output head */
    int n_slots;           /* device slots for streamed layers: 2 to overlap
                              (the default, 0), 1 without prefetch */
    /* device memory for the expert cache of the LM_RUN_RESIDENT_DENSE
     * layers (at least two experts' worth is taken), and its eviction */
    uint64_t expert_cache_bytes;
    bool evict_frequent;
} lm_backend_share;

/* What a device's expert cache did: experts passes used, those found in
 * it, bytes copied to it for the others. */
typedef struct {
    uint64_t wanted, hits, bytes_uploaded;
} lm_backend_expert_stats;

/* The rows of one pass: row r is a token of sequence seq[r] at position
 * pos[r].  Each sequence's rows are consecutive and at consecutive positions
 * (a run); a sequence has at most one run in a pass. */
typedef struct {
    int n;
    const int *seq;
    const int *pos;
    const bool *single; /* per row (NULL: none): the row is a run of its own,
                           computed in the order a one-token pass computes
                           it (speculative verification gives the bits
                           plain decoding gives) */
} lm_rows;

/* One run of lm_rows: rows [row0, row0 + n) of sequence seq, from position pos0. */
typedef struct {
    int seq, pos0, row0, n;
} lm_run;

/* The runs of rows into runs (at most rows->n); returns how many. */
int lm_rows_runs(const lm_rows *rows, lm_run *runs);

/* forward_layer's x_flags: where the pass's activations are.  A device
 * backend keeps them in its memory between consecutive layers it runs, so
 * only the first layer of such a stretch copies them in and the last out. */
enum {
    LM_X_ON_BACKEND = 1, /* this backend's previous layer of the pass left x in its
                            memory: the host's copy is stale, do not copy it in */
    LM_X_STAYS = 2,      /* this backend runs the next layer too: x need not come
                            back to the host */
};

typedef struct {
    const char *name;
    /* x holds rows->n rows of n_embd floats on the host (but see x_flags);
     * the layer's output replaces them.  The layer's work is done when this
     * returns: its weights may be refilled, its time is its own.  Each row attends over its own sequence's cache, and a
     * sequence's arithmetic depends only on its own run (the summation order
     * is chosen per run, never per pass), so its tokens do not depend on
     * what else is in the pass. */
    int (*forward_layer)(lm_backend *b, int il, const lm_layer_view *w, float *x,
                         const lm_rows *rows, unsigned x_flags);
    /* Final norm and output head over n_tok rows of x: n_tok * n_vocab logits. */
    int (*output)(lm_backend *b, const float *x, int n_tok, float *logits);
    /* Sequence dst's first n positions become a copy of src's (a shared
     * prompt, a speculative branch); 0 or -1 with an error.  Forgetting
     * positions needs no call: a sequence's positions past its end are
     * written before they are read. */
    int (*seq_copy)(lm_backend *b, int src, int dst, int n);
    void (*free)(lm_backend *b);
    /* Peak bytes of device memory allocated so far; NULL for host backends. */
    uint64_t (*device_peak_bytes)(lm_backend *b);
    /* Streaming to a device (NULL on the CPU).  pinned_alloc: host memory
     * the device copies from fastest (pinned, mapped), owned by the backend
     * until it is freed (so one streamer per device backend: a second would
     * add to it); NULL where the driver has none left.  upload_staged: copies layer il from host memory
     * (view, in pinned memory) into the device's slot `slot` and returns
     * when the copy is done; called on the streamer's I/O thread, so the
     * copy overlaps the layer computing on the device. */
    void *(*pinned_alloc)(lm_backend *b, uint64_t bytes);
    int (*upload_staged)(lm_backend *b, int slot, int il, const lm_layer_view *view);
    /* The device's expert cache so far (NULL, or zeros: none). */
    lm_backend_expert_stats (*expert_stats)(lm_backend *b);
} lm_backend_ops;

struct lm_backend {
    const lm_backend_ops *ops;
    const lm_model *model;
    int n_ctx;      /* KV cache positions of each sequence */
    int n_seq;      /* sequences, each with a cache of n_ctx positions */
    int n_batch;    /* most rows one forward_layer call takes */
};

/* The checks every backend makes of a pass: rows within the batch, each
 * sequence and position within the cache; 0 or -1 with an error. */
int lm_backend_check_rows(const lm_backend *b, const lm_rows *rows);

/* The CPU backend: OpenMP threads over quantized weights.  share: NULL for
 * every layer and the head. */
lm_backend *lm_backend_cpu_new(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                               const lm_backend_share *share);

#ifdef LAMINA_OPENCL
/* The OpenCL backend on the device device_spec names (NULL: the first GPU,
 * else the first device; a number: that index in `lamina devices`; else a
 * substring of the device name).  NULL with lm_set_error naming the OpenCL
 * call and error code. */
lm_backend *lm_backend_opencl_new(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                                  const char *device_spec, const lm_backend_share *share);
/* The fewest tokens a product takes the dequantize+SGEMM path for
 * (LAMINA_CL_GEMM, LAMINA_CL_GEMM_MIN; INT_MAX: never): that path keeps
 * one weight dequantized to f32 in device memory. */
int lm_backend_opencl_gemm_min(void);
/* Host-to-device bandwidth from pinned (CL_MEM_ALLOC_HOST_PTR, mapped)
 * memory on b's device, bytes/s over copies of `bytes` (the best of a few;
 * agreed: whether they agreed, timing.h); 0 on failure. */
double lm_backend_opencl_h2d_bandwidth(lm_backend *b, uint64_t bytes, bool *agreed);

/* Time every kernel with OpenCL profiling events and print which dominate
 * when a backend is freed (set before creating it). */
void lm_backend_opencl_profile(bool on);
#endif

#endif
