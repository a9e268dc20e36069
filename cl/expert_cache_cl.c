/* The device's expert cache: for a mixture's layers whose experts do not
 * all fit in device memory (LM_RUN_RESIDENT_DENSE), the layer's other
 * tensors stay on the device and each expert a pass uses is looked up in
 * slots of device memory, each holding one expert's gate, up and down
 * matrices.  A miss copies the expert from the host (from the file mapping,
 * or through the host's expert cache for experts read from disk) into the
 * slot given up first: the least recently used, or the least often used
 * (the less recent on a tie), as src/engine/expert_cache.c decides.
 *
 * One in-order queue runs the copies and the kernels, so a slot can be
 * given up even to an expert of the same pass: the kernels that read its
 * old expert were queued before the copy that overwrites it. */
#include "backend_cl.h" /* first: it fixes the OpenCL version to 1.2 */

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "expert_cache.h"

static const int roles[3] = {LM_W_GATE_EXPS, LM_W_UP_EXPS, LM_W_DOWN_EXPS};

/* as expert_cache.c lays an expert out, so a slot is lm_expert_slot_bytes */
#define SLOT_ALIGN 64

static uint64_t align_up(uint64_t x)
{
    return (x + SLOT_ALIGN - 1) & ~(uint64_t)(SLOT_ALIGN - 1);
}

static uint64_t matrix_bytes(const lm_model *m, int il, int r)
{
    const lm_gguf_tensor *t = m->layers[il].t[roles[r]];
    return t ? t->nbytes / m->hp.n_expert : 0;
}

/* Where each of layer il's three matrices starts in a slot; the slot's size. */
static uint64_t slot_layout(const lm_model *m, int il, uint64_t off[3])
{
    uint64_t at = 0;
    for (int r = 0; r < 3; r++) {
        off[r] = at;
        at = align_up(at + matrix_bytes(m, il, r));
    }
    return at;
}

int lm_cl_experts_create(cl_backend *cb, uint64_t bytes, bool frequent)
{
    const lm_model *m = cb->base.model;
    lm_cl_experts *c = &cb->experts;
    const uint64_t slot = lm_expert_slot_bytes(m);
    const uint64_t n_keys = (uint64_t)m->hp.n_layer * m->hp.n_expert;
    uint64_t n = slot ? bytes / slot : 0;
    n = n < 2 ? 2 : n > n_keys ? n_keys : n;
    c->n_slots = (int)n;
    c->n_expert = (int)m->hp.n_expert;
    c->frequent = frequent;
    c->slots = calloc(n, sizeof *c->slots);
    c->where = malloc(n_keys * sizeof *c->where);
    c->uses = calloc(n_keys, sizeof *c->uses);
    if (!c->slots || !c->where || !c->uses) {
        lm_set_error("out of memory");
        return -1;
    }
    for (uint64_t k = 0; k < n_keys; k++)
        c->where[k] = -1;
    /* a buffer per slot: one of them all could pass the device's largest
     * allocation */
    for (int i = 0; i < c->n_slots; i++) {
        c->slots[i].key = -1;
        if (!(c->slots[i].buf = lm_cl_alloc(&cb->mem, cb->ctx, CL_MEM_READ_ONLY, slot,
                                            "the device's expert cache")))
            return -1;
    }
    return 0;
}

void lm_cl_experts_free(cl_backend *cb)
{
    lm_cl_experts *c = &cb->experts;
    for (int i = 0; c->slots && i < c->n_slots; i++)
        lm_cl_release(&cb->mem, c->slots[i].buf);
    free(c->slots);
    free(c->where);
    free(c->uses);
    memset(c, 0, sizeof *c);
}

bool lm_cl_experts_cached(const cl_backend *cb, int il, int e)
{
    return cb->experts.where[il * cb->experts.n_expert + e] >= 0;
}

/* Whether slot a should be given up before slot b. */
static bool sooner(const lm_cl_experts *c, const lm_cl_expert_slot *a, const lm_cl_expert_slot *b)
{
    if (c->frequent && c->uses[a->key] != c->uses[b->key])
        return c->uses[a->key] < c->uses[b->key];
    return a->used < b->used;
}

/* The slot a miss takes: an empty one; else the one to give up first of
 * those this pass has not used; else of those it has (as the replay of
 * expert_trace.c, and the host's cache, whose reads start with the pass). */
static int victim(const lm_cl_experts *c)
{
    int best = -1, done = -1;
    for (int i = 0; i < c->n_slots; i++) {
        const lm_cl_expert_slot *s = &c->slots[i];
        if (s->key < 0)
            return i;
        int *pick = s->pass == c->pass ? &done : &best;
        if (*pick < 0 || sooner(c, s, &c->slots[*pick]))
            *pick = i;
    }
    return best >= 0 ? best : done;
}

void lm_cl_experts_begin_pass(cl_backend *cb)
{
    cb->experts.pass++;
}

/* Copies expert e of layer il from the host into slot s: from the host's
 * expert cache (blocking: its memory goes back to it at once), else from
 * the file mapping in the view (queued: the mapping stays). */
static int upload(cl_backend *cb, const lm_layer_view *view, int il, int e, cl_mem buf)
{
    const lm_model *m = cb->base.model;
    uint64_t off[3];
    slot_layout(m, il, off);
    const void *mats[3];
    if (view->experts) {
        if (lm_expert_cache_acquire(view->experts, il, e, mats) != 0)
            return -1;
    } else {
        for (int r = 0; r < 3; r++)
            mats[r] = (const uint8_t *)view->data[roles[r]] + (uint64_t)e * matrix_bytes(m, il, r);
    }
    const cl_bool blocking = view->experts ? CL_TRUE : CL_FALSE;
    cl_int err = CL_SUCCESS;
    for (int r = 0; r < 3 && err == CL_SUCCESS; r++)
        err = clEnqueueWriteBuffer(cb->queue, buf, blocking, off[r], matrix_bytes(m, il, r),
                                   mats[r], 0, NULL, NULL);
    if (view->experts)
        lm_expert_cache_release(view->experts, il, e);
    if (err != CL_SUCCESS) {
        lm_set_error("clEnqueueWriteBuffer(expert %d of layer %d to the device): %s (%d)", e, il,
                     lm_cl_error_name(err), err);
        return -1;
    }
    for (int r = 0; r < 3; r++)
        cb->experts.stats.bytes_uploaded += matrix_bytes(m, il, r);
    return 0;
}

int lm_cl_experts_get(cl_backend *cb, const lm_layer_view *view, int il, int e, cl_mem *buf,
                      uint64_t off[3])
{
    lm_cl_experts *c = &cb->experts;
    const int key = il * c->n_expert + e;
    slot_layout(cb->base.model, il, off);
    c->uses[key]++;
    c->stats.wanted++;
    int s = c->where[key];
    if (s >= 0) {
        c->stats.hits++;
    } else {
        s = victim(c);
        if (c->slots[s].key >= 0)
            c->where[c->slots[s].key] = -1;
        c->slots[s].key = -1;
        if (upload(cb, view, il, e, c->slots[s].buf) != 0)
            return -1;
        c->slots[s].key = key;
        c->where[key] = s;
    }
    c->slots[s].used = ++c->tick;
    c->slots[s].pass = c->pass;
    *buf = c->slots[s].buf;
    return 0;
}
