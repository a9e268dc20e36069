/* lamina plan: the placement of every layer and the predicted speed, printed
 * before (instead of) running. */
#include <stdio.h>

#include "cli.h"
#include "plan.h"

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
    if (lm_cli_draft_load(&o, m, lm_cli_context(&o, m), &target_opts, &draft) != 0 ||
        lm_cli_plan(&target_opts, m, lm_cli_context(&o, m), o.n_batch, n_prompt, &plan) != 0) {
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
    lm_cli_draft_free(&draft);
    if (o.json)
        lm_plan_print_json(&plan, stdout);
    else
        lm_plan_print(&plan, stdout);
    lm_plan_free(&plan);
    lm_model_free(m);
    return 0;
}
