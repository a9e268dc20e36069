/* Tests for the Hugging Face side of lamina convert (src/convert/hf_*.c):
 * tensor names as convert_hf_to_gguf.py writes them, llama's rotary row
 * permutation against its numpy formula worked by hand, and config.json
 * read with its defaults and refused when a field is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "hf_config.h"
#include "hf_names.h"
#include "hf_special.h"

static void name_is(const char *hf, bool llama, const char *want, lm_hf_rows want_rows)
{
    char out[128];
    lm_hf_rows rows;
    if (lm_hf_tensor_name(hf, llama, 32, out, sizeof out, &rows) != LM_HF_NAME_OK)
        fail_msg("%s: not mapped", hf);
    if (strcmp(out, want) != 0 || rows != want_rows)
        fail_msg("%s: got %s (rows %d), want %s (rows %d)", hf, out, rows, want, want_rows);
}

static void test_tensor_names(void **state)
{
    (void)state;
    name_is("model.embed_tokens.weight", true, "token_embd.weight", LM_HF_KEEP_ROWS);
    name_is("model.norm.weight", true, "output_norm.weight", LM_HF_KEEP_ROWS);
    name_is("lm_head.weight", true, "output.weight", LM_HF_KEEP_ROWS);
    name_is("model.layers.0.input_layernorm.weight", true, "blk.0.attn_norm.weight",
            LM_HF_KEEP_ROWS);
    name_is("model.layers.7.self_attn.q_proj.weight", true, "blk.7.attn_q.weight",
            LM_HF_PERMUTE_Q);
    name_is("model.layers.7.self_attn.k_proj.weight", true, "blk.7.attn_k.weight",
            LM_HF_PERMUTE_K);
    name_is("model.layers.7.self_attn.k_proj.weight", false, "blk.7.attn_k.weight",
            LM_HF_KEEP_ROWS);
    name_is("model.layers.31.self_attn.q_proj.bias", false, "blk.31.attn_q.bias", LM_HF_KEEP_ROWS);
    name_is("model.layers.1.self_attn.v_proj.weight", true, "blk.1.attn_v.weight",
            LM_HF_KEEP_ROWS);
    name_is("model.layers.1.self_attn.o_proj.weight", true, "blk.1.attn_output.weight",
            LM_HF_KEEP_ROWS);
    name_is("model.layers.2.post_attention_layernorm.weight", true, "blk.2.ffn_norm.weight",
            LM_HF_KEEP_ROWS);
    name_is("model.layers.2.mlp.gate_proj.weight", true, "blk.2.ffn_gate.weight",
            LM_HF_KEEP_ROWS);
    name_is("model.layers.2.mlp.up_proj.weight", true, "blk.2.ffn_up.weight", LM_HF_KEEP_ROWS);
    name_is("model.layers.2.mlp.down_proj.weight", true, "blk.2.ffn_down.weight",
            LM_HF_KEEP_ROWS);

    char out[128];
    lm_hf_rows rows;
    assert_int_equal(lm_hf_tensor_name("model.layers.3.self_attn.rotary_emb.inv_freq", true, 32,
                                       out, sizeof out, &rows),
                     LM_HF_NAME_SKIP);
    static const char *const unknown[] = {
        "model.layers.32.mlp.up_proj.weight", /* past n_layer */
        "model.layers.03.mlp.up_proj.weight", /* a leading zero */
        "model.layers.-1.mlp.up_proj.weight", "model.layers..mlp.up_proj.weight",
        "model.layers.3.mlp.up_proj.scale", "model.layers.3.mlp.up_proj", "model.layers.3",
        "model.layers.99999999999999999999.mlp.up_proj.weight", "model.embed_tokens",
        "transformer.h.0.attn.weight", "",
    };
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        if (lm_hf_tensor_name(unknown[i], true, 32, out, sizeof out, &rows) != LM_HF_NAME_UNKNOWN)
            fail_msg("'%s' mapped to %s", unknown[i], out);
    /* a buffer too small is not an overflow */
    char tiny[8];
    assert_int_equal(lm_hf_tensor_name("model.layers.2.mlp.up_proj.weight", true, 32, tiny,
                                       sizeof tiny, &rows),
                     LM_HF_NAME_UNKNOWN);
}

static void test_permute_rows(void **state)
{
    (void)state;
    /* 2 heads of 4 rows, one byte per row: numpy's
     * w.reshape(2, 2, 2).swapaxes(1, 2).reshape(8) of 0..7 is
     * 0 2 1 3 4 6 5 7 */
    const unsigned char src[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    unsigned char dst[8];
    assert_int_equal(lm_hf_permute_rows(src, dst, 8, 1, 2), 0);
    const unsigned char want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    assert_memory_equal(dst, want, 8);
    /* 1 head of 6 rows of 2 bytes: rows 0 3 1 4 2 5 */
    const uint16_t s6[6] = {10, 11, 12, 13, 14, 15};
    uint16_t d6[6];
    assert_int_equal(lm_hf_permute_rows(s6, d6, 6, sizeof *s6, 1), 0);
    const uint16_t w6[6] = {10, 13, 11, 14, 12, 15};
    assert_memory_equal(d6, w6, sizeof w6);
    /* rows that do not split into heads of an even size */
    assert_int_equal(lm_hf_permute_rows(src, dst, 6, 1, 2), -1);
    assert_int_equal(lm_hf_permute_rows(src, dst, 8, 1, 0), -1);
}

static const char smollm2_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2,"
    " \"hidden_size\": 576, \"intermediate_size\": 1536, \"max_position_embeddings\": 8192,"
    " \"num_attention_heads\": 9, \"num_hidden_layers\": 30, \"num_key_value_heads\": 3,"
    " \"rms_norm_eps\": 1e-05, \"rope_scaling\": null, \"rope_theta\": 100000,"
    " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"vocab_size\": 49152}";

static void test_config(void **state)
{
    (void)state;
    lm_hf_config c;
    assert_int_equal(lm_hf_config_parse("config.json", smollm2_config, sizeof smollm2_config - 1,
                                        &c), 0);
    assert_string_equal(c.arch, "llama");
    assert_int_equal(c.n_embd, 576);
    assert_int_equal(c.n_ff, 1536);
    assert_int_equal(c.n_layer, 30);
    assert_int_equal(c.n_head, 9);
    assert_int_equal(c.n_head_kv, 3);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.n_vocab, 49152);
    assert_int_equal(c.n_ctx_train, 8192);
    assert_true(c.tied);
    assert_true(c.rope_base == 100000.0f);
    assert_true(c.norm_eps == 1e-5f);
    assert_string_equal(c.rope_scaling, "");
    assert_int_equal(c.head_dim_given, strstr(smollm2_config, "\"head_dim\"") != NULL);

    /* defaults: KV heads = heads, rope_theta 10000, untied */
    static const char minimal[] =
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 64,"
        " \"intermediate_size\": 128, \"max_position_embeddings\": 256,"
        " \"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"rms_norm_eps\": 1e-6,"
        " \"vocab_size\": 100, \"eos_token_id\": [7, 8],"
        " \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0,"
        " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
        " \"original_max_position_embeddings\": 8192}}";
    assert_int_equal(lm_hf_config_parse("config.json", minimal, sizeof minimal - 1, &c), 0);
    assert_string_equal(c.arch, "qwen2");
    assert_int_equal(c.n_head_kv, 4);
    assert_int_equal(c.head_dim, 16);
    assert_false(c.head_dim_given);
    assert_false(c.tied);
    assert_true(c.rope_base == 10000.0f);
    assert_string_equal(c.rope_scaling, "llama3");
    assert_int_equal(c.rope_orig_ctx, 8192);
}

/* special tokens from JSON texts (tokenizer.json's added tokens and post
 * processor, tokenizer_config.json, config.json; NULL: the file is absent) */
static int special(const char *tok, const char *tcfg, const char *cfg, lm_hf_special *s)
{
    json_t *t = json_loads(tok, 0, NULL), *tc = tcfg ? json_loads(tcfg, 0, NULL) : NULL,
           *c = cfg ? json_loads(cfg, 0, NULL) : NULL;
    assert_non_null(t);
    assert_true(!tcfg || tc);
    assert_true(!cfg || c);
    int rc = lm_hf_special_read(t, tc, c, 100, "tokenizer_config.json", s);
    json_decref(t);
    json_decref(tc);
    json_decref(c);
    return rc;
}

#define ADDED "\"added_tokens\": [{\"id\": 0, \"content\": \"<|endoftext|>\"}," \
              " {\"id\": 1, \"content\": \"<|im_start|>\"}, {\"id\": 2, \"content\": \"<|im_end|>\"}," \
              " {\"id\": 3, \"content\": \"<s>\"}, {\"id\": 4, \"content\": \"</s>\"}]"

static void ids_are(const lm_hf_special *s, int n, const int *types, const uint32_t *ids)
{
    assert_int_equal(s->n_ids, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(s->ids[i].type, types[i]);
        assert_int_equal(s->ids[i].id, ids[i]);
    }
}

static void test_special_tokens(void **state)
{
    (void)state;
    lm_hf_special s;
    /* SmolLM2's: names looked up among the added tokens, in gguf-py's type
     * order; a one-piece template says nothing about bos/eos */
    assert_int_equal(special("{" ADDED ", \"post_processor\": {\"type\": \"TemplateProcessing\","
                             " \"single\": [{\"Sequence\": {\"id\": \"A\"}}]}}",
                             "{\"bos_token\": \"<|im_start|>\", \"eos_token\": \"<|im_end|>\","
                             " \"pad_token\": \"<|im_end|>\", \"unk_token\": \"<|endoftext|>\","
                             " \"model_max_length\": 1e30}",
                             "{\"bos_token_id\": 1, \"eos_token_id\": 2}", &s), 0);
    ids_are(&s, 4, (int[]){LM_HF_BOS, LM_HF_EOS, LM_HF_UNK, LM_HF_PAD}, (uint32_t[]){1, 2, 0, 2});
    assert_int_equal(s.n_adds, 0);

    /* llama 3's: ByteLevel then a template starting with the bos; an
     * object-valued name; config.json fills the types still missing */
    assert_int_equal(special("{" ADDED ", \"post_processor\": {\"type\": \"Sequence\", \"processors\":"
                             " [{\"type\": \"ByteLevel\"}, {\"type\": \"TemplateProcessing\","
                             " \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}},"
                             " {\"Sequence\": {\"id\": \"A\"}}]}]}}",
                             "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\"}",
                             "{\"pad_token_id\": 0, \"unk_token_id\": [1], \"mask_token_id\": 500}",
                             &s), 0);
    /* gguf-py compares the object-valued bos itself with "<s>": not equal,
     * so the template's first token also becomes the cls, and then counts
     * as added */
    ids_are(&s, 4, (int[]){LM_HF_BOS, LM_HF_EOS, LM_HF_CLS, LM_HF_PAD}, (uint32_t[]){3, 4, 3, 0});
    assert_int_equal(s.n_adds, 2);
    assert_int_equal(s.adds[0].type, LM_HF_BOS);
    assert_true(s.adds[0].value);
    assert_int_equal(s.adds[1].type, LM_HF_EOS);
    assert_false(s.adds[1].value);

    /* a template ending with another token: it becomes the eos, the named
     * eos the eot; add_bos from tokenizer_config.json */
    assert_int_equal(special("{" ADDED ", \"post_processor\": {\"type\": \"TemplateProcessing\","
                             " \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}},"
                             " {\"Sequence\": {\"id\": \"A\"}}, {\"SpecialToken\": {\"id\": \"</s>\"}}]}}",
                             "{\"bos_token\": \"<s>\", \"eos_token\": \"<|im_end|>\","
                             " \"add_bos_token\": false, \"add_unk_token\": true}",
                             NULL, &s), 0);
    ids_are(&s, 3, (int[]){LM_HF_BOS, LM_HF_EOS, LM_HF_EOT}, (uint32_t[]){3, 4, 2});
    assert_int_equal(s.n_adds, 3);
    assert_true(s.adds[0].type == LM_HF_BOS && s.adds[0].value);
    assert_true(s.adds[1].type == LM_HF_EOS && s.adds[1].value);
    assert_true(s.adds[2].type == LM_HF_UNK && s.adds[2].value);
    assert_string_equal(lm_hf_special_id_key(LM_HF_EOT), "tokenizer.ggml.eot_token_id");
    assert_string_equal(lm_hf_special_add_key(LM_HF_BOS), "tokenizer.ggml.add_bos_token");

    /* without tokenizer_config.json only config.json's ids; past the
     * vocabulary skipped; negative refused */
    assert_int_equal(special("{" ADDED "}", NULL, "{\"bos_token_id\": 99, \"eos_token_id\": 100}",
                             &s), 0);
    ids_are(&s, 1, (int[]){LM_HF_BOS}, (uint32_t[]){99});
    assert_int_equal(special("{" ADDED "}", NULL, "{\"eos_token_id\": -1}", &s), -1);
    assert_non_null(strstr(lm_last_error(), "negative"));
}

/* smollm2_config with `from` replaced by `to` is refused with `want`. */
static void config_refused(const char *from, const char *to, const char *want)
{
    char text[1024];
    const char *at = strstr(smollm2_config, from);
    assert_non_null(at);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - smollm2_config), smollm2_config, to,
             at + strlen(from));
    lm_hf_config c;
    if (lm_hf_config_parse("config.json", text, strlen(text), &c) == 0)
        fail_msg("accepted: %s", text);
    if (!strstr(lm_last_error(), want) || !strstr(lm_last_error(), "config.json"))
        fail_msg("error '%s', want '%s'", lm_last_error(), want);
}

static void test_config_refused(void **state)
{
    (void)state;
    config_refused("\"LlamaForCausalLM\"", "\"GPT2LMHeadModel\"", "architecture 'GPT2LMHeadModel'");
    config_refused("[\"LlamaForCausalLM\"]", "[]", "no \"architectures\"");
    config_refused("\"hidden_size\": 576", "\"hidden_size\": -576", "\"hidden_size\" is not");
    config_refused("\"hidden_size\": 576", "\"hidden_size\": 5.5", "\"hidden_size\" is not");
    config_refused("\"hidden_size\": 576", "\"hidden_size\": \"576\"", "\"hidden_size\" is not");
    config_refused("\"hidden_size\": 576,", "", "no \"hidden_size\"");
    config_refused("\"num_hidden_layers\": 30", "\"num_hidden_layers\": 1000000",
                   "\"num_hidden_layers\" is not");
    config_refused("\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4", "KV heads");
    config_refused("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", "\"rms_norm_eps\"");
    config_refused("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\"}",
                   "rope_scaling of type 'yarn'");
    config_refused("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\"}",
                   "no \"factor\"");
    config_refused("\"vocab_size\": 49152}", "\"vocab_size\": 49152", "not valid JSON");
    config_refused("\"bos_token_id\": 1,", "\"bos_token_id\": 1, \"bos_token_id\": 1,",
                   "not valid JSON");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_names),
        cmocka_unit_test(test_permute_rows),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_config_refused),
        cmocka_unit_test(test_special_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
