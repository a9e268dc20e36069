/* liblamina: run LLaMA-family language models from GGUF files, one
 * transformer layer at a time.
 *
 * A small, stable C interface over the library: load a model, tokenize,
 * evaluate tokens into logits, turn tokens back into text.  Every function
 * that can fail returns NULL or -1 and leaves a one-line message for
 * lamina_last_error() (per thread). */
#ifndef LAMINA_H
#define LAMINA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

const char *lamina_version(void);
const char *lamina_last_error(void);

typedef struct lamina_model lamina_model;
typedef struct lamina_session lamina_session;

lamina_model *lamina_model_load(const char *path);
void lamina_model_free(lamina_model *model);
int32_t lamina_n_vocab(const lamina_model *model);
/* Whether id ends a generation (end of sequence, end of turn). */
int lamina_token_is_eog(const lamina_model *model, int32_t id);

/* Token ids of text (BOS first if the model wants it; special tokens such
 * as <|im_start|> recognised).  *ids is malloc'd: free() it. */
int lamina_tokenize(const lamina_model *model, const char *text, int32_t **ids, size_t *n_ids);
/* The text of one token into buf; returns its length (possibly > cap, then
 * truncated) or -1. */
int lamina_token_to_piece(const lamina_model *model, int32_t id, char *buf, size_t cap);

/* One sequence with its own KV cache of n_ctx positions, on the CPU (the
 * simple interface; lamina_context below is the engine). */
lamina_session *lamina_session_new(const lamina_model *model, int n_ctx);
void lamina_session_free(lamina_session *session);
/* Appends n tokens to the sequence; logits (n_vocab floats, may be NULL)
 * receives the scores for the token after the last one. */
int lamina_eval(lamina_session *session, const int32_t *ids, int n, float *logits);
/* Forgets the sequence from position pos on. */
void lamina_rewind(lamina_session *session, int pos);

/* ---- the engine: many sequences, one pass over the weights ------------- *
 *
 * In llama.cpp's shape: a context made from a model and parameters holds the
 * KV cache of n_seq sequences; lamina_decode runs one pass over the weights
 * with a batch of tokens, each carrying its sequence and whether its logits
 * are wanted; per-sequence calls forget and copy.  A sequence's results do
 * not depend on the other sequences in its batches. */

typedef struct lamina_context lamina_context;

typedef struct {
    int n_ctx;            /* KV positions in all, shared evenly by the sequences
                             (0: the model's training context, at most 4096) */
    int n_seq;            /* sequences (default 1) */
    int n_batch;          /* most tokens in one lamina_decode (default 512) */
    int n_threads;        /* CPU threads (0: all cores) */
    const char *backend;  /* NULL or "auto" (the planner decides), "cpu", "opencl" */
    const char *device;   /* OpenCL device: index or name substring (NULL: default) */
    uint64_t ram_budget;  /* bytes (0: available RAM less a margin) */
    uint64_t vram_budget; /* bytes (0: the device's memory less a margin) */
    int quiet;            /* no plan summary on stderr (default 1) */
} lamina_context_params;

lamina_context_params lamina_context_default_params(void);
/* NULL with lamina_last_error() when the budgets cannot hold the model,
 * the device fails, ... */
lamina_context *lamina_context_new(const lamina_model *model, const lamina_context_params *params);
void lamina_context_free(lamina_context *ctx);
int lamina_n_seq(const lamina_context *ctx);
/* KV positions of each sequence. */
int lamina_n_ctx_seq(const lamina_context *ctx);

typedef struct {
    int n_tokens;
    const int32_t *token;
    const int32_t *seq_id; /* a sequence's tokens consecutive, at its next positions */
    const int8_t *logits;  /* per token: 1 if its logits are wanted (NULL: the last only) */
} lamina_batch;

/* One pass; 0, or -1 with lamina_last_error() (the sequences then stay
 * where they were). */
int lamina_decode(lamina_context *ctx, const lamina_batch *batch);
/* The logits of the i-th token of the last batch (n_vocab floats), or NULL
 * if that token did not ask for them. */
float *lamina_get_logits_ith(lamina_context *ctx, int i);

/* Positions in sequence seq (its next token's position). */
int lamina_seq_pos(const lamina_context *ctx, int32_t seq);
/* Sequence seq forgets positions from pos on (0: everything). */
void lamina_seq_rm(lamina_context *ctx, int32_t seq, int pos);
/* Sequence dst becomes a copy of the first n positions of src (n < 0: all). */
int lamina_seq_cp(lamina_context *ctx, int32_t src, int32_t dst, int n);

/* ---- sampling ------------------------------------------------------------ */

typedef struct {
    float temp;           /* <= 0: greedy */
    int32_t top_k;        /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int32_t repeat_last_n;
    uint64_t seed;
} lamina_sampler_params;

typedef struct lamina_sampler lamina_sampler;
lamina_sampler_params lamina_sampler_default_params(void);
lamina_sampler *lamina_sampler_new(const lamina_model *model, const lamina_sampler_params *params);
void lamina_sampler_free(lamina_sampler *sampler);
/* Picks a token from the logits of the i-th token of ctx's last batch and
 * records it (for the repetition penalty); -1 if that token has no logits. */
int32_t lamina_sampler_sample(lamina_sampler *sampler, lamina_context *ctx, int i);
/* Records a token (a prompt's, say) for the repetition penalty. */
void lamina_sampler_accept(lamina_sampler *sampler, int32_t token);

#ifdef __cplusplus
}
#endif

#endif
