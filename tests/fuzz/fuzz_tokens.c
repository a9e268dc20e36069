/* The checks behind every tokenizer harness (see fuzz_tokens.h). */
#include "fuzz_tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"

#define SMALL_CAP 8   /* a buffer most pieces overflow: checks the cap is kept */
#define CANARY 0xA5

static void finding(const char *what, int32_t id)
{
    fprintf(stderr, "fuzz: %s (token %d)\n", what, id);
    abort();
}

/* The piece of id into a buffer too small for most pieces, then into one
 * large enough: the length must not depend on the buffer, nothing may be
 * written past the cap, and the bytes that fit must agree. */
static void check_piece(const lm_tokenizer *t, int32_t id, bool special)
{
    unsigned char small[SMALL_CAP + 8];
    memset(small, CANARY, sizeof small);
    int n = lm_token_to_piece(t, id, special, (char *)small, SMALL_CAP);
    if (n < 0)
        finding("lm_token_to_piece failed for an id in range", id);
    for (size_t i = SMALL_CAP; i < sizeof small; i++)
        if (small[i] != CANARY)
            finding("lm_token_to_piece wrote past its buffer", id);
    char *full = malloc((size_t)n + 1);
    if (!full)
        abort();
    full[n] = (char)CANARY;
    if (lm_token_to_piece(t, id, special, full, (size_t)n) != n)
        finding("lm_token_to_piece gave another length for a larger buffer", id);
    if ((unsigned char)full[n] != CANARY)
        finding("lm_token_to_piece wrote past the length it returned", id);
    if (memcmp(small, full, n < SMALL_CAP ? (size_t)n : SMALL_CAP) != 0)
        finding("lm_token_to_piece gave other bytes in a smaller buffer", id);
    free(full);
}

void fuzz_tokens(const lm_tokenizer *t, const char *text, size_t len, bool add_special,
                 bool parse_special)
{
    const int32_t n_vocab = lm_tokenizer_n_vocab(t);
    char byte;
    if (lm_token_to_piece(t, -1, true, &byte, 1) != -1 ||
        lm_token_to_piece(t, n_vocab, true, &byte, 1) != -1)
        finding("lm_token_to_piece accepted an id out of range", n_vocab);

    int32_t *ids;
    size_t n;
    if (lm_tokenize(t, text, len, add_special, parse_special, &ids, &n) != 0)
        return;
    /* A token stands for at least one byte of the text, except BOS, EOS and
     * SPM's space prefix before each run (at most one run per byte, plus
     * one); escaped spaces and prefixes are "▁", three byte tokens at worst. */
    if (n > 6 * len + 5)
        finding("more tokens than the text can make", (int32_t)n);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n_vocab)
            finding("lm_tokenize gave an id outside the vocabulary", ids[i]);
        check_piece(t, ids[i], false);
        check_piece(t, ids[i], true);
    }
    free(ids);
}

void fuzz_tokens_input(const lm_tokenizer *t, const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    fuzz_tokens(t, (const char *)data + 1, size - 1, data[0] & 1, data[0] & 2);
}

lm_tokenizer *fuzz_load_vocab(const char *env, const char *default_path)
{
    const char *path = getenv(env);
    if (!path || !*path)
        path = default_path;
    lm_gguf *g = lm_gguf_open(path);
    lm_tokenizer *t = g ? lm_tokenizer_from_gguf(g) : NULL;
    lm_gguf_close(g); /* the tokenizer keeps copies of what it needs */
    if (!t) {
        fprintf(stderr, "fuzz: no vocabulary: %s\n"
                "fuzz: set %s to a GGUF file with a tokenizer (scripts/fetch-model and "
                "scripts/fetch-test-vocab fetch the defaults)\n", lm_last_error(), env);
        exit(1);
    }
    return t;
}
