#define _POSIX_C_SOURCE 200809L /* strdup */
#include "batch_request.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* OpenAI takes at most 4 stop strings, vLLM any number; every one is looked
 * for after each token, so a bound keeps a hostile line from making that
 * slow. */
#define MAX_STOP 16

/* Records the field at fault and the message; -1 for the caller to return. */
#define FAIL(req, param, ...) (lm_set_error(__VA_ARGS__), (req)->bad_param = (param), -1)

/* A copy of a JSON string, or NULL with *nul set when it holds a NUL: what
 * we hand on travels as C strings (the tokenizer, the chat template), which
 * would cut it there without a word. */
static char *copy_string(const json_t *v, bool *nul)
{
    const char *s = json_string_value(v);
    *nul = strlen(s) != json_string_length(v);
    if (*nul)
        return NULL;
    char *copy = strdup(s);
    if (!copy)
        lm_set_error("out of memory");
    return copy;
}

/* A string field: 0 with a malloc'd copy, or -1. */
static int take_string(lm_batch_request *req, const json_t *v, const char *param, char **out)
{
    bool nul;
    if (!json_is_string(v))
        return FAIL(req, param, "'%s' must be a string", param);
    if (!(*out = copy_string(v, &nul)))
        return nul ? FAIL(req, param, "'%s' holds a NUL character", param) : -1;
    return 0;
}

/* A number field in [lo, hi]; absent or null leaves *out as it is. */
static int get_number(lm_batch_request *req, const json_t *body, const char *key, double lo,
                      double hi, float *out)
{
    const json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return 0;
    const double x = json_is_number(v) ? json_number_value(v) : lo - 1;
    if (!(x >= lo && x <= hi))
        return FAIL(req, key, "'%s' must be a number from %g to %g", key, lo, hi);
    *out = (float)x;
    return 0;
}

/* An integer field in [lo, hi]; absent or null: 0 and *given false. */
static int get_integer(lm_batch_request *req, const json_t *body, const char *key,
                       json_int_t lo, json_int_t hi, json_int_t *out, bool *given)
{
    const json_t *v = json_object_get(body, key);
    *given = v && !json_is_null(v);
    if (!*given)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return FAIL(req, key, "'%s' must be an integer from %lld to %lld", key, (long long)lo,
                    (long long)hi);
    *out = json_integer_value(v);
    return 0;
}

/* "prompt": a string, an array holding one string, or an array of token ids
 * (OpenAI's forms; several prompts in one request are not taken: a batch
 * file gives each its own line). */
static int parse_prompt(lm_batch_request *req, const json_t *prompt)
{
    if (!prompt)
        return FAIL(req, "prompt", "a completion request needs 'prompt'");
    if (json_is_array(prompt) && json_array_size(prompt) == 1 &&
        json_is_string(json_array_get(prompt, 0)))
        prompt = json_array_get(prompt, 0);
    if (json_is_string(prompt))
        return take_string(req, prompt, "prompt", &req->prompt);
    const size_t n = json_array_size(prompt);
    if (!json_is_array(prompt) || n == 0)
        return FAIL(req, "prompt", "'prompt' must be a string or an array of token ids");
    if (!(req->prompt_ids = malloc(n * sizeof *req->prompt_ids))) {
        lm_set_error("out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *id = json_array_get(prompt, i);
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > INT32_MAX)
            return FAIL(req, "prompt", "'prompt' must be a string or an array of token ids "
                                       "(item %zu is neither)", i);
        req->prompt_ids[i] = (int32_t)json_integer_value(id);
    }
    req->n_prompt_ids = n;
    return 0;
}

/* A message's content: a string, or an array of {"type": "text", "text":
 * ...} parts, joined. */
static int parse_content(lm_batch_request *req, const json_t *content, char **out)
{
    if (json_is_string(content))
        return take_string(req, content, "messages", out);
    if (!json_is_array(content))
        return FAIL(req, "messages", "a message's 'content' must be a string or an array of "
                                     "text parts");
    size_t total = 0, i;
    const json_t *part;
    json_array_foreach(content, i, part) {
        const json_t *text = json_object_get(part, "text");
        if (!json_is_string(text) || !json_is_string(json_object_get(part, "type")) ||
            strcmp(json_string_value(json_object_get(part, "type")), "text") != 0)
            return FAIL(req, "messages", "lamina takes only text parts ({\"type\": \"text\", "
                                         "\"text\": ...}) in a message's content");
        if (strlen(json_string_value(text)) != json_string_length(text))
            return FAIL(req, "messages", "a message's content holds a NUL character");
        total += json_string_length(text);
    }
    if (!(*out = malloc(total + 1))) {
        lm_set_error("out of memory");
        return -1;
    }
    size_t at = 0;
    json_array_foreach(content, i, part) {
        const json_t *text = json_object_get(part, "text");
        memcpy(*out + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    (*out)[at] = '\0';
    return 0;
}

/* The roles the chat templates know; OpenAI's "developer" is the system's
 * newer name. */
static const char *chat_role(const char *role)
{
    static const char *const roles[] = {"system", "user", "assistant"};
    if (strcmp(role, "developer") == 0)
        return "system";
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (strcmp(role, roles[i]) == 0)
            return roles[i];
    return NULL;
}

static int parse_messages(lm_batch_request *req, const json_t *messages)
{
    const size_t n = json_array_size(messages);
    if (!json_is_array(messages) || n == 0)
        return FAIL(req, "messages", "a chat request needs 'messages', a non-empty array");
    if (!(req->messages = calloc(n, sizeof *req->messages))) {
        lm_set_error("out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *msg = json_array_get(messages, i);
        const char *role = json_string_value(json_object_get(msg, "role"));
        const char *known = role ? chat_role(role) : NULL;
        if (!json_is_object(msg) || !known)
            return FAIL(req, "messages", "message %zu needs a 'role' (system, developer, user "
                                         "or assistant)", i);
        char *content = NULL;
        if (parse_content(req, json_object_get(msg, "content"), &content) != 0)
            return -1;
        char *role_copy = strdup(known);
        req->messages[req->n_messages++] = (lm_chat_message){role_copy, content};
        if (!role_copy) {
            lm_set_error("out of memory");
            return -1;
        }
    }
    return 0;
}

/* "stop": a string or an array of strings; empty ones would end every
 * generation at once, and are left out. */
static int parse_stop(lm_batch_request *req, const json_t *stop)
{
    if (!stop || json_is_null(stop))
        return 0;
    const size_t n = json_is_string(stop) ? 1 : json_array_size(stop);
    if ((!json_is_string(stop) && !json_is_array(stop)) || n > MAX_STOP)
        return FAIL(req, "stop", "'stop' must be a string or an array of at most %d strings",
                    MAX_STOP);
    if (!(req->stop = calloc(n ? n : 1, sizeof *req->stop))) {
        lm_set_error("out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_string(stop) ? stop : json_array_get(stop, i);
        char *copy;
        if (take_string(req, s, "stop", &copy) != 0)
            return -1;
        if (*copy)
            req->stop[req->n_stop++] = copy;
        else
            free(copy);
    }
    return 0;
}

/* The sampling fields, over the command line's defaults. */
static int parse_sampling(lm_batch_request *req, const json_t *body)
{
    lm_sampler_params *sp = &req->sampling;
    json_int_t v;
    bool given;
    if (get_number(req, body, "temperature", 0, 100, &sp->temp) ||
        get_number(req, body, "top_p", 0, 1, &sp->top_p) ||
        get_number(req, body, "min_p", 0, 1, &sp->min_p) ||
        get_number(req, body, "repeat_penalty", 0.01, 100, &sp->repeat_penalty) ||
        get_number(req, body, "repetition_penalty", 0.01, 100, &sp->repeat_penalty) ||
        get_number(req, body, "frequency_penalty", -2, 2, &req->frequency_penalty) ||
        get_number(req, body, "presence_penalty", -2, 2, &req->presence_penalty))
        return -1;
    /* vLLM's top_k -1 and the sampler's 0 both mean off */
    if (get_integer(req, body, "top_k", -1, INT32_MAX, &v, &given))
        return -1;
    if (given)
        sp->top_k = v < 0 ? 0 : (int32_t)v;
    if (get_integer(req, body, "seed", INT64_MIN, INT64_MAX, &v, &given))
        return -1;
    if ((req->seed_given = given))
        sp->seed = (uint64_t)v;
    return 0;
}

static int parse_body(lm_batch_request *req, const json_t *body)
{
    json_int_t v;
    bool given;
    if (req->kind == LM_BATCH_COMPLETION) {
        if (parse_prompt(req, json_object_get(body, "prompt")) != 0)
            return -1;
        const json_t *echo = json_object_get(body, "echo");
        if (echo && !json_is_null(echo) && !json_is_boolean(echo))
            return FAIL(req, "echo", "'echo' must be true or false");
        req->echo = json_is_true(echo);
    } else if (parse_messages(req, json_object_get(body, "messages")) != 0) {
        return -1;
    }
    /* max_completion_tokens is the newer name, and wins */
    if (get_integer(req, body, "max_tokens", 0, INT_MAX, &v, &given))
        return -1;
    if (given)
        req->max_tokens = (int)v;
    if (get_integer(req, body, "max_completion_tokens", 0, INT_MAX, &v, &given))
        return -1;
    if (given)
        req->max_tokens = (int)v;
    if (get_integer(req, body, "n", 1, INT_MAX, &v, &given))
        return -1;
    if (given && v != 1)
        return FAIL(req, "n", "lamina gives one choice per request: 'n' must be 1");
    const json_t *stream = json_object_get(body, "stream");
    if (stream && !json_is_null(stream) && !json_is_boolean(stream))
        return FAIL(req, "stream", "'stream' must be true or false");
    req->stream = json_is_true(stream);
    const json_t *options = json_object_get(body, "stream_options");
    if (options && !json_is_null(options) && !json_is_object(options))
        return FAIL(req, "stream_options", "'stream_options' must be an object");
    req->include_usage = json_is_true(json_object_get(options, "include_usage"));
    return parse_stop(req, json_object_get(body, "stop")) || parse_sampling(req, body) ? -1 : 0;
}

static int parse_line(lm_batch_request *req, const json_t *root)
{
    if (!json_is_object(root))
        return FAIL(req, NULL, "a request must be a JSON object");
    const json_t *id = json_object_get(root, "custom_id");
    if (!json_is_string(id))
        return FAIL(req, "custom_id", "a request needs 'custom_id', a string");
    if (take_string(req, id, "custom_id", &req->custom_id) != 0)
        return -1;
    const json_t *method = json_object_get(root, "method");
    if (method && (!json_is_string(method) || strcmp(json_string_value(method), "POST") != 0))
        return FAIL(req, "method", "'method' must be \"POST\"");
    const char *url = json_string_value(json_object_get(root, "url"));
    if (!url)
        return FAIL(req, "url", "a request needs 'url', a string");
    if (strcmp(url, "/v1/completions") == 0)
        req->kind = LM_BATCH_COMPLETION;
    else if (strcmp(url, "/v1/chat/completions") == 0)
        req->kind = LM_BATCH_CHAT;
    else
        return FAIL(req, "url", "unknown url '%s' (lamina serves /v1/completions and "
                                "/v1/chat/completions)", url);
    const json_t *body = json_object_get(root, "body");
    if (!json_is_object(body))
        return FAIL(req, "body", "a request needs 'body', an object");
    if (parse_body(req, body) != 0)
        return -1;
    if (req->stream)
        return FAIL(req, "stream", "'stream' does not apply to a batch; leave it out");
    return 0;
}

/* The JSON in text, or NULL with lm_set_error.  NULs inside strings are
 * let through to be refused by name, field by field: the text is JSON, and
 * the request can still be answered as such. */
static json_t *load(lm_batch_request *req, const char *text, size_t len,
                    const lm_sampler_params *defaults)
{
    memset(req, 0, sizeof *req);
    req->max_tokens = -1;
    req->sampling = *defaults;
    json_error_t error;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &error);
    if (!root)
        lm_set_error("not JSON: %s at line %d, column %d", error.text, error.line, error.column);
    req->is_json = root != NULL;
    return root;
}

int lm_batch_request_parse(const char *line, size_t len, const lm_sampler_params *defaults,
                           lm_batch_request *req)
{
    json_t *root = load(req, line, len, defaults);
    const int rc = root ? parse_line(req, root) : -1;
    json_decref(root);
    return rc;
}

int lm_batch_request_parse_body(const char *body, size_t len, lm_batch_kind kind,
                                const lm_sampler_params *defaults, lm_batch_request *req)
{
    json_t *root = load(req, body, len, defaults);
    req->kind = kind;
    int rc = -1;
    if (root && !json_is_object(root))
        rc = FAIL(req, NULL, "the request body must be a JSON object");
    else if (root)
        rc = parse_body(req, root);
    json_decref(root);
    return rc;
}

void lm_batch_request_free(lm_batch_request *req)
{
    free(req->custom_id);
    free(req->prompt);
    free(req->prompt_ids);
    for (size_t i = 0; i < req->n_messages; i++) {
        free((char *)req->messages[i].role);
        free((char *)req->messages[i].content);
    }
    free(req->messages);
    for (size_t i = 0; i < req->n_stop; i++)
        free(req->stop[i]);
    free(req->stop);
    memset(req, 0, sizeof *req);
}
