#include "error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

static _Thread_local char last_error[1024];


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
        uint32_t cp;
        size_t n = lm_utf8_decode(u + i, len - i, &cp);
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
