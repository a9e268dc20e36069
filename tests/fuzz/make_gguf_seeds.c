/* make_gguf_seeds DIR: writes fuzz_gguf's seed corpus, small GGUF files
 * that load: llama and qwen2 models of a few KB in several weight types and
 * RoPE variants (tests/model_writer.c, its gpt2 vocabulary), and a
 * vocabulary-only file with a SentencePiece tokenizer.  The files in
 * tests/fuzz/corpus/fuzz_gguf were made with it; see tests/fuzz/README. */
#include <stdio.h>

#include "error.h"
#include "gguf.h"
#include "../model_writer.h"
#include "quant.h"

/* A SentencePiece vocabulary without weights: specials, a few byte tokens,
 * words with scores, and a user-defined token. */
static int write_spm_vocab(const char *path)
{
    const char *tok[] = {"<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "<0xE2>", "<0x96>",
                         "<0x81>", "\xe2\x96\x81", "a", "b", "ab", ("\xe2\x96\x81" "a"),
                         "<|user|>"};
    const float score[] = {0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -3, -2, 0};
    const int32_t type[] = {2, 3, 3, 6, 6, 6, 6, 6, 1, 1, 1, 1, 1, 4};
    const uint64_t n = sizeof tok / sizeof *tok;
    lm_gguf_writer *w = lm_gguf_writer_new();
    int rc = !w || lm_gguf_add_str(w, "tokenizer.ggml.model", "llama") ||
             lm_gguf_add_str_arr(w, "tokenizer.ggml.tokens", tok, n) ||
             lm_gguf_add_arr(w, "tokenizer.ggml.scores", LM_GGUF_FLOAT32, score, n) ||
             lm_gguf_add_arr(w, "tokenizer.ggml.token_type", LM_GGUF_INT32, type, n) ||
             lm_gguf_add_u32(w, "tokenizer.ggml.bos_token_id", 1) ||
             lm_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", 2) ||
             lm_gguf_add_bool(w, "tokenizer.ggml.add_eos_token", true) ||
             lm_gguf_write(w, path);
    lm_gguf_writer_free(w);
    return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_gguf_seeds DIR\n");
        return 2;
    }
    static const struct {
        const char *file;
        test_model_shape shape;
    } models[] = {
        /* arch, weight type, layers, embd, heads, kv heads, ffn, tied, seed, RoPE scaling */
        {"llama-q4_0.gguf", {"llama", LM_TYPE_Q4_0, 1, 32, 2, 1, 32, true, 1, NULL, 0}},
        {"qwen2-f16.gguf", {"qwen2", LM_TYPE_F16, 1, 8, 2, 2, 8, false, 2, NULL, 0}},
        {"llama-f32-llama3-rope.gguf", {"llama", LM_TYPE_F32, 2, 4, 1, 1, 4, true, 3, "llama3", 8}},
        {"llama-f16-linear-rope.gguf", {"llama", LM_TYPE_F16, 1, 8, 2, 1, 8, false, 4, "linear", 2}},
    };
    char path[4096];
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        snprintf(path, sizeof path, "%s/%s", argv[1], models[i].file);
        if (test_write_model(path, &models[i].shape) != 0) {
            fprintf(stderr, "make_gguf_seeds: %s: %s\n", path, lm_last_error());
            return 1;
        }
    }
    snprintf(path, sizeof path, "%s/spm-vocab.gguf", argv[1]);
    if (write_spm_vocab(path) != 0) {
        fprintf(stderr, "make_gguf_seeds: %s: %s\n", path, lm_last_error());
        return 1;
    }
    return 0;
}
