/* libFuzzer harness: a stored expert routing trace (expert_trace.h), as
 * the planner reads it from the cache directory.  The first two bytes give
 * the model's shape (1 + b0 % 64 layers, 1 + b1 % 128 experts), the rest is
 * the file.  A trace the parser accepts replays through caches of every
 * size with both evictions to a hit rate in [0, 1] over no more wants than
 * it holds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "expert_trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_expert_trace: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const int n_layer = 1 + data[0] % 64, n_expert = 1 + data[1] % 128;
    lm_expert_trace *t = lm_expert_trace_parse((const char *)data + 2, size - 2, n_layer, n_expert);
    if (!t)
        return 0;
    const uint64_t all = lm_expert_trace_wants(t);
    check(all > 0, "an accepted trace with no wants");
    bool apart[64];
    for (int il = 0; il < n_layer; il++)
        apart[il] = il % 2 == 0 || n_layer == 1;
    for (int slots = 0; slots <= n_layer * n_expert + 1; slots += 1 + slots / 3)
        for (int ev = 0; ev < 2; ev++) {
            uint64_t wants;
            const double r = lm_expert_trace_hit_rate(
                t, apart, slots, ev ? LM_EVICT_FREQUENT : LM_EVICT_RECENT, &wants);
            check(r >= 0 && r <= 1, "a hit rate outside [0, 1]");
            check(wants <= all, "more wants than the trace holds");
        }
    lm_expert_trace_free(t);
    return 0;
}
