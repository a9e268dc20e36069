/* lamina: run large language models one layer at a time. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "error.h"
#include "kernels.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"run", lm_cmd_run, "generate text from a prompt"},
    {"chat", lm_cmd_chat, "talk with a model interactively"},
    {"batch", lm_cmd_batch, "serve a file of OpenAI-style requests, many at a time"},
#ifdef LAMINA_SERVER
    {"serve", lm_cmd_serve, "an OpenAI-compatible HTTP server, many clients sharing each pass"},
#endif
    {"tokenize", lm_cmd_tokenize, "print the token ids of a text"},
    {"perplexity", lm_cmd_perplexity, "perplexity of a text file"},
    {"bench", lm_cmd_bench, "prompt and decode speed against the RAM bandwidth"},
    {"info", lm_cmd_info, "describe a model file"},
    {"plan", lm_cmd_plan, "show where the layers will run and the predicted speed"},
    {"devices", lm_cmd_devices, "list the OpenCL platforms and devices"},
    {"convert", lm_cmd_convert, "a Hugging Face model folder (safetensors) to GGUF"},
    {"quantize", lm_cmd_quantize, "rewrite a model's matrices at another type (Q4_K_M, Q8_0, ...)"},
    {"synth", lm_cmd_synth, "write a model with random weights at a chosen shape and type"},
};

static void print_help(void)
{
    printf("Usage: lamina COMMAND [OPTIONS]\n"
           "Run LLaMA-family language models (GGUF) one transformer layer at a time.\n\n"
           "Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        printf("  %-11s %s\n", commands[i].name, commands[i].summary);
    printf("\n  -h, --help     show this help and exit\n"
           "  -V, --version  show the version and exit\n\n"
           "`lamina COMMAND --help` lists a command's options. See lamina(1).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "Usage: lamina COMMAND [OPTIONS] (see lamina --help)\n");
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_help();
        return 0;
    }
    if (lm_cpu_path_check() != 0) {
        fprintf(stderr, "lamina: %s\n", lm_last_error());
        return 1;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        char path[256];
        lm_cpu_path_describe(path, sizeof path);
        printf("lamina %s\ncpu kernels: %s\n", PACKAGE_VERSION, path);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lamina: unknown command '%s' (see lamina --help)\n", cmd);
    return 1;
}
