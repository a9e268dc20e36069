/* Special tokens as gguf-py's SpecialVocab finds them (hf_special.h). */
#include "hf_special.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

static const char *const type_names[LM_HF_N_SPECIAL] = {"bos", "eos", "unk", "sep", "pad",
                                                        "cls", "mask", "eot", "eom"};
static const char *const id_keys[LM_HF_N_SPECIAL] = {
    "tokenizer.ggml.bos_token_id",       "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",   "tokenizer.ggml.seperator_token_id", /* sic */
    "tokenizer.ggml.padding_token_id",   "tokenizer.ggml.cls_token_id",
    "tokenizer.ggml.mask_token_id",      "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id"};
static const char *const add_keys[LM_HF_N_SPECIAL] = {
    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_unk_token", "tokenizer.ggml.add_sep_token",
    "tokenizer.ggml.add_pad_token", "tokenizer.ggml.add_cls_token",
    "tokenizer.ggml.add_mask_token", "tokenizer.ggml.add_eot_token",
    "tokenizer.ggml.add_eom_token"};

const char *lm_hf_special_id_key(int type) { return id_keys[type]; }
const char *lm_hf_special_add_key(int type) { return add_keys[type]; }

static int find_add(const lm_hf_special *s, int type)
{
    for (int i = 0; i < s->n_adds; i++)
        if (s->adds[i].type == type)
            return i;
    return -1;
}

void lm_hf_special_set_add(lm_hf_special *s, int type, bool value)
{
    int i = find_add(s, type);
    if (i < 0)
        i = s->n_adds++;
    s->adds[i].type = type;
    s->adds[i].value = value;
}

static void set_add_default(lm_hf_special *s, int type, bool value)
{
    if (find_add(s, type) < 0)
        lm_hf_special_set_add(s, type, value);
}

/* _set_special_token: the first id found for a type stays */
static int set_id(lm_hf_special *s, int type, json_t *v, uint32_t n_vocab, const char *path)
{
    if (!json_is_integer(v))
        return 0;
    if (json_integer_value(v) < 0) {
        lm_set_error("%s: a negative id for the %s token", path, type_names[type]);
        return -1;
    }
    if (json_integer_value(v) >= (json_int_t)n_vocab)
        return 0;
    for (int i = 0; i < s->n_ids; i++)
        if (s->ids[i].type == type)
            return 0;
    s->ids[s->n_ids].type = type;
    s->ids[s->n_ids++].id = (uint32_t)json_integer_value(v);
    return 0;
}

/* The SpecialToken id of a template piece, or NULL */
static const char *piece_special(json_t *piece)
{
    const char *id = json_string_value(json_object_get(json_object_get(piece, "SpecialToken"), "id"));
    return id && id[0] ? id : NULL;
}

static bool same(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

int lm_hf_special_read(json_t *tok, json_t *tcfg, json_t *config, uint32_t n_vocab,
                       const char *path, lm_hf_special *s)
{
    memset(s, 0, sizeof *s);
    bool active[LM_HF_N_SPECIAL] = {true, true, true, true, true, true, true, false, false};
    /* each type's token: the value compared (a string; gguf-py compares the
     * raw value, which a {"content": ...} object never equals) and the
     * content looked up */
    const char *raw[LM_HF_N_SPECIAL] = {0}, *content[LM_HF_N_SPECIAL] = {0};
    bool given[LM_HF_N_SPECIAL] = {0}; /* Python's truth of the value */
    for (int t = 0; t < LM_HF_N_SPECIAL; t++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token", type_names[t]);
        json_t *v = json_object_get(tcfg, key);
        raw[t] = json_string_value(v);
        content[t] = json_is_object(v) ? json_string_value(json_object_get(v, "content")) : raw[t];
        given[t] = (raw[t] && raw[t][0]) || json_object_size(v) > 0 || json_is_true(v) ||
                   (json_is_number(v) && json_number_value(v) != 0) || json_array_size(v) > 0;
    }
#define NAME(t, v) (raw[t] = content[t] = (v), given[t] = (v) && (v)[0])
    if (tcfg && !given[LM_HF_BOS] && given[LM_HF_CLS]) {
        raw[LM_HF_BOS] = raw[LM_HF_CLS], content[LM_HF_BOS] = content[LM_HF_CLS];
        given[LM_HF_BOS] = true;
    }
    if (tcfg && !given[LM_HF_EOS] && given[LM_HF_SEP]) {
        raw[LM_HF_EOS] = raw[LM_HF_SEP], content[LM_HF_EOS] = content[LM_HF_SEP];
        given[LM_HF_EOS] = true;
    }

    json_t *post = json_object_get(tok, "post_processor");
    json_t *procs = json_object_get(post, "processors");
    const size_t n_procs = json_is_array(procs) ? json_array_size(procs) : (post ? 1 : 0);
    for (size_t i = 0; i < n_procs; i++) {
        json_t *p = json_is_array(procs) ? json_array_get(procs, i) : post;
        const char *ty = json_string_value(json_object_get(p, "type"));
        if (same(ty, "ByteLevel")) {
            set_add_default(s, LM_HF_BOS, false);
            set_add_default(s, LM_HF_EOS, false);
        } else if (same(ty, "RobertaProcessing")) {
            lm_hf_special_set_add(s, LM_HF_BOS, true);
            lm_hf_special_set_add(s, LM_HF_EOS, true);
            lm_hf_special_set_add(s, LM_HF_SEP, true);
            if (!given[LM_HF_CLS] && tcfg) {
                const char *c = json_string_value(json_array_get(json_object_get(p, "cls"), 0));
                NAME(LM_HF_CLS, c ? c : raw[LM_HF_BOS]);
            }
            if (!given[LM_HF_SEP] && tcfg) {
                const char *c = json_string_value(json_array_get(json_object_get(p, "sep"), 0));
                NAME(LM_HF_SEP, c ? c : raw[LM_HF_EOS]);
            }
        } else if (same(ty, "TemplateProcessing")) {
            json_t *single = json_object_get(p, "single");
            if (json_array_size(single) <= 1)
                continue;
            const char *first = piece_special(json_array_get(single, 0));
            if (first) {
                if (!tcfg)
                    raw[LM_HF_BOS] = first;
                else if (!same(first, raw[LM_HF_BOS]) && !same(first, raw[LM_HF_CLS])) {
                    if (!given[LM_HF_BOS])
                        NAME(LM_HF_BOS, first);
                    if (!given[LM_HF_CLS])
                        NAME(LM_HF_CLS, first);
                }
                lm_hf_special_set_add(s, LM_HF_BOS,
                                      same(first, raw[LM_HF_BOS]) || same(first, raw[LM_HF_CLS]));
            }
            const char *last = piece_special(json_array_get(single, json_array_size(single) - 1));
            if (last) {
                if (!tcfg)
                    raw[LM_HF_EOS] = last;
                else if (!same(last, raw[LM_HF_EOS])) {
                    /* the named eos becomes the end of turn (or message) */
                    const int moved = !active[LM_HF_EOT] ? LM_HF_EOT
                                      : !active[LM_HF_EOM] ? LM_HF_EOM
                                                           : -1;
                    if (moved >= 0) {
                        active[moved] = true;
                        raw[moved] = raw[LM_HF_EOS], content[moved] = content[LM_HF_EOS];
                        given[moved] = given[LM_HF_EOS];
                    }
                    NAME(LM_HF_EOS, last);
                }
                lm_hf_special_set_add(s, LM_HF_EOS, same(last, raw[LM_HF_EOS]));
            }
        }
    }
#undef NAME
    json_t *added = json_object_get(tok, "added_tokens");
    if (tcfg)
        for (int t = 0; t < LM_HF_N_SPECIAL; t++) {
            if (!active[t])
                continue;
            char key[32];
            snprintf(key, sizeof key, "add_%s_token", type_names[t]);
            json_t *flag = json_object_get(tcfg, key);
            if (json_is_boolean(flag))
                set_add_default(s, t, json_is_true(flag));
            if (!content[t])
                continue;
            size_t i;
            json_t *a;
            json_array_foreach(added, i, a) {
                if (same(json_string_value(json_object_get(a, "content")), content[t])) {
                    if (set_id(s, t, json_object_get(a, "id"), n_vocab, path) != 0)
                        return -1;
                    break;
                }
            }
        }
    if (config)
        for (int t = 0; t < LM_HF_N_SPECIAL; t++) {
            if (!active[t])
                continue;
            char key[32];
            snprintf(key, sizeof key, "%s_token_id", type_names[t]);
            json_t *v = json_object_get(config, key);
            if (!v || json_is_null(v))
                v = json_object_get(json_object_get(config, "text_config"), key);
            if (set_id(s, t, v, n_vocab, path) != 0)
                return -1;
        }
    return 0;
}
