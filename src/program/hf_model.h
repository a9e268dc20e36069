/* -m HF_DIR: a Hugging Face model folder where a GGUF file is expected.
 *
 * AirLLM splits a checkpoint into per-layer files on first use; lamina
 * converts it once (lamina convert --auto: the best type for the RAM budget
 * of that first run) into the cache directory, as
 * models/NAME-KEY-TYPE.gguf, and later runs load that file.  KEY hashes
 * the folder's real path and the names, sizes and modification times of its
 * .json, .jinja and .safetensors files, so a changed checkpoint is
 * converted again; a later budget does not change the type (remove the
 * file, or run lamina convert, to choose again). */
#ifndef LM_HF_MODEL_H
#define LM_HF_MODEL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t ram_budget; /* --ram (0: the default) */
    int n_ctx, n_batch;  /* -c (0: the model's, at most 4096), -b */
    bool quiet;          /* no lines on stderr */
} lm_hf_model_params;

/* Whether path is a directory (then it is taken as a Hugging Face folder). */
bool lm_hf_model_is_folder(const char *path);

/* The cached GGUF for the folder dir, converted now if there is none:
 * a malloc'd path, or NULL with lm_set_error. */
char *lm_hf_model_path(const char *dir, const lm_hf_model_params *p);

#endif
