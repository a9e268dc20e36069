/* The tokenizers on real vocabularies against llama.cpp, with hostile text.
 *
 *   SentencePiece: Llama 2's vocabulary (ggml-vocab-llama-spm.gguf, which
 *     scripts/fetch-test-vocab takes from llama.cpp's sources) must give the
 *     ids llama.cpp's own tokenizer test expects for its strings (.inp/.out).
 *   Byte-level BPE: SmolLM2's vocabulary, from the default model.
 *   Both: malformed UTF-8 (stray lead bytes, truncated sequences, overlong
 *     forms, UTF-8-encoded surrogates, bytes no UTF-8 has) gives llama.cpp's
 *     ids (tests/fixtures/malformed-utf8*.ids), and never a crash: a lead byte
 *     before a space once made the SentencePiece symbol array overflow.  (One
 *     line, a code point past U+10FFFF, makes llama.cpp's BPE tokenizer abort
 *     with "invalid codepoint": its fixture line is "-", ids in range suffice.)
 *
 * Without a vocabulary its tests skip, except under $CI, where they fail. */
#define _POSIX_C_SOURCE 200809L /* getline */
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

typedef struct {
    lm_gguf *g;
    lm_tokenizer *t;
} vocab;

static vocab g_spm, g_bpe;

static void open_vocab(vocab *v, const char *env, const char *def) {
    const char *path = getenv(env);
    char buf[4096];
    if (!path || !*path) {
        snprintf(buf, sizeof buf, "%s/models/%s", LM_TOP_SRCDIR, def);
        path = buf;
    }
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "test_tokenizer_vocab: no vocabulary at %s (set %s)\n", path, env);
        return;
    }
    v->g = lm_gguf_open(path);
    v->t = v->g ? lm_tokenizer_from_gguf(v->g) : NULL;
    if (!v->t) fprintf(stderr, "test_tokenizer_vocab: %s\n", lm_last_error());
}

static int setup(void **state) {
    (void)state;
    open_vocab(&g_spm, "LAMINA_TEST_SPM_VOCAB", "ggml-vocab-llama-spm.gguf");
    open_vocab(&g_bpe, "LAMINA_TEST_MODEL", "SmolLM2-135M-Instruct.Q4_1.gguf");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    lm_tokenizer_free(g_spm.t);
    lm_gguf_close(g_spm.g);
    lm_tokenizer_free(g_bpe.t);
    lm_gguf_close(g_bpe.g);
    return 0;
}

static const lm_tokenizer *need(const vocab *v, const char *what) {
    if (v->t) return v->t;
    if (getenv("CI")) fail_msg("the %s vocabulary is needed under CI (scripts/fetch-model, scripts/fetch-test-vocab)", what);
    skip();
    return NULL;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t got;
    while ((got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) s = realloc(s, cap *= 2);
    }
    fclose(f);
    s[n] = '\0';
    *len = n;
    return s;
}

/* Space-separated ids on one line into want (at most cap); returns the count. */
static size_t parse_ids(const char *line, int32_t *want, size_t cap) {
    size_t n = 0;
    for (char *end; n < cap; line = end) {
        long v = strtol(line, &end, 10);
        if (end == line) break;
        want[n++] = (int32_t)v;
    }
    return n;
}

/* Tokenizes text (no BOS, special tokens as text, as llama.cpp's tokenizer
 * tests do) and compares with the ids on the line want_line; 1 if equal. */
static int same_ids(const lm_tokenizer *t, const char *text, size_t len, const char *want_line,
                    const char *label) {
    static int32_t want[1 << 18];
    size_t nw = parse_ids(want_line, want, sizeof want / sizeof *want);
    int32_t *ids;
    size_t n;
    assert_int_equal(lm_tokenize(t, text, len, false, false, &ids, &n), 0);
    /* "-": llama.cpp itself cannot tokenize it (it aborts); lamina must
     * only give ids in range */
    int same = strcmp(want_line, "-") == 0 || (n == nw && memcmp(ids, want, n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "%s: got", label);
        for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "%s\n  want %.400s\n", n > 64 ? " ..." : "", want_line);
    }
    for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < lm_tokenizer_n_vocab(t));
    free(ids);
    return same;
}

/* Splits s at each occurrence of sep (in place); returns the pieces. */
static char **split(char *s, const char *sep, size_t *n) {
    char **v = NULL;
    size_t k = 0, sl = strlen(sep);
    for (char *p = s;; k++) {
        v = realloc(v, (k + 1) * sizeof *v);
        v[k] = p;
        char *q = strstr(p, sep);
        if (!q) break;
        *q = '\0';
        p = q + sl;
    }
    *n = k + 1;
    return v;
}

static void test_spm_llamacpp_suite(void **state) {
    (void)state;
    const lm_tokenizer *t = need(&g_spm, "Llama 2 SentencePiece");
    const char *dir = getenv("LAMINA_TEST_SPM_VOCAB");
    char inp[4096], out[4096];
    snprintf(inp, sizeof inp, "%s.inp", dir && *dir ? dir : LM_TOP_SRCDIR "/models/ggml-vocab-llama-spm.gguf");
    snprintf(out, sizeof out, "%s.out", dir && *dir ? dir : LM_TOP_SRCDIR "/models/ggml-vocab-llama-spm.gguf");
    size_t li, lo, ni, no;
    char *si = slurp(inp, &li), *so = slurp(out, &lo);
    char **texts = split(si, "\n__ggml_vocab_test__\n", &ni);
    char **lines = split(so, "\n", &no);
    /* the .inp file ends with a separator; the .out file with a newline */
    if (ni > 0 && texts[ni - 1][0] == '\0') ni--;
    if (no > 0 && lines[no - 1][0] == '\0') no--;
    assert_int_equal(ni, no);
    size_t ok = 0;
    for (size_t k = 0; k < ni; k++) {
        char label[64];
        snprintf(label, sizeof label, "llama.cpp test string %zu", k + 1);
        ok += (size_t)same_ids(t, texts[k], strlen(texts[k]), lines[k], label);
    }
    fprintf(stderr, "llama-spm: %zu/%zu of llama.cpp's test strings match\n", ok, ni);
    assert_int_equal(ok, ni);
    free(texts);
    free(lines);
    free(si);
    free(so);
}

/* One fixture line: hex bytes, optionally "*N" to repeat them N times. */
static char *unhex(const char *line, size_t *len) {
    size_t nh = strspn(line, "0123456789abcdefABCDEF");
    assert_true(nh % 2 == 0);
    unsigned long rep = line[nh] == '*' ? strtoul(line + nh + 1, NULL, 10) : 1;
    size_t nb = nh / 2;
    char *s = malloc(nb * rep + 1);
    for (size_t i = 0; i < nb; i++) {
        unsigned v;
        sscanf(line + 2 * i, "%2x", &v);
        s[i] = (char)v;
    }
    for (unsigned long r = 1; r < rep; r++) memcpy(s + r * nb, s, nb);
    *len = nb * rep;
    s[*len] = '\0';
    return s;
}

static void check_malformed(const lm_tokenizer *t, const char *ids_name) {
    size_t lh, li, nh, ni;
    char *sh = slurp(LM_TOP_SRCDIR "/tests/fixtures/malformed-utf8.hex", &lh);
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", LM_TOP_SRCDIR, ids_name);
    char *si = slurp(path, &li);
    char **hex = split(sh, "\n", &nh), **ids = split(si, "\n", &ni);
    if (nh > 0 && hex[nh - 1][0] == '\0') nh--;
    if (ni > 0 && ids[ni - 1][0] == '\0') ni--;
    assert_int_equal(nh, ni);
    size_t ok = 0;
    for (size_t k = 0; k < nh; k++) {
        size_t len;
        char *text = unhex(hex[k], &len);
        char label[96];
        snprintf(label, sizeof label, "%s, line %zu (%.40s)", ids_name, k + 1, hex[k]);
        ok += (size_t)same_ids(t, text, len, ids[k], label);
        free(text);
    }
    fprintf(stderr, "%s: %zu/%zu malformed strings match llama.cpp\n", ids_name, ok, nh);
    assert_int_equal(ok, nh);
    free(hex);
    free(ids);
    free(sh);
    free(si);
}

static void test_spm_malformed(void **state) {
    (void)state;
    check_malformed(need(&g_spm, "Llama 2 SentencePiece"), "malformed-utf8-llama-spm.ids");
}

static void test_bpe_malformed(void **state) {
    (void)state;
    check_malformed(need(&g_bpe, "SmolLM2 BPE"), "malformed-utf8-smollm2.ids");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_llamacpp_suite),
        cmocka_unit_test(test_spm_malformed),
        cmocka_unit_test(test_bpe_malformed),
    };
    return cmocka_run_group_tests_name("tokenizer-vocab", tests, setup, teardown);
}
