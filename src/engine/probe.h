/* Quick measurements the planner predicts with: RAM read bandwidth, the
 * uncached read bandwidth of the model file's disk, the CPU's speed on each
 * weight type (bytes of weights per second through lm_cpu_matmul, one token
 * and a batch), and the time of the model's first layer and output head on
 * the CPU backend.  Each takes well under a second; the results are cached
 * per machine in $XDG_CACHE_HOME/lamina/probes (keyed by the thread count,
 * the file's device and the layer shape) so the next start reuses them;
 * --reprobe measures again. */
#ifndef LM_PROBE_H
#define LM_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "quant.h"

typedef struct {
    double ram_bw;                       /* bytes/s */
    double disk_bw;                      /* bytes/s, uncached */
    double cpu_decode_bw[LM_TYPE_COUNT]; /* weight bytes/s, one token; 0: not measured */
    double cpu_prompt_bw[LM_TYPE_COUNT]; /* weight bytes/s per token of a 32-token batch */
    /* the model's own layer 0 and output head run on the CPU backend, ms:
     * what the per-type figures leave out (attention, norms, threads'
     * barriers) is in these; other layers scale by their per-type cost */
    double cpu_layer_ms, cpu_layer_prompt_ms, cpu_head_ms;
    bool from_cache;
    char disagreed[40]; /* the first probe whose repeats disagreed, or "" */
} lm_probes;

/* A probe repeats its measurement and keeps the best; its repeats agree
 * when another comes within this factor of the best (timing.h). */
#define LM_PROBE_AGREE 1.3

/* Measures (or loads from the cache) what the model needs. */
int lm_probe(const lm_model *m, bool reprobe, lm_probes *p);

/* The OpenCL device's side (src/probe_device.c): its memory, the copy rates
 * a streamed layer goes through, and its speed on this model's layers,
 * measured by running the model's first layer and output head there.
 * Cached in $XDG_CACHE_HOME/lamina/device-probes per device and model. */
typedef struct {
    char label[192];        /* the device, as `lamina devices` names it */
    uint64_t memory;        /* global memory, bytes */
    double h2d_bw;          /* bytes/s, pinned host memory to the device */
    double layer_ms;        /* one token through layer 0 */
    double layer_prompt_ms; /* one token of a batch through layer 0 */
    double head_ms;         /* one token through the output head */
    bool is_cpu;            /* the device computes on the host's cores (PoCL): copies
                               to it take those same cores, so they cannot overlap */
    bool from_cache;
    char disagreed[40];     /* the first probe whose repeats disagreed, or "" */
} lm_device_probes;

/* 0, or -1 with the device's error (no device, a failed build). */
int lm_probe_device(const lm_model *m, const char *device_spec, bool reprobe,
                    lm_device_probes *d);

/* ---- shared by the probes (probe_common.c) ---- */

struct lm_backend;

/* The cache file $XDG_CACHE_HOME/lamina/NAME (else ~/.cache/lamina/NAME)
 * holds lines "KEY<tab>VALUE"; a later line for a key wins.  load: parse
 * the value of every line with that key (parse says whether it could);
 * whether one could.  save: appends a line. */
bool lm_probe_cache_load(const char *name, const char *key,
                         bool (*parse)(const char *value, void *out), void *out);
void lm_probe_cache_save(const char *name, const char *key, const char *value);

/* A backend made to time a model's layer 0: it runs that layer alone
 * (resident) and the output head, with this context and batch. */
#define LM_PROBE_CTX 64
#define LM_PROBE_BATCH 16

typedef struct {
    double layer_ms;        /* one token through layer 0 */
    double layer_prompt_ms; /* one token of a batch of LM_PROBE_BATCH */
    double head_ms;         /* one token through the output head */
    const char *disagreed;  /* "layer 0 probe", "output head probe" if its repeats disagreed, or NULL */
} lm_layer_timing;

struct lm_backend_share;
typedef struct lm_backend *(*lm_probe_make)(const lm_model *m,
                                            const struct lm_backend_share *share, void *arg);

/* Makes a backend with make(m, share, arg) whose share is layer 0 (resident)
 * and the head, times them on it (the first runs untimed: they fault pages
 * in, and PoCL compiles a kernel for each new launch shape; then the best
 * of several), runs then(b, arg) if given, and frees it.  0, or -1 with an
 * error. */
int lm_probe_layer0(const lm_model *m, lm_probe_make make, int (*then)(struct lm_backend *b,
                                                                        void *arg),
                    void *arg, lm_layer_timing *t);

/* Whether the machine was quiet while probes ran: the CPU time other
 * processes took meanwhile (from /proc/stat, less this process's and its
 * children's).  A figure measured while another program held the cores is
 * used for the run at hand but not cached as settled, and the user is told
 * (LAMINA_PROBE_TRUST=1 caches it anyway: the test suite, which probes with
 * tests running side by side on purpose). */
typedef struct {
    double busy, ours, t; /* seconds: the machine's busy CPU time, ours, the clock */
} lm_probe_watch;
void lm_probe_watch_start(lm_probe_watch *w);
/* Cores' worth of CPU other processes used since lm_probe_watch_start (0
 * when /proc/stat cannot be read). */
double lm_probe_watch_others(const lm_probe_watch *w);
/* After probes: true when they may be cached; otherwise a warning on
 * stderr says why not (what: "probes", "device probes"; NULL: no warning). */
bool lm_probe_settled(const lm_probe_watch *w, const char *what);

/* After probes: true when none's repeats disagreed (disagreed: the first
 * that did, or ""); otherwise a warning says which, and the figures are not
 * to be cached.  LAMINA_PROBE_TRUST=1 trusts them anyway. */
bool lm_probe_agreed(const char *disagreed, const char *what);
/* Notes that probe `name` disagreed, unless one did before. */
void lm_probe_note_disagreed(char *disagreed, size_t len, const char *name);

/* Runs measure(arg, result) in a child process and copies its result
 * (size bytes) back: the probes' buffers and any driver they start stay out
 * of this process (its RSS budget; a process that may fork must not have
 * started OpenCL).  0; -1 with the child's error, or when it died or ran
 * past timeout_s; -2 when no child could be started. */
int lm_probe_in_child(int (*measure)(void *arg, void *result), void *arg, void *result,
                      size_t size, int timeout_s);

#endif
