#define _GNU_SOURCE
#include "streamer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "timing.h"
#include "error.h"

/* Two buffers: one computing, one filling.  More would only help if reads
 * came in bursts, and each costs a whole layer of RAM. */
#define N_BUFFERS 2
#define STAGE_ALIGN 64

typedef enum { BUF_EMPTY, BUF_FILLING, BUF_FULL, BUF_IN_USE } buf_state;

typedef struct {
    uint8_t *data;
    buf_state state;
    int64_t seq;       /* which read of the endless sequence it holds */
    bool failed, upload_failed;
    char error[512];
    lm_layer_view view;
} stage_buf;

struct lm_streamer {
    const lm_model *m;
    lm_stream_layer *layers;
    int n_layers;
    bool prefetch;
    lm_backend *device;   /* staging memory is the device's, not ours */
    lm_layer_view *homes; /* per entry: where a layer kept in RAM for the device
                             lives (pinned memory), or data[] all NULL */
    bool *homed;
    void **unpinned;      /* homes in ordinary memory (no pinned memory to be had) */
    int n_unpinned;
    uint64_t buf_bytes;
    stage_buf buf[N_BUFFERS];

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool thread_running, stop, broken;
    bool upload_failed; /* the last failure was the copy to the device */
    /* Read number j holds layers[j % n_layers] in buf[j % N_BUFFERS]. */
    int64_t next_fill, next_use;
    lm_streamer_stats stats;
};

static uint64_t align_up(uint64_t x)
{
    return (x + STAGE_ALIGN - 1) & ~(uint64_t)(STAGE_ALIGN - 1);
}

/* The stretch of the file holding all of layer il's tensors.  GGUF writers
 * keep a layer's tensors together, so one pread of the stretch replaces a
 * dozen small ones; only padding between them is read for nothing. */
static void layer_span(const lm_model *m, int il, uint64_t *start, uint64_t *end)
{
    *start = UINT64_MAX;
    *end = 0;
    for (int w = 0; w < LM_W_PER_LAYER; w++) {
        const lm_gguf_tensor *t = m->layers[il].t[w];
        if (!t)
            continue;
        *start = t->file_offset < *start ? t->file_offset : *start;
        *end = t->file_offset + t->nbytes > *end ? t->file_offset + t->nbytes : *end;
    }
}

/* Read as one stretch when the gaps add little (an eighth at most). */
static bool span_is_compact(const lm_model *m, int il)
{
    uint64_t start, end;
    layer_span(m, il, &start, &end);
    return end - start <= m->layers[il].nbytes + m->layers[il].nbytes / 8;
}

uint64_t lm_streamer_layer_bytes(const lm_model *m, int il)
{
    if (span_is_compact(m, il)) {
        uint64_t start, end;
        layer_span(m, il, &start, &end);
        return align_up(end - start);
    }
    uint64_t bytes = 0;
    for (int w = 0; w < LM_W_PER_LAYER; w++)
        if (m->layers[il].t[w])
            bytes = align_up(bytes) + m->layers[il].t[w]->nbytes;
    return align_up(bytes);
}

static int read_fully(int fd, uint8_t *dst, uint64_t len, uint64_t off, const char *path,
                      const char *what, int il, char *msg, size_t msg_len)
{
    for (uint64_t done = 0; done < len;) {
        ssize_t got = pread(fd, dst + done, len - done, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(msg, msg_len, "%s: reading %s of layer %d: %s", path, what, il,
                     got < 0 ? strerror(errno) : "short read (was the file truncated?)");
            return -1;
        }
        done += (uint64_t)got;
    }
    return 0;
}

/* Reads all of layer il's tensors into data; 0, or -1 with msg filled. */
static int read_layer(const lm_streamer *st, const lm_stream_layer *sl, uint8_t *data,
                      lm_layer_view *view, char *msg, size_t msg_len, uint64_t *bytes)
{
    const lm_model *m = st->m;
    const int il = sl->layer;
    const bool drop_cache = sl->from_disk;
    view->device_slot = -1;
    view->experts = NULL;
    view->trace = NULL;
    const int fd = lm_gguf_fd(m->gguf);
    const char *path = lm_gguf_path(m->gguf);
    if (span_is_compact(m, il)) {
        uint64_t start, end;
        layer_span(m, il, &start, &end);
        if (read_fully(fd, data, end - start, start, path, "the tensors", il, msg, msg_len) != 0)
            return -1;
        if (drop_cache)
            posix_fadvise(fd, (off_t)start, (off_t)(end - start), POSIX_FADV_DONTNEED);
        for (int w = 0; w < LM_W_PER_LAYER; w++) {
            const lm_gguf_tensor *t = m->layers[il].t[w];
            view->data[w] = t ? data + (t->file_offset - start) : NULL;
        }
        *bytes += end - start;
        return 0;
    }
    uint64_t off = 0;
    for (int w = 0; w < LM_W_PER_LAYER; w++) {
        const lm_gguf_tensor *t = m->layers[il].t[w];
        view->data[w] = NULL;
        if (!t)
            continue;
        off = align_up(off);
        char what[96];
        snprintf(what, sizeof what, "tensor '%.*s'", (int)(t->name.len > 64 ? 64 : t->name.len),
                 t->name.data);
        if (read_fully(fd, data + off, t->nbytes, t->file_offset, path, what, il, msg,
                       msg_len) != 0)
            return -1;
        if (drop_cache)
            posix_fadvise(fd, (off_t)t->file_offset, (off_t)t->nbytes, POSIX_FADV_DONTNEED);
        view->data[w] = data + off;
        off += t->nbytes;
        *bytes += t->nbytes;
    }
    return 0;
}

/* Stages layer sl into buffer i (and, for a device's layer, on into the
 * device's slot i), accounting the time; 0, or -1 with b->error filled. */
static int stage(lm_streamer *st, const lm_stream_layer *sl, int i, stage_buf *b,
                 lm_streamer_stats *stats)
{
    uint64_t bytes = 0;
    const double t0 = lm_now_seconds();
    const int pos = (int)(sl - st->layers);
    int rc = 0;
    if (st->homed[pos]) /* already in pinned memory: only the copy to the device */
        b->view = st->homes[pos];
    else
        rc = read_layer(st, sl, b->data, &b->view, b->error, sizeof b->error, &bytes);
    const double t1 = lm_now_seconds();
    stats->bytes_read += bytes;
    stats->read_seconds += t1 - t0;
    b->upload_failed = false;
    if (rc != 0 || !sl->to_device)
        return rc;
    if (st->device->ops->upload_staged(st->device, i, sl->layer, &b->view) != 0) {
        snprintf(b->error, sizeof b->error, "%s", lm_last_error());
        b->upload_failed = true;
        return -1;
    }
    b->view.device_slot = i;
    stats->upload_seconds += lm_now_seconds() - t1;
    stats->bytes_uploaded += st->m->layers[sl->layer].nbytes;
    return 0;
}

static void *io_thread(void *arg)
{
    lm_streamer *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        stage_buf *b = &st->buf[st->next_fill % N_BUFFERS];
        while (!st->stop && b->state != BUF_EMPTY)
            pthread_cond_wait(&st->cv, &st->mu);
        if (st->stop)
            break;
        const int64_t seq = st->next_fill++;
        b->state = BUF_FILLING;
        pthread_mutex_unlock(&st->mu);

        lm_streamer_stats got = {0};
        const int rc = stage(st, &st->layers[seq % st->n_layers], (int)(seq % N_BUFFERS), b, &got);

        pthread_mutex_lock(&st->mu);
        b->failed = rc != 0;
        b->seq = seq;
        b->state = BUF_FULL;
        st->stats.bytes_read += got.bytes_read;
        st->stats.read_seconds += got.read_seconds;
        st->stats.upload_seconds += got.upload_seconds;
        st->stats.bytes_uploaded += got.bytes_uploaded;
        pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static void stop_thread(lm_streamer *st)
{
    if (!st->thread_running)
        return;
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    st->thread_running = false;
}

/* (Re)starts the sequence at position pos of the layer list. */
static int start_at(lm_streamer *st, int pos)
{
    stop_thread(st);
    for (int i = 0; i < N_BUFFERS; i++)
        st->buf[i].state = BUF_EMPTY;
    st->next_fill = st->next_use = pos;
    st->stop = st->broken = false;
    if (!st->prefetch)
        return 0;
    int err = pthread_create(&st->thread, NULL, io_thread, st);
    if (err) {
        lm_set_error("cannot start the I/O thread: %s", strerror(err));
        return -1;
    }
    st->thread_running = true;
    return 0;
}

/* Reads every layer kept in RAM for the device into pinned memory of its
 * own, once: each pass then only copies it to the device, with no staging
 * copy.  The pages read are dropped from the page cache (the layer is in
 * RAM once, where the plan counts it). */
static int pin_homes(lm_streamer *st)
{
    for (int i = 0; i < st->n_layers; i++) {
        if (!st->homed[i])
            continue;
        const lm_stream_layer once = {.layer = st->layers[i].layer, .from_disk = true};
        const uint64_t size = lm_streamer_layer_bytes(st->m, once.layer);
        uint8_t *data = st->device->ops->pinned_alloc(st->device, size);
        char msg[512];
        uint64_t bytes = 0;
        if (!data) {
            /* drivers limit pinned memory: ordinary memory copies slower
             * (through the driver's bounce buffer) but still works */
            if (posix_memalign((void **)&data, 4096, size) != 0) {
                lm_set_error("out of memory for layer %d (%.1f MiB)", once.layer,
                             (double)size / (1024.0 * 1024.0));
                return -1;
            }
            st->unpinned[st->n_unpinned++] = data;
        }
        if (read_layer(st, &once, data, &st->homes[i], msg, sizeof msg, &bytes) != 0) {
            lm_set_error("%s", msg);
            return -1;
        }
    }
    return 0;
}

lm_streamer *lm_streamer_new(const lm_model *m, const lm_stream_layer *layers, int n_layers,
                             bool prefetch, lm_backend *device)
{
    lm_streamer *st = calloc(1, sizeof *st);
    if (!st || n_layers < 1) {
        free(st);
        lm_set_error(n_layers < 1 ? "internal: nothing to stream" : "out of memory");
        return NULL;
    }
    st->m = m;
    st->n_layers = n_layers;
    st->prefetch = prefetch;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->layers = malloc((size_t)n_layers * sizeof *st->layers);
    if (!st->layers)
        goto oom;
    memcpy(st->layers, layers, (size_t)n_layers * sizeof *layers);
    st->homes = calloc((size_t)n_layers, sizeof *st->homes);
    st->homed = calloc((size_t)n_layers, sizeof *st->homed);
    st->unpinned = calloc((size_t)n_layers, sizeof *st->unpinned);
    if (!st->homes || !st->homed || !st->unpinned)
        goto oom;
    bool any_device = false;
    for (int i = 0; i < n_layers; i++) {
        any_device |= layers[i].to_device;
        /* a device's layer kept in RAM lives in pinned memory, read once */
        st->homed[i] = layers[i].to_device && !layers[i].from_disk;
        uint64_t b = lm_streamer_layer_bytes(m, layers[i].layer);
        if (!st->homed[i] && b > st->buf_bytes)
            st->buf_bytes = b;
    }
    if (any_device && (!device || !device->ops->pinned_alloc)) {
        lm_set_error("internal: layers for a device, but no device backend to stream to");
        lm_streamer_free(st);
        return NULL;
    }
    st->device = any_device ? device : NULL;
    if (pin_homes(st) != 0) {
        lm_streamer_free(st);
        return NULL;
    }
    for (int i = 0; st->buf_bytes && i < (prefetch ? N_BUFFERS : 1); i++) {
        if (st->device) {
            if (!(st->buf[i].data = st->device->ops->pinned_alloc(st->device, st->buf_bytes))) {
                lm_streamer_free(st);
                return NULL;
            }
        } else if (posix_memalign((void **)&st->buf[i].data, (size_t)2 << 20, st->buf_bytes) != 0) {
            goto oom;
        } else {
            /* huge pages where the kernel offers them: a third faster copying
             * out of the page cache (measured on 33 MB layers) */
            madvise(st->buf[i].data, st->buf_bytes, MADV_HUGEPAGE);
        }
    }
    if (start_at(st, 0) != 0) {
        lm_streamer_free(st);
        return NULL;
    }
    return st;
oom:
    lm_set_error("out of memory for %d staging buffers of %.1f MiB", prefetch ? N_BUFFERS : 1,
                 (double)st->buf_bytes / (1024.0 * 1024.0));
    lm_streamer_free(st);
    return NULL;
}

void lm_streamer_free(lm_streamer *st)
{
    if (!st)
        return;
    stop_thread(st);
    for (int i = 0; i < N_BUFFERS && !st->device; i++)
        free(st->buf[i].data);
    for (int i = 0; i < st->n_unpinned; i++)
        free(st->unpinned[i]);
    free(st->unpinned);
    free(st->homes);
    free(st->homed);
    free(st->layers);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}

static int position_of(const lm_streamer *st, int il)
{
    for (int i = 0; i < st->n_layers; i++)
        if (st->layers[i].layer == il)
            return i;
    return -1;
}

/* Without prefetch: read (and upload) now, on this thread, into the one buffer. */
static int acquire_now(lm_streamer *st, int pos, lm_layer_view *view)
{
    stage_buf *b = &st->buf[0];
    const double t0 = lm_now_seconds();
    int rc = stage(st, &st->layers[pos], 0, b, &st->stats);
    st->stats.wait_seconds += lm_now_seconds() - t0;
    st->upload_failed = rc != 0 && b->upload_failed;
    if (rc != 0) {
        lm_set_error("%s", b->error);
        return -1;
    }
    *view = b->view;
    return 0;
}

int lm_streamer_acquire(lm_streamer *st, int il, lm_layer_view *view)
{
    const int pos = position_of(st, il);
    if (pos < 0) {
        lm_set_error("internal: layer %d is not streamed", il);
        return -1;
    }
    if (!st->prefetch)
        return acquire_now(st, pos, view);
    if (st->broken || st->layers[st->next_use % st->n_layers].layer != il) {
        if (start_at(st, pos) != 0)
            return -1;
    }
    const double t0 = lm_now_seconds();
    pthread_mutex_lock(&st->mu);
    stage_buf *b = &st->buf[st->next_use % N_BUFFERS];
    while (b->state != BUF_FULL || b->seq != st->next_use)
        pthread_cond_wait(&st->cv, &st->mu);
    st->stats.wait_seconds += lm_now_seconds() - t0;
    if (b->failed) {
        st->broken = true;
        st->upload_failed = b->upload_failed;
        lm_set_error("%s", b->error);
        pthread_mutex_unlock(&st->mu);
        return -1;
    }
    b->state = BUF_IN_USE;
    *view = b->view;
    pthread_mutex_unlock(&st->mu);
    return 0;
}

void lm_streamer_release(lm_streamer *st)
{
    if (!st->prefetch)
        return;
    pthread_mutex_lock(&st->mu);
    stage_buf *b = &st->buf[st->next_use % N_BUFFERS];
    if (b->state == BUF_IN_USE) {
        b->state = BUF_EMPTY;
        st->next_use++;
        pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
}

bool lm_streamer_upload_failed(const lm_streamer *st)
{
    return st->upload_failed;
}

lm_streamer_stats lm_streamer_get_stats(const lm_streamer *st)
{
    lm_streamer_stats s;
    pthread_mutex_lock((pthread_mutex_t *)&st->mu);
    s = st->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&st->mu);
    return s;
}
