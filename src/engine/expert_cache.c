#define _GNU_SOURCE
#include "expert_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "timing.h"

#define SLOT_ALIGN 64
/* Threads reading experts at once: one pread at a time leaves a disk
 * (NVMe, virtio) idle between requests; several keep its queue full. */
#define N_READERS 16

static const int expert_roles[3] = {LM_W_GATE_EXPS, LM_W_UP_EXPS, LM_W_DOWN_EXPS};

typedef enum { SLOT_EMPTY, SLOT_READING, SLOT_FULL, SLOT_FAILED } slot_state;

typedef struct {
    int key; /* il * n_expert + e, or -1 */
    slot_state state;
    int pins;      /* acquired, not yet released */
    uint64_t used; /* the tick of its last acquire: the least recent goes first */
    uint8_t *data;
} slot;

struct lm_expert_cache {
    const lm_model *m;
    bool drop_pages;
    int n_expert, n_keys, n_slots;
    uint64_t slot_bytes;
    uint8_t *memory;
    slot *slots;
    int *where;   /* per key: its slot, or -1 */
    int *wants;   /* per key: wanted by the pass and not yet acquired */
    uint64_t *uses; /* per key: how often passes wanted it */
    lm_expert_evict evict;
    bool *queued; /* per key: waiting in the queue for a slot and a read */
    int *queue;   /* keys to read, a ring */
    int q_head, q_len;
    uint64_t tick;
    char error[512];

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t threads[N_READERS];
    int n_threads;
    int reading;         /* reads running now */
    double reads_since;  /* when the first of them started */
    bool stop;
    lm_expert_cache_stats stats;
};

static uint64_t align_up(uint64_t x)
{
    return (x + SLOT_ALIGN - 1) & ~(uint64_t)(SLOT_ALIGN - 1);
}

static uint64_t matrix_bytes(const lm_model *m, int il, int r)
{
    const lm_gguf_tensor *t = m->layers[il].t[expert_roles[r]];
    return t ? t->nbytes / m->hp.n_expert : 0;
}

uint64_t lm_expert_bytes(const lm_model *m, int il)
{
    if (!m->hp.n_expert || !m->layers[il].t[LM_W_FFN_ROUTER])
        return 0;
    uint64_t bytes = 0;
    for (int r = 0; r < 3; r++)
        bytes = align_up(bytes) + matrix_bytes(m, il, r);
    return align_up(bytes);
}

uint64_t lm_expert_slot_bytes(const lm_model *m)
{
    uint64_t most = 0;
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const uint64_t b = lm_expert_bytes(m, (int)il);
        most = b > most ? b : most;
    }
    return most;
}

/* The three matrices of the expert in slot s (layer il's layout). */
static void slot_matrices(const lm_expert_cache *c, const slot *s, int il, const void *mats[3])
{
    uint64_t off = 0;
    for (int r = 0; r < 3; r++) {
        off = align_up(off);
        mats[r] = s->data + off;
        off += matrix_bytes(c->m, il, r);
    }
}

/* Reads expert `key` into s->data; 0, or -1 with c->error filled (the
 * caller holds no lock: the message is written before the slot is marked). */
static int read_expert(lm_expert_cache *c, slot *s, int key, char *msg, size_t msg_len)
{
    const lm_model *m = c->m;
    const int il = key / c->n_expert, e = key % c->n_expert;
    const int fd = lm_gguf_fd(m->gguf);
    uint64_t off = 0;
    for (int r = 0; r < 3; r++) {
        const lm_gguf_tensor *t = m->layers[il].t[expert_roles[r]];
        const uint64_t len = matrix_bytes(m, il, r), at = t->file_offset + (uint64_t)e * len;
        off = align_up(off);
        for (uint64_t done = 0; done < len;) {
            const ssize_t got = pread(fd, s->data + off + done, len - done, (off_t)(at + done));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                snprintf(msg, msg_len, "%s: reading expert %d of layer %d: %s",
                         lm_gguf_path(m->gguf), e, il,
                         got < 0 ? strerror(errno) : "short read (was the file truncated?)");
                return -1;
            }
            done += (uint64_t)got;
        }
        if (c->drop_pages)
            posix_fadvise(fd, (off_t)at, (off_t)len, POSIX_FADV_DONTNEED);
        off += len;
    }
    return 0;
}

/* Whether slot a should be given up before slot b. */
static bool sooner(const lm_expert_cache *c, const slot *a, const slot *b)
{
    if (c->evict == LM_EVICT_FREQUENT && c->uses[a->key] != c->uses[b->key])
        return c->uses[a->key] < c->uses[b->key];
    return a->used < b->used;
}

/* A slot the next read may take: an empty one, else the one to give up
 * first that no pass holds or still wants; -1 if none is free yet. */
static int free_slot(const lm_expert_cache *c)
{
    int best = -1;
    for (int i = 0; i < c->n_slots; i++) {
        const slot *s = &c->slots[i];
        /* a failed read's slot stays until the pass that wants it says so */
        if (s->state == SLOT_EMPTY || (s->state == SLOT_FAILED && c->wants[s->key] == 0))
            return i;
        if (s->state == SLOT_FULL && s->pins == 0 && c->wants[s->key] == 0 &&
            (best < 0 || sooner(c, s, &c->slots[best])))
            best = i;
    }
    return best;
}

static void *io_thread(void *arg)
{
    lm_expert_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        int i = -1;
        while (!c->stop && (c->q_len == 0 || (i = free_slot(c)) < 0))
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break;
        const int key = c->queue[c->q_head];
        c->q_head = (c->q_head + 1) % c->n_keys;
        c->q_len--;
        c->queued[key] = false;
        slot *s = &c->slots[i];
        if (s->key >= 0)
            c->where[s->key] = -1;
        s->key = key;
        s->state = SLOT_READING;
        c->where[key] = i;
        if (c->reading++ == 0)
            c->reads_since = lm_now_seconds();
        pthread_mutex_unlock(&c->mu);

        char msg[512];
        const int rc = read_expert(c, s, key, msg, sizeof msg);

        pthread_mutex_lock(&c->mu);
        if (rc != 0)
            snprintf(c->error, sizeof c->error, "%s", msg);
        s->state = rc == 0 ? SLOT_FULL : SLOT_FAILED;
        if (--c->reading == 0)
            c->stats.read_seconds += lm_now_seconds() - c->reads_since;
        c->stats.bytes_read += rc == 0 ? lm_expert_bytes(c->m, key / c->n_expert) : 0;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

lm_expert_cache *lm_expert_cache_new(const lm_model *m, uint64_t budget_bytes, bool drop_pages,
                                     lm_expert_evict evict)
{
    const uint64_t slot_bytes = lm_expert_slot_bytes(m);
    if (!slot_bytes) {
        lm_set_error("internal: an expert cache for a model without experts");
        return NULL;
    }
    uint64_t n_slots = budget_bytes / slot_bytes;
    const uint64_t n_keys = (uint64_t)m->hp.n_layer * m->hp.n_expert;
    n_slots = n_slots < 2 ? 2 : n_slots > n_keys ? n_keys : n_slots;
    lm_expert_cache *c = calloc(1, sizeof *c);
    if (!c) {
        lm_set_error("out of memory");
        return NULL;
    }
    c->m = m;
    c->drop_pages = drop_pages;
    c->evict = evict;
    c->n_expert = (int)m->hp.n_expert;
    c->n_keys = (int)n_keys;
    c->n_slots = (int)n_slots;
    c->slot_bytes = slot_bytes;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->slots = calloc(n_slots, sizeof *c->slots);
    c->where = malloc(n_keys * sizeof *c->where);
    c->wants = calloc(n_keys, sizeof *c->wants);
    c->uses = calloc(n_keys, sizeof *c->uses);
    c->queued = calloc(n_keys, sizeof *c->queued);
    c->queue = malloc(n_keys * sizeof *c->queue);
    if (!c->slots || !c->where || !c->wants || !c->uses || !c->queued || !c->queue ||
        posix_memalign((void **)&c->memory, 4096, n_slots * slot_bytes) != 0) {
        c->memory = NULL;
        lm_set_error("out of memory for an expert cache of %.1f MiB",
                     (double)(n_slots * slot_bytes) / (1024.0 * 1024.0));
        lm_expert_cache_free(c);
        return NULL;
    }
    for (uint64_t k = 0; k < n_keys; k++)
        c->where[k] = -1;
    for (uint64_t i = 0; i < n_slots; i++)
        c->slots[i] = (slot){.key = -1, .state = SLOT_EMPTY, .data = c->memory + i * slot_bytes};
    for (; c->n_threads < N_READERS; c->n_threads++) {
        const int err = pthread_create(&c->threads[c->n_threads], NULL, io_thread, c);
        if (err) {
            lm_set_error("cannot start the expert reading threads: %s", strerror(err));
            lm_expert_cache_free(c);
            return NULL;
        }
    }
    return c;
}

void lm_expert_cache_free(lm_expert_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < c->n_threads; i++)
        pthread_join(c->threads[i], NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->memory);
    free(c->slots);
    free(c->where);
    free(c->wants);
    free(c->uses);
    free(c->queued);
    free(c->queue);
    free(c);
}

int lm_expert_cache_slots(const lm_expert_cache *c)
{
    return c->n_slots;
}

void lm_expert_cache_want(lm_expert_cache *c, int il, int32_t *experts, int n)
{
    int32_t misses[LM_MAX_EXPERTS];
    int n_hit = 0, n_miss = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++) {
        const int key = il * c->n_expert + experts[i];
        const int at = c->where[key];
        c->wants[key]++;
        c->uses[key]++;
        c->stats.wanted++;
        if (at >= 0 && c->slots[at].state == SLOT_FULL) {
            c->stats.hits++;
            experts[n_hit++] = experts[i];
            continue;
        }
        misses[n_miss++] = experts[i];
        if (at >= 0 && c->slots[at].state == SLOT_FAILED) { /* an abandoned read's */
            c->slots[at] = (slot){.key = -1, .state = SLOT_EMPTY, .data = c->slots[at].data};
            c->where[key] = -1;
        }
        if (c->where[key] < 0 && !c->queued[key]) {
            c->queue[(c->q_head + c->q_len++) % c->n_keys] = key;
            c->queued[key] = true;
        }
    }
    memcpy(experts + n_hit, misses, (size_t)n_miss * sizeof *misses);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* After a failed read: the pass is abandoned, so are its wants. */
static void forget_wants(lm_expert_cache *c)
{
    memset(c->wants, 0, (size_t)c->n_keys * sizeof *c->wants);
    memset(c->queued, 0, (size_t)c->n_keys * sizeof *c->queued);
    c->q_len = 0;
    c->error[0] = '\0'; /* said once */
    for (int i = 0; i < c->n_slots; i++)
        if (c->slots[i].state == SLOT_FAILED) {
            c->where[c->slots[i].key] = -1;
            c->slots[i] = (slot){.key = -1, .state = SLOT_EMPTY, .data = c->slots[i].data};
        }
}

void lm_expert_cache_abandon(lm_expert_cache *c)
{
    pthread_mutex_lock(&c->mu);
    forget_wants(c);
    pthread_mutex_unlock(&c->mu);
}

int lm_expert_cache_acquire(lm_expert_cache *c, int il, int e, const void *mats[3])
{
    const int key = il * c->n_expert + e;
    const double t0 = lm_now_seconds();
    pthread_mutex_lock(&c->mu);
    for (;;) {
        const int at = c->where[key];
        if (at >= 0 && c->slots[at].state == SLOT_FULL)
            break;
        if ((at >= 0 && c->slots[at].state == SLOT_FAILED) || (at < 0 && !c->queued[key])) {
            lm_set_error("%s", c->error[0] ? c->error : "internal: an expert acquired unwanted");
            forget_wants(c);
            pthread_mutex_unlock(&c->mu);
            return -1;
        }
        pthread_cond_wait(&c->cv, &c->mu);
    }
    slot *s = &c->slots[c->where[key]];
    s->pins++;
    s->used = ++c->tick;
    c->wants[key]--;
    c->stats.wait_seconds += lm_now_seconds() - t0;
    pthread_mutex_unlock(&c->mu);
    slot_matrices(c, s, il, mats);
    return 0;
}

void lm_expert_cache_release(lm_expert_cache *c, int il, int e)
{
    pthread_mutex_lock(&c->mu);
    const int at = c->where[il * c->n_expert + e];
    if (at >= 0 && c->slots[at].pins > 0)
        c->slots[at].pins--;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

lm_expert_cache_stats lm_expert_cache_get_stats(const lm_expert_cache *c)
{
    pthread_mutex_lock((pthread_mutex_t *)&c->mu);
    const lm_expert_cache_stats s = c->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
    return s;
}
