/* The `lamina` command: options shared by the subcommands, parsed once with
 * getopt_long, and the helpers every subcommand uses (loading the model with
 * a progress line, reporting errors). */
#ifndef LM_CLI_H
#define LM_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "plan.h"
#include "sampler.h"
#include "timing.h"

#define LM_CLI_UNSET INT32_MIN /* an option not given */

struct lm_session;

typedef struct {
    const char *model;       /* -m: a GGUF file (a Hugging Face folder given to -m has
                                become its cached conversion, hf_model.h) */
    const char *model_folder;/* -m's Hugging Face folder, or NULL */
    const char *prompt;      /* -p: text for run; a token count for bench */
    const char *file;        /* -f */
    const char *stats_json;  /* --stats-json */
    const char *chat_template; /* --chat-template NAME */
    const char *backend;     /* --backend cpu|opencl|auto (NULL: auto, or opencl with --gpu-layers) */
    const char *device;      /* --device N|NAME */
    bool profile;            /* --profile: OpenCL kernel times, ms per layer */
    uint64_t ram_budget;     /* --ram; 0: MemAvailable less a margin */
    uint64_t vram_budget;    /* --vram; 0: the device's memory less a margin */
    int gpu_layers;          /* --gpu-layers / -ngl N; -1: the planner decides */
    bool no_prefetch;        /* --no-prefetch: reads and compute in turn */
    bool whole_layers;       /* --whole-layers: read every expert of a streamed layer */
    uint64_t expert_cache;   /* --expert-cache SIZE; 0: what the RAM budget leaves */
    bool evict_frequent;     /* --expert-evict frequent (default recent) */
    bool evict_auto;         /* --expert-evict auto (the default): the one that
                                hits more replaying the last run's routing */
    bool reprobe;            /* --reprobe: measure the probes again */
    int ram_layers;          /* --ram-layers N: keep N layers in RAM; -1: plan */
    int n_predict;           /* -n; -1: until end of generation or context;
                                LM_CLI_UNSET: the command's default */
    int n_threads;           /* -t; 0: all cores */
    int n_ctx;               /* -c; 0: the model's, at most 4096 */
    int n_batch;             /* -b */
    bool parallel_given;
    int n_parallel;          /* --parallel / -np: sequences at once; -c is shared
                                among them (each gets -c / N positions) */
    int n_chunks;            /* --chunks; -1: all */
    int repetitions;         /* -r (bench) */
    lm_sampler_params sampling;
    bool seed_given;
    bool chat;
    bool print_ids;          /* run --ids */
    bool json;
    bool no_bos;             /* tokenize */
    bool no_parse_special;   /* tokenize */
    bool quiet;
    const char *output, *shape, *type, *tokenizer_from; /* synth: -o, --shape, --type, ... */
    int n_layers;                                       /* synth --layers; 0: the shape's */
    const char *input;       /* batch -i: the requests ("-": stdin) */
    bool resume;             /* batch --resume: skip requests already in -o */
    const char *draft;       /* --draft / -md: a draft model for speculative decoding */
    bool lookup;             /* --lookup: prompt-lookup speculative decoding */
    int draft_max, draft_min;/* --draft-max, --draft-min */
    float draft_p_min;       /* --draft-p-min */
    const char *host;        /* serve --host (default 127.0.0.1) */
    int port;                /* serve --port (default 8080; 0: any free port) */
    const char *api_key;     /* serve --api-key */
    const char *api_key_file;/* serve --api-key-file */
    int queue;               /* serve --queue: requests waiting beyond the slots */
    uint64_t max_body;       /* serve --max-body: bytes */
    int drain_seconds;       /* serve --drain: running requests' time after a stop signal */
    const char *arch;        /* synth --arch */
    bool pure;               /* quantize --pure */
    bool auto_type;          /* quantize and convert --auto */
    int n_positional;
    char **positional;
} lm_cli;

/* Parses argv (after the subcommand name).  Returns 0, or 1 after printing
 * a one-line error (exit status 1), or 2 when --help was printed. */
int lm_cli_parse(lm_cli *o, const char *command, int argc, char **argv);

/* Parses a whole decimal int in [lo, hi]; -1 with a one-line error. */
int lm_cli_int(const char *option, const char *text, int lo, int hi, int *out);

/* Probes (cached) and plans the placement of the layers for these options
 * (see plan.h): --backend and --gpu-layers say how the device is used; with
 * --backend auto a device that cannot be probed means the CPU, with a
 * warning. */
int lm_cli_plan(const lm_cli *o, const lm_model *m, int n_ctx, int n_batch, int n_prompt,
                lm_plan *plan);

/* With --profile: the measured time per layer next to the plan's
 * prediction, on f; nothing without --profile. */
void lm_cli_print_profile(const lm_cli *o, const struct lm_session *s, FILE *f);

/* Prints "lamina: <lm_last_error()>" and returns 1 (the exit status). */
int lm_cli_fail(void);

/* Loads -m (an error if missing), sets the thread count, and prints one
 * line about the model on stderr unless quiet. */
lm_model *lm_cli_load_model(const lm_cli *o);

/* The model's name for responses and /v1/models: -m's file name. */
const char *lm_cli_model_name(const lm_cli *o);

/* The context to use: -c, or the model's training context capped at 4096. */
int lm_cli_context(const lm_cli *o, const lm_model *m);


int lm_cmd_run(int argc, char **argv);
int lm_cmd_chat(int argc, char **argv);
int lm_cmd_tokenize(int argc, char **argv);
int lm_cmd_perplexity(int argc, char **argv);
int lm_cmd_bench(int argc, char **argv);
int lm_cmd_info(int argc, char **argv);
int lm_cmd_plan(int argc, char **argv);
int lm_cmd_devices(int argc, char **argv);
int lm_cmd_synth(int argc, char **argv);
int lm_cmd_quantize(int argc, char **argv);
int lm_cmd_convert(int argc, char **argv);
int lm_cmd_batch(int argc, char **argv);
int lm_cmd_serve(int argc, char **argv);
/* bench --draft / --lookup (bench_spec.c): 0, or -1 with lm_set_error. */
int lm_bench_spec(lm_cli *o, lm_model *m, int n_gen);

/* A session on the backend --backend and --device ask for (--profile turns
 * on OpenCL profiling first). */
struct lm_session *lm_cli_session(const lm_cli *o, const lm_model *m, int n_ctx, int n_batch);



/* The whole text file, NUL-terminated, malloc'd; NULL with lm_set_error (a
 * file that holds a NUL byte is refused: it would be cut there). */
char *lm_read_file(const char *path, size_t *len);

/* Speculative decoding (--draft / --lookup) for run and chat: the draft
 * model loaded and kept resident on the CPU (its memory taken from the RAM
 * budget first: *target_opts is o with what is left as --ram), its session
 * of n_ctx, and the decoder over target.  Without --draft or --lookup all
 * stay NULL and 0 is returned.  -1 with lm_set_error. */
struct lm_spec;
typedef struct {
    lm_model *model;
    struct lm_session *session;
    struct lm_spec *spec;
} lm_cli_draft;
int lm_cli_draft_load(const lm_cli *o, const lm_model *target, int n_ctx, lm_cli *target_opts,
                      lm_cli_draft *d);
int lm_cli_draft_start(const lm_cli *o, struct lm_session *target, lm_cli_draft *d);
void lm_cli_draft_free(lm_cli_draft *d);

/* The chat format to use: --chat-template, else detected from the model's
 * tokenizer.chat_template; an error if neither gives one. */
int lm_cli_chat_format(const lm_cli *o, const lm_model *m, int *format, char **template_text);
#endif
