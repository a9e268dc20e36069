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

/* len bytes from a file or a user, made safe to show on one terminal line:
 * well-formed UTF-8 stays; control characters (C0, DEL, C1) and invalid
 * bytes become '?'.  What does not fit in cap is cut, marked "...".
 * Returns buf.  Every error message goes through it (lm_set_error); use it
 * for anything else read from a file before printing it. */
const char *lm_printable(const char *s, size_t len, char *buf, size_t cap);

#endif
