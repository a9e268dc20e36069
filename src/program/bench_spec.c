/* lamina bench --draft / --lookup: greedy decoding of a real text prompt
 * (-f FILE, or a built-in one: speculation needs text, not bench's token
 * ids), plain and speculative in the same run on the same engine, best of
 * -r each: tokens/s of both, the speed-up, the acceptance, tokens per target
 * pass, and whether the tokens are the same (they must be). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "json_out.h"
#include "sampler.h"
#include "session.h"
#include "speculative.h"
#include "tokenizer.h"

static const char default_text[] =
    "Here is a Python function and the same function with comments added.\n\n"
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
    "With comments:\n\ndef fib(n):\n";

/* Plain greedy decoding: n_gen tokens (or to an end of generation) into
 * out; returns how many, or -1.  *tps: decode tokens/s after the first. */
static int plain(lm_session *s, const int32_t *prompt, int n_prompt, int n_gen, int32_t *out,
                 double *tps)
{
    const size_t nv = s->model->hp.n_vocab;
    float *logits = malloc(nv * sizeof *logits);
    lm_sampler_params sp = lm_sampler_default_params();
    sp.temp = 0;
    lm_sampler *smp = logits ? lm_sampler_new(&sp, (int32_t)nv) : NULL;
    int n = 0, rc = smp ? 0 : -1;
    lm_session_seq_rm(s, 0, 0);
    if (rc == 0)
        rc = lm_session_eval(s, prompt, n_prompt, false, logits);
    double t0 = lm_now_seconds();
    while (rc == 0 && n < n_gen) {
        out[n] = lm_sampler_sample(smp, logits);
        if (n++ == 0)
            t0 = lm_now_seconds();
        if (lm_tokenizer_is_eog(s->model->tokenizer, out[n - 1]) || n == n_gen)
            break;
        rc = lm_session_eval(s, &out[n - 1], 1, false, logits);
    }
    *tps = n > 1 ? (n - 1) / (lm_now_seconds() - t0) : 0.0;
    free(logits);
    lm_sampler_free(smp);
    return rc ? -1 : n;
}

static int speculative(lm_spec *x, lm_session *s, const int32_t *prompt, int n_prompt, int n_gen,
                       int32_t *out, double *tps)
{
    lm_session_seq_rm(s, 0, 0);
    if (lm_spec_prompt(x, prompt, n_prompt, &out[0]) != 0)
        return -1;
    const double t0 = lm_now_seconds();
    int n = 1;
    while (n < n_gen && !lm_tokenizer_is_eog(s->model->tokenizer, out[n - 1])) {
        int32_t got[LM_SPEC_MAX_DRAFT + 1];
        const int k = lm_spec_next(x, got, n_gen - n < LM_SPEC_MAX_DRAFT + 1 ? n_gen - n
                                                                             : LM_SPEC_MAX_DRAFT + 1);
        if (k <= 0)
            return k < 0 ? -1 : n;
        for (int i = 0; i < k && n < n_gen; i++) {
            out[n++] = got[i];
            if (lm_tokenizer_is_eog(s->model->tokenizer, got[i]))
                break;
        }
    }
    *tps = n > 1 ? (n - 1) / (lm_now_seconds() - t0) : 0.0;
    return n;
}

int lm_bench_spec(lm_cli *o, lm_model *m, int n_gen)
{
    char *text = o->file ? lm_read_file(o->file, &(size_t){0}) : strdup(default_text);
    int32_t *prompt = NULL, *a = NULL, *b = NULL;
    size_t n_prompt = 0;
    lm_cli target_opts;
    lm_cli_draft d = {0};
    lm_session *s = NULL;
    int rc = -1;
    o->sampling.temp = 0; /* greedy, both ways */
    if (!text || lm_tokenize(m->tokenizer, text, strlen(text), true, true, &prompt, &n_prompt))
        goto done;
    const int n_ctx = (int)n_prompt + n_gen + LM_SPEC_MAX_DRAFT + 2;
    a = malloc((size_t)n_gen * sizeof *a);
    b = malloc((size_t)n_gen * sizeof *b);
    if (!a || !b || n_gen < 2) {
        lm_set_error(n_gen < 2 ? "bench with speculation needs -n 2 or more" : "out of memory");
        goto done;
    }
    if (lm_cli_draft_load(o, m, n_ctx, &target_opts, &d) != 0 ||
        !(s = lm_cli_session(&target_opts, m, n_ctx, o->n_batch)))
        goto done;
    double best_plain = 0, best_spec = 0, tps;
    int n_a = 0, n_b = 0;
    lm_spec_stats st = {0};
    for (int r = 0; r < o->repetitions; r++) {
        if ((n_a = plain(s, prompt, (int)n_prompt, n_gen, a, &tps)) < 0)
            goto done;
        best_plain = tps > best_plain ? tps : best_plain;
        if (lm_cli_draft_start(o, s, &d) != 0 ||
            (n_b = speculative(d.spec, s, prompt, (int)n_prompt, n_gen, b, &tps)) < 0)
            goto done;
        if (tps > best_spec) {
            best_spec = tps;
            st = *lm_spec_get_stats(d.spec);
        }
    }
    const bool same = n_a == n_b && memcmp(a, b, (size_t)n_a * sizeof *a) == 0;
    const char *how = o->lookup ? "lookup" : "draft";
    const double accept = st.drafted ? (double)st.accepted / (double)st.drafted : 0.0;
    const double per_pass = st.rounds ? (double)st.tokens / (double)st.rounds : 0.0;
    if (o->json) {
        json_t *obj = json_pack("{s:s, s:s, s:s?, s:i, s:i, s:f, s:f, s:f, s:{s:I, s:I, s:f, s:f, "
                                "s:f, s:f}, s:b}",
                                "model", o->model, "speculative", how, "draft", o->draft,
                                "n_prompt", (int)n_prompt, "n_gen", n_gen,
                                "plain_decode_tokens_per_s", best_plain, "decode_tokens_per_s",
                                best_spec, "speed_up", best_plain > 0 ? best_spec / best_plain : 0.0,
                                "speculation", "proposed", (json_int_t)st.drafted, "accepted",
                                (json_int_t)st.accepted, "acceptance_rate", accept,
                                "tokens_per_target_pass", per_pass, "draft_ms_per_token",
                                st.tokens ? st.draft_s * 1e3 / (double)st.tokens : 0.0,
                                "target_ms_per_pass",
                                st.rounds ? st.target_s * 1e3 / (double)st.rounds : 0.0,
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
               (unsigned long long)st.drafted, (unsigned long long)st.accepted, 100 * accept,
               per_pass, st.rounds ? st.target_s * 1e3 / (double)st.rounds : 0.0,
               st.tokens ? st.draft_s * 1e3 / (double)st.tokens : 0.0);
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
