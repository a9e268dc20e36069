/* JSON that lamina writes (bench, plan, run --stats-json), through jansson,
 * the one JSON library lamina reads and writes JSON with. */
#ifndef LM_JSON_OUT_H
#define LM_JSON_OUT_H

#include <stdio.h>

#include <jansson.h>

/* obj (which may be NULL: out of memory) on one line, then a newline; the
 * object is released.  10 significant digits for reals.  0 or -1. */
int lm_json_write(json_t *obj, FILE *f);

#endif
