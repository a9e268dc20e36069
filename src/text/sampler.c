/* The sampler.  One call does: apply the repetition penalty, sanitise the
 * logits (NaN, inf) while finding the argmax, then either return that
 * (temp <= 0) or build the candidate set that survives top-k, top-p and
 * min-p, scale by the temperature and draw.
 *
 * Every filter is defined on the probabilities at temperature 1 (as in
 * llama.cpp, where temperature comes after them in the chain), so the filters
 * can work on logits directly: p_i / p_max = exp(l_i - l_max).
 *
 * Cost for a vocabulary of n: a few linear passes.  With top-k, a heap of k
 * entries picks the survivors and only those k are sorted.  Without top-k,
 * nothing is sorted: min-p is a logit threshold, and the top-p nucleus is
 * found by a quickselect on cumulative weight (expected linear time). */
#include "sampler.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "rng.h"

typedef struct {
    float logit;
    int32_t id;
    float w; /* exp(logit - max): the weight the filters add up */
} cand;

struct lm_sampler {
    lm_sampler_params p;
    int32_t n_vocab;
    uint64_t rng[4];    /* xoshiro256** state */
    int32_t *hist;      /* ring buffer of the last repeat_last_n tokens */
    int32_t hist_cap;
    int32_t hist_len;
    int32_t hist_head;  /* index of the next write */
    unsigned char *seen;/* per-token flag, all zero between calls */
    cand *c;            /* candidates, n_vocab entries */
};

lm_sampler_params lm_sampler_default_params(void)
{
    return (lm_sampler_params){
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 0, /* explicit: the CLI passes a time-based one when none is given */
    };
}

/* Uniform in [0, 1) with 53 random bits (the generator is src/rng.h's). */
static double rng_uniform(uint64_t s[4])
{
    return (double)(lm_rng_next(s) >> 11) * 0x1.0p-53;
}

/* ---- lifetime */

lm_sampler *lm_sampler_new(const lm_sampler_params *p, int32_t n_vocab)
{
    if (!p || n_vocab <= 0) {
        lm_set_error("sampler: invalid parameters (n_vocab %d)", (int)n_vocab);
        return NULL;
    }
    lm_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        lm_set_error("out of memory");
        return NULL;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    /* A negative repeat_last_n has no context size to stand for here: off. */
    s->hist_cap = p->repeat_last_n > 0 ? p->repeat_last_n : 0;
    s->seen = calloc((size_t)n_vocab, 1);
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    s->hist = s->hist_cap ? malloc((size_t)s->hist_cap * sizeof *s->hist) : NULL;
    if (!s->seen || !s->c || (s->hist_cap && !s->hist)) {
        lm_sampler_free(s);
        lm_set_error("out of memory");
        return NULL;
    }
    lm_rng_seed(s->rng, p->seed);
    return s;
}

void lm_sampler_free(lm_sampler *s)
{
    if (!s)
        return;
    free(s->hist);
    free(s->seen);
    free(s->c);
    free(s);
}

void lm_sampler_accept(lm_sampler *s, int32_t token)
{
    /* Out-of-range ids cannot be penalised; dropping them keeps the
     * penalty loop free of bounds checks. */
    if (!s->hist_cap || token < 0 || token >= s->n_vocab)
        return;
    s->hist[s->hist_head] = token;
    s->hist_head = (s->hist_head + 1) % s->hist_cap;
    if (s->hist_len < s->hist_cap)
        s->hist_len++;
}

/* ---- steps */

/* llama.cpp's rule, once per distinct token in the window: dividing a
 * negative logit would raise it, so negatives are multiplied instead.
 * It runs before sanitising: NaN and inf come out of it unchanged in kind. */
static void apply_penalty(lm_sampler *s, float *logits)
{
    const float pen = s->p.repeat_penalty;
    if (pen == 1.0f || !(pen > 0.0f) || s->hist_len == 0)
        return;
    for (int32_t i = 0; i < s->hist_len; i++) {
        int32_t t = s->hist[i];
        if (s->seen[t])
            continue;
        s->seen[t] = 1;
        logits[t] = logits[t] > 0.0f ? logits[t] / pen : logits[t] * pen;
    }
    for (int32_t i = 0; i < s->hist_len; i++)
        s->seen[s->hist[i]] = 0;
}

/* One pass that sanitises and finds the argmax.  NaN carries no preference:
 * -inf.  +inf would make softmax inf - inf = NaN, so it becomes the largest
 * finite value, which still wins.  Ties go to the lowest id, so greedy output
 * does not depend on scan order. */
static int32_t sanitise_argmax(float *logits, int32_t n)
{
    int32_t best = 0;
    float best_v = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        float v = logits[i];
        if (isnan(v))
            logits[i] = v = -INFINITY;
        else if (v == INFINITY)
            logits[i] = v = FLT_MAX;
        if (v > best_v) {
            best_v = v;
            best = i;
        }
    }
    return best;
}

/* A total order (higher logit first, then lower id) so that every selection
 * below is deterministic when logits tie. */
static bool better(cand a, cand b)
{
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int cmp_desc(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return better(*a, *b) ? -1 : better(*b, *a) ? 1 : 0;
}

static void swap(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Min-heap on `better`: the root is the worst of the k kept so far. */
static void heap_sift_down(cand *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(h[w], h[l]))
            w = l;
        if (r < n && better(h[w], h[r]))
            w = r;
        if (w == i)
            return;
        swap(&h[i], &h[w]);
        i = w;
    }
}

static void heap_sift_up(cand *h, int32_t i)
{
    while (i > 0 && better(h[i], h[(i - 1) / 2])) {
        swap(&h[i], &h[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
}

/* The k best finite logits, sorted best first: O(n log k), then O(k log k). */
static int32_t select_top_k(cand *out, const float *logits, int32_t n, int32_t k)
{
    int32_t len = 0;
    for (int32_t i = 0; i < n; i++) {
        if (logits[i] == -INFINITY)
            continue;
        cand x = {logits[i], i, 0.0f};
        if (len < k) {
            out[len] = x;
            heap_sift_up(out, len++);
        } else if (better(x, out[0])) {
            out[0] = x;
            heap_sift_down(out, len, 0);
        }
    }
    qsort(out, (size_t)len, sizeof *out, cmp_desc);
    return len;
}

/* min-p keeps p_i >= min_p * p_max, i.e. l_i >= l_max + log(min_p).  Both
 * paths use this one float threshold so they agree on boundary tokens. */
static float min_p_floor(float lmax, float min_p)
{
    return min_p > 0.0f ? lmax + logf(min_p) : -INFINITY;
}

/* Length of the nucleus of sorted candidates: the shortest prefix whose
 * weights reach goal, never less than 1. */
static int32_t top_p_len(const cand *c, int32_t len, double goal)
{
    double cum = 0.0;
    for (int32_t i = 0; i < len; i++) {
        cum += c[i].w;
        if (cum >= goal)
            return i + 1;
    }
    return len;
}

/* Top-k path: top-p renormalises over the k kept (as llama.cpp does), then
 * min-p; both cut a prefix of the sorted candidates. */
static int32_t select_top_k_path(lm_sampler *s, const float *logits)
{
    int32_t len = select_top_k(s->c, logits, s->n_vocab, s->p.top_k);
    if (len == 0)
        return 0;
    const float lmax = s->c[0].logit;
    double z = 0.0;
    for (int32_t i = 0; i < len; i++)
        z += s->c[i].w = expf(s->c[i].logit - lmax);
    if (s->p.top_p < 1.0f)
        len = top_p_len(s->c, len, (double)s->p.top_p * z);
    const float lo = min_p_floor(lmax, s->p.min_p);
    int32_t keep = 1;
    while (keep < len && s->c[keep].logit >= lo)
        keep++;
    return keep;
}

/* Moves the median of three to c[hi - 1] as the pivot: ordered input (ids
 * come in order, logits often do too) would make a fixed pivot quadratic. */
static void choose_pivot(cand *c, int32_t lo, int32_t hi)
{
    int32_t a = lo, b = lo + (hi - lo) / 2, d = hi - 1;
    if (better(c[b], c[a]))
        swap(&c[a], &c[b]);
    if (better(c[d], c[b])) {
        swap(&c[b], &c[d]);
        if (better(c[b], c[a]))
            swap(&c[a], &c[b]);
    }
    swap(&c[b], &c[d]); /* median now at hi - 1 */
}

/* Moves the candidates of c[lo, hi) better than the pivot c[hi - 1] to the
 * front, the pivot right after them; returns the pivot's index and their
 * weight. */
static int32_t partition(cand *c, int32_t lo, int32_t hi, double *mass)
{
    choose_pivot(c, lo, hi);
    const cand pivot = c[hi - 1];
    int32_t i = lo;
    double m = 0.0;
    for (int32_t j = lo; j < hi - 1; j++) {
        if (better(c[j], pivot)) {
            m += c[j].w;
            swap(&c[i++], &c[j]);
        }
    }
    swap(&c[i], &c[hi - 1]);
    *mass = m;
    return i;
}

/* Rearranges c so that c[0, m) is the top-p nucleus, the shortest prefix in
 * `better` order whose weight reaches goal (at least 1), and returns m.  A
 * quickselect on weight: expected O(len), where sorting a flat distribution's
 * nucleus of ~10^5 tokens costs milliseconds per token. */
static int32_t nucleus(cand *c, int32_t len, double goal)
{
    int32_t lo = 0, hi = len; /* c[0, lo) taken; the cut lies in [lo, hi) */
    while (hi - lo > 1) {
        double upper;
        int32_t p = partition(c, lo, hi, &upper);
        if (upper >= goal) {
            hi = p; /* the cut is among those better than the pivot */
            continue;
        }
        goal -= upper + c[p].w;
        lo = p + 1; /* they and the pivot are in */
        if (goal <= 0.0)
            return lo;
    }
    /* One left and the goal not reached: it is in.  hi is 0 only when
     * goal <= 0 (top_p <= 0) and the pivot, now c[0], was the best: keep it. */
    return hi > 0 ? hi : 1;
}

/* Without top-k: one pass gathers the tokens that survive min-p, with their
 * weights, and sums the weight of the whole vocabulary, over which top-p is
 * defined.  The nucleus is then picked without sorting: the draw does not
 * need order. */
static int32_t select_untruncated(lm_sampler *s, const float *logits, float lmax)
{
    const float lo = min_p_floor(lmax, s->p.min_p);
    int32_t len = 0;
    if (!(s->p.top_p < 1.0f)) { /* no weights needed before the draw */
        for (int32_t i = 0; i < s->n_vocab; i++)
            if (logits[i] >= lo && logits[i] != -INFINITY)
                s->c[len++] = (cand){logits[i], i, 0.0f};
        return len;
    }
    double z = 0.0;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        const float w = expf(logits[i] - lmax); /* 0 for -inf */
        z += w;
        if (logits[i] >= lo && logits[i] != -INFINITY)
            s->c[len++] = (cand){logits[i], i, w};
    }
    return len > 1 ? nucleus(s->c, len, (double)s->p.top_p * z) : len;
}

/* Softmax at the temperature over the survivors and one draw.  (l - lmax)/T
 * rather than l/T - lmax/T: large logits cannot overflow to inf - inf. */
static int32_t draw(lm_sampler *s, int32_t len, float lmax)
{
    const float inv_t = 1.0f / s->p.temp;
    double z = 0.0;
    for (int32_t i = 0; i < len; i++)
        z += s->c[i].w = expf((s->c[i].logit - lmax) * inv_t);
    const double u = rng_uniform(s->rng) * z;
    double cum = 0.0;
    for (int32_t i = 0; i < len; i++) {
        cum += s->c[i].w;
        if (u < cum)
            return s->c[i].id;
    }
    return s->c[len - 1].id; /* rounding left u at the very top */
}

int32_t lm_sampler_sample(lm_sampler *s, float *logits)
{
    const int32_t n = s->n_vocab;
    apply_penalty(s, logits);
    const int32_t best = sanitise_argmax(logits, n);
    if (!(s->p.temp > 0.0f) || logits[best] == -INFINITY)
        return best;
    const float lmax = logits[best];
    int32_t len = s->p.top_k > 0 && s->p.top_k < n ? select_top_k_path(s, logits)
                                                   : select_untruncated(s, logits, lmax);
    if (len <= 0)
        return best;
    return draw(s, len, lmax);
}

int32_t lm_sampler_dist(lm_sampler *s, float *logits, int32_t *ids, float *probs)
{
    const int32_t n = s->n_vocab;
    apply_penalty(s, logits);
    const int32_t best = sanitise_argmax(logits, n);
    if (!(s->p.temp > 0.0f) || logits[best] == -INFINITY) {
        ids[0] = best;
        probs[0] = 1.0f;
        return 1;
    }
    const float lmax = logits[best];
    int32_t len = s->p.top_k > 0 && s->p.top_k < n ? select_top_k_path(s, logits)
                                                   : select_untruncated(s, logits, lmax);
    if (len <= 0) {
        ids[0] = best;
        probs[0] = 1.0f;
        return 1;
    }
    /* the weights draw() would use, normalised */
    const float inv_t = 1.0f / s->p.temp;
    double z = 0.0;
    for (int32_t i = 0; i < len; i++)
        z += s->c[i].w = expf((s->c[i].logit - lmax) * inv_t);
    for (int32_t i = 0; i < len; i++) {
        ids[i] = s->c[i].id;
        probs[i] = (float)(s->c[i].w / z);
    }
    return len;
}

bool lm_sampler_is_greedy(const lm_sampler *s)
{
    return !(s->p.temp > 0.0f);
}

double lm_sampler_uniform(lm_sampler *s)
{
    return rng_uniform(s->rng);
}

void lm_sampler_copy_history(lm_sampler *dst, const lm_sampler *src)
{
    if (dst->hist_cap != src->hist_cap)
        return;
    if (src->hist_cap)
        memcpy(dst->hist, src->hist, (size_t)src->hist_cap * sizeof *src->hist);
    dst->hist_len = src->hist_len;
    dst->hist_head = src->hist_head;
}
