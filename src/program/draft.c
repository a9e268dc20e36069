/* --draft and --lookup for `run` and `chat`: the draft model resident on
 * the CPU, its memory taken off the RAM budget before the target is
 * planned, and the speculative decoder (src/engine/speculative.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "plan.h"
#include "session.h"
#include "speculative.h"

#define MIB(b) ((double)(b) / (1024.0 * 1024.0))

/* What the draft keeps in RAM: its weights, an fp16 KV cache of n_ctx, and
 * its activations (a few rows). */
static uint64_t draft_bytes(const lm_model *m, int n_ctx)
{
    const lm_hparams *hp = &m->hp;
    const uint64_t kv = (uint64_t)hp->n_layer * (uint64_t)n_ctx * hp->n_head_kv * hp->head_dim *
                        2 * 2;
    const uint64_t act = (uint64_t)(hp->n_embd * 4 + hp->n_ff * 2 + hp->n_vocab) * 4 * 64;
    return m->weight_bytes + kv + act;
}

int lm_cli_draft_load(const lm_cli *o, const lm_model *target, int n_ctx, lm_cli *target_opts,
                      lm_cli_draft *d)
{
    memset(d, 0, sizeof *d);
    *target_opts = *o;
    if (!o->draft)
        return 0;
    if (o->lookup) {
        lm_set_error("give --draft or --lookup, not both");
        return -1;
    }
    lm_cli draft_opts = *o;
    draft_opts.model = o->draft;
    if (!(d->model = lm_cli_load_model(&draft_opts)))
        return -1;
    if (lm_spec_check_vocab(target, d->model) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", lm_last_error());
        lm_set_error("%s: %s", o->draft, why);
        return -1;
    }
    const uint64_t budget = o->ram_budget ? o->ram_budget : lm_plan_default_ram_budget();
    const uint64_t need = draft_bytes(d->model, n_ctx);
    if (need + ((uint64_t)64 << 20) > budget) {
        lm_set_error("the draft model needs %.0f MiB resident and the RAM budget is %.0f MiB",
                     MIB(need), MIB(budget));
        return -1;
    }
    target_opts->ram_budget = budget - need;
    if (!o->quiet)
        fprintf(stderr, "lamina: draft: %s resident in RAM, %.1f MiB (weights and KV cache); "
                        "the target plans within the %.0f MiB left of %.0f MiB\n",
                o->draft, MIB(need), MIB(target_opts->ram_budget), MIB(budget));
    return 0;
}

int lm_cli_draft_start(const lm_cli *o, lm_session *target, lm_cli_draft *d)
{
    if (!o->draft && !o->lookup)
        return 0;
    if (d->model && !d->session &&
        !(d->session = lm_session_new_backend(d->model, target->n_ctx, 1, o->draft_max + 1,
                                              "cpu", NULL)))
        return -1;
    lm_spec_free(d->spec); /* a fresh decoder over the same sessions */
    d->spec = NULL;
    lm_spec_params p = lm_spec_default_params();
    p.draft_max = o->draft_max;
    p.draft_min = o->draft_min;
    p.p_min_auto = o->draft_p_min < 0; /* not given: it adapts from the default */
    if (!p.p_min_auto)
        p.draft_p_min = o->draft_p_min;
    p.lookup = o->lookup;
    p.fixed = getenv("LAMINA_SPEC_FIXED") && strcmp(getenv("LAMINA_SPEC_FIXED"), "0") != 0;
    return (d->spec = lm_spec_new(target, d->session, &p, &o->sampling)) ? 0 : -1;
}

void lm_cli_draft_free(lm_cli_draft *d)
{
    lm_spec_free(d->spec);
    lm_session_free(d->session);
    lm_model_free(d->model);
    memset(d, 0, sizeof *d);
}
