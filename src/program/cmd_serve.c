/* lamina serve: listens at once (GET /health says "loading"), loads the
 * model and plans the engine for --parallel sequences, then runs the
 * engine loop (src/server/engine_loop.h) on this thread until SIGINT or
 * SIGTERM; the HTTP side (src/server/) has its own threads. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_scheduler.h"
#include "cli.h"
#include "engine_loop.h"
#include "error.h"
#include "request_prompt.h"
#include "server.h"
#include "session.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error return, not a death */
}

/* --api-key, or the first line of --api-key-file; NULL when neither. */
static int api_key(const lm_cli *o, char **key)
{
    *key = NULL;
    if (o->api_key && o->api_key_file) {
        lm_set_error("give --api-key or --api-key-file, not both");
        return -1;
    }
    if (o->api_key_file) {
        size_t len;
        char *text = lm_read_file(o->api_key_file, &len);
        if (!text)
            return -1;
        text[strcspn(text, "\r\n")] = '\0';
        *key = text;
    } else if (o->api_key && !(*key = strdup(o->api_key))) {
        lm_set_error("out of memory");
        return -1;
    }
    if (*key && !**key) {
        lm_set_error("the API key is empty");
        free(*key);
        *key = NULL;
        return -1;
    }
    return 0;
}

typedef struct {
    lm_server *srv;
    int drain_seconds;
} stop_context;

static void stop_listening(void *arg)
{
    const stop_context *c = arg;
    fprintf(stderr, "lamina serve: stopping: no new requests; running ones get %d s\n",
            c->drain_seconds);
    lm_server_quiesce(c->srv);
}

int lm_cmd_serve(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "serve", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (!o.parallel_given)
        o.n_parallel = 4;
    char *key = NULL;
    lm_server *srv = NULL;
    lm_model *m = NULL;
    lm_session *s = NULL;
    lm_batch_scheduler sched = {0};
    lm_prompt_maker prompts = {0};
    rc = 1;
    if (!o.model) {
        lm_set_error("serve needs a model: -m FILE");
        goto done;
    }
    if (o.draft) {
        lm_set_error("serve takes --lookup; a draft model per slot (--draft) is not there yet");
        goto done;
    }
    if (api_key(&o, &key) != 0)
        goto done;
    install_signals();
    const lm_server_config cfg = {
        .host = o.host, .port = o.port, .api_key = key, .max_body = (size_t)o.max_body,
        .max_connections = o.n_parallel + o.queue + 32, .queue = o.queue,
        .n_slots = o.n_parallel, .model_name = lm_cli_model_name(&o),
        .default_max_tokens = o.n_predict, .sampling = o.sampling,
    };
    if (!(srv = lm_server_start(&cfg)))
        goto done;
    fprintf(stderr, "lamina serve: listening on http://%s%s%s:%d%s\n",
            strchr(o.host, ':') ? "[" : "", o.host, strchr(o.host, ':') ? "]" : "",
            lm_server_port(srv), key ? " (API key required)" : "");
    if (!(m = lm_cli_load_model(&o)))
        goto done;
    const int n_ctx = lm_cli_context(&o, m), n_seq = o.n_parallel;
    const int seq_ctx = n_ctx / n_seq, chunk = o.n_batch < seq_ctx ? o.n_batch : seq_ctx;
    if (seq_ctx < 2) {
        lm_set_error("-c %d shared by --parallel %d leaves no room for a request", n_ctx, n_seq);
        goto done;
    }
    /* with --lookup a pass also checks each slot's proposals */
    const int rows = chunk + (o.lookup ? n_seq * (1 + o.draft_max) : n_seq - 1);
    if (lm_prompt_maker_init(&prompts, &o, m, seq_ctx, n_seq) != 0 ||
        !(s = lm_cli_session(&o, m, n_ctx, rows)) ||
        lm_batch_scheduler_init(&sched, s, chunk) != 0 ||
        (o.lookup && lm_batch_scheduler_lookup(&sched, o.draft_max) != 0))
        goto done;
    lm_server_set_ready(srv, &prompts);
    fprintf(stderr, "lamina serve: ready: %d slots of %d tokens, queue %d, model \"%s\"%s%s\n",
            n_seq, seq_ctx, o.queue, cfg.model_name, o.lookup ? ", prompt lookup" : "",
            prompts.chat_format < 0 ? " (no chat template: chat requests are refused)" : "");
    stop_context stopping = {.srv = srv, .drain_seconds = o.drain_seconds};
    lm_engine_loop loop = {
        .jobs = lm_server_jobs(srv), .sched = &sched, .stop = &stop_requested,
        .drain_seconds = o.drain_seconds, .verbose = !o.quiet, .on_stop = stop_listening,
        .on_stop_arg = &stopping,
    };
    if (lm_engine_loop_run(&loop) != 0)
        goto done;
    rc = 0;
done:
    if (rc)
        lm_cli_fail();
    if (srv)
        lm_server_stop(srv, 2.0);
    if (rc == 0)
        fprintf(stderr, "lamina serve: stopped\n");
    lm_batch_scheduler_free(&sched);
    lm_prompt_maker_free(&prompts);
    lm_session_free(s);
    lm_model_free(m);
    free(key);
    return rc;
}
