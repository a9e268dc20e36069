/* GPT-2 style byte-level BPE ("gpt2" vocabularies).
 *
 * A text run is first cut into words by a list of regexes chosen by
 * tokenizer.ggml.pre; each regex splits every current piece further into
 * its matches and the text between them (llama.cpp's unicode_regex_split).
 * Each word's bytes are then mapped to printable code points (the GPT-2
 * byte-to-unicode table) and merged pairwise by merge rank, lowest first. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer_internal.h"
#include "utf8.h"

#define MAX_REGEX 6

/* ---- pre-tokenizer regexes (the patterns llama.cpp uses per type) ----- */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3                                                                            \
    RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                           \
    RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"    \
                "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* std::regex has no \p{Lu}; llama.cpp spells "upper" as a letter that is
 * not [a-z] and "lower" as a letter that is not [A-Z].  Kept as is so
 * non-ASCII letters split the same way. */
#define RE_UPPER "((?=[\\p{L}])([^a-z]))"
#define RE_LOWER "((?=[\\p{L}])([^A-Z]))"
#define RE_CAMEL_WORD(contr)                                                           \
    "[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+" contr "|[^\\r\\n\\p{L}\\p{N}]?" \
    RE_UPPER "+" RE_LOWER "*" contr

/* llama.cpp turns every non-ASCII space into U+000B before running a
 * pattern that spells out non-ASCII ranges, so those ranges never match a
 * space such as U+3000 that lies inside them.  Open a class with this and
 * close it with "])" to get the same. */
#define NOT_WS "(?:(?!\\s)"

enum pre_kind {
    PRE_DEFAULT, PRE_LLAMA3, PRE_DBRX, PRE_DEEPSEEK_LLM, PRE_DEEPSEEK_CODER, PRE_DEEPSEEK3,
    PRE_FALCON, PRE_SMOLLM, PRE_GPT2, PRE_QWEN2, PRE_PORO, PRE_VIKING, PRE_TEKKEN, PRE_GPT4O,
    PRE_SEED_CODER, PRE_CHAMELEON,
};

static const char *const k_regex[][MAX_REGEX] = {
    [PRE_DEFAULT] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
    [PRE_LLAMA3] = {RE_LLAMA3},
    [PRE_DBRX] = {RE_LLAMA3},
    /* The cased-letter class below names six compatibility characters
     * (U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A) by escape: an
     * editor that normalizes to NFC would silently change them. */
    [PRE_DEEPSEEK_LLM] = {
        "[\r\n]",
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?" NOT_WS "[!-/:-~！-／：-～‘-‟　-。])+",
        "\\s+$",
        NOT_WS "[一-龥ࠀ-一가-퟿])+",
        "\\p{N}+",
    },
    [PRE_DEEPSEEK_CODER] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", NOT_WS "[一-龥ࠀ-一가-퟿])+", "\\p{N}"},
    [PRE_DEEPSEEK3] = {
        "\\p{N}{1,3}",
        "[一-龥぀-ゟ゠-ヿ]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
        "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    },
    [PRE_FALCON] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"},
    [PRE_SMOLLM] = {"\\p{N}", RE_GPT2},
    [PRE_GPT2] = {RE_GPT2},
    [PRE_QWEN2] = {RE_QWEN2},
    [PRE_PORO] = {" ?[^(\\s|.,!?…。，、।۔،)]+"},
    [PRE_VIKING] = {" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"},
    [PRE_TEKKEN] = {RE_CAMEL_WORD("") "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [PRE_GPT4O] = {RE_CAMEL_WORD(RE_CONTRACT "?") "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
                   "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [PRE_SEED_CODER] = {RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+"
                        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [PRE_CHAMELEON] = {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
                       "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2},
};

/* tokenizer.ggml.pre names, as llama.cpp maps them. */
static const struct {
    const char *name;
    enum pre_kind kind;
    bool ignore_merges, add_bos;
} k_pre[] = {
    {"default", PRE_DEFAULT, false, false},
    {"llama3", PRE_LLAMA3, true, true}, {"llama-v3", PRE_LLAMA3, true, true},
    {"llama-bpe", PRE_LLAMA3, true, true}, {"falcon3", PRE_LLAMA3, true, true},
    {"falcon-h1", PRE_LLAMA3, true, true}, {"pixtral", PRE_LLAMA3, true, true},
    {"midm-2.0", PRE_LLAMA3, true, true}, {"lfm2", PRE_LLAMA3, true, true},
    {"dbrx", PRE_DBRX, false, false}, {"smaug-bpe", PRE_DBRX, false, false},
    {"deepseek-llm", PRE_DEEPSEEK_LLM, false, false},
    {"deepseek-coder", PRE_DEEPSEEK_CODER, false, false},
    {"deepseek-v3", PRE_DEEPSEEK3, false, false}, {"hunyuan-dense", PRE_DEEPSEEK3, false, false},
    {"falcon", PRE_FALCON, false, false},
    {"smollm", PRE_SMOLLM, false, false}, {"starcoder", PRE_SMOLLM, false, false},
    {"refact", PRE_SMOLLM, false, false}, {"command-r", PRE_SMOLLM, false, false},
    {"codeshell", PRE_SMOLLM, false, false}, {"exaone", PRE_SMOLLM, false, false},
    {"minerva-7b", PRE_SMOLLM, false, false},
    {"gpt-2", PRE_GPT2, false, false}, {"gpt2", PRE_GPT2, false, false},
    {"phi-2", PRE_GPT2, false, false}, {"jina-es", PRE_GPT2, false, false},
    {"jina-de", PRE_GPT2, false, false}, {"gigachat", PRE_GPT2, false, false},
    {"jina-v2-es", PRE_GPT2, false, false}, {"jina-v2-de", PRE_GPT2, false, false},
    {"a.x-4.0", PRE_GPT2, false, false}, {"mellum", PRE_GPT2, false, false},
    {"mpt", PRE_GPT2, false, false}, {"olmo", PRE_GPT2, false, false},
    {"jais", PRE_GPT2, false, false}, {"trillion", PRE_GPT2, false, false},
    {"exaone4", PRE_GPT2, false, false}, {"granite-docling", PRE_GPT2, false, false},
    {"qwen2", PRE_QWEN2, false, false}, {"deepseek-r1-qwen", PRE_QWEN2, false, false},
    {"megrez", PRE_QWEN2, false, false}, {"stablelm2", PRE_QWEN2, false, false},
    {"hunyuan", PRE_QWEN2, false, false},
    {"poro-chat", PRE_PORO, false, false}, {"bloom", PRE_PORO, false, false},
    {"gpt3-finnish", PRE_PORO, false, false},
    {"viking", PRE_VIKING, false, false},
    {"tekken", PRE_TEKKEN, true, true},
    {"gpt-4o", PRE_GPT4O, false, false}, {"llama4", PRE_GPT4O, false, false},
    {"seed-coder", PRE_SEED_CODER, false, false},
    {"chameleon", PRE_CHAMELEON, false, true},
};

struct lm_bpe_pre {
    pcre2_code *re[MAX_REGEX];
    int n;
};

int lm_bpe_init(lm_tokenizer *t, const char *pre) {
    size_t k = 0;
    if (pre && *pre) {
        for (k = 0; k < sizeof k_pre / sizeof *k_pre; k++)
            if (strcmp(k_pre[k].name, pre) == 0) break;
        if (k == sizeof k_pre / sizeof *k_pre) {
            lm_set_error("tokenizer: unknown pre-tokenizer type (tokenizer.ggml.pre) '%s'", pre);
            return -1;
        }
    } /* absent: llama.cpp falls back to "default" */
    t->ignore_merges = k_pre[k].ignore_merges;
    if (k_pre[k].add_bos) t->add_bos = true; /* metadata may override later */

    lm_bpe_pre *p = calloc(1, sizeof *p);
    if (!p) {
        lm_set_error("tokenizer: out of memory");
        return -1;
    }
    t->pre = p;
    const char *const *rx = k_regex[k_pre[k].kind];
    /* DOLLAR_ENDONLY: "$" means the end of the piece, as in ECMAScript. */
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY;
    for (int i = 0; i < MAX_REGEX && rx[i]; i++) {
        int err;
        PCRE2_SIZE at;
        p->re[i] = pcre2_compile((PCRE2_SPTR)rx[i], PCRE2_ZERO_TERMINATED, opts, &err, &at, NULL);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            lm_set_error("tokenizer: regex %d for pre-tokenizer '%s' does not compile at %zu: %s", i,
                         k_pre[k].name, (size_t)at, (const char *)msg);
            return -1;
        }
        pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE); /* optional speed-up */
        p->n = i + 1;
    }
    return 0;
}

void lm_bpe_free(lm_tokenizer *t) {
    if (!t->pre) return;
    for (int i = 0; i < t->pre->n; i++) pcre2_code_free(t->pre->re[i]);
    free(t->pre);
    t->pre = NULL;
}

/* ---- byte <-> unicode (GPT-2 bytes_to_unicode) ------------------------ */

/* Printable bytes stand for themselves; the other 68 are moved, in order,
 * to U+0100..U+0143 so every byte has a visible, non-space character. */
static uint32_t byte_to_cp(unsigned b) {
    if (b <= 0x20) return 256 + b;
    if (b >= 0x7F && b <= 0xA0) return 256 + 33 + (b - 0x7F);
    if (b == 0xAD) return 256 + 33 + 34;
    return b;
}

static int cp_to_byte(uint32_t cp) {
    if (cp < 256) return (cp <= 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) ? -1 : (int)cp;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 33 + 34) return (int)(cp - 256 - 33 + 0x7F);
    if (cp == 256 + 33 + 34) return 0xAD;
    return -1;
}


size_t lm_bpe_decode(const char *text, size_t len, char *buf, size_t cap) {
    const unsigned char *s = (const unsigned char *)text;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = lm_utf8_decode(s + i, len - i, &cp);
        int b = n ? cp_to_byte(cp) : -1;
        if (b >= 0) {
            if (o < cap) buf[o] = (char)b;
            o++;
        } else { /* not from the byte table: pass it through unchanged */
            if (!n) n = 1;
            for (size_t j = 0; j < n; j++, o++)
                if (o < cap) buf[o] = text[i + j];
        }
        i += n;
    }
    return o;
}

/* ---- splitting -------------------------------------------------------- */

typedef struct {
    size_t off, len;
} span;

typedef struct {
    span *v;
    size_t n, cap;
} spanvec;

static int span_push(spanvec *s, size_t off, size_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (span){off, len};
    return 0;
}

/* llama.cpp's reading of UTF-8 (unicode_cpt_from_utf8): a lead byte with the
 * continuation bytes its form asks for is a code point, with no check for
 * overlong forms, surrogates or the U+10FFFF limit; 0 for one bad byte. */
static size_t utf8_decode_lenient(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : c < 0xC0 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t v = len == 1 ? c : c & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

static size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The text as llama.cpp sees it, in two forms of the same length: *bytes,
 * what byte-level BPE encodes, and *re, the same characters as valid UTF-8
 * for PCRE2.  As in llama.cpp, each bad byte becomes U+FFFD and a code point
 * is re-encoded in its shortest form (an overlong "/" is "/").  A surrogate
 * keeps its three bytes in *bytes; PCRE2 cannot take it, so *re holds U+E000
 * there, a private-use character that the pre-tokenizers' classes treat as
 * llama.cpp treats a surrogate (neither letter, number nor space).  Past
 * U+10FFFF llama.cpp aborts; here it is U+FFFD.  Valid text is used as it
 * is (*re == *bytes == text); otherwise *re is malloc'd and *bytes lies
 * inside it.  0, or -1 when out of memory. */
static int sanitize(const char *text, size_t len, char **re, char **bytes, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)text;
    uint32_t cp;
    size_t i = 0, n;
    for (; i < len; i += n)
        if (!(n = lm_utf8_decode(u + i, len - i, &cp))) break;
    *re = *bytes = (char *)text;
    *out_len = len;
    if (i == len) return 0;
    char *r = malloc(6 * len), *b = r + 3 * len; /* a byte becomes at most 3 */
    if (!r) return -1;
    size_t o = 0;
    for (i = 0; i < len; i += n ? n : 1) {
        n = utf8_decode_lenient(u + i, len - i, &cp);
        if (!n || cp > 0x10FFFF) cp = 0xFFFD;
        size_t k = utf8_encode(cp, b + o);
        if (cp >= 0xD800 && cp <= 0xDFFF) memcpy(r + o, "\xEE\x80\x80", 3);
        else memcpy(r + o, b + o, k);
        o += k;
    }
    *re = r;
    *bytes = b;
    *out_len = o;
    return 0;
}

/* One regex over every current piece: its matches and the gaps between
 * them become the new pieces (empty matches only mark a split). */
static int split_regex(const pcre2_code *re, pcre2_match_data *md, const char *s,
                       const spanvec *in, spanvec *out) {
    out->n = 0;
    for (size_t k = 0; k < in->n; k++) {
        const char *subj = s + in->v[k].off;
        size_t n = in->v[k].len, last = 0, pos = 0;
        while (pos <= n) {
            int rc = pcre2_match(re, (PCRE2_SPTR)subj, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof msg);
                lm_set_error("tokenizer: pre-tokenizer regex failed: %s", (const char *)msg);
                return -1;
            }
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (ms > last && span_push(out, in->v[k].off + last, ms - last) != 0) goto oom;
            last = ms;
            if (me > ms) {
                if (span_push(out, in->v[k].off + ms, me - ms) != 0) goto oom;
                last = pos = me;
            } else { /* empty match: step over one character */
                if (ms >= n) break;
                pos = ms + 1;
                while (pos < n && ((unsigned char)subj[pos] & 0xC0) == 0x80) pos++;
            }
        }
        if (last < n && span_push(out, in->v[k].off + last, n - last) != 0) goto oom;
    }
    return 0;
oom:
    lm_set_error("tokenizer: out of memory");
    return -1;
}

/* ---- merging ---------------------------------------------------------- */

typedef struct {
    int32_t prev, next;
    uint32_t off, n;
} sym;

/* Lowest rank first: priority -rank, exact since ranks are below 2^24. */
static int try_pair(const lm_tokenizer *t, const char *w, const sym *syms, int32_t l, int32_t r,
                    lm_mergeq *q) {
    if (l < 0 || r < 0) return 0;
    int32_t rank = lm_strmap_get3(&t->merges, w + syms[l].off, syms[l].n, ' ', w + syms[r].off, syms[r].n);
    if (rank < 0) return 0;
    return lm_mergeq_push(q, (lm_merge){-(float)rank, l, r, syms[l].n, syms[r].n});
}

typedef struct {
    char *enc; /* byte-encoded word */
    sym *syms;
    lm_mergeq q;
} scratch;

/* BPE on one byte-encoded word w (one symbol per encoded character). */
static int merge_word(const lm_tokenizer *t, const char *w, size_t wn, scratch *sc, lm_idvec *out) {
    if (t->ignore_merges) {
        int32_t id = lm_strmap_get(&t->by_text, w, wn);
        if (id >= 0) return lm_idvec_push(out, id);
    }
    sym *syms = sc->syms;
    int32_t ns = 0;
    for (size_t off = 0; off < wn; ns++) {
        size_t cl = ((unsigned char)w[off] >= 0xC0) ? 2 : 1; /* encoded chars are 1 or 2 bytes */
        syms[ns] = (sym){ns - 1, off + cl >= wn ? -1 : ns + 1, (uint32_t)off, (uint32_t)cl};
        off += cl;
    }
    sc->q.n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (try_pair(t, w, syms, i - 1, i, &sc->q) != 0) return -1;
    while (sc->q.n) {
        lm_merge p = lm_mergeq_pop(&sc->q);
        sym *l = &syms[p.left], *r = &syms[p.right];
        if (l->n != p.ln || r->n != p.rn) continue; /* one side changed since queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = p.left;
        if (try_pair(t, w, syms, l->prev, p.left, &sc->q) != 0) return -1;
        if (try_pair(t, w, syms, p.left, l->next, &sc->q) != 0) return -1;
    }
    for (int32_t i = ns ? 0 : -1; i != -1; i = syms[i].next) {
        int32_t id = lm_strmap_get(&t->by_text, w + syms[i].off, syms[i].n);
        if (id >= 0) {
            if (lm_idvec_push(out, id) != 0) return -1;
            continue;
        }
        /* No token for the symbol: llama.cpp emits the single-byte tokens
         * of its encoded bytes that exist and drops the rest. */
        for (uint32_t j = 0; j < syms[i].n; j++) {
            int32_t b = lm_strmap_get(&t->by_text, w + syms[i].off + j, 1);
            if (b >= 0 && lm_idvec_push(out, b) != 0) return -1;
        }
    }
    return 0;
}

int lm_bpe_tokenize(const lm_tokenizer *t, const char *text, size_t len, lm_idvec *out) {
    size_t n;
    char *s, *bytes;
    const int clean = sanitize(text, len, &s, &bytes, &n);
    spanvec a = {0}, b = {0};
    scratch sc = {0};
    pcre2_match_data *md = pcre2_match_data_create(16, NULL);
    int rc = -1;
    if (clean != 0) s = (char *)text; /* nothing to free */
    if (clean != 0 || !md) goto oom;

    if (n && span_push(&a, 0, n) != 0) goto oom;
    for (int i = 0; i < t->pre->n; i++) {
        if (split_regex(t->pre->re[i], md, s, &a, &b) != 0) goto done;
        spanvec tmp = a;
        a = b;
        b = tmp;
    }

    size_t maxw = 0;
    for (size_t k = 0; k < a.n; k++)
        if (a.v[k].len > maxw) maxw = a.v[k].len;
    sc.enc = malloc(2 * maxw + 1);
    sc.syms = malloc((maxw + 1) * sizeof *sc.syms);
    if (!sc.enc || !sc.syms) goto oom;
    for (size_t k = 0; k < a.n; k++) {
        const unsigned char *w = (const unsigned char *)bytes + a.v[k].off;
        size_t wn = 0;
        for (size_t j = 0; j < a.v[k].len; j++) {
            uint32_t cp = byte_to_cp(w[j]);
            if (cp < 0x80) {
                sc.enc[wn++] = (char)cp;
            } else {
                sc.enc[wn++] = (char)(0xC0 | cp >> 6);
                sc.enc[wn++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        if (merge_word(t, sc.enc, wn, &sc, out) != 0) goto oom;
    }
    rc = 0;
    goto done;
oom:
    lm_set_error("tokenizer: out of memory");
done:
    if (s != text) free(s);
    free(a.v);
    free(b.v);
    free(sc.enc);
    free(sc.syms);
    free(sc.q.v);
    pcre2_match_data_free(md);
    return rc;
}
