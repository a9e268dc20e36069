/* The planner: where every layer's weights live and what a token will cost,
 * decided before running from the model's per-layer sizes, the memory
 * budgets and measured probes (src/probe.h).
 *
 * This version plans the CPU backend: each layer's weights either stay in
 * RAM (the file mapping, read at RAM speed) or are streamed from the disk
 * through two staging buffers each pass (src/streamer.h).  The layers kept
 * in RAM are the first ones, as many as the RAM budget holds after the fixed
 * costs (KV cache, activations, output head, staging buffers, the stated
 * overhead).  The OpenCL backend still keeps every layer on the device; the
 * plan checks that it fits the VRAM budget. */
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

typedef enum { LM_PLACE_RAM, LM_PLACE_DISK, LM_PLACE_DEVICE } lm_placement;

typedef struct {
    uint64_t ram_budget;   /* 0: MemAvailable less a margin */
    uint64_t vram_budget;  /* 0: the device's memory less a margin */
    int n_ctx, n_batch;
    bool device;           /* the OpenCL backend runs the layers */
    bool prefetch;         /* overlap reads with compute (default) */
    int force_ram_layers;  /* -1: the planner decides; else keep this many in RAM */
    int n_prompt;          /* prompt length the time to first token is predicted for */
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
    double head_ms, token_ms, tokens_per_s, first_token_ms;
    const char *bottleneck;     /* which limit sets the speed */
    bool prefetch;
    lm_probes probes;
} lm_plan;

/* 0, or -1 with a one-line error (a budget that cannot hold even one layer
 * plus its buffers says the minimum that would work). */
int lm_plan_make(const lm_model *m, const lm_plan_request *req, const lm_probes *probes,
                 lm_plan *plan);
void lm_plan_free(lm_plan *plan);

/* The table `lamina plan` prints; the same as JSON; one summary line. */
void lm_plan_print(const lm_plan *plan, FILE *f);
void lm_plan_print_json(const lm_plan *plan, FILE *f);
void lm_plan_print_summary(const lm_plan *plan, FILE *f);

/* Layers streamed from disk, ascending, into layers (n_layer entries);
 * returns how many. */
int lm_plan_streamed_layers(const lm_plan *plan, int *layers);

/* "512M", "4G", "1.5GiB", "2000000" -> bytes; -1 with an error. */
int lm_parse_size(const char *text, uint64_t *bytes);
/* MemAvailable from /proc/meminfo, 0 if unknown. */
uint64_t lm_mem_available(void);

#endif
