/* Opening an engine the way a user asks for one: probe the machine (cached),
 * plan where every layer lives and runs within the RAM and VRAM budgets, make
 * the engine that follows the plan, and fall back to the CPU when the device
 * cannot be had.  The `lamina` program and the public lamina.h both open
 * engines here. */
#ifndef LM_ENGINE_OPEN_H
#define LM_ENGINE_OPEN_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "plan.h"
#include "session.h"

typedef struct {
    int n_ctx;            /* KV positions in all, shared evenly by the sequences */
    int n_seq;            /* sequences decoded together (at least 1) */
    int n_batch;          /* most rows in one pass */
    int n_prompt;         /* prompt length the plan predicts the first token for */
    const char *backend;  /* NULL or "auto": the planner decides; "cpu"; "opencl" */
    const char *device;   /* the OpenCL device (NULL: the default) */
    int gpu_layers;       /* -1: the planner decides; else this many (the last) on the device */
    uint64_t ram_budget;  /* 0: MemAvailable less a margin */
    uint64_t vram_budget; /* 0: the device's memory less a margin */
    int ram_layers;       /* -1: the planner decides; else keep this many in RAM */
    bool no_prefetch;     /* reads and compute in turn */
    bool whole_layers;    /* mixtures of experts: read every expert of a streamed layer */
    uint64_t expert_cache; /* bytes for the expert cache; 0: what the RAM budget leaves */
    bool evict_frequent;   /* the expert cache gives up the least often used */
    bool evict_auto;       /* ... or, if it hits more replaying the routing the
                              model's last run recorded, the least recently
                              used (expert_trace.h) */
    bool reprobe;         /* measure the probes again */
    bool quiet;           /* no plan summary or loading lines on stderr */
} lm_engine_params;

lm_engine_params lm_engine_default_params(void);

/* The plan these parameters give (probing first, from the cache where it
 * can): 0, or -1 with an error. */
int lm_engine_plan(const lm_model *m, const lm_engine_params *p, lm_plan *plan);

/* The engine; NULL with an error. */
lm_session *lm_engine_open(const lm_model *m, const lm_engine_params *p);

#endif
