#include "openai_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "rng.h"
#include "utf8.h"

char *lm_openai_id(char *buf, size_t cap, const char *prefix)
{
    /* per thread: the server's connection threads make ids at once */
    static _Thread_local uint64_t state[4];
    static _Thread_local bool seeded;
    if (!seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        lm_rng_seed(state, ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                               ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&seeded);
        seeded = true;
    }
    const uint64_t a = lm_rng_next(state), b = lm_rng_next(state);
    snprintf(buf, cap, "%s%016llx%08llx", prefix, (unsigned long long)a,
             (unsigned long long)(b >> 32));
    return buf;
}

char *lm_utf8_repair(const char *s, size_t len, size_t *out_len)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    /* a NUL stays: JSON strings carry it as \u0000 */
    char *out = malloc(len * 3 + 1);
    if (!out) {
        lm_set_error("out of memory");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        const size_t n = lm_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n) {
            memcpy(out + o, s + i, n);
            o += n, i += n;
        } else {
            memcpy(out + o, replacement, 3);
            o += 3, i++;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

size_t lm_utf8_incomplete_tail(const char *s, size_t len)
{
    /* the last lead byte within 3 bytes of the end, if the bytes after it
     * are continuation bytes too few for the character it starts */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        const unsigned char c = (unsigned char)s[len - back];
        if ((c & 0xc0) == 0x80)
            continue;
        const size_t need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 1;
        return need > back && c < 0xf5 ? back : 0;
    }
    return 0;
}

/* The text as a JSON string of valid UTF-8; NULL with lm_set_error. */
static json_t *text_value(const char *text, size_t len)
{
    size_t fixed_len;
    char *fixed = lm_utf8_repair(text, len, &fixed_len);
    json_t *v = fixed ? json_stringn_nocheck(fixed, fixed_len) : NULL;
    free(fixed);
    if (!v)
        lm_set_error("out of memory");
    return v;
}

static json_t *usage(const lm_batch_answer *a)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", a->prompt_tokens, "completion_tokens",
                     a->completion_tokens, "total_tokens",
                     a->prompt_tokens + a->completion_tokens);
}

/* id, object, created, model and choices (one, or none) around choice. */
static json_t *envelope(const lm_batch_answer *a, const char *id, time_t created,
                        const char *object, json_t *choice)
{
    json_t *model = text_value(a->model, strlen(a->model));
    json_t *body = model && choice
        ? json_pack("{s:s, s:s, s:I, s:o, s:[o]}", "id", id, "object", object, "created",
                    (json_int_t)created, "model", model, "choices", choice)
        : NULL;
    if (!body) {
        json_decref(model);
        json_decref(choice);
        lm_set_error("out of memory");
    }
    return body;
}

json_t *lm_openai_body(const lm_batch_answer *a, const char *id, time_t created)
{
    const bool chat = a->kind == LM_BATCH_CHAT;
    json_t *text = text_value(a->text, a->text_len);
    json_t *choice = !text ? NULL
                     : chat ? json_pack("{s:i, s:{s:s, s:o}, s:s, s:n}", "index", 0, "message",
                                        "role", "assistant", "content", text, "finish_reason",
                                        a->finish_reason, "logprobs")
                            : json_pack("{s:i, s:o, s:s, s:n}", "index", 0, "text", text,
                                        "finish_reason", a->finish_reason, "logprobs");
    json_t *body = envelope(a, id, created, chat ? "chat.completion" : "text_completion",
                            choice);
    if (body && json_object_set_new(body, "usage", usage(a)) != 0) {
        json_decref(body);
        lm_set_error("out of memory");
        return NULL;
    }
    return body;
}

json_t *lm_openai_chunk(const lm_batch_answer *a, const char *id, time_t created,
                        lm_chunk_kind what, const char *text, size_t len,
                        const char *finish_reason)
{
    const bool chat = a->kind == LM_BATCH_CHAT;
    const char *object = chat ? "chat.completion.chunk" : "text_completion";
    if (what == LM_CHUNK_USAGE) {
        json_t *body = envelope(a, id, created, object, json_object());
        if (body && (json_array_clear(json_object_get(body, "choices")) != 0 ||
                     json_object_set_new(body, "usage", usage(a)) != 0)) {
            json_decref(body);
            lm_set_error("out of memory");
            return NULL;
        }
        return body;
    }
    json_t *content = what == LM_CHUNK_ROLE ? json_string("") : text_value(text, len);
    json_t *choice = NULL;
    if (!chat) {
        choice = json_pack("{s:i, s:o, s:s?, s:n}", "index", 0, "text", content,
                           "finish_reason", finish_reason, "logprobs");
    } else {
        /* the role comes first, then content; the last chunk's delta is
         * empty when it brings no text, as OpenAI's is */
        json_t *delta = json_object();
        if (delta && what == LM_CHUNK_ROLE)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (delta && content && (what == LM_CHUNK_ROLE || len > 0 || !finish_reason))
            json_object_set(delta, "content", content);
        json_decref(content);
        choice = delta ? json_pack("{s:i, s:o, s:s?, s:n}", "index", 0, "delta", delta,
                                   "finish_reason", finish_reason, "logprobs")
                       : NULL;
    }
    return envelope(a, id, created, object, choice);
}

json_t *lm_openai_error(const char *message, const char *type, const char *param,
                        const char *code)
{
    json_t *e = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", message, "type",
                          type, "param", param, "code", code);
    if (!e)
        lm_set_error("out of memory");
    return e;
}
