/* One line of a batch input file, in the OpenAI Batch format that vLLM's
 * run-batch also reads:
 *
 *   {"custom_id": "a1", "method": "POST", "url": "/v1/completions",
 *    "body": {"prompt": "...", "max_tokens": 16, "temperature": 0, ...}}
 *
 * parsed and checked here, apart from everything that needs the model (the
 * prompt's length in tokens, token ids against the vocabulary, the chat
 * template), so that a fuzzer can reach all of it with a line of bytes. */
#ifndef LM_BATCH_REQUEST_H
#define LM_BATCH_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "sampler.h"

typedef enum {
    LM_BATCH_COMPLETION, /* POST /v1/completions: a prompt */
    LM_BATCH_CHAT,       /* POST /v1/chat/completions: messages */
} lm_batch_kind;

typedef struct {
    bool is_json;          /* false: the line is not JSON at all */
    char *custom_id;       /* NULL when the line has no usable custom_id */
    const char *bad_param; /* after a failure: the field at fault, or NULL */

    lm_batch_kind kind;
    char *prompt;              /* completion: the text, or NULL when given as ids */
    int32_t *prompt_ids;       /* completion: a prompt of token ids (no BOS added) */
    size_t n_prompt_ids;
    lm_chat_message *messages; /* chat: role and content each malloc'd */
    size_t n_messages;
    bool echo;                 /* completion: the text starts with the prompt */

    int max_tokens;            /* -1: not given (the command's default applies) */
    char **stop;               /* strings that end generation, none empty */
    size_t n_stop;

    lm_sampler_params sampling; /* the defaults, with the request's fields over them */
    bool seed_given;
    float frequency_penalty;    /* OpenAI's: subtracted per earlier occurrence */
    float presence_penalty;     /* OpenAI's: subtracted once if it occurred */
    bool stream;                /* the server's Server-Sent Events (a batch refuses it) */
    bool include_usage;         /* stream_options.include_usage */
} lm_batch_request;

/* Parses len bytes of one line (no newline) into req, starting from the
 * sampling defaults.  0, or -1 with lm_set_error: then req->is_json says
 * whether the line was JSON, and custom_id and bad_param are set when known.
 * Either way req owns memory until lm_batch_request_free. */
int lm_batch_request_parse(const char *line, size_t len, const lm_sampler_params *defaults,
                           lm_batch_request *req);

/* The body of one HTTP request to the endpoint kind (`lamina serve`):
 * the same fields as a batch line's "body", and "stream".  Returns as
 * lm_batch_request_parse does. */
int lm_batch_request_parse_body(const char *body, size_t len, lm_batch_kind kind,
                                const lm_sampler_params *defaults, lm_batch_request *req);

void lm_batch_request_free(lm_batch_request *req);

#endif
