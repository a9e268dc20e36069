#!/bin/sh
# The command line: help and version, and every kind of bad input giving one
# line on stderr and exit status 1 (never a crash), on a model the test
# writes itself.
set -u
: "${LAMINA:?}" "${MAKE_TEST_MODEL:?}"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect_error "what" "stderr substring" command...
expect_error() {
    what=$1 want=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -ne 1 ]; then bad "$what: exit $rc, expected 1 ($(head -c 300 "$tmp/err"))"
    elif [ "$lines" -ne 1 ]; then bad "$what: $lines lines on stderr: $(head -c 300 "$tmp/err")"
    elif ! grep -q -- "$want" "$tmp/err"; then bad "$what: stderr lacks '$want': $(cat "$tmp/err")"
    else ok; fi
}

expect_ok() {
    what=$1; shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then ok; else bad "$what: exit $? ($(head -c 300 "$tmp/err"))"; fi
}

model=$tmp/tiny.gguf
"$MAKE_TEST_MODEL" "$model" llama Q8_0 || { echo "cannot write the test model"; exit 1; }

expect_ok "--version" "$LAMINA" --version
grep -q '^lamina [0-9]' "$tmp/out" && ok || bad "--version prints 'lamina X.Y.Z'"
expect_ok "--help" "$LAMINA" --help
grep -q 'Usage: lamina COMMAND' "$tmp/out" && ok || bad "--help prints usage"
expect_ok "run --help" "$LAMINA" run --help
expect_error "no command" "Usage" "$LAMINA"
expect_error "unknown command" "unknown command 'frobnicate'" "$LAMINA" frobnicate
expect_error "unknown option" "unknown option" "$LAMINA" run --frobnicate
expect_error "bad -n" "invalid value 'abc' for -n" "$LAMINA" run -m "$model" -p x -n abc
expect_error "bad -t" "invalid value '0' for -t" "$LAMINA" run -m "$model" -p x -t 0
expect_error "bad --temp" "invalid value" "$LAMINA" run -m "$model" -p x --temp hot
expect_error "no model" "no model given" "$LAMINA" run -p hello
expect_error "no prompt" "no prompt given" "$LAMINA" run -m "$model"
expect_error "missing file" "No such file or directory" "$LAMINA" run -m "$tmp/nope.gguf" -p x
expect_error "missing prompt file" "nope.txt" "$LAMINA" run -q -m "$model" -f "$tmp/nope.txt"

printf 'not a model at all, just text\n' >"$tmp/text.gguf"
expect_error "not GGUF" "text.gguf" "$LAMINA" info -m "$tmp/text.gguf"
: >"$tmp/empty.gguf"
expect_error "empty file" "empty.gguf" "$LAMINA" info -m "$tmp/empty.gguf"
size=$(wc -c <"$model")
for cut in 3 24 100 1000 $((size / 2)) $((size - 1)); do
    head -c "$cut" "$model" >"$tmp/cut.gguf"
    expect_error "truncated at $cut" "cut.gguf" "$LAMINA" info -m "$tmp/cut.gguf"
done

expect_error "prompt longer than context" "longer than the context" \
    "$LAMINA" run -q -m "$model" -p "ab ab ab ab ab ab ab ab ab ab" -c 4
expect_error "chat without template" "chat template" "$LAMINA" run -q -m "$model" -p x --chat
expect_error "perplexity without file" "no text file" "$LAMINA" perplexity -m "$model"
printf 'ab' >"$tmp/short.txt"
expect_error "perplexity on a short text" "fewer than one window" \
    "$LAMINA" perplexity -q -m "$model" -f "$tmp/short.txt" -c 64
expect_error "tokenize without text" "exactly one TEXT" "$LAMINA" tokenize -m "$model"

# info describes a model lamina cannot run, and says so; run refuses it
"$MAKE_TEST_MODEL" "$tmp/falcon.gguf" falcon Q8_0
expect_ok "info on an architecture lamina does not run" "$LAMINA" info -m "$tmp/falcon.gguf"
grep -q '^architecture: *falcon$' "$tmp/out" && grep -q '^layers: *2$' "$tmp/out" &&
    grep -q "^lamina runs it: no: .*unsupported architecture 'falcon'" "$tmp/out" &&
    grep -q '^  Q8_0 ' "$tmp/out" && ok || bad "info on falcon: $(cat "$tmp/out")"
expect_error "run on an unsupported architecture" "unsupported architecture 'falcon'" \
    "$LAMINA" run -m "$tmp/falcon.gguf" -p x

# info reads a Hugging Face safetensors file (tests/fixtures/hf-tiny.safetensors,
# written by the safetensors library) and refuses a cut one in one line
expect_ok "info on a safetensors file" "$LAMINA" info -m "$FIXTURES/hf-tiny.safetensors"
grep -q '^tensors: *4,' "$tmp/out" && grep -q '^format: *pt$' "$tmp/out" &&
    grep -q '^  F16  *2 tensors' "$tmp/out" && grep -q '^  F32  *2 tensors' "$tmp/out" &&
    grep -q '^lamina runs it: no' "$tmp/out" && ok || bad "info on safetensors: $(cat "$tmp/out")"
head -c 1000 "$FIXTURES/hf-tiny.safetensors" >"$tmp/cut.safetensors"
expect_error "a cut safetensors file" "after the last tensor\|not \[begin, end\]" \
    "$LAMINA" info -m "$tmp/cut.safetensors"

# hostile input (issue 8): a FIFO named as the model is refused, not waited
# on; strings from a model file reach the terminal without control bytes;
# prompt files and chat lines holding a NUL are refused, not cut short
mkfifo "$tmp/fifo.gguf"
expect_error "a FIFO as the model" "not a regular file" timeout 10 "$LAMINA" info -m "$tmp/fifo.gguf"
has_controls() { LC_ALL=C grep -q "$(printf '[\001-\010\013-\037\177]')" "$@"; }
"$MAKE_TEST_MODEL" "$tmp/evil.gguf" llama Q8_0 "$(printf 'evil\033]0;pwned\007\033[31mred\302\233')"
expect_ok "info on a model with a hostile name" "$LAMINA" info -m "$tmp/evil.gguf"
grep -q '^name: *evil?]0;pwned??\[31mred?$' "$tmp/out" && ! has_controls "$tmp/out" && ok ||
    bad "info printed the name's control bytes: $(od -c "$tmp/out" | head -5)"
"$MAKE_TEST_MODEL" "$tmp/evil2.gguf" "$(printf 'fal\033[2Jcon\nx')" Q8_0
expect_error "hostile architecture name" "unsupported architecture 'fal?\[2Jcon?x'" \
    "$LAMINA" run -m "$tmp/evil2.gguf" -p x
! has_controls "$tmp/err" && ok || bad "an error message carried control bytes: $(od -c "$tmp/err" | head -5)"
expect_ok "info on a hostile architecture name" "$LAMINA" info -m "$tmp/evil2.gguf"
grep -q "^architecture: *fal?\[2Jcon?x$" "$tmp/out" && ! has_controls "$tmp/out" && ok ||
    bad "info printed the architecture's control bytes: $(od -c "$tmp/out" | head -5)"
# synth writes every architecture lamina runs, and each runs
for arch in qwen2 qwen3 phi3 gemma3; do
    expect_ok "synth --arch $arch" "$LAMINA" synth -q -o "$tmp/synth-$arch.gguf" --shape tiny \
        --layers 2 --type Q8_0 --arch "$arch" --tokenizer-from "$model"
    expect_ok "run on synth $arch" "$LAMINA" run -q -m "$tmp/synth-$arch.gguf" -p ab -n 4 --temp 0
    expect_ok "info on synth $arch" "$LAMINA" info -m "$tmp/synth-$arch.gguf"
    grep -q "^architecture: *$arch\$" "$tmp/out" && grep -q '^lamina runs it: yes' "$tmp/out" && ok ||
        bad "info on synth $arch: $(cat "$tmp/out")"
done
# mixtures of experts: Mixtral's layout, qwen3moe and qwen2moe run (on the CPU)
for arch in llama qwen3moe qwen2moe; do
    expect_ok "synth moe-tiny --arch $arch" "$LAMINA" synth -q -o "$tmp/moe-$arch.gguf" \
        --shape moe-tiny --layers 2 --type Q8_0 --arch "$arch" --tokenizer-from "$model"
    expect_ok "run on moe-tiny $arch" "$LAMINA" run -q -m "$tmp/moe-$arch.gguf" -p ab -n 4 --temp 0
    expect_ok "info on moe-tiny $arch" "$LAMINA" info -m "$tmp/moe-$arch.gguf"
    grep -q '^experts: *8 (2 used' "$tmp/out" && ok || bad "info on moe-tiny $arch: $(cat "$tmp/out")"
done
expect_error "synth experts with a dense architecture" "has experts" \
    "$LAMINA" synth -q -o "$tmp/x.gguf" --shape moe-tiny --arch qwen3 --tokenizer-from "$model"
expect_error "synth --arch unknown" "unknown architecture 'falcon'" \
    "$LAMINA" synth -q -o "$tmp/x.gguf" --shape tiny --arch falcon --tokenizer-from "$model"
printf 'ab \000cd' >"$tmp/nul.txt"
expect_error "prompt file with a NUL" "NUL byte at offset 3" "$LAMINA" run -q -m "$model" -f "$tmp/nul.txt"
printf 'ab\000cd\nab\n' >"$tmp/chat-nul.in"
"$LAMINA" chat -m "$model" --chat-template chatml -n 2 --seed 1 -q <"$tmp/chat-nul.in" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -q 'NUL byte' "$tmp/err" && [ "$(wc -l <"$tmp/out")" -eq 1 ] && ok ||
    bad "chat with a NUL line: exit $rc, $(wc -l <"$tmp/out") replies, $(cat "$tmp/err")"

# the things that work
expect_ok "info" "$LAMINA" info -m "$model"
grep -q 'architecture:   llama' "$tmp/out" && ok || bad "info shows the architecture"
expect_ok "tokenize" "$LAMINA" tokenize -m "$model" "ab ab"
[ "$(cat "$tmp/out")" = "54 56" ] && ok || bad "tokenize 'ab ab' gave '$(cat "$tmp/out")'"
expect_ok "run greedy" "$LAMINA" run -m "$model" -p "ab" -n 8 --temp 0 --stats-json "$tmp/stats.json"
for key in prompt_tokens_per_s decode_tokens_per_s time_to_first_token_s peak_rss_bytes; do
    grep -q "\"$key\"" "$tmp/stats.json" && ok || bad "stats JSON lacks $key"
done
grep -q 'decode:.*tokens/s' "$tmp/err" && ok || bad "run prints decode tokens/s on stderr"
"$LAMINA" run -m "$model" -p "ab" -n 8 --temp 0 -q >"$tmp/a" 2>/dev/null
"$LAMINA" run -m "$model" -p "ab" -n 8 --temp 0 -q -t 1 >"$tmp/b" 2>/dev/null
cmp -s "$tmp/a" "$tmp/b" && ok || bad "greedy output differs between 1 and 2 threads"
"$LAMINA" run -m "$model" -p "ab" -n 8 --seed 7 -q >"$tmp/a" 2>/dev/null
"$LAMINA" run -m "$model" -p "ab" -n 8 --seed 7 -q >"$tmp/b" 2>/dev/null
cmp -s "$tmp/a" "$tmp/b" && ok || bad "the same --seed gives different text"
expect_ok "bench --json" "$LAMINA" bench -m "$model" -p 8 -n 4 -r 1 --json
for key in prompt_tokens_per_s decode_tokens_per_s decode_weight_bytes_per_s ram_bandwidth_bytes_per_s; do
    grep -q "\"$key\"" "$tmp/out" && ok || bad "bench JSON lacks $key"
done
expect_ok "bench --parallel 4" "$LAMINA" bench -m "$model" -p 8 -n 4 -r 1 --json -np 4 --backend cpu
grep -q '"parallel": 4, ' "$tmp/out" && grep -q '"decode_tokens_per_s": [1-9]' "$tmp/out" && ok ||
    bad "bench --parallel 4 JSON: $(cat "$tmp/out")"
expect_ok "plan --parallel 8" "$LAMINA" plan -m "$model" -c 256 -np 8 --backend cpu
grep -q '^predicted with 8 sequences: .* tokens/s decode in all' "$tmp/out" && ok ||
    bad "plan --parallel 8 predicts batched decode: $(cat "$tmp/out")"
expect_error "--parallel larger than the context" "cannot be shared among 64 sequences" \
    "$LAMINA" run -q -m "$model" -p ab -c 32 -np 64
yes "ab cd ef ab Ab xyz 12 ab" | head -c 3000 >"$tmp/noise.txt"
expect_ok "perplexity" "$LAMINA" perplexity -m "$model" -f "$tmp/noise.txt" -c 32 --chunks 2
tail -n 1 "$tmp/out" | grep -q '^perplexity: [0-9.]*$' && ok || bad "perplexity's last line"

# the plan, and runs that follow other plans, give the same text (the CPU's
# streaming: --backend cpu, so that no device the planner might pick can
# change the placements these check)
expect_ok "plan" "$LAMINA" plan -m "$model" -c 64
grep -q '^bottleneck: ' "$tmp/out" && ok || bad "plan names the bottleneck"
expect_ok "plan --json" "$LAMINA" plan -m "$model" -c 64 --ram-layers 1 --json --backend cpu
for key in predicted_decode_tokens_per_s predicted_time_to_first_token_ms ram_budget_bytes bottleneck; do
    grep -q "\"$key\"" "$tmp/out" && ok || bad "plan JSON lacks $key"
done
grep -q '"placement": "disk"' "$tmp/out" && ok || bad "--ram-layers 1 streams the other layer"
"$LAMINA" run -m "$model" -p "ab ab" -n 8 --temp 0 --ids -q -c 64 >"$tmp/a" 2>/dev/null
for how in "--ram-layers 0" "--ram-layers 1" "--ram-layers 0 --no-prefetch"; do
    how="$how --backend cpu"
    # shellcheck disable=SC2086
    "$LAMINA" run -m "$model" -p "ab ab" -n 8 --temp 0 --ids -q -c 64 $how >"$tmp/b" 2>"$tmp/err"
    cmp -s "$tmp/a" "$tmp/b" && ok || bad "run $how differs: $(cat "$tmp/b" "$tmp/err")"
done
expect_ok "bench streamed, --profile" "$LAMINA" bench -m "$model" -p 4 -n 4 -r 1 -c 64 --ram-layers 1 \
    --profile --backend cpu
grep -q '^overlap (decode, per token): .* I/O thread .* compute ' "$tmp/out" && ok ||
    bad "bench reports the streamer's reads against compute"
grep -q 'layer   1 .* ms measured .* ms predicted' "$tmp/err" && ok || bad "--profile prints ms per layer"
expect_error "RAM budget too small" "at least" "$LAMINA" run -q -m "$model" -p ab --ram 10M
expect_ok "-ngl 0 runs on the CPU" "$LAMINA" run -m "$model" -p ab -n 2 --temp 0 -ngl 0
grep -q "0 on the device" "$tmp/err" && ok || bad "-ngl 0 put layers on the device: $(cat "$tmp/err")"
expect_error "--gpu-layers with --backend cpu" "asks for the device, --backend cpu for none" \
    "$LAMINA" run -q -m "$model" -p ab --backend cpu --gpu-layers 2
expect_error "bad --ram" "invalid size" "$LAMINA" plan -m "$model" --ram lots

# a model several times larger than the RAM budget: streamed, inside it
"$LAMINA" synth -o "$tmp/big.gguf" --shape 1b --layers 16 --type Q4_0 --tokenizer-from "$model" -q \
    >/dev/null 2>"$tmp/err" || bad "synth of the streaming model: $(cat "$tmp/err")"
budget=$((160 * 1024 * 1024))
size=$(wc -c <"$tmp/big.gguf")
[ "$size" -gt $((3 * budget)) ] && ok || bad "the streaming model ($size bytes) is not 3x the budget"
expect_ok "run over budget" "$LAMINA" run -m "$tmp/big.gguf" -p "ab ab" -n 4 --temp 0 -c 64 --ram 160M \
    --backend cpu --stats-json "$tmp/stats.json"
grep -q 'streamed from disk' "$tmp/err" && ok || bad "the plan summary says layers are streamed"
rss=$(sed 's/.*"peak_rss_bytes": \([0-9]*\).*/\1/' "$tmp/stats.json")
if [ -n "${LAMINA_SANITIZED:-}" ]; then
    echo "peak RSS not checked under the sanitizers (their shadow memory is not lamina's): $rss"
else
    [ "$rss" -gt 0 ] && [ "$rss" -lt "$budget" ] && ok || bad "peak RSS $rss is not inside the budget $budget"
fi
rm -f "$tmp/big.gguf"

printf 'ab ab\nAb\n/exit\nnot read\n' >"$tmp/chat.in"
"$LAMINA" chat -m "$model" --chat-template chatml -n 4 --seed 1 -q <"$tmp/chat.in" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && [ "$(wc -l <"$tmp/out")" -eq 2 ] && ok || bad "chat: exit $rc, $(wc -l <"$tmp/out") reply lines: $(cat "$tmp/err")"

# synth: random-weight models at a chosen shape and type, with the test
# model's tokenizer (64 tokens), that the other commands run
synth() { "$LAMINA" synth -q --tokenizer-from "$model" "$@"; }
expect_ok "synth tiny" synth -o "$tmp/s.gguf" --shape tiny --type Q4_0
[ "$(cat "$tmp/out")" = "$tmp/s.gguf" ] && ok || bad "synth prints the path: $(cat "$tmp/out")"
expect_ok "info on a synth model" "$LAMINA" info -m "$tmp/s.gguf"
grep -q '^layers: *4$' "$tmp/out" && grep -q '^vocabulary: *64$' "$tmp/out" &&
    grep -q '^name: *lamina synthetic tiny$' "$tmp/out" && ok || bad "synth model info: $(cat "$tmp/out")"
expect_ok "run on a synth model" "$LAMINA" run -q -m "$tmp/s.gguf" -p "ab" -n 4 --temp 0
expect_ok "synth Q4_K, 1 layer" synth -o "$tmp/k.gguf" --shape tiny --type q4_k --layers 1 --seed 5
"$LAMINA" info -m "$tmp/k.gguf" >"$tmp/info" 2>&1
grep -q '^layers: *1$' "$tmp/info" && grep -q 'Q4_K' "$tmp/info" && ok ||
    bad "synth --layers 1 --type q4_k: $(cat "$tmp/info")"
expect_ok "run on a Q4_K synth model" "$LAMINA" run -q -m "$tmp/k.gguf" -p "ab" -n 4 --seed 1
synth -o "$tmp/k2.gguf" --shape tiny --type Q4_K --layers 1 --seed 5 >/dev/null 2>&1
cmp -s "$tmp/k.gguf" "$tmp/k2.gguf" && ok || bad "synth: the same seed gives a different file"
expect_error "synth unknown shape" "unknown shape 'huge' (tiny, smollm2-135m, 1b, 7b, 13b, 70b, moe-tiny, mixtral-8x7b, qwen3-30b-a3b)" \
    synth -o "$tmp/x.gguf" --shape huge
expect_error "synth unknown type" "unknown type 'Q3_K' for --type (F32, F16, Q4_0" \
    synth -o "$tmp/x.gguf" --shape tiny --type Q3_K
expect_error "synth K-quant on 576 wide" "multiples of 256, and shape 'smollm2-135m' has embedding 576" \
    synth -o "$tmp/x.gguf" --shape smollm2-135m --type Q4_K
expect_error "synth without a shape" "no shape given" synth -o "$tmp/x.gguf"
expect_error "synth without -o" "no output file" synth --shape tiny
expect_error "synth, bad tokenizer source" "nope.gguf" \
    "$LAMINA" synth -o "$tmp/x.gguf" --shape tiny --tokenizer-from "$tmp/nope.gguf"
expect_error "synth, unwritable path" "$tmp/no/dir/x.gguf: No such file" \
    synth -o "$tmp/no/dir/x.gguf" --shape tiny
# a write that fails part way (past a 64 KiB file size limit) leaves no file
expect_error "synth, write fails" "write failed" \
    sh -c 'ulimit -f 128 && trap "" XFSZ && exec "$@"' sh \
    "$LAMINA" synth -q --tokenizer-from "$model" -o "$tmp/x.gguf" --shape tiny
[ ! -e "$tmp/x.gguf" ] && ok || bad "synth left a partial file"
ls "$tmp" | grep -q 'x.gguf.tmp' && bad "a failed synth left its temporary file" || ok
# ... nor damages a good file of that name
synth -o "$tmp/x.gguf" --shape tiny --layers 1 >/dev/null 2>&1 && cp "$tmp/x.gguf" "$tmp/x.keep"
expect_error "synth over a good file, write fails" "write failed: File too large" \
    sh -c 'ulimit -f 128 && trap "" XFSZ && exec "$@"' sh \
    "$LAMINA" synth -q --tokenizer-from "$model" -o "$tmp/x.gguf" --shape tiny
cmp -s "$tmp/x.gguf" "$tmp/x.keep" && ok || bad "a failed synth damaged the file it was to replace"
# a kill part way leaves no file under the final name
synth -o "$tmp/killed.gguf" --shape 1b --layers 4 --type Q8_0 >/dev/null 2>&1 &
pid=$!
i=0
until ls "$tmp" | grep -q 'killed.gguf.tmp' || [ "$i" -ge 200 ]; do sleep 0.05; i=$((i + 1)); done
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
[ "$i" -lt 200 ] && [ ! -e "$tmp/killed.gguf" ] && ok || bad "synth killed part way left $tmp/killed.gguf"

# probes taken while other processes hold the cores are not cached: two busy
# loops, a fresh cache, and no LAMINA_PROBE_TRUST (the suite sets it)
mkdir -p "$tmp/quiet-cache"
sh -c 'while :; do :; done' & busy1=$!
sh -c 'while :; do :; done' & busy2=$!
env -u LAMINA_PROBE_TRUST XDG_CACHE_HOME="$tmp/quiet-cache" "$LAMINA" plan -m "$model" \
    --backend cpu >/dev/null 2>"$tmp/err"
kill "$busy1" "$busy2"; wait "$busy1" "$busy2" 2>/dev/null
grep -q 'warning: other processes kept .* cores busy while the probes ran' "$tmp/err" && ok ||
    bad "probes under load: no warning: $(cat "$tmp/err")"
[ ! -s "$tmp/quiet-cache/lamina/probes" ] && ok || bad "probes under load were cached"

# runs teach the planner: after two runs the plan of the same shape is
# corrected by what they measured (learned_runs), and --reprobe sets it aside
mkdir -p "$tmp/learn-cache"
for i in 1 2; do
    XDG_CACHE_HOME="$tmp/learn-cache" "$LAMINA" run -q -m "$model" -p "ab" -n 16 --temp 0 \
        --backend cpu >/dev/null 2>&1 || bad "run $i for learning"
done
learned() {
    XDG_CACHE_HOME="$tmp/learn-cache" "$LAMINA" plan -m "$model" --backend cpu --json "$@" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["learned_runs"], d["learned_factor"] > 0)'
}
[ "$(learned)" = "2 True" ] && ok || bad "plan after two runs: learned '$(learned)', want '2 True'"
[ "$(learned --reprobe)" = "0 True" ] && ok || bad "plan --reprobe: learned '$(learned --reprobe)'"
XDG_CACHE_HOME="$tmp/learn-cache" "$LAMINA" plan -m "$model" --backend cpu |
    grep -q 'corrected by the last 2 measured runs' && ok || bad "plan does not say it was corrected"
# a run with --reprobe starts every figure afresh: its own value alone
XDG_CACHE_HOME="$tmp/learn-cache" "$LAMINA" run -q -m "$model" -p "ab" -n 16 --temp 0 \
    --backend cpu --reprobe >/dev/null 2>&1 || bad "run --reprobe for learning"
values=$(grep '^figure=cpu_layer' "$tmp/learn-cache/lamina/learned" | tail -1 | cut -f2 | wc -w)
[ "$values" -eq 1 ] && ok || bad "after run --reprobe the CPU layer figure keeps $values values, want 1"

# a poisoned cached figure is corrected by one run: the probes' layer and
# head times made 10x too fast, then 50x too slow (a later line wins).  (Not
# 50x too fast: the test model's layer takes microseconds, and on a loaded
# machine one lost time slice spread over the run's passes put the measured
# factor past the 1000x that plan_learn.c takes for a broken clock, so
# nothing was learned.)
poison() { # factor: the first (measured) probes line, its layer= times scaled
    python3 - "$tmp/poison-cache/lamina/probes" "$1" <<'PY'
import sys
path, f = sys.argv[1], float(sys.argv[2])
key, value = open(path).read().splitlines()[0].split("\t")
head, layer = value.split(" layer=")
times = ",".join("%.6f" % (float(t) * f) for t in layer.split(","))
open(path, "a").write("%s\t%s layer=%s\n" % (key, head, times))
PY
}
figures() {
    XDG_CACHE_HOME="$tmp/poison-cache" "$LAMINA" plan -m "$model" --backend cpu --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); f=d["figures"]; print(f["cpu_layer"]["learned_factor"], f["cpu_head"]["learned_factor"], d["predicted_decode_tokens_per_s"] / d["probe_predicted_decode_tokens_per_s"])'
}
mkdir -p "$tmp/poison-cache"
XDG_CACHE_HOME="$tmp/poison-cache" "$LAMINA" plan -m "$model" --backend cpu >/dev/null 2>&1
for f in 0.1 50; do
    rm -f "$tmp/poison-cache/lamina/learned"
    poison "$f"
    XDG_CACHE_HOME="$tmp/poison-cache" "$LAMINA" run -q -m "$model" -p "ab" -n 16 --temp 0 \
        --backend cpu >/dev/null 2>&1 || bad "run after poisoning by $f"
    got=$(figures)
    # too fast: the run measured layers and head several times slower, and
    # the plan predicts several times fewer tokens/s; too slow: the reverse.
    # (Under the sanitizers, beside another test, the test model's head --
    # microseconds a token -- once timed 50x its probe: its factor is not
    # checked there.)
    echo "$got" | python3 -c 'import sys; l, h, r = map(float, sys.stdin.read().split()); fast = sys.argv[1] == "0.1"; h = (4.1 if fast else 0.2) if sys.argv[2] else h; sys.exit(0 if (l > 4 and h > 4 and r < 0.25 if fast else l < 0.25 and h < 0.25 and r > 4) else 1)' "$f" "${LAMINA_SANITIZED:-}" &&
        ok || bad "poisoned x$f: learned layer, head factors and predicted/probe-predicted: $got"
done

# batched passes teach the figures too (three sequences a pass, no pass of
# one token alone)
mkdir -p "$tmp/batch-cache"
for r in a b c; do
    printf '{"custom_id":"%s","method":"POST","url":"/v1/completions","body":{"prompt":"x %s","max_tokens":20,"temperature":0}}\n' "$r" "$r"
done >"$tmp/learn.jsonl"
XDG_CACHE_HOME="$tmp/batch-cache" "$LAMINA" batch -q -m "$model" -i "$tmp/learn.jsonl" \
    -o "$tmp/learn.out" --backend cpu -np 3 >/dev/null 2>&1 || bad "batch for learning"
grep -q '^figure=cpu_layer' "$tmp/batch-cache/lamina/learned" 2>/dev/null && ok ||
    bad "a batch taught no figure"

# plan --lookup predicts speculation from the same figures: a verify pass of
# more rows costs no less, and more accepted tokens give more tokens/s
"$LAMINA" plan -m "$model" --backend cpu --lookup --draft-max 8 --json 2>"$tmp/err" |
    python3 -c '
import json, sys
s = json.load(sys.stdin)["speculation"]
ms = [s["target_ms_per_pass_by_rows"][str(r)] for r in range(1, 10)]
tps = [a["tokens_per_s"] for a in s["by_acceptance"]]
ok = s["mode"] == "lookup" and len(tps) == 4 and all(b >= a for a, b in zip(ms, ms[1:])) and \
     all(b > a for a, b in zip(tps, tps[1:])) and all(1 <= a["draft_tokens"] <= 8 for a in s["by_acceptance"])
sys.exit(0 if ok else 1)' && ok || bad "plan --lookup --json: no sound speculation prediction: $(cat "$tmp/err")"
"$LAMINA" plan -m "$model" --backend cpu --draft "$model" | grep -q "^speculation (--draft): the draft" &&
    ok || bad "plan --draft does not predict speculation"

# LAMINA_CPU picks the kernels: --version says which; an unknown path or one
# the CPU lacks is a one-line error
LAMINA_CPU=portable "$LAMINA" --version | grep -q '^cpu kernels: portable' && ok ||
    bad "LAMINA_CPU=portable: --version does not say portable"
expect_error "LAMINA_CPU unknown" "LAMINA_CPU=sse: not a kernel path" env LAMINA_CPU=sse "$LAMINA" --version
if ! "$LAMINA" --version | grep -q '^cpu kernels: avx512'; then
    expect_error "LAMINA_CPU the CPU lacks" "this CPU cannot run it" env LAMINA_CPU=avx512 "$LAMINA" --version
fi
if "$LAMINA" --version | grep -q '^cpu kernels: avx512vnni'; then
    # the path below the best one can be asked for, and is what runs
    LAMINA_CPU=avx512 "$LAMINA" --version | grep -q '^cpu kernels: avx512, AVX2 kernels' && ok ||
        bad "LAMINA_CPU=avx512 on a VNNI CPU: --version does not say avx512"
else
    expect_error "LAMINA_CPU=avx512vnni the CPU lacks" "this CPU cannot run it" \
        env LAMINA_CPU=avx512vnni "$LAMINA" --version
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
