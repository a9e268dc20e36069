/* lamina plan: the placement of every layer and the predicted speed, printed
 * before (instead of) running.  With --draft or --lookup, what speculative
 * decoding is predicted to give, from the same figures. */
#include <math.h>
#include <stdio.h>

#include "cli.h"
#include "error.h"
#include "json_out.h"
#include "plan.h"

/* Acceptance rates the speculation prediction is shown for: the share of
 * drafted tokens the target agrees with depends on the text, not on the
 * machine (bench/RESULTS.md measured 0.5-0.9 for code and prose). */
static const double acceptance[] = {0.5, 0.7, 0.8, 0.9};
#define N_ACCEPTANCE (int)(sizeof acceptance / sizeof acceptance[0])

typedef struct {
    int k;            /* tokens drafted a round */
    double tokens_per_s, speedup;
} spec_choice;

/* A round drafts k tokens (k passes of the draft) and verifies them with
 * the target in one pass of k+1 rows; with each drafted token accepted with
 * probability a until the first rejection, a round yields
 * (1 - a^(k+1)) / (1 - a) tokens.  The best k up to k_max. */
static spec_choice best_round(const lm_model *m, const lm_plan *plan, double draft_ms, double a,
                              int k_max)
{
    spec_choice best = {0, 0, 0};
    for (int k = 1; k <= k_max; k++) {
        const double tokens = (1 - pow(a, k + 1)) / (1 - a);
        const double ms = k * draft_ms + lm_plan_pass_ms(m, plan, k + 1);
        const double tps = ms > 0 ? tokens * 1e3 / ms : 0;
        if (tps > best.tokens_per_s)
            best = (spec_choice){k, tps, tps * plan->token_ms / 1e3};
    }
    return best;
}

static void print_speculation(const lm_cli *o, const lm_model *m, const lm_plan *plan,
                              double draft_ms, FILE *f)
{
    fprintf(f, "\nspeculation (%s): ", o->draft ? "--draft" : "--lookup");
    if (o->draft)
        fprintf(f, "the draft %.2f ms a token on the CPU; ", draft_ms);
    else
        fprintf(f, "proposals from the context cost nothing; ");
    fprintf(f, "the target %.1f ms a pass of 1 row", lm_plan_pass_ms(m, plan, 1));
    for (int k = 4; k <= o->draft_max; k *= 2)
        fprintf(f, ", %.1f of %d", lm_plan_pass_ms(m, plan, k + 1), k + 1);
    fprintf(f, "\n");
    for (int i = 0; i < N_ACCEPTANCE; i++) {
        const spec_choice c = best_round(m, plan, draft_ms, acceptance[i], o->draft_max);
        fprintf(f, "  if %.0f%% of drafted tokens are accepted: %.2f tokens/s drafting %d a round "
                   "(%.2fx plain decoding)\n",
                acceptance[i] * 100, c.tokens_per_s, c.k, c.speedup);
    }
}

static json_t *speculation_json(const lm_cli *o, const lm_model *m, const lm_plan *plan,
                                double draft_ms)
{
    json_t *by = json_array(), *passes = json_object();
    for (int i = 0; by && i < N_ACCEPTANCE; i++) {
        const spec_choice c = best_round(m, plan, draft_ms, acceptance[i], o->draft_max);
        json_array_append_new(by, json_pack("{s:f, s:i, s:f, s:f}", "acceptance", acceptance[i],
                                            "draft_tokens", c.k, "tokens_per_s",
                                            c.tokens_per_s, "speedup", c.speedup));
    }
    for (int rows = 1; passes && rows <= o->draft_max + 1; rows++) {
        char key[16];
        snprintf(key, sizeof key, "%d", rows);
        json_object_set_new(passes, key, json_real(lm_plan_pass_ms(m, plan, rows)));
    }
    return json_pack("{s:s, s:f, s:i, s:o, s:o}", "mode", o->draft ? "draft" : "lookup",
                     "draft_ms_per_token", draft_ms, "draft_max", o->draft_max,
                     "target_ms_per_pass_by_rows", passes, "by_acceptance", by);
}

/* The draft's own prediction: resident on the CPU, as run keeps it. */
static int draft_token_ms(const lm_cli *o, const lm_model *draft, int n_ctx, double *ms)
{
    lm_cli d = *o;
    d.backend = "cpu";
    d.gpu_layers = -1;
    d.ram_budget = 0;
    d.ram_layers = -1;
    lm_plan plan;
    if (lm_cli_plan(&d, draft, n_ctx, o->draft_max + 1, 1, &plan) != 0)
        return -1;
    *ms = plan.token_ms;
    lm_plan_free(&plan);
    return 0;
}

int lm_cmd_plan(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "plan", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    int n_prompt = 1;
    if (o.prompt && lm_cli_int("-p", o.prompt, 1, 1 << 20, &n_prompt) != 0)
        return lm_cli_fail();
    o.quiet = true;
    lm_model *m = lm_cli_load_model(&o);
    if (!m)
        return lm_cli_fail();
    /* with --draft, the draft's resident memory comes off the budget first */
    lm_cli target_opts;
    lm_cli_draft draft;
    lm_plan plan;
    double draft_ms = 0;
    const int n_ctx = lm_cli_context(&o, m);
    if (lm_cli_draft_load(&o, m, n_ctx, &target_opts, &draft) != 0 ||
        lm_cli_plan(&target_opts, m, n_ctx, o.n_batch, n_prompt, &plan) != 0 ||
        (draft.model && draft_token_ms(&o, draft.model, n_ctx, &draft_ms) != 0)) {
        lm_cli_draft_free(&draft);
        lm_model_free(m);
        return lm_cli_fail();
    }
    if (draft.model && !o.json)
        printf("draft: %s resident in RAM on the CPU, %.1f MiB (weights and KV cache); the "
               "target below is planned within the %.0f MiB left\n\n", o.draft,
               (double)(o.ram_budget ? o.ram_budget : lm_plan_default_ram_budget()) / 1048576.0 -
                   (double)target_opts.ram_budget / 1048576.0,
               (double)target_opts.ram_budget / 1048576.0);
    const bool speculating = draft.model || o.lookup;
    lm_cli_draft_free(&draft);
    if (o.json) {
        json_t *obj = lm_plan_json(&plan);
        if (obj && speculating)
            json_object_set_new(obj, "speculation", speculation_json(&o, m, &plan, draft_ms));
        if (lm_json_write(obj, stdout) != 0)
            fprintf(stderr, "lamina: %s\n", lm_last_error());
    } else {
        lm_plan_print(&plan, stdout);
        if (speculating)
            print_speculation(&o, m, &plan, draft_ms, stdout);
    }
    lm_plan_free(&plan);
    lm_model_free(m);
    return 0;
}
