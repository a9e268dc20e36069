/* lamina tokenize: the token ids of a text, on one line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"

int lm_cmd_tokenize(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "tokenize", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
    if (o.n_positional != 1) {
        fprintf(stderr, "lamina tokenize: give exactly one TEXT (see lamina tokenize --help)\n");
        return 1;
    }
    o.quiet = true;
    lm_model *m = lm_cli_load_model(&o);
    if (!m)
        return lm_cli_fail();
    const char *text = o.positional[0];
    int32_t *ids = NULL;
    size_t n = 0;
    if (lm_tokenize(m->tokenizer, text, strlen(text), !o.no_bos, !o.no_parse_special, &ids,
                    &n) != 0) {
        lm_model_free(m);
        return lm_cli_fail();
    }
    for (size_t i = 0; i < n; i++)
        printf("%s%d", i ? " " : "", ids[i]);
    putchar('\n');
    free(ids);
    lm_model_free(m);
    return 0;
}
