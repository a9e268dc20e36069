/* The expert cache: for the mixture-of-experts layers read from disk each
 * pass, only the experts the router picked are read, one expert (its gate,
 * up and down matrices) at a time, at their offsets inside the stacked
 * GGUF tensors, into slots of a fixed budget of RAM.  Experts used again
 * while still in a slot are not read again; when every slot is taken, the
 * least recently used expert gives its slot up, or (LM_EVICT_FREQUENT) the
 * one used least often since the cache began, the less recent on a tie
 * (what each gave on the models measured: bench/RESULTS.md).
 *
 * A layer's pass says which experts it will use (lm_expert_cache_want)
 * as soon as the router has picked them; the cached ones are put first in
 * that list, and I/O threads start reading the rest at once, in order,
 * while the cached ones compute.  The pass then takes each expert in the
 * list's order (acquire, compute, release).  A slot the pass still wants
 * is never given up, so two slots are enough to make progress, and reads
 * overlap compute from the second one on. */
#ifndef LM_EXPERT_CACHE_H
#define LM_EXPERT_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

typedef struct lm_expert_cache lm_expert_cache;

typedef enum { LM_EVICT_RECENT, LM_EVICT_FREQUENT } lm_expert_evict;

typedef struct {
    uint64_t wanted;     /* (layer, expert) pairs passes used */
    uint64_t hits;       /* ... of which were in a slot already */
    uint64_t bytes_read; /* read from the file for the misses */
    double read_seconds; /* time during which any read was running */
    double wait_seconds; /* time passes waited for an expert */
} lm_expert_cache_stats;

/* Bytes one expert of layer il takes (its three matrices), 0 for a layer
 * without experts. */
uint64_t lm_expert_bytes(const lm_model *m, int il);
/* The slot size: the largest expert of any layer. */
uint64_t lm_expert_slot_bytes(const lm_model *m);

/* A cache of budget_bytes (at least two slots' worth) for m's experts.
 * drop_pages: drop each read's pages from the page cache, so that every
 * miss reads the disk and the page cache does not grow with the model. */
lm_expert_cache *lm_expert_cache_new(const lm_model *m, uint64_t budget_bytes, bool drop_pages,
                                     lm_expert_evict evict);
void lm_expert_cache_free(lm_expert_cache *c);
int lm_expert_cache_slots(const lm_expert_cache *c);

/* Layer il will use experts[0..n) (distinct): reorders them, cached ones
 * first, and starts reading the others. */
void lm_expert_cache_want(lm_expert_cache *c, int il, int32_t *experts, int n);
/* Waits until expert e of layer il (wanted before) is in a slot; mats gets
 * its gate, up and down matrices, which stay until the release.  0, or -1
 * with a one-line error (a read failed; the wants of the pass are then
 * forgotten). */
int lm_expert_cache_acquire(lm_expert_cache *c, int il, int e, const void *mats[3]);
void lm_expert_cache_release(lm_expert_cache *c, int il, int e);
/* A pass that fails before it has acquired every expert it wanted gives
 * the rest up, so their slots can go to later passes. */
void lm_expert_cache_abandon(lm_expert_cache *c);

lm_expert_cache_stats lm_expert_cache_get_stats(const lm_expert_cache *c);

#endif
