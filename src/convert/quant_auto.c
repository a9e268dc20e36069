/* lm_quant_auto_choose (quant_auto.h). */
#include "quant_auto.h"

#include "error.h"
#include "gguf.h"
#include "model.h"
#include "plan.h"
#include "quantize.h"

static const char *const candidate_names[LM_QUANT_AUTO_CANDIDATES] = {
    "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"};

int lm_quant_auto_choose(const char *in, uint64_t ram_budget, int n_ctx, int n_batch, bool pure,
                         lm_quant_auto *out)
{
    *out = (lm_quant_auto){.budget = ram_budget ? ram_budget : lm_plan_default_ram_budget()};
    lm_model *m = lm_model_load(in);
    if (!m)
        return -1;
    const lm_hparams *hp = &m->hp;
    out->n_ctx = n_ctx > 0 ? n_ctx : (hp->n_ctx_train < 4096 ? (int)hp->n_ctx_train : 4096);
    out->kv_bytes = lm_plan_kv_bytes(hp, out->n_ctx);
    out->buffer_bytes = lm_plan_activation_bytes(hp, n_batch > 0 ? n_batch : 512) +
                        LM_PLAN_RAM_OVERHEAD;
    int rc = 0;
    out->chosen = -1;
    int smallest = 0;
    for (int i = 0; i < LM_QUANT_AUTO_CANDIDATES && rc == 0; i++) {
        lm_quant_auto_candidate *c = &out->cand[i];
        lm_quantize_stats st;
        if (lm_quant_target_parse(candidate_names[i], &c->target) != 0 ||
            lm_quantize_predict(m->gguf, &c->target, pure, &st) != 0) {
            rc = -1;
            break;
        }
        c->weights = st.out_bytes;
        c->need = st.out_bytes + out->kv_bytes + out->buffer_bytes;
        c->larger_than_input = st.out_bytes > st.in_bytes;
        if (c->weights < out->cand[smallest].weights)
            smallest = i;
        if (out->chosen < 0 && !c->larger_than_input && c->need <= out->budget)
            out->chosen = i;
    }
    if (rc == 0) {
        out->fits = out->chosen >= 0;
        if (!out->fits)
            out->chosen = smallest;
    }
    lm_model_free(m);
    return rc;
}

void lm_quant_auto_print(const lm_quant_auto *a, FILE *f)
{
    const double mib = 1024.0 * 1024.0;
    for (int i = 0; i < LM_QUANT_AUTO_CANDIDATES; i++) {
        const lm_quant_auto_candidate *c = &a->cand[i];
        fprintf(f, "auto: %-6s weights %8.1f MiB, needs %8.1f MiB: %s\n", c->target.name,
                (double)c->weights / mib, (double)c->need / mib,
                c->larger_than_input ? "larger than the input (no precision to gain)"
                : c->need <= a->budget ? "fits"
                                       : "over the budget");
    }
    fprintf(f, "auto: needs = weights + KV cache %.1f MiB (%d positions) + buffers %.1f MiB\n",
            (double)a->kv_bytes / mib, a->n_ctx, (double)a->buffer_bytes / mib);
    const lm_quant_auto_candidate *c = &a->cand[a->chosen];
    if (a->fits)
        fprintf(f, "auto: chose %s, the best type that fits the RAM budget of %.1f MiB "
                   "(%.1f MiB needed)\n",
                c->target.name, (double)a->budget / mib, (double)c->need / mib);
    else
        fprintf(f, "auto: chose %s: no type fits the RAM budget of %.1f MiB, and %s has the "
                   "fewest bytes to stream per token (%.1f MiB of weights)\n",
                c->target.name, (double)a->budget / mib, c->target.name,
                (double)c->weights / mib);
}
