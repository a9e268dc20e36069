/* A Hugging Face model folder to a GGUF model (lamina convert).
 *
 * The folder holds config.json (hf_config.h), tokenizer.json and
 * tokenizer_config.json (hf_tokenizer.h), and model.safetensors or shards
 * named by model.safetensors.index.json (formats/safetensors.h), with F32,
 * F16 or BF16 tensors.  The output holds the metadata, tokenizer and tensor
 * names llama.cpp's convert_hf_to_gguf.py writes (hf_names.h), so it runs in
 * llama.cpp too: matrices at the float type asked for (F16 by default),
 * 1-D tensors (norms, biases) at F32, as that converter does.  Tensors are
 * converted a range of rows at a time while the file is written, with the
 * checkpoint's pages let go behind, so a 70B checkpoint needs a few MiB of
 * memory besides the page cache.  Quantized types: the float GGUF is made
 * first, beside the output, then quantized (quantize.h) and removed. */
#ifndef LM_CONVERT_H
#define LM_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "quant_rules.h"

typedef struct {
    const char *dir, *out;
    lm_quant_target target; /* F16 unless asked */
    bool quiet;             /* no progress on stderr */
    /* --auto: the type quant_auto.h chooses for this budget (0: the
     * default) and context (0: the model's, at most 4096) */
    bool auto_type;
    uint64_t ram_budget;
    int n_ctx, n_batch;
} lm_convert_params;

typedef struct {
    uint64_t in_bytes, out_bytes;
    uint32_t n_tensors, n_skipped, n_files;
    char type[16];          /* the type written */
    double seconds;
} lm_convert_stats;

/* The folder's own name (its last path component, trailing slashes
 * ignored) into buf. */
const char *lm_hf_folder_name(const char *dir, char *buf, size_t len);

/* 0, or -1 with lm_set_error (no output file then). */
int lm_convert_hf(const lm_convert_params *p, lm_convert_stats *st);

#endif
