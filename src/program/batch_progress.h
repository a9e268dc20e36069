/* The progress of `lamina batch` on stderr: requests done of the total,
 * tokens/s and the time left, redrawn in place (\r) a few times a second
 * on a terminal and written as a plain line every few seconds otherwise;
 * and the summary at the end. */
#ifndef LM_BATCH_PROGRESS_H
#define LM_BATCH_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    bool quiet, tty;
    bool line_open;     /* a \r line is on the terminal, not ended */
    int total;          /* requests to answer in this run */
    int ok, failed;
    int skipped;        /* already answered (--resume) */
    uint64_t prompt_tokens, generated_tokens;
    double t0, last_shown;
} lm_batch_progress;

void lm_batch_progress_start(lm_batch_progress *p, FILE *f, bool quiet, int total, int skipped);

/* Redraws the line if it is time (or if force). */
void lm_batch_progress_show(lm_batch_progress *p, bool force);

/* A message of its own line (the progress line is ended first). */
void lm_batch_progress_note(lm_batch_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The summary: requests ok and failed, tokens, wall time, tokens/s. */
void lm_batch_progress_summary(lm_batch_progress *p);

#endif
