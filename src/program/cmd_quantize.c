/* lamina quantize IN.gguf OUT.gguf TYPE: the options, the notes, the
 * summary (the work is src/convert/quantize.c). */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "quant.h"
#include "quant_auto.h"
#include "quantize.h"

static void print_summary(const lm_quantize_params *p, const lm_quantize_stats *st)
{
    const double mib = 1024.0 * 1024.0;
    fprintf(stderr, "quantize: %s -> %s (%s): %.1f MiB -> %.1f MiB, %.2f bits per weight, "
                    "%.1f s\n",
            p->in, p->out, p->target.name, (double)st->in_bytes / mib,
            (double)st->out_bytes / mib,
            st->n_params ? 8.0 * (double)st->out_bytes / (double)st->n_params : 0.0,
            st->seconds);
    char types[256] = "";
    for (int t = 0; t < LM_TYPE_COUNT; t++)
        if (st->type_count[t])
            snprintf(types + strlen(types), sizeof types - strlen(types), "%s%s %u",
                     types[0] ? ", " : "", lm_type_name((uint32_t)t), st->type_count[t]);
    fprintf(stderr, "quantize: %u tensors: %s; %u converted", st->n_tensors, types,
            st->n_converted);
    if (st->n_fallback) {
        fprintf(stderr, ", %u at a neighbour type (widths the type cannot take:", st->n_fallback);
        const char *sep = " ";
        for (int w = 0; w < LM_TYPE_COUNT; w++)
            for (int t = 0; t < LM_TYPE_COUNT; t++)
                if (st->fallback[w][t]) {
                    fprintf(stderr, "%s%u %s for %s", sep, st->fallback[w][t],
                            lm_type_name((uint32_t)t), lm_type_name((uint32_t)w));
                    sep = ", ";
                }
        fputc(')', stderr);
    }
    fputc('\n', stderr);
}

int lm_cmd_quantize(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "quantize", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (o.n_positional != (o.auto_type ? 2 : 3)) {
        fprintf(stderr, "lamina quantize: expected IN.gguf OUT.gguf %s (see lamina quantize "
                        "--help)\n",
                o.auto_type ? "and --auto, not a TYPE too" : "TYPE, or --auto");
        return 1;
    }
    lm_quantize_params p = {.in = o.positional[0], .out = o.positional[1], .pure = o.pure,
                            .quiet = o.quiet};
    if (o.auto_type) {
        lm_quant_auto a;
        if (lm_quant_auto_choose(p.in, o.ram_budget, o.n_ctx, o.n_batch, o.pure, &a) != 0) {
            fprintf(stderr, "lamina quantize: %s\n", lm_last_error());
            return 1;
        }
        lm_quant_auto_print(&a, stderr);
        p.target = a.cand[a.chosen].target;
    } else if (lm_quant_target_parse(o.positional[2], &p.target) != 0) {
        fprintf(stderr, "lamina quantize: %s\n", lm_last_error());
        return 1;
    }
    if (o.n_threads > 0)
        omp_set_num_threads(o.n_threads);
    lm_quantize_stats st;
    if (lm_quantize_file(&p, &st) != 0) {
        fprintf(stderr, "lamina quantize: %s\n", lm_last_error());
        return 1;
    }
    if (st.n_requantized)
        fprintf(stderr, "lamina quantize: note: %u tensors were already quantized and were "
                        "requantized, which loses more than quantizing from F16, BF16 or F32\n",
                st.n_requantized);
    if (!o.quiet)
        print_summary(&p, &st);
    printf("%s\n", p.out);
    return 0;
}
