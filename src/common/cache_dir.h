/* lamina's cache directory: $XDG_CACHE_HOME/lamina, else ~/.cache/lamina.
 * It holds the probes' measurements (probe.h) and the models converted from
 * Hugging Face folders given to -m (src/program/hf_model.h). */
#ifndef LM_CACHE_DIR_H
#define LM_CACHE_DIR_H

#include <stddef.h>

/* The directory (sub NULL) or its subdirectory sub, created if missing,
 * into dir.  0, or -1 when neither variable is set or the path is too long
 * (no error is set: callers without a cache carry on without one). */
int lm_cache_dir(const char *sub, char *dir, size_t len);

#endif
