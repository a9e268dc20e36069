/* lamina perplexity: as llama-perplexity computes it.  The text is cut into
 * windows of n_ctx tokens; each window is evaluated from scratch (its first
 * token replaced by BOS when the model adds one), and only the second half
 * of each window is scored, so every scored token sees at least n_ctx/2
 * tokens of context. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "session.h"

/* -log p(target) from one row of logits, in double. */
static double negative_log_likelihood(const float *logits, int n_vocab, int32_t target)
{
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > max)
            max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - max);
    return (double)max + log(sum) - (double)logits[target];
}

static int score_windows(lm_session *s, const lm_model *m, const int32_t *ids, int n_windows,
                         int n_ctx, bool quiet, double *nll, int *count)
{
    const int n_vocab = (int)m->hp.n_vocab;
    const bool add_bos = lm_tokenizer_add_bos(m->tokenizer);
    int32_t *window = malloc((size_t)n_ctx * sizeof *window);
    float *logits = malloc((size_t)n_ctx * n_vocab * sizeof(float));
    if (!window || !logits) {
        free(window);
        free(logits);
        lm_set_error("out of memory for a window of %d tokens", n_ctx);
        return -1;
    }
    int rc = 0;
    for (int w = 0; w < n_windows && rc == 0; w++) {
        memcpy(window, ids + (size_t)w * n_ctx, (size_t)n_ctx * sizeof *window);
        if (add_bos)
            window[0] = lm_tokenizer_bos(m->tokenizer);
        lm_session_rewind(s, 0);
        rc = lm_session_eval(s, window, n_ctx, true, logits);
        for (int i = n_ctx / 2; rc == 0 && i < n_ctx - 1; i++) {
            *nll += negative_log_likelihood(logits + (size_t)i * n_vocab, n_vocab, window[i + 1]);
            (*count)++;
        }
        if (rc == 0 && !quiet)
            fprintf(stderr, "[%d]%.4f%s", w + 1, exp(*nll / *count), w + 1 < n_windows ? "," : "\n");
    }
    free(window);
    free(logits);
    return rc;
}

int lm_cmd_perplexity(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "perplexity", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (!o.file) {
        fprintf(stderr, "lamina perplexity: no text file given (use -f FILE)\n");
        return 1;
    }
    const int n_ctx = o.n_ctx > 0 ? o.n_ctx : 512;
    if (n_ctx < 4) {
        fprintf(stderr, "lamina perplexity: -c must be at least 4\n");
        return 1;
    }
    lm_model *m = lm_cli_load_model(&o);
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, len = 0;
    lm_session *s = NULL;
    rc = 1;
    if (!m || !(text = lm_read_file(o.file, &len)) ||
        /* as llama-perplexity: with BOS where the model adds one (the windows
         * start one token later than without) */
        lm_tokenize(m->tokenizer, text, len, true, false, &ids, &n_ids) != 0)
        goto done;
    int n_windows = (int)(n_ids / (size_t)n_ctx);
    if (o.n_chunks > 0 && o.n_chunks < n_windows)
        n_windows = o.n_chunks;
    if (n_windows < 1) {
        lm_set_error("%s: %zu tokens, fewer than one window of %d (use a smaller -c)", o.file,
                     n_ids, n_ctx);
        goto done;
    }
    if (!o.quiet)
        fprintf(stderr, "lamina: %zu tokens, %d windows of %d\n", n_ids, n_windows, n_ctx);
    if (!(s = lm_cli_session(&o, m, n_ctx, o.n_batch < n_ctx ? o.n_batch : n_ctx)))
        goto done;
    double nll = 0.0;
    int count = 0;
    if (score_windows(s, m, ids, n_windows, n_ctx, o.quiet, &nll, &count) != 0)
        goto done;
    printf("perplexity: %.4f\n", exp(nll / count));
    rc = 0;
done:
    if (rc)
        lm_cli_fail();
    lm_session_free(s);
    free(ids);
    free(text);
    lm_model_free(m);
    return rc;
}
