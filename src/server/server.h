/* `lamina serve`: an OpenAI-compatible HTTP server over the multi-sequence
 * engine.  GNU libmicrohttpd runs a thread per connection; each request is
 * parsed and tokenized in its connection's thread, queued as a job
 * (jobs.h), and served by the engine thread (engine_loop.h) in the same
 * passes as every other request.  The connection thread then answers with
 * the whole body, or streams the text as Server-Sent Events while it
 * comes.
 *
 * Routes: POST /v1/chat/completions, POST /v1/completions (also without
 * /v1), GET /v1/models, GET /health, GET /metrics.  Errors are OpenAI's
 * error object with a 4xx or 5xx status. */
#ifndef LM_SERVER_H
#define LM_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "jobs.h"
#include "request_prompt.h"
#include "sampler.h"

typedef struct {
    const char *host;          /* numeric address or name to bind */
    int port;                  /* 0: any free port (the one taken is printed) */
    const char *api_key;       /* NULL: no key asked */
    size_t max_body;           /* bytes; larger bodies get 413 */
    int max_connections;
    int queue;                 /* requests waiting beyond the slots; more get 503 */
    int n_slots;               /* --parallel */
    const char *model_name;    /* what /v1/models lists and responses name */
    int default_max_tokens;    /* -n, or LM_CLI_UNSET */
    lm_sampler_params sampling;/* defaults for fields a request leaves out */
} lm_server_config;

typedef struct lm_server lm_server;

/* Listens (the model is not loaded yet: /health says "loading" and
 * completions get 503 until lm_server_set_ready).  NULL with lm_set_error. */
lm_server *lm_server_start(const lm_server_config *cfg);

/* The port listened on. */
int lm_server_port(const lm_server *srv);

/* The shared job state, for the engine loop. */
lm_jobs *lm_server_jobs(lm_server *srv);

/* The model is loaded: requests are tokenized with pm from now on. */
void lm_server_set_ready(lm_server *srv, const lm_prompt_maker *pm);

/* Stops accepting connections (the listening socket closes). */
void lm_server_quiesce(lm_server *srv);

/* Waits up to wait_s for the connections still answering, then closes
 * every connection and frees the server. */
void lm_server_stop(lm_server *srv, double wait_s);

#endif
