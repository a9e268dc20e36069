/* What the fuzz harnesses check about a tokenizer, shared by
 * fuzz_tokenizer_bpe, fuzz_tokenizer_spm and fuzz_gguf. */
#ifndef LM_FUZZ_TOKENS_H
#define LM_FUZZ_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* The tokenizer of the GGUF file at the path in $env, or at default_path;
 * exits with a message when it cannot be read (a harness without its
 * vocabulary has nothing to fuzz). */
lm_tokenizer *fuzz_load_vocab(const char *env, const char *default_path);

/* Tokenizes text (len bytes, not NUL-terminated) and turns every id back
 * into its piece, both with and without special tokens rendered.  A
 * tokenizer error is fine (invalid input); an id outside the vocabulary, a
 * piece written past its buffer or a length that changes with the buffer
 * is a finding: abort(). */
void fuzz_tokens(const lm_tokenizer *t, const char *text, size_t len, bool add_special,
                 bool parse_special);

/* A tokenizer harness's input: the first byte picks add_special (bit 0) and
 * parse_special (bit 1), the rest is the text. */
void fuzz_tokens_input(const lm_tokenizer *t, const uint8_t *data, size_t size);

#endif
