#include "planned_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

lm_session *test_planned_session(const lm_model *m, const lm_placement *place,
                                 bool head_on_device, bool prefetch, bool fallback, int n_ctx,
                                 int n_seq, int n_batch)
{
    lm_plan plan = {.n_layer = (int)m->hp.n_layer, .prefetch = prefetch,
                    .head_on_device = head_on_device, .learned_factor = 1.0};
    lm_learned_none(&plan.learned);
    plan.place = calloc((size_t)plan.n_layer, sizeof *plan.place);
    plan.layer_bytes = calloc((size_t)plan.n_layer, sizeof *plan.layer_bytes);
    plan.layer_ms = calloc((size_t)plan.n_layer, sizeof *plan.layer_ms);
    if (!plan.place || !plan.layer_bytes || !plan.layer_ms) {
        lm_plan_free(&plan);
        fprintf(stderr, "out of memory\n");
        return NULL;
    }
    memcpy(plan.place, place, (size_t)plan.n_layer * sizeof *place);
    lm_session *s = lm_session_new_planned(m, n_ctx, n_seq, n_batch, &plan, NULL, fallback);
    if (!s)
        fprintf(stderr, "%s\n", lm_last_error());
    return s;
}
