/* lamina info: what a model file holds. */
#include <stdio.h>

#include "cli.h"
#include "error.h"
#include "quant.h"

static void print_type_summary(const lm_model *m)
{
    uint64_t count[LM_TYPE_COUNT] = {0}, bytes[LM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < lm_gguf_n_tensors(m->gguf); i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(m->gguf, i);
        count[t->type]++;
        bytes[t->type] += t->nbytes;
    }
    printf("tensor types:\n");
    for (int ty = 0; ty < LM_TYPE_COUNT; ty++)
        if (count[ty])
            printf("  %-6s %5llu tensors  %10.2f MiB\n", lm_type_name((uint32_t)ty),
                   (unsigned long long)count[ty], (double)bytes[ty] / (1024.0 * 1024.0));
}

int lm_cmd_info(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "info", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    o.quiet = true;
    lm_model *m = lm_cli_load_model(&o);
    if (!m)
        return lm_cli_fail();
    const lm_hparams *hp = &m->hp;
    lm_gguf_str name = {"", 0};
    lm_gguf_get_str(m->gguf, "general.name", &name);
    printf("file:           %s (GGUF v%u, %.2f MiB)\n", o.model, lm_gguf_version(m->gguf),
           (double)lm_gguf_file_size(m->gguf) / (1024.0 * 1024.0));
    char shown[256];
    printf("name:           %s\n", lm_printable(name.data, (size_t)name.len, shown, sizeof shown));
    printf("architecture:   %s\n", hp->arch_name);
    printf("layers:         %u\n", hp->n_layer);
    printf("embedding:      %u\n", hp->n_embd);
    printf("feed-forward:   %u\n", hp->n_ff);
    printf("heads:          %u (kv %u, head size %u)\n", hp->n_head, hp->n_head_kv, hp->head_dim);
    printf("vocabulary:     %u\n", hp->n_vocab);
    printf("context:        %u (trained)\n", hp->n_ctx_train);
    printf("rope:           base %g, %u dims, %s\n", hp->rope_base, hp->n_rot,
           hp->rope_neox ? "neox" : "normal");
    printf("rms norm eps:   %g\n", hp->norm_eps);
    printf("output head:    %s\n", hp->tied_embeddings ? "tied to token_embd" : "output.weight");
    printf("bytes/token:    %.2f MiB of weights read per decoded token\n",
           (double)lm_model_bytes_per_token(m) / (1024.0 * 1024.0));
    print_type_summary(m);
    lm_model_free(m);
    return 0;
}
