/* lamina chat: an interactive conversation.  Each turn re-renders the whole
 * conversation with the chat template, keeps the part of the KV cache that
 * still matches, and evaluates only the new tokens. */
#define _POSIX_C_SOURCE 200809L /* getline, open_memstream, strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "cli.h"
#include "error.h"
#include "generate.h"
#include "session.h"

typedef struct {
    lm_chat_message *msgs;
    size_t n, cap;
} conversation;

static int add_message(conversation *c, const char *role, char *content)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        lm_chat_message *grown = realloc(c->msgs, cap * sizeof *grown);
        if (!grown) {
            lm_set_error("out of memory");
            return -1;
        }
        c->msgs = grown;
        c->cap = cap;
    }
    c->msgs[c->n++] = (lm_chat_message){role, content};
    return 0;
}

/* Generated text is caught here as well as shown, to become the assistant's
 * message in the conversation. */
static char *capture_reply(lm_session *s, lm_sampler *sampler, struct lm_spec *spec,
                           const lm_model *m, const int32_t *ids, int n, const lm_cli *o,
                           lm_gen_stats *st)
{
    char *reply = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&reply, &len);
    if (!mem) {
        lm_set_error("out of memory");
        return NULL;
    }
    int rc = spec ? lm_generate_spec(spec, m, ids, n, o->n_predict, mem, st)
                  : lm_generate(s, sampler, ids, n, o->n_predict, mem, st);
    fclose(mem);
    if (rc != 0) {
        free(reply);
        return NULL;
    }
    fwrite(reply, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    return reply;
}

/* Rewinds the cache to the longest prefix the new prompt shares with what
 * it holds, and returns how many tokens of ids are already there. */
static int reuse_prefix(lm_session *s, int32_t *history, int n_history, const int32_t *ids,
                        int n)
{
    int same = 0;
    while (same < n_history && same < n - 1 && history[same] == ids[same])
        same++;
    lm_session_rewind(s, same);
    return same;
}

static int chat_loop(const lm_cli *o, lm_model *m, lm_session *s, lm_sampler *sampler,
                     struct lm_spec *spec, int format, const char *tmpl)
{
    conversation conv = {0};
    int32_t *history = NULL;
    int n_history = 0, rc = 0;
    char *line = NULL;
    size_t cap = 0;
    if (o->prompt)
        rc = add_message(&conv, "system", strdup(o->prompt));
    while (rc == 0) {
        if (isatty(STDIN_FILENO))
            fputs("> ", stderr);
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0)
            break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0)
            break;
        if (got == 0)
            continue;
        if (memchr(line, '\0', (size_t)got)) { /* it would cut the message short */
            fprintf(stderr, "lamina: that line holds a NUL byte; lamina reads text (line skipped)\n");
            continue;
        }
        if ((rc = add_message(&conv, "user", strdup(line))) != 0)
            break;
        char *text = lm_chat_render(format, tmpl, conv.msgs, conv.n, true);
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (!text || lm_tokenize(m->tokenizer, text, strlen(text), true, true, &ids, &n_ids)) {
            free(text);
            rc = -1;
            break;
        }
        free(text);
        if (n_ids + 1 >= (size_t)s->n_ctx) {
            lm_set_error("the conversation (%zu tokens) no longer fits the context (%d)", n_ids,
                         s->n_ctx);
            free(ids);
            rc = -1;
            break;
        }
        int same = reuse_prefix(s, history, n_history, ids, (int)n_ids);
        lm_gen_stats st;
        /* speculation is given the whole prompt: it keeps what the target's
         * cache holds of it (the same prefix, just rewound to) */
        const int from = spec ? 0 : same;
        char *reply = capture_reply(s, sampler, spec, m, ids + from, (int)n_ids - from, o, &st);
        /* the cache now starts with this prompt; the reply follows it, but is
         * compared afresh next turn since its re-tokenized text may differ */
        free(history);
        history = ids;
        n_history = (int)n_ids;
        if (!reply || add_message(&conv, "assistant", reply) != 0) {
            rc = -1;
            break;
        }
        if (!o->quiet)
            lm_gen_stats_print(&st, stderr);
    }
    for (size_t i = 0; i < conv.n; i++)
        free((char *)conv.msgs[i].content);
    free(conv.msgs);
    free(history);
    free(line);
    return rc;
}

int lm_cmd_chat(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "chat", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (!o.seed_given)
        o.sampling.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (o.n_predict == LM_CLI_UNSET)
        o.n_predict = -1; /* a reply ends at end of generation */
    lm_model *m = lm_cli_load_model(&o);
    lm_session *s = NULL;
    lm_sampler *sampler = NULL;
    lm_cli_draft draft = {0};
    lm_cli target_opts;
    char *tmpl = NULL;
    int format;
    rc = 1;
    if (!m || lm_cli_chat_format(&o, m, &format, &tmpl) != 0 ||
        lm_cli_draft_load(&o, m, lm_cli_context(&o, m), &target_opts, &draft) != 0 ||
        !(s = lm_cli_session(&target_opts, m, lm_cli_context(&o, m), o.n_batch)) ||
        lm_cli_draft_start(&o, s, &draft) != 0 ||
        !(sampler = lm_sampler_new(&o.sampling, (int32_t)m->hp.n_vocab)))
        goto done;
    rc = chat_loop(&o, m, s, sampler, draft.spec, format, tmpl) ? 1 : 0;
done:
    if (rc)
        lm_cli_fail();
    free(tmpl);
    lm_sampler_free(sampler);
    lm_cli_draft_free(&draft);
    lm_session_free(s);
    lm_model_free(m);
    return rc;
}
