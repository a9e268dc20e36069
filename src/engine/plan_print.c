/* How a plan is shown: the table and figures `lamina plan` prints, the
 * same as JSON, and the one-line summary other commands print. */
#include "plan.h"

#include <jansson.h>

#include "error.h"
#include "json_out.h"

#define MIB(x) ((double)(x) / (1024.0 * 1024.0))

static const char *place_name(lm_placement p)
{
    static const char *names[LM_PLACE_COUNT] = {
        [LM_PLACE_RAM] = "cpu, weights in RAM",
        [LM_PLACE_DISK] = "cpu, streamed from disk",
        [LM_PLACE_DEVICE] = "device, resident",
        [LM_PLACE_DEVICE_RAM] = "device, streamed from RAM",
        [LM_PLACE_DEVICE_DISK] = "device, streamed from disk",
    };
    return names[p];
}

static const char *place_key(lm_placement p)
{
    static const char *keys[LM_PLACE_COUNT] = {
        [LM_PLACE_RAM] = "ram",
        [LM_PLACE_DISK] = "disk",
        [LM_PLACE_DEVICE] = "device",
        [LM_PLACE_DEVICE_RAM] = "device_from_ram",
        [LM_PLACE_DEVICE_DISK] = "device_from_disk",
    };
    return keys[p];
}

/* Runs of consecutive layers with the same placement and size. */
static int run_end(const lm_plan *plan, int start)
{
    int end = start + 1;
    while (end < plan->n_layer && plan->place[end] == plan->place[start] &&
           plan->layer_bytes[end] == plan->layer_bytes[start])
        end++;
    return end;
}

/* One of the figures a prediction is made of: its probe's value and what
 * the plan uses after the runs' correction. */
typedef struct {
    const char *label, *unit;
    double probe, used;
    bool in_plan; /* the plan has a part this figure times */
} figure_view;

static figure_view figure_of(const lm_plan *plan, lm_figure fig)
{
    bool cpu = false, device = false, disk = false, copy = false;
    for (int il = 0; il < plan->n_layer; il++) {
        const lm_placement p = plan->place[il];
        cpu |= !lm_place_on_device(p);
        device |= lm_place_on_device(p);
        disk |= (p == LM_PLACE_DISK && !plan->expert_cache_bytes) || p == LM_PLACE_DEVICE_DISK;
        copy |= p == LM_PLACE_DEVICE_RAM || p == LM_PLACE_DEVICE_DISK;
    }
    const double f = plan->learned.factor[fig];
    figure_view v = {0};
    switch (fig) {
    case LM_FIG_CPU_LAYER:
        v = (figure_view){"CPU, layer 0", "ms/token", plan->probes.cpu_layer_ms, 0, cpu};
        break;
    case LM_FIG_DEVICE_LAYER:
        v = (figure_view){"device, layer 0", "ms/token", plan->dev.layer_ms, 0, device};
        break;
    case LM_FIG_CPU_HEAD:
        v = (figure_view){"CPU, output head", "ms/token", plan->probes.cpu_head_ms, 0,
                          !plan->head_on_device};
        break;
    case LM_FIG_DEVICE_HEAD:
        v = (figure_view){"device, output head", "ms/token", plan->dev.head_ms, 0,
                          plan->head_on_device};
        break;
    case LM_FIG_DISK:
        v = (figure_view){"disk reads", "GB/s", plan->probes.disk_bw / 1e9, 0, disk};
        break;
    case LM_FIG_COPY:
        v = (figure_view){"host->device copies", "GB/s", plan->dev.h2d_bw / 1e9, 0, copy};
        break;
    case LM_FIG_EXPERT_DISK:
        v = (figure_view){"routed expert reads", "GB/s", plan->probes.disk_bw / 1e9, 0,
                          plan->expert_cache_bytes > 0};
        break;
    default:
        break;
    }
    /* a time grows with the factor, a rate shrinks */
    v.used = lm_figure_is_rate(fig) ? v.probe / f : v.probe * f;
    return v;
}

static void print_figures(const lm_plan *plan, FILE *f)
{
    fprintf(f, "figures (probes, corrected by what runs measured):\n");
    for (int i = 0; i < LM_FIG_COUNT; i++) {
        const figure_view v = figure_of(plan, (lm_figure)i);
        if (!v.in_plan)
            continue;
        const int runs = plan->learned.runs[i];
        fprintf(f, "  %-22s %9.3f %-9s", v.label, v.used, v.unit);
        if (runs > 0)
            fprintf(f, "from %d measured run%s (x%.2f of the probe's %.3f)\n", runs,
                    runs == 1 ? "" : "s", plan->learned.factor[i], v.probe);
        else
            fprintf(f, "probe\n");
    }
}

/* "cache of X MiB (N experts, the least ... used given up; predicted
 * hit rate R%, as SOURCE)": one of the plan's expert caches, its hit rate
 * measured by `runs` runs, else replayed over `traced` wants, else a
 * uniform router's. */
static void describe_cache(const lm_plan *plan, uint64_t bytes, double rate, int runs,
                           uint64_t traced, char *buf, size_t len)
{
    char source[96];
    if (runs > 0)
        snprintf(source, sizeof source, "as the last %d run%s of this cache measured", runs,
                 runs == 1 ? "" : "s");
    else if (traced > 0)
        snprintf(source, sizeof source, "replaying the routing of %llu experts a run used",
                 (unsigned long long)traced);
    else
        snprintf(source, sizeof source, "were every expert as likely");
    snprintf(buf, len,
             "cache of %.1f MiB (%llu experts, the least %s used given up%s; predicted hit "
             "rate %.0f%%, %s)",
             MIB(bytes), (unsigned long long)(bytes / plan->expert_slot_bytes),
             plan->evict_frequent ? "often" : "recently",
             plan->evict_chosen ? ", which hits more replaying the routing" : "", 100.0 * rate,
             source);
}

/* How a mixture of experts' layers read from disk are read, and those on
 * the device without their experts get them. */
static void print_experts(const lm_plan *plan, FILE *f)
{
    char cache[320];
    if (plan->device_experts_apart) {
        describe_cache(plan, plan->device_expert_cache_bytes, plan->device_expert_hit_rate, 0,
                       plan->device_expert_hit_traced, cache, sizeof cache);
        fprintf(f, "experts: the device's layers keep the rest of themselves there and the "
                   "experts routed to (%d of %d per token) in a device %s, copied from %s\n",
                plan->n_expert_used, plan->n_expert, cache,
                plan->device_experts_from_disk ? "the expert cache below (read from disk)"
                                               : "RAM");
    }
    if (!plan->n_expert || !plan->dense_read_bytes_per_token)
        return;
    if (!plan->expert_cache_bytes) {
        fprintf(f, "experts: the layers from disk are read whole, all %d experts each "
                   "(--whole-layers): %.1f MiB per token\n",
                plan->n_expert, MIB(plan->dense_read_bytes_per_token));
        return;
    }
    describe_cache(plan, plan->expert_cache_bytes, plan->expert_hit_rate, plan->expert_hit_runs,
                   plan->expert_hit_traced, cache, sizeof cache);
    fprintf(f, "experts: the layers from disk read only the experts routed to (%d of %d per "
               "token), through a %s; the rest of them stays in RAM\n",
            plan->n_expert_used, plan->n_expert, cache);
    fprintf(f, "  per token %.1f MiB read from disk, against %.1f MiB reading every expert "
               "(%.1fx fewer)\n",
            MIB(plan->read_bytes_per_token), MIB(plan->dense_read_bytes_per_token),
            plan->read_bytes_per_token ? (double)plan->dense_read_bytes_per_token /
                                             (double)plan->read_bytes_per_token
                                       : 0.0);
}

void lm_plan_print(const lm_plan *plan, FILE *f)
{
    fprintf(f, "%-12s %-26s %12s %14s\n", "layers", "placement", "MiB each", "ms/token each");
    for (int a = 0; a < plan->n_layer;) {
        const int b = run_end(plan, a);
        char range[32];
        snprintf(range, sizeof range, b - a > 1 ? "%d-%d" : "%d", a, b - 1);
        const bool apart = plan->expert_cache_bytes && plan->place[a] == LM_PLACE_DISK;
        const bool dev_apart = plan->device_experts_apart && plan->place[a] == LM_PLACE_DEVICE;
        fprintf(f, "%-12s %-26s %12.2f %14.3f\n", range,
                apart       ? "cpu, routed experts from disk"
                : dev_apart ? "device, experts cached"
                            : place_name(plan->place[a]),
                MIB(plan->layer_bytes[a]), plan->layer_ms[a]);
        a = b;
    }
    fprintf(f, "%-12s %-26s %12.2f %14.3f\n", "output",
            plan->head_on_device ? "device, resident" : "cpu, in RAM", MIB(plan->head_bytes),
            plan->head_ms);
    fprintf(f, "\nRAM: %.1f MiB of a %.1f MiB budget (weights %.1f, output head %.1f, KV cache "
               "%.1f, staging %.1f, activations %.1f, overhead %.1f",
            MIB(plan->ram_total), MIB(plan->ram_budget), MIB(plan->ram_weights),
            MIB(plan->head_bytes), MIB(plan->kv_bytes - plan->device_kv_bytes),
            MIB(plan->staging_bytes), MIB(plan->activation_bytes), MIB(LM_PLAN_RAM_OVERHEAD));
    if (plan->expert_cache_bytes)
        fprintf(f, ", expert cache %.1f", MIB(plan->expert_cache_bytes));
    if (plan->dev.is_cpu && plan->device_total)
        fprintf(f, ", the CPU device's memory %.1f", MIB(plan->device_total));
    fprintf(f, ")\n");
    print_experts(plan, f);
    if (plan->device_total) {
        fprintf(f, "device: %.1f MiB of a %.1f MiB budget (weights %.1f, KV cache %.1f, layer "
                   "slots %.1f, activations %.1f%s",
                MIB(plan->device_total), MIB(plan->vram_budget), MIB(plan->device_weights),
                MIB(plan->device_kv_bytes), MIB(plan->device_slot_bytes),
                MIB(plan->device_activation_bytes),
                plan->head_on_device ? ", output head and logits" : "");
        if (plan->device_experts_apart)
            fprintf(f, ", expert cache %.1f", MIB(plan->device_expert_cache_bytes));
        fprintf(f, ")\n");
    }
    fprintf(f, "probes%s: RAM %.2f GB/s, disk %.2f GB/s (uncached)\n",
            plan->probes.from_cache ? " (cached)" : "", plan->probes.ram_bw / 1e9,
            plan->probes.disk_bw / 1e9);
    if (plan->has_device)
        fprintf(f, "device probes%s: %s, %.0f MiB%s; host->device %.2f GB/s, layer 0 %.3f "
                   "ms/token\n",
                plan->dev.from_cache ? " (cached)" : "", plan->dev.label, MIB(plan->dev.memory),
                plan->dev.is_cpu ? " (the host's CPU cores: copies to it do not overlap its "
                                   "compute)" : "",
                plan->dev.h2d_bw / 1e9, plan->dev.layer_ms);
    fprintf(f, "per token: CPU compute %.1f ms, device compute %.1f ms, disk reads %.1f ms, "
               "copies to the device %.1f ms%s\n",
            plan->cpu_ms, plan->device_ms, plan->disk_ms, plan->copy_ms,
            plan->prefetch ? " (reads and copies overlap compute)" : "");
    print_figures(plan, f);
    fprintf(f, "predicted: %.2f tokens/s decode (%.1f ms/token), first token after %.1f ms\n",
            plan->tokens_per_s, plan->token_ms, plan->first_token_ms);
    if (plan->learned_runs > 0)
        fprintf(f, "  corrected by the last %d measured run%s of this plan (measured/predicted "
                   "%.2f); the probes alone predicted %.2f tokens/s\n",
                plan->learned_runs, plan->learned_runs == 1 ? "" : "s", plan->learned_factor,
                plan->probe_token_ms > 0 ? 1e3 / plan->probe_token_ms : 0.0);
    else
        fprintf(f, "  no run of this plan measured yet; the probes alone predicted %.2f "
                   "tokens/s\n", plan->probe_token_ms > 0 ? 1e3 / plan->probe_token_ms : 0.0);
    if (plan->parallel > 1)
        fprintf(f, "predicted with %d sequences: %.2f tokens/s decode in all (%.1f ms a pass, "
                   "%.2f tokens/s each)\n",
                plan->parallel, plan->batch_tokens_per_s, plan->batch_pass_ms,
                plan->batch_tokens_per_s / plan->parallel);
    fprintf(f, "bottleneck: %s\n", plan->bottleneck);
}

json_t *lm_plan_json(const lm_plan *plan)
{
    json_t *layers = json_array();
    for (int il = 0; layers && il < plan->n_layer; il++)
        json_array_append_new(layers, json_pack("{s:i, s:s, s:I, s:f}", "layer", il, "placement",
                                                plan->device_experts_apart &&
                                                        plan->place[il] == LM_PLACE_DEVICE
                                                    ? "device_experts_cached"
                                                    : place_key(plan->place[il]),
                                                "bytes",
                                                (json_int_t)plan->layer_bytes[il], "ms_per_token",
                                                plan->layer_ms[il]));
    json_t *obj = json_pack(
        "{s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:s, "
        "s:b, s:b, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:i, s:f, s:f}",
        "layers", layers, "output_head_bytes", (json_int_t)plan->head_bytes, "ram_budget_bytes",
        (json_int_t)plan->ram_budget, "ram_bytes", (json_int_t)plan->ram_total,
        "ram_weight_bytes", (json_int_t)plan->ram_weights, "kv_cache_bytes",
        (json_int_t)plan->kv_bytes, "staging_bytes", (json_int_t)plan->staging_bytes,
        "activation_bytes", (json_int_t)plan->activation_bytes, "overhead_bytes",
        (json_int_t)LM_PLAN_RAM_OVERHEAD, "device_bytes", (json_int_t)plan->device_total,
        "vram_budget_bytes", (json_int_t)plan->vram_budget, "ram_bandwidth_bytes_per_s",
        (json_int_t)plan->probes.ram_bw, "disk_bandwidth_bytes_per_s",
        (json_int_t)plan->probes.disk_bw, "predicted_decode_tokens_per_s", plan->tokens_per_s,
        "predicted_ms_per_token", plan->token_ms, "predicted_time_to_first_token_ms",
        plan->first_token_ms, "bottleneck", plan->bottleneck, "prefetch", plan->prefetch,
        "output_head_on_device", plan->head_on_device, "device_weight_bytes",
        (json_int_t)plan->device_weights, "device_kv_cache_bytes",
        (json_int_t)plan->device_kv_bytes, "device_slot_bytes",
        (json_int_t)plan->device_slot_bytes, "h2d_bandwidth_bytes_per_s",
        (json_int_t)plan->dev.h2d_bw, "predicted_cpu_ms", plan->cpu_ms, "predicted_device_ms",
        plan->device_ms, "predicted_disk_ms", plan->disk_ms, "predicted_copy_ms", plan->copy_ms,
        "parallel", plan->parallel, "predicted_parallel_decode_tokens_per_s",
        plan->batch_tokens_per_s, "predicted_parallel_ms_per_pass", plan->batch_pass_ms);
    if (obj) {
        json_object_set_new(obj, "learned_runs", json_integer(plan->learned_runs));
        json_object_set_new(obj, "predicted_read_bytes_per_token",
                            json_integer((json_int_t)plan->read_bytes_per_token));
        json_object_set_new(obj, "dense_read_bytes_per_token",
                            json_integer((json_int_t)plan->dense_read_bytes_per_token));
        if (plan->n_expert) {
            json_object_set_new(obj, "experts", json_integer(plan->n_expert));
            json_object_set_new(obj, "experts_per_token", json_integer(plan->n_expert_used));
            json_object_set_new(obj, "expert_cache_bytes",
                                json_integer((json_int_t)plan->expert_cache_bytes));
            json_object_set_new(obj, "predicted_expert_cache_hit_rate",
                                json_real(plan->expert_hit_rate));
            json_object_set_new(obj, "expert_cache_hit_rate_runs",
                                json_integer(plan->expert_hit_runs));
            json_object_set_new(obj, "expert_cache_hit_rate_traced",
                                json_integer((json_int_t)plan->expert_hit_traced));
            json_object_set_new(obj, "expert_evict",
                                json_string(plan->evict_frequent ? "frequent" : "recent"));
            json_object_set_new(obj, "device_expert_cache_bytes",
                                json_integer((json_int_t)plan->device_expert_cache_bytes));
            if (plan->device_experts_apart) {
                json_object_set_new(obj, "predicted_device_expert_cache_hit_rate",
                                    json_real(plan->device_expert_hit_rate));
                json_object_set_new(obj, "device_expert_cache_hit_rate_traced",
                                    json_integer((json_int_t)plan->device_expert_hit_traced));
                json_object_set_new(obj, "device_experts_from_disk",
                                    json_boolean(plan->device_experts_from_disk));
                json_object_set_new(obj, "device_expert_cache_experts",
                                    json_integer((json_int_t)(plan->device_expert_cache_bytes /
                                                              plan->expert_slot_bytes)));
            }
        }
        json_object_set_new(obj, "learned_factor", json_real(plan->learned_factor));
        json_object_set_new(obj, "probe_predicted_decode_tokens_per_s",
                            json_real(plan->probe_token_ms > 0 ? 1e3 / plan->probe_token_ms
                                                               : 0.0));
        json_object_set_new(obj, "figures_predicted_decode_tokens_per_s",
                            json_real(plan->figures_token_ms > 0 ? 1e3 / plan->figures_token_ms
                                                                 : 0.0));
        json_t *figures = json_object();
        for (int i = 0; figures && i < LM_FIG_COUNT; i++) {
            const figure_view v = figure_of(plan, (lm_figure)i);
            json_object_set_new(
                figures, lm_figure_key((lm_figure)i),
                json_pack("{s:s, s:f, s:f, s:s, s:i, s:f, s:s, s:b}", "label", v.label, "probe",
                          v.probe, "value", v.used, "unit", v.unit, "learned_runs",
                          plan->learned.runs[i], "learned_factor", plan->learned.factor[i],
                          "source", plan->learned.runs[i] > 0 ? "measured runs" : "probe",
                          "in_plan", v.in_plan));
        }
        json_object_set_new(obj, "figures", figures);
    }
    return obj;
}

void lm_plan_print_json(const lm_plan *plan, FILE *f)
{
    if (lm_json_write(lm_plan_json(plan), f) != 0)
        fprintf(stderr, "lamina: %s\n", lm_last_error());
}

static bool corrected(const lm_plan *plan)
{
    bool any = plan->learned_runs > 0;
    for (int i = 0; i < LM_FIG_COUNT; i++)
        any |= plan->learned.runs[i] > 0 && figure_of(plan, (lm_figure)i).in_plan;
    return any;
}

void lm_plan_print_summary(const lm_plan *plan, FILE *f)
{
    int counts[LM_PLACE_COUNT] = {0};
    for (int il = 0; il < plan->n_layer; il++)
        counts[plan->place[il]]++;
    fprintf(f, "lamina: plan: %d layers in RAM, %d streamed from disk, %d on the device",
            counts[LM_PLACE_RAM], counts[LM_PLACE_DISK],
            counts[LM_PLACE_DEVICE] + counts[LM_PLACE_DEVICE_RAM] + counts[LM_PLACE_DEVICE_DISK]);
    if (counts[LM_PLACE_DEVICE_RAM] + counts[LM_PLACE_DEVICE_DISK])
        fprintf(f, " (%d resident, %d streamed from RAM, %d from disk)", counts[LM_PLACE_DEVICE],
                counts[LM_PLACE_DEVICE_RAM], counts[LM_PLACE_DEVICE_DISK]);
    fprintf(f, "; RAM %.0f of %.0f MiB", MIB(plan->ram_total), MIB(plan->ram_budget));
    if (plan->device_total)
        fprintf(f, "; device %.0f of %.0f MiB", MIB(plan->device_total), MIB(plan->vram_budget));
    fprintf(f, "; predicted %.2f tokens/s (%s%s)\n", plan->tokens_per_s, plan->bottleneck,
            corrected(plan) ? ", corrected by measured runs" : "");
}
