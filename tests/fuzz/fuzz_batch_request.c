/* libFuzzer harness: one line of a `lamina batch` requests file.  The input
 * is the line; it is parsed and checked (lm_batch_request_parse), and its
 * result line is made: the error answer when it failed, and when it passed
 * an answer whose "generated text" is the input's own bytes (invalid UTF-8
 * repaired).  Every result line must read back as a JSON object. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "batch_request.h"
#include "batch_result.h"
#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_result_line(char *line)
{
    if (!line)
        abort(); /* out of memory at these sizes: a bug */
    json_t *back = json_loads(line, JSON_ALLOW_NUL, NULL); /* text may hold \u0000 */
    if (!json_is_object(back))
        abort();
    json_decref(back);
    free(line);
}

static void check_request(const lm_batch_request *req)
{
    if (!req->custom_id)
        abort();
    if (req->kind == LM_BATCH_COMPLETION && !req->prompt && req->n_prompt_ids == 0)
        abort();
    if (req->kind == LM_BATCH_CHAT && req->n_messages == 0)
        abort();
    for (size_t i = 0; i < req->n_messages; i++)
        if (!req->messages[i].role || !req->messages[i].content)
            abort();
    for (size_t i = 0; i < req->n_stop; i++)
        if (!req->stop[i] || !req->stop[i][0])
            abort();
    if (req->max_tokens < -1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const lm_sampler_params defaults = lm_sampler_default_params();
    lm_batch_request req;
    const char *text = (const char *)data;
    if (lm_batch_request_parse(text, size, &defaults, &req) != 0) {
        check_result_line(req.is_json
                              ? lm_batch_result_invalid(req.custom_id, lm_last_error(),
                                                        req.bad_param)
                              : lm_batch_result_not_json(lm_last_error()));
    } else {
        check_request(&req);
        const lm_batch_answer a = {
            .custom_id = req.custom_id, .kind = req.kind, .model = text[0] ? "m" : "",
            .text = text, .text_len = size, .finish_reason = "stop",
            .prompt_tokens = 1, .completion_tokens = 2,
        };
        check_result_line(lm_batch_result_ok(&a));
    }
    lm_batch_request_free(&req);

    /* repair keeps valid UTF-8 as it is */
    size_t len;
    char *fixed = lm_utf8_repair(text, size, &len);
    if (!fixed)
        abort();
    json_t *repaired = json_stringn(fixed, len), *original = json_stringn(text, size);
    if (!repaired || (original && (len != size || memcmp(fixed, text, size) != 0)))
        abort();
    json_decref(repaired);
    json_decref(original);
    free(fixed);
    return 0;
}
