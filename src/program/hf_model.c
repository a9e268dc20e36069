/* -m HF_DIR (hf_model.h). */
#define _GNU_SOURCE /* scandir, realpath */
#include "hf_model.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache_dir.h"
#include "convert.h"
#include "error.h"
#include "probe.h"

bool lm_hf_model_is_folder(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int checkpoint_file(const struct dirent *e)
{
    return ends_with(e->d_name, ".json") || ends_with(e->d_name, ".jinja") ||
           ends_with(e->d_name, ".safetensors");
}

/* The folder's key: its real path, and each checkpoint file's name, size
 * and modification time, in name order.  -1 with lm_set_error. */
static int folder_key(const char *real, uint64_t *key)
{
    struct dirent **names;
    int n = scandir(real, &names, checkpoint_file, alphasort);
    if (n < 0) {
        lm_set_error("%s: cannot list the folder", real);
        return -1;
    }
    uint64_t h = fnv1a(0xcbf29ce484222325ull, real, strlen(real) + 1);
    for (int i = 0; i < n; i++) {
        char path[8192];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", real, names[i]->d_name);
        if (stat(path, &sb) == 0) {
            const int64_t v[3] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec,
                                  (int64_t)sb.st_mtim.tv_nsec};
            h = fnv1a(h, names[i]->d_name, strlen(names[i]->d_name) + 1);
            h = fnv1a(h, v, sizeof v);
        }
        free(names[i]);
    }
    free(names);
    *key = h;
    return 0;
}

/* scandir's filter has no user pointer */
static char cached_prefix[160];

static int cached_file(const struct dirent *e)
{
    return strncmp(e->d_name, cached_prefix, strlen(cached_prefix)) == 0 &&
           ends_with(e->d_name, ".gguf");
}

/* The newest models/PREFIX*.gguf, malloc'd; NULL if none. */
static char *find_cached(const char *models, const char *prefix)
{
    snprintf(cached_prefix, sizeof cached_prefix, "%s", prefix);
    struct dirent **names;
    int n = scandir(models, &names, cached_file, alphasort);
    if (n < 0)
        return NULL;
    char *best = NULL;
    struct timespec best_time = {0};
    for (int i = 0; i < n; i++) {
        char path[8192];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", models, names[i]->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
            (!best || sb.st_mtim.tv_sec > best_time.tv_sec ||
             (sb.st_mtim.tv_sec == best_time.tv_sec && sb.st_mtim.tv_nsec > best_time.tv_nsec))) {
            free(best);
            best = strdup(path);
            best_time = sb.st_mtim;
        }
        free(names[i]);
    }
    free(names);
    return best;
}

static int convert_in_child(void *params, void *stats)
{
    return lm_convert_hf(params, stats);
}

char *lm_hf_model_path(const char *dir, const lm_hf_model_params *p)
{
    char config[4200];
    struct stat sb;
    snprintf(config, sizeof config, "%s/config.json", dir);
    if (stat(config, &sb) != 0) {
        lm_set_error("%s: a folder without config.json: neither a GGUF file nor a Hugging Face "
                     "model folder",
                     dir);
        return NULL;
    }
    char *real = realpath(dir, NULL);
    if (!real) {
        lm_set_error("%s: cannot resolve the folder's path", dir);
        return NULL;
    }
    uint64_t key;
    if (folder_key(real, &key) != 0) {
        free(real);
        return NULL;
    }
    /* NAME: the folder's name, kept to characters safe in a file name */
    const char *base = strrchr(real, '/');
    base = base && base[1] ? base + 1 : "model";
    char name[65];
    size_t k = 0;
    for (; base[k] && k < sizeof name - 1; k++)
        name[k] = (base[k] >= 'a' && base[k] <= 'z') || (base[k] >= 'A' && base[k] <= 'Z') ||
                          (base[k] >= '0' && base[k] <= '9') || base[k] == '.' || base[k] == '-'
                      ? base[k]
                      : '_';
    name[k] = '\0';
    free(real);

    char models[4096];
    if (lm_cache_dir("models", models, sizeof models) != 0) {
        lm_set_error("%s: no cache directory to convert it into (set XDG_CACHE_HOME or HOME), "
                     "or convert it with lamina convert",
                     dir);
        return NULL;
    }
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s-%016llx-", name, (unsigned long long)key);
    char *cached = find_cached(models, prefix);
    if (cached) {
        if (!p->quiet)
            fprintf(stderr, "lamina: %s: using its conversion %s (made on first use; remove it "
                            "to convert again)\n",
                    dir, cached);
        return cached;
    }

    /* converted under a name without the type (outside the prefix, so a
     * crash leaves nothing that looks done), then renamed with the type */
    char out[4300], final[4400];
    snprintf(out, sizeof out, "%s/%.*s.gguf", models, (int)strlen(prefix) - 1, prefix);
    if (!p->quiet)
        fprintf(stderr, "lamina: %s: a Hugging Face folder; converting it once, at the type that "
                        "fits the RAM budget (later runs reuse the file)\n",
                dir);
    lm_convert_params cp = {.dir = dir, .out = out, .quiet = p->quiet, .auto_type = true,
                            .ram_budget = p->ram_budget, .n_ctx = p->n_ctx,
                            .n_batch = p->n_batch};
    lm_convert_stats st;
    /* in a child process: the conversion's OpenMP threads must not exist in
     * this one, whose probes fork (libgomp in a child forked after a
     * parallel region hangs), and its memory stays out of the budget */
    if (lm_quant_target_parse("F16", &cp.target) != 0 ||
        lm_probe_in_child(convert_in_child, &cp, &st, sizeof st, INT_MAX / 2) != 0)
        return NULL;
    snprintf(final, sizeof final, "%s/%s%s.gguf", models, prefix, st.type);
    if (rename(out, final) != 0) {
        lm_set_error("%s: cannot rename to %s", out, final);
        remove(out);
        return NULL;
    }
    if (!p->quiet)
        fprintf(stderr, "lamina: %s: converted to %s (%s, %.1f MiB) in %.1f s\n", dir, final,
                st.type, (double)st.out_bytes / (1024.0 * 1024.0), st.seconds);
    return strdup(final);
}
