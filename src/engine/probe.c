#define _GNU_SOURCE
#include "config.h"
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "timing.h"
#include "error.h"
#include "backend.h"
#include "kernels.h"
#include "membw.h"

#define DISK_PROBE_MAX ((uint64_t)256 << 20)
#define DISK_PROBE_SECONDS 0.12 /* per pass */
#define DISK_PROBE_PASSES 4
/* A virtual disk's passes differ by up to 1.7x on a quiet machine
 * (measured here: 0.6-1.2 GB/s from one pass to the next): its repeats
 * agree when the next is within 2x of the best. */
#define DISK_PROBE_AGREE 2.0
#define DISK_CHUNK_MIN ((uint64_t)8 << 20)
#define CPU_PROBE_BYTES ((size_t)64 << 20) /* past the caches: decode reads RAM */
#define CPU_PROBE_BATCH 32

/* Uncached reads of the model file: drop its pages from the page cache,
 * then time sequential preads of the tensor data, each the size of a layer,
 * as the streamer reads them (large reads go faster than readahead's).
 * Four passes over four stretches one after the other (none re-reads what
 * another read: a virtual disk's host may cache it), the best kept: what
 * slows a disk for a moment (another program's writes, the hypervisor)
 * only ever lowers a pass. */
static double probe_disk(const lm_model *m, bool *agreed)
{
    *agreed = true;
    int fd = open(lm_gguf_path(m->gguf), O_RDONLY);
    if (fd < 0)
        return 0.0;
    const uint64_t start = lm_gguf_data_offset(m->gguf);
    const uint64_t size = lm_gguf_file_size(m->gguf);
    const uint64_t data = size - start;
    const uint64_t span = data / DISK_PROBE_PASSES < DISK_PROBE_MAX
                              ? data / DISK_PROBE_PASSES
                              : DISK_PROBE_MAX;
    uint64_t chunk = m->layers[0].nbytes > DISK_CHUNK_MIN ? m->layers[0].nbytes : DISK_CHUNK_MIN;
    chunk = chunk < span / 2 ? chunk : (span / 2 > DISK_CHUNK_MIN ? span / 2 : span);
    char *buf = malloc(chunk);
    lm_repeats rep = {0};
    for (int pass = 0; buf && span > 0 && pass < DISK_PROBE_PASSES; pass++) {
        const uint64_t from = start + (uint64_t)pass * span;
        posix_fadvise(fd, (off_t)from, (off_t)span, POSIX_FADV_DONTNEED);
        uint64_t done = 0;
        const double t0 = lm_now_seconds();
        double dt = 0.0;
        while (done < span && dt < DISK_PROBE_SECONDS) {
            size_t want = span - done < chunk ? (size_t)(span - done) : (size_t)chunk;
            ssize_t got = pread(fd, buf, want, (off_t)(from + done));
            if (got <= 0)
                break;
            done += (uint64_t)got;
            dt = lm_now_seconds() - t0;
        }
        if (dt > 0 && done > 0)
            lm_repeats_add(&rep, dt / (double)done);
    }
    posix_fadvise(fd, (off_t)start, (off_t)(span * DISK_PROBE_PASSES), POSIX_FADV_DONTNEED);
    free(buf);
    close(fd);
    *agreed = lm_repeats_agree(&rep, DISK_PROBE_AGREE);
    return rep.n > 0 ? 1.0 / rep.best : 0.0;
}

/* A buffer of valid blocks of type (one quantized random row, repeated), so
 * the kernels see ordinary numbers. */
static void *synthetic_weights(uint32_t type, int64_t cols, int64_t rows)
{
    const size_t row = lm_row_size(type, cols);
    uint8_t *w = malloc(row * (size_t)rows);
    float *f = malloc((size_t)cols * sizeof(float));
    if (!w || !f) {
        free(w);
        free(f);
        return NULL;
    }
    for (int64_t i = 0; i < cols; i++)
        f[i] = (float)((i * 7919) % 200 - 100) / 100.0f;
    lm_type_get(type)->quantize(f, w, cols);
    for (int64_t r = 1; r < rows; r++)
        memcpy(w + (size_t)r * row, w, row);
    free(f);
    return w;
}

static double best_seconds(uint32_t type, const void *w, int64_t rows, int64_t cols,
                           const float *x, int64_t n_tok, float *y, void *scratch, bool *agreed)
{
    lm_repeats rep = {0};
    for (int i = 0; i < 3; i++) {
        const double t0 = lm_now_seconds();
        lm_cpu_matmul(type, w, rows, cols, x, n_tok, y, scratch);
        lm_repeats_add(&rep, lm_now_seconds() - t0);
    }
    *agreed = *agreed && lm_repeats_agree(&rep, LM_PROBE_AGREE);
    return rep.best;
}

/* Weight bytes per second of lm_cpu_matmul on type, one token and a batch. */
static int probe_cpu_type(uint32_t type, int64_t cols, double *decode_bw, double *prompt_bw,
                          bool *agreed)
{
    const size_t row = lm_row_size(type, cols);
    int64_t rows = (int64_t)(CPU_PROBE_BYTES / row);
    if (rows < 16)
        rows = 16;
    void *w = synthetic_weights(type, cols, rows);
    float *x = calloc((size_t)cols * CPU_PROBE_BATCH, sizeof(float));
    float *y = malloc((size_t)rows * CPU_PROBE_BATCH * sizeof(float));
    void *scratch = malloc(lm_cpu_matmul_scratch_size(type, cols, CPU_PROBE_BATCH));
    int rc = -1;
    if (w && x && y && scratch) {
        for (int64_t i = 0; i < cols * CPU_PROBE_BATCH; i++)
            x[i] = (float)(i % 13) - 6.0f;
        *decode_bw = (double)row * rows / best_seconds(type, w, rows, cols, x, 1, y, scratch, agreed);
        const int64_t prompt_rows = rows / 8 > 16 ? rows / 8 : rows;
        *prompt_bw = (double)row * prompt_rows * CPU_PROBE_BATCH /
                     best_seconds(type, w, prompt_rows, cols, x, CPU_PROBE_BATCH, y, scratch,
                                  agreed);
        rc = 0;
    } else {
        lm_set_error("out of memory for the CPU probe");
    }
    free(w);
    free(x);
    free(y);
    free(scratch);
    return rc;
}

/* ---- the cache: one line per (threads, device) --------------------------- */


/* The disk figure depends on the device and on how much there was to read
 * (a file smaller than DISK_PROBE_MAX gives a shorter, slower read); the
 * layer figures on the layer's shape. */
static void cache_key(const lm_model *m, char *key, size_t len)
{
    struct stat sb;
    unsigned long long dev = fstat(lm_gguf_fd(m->gguf), &sb) == 0 ? (unsigned long long)sb.st_dev : 0;
    const uint64_t data = lm_gguf_file_size(m->gguf) - lm_gguf_data_offset(m->gguf);
    snprintf(key, len, "threads=%d cpu=%s dev=%llu span=%llu shape=%ux%ux%ux%u,%llu,%llu",
             omp_get_max_threads(), lm_cpu_path_name(lm_cpu_active_path()), dev,
             (unsigned long long)(data / DISK_PROBE_PASSES < DISK_PROBE_MAX ? data / DISK_PROBE_PASSES
                                                                   : DISK_PROBE_MAX) >> 20,
             m->hp.n_embd, m->hp.n_ff, m->hp.n_head, m->hp.n_head_kv,
             (unsigned long long)m->layers[0].nbytes, (unsigned long long)m->output->nbytes);
}

static bool parse_probes(const char *s, void *out)
{
    lm_probes q = {0};
    int used;
    if (sscanf(s, "ram=%lf disk=%lf%n", &q.ram_bw, &q.disk_bw, &used) != 2)
        return false;
    s += used;
    unsigned type;
    double d, pr;
    while (sscanf(s, " t%u=%lf,%lf%n", &type, &d, &pr, &used) == 3 && type < LM_TYPE_COUNT) {
        q.cpu_decode_bw[type] = d;
        q.cpu_prompt_bw[type] = pr;
        s += used;
    }
    if (sscanf(s, " layer=%lf,%lf,%lf", &q.cpu_layer_ms, &q.cpu_layer_prompt_ms,
               &q.cpu_head_ms) != 3)
        return false;
    *(lm_probes *)out = q;
    return true;
}

static void cache_save(const char *key, const lm_probes *p)
{
    char value[4096];
    int n = snprintf(value, sizeof value, "ram=%.0f disk=%.0f", p->ram_bw, p->disk_bw);
    for (int t = 0; t < LM_TYPE_COUNT; t++)
        if (p->cpu_decode_bw[t] > 0 && n < (int)sizeof value)
            n += snprintf(value + n, sizeof value - (size_t)n, " t%d=%.0f,%.0f", t,
                          p->cpu_decode_bw[t], p->cpu_prompt_bw[t]);
    if (n < (int)sizeof value)
        snprintf(value + n, sizeof value - (size_t)n, " layer=%.6f,%.6f,%.6f", p->cpu_layer_ms,
                 p->cpu_layer_prompt_ms, p->cpu_head_ms);
    lm_probe_cache_save("probes", key, value);
}

/* The model's layer 0 and output head on the CPU backend. */
static lm_backend *make_cpu(const lm_model *m, const lm_backend_share *share, void *arg)
{
    (void)arg;
    return lm_backend_cpu_new(m, LM_PROBE_CTX, 1, LM_PROBE_BATCH, share);
}

static int probe_cpu_layer(const lm_model *m, lm_probes *p)
{
    lm_layer_timing t;
    if (lm_probe_layer0(m, make_cpu, NULL, NULL, &t) != 0)
        return -1;
    p->cpu_layer_ms = t.layer_ms;
    p->cpu_layer_prompt_ms = t.layer_prompt_ms;
    p->cpu_head_ms = t.head_ms;
    if (t.disagreed)
        lm_probe_note_disagreed(p->disagreed, sizeof p->disagreed, t.disagreed);
    return 0;
}

/* Fills in what the cache did not have. */
static int measure(const lm_model *m, bool cached, lm_probes *p, bool *measured)
{
    bool agreed;
    if (!cached || p->ram_bw <= 0) {
        p->ram_bw = lm_ram_read_bandwidth(&agreed);
        *measured = true;
        if (!agreed)
            lm_probe_note_disagreed(p->disagreed, sizeof p->disagreed, "RAM bandwidth probe");
    }
    if (!cached || p->disk_bw <= 0) {
        p->disk_bw = probe_disk(m, &agreed);
        *measured = true;
        if (!agreed)
            lm_probe_note_disagreed(p->disagreed, sizeof p->disagreed, "disk probe");
    }
    /* every weight type the layers and the head use */
    for (uint32_t il = 0; il <= m->hp.n_layer; il++)
        for (int w = 0; w < LM_W_PER_LAYER; w++) {
            const lm_gguf_tensor *t = il < m->hp.n_layer ? m->layers[il].t[w]
                                      : (w == 0 ? m->output : NULL);
            if (!t || t->n_dims != 2 || p->cpu_decode_bw[t->type] > 0)
                continue;
            agreed = true;
            if (probe_cpu_type(t->type, (int64_t)t->ne[0], &p->cpu_decode_bw[t->type],
                               &p->cpu_prompt_bw[t->type], &agreed) != 0)
                return -1;
            if (!agreed) {
                char name[32];
                snprintf(name, sizeof name, "CPU %s probe", lm_type_get(t->type)->name);
                lm_probe_note_disagreed(p->disagreed, sizeof p->disagreed, name);
            }
            *measured = true;
        }
    if (!cached || p->cpu_layer_ms <= 0) {
        if (probe_cpu_layer(m, p) != 0)
            return -1;
        *measured = true;
    }
    return 0;
}

typedef struct {
    const lm_model *m;
    bool cached;
} measure_arg;

typedef struct {
    lm_probes p;
    bool measured;
} measure_result;

static int measure_for_child(void *arg, void *result)
{
    const measure_arg *a = arg;
    measure_result *r = result;
    return measure(a->m, a->cached, &r->p, &r->measured);
}

/* The probes allocate a few hundred MiB for a moment; measured in a child
 * process, that memory never counts against this process's peak RSS (the
 * --ram budget).  Called before this process starts its OpenMP threads.
 * Where no child can be started, here. */
static int measure_in_child(const lm_model *m, bool cached, lm_probes *p, bool *measured)
{
    measure_arg arg = {m, cached};
    measure_result r = {.p = *p};
    const int rc = lm_probe_in_child(measure_for_child, &arg, &r, sizeof r, 600);
    if (rc == -2)
        return measure(m, cached, p, measured);
    if (rc != 0)
        return -1;
    *p = r.p;
    *measured = r.measured;
    return 0;
}

int lm_probe(const lm_model *m, bool reprobe, lm_probes *p)
{
    char key[256];
    cache_key(m, key, sizeof key);
    memset(p, 0, sizeof *p);
    const bool cached = !reprobe && lm_probe_cache_load("probes", key, parse_probes, p);
    bool measured = false;
    lm_probe_watch watch;
    lm_probe_watch_start(&watch);
    if (measure_in_child(m, cached, p, &measured) != 0)
        return -1;
    p->from_cache = !measured;
    if (measured) { /* both checks speak, whichever fails */
        const bool quiet = lm_probe_settled(&watch, "probes");
        if (lm_probe_agreed(p->disagreed, "probes") && quiet)
            cache_save(key, p);
    }
    return 0;
}

#ifndef LAMINA_OPENCL
/* Without OpenCL there is no device to measure (cl/probe_cl.c has the real one). */
int lm_probe_device(const lm_model *m, const char *device_spec, bool reprobe,
                    lm_device_probes *d)
{
    (void)m;
    (void)device_spec;
    (void)reprobe;
    memset(d, 0, sizeof *d);
    lm_set_error("this lamina was built without OpenCL");
    return -1;
}
#endif
