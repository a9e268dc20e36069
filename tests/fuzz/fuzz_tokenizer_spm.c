/* libFuzzer harness: SentencePiece-style tokenization (scores, byte
 * fallback, the "▁" space prefix) with Llama 2's 32000-token vocabulary
 * (models/ggml-vocab-llama-spm.gguf, from scripts/fetch-test-vocab), read
 * once.  Each input is one text; its first byte picks
 * add_special/parse_special (see fuzz_tokens.h).  $LAMINA_FUZZ_SPM_VOCAB
 * names another GGUF file to take the vocabulary from. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_tokens.h"

#ifndef LM_TOP_SRCDIR
#define LM_TOP_SRCDIR "."
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lm_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    tok = fuzz_load_vocab("LAMINA_FUZZ_SPM_VOCAB",
                          LM_TOP_SRCDIR "/models/ggml-vocab-llama-spm.gguf");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tokens_input(tok, data, size);
    return 0;
}
