/* lamina info: what a model file holds, whether or not lamina runs it.  Any
 * well-formed GGUF is described from its metadata; a model lamina runs also
 * gets what loading it found (head size, RoPE, windows, bytes per token),
 * and one it does not gets the reason. */
#include <stdio.h>
#include <string.h>

#include "arch.h"
#include "cli.h"
#include "error.h"
#include "quant.h"
#include "safetensors.h"

static void print_type_summary(const lm_gguf *g)
{
    uint64_t count[LM_TYPE_COUNT] = {0}, bytes[LM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
        count[t->type]++;
        bytes[t->type] += t->nbytes;
    }
    printf("tensor types:\n");
    for (int ty = 0; ty < LM_TYPE_COUNT; ty++)
        if (count[ty])
            printf("  %-6s %5llu tensors  %10.2f MiB\n", lm_type_name((uint32_t)ty),
                   (unsigned long long)count[ty], (double)bytes[ty] / (1024.0 * 1024.0));
}

/* "ARCH.suffix" as a number, or "?" when the file has no such key. */
static const char *arch_u32(const lm_gguf *g, const char *arch, const char *suffix, char *buf,
                            size_t size)
{
    char key[160];
    uint32_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (lm_gguf_get_u32(g, key, &v) != 0)
        return "?";
    snprintf(buf, size, "%u", v);
    return buf;
}

/* What the metadata says of a model lamina cannot load. */
static void print_metadata_only(const lm_gguf *g, const char *arch)
{
    char a[16], b[16], c[16];
    printf("layers:         %s\n", arch_u32(g, arch, "block_count", a, sizeof a));
    printf("embedding:      %s\n", arch_u32(g, arch, "embedding_length", a, sizeof a));
    printf("feed-forward:   %s\n", arch_u32(g, arch, "feed_forward_length", a, sizeof a));
    printf("heads:          %s (kv %s, head size %s)\n",
           arch_u32(g, arch, "attention.head_count", a, sizeof a),
           arch_u32(g, arch, "attention.head_count_kv", b, sizeof b),
           arch_u32(g, arch, "attention.key_length", c, sizeof c));
    printf("context:        %s (trained)\n", arch_u32(g, arch, "context_length", a, sizeof a));
    printf("experts:        %s (used %s)\n", arch_u32(g, arch, "expert_count", a, sizeof a),
           arch_u32(g, arch, "expert_used_count", b, sizeof b));
    printf("tensors:        %llu\n", (unsigned long long)lm_gguf_n_tensors(g));
}

static void print_model(const lm_model *m)
{
    const lm_hparams *hp = &m->hp;
    printf("layers:         %u\n", hp->n_layer);
    printf("embedding:      %u\n", hp->n_embd);
    printf("feed-forward:   %u\n", hp->n_ff);
    printf("heads:          %u (kv %u, head size %u)\n", hp->n_head, hp->n_head_kv, hp->head_dim);
    printf("vocabulary:     %u\n", hp->n_vocab);
    printf("context:        %u (trained)\n", hp->n_ctx_train);
    printf("rope:           base %g, %u dims, %s\n", hp->rope_base, hp->n_rot,
           hp->rope_neox ? "neox" : "normal");
    if (hp->n_swa > 0)
        printf("sliding window: %u positions on %u of every %u layers (RoPE base %g)\n",
               hp->n_swa, hp->swa_period - 1, hp->swa_period, hp->rope_base_swa);
    if (hp->n_expert > 0)
        printf("experts:        %u (%u used per token, feed-forward %u each)\n", hp->n_expert,
               hp->n_expert_used, hp->n_ff_exp);
    if (hp->n_ff_shexp > 0)
        printf("shared expert:  feed-forward %u, every token\n", hp->n_ff_shexp);
    printf("rms norm eps:   %g\n", hp->norm_eps);
    printf("output head:    %s\n", hp->tied_embeddings ? "tied to token_embd" : "output.weight");
    printf("bytes/token:    %.2f MiB of weights read per decoded token\n",
           (double)lm_model_bytes_per_token(m) / (1024.0 * 1024.0));
}

/* A Hugging Face safetensors file: its tensors by dtype, and the largest. */
static int info_safetensors(const char *path)
{
    lm_safetensors *st = lm_st_open(path);
    if (!st)
        return lm_cli_fail();
    uint64_t count[LM_ST_NDTYPES] = {0}, bytes[LM_ST_NDTYPES] = {0}, params = 0;
    const lm_st_tensor *largest = NULL;
    for (uint64_t i = 0; i < lm_st_n_tensors(st); i++) {
        const lm_st_tensor *t = lm_st_tensor_at(st, i);
        count[t->dtype]++;
        bytes[t->dtype] += t->nbytes;
        params += t->n_elements;
        if (!largest || t->nbytes > largest->nbytes)
            largest = t;
    }
    const char *format = lm_st_metadata(st, "format");
    char shown[80];
    printf("file:           %s (safetensors, %.2f MiB)\n", path,
           (double)lm_st_file_size(st) / (1024.0 * 1024.0));
    if (format)
        printf("format:         %s\n", lm_printable(format, strlen(format), shown, sizeof shown));
    printf("tensors:        %llu, %.3f billion values\n", (unsigned long long)lm_st_n_tensors(st),
           (double)params / 1e9);
    if (largest) {
        printf("largest:        %s [", lm_printable(largest->name, strlen(largest->name), shown,
                                                    sizeof shown));
        for (uint32_t d = 0; d < largest->n_dims; d++)
            printf("%s%llu", d ? ", " : "", (unsigned long long)largest->shape[d]);
        printf("] %s\n", lm_st_dtype_name(largest->dtype));
    }
    printf("lamina runs it: no: lamina runs GGUF files; convert the checkpoint first "
           "(llama.cpp's convert_hf_to_gguf.py)\n");
    printf("tensor dtypes:\n");
    for (int d = 0; d < LM_ST_NDTYPES; d++)
        if (count[d])
            printf("  %-7s %5llu tensors  %10.2f MiB\n", lm_st_dtype_name((lm_st_dtype)d),
                   (unsigned long long)count[d], (double)bytes[d] / (1024.0 * 1024.0));
    lm_st_close(st);
    return 0;
}

static bool ends_with(const char *s, const char *tail)
{
    const size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

int lm_cmd_info(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "info", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (!o.model) {
        lm_set_error("no model given (use -m MODEL.gguf)");
        return lm_cli_fail();
    }
    if (ends_with(o.model, ".safetensors"))
        return info_safetensors(o.model);
    lm_gguf *g = lm_gguf_open(o.model);
    if (!g)
        return lm_cli_fail();
    lm_gguf_str name = {"", 0}, arch = {"", 0};
    lm_gguf_get_str(g, "general.name", &name);
    lm_gguf_get_str(g, "general.architecture", &arch);
    char shown_name[256], shown_arch[80];
    lm_printable(arch.data, (size_t)arch.len, shown_arch, sizeof shown_arch);
    printf("file:           %s (GGUF v%u, %.2f MiB)\n", o.model, lm_gguf_version(g),
           (double)lm_gguf_file_size(g) / (1024.0 * 1024.0));
    printf("name:           %s\n", lm_printable(name.data, (size_t)name.len, shown_name,
                                                sizeof shown_name));
    printf("architecture:   %s\n", arch.len ? shown_arch : "(none given)");
    lm_model *m = lm_model_load(o.model);
    if (m) {
        print_model(m);
        printf("lamina runs it: yes\n");
    } else {
        print_metadata_only(g, shown_arch);
        printf("lamina runs it: no: %s\n", lm_last_error());
    }
    print_type_summary(g);
    lm_model_free(m);
    lm_gguf_close(g);
    return 0;
}
