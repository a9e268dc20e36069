/* tokenizer.json + tokenizer_config.json to GGUF's tokenizer keys
 * (hf_tokenizer.h).  Follows gguf-py's SpecialVocab and the converter's
 * get_vocab_base for the cases lamina converts; TemplateProcessing post
 * processors are read only as far as "the first/last piece is a special
 * token" (add_bos/add_eos). */
#include "hf_tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* flags: tokenizer_config.json often holds model_max_length 1e30 as an
 * integer, past jansson's: JSON_DECODE_INT_AS_REAL for it, where no
 * integer is read.  Absent and not required: NULL with no error. */
static json_t *load(const char *dir, const char *name, bool required, size_t flags, char *path,
                    size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (required)
            lm_set_error("%s: cannot open it", path);
        return NULL;
    }
    fclose(f);
    json_error_t err;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES | flags, &err);
    if (!j) {
        char shown[80];
        lm_set_error("%s: not valid JSON (%s, line %d)", path,
                     lm_printable(err.text, strlen(err.text), shown, sizeof shown), err.line);
    } else if (!json_is_object(j)) {
        lm_set_error("%s: not a JSON object", path);
        json_decref(j);
        j = NULL;
    }
    return j;
}

static bool looks_special(const char *t)
{
    const size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]"))
        return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>"))
        return true;
    /* deepseek-coder's fullwidth bars: <｜ ... ｜> */
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>"))
        return true;
    return n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>';
}

/* A merge as one "a b" string; the pair form's spaces become U+0120, as
 * gguf-py encodes them. */
static char *merge_text(const char *path, json_t *m, uint64_t i)
{
    if (json_is_string(m))
        return strdup(json_string_value(m));
    const char *a = json_string_value(json_array_get(m, 0));
    const char *b = json_string_value(json_array_get(m, 1));
    if (!json_is_array(m) || json_array_size(m) != 2 || !a || !b) {
        lm_set_error("%s: merge %llu is neither \"a b\" nor [a, b]", path, (unsigned long long)i);
        return NULL;
    }
    const size_t na = strlen(a), nb = strlen(b);
    char *out = malloc(2 * (na + nb) + 2), *o = out;
    if (!out)
        return NULL;
    for (const char *parts[2] = {a, b}, **p = parts; p < parts + 2; p++) {
        for (const char *c = *p; *c; c++)
            if (*c == ' ') { /* U+0120 in UTF-8 */
                *o++ = (char)0xc4;
                *o++ = (char)0xa0;
            } else {
                *o++ = *c;
            }
        *o++ = p == parts ? ' ' : '\0';
    }
    return out;
}

static int set_token(lm_hf_tokenizer *t, const char *path, json_int_t id, const char *text,
                     int32_t type)
{
    if (id < 0 || (uint64_t)id >= t->n_vocab) {
        lm_set_error("%s: token id %lld is outside the vocabulary of %u (config.json's "
                     "vocab_size)", path, (long long)id, t->n_vocab);
        return -1;
    }
    free(t->tokens[id]);
    if (!(t->tokens[id] = strdup(text))) {
        lm_set_error("out of memory");
        return -1;
    }
    t->types[id] = type;
    return 0;
}

/* tokenizer.ggml.pre, or -1 with lm_set_error for a vocabulary this
 * writer would get wrong: a SentencePiece-style one (Llama 2, Mistral's
 * first models: Metaspace, byte fallback; llama.cpp converts those from
 * tokenizer.model), or a byte-level pre-tokenizer none of the names fits
 * (llama.cpp's converter refuses those too). */
static int detect_pre(lm_hf_tokenizer *t, const char *path, json_t *tok)
{
    static const char llama3[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static const char qwen2[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    json_t *pre = json_object_get(tok, "pre_tokenizer");
    json_t *seq = json_object_get(pre, "pretokenizers");
    const char *type = json_string_value(json_object_get(pre, "type"));
    bool digits = false, byte_level = false;
    const char *regex = NULL;
    size_t n = json_is_array(seq) ? json_array_size(seq) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_is_array(seq) ? json_array_get(seq, i) : pre;
        const char *ty = json_string_value(json_object_get(p, "type"));
        if (!ty)
            continue;
        if (!strcmp(ty, "Digits") && json_is_true(json_object_get(p, "individual_digits")))
            digits = true;
        else if (!strcmp(ty, "ByteLevel"))
            byte_level = true;
        else if (!strcmp(ty, "Split"))
            regex = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
    }
    const char *name = "";
    if (regex && !strcmp(regex, llama3))
        name = "llama-bpe";
    else if (regex && !strcmp(regex, qwen2))
        name = "qwen2";
    else if (!regex && digits && byte_level)
        name = "smollm";
    else if (!regex && byte_level && type && !strcmp(type, "ByteLevel"))
        name = "gpt-2";
    json_t *model = json_object_get(tok, "model");
    if (!byte_level || json_is_true(json_object_get(model, "byte_fallback"))) {
        lm_set_error("%s: a SentencePiece-style vocabulary (no byte-level pre-tokenizer, or byte "
                     "fallback): lamina converts byte-level BPE ones only, so far",
                     path);
        return -1;
    }
    if (!name[0]) {
        lm_set_error("%s: a byte-level pre-tokenizer lamina does not recognise (it knows "
                     "SmolLM's, Llama 3's, Qwen2's and GPT-2's)",
                     path);
        return -1;
    }
    snprintf(t->pre, sizeof t->pre, "%s", name);
    return 0;
}

static int read_vocab(lm_hf_tokenizer *t, const char *path, json_t *tok)
{
    json_t *model = json_object_get(tok, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type || strcmp(type, "BPE") != 0 || !json_is_object(json_object_get(model, "vocab"))) {
        lm_set_error("%s: model of type '%s': lamina converts byte-level BPE vocabularies", path,
                     type ? type : "?");
        return -1;
    }
    const char *text;
    json_t *id;
    json_object_foreach(json_object_get(model, "vocab"), text, id) {
        if (!json_is_integer(id) ||
            set_token(t, path, json_integer_value(id), text, LM_TOKEN_NORMAL) != 0) {
            if (!json_is_integer(id))
                lm_set_error("%s: the id of a vocabulary token is not an integer", path);
            return -1;
        }
    }
    json_t *added = json_object_get(tok, "added_tokens"), *a;
    size_t i;
    json_array_foreach(added, i, a) {
        json_t *aid = json_object_get(a, "id");
        const char *content = json_string_value(json_object_get(a, "content"));
        if (!json_is_integer(aid) || !content) {
            lm_set_error("%s: added token %zu lacks an integer id or a string content", path, i);
            return -1;
        }
        const bool control = json_is_true(json_object_get(a, "special")) || looks_special(content);
        if (set_token(t, path, json_integer_value(aid), content,
                      control ? LM_TOKEN_CONTROL : LM_TOKEN_USER_DEFINED) != 0)
            return -1;
    }
    json_t *merges = json_object_get(model, "merges"), *m;
    if (json_is_array(merges)) {
        t->n_merges = json_array_size(merges);
        if (!(t->merges = calloc(t->n_merges ? t->n_merges : 1, sizeof *t->merges))) {
            lm_set_error("out of memory");
            return -1;
        }
        json_array_foreach(merges, i, m) {
            if (!(t->merges[i] = merge_text(path, m, i)))
                return -1;
        }
    }
    return 0;
}

/* tokenizer_config.json's chat template */
static void read_config(lm_hf_tokenizer *t, json_t *tcfg)
{
    json_t *tmpl = json_object_get(tcfg, "chat_template");
    if (json_is_array(tmpl)) { /* named templates: the default one */
        size_t i;
        json_t *e;
        json_array_foreach(tmpl, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (name && !strcmp(name, "default"))
                tmpl = json_object_get(e, "template");
        }
    }
    if (json_is_string(tmpl))
        t->chat_template = strdup(json_string_value(tmpl));
}

/* transformers 5 saves the template beside tokenizer_config.json */
static int read_template_file(lm_hf_tokenizer *t, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char *text = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *grown = cap > (1u << 24) ? NULL : realloc(text, cap = cap ? 2 * cap : 8192);
            if (!grown) {
                lm_set_error("%s: too large or out of memory", path);
                rc = -1;
                break;
            }
            text = grown;
        }
        const size_t got = fread(text + n, 1, 4096, f);
        n += got;
        if (got < 4096)
            break;
    }
    if (rc == 0 && (ferror(f) || memchr(text, '\0', n))) {
        lm_set_error("%s: unreadable, or holds a NUL byte", path);
        rc = -1;
    }
    fclose(f);
    if (rc == 0) {
        text[n] = '\0';
        t->chat_template = text;
    } else {
        free(text);
    }
    return rc;
}

int lm_hf_tokenizer_read(const char *dir, uint32_t n_vocab, lm_hf_tokenizer *t)
{
    *t = (lm_hf_tokenizer){.n_vocab = n_vocab};
    char path[4096], cfg_path[4096], model_cfg_path[4096];
    json_t *tok = load(dir, "tokenizer.json", true, 0, path, sizeof path), *tcfg = NULL,
           *model_cfg = NULL;
    int rc = -1;
    if (!tok)
        return -1;
    lm_clear_error();
    if (!(tcfg = load(dir, "tokenizer_config.json", false, JSON_DECODE_INT_AS_REAL, cfg_path,
                      sizeof cfg_path)) &&
        lm_last_error()[0])
        goto done;
    if (!(model_cfg = load(dir, "config.json", false, 0, model_cfg_path, sizeof model_cfg_path)) &&
        lm_last_error()[0])
        goto done;
    t->tokens = calloc(n_vocab ? n_vocab : 1, sizeof *t->tokens);
    t->types = calloc(n_vocab ? n_vocab : 1, sizeof *t->types);
    if (!t->tokens || !t->types) {
        lm_set_error("out of memory for a vocabulary of %u", n_vocab);
        goto done;
    }
    if (read_vocab(t, path, tok) != 0)
        goto done;
    for (uint32_t i = 0; i < n_vocab; i++)
        if (!t->tokens[i]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%u]", i);
            if (set_token(t, path, i, pad, LM_TOKEN_UNUSED) != 0)
                goto done;
        }
    if (detect_pre(t, path, tok) != 0)
        goto done;
    if (lm_hf_special_read(tok, tcfg, model_cfg, n_vocab, cfg_path, &t->special) != 0)
        goto done;
    read_config(t, tcfg);
    if (!t->chat_template && read_template_file(t, dir) != 0)
        goto done;
    rc = 0;
done:
    json_decref(tok);
    json_decref(tcfg);
    json_decref(model_cfg);
    if (rc != 0)
        lm_hf_tokenizer_free(t);
    return rc;
}

void lm_hf_tokenizer_free(lm_hf_tokenizer *t)
{
    if (t->tokens)
        for (uint32_t i = 0; i < t->n_vocab; i++)
            free(t->tokens[i]);
    if (t->merges)
        for (uint64_t i = 0; i < t->n_merges; i++)
            free(t->merges[i]);
    free(t->tokens);
    free(t->types);
    free(t->merges);
    free(t->chat_template);
    *t = (lm_hf_tokenizer){0};
}
