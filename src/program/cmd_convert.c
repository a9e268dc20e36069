/* lamina convert HF_DIR OUT.gguf: the options and the summary (the work is
 * src/convert/convert.c). */
#include <omp.h>
#include <stdio.h>

#include "cli.h"
#include "convert.h"
#include "error.h"

int lm_cmd_convert(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "convert", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (o.n_positional != 2) {
        fprintf(stderr, "lamina convert: expected HF_DIR OUT.gguf (see lamina convert --help)\n");
        return 1;
    }
    if (o.auto_type && o.type) {
        fprintf(stderr, "lamina convert: --type or --auto, not both\n");
        return 1;
    }
    lm_convert_params p = {.dir = o.positional[0], .out = o.positional[1], .quiet = o.quiet,
                           .auto_type = o.auto_type, .ram_budget = o.ram_budget,
                           .n_ctx = o.n_ctx, .n_batch = o.n_batch};
    if (lm_quant_target_parse(o.type ? o.type : "F16", &p.target) != 0) {
        fprintf(stderr, "lamina convert: %s\n", lm_last_error());
        return 1;
    }
    if (o.n_threads > 0)
        omp_set_num_threads(o.n_threads);
    lm_convert_stats st;
    if (lm_convert_hf(&p, &st) != 0) {
        fprintf(stderr, "lamina convert: %s\n", lm_last_error());
        return 1;
    }
    if (!o.quiet)
        fprintf(stderr, "convert: %s -> %s (%s): %u tensors from %u file(s), %.1f MiB -> %.1f MiB, "
                        "%.1f s\n",
                p.dir, p.out, st.type, st.n_tensors, st.n_files,
                (double)st.in_bytes / (1024.0 * 1024.0), (double)st.out_bytes / (1024.0 * 1024.0),
                st.seconds);
    printf("%s\n", p.out);
    return 0;
}
