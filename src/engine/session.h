/* The engine: one per model.  It holds the backends (with the KV cache of
 * every sequence), the plan and the streamer, and runs passes: each pass
 * takes rows from several sequences (each row one token of one sequence)
 * through every layer in turn, so the weights are read once per pass however
 * many sequences it serves.  This is the place where the planner's placement
 * and the streamer's staged weights come in: each layer asks for the view of
 * its weights and hands it to the backend that runs it.
 *
 * Sequences are slots 0 .. n_seq-1, each with its own n_ctx positions of
 * KV cache and its own position; the per-sequence calls (seq_*) forget,
 * copy and report them, as llama.cpp's memory interface does. */
#ifndef LM_SESSION_H
#define LM_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"
#include "plan.h"
#include "probe.h"

typedef struct lm_session {
    const lm_model *model;
    lm_backend *cpu;              /* runs the CPU's layers, or NULL */
    lm_backend *device;           /* runs the device's layers, or NULL */
    lm_backend **run_by;          /* per layer: which of the two runs it */
    lm_backend *head;             /* runs the output head */
    int n_ctx;     /* KV cache positions of each sequence */
    int n_seq;     /* sequences */
    int n_batch;   /* most rows in one pass */
    int *n_past;   /* per sequence: positions already in its KV cache */
    float *x;      /* n_batch rows of n_embd: the residual stream */
    float *x_out;  /* n_batch rows: those of x that want logits */
    int *row_seq, *row_pos; /* n_batch: the current pass's rows */
    float *logits; /* logits_rows rows of n_vocab */
    int logits_rows;
    lm_plan plan;                 /* the plan followed (plan.place NULL: none) */
    struct lm_streamer *streamer; /* layers read from disk each pass, or NULL */
    bool *streamed;               /* per layer: comes through the streamer */
    struct lm_expert_cache *experts; /* the routed experts of the layers the
                                        streamer reads without them, or NULL */
    struct lm_expert_trace *trace; /* a mixture's routing, for the next plans */
    double *layer_seconds;        /* per layer: time spent in it, all passes */
    uint64_t passes;              /* forward passes run */
    double decode_seconds;        /* one-token passes (decoding one sequence): their time */
    uint64_t decode_passes;       /* and how many */
    /* passes whose every row wants logits (decoding, verifying), timed part
     * by part for plan_learn.h: per layer its backend's time (not waiting
     * for its weights) and what the probes alone predicted for those rows;
     * the output head's likewise */
    uint64_t timed_passes;
    double *timed_compute_seconds, *timed_probe_ms;
    double *pass_compute_seconds, *pass_probe_ms; /* the pass running's, per layer */
    double timed_head_seconds, timed_head_probe_ms;
    bool timing_pass;             /* the pass running is one of those */
    lm_probe_watch watch;         /* from creation: was the machine quiet (plan_learn.h) */
    int32_t *history;             /* per sequence: n_ctx slots, the tokens in its cache */
    int *batch_len;               /* per sequence, per position: the length of the run
                                     that started there, or 0 */
    bool cpu_fallback;            /* --backend auto on a device: on a device error,
                                     rebuild the cache on the CPU and go on */
} lm_session;

/* A session on the CPU backend, one sequence. */
lm_session *lm_session_new(const lm_model *m, int n_ctx, int n_batch);

/* A session that runs every layer on the backend named "cpu" or "opencl";
 * device picks the OpenCL device (NULL: the default; see
 * lm_backend_opencl_new).  Choosing between them, and splitting, is the
 * planner's (lm_session_new_planned). */
lm_session *lm_session_new_backend(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                                   const char *backend, const char *device);

/* A session that runs the layers where plan places them (the session takes
 * the plan over): the CPU backend for the CPU's layers, the OpenCL backend
 * on device_spec for the device's, the streamer for every layer whose
 * weights come from disk or go to the device each pass.  fallback: on a
 * device error in the middle of a run, carry on on the CPU (--backend auto).
 * NULL with an error. */
lm_session *lm_session_new_planned(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                                   lm_plan *plan, const char *device_spec, bool fallback);

/* "cpu", "opencl", or "opencl+cpu" for a split. */
const char *lm_session_backend_name(const lm_session *s);

/* From now on the given layers (ascending) are read from the model file
 * into staging buffers each pass instead of from the file mapping (see
 * streamer.h); 0 or -1 with an error. */
int lm_session_stream_layers(lm_session *s, const int *layers, int n, bool prefetch,
                             bool drop_cache);

/* Weight bytes per pass of a planned session read from the disk, and
 * copied to the device. */
uint64_t lm_session_disk_bytes(const lm_session *s);
uint64_t lm_session_device_streamed_bytes(const lm_session *s);

/* Peak device memory of the session's backend in bytes; 0 on the CPU. */
uint64_t lm_session_device_peak(const lm_session *s);
void lm_session_free(lm_session *s);

/* One pass: n rows (at most n_batch), row i token tokens[i] of sequence
 * seq[i], at that sequence's next position.  A sequence's rows must be
 * consecutive (one run per sequence); its position advances by its rows.
 * want (NULL: none) says which rows want logits: logits_out (may be NULL)
 * gets one row of n_vocab for each, in row order.  -1 with lm_set_error on
 * a bad token id or sequence, a full context or a backend failure (the
 * sequences then stay where they were). */
int lm_session_decode(lm_session *s, int n, const int32_t *tokens, const int *seq,
                      const bool *want, float *logits_out);

/* lm_session_decode where rows with single[r] are each a run of their own,
 * computed as a one-token pass computes it: speculative verification of
 * some sequences next to the runs of others. */
int lm_session_decode_single(lm_session *s, int n, const int32_t *tokens, const int *seq,
                             const bool *want, const bool *single, float *logits_out);

/* Speculative verification: n tokens of sequence seq in one pass (one read
 * of the weights), logits for every one of them in logits_out (n rows),
 * each row computed in the order a one-token pass computes it, so that the
 * logits are bit for bit those of feeding the tokens one pass at a time.
 * Rejected tokens are forgotten afterwards with lm_session_seq_rm.  0 or
 * -1 with lm_set_error. */
int lm_session_verify(lm_session *s, int seq, int n, const int32_t *tokens, float *logits_out);

/* Sequence 0 only, the way a single-sequence caller wants it: n tokens in
 * passes of n_batch.  With all_logits, logits_out gets n rows of n_vocab;
 * otherwise one row, for the last token.  logits_out may be NULL. */
int lm_session_eval(lm_session *s, const int32_t *tokens, int n, bool all_logits,
                    float *logits_out);

/* Positions in sequence seq's cache (its next token's position). */
int lm_session_seq_pos(const lm_session *s, int seq);
/* Sequence seq forgets everything from position pos on (0: all of it). */
void lm_session_seq_rm(lm_session *s, int seq, int pos);
/* Sequence dst becomes a copy of src's first n positions (n < 0: all of
 * them): a shared prompt evaluated once, a speculative branch.  0 or -1. */
int lm_session_seq_copy(lm_session *s, int src, int dst, int n);

/* Sequence 0 forgets everything from position pos on. */
void lm_session_rewind(lm_session *s, int pos);

#endif
