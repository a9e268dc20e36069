/* The planner: where every layer runs and where its weights live, and what
 * a token will cost, decided before running from the model's per-layer
 * sizes, the memory budgets and measured probes (src/probe.h).
 *
 * A layer runs on the CPU or on the OpenCL device.  On the device its
 * weights are resident (uploaded once) or streamed each pass through a
 * pinned staging buffer into one of two device slots; a layer not resident
 * on the device has its weights kept in RAM or read from the disk each pass
 * (src/streamer.h).  Device layers are the last ones (as llama.cpp's -ngl
 * counts them), resident before streamed; layers kept in RAM are the first
 * of the rest.  With the device in "auto" use, the planner tries every
 * number of device layers and keeps the fastest prediction; on a box whose
 * OpenCL device is PoCL that is normally none. */
#ifndef LM_PLAN_H
#define LM_PLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "probe.h"

/* Memory lamina needs besides what the plan counts: code, libraries,
 * OpenMP stacks, the tokenizer's tables. */
#define LM_PLAN_RAM_OVERHEAD ((uint64_t)64 << 20)

typedef enum {
    LM_PLACE_RAM,         /* CPU, weights in RAM (the file mapping) */
    LM_PLACE_DISK,        /* CPU, weights read from disk each pass */
    LM_PLACE_DEVICE,      /* device, weights resident there */
    LM_PLACE_DEVICE_RAM,  /* device, weights kept in RAM, copied over each pass */
    LM_PLACE_DEVICE_DISK, /* device, weights read from disk and copied over each pass */
    LM_PLACE_COUNT
} lm_placement;

typedef enum {
    LM_USE_CPU,    /* every layer on the CPU */
    LM_USE_DEVICE, /* every layer on the device (or gpu_layers of them) */
    LM_USE_AUTO,   /* as many on the device as is predicted fastest */
} lm_device_use;

/* Memory the device needs besides buffers the plan counts (the program, the
 * driver's own allocations), kept out of a default VRAM budget. */
#define LM_PLAN_VRAM_MARGIN ((uint64_t)256 << 20)
/* --backend auto moves layers from the CPU to the device only when that is
 * predicted this much faster than keeping them all on the CPU: two
 * predictions that are close must not flip the plan from run to run on
 * probe noise. */
#define LM_PLAN_SWITCH_MARGIN 0.10

/* The figures a prediction is made of, each from a probe and corrected by
 * what runs measured (plan_learn.h): factor is the median of measured time
 * over the probe's predicted time in the last runs that measured it (> 1:
 * slower than the probe said), runs how many (0: the probe alone, factor
 * 1). */
typedef enum {
    LM_FIG_CPU_LAYER,    /* a layer's compute on the CPU */
    LM_FIG_DEVICE_LAYER, /* a layer's compute on the device */
    LM_FIG_CPU_HEAD,     /* the output head on the CPU */
    LM_FIG_DEVICE_HEAD,  /* the output head on the device */
    LM_FIG_DISK,         /* uncached reads of the model file */
    LM_FIG_COPY,         /* copies from pinned RAM to the device */
    LM_FIG_EXPERT_DISK,  /* uncached reads of routed experts (expert_cache.h): many
                            small reads, slower than a layer's one stretch */
    LM_FIG_COUNT
} lm_figure;

typedef struct {
    double factor[LM_FIG_COUNT];
    int runs[LM_FIG_COUNT];
} lm_learned;

/* Every figure from its probe alone. */
void lm_learned_none(lm_learned *l);
/* "cpu_layer", "disk", ...: the figure's name in JSON and in the cache. */
const char *lm_figure_key(lm_figure f);
/* A rate (bytes/s: disk, copies) rather than a time: it shrinks as its
 * factor grows. */
bool lm_figure_is_rate(lm_figure f);

typedef struct {
    uint64_t ram_budget;   /* 0: MemAvailable less a margin */
    uint64_t vram_budget;  /* 0: the device's memory less a margin */
    int n_ctx, n_batch;
    lm_device_use use;
    int gpu_layers;        /* -1: the planner decides; else this many (the last) on the device */
    bool prefetch;         /* overlap reads with compute (default) */
    int force_ram_layers;  /* -1: the planner decides; else keep this many in RAM */
    int n_prompt;          /* prompt length the time to first token is predicted for */
    int n_parallel;        /* sequences decoded together (0 or 1: one) */
    const lm_learned *learned; /* what runs measured (NULL: the probes alone) */
    /* mixtures of experts: stream every expert of a layer read from disk
     * (whole layers, as for a dense model) rather than only the routed ones */
    bool whole_layers;
    uint64_t expert_cache_bytes; /* 0: what the RAM budget leaves */
    bool evict_frequent;         /* the cache gives up the least often used */
    bool evict_auto;             /* the eviction replaying the last run's
                                    routing hits more with (plan_learn.h);
                                    evict_frequent's without a routing */
} lm_plan_request;

typedef struct {
    int n_layer;
    lm_placement *place;        /* per layer */
    uint64_t *layer_bytes;      /* weight bytes per layer */
    double *layer_ms;           /* predicted ms per token per layer */
    uint64_t ram_budget, vram_budget;
    uint64_t kv_bytes, activation_bytes, head_bytes, staging_bytes;
    uint64_t ram_weights;       /* layer weights kept in RAM */
    uint64_t ram_total;         /* everything counted against the RAM budget */
    uint64_t device_total;      /* everything on the device */
    uint64_t device_weights, device_kv_bytes, device_slot_bytes, device_activation_bytes;
    bool head_on_device;
    double head_ms, token_ms, tokens_per_s, first_token_ms;
    /* decoding `parallel` sequences together: one pass's ms (a token of
     * each) and the tokens/s of all of them */
    int parallel;
    double batch_pass_ms, batch_tokens_per_s;
    /* per token: the parts the time is made of, summed over layers */
    double cpu_ms, device_ms, disk_ms, copy_ms;
    const char *bottleneck;     /* which limit sets the speed */
    bool prefetch;
    lm_probes probes;
    bool has_device;            /* dev holds the device's probes */
    lm_device_probes dev;
    int n_prompt;               /* the prompt first_token_ms is for */
    /* the figures' corrections by measured runs (every prediction above
     * uses them); ms per token from the probes alone, and from the
     * corrected figures before the whole plan's own correction */
    lm_learned learned;
    double probe_token_ms, figures_token_ms;
    bool reprobed; /* --reprobe: what this plan's run measures starts the learning afresh */
    /* runs of this very plan measured before (plan_learn.h): how many, and
     * the median of measured/predicted (from the corrected figures) they
     * gave; what the figures leave out (overlaps, overheads) is in it, and
     * the predictions above are scaled by it */
    int learned_runs;
    double learned_factor;
    /* a mixture of experts' layers read from disk on the CPU: only the
     * routed experts are read (experts_apart), through an expert cache of
     * expert_cache_bytes (expert_cache.h); the hit rate predicted for it if
     * every expert were as likely as any other; bytes read from disk per
     * decoded token, and what reading every expert would read */
    bool experts_apart;
    int expert_hit_runs; /* > 0: expert_hit_rate is what that many runs of
                            the same cache measured (plan_learn.h), not the
                            uniform guess */
    uint64_t expert_hit_traced; /* else > 0: it is this cache replaying the
                                   routing a run recorded (expert_trace.h),
                                   over that many wants */
    /* a mixture's layers on the device whose experts do not all fit there
     * (device_experts_apart): the rest of each stays on the device, and
     * the experts a pass uses come through a device expert cache of
     * device_expert_cache_bytes, copied from RAM (the file mapping) or,
     * with device_experts_from_disk, read from disk through the expert
     * cache above; the hit rate predicted for it (replaying the last run's
     * routing, else a uniform router's) */
    bool device_experts_apart, device_experts_from_disk;
    uint64_t device_expert_cache_bytes;
    double device_expert_hit_rate;
    uint64_t device_expert_hit_traced;
    int n_expert, n_expert_used; /* the model's (0: no experts) */
    uint64_t expert_cache_bytes, expert_slot_bytes;
    bool evict_frequent;
    bool evict_auto;   /* evict_frequent is to be chosen by replaying (plan_learn.h) ... */
    bool evict_chosen; /* ... and was */
    double expert_hit_rate;
    uint64_t read_bytes_per_token, dense_read_bytes_per_token;
} lm_plan;

/* 0, or -1 with a one-line error (a budget that cannot hold even one layer
 * plus its buffers says the minimum that would work). */
int lm_plan_make(const lm_model *m, const lm_plan_request *req, const lm_probes *probes,
                 const lm_device_probes *dev, lm_plan *plan);
void lm_plan_free(lm_plan *plan);

/* Predicts plan's placement again from its probes and plan->learned (as
 * lm_plan_make did, without the whole plan's correction). */
void lm_plan_predict(const lm_model *m, lm_plan *plan);
/* From the probes alone: layer il's compute for a pass of n_rows rows
 * where the plan puts it, and the output head's. */
double lm_plan_probe_compute_ms(const lm_model *m, const lm_plan *plan, int il, int n_rows);
double lm_plan_probe_head_ms(const lm_model *m, const lm_plan *plan, int n_rows);
/* Predicted ms of one pass of n_rows rows (sequences decoding together, or
 * one sequence's tokens verified at once), with every correction. */
double lm_plan_pass_ms(const lm_model *m, const lm_plan *plan, int n_rows);

/* The table `lamina plan` prints; the same as JSON; one summary line. */
void lm_plan_print(const lm_plan *plan, FILE *f);
void lm_plan_print_json(const lm_plan *plan, FILE *f);
/* The JSON object lm_plan_print_json prints (NULL: out of memory), for a
 * caller to add to. */
struct json_t;
struct json_t *lm_plan_json(const lm_plan *plan);
void lm_plan_print_summary(const lm_plan *plan, FILE *f);

/* Whether a placement runs on the device; whether its weights come through
 * the streamer each pass. */
bool lm_place_on_device(lm_placement p);
bool lm_place_streamed(lm_placement p);
/* Whether layer il is read from disk for the CPU with only its routed
 * experts (they come through the expert cache). */
bool lm_plan_layer_experts_apart(const lm_model *m, const lm_plan *plan, int il);
/* Whether layer il is on the device with its experts in the device's
 * expert cache (device_experts_apart). */
bool lm_plan_layer_device_experts_apart(const lm_model *m, const lm_plan *plan, int il);
/* The bytes of layer il an engine reads before it starts, for the device:
 * resident there (less its experts, where they are cached), or kept in
 * pinned RAM for it; 0 for the others. */
uint64_t lm_plan_layer_upload_bytes(const lm_model *m, const lm_plan *plan, int il);

/* The CPU's KV cache for n_ctx positions (f16), and its activation buffers
 * for passes of n_batch rows: the RAM a model needs besides its weights. */
uint64_t lm_plan_kv_bytes(const lm_hparams *hp, int n_ctx);
uint64_t lm_plan_activation_bytes(const lm_hparams *hp, int n_batch);

/* "512M", "4G", "1.5GiB", "2000000" -> bytes; -1 with an error. */
int lm_parse_size(const char *text, uint64_t *bytes);
/* The RAM budget without --ram: MemAvailable less a tenth (at least 512M). */
uint64_t lm_plan_default_ram_budget(void);
/* MemAvailable from /proc/meminfo, 0 if unknown. */
uint64_t lm_mem_available(void);

#endif
