/* SentencePiece-style BPE ("llama" vocabularies): spaces become "▁", the
 * text starts as one symbol per UTF-8 character, and the adjacent pair
 * whose concatenation is the highest-scoring token is merged until no pair
 * forms a token.  Characters left without a token fall back to <0xXX>
 * byte tokens.  Same order of merges as llama.cpp's llm_tokenizer_spm. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer_internal.h"

typedef struct {
    int32_t prev, next;
    uint32_t off, n; /* n == 0: merged away */
} sym;

static size_t utf8_len(unsigned char c) {
    static const size_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Highest score first. */
static int try_pair(const lm_tokenizer *t, const char *s, const sym *syms, int32_t l, int32_t r,
                    lm_mergeq *q) {
    if (l < 0 || r < 0) return 0;
    uint32_t size = syms[l].n + syms[r].n;
    int32_t id = lm_strmap_get(&t->by_text, s + syms[l].off, size);
    if (id < 0) return 0;
    return lm_mergeq_push(q, (lm_merge){t->tok[id].score, l, r, syms[l].n, syms[r].n});
}

int lm_spm_tokenize(const lm_tokenizer *t, const char *text, size_t len, bool space_prefix,
                    lm_idvec *out) {
    static const char mark[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */
    if (len > (INT32_MAX - 4) / 3) { /* symbol offsets and links are 32-bit */
        lm_set_error("tokenizer: text too long (%zu bytes)", len);
        return -1;
    }
    char *s = malloc(3 * len + 4);
    sym *syms = NULL;
    lm_mergeq h = {0};
    int rc = -1;
    if (!s) goto done;

    size_t n = 0;
    if (space_prefix) {
        memcpy(s, mark, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + n, mark, 3);
            n += 3;
        } else {
            s[n++] = text[i];
        }
    }

    /* One symbol per UTF-8 character of the escaped text, at least one byte
     * each: a lead byte followed by a space swallows part of the 3-byte mark,
     * so the count depends on the escaped length, not the input's. */
    syms = malloc((n + 1) * sizeof *syms);
    if (!syms) goto done;
    int32_t ns = 0;
    for (size_t off = 0; off < n; ns++) {
        size_t cl = utf8_len((unsigned char)s[off]);
        if (cl > n - off) cl = n - off;
        syms[ns] = (sym){ns - 1, off + cl == n ? -1 : ns + 1, (uint32_t)off, (uint32_t)cl};
        off += cl;
    }
    for (int32_t i = 1; i < ns; i++)
        if (try_pair(t, s, syms, i - 1, i, &h) != 0) goto done;

    while (h.n) {
        lm_merge b = lm_mergeq_pop(&h);
        sym *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.ln + b.rn) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        if (try_pair(t, s, syms, l->prev, b.left, &h) != 0) goto done;
        if (try_pair(t, s, syms, b.left, l->next, &h) != 0) goto done;
    }

    for (int32_t i = ns ? 0 : -1; i != -1; i = syms[i].next) {
        int32_t id = lm_strmap_get(&t->by_text, s + syms[i].off, syms[i].n);
        if (id >= 0) {
            if (lm_idvec_push(out, id) != 0) goto done;
            continue;
        }
        /* Only single characters get here: every merge made a token. */
        for (uint32_t j = 0; j < syms[i].n; j++) {
            int32_t bt = t->byte_tok[(unsigned char)s[syms[i].off + j]];
            if (bt < 0) bt = t->unk;
            if (bt >= 0 && lm_idvec_push(out, bt) != 0) goto done;
        }
    }
    rc = 0;
done:
    if (rc != 0) lm_set_error("tokenizer: out of memory");
    free(s);
    free(syms);
    free(h.v);
    return rc;
}
