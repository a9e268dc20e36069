/* The results file of `lamina batch`: one JSON line per request, in the
 * shape of OpenAI's batch output (and vLLM's run-batch):
 *
 *   {"id": "batch_req_...", "custom_id": "a1",
 *    "response": {"status_code": 200, "request_id": "req_...", "body": {...}},
 *    "error": null}
 *
 * where body is a text_completion or a chat.completion object.  A request
 * that cannot be served is answered as the endpoint would answer it over
 * HTTP: status_code 400 and a body holding {"error": {"message", "type",
 * "param", "code"}}.  A line that is not JSON never reached an endpoint: its
 * result has "custom_id": null, "response": null and "error": {"code":
 * "invalid_json", "message": ...}.  Lines are written whole and flushed one
 * by one, so a run that is stopped keeps every result it finished, and
 * --resume reads them back. */
#ifndef LM_BATCH_RESULT_H
#define LM_BATCH_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "batch_request.h"
#include "openai_json.h"


/* Result lines, malloc'd, without the newline; NULL with lm_set_error. */
char *lm_batch_result_ok(const lm_batch_answer *a);
/* custom_id and param may be NULL. */
char *lm_batch_result_invalid(const char *custom_id, const char *message, const char *param);
char *lm_batch_result_not_json(const char *message);

/* Writes line and a newline, and flushes; frees line.  0, or -1 with
 * lm_set_error (line NULL: the error its maker set). */
int lm_batch_result_put(FILE *f, char *line);

/* For --resume: reads the results already in path (none if it does not
 * exist): each custom_id goes into done (an object used as a set) and each
 * line without one counts in *n_anonymous.  A last line cut short by a
 * stopped run is cut off the file, to be answered again.  0 or -1. */
int lm_batch_results_read(const char *path, json_t *done, int *n_anonymous);

#endif
