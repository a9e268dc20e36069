#include "request_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "error.h"
#include "tokenizer.h"

int lm_prompt_maker_init(lm_prompt_maker *pm, const lm_cli *o, const lm_model *m, int n_ctx,
                         int n_seq)
{
    *pm = (lm_prompt_maker){.m = m, .n_ctx = n_ctx, .n_seq = n_seq};
    if (lm_cli_chat_format(o, m, &pm->chat_format, &pm->chat_template) != 0) {
        if (o->chat_template) /* a bad name given on the command line */
            return -1;
        snprintf(pm->chat_error, sizeof pm->chat_error, "%s", lm_last_error());
        pm->chat_format = -1;
    }
    return 0;
}

int lm_request_max_tokens(const lm_batch_request *req, int n_predict)
{
    if (req->max_tokens >= 0)
        return req->max_tokens;
    if (n_predict != LM_CLI_UNSET)
        return n_predict;
    return req->kind == LM_BATCH_COMPLETION ? 16 : -1;
}

void lm_prompt_maker_free(lm_prompt_maker *pm)
{
    free(pm->chat_template);
    pm->chat_template = NULL;
}

static int tokenize_text(const lm_prompt_maker *pm, const char *text, int32_t **ids, size_t *n)
{
    if (!*text) { /* BOS alone would be a prompt of one token, and no text */
        lm_set_error("the prompt is empty");
        return -1;
    }
    return lm_tokenize(pm->m->tokenizer, text, strlen(text), true, true, ids, n);
}

static int copy_ids(const lm_prompt_maker *pm, const lm_batch_request *req, int32_t **ids,
                    size_t *count)
{
    const uint32_t n_vocab = pm->m->hp.n_vocab;
    if (!(*ids = malloc((req->n_prompt_ids ? req->n_prompt_ids : 1) * sizeof **ids))) {
        lm_set_error("out of memory");
        return -1;
    }
    *count = req->n_prompt_ids;
    memcpy(*ids, req->prompt_ids, *count * sizeof **ids);
    for (size_t i = 0; i < *count; i++)
        if ((uint32_t)(*ids)[i] >= n_vocab) {
            lm_set_error("token id %d is outside the vocabulary (0..%u)", (*ids)[i], n_vocab - 1);
            return -1;
        }
    return 0;
}

int lm_prompt_tokens(const lm_prompt_maker *pm, lm_batch_request *req, int32_t **ids, int *n)
{
    size_t count = 0;
    int rc;
    *ids = NULL;
    req->bad_param = req->kind == LM_BATCH_CHAT ? "messages" : "prompt";
    if (req->kind == LM_BATCH_CHAT) {
        char *text = NULL;
        if (pm->chat_format < 0)
            lm_set_error("%s", pm->chat_error);
        else
            text = lm_chat_render(pm->chat_format, pm->chat_template, req->messages,
                                  req->n_messages, true);
        rc = text ? tokenize_text(pm, text, ids, &count) : -1;
        free(text);
    } else if (req->prompt) {
        rc = tokenize_text(pm, req->prompt, ids, &count);
    } else {
        rc = copy_ids(pm, req, ids, &count);
    }
    if (rc == 0 && count == 0) {
        lm_set_error("the prompt is empty");
        rc = -1;
    } else if (rc == 0 && count >= (size_t)pm->n_ctx) {
        lm_set_error("the prompt is %zu tokens, and a sequence's context holds %d (-c %d shared "
                     "by --parallel %d)", count, pm->n_ctx, pm->n_ctx * pm->n_seq, pm->n_seq);
        rc = -1;
    }
    if (rc != 0) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    *n = (int)count;
    return 0;
}
