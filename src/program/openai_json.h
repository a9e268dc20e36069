/* The OpenAI objects lamina writes, shared by `lamina batch` (in its result
 * lines) and `lamina serve` (as HTTP bodies and Server-Sent Events): a
 * text_completion or chat.completion body, the chunks of a streamed one,
 * the error object, and the ids they carry.  Built with jansson; text from
 * the model may be any bytes, and goes out as valid UTF-8 (an invalid byte
 * becomes U+FFFD). */
#ifndef LM_OPENAI_JSON_H
#define LM_OPENAI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include "batch_request.h"

typedef struct {
    const char *custom_id;     /* batch only */
    lm_batch_kind kind;
    const char *model;         /* the "model" the body names */
    const char *text;          /* the generated text */
    size_t text_len;
    const char *finish_reason; /* "stop" or "length" */
    int prompt_tokens, completion_tokens;
} lm_batch_answer;

/* A fresh id such as OpenAI's: prefix and 24 hex digits, in buf.  Safe
 * from any thread. */
char *lm_openai_id(char *buf, size_t cap, const char *prefix);

/* The response body of a finished request, with this id and created time;
 * NULL with lm_set_error. */
json_t *lm_openai_body(const lm_batch_answer *a, const char *id, time_t created);

/* One chunk of a streamed response: text (may be empty) and, in the last,
 * finish_reason.  A chat's first chunk (role) carries the assistant role
 * and no text.  usage: the closing chunk of stream_options.include_usage,
 * with empty choices and the counts from a.  NULL with lm_set_error. */
typedef enum { LM_CHUNK_ROLE, LM_CHUNK_TEXT, LM_CHUNK_USAGE } lm_chunk_kind;
json_t *lm_openai_chunk(const lm_batch_answer *a, const char *id, time_t created,
                        lm_chunk_kind what, const char *text, size_t len,
                        const char *finish_reason);

/* {"error": {"message", "type", "param", "code"}}; param and code may be
 * NULL (JSON null). */
json_t *lm_openai_error(const char *message, const char *type, const char *param,
                        const char *code);

/* The bytes made valid UTF-8: each invalid byte becomes U+FFFD, as a
 * decoder "with replacement" does.  malloc'd (*out_len set), or NULL. */
char *lm_utf8_repair(const char *s, size_t len, size_t *out_len);

/* How many bytes at the end of s[0, len) begin a UTF-8 character that is
 * not complete yet (0 to 3): a stream holds them back for the next piece. */
size_t lm_utf8_incomplete_tail(const char *s, size_t len);

#endif
