/* lm_file_map (file_map.h). */
#define _DEFAULT_SOURCE /* madvise */
#include "file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

static int map(lm_file_map *f, const char *path, uint64_t min_size, const char *kind,
               const char *too_short)
{
    *f = (lm_file_map){.fd = -1};
    struct stat st;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer forever, before the check below could refuse it. */
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (f->fd < 0 || fstat(f->fd, &st) != 0) {
        lm_set_error("%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        lm_set_error("%s: not a regular file", path);
        return -1;
    }
    int flags = fcntl(f->fd, F_GETFL);
    if (flags < 0 || fcntl(f->fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        lm_set_error("%s: %s", path, strerror(errno));
        return -1;
    }
    if ((uint64_t)st.st_size < (min_size ? min_size : 1)) {
        lm_set_error("%s: not a %s file (%s)", path, kind, too_short);
        return -1;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        lm_set_error("%s: file too large to map", path);
        return -1;
    }
    f->size = (uint64_t)st.st_size;
    void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_SHARED, f->fd, 0);
    if (p == MAP_FAILED) {
        lm_set_error("%s: mmap: %s", path, strerror(errno));
        return -1;
    }
    f->map = p;
    return 0;
}

int lm_file_map_open(lm_file_map *f, const char *path, uint64_t min_size, const char *kind,
                     const char *too_short)
{
    if (map(f, path, min_size, kind, too_short) == 0)
        return 0;
    lm_file_map_close(f);
    return -1;
}

void lm_file_map_close(lm_file_map *f)
{
    if (f->map)
        munmap((void *)f->map, (size_t)f->size);
    if (f->fd >= 0)
        close(f->fd);
    *f = (lm_file_map){.fd = -1};
}

void lm_file_map_release(const lm_file_map *f, const void *p, uint64_t len)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1);
    const uintptr_t end = ((uintptr_t)p + len) & ~(page - 1);
    const uintptr_t map = (uintptr_t)f->map;
    if (start < end && start >= map && end <= map + f->size)
        madvise((void *)start, end - start, MADV_DONTNEED);
}
