#define _POSIX_C_SOURCE 200809L /* getline */
#include "batch_result.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "rng.h"
#include "utf8.h"

/* ---- ids: unique in practice, like OpenAI's "batch_req_<24 chars>" */

static char *make_id(char *buf, size_t cap, const char *prefix)
{
    static uint64_t state[4];
    static bool seeded;
    if (!seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        lm_rng_seed(state, ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                               ((uint64_t)getpid() << 40));
        seeded = true;
    }
    const uint64_t a = lm_rng_next(state), b = lm_rng_next(state);
    snprintf(buf, cap, "%s%016llx%08llx", prefix, (unsigned long long)a,
             (unsigned long long)(b >> 32));
    return buf;
}

/* ---- UTF-8 */


char *lm_utf8_repair(const char *s, size_t len, size_t *out_len)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    /* a NUL stays: JSON strings carry it as \u0000 */
    char *out = malloc(len * 3 + 1);
    if (!out) {
        lm_set_error("out of memory");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        const size_t n = lm_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n) {
            memcpy(out + o, s + i, n);
            o += n, i += n;
        } else {
            memcpy(out + o, replacement, 3);
            o += 3, i++;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

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
                          "id", make_id(id, sizeof id, "batch_req_"), "custom_id", custom_id,
                          "response", "status_code", status, "request_id",
                          make_id(request_id, sizeof request_id, "req_"), "body", body,
                          "error"));
}

char *lm_batch_result_ok(const lm_batch_answer *a)
{
    size_t text_len, model_len;
    char *text = lm_utf8_repair(a->text, a->text_len, &text_len);
    char *model = lm_utf8_repair(a->model, strlen(a->model), &model_len);
    const bool chat = a->kind == LM_BATCH_CHAT;
    json_t *choice = !text ? NULL
                     : chat ? json_pack("{s:i, s:{s:s, s:s%}, s:s, s:n}", "index", 0, "message",
                                        "role", "assistant", "content", text, text_len,
                                        "finish_reason", a->finish_reason, "logprobs")
                            : json_pack("{s:i, s:s%, s:s, s:n}", "index", 0, "text", text,
                                        text_len, "finish_reason", a->finish_reason, "logprobs");
    char id[64];
    json_t *body = !choice || !model ? NULL
        : json_pack("{s:s, s:s, s:I, s:s%, s:[o], s:{s:i, s:i, s:i}}",
                    "id", make_id(id, sizeof id, chat ? "chatcmpl-" : "cmpl-"),
                    "object", chat ? "chat.completion" : "text_completion",
                    "created", (json_int_t)time(NULL), "model", model, model_len,
                    "choices", choice, "usage", "prompt_tokens", a->prompt_tokens,
                    "completion_tokens", a->completion_tokens, "total_tokens",
                    a->prompt_tokens + a->completion_tokens);
    if (!body)
        json_decref(choice);
    free(text);
    free(model);
    return envelope(a->custom_id, 200, body);
}

char *lm_batch_result_invalid(const char *custom_id, const char *message, const char *param)
{
    json_t *body = json_pack("{s:{s:s, s:s, s:s?, s:n}}", "error", "message", message, "type",
                             "invalid_request_error", "param", param, "code");
    return envelope(custom_id, 400, body);
}

char *lm_batch_result_not_json(const char *message)
{
    char id[64];
    return dump(json_pack("{s:s, s:n, s:n, s:{s:s, s:s}}", "id",
                          make_id(id, sizeof id, "batch_req_"), "custom_id", "response",
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
