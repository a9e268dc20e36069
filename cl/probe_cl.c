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

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "error.h"
#include "probe.h"
#include "timing.h"

#define COPY_PROBE_BYTES ((uint64_t)64 << 20)
#define PROBE_TIMEOUT_S 300


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

static bool parse_probes(const char *s, void *out)
{
    lm_device_probes *d = out;
    lm_device_probes q = *d;
    if (sscanf(s, "h2d=%lf layer=%lf prompt=%lf head=%lf", &q.h2d_bw, &q.layer_ms,
               &q.layer_prompt_ms, &q.head_ms) != 4)
        return false;
    *d = q;
    return true;
}

static void cache_save(const char *key, const lm_device_probes *d)
{
    char value[256];
    snprintf(value, sizeof value, "h2d=%.0f layer=%.6f prompt=%.6f head=%.6f", d->h2d_bw,
             d->layer_ms, d->layer_prompt_ms, d->head_ms);
    lm_probe_cache_save("device-probes", key, value);
}


typedef struct {
    const char *spec;
    lm_device_probes *d;
} device_probe;

static lm_backend *make_device(const lm_model *m, const lm_backend_share *share, void *arg)
{
    return lm_backend_opencl_new(m, LM_PROBE_CTX, 1, LM_PROBE_BATCH, ((device_probe *)arg)->spec,
                                 share);
}

static int measure_copies(lm_backend *b, void *arg)
{
    lm_device_probes *d = ((device_probe *)arg)->d;
    bool agreed;
    d->h2d_bw = lm_backend_opencl_h2d_bandwidth(b, COPY_PROBE_BYTES, &agreed);
    if (d->h2d_bw <= 0) {
        lm_set_error("the device's copy probe failed");
        return -1;
    }
    if (!agreed)
        lm_probe_note_disagreed(d->disagreed, sizeof d->disagreed, "copy probe");
    return 0;
}

static int measure(const lm_model *m, const char *spec, bool reprobe, lm_device_probes *d)
{
    /* the device alone first: with the figures cached, nothing more is set up */
    cl_platform_id platform;
    cl_device_id device;
    if (lm_cl_pick_device(spec, &platform, &device) != 0)
        return -1;
    lm_cl_device_label(device, d->label, sizeof d->label);
    cl_ulong memory = 0;
    cl_device_type type = 0;
    clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof memory, &memory, NULL);
    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    d->memory = memory;
    d->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    char key[512];
    cache_key(m, d->label, key, sizeof key);
    if (!reprobe && lm_probe_cache_load("device-probes", key, parse_probes, d)) {
        d->from_cache = true;
        return 0;
    }
    device_probe dp = {spec, d};
    lm_layer_timing t;
    lm_probe_watch watch;
    lm_probe_watch_start(&watch);
    if (lm_probe_layer0(m, make_device, measure_copies, &dp, &t) != 0)
        return -1;
    d->layer_ms = t.layer_ms;
    d->layer_prompt_ms = t.layer_prompt_ms;
    d->head_ms = t.head_ms;
    if (t.disagreed)
        lm_probe_note_disagreed(d->disagreed, sizeof d->disagreed, t.disagreed);
    const bool quiet = lm_probe_settled(&watch, "device probes");
    if (lm_probe_agreed(d->disagreed, "device probes") && quiet)
        cache_save(key, d);
    return 0;
}

typedef struct {
    const lm_model *m;
    const char *spec;
    bool reprobe;
} measure_arg;

static int measure_for_child(void *arg, void *result)
{
    const measure_arg *a = arg;
    return measure(a->m, a->spec, a->reprobe, result);
}

int lm_probe_device(const lm_model *m, const char *device_spec, bool reprobe,
                    lm_device_probes *d)
{
    memset(d, 0, sizeof *d);
    measure_arg arg = {m, device_spec, reprobe};
    /* a driver that hangs must not hang lamina: the first build of the
     * kernels is the slowest part, well under this on anything seen */
    return lm_probe_in_child(measure_for_child, &arg, d, sizeof *d, PROBE_TIMEOUT_S) == 0 ? 0
                                                                                          : -1;
}
