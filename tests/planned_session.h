/* Engines that follow a hand-made plan, for the tests that check every
 * placement (streamed from disk, from RAM, to the device, split). */
#ifndef LM_TEST_PLANNED_SESSION_H
#define LM_TEST_PLANNED_SESSION_H

#include <stdbool.h>

#include "session.h"

/* An engine whose layer il is placed at place[il] (fallback: go on on the
 * CPU after a device error); NULL (the error printed on stderr) when it
 * cannot be made. */
lm_session *test_planned_session(const lm_model *m, const lm_placement *place,
                                 bool head_on_device, bool prefetch, bool fallback, int n_ctx,
                                 int n_seq, int n_batch);

#endif
