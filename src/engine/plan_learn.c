#include "plan_learn.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "expert_cache.h"
#include "expert_trace.h"
#include "kernels.h"
#include "probe.h"
#include "session.h"
#include "streamer.h"

/* Fewer one-token passes than this say too little. */
#define LEARN_MIN_PASSES 8
/* Fewer bytes read or copied than this time the calls, not the transfer. */
#define LEARN_MIN_BYTES ((uint64_t)16 << 20)
/* ... and a hit rate from fewer experts wanted than this */
#define LEARN_MIN_EXPERTS 256

/* ---- the cache: lines "KEY<tab>v1 v2 ... v5", the oldest first ---------- */

typedef struct {
    int n;
    double ratio[LM_LEARN_RUNS];
} learned;

/* A factor past these says a broken clock or file, not a slow machine. */
static bool sane(double r)
{
    return r > 1e-3 && r < 1e3;
}

/* Figures are kept as what runs measured, in the probe's own unit (ms, or
 * bytes/s), not as ratios to a probe that may since have been taken again. */
static bool sane_value(double v)
{
    return v > 0 && v < 1e15;
}

static bool parse_learned(const char *value, void *out)
{
    learned *l = out, got = {0};
    const char *p = value;
    char *end;
    while (got.n < LM_LEARN_RUNS) {
        const double r = strtod(p, &end);
        if (end == p)
            break;
        if (!sane_value(r))
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

/* The median: one run far off (a hiccup) does not move it much. */
static double median(const learned *l)
{
    double v[LM_LEARN_RUNS];
    memcpy(v, l->ratio, (size_t)l->n * sizeof *v);
    qsort(v, (size_t)l->n, sizeof *v, cmp_double);
    return l->n % 2 ? v[l->n / 2] : (v[l->n / 2 - 1] + v[l->n / 2]) / 2;
}

/* Appends a run's value to those kept under key (the oldest goes past
 * LM_LEARN_RUNS); fresh: it starts them afresh (after --reprobe). */
static void record(const char *key, double ratio, bool fresh)
{
    if (!sane_value(ratio))
        return;
    learned l = {0};
    if (!fresh)
        lm_probe_cache_load("learned", key, parse_learned, &l);
    if (l.n == LM_LEARN_RUNS) {
        memmove(l.ratio, l.ratio + 1, (LM_LEARN_RUNS - 1) * sizeof *l.ratio);
        l.n--;
    }
    l.ratio[l.n++] = ratio;
    char value[256];
    size_t at = 0;
    for (int i = 0; i < l.n; i++)
        at += (size_t)snprintf(value + at, sizeof value - at, "%s%.6g", i ? " " : "", l.ratio[i]);
    lm_probe_cache_save("learned", key, value);
}

/* ---- the figures, keyed as the probes are ------------------------------ */

static bool on_device(lm_figure f)
{
    return f == LM_FIG_DEVICE_LAYER || f == LM_FIG_DEVICE_HEAD || f == LM_FIG_COPY;
}

/* The probe's value of figure f: ms for a time, bytes/s for a rate; 0
 * when it has none. */
static double probe_value(const lm_probes *p, const lm_device_probes *d, lm_figure f)
{
    switch (f) {
    case LM_FIG_CPU_LAYER: return p->cpu_layer_ms;
    case LM_FIG_CPU_HEAD: return p->cpu_head_ms;
    case LM_FIG_DISK:
    case LM_FIG_EXPERT_DISK: return p->disk_bw;
    case LM_FIG_DEVICE_LAYER: return d ? d->layer_ms : 0;
    case LM_FIG_DEVICE_HEAD: return d ? d->head_ms : 0;
    case LM_FIG_COPY: return d ? d->h2d_bw : 0;
    default: return 0;
    }
}

/* Converts between a figure's value and its factor over the probe (a time
 * grows with the factor, a rate shrinks). */
static double factor_of(double value, double probe, lm_figure f)
{
    return lm_figure_is_rate(f) ? probe / value : value / probe;
}

static double value_of(double factor, double probe, lm_figure f)
{
    return lm_figure_is_rate(f) ? probe / factor : probe * factor;
}

/* The thread count, the model file's disk and the model's shape, as the
 * probes' key has them; the device's name for the device's figures. */
static void figure_cache_key(const lm_model *m, const char *device, lm_figure f, char *key,
                             size_t len)
{
    struct stat sb;
    const unsigned long long dev =
        fstat(lm_gguf_fd(m->gguf), &sb) == 0 ? (unsigned long long)sb.st_dev : 0;
    snprintf(key, len, "figure=%s threads=%d cpu=%s dev=%llu shape=%ux%ux%ux%ux%u,%llu,%llu%s%s",
             lm_figure_key(f), omp_get_max_threads(), lm_cpu_path_name(lm_cpu_active_path()), dev, m->hp.n_layer, m->hp.n_embd,
             m->hp.n_ff, m->hp.n_head, m->hp.n_head_kv, (unsigned long long)m->layers[0].nbytes,
             (unsigned long long)m->output->nbytes, on_device(f) ? " device=" : "",
             on_device(f) && device ? device : "");
}

void lm_learned_load(const lm_model *m, const lm_probes *p, const lm_device_probes *d,
                     lm_learned *l)
{
    lm_learned_none(l);
    const char *device = d ? d->label : NULL;
    for (int i = 0; i < LM_FIG_COUNT; i++) {
        const double probe = probe_value(p, d, (lm_figure)i);
        if ((on_device((lm_figure)i) && !device) || probe <= 0)
            continue;
        char key[512];
        figure_cache_key(m, device, (lm_figure)i, key, sizeof key);
        learned got;
        if (lm_probe_cache_load("learned", key, parse_learned, &got)) {
            const double f = factor_of(median(&got), probe, (lm_figure)i);
            if (sane(f)) {
                l->factor[i] = f;
                l->runs[i] = got.n;
            }
        }
    }
}

/* ---- the whole plan: what the figures leave out ------------------------- */

/* The device's expert cache, for the keys: "" without one, else its
 * experts and where the misses come from. */
static void device_cache_part(const lm_plan *plan, char *buf, size_t len)
{
    buf[0] = '\0';
    if (plan->device_experts_apart && plan->expert_slot_bytes)
        snprintf(buf, len, "|devexperts%llu%s",
                 (unsigned long long)(plan->device_expert_cache_bytes / plan->expert_slot_bytes),
                 plan->device_experts_from_disk ? "-disk" : "");
}

static void plan_cache_key(const lm_model *m, const lm_plan *plan, char *key, size_t len)
{
    int counts[LM_PLACE_COUNT] = {0};
    for (int il = 0; il < plan->n_layer; il++)
        counts[plan->place[il]]++;
    char dev[64];
    device_cache_part(plan, dev, sizeof dev);
    snprintf(key, len,
             "plan=%s,t%d|w%llu|l%d|e%u|ram%d|disk%d|dev%d|devram%d|devdisk%d|head%d|seq%d|pf%d%s%s",
             lm_cpu_path_name(lm_cpu_active_path()), omp_get_max_threads(), (unsigned long long)m->weight_bytes, plan->n_layer,
             m->hp.n_embd, counts[LM_PLACE_RAM], counts[LM_PLACE_DISK], counts[LM_PLACE_DEVICE],
             counts[LM_PLACE_DEVICE_RAM], counts[LM_PLACE_DEVICE_DISK], plan->head_on_device,
             plan->parallel > 1 ? plan->parallel : 1, plan->prefetch,
             !plan->expert_cache_bytes ? "" : plan->evict_frequent ? "|experts-apart-lfu"
                                                                   : "|experts-apart",
             dev);
}

/* ---- the expert cache's hit rate: what runs of the same cache measured --- */

/* Kept as 1 + the rate: the cache's values are positive. */
static void hit_rate_key(const lm_model *m, const lm_plan *plan, char *key, size_t len)
{
    int from_disk = 0;
    for (int il = 0; il < plan->n_layer; il++)
        from_disk += plan->place[il] == LM_PLACE_DISK;
    /* (behind the device's cache, this one sees only its misses) */
    char dev[64];
    device_cache_part(plan, dev, sizeof dev);
    snprintf(key, len, "experts=w%llu|l%d|e%u|disk%d|slots%llu|%s%s",
             (unsigned long long)m->weight_bytes, plan->n_layer, m->hp.n_expert, from_disk,
             (unsigned long long)(plan->expert_cache_bytes / plan->expert_slot_bytes),
             plan->evict_frequent ? "frequent" : "recent", dev);
}

/* The hit rates of one of the plan's caches (device: the device's, else
 * the host's for the CPU's layers), giving up the least recently and the
 * least often used, replaying the routing the model's last run recorded
 * (expert_trace.h) over the layers the cache serves; false without a
 * trace of enough of their wants.  (The host's cache behind the device's
 * sees only the device's misses: it is not replayed.) */
static bool traced_hit_rates(const lm_model *m, const lm_plan *plan, bool device, double rate[2],
                             uint64_t *wants)
{
    lm_expert_trace *t = lm_expert_trace_load(m);
    bool *apart = calloc((size_t)plan->n_layer, sizeof *apart);
    *wants = 0;
    if (t && apart) {
        for (int il = 0; il < plan->n_layer; il++)
            apart[il] = device ? lm_plan_layer_device_experts_apart(m, plan, il)
                               : lm_plan_layer_experts_apart(m, plan, il);
        const int slots = (int)((device ? plan->device_expert_cache_bytes
                                        : plan->expert_cache_bytes) /
                                plan->expert_slot_bytes);
        rate[0] = lm_expert_trace_hit_rate(t, apart, slots, LM_EVICT_RECENT, wants);
        rate[1] = lm_expert_trace_hit_rate(t, apart, slots, LM_EVICT_FREQUENT, wants);
    }
    free(apart);
    lm_expert_trace_free(t);
    return *wants >= LEARN_MIN_EXPERTS;
}

/* Predicts again with the hit rate runs of this cache measured, where
 * there are some, else with this cache replaying the routing a run
 * recorded (routers are far from uniform).  The eviction, if the plan is
 * to choose it, is the one that hits more in the replay (least recently
 * used on a tie, or with no routing to replay). */
static void apply_hit_rate(const lm_model *m, lm_plan *plan)
{
    if (!plan->expert_slot_bytes)
        return;
    double traced[2], dev_traced[2];
    uint64_t wants, dev_wants;
    const bool dev_replayed = plan->device_experts_apart &&
                              traced_hit_rates(m, plan, true, dev_traced, &dev_wants);
    if (plan->evict_auto && dev_replayed) {
        plan->evict_frequent = dev_traced[1] > dev_traced[0];
        plan->evict_chosen = true;
    }
    if (dev_replayed) {
        plan->device_expert_hit_rate = dev_traced[plan->evict_frequent];
        plan->device_expert_hit_traced = dev_wants;
        lm_plan_predict(m, plan);
        plan->figures_token_ms = plan->token_ms;
    }
    if (!plan->expert_cache_bytes)
        return;
    const bool replayed = traced_hit_rates(m, plan, false, traced, &wants);
    if (plan->evict_auto && replayed && !dev_replayed) {
        plan->evict_frequent = traced[1] > traced[0];
        plan->evict_chosen = true;
    }
    char key[512];
    hit_rate_key(m, plan, key, sizeof key);
    learned l;
    double rate = -1;
    if (lm_probe_cache_load("learned", key, parse_learned, &l)) {
        rate = median(&l) - 1.0;
        plan->expert_hit_runs = rate >= 0 && rate <= 1 ? l.n : 0;
    }
    if (plan->expert_hit_runs == 0 && replayed) {
        rate = traced[plan->evict_frequent];
        plan->expert_hit_traced = wants;
    }
    if (rate < 0 || rate > 1)
        return;
    plan->expert_hit_rate = rate;
    lm_plan_predict(m, plan);
    plan->figures_token_ms = plan->token_ms;
}

void lm_plan_apply_learned(const lm_model *m, lm_plan *plan)
{
    apply_hit_rate(m, plan);
    plan->learned_runs = 0;
    plan->learned_factor = 1.0;
    char key[512];
    plan_cache_key(m, plan, key, sizeof key);
    learned l;
    if (!lm_probe_cache_load("learned", key, parse_learned, &l))
        return;
    const double f = median(&l);
    if (!sane(f))
        return;
    plan->learned_runs = l.n;
    plan->learned_factor = f;
    plan->token_ms *= f;
    plan->tokens_per_s = plan->token_ms > 0 ? 1e3 / plan->token_ms : 0;
    plan->first_token_ms *= f;
    plan->batch_pass_ms *= f;
    plan->batch_tokens_per_s /= f;
    plan->head_ms *= f;
    plan->cpu_ms *= f;
    plan->device_ms *= f;
    plan->disk_ms *= f;
    plan->copy_ms *= f;
    for (int il = 0; il < plan->n_layer; il++)
        plan->layer_ms[il] *= f;
}

/* ---- what a run measured ------------------------------------------------ */

/* Measured/probed compute of the layers a processor ran: those whose
 * weights stayed put if there were any (a streamed layer's compute shares
 * the cores and the memory with its reads and copies), else all of them.
 * 0 when it ran none. */
static double compute_factor(const lm_session *s, bool device)
{
    const lm_plan *plan = &s->plan;
    /* (a layer whose experts come through the device's cache copies them
     * between its kernels: its time is not the weights' compute alone) */
    bool any_fixed = false;
    for (int il = 0; il < plan->n_layer; il++)
        any_fixed |= lm_place_on_device(plan->place[il]) == device &&
                     !lm_place_streamed(plan->place[il]) &&
                     !lm_plan_layer_device_experts_apart(s->model, plan, il);
    double measured = 0, probe = 0;
    for (int il = 0; il < plan->n_layer; il++) {
        const lm_placement p = plan->place[il];
        const bool moving = lm_place_streamed(p) ||
                            lm_plan_layer_device_experts_apart(s->model, plan, il);
        if (lm_place_on_device(p) != device || (any_fixed && moving))
            continue;
        measured += s->timed_compute_seconds[il] * 1e3;
        probe += s->timed_probe_ms[il];
    }
    return probe > 0 && measured > 0 ? measured / probe : 0;
}

/* This run's own figure of each (0: not measured). */
static void measure_figures(const lm_session *s, double factor[LM_FIG_COUNT])
{
    const lm_plan *plan = &s->plan;
    for (int i = 0; i < LM_FIG_COUNT; i++)
        factor[i] = 0;
    if (s->timed_passes >= LEARN_MIN_PASSES) {
        factor[LM_FIG_CPU_LAYER] = compute_factor(s, false);
        factor[LM_FIG_DEVICE_LAYER] = compute_factor(s, true);
    }
    if (s->timed_passes >= LEARN_MIN_PASSES && s->timed_head_probe_ms > 0)
        factor[plan->head_on_device ? LM_FIG_DEVICE_HEAD : LM_FIG_CPU_HEAD] =
            s->timed_head_seconds * 1e3 / s->timed_head_probe_ms;
    /* rates: the probe's over the run's is the factor its times grow by */
    if (s->experts) {
        const lm_expert_cache_stats ex = lm_expert_cache_get_stats(s->experts);
        if (ex.bytes_read >= LEARN_MIN_BYTES && ex.read_seconds > 0 && plan->probes.disk_bw > 0)
            factor[LM_FIG_EXPERT_DISK] =
                plan->probes.disk_bw / ((double)ex.bytes_read / ex.read_seconds);
    }
    if (!s->streamer)
        return;
    const lm_streamer_stats st = lm_streamer_get_stats(s->streamer);
    if (st.bytes_read >= LEARN_MIN_BYTES && st.read_seconds > 0 && plan->probes.disk_bw > 0)
        factor[LM_FIG_DISK] = plan->probes.disk_bw / ((double)st.bytes_read / st.read_seconds);
    if (st.bytes_uploaded >= LEARN_MIN_BYTES && st.upload_seconds > 0 && plan->dev.h2d_bw > 0)
        factor[LM_FIG_COPY] = plan->dev.h2d_bw / ((double)st.bytes_uploaded / st.upload_seconds);
}

void lm_session_learn(const lm_session *s)
{
    const lm_plan *plan = &s->plan;
    if (!plan->place || plan->figures_token_ms <= 0)
        return;
    if (s->experts) { /* how busy the machine was does not change it */
        const lm_expert_cache_stats ex = lm_expert_cache_get_stats(s->experts);
        char key[512];
        hit_rate_key(s->model, plan, key, sizeof key);
        if (ex.wanted >= LEARN_MIN_EXPERTS)
            record(key, 1.0 + (double)ex.hits / (double)ex.wanted, plan->reprobed);
    }
    if (!lm_probe_settled(&s->watch, NULL))
        return; /* the machine was busy: what the run took says little */
    const lm_model *m = s->model;
    const lm_device_probes *dev = plan->has_device ? &plan->dev : NULL;
    double factor[LM_FIG_COUNT];
    measure_figures(s, factor);
    for (int i = 0; i < LM_FIG_COUNT; i++) {
        const double probe = probe_value(&plan->probes, dev, (lm_figure)i);
        if (!sane(factor[i]) || probe <= 0 || (on_device((lm_figure)i) && !dev))
            continue;
        char key[512];
        figure_cache_key(m, dev ? dev->label : NULL, (lm_figure)i, key, sizeof key);
        record(key, value_of(factor[i], probe, (lm_figure)i), plan->reprobed);
    }
    /* the plan predicted again from the figures as the next plan will have
     * them (this run's among them): what is left between that and the
     * measured one-token pass is the plan's own correction */
    if (s->decode_passes < LEARN_MIN_PASSES)
        return;
    lm_plan now = *plan;
    now.layer_ms = malloc((size_t)plan->n_layer * sizeof *now.layer_ms);
    if (!now.layer_ms)
        return;
    lm_learned_load(m, &plan->probes, dev, &now.learned);
    /* with the hit rates this run's caches had, not the ones guessed: the
     * next plan predicts those from this run (measured or replayed), and a
     * correction that also made up for a wrong guess would count it twice */
    if (s->experts) {
        const lm_expert_cache_stats ex = lm_expert_cache_get_stats(s->experts);
        if (ex.wanted > 0)
            now.expert_hit_rate = (double)ex.hits / (double)ex.wanted;
    }
    if (s->device && s->device->ops->expert_stats && plan->device_experts_apart) {
        const lm_backend_expert_stats ex = s->device->ops->expert_stats(s->device);
        if (ex.wanted > 0)
            now.device_expert_hit_rate = (double)ex.hits / (double)ex.wanted;
    }
    lm_plan_predict(m, &now);
    const double measured_ms = s->decode_seconds * 1e3 / (double)s->decode_passes;
    char key[512];
    plan_cache_key(m, plan, key, sizeof key);
    if (now.token_ms > 0 && sane(measured_ms / now.token_ms))
        record(key, measured_ms / now.token_ms, plan->reprobed);
    free(now.layer_ms);
}
