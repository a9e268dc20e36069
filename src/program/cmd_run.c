/* lamina run: a prompt in, generated text out on stdout, statistics on
 * stderr (and in --stats-json). */
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

/* The prompt text: -p or -f, wrapped in the chat template with --chat. */
static char *prompt_text(const lm_cli *o, const lm_model *m)
{
    char *text;
    if (o->prompt && o->file) {
        lm_set_error("give the prompt with -p or with -f, not both");
        return NULL;
    }
    if (o->file)
        text = lm_read_file(o->file, NULL);
    else if (o->prompt)
        text = strdup(o->prompt);
    else {
        lm_set_error("no prompt given (use -p TEXT or -f FILE)");
        return NULL;
    }
    if (!text || !o->chat)
        return text;
    int format;
    char *tmpl;
    if (lm_cli_chat_format(o, m, &format, &tmpl) != 0) {
        free(text);
        return NULL;
    }
    lm_chat_message msg = {"user", text};
    char *chat = lm_chat_render(format, tmpl, &msg, 1, true);
    free(tmpl);
    free(text);
    return chat;
}

static uint64_t clock_seed(void)
{
    return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
}

int lm_cmd_run(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "run", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (o.n_positional > 0) {
        fprintf(stderr, "lamina run: unexpected argument '%s'\n", o.positional[0]);
        return 1;
    }
    if (!o.seed_given)
        o.sampling.seed = clock_seed();
    if (o.n_predict == LM_CLI_UNSET)
        o.n_predict = 128;
    if (!o.prompt && !o.file) {
        fprintf(stderr, "lamina run: no prompt given (use -p TEXT or -f FILE)\n");
        return 1;
    }

    lm_model *m = lm_cli_load_model(&o);
    lm_session *s = NULL;
    lm_sampler *sampler = NULL;
    lm_cli_draft draft = {0};
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rc = 1;
    if (!m || !(text = prompt_text(&o, m)))
        goto done;
    if (lm_tokenize(m->tokenizer, text, strlen(text), true, true, &ids, &n_ids) != 0)
        goto done;
    const int n_ctx = lm_cli_context(&o, m);
    if (n_ids == 0) {
        lm_set_error("the prompt is empty");
        goto done;
    }
    if (n_ids >= (size_t)n_ctx) {
        lm_set_error("the prompt is %zu tokens, longer than the context (%d); use -c", n_ids,
                     n_ctx);
        goto done;
    }
    lm_cli target_opts;
    if (lm_cli_draft_load(&o, m, n_ctx, &target_opts, &draft) != 0 ||
        !(s = lm_cli_session(&target_opts, m, n_ctx, o.n_batch)) ||
        lm_cli_draft_start(&o, s, &draft) != 0 ||
        !(sampler = lm_sampler_new(&o.sampling, (int32_t)m->hp.n_vocab)))
        goto done;
    lm_gen_stats st;
    lm_generate_print_ids(o.print_ids);
    if (draft.spec ? lm_generate_spec(draft.spec, m, ids, (int)n_ids, o.n_predict, stdout, &st)
                   : lm_generate(s, sampler, ids, (int)n_ids, o.n_predict, stdout, &st))
        goto done;
    fputc('\n', stdout);
    fflush(stdout);
    if (!o.quiet)
        lm_gen_stats_print(&st, stderr);
    lm_cli_print_profile(&o, s, stderr);
    if (o.stats_json && lm_gen_stats_write_json(&st, o.stats_json) != 0)
        goto done;
    rc = 0;
done:
    if (rc)
        lm_cli_fail();
    free(ids);
    free(text);
    lm_sampler_free(sampler);
    lm_cli_draft_free(&draft);
    lm_session_free(s);
    lm_model_free(m);
    return rc;
}
