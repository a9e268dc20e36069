/* The string -> id hash map, the growable id list and the merge queue
 * the tokenizers use.
 * Open addressing with linear probing: the vocab and merge tables are
 * built once and then only read, so no deletion is needed. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer_internal.h"

/* FNV-1a, fed byte by byte so that get3 can hash a + sep + b in place. */
#define FNV_INIT 2166136261u
static uint32_t fnv(uint32_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

int lm_strmap_init(lm_strmap *m, size_t n_keys) {
    size_t cap = 16;
    while (cap < n_keys * 2) cap <<= 1; /* load factor <= 0.5 */
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) {
        lm_set_error("tokenizer: out of memory for a %zu-entry table", n_keys);
        return -1;
    }
    for (size_t i = 0; i < cap; i++) m->slots[i].val = -1;
    m->mask = (uint32_t)(cap - 1);
    return 0;
}

void lm_strmap_free(lm_strmap *m) {
    free(m->slots);
    m->slots = NULL;
}

void lm_strmap_put(lm_strmap *m, const char *key, size_t len, int32_t val) {
    uint32_t h = fnv(FNV_INIT, key, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        lm_strmap_slot *s = &m->slots[i];
        if (s->val < 0) {
            s->key = key;
            s->len = (uint32_t)len;
            s->hash = h;
            s->val = val;
            return;
        }
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return;
    }
}

int32_t lm_strmap_get(const lm_strmap *m, const char *key, size_t len) {
    uint32_t h = fnv(FNV_INIT, key, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const lm_strmap_slot *s = &m->slots[i];
        if (s->val < 0) return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return s->val;
    }
}

int32_t lm_strmap_get3(const lm_strmap *m, const char *a, size_t alen, char sep,
                       const char *b, size_t blen) {
    uint32_t h = fnv(fnv(fnv(FNV_INIT, a, alen), &sep, 1), b, blen);
    size_t len = alen + 1 + blen;
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const lm_strmap_slot *s = &m->slots[i];
        if (s->val < 0) return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, a, alen) == 0 &&
            s->key[alen] == sep && memcmp(s->key + alen + 1, b, blen) == 0)
            return s->val;
    }
}

int lm_idvec_push(lm_idvec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) {
            lm_set_error("tokenizer: out of memory");
            return -1;
        }
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return 0;
}

/* Binary heap: higher priority first; on a tie the leftmost pair. */
static bool before(const lm_merge *a, const lm_merge *b) {
    return a->priority > b->priority || (a->priority == b->priority && a->left < b->left);
}

int lm_mergeq_push(lm_mergeq *q, lm_merge m) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        lm_merge *v = realloc(q->v, cap * sizeof *v);
        if (!v) return -1;
        q->v = v;
        q->cap = cap;
    }
    size_t i = q->n++;
    while (i > 0 && before(&m, &q->v[(i - 1) / 2])) {
        q->v[i] = q->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->v[i] = m;
    return 0;
}

lm_merge lm_mergeq_pop(lm_mergeq *q) {
    lm_merge top = q->v[0], last = q->v[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && before(&q->v[c + 1], &q->v[c])) c++;
        if (!before(&q->v[c], &last)) break;
        q->v[i] = q->v[c];
        i = c;
    }
    if (q->n) q->v[i] = last;
    return top;
}
