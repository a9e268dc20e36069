/* Tokenizer tests.
 *
 * Real model: every string in tests/fixtures/tokenize-strings.txt must give
 * exactly the ids llama.cpp gave (tests/fixtures/tokenize-smollm2.ids) and
 * detokenize back to itself.  The model comes from $LAMINA_TEST_MODEL or
 * models/SmolLM2-135M-Instruct.Q4_1.gguf under the source tree; without it
 * those tests skip, except under $CI where they fail.
 *
 * Model-free: tiny SPM and gpt2 vocabularies written with the GGUF writer
 * pin down merge order, byte fallback, the space prefix, BOS, and errors. */
#define _POSIX_C_SOURCE 200809L /* getline, mkstemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "gguf.h"
#include "tokenizer.h"

#ifndef LM_TOP_SRCDIR
#define LM_TOP_SRCDIR "."
#endif

/* ---- helpers ---------------------------------------------------------- */

static int tokenize(const lm_tokenizer *t, const char *s, bool add_special, bool parse_special,
                    int32_t **ids, size_t *n) {
    return lm_tokenize(t, s, strlen(s), add_special, parse_special, ids, n);
}

static void expect_ids(const lm_tokenizer *t, const char *s, bool add_special, bool parse_special,
                       const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n;
    assert_int_equal(tokenize(t, s, add_special, parse_special, &ids, &n), 0);
    if (n != n_want || memcmp(ids, want, n * sizeof *ids) != 0) {
        fprintf(stderr, "tokenize(\"%s\"): got", s);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
        free(ids);
        fail();
    }
    free(ids);
}

#define EXPECT(t, s, add, parse, ...)                                               \
    do {                                                                            \
        const int32_t want_[] = {__VA_ARGS__};                                      \
        expect_ids(t, s, add, parse, want_, sizeof want_ / sizeof *want_);          \
    } while (0)

static void expect_piece(const lm_tokenizer *t, int32_t id, bool special, const char *want) {
    char buf[64];
    int n = lm_token_to_piece(t, id, special, buf, sizeof buf);
    assert_true(n >= 0 && (size_t)n < sizeof buf);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

/* Concatenated pieces of ids into a malloc'd string. */
static char *detokenize(const lm_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t cap = 64, o = 0;
    char *s = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        int k = lm_token_to_piece(t, ids[i], false, s + o, cap - o);
        assert_true(k >= 0);
        if ((size_t)k > cap - o) {
            while ((size_t)k > cap - o) cap *= 2;
            s = realloc(s, cap);
            assert_int_equal(lm_token_to_piece(t, ids[i], false, s + o, cap - o), k);
        }
        o += (size_t)k;
    }
    *len = o;
    return s;
}

/* ---- the real model --------------------------------------------------- */

static lm_gguf *g_model;
static lm_tokenizer *g_tok;

static int model_setup(void **state) {
    (void)state;
    const char *path = getenv("LAMINA_TEST_MODEL");
    char def[4096];
    if (!path || !*path) {
        snprintf(def, sizeof def, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", LM_TOP_SRCDIR);
        path = def;
    }
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "test_tokenizer: no model at %s (set LAMINA_TEST_MODEL)%s\n", path,
                getenv("CI") ? "; CI is set, so this fails" : "; skipping the real-model tests");
        return 0;
    }
    g_model = lm_gguf_open(path);
    if (!g_model) {
        fprintf(stderr, "test_tokenizer: %s\n", lm_last_error());
        return -1;
    }
    g_tok = lm_tokenizer_from_gguf(g_model);
    if (!g_tok) {
        fprintf(stderr, "test_tokenizer: %s\n", lm_last_error());
        return -1;
    }
    return 0;
}

static int model_teardown(void **state) {
    (void)state;
    lm_tokenizer_free(g_tok);
    lm_gguf_close(g_model);
    return 0;
}

static void need_model(void) {
    if (g_tok) return;
    if (getenv("CI")) fail_msg("real-model tokenizer test needs the model under CI");
    skip();
}

/* One line per item; "\n" written as the two characters \ and n, and lines
 * of only whitespace skipped, as the reference script reads them. */
static char **read_lines(const char *path, size_t *n, bool unescape) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char **v = NULL;
    size_t cnt = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        if (strspn(line, " \t\r\f\v") == (size_t)len) continue;
        char *s = malloc((size_t)len + 1), *o = s;
        for (ssize_t i = 0; i < len; i++) {
            if (unescape && line[i] == '\\' && line[i + 1] == 'n') {
                *o++ = '\n';
                i++;
            } else {
                *o++ = line[i];
            }
        }
        *o = '\0';
        v = realloc(v, (cnt + 1) * sizeof *v);
        v[cnt++] = s;
    }
    free(line);
    fclose(f);
    *n = cnt;
    return v;
}

static void test_fixture_ids(void **state) {
    (void)state;
    need_model();
    size_t ns, ni;
    char **strs = read_lines(LM_TOP_SRCDIR "/tests/fixtures/tokenize-strings.txt", &ns, true);
    char **lines = read_lines(LM_TOP_SRCDIR "/tests/fixtures/tokenize-smollm2.ids", &ni, false);
    assert_int_equal(ns, ni);
    size_t ok = 0, round = 0;
    for (size_t k = 0; k < ns; k++) {
        int32_t want[4096];
        size_t nw = 0;
        for (char *p = lines[k], *end; nw < 4096; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            want[nw++] = (int32_t)v;
        }
        int32_t *ids;
        size_t n;
        assert_int_equal(lm_tokenize(g_tok, strs[k], strlen(strs[k]), false, false, &ids, &n), 0);
        if (n == nw && memcmp(ids, want, n * sizeof *ids) == 0) {
            ok++;
        } else {
            fprintf(stderr, "mismatch on string %zu \"%s\":\n  got ", k + 1, strs[k]);
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  want %s\n", lines[k]);
        }
        size_t dl;
        char *back = detokenize(g_tok, ids, n, &dl);
        if (dl == strlen(strs[k]) && memcmp(back, strs[k], dl) == 0) round++;
        else fprintf(stderr, "round trip differs on string %zu \"%s\": \"%.*s\"\n", k + 1, strs[k], (int)dl, back);
        free(back);
        free(ids);
        free(strs[k]);
        free(lines[k]);
    }
    free(strs);
    free(lines);
    fprintf(stderr, "fixtures: %zu/%zu match llama.cpp, %zu/%zu round-trip\n", ok, ns, round, ns);
    assert_int_equal(ok, ns);
    assert_int_equal(round, ns);
}

static void test_model_special(void **state) {
    (void)state;
    need_model();
    assert_int_equal(lm_tokenizer_n_vocab(g_tok), 49152);
    assert_false(lm_tokenizer_add_bos(g_tok));
    assert_int_equal(lm_tokenizer_find(g_tok, "<|im_start|>"), 1);

    /* parse_special: the marker is one token, followed by the text's ids */
    int32_t *a, *b;
    size_t na, nb;
    assert_int_equal(tokenize(g_tok, "<|im_start|>user", false, true, &a, &na), 0);
    assert_int_equal(tokenize(g_tok, "user", false, false, &b, &nb), 0);
    assert_int_equal(na, nb + 1);
    assert_int_equal(a[0], 1);
    assert_memory_equal(a + 1, b, nb * sizeof *b);
    free(a);
    free(b);
    /* without parse_special it is plain text */
    assert_int_equal(tokenize(g_tok, "<|im_start|>", false, false, &a, &na), 0);
    assert_true(na > 1);
    free(a);

    int32_t im_end = lm_tokenizer_find(g_tok, "<|im_end|>");
    assert_true(im_end >= 0);
    assert_true(lm_tokenizer_is_eog(g_tok, im_end));
    assert_true(lm_tokenizer_is_eog(g_tok, lm_tokenizer_eos(g_tok)));
    assert_true(lm_tokenizer_is_eog(g_tok, lm_tokenizer_find(g_tok, "<|endoftext|>")));
    assert_false(lm_tokenizer_is_eog(g_tok, 1));
    assert_false(lm_tokenizer_is_eog(g_tok, lm_tokenizer_find(g_tok, "Hello")));

    expect_piece(g_tok, 1, false, "");
    expect_piece(g_tok, 1, true, "<|im_start|>");
    assert_int_equal(lm_token_to_piece(g_tok, 49152, true, NULL, 0), -1);
    /* a piece longer than the buffer reports its full length */
    char small[2];
    assert_int_equal(lm_token_to_piece(g_tok, 1, true, small, sizeof small), 12);
    /* empty text and add_special with add_bos false: nothing */
    assert_int_equal(tokenize(g_tok, "", true, true, &a, &na), 0);
    assert_int_equal(na, 0);
    free(a);
}

/* ---- tiny vocabularies ------------------------------------------------ */

static char g_tmp[64];

static lm_gguf *write_and_open(lm_gguf_writer *w) {
    strcpy(g_tmp, "/tmp/lamina-tok-XXXXXX");
    int fd = mkstemp(g_tmp);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(lm_gguf_write(w, g_tmp), 0);
    lm_gguf_writer_free(w);
    lm_gguf *g = lm_gguf_open(g_tmp);
    unlink(g_tmp);
    assert_non_null(g);
    return g;
}

enum { SPM_BYTE0 = 3, SPM_SP = 259, SPM_A, SPM_B, SPM_C, SPM_AB, SPM_BC, SPM_SP_A, SPM_N };

static lm_gguf *spm_vocab(int space_prefix /* -1: absent */) {
    static char bytes[256][7];
    const char *tok[SPM_N];
    float score[SPM_N];
    int32_t type[SPM_N];
    tok[0] = "<unk>", tok[1] = "<s>", tok[2] = "</s>";
    type[0] = 2, type[1] = 3, type[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tok[SPM_BYTE0 + b] = bytes[b];
        type[SPM_BYTE0 + b] = 6;
    }
    const char *words[] = {"\xe2\x96\x81", "a", "b", "c", "ab", "bc", ("\xe2\x96\x81" "a")};
    /* "bc" outscores "▁a", which outscores "ab": the merge order under test */
    const float scores[] = {-1, -1, -1, -1, -5, -2, -3};
    for (int i = 0; i < 7; i++) {
        tok[SPM_SP + i] = words[i];
        score[SPM_SP + i] = scores[i];
        type[SPM_SP + i] = 1;
    }
    for (int i = 0; i < SPM_SP; i++) score[i] = 0;

    lm_gguf_writer *w = lm_gguf_writer_new();
    assert_int_equal(lm_gguf_add_str(w, "tokenizer.ggml.model", "llama"), 0);
    assert_int_equal(lm_gguf_add_str_arr(w, "tokenizer.ggml.tokens", tok, SPM_N), 0);
    assert_int_equal(lm_gguf_add_arr(w, "tokenizer.ggml.scores", LM_GGUF_FLOAT32, score, SPM_N), 0);
    assert_int_equal(lm_gguf_add_arr(w, "tokenizer.ggml.token_type", LM_GGUF_INT32, type, SPM_N), 0);
    assert_int_equal(lm_gguf_add_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
    assert_int_equal(lm_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", 2), 0);
    if (space_prefix >= 0)
        assert_int_equal(lm_gguf_add_bool(w, "tokenizer.ggml.add_space_prefix", space_prefix), 0);
    return write_and_open(w);
}

static void test_spm(void **state) {
    (void)state;
    lm_gguf *g = spm_vocab(-1);
    lm_tokenizer *t = lm_tokenizer_from_gguf(g);
    assert_non_null(t);
    assert_true(lm_tokenizer_add_bos(t));
    assert_int_equal(lm_tokenizer_bos(t), 1);
    assert_true(lm_tokenizer_is_eog(t, 2));

    /* "▁abc": bc first (-2), then ▁a (-3); ab (-5) never gets its turn */
    EXPECT(t, "abc", true, false, 1, SPM_SP_A, SPM_BC);
    EXPECT(t, "abc", false, false, SPM_SP_A, SPM_BC);
    EXPECT(t, "ab", false, false, SPM_SP_A, SPM_B);
    EXPECT(t, "bab", false, false, SPM_SP, SPM_B, SPM_AB);
    EXPECT(t, "a b", false, false, SPM_SP_A, SPM_SP, SPM_B);
    /* "€" is not in the vocab: its three bytes come out as <0xXX> */
    EXPECT(t, "a\xe2\x82\xac", false, false, SPM_SP_A, SPM_BYTE0 + 0xE2, SPM_BYTE0 + 0x82, SPM_BYTE0 + 0xAC);
    /* special tokens split out; the text after one gets the space prefix */
    EXPECT(t, "<s>a</s>", true, true, 1, 1, SPM_SP_A, 2);
    EXPECT(t, "", true, false, 1);

    expect_piece(t, SPM_SP_A, false, " a");
    expect_piece(t, SPM_BYTE0 + 'A', false, "A");
    expect_piece(t, 1, false, "");
    expect_piece(t, 1, true, "<s>");
    lm_tokenizer_free(t);
    lm_gguf_close(g);

    g = spm_vocab(0);
    t = lm_tokenizer_from_gguf(g);
    assert_non_null(t);
    EXPECT(t, "abc", true, false, 1, SPM_A, SPM_BC);
    lm_tokenizer_free(t);
    lm_gguf_close(g);
}

enum { G_EOT, G_A, G_B, G_C, G_D, G_SP, G_BC, G_AB, G_ABC, G_SPA, G_N };

static lm_gguf *gpt2_vocab(const char *model, const char *pre, bool with_tokens) {
    const char *tok[G_N] = {"<|endoftext|>", "a", "b", "c", "d", "\xc4\xa0", "bc", "ab", "abc", ("\xc4\xa0" "a")};
    int32_t type[G_N] = {3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    /* rank order: "b c" before "a b" */
    const char *merges[] = {"b c", "a b", "a bc", "\xc4\xa0 a"};
    lm_gguf_writer *w = lm_gguf_writer_new();
    assert_int_equal(lm_gguf_add_str(w, "tokenizer.ggml.model", model), 0);
    if (pre) assert_int_equal(lm_gguf_add_str(w, "tokenizer.ggml.pre", pre), 0);
    if (with_tokens) {
        assert_int_equal(lm_gguf_add_str_arr(w, "tokenizer.ggml.tokens", tok, G_N), 0);
        assert_int_equal(lm_gguf_add_arr(w, "tokenizer.ggml.token_type", LM_GGUF_INT32, type, G_N), 0);
    }
    assert_int_equal(lm_gguf_add_str_arr(w, "tokenizer.ggml.merges", merges, 4), 0);
    assert_int_equal(lm_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", 0), 0);
    return write_and_open(w);
}

static void test_gpt2(void **state) {
    (void)state;
    lm_gguf *g = gpt2_vocab("gpt2", "gpt-2", true);
    lm_tokenizer *t = lm_tokenizer_from_gguf(g);
    assert_non_null(t);
    assert_false(lm_tokenizer_add_bos(t));
    assert_true(lm_tokenizer_is_eog(t, G_EOT));
    assert_int_equal(lm_tokenizer_eot(t), G_EOT);

    /* b+c (rank 0) before a+b (rank 1), then a+bc (rank 2) */
    EXPECT(t, "abc", true, false, G_ABC);
    EXPECT(t, "abd", false, false, G_AB, G_D);
    /* " abc" is one word: Ġ a b c -> Ġ a bc -> Ġ abc (rank 2 beats Ġ a, rank 3) */
    EXPECT(t, " abc", false, false, G_SP, G_ABC);
    EXPECT(t, "a b", false, false, G_A, G_SP, G_B);
    EXPECT(t, " a", false, false, G_SPA);
    EXPECT(t, "a<|endoftext|>", false, true, G_A, G_EOT);

    expect_piece(t, G_SPA, false, " a");
    expect_piece(t, G_EOT, false, "");
    expect_piece(t, G_EOT, true, "<|endoftext|>");
    lm_tokenizer_free(t);
    lm_gguf_close(g);
}

static void test_errors(void **state) {
    (void)state;
    lm_gguf *g = gpt2_vocab("gpt2", "gpt-2", false);
    lm_clear_error();
    assert_null(lm_tokenizer_from_gguf(g));
    assert_non_null(strstr(lm_last_error(), "tokenizer.ggml.tokens"));
    lm_gguf_close(g);

    g = gpt2_vocab("wordpiece", NULL, true);
    assert_null(lm_tokenizer_from_gguf(g));
    assert_non_null(strstr(lm_last_error(), "unsupported tokenizer.ggml.model 'wordpiece'"));
    lm_gguf_close(g);

    g = gpt2_vocab("gpt2", "no-such-pre", true);
    assert_null(lm_tokenizer_from_gguf(g));
    assert_non_null(strstr(lm_last_error(), "no-such-pre"));
    lm_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest model_tests[] = {
        cmocka_unit_test(test_fixture_ids),
        cmocka_unit_test(test_model_special),
    };
    const struct CMUnitTest tiny_tests[] = {
        cmocka_unit_test(test_spm),
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_errors),
    };
    int rc = cmocka_run_group_tests_name("tokenizer-model", model_tests, model_setup, model_teardown);
    rc |= cmocka_run_group_tests_name("tokenizer-tiny", tiny_tests, NULL, NULL);
    return rc;
}
