#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

static void release(lm_atomic_file *a)
{
    free(a->path);
    free(a->tmp);
    a->f = NULL;
    a->path = a->tmp = NULL;
}

int lm_atomic_open(lm_atomic_file *a, const char *path)
{
    static unsigned counter; /* a second file of this process gets its own name */
    struct stat st;
    *a = (lm_atomic_file){0};
    const bool direct = stat(path, &st) == 0 && !S_ISREG(st.st_mode);
    size_t cap = strlen(path) + 48;
    if (!(a->path = strdup(path)) || (!direct && !(a->tmp = malloc(cap)))) {
        release(a);
        lm_set_error("%s: out of memory", path);
        return -1;
    }
    if (direct) {
        a->f = fopen(path, "wb");
    } else {
        snprintf(a->tmp, cap, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
        /* O_EXCL: never write through a name someone else put there */
        int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        a->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (fd >= 0 && !a->f)
            close(fd);
    }
    if (!a->f) {
        lm_set_error("%s: %s", path, strerror(errno));
        if (a->tmp)
            remove(a->tmp);
        release(a);
        return -1;
    }
    return 0;
}

int lm_atomic_commit(lm_atomic_file *a, int errno_hint)
{
    int err = errno_hint;
    if (!err && fflush(a->f) != 0)
        err = errno;
    /* on the disk before it takes the final name (a rename can reach the
     * disk before the data does), and a write error shows up here too */
    if (!err && a->tmp && fsync(fileno(a->f)) != 0)
        err = errno;
    if (fclose(a->f) != 0 && !err)
        err = errno;
    if (!err && a->tmp && rename(a->tmp, a->path) != 0)
        err = errno;
    if (err) {
        lm_set_error("%s: write failed: %s", a->path, strerror(err));
        if (a->tmp)
            remove(a->tmp);
    }
    release(a);
    return err ? -1 : 0;
}

void lm_atomic_abort(lm_atomic_file *a)
{
    if (!a->f)
        return;
    fclose(a->f);
    if (a->tmp)
        remove(a->tmp);
    release(a);
}
