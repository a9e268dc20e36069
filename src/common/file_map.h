/* A model file mapped read-only, for the GGUF and safetensors readers.
 *
 * Only a regular file is opened (a FIFO is refused without waiting for a
 * writer), and one shorter than the reader's smallest valid file is refused
 * before mapping.  Errors go through lm_set_error as "<path>: <problem>". */
#ifndef LM_FILE_MAP_H
#define LM_FILE_MAP_H

#include <stdint.h>

typedef struct {
    int fd;             /* -1 when closed */
    const uint8_t *map; /* NULL when closed */
    uint64_t size;
} lm_file_map;

/* 0, or -1 with an error (nothing then left open); a file of fewer than min_size bytes gives
 * "<path>: not a <kind> file (<too_short>)" (min_size 1: an empty file). */
int lm_file_map_open(lm_file_map *f, const char *path, uint64_t min_size, const char *kind,
                     const char *too_short);
void lm_file_map_close(lm_file_map *f);
/* Lets the whole pages of [p, p + len) inside the mapping go. */
void lm_file_map_release(const lm_file_map *f, const void *p, uint64_t len);

#endif
