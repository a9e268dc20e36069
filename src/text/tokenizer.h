/* Tokenizers read from GGUF metadata.
 *
 *   tokenizer.ggml.model = "gpt2":  byte-level BPE with merges; the
 *       pre-tokenizer regexes (PCRE2) are picked by tokenizer.ggml.pre
 *       (smollm, llama-bpe/llama3, qwen2, gpt2/default, ...), as llama.cpp does.
 *   tokenizer.ggml.model = "llama": SentencePiece-style BPE over scores with
 *       byte fallback (<0xXX> tokens) and the "▁" space marker.
 *
 * Control tokens (token_type 3) and user-defined tokens (4) in the text are
 * matched as whole tokens first when parse_special is set, the way
 * llama_tokenize(..., parse_special=true) does. */
#ifndef LM_TOKENIZER_H
#define LM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct lm_tokenizer lm_tokenizer;

lm_tokenizer *lm_tokenizer_from_gguf(const lm_gguf *g);
void lm_tokenizer_free(lm_tokenizer *t);

int32_t lm_tokenizer_n_vocab(const lm_tokenizer *t);
int32_t lm_tokenizer_bos(const lm_tokenizer *t); /* -1 if none */
int32_t lm_tokenizer_eos(const lm_tokenizer *t); /* -1 if none */
int32_t lm_tokenizer_eot(const lm_tokenizer *t); /* -1 if none */
/* End of generation: eos, eot, or another token the vocab marks as such
 * (for example <|im_end|>, <|eot_id|>, <|end_of_text|>). */
bool lm_tokenizer_is_eog(const lm_tokenizer *t, int32_t id);
/* Whether BOS goes in front of a prompt (tokenizer.ggml.add_bos_token; when
 * absent: true for "llama", false for "gpt2"). */
bool lm_tokenizer_add_bos(const lm_tokenizer *t);
/* The id of the token whose text is exactly s, or -1. */
int32_t lm_tokenizer_find(const lm_tokenizer *t, const char *s);

/* Tokenize len bytes of UTF-8.  add_special: put BOS first if the model
 * wants it.  On success *ids is malloc'd (caller frees), *n_ids set, 0
 * returned; -1 with lm_set_error otherwise. */
int lm_tokenize(const lm_tokenizer *t, const char *text, size_t len, bool add_special,
                bool parse_special, int32_t **ids, size_t *n_ids);

/* The bytes token id stands for (byte-level decoded for gpt2, "▁" -> " " and
 * <0xXX> -> the byte for llama).  Control tokens give "" unless
 * render_special.  Returns the length (which may exceed cap: then nothing
 * past cap is written) or -1 for an id out of range. */
int lm_token_to_piece(const lm_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap);

#endif
