#include "speculative.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "timing.h"
#include "tokenizer.h"

/* The n-grams prompt lookup matches, longest first (llama.cpp's 1..4). */
#define LOOKUP_NGRAM_MIN 1
#define LOOKUP_NGRAM_MAX 4
/* While plain passes win, a small proposal every this many rounds keeps the
 * acceptance measured (it may have changed with the text). */
#define PROBE_EVERY 16
/* Weight of the past in the running figures: the last ~10 rounds count. */
#define DECAY 0.9

lm_spec_params lm_spec_default_params(void)
{
    /* llama.cpp's defaults */
    return (lm_spec_params){.draft_max = 16, .draft_min = 0, .draft_p_min = 0.75f};
}

struct lm_spec {
    lm_session *t, *d;
    lm_spec_params p;
    bool greedy;
    int32_t n_vocab;
    lm_sampler *ts;      /* the target's: its history holds every final token */
    lm_sampler *rows;    /* scratch: the penalty window along a proposal */
    lm_sampler *ds;      /* the draft's (no penalty: any proposal law is fine) */
    int32_t *hist;       /* prompt and output; the last one not yet fed to the target */
    int n_hist, cap;
    int d_fed;           /* tokens of hist in the draft's cache */
    float *logits;       /* target: draft_max + 1 rows */
    float *dlogits;      /* draft: one row */
    int32_t *ids;        /* one distribution */
    float *probs;
    int32_t *q_ids;      /* sampling with a draft: its law at each proposed token */
    float *q_probs;
    int q_len[LM_SPEC_MAX_DRAFT];
    /* measured: seconds of a target pass of n rows, of a draft step */
    double t_pass[LM_SPEC_MAX_DRAFT + 2];
    bool have_pass[LM_SPEC_MAX_DRAFT + 2];
    double t_draft;
    bool have_draft;
    double acc, rej;     /* decayed counts of accepted and rejected guesses */
    float p_min;         /* the draft's confidence threshold now */
    bool p_min_stop;     /* the last proposal ended at the threshold */
    int since_probe;
    lm_spec_stats st;
};

/* ---- vocabulary */

int lm_spec_check_vocab(const lm_model *target, const lm_model *draft)
{
    const lm_tokenizer *a = target->tokenizer, *b = draft->tokenizer;
    const int32_t n = lm_tokenizer_n_vocab(a);
    if (n != lm_tokenizer_n_vocab(b)) {
        lm_set_error("the draft's vocabulary has %d tokens and the target's %d: a draft must "
                     "share the target's vocabulary", lm_tokenizer_n_vocab(b), n);
        return -1;
    }
    if (lm_tokenizer_bos(a) != lm_tokenizer_bos(b) || lm_tokenizer_eos(a) != lm_tokenizer_eos(b)) {
        lm_set_error("the draft's BOS/EOS tokens differ from the target's");
        return -1;
    }
    char pa[256], pb[256];
    for (int32_t id = 0; id < n; id++) {
        const int la = lm_token_to_piece(a, id, true, pa, sizeof pa);
        const int lb = lm_token_to_piece(b, id, true, pb, sizeof pb);
        const size_t cmp = (size_t)(la < (int)sizeof pa ? la : (int)sizeof pa);
        if (la != lb || (la > 0 && memcmp(pa, pb, cmp) != 0) ||
            lm_tokenizer_is_eog(a, id) != lm_tokenizer_is_eog(b, id)) {
            lm_set_error("the draft's token %d differs from the target's: a draft must share "
                         "the target's vocabulary", id);
            return -1;
        }
    }
    return 0;
}

/* ---- lifetime */

lm_spec *lm_spec_new(lm_session *target, lm_session *draft, const lm_spec_params *p,
                     const lm_sampler_params *sp)
{
    if (p->draft_max < 1 || p->draft_max > LM_SPEC_MAX_DRAFT || p->draft_min < 0 ||
        p->draft_min > p->draft_max) {
        lm_set_error("--draft-max must be 1 to %d and --draft-min 0 to --draft-max",
                     LM_SPEC_MAX_DRAFT);
        return NULL;
    }
    if (!p->lookup && (!draft || lm_spec_check_vocab(target->model, draft->model) != 0)) {
        if (!draft)
            lm_set_error("speculative decoding needs a draft model or lookup");
        return NULL;
    }
    if (target->n_batch < p->draft_max + 1) {
        lm_set_error("-b %d is too small to verify %d drafted tokens", target->n_batch,
                     p->draft_max);
        return NULL;
    }
    lm_spec *x = calloc(1, sizeof *x);
    if (!x)
        goto oom;
    x->t = target;
    x->d = p->lookup ? NULL : draft;
    x->p = *p;
    x->greedy = !(sp->temp > 0.0f);
    x->n_vocab = (int32_t)target->model->hp.n_vocab;
    lm_sampler_params dp = *sp;
    dp.repeat_penalty = 1.0f;
    dp.seed = sp->seed ^ 0x5bd1e995u;
    x->cap = target->n_ctx + LM_SPEC_MAX_DRAFT + 2;
    const size_t nv = (size_t)x->n_vocab;
    x->ts = lm_sampler_new(sp, x->n_vocab);
    x->rows = lm_sampler_new(sp, x->n_vocab);
    x->ds = lm_sampler_new(&dp, x->n_vocab);
    x->hist = malloc((size_t)x->cap * sizeof *x->hist);
    x->logits = malloc((size_t)(p->draft_max + 1) * nv * sizeof *x->logits);
    x->dlogits = malloc(nv * sizeof *x->dlogits);
    x->ids = malloc(nv * sizeof *x->ids);
    x->probs = malloc(nv * sizeof *x->probs);
    if (!x->greedy && x->d) {
        x->q_ids = malloc((size_t)p->draft_max * nv * sizeof *x->q_ids);
        x->q_probs = malloc((size_t)p->draft_max * nv * sizeof *x->q_probs);
    }
    if (!x->ts || !x->rows || !x->ds || !x->hist || !x->logits || !x->dlogits || !x->ids ||
        !x->probs || (!x->greedy && x->d && (!x->q_ids || !x->q_probs))) {
        lm_spec_free(x);
        goto oom;
    }
    x->acc = 1.4, x->rej = 0.6; /* a prior worth two guesses: acceptance 0.7 */
    x->p_min = p->draft_p_min;
    return x;
oom:
    lm_set_error("out of memory for speculative decoding");
    return NULL;
}

void lm_spec_free(lm_spec *x)
{
    if (!x)
        return;
    lm_sampler_free(x->ts);
    lm_sampler_free(x->rows);
    lm_sampler_free(x->ds);
    free(x->hist);
    free(x->logits);
    free(x->dlogits);
    free(x->ids);
    free(x->probs);
    free(x->q_ids);
    free(x->q_probs);
    free(x);
}

const lm_spec_stats *lm_spec_get_stats(const lm_spec *x)
{
    return &x->st;
}

/* ---- drawing */

/* A draw from ids/probs (len of them) with u in [0, 1). */
static int32_t draw_from(const int32_t *ids, const float *probs, int len, double u)
{
    double z = 0.0, cum = 0.0;
    for (int i = 0; i < len; i++)
        z += probs[i];
    u *= z;
    for (int i = 0; i < len; i++) {
        cum += probs[i];
        if (u < cum)
            return ids[i];
    }
    return ids[len - 1];
}

static float prob_of(const int32_t *ids, const float *probs, int len, int32_t id)
{
    for (int i = 0; i < len; i++)
        if (ids[i] == id)
            return probs[i];
    return 0.0f;
}

/* ---- proposing */

int lm_lookup_propose(const int32_t *hist, int n_hist, int ngram_min, int ngram_max, int max,
                      int32_t *out)
{
    for (int n = ngram_max; n >= ngram_min && n >= 1; n--) {
        if (n_hist < n + 1)
            continue;
        const int32_t *key = hist + n_hist - n;
        for (int j = n_hist - n - 1; j >= 0; j--) {
            if (memcmp(hist + j, key, (size_t)n * sizeof *key) != 0)
                continue;
            int len = n_hist - (j + n);
            len = len < max ? len : max;
            memcpy(out, hist + j + n, (size_t)len * sizeof *out);
            return len;
        }
    }
    return 0;
}

/* A running figure: recent values weigh most, and one far above it (the
 * machine was busy for a moment) moves it little. */
static void note_time(double *fig, bool *have, double s)
{
    if (!*have)
        *fig = s;
    else if (s > 3 * *fig)
        *fig = 0.98 * *fig + 0.02 * s;
    else
        *fig = DECAY * *fig + (1 - DECAY) * s;
    *have = true;
}

static void note_draft_time(lm_spec *x, double s, int steps)
{
    if (steps > 0)
        note_time(&x->t_draft, &x->have_draft, s / steps);
}

/* Up to k guesses from the draft model; the draft's cache follows. */
static int propose_draft(lm_spec *x, int k, int32_t *props)
{
    const double t0 = lm_now_seconds();
    int steps = 0, n = 0;
    x->p_min_stop = false;
    /* the tokens the draft has not read yet: at least the pending one */
    const int feed = x->n_hist - x->d_fed;
    if (feed > 0) {
        if (lm_session_eval(x->d, x->hist + x->d_fed, feed, false, x->dlogits) != 0)
            return -1;
        x->d_fed = x->n_hist;
        steps++;
    }
    for (; n < k; n++) {
        if (n > 0) {
            if (lm_session_eval(x->d, &props[n - 1], 1, false, x->dlogits) != 0)
                return -1;
            x->d_fed++;
            steps++;
        }
        if (x->greedy) {
            /* the argmax, and its probability at temperature 1 */
            int32_t best = 0;
            for (int32_t i = 1; i < x->n_vocab; i++)
                if (x->dlogits[i] > x->dlogits[best])
                    best = i;
            double z = 0.0;
            for (int32_t i = 0; i < x->n_vocab; i++)
                z += exp((double)x->dlogits[i] - x->dlogits[best]);
            if (!(1.0 / z >= x->p_min)) {
                x->p_min_stop = true;
                break;
            }
            props[n] = best;
        } else {
            int32_t *qi = x->q_ids + (size_t)n * x->n_vocab;
            float *qp = x->q_probs + (size_t)n * x->n_vocab;
            const int len = lm_sampler_dist(x->ds, x->dlogits, qi, qp);
            float top = 0.0f;
            for (int i = 0; i < len; i++)
                top = qp[i] > top ? qp[i] : top;
            if (top < x->p_min) {
                x->p_min_stop = true;
                break;
            }
            x->q_len[n] = len;
            props[n] = draw_from(qi, qp, len, lm_sampler_uniform(x->ds));
        }
    }
    x->st.draft_s += lm_now_seconds() - t0;
    note_draft_time(x, lm_now_seconds() - t0, steps);
    return n;
}

/* ---- how many to propose */

/* Seconds of a target pass of n rows: measured, or interpolated between the
 * nearest measured, or (past the last) as the last (reads dominate). */
static double pass_time(const lm_spec *x, int n)
{
    if (x->have_pass[n])
        return x->t_pass[n];
    int lo = n - 1, hi = n + 1;
    while (lo >= 1 && !x->have_pass[lo])
        lo--;
    while (hi <= LM_SPEC_MAX_DRAFT + 1 && !x->have_pass[hi])
        hi++;
    if (lo >= 1 && hi <= LM_SPEC_MAX_DRAFT + 1)
        return x->t_pass[lo] + (x->t_pass[hi] - x->t_pass[lo]) * (n - lo) / (hi - lo);
    return lo >= 1 ? x->t_pass[lo] : hi <= LM_SPEC_MAX_DRAFT + 1 ? x->t_pass[hi] : 0.0;
}

static int choose_k(lm_spec *x)
{
    if (x->p.fixed)
        return x->p.draft_max;
    if (!x->have_pass[1])
        return 0; /* first, what a plain pass costs */
    const double alpha = x->acc / (x->acc + x->rej);
    const double t_draft = x->d ? (x->have_draft ? x->t_draft : 0.0) : 0.0;
    int best = 0;
    double best_rate = 1.0 / pass_time(x, 1);
    const int k0 = x->p.draft_min > 1 ? x->p.draft_min : 1;
    for (int k = k0; k <= x->p.draft_max; k++) {
        const double tokens = alpha < 1.0 ? (1.0 - pow(alpha, k + 1)) / (1.0 - alpha) : k + 1;
        const double rate = tokens / (k * t_draft + pass_time(x, k + 1));
        if (rate > best_rate) {
            best_rate = rate;
            best = k;
        }
    }
    if (best == 0 && ++x->since_probe >= PROBE_EVERY) {
        x->since_probe = 0;
        return k0;
    }
    return best;
}

/* ---- judging a checking pass */

int lm_spec_judge(lm_sampler *target, lm_sampler *scratch, float *logits, int32_t n_vocab,
                  const int32_t *props, int n_prop, const int32_t *q_ids, const float *q_probs,
                  const int *q_len, int32_t *ids, float *probs, int32_t *out)
{
    const bool greedy = lm_sampler_is_greedy(target);
    /* walk the rows: row i is the target's law after the pending token and
     * props[0..i) */
    lm_sampler_copy_history(scratch, target);
    int n_out = 0;
    int32_t final = -1;
    for (int i = 0; i <= n_prop; i++) {
        float *row = logits + (size_t)i * n_vocab;
        const int len = lm_sampler_dist(scratch, row, ids, probs);
        if (i == n_prop) { /* all guesses taken: the target's own next token */
            final = greedy ? ids[0] : draw_from(ids, probs, len, lm_sampler_uniform(target));
            break;
        }
        const int32_t d = props[i];
        const int32_t *qi = q_ids ? q_ids + (size_t)i * n_vocab : NULL;
        const float *qp = q_probs ? q_probs + (size_t)i * n_vocab : NULL;
        bool take;
        if (greedy) {
            take = d == ids[0];
        } else {
            const float pd = prob_of(ids, probs, len, d);
            const float qd = qi ? prob_of(qi, qp, q_len[i], d) : 1.0f;
            take = qd > 0.0f && lm_sampler_uniform(target) < (double)pd / qd;
        }
        if (take) {
            out[n_out++] = d;
            lm_sampler_accept(scratch, d);
            continue;
        }
        if (greedy) {
            final = ids[0];
        } else {
            /* the residual max(0, p - q), normalised (draw_from does); p
             * itself if it is empty, which a rejection rules out but
             * rounding might not */
            double z = 0.0;
            for (int pass = 0; pass < 2; pass++)
                for (int j = 0; j < len; j++) {
                    const float q = qi ? prob_of(qi, qp, q_len[i], ids[j])
                                       : (ids[j] == d ? 1.0f : 0.0f);
                    const float r = probs[j] > q ? probs[j] - q : 0.0f;
                    if (pass == 0)
                        z += r;
                    else if (z > 0.0)
                        probs[j] = r;
                }
            final = draw_from(ids, probs, len, lm_sampler_uniform(target));
        }
        break;
    }
    out[n_out++] = final;
    return n_out;
}

/* ---- a round */

static int push_hist(lm_spec *x, int32_t id)
{
    if (x->n_hist >= x->cap) {
        lm_set_error("internal: speculative history full");
        return -1;
    }
    x->hist[x->n_hist++] = id;
    lm_sampler_accept(x->ts, id);
    return 0;
}

int lm_spec_prompt(lm_spec *x, const int32_t *prompt, int n_prompt, int32_t *first)
{
    if (n_prompt < 1 || n_prompt + 1 > x->cap) {
        lm_set_error("the prompt does not fit the context");
        return -1;
    }
    /* what the caches already hold of it (a conversation's earlier turns)
     * stays; at least the last token is evaluated, for its logits */
    const int held = lm_session_seq_pos(x->t, 0);
    int same = 0;
    while (same < held && same < x->n_hist && same < n_prompt - 1 &&
           x->hist[same] == prompt[same])
        same++;
    lm_session_seq_rm(x->t, 0, same);
    x->n_hist = same;
    for (int i = same; i < n_prompt; i++)
        if (push_hist(x, prompt[i]) != 0)
            return -1;
    if (lm_session_eval(x->t, prompt + same, n_prompt - same, false, x->logits) != 0)
        return -1;
    if (x->d) {
        /* the draft reads the prompt but the last token now; the last comes
         * with the first proposal */
        int d_same = x->d_fed < same ? x->d_fed : same;
        lm_session_seq_rm(x->d, 0, d_same);
        if (n_prompt - 1 > d_same &&
            lm_session_eval(x->d, prompt + d_same, n_prompt - 1 - d_same, false, NULL) != 0)
            return -1;
        x->d_fed = n_prompt - 1 > d_same ? n_prompt - 1 : d_same;
    }
    *first = lm_sampler_sample(x->ts, x->logits);
    return push_hist(x, *first);
}

int lm_spec_next(lm_spec *x, int32_t *out, int max_out)
{
    const int pos = lm_session_seq_pos(x->t, 0); /* the pending token goes here */
    const int room = x->t->n_ctx - pos;
    if (room < 1 || max_out < 1)
        return 0;
    int k = choose_k(x);
    k = k < room - 1 ? k : room - 1;
    k = k < max_out - 1 ? k : max_out - 1;
    int32_t tokens[LM_SPEC_MAX_DRAFT + 1];
    int32_t *props = tokens + 1;
    int n_prop = 0;
    if (k > 0 && x->d)
        n_prop = propose_draft(x, k, props);
    else if (k > 0)
        n_prop = lm_lookup_propose(x->hist, x->n_hist, LOOKUP_NGRAM_MIN, LOOKUP_NGRAM_MAX, k,
                                   props);
    if (n_prop < 0)
        return -1;
    if (n_prop < x->p.draft_min)
        n_prop = 0;
    tokens[0] = x->hist[x->n_hist - 1];

    const double t0 = lm_now_seconds();
    if (lm_session_verify(x->t, 0, n_prop + 1, tokens, x->logits) != 0)
        return -1;
    const double dt = lm_now_seconds() - t0;
    x->st.target_s += dt;
    note_time(&x->t_pass[n_prop + 1], &x->have_pass[n_prop + 1], dt);

    const int n_out = lm_spec_judge(x->ts, x->rows, x->logits, x->n_vocab, props, n_prop,
                                    x->d ? x->q_ids : NULL, x->d ? x->q_probs : NULL, x->q_len,
                                    x->ids, x->probs, out);
    const int accepted = n_out - 1;

    /* the target keeps the pending token and the guesses it took */
    lm_session_seq_rm(x->t, 0, pos + 1 + accepted);
    if (x->d && x->d_fed > x->n_hist + accepted) {
        x->d_fed = x->n_hist + accepted;
        lm_session_seq_rm(x->d, 0, x->d_fed);
    }
    for (int i = 0; i < n_out; i++)
        if (push_hist(x, out[i]) != 0)
            return -1;
    x->st.rounds++;
    x->st.tokens += (uint64_t)n_out;
    if (n_prop > 0) {
        x->st.spec_rounds++;
        x->st.drafted += (uint64_t)n_prop;
        x->st.accepted += (uint64_t)accepted;
        x->acc = DECAY * x->acc + accepted;
        x->rej = DECAY * x->rej + (accepted < n_prop);
    }
    /* a threshold that cut off proposals the target would all have taken
     * is too careful; one that let a wrong guess through, too bold */
    if (x->d && x->p.p_min_auto && k > 0) {
        if (accepted < n_prop)
            x->p_min = x->p_min / 0.7f < 0.95f ? x->p_min / 0.7f : 0.95f;
        else if (x->p_min_stop)
            x->p_min = x->p_min * 0.7f > 0.05f ? x->p_min * 0.7f : 0.05f;
    }
    return n_out;
}
