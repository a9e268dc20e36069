/* Tokenizer front end: reads the vocabulary from GGUF metadata, splits
 * special tokens out of the text, hands the plain runs to the SPM or BPE
 * algorithm, and turns ids back into bytes.  The behaviour follows
 * llama.cpp's llama-vocab.cpp so that ids match it exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer_internal.h"

/* ---- loading ---------------------------------------------------------- */

/* Texts that end a turn.  llama.cpp keys end-of-generation on these
 * (special_eog_ids) and forces them to control type. */
static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>",
};
/* Candidates for EOT when tokenizer.ggml.eot_token_id is absent. */
static const char *const k_eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "<end_of_utterance>",
};

static const lm_gguf_kv *find_arr(const lm_gguf *g, const char *key, bool required) {
    const lm_gguf_kv *kv = lm_gguf_find(g, key);
    if (!kv) {
        if (required) lm_set_error("%s: missing %s", lm_gguf_path(g), key);
        return NULL;
    }
    if (kv->type != LM_GGUF_ARRAY) {
        lm_set_error("%s: %s is not an array", lm_gguf_path(g), key);
        return NULL;
    }
    return kv;
}

/* Special token ids: a default that is out of range is dropped; a
 * metadata value out of range is ignored (both as llama.cpp does). */
static int32_t special_id(const lm_gguf *g, const char *key, int32_t def, int32_t n) {
    uint32_t v;
    if (def >= n) def = -1;
    if (lm_gguf_get_u32(g, key, &v) == 0 && v < (uint32_t)n) return (int32_t)v;
    return def;
}

static uint8_t attr_of_type(int32_t type) {
    switch (type) {
    case 1: return LM_TOK_NORMAL;
    case 2: return LM_TOK_UNKNOWN;
    case 3: return LM_TOK_CONTROL;
    case 4: return LM_TOK_USER_DEFINED;
    case 5: return LM_TOK_UNUSED;
    case 6: return LM_TOK_BYTE;
    default: return LM_TOK_UNDEFINED;
    }
}

/* Copies token texts (and merges) into one arena so the tokenizer does not
 * depend on the GGUF mapping staying open. */
static int load_tokens(lm_tokenizer *t, const lm_gguf *g, const lm_gguf_kv *merges) {
    const lm_gguf_kv *kv = find_arr(g, "tokenizer.ggml.tokens", true);
    if (!kv) return -1;
    if (kv->elem_type != LM_GGUF_STRING || kv->n == 0 || kv->n > INT32_MAX / 2) {
        lm_set_error("%s: tokenizer.ggml.tokens must be a non-empty string array",
                     lm_gguf_path(g));
        return -1;
    }
    const lm_gguf_str *words = kv->data;
    int32_t n = (int32_t)kv->n;

    const lm_gguf_kv *sc = find_arr(g, "tokenizer.ggml.scores", false);
    if (sc && (sc->n < kv->n || (sc->elem_type != LM_GGUF_FLOAT32 && sc->elem_type != LM_GGUF_INT32))) {
        lm_set_error("%s: tokenizer.ggml.scores must hold %d float32 or int32", lm_gguf_path(g), n);
        return -1;
    }
    const lm_gguf_kv *ty = find_arr(g, "tokenizer.ggml.token_type", false);
    if (ty && (ty->n < kv->n || ty->elem_type != LM_GGUF_INT32)) {
        lm_set_error("%s: tokenizer.ggml.token_type must hold %d int32", lm_gguf_path(g), n);
        return -1;
    }

    size_t bytes = 0;
    for (int32_t i = 0; i < n; i++) bytes += words[i].len ? words[i].len + 1 : 24;
    const lm_gguf_str *ms = merges ? merges->data : NULL;
    for (uint64_t i = 0; merges && i < merges->n; i++) bytes += ms[i].len + 1;

    t->n_vocab = n;
    t->tok = calloc((size_t)n, sizeof *t->tok);
    t->arena = malloc(bytes ? bytes : 1);
    if (!t->tok || !t->arena || lm_strmap_init(&t->by_text, (size_t)n) != 0) {
        lm_set_error("%s: out of memory for %d tokens", lm_gguf_path(g), n);
        return -1;
    }
    char *p = t->arena;
    for (int32_t i = 0; i < n; i++) {
        lm_tok_entry *e = &t->tok[i];
        e->text = p;
        if (words[i].len) {
            memcpy(p, words[i].data, words[i].len);
            e->len = (uint32_t)words[i].len;
        } else { /* llama.cpp names empty tokens so they stay unique */
            e->len = (uint32_t)snprintf(p, 24, "[EMPTY_%d]", (int)i);
        }
        p[e->len] = '\0';
        p += e->len + 1;
        if (sc) {
            const void *d = sc->data;
            if (sc->elem_type == LM_GGUF_FLOAT32) memcpy(&e->score, (const char *)d + 4 * i, 4);
            else {
                int32_t v;
                memcpy(&v, (const char *)d + 4 * i, 4);
                e->score = (float)v;
            }
        }
        if (ty) {
            int32_t v;
            memcpy(&v, (const char *)ty->data + 4 * i, 4);
            e->attr = attr_of_type(v);
        } else {
            e->attr = LM_TOK_NORMAL;
        }
        lm_strmap_put(&t->by_text, e->text, e->len, i);
    }

    if (merges) {
        if (lm_strmap_init(&t->merges, merges->n) != 0) return -1;
        for (uint64_t i = 0; i < merges->n; i++) {
            memcpy(p, ms[i].data, ms[i].len);
            p[ms[i].len] = '\0';
            /* A merge without a separating space (after its first byte) can
             * never apply; llama.cpp stores it as an empty pair. */
            if (ms[i].len >= 3 && memchr(p + 1, ' ', ms[i].len - 1))
                lm_strmap_put(&t->merges, p, ms[i].len, (int32_t)i);
            p += ms[i].len + 1;
        }
    }
    return 0;
}

typedef struct {
    uint32_t len;
    int32_t id;
} special_key;

/* Longest first; equal lengths by id so the order is reproducible. */
static int cmp_special(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* End-of-generation set and the list of tokens split out before the
 * algorithms run. */
static int build_special(lm_tokenizer *t) {
    int32_t n = t->n_vocab;
    t->eog = calloc((size_t)n, sizeof *t->eog);
    if (!t->eog) return -1;

    if (t->eot < 0) {
        for (size_t k = 0; k < sizeof k_eot_texts / sizeof *k_eot_texts && t->eot < 0; k++)
            t->eot = lm_strmap_get(&t->by_text, k_eot_texts[k], strlen(k_eot_texts[k]));
        if (t->eot >= 0) t->tok[t->eot].attr |= LM_TOK_CONTROL;
    }
    if (t->eom < 0) {
        t->eom = lm_strmap_get(&t->by_text, "<|eom_id|>", 10);
        if (t->eom >= 0) t->tok[t->eom].attr |= LM_TOK_CONTROL;
    }
    for (size_t k = 0; k < sizeof k_eog_texts / sizeof *k_eog_texts; k++) {
        int32_t id = lm_strmap_get(&t->by_text, k_eog_texts[k], strlen(k_eog_texts[k]));
        if (id < 0) continue;
        t->eog[id] = true;
        t->tok[id].attr |= LM_TOK_CONTROL;
    }
    if (t->eos >= 0) t->eog[t->eos] = true;
    if (t->eot >= 0) t->eog[t->eot] = true;
    if (t->eom >= 0) t->eog[t->eom] = true;

    size_t ns = 0;
    for (int32_t i = 0; i < n; i++)
        if (t->tok[i].attr & (LM_TOK_CONTROL | LM_TOK_USER_DEFINED | LM_TOK_UNKNOWN)) ns++;
    special_key *keys = malloc((ns ? ns : 1) * sizeof *keys);
    t->special = malloc((ns ? ns : 1) * sizeof *t->special);
    if (!keys || !t->special) {
        free(keys);
        return -1;
    }
    for (int32_t i = 0; i < n; i++)
        if (t->tok[i].attr & (LM_TOK_CONTROL | LM_TOK_USER_DEFINED | LM_TOK_UNKNOWN))
            keys[t->n_special++] = (special_key){t->tok[i].len, i};
    qsort(keys, t->n_special, sizeof *keys, cmp_special);
    for (size_t i = 0; i < t->n_special; i++) t->special[i] = keys[i].id;
    free(keys);
    return 0;
}

static void build_byte_tokens(lm_tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t id = lm_strmap_get(&t->by_text, buf, 6);
        if (id < 0) {
            char c = (char)b;
            id = lm_strmap_get(&t->by_text, &c, 1);
        }
        t->byte_tok[b] = id;
    }
}

lm_tokenizer *lm_tokenizer_from_gguf(const lm_gguf *g) {
    lm_gguf_str model;
    if (lm_gguf_get_str(g, "tokenizer.ggml.model", &model) != 0) {
        lm_set_error("%s: missing tokenizer.ggml.model", lm_gguf_path(g));
        return NULL;
    }
    lm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        lm_set_error("tokenizer: out of memory");
        return NULL;
    }
    const lm_gguf_kv *merges = NULL;
    if (lm_gguf_str_eq(model, "llama")) {
        t->kind = LM_VOCAB_SPM;
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (lm_gguf_str_eq(model, "gpt2")) {
        t->kind = LM_VOCAB_BPE;
        merges = find_arr(g, "tokenizer.ggml.merges", true);
        if (!merges) goto fail;
        if (merges->elem_type != LM_GGUF_STRING) {
            lm_set_error("%s: tokenizer.ggml.merges must be a string array", lm_gguf_path(g));
            goto fail;
        }
    } else {
        lm_set_error("%s: unsupported tokenizer.ggml.model '%.*s' (lamina handles 'llama' and 'gpt2')",
                     lm_gguf_path(g), (int)(model.len > 64 ? 64 : model.len), model.data);
        goto fail;
    }
    if (load_tokens(t, g, merges) != 0) goto fail;

    if (t->kind == LM_VOCAB_BPE) {
        lm_gguf_str pre = {0};
        char prebuf[64] = "";
        if (lm_gguf_get_str(g, "tokenizer.ggml.pre", &pre) == 0) {
            if (pre.len >= sizeof prebuf) {
                lm_set_error("%s: unknown tokenizer.ggml.pre '%.*s'", lm_gguf_path(g), 63, pre.data);
                goto fail;
            }
            memcpy(prebuf, pre.data, pre.len);
            prebuf[pre.len] = '\0';
        }
        if (lm_bpe_init(t, prebuf) != 0) goto fail; /* may default add_bos */
    }

    int32_t n = t->n_vocab;
    bool spm = t->kind == LM_VOCAB_SPM;
    t->bos = special_id(g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, n);
    t->eos = special_id(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, n);
    t->unk = special_id(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, n);
    t->eot = special_id(g, "tokenizer.ggml.eot_token_id", -1, n);
    t->eom = special_id(g, "tokenizer.ggml.eom_token_id", -1, n);
    lm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos);
    lm_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos);
    lm_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix);
    if (t->add_bos && t->bos < 0) {
        lm_set_error("%s: tokenizer.ggml.add_bos_token is true but there is no bos_token_id",
                     lm_gguf_path(g));
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        lm_set_error("%s: tokenizer.ggml.add_eos_token is true but there is no eos_token_id",
                     lm_gguf_path(g));
        goto fail;
    }
    if (build_special(t) != 0) {
        lm_set_error("tokenizer: out of memory");
        goto fail;
    }
    build_byte_tokens(t);
    return t;
fail:
    lm_tokenizer_free(t);
    return NULL;
}

void lm_tokenizer_free(lm_tokenizer *t) {
    if (!t) return;
    lm_bpe_free(t);
    lm_strmap_free(&t->merges);
    lm_strmap_free(&t->by_text);
    free(t->special);
    free(t->eog);
    free(t->tok);
    free(t->arena);
    free(t);
}

/* ---- queries ---------------------------------------------------------- */

int32_t lm_tokenizer_n_vocab(const lm_tokenizer *t) { return t->n_vocab; }
int32_t lm_tokenizer_bos(const lm_tokenizer *t) { return t->bos; }
int32_t lm_tokenizer_eos(const lm_tokenizer *t) { return t->eos; }
int32_t lm_tokenizer_eot(const lm_tokenizer *t) { return t->eot; }
bool lm_tokenizer_add_bos(const lm_tokenizer *t) { return t->add_bos; }

bool lm_tokenizer_is_eog(const lm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

int32_t lm_tokenizer_find(const lm_tokenizer *t, const char *s) {
    return lm_strmap_get(&t->by_text, s, strlen(s));
}

/* ---- tokenize --------------------------------------------------------- */

typedef struct {
    size_t off, len;
    int32_t tok; /* -1: raw text */
} frag;

typedef struct {
    frag *v;
    size_t n, cap;
} fragvec;

static int frag_push(fragvec *f, size_t off, size_t len, int32_t tok) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return -1;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (frag){off, len, tok};
    return 0;
}

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0 || m > n) return NULL;
    const char *end = hay + n - m;
    for (const char *p = hay; p <= end; p++) {
        p = memchr(p, needle[0], (size_t)(end - p) + 1);
        if (!p) return NULL;
        if (memcmp(p, needle, m) == 0) return p;
    }
    return NULL;
}

/* Splits special tokens out of the raw fragments one token at a time,
 * longest first, as llama.cpp's tokenizer_st_partition does.  Control and
 * unknown tokens count only with parse_special; user-defined ones always. */
static int split_special(const lm_tokenizer *t, const char *text, size_t len, bool parse_special,
                         fragvec *out) {
    fragvec cur = {0}, next = {0};
    if (len && frag_push(&cur, 0, len, -1) != 0) goto oom;
    for (size_t s = 0; s < t->n_special; s++) {
        int32_t id = t->special[s];
        const lm_tok_entry *e = &t->tok[id];
        if (!parse_special && (e->attr & (LM_TOK_CONTROL | LM_TOK_UNKNOWN))) continue;
        next.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            frag f = cur.v[i];
            if (f.tok >= 0) {
                if (frag_push(&next, f.off, f.len, f.tok) != 0) goto oom;
                continue;
            }
            size_t off = f.off, end = f.off + f.len;
            const char *m;
            while ((m = find_bytes(text + off, end - off, e->text, e->len)) != NULL) {
                size_t at = (size_t)(m - text);
                if (at > off && frag_push(&next, off, at - off, -1) != 0) goto oom;
                if (frag_push(&next, at, e->len, id) != 0) goto oom;
                off = at + e->len;
            }
            if (off < end && frag_push(&next, off, end - off, -1) != 0) goto oom;
        }
        fragvec tmp = cur;
        cur = next;
        next = tmp;
    }
    free(next.v);
    *out = cur;
    return 0;
oom:
    free(cur.v);
    free(next.v);
    lm_set_error("tokenizer: out of memory");
    return -1;
}

int lm_tokenize(const lm_tokenizer *t, const char *text, size_t len, bool add_special,
                bool parse_special, int32_t **ids, size_t *n_ids) {
    fragvec frags;
    lm_idvec out = {0};
    *ids = NULL;
    *n_ids = 0;
    if (split_special(t, text, len, parse_special, &frags) != 0) return -1;

    if (add_special && t->add_bos && lm_idvec_push(&out, t->bos) != 0) goto fail;
    bool prev_special = true; /* SPM puts a space before the first run */
    for (size_t i = 0; i < frags.n; i++) {
        const frag *f = &frags.v[i];
        int rc;
        if (f->tok >= 0) {
            rc = lm_idvec_push(&out, f->tok);
            prev_special = true;
        } else if (t->kind == LM_VOCAB_SPM) {
            rc = lm_spm_tokenize(t, text + f->off, f->len, t->add_space_prefix && prev_special, &out);
            prev_special = false;
        } else {
            rc = lm_bpe_tokenize(t, text + f->off, f->len, &out);
        }
        if (rc != 0) goto fail;
    }
    if (add_special && t->add_eos && lm_idvec_push(&out, t->eos) != 0) goto fail;
    free(frags.v);
    if (!out.v && !(out.v = malloc(sizeof *out.v))) { /* callers may free() an empty result */
        lm_set_error("tokenizer: out of memory");
        return -1;
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
fail:
    free(frags.v);
    free(out.v);
    return -1;
}

/* ---- pieces ----------------------------------------------------------- */

static int copy_out(const char *s, size_t n, char *buf, size_t cap) {
    memcpy(buf, s, n < cap ? n : cap);
    return (int)n;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
}

int lm_token_to_piece(const lm_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    const lm_tok_entry *e = &t->tok[id];
    if (e->attr & (LM_TOK_CONTROL | LM_TOK_UNKNOWN)) {
        if (!render_special) return 0;
        return copy_out(e->text, e->len, buf, cap);
    }
    if (e->attr & LM_TOK_USER_DEFINED) return copy_out(e->text, e->len, buf, cap);
    if (e->attr & LM_TOK_NORMAL) {
        if (t->kind == LM_VOCAB_BPE) return (int)lm_bpe_decode(e->text, e->len, buf, cap);
        /* SPM: every "▁" (3 bytes) stands for a space */
        size_t o = 0;
        for (size_t i = 0; i < e->len;) {
            char c;
            if (i + 3 <= e->len && memcmp(e->text + i, "\xe2\x96\x81", 3) == 0) {
                c = ' ';
                i += 3;
            } else {
                c = e->text[i++];
            }
            if (o < cap) buf[o] = c;
            o++;
        }
        return (int)o;
    }
    if ((e->attr & LM_TOK_BYTE) && e->len >= 5) {
        char b = (char)(hexval(e->text[3]) << 4 | hexval(e->text[4]));
        return copy_out(&b, 1, buf, cap);
    }
    return 0; /* unused and undefined tokens print nothing */
}
