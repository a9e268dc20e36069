/* A Hugging Face model folder's tokenizer (tokenizer.json, and
 * tokenizer_config.json for the special tokens' flags and the chat
 * template) as the GGUF keys llama.cpp's convert_hf_to_gguf.py writes for a
 * byte-level BPE ("gpt2") vocabulary:
 * - tokens by id, n_vocab of them (config's vocab_size); an id no token has
 *   is "[PAD<id>]", type unused;
 * - types: normal; an added token is control when it is special (or looks
 *   special: <|...|>, <pad>, ...), user-defined otherwise;
 * - merges as "a b";
 * - tokenizer.ggml.pre from the pre-tokenizer's description (llama.cpp
 *   hashes the Hugging Face tokenizer's output on a test text, which needs
 *   Python; the descriptions it recognises map to the same names):
 *   Digits(individual) + ByteLevel -> smollm, llama 3's Split regex ->
 *   llama-bpe, Qwen2's -> qwen2, ByteLevel alone -> gpt-2;
 * - the special tokens' ids and add flags as gguf-py finds them
 *   (hf_special.h), the chat template.
 * Everything is checked: ids inside the vocabulary, strings valid, no id
 * given twice. */
#ifndef LM_HF_TOKENIZER_H
#define LM_HF_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "hf_special.h"

/* GGUF's tokenizer.ggml.token_type values */
enum { LM_TOKEN_NORMAL = 1, LM_TOKEN_CONTROL = 3, LM_TOKEN_USER_DEFINED = 4, LM_TOKEN_UNUSED = 5 };

typedef struct {
    uint32_t n_vocab;
    char **tokens;          /* n_vocab strings */
    int32_t *types;         /* n_vocab */
    char **merges;          /* n_merges "a b" strings */
    uint64_t n_merges;
    char pre[32];
    lm_hf_special special;
    char *chat_template;    /* NULL: none */
} lm_hf_tokenizer;

/* Reads dir/tokenizer.json (and dir/tokenizer_config.json and
 * dir/config.json when there).  0, or -1 with lm_set_error. */
int lm_hf_tokenizer_read(const char *dir, uint32_t n_vocab, lm_hf_tokenizer *out);
void lm_hf_tokenizer_free(lm_hf_tokenizer *t);

#endif
