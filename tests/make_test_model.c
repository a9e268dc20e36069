/* make_test_model PATH [llama|qwen2] [TYPE] [NAME]: writes a small
 * random-weight model for the command-line tests (see model_writer.h), with
 * NAME as general.name (any bytes: the tests give it hostile ones). */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "model_writer.h"
#include "quant.h"

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: make_test_model PATH [llama|qwen2] [TYPE] [NAME]\n");
        return 2;
    }
    test_model_shape shape = {"llama", LM_TYPE_Q8_0, 2, 64, 4, 2, 96, false, 42, NULL, 0, NULL, 0, 0, 0, 0};
    if (argc > 2)
        shape.arch = argv[2];
    if (argc > 3) {
        uint32_t t;
        for (t = 0; t < LM_TYPE_COUNT; t++)
            if (lm_type_get(t) && strcmp(lm_type_name(t), argv[3]) == 0)
                break;
        if (t == LM_TYPE_COUNT) {
            fprintf(stderr, "make_test_model: unknown type %s\n", argv[3]);
            return 2;
        }
        shape.weight_type = t;
    }
    if (argc > 4)
        shape.name = argv[4];
    if (test_write_model(argv[1], &shape) != 0) {
        fprintf(stderr, "make_test_model: %s\n", lm_last_error());
        return 1;
    }
    return 0;
}
