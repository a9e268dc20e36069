/* The requests file of `lamina batch`, read whole (a file or stdin) and
 * cut into lines; blank lines are passed over.  Before anything runs, every
 * line is parsed once: two requests with one custom_id would make their
 * results impossible to tell apart (and --resume ambiguous), so that stops
 * the batch; and with --resume the lines already answered are marked. */
#ifndef LM_BATCH_INPUT_H
#define LM_BATCH_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "sampler.h"

typedef struct {
    const char *text; /* into the file's bytes; not NUL-terminated */
    size_t len;
    int number;       /* 1-based, counting blank lines */
    char *custom_id;  /* NULL: the line has none (see batch_request.h) */
    bool answered;    /* --resume: its result is already in the results file */
} lm_batch_line;

typedef struct {
    char *data;
    size_t size;
    lm_batch_line *lines; /* the lines that are not blank */
    int n_lines;
    int n_pending;        /* lines not answered yet */
} lm_batch_input;

/* Reads path ("-": stdin) and checks that custom_ids are unique.  0, or -1
 * with lm_set_error. */
int lm_batch_input_read(lm_batch_input *in, const char *path);

/* Marks the lines whose custom_id is in done, and the first n_anonymous
 * lines without a custom_id (their results, custom_id null, were written
 * in the order of the lines). */
void lm_batch_input_mark_answered(lm_batch_input *in, const json_t *done, int n_anonymous);

void lm_batch_input_free(lm_batch_input *in);

#endif
