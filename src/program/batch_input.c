#define _POSIX_C_SOURCE 200809L /* strdup */
#include "batch_input.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_request.h"
#include "error.h"

static int read_all(lm_batch_input *in, const char *path)
{
    const bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        lm_set_error("%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16;
    in->data = malloc(cap);
    while (in->data) {
        in->size += fread(in->data + in->size, 1, cap - in->size, f);
        if (in->size < cap)
            break;
        char *grown = realloc(in->data, cap * 2);
        if (!grown) {
            free(in->data);
            in->data = NULL;
            break;
        }
        in->data = grown;
        cap *= 2;
    }
    const bool failed = ferror(f);
    if (!is_stdin)
        fclose(f);
    if (!in->data || failed) {
        lm_set_error("%s: cannot read the requests%s", is_stdin ? "stdin" : path,
                     in->data ? "" : " (out of memory)");
        return -1;
    }
    return 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

static int split_lines(lm_batch_input *in)
{
    size_t n = 1;
    for (size_t i = 0; i < in->size; i++)
        n += in->data[i] == '\n';
    if (!(in->lines = calloc(n, sizeof *in->lines))) {
        lm_set_error("out of memory for %zu lines", n);
        return -1;
    }
    int number = 0;
    for (size_t at = 0; at < in->size;) {
        const char *text = in->data + at, *nl = memchr(text, '\n', in->size - at);
        const size_t len = nl ? (size_t)(nl - text) : in->size - at;
        number++;
        if (!blank(text, len)) /* a CRLF file's \r is no part of the JSON */
            in->lines[in->n_lines++] = (lm_batch_line){
                .text = text, .len = len - (text[len - 1] == '\r'), .number = number};
        at += len + 1;
    }
    in->n_pending = in->n_lines;
    return 0;
}

/* Each line's custom_id; a second line with one already seen stops the
 * batch, naming both lines. */
static int check_ids(lm_batch_input *in)
{
    const lm_sampler_params defaults = lm_sampler_default_params();
    json_t *seen = json_object();
    int rc = seen ? 0 : -1;
    if (rc)
        lm_set_error("out of memory");
    for (int i = 0; rc == 0 && i < in->n_lines; i++) {
        lm_batch_line *line = &in->lines[i];
        lm_batch_request req;
        lm_batch_request_parse(line->text, line->len, &defaults, &req);
        if (req.custom_id) {
            const json_t *first = json_object_get(seen, req.custom_id);
            if (first) {
                lm_set_error("lines %d and %d have the same custom_id '%s'; each request needs "
                             "its own", (int)json_integer_value(first), line->number,
                             req.custom_id);
                rc = -1;
            } else if (!(line->custom_id = strdup(req.custom_id)) ||
                       json_object_set_new(seen, req.custom_id, json_integer(line->number))) {
                lm_set_error("out of memory");
                rc = -1;
            }
        }
        lm_batch_request_free(&req);
    }
    json_decref(seen);
    return rc;
}

int lm_batch_input_read(lm_batch_input *in, const char *path)
{
    memset(in, 0, sizeof *in);
    return read_all(in, path) || split_lines(in) || check_ids(in) ? -1 : 0;
}

void lm_batch_input_mark_answered(lm_batch_input *in, const json_t *done, int n_anonymous)
{
    for (int i = 0; i < in->n_lines; i++) {
        lm_batch_line *line = &in->lines[i];
        if (line->custom_id)
            line->answered = json_object_get(done, line->custom_id) != NULL;
        else
            line->answered = n_anonymous-- > 0;
        in->n_pending -= line->answered;
    }
}

void lm_batch_input_free(lm_batch_input *in)
{
    for (int i = 0; in->lines && i < in->n_lines; i++)
        free(in->lines[i].custom_id);
    free(in->lines);
    free(in->data);
    memset(in, 0, sizeof *in);
}
