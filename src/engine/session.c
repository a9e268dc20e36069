#include "session.h"

#include "plan_learn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"
#include "error.h"
#include "expert_cache.h"
#include "expert_trace.h"
#include "streamer.h"
#include "kernels.h"

/* The backend that name asks for, running every layer; NULL with lm_set_error. */
static lm_backend *make_backend(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                                const char *name, const char *device)
{
    if (!name || strcmp(name, "cpu") == 0)
        return lm_backend_cpu_new(m, n_ctx, n_seq, n_batch, NULL);
    if (strcmp(name, "opencl") != 0) {
        lm_set_error("unknown backend '%s' (cpu or opencl)", name);
        return NULL;
    }
#ifdef LAMINA_OPENCL
    return lm_backend_opencl_new(m, n_ctx, n_seq, n_batch, device, NULL);
#else
    (void)device;
    lm_set_error("this lamina was built without OpenCL");
    return NULL;
#endif
}

lm_session *lm_session_new(const lm_model *m, int n_ctx, int n_batch)
{
    return lm_session_new_backend(m, n_ctx, 1, n_batch, "cpu", NULL);
}

uint64_t lm_session_device_peak(const lm_session *s)
{
    if (!s->device || !s->device->ops->device_peak_bytes)
        return 0;
    return s->device->ops->device_peak_bytes(s->device);
}

const char *lm_session_backend_name(const lm_session *s)
{
    if (s->device && s->cpu)
        return "opencl+cpu";
    return s->device ? s->device->ops->name : "cpu";
}

/* The state every session has, before any backend. */
static lm_session *session_alloc(const lm_model *m, int n_ctx, int n_seq, int n_batch)
{
    if (n_ctx < 1 || n_batch < 1 || n_seq < 1) {
        lm_set_error("context (%d), sequences (%d) and batch (%d) must be positive", n_ctx, n_seq,
                     n_batch);
        return NULL;
    }
    if (n_batch > n_ctx * n_seq)
        n_batch = n_ctx * n_seq;
    lm_session *s = calloc(1, sizeof *s);
    if (!s) {
        lm_set_error("out of memory");
        return NULL;
    }
    const size_t nb = (size_t)n_batch, cells = (size_t)n_seq * n_ctx;
    s->model = m;
    s->n_ctx = n_ctx;
    s->n_seq = n_seq;
    s->n_batch = n_batch;
    s->n_past = calloc((size_t)n_seq, sizeof *s->n_past);
    s->x = malloc(nb * m->hp.n_embd * sizeof(float));
    s->x_out = malloc(nb * m->hp.n_embd * sizeof(float));
    s->row_seq = malloc(nb * sizeof *s->row_seq);
    s->row_pos = malloc(nb * sizeof *s->row_pos);
    s->logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    s->logits_rows = 1;
    s->layer_seconds = calloc(m->hp.n_layer, sizeof *s->layer_seconds);
    s->timed_compute_seconds = calloc(m->hp.n_layer, sizeof *s->timed_compute_seconds);
    s->timed_probe_ms = calloc(m->hp.n_layer, sizeof *s->timed_probe_ms);
    s->pass_compute_seconds = calloc(m->hp.n_layer, sizeof *s->pass_compute_seconds);
    s->pass_probe_ms = calloc(m->hp.n_layer, sizeof *s->pass_probe_ms);
    s->run_by = calloc(m->hp.n_layer, sizeof *s->run_by);
    s->history = malloc(cells * sizeof *s->history);
    s->batch_len = calloc(cells, sizeof *s->batch_len);
    s->trace = lm_expert_trace_new(m); /* none: the run goes untraced */
    if (!s->n_past || !s->x || !s->x_out || !s->row_seq || !s->row_pos || !s->logits ||
        !s->layer_seconds || !s->timed_compute_seconds || !s->timed_probe_ms ||
        !s->pass_compute_seconds || !s->pass_probe_ms || !s->run_by || !s->history || !s->batch_len) {
        lm_set_error("out of memory for %d sequences of %d positions", n_seq, n_ctx);
        lm_session_free(s);
        return NULL;
    }
    return s;
}

/* One backend runs everything. */
static void give_all_to(lm_session *s, lm_backend *b)
{
    for (uint32_t il = 0; il < s->model->hp.n_layer; il++)
        s->run_by[il] = b;
    s->head = b;
}

lm_session *lm_session_new_backend(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                                   const char *backend, const char *device)
{
    lm_session *s = session_alloc(m, n_ctx, n_seq, n_batch);
    if (!s)
        return NULL;
    lm_backend *b = make_backend(m, s->n_ctx, s->n_seq, s->n_batch, backend, device);
    if (!b) {
        lm_session_free(s);
        return NULL;
    }
    if (strcmp(b->ops->name, "cpu") == 0)
        s->cpu = b;
    else
        s->device = b;
    give_all_to(s, b);
    return s;
}

void lm_session_free(lm_session *s)
{
    if (!s)
        return;
    lm_session_learn(s); /* what its passes took, for the next plan */
    lm_expert_trace_save(s->trace, s->model, LM_TRACE_MIN_WANTS);
    lm_expert_trace_free(s->trace);
    /* the streamer first: its staging memory may be the device's */
    lm_streamer_free(s->streamer);
    lm_expert_cache_free(s->experts);
    if (s->device)
        s->device->ops->free(s->device);
    if (s->cpu)
        s->cpu->ops->free(s->cpu);
    lm_plan_free(&s->plan);
    free(s->run_by);
    free(s->streamed);
    free(s->layer_seconds);
    free(s->timed_compute_seconds);
    free(s->timed_probe_ms);
    free(s->pass_compute_seconds);
    free(s->pass_probe_ms);
    free(s->history);
    free(s->batch_len);
    free(s->n_past);
    free(s->x);
    free(s->x_out);
    free(s->row_seq);
    free(s->row_pos);
    free(s->logits);
    free(s);
}

/* Starts the streamer over the given layers; 0 or -1. */
static int start_streamer(lm_session *s, const lm_stream_layer *list, int n, bool prefetch)
{
    if (n == 0)
        return 0;
    s->streamed = calloc(s->model->hp.n_layer, sizeof *s->streamed);
    s->streamer = lm_streamer_new(s->model, list, n, prefetch, s->device);
    if (!s->streamed || !s->streamer) {
        if (!s->streamed)
            lm_set_error("out of memory");
        free(s->streamed);
        s->streamed = NULL;
        return -1;
    }
    for (int i = 0; i < n; i++)
        s->streamed[list[i].layer] = true;
    return 0;
}

int lm_session_stream_layers(lm_session *s, const int *layers, int n, bool prefetch,
                             bool drop_cache)
{
    if (n == 0)
        return 0;
    if (s->device) {
        lm_set_error("internal: lm_session_stream_layers streams to the CPU only");
        return -1;
    }
    lm_stream_layer *list = calloc((size_t)n, sizeof *list);
    if (!list) {
        lm_set_error("out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        list[i] = (lm_stream_layer){.layer = layers[i], .from_disk = drop_cache};
    const int rc = start_streamer(s, list, n, prefetch);
    free(list);
    return rc;
}

/* The streamer's list for the plan's placement: every layer whose weights
 * come from disk, or go to the device, each pass. */
static int stream_planned(lm_session *s)
{
    const lm_plan *plan = &s->plan;
    lm_stream_layer *list = calloc((size_t)plan->n_layer, sizeof *list);
    if (!list) {
        lm_set_error("out of memory");
        return -1;
    }
    int n = 0;
    for (int il = 0; il < plan->n_layer; il++) {
        const lm_placement p = plan->place[il];
        /* a layer with its experts apart is in the mapping, less its
         * experts, which come through the expert cache */
        if (lm_place_streamed(p) && !lm_plan_layer_experts_apart(s->model, plan, il))
            list[n++] = (lm_stream_layer){
                .layer = il,
                .from_disk = p == LM_PLACE_DISK || p == LM_PLACE_DEVICE_DISK,
                .to_device = lm_place_on_device(p),
            };
    }
    lm_expert_cache_free(s->experts);
    s->experts = NULL;
    int rc = 0;
    if (plan->expert_cache_bytes &&
        !(s->experts = lm_expert_cache_new(s->model, plan->expert_cache_bytes, true,
                                           plan->evict_frequent ? LM_EVICT_FREQUENT
                                                                : LM_EVICT_RECENT)))
        rc = -1;
    if (rc == 0)
        rc = start_streamer(s, list, n, plan->prefetch);
    free(list);
    return rc;
}

/* The backends for the plan's split: the share of layers each runs. */
static int make_planned_backends(lm_session *s, const char *device_spec)
{
    const lm_plan *plan = &s->plan;
    const lm_model *m = s->model;
    uint8_t *cpu_run = calloc((size_t)plan->n_layer, 1), *dev_run = calloc((size_t)plan->n_layer, 1);
    bool any_cpu = !plan->head_on_device, any_dev = plan->head_on_device;
    int rc = -1;
    if (!cpu_run || !dev_run) {
        lm_set_error("out of memory");
        goto done;
    }
    for (int il = 0; il < plan->n_layer; il++) {
        const lm_placement p = plan->place[il];
        dev_run[il] = lm_plan_layer_device_experts_apart(m, plan, il) ? LM_RUN_RESIDENT_DENSE
                      : p == LM_PLACE_DEVICE                                    ? LM_RUN_RESIDENT
                      : p == LM_PLACE_DEVICE_RAM || p == LM_PLACE_DEVICE_DISK ? LM_RUN_STREAMED
                                                                                : LM_RUN_NONE;
        cpu_run[il] = lm_place_on_device(p) ? LM_RUN_NONE : LM_RUN_RESIDENT;
        any_cpu |= cpu_run[il] != LM_RUN_NONE;
        any_dev |= dev_run[il] != LM_RUN_NONE;
    }
    if (any_dev) {
#ifdef LAMINA_OPENCL
        const lm_backend_share share = {.layers = dev_run, .no_head = !plan->head_on_device,
                                        .n_slots = plan->prefetch ? 2 : 1,
                                        .expert_cache_bytes = plan->device_expert_cache_bytes,
                                        .evict_frequent = plan->evict_frequent};
        if (!(s->device = lm_backend_opencl_new(m, s->n_ctx, s->n_seq, s->n_batch, device_spec,
                                                &share)))
            goto done;
#else
        (void)device_spec;
        lm_set_error("this lamina was built without OpenCL");
        goto done;
#endif
    }
    if (any_cpu) {
        const lm_backend_share share = {.layers = cpu_run, .no_head = plan->head_on_device};
        if (!(s->cpu = lm_backend_cpu_new(m, s->n_ctx, s->n_seq, s->n_batch, &share)))
            goto done;
    }
    for (int il = 0; il < plan->n_layer; il++)
        s->run_by[il] = lm_place_on_device(plan->place[il]) ? s->device : s->cpu;
    s->head = plan->head_on_device ? s->device : s->cpu;
    rc = 0;
done:
    free(cpu_run);
    free(dev_run);
    return rc;
}

lm_session *lm_session_new_planned(const lm_model *m, int n_ctx, int n_seq, int n_batch,
                                   lm_plan *plan, const char *device_spec, bool fallback)
{
    lm_session *s = session_alloc(m, n_ctx, n_seq, n_batch);
    if (!s) {
        lm_plan_free(plan);
        return NULL;
    }
    s->plan = *plan;
    memset(plan, 0, sizeof *plan);
    lm_probe_watch_start(&s->watch);
    if (make_planned_backends(s, device_spec) != 0 || stream_planned(s) != 0) {
        lm_session_free(s);
        return NULL;
    }
    s->cpu_fallback = fallback && s->device;
    return s;
}

/* Bytes per pass of the layers whose placement passes the test. */
static uint64_t placed_bytes(const lm_session *s, bool (*test)(lm_placement))
{
    uint64_t bytes = 0;
    for (int il = 0; s->plan.place && il < s->plan.n_layer; il++)
        if (test(s->plan.place[il]))
            bytes += s->model->layers[il].nbytes;
    return bytes;
}

static bool from_disk(lm_placement p)
{
    return p == LM_PLACE_DISK || p == LM_PLACE_DEVICE_DISK;
}

static bool copied_to_device(lm_placement p)
{
    return p == LM_PLACE_DEVICE_RAM || p == LM_PLACE_DEVICE_DISK;
}

uint64_t lm_session_disk_bytes(const lm_session *s)
{
    return placed_bytes(s, from_disk);
}

uint64_t lm_session_device_streamed_bytes(const lm_session *s)
{
    return placed_bytes(s, copied_to_device);
}

/* ---- sequences ---------------------------------------------------------- */

static bool bad_seq(const lm_session *s, int seq)
{
    if (seq >= 0 && seq < s->n_seq)
        return false;
    lm_set_error("sequence %d does not exist (0..%d)", seq, s->n_seq - 1);
    return true;
}

int lm_session_seq_pos(const lm_session *s, int seq)
{
    return seq >= 0 && seq < s->n_seq ? s->n_past[seq] : 0;
}

/* Positions past a sequence's end are written before they are read: the
 * backends need no call. */
void lm_session_seq_rm(lm_session *s, int seq, int pos)
{
    if (seq >= 0 && seq < s->n_seq && pos < s->n_past[seq])
        s->n_past[seq] = pos < 0 ? 0 : pos;
}

void lm_session_rewind(lm_session *s, int pos)
{
    lm_session_seq_rm(s, 0, pos);
}

int lm_session_seq_copy(lm_session *s, int src, int dst, int n)
{
    if (bad_seq(s, src) || bad_seq(s, dst))
        return -1;
    if (n < 0 || n > s->n_past[src])
        n = s->n_past[src];
    if (src == dst) {
        lm_session_seq_rm(s, dst, n);
        return 0;
    }
    lm_backend *backends[] = {s->cpu, s->device};
    for (int i = 0; i < 2; i++)
        if (backends[i] && backends[i]->ops->seq_copy(backends[i], src, dst, n) != 0)
            return -1;
    const size_t from = (size_t)src * s->n_ctx, to = (size_t)dst * s->n_ctx;
    memcpy(s->history + to, s->history + from, (size_t)n * sizeof *s->history);
    memcpy(s->batch_len + to, s->batch_len + from, (size_t)n * sizeof *s->batch_len);
    /* a run cut by the copy's end is replayed, after a fallback, in the
     * pieces the copy holds */
    for (int p = 0; p < n; p++)
        if (s->batch_len[to + p] > n - p)
            s->batch_len[to + p] = n - p;
    s->n_past[dst] = n;
    return 0;
}

/* ---- passes ------------------------------------------------------------- */

/* The token ids were checked by lm_session_decode. */
static void embed(lm_session *s, const int32_t *tokens, int n)
{
    const lm_model *m = s->model;
    for (int t = 0; t < n; t++)
        lm_cpu_get_row(m->tok_embd->type, m->tok_embd->data, m->hp.n_embd, tokens[t],
                       s->x + (size_t)t * m->hp.n_embd);
    if (m->hp.embd_scale != 1.0f) /* Gemma's sqrt(n_embd) */
        lm_scale(s->x, m->hp.embd_scale, (int64_t)n * m->hp.n_embd);
}

/* Logits for a whole batch are only kept when asked for (perplexity): for
 * a 150k vocabulary they are 300 MB at batch 512. */
static int reserve_logits(lm_session *s, int rows)
{
    if (rows <= s->logits_rows)
        return 0;
    float *grown = realloc(s->logits, (size_t)rows * s->model->hp.n_vocab * sizeof(float));
    if (!grown) {
        lm_set_error("out of memory for %d rows of logits", rows);
        return -1;
    }
    s->logits = grown;
    s->logits_rows = rows;
    return 0;
}

/* One pass of the rows in s->row_seq/row_pos through every layer, then the
 * head for the rows that want logits (n_out of them, into s->logits).
 * *device_failed says whether a failure came from the device (its layers,
 * its head, a copy to it) rather than from the input or the disk. */
static int run_pass(lm_session *s, const int32_t *tokens, int n, const bool *want, int n_out,
                    const bool *single, bool *device_failed)
{
    const lm_model *m = s->model;
    const size_t n_embd = m->hp.n_embd;
    const lm_rows rows = {n, s->row_seq, s->row_pos, single};
    *device_failed = false;
    embed(s, tokens, n);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        lm_backend *be = s->run_by[il];
        const double t0 = lm_now_seconds();
        const bool streamed = s->streamed && s->streamed[il];
        lm_layer_view view;
        if (!streamed)
            lm_model_layer_view(m, (int)il, &view);
        else if (lm_streamer_acquire(s->streamer, (int)il, &view) != 0) {
            *device_failed = lm_streamer_upload_failed(s->streamer);
            return -1;
        }
        const bool host_cached =
            lm_plan_layer_experts_apart(m, &s->plan, (int)il) ||
            (s->plan.device_experts_from_disk &&
             lm_plan_layer_device_experts_apart(m, &s->plan, (int)il));
        if (s->experts && host_cached) {
            view.experts = s->experts; /* not the mapping: that would read the disk */
            for (int w = 0; w < LM_W_PER_LAYER; w++)
                if (lm_role_is_expert_stack(w))
                    view.data[w] = NULL;
        }
        view.trace = s->trace;
        /* the time it waits for experts is the disk's, not compute */
        const double waited0 = view.experts ? lm_expert_cache_get_stats(s->experts).wait_seconds : 0;
        const double t1 = lm_now_seconds();
        /* the activations stay on a device between its consecutive layers */
        const unsigned x_flags =
            (il > 0 && s->run_by[il - 1] == be ? LM_X_ON_BACKEND : 0) |
            (il + 1 < m->hp.n_layer && s->run_by[il + 1] == be ? LM_X_STAYS : 0);
        const int rc = be->ops->forward_layer(be, (int)il, &view, s->x, &rows, x_flags);
        const double t2 = lm_now_seconds();
        if (streamed)
            lm_streamer_release(s->streamer);
        if (rc != 0) {
            *device_failed = be == s->device;
            return -1;
        }
        s->layer_seconds[il] += t2 - t0;
        if (s->timing_pass) {
            s->pass_compute_seconds[il] =
                t2 - t1 - (view.experts ? lm_expert_cache_get_stats(s->experts).wait_seconds - waited0
                                        : 0);
            s->pass_probe_ms[il] = lm_plan_probe_compute_ms(m, &s->plan, (int)il, n);
        }
    }
    s->passes++;
    if (n_out == 0)
        return 0;
    /* the rows that want logits, side by side for the head */
    const float *xo = s->x;
    if (n_out < n) {
        int o = 0;
        for (int r = 0; r < n; r++)
            if (want[r])
                memcpy(s->x_out + (size_t)o++ * n_embd, s->x + (size_t)r * n_embd,
                       n_embd * sizeof(float));
        xo = s->x_out;
    }
    const double t0 = lm_now_seconds();
    if (s->head->ops->output(s->head, xo, n_out, s->logits) != 0) {
        *device_failed = s->head == s->device;
        return -1;
    }
    if (s->timing_pass) { /* the pass went through: its times count */
        s->timed_head_seconds += lm_now_seconds() - t0;
        s->timed_head_probe_ms += lm_plan_probe_head_ms(m, &s->plan, n_out);
        for (uint32_t il = 0; il < m->hp.n_layer; il++) {
            s->timed_compute_seconds[il] += s->pass_compute_seconds[il];
            s->timed_probe_ms[il] += s->pass_probe_ms[il];
        }
        s->timed_passes++;
    }
    return 0;
}

/* Sequence seq's tokens from position from to `to`, run by run as they
 * first went through (a run's length sets its summation order in
 * attention), alone in each pass: the same bits as the first time. */
static int replay(lm_session *s, int seq, int from, int to)
{
    const int32_t *hist = s->history + (size_t)seq * s->n_ctx;
    const int *runs = s->batch_len + (size_t)seq * s->n_ctx;
    for (int done = from; done < to;) {
        int chunk = runs[done] > 0 ? runs[done] : 1;
        chunk = chunk < to - done ? chunk : to - done;
        chunk = chunk < s->n_batch ? chunk : s->n_batch;
        for (int i = 0; i < chunk; i++) {
            s->row_seq[i] = seq;
            s->row_pos[i] = done + i;
        }
        bool device_failed;
        if (run_pass(s, hist + done, chunk, NULL, 0, NULL, &device_failed) != 0)
            return -1;
        done += chunk;
    }
    return 0;
}

/* --backend auto, after a device error in the middle of a run: the CPU
 * backend takes over, and the tokens already in the device's KV cache are
 * evaluated again to rebuild it (the same bits: both backends compute
 * alike). */
static int fall_back_to_cpu(lm_session *s)
{
    fprintf(stderr, "lamina: warning: %s; continuing on the CPU\n", lm_last_error());
    s->cpu_fallback = false;
    s->plan.figures_token_ms = 0; /* the plan no longer holds: nothing to learn */
    lm_backend *cpu = lm_backend_cpu_new(s->model, s->n_ctx, s->n_seq, s->n_batch, NULL);
    if (!cpu)
        return -1;
    lm_streamer_free(s->streamer);
    s->streamer = NULL;
    free(s->streamed);
    s->streamed = NULL;
    s->device->ops->free(s->device);
    s->device = NULL;
    if (s->cpu)
        s->cpu->ops->free(s->cpu);
    s->cpu = cpu;
    give_all_to(s, cpu);
    /* the device's layers now run from RAM, or from disk as before */
    for (int il = 0; s->plan.place && il < s->plan.n_layer; il++) {
        const lm_placement p = s->plan.place[il];
        s->plan.place[il] = p == LM_PLACE_DEVICE_DISK ? LM_PLACE_DISK
                            : lm_place_on_device(p)   ? LM_PLACE_RAM
                                                      : p;
    }
    s->plan.head_on_device = false;
    if (s->plan.place && stream_planned(s) != 0)
        return -1;
    for (int seq = 0; seq < s->n_seq; seq++)
        if (replay(s, seq, 0, s->n_past[seq]) != 0)
            return -1;
    return 0;
}

/* Fills s->row_seq/row_pos for a pass; -1 with an error on a bad input. */
static int place_rows(lm_session *s, int n, const int32_t *tokens, const int *seq)
{
    if (n < 1 || n > s->n_batch) {
        lm_set_error("a pass takes 1 to %d rows, not %d", s->n_batch, n);
        return -1;
    }
    for (int r = 0; r < n; r++) {
        if (tokens[r] < 0 || (uint32_t)tokens[r] >= s->model->hp.n_vocab) {
            lm_set_error("token id %d is outside the vocabulary (0..%u)", tokens[r],
                         s->model->hp.n_vocab - 1);
            return -1;
        }
        if (bad_seq(s, seq[r]))
            return -1;
        const bool continues = r > 0 && seq[r - 1] == seq[r];
        if (!continues)
            for (int q = 0; q < r; q++)
                if (seq[q] == seq[r]) {
                    lm_set_error("sequence %d's rows are not consecutive in the pass", seq[r]);
                    return -1;
                }
        s->row_seq[r] = seq[r];
        s->row_pos[r] = continues ? s->row_pos[r - 1] + 1 : s->n_past[seq[r]];
        if (s->row_pos[r] >= s->n_ctx) {
            lm_set_error("sequence %d is full: its context holds %d tokens", seq[r], s->n_ctx);
            return -1;
        }
    }
    return 0;
}

/* A pass; rows with single[r] are runs of their own (lm_rows.single). */
static int decode(lm_session *s, int n, const int32_t *tokens, const int *seq, const bool *want,
                  float *logits_out, const bool *single)
{
    if (place_rows(s, n, tokens, seq) != 0)
        return -1;
    int n_out = 0;
    for (int r = 0; want && r < n; r++)
        n_out += want[r];
    if (reserve_logits(s, n_out) != 0)
        return -1;
    bool device_failed;
    const double t0 = lm_now_seconds();
    /* every row wants logits, and no more rows than the probes measured
     * (sequences decoding, one verifying drafted tokens; not a prompt's
     * chunk, nor perplexity's): their parts' times teach the plan */
    s->timing_pass = s->plan.place && n_out == n && n <= LM_PROBE_BATCH + 1;
    const int rc = run_pass(s, tokens, n, want, n_out, single, &device_failed);
    s->timing_pass = false;
    if (rc != 0) {
        /* only the device's own failures are worth going on without it */
        if (!s->cpu_fallback || !device_failed || fall_back_to_cpu(s) != 0 ||
            place_rows(s, n, tokens, seq) != 0 ||
            run_pass(s, tokens, n, want, n_out, single, &device_failed) != 0)
            return -1;
    }
    if (n == 1 && n_out == 1) {
        s->decode_seconds += lm_now_seconds() - t0;
        s->decode_passes++;
    }
    /* each run is recorded where it started, for a replay */
    for (int r = 0; r < n; r++) {
        const size_t cell = (size_t)seq[r] * s->n_ctx + s->row_pos[r];
        const bool alone = single && single[r];
        const bool starts = alone || r == 0 || seq[r - 1] != seq[r] || (single && single[r - 1]);
        int len = 1;
        while (starts && !alone && r + len < n && seq[r + len] == seq[r] &&
               !(single && single[r + len]))
            len++;
        s->history[cell] = tokens[r];
        s->batch_len[cell] = starts ? len : 0;
    }
    for (int r = 0; r < n; r++)
        s->n_past[seq[r]] = s->row_pos[r] + 1;
    if (logits_out && n_out)
        memcpy(logits_out, s->logits, (size_t)n_out * s->model->hp.n_vocab * sizeof(float));
    return 0;
}

int lm_session_decode(lm_session *s, int n, const int32_t *tokens, const int *seq,
                      const bool *want, float *logits_out)
{
    return decode(s, n, tokens, seq, want, logits_out, NULL);
}

int lm_session_decode_single(lm_session *s, int n, const int32_t *tokens, const int *seq,
                             const bool *want, const bool *single, float *logits_out)
{
    return decode(s, n, tokens, seq, want, logits_out, single);
}

int lm_session_verify(lm_session *s, int seq, int n, const int32_t *tokens, float *logits_out)
{
    if (n < 1 || n > s->n_batch) {
        lm_set_error("internal: verifying %d tokens in passes of %d", n, s->n_batch);
        return -1;
    }
    int *seqs = malloc((size_t)n * sizeof *seqs);
    bool *want = malloc((size_t)n * sizeof *want);
    int rc = -1;
    if (!seqs || !want) {
        lm_set_error("out of memory");
    } else {
        for (int i = 0; i < n; i++) {
            seqs[i] = seq;
            want[i] = true;
        }
        rc = decode(s, n, tokens, seqs, want, logits_out, want); /* every row alone */
    }
    free(seqs);
    free(want);
    return rc;
}

int lm_session_eval(lm_session *s, const int32_t *tokens, int n, bool all_logits,
                    float *logits_out)
{
    const size_t n_vocab = s->model->hp.n_vocab;
    if (n < 1) {
        lm_set_error("nothing to evaluate");
        return -1;
    }
    if (s->n_past[0] + n > s->n_ctx) {
        lm_set_error("%d tokens do not fit the context (%d used of %d)", n, s->n_past[0],
                     s->n_ctx);
        return -1;
    }
    int *seq = calloc((size_t)s->n_batch, sizeof *seq);
    bool *want = calloc((size_t)s->n_batch, sizeof *want);
    int rc = seq && want ? 0 : -1;
    if (rc)
        lm_set_error("out of memory");
    for (int done = 0; rc == 0 && done < n;) {
        const int chunk = n - done < s->n_batch ? n - done : s->n_batch;
        const bool last = done + chunk == n;
        for (int i = 0; i < chunk; i++)
            want[i] = all_logits || (last && i == chunk - 1);
        float *out = !logits_out ? NULL
                     : all_logits ? logits_out + (size_t)done * n_vocab
                     : last       ? logits_out
                                  : NULL;
        rc = lm_session_decode(s, chunk, tokens + done, seq, want, out);
        done += chunk;
    }
    free(seq);
    free(want);
    return rc;
}
