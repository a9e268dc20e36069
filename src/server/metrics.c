/* GET /metrics: the server's counters in Prometheus' text format. */
#define _GNU_SOURCE /* open_memstream */
#include <stdio.h>
#include <stdlib.h>

#include "server_internal.h"
#include "timing.h"

enum MHD_Result lm_serve_metrics(lm_request *r)
{
    lm_jobs *j = &r->srv->jobs;
    pthread_mutex_lock(&j->lock);
    const lm_server_counters c = j->count;
    const int queued = j->q_len, busy = j->busy_slots, slots = j->n_slots;
    const bool ready = j->ready;
    pthread_mutex_unlock(&j->lock);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return MHD_NO;
#define METRIC(name, type, help, fmt, value)                                          \
    fprintf(f, "# HELP lamina_" name " " help "\n# TYPE lamina_" name " " type "\n"   \
               "lamina_" name " " fmt "\n", value)
    METRIC("requests_total", "counter", "Completion requests answered with 200.", "%llu",
           (unsigned long long)c.requests);
    METRIC("requests_rejected_total", "counter",
           "Requests refused before reaching the engine (4xx, 503).", "%llu",
           (unsigned long long)c.rejected);
    METRIC("requests_failed_total", "counter",
           "Requests ended by an engine error, a client that went away, or shutdown.", "%llu",
           (unsigned long long)c.failed);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens of finished requests.", "%llu",
           (unsigned long long)c.prompt_tokens);
    METRIC("tokens_generated_total", "counter", "Tokens generated for finished requests.",
           "%llu", (unsigned long long)c.completion_tokens);
    METRIC("tokens_per_second", "gauge",
           "Generated tokens per second of engine time with work (all sequences together).",
           "%.3f", c.busy_seconds > 0 ? (double)c.completion_tokens / c.busy_seconds : 0.0);
    METRIC("busy_seconds_total", "counter", "Engine time with at least one sequence.", "%.3f",
           c.busy_seconds);
    METRIC("time_to_first_token_seconds_avg", "gauge",
           "Mean time from a request's arrival to its first text.", "%.4f",
           c.ttft_count > 0 ? c.ttft_seconds / (double)c.ttft_count : 0.0);
    METRIC("lookup_proposed_total", "counter",
           "Tokens proposed by prompt lookup (--lookup) and checked.", "%llu",
           (unsigned long long)c.spec_proposed);
    METRIC("lookup_accepted_total", "counter", "Proposed tokens the model agreed with.", "%llu",
           (unsigned long long)c.spec_accepted);
    METRIC("queue_length", "gauge", "Requests waiting for a slot.", "%d", queued);
    METRIC("slots_busy", "gauge", "Slots (sequences) serving a request.", "%d", busy);
    METRIC("slots_total", "gauge", "Slots (--parallel).", "%d", slots);
    METRIC("ready", "gauge", "1 once the model is loaded.", "%d", ready ? 1 : 0);
    METRIC("uptime_seconds", "counter", "Seconds since the server started.", "%.1f",
           lm_now_seconds() - r->srv->started);
#undef METRIC
    if (fclose(f) != 0) {
        free(text);
        return MHD_NO;
    }
    const enum MHD_Result rc =
        lm_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return rc;
}
