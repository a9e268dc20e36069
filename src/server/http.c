/* The HTTP side of `lamina serve`: libmicrohttpd's daemon, the routes, the
 * API key, the size limit on bodies, and the replies. */
#define _GNU_SOURCE /* vasprintf */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "server_internal.h"
#include "timing.h"

/* ---- replies */

enum MHD_Result lm_reply_text(lm_request *r, unsigned status, const char *content_type,
                              const char *text, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                r->route == ROUTE_CHAT || r->route == ROUTE_COMPLETION
                                    ? "POST" : "GET, HEAD");
    const enum MHD_Result rc = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

enum MHD_Result lm_reply_json(lm_request *r, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    static const char no_memory[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                    "\"server_error\",\"param\":null,\"code\":null}}";
    if (!text)
        return lm_reply_text(r, 500, "application/json", no_memory, sizeof no_memory - 1);
    const enum MHD_Result rc = lm_reply_text(r, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

enum MHD_Result lm_reply_error(lm_request *r, unsigned status, const char *type,
                               const char *param, const char *code, const char *fmt, ...)
{
    char message[512], printable[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    /* messages quote the client's input: valid UTF-8 only, for JSON */
    lm_printable(message, strlen(message), printable, sizeof printable);
    return lm_reply_json(r, status, lm_openai_error(printable, type, param, code));
}

/* ---- the client's side of the connection */

bool lm_client_gone(lm_request *r)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return true;
    struct pollfd p = {.fd = info->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
        return true;
    char c;
    const ssize_t n = recv(info->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void lm_wait_progress(lm_jobs *j, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&j->progress, &j->lock, &until);
}

/* ---- routes */

static const struct {
    const char *path;
    lm_route route;
} routes[] = {
    {"/v1/chat/completions", ROUTE_CHAT}, {"/chat/completions", ROUTE_CHAT},
    {"/v1/completions", ROUTE_COMPLETION}, {"/completions", ROUTE_COMPLETION},
    {"/v1/models", ROUTE_MODELS}, {"/models", ROUTE_MODELS},
    {"/health", ROUTE_HEALTH}, {"/metrics", ROUTE_METRICS},
};

static lm_route find_route(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (strcmp(url, routes[i].path) == 0)
            return routes[i].route;
    return ROUTE_NONE;
}

/* Compares the whole of both strings whatever they hold, so that the time
 * taken says nothing about how much of a guess was right. */
static bool same_key(const char *given, const char *key)
{
    const size_t n = strlen(given), m = strlen(key);
    unsigned char diff = n != m;
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)(i < n ? given[i] : 0);
    return diff == 0;
}

static bool authorized(const lm_request *r)
{
    const char *key = r->srv->cfg.api_key;
    if (!key || r->route == ROUTE_HEALTH)
        return true;
    const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_AUTHORIZATION);
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    auth += 7;
    while (*auth == ' ')
        auth++;
    return same_key(auth, key);
}

/* What can be answered from the request line and headers alone. */
static int check_headers(lm_request *r, const char *url, const char *method)
{
    const bool post = strcmp(method, "POST") == 0;
    const bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (r->route == ROUTE_NONE)
        return MHD_HTTP_NOT_FOUND;
    if (!authorized(r))
        return MHD_HTTP_UNAUTHORIZED;
    if ((r->route == ROUTE_CHAT || r->route == ROUTE_COMPLETION) ? !post : !get)
        return MHD_HTTP_METHOD_NOT_ALLOWED;
    const char *length = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && strtoull(length, NULL, 10) > r->srv->cfg.max_body)
        return MHD_HTTP_CONTENT_TOO_LARGE;
    (void)url;
    return 0;
}

static enum MHD_Result reply_early(lm_request *r, const char *url, const char *method)
{
    switch (r->early_status) {
    case MHD_HTTP_NOT_FOUND:
        return lm_reply_error(r, 404, "invalid_request_error", NULL, "not_found",
                              "no route %s %s (lamina serves POST /v1/chat/completions, POST "
                              "/v1/completions, GET /v1/models, /health and /metrics)", method,
                              url);
    case MHD_HTTP_UNAUTHORIZED:
        return lm_reply_error(r, 401, "invalid_request_error", NULL, "invalid_api_key",
                              "a missing or wrong API key (send Authorization: Bearer KEY)");
    case MHD_HTTP_METHOD_NOT_ALLOWED:
        return lm_reply_error(r, 405, "invalid_request_error", NULL, "method_not_allowed",
                              "%s does not take %s", url, method);
    default:
        return lm_reply_error(r, 413, "invalid_request_error", NULL, "request_too_large",
                              "the request body is larger than %zu bytes (--max-body)",
                              r->srv->cfg.max_body);
    }
}

static enum MHD_Result serve_models(lm_request *r)
{
    /* the file's name may be any bytes; JSON wants UTF-8 */
    size_t len;
    char *name = lm_utf8_repair(r->srv->cfg.model_name, strlen(r->srv->cfg.model_name), &len);
    json_t *models = !name ? NULL
        : json_pack("{s:s, s:[{s:s%, s:s, s:I, s:s}]}", "object", "list", "data", "id", name,
                    len, "object", "model", "created", (json_int_t)time(NULL), "owned_by",
                    "lamina");
    free(name);
    return lm_reply_json(r, 200, models);
}

static enum MHD_Result serve_health(lm_request *r)
{
    pthread_mutex_lock(&r->srv->jobs.lock);
    const bool ready = r->srv->jobs.ready, stopping = r->srv->jobs.stopping;
    pthread_mutex_unlock(&r->srv->jobs.lock);
    const char *status = stopping ? "stopping" : ready ? "ok" : "loading";
    return lm_reply_json(r, ready && !stopping ? 200 : 503, json_pack("{s:s}", "status", status));
}

/* Keeps the upload up to the limit; beyond it the rest is read and
 * dropped, for a 413 at the end. */
static void take_upload(lm_request *r, const char *data, size_t n)
{
    if (r->early_status)
        return;
    if (r->len + n > r->srv->cfg.max_body) {
        r->early_status = MHD_HTTP_CONTENT_TOO_LARGE;
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *grown = realloc(r->body, cap);
        if (!grown) {
            r->early_status = MHD_HTTP_CONTENT_TOO_LARGE;
            return;
        }
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    lm_server *srv = cls;
    lm_request *r = *con_cls;
    (void)version;
    if (!r) {
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        r->srv = srv;
        r->conn = conn;
        r->route = find_route(url);
        r->early_status = check_headers(r, url, method);
        *con_cls = r;
        pthread_mutex_lock(&srv->jobs.lock);
        srv->jobs.connections++;
        pthread_mutex_unlock(&srv->jobs.lock);
        /* a body declared too large is not read at all */
        if (r->early_status == MHD_HTTP_CONTENT_TOO_LARGE) {
            pthread_mutex_lock(&srv->jobs.lock);
            srv->jobs.count.rejected++;
            pthread_mutex_unlock(&srv->jobs.lock);
            return reply_early(r, url, method);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        take_upload(r, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->early_status) {
        pthread_mutex_lock(&srv->jobs.lock);
        srv->jobs.count.rejected++;
        pthread_mutex_unlock(&srv->jobs.lock);
        return reply_early(r, url, method);
    }
    switch (r->route) {
    case ROUTE_MODELS: return serve_models(r);
    case ROUTE_HEALTH: return serve_health(r);
    case ROUTE_METRICS: return lm_serve_metrics(r);
    default: return lm_serve_completion(r);
    }
}

/* The request is over (answered, or the connection failed): a job still
 * running for it is cancelled. */
static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    lm_server *srv = cls;
    lm_request *r = *con_cls;
    (void)why;
    if (!r)
        return;
    if (r->job && conn) /* waiting is over: idle again, a kept-alive connection times out */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  (unsigned)LM_SERVER_IDLE_SECONDS);
    pthread_mutex_lock(&srv->jobs.lock);
    if (r->job) {
        if (r->job->state != LM_JOB_DONE) {
            r->job->cancel = true;
            pthread_cond_signal(&srv->jobs.work);
        }
        lm_job_release_locked(r->job);
    }
    srv->jobs.connections--;
    pthread_cond_broadcast(&srv->jobs.progress);
    pthread_mutex_unlock(&srv->jobs.lock);
    free(r->body);
    free(r->out);
    free(r);
    *con_cls = NULL;
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    char line[512], printable[512];
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    fprintf(stderr, "lamina serve: http: %s\n", lm_printable(line, n, printable, sizeof printable));
}

/* ---- the daemon */

static int resolve(const char *host, int port, struct sockaddr_storage *addr, bool *ipv6)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    const int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        lm_set_error("--host %s: %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *ipv6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

lm_server *lm_server_start(const lm_server_config *cfg)
{
    lm_server *srv = calloc(1, sizeof *srv);
    if (!srv || lm_jobs_init(&srv->jobs, cfg->queue, cfg->n_slots) != 0) {
        free(srv);
        lm_set_error("out of memory");
        return NULL;
    }
    srv->cfg = *cfg;
    srv->started = lm_now_seconds();
    struct sockaddr_storage addr;
    bool ipv6;
    if (resolve(cfg->host, cfg->port, &addr, &ipv6) != 0)
        goto fail;
    const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                           MHD_USE_ITC | MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, handle, srv,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL, /* first, to catch every message */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)LM_SERVER_IDLE_SECONDS,
        MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
        MHD_OPTION_END);
    if (!srv->daemon) {
        lm_set_error("cannot listen on %s port %d: %s", cfg->host, cfg->port,
                     errno ? strerror(errno) : "libmicrohttpd refused");
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : cfg->port;
    return srv;
fail:
    lm_jobs_destroy(&srv->jobs);
    free(srv);
    return NULL;
}

int lm_server_port(const lm_server *srv)
{
    return srv->port;
}

lm_jobs *lm_server_jobs(lm_server *srv)
{
    return &srv->jobs;
}

void lm_server_set_ready(lm_server *srv, const lm_prompt_maker *pm)
{
    pthread_mutex_lock(&srv->jobs.lock);
    srv->prompts = pm;
    srv->jobs.ready = true;
    pthread_mutex_unlock(&srv->jobs.lock);
}

void lm_server_quiesce(lm_server *srv)
{
    const MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

void lm_server_stop(lm_server *srv, double wait_s)
{
    const double until = lm_now_seconds() + wait_s;
    pthread_mutex_lock(&srv->jobs.lock);
    while (srv->jobs.connections > 0 && lm_now_seconds() < until)
        lm_wait_progress(&srv->jobs, 50);
    pthread_mutex_unlock(&srv->jobs.lock);
    MHD_stop_daemon(srv->daemon);
    lm_jobs_destroy(&srv->jobs);
    free(srv);
}
