/* The special tokens of a Hugging Face tokenizer, as gguf-py's SpecialVocab
 * (llama.cpp's converter) finds them, so that lamina convert writes the
 * same keys in the same order:
 * - ids: each type's token named in tokenizer_config.json ("<s>" or
 *   {"content": "<s>"}) looked up among tokenizer.json's added tokens (the
 *   first with that content), then config.json's TYPE_token_id (an integer;
 *   a list is ignored) for the types still without one; an id past the
 *   vocabulary is skipped, a negative one is an error;
 * - add flags: from the post processor (ByteLevel: no bos or eos unless
 *   said otherwise; RobertaProcessing: bos, eos and sep; TemplateProcessing:
 *   whether the single-sequence template starts with the bos (or cls) token
 *   and ends with the eos token; a template that ends with another token
 *   makes that one the eos and the named eos the eot), then
 *   tokenizer_config.json's add_TYPE_token for the types still unsaid.
 * Not ported: TemplateProcessing's pair template (the sep flag of BERT-like
 * tokenizers), which no architecture lamina converts uses. */
#ifndef LM_HF_SPECIAL_H
#define LM_HF_SPECIAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum {
    LM_HF_BOS, LM_HF_EOS, LM_HF_UNK, LM_HF_SEP, LM_HF_PAD, LM_HF_CLS, LM_HF_MASK,
    LM_HF_EOT, LM_HF_EOM, /* only when a template's last token displaces the eos */
    LM_HF_N_SPECIAL
};

typedef struct {
    int n_ids, n_adds;
    struct {
        int type;
        uint32_t id;
    } ids[LM_HF_N_SPECIAL];  /* in the order found */
    struct {
        int type;
        bool value;
    } adds[LM_HF_N_SPECIAL]; /* in the order found */
} lm_hf_special;

/* The GGUF keys: tokenizer.ggml.bos_token_id, ..., and
 * tokenizer.ggml.add_bos_token, ... */
const char *lm_hf_special_id_key(int type);
const char *lm_hf_special_add_key(int type);

/* tok: tokenizer.json; tcfg: tokenizer_config.json (NULL: none); config:
 * config.json (NULL: none).  0, or -1 with lm_set_error (path names
 * tokenizer_config.json). */
int lm_hf_special_read(json_t *tok, json_t *tcfg, json_t *config, uint32_t n_vocab,
                       const char *path, lm_hf_special *out);

/* Sets the add flag of type to value, where it is or else last. */
void lm_hf_special_set_add(lm_hf_special *s, int type, bool value);

#endif
