/* A request's prompt as the tokens the engine reads, for `lamina batch` and
 * `lamina serve` alike: a completion's text with BOS as `lamina run` makes
 * them, its token ids as given, or a chat's messages in the model's chat
 * template.  Checks what needs the model (ids in the vocabulary, a prompt
 * that is not empty and leaves room in a sequence's context), so that every
 * request the engine takes can run.  Once made, a prompt maker is only read:
 * the server's connection threads share one. */
#ifndef LM_REQUEST_PROMPT_H
#define LM_REQUEST_PROMPT_H

#include <stdint.h>

#include "batch_request.h"
#include "cli.h"
#include "model.h"

typedef struct {
    const lm_model *m;
    int n_ctx, n_seq;       /* a sequence's context, and how many share -c */
    int chat_format;        /* -1: chat requests cannot be served */
    char *chat_template;
    char chat_error[256];   /* why not, then */
} lm_prompt_maker;

/* Looks up the chat template (--chat-template, or the model's).  A model
 * without one only fails chat requests, each with the reason; a bad
 * --chat-template name is an error here.  0, or -1 with lm_set_error. */
int lm_prompt_maker_init(lm_prompt_maker *pm, const lm_cli *o, const lm_model *m, int n_ctx,
                         int n_seq);
void lm_prompt_maker_free(lm_prompt_maker *pm);

/* A request's max_tokens: its own, else -n (n_predict, LM_CLI_UNSET when
 * not given), else OpenAI's default for a completion (16) and the end for a
 * chat reply (-1), as `lamina chat` replies. */
int lm_request_max_tokens(const lm_batch_request *req, int n_predict);

/* The prompt's tokens (malloc'd, *n of them).  0, or -1 with lm_set_error
 * and req->bad_param. */
int lm_prompt_tokens(const lm_prompt_maker *pm, lm_batch_request *req, int32_t **ids, int *n);

#endif
