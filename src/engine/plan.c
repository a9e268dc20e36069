#define _GNU_SOURCE
#include "plan.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "error.h"
#include "expert_cache.h"
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

/* ms to run a layer's products on the CPU for n_tok tokens */
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

bool lm_place_on_device(lm_placement p)
{
    return p == LM_PLACE_DEVICE || p == LM_PLACE_DEVICE_RAM || p == LM_PLACE_DEVICE_DISK;
}

bool lm_place_streamed(lm_placement p)
{
    return p == LM_PLACE_DISK || p == LM_PLACE_DEVICE_RAM || p == LM_PLACE_DEVICE_DISK;
}

static double ms_for(uint64_t bytes, double bytes_per_s)
{
    return bytes_per_s > 0 ? (double)bytes / bytes_per_s * 1e3 : 0.0;
}

/* The parts of layer il's time for n_tok tokens where the plan puts it. */
typedef struct {
    double cpu, device, disk, copy;
    double copy_between; /* copies queued between the layer's kernels (the
                            device's expert cache's): they do not overlap */
} layer_cost;

/* Layer il's share of layer 0's measured time: their ratio by the per-type
 * figures (the same shape and types give 1; a layer with Q6_K where layer 0
 * has Q4_K costs more), or by bytes without them. */
static double share_of_layer0(const lm_plan *plan, const lm_model *m, int il, int n_tok)
{
    const double own = compute_ms(&plan->probes, m->layers[il].t, LM_W_PER_LAYER, n_tok);
    const double first = compute_ms(&plan->probes, m->layers[0].t, LM_W_PER_LAYER, n_tok);
    if (own > 0 && first > 0)
        return own / first;
    return m->layers[0].nbytes ? (double)m->layers[il].nbytes / (double)m->layers[0].nbytes : 1.0;
}

/* A layer's time for n tokens from the probes' two figures: one token
 * alone (single_ms) and the time per token in a batch of LM_PROBE_BATCH
 * (batched_ms).  Between 1 and LM_PROBE_BATCH tokens it grows linearly
 * between the two measured points (the weights are read once, each further
 * token adds its compute); past it, each token costs batched_ms. */
static double tokens_ms(double single_ms, double batched_ms, int n_tok)
{
    if (n_tok <= 1)
        return single_ms;
    const double at_probe = batched_ms * LM_PROBE_BATCH;
    if (n_tok >= LM_PROBE_BATCH)
        return fmax(single_ms, batched_ms * n_tok);
    const double per_token = fmax(0.0, (at_probe - single_ms) / (LM_PROBE_BATCH - 1));
    return single_ms + per_token * (n_tok - 1);
}

/* The CPU's time on layer il for n_tok tokens: layer 0's measured time
 * scaled, or the per-type figures alone when it was not measured. */
static double cpu_layer_ms(const lm_plan *plan, const lm_model *m, int il, int n_tok)
{
    const lm_probes *p = &plan->probes;
    if (p->cpu_layer_ms <= 0)
        return compute_ms(p, m->layers[il].t, LM_W_PER_LAYER, n_tok);
    const double first = tokens_ms(p->cpu_layer_ms, p->cpu_layer_prompt_ms, n_tok);
    return first * share_of_layer0(plan, m, il, n_tok);
}

static double cpu_head_ms(const lm_plan *plan, const lm_model *m)
{
    const lm_gguf_tensor *out[1] = {m->output};
    return plan->probes.cpu_head_ms > 0 ? plan->probes.cpu_head_ms
                                        : compute_ms(&plan->probes, out, 1, 1);
}

bool lm_plan_layer_experts_apart(const lm_model *m, const lm_plan *plan, int il)
{
    return plan->experts_apart && plan->place[il] == LM_PLACE_DISK && lm_expert_bytes(m, il) > 0;
}

bool lm_plan_layer_device_experts_apart(const lm_model *m, const lm_plan *plan, int il)
{
    return plan->device_experts_apart && plan->place[il] == LM_PLACE_DEVICE &&
           lm_expert_bytes(m, il) > 0;
}

/* Whether layer il's experts come through the host's expert cache: read
 * from disk for the CPU, or for the device's expert cache. */
static bool host_cache_layer(const lm_model *m, const lm_plan *plan, int il)
{
    return lm_plan_layer_experts_apart(m, plan, il) ||
           (plan->device_experts_from_disk && lm_plan_layer_device_experts_apart(m, plan, il));
}

/* The bytes of layer il's stacked expert tensors. */
static uint64_t expert_stack_bytes(const lm_model *m, int il)
{
    uint64_t bytes = 0;
    for (int w = 0; w < LM_W_PER_LAYER; w++)
        if (m->layers[il].t[w] && lm_role_is_expert_stack(w))
            bytes += m->layers[il].t[w]->nbytes;
    return bytes;
}

/* The bytes of layer il's tensors other than the experts'. */
static uint64_t dense_bytes(const lm_model *m, int il)
{
    uint64_t bytes = 0;
    for (int w = 0; w < LM_W_PER_LAYER; w++)
        if (m->layers[il].t[w] && !lm_role_is_expert_stack(w))
            bytes += m->layers[il].t[w]->nbytes;
    return bytes;
}

uint64_t lm_plan_layer_upload_bytes(const lm_model *m, const lm_plan *plan, int il)
{
    const lm_placement p = plan->place[il];
    if (p != LM_PLACE_DEVICE && p != LM_PLACE_DEVICE_RAM)
        return 0;
    return lm_plan_layer_device_experts_apart(m, plan, il) ? dense_bytes(m, il)
                                                           : plan->layer_bytes[il];
}

/* The distinct experts n_tok rows pick (n_used of n_expert each, as if at
 * random), times one expert's bytes. */
static double routed_bytes(const lm_model *m, int il, int n_tok)
{
    const double E = m->hp.n_expert, K = m->hp.n_expert_used;
    return E * (1.0 - pow(1.0 - K / E, n_tok)) * (double)lm_expert_bytes(m, il);
}

/* Bytes a pass of n_tok rows copies to the device's expert cache for layer
 * il (its misses). */
static double device_expert_bytes(const lm_plan *plan, const lm_model *m, int il, int n_tok)
{
    if (!lm_plan_layer_device_experts_apart(m, plan, il))
        return 0;
    return routed_bytes(m, il, n_tok) * (1.0 - plan->device_expert_hit_rate);
}

/* Bytes a pass of n_tok rows reads from disk for layer il: the whole
 * layer; or with its experts apart only the routed experts the cache
 * misses; or for the device's expert cache, those of its misses the host's
 * cache misses too. */
static double disk_bytes(const lm_plan *plan, const lm_model *m, int il, int n_tok)
{
    if (lm_plan_layer_device_experts_apart(m, plan, il))
        return plan->device_experts_from_disk
                   ? device_expert_bytes(plan, m, il, n_tok) * (1.0 - plan->expert_hit_rate)
                   : 0;
    if (!lm_plan_layer_experts_apart(m, plan, il))
        return (double)plan->layer_bytes[il];
    return routed_bytes(m, il, n_tok) * (1.0 - plan->expert_hit_rate);
}

/* Whether layer il reads from disk each pass. */
static bool reads_disk(const lm_model *m, const lm_plan *plan, int il)
{
    const lm_placement p = plan->place[il];
    return p == LM_PLACE_DISK || p == LM_PLACE_DEVICE_DISK || host_cache_layer(m, plan, il);
}

static layer_cost cost_of(const lm_plan *plan, const lm_model *m, int il, int n_tok)
{
    layer_cost c = {0};
    const lm_placement p = plan->place[il];
    const uint64_t bytes = plan->layer_bytes[il];
    if (lm_place_on_device(p)) {
        const lm_device_probes *d = &plan->dev;
        c.device = tokens_ms(d->layer_ms, d->layer_prompt_ms, n_tok) *
                   share_of_layer0(plan, m, il, n_tok);
        /* a layer kept in RAM for the device waits in pinned memory: only
         * the copy to the device; one from disk is read into a staging
         * buffer first (the disk's time, below) */
        if (p != LM_PLACE_DEVICE)
            c.copy = ms_for(bytes, d->h2d_bw);
        /* the experts the device's cache misses */
        c.copy_between = ms_for((uint64_t)device_expert_bytes(plan, m, il, n_tok), d->h2d_bw);
    } else {
        c.cpu = cpu_layer_ms(plan, m, il, n_tok);
    }
    if (reads_disk(m, plan, il))
        c.disk = ms_for((uint64_t)disk_bytes(plan, m, il, n_tok), plan->probes.disk_bw);
    return c;
}

/* cost_of with each part corrected by what runs measured (plan->learned). */
static layer_cost learned_cost(const lm_plan *plan, const lm_model *m, int il, int n_tok)
{
    layer_cost c = cost_of(plan, m, il, n_tok);
    const double *f = plan->learned.factor;
    c.cpu *= f[LM_FIG_CPU_LAYER];
    c.device *= f[LM_FIG_DEVICE_LAYER];
    c.disk *= f[host_cache_layer(m, plan, il) ? LM_FIG_EXPERT_DISK : LM_FIG_DISK];
    c.copy *= f[LM_FIG_COPY];
    c.copy_between *= f[LM_FIG_COPY];
    return c;
}

/* The output head's time on the device or the CPU, corrected likewise. */
static double head_ms_on(const lm_plan *plan, const lm_model *m, bool device)
{
    const double *f = plan->learned.factor;
    return device ? plan->dev.head_ms * f[LM_FIG_DEVICE_HEAD]
                  : cpu_head_ms(plan, m) * f[LM_FIG_CPU_HEAD];
}

double lm_plan_probe_compute_ms(const lm_model *m, const lm_plan *plan, int il, int n_rows)
{
    const layer_cost c = cost_of(plan, m, il, n_rows > 1 ? n_rows : 1);
    return c.cpu + c.device;
}

static double batched_share(const lm_plan *plan, int b);

double lm_plan_probe_head_ms(const lm_model *m, const lm_plan *plan, int n_rows)
{
    const double one = plan->head_on_device ? plan->dev.head_ms : cpu_head_ms(plan, m);
    return n_rows > 1 ? one * batched_share(plan, n_rows) : one;
}

void lm_learned_none(lm_learned *l)
{
    for (int i = 0; i < LM_FIG_COUNT; i++) {
        l->factor[i] = 1.0;
        l->runs[i] = 0;
    }
}

bool lm_figure_is_rate(lm_figure f)
{
    return f == LM_FIG_DISK || f == LM_FIG_COPY || f == LM_FIG_EXPERT_DISK;
}

const char *lm_figure_key(lm_figure f)
{
    static const char *keys[LM_FIG_COUNT] = {
        [LM_FIG_CPU_LAYER] = "cpu_layer",   [LM_FIG_DEVICE_LAYER] = "device_layer",
        [LM_FIG_CPU_HEAD] = "cpu_head",     [LM_FIG_DEVICE_HEAD] = "device_head",
        [LM_FIG_DISK] = "disk",             [LM_FIG_COPY] = "copy",
        [LM_FIG_EXPERT_DISK] = "expert_disk",
    };
    return keys[f];
}

/* The I/O thread reads and copies a layer while the one before computes:
 * with prefetch a layer costs the longer of the two, without their sum.
 *
 * A device made of the host's own cores (PoCL) computes with the cores that
 * copy.  If the cores were all that is shared, the copies would cost the
 * kernels copy/n (one of n cores); if nothing overlapped, copy.  Measured
 * on 2 cores (bench/RESULTS.md) it lies between, nearer the sum for small
 * layers (SmolLM2) and nearer copy/n for large ones (a 1B shape): the
 * planner takes the midpoint, work + copy * (1 + 1/n) / 2, within 10% of
 * both.  Disk reads, which mostly wait, overlap as usual. */
static double layer_ms(const lm_plan *plan, layer_cost c)
{
    const double io = c.disk + c.copy, work = c.cpu + c.device + c.copy_between;
    if (!plan->prefetch)
        return io + work;
    if (plan->dev.is_cpu && c.copy > 0) {
        const long cores = sysconf(_SC_NPROCESSORS_ONLN);
        return fmax(io, work + c.copy * (1.0 + 1.0 / (double)(cores > 1 ? cores : 1)) / 2.0);
    }
    return fmax(io, work);
}

uint64_t lm_plan_kv_bytes(const lm_hparams *hp, int n_ctx)
{
    const uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
    return (uint64_t)n_ctx * hp->n_layer * kv_dim * 2 * sizeof(uint16_t);
}

/* The widest feed-forward GATE and UP hold: the dense one's or the shared
 * expert's (a routed expert's have scratch of their own). */
static uint64_t ffn_width(const lm_hparams *hp)
{
    return hp->n_ff_shexp > hp->n_ff ? hp->n_ff_shexp : hp->n_ff;
}

/* A mixture of experts' scratch per row of a pass, on either backend
 * (cpu/backend_cpu.c, cl/moe_cl.c): the router's logits, the rows an
 * expert takes, its feed-forward and output, every pick's output, weight
 * and place. */
static uint64_t moe_bytes_per_row(const lm_hparams *hp)
{
    if (!hp->n_expert)
        return 0;
    const uint64_t K = hp->n_expert_used;
    return (hp->n_expert + 2 * hp->n_embd + 2 * (uint64_t)hp->n_ff_exp + K * hp->n_embd + 2 * K) *
           sizeof(float);
}

uint64_t lm_plan_activation_bytes(const lm_hparams *hp, int n_batch)
{
    const uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
    const uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
    return (uint64_t)n_batch * (3 * hp->n_embd + 2 * q_dim + 2 * kv_dim + 2 * ffn_width(hp)) *
               sizeof(float) +
           (uint64_t)n_batch * moe_bytes_per_row(hp) + (uint64_t)hp->n_vocab * sizeof(float) * 2;
}

static void fixed_costs(const lm_model *m, const lm_plan_request *req, lm_plan *plan)
{
    const lm_hparams *hp = &m->hp;
    const uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
    const uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
    const uint64_t nb = (uint64_t)req->n_batch;
    plan->kv_bytes = lm_plan_kv_bytes(hp, req->n_ctx);
    plan->activation_bytes = lm_plan_activation_bytes(hp, req->n_batch);
    plan->head_bytes = m->output->nbytes + m->output_norm->nbytes +
                       (hp->tied_embeddings ? 0 : m->tok_embd->nbytes);
    /* the OpenCL backend's buffers, as cl/backend_cl.c's create_buffers
     * makes them: activations, attention scores, rope table, quantized and
     * rounded activations */
    const uint64_t ff = ffn_width(hp);
    uint64_t widest = hp->n_embd > ff ? hp->n_embd : ff;
    widest = widest > q_dim ? widest : q_dim;
    widest = widest > hp->n_ff_exp ? widest : hp->n_ff_exp;
    plan->device_activation_bytes =
        nb * (3 * hp->n_embd + 2 * q_dim + 2 * kv_dim + 2 * ff) * sizeof(float) +
        nb * hp->n_head * req->n_ctx * sizeof(float) + nb * hp->n_rot * sizeof(float) +
        nb * widest + 2 * (nb * widest / 32 * sizeof(float)) + nb * widest / 16 * 4 +
        nb * widest * sizeof(float) + nb * moe_bytes_per_row(hp);
#ifdef LAMINA_OPENCL
    /* the opt-in GEMM path keeps the largest weight it meets as f32 */
    if ((uint64_t)lm_backend_opencl_gemm_min() <= nb) {
        uint64_t most = (uint64_t)m->output->ne[0] * m->output->ne[1];
        for (uint32_t il = 0; il < hp->n_layer; il++)
            for (int w = 0; w < LM_W_PER_LAYER; w++) {
                const lm_gguf_tensor *t = m->layers[il].t[w];
                /* (an expert's matrix, of a stack of them) */
                if (t && t->n_dims >= 2 && (uint64_t)t->ne[0] * t->ne[1] > most)
                    most = (uint64_t)t->ne[0] * t->ne[1];
            }
        plan->device_activation_bytes += most * sizeof(float);
    }
#endif
}

static uint64_t kv_per_layer(const lm_plan *plan)
{
    return plan->kv_bytes / (uint64_t)plan->n_layer;
}

/* Host staging for the layers read from disk each pass: one buffer per
 * slot, each holding the largest of them.  (A layer kept in RAM for the
 * device lives in pinned memory of its own, counted with the weights in
 * RAM.) */
static uint64_t staging_bytes(const lm_plan *plan, const lm_model *m)
{
    uint64_t most = 0;
    for (int il = 0; il < plan->n_layer; il++)
        if ((plan->place[il] == LM_PLACE_DISK || plan->place[il] == LM_PLACE_DEVICE_DISK) &&
            !lm_plan_layer_experts_apart(m, plan, il)) {
            const uint64_t b = lm_streamer_layer_bytes(m, il);
            most = b > most ? b : most;
        }
    return most * (plan->prefetch ? 2 : 1);
}

/* The device's slots: per tensor role, the largest streamed tensor. */
static uint64_t device_slot_bytes(const lm_plan *plan, const lm_model *m)
{
    uint64_t role[LM_W_PER_LAYER] = {0}, sum = 0;
    for (int il = 0; il < plan->n_layer; il++)
        for (int w = 0; w < LM_W_PER_LAYER; w++) {
            const lm_gguf_tensor *t = m->layers[il].t[w];
            if (t && (plan->place[il] == LM_PLACE_DEVICE_RAM ||
                      plan->place[il] == LM_PLACE_DEVICE_DISK) && t->nbytes > role[w])
                role[w] = t->nbytes;
        }
    for (int w = 0; w < LM_W_PER_LAYER; w++)
        sum += role[w];
    return sum * (plan->prefetch ? 2 : 1);
}

/* The output head's bytes on the device: its weights and n_batch rows of logits. */
static uint64_t device_head_bytes(const lm_model *m, const lm_plan_request *req)
{
    return m->output->nbytes + m->output_norm->nbytes +
           (uint64_t)req->n_batch * m->hp.n_vocab * sizeof(float);
}

/* The last n_dev layers on the device, a mixture's without their experts:
 * the rest of each resident, the experts through a device expert cache of
 * what the VRAM budget leaves (two experts at least, no more than all of
 * them, nor than cache_cap).  -1 if that does not fit. */
static int place_device_experts_apart(const lm_model *m, lm_plan *plan, int n_dev,
                                      uint64_t fixed, uint64_t cache_cap, bool head)
{
    const int first = plan->n_layer - n_dev;
    const uint64_t slot = lm_expert_slot_bytes(m);
    uint64_t resident = 0, all = 0;
    int n_apart = 0;
    for (int il = first; il < plan->n_layer; il++) {
        plan->place[il] = LM_PLACE_DEVICE;
        const bool apart = lm_expert_bytes(m, il) > 0;
        resident += apart ? dense_bytes(m, il) : plan->layer_bytes[il];
        all += apart ? (uint64_t)m->hp.n_expert * slot : 0;
        n_apart += apart;
    }
    const uint64_t least = 2 * slot, need = fixed + resident + least;
    if (!n_apart || (plan->vram_budget && need > plan->vram_budget))
        return -1;
    uint64_t cache = plan->vram_budget ? plan->vram_budget - fixed - resident : all;
    cache = cache > all ? all : cache;
    cache = cache > cache_cap ? cache_cap : cache;
    cache = cache < least ? least : cache;
    plan->device_experts_apart = true;
    plan->device_expert_cache_bytes = cache;
    const double rate = (double)(cache / slot) / (double)((uint64_t)n_apart * m->hp.n_expert);
    plan->device_expert_hit_rate = rate > 1 ? 1 : rate;
    plan->device_weights = resident;
    plan->device_slot_bytes = 0;
    plan->device_kv_bytes = kv_per_layer(plan) * (uint64_t)n_dev;
    plan->device_total = fixed + resident + cache;
    plan->head_on_device = head;
    return 0;
}

/* Device side of a split with the last n_dev layers on the device: as many
 * of them resident as the VRAM budget holds, the rest streamed through the
 * slots; but a mixture's layers that do not all fit whole stay resident
 * without their experts, which come through a device expert cache (they
 * would otherwise be copied over whole, every expert, each pass), unless
 * whole layers are asked for.  -1 if not even the slots fit. */
static int place_device(const lm_model *m, const lm_plan_request *req, lm_plan *plan, int n_dev,
                        int max_resident, uint64_t cache_cap, bool head)
{
    const int first = plan->n_layer - n_dev;
    const uint64_t fixed = kv_per_layer(plan) * (uint64_t)n_dev +
                           (n_dev ? plan->device_activation_bytes : 0) +
                           (head ? device_head_bytes(m, req) : 0);
    plan->device_experts_apart = false;
    plan->device_expert_cache_bytes = 0;
    for (int r = n_dev < max_resident ? n_dev : max_resident; r >= 0; r--) {
        if (r < n_dev && plan->experts_apart && max_resident >= n_dev &&
            place_device_experts_apart(m, plan, n_dev, fixed, cache_cap, head) == 0)
            return 0;
        uint64_t resident = 0;
        for (int i = 0; i < n_dev; i++) {
            plan->place[first + i] = i < r ? LM_PLACE_DEVICE : LM_PLACE_DEVICE_RAM;
            resident += i < r ? plan->layer_bytes[first + i] : 0;
        }
        const uint64_t slots = device_slot_bytes(plan, m);
        const uint64_t total = fixed + resident + slots;
        if (!plan->vram_budget || total <= plan->vram_budget) {
            plan->device_weights = resident;
            plan->device_slot_bytes = slots;
            plan->device_kv_bytes = kv_per_layer(plan) * (uint64_t)n_dev;
            plan->device_total = n_dev ? total : 0;
            plan->head_on_device = head;
            return 0;
        }
    }
    return -1;
}

/* RAM a layer takes: kept there, its tensors in the file mapping, or for
 * a device's layer its pinned copy (the file's stretch, gaps and all); with
 * its experts apart, the rest of it in the mapping; else nothing. */
static uint64_t ram_bytes(const lm_plan *plan, const lm_model *m, int il)
{
    const lm_placement p = plan->place[il];
    if (lm_plan_layer_experts_apart(m, plan, il))
        return dense_bytes(m, il);
    if (p != LM_PLACE_RAM && p != LM_PLACE_DEVICE_RAM)
        return 0;
    return lm_place_on_device(p) ? lm_streamer_layer_bytes(m, il) : plan->layer_bytes[il];
}

/* What a cache of every expert of the layers read from disk without them
 * takes (each in a slot of the largest expert's size), and the number of
 * such layers. */
static uint64_t apart_expert_bytes(const lm_plan *plan, const lm_model *m, int *n_layers)
{
    *n_layers = 0;
    for (int il = 0; il < plan->n_layer; il++)
        *n_layers += host_cache_layer(m, plan, il);
    return (uint64_t)*n_layers * m->hp.n_expert * lm_expert_slot_bytes(m);
}

/* The expert cache the placement needs at least: two slots (one
 * computing, one reading), or the size asked for. */
static uint64_t expert_cache_least(const lm_plan *plan, const lm_model *m,
                                   const lm_plan_request *req)
{
    int n_apart;
    if (!apart_expert_bytes(plan, m, &n_apart))
        return 0;
    const uint64_t two = 2 * lm_expert_slot_bytes(m);
    return req->expert_cache_bytes > two ? req->expert_cache_bytes : two;
}

/* After placing: the expert cache takes what the RAM budget leaves (no
 * more than every expert it could hold), and its hit rate is predicted as
 * the share of the experts it holds. */
static void size_expert_cache(lm_plan *plan, const lm_model *m, const lm_plan_request *req)
{
    int n_apart;
    const uint64_t all = apart_expert_bytes(plan, m, &n_apart);
    const uint64_t least = expert_cache_least(plan, m, req);
    uint64_t cache = least;
    if (least && !req->expert_cache_bytes && plan->ram_budget > plan->ram_total)
        cache += plan->ram_budget - plan->ram_total;
    /* no more than every expert (but two slots at least) */
    const uint64_t most = all > 2 * lm_expert_slot_bytes(m) ? all : 2 * lm_expert_slot_bytes(m);
    cache = cache > most ? most : cache;
    plan->ram_total = plan->ram_total - least + cache;
    plan->expert_cache_bytes = cache;
    const uint64_t slot = lm_expert_slot_bytes(m);
    const double rate = all ? (double)(cache / slot) / (double)(all / slot) : 0.0;
    plan->expert_hit_rate = rate > 1 ? 1 : rate;
}

/* Host side: the layers not resident on the device keep their weights in
 * RAM, the first ones first, as many as the RAM budget holds after the fixed
 * costs; the rest are read from disk.  -1 if not even the staging fits.
 * Runs after place_device (it needs device_total).
 *
 * A mixture of experts' layers, with their experts apart, are all kept in
 * RAM or none (unless --ram-layers says how many): a layer from disk keeps
 * the rest of itself in RAM and its experts come through the expert cache,
 * which takes whatever RAM is left.  With experts picked at random, RAM
 * holding whole layers or cached experts saves the same reads; with the
 * skew real routers have, the cache keeps the experts that are used. */
static int place_host(const lm_model *m, const lm_plan_request *req, lm_plan *plan, int n_dev)
{
    const int n = plan->n_layer;
    /* a CPU-type device's memory is this RAM: it counts against both budgets */
    /* the experts the device's cache copies from RAM stay in the mapping */
    uint64_t dev_experts = 0;
    for (int il = 0; il < n && !plan->device_experts_from_disk; il++)
        dev_experts += lm_plan_layer_device_experts_apart(m, plan, il) ? expert_stack_bytes(m, il) : 0;
    const uint64_t fixed = kv_per_layer(plan) * (uint64_t)(n - n_dev) + plan->activation_bytes +
                           plan->head_bytes + LM_PLAN_RAM_OVERHEAD + dev_experts +
                           (plan->dev.is_cpu ? plan->device_total : 0);
    int keep = -1;
    uint64_t best_total = 0;
    for (int k = 0;; k++) {
        /* the first k layers not resident on the device kept in RAM */
        int seen = 0;
        uint64_t in_ram = 0;
        for (int il = 0; il < n; il++) {
            if (plan->place[il] == LM_PLACE_DEVICE)
                continue;
            const bool ram = seen++ < k;
            const bool dev = lm_place_on_device(plan->place[il]);
            plan->place[il] = dev ? (ram ? LM_PLACE_DEVICE_RAM : LM_PLACE_DEVICE_DISK)
                                  : (ram ? LM_PLACE_RAM : LM_PLACE_DISK);
        }
        for (int il = 0; il < n; il++) /* once all are placed: experts apart or not */
            in_ram += ram_bytes(plan, m, il);
        const uint64_t total = fixed + in_ram + staging_bytes(plan, m) +
                               expert_cache_least(plan, m, req);
        const bool all_or_none = plan->experts_apart && req->force_ram_layers < 0;
        if (total <= plan->ram_budget &&
            (req->force_ram_layers < 0 || k <= req->force_ram_layers) &&
            (!all_or_none || k == 0 || k == seen))
            keep = k;
        if (k == keep)
            best_total = total;
        if (k >= seen)
            break;
    }
    if (keep < 0)
        return -1;
    int seen = 0;
    plan->ram_weights = 0;
    for (int il = 0; il < n; il++) {
        if (plan->place[il] == LM_PLACE_DEVICE)
            continue;
        const bool ram = seen++ < keep, dev = lm_place_on_device(plan->place[il]);
        plan->place[il] = dev ? (ram ? LM_PLACE_DEVICE_RAM : LM_PLACE_DEVICE_DISK)
                              : (ram ? LM_PLACE_RAM : LM_PLACE_DISK);
    }
    for (int il = 0; il < n; il++)
        plan->ram_weights += plan->place[il] == LM_PLACE_DEVICE ? 0 : ram_bytes(plan, m, il);
    plan->ram_weights += dev_experts;
    plan->staging_bytes = staging_bytes(plan, m);
    plan->ram_total = best_total;
    size_expert_cache(plan, m, req);
    return 0;
}

/* How much longer B rows take than one, from the CPU probes, as for a
 * layer (tokens_ms). */
static double batched_share(const lm_plan *plan, int b)
{
    const lm_probes *p = &plan->probes;
    if (p->cpu_layer_ms <= 0 || p->cpu_layer_prompt_ms <= 0)
        return b;
    return tokens_ms(p->cpu_layer_ms, p->cpu_layer_prompt_ms, b) / p->cpu_layer_ms;
}

/* One pass of b rows (b sequences decoding, or one sequence verifying b
 * tokens): each layer read once, b rows computed at the probes' batched
 * rate per row; the head over b rows scales the same way. */
static double pass_ms(const lm_model *m, const lm_plan *plan, int b)
{
    double ms = head_ms_on(plan, m, plan->head_on_device) * (b > 1 ? batched_share(plan, b) : 1.0);
    for (int il = 0; il < plan->n_layer; il++)
        ms += layer_ms(plan, learned_cost(plan, m, il, b));
    return ms;
}

double lm_plan_pass_ms(const lm_model *m, const lm_plan *plan, int n_rows)
{
    return pass_ms(m, plan, n_rows > 1 ? n_rows : 1) * plan->learned_factor;
}

static void predict(const lm_model *m, const lm_plan_request *req, lm_plan *plan)
{
    double first = 0;
    const int n_prompt = req->n_prompt > 0 ? req->n_prompt : 1;
    plan->n_prompt = n_prompt;
    plan->head_ms = head_ms_on(plan, m, plan->head_on_device);
    plan->token_ms = plan->head_ms;
    plan->cpu_ms = plan->device_ms = plan->disk_ms = plan->copy_ms = 0;
    plan->read_bytes_per_token = plan->dense_read_bytes_per_token = 0;
    for (int il = 0; il < plan->n_layer; il++) {
        if (reads_disk(m, plan, il)) {
            plan->read_bytes_per_token += (uint64_t)disk_bytes(plan, m, il, 1);
            /* (a device layer keeps the rest of itself on the device) */
            plan->dense_read_bytes_per_token += plan->place[il] == LM_PLACE_DEVICE
                                                    ? expert_stack_bytes(m, il)
                                                    : plan->layer_bytes[il];
        }
        const layer_cost c = learned_cost(plan, m, il, 1);
        plan->layer_ms[il] = layer_ms(plan, c);
        plan->token_ms += plan->layer_ms[il];
        first += layer_ms(plan, learned_cost(plan, m, il, n_prompt));
        plan->cpu_ms += c.cpu;
        plan->device_ms += c.device;
        plan->disk_ms += c.disk;
        plan->copy_ms += c.copy + c.copy_between;
    }
    plan->first_token_ms = first + plan->head_ms;
    plan->tokens_per_s = plan->token_ms > 0 ? 1e3 / plan->token_ms : 0;
    const int b = req->n_parallel > 1 ? req->n_parallel : 1;
    plan->parallel = b;
    plan->batch_pass_ms = pass_ms(m, plan, b);
    plan->batch_tokens_per_s = plan->batch_pass_ms > 0 ? 1e3 * b / plan->batch_pass_ms : 0;
    const double io = plan->disk_ms + plan->copy_ms;
    if (!plan->prefetch && io > 0)
        plan->bottleneck = "reads and copies, not overlapped (--no-prefetch)";
    else if (io > plan->cpu_ms + plan->device_ms)
        plan->bottleneck = plan->disk_ms >= plan->copy_ms
                               ? "disk read bandwidth (RAM budget)"
                               : "host-to-device copies (VRAM budget)";
    else if (plan->device_ms > plan->cpu_ms)
        plan->bottleneck = "device compute on the weights";
    else
        plan->bottleneck = "CPU compute on the weights";
}

void lm_plan_predict(const lm_model *m, lm_plan *plan)
{
    const lm_plan_request req = {.n_prompt = plan->n_prompt, .n_parallel = plan->parallel};
    predict(m, &req, plan);
}

/* Places every layer with the last n_dev on the device; 0, or -1 with a
 * one-line error saying which budget is too small and what would do. */
static int place_split(const lm_model *m, const lm_plan_request *req, lm_plan *plan, int n_dev)
{
    const int n = plan->n_layer;
    for (int il = 0; il < n; il++)
        plan->place[il] = LM_PLACE_RAM;
    plan->experts_apart = plan->n_expert > 0 && !req->whole_layers;
    plan->expert_cache_bytes = 0;
    plan->device_experts_apart = plan->device_experts_from_disk = false;
    plan->device_expert_cache_bytes = 0;
    uint64_t cache_cap = UINT64_MAX; /* the device's expert cache */
    plan->device_total = plan->device_weights = plan->device_slot_bytes = 0;
    plan->device_kv_bytes = 0;
    plan->head_on_device = false;
    /* the head goes with the layers when all are on the device, unless the
     * planner is choosing and the CPU runs it faster */
    const bool head = n_dev == n && n > 0 &&
                      (req->use == LM_USE_DEVICE ||
                       head_ms_on(plan, m, true) < head_ms_on(plan, m, false));
    int max_resident = n_dev;
again:
    if (n_dev > 0 && place_device(m, req, plan, n_dev, max_resident, cache_cap, head) != 0 &&
        (!head || place_device(m, req, plan, n_dev, max_resident, cache_cap, false) != 0)) {
        for (int il = n - n_dev; il < n; il++)
            plan->place[il] = LM_PLACE_DEVICE_RAM;
        const uint64_t need = kv_per_layer(plan) * (uint64_t)n_dev +
                              plan->device_activation_bytes + device_slot_bytes(plan, m);
        /* a mixture's layers less their experts, and two of those */
        uint64_t apart = 0;
        for (int il = n - n_dev; plan->experts_apart && il < n; il++)
            apart += lm_expert_bytes(m, il) ? dense_bytes(m, il) : plan->layer_bytes[il];
        apart += apart ? kv_per_layer(plan) * (uint64_t)n_dev + plan->device_activation_bytes +
                             2 * lm_expert_slot_bytes(m)
                       : 0;
        char apart_part[96] = "";
        if (apart && apart < need)
            snprintf(apart_part, sizeof apart_part,
                     " (with the experts in a device cache, %.1f MiB)", MIB(apart));
        lm_set_error("a VRAM budget of %.0f MiB cannot hold %d streamed layer%s with their "
                     "buffers: at least %.0f MiB is needed (KV cache %.0f MiB, layer slots "
                     "%.0f MiB, activations %.0f MiB)%s; use a smaller -c or fewer --gpu-layers",
                     MIB(plan->vram_budget), n_dev, n_dev == 1 ? "" : "s", MIB(need),
                     MIB(kv_per_layer(plan) * (uint64_t)n_dev), MIB(device_slot_bytes(plan, m)),
                     MIB(plan->device_activation_bytes), apart_part);
        return -1;
    }
    int host = place_host(m, req, plan, n_dev);
    if (host != 0 && plan->device_experts_apart && !plan->device_experts_from_disk) {
        /* the device's experts not all in RAM: from disk, through the
         * host's expert cache */
        plan->device_experts_from_disk = true;
        host = place_host(m, req, plan, n_dev);
    }
    if (host != 0 && plan->experts_apart && !req->expert_cache_bytes) {
        /* not even the mixture's layers less their experts fit: whole
         * layers through the streamer's buffers may */
        plan->experts_apart = false;
        host = place_host(m, req, plan, n_dev);
    }
    if (host != 0) {
        /* a CPU-type device's memory is the RAM: fewer resident layers may fit */
        int resident = 0;
        for (int il = 0; il < n; il++)
            resident += plan->place[il] == LM_PLACE_DEVICE;
        /* ... or a smaller expert cache there */
        const uint64_t two = 2 * lm_expert_slot_bytes(m);
        if (plan->dev.is_cpu && plan->device_experts_apart &&
            plan->device_expert_cache_bytes > two) {
            cache_cap = plan->device_expert_cache_bytes / 2;
            plan->device_experts_from_disk = false;
            goto again;
        }
        if (plan->dev.is_cpu && resident > 0) {
            max_resident = resident - 1;
            plan->device_experts_from_disk = false;
            goto again;
        }
        /* the least that works: nothing kept in RAM */
        for (int il = 0; il < n; il++)
            if (plan->place[il] != LM_PLACE_DEVICE)
                plan->place[il] = lm_place_on_device(plan->place[il]) ? LM_PLACE_DEVICE_DISK
                                                                      : LM_PLACE_DISK;
        const uint64_t kv = kv_per_layer(plan) * (uint64_t)(n - n_dev);
        const uint64_t stage = staging_bytes(plan, m) + expert_cache_least(plan, m, req);
        const uint64_t shared = plan->dev.is_cpu ? plan->device_total : 0;
        const uint64_t need = kv + plan->activation_bytes + plan->head_bytes + stage +
                              LM_PLAN_RAM_OVERHEAD + shared;
        char device_part[64] = "";
        if (shared)
            snprintf(device_part, sizeof device_part, ", the CPU device's buffers %.0f MiB",
                     MIB(shared));
        lm_set_error("a RAM budget of %.0f MiB cannot hold even one streamed layer with its "
                     "buffers: at least %.0f MiB is needed (KV cache %.0f MiB, output head "
                     "%.0f MiB, staging %.0f MiB, overhead %.0f MiB%s)",
                     MIB(plan->ram_budget), MIB(need), MIB(kv), MIB(plan->head_bytes),
                     MIB(stage), MIB(LM_PLAN_RAM_OVERHEAD), device_part);
        return -1;
    }
    predict(m, req, plan);
    return 0;
}

uint64_t lm_plan_default_ram_budget(void)
{
    const uint64_t avail = lm_mem_available();
    const uint64_t margin = avail / 10 > ((uint64_t)512 << 20) ? avail / 10 : (uint64_t)512 << 20;
    return avail > margin ? avail - margin : avail;
}

/* The device's memory less a tenth (at least LM_PLAN_VRAM_MARGIN): the
 * driver, the display and other programs share it. */
static uint64_t default_vram_budget(const lm_device_probes *dev)
{
    const uint64_t margin =
        dev->memory / 10 > LM_PLAN_VRAM_MARGIN ? dev->memory / 10 : LM_PLAN_VRAM_MARGIN;
    return dev->memory > margin ? dev->memory - margin : dev->memory / 2;
}

int lm_plan_make(const lm_model *m, const lm_plan_request *req, const lm_probes *probes,
                 const lm_device_probes *dev, lm_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->n_layer = (int)m->hp.n_layer;
    plan->n_expert = (int)m->hp.n_expert;
    plan->evict_frequent = req->evict_frequent;
    plan->evict_auto = req->evict_auto;
    plan->n_expert_used = (int)m->hp.n_expert_used;
    plan->expert_slot_bytes = m->hp.n_expert ? lm_expert_slot_bytes(m) : 0;
    plan->probes = *probes;
    plan->prefetch = req->prefetch;
    if (req->learned)
        plan->learned = *req->learned;
    else
        lm_learned_none(&plan->learned);
    plan->learned_factor = 1.0;
    const bool device = req->use != LM_USE_CPU;
    if (device && !dev) {
        lm_set_error("internal: a device plan without the device's probes");
        return -1;
    }
    if (device) {
        plan->dev = *dev;
        plan->has_device = true;
    }
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
    plan->ram_budget = req->ram_budget ? req->ram_budget : lm_plan_default_ram_budget();
    plan->vram_budget = !device ? req->vram_budget
                        : req->vram_budget ? req->vram_budget : default_vram_budget(dev);
    fixed_costs(m, req, plan);
    const int n = plan->n_layer;
    if (req->gpu_layers > n) {
        lm_set_error("--gpu-layers %d: the model has %d layers", req->gpu_layers, n);
        lm_plan_free(plan);
        return -1;
    }
    int n_dev = !device ? 0 : req->gpu_layers >= 0 ? req->gpu_layers : n;
    if (device && req->use == LM_USE_AUTO && req->gpu_layers < 0) {
        /* every split, keeping the fastest that fits (fewer device layers on
         * a tie); but the simpler plan, all on the CPU, unless the fastest
         * beats it by the margin */
        int best = -1;
        double best_ms = 0, cpu_ms = -1;
        for (int k = 0; k <= n; k++) {
            if (place_split(m, req, plan, k) != 0)
                continue;
            if (k == 0)
                cpu_ms = plan->token_ms;
            if (best < 0 || plan->token_ms < best_ms * 0.999) {
                best = k;
                best_ms = plan->token_ms;
            }
        }
        if (cpu_ms > 0 && best_ms > cpu_ms * (1.0 - LM_PLAN_SWITCH_MARGIN))
            best = 0;
        n_dev = best < 0 ? 0 : best;
    }
    if (place_split(m, req, plan, n_dev) != 0) {
        lm_plan_free(plan);
        return -1;
    }
    /* what the probes alone predict for this placement, for comparison */
    const lm_learned learned = plan->learned;
    lm_learned_none(&plan->learned);
    predict(m, req, plan);
    plan->probe_token_ms = plan->token_ms;
    plan->learned = learned;
    predict(m, req, plan);
    plan->figures_token_ms = plan->token_ms;
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
