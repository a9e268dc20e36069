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

/* A sequence with its own KV cache of n_ctx positions. */
lamina_session *lamina_session_new(const lamina_model *model, int n_ctx);
void lamina_session_free(lamina_session *session);
/* Appends n tokens to the sequence; logits (n_vocab floats, may be NULL)
 * receives the scores for the token after the last one. */
int lamina_eval(lamina_session *session, const int32_t *ids, int n, float *logits);
/* Forgets the sequence from position pos on. */
void lamina_rewind(lamina_session *session, int pos);

#ifdef __cplusplus
}
#endif

#endif
