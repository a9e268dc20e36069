/* libFuzzer harness: the body of one request to `lamina serve`.  The first
 * byte picks the endpoint (bit 0: chat, else completion) and where the
 * streamed text is cut (the rest of the byte); the rest is the body.  It is
 * parsed (lm_batch_request_parse_body) and its prompt made into tokens with
 * SmolLM2's vocabulary and chat template (lm_prompt_tokens, a context of
 * 64 tokens so that long prompts are refused); then the answers are made
 * from it: the error object when it failed, else the whole body and the
 * stream's chunks, with the body's own bytes as the "generated text" cut
 * where a stream would cut it.  Everything must read back as JSON, and the
 * streamed pieces must join to the whole text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "batch_request.h"
#include "cli.h"
#include "error.h"
#include "model.h"
#include "openai_json.h"
#include "request_prompt.h"

#ifndef LM_TOP_SRCDIR
#define LM_TOP_SRCDIR "."
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lm_model *model;
static lm_prompt_maker prompts;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = getenv("LAMINA_FUZZ_MODEL");
    lm_cli o = {.model = path ? path : LM_TOP_SRCDIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"};
    if (!(model = lm_model_load(o.model)) || lm_prompt_maker_init(&prompts, &o, model, 64, 1)) {
        fprintf(stderr, "fuzz_server_request: %s\n", lm_last_error());
        exit(1);
    }
    return 0;
}

/* Reads back as a JSON object; frees it. */
static void check_json(json_t *v)
{
    if (!v)
        abort(); /* out of memory at these sizes: a bug */
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    json_t *back = text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL;
    if (!json_is_object(back))
        abort();
    json_decref(back);
    free(text);
}

/* Appends a chunk's text (completion: "text", chat: delta.content). */
static void append_chunk_text(json_t *chunk, bool chat, char *joined, size_t *len)
{
    json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    json_t *text = chat ? json_object_get(json_object_get(choice, "delta"), "content")
                        : json_object_get(choice, "text");
    if (text) {
        memcpy(joined + *len, json_string_value(text), json_string_length(text));
        *len += json_string_length(text);
    }
}

static void check_stream(const lm_batch_answer *a, size_t cut)
{
    const bool chat = a->kind == LM_BATCH_CHAT;
    /* a stream holds back a character not complete yet, and sends it next */
    if (cut > a->text_len)
        cut = a->text_len;
    cut -= lm_utf8_incomplete_tail(a->text, cut);
    json_t *first = lm_openai_chunk(a, "id", 0, LM_CHUNK_TEXT, a->text, cut, NULL);
    json_t *last = lm_openai_chunk(a, "id", 0, LM_CHUNK_TEXT, a->text + cut, a->text_len - cut,
                                   "stop");
    char *joined = malloc(a->text_len * 3 + 1);
    size_t joined_len = 0, len;
    char *whole = lm_utf8_repair(a->text, a->text_len, &len);
    if (!first || !last || !joined || !whole)
        abort();
    append_chunk_text(first, chat, joined, &joined_len);
    append_chunk_text(last, chat, joined, &joined_len);
    if (joined_len != len || memcmp(joined, whole, len) != 0)
        abort(); /* the pieces of a stream join to the whole text */
    free(whole);
    free(joined);
    check_json(first);
    check_json(last);
    check_json(lm_openai_chunk(a, "id", 0, LM_CHUNK_ROLE, NULL, 0, NULL));
    check_json(lm_openai_chunk(a, "id", 0, LM_CHUNK_USAGE, NULL, 0, NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const lm_batch_kind kind = data[0] & 1 ? LM_BATCH_CHAT : LM_BATCH_COMPLETION;
    const size_t cut = data[0] >> 1;
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;
    const lm_sampler_params defaults = lm_sampler_default_params();
    lm_batch_request req;
    int32_t *ids = NULL;
    int n = 0;
    if (lm_batch_request_parse_body(body, len, kind, &defaults, &req) != 0 ||
        lm_prompt_tokens(&prompts, &req, &ids, &n) != 0) {
        check_json(lm_openai_error(lm_last_error(), "invalid_request_error", req.bad_param,
                                   NULL));
    } else {
        if (n <= 0 || n >= prompts.n_ctx || req.max_tokens < -1)
            abort();
        for (int i = 0; i < n; i++)
            if ((uint32_t)ids[i] >= model->hp.n_vocab)
                abort();
        const lm_batch_answer a = {
            .kind = kind, .model = "m", .text = body, .text_len = len,
            .finish_reason = "stop", .prompt_tokens = n, .completion_tokens = 1,
        };
        check_json(lm_openai_body(&a, "id", 0));
        check_stream(&a, cut);
    }
    free(ids);
    lm_batch_request_free(&req);
    return 0;
}
