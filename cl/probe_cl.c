/* The device probes of src/probe.h: what the planner needs to know about the
 * OpenCL device to weigh it against the CPU.  Rather than model the device's
 * kernels, it runs the model's own first layer and output head there (every
 * layer of a model has the same shape, so the others scale by their bytes),
 * and times the copy a streamed layer goes through each pass: pinned host
 * memory to the device.
 *
 * Everything happens in a child process: the OpenCL runtime, the probe
 * buffers and the layer's upload never touch this process, which may not
 * have started OpenCL yet (and must not fork after it has). */
#define _GNU_SOURCE
#include "cl_device.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "error.h"
#include "probe.h"
#include "timing.h"

#define COPY_PROBE_BYTES ((uint64_t)64 << 20)
#define PROBE_CTX 64
#define PROBE_BATCH 16
#define PROBE_TIMEOUT_S 300

static int cache_file(char *path, size_t len)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[4096];
    if (xdg && xdg[0])
        snprintf(dir, sizeof dir, "%s/lamina", xdg);
    else if (home && home[0])
        snprintf(dir, sizeof dir, "%s/.cache/lamina", home);
    else
        return -1;
    char parent[4096];
    snprintf(parent, sizeof parent, "%.*s", (int)(strrchr(dir, '/') - dir), dir);
    mkdir(parent, 0755);
    mkdir(dir, 0755);
    snprintf(path, len, "%s/device-probes", dir);
    return 0;
}

/* One line per device and layer shape: the same numbers fit any model whose
 * layer 0 has the same size and width. */
static void cache_key(const lm_model *m, const char *label, char *key, size_t len)
{
    snprintf(key, len, "%s|embd=%u|ff=%u|layer=%llu|head=%llu", label, m->hp.n_embd,
             m->hp.n_ff, (unsigned long long)m->layers[0].nbytes,
             (unsigned long long)m->output->nbytes);
    for (char *c = key; *c; c++)
        if (*c == '\t' || *c == '\n')
            *c = ' ';
}

static bool cache_load(const char *key, lm_device_probes *d)
{
    char path[4200], line[1024];
    if (cache_file(path, sizeof path) != 0)
        return false;
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool found = false;
    const size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) != 0 || line[kl] != '\t')
            continue;
        lm_device_probes q = *d;
        unsigned long long lb;
        if (sscanf(line + kl + 1, "h2d=%lf layer=%lf prompt=%lf head=%lf lbytes=%llu",
                   &q.h2d_bw, &q.layer_ms, &q.layer_prompt_ms, &q.head_ms, &lb) == 5) {
            q.layer_bytes = lb;
            *d = q;
            found = true;
        }
    }
    fclose(f);
    return found;
}

static void cache_save(const char *key, const lm_device_probes *d)
{
    char path[4200];
    if (cache_file(path, sizeof path) != 0)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    fprintf(f, "%s\th2d=%.0f layer=%.6f prompt=%.6f head=%.6f lbytes=%llu\n", key, d->h2d_bw,
            d->layer_ms, d->layer_prompt_ms, d->head_ms, (unsigned long long)d->layer_bytes);
    fclose(f);
}

/* Best time of `reps` runs of layer 0 over n tokens at position 0, in ms. */
static double time_layer(lm_backend *b, float *x, int n, int reps)
{
    lm_layer_view view;
    lm_model_layer_view(b->model, 0, &view);
    double best = -1;
    for (int i = 0; i < reps; i++) {
        const double t0 = lm_now_seconds();
        if (b->ops->forward_layer(b, 0, &view, x, n, 0) != 0)
            return -1;
        const double dt = (lm_now_seconds() - t0) * 1e3;
        if (best < 0 || dt < best)
            best = dt;
    }
    return best;
}

static int measure(const lm_model *m, const char *spec, bool reprobe, lm_device_probes *d)
{
    const uint32_t n_layer = m->hp.n_layer;
    uint8_t *run = calloc(n_layer, 1);
    float *x = malloc((size_t)PROBE_BATCH * m->hp.n_embd * sizeof(float));
    float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    lm_backend *b = NULL;
    int rc = -1;
    if (!run || !x || !logits) {
        lm_set_error("out of memory");
        goto done;
    }
    /* the device alone first: with the figures cached, nothing more is set up */
    cl_platform_id platform;
    cl_device_id device;
    if (lm_cl_pick_device(spec, &platform, &device) != 0)
        goto done;
    lm_cl_device_label(device, d->label, sizeof d->label);
    cl_ulong memory = 0;
    cl_device_type type = 0;
    clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof memory, &memory, NULL);
    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    d->memory = memory;
    d->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    char key[512];
    cache_key(m, d->label, key, sizeof key);
    if (!reprobe && cache_load(key, d)) {
        d->from_cache = true;
        rc = 0;
        goto done;
    }
    run[0] = LM_RUN_RESIDENT;
    const lm_backend_share share = {.layers = run};
    if (!(b = lm_backend_opencl_new(m, PROBE_CTX, PROBE_BATCH, spec, &share)))
        goto done;
    for (size_t i = 0; i < (size_t)PROBE_BATCH * m->hp.n_embd; i++)
        x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    d->layer_bytes = m->layers[0].nbytes;
    d->h2d_bw = lm_backend_opencl_h2d_bandwidth(b, COPY_PROBE_BYTES);
    /* the first runs of each kernel pay for its setup (PoCL compiles a
     * kernel for each new launch shape): two runs untimed, then the best
     * of ten (a layer takes well under a millisecond to a few tens) */
    if (time_layer(b, x, 1, 2) < 0 || (d->layer_ms = time_layer(b, x, 1, 10)) < 0 ||
        time_layer(b, x, PROBE_BATCH, 1) < 0)
        goto done;
    double batch_ms = time_layer(b, x, PROBE_BATCH, 3);
    if (batch_ms < 0)
        goto done;
    d->layer_prompt_ms = batch_ms / PROBE_BATCH;
    double best = -1;
    for (int i = 0; i < 6; i++) {
        const double t0 = lm_now_seconds();
        if (b->ops->output(b, x, 1, logits) != 0)
            goto done;
        const double dt = (lm_now_seconds() - t0) * 1e3;
        if (i > 0 && (best < 0 || dt < best))
            best = dt;
    }
    d->head_ms = best;
    if (d->h2d_bw <= 0) {
        lm_set_error("the device's copy probes failed");
        goto done;
    }
    cache_save(key, d);
    rc = 0;
done:
    if (b)
        b->ops->free(b);
    free(run);
    free(x);
    free(logits);
    return rc;
}

int lm_probe_device(const lm_model *m, const char *device_spec, bool reprobe,
                    lm_device_probes *d)
{
    memset(d, 0, sizeof *d);
    int fds[2];
    if (pipe(fds) != 0) {
        lm_set_error("cannot probe the device: no pipe");
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        lm_set_error("cannot probe the device: fork failed");
        return -1;
    }
    struct {
        lm_device_probes d;
        int rc;
        char error[512];
    } r;
    if (pid == 0) {
        close(fds[0]);
        memset(&r, 0, sizeof r);
        r.rc = measure(m, device_spec, reprobe, &r.d);
        if (r.rc != 0)
            snprintf(r.error, sizeof r.error, "%s", lm_last_error());
        ssize_t unused = write(fds[1], &r, sizeof r);
        (void)unused;
        _exit(0);
    }
    close(fds[1]);
    /* a driver that hangs must not hang lamina: the first build of the
     * kernels is the slowest part, well under this on anything seen */
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    ssize_t got = -1;
    if (poll(&pfd, 1, PROBE_TIMEOUT_S * 1000) == 1)
        got = read(fds[0], &r, sizeof r);
    else
        kill(pid, SIGKILL);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    if (got != (ssize_t)sizeof r) {
        lm_set_error(got < 0 ? "the device probe did not finish in %d s (a hung OpenCL driver?)"
                             : "the device probe died (a broken OpenCL driver?)",
                     PROBE_TIMEOUT_S);
        return -1;
    }
    if (r.rc != 0) {
        lm_set_error("%s", r.error);
        return -1;
    }
    *d = r.d;
    return 0;
}
