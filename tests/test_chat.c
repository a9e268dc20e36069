/* Chat template tests: exact rendered strings per format (the expected
 * outputs follow llama.cpp's llama_chat_apply_template), detection from real
 * template texts, and ChatML's default system prompt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chat.h"

/* Templates as tokenizer.chat_template stores them: the \n inside Jinja
 * string literals is a backslash and an n, hence "\\n" here. */
static const char smollm2_tmpl[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* The same with real newlines, as the brief spells it. */
static const char smollm2_tmpl_nl[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

/* Qwen2.5's shape: the real system message and the default in two branches. */
static const char qwen25_tmpl[] =
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
    "helpful assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/* teknium/OpenHermes-2.5-Mistral-7B: plain ChatML, no default. */
static const char chatml_tmpl[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* meta-llama/Meta-Llama-3-8B-Instruct */
static const char llama3_tmpl[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] "
    "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/* meta-llama/Llama-2-7b-chat-hf */
static const char llama2_tmpl[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = "
    "messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception("
    "'Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
    "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + "
    "'[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/* A Llama 2 variant with <s> inside the history (TheBloke/FusionNet_34Bx2_MoE). */
static const char llama2_bos_tmpl[] =
    "{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' -%}\n"
    "{%- if idx > 1 -%}\n{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}\n"
    "{%- else -%}\n{{- messages[idx]['content'] + ' [/INST]' -}}\n{%- endif -%}\n"
    "{% elif messages[idx]['role'] == 'system' %}\n{{- '[INST] <<SYS>>\\n' + "
    "messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}\n{%- elif messages[idx]['role'] == "
    "'assistant' -%}\n{{- ' '  + messages[idx]['content'] + ' ' + eos_token -}}\n{% endif %}\n"
    "{% endfor %}";

/* mistralai/Mistral-7B-Instruct-v0.2 */
static const char mistral_tmpl[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}";

/* google/gemma-7b-it: none of ours. */
static const char gemma_tmpl[] =
    "{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\\n' + "
    "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt "
    "%}{{'<start_of_turn>model\\n'}}{% endif %}";

static const lm_chat_message conv[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
};
enum { N_CONV = sizeof conv / sizeof conv[0] };

static void check_render(lm_chat_format f, const char *tmpl, const lm_chat_message *m, size_t n,
                         bool add_assistant, const char *want)
{
    char *got = lm_chat_render(f, tmpl, m, n, add_assistant);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_render_chatml(void **state)
{
    (void)state;
    const char *want = "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
                       "<|im_start|>user\nHello<|im_end|>\n"
                       "<|im_start|>assistant\nHi there<|im_end|>\n"
                       "<|im_start|>user\nWho are you<|im_end|>\n"
                       "<|im_start|>assistant\n";
    check_render(LM_CHAT_CHATML, NULL, conv, N_CONV, true, want);
    /* The conversation has a system message: SmolLM2's default stays out. */
    check_render(LM_CHAT_CHATML, smollm2_tmpl, conv, N_CONV, true, want);
    /* Without add_assistant the text ends after the last turn. */
    check_render(LM_CHAT_CHATML, NULL, conv + 1, 1, false,
                 "<|im_start|>user\nHello<|im_end|>\n");
}

static void test_render_llama2(void **state)
{
    (void)state;
    check_render(LM_CHAT_LLAMA2, NULL, conv, N_CONV, true,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n"
                 "Hello [/INST]Hi there</s>[INST] Who are you [/INST]");
    check_render(LM_CHAT_LLAMA2, llama2_bos_tmpl, conv, N_CONV, true,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n"
                 "Hello [/INST]Hi there</s><s>[INST] Who are you [/INST]");
}

/* Meta's template strips messages (content.strip()); llama.cpp then renders
 * without <s> inside even though the template has bos_token + '[INST]'. */
static void test_render_llama2_strip(void **state)
{
    (void)state;
    const lm_chat_message m[] = {
        {"system", " You are a helpful assistant\n"},
        {"user", "Hello "},
        {"assistant", "   Hi there   "},
        {"user", "\tWho are you"},
    };
    check_render(LM_CHAT_LLAMA2, llama2_tmpl, m, 4, true,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n"
                 "Hello [/INST]Hi there</s>[INST] Who are you [/INST]");
}

static void test_render_llama3(void **state)
{
    (void)state;
    check_render(LM_CHAT_LLAMA3, llama3_tmpl, conv, N_CONV, true,
                 "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant"
                 "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* Messages are trimmed. */
    const lm_chat_message m[] = {{"user", "  Hi\n"}};
    check_render(LM_CHAT_LLAMA3, NULL, m, 1, false,
                 "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

static void test_render_mistral(void **state)
{
    (void)state;
    check_render(LM_CHAT_MISTRAL, mistral_tmpl, conv, N_CONV, true,
                 "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>"
                 "[INST] Who are you [/INST]");
    /* Content is kept as is, spaces included. */
    const lm_chat_message m[] = {{"user", "Hi"}, {"assistant", "  ok  "}, {"user", "more"}};
    check_render(LM_CHAT_MISTRAL, NULL, m, 3, true,
                 "[INST] Hi [/INST]  ok  </s>[INST] more [/INST]");
}

static void test_detect(void **state)
{
    (void)state;
    assert_int_equal(lm_chat_detect(smollm2_tmpl), LM_CHAT_CHATML);
    assert_int_equal(lm_chat_detect(smollm2_tmpl_nl), LM_CHAT_CHATML);
    assert_int_equal(lm_chat_detect(qwen25_tmpl), LM_CHAT_CHATML);
    assert_int_equal(lm_chat_detect(chatml_tmpl), LM_CHAT_CHATML);
    assert_int_equal(lm_chat_detect(llama3_tmpl), LM_CHAT_LLAMA3);
    assert_int_equal(lm_chat_detect(llama2_tmpl), LM_CHAT_LLAMA2);
    assert_int_equal(lm_chat_detect(llama2_bos_tmpl), LM_CHAT_LLAMA2);
    assert_int_equal(lm_chat_detect(mistral_tmpl), LM_CHAT_MISTRAL);
    assert_int_equal(lm_chat_detect(gemma_tmpl), LM_CHAT_UNKNOWN);
    assert_int_equal(lm_chat_detect(""), LM_CHAT_UNKNOWN);
    assert_int_equal(lm_chat_detect(NULL), LM_CHAT_UNKNOWN);
}

static void test_names(void **state)
{
    (void)state;
    const lm_chat_format all[] = {LM_CHAT_CHATML, LM_CHAT_LLAMA2, LM_CHAT_LLAMA3,
                                  LM_CHAT_MISTRAL};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(lm_chat_format_from_name(lm_chat_format_name(all[i])), all[i]);
    assert_string_equal(lm_chat_format_name(LM_CHAT_CHATML), "chatml");
    assert_string_equal(lm_chat_format_name(LM_CHAT_UNKNOWN), "unknown");
    assert_string_equal(lm_chat_format_name((lm_chat_format)99), "unknown");
    assert_int_equal(lm_chat_format_from_name("gemma"), LM_CHAT_UNKNOWN);
    assert_int_equal(lm_chat_format_from_name("unknown"), LM_CHAT_UNKNOWN);
    assert_int_equal(lm_chat_format_from_name(NULL), LM_CHAT_UNKNOWN);
}

static void test_default_system_smollm2(void **state)
{
    (void)state;
    const char *want =
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n";
    check_render(LM_CHAT_CHATML, smollm2_tmpl, conv + 1, 1, true, want);
    check_render(LM_CHAT_CHATML, smollm2_tmpl_nl, conv + 1, 1, true, want);
    /* The loop.first test sits in the message loop: no messages, no default. */
    check_render(LM_CHAT_CHATML, smollm2_tmpl, NULL, 0, true, "<|im_start|>assistant\n");
}

static void test_default_system_other_templates(void **state)
{
    (void)state;
    /* Qwen2.5: the first occurrence renders the real system message and must
     * be passed over for the literal default. */
    check_render(LM_CHAT_CHATML, qwen25_tmpl, conv + 1, 1, true,
                 "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                 "assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                 "<|im_start|>assistant\n");
    /* Plain ChatML has no default. */
    check_render(LM_CHAT_CHATML, chatml_tmpl, conv + 1, 1, true,
                 "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    /* Escapes inside the literal are undone. */
    const char tmpl[] = "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
                        "Say \\'hi\\'.\\nBe brief.<|im_end|>\\n' }}{% endif %}";
    check_render(LM_CHAT_CHATML, tmpl, conv + 1, 1, false,
                 "<|im_start|>system\nSay 'hi'.\nBe brief.<|im_end|>\n"
                 "<|im_start|>user\nHello<|im_end|>\n");
}

static void test_render_errors(void **state)
{
    (void)state;
    assert_null(lm_chat_render(LM_CHAT_UNKNOWN, NULL, conv, N_CONV, true));
    const lm_chat_message bad[] = {{"user", NULL}};
    assert_null(lm_chat_render(LM_CHAT_CHATML, NULL, bad, 1, true));
    assert_null(lm_chat_render(LM_CHAT_CHATML, NULL, NULL, 2, true));
    char *empty = lm_chat_render(LM_CHAT_LLAMA3, NULL, NULL, 0, false);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_chatml),
        cmocka_unit_test(test_render_llama2),
        cmocka_unit_test(test_render_llama2_strip),
        cmocka_unit_test(test_render_llama3),
        cmocka_unit_test(test_render_mistral),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_default_system_smollm2),
        cmocka_unit_test(test_default_system_other_templates),
        cmocka_unit_test(test_render_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
