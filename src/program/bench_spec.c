/* lamina bench --draft / --lookup: greedy decoding of a real text prompt
 * (-f FILE, or a built-in one: speculation needs text, not bench's token
 * ids), plain and speculative in the same run on the same engine, best of
 * -r each: tokens/s of both, the speed-up, the acceptance, tokens per target
 * pass, and whether the tokens are the same (they must be). */
#define _POSIX_C_SOURCE 200809L /* open_memstream, strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "generate.h"
#include "json_out.h"
#include "sampler.h"
#include "session.h"
#include "speculative.h"

static const char default_text[] =
    "Here is a Python function and the same function with comments added.\n\n"
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
    "With comments:\n\ndef fib(n):\n";

/* One greedy generation of up to n_gen tokens from a fresh cache, plain
 * (x NULL) or speculative, through run's own decode loops; the token ids
 * as text in *ids (malloc'd), the statistics in *st. */
static int generate(lm_session *s, lm_spec *x, const int32_t *prompt, int n_prompt, int n_gen,
                    char **ids, lm_gen_stats *st)
{
    size_t len;
    FILE *mem = open_memstream(ids, &len);
    if (!mem) {
        lm_set_error("out of memory");
        return -1;
    }
    lm_session_seq_rm(s, 0, 0);
    int rc;
    if (x) {
        rc = lm_generate_spec(x, s->model, prompt, n_prompt, n_gen, mem, st);
    } else {
        lm_sampler_params sp = lm_sampler_default_params();
        sp.temp = 0;
        lm_sampler *smp = lm_sampler_new(&sp, (int32_t)s->model->hp.n_vocab);
        rc = smp ? lm_generate(s, smp, prompt, n_prompt, n_gen, mem, st) : -1;
        lm_sampler_free(smp);
    }
    fclose(mem);
    return rc;
}

int lm_bench_spec(lm_cli *o, lm_model *m, int n_gen)
{
    char *text = o->file ? lm_read_file(o->file, &(size_t){0}) : strdup(default_text);
    int32_t *prompt = NULL;
    char *a = NULL, *b = NULL;
    size_t n_prompt = 0;
    lm_cli target_opts;
    lm_cli_draft d = {0};
    lm_session *s = NULL;
    int rc = -1;
    o->sampling.temp = 0; /* greedy, both ways */
    lm_generate_print_ids(true);
    if (!text || lm_tokenize(m->tokenizer, text, strlen(text), true, true, &prompt, &n_prompt))
        goto done;
    if (n_gen < 2) {
        lm_set_error("bench with speculation needs -n 2 or more");
        goto done;
    }
    const int n_ctx = (int)n_prompt + n_gen + LM_SPEC_MAX_DRAFT + 2;
    if (lm_cli_draft_load(o, m, n_ctx, &target_opts, &d) != 0 ||
        !(s = lm_cli_session(&target_opts, m, n_ctx, o->n_batch)))
        goto done;
    double best_plain = 0, best_spec = 0;
    lm_gen_stats plain, spec, st = {0};
    for (int r = 0; r < o->repetitions; r++) {
        free(a);
        free(b);
        a = b = NULL;
        if (generate(s, NULL, prompt, (int)n_prompt, n_gen, &a, &plain) != 0 ||
            lm_cli_draft_start(o, s, &d) != 0 ||
            generate(s, d.spec, prompt, (int)n_prompt, n_gen, &b, &spec) != 0)
            goto done;
        const double tps_plain = lm_gen_decode_tokens_per_s(&plain);
        const double tps_spec = lm_gen_decode_tokens_per_s(&spec);
        best_plain = tps_plain > best_plain ? tps_plain : best_plain;
        if (tps_spec > best_spec) {
            best_spec = tps_spec;
            st = spec;
        }
    }
    const bool same = strcmp(a, b) == 0;
    const int n_a = plain.n_decoded;
    const char *how = o->lookup ? "lookup" : "draft";
    const double accept =
        st.spec_drafted ? (double)st.spec_accepted / (double)st.spec_drafted : 0.0;
    const double per_pass =
        st.spec_rounds ? (double)st.spec_tokens / (double)st.spec_rounds : 0.0;
    if (o->json) {
        json_t *obj = json_pack("{s:s, s:s, s:s?, s:i, s:i, s:f, s:f, s:f, s:{s:I, s:I, s:f, s:f, "
                                "s:f, s:f}, s:b}",
                                "model", o->model, "speculative", how, "draft", o->draft,
                                "n_prompt", (int)n_prompt, "n_gen", n_gen,
                                "plain_decode_tokens_per_s", best_plain, "decode_tokens_per_s",
                                best_spec, "speed_up", best_plain > 0 ? best_spec / best_plain : 0.0,
                                "speculation", "proposed", (json_int_t)st.spec_drafted, "accepted",
                                (json_int_t)st.spec_accepted, "acceptance_rate", accept,
                                "tokens_per_target_pass", per_pass, "draft_ms_per_token",
                                st.spec_tokens ? st.spec_draft_s * 1e3 / (double)st.spec_tokens : 0.0,
                                "target_ms_per_pass",
                                st.spec_rounds ? st.spec_target_s * 1e3 / (double)st.spec_rounds : 0.0,
                                "same_tokens", same);
        if (lm_json_write(obj, stdout) != 0)
            goto done;
    } else {
        printf("speculative decoding (%s%s%s), greedy, %zu-token prompt, best of %d\n", how,
               o->draft ? " " : "", o->draft ? o->draft : "", n_prompt, o->repetitions);
        printf("decode: %d tokens: plain %.2f tokens/s, speculative %.2f tokens/s = %.2fx\n",
               n_a, best_plain, best_spec, best_plain > 0 ? best_spec / best_plain : 0.0);
        printf("speculation: %llu proposed, %llu accepted (%.0f%%), %.2f tokens per target "
               "pass, target %.2f ms per pass, draft %.2f ms per token\n",
               (unsigned long long)st.spec_drafted, (unsigned long long)st.spec_accepted, 100 * accept,
               per_pass, st.spec_rounds ? st.spec_target_s * 1e3 / (double)st.spec_rounds : 0.0,
               st.spec_tokens ? st.spec_draft_s * 1e3 / (double)st.spec_tokens : 0.0);
        printf("same tokens as plain decoding: %s\n", same ? "yes" : "NO");
    }
    rc = same ? 0 : -1;
    if (!same)
        lm_set_error("speculative decoding gave other tokens than plain decoding");
done:
    free(text);
    free(prompt);
    free(a);
    free(b);
    lm_cli_draft_free(&d);
    lm_session_free(s);
    return rc;
}
