/* The parts of the server its source files share (server.h is the
 * interface). */
#ifndef LM_SERVER_INTERNAL_H
#define LM_SERVER_INTERNAL_H

#include <microhttpd.h>
#include <jansson.h>

#include "openai_json.h"
#include "server.h"

struct lm_server {
    lm_server_config cfg;
    lm_jobs jobs;
    const lm_prompt_maker *prompts; /* under jobs.lock until ready, then fixed */
    struct MHD_Daemon *daemon;
    int port;
    double started;
};

typedef enum {
    ROUTE_NONE, ROUTE_CHAT, ROUTE_COMPLETION, ROUTE_MODELS, ROUTE_HEALTH, ROUTE_METRICS,
} lm_route;

/* Seconds a connection may sit idle (no bytes either way) before
 * libmicrohttpd closes it.  A request waiting for its answer is not idle:
 * its connection has no timeout until the request is over. */
#define LM_SERVER_IDLE_SECONDS 120

/* One request on a connection. */
typedef struct {
    lm_server *srv;
    struct MHD_Connection *conn;
    lm_route route;
    int early_status;        /* an answer known from the headers (401, 404, 405, 413) */
    char *body;              /* the upload, up to cfg.max_body */
    size_t len, cap;
    lm_job *job;             /* a completion's job, once queued */
    /* streaming */
    int phase;
    size_t sent;             /* bytes of job->text already sent */
    char *out;               /* the event being sent */
    size_t out_len, out_off;
} lm_request;

/* Replies (they queue the response and return MHD's result). */
enum MHD_Result lm_reply_json(lm_request *r, unsigned status, json_t *body);
enum MHD_Result lm_reply_error(lm_request *r, unsigned status, const char *type,
                               const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
enum MHD_Result lm_reply_text(lm_request *r, unsigned status, const char *content_type,
                              const char *text, size_t len);

/* POST /v1/completions and /v1/chat/completions, once the body is in. */
enum MHD_Result lm_serve_completion(lm_request *r);

/* GET /metrics: Prometheus text. */
enum MHD_Result lm_serve_metrics(lm_request *r);

/* Whether the client has closed its side of the connection. */
bool lm_client_gone(lm_request *r);

/* Waits on the jobs' progress condition for at most ms (lock held). */
void lm_wait_progress(lm_jobs *j, long ms);

#endif
