#include "error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

/* Length of the well-formed UTF-8 character at s (at most n bytes), or 0
 * for an invalid one: a stray continuation byte, a truncated sequence, an
 * overlong form, a UTF-16 surrogate, or past U+10FFFF. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned cp, min;
    if (s[0] < 0x80)
        return 1;
    else if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1fu, min = 0x80;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0fu, min = 0x800;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07u, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A terminal acts on C0 controls, DEL and the C1 controls U+0080..U+009F
 * (CSI among them): none of them may come through. */
static bool is_control(const unsigned char *s, size_t len)
{
    return len == 1 ? (s[0] < 0x20 || s[0] == 0x7f) : (len == 2 && s[0] == 0xc2 && s[1] < 0xa0);
}

const char *lm_printable(const char *s, size_t len, char *buf, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    if (cap < 4)
        return cap ? (buf[0] = '\0', buf) : buf;
    while (i < len) {
        size_t n = utf8_char(u + i, len - i);
        const bool shown = n && !is_control(u + i, n);
        size_t out = shown ? n : 1;
        if (o + out > cap - 4) { /* room for "..." and the NUL */
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (shown)
            memcpy(buf + o, s + i, n);
        else
            buf[o] = '?';
        o += out;
        i += n ? n : 1;
    }
    buf[o] = '\0';
    return buf;
}

void lm_set_error(const char *fmt, ...)
{
    char raw[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* Messages quote names from files and users: one filter for all of them
     * keeps every error one printable line. */
    lm_printable(raw, strlen(raw), last_error, sizeof last_error);
}

const char *lm_last_error(void)
{
    return last_error[0] ? last_error : "unknown error";
}

void lm_clear_error(void)
{
    last_error[0] = '\0';
}
