#include "generate.h"

#include <errno.h>
#include <stdlib.h>

#include "atomic_file.h"
#include "cli.h"
#include "error.h"
#include "json_out.h"
#include "speculative.h"

static bool print_ids;

void lm_generate_print_ids(bool ids)
{
    print_ids = ids;
}

static int emit(const lm_tokenizer *tok, int32_t id, FILE *out, bool first)
{
    char buf[256];
    if (print_ids) {
        fprintf(out, "%s%d", first ? "" : " ", id);
        fflush(out);
        return 0;
    }
    int len = lm_token_to_piece(tok, id, false, buf, sizeof buf);
    if (len < 0)
        return -1;
    if ((size_t)len > sizeof buf) {
        char *big = malloc((size_t)len);
        if (!big)
            return -1;
        lm_token_to_piece(tok, id, false, big, (size_t)len);
        fwrite(big, 1, (size_t)len, out);
        free(big);
    } else {
        fwrite(buf, 1, (size_t)len, out);
    }
    fflush(out);
    return 0;
}

int lm_generate(lm_session *s, lm_sampler *sampler, const int32_t *prompt, int n_prompt,
                int n_predict, FILE *out, lm_gen_stats *st)
{
    const lm_tokenizer *tok = s->model->tokenizer;
    const size_t n_vocab = s->model->hp.n_vocab;
    float *logits = malloc(n_vocab * sizeof(float));
    if (!logits) {
        lm_set_error("out of memory");
        return -1;
    }
    *st = (lm_gen_stats){.n_prompt = n_prompt};
    for (int i = 0; i < n_prompt; i++)
        lm_sampler_accept(sampler, prompt[i]);

    const double t0 = lm_now_seconds();
    int rc = lm_session_eval(s, prompt, n_prompt, false, logits);
    st->prompt_s = lm_now_seconds() - t0;
    double t_decode0 = lm_now_seconds();
    while (rc == 0 && (n_predict < 0 || st->n_decoded < n_predict)) {
        int32_t next = lm_sampler_sample(sampler, logits);
        if (lm_tokenizer_is_eog(tok, next))
            break;
        lm_sampler_accept(sampler, next);
        if (emit(tok, next, out, st->n_decoded == 0) != 0) {
            lm_set_error("cannot write token %d", next);
            rc = -1;
            break;
        }
        if (st->n_decoded++ == 0) {
            st->first_token_s = lm_now_seconds() - t0;
            t_decode0 = lm_now_seconds();
        }
        if ((n_predict >= 0 && st->n_decoded >= n_predict) || lm_session_seq_pos(s, 0) >= s->n_ctx)
            break;
        rc = lm_session_eval(s, &next, 1, false, logits);
    }
    if (st->n_decoded > 0)
        st->decode_s = lm_now_seconds() - t_decode0;
    free(logits);
    return rc;
}

int lm_generate_spec(struct lm_spec *x, const lm_model *m, const int32_t *prompt, int n_prompt,
                     int n_predict, FILE *out, lm_gen_stats *st)
{
    const lm_tokenizer *tok = m->tokenizer;
    *st = (lm_gen_stats){.n_prompt = n_prompt, .spec = true};
    int32_t got[LM_SPEC_MAX_DRAFT + 1];
    const double t0 = lm_now_seconds();
    int n = 0, rc = lm_spec_prompt(x, prompt, n_prompt, &got[0]);
    st->prompt_s = lm_now_seconds() - t0;
    if (rc == 0)
        n = 1;
    double t_decode0 = lm_now_seconds();
    bool end = false;
    while (rc == 0 && !end && n > 0) {
        for (int i = 0; i < n && !end; i++) {
            if (lm_tokenizer_is_eog(tok, got[i])) {
                end = true;
                break;
            }
            if (emit(tok, got[i], out, st->n_decoded == 0) != 0) {
                lm_set_error("cannot write token %d", got[i]);
                rc = -1;
                break;
            }
            if (st->n_decoded++ == 0) {
                st->first_token_s = lm_now_seconds() - t0;
                t_decode0 = lm_now_seconds();
            }
            end = n_predict >= 0 && st->n_decoded >= n_predict;
        }
        if (rc != 0 || end)
            break;
        const int left = n_predict < 0 ? LM_SPEC_MAX_DRAFT + 1 : n_predict - st->n_decoded;
        n = lm_spec_next(x, got, left < LM_SPEC_MAX_DRAFT + 1 ? left : LM_SPEC_MAX_DRAFT + 1);
        rc = n < 0 ? -1 : 0;
    }
    if (st->n_decoded > 0)
        st->decode_s = lm_now_seconds() - t_decode0;
    const lm_spec_stats *ss = lm_spec_get_stats(x);
    st->spec_rounds = ss->rounds;
    st->spec_drafted = ss->drafted;
    st->spec_accepted = ss->accepted;
    st->spec_tokens = ss->tokens;
    st->spec_draft_s = ss->draft_s;
    st->spec_target_s = ss->target_s;
    return rc;
}

/* Tokens after the first are the decode phase; the first came from the
 * prompt pass. */
double lm_gen_decode_tokens_per_s(const lm_gen_stats *st)
{
    return st->n_decoded > 1 && st->decode_s > 0 ? (st->n_decoded - 1) / st->decode_s : 0.0;
}

static double prompt_tokens_per_s(const lm_gen_stats *st)
{
    return st->prompt_s > 0 ? st->n_prompt / st->prompt_s : 0.0;
}

void lm_gen_stats_print(const lm_gen_stats *st, FILE *f)
{
    fprintf(f, "lamina: prompt: %d tokens in %.1f ms, %.2f tokens/s\n", st->n_prompt,
            st->prompt_s * 1e3, prompt_tokens_per_s(st));
    fprintf(f, "lamina: decode: %d tokens in %.1f ms, %.2f tokens/s\n",
            st->n_decoded > 1 ? st->n_decoded - 1 : 0, st->decode_s * 1e3,
            lm_gen_decode_tokens_per_s(st));
    fprintf(f, "lamina: time to first token: %.1f ms\n", st->first_token_s * 1e3);
    if (st->spec && st->spec_rounds > 0)
        fprintf(f, "lamina: speculative: %llu proposed, %llu accepted (%.0f%%), %.2f tokens per "
                   "target pass, draft %.2f ms per generated token, target %.2f ms per pass\n",
                (unsigned long long)st->spec_drafted, (unsigned long long)st->spec_accepted,
                st->spec_drafted ? 100.0 * (double)st->spec_accepted / (double)st->spec_drafted
                                 : 0.0,
                (double)st->spec_tokens / (double)st->spec_rounds,
                st->spec_tokens ? st->spec_draft_s * 1e3 / (double)st->spec_tokens : 0.0,
                st->spec_target_s * 1e3 / (double)st->spec_rounds);
    fprintf(f, "lamina: peak RSS: %.1f MiB\n", (double)lm_peak_rss_bytes() / (1024.0 * 1024.0));
}

int lm_gen_stats_write_json(const lm_gen_stats *st, const char *path)
{
    lm_atomic_file out;
    if (lm_atomic_open(&out, path) != 0)
        return -1;
    json_t *obj = json_pack("{s:i, s:f, s:f, s:i, s:f, s:f, s:f, s:I}",
                            "prompt_tokens", st->n_prompt, "prompt_seconds", st->prompt_s,
                            "prompt_tokens_per_s", prompt_tokens_per_s(st), "decode_tokens",
                            st->n_decoded > 1 ? st->n_decoded - 1 : 0, "decode_seconds",
                            st->decode_s, "decode_tokens_per_s", lm_gen_decode_tokens_per_s(st),
                            "time_to_first_token_s", st->first_token_s, "peak_rss_bytes",
                            (json_int_t)lm_peak_rss_bytes());
    if (obj && st->spec) {
        const double rounds = st->spec_rounds ? (double)st->spec_rounds : 1.0;
        json_t *spec = json_pack(
            "{s:I, s:I, s:f, s:f, s:f, s:f}", "proposed", (json_int_t)st->spec_drafted,
            "accepted", (json_int_t)st->spec_accepted, "acceptance_rate",
            st->spec_drafted ? (double)st->spec_accepted / (double)st->spec_drafted : 0.0,
            "tokens_per_target_pass", (double)st->spec_tokens / rounds,
            "draft_ms_per_token",
            st->spec_tokens ? st->spec_draft_s * 1e3 / (double)st->spec_tokens : 0.0,
            "target_ms_per_pass", st->spec_target_s * 1e3 / rounds);
        json_object_set_new(obj, "speculative", spec);
    }
    if (lm_json_write(obj, out.f) != 0) {
        lm_atomic_abort(&out);
        return -1;
    }
    return lm_atomic_commit(&out, ferror(out.f) ? EIO : 0);
}
