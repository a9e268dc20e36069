/* libFuzzer harness: a Hugging Face folder's JSON as lamina convert reads
 * it.  The input is split at its first two NUL bytes into config.json,
 * tokenizer.json and tokenizer_config.json (a missing part: that file is
 * absent).  config.json goes through lm_hf_config_parse, whose accepted
 * values must keep the promises convert relies on; all three through the
 * special-token reader, whose ids must be inside the vocabulary. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_config.h"
#include "hf_special.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_hf_config: %s\n", what);
        abort();
    }
}

static json_t *part(const uint8_t *p, size_t n, size_t flags)
{
    return json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES | flags, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *cut[2] = {NULL, NULL};
    const uint8_t *end = data + size, *at = data;
    for (int i = 0; i < 2 && at < end; i++)
        if ((cut[i] = memchr(at, 0, (size_t)(end - at))))
            at = cut[i] + 1;
    const size_t cfg_len = cut[0] ? (size_t)(cut[0] - data) : size;

    lm_hf_config c;
    if (lm_hf_config_parse("config.json", (const char *)data, cfg_len, &c) == 0) {
        check(c.n_head > 0 && c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0, "heads");
        check(c.head_dim > 0 && c.head_dim % 2 == 0, "head size");
        check(c.n_layer > 0 && c.n_vocab > 0 && c.n_embd > 0 && c.n_ff > 0, "sizes");
        check(c.arch[0] != '\0', "architecture");
    }
    if (!cut[0])
        return 0;
    json_t *cfg = part(data, cfg_len, 0);
    const uint8_t *tok_start = cut[0] + 1;
    const size_t tok_len = (size_t)((cut[1] ? cut[1] : end) - tok_start);
    json_t *tok = part(tok_start, tok_len, 0);
    json_t *tcfg = cut[1] ? part(cut[1] + 1, (size_t)(end - cut[1] - 1), JSON_DECODE_INT_AS_REAL)
                          : NULL;
    if (tok) {
        lm_hf_special s;
        if (lm_hf_special_read(tok, tcfg, cfg, 64, "tokenizer_config.json", &s) == 0) {
            check(s.n_ids <= LM_HF_N_SPECIAL && s.n_adds <= LM_HF_N_SPECIAL, "counts");
            for (int i = 0; i < s.n_ids; i++) {
                check(s.ids[i].id < 64, "an id past the vocabulary");
                check(s.ids[i].type >= 0 && s.ids[i].type < LM_HF_N_SPECIAL, "a type");
                for (int j = 0; j < i; j++)
                    check(s.ids[j].type != s.ids[i].type, "a type twice");
                check(lm_hf_special_id_key(s.ids[i].type) != NULL, "a key");
            }
            for (int i = 0; i < s.n_adds; i++)
                for (int j = 0; j < i; j++)
                    check(s.adds[j].type != s.adds[i].type, "an add flag twice");
        }
    }
    json_decref(cfg);
    json_decref(tok);
    json_decref(tcfg);
    return 0;
}
