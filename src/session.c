#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"
#include "error.h"
#include "streamer.h"
#include "kernels.h"

/* The backend that name asks for, running every layer; NULL with lm_set_error. */
static lm_backend *make_backend(const lm_model *m, int n_ctx, int n_batch, const char *name,
                                const char *device)
{
    if (!name || strcmp(name, "cpu") == 0)
        return lm_backend_cpu_new(m, n_ctx, n_batch, NULL);
    if (strcmp(name, "opencl") != 0) {
        lm_set_error("unknown backend '%s' (cpu or opencl)", name);
        return NULL;
    }
#ifdef LAMINA_OPENCL
    return lm_backend_opencl_new(m, n_ctx, n_batch, device, NULL);
#else
    (void)device;
    lm_set_error("this lamina was built without OpenCL");
    return NULL;
#endif
}

lm_session *lm_session_new(const lm_model *m, int n_ctx, int n_batch)
{
    return lm_session_new_backend(m, n_ctx, n_batch, "cpu", NULL);
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
static lm_session *session_alloc(const lm_model *m, int n_ctx, int n_batch)
{
    if (n_ctx < 1 || n_batch < 1) {
        lm_set_error("context (%d) and batch (%d) must be positive", n_ctx, n_batch);
        return NULL;
    }
    if (n_batch > n_ctx)
        n_batch = n_ctx;
    lm_session *s = calloc(1, sizeof *s);
    if (!s) {
        lm_set_error("out of memory");
        return NULL;
    }
    s->model = m;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->x = malloc((size_t)n_batch * m->hp.n_embd * sizeof(float));
    s->logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    s->logits_rows = 1;
    s->layer_seconds = calloc(m->hp.n_layer, sizeof *s->layer_seconds);
    s->run_by = calloc(m->hp.n_layer, sizeof *s->run_by);
    s->history = malloc((size_t)n_ctx * sizeof *s->history);
    s->batch_len = calloc((size_t)n_ctx, sizeof *s->batch_len);
    if (!s->x || !s->logits || !s->layer_seconds || !s->run_by || !s->history || !s->batch_len) {
        lm_set_error("out of memory for a batch of %d", n_batch);
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

lm_session *lm_session_new_backend(const lm_model *m, int n_ctx, int n_batch,
                                   const char *backend, const char *device)
{
    lm_session *s = session_alloc(m, n_ctx, n_batch);
    if (!s)
        return NULL;
    lm_backend *b = make_backend(m, s->n_ctx, s->n_batch, backend, device);
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
    /* the streamer first: its staging memory may be the device's */
    lm_streamer_free(s->streamer);
    if (s->device)
        s->device->ops->free(s->device);
    if (s->cpu)
        s->cpu->ops->free(s->cpu);
    lm_plan_free(&s->plan);
    free(s->run_by);
    free(s->streamed);
    free(s->layer_seconds);
    free(s->history);
    free(s->batch_len);
    free(s->x);
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
        if (lm_place_streamed(p))
            list[n++] = (lm_stream_layer){
                .layer = il,
                .from_disk = p == LM_PLACE_DISK || p == LM_PLACE_DEVICE_DISK,
                .to_device = lm_place_on_device(p),
            };
    }
    const int rc = start_streamer(s, list, n, plan->prefetch);
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
        dev_run[il] = p == LM_PLACE_DEVICE                                      ? LM_RUN_RESIDENT
                      : p == LM_PLACE_DEVICE_RAM || p == LM_PLACE_DEVICE_DISK ? LM_RUN_STREAMED
                                                                                : LM_RUN_NONE;
        cpu_run[il] = lm_place_on_device(p) ? LM_RUN_NONE : LM_RUN_RESIDENT;
        any_cpu |= cpu_run[il] != LM_RUN_NONE;
        any_dev |= dev_run[il] != LM_RUN_NONE;
    }
    if (any_dev) {
#ifdef LAMINA_OPENCL
        const lm_backend_share share = {.layers = dev_run, .no_head = !plan->head_on_device,
                                        .n_slots = plan->prefetch ? 2 : 1};
        if (!(s->device = lm_backend_opencl_new(m, s->n_ctx, s->n_batch, device_spec, &share)))
            goto done;
#else
        (void)device_spec;
        lm_set_error("this lamina was built without OpenCL");
        goto done;
#endif
    }
    if (any_cpu) {
        const lm_backend_share share = {.layers = cpu_run, .no_head = plan->head_on_device};
        if (!(s->cpu = lm_backend_cpu_new(m, s->n_ctx, s->n_batch, &share)))
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

lm_session *lm_session_new_planned(const lm_model *m, int n_ctx, int n_batch, lm_plan *plan,
                                   const char *device_spec, bool fallback)
{
    lm_session *s = session_alloc(m, n_ctx, n_batch);
    if (!s) {
        lm_plan_free(plan);
        return NULL;
    }
    s->plan = *plan;
    memset(plan, 0, sizeof *plan);
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

void lm_session_rewind(lm_session *s, int pos)
{
    if (pos < s->n_past) {
        s->n_past = pos < 0 ? 0 : pos;
        if (s->cpu)
            s->cpu->ops->truncate(s->cpu, s->n_past);
        if (s->device)
            s->device->ops->truncate(s->device, s->n_past);
    }
}

/* The token ids were checked by lm_session_eval. */
static void embed(lm_session *s, const int32_t *tokens, int n)
{
    const lm_model *m = s->model;
    for (int t = 0; t < n; t++)
        lm_cpu_get_row(m->tok_embd->type, m->tok_embd->data, m->hp.n_embd, tokens[t],
                       s->x + (size_t)t * m->hp.n_embd);
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

/* One batch through every layer, then the head for the rows asked for.
 * *device_failed says whether a failure came from the device (its layers,
 * its head, a copy to it) rather than from the input or the disk. */
static int eval_batch(lm_session *s, const int32_t *tokens, int n, int first_out, float *logits,
                      bool *device_failed)
{
    const lm_model *m = s->model;
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
        const int rc = be->ops->forward_layer(be, (int)il, &view, s->x, n, s->n_past);
        if (streamed)
            lm_streamer_release(s->streamer);
        if (rc != 0) {
            *device_failed = be == s->device;
            return -1;
        }
        s->layer_seconds[il] += lm_now_seconds() - t0;
    }
    s->passes++;
    s->n_past += n;
    if (first_out >= n)
        return 0;
    if (s->head->ops->output(s->head, s->x + (size_t)first_out * m->hp.n_embd, n - first_out,
                             logits) != 0) {
        *device_failed = s->head == s->device;
        return -1;
    }
    return 0;
}

/* --backend auto, after a device error in the middle of a run: the CPU
 * backend takes over, and the tokens already in the device's KV cache are
 * evaluated again to rebuild it (the same bits: both backends compute
 * alike).  past: the positions that were in the cache before the failed
 * batch. */
static int fall_back_to_cpu(lm_session *s, int past)
{
    fprintf(stderr, "lamina: warning: %s; continuing on the CPU\n", lm_last_error());
    s->cpu_fallback = false;
    lm_backend *cpu = lm_backend_cpu_new(s->model, s->n_ctx, s->n_batch, NULL);
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
    /* in the same batches as before: one token and several tokens take
     * different summation orders in attention */
    s->n_past = 0;
    for (int done = 0; done < past;) {
        int chunk = s->batch_len[done] > 0 ? s->batch_len[done] : 1;
        chunk = chunk < past - done ? chunk : past - done; /* a batch cut by a rewind */
        bool device_failed;
        if (eval_batch(s, s->history + done, chunk, chunk, NULL, &device_failed) != 0)
            return -1;
        done += chunk;
    }
    return 0;
}

int lm_session_eval(lm_session *s, const int32_t *tokens, int n, bool all_logits,
                    float *logits_out)
{
    const size_t n_vocab = s->model->hp.n_vocab;
    if (n < 1) {
        lm_set_error("nothing to evaluate");
        return -1;
    }
    if (s->n_past + n > s->n_ctx) {
        lm_set_error("%d tokens do not fit the context (%d used of %d)", n, s->n_past, s->n_ctx);
        return -1;
    }
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= s->model->hp.n_vocab) {
            lm_set_error("token id %d is outside the vocabulary (0..%u)", tokens[t],
                         s->model->hp.n_vocab - 1);
            return -1;
        }
    for (int done = 0; done < n;) {
        const int chunk = n - done < s->n_batch ? n - done : s->n_batch;
        const bool last = done + chunk == n;
        /* rows whose logits are wanted: all of them, or the very last token */
        const int first_out = all_logits ? 0 : (last ? chunk - 1 : chunk);
        if (reserve_logits(s, chunk - first_out) != 0)
            return -1;
        const int past = s->n_past;
        bool device_failed;
        if (eval_batch(s, tokens + done, chunk, first_out, s->logits, &device_failed) != 0) {
            /* only the device's own failures are worth going on without it */
            if (!s->cpu_fallback || !device_failed || fall_back_to_cpu(s, past) != 0 ||
                eval_batch(s, tokens + done, chunk, first_out, s->logits, &device_failed) != 0)
                return -1;
        }
        memcpy(s->history + past, tokens + done, (size_t)chunk * sizeof *tokens);
        s->batch_len[past] = chunk;
        if (logits_out && all_logits)
            memcpy(logits_out + (size_t)done * n_vocab, s->logits,
                   (size_t)chunk * n_vocab * sizeof(float));
        else if (logits_out && last)
            memcpy(logits_out, s->logits, n_vocab * sizeof(float));
        done += chunk;
    }
    return 0;
}
