#define _POSIX_C_SOURCE 200809L /* getline */
#include "batch_result.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

/* ---- result lines */

static char *dump(json_t *result)
{
    char *line = result ? json_dumps(result, JSON_COMPACT) : NULL;
    json_decref(result);
    if (!line)
        lm_set_error("out of memory for a result line");
    return line;
}

/* The envelope around an answer the endpoint gave (status and body). */
static char *envelope(const char *custom_id, int status, json_t *body)
{
    char id[64], request_id[64];
    if (!body)
        return dump(NULL);
    return dump(json_pack("{s:s, s:s?, s:{s:i, s:s, s:o}, s:n}",
                          "id", lm_openai_id(id, sizeof id, "batch_req_"), "custom_id", custom_id,
                          "response", "status_code", status, "request_id",
                          lm_openai_id(request_id, sizeof request_id, "req_"), "body", body,
                          "error"));
}

char *lm_batch_result_ok(const lm_batch_answer *a)
{
    char id[64];
    const char *prefix = a->kind == LM_BATCH_CHAT ? "chatcmpl-" : "cmpl-";
    return envelope(a->custom_id, 200,
                    lm_openai_body(a, lm_openai_id(id, sizeof id, prefix), time(NULL)));
}

char *lm_batch_result_invalid(const char *custom_id, const char *message, const char *param)
{
    json_t *body = lm_openai_error(message, "invalid_request_error", param, NULL);
    return envelope(custom_id, 400, body);
}

char *lm_batch_result_not_json(const char *message)
{
    char id[64];
    return dump(json_pack("{s:s, s:n, s:n, s:{s:s, s:s}}", "id",
                          lm_openai_id(id, sizeof id, "batch_req_"), "custom_id", "response",
                          "error", "code", "invalid_json", "message", message));
}

int lm_batch_result_put(FILE *f, char *line)
{
    if (!line)
        return -1;
    fputs(line, f);
    fputc('\n', f);
    free(line);
    if (fflush(f) != 0 || ferror(f)) {
        lm_set_error("cannot write the results: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- reading them back */

/* Cuts a last line that has no newline (the run was stopped while writing
 * it): what comes next is appended after it. */
static int cut_partial_line(const char *path, FILE *f)
{
    if (fseeko(f, 0, SEEK_END) != 0)
        return -1;
    off_t end = ftello(f), keep = end;
    while (keep > 0) {
        if (fseeko(f, keep - 1, SEEK_SET) != 0)
            return -1;
        if (fgetc(f) == '\n')
            break;
        keep--;
    }
    if (keep < end && truncate(path, keep) != 0) {
        lm_set_error("%s: cannot cut its unfinished last line: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int lm_batch_results_read(const char *path, json_t *done, int *n_anonymous)
{
    *n_anonymous = 0;
    FILE *f = fopen(path, "r+b");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        lm_set_error("%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = cut_partial_line(path, f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    rewind(f);
    while (rc == 0 && (got = getline(&line, &cap, f)) > 0) {
        if (line[got - 1] != '\n')
            break; /* the partial line, now cut off the file */
        json_t *result = json_loadb(line, (size_t)got, 0, NULL);
        const json_t *id = json_object_get(result, "custom_id");
        if (!json_is_string(id))
            *n_anonymous += json_is_object(result);
        else if (json_object_set(done, json_string_value(id), json_true()) != 0) {
            lm_set_error("out of memory");
            rc = -1;
        }
        json_decref(result);
    }
    if (rc == 0 && ferror(f)) {
        lm_set_error("%s: cannot read the results: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}
