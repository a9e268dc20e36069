/* What the CPU probes (probe.c) and the device probes (cl/probe_cl.c)
 * share: their cache files, timing one layer on a backend, and running the
 * measurements in a child process. */
#define _GNU_SOURCE
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "atomic_file.h"
#include "backend.h"
#include "cache_dir.h"
#include "error.h"
#include "timing.h"

static int cache_file(const char *name, char *path, size_t len)
{
    char dir[4096];
    if (lm_cache_dir(NULL, dir, sizeof dir) != 0)
        return -1;
    snprintf(path, len, "%s/%s", dir, name);
    return 0;
}

bool lm_probe_cache_load(const char *name, const char *key,
                         bool (*parse)(const char *value, void *out), void *out)
{
    char path[4200], line[4096];
    if (cache_file(name, path, sizeof path) != 0)
        return false;
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool found = false;
    const size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == '\t' && parse(line + kl + 1, out))
            found = true;
    fclose(f);
    return found;
}

/* Past this size a cache file is rewritten with only the last line of
 * each key (later lines win, so nothing read changes). */
#define CACHE_COMPACT_BYTES (64 << 10)

static void compact(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = 0, cap = 0;
    char **lines = NULL, line[4096];
    while (fgets(line, sizeof line, f)) {
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **grown = realloc(lines, cap * sizeof *lines);
            if (!grown)
                break;
            lines = grown;
        }
        if (!(lines[n] = strdup(line)))
            break;
        n++;
    }
    fclose(f);
    lm_atomic_file a;
    if (lm_atomic_open(&a, path) == 0) {
        for (size_t i = 0; i < n; i++) {
            const size_t kl = strcspn(lines[i], "\t");
            bool later = false; /* a later line has this key */
            for (size_t j = i + 1; j < n && !later; j++)
                later = strncmp(lines[i], lines[j], kl + 1) == 0;
            if (!later)
                fputs(lines[i], a.f);
        }
        lm_atomic_commit(&a, 0); /* failing, the old file stays: nothing lost */
    }
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

void lm_probe_cache_save(const char *name, const char *key, const char *value)
{
    char path[4200];
    if (cache_file(name, path, sizeof path) != 0)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    fprintf(f, "%s\t%s\n", key, value);
    const long size = ftell(f);
    fclose(f);
    if (size > CACHE_COMPACT_BYTES)
        compact(path);
}

/* Best time in ms of up to `reps` runs of layer 0 over n rows of x at
 * position 0, fewer when they pass PROBE_LAYER_SECONDS (a 70B layer takes
 * tens of ms: the probe stays well under a second); -1 on a failure. */
#define PROBE_LAYER_SECONDS 0.15
static double time_layer(lm_backend *b, float *x, int n, int reps, bool *agreed)
{
    lm_layer_view view;
    lm_model_layer_view(b->model, 0, &view);
    int seq[LM_PROBE_BATCH] = {0}, pos[LM_PROBE_BATCH];
    for (int i = 0; i < LM_PROBE_BATCH; i++)
        pos[i] = i;
    const lm_rows rows = {n, seq, pos, NULL};
    lm_repeats rep = {0};
    const double start = lm_now_seconds();
    for (int i = 0; i < reps && (i == 0 || lm_now_seconds() - start < PROBE_LAYER_SECONDS); i++) {
        const double t0 = lm_now_seconds();
        if (b->ops->forward_layer(b, 0, &view, x, &rows, 0) != 0)
            return -1;
        lm_repeats_add(&rep, (lm_now_seconds() - t0) * 1e3);
    }
    if (agreed)
        *agreed = lm_repeats_agree(&rep, LM_PROBE_AGREE);
    return rep.best;
}

static int time_layer0(lm_backend *b, lm_layer_timing *t)
{
    const lm_model *m = b->model;
    float *x = malloc((size_t)LM_PROBE_BATCH * m->hp.n_embd * sizeof(float));
    float *logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    int rc = -1;
    double batch_ms;
    if (!x || !logits) {
        lm_set_error("out of memory");
        goto done;
    }
    for (size_t i = 0; i < (size_t)LM_PROBE_BATCH * m->hp.n_embd; i++)
        x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    bool one_agreed, batch_agreed;
    t->disagreed = NULL;
    if (time_layer(b, x, 1, 2, NULL) < 0 || (t->layer_ms = time_layer(b, x, 1, 10, &one_agreed)) < 0 ||
        time_layer(b, x, LM_PROBE_BATCH, 1, NULL) < 0 ||
        (batch_ms = time_layer(b, x, LM_PROBE_BATCH, 3, &batch_agreed)) < 0)
        goto done;
    if (!one_agreed || !batch_agreed)
        t->disagreed = "layer 0 probe";
    t->layer_prompt_ms = batch_ms / LM_PROBE_BATCH;
    lm_repeats head = {0};
    for (int i = 0; i < 6; i++) {
        const double t0 = lm_now_seconds();
        if (b->ops->output(b, x, 1, logits) != 0)
            goto done;
        if (i > 0) /* the first faults the weights in */
            lm_repeats_add(&head, (lm_now_seconds() - t0) * 1e3);
    }
    t->head_ms = head.best;
    if (!t->disagreed && !lm_repeats_agree(&head, LM_PROBE_AGREE))
        t->disagreed = "output head probe";
    rc = 0;
done:
    free(x);
    free(logits);
    return rc;
}

int lm_probe_layer0(const lm_model *m, lm_probe_make make, int (*then)(lm_backend *b, void *arg),
                    void *arg, lm_layer_timing *t)
{
    uint8_t *run = calloc(m->hp.n_layer, 1);
    if (!run) {
        lm_set_error("out of memory");
        return -1;
    }
    run[0] = LM_RUN_RESIDENT;
    const lm_backend_share share = {.layers = run};
    lm_backend *b = make(m, &share, arg);
    int rc = b ? time_layer0(b, t) : -1;
    if (rc == 0 && then)
        rc = then(b, arg);
    if (b)
        b->ops->free(b);
    free(run);
    return rc;
}

/* What the child sends back: the result, then its status and error. */
typedef struct {
    int rc;
    char error[512];
} child_status;

/* Reads size bytes before the deadline (lm_now_seconds); false when the
 * writer died or time ran out. */
static bool read_all(int fd, void *buf, size_t size, double deadline)
{
    for (size_t done = 0; done < size;) {
        const double left = deadline - lm_now_seconds();
        if (left <= 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        /* a minute at most per wait: a long deadline must not overflow
         * poll's int of milliseconds */
        const int ready = poll(&pfd, 1, left > 60.0 ? 60000 : (int)(left * 1000) + 1);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready != 1)
            return false;
        const ssize_t got = read(fd, (char *)buf + done, size - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        done += (size_t)got;
    }
    return true;
}

int lm_probe_in_child(int (*measure)(void *arg, void *result), void *arg, void *result,
                      size_t size, int timeout_s)
{
    int fds[2];
    /* close-on-exec: a driver's compiler subprocess must not keep the
     * write end open after the child is gone */
    if (pipe2(fds, O_CLOEXEC) != 0) {
        lm_set_error("cannot start the probes: no pipe");
        return -2;
    }
    fflush(NULL);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        lm_set_error("cannot start the probes: fork failed");
        return -2;
    }
    if (pid == 0) {
        close(fds[0]);
        /* nothing to measure for, or write to, once the parent is gone */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        child_status st = {.rc = measure(arg, result)};
        if (st.rc != 0)
            snprintf(st.error, sizeof st.error, "%s", lm_last_error());
        /* a short write shows as a died child on the other side */
        if (write(fds[1], result, size) == (ssize_t)size &&
            write(fds[1], &st, sizeof st) == (ssize_t)sizeof st)
            _exit(0);
        _exit(1);
    }
    close(fds[1]);
    child_status st;
    const double deadline = lm_now_seconds() + timeout_s;
    const bool got = read_all(fds[0], result, size, deadline) &&
                     read_all(fds[0], &st, sizeof st, deadline);
    if (!got)
        kill(pid, SIGKILL);
    close(fds[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (!got) {
        lm_set_error("the probes did not finish in %d s or died (a broken or hung driver?)",
                     timeout_s);
        return -1;
    }
    if (st.rc != 0) {
        lm_set_error("%s", st.error);
        return -1;
    }
    return 0;
}

/* ---- was the machine quiet? ---------------------------------------------- */

/* Busy CPU time of the whole machine, seconds (user, nice, system, irq,
 * softirq, steal: all but idle and iowait); -1 when unknown. */
static double machine_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    const int got = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7])
                      : 0;
    if (f)
        fclose(f);
    const long tick = sysconf(_SC_CLK_TCK);
    if (got < 8 || tick <= 0)
        return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)tick;
}

static double our_cpu(void)
{
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    const struct timeval *tv[] = {&self.ru_utime, &self.ru_stime, &children.ru_utime,
                                  &children.ru_stime};
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += (double)tv[i]->tv_sec + (double)tv[i]->tv_usec * 1e-6;
    return s;
}

void lm_probe_watch_start(lm_probe_watch *w)
{
    w->busy = machine_busy();
    w->ours = our_cpu();
    w->t = lm_now_seconds();
}

double lm_probe_watch_others(const lm_probe_watch *w)
{
    const double busy = machine_busy(), dt = lm_now_seconds() - w->t;
    if (w->busy < 0 || busy < 0 || dt <= 0)
        return 0.0;
    const double others = (busy - w->busy) - (our_cpu() - w->ours);
    return others > 0 ? others / dt : 0.0;
}

/* Another process holding this much of a core on average disturbs the
 * probes' timings (OpenMP threads that lose a core run 2-10x slower). */
#define DISTURBED_CORES 0.3

bool lm_probe_settled(const lm_probe_watch *w, const char *what)
{
    const double others = lm_probe_watch_others(w);
    if (others < DISTURBED_CORES)
        return true;
    const char *trust = getenv("LAMINA_PROBE_TRUST");
    if (trust && *trust && strcmp(trust, "0") != 0)
        return true;
    if (!what)
        return false;
    fprintf(stderr, "lamina: warning: other processes kept %.1f cores busy while the %s ran: "
                    "their figures are used for this run but not cached (run again on a quiet "
                    "machine)\n", others, what);
    return false;
}

void lm_probe_note_disagreed(char *disagreed, size_t len, const char *name)
{
    if (!disagreed[0])
        snprintf(disagreed, len, "%s", name);
}

bool lm_probe_agreed(const char *disagreed, const char *what)
{
    if (!disagreed[0])
        return true;
    const char *trust = getenv("LAMINA_PROBE_TRUST");
    if (trust && *trust && strcmp(trust, "0") != 0)
        return true;
    fprintf(stderr, "lamina: warning: the %s's repeats disagreed (none came near the best: "
                    "another program busy for a moment?): the %s are used for this run but not "
                    "cached\n", disagreed, what);
    return false;
}
