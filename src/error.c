#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[1024];

void lm_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

const char *lm_last_error(void)
{
    return last_error[0] ? last_error : "unknown error";
}

void lm_clear_error(void)
{
    last_error[0] = '\0';
}
