#define _POSIX_C_SOURCE 200809L /* fileno */
#include "batch_progress.h"

#include <stdarg.h>
#include <unistd.h>

#include "timing.h"

/* Redraws on a terminal are cheap; a log file wants few lines. */
#define TTY_INTERVAL_S 0.25
#define LOG_INTERVAL_S 10.0

void lm_batch_progress_start(lm_batch_progress *p, FILE *f, bool quiet, int total, int skipped)
{
    *p = (lm_batch_progress){
        .f = f, .quiet = quiet, .tty = isatty(fileno(f)), .total = total, .skipped = skipped,
        .t0 = lm_now_seconds(),
    };
    p->last_shown = p->t0;
}

static void format_duration(char *buf, size_t cap, double s)
{
    const long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, cap, "%lds", t);
}

void lm_batch_progress_show(lm_batch_progress *p, bool force)
{
    const double now = lm_now_seconds(), elapsed = now - p->t0;
    if (p->quiet || (!force && now - p->last_shown < (p->tty ? TTY_INTERVAL_S : LOG_INTERVAL_S)))
        return;
    p->last_shown = now;
    const int done = p->ok + p->failed;
    char eta[32] = "?";
    if (done > 0 && done < p->total)
        format_duration(eta, sizeof eta, elapsed / done * (p->total - done));
    else if (done >= p->total)
        snprintf(eta, sizeof eta, "0s");
    fprintf(p->f, "%slamina: batch: %d/%d requests", p->tty ? "\r" : "", done, p->total);
    if (p->failed)
        fprintf(p->f, " (%d failed)", p->failed);
    fprintf(p->f, ", %.1f generated + %.1f prompt tokens/s, ETA %s%s",
            elapsed > 0 ? (double)p->generated_tokens / elapsed : 0.0,
            elapsed > 0 ? (double)p->prompt_tokens / elapsed : 0.0, eta,
            p->tty ? "\033[K" : "\n");
    p->line_open = p->tty;
    fflush(p->f);
}

static void end_line(lm_batch_progress *p)
{
    if (p->line_open)
        fputc('\n', p->f);
    p->line_open = false;
}

void lm_batch_progress_note(lm_batch_progress *p, const char *fmt, ...)
{
    end_line(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->f, fmt, ap);
    va_end(ap);
    fputc('\n', p->f);
    fflush(p->f);
}

void lm_batch_progress_summary(lm_batch_progress *p)
{
    if (p->quiet)
        return;
    lm_batch_progress_show(p, true);
    end_line(p);
    const double wall = lm_now_seconds() - p->t0;
    const uint64_t tokens = p->prompt_tokens + p->generated_tokens;
    fprintf(p->f, "lamina: batch: %d requests: %d ok, %d failed", p->ok + p->failed, p->ok,
            p->failed);
    if (p->skipped)
        fprintf(p->f, " (%d answered before, skipped)", p->skipped);
    fprintf(p->f, "\nlamina: batch: %llu prompt + %llu generated tokens in %.1f s: "
                  "%.1f tokens/s (%.1f generated)\n",
            (unsigned long long)p->prompt_tokens, (unsigned long long)p->generated_tokens, wall,
            wall > 0 ? (double)tokens / wall : 0.0,
            wall > 0 ? (double)p->generated_tokens / wall : 0.0);
    fflush(p->f);
}
