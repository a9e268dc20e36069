/* libFuzzer harness: byte-level BPE (gpt2-style) tokenization with SmolLM2's
 * vocabulary, the default model's, read once.  Each input is one text; its
 * first byte picks add_special/parse_special (see fuzz_tokens.h).
 * $LAMINA_FUZZ_BPE_VOCAB names another GGUF file to take the vocabulary from. */
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
    tok = fuzz_load_vocab("LAMINA_FUZZ_BPE_VOCAB",
                          LM_TOP_SRCDIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tokens_input(tok, data, size);
    return 0;
}
