/* Chat templates: ChatML (SmolLM2, Qwen2), Llama 2, Llama 3 and Mistral,
 * recognised from the Jinja text in tokenizer.chat_template by the markers it
 * contains (as llama.cpp's llama_chat_apply_template does), rendered in C. */
#ifndef LM_CHAT_H
#define LM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    LM_CHAT_UNKNOWN = 0,
    LM_CHAT_CHATML,
    LM_CHAT_LLAMA2,
    LM_CHAT_LLAMA3,
    LM_CHAT_MISTRAL,
} lm_chat_format;

typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} lm_chat_message;

/* From the template text (NULL: unknown). */
lm_chat_format lm_chat_detect(const char *template_text);
lm_chat_format lm_chat_format_from_name(const char *name); /* "chatml", ... */
const char *lm_chat_format_name(lm_chat_format f);

/* The prompt text for the conversation; with add_assistant, ends with the
 * opening of the assistant's turn.  template_text is used for details some
 * formats take from it (ChatML's default system prompt, as SmolLM2's
 * template inserts one when the first message is not a system message).
 * malloc'd, or NULL with lm_set_error. */
char *lm_chat_render(lm_chat_format f, const char *template_text,
                     const lm_chat_message *msgs, size_t n, bool add_assistant);

#endif
