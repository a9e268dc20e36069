#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "error.h"
#include "chat.h"
#include "convert.h"
#include "engine_open.h"
#include "hf_model.h"
#include "plan.h"
#include "quant.h"
#include "session.h"
#include "speculative.h"

enum {
    OPT_TEMP = 256, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P, OPT_REPEAT_PENALTY, OPT_REPEAT_LAST_N,
    OPT_SEED, OPT_CHAT, OPT_STATS_JSON, OPT_JSON, OPT_CHUNKS, OPT_NO_BOS, OPT_NO_PARSE_SPECIAL,
    OPT_CHAT_TEMPLATE, OPT_IDS, OPT_BACKEND, OPT_DEVICE, OPT_PROFILE,
    OPT_RAM, OPT_VRAM, OPT_NO_PREFETCH, OPT_WHOLE_LAYERS, OPT_EXPERT_CACHE, OPT_EXPERT_EVICT, OPT_REPROBE, OPT_RAM_LAYERS, OPT_GPU_LAYERS,
    OPT_SHAPE, OPT_TYPE, OPT_TOKENIZER_FROM, OPT_LAYERS, OPT_PARALLEL, OPT_RESUME,
    OPT_DRAFT, OPT_LOOKUP, OPT_DRAFT_MAX, OPT_DRAFT_MIN, OPT_DRAFT_P_MIN,
    OPT_HOST, OPT_PORT, OPT_API_KEY, OPT_API_KEY_FILE, OPT_QUEUE, OPT_MAX_BODY, OPT_DRAIN, OPT_ARCH,
    OPT_PURE, OPT_AUTO,
};

static const struct option long_options[] = {
    {"model", required_argument, NULL, 'm'},
    {"prompt", required_argument, NULL, 'p'},
    {"file", required_argument, NULL, 'f'},
    {"n-predict", required_argument, NULL, 'n'},
    {"threads", required_argument, NULL, 't'},
    {"ctx-size", required_argument, NULL, 'c'},
    {"batch-size", required_argument, NULL, 'b'},
    {"repetitions", required_argument, NULL, 'r'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"temp", required_argument, NULL, OPT_TEMP},
    {"top-k", required_argument, NULL, OPT_TOP_K},
    {"top-p", required_argument, NULL, OPT_TOP_P},
    {"min-p", required_argument, NULL, OPT_MIN_P},
    {"repeat-penalty", required_argument, NULL, OPT_REPEAT_PENALTY},
    {"repeat-last-n", required_argument, NULL, OPT_REPEAT_LAST_N},
    {"seed", required_argument, NULL, OPT_SEED},
    {"chat", no_argument, NULL, OPT_CHAT},
    {"chat-template", required_argument, NULL, OPT_CHAT_TEMPLATE},
    {"stats-json", required_argument, NULL, OPT_STATS_JSON},
    {"json", no_argument, NULL, OPT_JSON},
    {"ids", no_argument, NULL, OPT_IDS},
    {"chunks", required_argument, NULL, OPT_CHUNKS},
    {"no-bos", no_argument, NULL, OPT_NO_BOS},
    {"no-parse-special", no_argument, NULL, OPT_NO_PARSE_SPECIAL},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"profile", no_argument, NULL, OPT_PROFILE},
    {"ram", required_argument, NULL, OPT_RAM},
    {"vram", required_argument, NULL, OPT_VRAM},
    {"no-prefetch", no_argument, NULL, OPT_NO_PREFETCH},
    {"whole-layers", no_argument, NULL, OPT_WHOLE_LAYERS},
    {"expert-cache", required_argument, NULL, OPT_EXPERT_CACHE},
    {"expert-evict", required_argument, NULL, OPT_EXPERT_EVICT},
    {"reprobe", no_argument, NULL, OPT_REPROBE},
    {"ram-layers", required_argument, NULL, OPT_RAM_LAYERS},
    {"gpu-layers", required_argument, NULL, OPT_GPU_LAYERS},
    {"n-gpu-layers", required_argument, NULL, OPT_GPU_LAYERS},
    {"output", required_argument, NULL, 'o'},
    {"shape", required_argument, NULL, OPT_SHAPE},
    {"type", required_argument, NULL, OPT_TYPE},
    {"tokenizer-from", required_argument, NULL, OPT_TOKENIZER_FROM},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"parallel", required_argument, NULL, OPT_PARALLEL},
    {"input", required_argument, NULL, 'i'},
    {"resume", no_argument, NULL, OPT_RESUME},
    {"draft", required_argument, NULL, OPT_DRAFT},
    {"model-draft", required_argument, NULL, OPT_DRAFT},
    {"lookup", no_argument, NULL, OPT_LOOKUP},
    {"draft-max", required_argument, NULL, OPT_DRAFT_MAX},
    {"draft-min", required_argument, NULL, OPT_DRAFT_MIN},
    {"draft-p-min", required_argument, NULL, OPT_DRAFT_P_MIN},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"api-key", required_argument, NULL, OPT_API_KEY},
    {"api-key-file", required_argument, NULL, OPT_API_KEY_FILE},
    {"queue", required_argument, NULL, OPT_QUEUE},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"arch", required_argument, NULL, OPT_ARCH},
    {"pure", no_argument, NULL, OPT_PURE},
    {"auto", no_argument, NULL, OPT_AUTO},
    {NULL, 0, NULL, 0},
};

#define SPEC_HELP                                                                      \
    "  -md, --draft FILE       speculative decoding with FILE as the draft model (the\n" \
    "                          target's vocabulary, kept resident in RAM): it\n"      \
    "                          proposes tokens, the model checks them in one pass\n"  \
    "      --lookup            speculative decoding from n-grams of the prompt and\n" \
    "                          the output (no second model)\n"                          \
    "      --draft-max N       most tokens proposed a pass (default 16; fewer when\n"  \
    "                          measured acceptance and costs say so)\n"               \
    "      --draft-min N       fewer proposed: a plain pass instead (default 0)\n"    \
    "      --draft-p-min P     the draft stops below this confidence (default: from\n" \
    "                          0.75, lowered while all it proposes is accepted)\n"

/* The options batch and serve take for requests that leave fields out. */
#define REQUEST_DEFAULTS_HELP                                                         \
    "  -n, --n-predict N       max_tokens for requests without one (default:\n"     \
    "                          16 for completions, the end for chat)\n"             \
    "  -t, --threads N         threads (default: all cores)\n"                      \
    "      --chat-template NAME  chatml, llama2, llama3 or mistral\n"                \
    "      --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n,\n" \
    "      --seed              as for run: the defaults of requests that do not\n"  \
    "                          set temperature, top_k, top_p, min_p,\n"             \
    "                          repeat_penalty, seed\n"

#define BACKEND_HELP                                                                  \
    "      --backend B         auto (the default: the planner puts each layer on the\n" \
    "                          CPU or the OpenCL device, where it is predicted\n"     \
    "                          faster; the CPU if no device works), cpu, or opencl\n"  \
    "                          (every layer on the device: resident while --vram\n"  \
    "                          holds them, streamed through it after)\n"             \
    "  -ngl, --gpu-layers N    run the last N layers on the device, the rest on the\n" \
    "                          CPU (implies --backend opencl unless auto is given)\n"  \
    "      --vram SIZE         device memory budget (default: the device's memory\n"  \
    "                          less 10%, at least 256M); layers that do not fit are\n" \
    "                          streamed to the device each token\n"                  \
    "      --device D          OpenCL device: an index or a name substring from\n"      \
    "                          `lamina devices` (default: the first GPU)\n"             \
    "      --profile           time the OpenCL kernels and print which dominate,\n"  \
    "                          and the measured ms per layer next to the plan's\n"     \
    "      --ram SIZE          RAM budget for weights, KV cache and buffers (e.g.\n"   \
    "                          2G; default MemAvailable less 10%); layers that do\n"  \
    "                          not fit are streamed from disk each token\n"           \
    "      --ram-layers N      keep exactly N layers in RAM, stream the rest\n"        \
    "      --no-prefetch       read streamed layers in turn with compute\n"            \
    "      --expert-cache SIZE mixtures of experts: RAM for the experts read from\n"    \
    "                          disk, the most recently used kept (default: what\n"   \
    "                          the RAM budget leaves)\n"                               \
    "      --expert-evict P    which cached expert gives its place up: recent (the\n" \
    "                          least recently used), frequent (the least often\n"    \
    "                          used) or auto (the default: the one that hits more\n" \
    "                          replaying the model's last run; else recent)\n"      \
    "      --whole-layers      mixtures of experts: read every expert of a layer\n"    \
    "                          streamed from disk, not only the routed ones\n"        \
    "      --reprobe           measure RAM, disk and CPU speed again\n"                \
    "  -np, --parallel N       decode N sequences together, each pass over the\n"     \
    "                          weights serving all of them; -c is shared (each\n"    \
    "                          gets -c / N positions)\n"

/* What each subcommand accepts, shown by `lamina COMMAND --help`. */
static const struct {
    const char *command;
    const char *usage;
} usages[] = {
    {"run", "Usage: lamina run -m MODEL -p PROMPT [options]\n"
            "Generate text from PROMPT. Only the generated text goes to stdout.\n\n"
            "  -m, --model FILE        GGUF model file, or a Hugging Face folder (converted\n"
            "                          once into the cache at the type --auto picks)\n"
            "  -p, --prompt TEXT       the prompt\n"
            "  -f, --file FILE         read the prompt from FILE\n"
            "  -n, --n-predict N       tokens to generate (default 128; -1: until the end)\n"
            "  -c, --ctx-size N        context size (default: the model's, at most 4096)\n"
            "  -b, --batch-size N      prompt tokens per pass (default 512)\n"
            "  -t, --threads N         threads (default: all cores)\n"
            "      --chat              wrap the prompt in the model's chat template\n"
            "      --chat-template NAME  chatml, llama2, llama3 or mistral\n"
            "      --temp T            temperature; 0 = greedy (default 0.8)\n"
            "      --top-k N           (default 40; 0 = off)\n"
            "      --top-p P           (default 0.95; 1 = off)\n"
            "      --min-p P           (default 0.05; 0 = off)\n"
            "      --repeat-penalty R  (default 1.0 = off)\n"
            "      --repeat-last-n N   tokens the penalty looks back on (default 64)\n"
            "      --seed S            random seed (default: from the clock)\n"
            "      --stats-json FILE   also write the statistics as JSON to FILE\n"
            "      --ids               print the generated token ids instead of text\n"
            SPEC_HELP
            BACKEND_HELP
            "  -q, --quiet             no model or statistics lines on stderr\n"},
    {"chat", "Usage: lamina chat -m MODEL [options]\n"
             "Talk with the model: each line on stdin is your turn; /exit or end of input ends.\n"
             "Takes the sampling options of `lamina run` and -p as the system prompt.\n"
             SPEC_HELP
             BACKEND_HELP},
    {"tokenize", "Usage: lamina tokenize -m MODEL [--no-bos] [--no-parse-special] TEXT\n"
                 "Print the token ids of TEXT on one line, separated by spaces.\n"},
    {"perplexity", "Usage: lamina perplexity -m MODEL -f TEXT_FILE [-c CTX] [--chunks N]\n"
                   "Perplexity of the file in windows of CTX tokens (default 512), each scored\n"
                   "on its second half, as llama-perplexity does. Last line: perplexity: X\n"
                   BACKEND_HELP},
    {"bench", "Usage: lamina bench -m MODEL [-p 128] [-n 64] [-t N] [-r 3] [--json]\n"
              "Prompt and decode speed, and the weight bandwidth decoding reached next to\n"
              "the measured RAM bandwidth. --json prints one JSON object on stdout.\n"
              "With --draft FILE or --lookup: greedy decoding of a text (-f FILE, or a\n"
              "built-in one), plain and speculative in the same run: both tokens/s, the\n"
              "acceptance, tokens per target pass, and whether the tokens agree (-n 128).\n"
              SPEC_HELP
              BACKEND_HELP},
    {"batch", "Usage: lamina batch -m MODEL -i REQUESTS.jsonl -o RESULTS.jsonl [options]\n"
              "Serve a file of requests in the OpenAI Batch format (one JSON object a line,\n"
              "url /v1/completions or /v1/chat/completions), --parallel of them at a time\n"
              "sharing each pass over the weights. One result line per request is appended\n"
              "to RESULTS as it finishes; progress and a summary go to stderr.\n\n"
              "  -m, --model FILE        GGUF model file, or a Hugging Face folder (converted\n"
            "                          once into the cache at the type --auto picks)\n"
              "  -i, --input FILE        the requests (- for stdin)\n"
              "  -o, --output FILE       the results (- for stdout)\n"
              "      --resume            skip the requests whose results are already in\n"
              "                          the -o file, and append the others\n"
              "  -np, --parallel N       requests served at once (default 1)\n"
              "  -c, --ctx-size N        context shared by the N sequences, each gets\n"
              "                          N-th of it (default: the model's, at most 4096)\n"
              "  -b, --batch-size N      prompt tokens per run (default 512); greedy text\n"
              "                          equals `lamina run -b N`'s whatever --parallel\n"
              REQUEST_DEFAULTS_HELP
              "      --lookup            speculative decoding per sequence from n-grams of\n"
              "                          its prompt and output, checked in the shared passes\n"
              "      --draft-max N       most tokens a sequence proposes a pass (default 16)\n"
              BACKEND_HELP
              "  -q, --quiet             no model, progress or summary lines on stderr\n"},
    {"serve", "Usage: lamina serve -m MODEL [--host 127.0.0.1] [--port 8080] [options]\n"
              "An OpenAI-compatible HTTP server: POST /v1/chat/completions and\n"
              "/v1/completions (with \"stream\": true as Server-Sent Events), GET /v1/models,\n"
              "/health and /metrics (Prometheus). Every request is a sequence of one engine:\n"
              "--parallel of them share each pass over the weights, the rest wait in a queue.\n"
              "SIGINT or SIGTERM: stop accepting, let running requests finish (--drain\n"
              "seconds at most), exit 0.\n\n"
              "  -m, --model FILE        GGUF model file, or a Hugging Face folder (converted\n"
            "                          once into the cache at the type --auto picks)\n"
              "      --host ADDR         address to listen on (default 127.0.0.1; 0.0.0.0\n"
              "                          or :: for every interface)\n"
              "      --port N            port (default 8080; 0: any free port, printed)\n"
              "      --api-key KEY       ask every request but /health for\n"
              "                          Authorization: Bearer KEY (401 otherwise)\n"
              "      --api-key-file F    the key from the first line of F\n"
              "  -np, --parallel N       requests served at once (default 4)\n"
              "      --queue N           requests waiting beyond those (default 64); more\n"
              "                          get 503 with Retry-After\n"
              "      --max-body SIZE     largest request body (default 8M); larger: 413\n"
              "      --drain SECONDS     after SIGINT or SIGTERM, how long running requests\n"
              "                          may go on (default 10); then they end with 503\n"
              "  -c, --ctx-size N        context shared by the N sequences, each gets\n"
              "                          N-th of it (default: the model's, at most 4096)\n"
              "  -b, --batch-size N      prompt tokens per run (default 512); greedy text\n"
              "                          equals `lamina run -b N`'s\n"
              REQUEST_DEFAULTS_HELP
              "      --lookup            speculative decoding per slot from n-grams of its\n"
              "                          prompt and output, checked in the shared passes\n"
              "      --draft-max N       most tokens a slot proposes a pass (default 16)\n"
              BACKEND_HELP
              "  -q, --quiet             no line per request on stderr\n"},
    {"devices", "Usage: lamina devices\n"
                "List the OpenCL platforms and devices, numbered as --device takes them.\n"},
    {"plan", "Usage: lamina plan -m MODEL [--ram SIZE] [--vram SIZE] [-c CTX] [-p N] [--json]\n"
             "Where each layer's weights will live and what a token will cost, without\n"
             "running: placement, MiB and predicted ms per layer, the memory totals, the\n"
             "predicted decode tokens/s and time to first token (after a prompt of N tokens,\n"
             "default 1), and the bottleneck.\n\n"
             "      --json              the plan as one JSON object\n"
             "  -md, --draft FILE       plan the model next to FILE kept resident as the draft\n"
             "                          of speculative decoding (its memory comes first)\n"
             BACKEND_HELP},
    {"info", "Usage: lamina info -m MODEL\n"
             "Architecture, hyperparameters and a summary of tensor types.\n"},
    {"convert",
     "Usage: lamina convert HF_DIR OUT.gguf [--type TYPE | --auto] [options]\n"
     "Convert a Hugging Face model folder (config.json, tokenizer.json,\n"
     "tokenizer_config.json, model.safetensors or its shards with their index) of a\n"
     "LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM model in F32, F16 or\n"
     "BF16 to GGUF, with the names, metadata and tokenizer llama.cpp's\n"
     "convert_hf_to_gguf.py writes. Tensors are converted one range of rows at a time:\n"
     "memory stays a few MiB whatever the model's size. Prints OUT on stdout.\n\n"
     "      --type TYPE         F16 (default), BF16, F32, or any type lamina quantize\n"
     "                          takes (made from an F16 file written first)\n"
     "      --auto              the type lamina quantize --auto picks for --ram\n"
     "      --ram SIZE          the budget --auto fits\n"
     "  -c, --ctx-size N        the context --auto counts the KV cache for\n"
     "  -t, --threads N         threads (default: all cores)\n"
     "  -q, --quiet             no progress on stderr\n"},
    {"quantize",
     "Usage: lamina quantize IN.gguf OUT.gguf TYPE [options]\n"
     "       lamina quantize IN.gguf OUT.gguf --auto [--ram SIZE] [-c N] [options]\n"
     "Rewrite a model with its matrices at TYPE: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,\n"
     "Q8_0, Q4_K, Q5_K, Q6_K, or llama.cpp's mixes Q4_K_S, Q5_K_S, Q4_K_M and Q5_K_M.\n"
     "Norms and the experts' router keep their type. As llama-quantize does, the output\n"
     "head takes Q6_K (Q8_0 where its width needs it), with 8 experts attn_k and attn_v\n"
     "take Q8_0, the _M mixes give Q6_K to attn_v and ffn_down in the first and last\n"
     "eighth of the layers and every third between, and Q4_K_S gives Q5_K to attn_v in\n"
     "the first 4 layers and ffn_down in the first eighth. A width a type cannot take\n"
     "falls back: Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, else F16. The output is the\n"
     "file llama-quantize writes, byte for byte. A quantized input is requantized (and\n"
     "said so). Prints OUT on stdout.\n\n"
     "  -t, --threads N         threads (default: all cores)\n"
     "      --auto              the best of F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0 whose\n"
     "                          model, KV cache and buffers fit --ram (none fits: Q4_0,\n"
     "                          the fastest to stream)\n"
     "      --ram SIZE          the budget --auto fits (default: available RAM less a\n"
     "                          margin)\n"
     "  -c, --ctx-size N        the context --auto counts the KV cache for (default:\n"
     "                          the model's, at most 4096)\n"
     "      --pure              every matrix at TYPE: no head or mix rules (the\n"
     "                          width fallback stays)\n"
     "  -q, --quiet             no progress on stderr\n"},
    {"synth", "Usage: lamina synth -o OUT.gguf --shape NAME [--type Q4_0] [options]\n"
              "Write a model with random weights (it runs, and its text means nothing), for\n"
              "tests and benchmarks at any size. Prints the path on stdout.\n\n"
              "  -o, --output FILE       the GGUF file to write\n"
              "      --shape NAME        tiny, smollm2-135m, 1b, 7b, 13b, 70b; with experts:\n"
              "                          moe-tiny, mixtral-8x7b, qwen3-30b-a3b\n"
              "      --arch A            llama (default), qwen2, qwen3, phi3, gemma3, or for\n"
              "                          the shapes with experts llama (Mixtral), qwen3moe\n"
              "                          or qwen2moe (with a shared expert)\n"
              "      --type T            type of every matrix, token_embd and output included:\n"
              "                          F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,\n"
              "                          Q5_K or Q6_K (default Q4_0; K types need widths that\n"
              "                          are multiples of 256)\n"
              "      --tokenizer-from M  copy the tokenizer (and vocabulary size) from model M\n"
              "                          (default $LAMINA_TEST_MODEL, else\n"
              "                          models/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
              "      --layers N          N layers instead of the shape's\n"
              "      --seed S            random seed (default 1; the same seed, the same file)\n"
              "  -q, --quiet             no progress on stderr\n"},
};

static int usage(const char *command)
{
    for (size_t i = 0; i < sizeof usages / sizeof *usages; i++)
        if (strcmp(usages[i].command, command) == 0)
            fputs(usages[i].usage, stdout);
    return 2;
}

int lm_cli_int(const char *option, const char *text, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        lm_set_error("invalid value '%s' for %s (an integer from %d to %d)", text, option, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_float(const char *option, const char *text, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= hi)) {
        lm_set_error("invalid value '%s' for %s (a number from %g to %g)", text, option, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seed(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-') {
        lm_set_error("invalid value '%s' for --seed (a non-negative integer)", text);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_one(lm_cli *o, int c, const char *arg)
{
    lm_sampler_params *sp = &o->sampling;
    switch (c) {
    case 'm': o->model = arg; return 0;
    case 'p': o->prompt = arg; return 0;
    case 'f': o->file = arg; return 0;
    case 'n': return lm_cli_int("-n", arg, -1, INT_MAX, &o->n_predict);
    case 't': return lm_cli_int("-t", arg, 1, 1024, &o->n_threads);
    case 'c': return lm_cli_int("-c", arg, 1, 1 << 24, &o->n_ctx);
    case 'b': return lm_cli_int("-b", arg, 1, 1 << 16, &o->n_batch);
    case OPT_PARALLEL: o->parallel_given = true; return lm_cli_int("--parallel", arg, 1, 4096, &o->n_parallel);
    case 'r': return lm_cli_int("-r", arg, 1, 1000, &o->repetitions);
    case 'q': o->quiet = true; return 0;
    case 'o': o->output = arg; return 0;
    case 'i': o->input = arg; return 0;
    case OPT_RESUME: o->resume = true; return 0;
    case OPT_DRAFT: o->draft = arg; return 0;
    case OPT_LOOKUP: o->lookup = true; return 0;
    case OPT_DRAFT_MAX: return lm_cli_int("--draft-max", arg, 1, LM_SPEC_MAX_DRAFT, &o->draft_max);
    case OPT_DRAFT_MIN: return lm_cli_int("--draft-min", arg, 0, LM_SPEC_MAX_DRAFT, &o->draft_min);
    case OPT_DRAFT_P_MIN: return parse_float("--draft-p-min", arg, 0.0f, 1.0f, &o->draft_p_min);
    case OPT_HOST: o->host = arg; return 0;
    case OPT_PORT: return lm_cli_int("--port", arg, 0, 65535, &o->port);
    case OPT_API_KEY: o->api_key = arg; return 0;
    case OPT_API_KEY_FILE: o->api_key_file = arg; return 0;
    case OPT_QUEUE: return lm_cli_int("--queue", arg, 1, 1 << 20, &o->queue);
    case OPT_MAX_BODY: return lm_parse_size(arg, &o->max_body);
    case OPT_DRAIN: return lm_cli_int("--drain", arg, 0, 86400, &o->drain_seconds);
    case OPT_SHAPE: o->shape = arg; return 0;
    case OPT_ARCH: o->arch = arg; return 0;
    case OPT_PURE: o->pure = true; return 0;
    case OPT_AUTO: o->auto_type = true; return 0;
    case OPT_TYPE: o->type = arg; return 0;
    case OPT_TOKENIZER_FROM: o->tokenizer_from = arg; return 0;
    case OPT_LAYERS: return lm_cli_int("--layers", arg, 1, 4096, &o->n_layers);
    case OPT_TEMP: return parse_float("--temp", arg, 0.0f, 100.0f, &sp->temp);
    case OPT_TOP_K: return lm_cli_int("--top-k", arg, 0, INT_MAX, &sp->top_k);
    case OPT_TOP_P: return parse_float("--top-p", arg, 0.0f, 1.0f, &sp->top_p);
    case OPT_MIN_P: return parse_float("--min-p", arg, 0.0f, 1.0f, &sp->min_p);
    case OPT_REPEAT_PENALTY:
        return parse_float("--repeat-penalty", arg, 0.01f, 100.0f, &sp->repeat_penalty);
    case OPT_REPEAT_LAST_N:
        return lm_cli_int("--repeat-last-n", arg, 0, 1 << 20, &sp->repeat_last_n);
    case OPT_SEED: o->seed_given = true; return parse_seed(arg, &sp->seed);
    case OPT_CHAT: o->chat = true; return 0;
    case OPT_CHAT_TEMPLATE: o->chat_template = arg; return 0;
    case OPT_STATS_JSON: o->stats_json = arg; return 0;
    case OPT_JSON: o->json = true; return 0;
    case OPT_IDS: o->print_ids = true; return 0;
    case OPT_CHUNKS: return lm_cli_int("--chunks", arg, 1, INT_MAX, &o->n_chunks);
    case OPT_NO_BOS: o->no_bos = true; return 0;
    case OPT_NO_PARSE_SPECIAL: o->no_parse_special = true; return 0;
    case OPT_BACKEND:
        if (strcmp(arg, "cpu") && strcmp(arg, "opencl") && strcmp(arg, "auto")) {
            lm_set_error("invalid value '%s' for --backend (cpu, opencl or auto)", arg);
            return -1;
        }
        o->backend = arg;
        return 0;
    case OPT_DEVICE: o->device = arg; return 0;
    case OPT_PROFILE: o->profile = true; return 0;
    case OPT_RAM: return lm_parse_size(arg, &o->ram_budget);
    case OPT_VRAM: return lm_parse_size(arg, &o->vram_budget);
    case OPT_NO_PREFETCH: o->no_prefetch = true; return 0;
    case OPT_WHOLE_LAYERS: o->whole_layers = true; return 0;
    case OPT_EXPERT_CACHE: return lm_parse_size(arg, &o->expert_cache);
    case OPT_EXPERT_EVICT:
        if (strcmp(arg, "recent") != 0 && strcmp(arg, "frequent") != 0 &&
            strcmp(arg, "auto") != 0) {
            lm_set_error("--expert-evict: '%s' is neither recent nor frequent (nor auto)", arg);
            return -1;
        }
        o->evict_frequent = strcmp(arg, "frequent") == 0;
        o->evict_auto = strcmp(arg, "auto") == 0;
        return 0;
    case OPT_REPROBE: o->reprobe = true; return 0;
    case OPT_RAM_LAYERS: return lm_cli_int("--ram-layers", arg, 0, 1 << 20, &o->ram_layers);
    case OPT_GPU_LAYERS: return lm_cli_int("--gpu-layers", arg, 0, 1 << 20, &o->gpu_layers);
    }
    return -1;
}

/* -m (which 0) or --draft (1) naming a Hugging Face folder becomes its
 * cached conversion (hf_model.h); kept here so that it lives as long as the
 * program.  0, or -1 with lm_set_error. */
static char *resolved_folders[2];

static int resolve_folder(lm_cli *o, const char **path, int which)
{
    if (!lm_hf_model_is_folder(*path))
        return 0;
    if (o->n_threads > 0)
        omp_set_num_threads(o->n_threads);
    const lm_hf_model_params p = {.ram_budget = o->ram_budget, .n_ctx = o->n_ctx,
                                  .n_batch = o->n_batch, .quiet = o->quiet};
    char *gguf = lm_hf_model_path(*path, &p);
    if (!gguf)
        return -1;
    if (which == 0)
        o->model_folder = *path;
    free(resolved_folders[which]);
    resolved_folders[which] = gguf;
    *path = gguf;
    return 0;
}

int lm_cli_parse(lm_cli *o, const char *command, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->n_predict = LM_CLI_UNSET;
    o->n_batch = 512;
    o->n_parallel = 1;
    o->n_chunks = -1;
    o->ram_layers = -1;
    o->evict_auto = true;
    o->gpu_layers = -1;
    o->repetitions = 3;
    const lm_spec_params spec = lm_spec_default_params();
    o->draft_max = spec.draft_max;
    o->draft_min = spec.draft_min;
    o->draft_p_min = -1; /* not given: adaptive, from spec.draft_p_min */
    o->host = "127.0.0.1";
    o->port = 8080;
    o->queue = 64;
    o->max_body = 8u << 20;
    o->drain_seconds = 10;
    o->sampling = lm_sampler_default_params();
    /* llama.cpp's -ngl and -np are not getopt short options (they would read
     * as -n gl, -n p) */
    static char gpu_layers_long[] = "--gpu-layers", parallel_long[] = "--parallel",
                draft_long[] = "--draft";
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-ngl") == 0)
            argv[i] = gpu_layers_long;
        else if (strcmp(argv[i], "-np") == 0)
            argv[i] = parallel_long;
        else if (strcmp(argv[i], "-md") == 0)
            argv[i] = draft_long;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:p:f:n:t:c:b:r:o:i:qh", long_options, NULL)) != -1) {
        if (c == 'h')
            return usage(command);
        if (c == '?' || c == ':') {
            const char *what = c == '?' ? "unknown option" : "missing value for option";
            if (optopt)
                fprintf(stderr, "lamina %s: %s '-%c' (see lamina %s --help)\n", command, what,
                        optopt, command);
            else
                fprintf(stderr, "lamina %s: %s '%s' (see lamina %s --help)\n", command, what,
                        argv[optind - 1], command);
            return 1;
        }
        if (parse_one(o, c, optarg) != 0) {
            fprintf(stderr, "lamina %s: %s\n", command, lm_last_error());
            return 1;
        }
    }
    o->n_positional = argc - optind;
    o->positional = argv + optind;
    if (resolve_folder(o, &o->model, 0) != 0 || resolve_folder(o, &o->draft, 1) != 0) {
        fprintf(stderr, "lamina %s: %s\n", command, lm_last_error());
        return 1;
    }
    return 0;
}

int lm_cli_fail(void)
{
    fprintf(stderr, "lamina: %s\n", lm_last_error());
    return 1;
}

lm_model *lm_cli_load_model(const lm_cli *o)
{
    if (!o->model) {
        lm_set_error("no model given (use -m MODEL.gguf)");
        return NULL;
    }
    if (o->n_threads > 0)
        omp_set_num_threads(o->n_threads);
    double t0 = lm_now_seconds();
    lm_model *m = lm_model_load(o->model);
    if (!m)
        return NULL;
    if (!o->quiet) {
        const lm_hparams *hp = &m->hp;
        fprintf(stderr,
                "lamina: %s: %s, %u layers, %u embd, %u/%u heads, %u vocab, %.1f MiB, "
                "loaded in %.0f ms, %d threads\n",
                o->model, hp->arch_name, hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv,
                hp->n_vocab, (double)m->weight_bytes / (1024.0 * 1024.0),
                (lm_now_seconds() - t0) * 1e3, omp_get_max_threads());
    }
    return m;
}

/* The engine parameters these options give. */
static lm_engine_params engine_params(const lm_cli *o, int n_ctx, int n_batch, int n_prompt)
{
    lm_engine_params p = lm_engine_default_params();
    p.n_ctx = n_ctx;
    p.n_seq = o->n_parallel > 0 ? o->n_parallel : 1;
    p.n_batch = n_batch;
    p.n_prompt = n_prompt;
    p.backend = o->backend;
    p.device = o->device;
    p.gpu_layers = o->gpu_layers;
    p.ram_budget = o->ram_budget;
    p.vram_budget = o->vram_budget;
    p.ram_layers = o->ram_layers;
    p.no_prefetch = o->no_prefetch;
    p.whole_layers = o->whole_layers;
    p.expert_cache = o->expert_cache;
    p.evict_frequent = o->evict_frequent;
    p.evict_auto = o->evict_auto;
    p.reprobe = o->reprobe;
    p.quiet = o->quiet;
    return p;
}

int lm_cli_plan(const lm_cli *o, const lm_model *m, int n_ctx, int n_batch, int n_prompt,
                lm_plan *plan)
{
    const lm_engine_params p = engine_params(o, n_ctx, n_batch, n_prompt);
    return lm_engine_plan(m, &p, plan);
}

lm_session *lm_cli_session(const lm_cli *o, const lm_model *m, int n_ctx, int n_batch)
{
#ifdef LAMINA_OPENCL
    lm_backend_opencl_profile(o->profile);
#endif
    const lm_engine_params p = engine_params(o, n_ctx, n_batch, 1);
    return lm_engine_open(m, &p);
}

void lm_cli_print_profile(const lm_cli *o, const lm_session *s, FILE *f)
{
    if (!o->profile || !s->plan.place || s->passes == 0)
        return;
    fprintf(f, "lamina: per layer, measured (all passes / %llu) vs predicted for one token:\n",
            (unsigned long long)s->passes);
    for (int il = 0; il < s->plan.n_layer; il++)
        fprintf(f, "lamina:   layer %3d  %8.3f ms measured  %8.3f ms predicted\n", il,
                s->layer_seconds[il] * 1e3 / (double)s->passes, s->plan.layer_ms[il]);
}

const char *lm_cli_model_name(const lm_cli *o)
{
    if (o->model_folder) {
        static char name[256];
        return lm_hf_folder_name(o->model_folder, name, sizeof name);
    }
    const char *slash = strrchr(o->model, '/');
    return slash ? slash + 1 : o->model;
}

int lm_cli_context(const lm_cli *o, const lm_model *m)
{
    if (o->n_ctx > 0)
        return o->n_ctx;
    return m->hp.n_ctx_train < 4096 ? (int)m->hp.n_ctx_train : 4096;
}

char *lm_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lm_set_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *grown = cap > ((size_t)1 << 31) ? NULL : realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        lm_set_error("%s: cannot read the file", path);
        return NULL;
    }
    /* Prompts travel as C strings (chat templates, the tokenizer's callers):
     * a NUL would cut the text without a word, so refuse the file instead. */
    const char *nul = memchr(buf, '\0', n);
    if (nul) {
        lm_set_error("%s: holds a NUL byte at offset %zu; lamina reads text files",
                     path, (size_t)(nul - buf));
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int lm_cli_chat_format(const lm_cli *o, const lm_model *m, int *format, char **template_text)
{
    lm_gguf_str tmpl;
    *template_text = NULL;
    if (lm_gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl) == 0) {
        *template_text = strndup(tmpl.data, tmpl.len);
        if (!*template_text) {
            lm_set_error("out of memory");
            return -1;
        }
    }
    if (o->chat_template) {
        *format = lm_chat_format_from_name(o->chat_template);
        if (*format == LM_CHAT_UNKNOWN) {
            lm_set_error("unknown chat template '%s' (chatml, llama2, llama3, mistral)",
                         o->chat_template);
            return -1;
        }
        return 0;
    }
    *format = lm_chat_detect(*template_text);
    if (*format == LM_CHAT_UNKNOWN) {
        lm_set_error("%s: the model has no chat template lamina knows; use --chat-template NAME",
                     o->model);
        free(*template_text);
        *template_text = NULL;
        return -1;
    }
    return 0;
}
