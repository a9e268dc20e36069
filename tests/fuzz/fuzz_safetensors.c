/* libFuzzer harness: the bytes as a safetensors file.  Every tensor the
 * reader accepts must lie inside the file, tile the data section with the
 * others, have as many bytes as its dtype and shape say, and be found again
 * by its name; the metadata is looked up.  lm_st_open takes a path, so the
 * input goes into a memfd, opened again through /proc/self/fd. */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void check(bool ok, const char *what, uint64_t i)
{
    if (!ok) {
        fprintf(stderr, "fuzz_safetensors: tensor %llu: %s\n", (unsigned long long)i, what);
        abort();
    }
}

static void walk(const lm_safetensors *st)
{
    const uint64_t size = lm_st_file_size(st);
    uint64_t end = 0;
    for (uint64_t i = 0; i < lm_st_n_tensors(st); i++) {
        const lm_st_tensor *t = lm_st_tensor_at(st, i);
        sink += (unsigned)strlen(t->name);
        check(t->file_offset <= size && t->nbytes <= size - t->file_offset, "past the end", i);
        check(i == 0 || t->file_offset == end, "not tiling the data", i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            n *= t->shape[d];
        check(n == t->n_elements && n * lm_st_dtype_size(t->dtype) == t->nbytes,
              "bytes not its dtype and shape", i);
        check(lm_st_find(st, t->name) == t, "not found by its name", i);
        if (t->nbytes) {
            sink += ((const uint8_t *)t->data)[0];
            sink += ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        end = t->file_offset + t->nbytes;
    }
    check(lm_st_n_tensors(st) == 0 || end == size, "data not ending the file", 0);
    const char *fmt = lm_st_metadata(st, "format");
    if (fmt)
        sink += (unsigned)strlen(fmt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC);
        if (fd < 0) {
            perror("fuzz_safetensors: memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz_safetensors: writing the memfd");
        abort();
    }
    lm_safetensors *st = lm_st_open(path);
    if (st) {
        walk(st);
        lm_st_close(st);
    }
    return 0;
}
