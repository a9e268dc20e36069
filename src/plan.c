#define _GNU_SOURCE
#include "plan.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "streamer.h"

#define MIB(x) ((double)(x) / (1024.0 * 1024.0))

int lm_parse_size(const char *text, uint64_t *bytes)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    while (*end == ' ')
        end++;
    double unit = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': unit = 1024.0; end++; break;
    case 'M': unit = 1024.0 * 1024; end++; break;
    case 'G': unit = 1024.0 * 1024 * 1024; end++; break;
    case 'T': unit = 1024.0 * 1024 * 1024 * 1024; end++; break;
    }
    if (unit > 1 && (*end == 'i' || *end == 'I'))
        end++;
    if (unit > 1 && (*end == 'b' || *end == 'B'))
        end++;
    if (errno || end == text || *end || !(v > 0) || v * unit > 1.8e19) {
        lm_set_error("invalid size '%s' (for example 512M, 4G, 1.5G)", text);
        return -1;
    }
    *bytes = (uint64_t)(v * unit);
    return 0;
}

uint64_t lm_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    fclose(f);
    return (uint64_t)kib * 1024;
}

/* ms to run a layer's products on the CPU for one token */
static double compute_ms(const lm_probes *p, const lm_gguf_tensor *const *t, int n, int n_tok)
{
    double s = 0;
    for (int i = 0; i < n; i++) {
        if (!t[i] || t[i]->n_dims != 2)
            continue;
        const double bw = n_tok > 1 ? p->cpu_prompt_bw[t[i]->type] : p->cpu_decode_bw[t[i]->type];
        if (bw > 0)
            s += (double)t[i]->nbytes * n_tok / bw;
    }
    return s * 1e3;
}

static double layer_compute_ms(const lm_model *m, const lm_probes *p, int il, int n_tok)
{
    return compute_ms(p, m->layers[il].t, LM_W_PER_LAYER, n_tok);
}

static double layer_ms(const lm_plan *plan, const lm_model *m, int il, int n_tok)
{
    const double compute = layer_compute_ms(m, &plan->probes, il, n_tok);
    if (plan->place[il] != LM_PLACE_DISK)
        return compute;
    const double read = plan->probes.disk_bw > 0
                            ? (double)plan->layer_bytes[il] / plan->probes.disk_bw * 1e3
                            : 0.0;
    return plan->prefetch ? fmax(read, compute) : read + compute;
}

static void fixed_costs(const lm_model *m, const lm_plan_request *req, lm_plan *plan)
{
    const lm_hparams *hp = &m->hp;
    const uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
    const uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
    plan->kv_bytes = (uint64_t)req->n_ctx * hp->n_layer * kv_dim * 2 * sizeof(uint16_t);
    plan->activation_bytes =
        (uint64_t)req->n_batch * (3 * hp->n_embd + 2 * q_dim + 2 * kv_dim + 2 * hp->n_ff) *
            sizeof(float) +
        (uint64_t)hp->n_vocab * sizeof(float) * 2;
    plan->head_bytes = m->output->nbytes + m->output_norm->nbytes +
                       (hp->tied_embeddings ? 0 : m->tok_embd->nbytes);
}

/* Staging memory if layers [first, n) are streamed. */
static uint64_t staging_for(const lm_plan *plan, const lm_model *m, int first, bool prefetch)
{
    uint64_t most = 0;
    for (int il = first; il < plan->n_layer; il++) {
        uint64_t b = lm_streamer_layer_bytes(m, il);
        most = b > most ? b : most;
    }
    return most * (prefetch ? 2 : 1);
}

static int place_cpu_layers(const lm_model *m, const lm_plan_request *req, lm_plan *plan)
{
    const uint64_t fixed =
        plan->kv_bytes + plan->activation_bytes + plan->head_bytes + LM_PLAN_RAM_OVERHEAD;
    /* the most layers that fit, keeping the first ones in RAM */
    int keep = -1;
    uint64_t resident = 0, best_total = 0;
    for (int k = 0; k <= plan->n_layer; k++) {
        const uint64_t total = fixed + resident + staging_for(plan, m, k, req->prefetch);
        if (total <= plan->ram_budget && (req->force_ram_layers < 0 || k <= req->force_ram_layers)) {
            keep = k;
            best_total = total;
        }
        if (k < plan->n_layer)
            resident += plan->layer_bytes[k];
    }
    if (keep < 0) {
        const uint64_t need = fixed + staging_for(plan, m, 0, req->prefetch);
        lm_set_error("a RAM budget of %.0f MiB cannot hold even one streamed layer with its "
                     "buffers: at least %.0f MiB is needed (KV cache %.0f MiB, output head "
                     "%.0f MiB, staging %.0f MiB, overhead %.0f MiB)",
                     MIB(plan->ram_budget), MIB(need), MIB(plan->kv_bytes), MIB(plan->head_bytes),
                     MIB(staging_for(plan, m, 0, req->prefetch)), MIB(LM_PLAN_RAM_OVERHEAD));
        return -1;
    }
    for (int il = 0; il < plan->n_layer; il++) {
        plan->place[il] = il < keep ? LM_PLACE_RAM : LM_PLACE_DISK;
        if (il < keep)
            plan->ram_weights += plan->layer_bytes[il];
    }
    plan->staging_bytes = staging_for(plan, m, keep, req->prefetch);
    plan->ram_total = best_total;
    return 0;
}

static int place_device_layers(lm_plan *plan)
{
    uint64_t weights = 0;
    for (int il = 0; il < plan->n_layer; il++) {
        plan->place[il] = LM_PLACE_DEVICE;
        weights += plan->layer_bytes[il];
    }
    plan->device_total = weights + plan->head_bytes + plan->kv_bytes + plan->activation_bytes;
    plan->ram_total = plan->activation_bytes + LM_PLAN_RAM_OVERHEAD;
    if (plan->vram_budget && plan->device_total > plan->vram_budget) {
        lm_set_error("the model needs %.0f MiB of device memory, more than the VRAM budget of "
                     "%.0f MiB; streaming layers to the device is not in this version (use "
                     "--backend cpu)",
                     MIB(plan->device_total), MIB(plan->vram_budget));
        return -1;
    }
    return 0;
}

static void predict(const lm_model *m, const lm_plan_request *req, lm_plan *plan)
{
    const lm_gguf_tensor *head[1] = {m->output};
    double read_ms = 0, compute_total = 0, first = 0;
    const int n_prompt = req->n_prompt > 0 ? req->n_prompt : 1;
    plan->head_ms = compute_ms(&plan->probes, head, 1, 1);
    plan->token_ms = plan->head_ms;
    for (int il = 0; il < plan->n_layer; il++) {
        plan->layer_ms[il] = layer_ms(plan, m, il, 1);
        plan->token_ms += plan->layer_ms[il];
        first += layer_ms(plan, m, il, n_prompt);
        compute_total += layer_compute_ms(m, &plan->probes, il, 1);
        if (plan->place[il] == LM_PLACE_DISK && plan->probes.disk_bw > 0)
            read_ms += (double)plan->layer_bytes[il] / plan->probes.disk_bw * 1e3;
    }
    plan->first_token_ms = first + plan->head_ms;
    plan->tokens_per_s = plan->token_ms > 0 ? 1e3 / plan->token_ms : 0;
    if (req->device)
        plan->bottleneck = "the device (every layer resident)";
    else if (read_ms > compute_total)
        plan->bottleneck = plan->prefetch ? "disk read bandwidth (RAM budget)"
                                          : "disk reads, not overlapped (--no-prefetch)";
    else
        plan->bottleneck = "CPU compute on the weights";
}

int lm_plan_make(const lm_model *m, const lm_plan_request *req, const lm_probes *probes,
                 lm_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->n_layer = (int)m->hp.n_layer;
    plan->probes = *probes;
    plan->prefetch = req->prefetch;
    plan->place = calloc((size_t)plan->n_layer, sizeof *plan->place);
    plan->layer_bytes = calloc((size_t)plan->n_layer, sizeof *plan->layer_bytes);
    plan->layer_ms = calloc((size_t)plan->n_layer, sizeof *plan->layer_ms);
    if (!plan->place || !plan->layer_bytes || !plan->layer_ms) {
        lm_plan_free(plan);
        lm_set_error("out of memory");
        return -1;
    }
    for (int il = 0; il < plan->n_layer; il++)
        plan->layer_bytes[il] = m->layers[il].nbytes;
    if (req->ram_budget) {
        plan->ram_budget = req->ram_budget;
    } else {
        const uint64_t avail = lm_mem_available();
        const uint64_t margin = avail / 10 > ((uint64_t)512 << 20) ? avail / 10 : (uint64_t)512 << 20;
        plan->ram_budget = avail > margin ? avail - margin : avail;
    }
    plan->vram_budget = req->vram_budget;
    fixed_costs(m, req, plan);
    if ((req->device ? place_device_layers(plan) : place_cpu_layers(m, req, plan)) != 0) {
        lm_plan_free(plan);
        return -1;
    }
    predict(m, req, plan);
    return 0;
}

void lm_plan_free(lm_plan *plan)
{
    free(plan->place);
    free(plan->layer_bytes);
    free(plan->layer_ms);
    plan->place = NULL;
    plan->layer_bytes = NULL;
    plan->layer_ms = NULL;
}

int lm_plan_streamed_layers(const lm_plan *plan, int *layers)
{
    int n = 0;
    for (int il = 0; il < plan->n_layer; il++)
        if (plan->place[il] == LM_PLACE_DISK)
            layers[n++] = il;
    return n;
}

static const char *place_name(lm_placement p)
{
    static const char *names[] = {
        [LM_PLACE_RAM] = "cpu, weights in RAM",
        [LM_PLACE_DISK] = "cpu, streamed from disk",
        [LM_PLACE_DEVICE] = "device, resident",
    };
    return names[p];
}

static const char *place_key(lm_placement p)
{
    static const char *keys[] = {[LM_PLACE_RAM] = "ram", [LM_PLACE_DISK] = "disk",
                                 [LM_PLACE_DEVICE] = "device"};
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

void lm_plan_print(const lm_plan *plan, FILE *f)
{
    fprintf(f, "%-12s %-26s %12s %14s\n", "layers", "placement", "MiB each", "ms/token each");
    for (int a = 0; a < plan->n_layer;) {
        const int b = run_end(plan, a);
        char range[32];
        snprintf(range, sizeof range, b - a > 1 ? "%d-%d" : "%d", a, b - 1);
        fprintf(f, "%-12s %-26s %12.2f %14.3f\n", range, place_name(plan->place[a]),
                MIB(plan->layer_bytes[a]), plan->layer_ms[a]);
        a = b;
    }
    fprintf(f, "%-12s %-26s %12.2f %14.3f\n", "output", "cpu, in RAM", MIB(plan->head_bytes),
            plan->head_ms);
    fprintf(f, "\nRAM: %.1f MiB of a %.1f MiB budget (weights %.1f, output head %.1f, KV cache "
               "%.1f, staging %.1f, activations %.1f, overhead %.1f)\n",
            MIB(plan->ram_total), MIB(plan->ram_budget), MIB(plan->ram_weights),
            MIB(plan->head_bytes), MIB(plan->kv_bytes), MIB(plan->staging_bytes),
            MIB(plan->activation_bytes), MIB(LM_PLAN_RAM_OVERHEAD));
    if (plan->device_total)
        fprintf(f, "device: %.1f MiB\n", MIB(plan->device_total));
    fprintf(f, "probes%s: RAM %.2f GB/s, disk %.2f GB/s (uncached)\n",
            plan->probes.from_cache ? " (cached)" : "", plan->probes.ram_bw / 1e9,
            plan->probes.disk_bw / 1e9);
    fprintf(f, "predicted: %.2f tokens/s decode (%.1f ms/token), first token after %.1f ms\n",
            plan->tokens_per_s, plan->token_ms, plan->first_token_ms);
    fprintf(f, "bottleneck: %s\n", plan->bottleneck);
}

void lm_plan_print_json(const lm_plan *plan, FILE *f)
{
    fprintf(f, "{\"layers\": [");
    for (int il = 0; il < plan->n_layer; il++)
        fprintf(f, "%s{\"layer\": %d, \"placement\": \"%s\", \"bytes\": %llu, \"ms_per_token\": "
                   "%.4f}",
                il ? ", " : "", il, place_key(plan->place[il]),
                (unsigned long long)plan->layer_bytes[il], plan->layer_ms[il]);
    fprintf(f,
            "], \"output_head_bytes\": %llu, \"ram_budget_bytes\": %llu, \"ram_bytes\": %llu, "
            "\"ram_weight_bytes\": %llu, \"kv_cache_bytes\": %llu, \"staging_bytes\": %llu, "
            "\"activation_bytes\": %llu, \"overhead_bytes\": %llu, \"device_bytes\": %llu, "
            "\"vram_budget_bytes\": %llu, \"ram_bandwidth_bytes_per_s\": %.0f, "
            "\"disk_bandwidth_bytes_per_s\": %.0f, \"predicted_decode_tokens_per_s\": %.3f, "
            "\"predicted_ms_per_token\": %.3f, \"predicted_time_to_first_token_ms\": %.3f, "
            "\"bottleneck\": \"%s\", \"prefetch\": %s}\n",
            (unsigned long long)plan->head_bytes, (unsigned long long)plan->ram_budget,
            (unsigned long long)plan->ram_total, (unsigned long long)plan->ram_weights,
            (unsigned long long)plan->kv_bytes, (unsigned long long)plan->staging_bytes,
            (unsigned long long)plan->activation_bytes,
            (unsigned long long)LM_PLAN_RAM_OVERHEAD, (unsigned long long)plan->device_total,
            (unsigned long long)plan->vram_budget, plan->probes.ram_bw, plan->probes.disk_bw,
            plan->tokens_per_s, plan->token_ms, plan->first_token_ms, plan->bottleneck,
            plan->prefetch ? "true" : "false");
}

void lm_plan_print_summary(const lm_plan *plan, FILE *f)
{
    int counts[3] = {0};
    for (int il = 0; il < plan->n_layer; il++)
        counts[plan->place[il]]++;
    fprintf(f, "lamina: plan: %d layers in RAM, %d streamed from disk, %d on the device; "
               "RAM %.0f of %.0f MiB; predicted %.2f tokens/s (%s)\n",
            counts[LM_PLACE_RAM], counts[LM_PLACE_DISK], counts[LM_PLACE_DEVICE],
            MIB(plan->ram_total), MIB(plan->ram_budget), plan->tokens_per_s, plan->bottleneck);
}
