#include "expert_trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "cache_dir.h"

/* At most this many ints of records (a layer, a count, the experts): the
 * first 1500 decoded tokens of a 48-layer model using 8 experts, which is
 * plenty to tell a skewed router from a uniform one, in a file of a few
 * MiB. */
#define TRACE_MAX_INTS (1 << 20)
/* A stored trace larger than this is not one of ours. */
#define TRACE_MAX_FILE ((size_t)32 << 20)
#define TRACE_MAGIC "lamina-expert-trace 1"
/* rows of a pass: more than any batch */
#define TRACE_MAX_ROWS (1 << 24)

struct lm_expert_trace {
    int n_layer, n_expert;
    int32_t *rec; /* per pass and layer: il, its rows, n, then n experts */
    size_t len, cap;
    uint64_t wants;
};

static lm_expert_trace *trace_alloc(int n_layer, int n_expert)
{
    lm_expert_trace *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n_layer = n_layer;
    t->n_expert = n_expert;
    return t;
}

lm_expert_trace *lm_expert_trace_new(const lm_model *m)
{
    if (!m->hp.n_expert)
        return NULL;
    return trace_alloc((int)m->hp.n_layer, (int)m->hp.n_expert);
}

void lm_expert_trace_free(lm_expert_trace *t)
{
    if (!t)
        return;
    free(t->rec);
    free(t);
}

/* Appends one record; false when the trace is full (or memory is out). */
static bool append(lm_expert_trace *t, int il, int rows, const int32_t *experts, int n)
{
    const size_t need = t->len + 3 + (size_t)n;
    if (need > TRACE_MAX_INTS)
        return false;
    if (need > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 4096;
        cap = cap < need ? need : cap;
        cap = cap > TRACE_MAX_INTS ? TRACE_MAX_INTS : cap;
        int32_t *grown = realloc(t->rec, cap * sizeof *grown);
        if (!grown)
            return false;
        t->rec = grown;
        t->cap = cap;
    }
    t->rec[t->len++] = il;
    t->rec[t->len++] = rows;
    t->rec[t->len++] = n;
    memcpy(t->rec + t->len, experts, (size_t)n * sizeof *experts);
    t->len += (size_t)n;
    t->wants += (uint64_t)n;
    return true;
}

void lm_expert_trace_add(lm_expert_trace *t, int il, int rows, const int32_t *experts, int n)
{
    if (t && il >= 0 && il < t->n_layer && rows > 0 && rows < TRACE_MAX_ROWS && n > 0 &&
        n <= t->n_expert)
        append(t, il, rows, experts, n);
}

uint64_t lm_expert_trace_wants(const lm_expert_trace *t)
{
    return t ? t->wants : 0;
}

/* ---- stored: a header line, then a line "il rows e1 e2 ..." per record --- */

static int trace_path(int n_layer, int n_expert, uint64_t weight_bytes, char *path, size_t len)
{
    char dir[4096];
    if (lm_cache_dir("routes", dir, sizeof dir) != 0)
        return -1;
    const int w = snprintf(path, len, "%s/w%llu-l%d-e%d.txt", dir,
                           (unsigned long long)weight_bytes, n_layer, n_expert);
    return w > 0 && (size_t)w < len ? 0 : -1;
}

void lm_expert_trace_save(const lm_expert_trace *t, const lm_model *m, uint64_t min_wants)
{
    char path[4200];
    if (!t || t->wants < min_wants ||
        trace_path(t->n_layer, t->n_expert, m->weight_bytes, path, sizeof path) != 0)
        return;
    lm_atomic_file a;
    if (lm_atomic_open(&a, path) != 0)
        return;
    fprintf(a.f, "%s %d %d\n", TRACE_MAGIC, t->n_layer, t->n_expert);
    for (size_t i = 0; i < t->len;) {
        const int n = t->rec[i + 2];
        fprintf(a.f, "%d %d", t->rec[i], t->rec[i + 1]);
        for (int k = 0; k < n; k++)
            fprintf(a.f, " %d", t->rec[i + 3 + (size_t)k]);
        fputc('\n', a.f);
        i += 3 + (size_t)n;
    }
    lm_atomic_commit(&a, 0); /* failing, the last trace stays */
}

/* The next decimal int in [0, limit) at *p (spaces and tabs before it
 * skipped, not newlines); -1 if there is none or it is out of range. */
static int next_int(const char **p, const char *end, int limit)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
    long v = 0;
    const char *start = *p;
    while (*p < end && **p >= '0' && **p <= '9' && *p - start < 9)
        v = v * 10 + (*(*p)++ - '0');
    if (*p == start || (*p < end && **p >= '0' && **p <= '9') || v >= limit)
        return -1;
    return (int)v;
}

lm_expert_trace *lm_expert_trace_parse(const char *text, size_t len, int n_layer, int n_expert)
{
    const char *p = text, *end = text + len;
    char header[96];
    const int hl = snprintf(header, sizeof header, "%s %d %d\n", TRACE_MAGIC, n_layer, n_expert);
    if (n_layer <= 0 || n_expert <= 0 || n_expert > LM_MAX_EXPERTS || hl <= 0 ||
        len < (size_t)hl || memcmp(text, header, (size_t)hl) != 0)
        return NULL;
    p += hl;
    lm_expert_trace *t = trace_alloc(n_layer, n_expert);
    if (!t)
        return NULL;
    int32_t experts[LM_MAX_EXPERTS];
    bool seen[LM_MAX_EXPERTS];
    while (p < end) {
        const int il = next_int(&p, end, n_layer);
        const int rows = il < 0 ? -1 : next_int(&p, end, TRACE_MAX_ROWS);
        int n = 0;
        memset(seen, 0, sizeof seen);
        while (rows > 0 && p < end && *p != '\n') {
            const int e = next_int(&p, end, n_expert);
            if (e < 0 || seen[e])
                goto bad;
            seen[e] = true;
            experts[n++] = e;
        }
        /* every record ends its line, and lists an expert at least */
        if (rows <= 0 || n == 0 || p == end || !append(t, il, rows, experts, n))
            goto bad;
        p++;
    }
    if (t->len > 0)
        return t;
bad:
    lm_expert_trace_free(t);
    return NULL;
}

lm_expert_trace *lm_expert_trace_load(const lm_model *m)
{
    char path[4200];
    if (!m->hp.n_expert ||
        trace_path((int)m->hp.n_layer, (int)m->hp.n_expert, m->weight_bytes, path,
                   sizeof path) != 0)
        return NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    /* as large as the file says it is, one byte more to see it end */
    struct stat st;
    const size_t size = fstat(fileno(f), &st) == 0 && st.st_size >= 0 &&
                                (uint64_t)st.st_size < TRACE_MAX_FILE
                            ? (size_t)st.st_size + 1
                            : 0;
    char *text = size ? malloc(size) : NULL;
    const size_t len = text ? fread(text, 1, size, f) : 0;
    const bool whole = text && len < size && !ferror(f);
    fclose(f);
    lm_expert_trace *t =
        whole ? lm_expert_trace_parse(text, len, (int)m->hp.n_layer, (int)m->hp.n_expert) : NULL;
    free(text);
    return t;
}

/* ---- the cache replayed ---------------------------------------------------- */

typedef struct {
    lm_expert_evict evict;
    int n_slots;
    int *slot_key;       /* per slot: its expert's key, or -1 */
    uint64_t *slot_tick; /* per slot: when it was last used */
    int *where;          /* per key: its slot, or -1 */
    uint64_t *uses;      /* per key: how often passes wanted it */
    uint8_t *in_pass;    /* per key: 1 wanted by this pass, 2 and used already */
} replay;

/* Whether slot a should be given up before slot b (expert_cache.c's sooner). */
static bool sooner(const replay *r, int a, int b)
{
    const uint64_t ua = r->uses[r->slot_key[a]], ub = r->uses[r->slot_key[b]];
    if (r->evict == LM_EVICT_FREQUENT && ua != ub)
        return ua < ub;
    return r->slot_tick[a] < r->slot_tick[b];
}

/* The slot a miss takes: an empty one; else the one to give up first of
 * those no expert of the pass holds (the reads start as the pass begins);
 * else of those the pass is done with. */
static int victim(const replay *r)
{
    int best = -1, done = -1;
    for (int i = 0; i < r->n_slots; i++) {
        const int key = r->slot_key[i];
        if (key < 0)
            return i;
        if (r->in_pass[key] == 0 && (best < 0 || sooner(r, i, best)))
            best = i;
        if (r->in_pass[key] == 2 && (done < 0 || sooner(r, i, done)))
            done = i;
    }
    return best >= 0 ? best : done;
}

double lm_expert_trace_hit_rate(const lm_expert_trace *t, const bool *apart, int n_slots,
                                lm_expert_evict evict, uint64_t *wants)
{
    *wants = 0;
    if (!t)
        return 0.0;
    const int n_keys = t->n_layer * t->n_expert;
    n_slots = n_slots < 2 ? 2 : n_slots > n_keys ? n_keys : n_slots;
    replay r = {.evict = evict, .n_slots = n_slots};
    r.slot_key = malloc((size_t)n_slots * sizeof *r.slot_key);
    r.slot_tick = calloc((size_t)n_slots, sizeof *r.slot_tick);
    r.where = malloc((size_t)n_keys * sizeof *r.where);
    r.uses = calloc((size_t)n_keys, sizeof *r.uses);
    r.in_pass = calloc((size_t)n_keys, 1);
    /* decoding's passes (one row each) are what a plan predicts; a trace of
     * none counts them all */
    bool any_single = false;
    for (size_t i = 0; i < t->len && !any_single; i += 3 + (size_t)t->rec[i + 2])
        any_single = apart[t->rec[i]] && t->rec[i + 1] == 1;
    uint64_t hits = 0, total = 0, tick = 0;
    if (r.slot_key && r.slot_tick && r.where && r.uses && r.in_pass) {
        for (int i = 0; i < n_slots; i++)
            r.slot_key[i] = -1;
        for (int k = 0; k < n_keys; k++)
            r.where[k] = -1;
        for (size_t i = 0; i < t->len;) {
            const int il = t->rec[i], n = t->rec[i + 2];
            const bool counted = !any_single || t->rec[i + 1] == 1;
            const int32_t *ex = t->rec + i + 3;
            i += 3 + (size_t)n;
            if (!apart[il])
                continue;
            for (int k = 0; k < n; k++) {
                const int key = il * t->n_expert + ex[k];
                r.uses[key]++;
                r.in_pass[key] = 1;
            }
            /* the cached ones are used first, in order ... */
            for (int k = 0; k < n; k++) {
                const int key = il * t->n_expert + ex[k];
                if (r.where[key] >= 0) {
                    hits += counted;
                    r.slot_tick[r.where[key]] = ++tick;
                    r.in_pass[key] = 2;
                }
            }
            /* ... then the others, each read into a slot */
            for (int k = 0; k < n; k++) {
                const int key = il * t->n_expert + ex[k];
                if (r.in_pass[key] == 2)
                    continue;
                const int s = victim(&r);
                if (s < 0) /* (cannot be: a pass's misses are in no slot) */
                    break;
                if (r.slot_key[s] >= 0)
                    r.where[r.slot_key[s]] = -1;
                r.slot_key[s] = key;
                r.where[key] = s;
                r.slot_tick[s] = ++tick;
                r.in_pass[key] = 2;
            }
            for (int k = 0; k < n; k++)
                r.in_pass[il * t->n_expert + ex[k]] = 0;
            total += counted ? (uint64_t)n : 0;
        }
    }
    free(r.slot_key);
    free(r.slot_tick);
    free(r.where);
    free(r.uses);
    free(r.in_pass);
    *wants = total;
    return total ? (double)hits / (double)total : 0.0;
}
