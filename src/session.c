#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"
#include "error.h"
#include "streamer.h"
#include "kernels.h"

/* The backend that name asks for; NULL with lm_set_error. */
static lm_backend *make_backend(const lm_model *m, int n_ctx, int n_batch, const char *name,
                                const char *device)
{
    if (!name || strcmp(name, "cpu") == 0)
        return lm_backend_cpu_new(m, n_ctx, n_batch);
    if (strcmp(name, "opencl") != 0 && strcmp(name, "auto") != 0) {
        lm_set_error("unknown backend '%s' (cpu, opencl or auto)", name);
        return NULL;
    }
#ifdef LAMINA_OPENCL
    lm_backend *b = lm_backend_opencl_new(m, n_ctx, n_batch, device);
    if (b || strcmp(name, "opencl") == 0)
        return b;
    fprintf(stderr, "lamina: warning: OpenCL backend unavailable (%s); running on the CPU\n",
            lm_last_error());
#else
    (void)device;
    if (strcmp(name, "opencl") == 0) {
        lm_set_error("this lamina was built without OpenCL");
        return NULL;
    }
#endif
    return lm_backend_cpu_new(m, n_ctx, n_batch);
}

lm_session *lm_session_new(const lm_model *m, int n_ctx, int n_batch)
{
    return lm_session_new_backend(m, n_ctx, n_batch, "cpu", NULL);
}

uint64_t lm_session_device_peak(const lm_session *s)
{
    const lm_backend_ops *ops = s->backend->ops;
    return ops->device_peak_bytes ? ops->device_peak_bytes(s->backend) : 0;
}

lm_session *lm_session_new_backend(const lm_model *m, int n_ctx, int n_batch,
                                   const char *backend, const char *device)
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
    if (!s->x || !s->logits || !s->layer_seconds) {
        lm_set_error("out of memory for a batch of %d", n_batch);
        lm_session_free(s);
        return NULL;
    }
    s->backend = make_backend(m, n_ctx, n_batch, backend, device);
    s->history = malloc((size_t)n_ctx * sizeof *s->history);
    s->batch_len = calloc((size_t)n_ctx, sizeof *s->batch_len);
    if (!s->backend || !s->history || !s->batch_len) {
        if (s->backend)
            lm_set_error("out of memory");
        lm_session_free(s);
        return NULL;
    }
    s->cpu_fallback = backend && strcmp(backend, "auto") == 0 &&
                      strcmp(s->backend->ops->name, "cpu") != 0;
    return s;
}

void lm_session_free(lm_session *s)
{
    if (!s)
        return;
    if (s->backend)
        s->backend->ops->free(s->backend);
    lm_streamer_free(s->streamer);
    lm_plan_free(&s->plan);
    free(s->streamed);
    free(s->layer_seconds);
    free(s->history);
    free(s->batch_len);
    free(s->x);
    free(s->logits);
    free(s);
}

int lm_session_stream_layers(lm_session *s, const int *layers, int n, bool prefetch,
                             bool drop_cache)
{
    if (n == 0)
        return 0;
    if (strcmp(s->backend->ops->name, "cpu") != 0) {
        lm_set_error("streaming layers to the %s backend is not in this version",
                     s->backend->ops->name);
        return -1;
    }
    s->streamed = calloc(s->model->hp.n_layer, sizeof *s->streamed);
    s->streamer = lm_streamer_new(s->model, layers, n, prefetch, drop_cache);
    if (!s->streamed || !s->streamer) {
        if (!s->streamed)
            lm_set_error("out of memory");
        free(s->streamed);
        s->streamed = NULL;
        return -1;
    }
    for (int i = 0; i < n; i++)
        s->streamed[layers[i]] = true;
    return 0;
}

int lm_session_follow_plan(lm_session *s, lm_plan *plan)
{
    lm_plan_free(&s->plan);
    s->plan = *plan;
    memset(plan, 0, sizeof *plan);
    int *layers = malloc(s->model->hp.n_layer * sizeof *layers);
    if (!layers) {
        lm_set_error("out of memory");
        return -1;
    }
    const int n = lm_plan_streamed_layers(&s->plan, layers);
    const int rc = lm_session_stream_layers(s, layers, n, s->plan.prefetch, true);
    free(layers);
    return rc;
}

uint64_t lm_session_streamed_bytes(const lm_session *s)
{
    uint64_t bytes = 0;
    for (uint32_t il = 0; s->streamed && il < s->model->hp.n_layer; il++)
        if (s->streamed[il])
            bytes += s->model->layers[il].nbytes;
    return bytes;
}

void lm_session_rewind(lm_session *s, int pos)
{
    if (pos < s->n_past) {
        s->n_past = pos < 0 ? 0 : pos;
        s->backend->ops->truncate(s->backend, s->n_past);
    }
}

static int embed(lm_session *s, const int32_t *tokens, int n)
{
    const lm_model *m = s->model;
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= m->hp.n_vocab) {
            lm_set_error("token id %d is outside the vocabulary (0..%u)", tokens[t],
                         m->hp.n_vocab - 1);
            return -1;
        }
        lm_cpu_get_row(m->tok_embd->type, m->tok_embd->data, m->hp.n_embd, tokens[t],
                       s->x + (size_t)t * m->hp.n_embd);
    }
    return 0;
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

/* One batch through every layer, then the head for the rows asked for. */
static int eval_batch(lm_session *s, const int32_t *tokens, int n, int first_out, float *logits)
{
    const lm_model *m = s->model;
    lm_backend *be = s->backend;
    if (embed(s, tokens, n) != 0)
        return -1;
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const double t0 = lm_now_seconds();
        const bool streamed = s->streamed && s->streamed[il];
        lm_layer_view view;
        if (!streamed)
            lm_model_layer_view(m, (int)il, &view);
        else if (lm_streamer_acquire(s->streamer, (int)il, &view) != 0)
            return -1;
        const int rc = be->ops->forward_layer(be, (int)il, &view, s->x, n, s->n_past);
        if (streamed)
            lm_streamer_release(s->streamer);
        if (rc != 0)
            return -1;
        s->layer_seconds[il] += lm_now_seconds() - t0;
    }
    s->passes++;
    s->n_past += n;
    if (first_out >= n)
        return 0;
    return be->ops->output(be, s->x + (size_t)first_out * m->hp.n_embd, n - first_out, logits);
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
    lm_backend *cpu = lm_backend_cpu_new(s->model, s->n_ctx, s->n_batch);
    if (!cpu)
        return -1;
    s->backend->ops->free(s->backend);
    s->backend = cpu;
    /* in the same batches as before: one token and several tokens take
     * different summation orders in attention */
    s->n_past = 0;
    for (int done = 0; done < past;) {
        int chunk = s->batch_len[done] > 0 ? s->batch_len[done] : 1;
        chunk = chunk < past - done ? chunk : past - done; /* a batch cut by a rewind */
        if (eval_batch(s, s->history + done, chunk, chunk, NULL) != 0)
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
    for (int done = 0; done < n;) {
        const int chunk = n - done < s->n_batch ? n - done : s->n_batch;
        const bool last = done + chunk == n;
        /* rows whose logits are wanted: all of them, or the very last token */
        const int first_out = all_logits ? 0 : (last ? chunk - 1 : chunk);
        if (reserve_logits(s, chunk - first_out) != 0)
            return -1;
        const int past = s->n_past;
        if (eval_batch(s, tokens + done, chunk, first_out, s->logits) != 0) {
            if (!s->cpu_fallback || fall_back_to_cpu(s, past) != 0 ||
                eval_batch(s, tokens + done, chunk, first_out, s->logits) != 0)
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
