/* lamina bench: prompt and decode speed, and the weight bandwidth decoding
 * reached, printed next to the RAM bandwidth measured in the same run (the
 * physical limit of decoding from RAM). */
#include <stdio.h>
#include <omp.h>
#include <stdlib.h>

#include "cli.h"
#include "kernels.h"
#include "error.h"
#include "expert_cache.h"
#include "json_out.h"
#include "membw.h"
#include "session.h"
#include "streamer.h"

typedef struct {
    double prompt_tps, decode_tps;
    /* decoding, per token, in ms: the streamer's I/O thread (reads, copies to
     * the device) and the compute thread's work (its time less its waits) */
    double read_ms, copy_ms, compute_ms, token_ms;
    /* decoding, per pass: bytes read from disk (layers and experts), and
     * for a mixture of experts' layers read without them, the experts they
     * used (per layer) and the share found in the expert cache */
    double read_bytes, experts, hit_rate;
    double dev_hit_rate, dev_copy_bytes; /* the device's expert cache, per pass */
} bench_result;

static lm_streamer_stats streamer_stats(const lm_session *s)
{
    lm_streamer_stats none = {0};
    return s->streamer ? lm_streamer_get_stats(s->streamer) : none;
}

static lm_expert_cache_stats expert_stats(const lm_session *s)
{
    lm_expert_cache_stats none = {0};
    return s->experts ? lm_expert_cache_get_stats(s->experts) : none;
}

static lm_backend_expert_stats device_expert_stats(const lm_session *s)
{
    lm_backend_expert_stats none = {0};
    return s->device && s->device->ops->expert_stats ? s->device->ops->expert_stats(s->device)
                                                     : none;
}

/* Layers whose experts come through the expert cache. */
static int layers_apart(const lm_session *s)
{
    int n = 0;
    for (int il = 0; s->experts && il < s->plan.n_layer; il++)
        n += lm_plan_layer_experts_apart(s->model, &s->plan, il);
    return n;
}

/* One repetition: a fresh cache, the prompt in one pass, then n_gen tokens
 * one at a time (the same token ids as llamacpp-ref.py's bench; for a
 * mixture of experts a new token each step).  With
 * --parallel B, every sequence starts from a copy of the first's prompt and
 * each decode pass carries one token of each: decode_tps is then the
 * aggregate of the B sequences. */
static int bench_once(lm_session *s, const lm_model *m, int n_prompt, int n_gen,
                      bench_result *r)
{
    const int n_seq = s->n_seq;
    int32_t tokens[4096];
    int seq[4096];
    bool want[4096];
    for (int i = 0; i < n_seq; i++) {
        tokens[i] = 1000 % (int32_t)m->hp.n_vocab;
        seq[i] = i;
        want[i] = true; /* every sequence's logits, as a real decode needs */
    }
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    float *logits = malloc((size_t)n_seq * m->hp.n_vocab * sizeof *logits);
    if (!prompt || !logits) {
        free(prompt);
        free(logits);
        lm_set_error("out of memory");
        return -1;
    }
    int32_t bos = lm_tokenizer_bos(m->tokenizer);
    for (int i = 0; i < n_prompt; i++)
        prompt[i] = (1000 + (i - 1) * 7 % 5000) % (int32_t)m->hp.n_vocab;
    prompt[0] = bos >= 0 ? bos : 0;
    for (int i = 0; i < n_seq; i++)
        lm_session_seq_rm(s, i, 0);
    const double t0 = lm_now_seconds();
    int rc = lm_session_eval(s, prompt, n_prompt, false, NULL);
    r->prompt_tps = n_prompt / (lm_now_seconds() - t0);
    for (int i = 1; rc == 0 && i < n_seq; i++)
        rc = lm_session_seq_copy(s, 0, i, -1);
    const lm_streamer_stats before = streamer_stats(s);
    const lm_expert_cache_stats ex_before = expert_stats(s);
    const lm_backend_expert_stats dev_before = device_expert_stats(s);
    const double t1 = lm_now_seconds();
    for (int i = 0; rc == 0 && i < n_gen; i++) {
        rc = lm_session_decode(s, n_seq, tokens, seq, want, logits);
        /* a mixture of experts: a new token each step, as llama-bench does
         * (the same one over and over would route to the same experts); a
         * dense model's work does not depend on it */
        for (int j = 0; m->hp.n_expert && j < n_seq; j++)
            tokens[j] = (int32_t)((1000 + (uint64_t)(i + 1) * 7919 + (uint64_t)j * 104729) %
                                  m->hp.n_vocab);
    }
    const double t2 = lm_now_seconds();
    const lm_streamer_stats after = streamer_stats(s);
    const lm_expert_cache_stats ex_after = expert_stats(s);
    const lm_backend_expert_stats dev_after = device_expert_stats(s);
    free(prompt);
    free(logits);
    r->decode_tps = n_gen > 0 ? (double)n_gen * n_seq / (t2 - t1) : 0.0;
    const double per = n_gen > 0 ? 1e3 / n_gen : 0.0;
    r->token_ms = (t2 - t1) * per;
    r->read_ms = (after.read_seconds - before.read_seconds) * per;
    r->copy_ms = (after.upload_seconds - before.upload_seconds) * per;
    r->compute_ms = r->token_ms - (after.wait_seconds - before.wait_seconds) * per;
    /* the experts' reads run on their own thread: their time is I/O too */
    r->read_ms += (ex_after.read_seconds - ex_before.read_seconds) * per;
    r->compute_ms -= (ex_after.wait_seconds - ex_before.wait_seconds) * per;
    r->read_bytes = (double)(after.bytes_read - before.bytes_read +
                             ex_after.bytes_read - ex_before.bytes_read) * per / 1e3;
    const double wanted = (double)(ex_after.wanted - ex_before.wanted);
    const int apart = layers_apart(s);
    r->experts = apart && n_gen ? wanted / n_gen / apart : 0.0;
    r->hit_rate = wanted > 0 ? (double)(ex_after.hits - ex_before.hits) / wanted : 0.0;
    /* (a device that failed mid-run leaves the CPU: no figures after) */
    const double dev_wanted = dev_after.wanted >= dev_before.wanted
                                  ? (double)(dev_after.wanted - dev_before.wanted)
                                  : 0.0;
    r->dev_hit_rate = dev_wanted > 0 ? (double)(dev_after.hits - dev_before.hits) / dev_wanted : 0.0;
    r->dev_copy_bytes = (double)(dev_after.bytes_uploaded - dev_before.bytes_uploaded) * per / 1e3;
    return rc;
}

int lm_cmd_bench(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "bench", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    int n_prompt = 128, n_gen = o.n_predict == LM_CLI_UNSET ? 64 : o.n_predict;
    if (o.prompt && lm_cli_int("-p", o.prompt, 1, 1 << 20, &n_prompt) != 0)
        return lm_cli_fail();
    if (n_gen < 0) {
        fprintf(stderr, "lamina bench: -n must be 0 or more\n");
        return 1;
    }
    o.quiet = o.quiet || o.json;
    lm_model *m = lm_cli_load_model(&o);
    if (!m)
        return lm_cli_fail();
    if (o.draft || o.lookup) {
        rc = lm_bench_spec(&o, m, o.n_predict == LM_CLI_UNSET ? 128 : n_gen);
        lm_model_free(m);
        return rc ? lm_cli_fail() : 0;
    }
    if (o.n_parallel > 4096 || o.n_parallel > o.n_batch) {
        fprintf(stderr, "lamina bench: --parallel %d needs -b of at least as many rows (at most "
                "4096)\n", o.n_parallel);
        lm_model_free(m);
        return 1;
    }
    /* every sequence holds the prompt and its generated tokens */
    lm_session *s = lm_cli_session(&o, m, (n_prompt + n_gen + 1) * o.n_parallel, o.n_batch);
    if (!s) {
        lm_model_free(m);
        return lm_cli_fail();
    }
    bench_result best = {0};
    for (int r = 0; r < o.repetitions; r++) {
        bench_result cur;
        if (bench_once(s, m, n_prompt, n_gen, &cur) != 0) {
            lm_session_free(s);
            lm_model_free(m);
            return lm_cli_fail();
        }
        if (cur.prompt_tps > best.prompt_tps)
            best.prompt_tps = cur.prompt_tps;
        if (cur.decode_tps > best.decode_tps) {
            const double prompt_tps = best.prompt_tps;
            best = cur; /* the overlap figures of the fastest decode */
            best.prompt_tps = prompt_tps;
        }
    }
    const double rss = (double)lm_peak_rss_bytes(); /* before the RAM probe's buffer */
    const double ram_bw = lm_ram_read_bandwidth(NULL);
    const double bytes_per_token = (double)lm_model_bytes_per_token(m);
    /* a pass reads the weights once for all the sequences in it */
    const double passes_per_s = best.decode_tps / s->n_seq;
    const double weight_bw = passes_per_s * bytes_per_token;
    const double share = ram_bw > 0 ? 100.0 * weight_bw / ram_bw : 0.0;
    const int threads = omp_get_max_threads();
    const char *backend = lm_session_backend_name(s);
    const double dev_peak = (double)lm_session_device_peak(s);
    const lm_plan *plan = s->plan.place ? &s->plan : NULL;
    const uint64_t streamed = lm_session_disk_bytes(s);
    const uint64_t to_device = lm_session_device_streamed_bytes(s);
    const double disk_rate = passes_per_s * (double)streamed;
    const double disk_bw = plan ? plan->probes.disk_bw : 0.0;
    const double predicted = !plan              ? 0.0
                             : s->n_seq > 1 ? plan->batch_tokens_per_s
                                            : plan->tokens_per_s;
    if (o.json) {
        json_t *obj = json_pack(
            "{s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, "
            "s:f, s:I, s:f, s:f, s:f, s:f, s:I}",
            "model", o.model, "backend", backend, "threads", threads, "parallel", s->n_seq,
            "n_prompt", n_prompt, "n_gen", n_gen, "prompt_tokens_per_s", best.prompt_tps,
            "decode_tokens_per_s", best.decode_tps, "decode_weight_bytes_per_token",
            (json_int_t)bytes_per_token, "decode_weight_bytes_per_s", (json_int_t)weight_bw,
            "ram_bandwidth_bytes_per_s", (json_int_t)ram_bw, "decode_share_of_ram_bandwidth",
            share / 100.0, "device_peak_bytes", (json_int_t)dev_peak, "streamed_bytes_per_token",
            (json_int_t)streamed, "disk_read_bytes_per_s", (json_int_t)disk_rate,
            "disk_bandwidth_bytes_per_s", (json_int_t)disk_bw, "predicted_decode_tokens_per_s",
            predicted, "peak_rss_bytes", (json_int_t)rss, "decode_ms_per_token", best.token_ms,
            "decode_compute_ms_per_token", best.compute_ms, "decode_read_ms_per_token",
            best.read_ms, "decode_copy_ms_per_token", best.copy_ms,
            "streamed_to_device_bytes_per_token", (json_int_t)to_device);
        if (obj) {
            json_object_set_new(obj, "cpu_path", json_string(lm_cpu_path_name(lm_cpu_active_path())));
            json_object_set_new(obj, "read_bytes_per_token", json_integer((json_int_t)best.read_bytes));
            json_object_set_new(obj, "dense_read_bytes_per_token", json_integer((json_int_t)streamed));
        }
        if (obj && s->plan.device_experts_apart) {
            json_object_set_new(obj, "device_expert_cache_hit_rate", json_real(best.dev_hit_rate));
            json_object_set_new(obj, "device_expert_copy_bytes_per_token",
                                json_integer((json_int_t)best.dev_copy_bytes));
            json_object_set_new(obj, "device_expert_cache_bytes",
                                json_integer((json_int_t)s->plan.device_expert_cache_bytes));
            json_object_set_new(obj, "device_expert_cache_experts",
                                json_integer((json_int_t)(s->plan.device_expert_cache_bytes /
                                                          s->plan.expert_slot_bytes)));
        }
        if (obj && s->experts) {
            json_object_set_new(obj, "experts_per_token", json_real(best.experts));
            json_object_set_new(obj, "expert_cache_hit_rate", json_real(best.hit_rate));
            json_object_set_new(obj, "expert_cache_bytes",
                                json_integer((json_int_t)s->plan.expert_cache_bytes));
        }
        if (lm_json_write(obj, stdout) != 0)
            rc = lm_cli_fail();
    } else {
        char path[256];
        lm_cpu_path_describe(path, sizeof path);
        printf("backend %s, %d threads, best of %d; cpu kernels %s\n", backend, threads,
               o.repetitions, path);
        printf("prompt: %d tokens: %.2f tokens/s\n", n_prompt, best.prompt_tps);
        if (s->n_seq > 1)
            printf("decode: %d sequences x %d tokens: %.2f tokens/s in all (%.2f passes/s, "
                   "%.2f tokens/s each)\n", s->n_seq, n_gen, best.decode_tps, passes_per_s,
                   passes_per_s);
        else
            printf("decode: %d tokens: %.2f tokens/s\n", n_gen, best.decode_tps);
        printf("decode reads %.2f MiB of weights per pass: %.2f GB/s = %.0f%% of measured RAM "
               "bandwidth (%.2f GB/s)\n",
               bytes_per_token / (1024.0 * 1024.0), weight_bw / 1e9, share, ram_bw / 1e9);
        if (s->plan.device_experts_apart)
            printf("device experts: %.0f%% found in the device's expert cache (%.1f MiB), "
                   "%.2f MiB copied to it per pass\n",
                   100.0 * best.dev_hit_rate,
                   (double)s->plan.device_expert_cache_bytes / (1024.0 * 1024.0),
                   best.dev_copy_bytes / (1024.0 * 1024.0));
        if (s->experts) {
            printf("decode reads %.2f MiB per pass from disk (measured), against %.2f MiB "
                   "reading every expert (%.1fx fewer): %.2f GB/s = %.0f%% of the measured "
                   "uncached disk bandwidth (%.2f GB/s)\n",
                   best.read_bytes / (1024.0 * 1024.0), (double)streamed / (1024.0 * 1024.0),
                   best.read_bytes > 0 ? (double)streamed / best.read_bytes : 0.0,
                   passes_per_s * best.read_bytes / 1e9,
                   disk_bw > 0 ? 100.0 * passes_per_s * best.read_bytes / disk_bw : 0.0,
                   disk_bw / 1e9);
            printf("experts: %.2f of %u per pass and layer, %.0f%% found in the expert cache "
                   "(%.1f MiB, %d experts)\n",
                   best.experts, m->hp.n_expert, 100.0 * best.hit_rate,
                   (double)s->plan.expert_cache_bytes / (1024.0 * 1024.0),
                   lm_expert_cache_slots(s->experts));
        } else if (streamed)
            printf("decode streams %.2f MiB per pass from disk: %.2f GB/s = %.0f%% of the "
                   "measured uncached disk bandwidth (%.2f GB/s)\n",
                   (double)streamed / (1024.0 * 1024.0), disk_rate / 1e9,
                   disk_bw > 0 ? 100.0 * disk_rate / disk_bw : 0.0, disk_bw / 1e9);
        if (to_device)
            printf("decode copies %.2f MiB per token to the device: %.2f GB/s, the probe's "
                   "host->device rate %.2f GB/s\n",
                   (double)to_device / (1024.0 * 1024.0),
                   best.copy_ms > 0 ? (double)to_device / (best.copy_ms * 1e-3) / 1e9 : 0.0,
                   plan && plan->has_device ? plan->dev.h2d_bw / 1e9 : 0.0);
        if (s->streamer || s->experts) {
            /* the I/O thread's time against the compute thread's: with
             * prefetch a token takes the longer of the two, without the sum */
            const double io = best.read_ms + best.copy_ms;
            const double longer = io > best.compute_ms ? io : best.compute_ms;
            printf("overlap (decode, per token): %.2f ms; I/O thread %.2f ms (reads %.2f, copies "
                   "to the device %.2f), compute %.2f ms; time / max(I/O, compute) = %.2f, "
                   "time / (I/O + compute) = %.2f%s\n",
                   best.token_ms, io, best.read_ms, best.copy_ms, best.compute_ms,
                   longer > 0 ? best.token_ms / longer : 0.0,
                   io + best.compute_ms > 0 ? best.token_ms / (io + best.compute_ms) : 0.0,
                   o.no_prefetch ? " (--no-prefetch)" : "");
        }
        if (predicted > 0)
            printf("the plan predicted %.2f tokens/s decode: measured/predicted = %.2f\n",
                   predicted, best.decode_tps / predicted);
        if (dev_peak > 0)
            printf("peak device memory: %.1f MiB\n", dev_peak / (1024.0 * 1024.0));
        printf("peak RSS: %.1f MiB\n", rss / (1024.0 * 1024.0));
    }
    lm_cli_print_profile(&o, s, stderr);
    lm_session_free(s);
    lm_model_free(m);
    return rc;
}
