/* The streamer: layer weights read from the model file with pread into
 * staging buffers by an I/O thread, one layer ahead of the layer computing.
 *
 * The layers it streams come in a fixed order (the order of a forward pass)
 * and the look-ahead wraps around: while the last streamed layer and the
 * output head run, the first streamed layer of the next pass is already
 * being read.  With two buffers, layer l+1 is read while layer l computes.
 * Without prefetch the read happens in lm_streamer_acquire, on the caller's
 * thread, so I/O and compute add up (the --no-prefetch comparison).
 * Errors on the I/O thread (a short read, a vanished file) come back from
 * lm_streamer_acquire as a one-line error.
 *
 * A layer a device runs goes one step further on the I/O thread: from the
 * staging buffer (then pinned memory the device backend provides) into the
 * device's slot of the same number (two slots, one without prefetch), so that disk read, host-to-device copy
 * and compute of successive layers overlap.  Its layers come either from
 * the disk (pread into a staging buffer, then the pages dropped) or from
 * RAM: those are read once, at creation, into pinned memory of their own,
 * and each pass only copies them to the device. */
#ifndef LM_STREAMER_H
#define LM_STREAMER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"

typedef struct lm_streamer lm_streamer;

typedef struct {
    uint64_t bytes_read;
    double read_seconds;   /* time the reads took (on whichever thread) */
    double wait_seconds;   /* time the compute thread waited for a layer */
    double upload_seconds; /* time the copies to the device took */
    uint64_t bytes_uploaded;
} lm_streamer_stats;

typedef struct {
    int layer;
    bool from_disk; /* drop the pages after reading, so every pass reads the disk
                       and the page cache does not grow with the model */
    bool to_device; /* the device backend runs it: upload after staging */
} lm_stream_layer;

/* Streams layers[0..n_layers) (ascending layer numbers) of m.  device: the
 * backend the to_device layers go to (it provides the staging memory), or
 * NULL when none does; it must outlive the streamer. */
lm_streamer *lm_streamer_new(const lm_model *m, const lm_stream_layer *layers, int n_layers,
                             bool prefetch, lm_backend *device);
void lm_streamer_free(lm_streamer *st);

/* Waits until layer il is staged and points view at it.  il must be the
 * next streamed layer of the pass; after an aborted pass (an error
 * elsewhere) any streamed layer may be asked for, and the streamer restarts
 * from it. */
int lm_streamer_acquire(lm_streamer *st, int il, lm_layer_view *view);
/* The layer acquired last is done with; its buffer may be refilled. */
void lm_streamer_release(lm_streamer *st);

lm_streamer_stats lm_streamer_get_stats(const lm_streamer *st);

/* After lm_streamer_acquire failed: whether the copy to the device failed
 * (rather than the read). */
bool lm_streamer_upload_failed(const lm_streamer *st);

/* Bytes one layer takes in a staging buffer (tensors packed, aligned). */
uint64_t lm_streamer_layer_bytes(const lm_model *m, int il);

#endif
