/* Files written whole or not at all.
 *
 * The data goes to a temporary file beside the final name (NAME.tmp-PID-N),
 * which takes the final name by rename() only once it is complete and on the
 * disk: a full disk, an error or a kill never leaves a partial file under the
 * final name, nor destroys a good file that was there.  A final name that
 * exists and is not a regular file (a device, a FIFO) is written directly. */
#ifndef LM_ATOMIC_FILE_H
#define LM_ATOMIC_FILE_H

#include <stdbool.h>
#include <stdio.h>

typedef struct {
    FILE *f;    /* write here */
    char *path; /* the final name */
    char *tmp;  /* the temporary name; NULL when writing directly */
} lm_atomic_file;

/* Opens the temporary file; 0, or -1 with lm_set_error. */
int lm_atomic_open(lm_atomic_file *a, const char *path);
/* Flushes, syncs, closes and renames; 0, or -1 with lm_set_error ("PATH:
 * write failed: why") and the temporary file removed.  errno_hint, when not
 * 0, is the errno of a write error the caller saw first. */
int lm_atomic_commit(lm_atomic_file *a, int errno_hint);
/* Gives up: closes and removes the temporary file. */
void lm_atomic_abort(lm_atomic_file *a);

#endif
