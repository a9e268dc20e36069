#include "json_out.h"

#include "error.h"

int lm_json_write(json_t *obj, FILE *f)
{
    int rc = -1;
    if (!obj)
        lm_set_error("out of memory for a JSON object");
    else if (json_dumpf(obj, f, JSON_REAL_PRECISION(10)) != 0 || fputc('\n', f) == EOF)
        lm_set_error("cannot write JSON");
    else
        rc = 0;
    json_decref(obj);
    return rc;
}
