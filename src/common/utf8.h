/* UTF-8, read strictly: the one decoder for everything that must tell
 * well-formed text from bytes that only look like it. */
#ifndef LM_UTF8_H
#define LM_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the character at s (n bytes left, n > 0) into *cp and returns its
 * length, or 0 when it is not well formed: a stray continuation byte, a
 * truncated sequence, an overlong form, a UTF-16 surrogate, or past
 * U+10FFFF. */
size_t lm_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

#endif
