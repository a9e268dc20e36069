#include "engine_open.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "plan_learn.h"
#include "probe.h"
#include "timing.h"

lm_engine_params lm_engine_default_params(void)
{
    return (lm_engine_params){.n_ctx = 4096, .n_seq = 1, .n_batch = 512, .n_prompt = 1,
                              .gpu_layers = -1, .ram_layers = -1};
}

/* How the backend and gpu_layers ask for the device to be used.  With
 * neither, the planner decides (auto), and a machine without a working
 * OpenCL device runs on the CPU without a word. */
static int device_use(const lm_engine_params *p, lm_device_use *use)
{
    const char *b = p->backend;
    if (!b)
        *use = p->gpu_layers > 0 ? LM_USE_DEVICE : p->gpu_layers == 0 ? LM_USE_CPU : LM_USE_AUTO;
    else if (strcmp(b, "cpu") == 0)
        *use = LM_USE_CPU;
    else if (strcmp(b, "opencl") == 0)
        *use = LM_USE_DEVICE;
    else
        *use = LM_USE_AUTO;
    if (*use == LM_USE_CPU && p->gpu_layers > 0) {
        lm_set_error("--gpu-layers %d asks for the device, --backend cpu for none", p->gpu_layers);
        return -1;
    }
    return 0;
}

static int plan_for(const lm_model *m, const lm_engine_params *p, lm_device_use use,
                    lm_plan *plan)
{
    lm_probes probes;
    lm_device_probes dev;
    lm_plan_request req = {
        .ram_budget = p->ram_budget,
        .vram_budget = p->vram_budget,
        .n_ctx = p->n_ctx,
        .n_batch = p->n_batch < p->n_ctx ? p->n_batch : p->n_ctx,
        .use = use,
        .gpu_layers = p->gpu_layers,
        .prefetch = !p->no_prefetch,
        .force_ram_layers = p->ram_layers,
        .n_prompt = p->n_prompt,
        .n_parallel = p->n_seq,
        .whole_layers = p->whole_layers,
        .expert_cache_bytes = p->expert_cache,
        .evict_frequent = p->evict_frequent,
        .evict_auto = p->evict_auto,
    };
    if (lm_probe(m, p->reprobe, &probes) != 0)
        return -1;
    if (use != LM_USE_CPU && lm_probe_device(m, p->device, p->reprobe, &dev) != 0) {
        if (use == LM_USE_DEVICE)
            return -1;
        if (p->backend) /* asked for by name: say why it is not used */
            fprintf(stderr, "lamina: warning: OpenCL backend unavailable (%s); running on the "
                            "CPU\n", lm_last_error());
        return plan_for(m, p, LM_USE_CPU, plan);
    }
    /* --reprobe: everything afresh, what runs taught set aside */
    lm_learned learned;
    lm_learned_none(&learned);
    if (!p->reprobe)
        lm_learned_load(m, &probes, use != LM_USE_CPU ? &dev : NULL, &learned);
    req.learned = &learned;
    if (lm_plan_make(m, &req, &probes, use != LM_USE_CPU ? &dev : NULL, plan) != 0)
        return -1;
    if (!p->reprobe)
        lm_plan_apply_learned(m, plan);
    plan->reprobed = p->reprobe;
    return 0;
}

int lm_engine_plan(const lm_model *m, const lm_engine_params *p, lm_plan *plan)
{
    lm_device_use use;
    if (device_use(p, &use) != 0)
        return -1;
    return plan_for(m, p, use, plan);
}

lm_session *lm_engine_open(const lm_model *m, const lm_engine_params *p)
{
    /* the context is shared: each sequence gets an equal part, as
     * llama.cpp's server divides its context among its slots */
    const int n_seq = p->n_seq > 0 ? p->n_seq : 1, seq_ctx = p->n_ctx / n_seq;
    if (seq_ctx < 1) {
        lm_set_error("a context of %d cannot be shared among %d sequences", p->n_ctx, n_seq);
        return NULL;
    }
    lm_device_use use;
    lm_plan plan;
    if (device_use(p, &use) != 0 || plan_for(m, p, use, &plan) != 0)
        return NULL;
    if (!p->quiet)
        lm_plan_print_summary(&plan, stderr);
    const bool on_device = plan.device_total > 0;
    /* the weights an engine reads before it can start: layers uploaded to
     * the device, and layers kept in pinned RAM for it */
    uint64_t upfront = 0;
    for (int il = 0; il < plan.n_layer; il++)
        upfront += lm_plan_layer_upload_bytes(m, &plan, il);
    const double t0 = lm_now_seconds();
    const bool say_loading = !p->quiet && upfront > ((uint64_t)256 << 20);
    if (say_loading)
        fprintf(stderr, "lamina: loading %.0f MiB of weights for the device...\n",
                (double)upfront / (1024.0 * 1024.0));
    lm_session *s = lm_session_new_planned(m, seq_ctx, n_seq, p->n_batch, &plan, p->device,
                                           use == LM_USE_AUTO);
    if (s && say_loading)
        fprintf(stderr, "lamina: loaded in %.1f s\n", lm_now_seconds() - t0);
    if (!s && on_device && use == LM_USE_AUTO) {
        fprintf(stderr, "lamina: warning: OpenCL backend unavailable (%s); running on the CPU\n",
                lm_last_error());
        if (plan_for(m, p, LM_USE_CPU, &plan) != 0)
            return NULL;
        if (!p->quiet)
            lm_plan_print_summary(&plan, stderr);
        s = lm_session_new_planned(m, seq_ctx, n_seq, p->n_batch, &plan, p->device, false);
    }
    return s;
}
