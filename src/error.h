/* One error-reporting style for the whole project.
 *
 * A function that can fail returns -1 (or NULL) and records one line of text
 * with lm_set_error(); the caller that finally reports it (the command, a test)
 * reads lm_last_error().  The message is per thread, so the I/O thread of the
 * streamer can fail without racing the main thread.  Messages have no trailing
 * newline and no "lamina:" prefix: the reporter adds those. */
#ifndef LM_ERROR_H
#define LM_ERROR_H

#include <stddef.h>

void lm_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *lm_last_error(void);
void lm_clear_error(void);

#endif
