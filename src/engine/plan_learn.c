#include "plan_learn.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "session.h"

/* Fewer one-token passes than this say too little. */
#define LEARN_MIN_PASSES 8

static void learned_key(const lm_model *m, const lm_plan *plan, char *key, size_t len)
{
    int counts[LM_PLACE_COUNT] = {0};
    for (int il = 0; il < plan->n_layer; il++)
        counts[plan->place[il]]++;
    snprintf(key, len, "t%d|w%llu|l%d|e%u|ram%d|disk%d|dev%d|devram%d|devdisk%d|head%d|seq%d|pf%d",
             omp_get_max_threads(), (unsigned long long)m->weight_bytes, plan->n_layer,
             m->hp.n_embd, counts[LM_PLACE_RAM], counts[LM_PLACE_DISK], counts[LM_PLACE_DEVICE],
             counts[LM_PLACE_DEVICE_RAM], counts[LM_PLACE_DEVICE_DISK], plan->head_on_device,
             plan->parallel > 1 ? plan->parallel : 1, plan->prefetch);
}

typedef struct {
    int n;
    double ratio[LM_LEARN_RUNS];
} learned;

static bool parse_learned(const char *value, void *out)
{
    learned *l = out, got = {0};
    const char *p = value;
    char *end;
    while (got.n < LM_LEARN_RUNS) {
        const double r = strtod(p, &end);
        if (end == p)
            break;
        if (!(r > 0.01 && r < 100))
            return false;
        got.ratio[got.n++] = r;
        p = end;
    }
    if (got.n == 0)
        return false;
    *l = got;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const learned *l)
{
    double v[LM_LEARN_RUNS];
    memcpy(v, l->ratio, (size_t)l->n * sizeof *v);
    qsort(v, (size_t)l->n, sizeof *v, cmp_double);
    return l->n % 2 ? v[l->n / 2] : (v[l->n / 2 - 1] + v[l->n / 2]) / 2;
}

void lm_plan_apply_learned(const lm_model *m, lm_plan *plan)
{
    plan->probe_token_ms = plan->token_ms;
    plan->learned_runs = 0;
    plan->learned_factor = 1.0;
    char key[512];
    learned_key(m, plan, key, sizeof key);
    learned l;
    if (!lm_probe_cache_load("learned", key, parse_learned, &l))
        return;
    const double f = median(&l);
    plan->learned_runs = l.n;
    plan->learned_factor = f;
    plan->token_ms *= f;
    plan->tokens_per_s = plan->token_ms > 0 ? 1e3 / plan->token_ms : 0;
    plan->batch_pass_ms *= f;
    plan->batch_tokens_per_s /= f;
    plan->cpu_ms *= f;
    plan->device_ms *= f;
    plan->disk_ms *= f;
    plan->copy_ms *= f;
    for (int il = 0; il < plan->n_layer; il++)
        plan->layer_ms[il] *= f;
}

void lm_session_learn(const lm_session *s)
{
    const lm_plan *plan = &s->plan;
    if (!plan->place || s->decode_passes < LEARN_MIN_PASSES || plan->probe_token_ms <= 0)
        return;
    if (!lm_probe_settled(&s->watch, NULL))
        return; /* the machine was busy: what the run took says little */
    const double measured_ms = s->decode_seconds * 1e3 / (double)s->decode_passes;
    const double ratio = measured_ms / plan->probe_token_ms;
    if (!(ratio > 0.01 && ratio < 100))
        return;
    char key[512], value[256];
    learned_key(s->model, plan, key, sizeof key);
    learned l = {0};
    lm_probe_cache_load("learned", key, parse_learned, &l);
    if (l.n == LM_LEARN_RUNS) { /* the oldest goes */
        memmove(l.ratio, l.ratio + 1, (LM_LEARN_RUNS - 1) * sizeof *l.ratio);
        l.n--;
    }
    l.ratio[l.n++] = ratio;
    size_t at = 0;
    for (int i = 0; i < l.n; i++)
        at += (size_t)snprintf(value + at, sizeof value - at, "%s%.4f", i ? " " : "", l.ratio[i]);
    lm_probe_cache_save("learned", key, value);
}
