/* The kernel program: the sources embedded at build time (cl_sources.c,
 * generated from cl/\*.cl), compiled once per device and cached on disk in
 * $XDG_CACHE_HOME/lamina (else ~/.cache/lamina) under a hash of the device,
 * the driver, the build options and the source, so a second start loads the
 * binary instead of compiling.  A cache that cannot be read or written only
 * costs a compilation. */
#include "cl_device.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

/* FNV-1a, 64 bits: enough to tell sources and drivers apart, no library. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t program_key(cl_device_id dev, const char *options)
{
    static const cl_device_info what[] = {CL_DEVICE_NAME, CL_DEVICE_VENDOR, CL_DEVICE_VERSION,
                                          CL_DRIVER_VERSION};
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof what / sizeof *what; i++) {
        char buf[512] = "";
        clGetDeviceInfo(dev, what[i], sizeof buf - 1, buf, NULL);
        h = fnv1a(h, buf, strlen(buf) + 1);
    }
    h = fnv1a(h, options, strlen(options) + 1);
    for (unsigned i = 0; i < lm_cl_source_line_count; i++)
        h = fnv1a(h, lm_cl_source_lines[i], strlen(lm_cl_source_lines[i]));
    return h;
}

/* The cache file's path for key, creating the directory; 0 or -1. */
static int cache_path(uint64_t key, char *path, size_t size)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[4096];
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache", home);
    else
        return -1;
    mkdir(dir, 0700);
    size_t len = strlen(dir);
    snprintf(dir + len, sizeof dir - len, "/lamina");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    return snprintf(path, size, "%s/kernels-%016llx.bin", dir, (unsigned long long)key) <
                   (int)size ? 0 : -1;
}

static unsigned char *read_cache(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Written to a temporary name and renamed, so a concurrent start never
 * reads half a binary. */
static void write_cache(const char *path, cl_program prog)
{
    size_t len = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof len, &len, NULL) != CL_SUCCESS ||
        len == 0)
        return;
    unsigned char *bin = malloc(len);
    if (!bin)
        return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = NULL;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS &&
        (f = fopen(tmp, "wb"))) {
        int ok = fwrite(bin, 1, len, f) == len;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, path) != 0)
            remove(tmp);
    }
    free(bin);
}

static int build(cl_program prog, cl_device_id dev, const char *options)
{
    cl_int err = clBuildProgram(prog, 1, &dev, options, NULL, NULL);
    if (err == CL_SUCCESS)
        return 0;
    char log[4096] = "";
    size_t n = 0;
    clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, &n);
    log[sizeof log - 1] = '\0';
    for (char *p = log; *p; p++) /* one line of error */
        if (*p == '\n')
            *p = ' ';
    lm_set_error("clBuildProgram: %s (%d): %.1500s", lm_cl_error_name(err), err, log);
    return -1;
}

/* Division and sqrt correctly rounded where the device offers it, so the
 * activation scales match the CPU's bit for bit. */
static const char *build_options(cl_device_id dev)
{
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(dev, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    return fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT
               ? "-cl-std=CL1.2 -cl-fp32-correctly-rounded-divide-sqrt"
               : "-cl-std=CL1.2";
}

cl_program lm_cl_program_build(cl_context ctx, cl_device_id dev)
{
    const char *options = build_options(dev);
    char path[4096];
    const int cached = cache_path(program_key(dev, options), path, sizeof path) == 0;
    cl_int err, status;
    if (cached) {
        size_t len = 0;
        unsigned char *bin = read_cache(path, &len);
        if (bin) {
            const unsigned char *b = bin;
            cl_program prog = clCreateProgramWithBinary(ctx, 1, &dev, &len, &b, &status, &err);
            free(bin);
            if (err == CL_SUCCESS && status == CL_SUCCESS &&
                clBuildProgram(prog, 1, &dev, options, NULL, NULL) == CL_SUCCESS)
                return prog;
            if (err == CL_SUCCESS)
                clReleaseProgram(prog); /* stale or foreign: compile afresh */
        }
    }
    cl_program prog = clCreateProgramWithSource(ctx, lm_cl_source_line_count,
                                                (const char **)lm_cl_source_lines, NULL, &err);
    if (lm_cl_check(err, "clCreateProgramWithSource") != 0)
        return NULL;
    if (build(prog, dev, options) != 0) {
        clReleaseProgram(prog);
        return NULL;
    }
    if (cached)
        write_cache(path, prog);
    return prog;
}
