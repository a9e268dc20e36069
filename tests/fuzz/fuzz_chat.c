/* libFuzzer harness: chat templates.  The input is NUL-separated fields:
 * the first is a template text (as tokenizer.chat_template would hold), each
 * further one a message whose first byte picks its role and whose rest is
 * its content.  The template's format is detected, and the conversation is
 * rendered in every format, with and without the assistant's opening. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGES 64

static const char *const roles[] = {"system", "user", "assistant", "tool"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* NUL-terminated: every field a C string */
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    const char *tmpl = text;
    lm_chat_message msgs[MAX_MESSAGES];
    size_t n = 0;
    for (char *p = text + strlen(text); p < text + size && n < MAX_MESSAGES;
         p += strlen(p)) {
        p++; /* past the NUL that ended the field before */
        unsigned char role = (unsigned char)*p;
        if (role)
            p++;
        msgs[n].role = roles[role % (sizeof roles / sizeof *roles)];
        msgs[n].content = p;
        n++;
    }

    lm_chat_format detected = lm_chat_detect(tmpl);
    (void)lm_chat_format_from_name(lm_chat_format_name(detected));
    (void)lm_chat_format_from_name(tmpl);
    for (int f = LM_CHAT_UNKNOWN; f <= LM_CHAT_MISTRAL; f++)
        for (int add_assistant = 0; add_assistant < 2; add_assistant++)
            free(lm_chat_render((lm_chat_format)f, tmpl, msgs, n, add_assistant));
    free(text);
    return 0;
}
