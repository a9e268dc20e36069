/* Chat templates rendered in C, after llama.cpp's llama_chat_apply_template:
 * the Jinja text in the model is only searched for markers that tell the
 * format (and a few details of it), never executed. */
#include "chat.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---- a growing string */

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} buf;

static void put_n(buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->oom = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void put(buf *b, const char *s)
{
    put_n(b, s, strlen(s));
}

/* Like llama.cpp's trim(): isspace at both ends. */
static void put_trimmed(buf *b, const char *s)
{
    size_t start = 0, end = strlen(s);
    while (start < end && isspace((unsigned char)s[start]))
        start++;
    while (end > start && isspace((unsigned char)s[end - 1]))
        end--;
    put_n(b, s + start, end - start);
}

static char *finish(buf *b)
{
    if (!b->oom && !b->s)
        put(b, ""); /* an empty conversation still renders to "" */
    if (b->oom) {
        free(b->s);
        lm_set_error("out of memory");
        return NULL;
    }
    return b->s;
}

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static bool is_role(const lm_chat_message *m, const char *role)
{
    return strcmp(m->role, role) == 0;
}

/* ---- detection and names */

static const char *const names[] = {
    [LM_CHAT_UNKNOWN] = "unknown",
    [LM_CHAT_CHATML] = "chatml",
    [LM_CHAT_LLAMA2] = "llama2",
    [LM_CHAT_LLAMA3] = "llama3",
    [LM_CHAT_MISTRAL] = "mistral",
};

/* The order of the checks is llama.cpp's, which matters for templates that
 * carry more than one marker. */
lm_chat_format lm_chat_detect(const char *t)
{
    if (!t)
        return LM_CHAT_UNKNOWN;
    if (contains(t, "<|im_start|>")) {
        /* Phi-4 and SmolVLM use <|im_start|> but are not ChatML; rendering
         * them as ChatML would be wrong, so they stay unknown. */
        if (contains(t, "<|im_sep|>") || contains(t, "<end_of_utterance>"))
            return LM_CHAT_UNKNOWN;
        return LM_CHAT_CHATML;
    }
    if (contains(t, "[INST]"))
        return contains(t, "<<SYS>>") ? LM_CHAT_LLAMA2 : LM_CHAT_MISTRAL;
    if (contains(t, "<|start_header_id|>"))
        return LM_CHAT_LLAMA3;
    return LM_CHAT_UNKNOWN;
}

lm_chat_format lm_chat_format_from_name(const char *name)
{
    if (!name)
        return LM_CHAT_UNKNOWN;
    for (size_t i = 1; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return (lm_chat_format)i;
    return LM_CHAT_UNKNOWN;
}

const char *lm_chat_format_name(lm_chat_format f)
{
    if ((size_t)f >= sizeof names / sizeof names[0])
        return names[LM_CHAT_UNKNOWN];
    return names[f];
}

/* ---- ChatML's default system prompt
 *
 * SmolLM2 and Qwen2 templates write a fixed system turn when the first
 * message is not a system one, as one Jinja string literal:
 *   '<|im_start|>system\nYou are ...<|im_end|>\n'
 * The one we want is the occurrence whose text up to <|im_end|> stays inside
 * that literal: no quote and no Jinja tag in between.  The occurrence that
 * renders a real system message ('<|im_start|>system\n' + messages[0]...)
 * has a quote right after the newline and is skipped. */

static const char im_system[] = "<|im_start|>system";
static const char im_end[] = "<|im_end|>";

/* The template text after "system" starts with a newline, either a real one
 * or the escape \n inside a string literal (as GGUF files store it). */
static const char *skip_newline(const char *p)
{
    if (*p == '\n')
        return p + 1;
    if (p[0] == '\\' && p[1] == 'n')
        return p + 2;
    return NULL;
}

/* Length of the literal text from p to <|im_end|>, or 0 when it leaves the
 * string literal (a quote, a Jinja tag) before getting there. */
static size_t literal_len(const char *p)
{
    const char *end = strstr(p, im_end);
    if (!end)
        return 0;
    for (const char *q = p; q < end; q++) {
        if (*q == '\\' && q + 1 < end) {
            q++; /* an escaped quote belongs to the text */
            continue;
        }
        if (*q == '\'' || *q == '"' || (q[0] == '{' && (q[1] == '{' || q[1] == '%')))
            return 0;
    }
    return (size_t)(end - p);
}

/* Undoes the Jinja string escapes that occur in prompt text. */
static void put_unescaped(buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[++i];
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        }
        put_n(b, &c, 1);
    }
}

/* Appends the default system turn the template would insert, if it has one.
 * The template must also test the first role against 'system': that is what
 * makes the literal a default rather than unconditional text. */
static void put_default_system(buf *b, const char *t)
{
    if (!t || !(contains(t, "'system'") || contains(t, "\"system\"")))
        return;
    for (const char *p = strstr(t, im_system); p; p = strstr(p + 1, im_system)) {
        const char *text = skip_newline(p + strlen(im_system));
        size_t n = text ? literal_len(text) : 0;
        if (n == 0)
            continue;
        put(b, "<|im_start|>system\n");
        put_unescaped(b, text, n);
        put(b, "<|im_end|>\n");
        return;
    }
}

/* ---- renderers */

static void render_chatml(buf *b, const char *tmpl, const lm_chat_message *m, size_t n,
                          bool add_assistant)
{
    /* The templates test messages[0] inside the message loop ("loop.first"),
     * so an empty conversation gets no default turn. */
    if (n > 0 && !is_role(&m[0], "system"))
        put_default_system(b, tmpl);
    for (size_t i = 0; i < n; i++) {
        put(b, "<|im_start|>");
        put(b, m[i].role);
        put(b, "\n");
        put(b, m[i].content);
        put(b, "<|im_end|>\n");
    }
    if (add_assistant)
        put(b, "<|im_start|>assistant\n");
}

/* Llama 3 trims every message, as both its template and llama.cpp do. */
static void render_llama3(buf *b, const lm_chat_message *m, size_t n, bool add_assistant)
{
    for (size_t i = 0; i < n; i++) {
        put(b, "<|start_header_id|>");
        put(b, m[i].role);
        put(b, "<|end_header_id|>\n\n");
        put_trimmed(b, m[i].content);
        put(b, "<|eot_id|>");
    }
    if (add_assistant)
        put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* The [INST] family, as llama.cpp's LLAMA_2 renderer and its variants. */
typedef struct {
    bool sys_tags;   /* system in <<SYS>> tags, else "content\n" in the turn */
    bool bos_inside; /* <s> before every [INST] but the first */
    bool strip;      /* trim every message */
} inst_style;

/* llama.cpp picks the variant from the template text, the strip check first:
 * Meta's own Llama 2 template has both content.strip() and
 * bos_token + '[INST]', and is rendered as the strip variant. */
static inst_style llama2_style(const char *tmpl)
{
    inst_style st = {.sys_tags = true};
    if (contains(tmpl, "content.strip()"))
        st.strip = true;
    else if (contains(tmpl, "bos_token + '[INST]"))
        st.bos_inside = true;
    return st;
}

/* The BOS at the very start is the tokenizer's, so the first [INST] has none.
 * A turn ends with the assistant's </s>; after a user message the text ends
 * in [/INST], which already opens the assistant's turn, so add_assistant has
 * nothing to add. */
static void render_inst(buf *b, inst_style st, const lm_chat_message *m, size_t n)
{
    bool in_turn = true;
    put(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!in_turn) {
            put(b, st.bos_inside ? "<s>[INST] " : "[INST] ");
            in_turn = true;
        }
        if (is_role(&m[i], "system"))
            put(b, st.sys_tags ? "<<SYS>>\n" : "");
        if (st.strip)
            put_trimmed(b, m[i].content);
        else
            put(b, m[i].content);
        if (is_role(&m[i], "system")) {
            put(b, st.sys_tags ? "\n<</SYS>>\n\n" : "\n");
        } else if (is_role(&m[i], "user")) {
            put(b, " [/INST]");
        } else {
            put(b, "</s>");
            in_turn = false;
        }
    }
}

static bool valid(const lm_chat_message *msgs, size_t n)
{
    if (n > 0 && !msgs)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return false;
    return true;
}

char *lm_chat_render(lm_chat_format f, const char *template_text,
                     const lm_chat_message *msgs, size_t n, bool add_assistant)
{
    if (!valid(msgs, n)) {
        lm_set_error("chat: message without role or content");
        return NULL;
    }
    buf b = {0};
    switch (f) {
    case LM_CHAT_CHATML:
        render_chatml(&b, template_text, msgs, n, add_assistant);
        break;
    case LM_CHAT_LLAMA3:
        render_llama3(&b, msgs, n, add_assistant);
        break;
    case LM_CHAT_LLAMA2:
        render_inst(&b, llama2_style(template_text), msgs, n);
        break;
    case LM_CHAT_MISTRAL:
        /* The classic Mistral 7B Instruct template (v0.1/v0.2) has [INST] but
         * no <<SYS>>; llama.cpp renders it as plain LLAMA_2: system text
         * joined to the first user message, no <s> inside. */
        render_inst(&b, (inst_style){0}, msgs, n);
        break;
    default:
        lm_set_error("chat: unsupported chat template format");
        return NULL;
    }
    return finish(&b);
}
