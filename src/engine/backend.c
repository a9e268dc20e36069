/* What every backend does with the rows of a pass, written once. */
#include "backend.h"

#include "error.h"

int lm_rows_runs(const lm_rows *rows, lm_run *runs)
{
    int n_runs = 0;
    for (int r = 0; r < rows->n; r++) {
        lm_run *last = n_runs ? &runs[n_runs - 1] : NULL;
        const bool alone = rows->single && (rows->single[r] || rows->single[r - (r > 0)]);
        if (last && !alone && last->seq == rows->seq[r] &&
            last->pos0 + last->n == rows->pos[r])
            last->n++;
        else
            runs[n_runs++] = (lm_run){rows->seq[r], rows->pos[r], r, 1};
    }
    return n_runs;
}

int lm_backend_check_rows(const lm_backend *b, const lm_rows *rows)
{
    if (rows->n < 1 || rows->n > b->n_batch) {
        lm_set_error("internal: a pass of %d rows (at most %d)", rows->n, b->n_batch);
        return -1;
    }
    for (int r = 0; r < rows->n; r++)
        if (rows->seq[r] < 0 || rows->seq[r] >= b->n_seq || rows->pos[r] < 0 ||
            rows->pos[r] >= b->n_ctx) {
            lm_set_error("internal: row %d (sequence %d, position %d) is outside the cache "
                         "(%d sequences of %d)", r, rows->seq[r], rows->pos[r], b->n_seq,
                         b->n_ctx);
            return -1;
        }
    return 0;
}
