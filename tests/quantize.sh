#!/bin/sh
# lamina quantize against llama.cpp's llama-quantize: the default model
# rewritten at F16, then that F16 at every target llama-quantize shares with
# lamina, gives files byte-identical to llama-quantize's (same tensor types
# by the same rules, same reference rounding, same metadata and layout);
# tests/fixtures/quantize-*.sha256 hold the hashes of llama-quantize's files
# (tests/fixtures/README).  The Gemma 3 model is checked the same way when it
# is there.  Then what a user meets: the note when requantizing, --pure, the
# neighbour types, and bad input (one-line errors, no file left behind).
set -u
. "$(dirname "$0")/model-tests.sh"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

sha() { sha256sum <"$1" | cut -c1-64; }
want_sha() { sed -n "s/^\([0-9a-f]*\) $2\$/\1/p" "$FIXTURES/$1"; }

# quantize_like NAME FIXTURE IN OUT TYPE [ARGS...]: lamina quantize IN to OUT
# and compare the file with llama-quantize's hash
quantize_like() {
    name=$1 fixture=$2 in=$3 out=$4 type=$5
    shift 5
    if ! "$LAMINA" quantize -q "$@" "$in" "$out" "$type" >/dev/null 2>"$tmp/err"; then
        bad "$name $type: $(cat "$tmp/err")"
        return 1
    fi
    got=$(sha "$out") want=$(want_sha "$fixture" "$type")
    if [ -n "$want" ] && [ "$got" = "$want" ]; then ok; else
        bad "$name $type: sha256 $got, llama-quantize's ${want:-(no fixture)}"; fi
}

# The sanitizer run checks fewer types (each one is several times slower).
if [ -n "${LAMINA_SANITIZED:-}" ]; then
    types="Q4_0 Q4_K_M Q6_K"
else
    types="F32 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K"
fi
f16=$tmp/f16.gguf
if quantize_like smollm2 quantize-smollm2.sha256 "$model" "$f16" F16; then
    for type in $types; do
        quantize_like smollm2 quantize-smollm2.sha256 "$f16" "$tmp/out.gguf" "$type"
    done
fi

if [ -f "${LAMINA_GEMMA3_MODEL:-}" ]; then
    g16=$tmp/gemma-f16.gguf
    if quantize_like gemma3 quantize-gemma3.sha256 "$LAMINA_GEMMA3_MODEL" "$g16" F16; then
        quantize_like gemma3 quantize-gemma3.sha256 "$g16" "$tmp/out.gguf" Q4_K_M
        [ -n "${LAMINA_SANITIZED:-}" ] ||
            quantize_like gemma3 quantize-gemma3.sha256 "$g16" "$tmp/out.gguf" Q8_0
    fi
    rm -f "$tmp/gemma-f16.gguf"
fi

# the output runs: a Q8_0 model's greedy text equals the F16 one's for the
# first fixture prompt's first tokens (both near-lossless from the same F16)
prompt=$(unescape "$(head -n 1 "$FIXTURES/prompts.txt")"); prompt=${prompt%x}
if "$LAMINA" quantize -q "$f16" "$tmp/q8.gguf" Q8_0 >/dev/null 2>&1; then
    a=$("$LAMINA" run -q -m "$f16" -p "$prompt" -n 8 --temp 0 --ids -t 2 -c 256 2>&1)
    b=$("$LAMINA" run -q -m "$tmp/q8.gguf" -p "$prompt" -n 8 --temp 0 --ids -t 2 -c 256 2>&1)
    if [ -n "$a" ] && [ "$a" = "$b" ]; then ok; else bad "Q8_0 greedy '$b', F16's '$a'"; fi
else bad "quantize to Q8_0 for the run"; fi

# requantizing says so; quantizing from F16 does not
"$LAMINA" quantize "$model" "$tmp/out.gguf" Q4_0 >"$tmp/out" 2>"$tmp/err" &&
    grep -q "were already quantized and were requantized" "$tmp/err" && ok ||
    bad "requantizing the Q4_1 model: no note ($(cat "$tmp/err"))"
"$LAMINA" quantize "$f16" "$tmp/out.gguf" Q4_0 >"$tmp/out" 2>"$tmp/err" &&
    ! grep -q "requantized" "$tmp/err" && ok || bad "quantizing F16 notes a requantization"
# the output path on stdout, progress and the summary on stderr
[ "$(cat "$tmp/out")" = "$tmp/out.gguf" ] && grep -q "^quantize: .* bits per weight" "$tmp/err" &&
    ok || bad "quantize output: stdout '$(cat "$tmp/out")', stderr '$(cat "$tmp/err")'"

# the neighbour types: SmolLM2's 576-wide matrices cannot take Q4_K (256
# per block); they take Q5_0, and the summary says how many
"$LAMINA" quantize "$f16" "$tmp/out.gguf" Q4_K >/dev/null 2>"$tmp/err"
grep -q "180 at a neighbour type (widths the type cannot take: 180 Q5_0 for Q4_K)" "$tmp/err" && ok || bad "Q4_K fallback summary: $(cat "$tmp/err")"
# --pure: every matrix at the type but for those fallbacks, the head too
"$LAMINA" quantize -q --pure "$f16" "$tmp/out.gguf" Q4_0 >/dev/null 2>"$tmp/err" &&
    "$LAMINA" info -m "$tmp/out.gguf" >"$tmp/info" 2>&1 &&
    grep -q "Q4_0 *211 tensors" "$tmp/info" && ok || bad "--pure Q4_0: $(cat "$tmp/err" "$tmp/info")"

# --auto: the best type that fits each budget (the F16 model, 512 positions:
# F16 needs 345 MiB, Q8_0 224, Q4_K_M 187, Q4_0 174), and the chosen model
# runs inside that budget; under every budget, Q4_0, streamed
for case in "1G F16" "230M Q8_0" "190M Q4_K_M" "150M Q4_0"; do
    set -- $case
    if ! "$LAMINA" quantize -q "$f16" "$tmp/auto.gguf" --auto --ram "$1" -c 512 >/dev/null \
        2>"$tmp/err"; then bad "--auto --ram $1: $(cat "$tmp/err")"; continue; fi
    grep -q "^auto: chose $2[:,]" "$tmp/err" && ok || bad "--auto --ram $1: want $2, $(cat "$tmp/err")"
    if ! "$LAMINA" run -q -m "$tmp/auto.gguf" -p "$prompt" -n 4 --temp 0 -c 512 --ram "$1" -t 2 \
        --backend cpu --stats-json "$tmp/stats.json" >/dev/null 2>"$tmp/err"; then
        bad "running the --auto model in --ram $1: $(cat "$tmp/err")"; continue; fi
    rss=$(sed 's/.*"peak_rss_bytes": \([0-9]*\).*/\1/' "$tmp/stats.json")
    case $1 in *G) unit=1073741824 ;; *) unit=1048576 ;; esac
    budget=$((${1%?} * unit))
    if [ -n "${LAMINA_SANITIZED:-}" ]; then :; else
        [ "$rss" -gt 0 ] && [ "$rss" -lt "$budget" ] && ok ||
            bad "the --auto model's peak RSS $rss is not inside --ram $1"
    fi
done
"$LAMINA" quantize -q "$f16" "$tmp/auto.gguf" --auto --ram 150M -c 512 2>&1 >/dev/null |
    grep -q "no type fits the RAM budget of 150.0 MiB" && ok || bad "--auto does not say no type fits"
# a quantized input: nothing larger than it is chosen
"$LAMINA" quantize -q "$model" "$tmp/auto.gguf" --auto --ram 4G -c 512 2>&1 >/dev/null |
    grep -q "^auto: chose Q4_0" && ok || bad "--auto from Q4_1 chose a larger type"

# bad input: one line on stderr, exit status 1, no output file
expect_error() {
    what=$1
    shift
    rm -f "$tmp/bad.gguf"
    "$LAMINA" quantize "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/bad.gguf" ]; then ok; else
        bad "$what: exit $rc, stderr '$(cat "$tmp/err")'"; fi
}
expect_error "unknown type" "$f16" "$tmp/bad.gguf" Q3_K
expect_error "missing input" "$tmp/none.gguf" "$tmp/bad.gguf" Q4_0
head -c 100000 "$f16" >"$tmp/cut.gguf"
expect_error "truncated input" "$tmp/cut.gguf" "$tmp/bad.gguf" Q4_0
expect_error "output directory missing" "$f16" "$tmp/no/such/dir.gguf" Q4_0
expect_error "too few arguments" "$f16" Q4_0
expect_error "a TYPE and --auto" "$f16" "$tmp/bad.gguf" Q4_0 --auto
expect_error "--auto with a bad --ram" "$f16" "$tmp/bad.gguf" --auto --ram lots
# a write that fails midway (a file size limit, its signal ignored so that
# the write returns EFBIG) leaves no file: no partial output, no temporary
mkdir "$tmp/w"
(trap '' XFSZ; ulimit -f 2048; exec "$LAMINA" quantize -q "$f16" "$tmp/w/bad.gguf" Q4_0) \
    >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ -z "$(ls -A "$tmp/w")" ]; then ok; else
    bad "a failed write: exit $rc, left '$(ls -A "$tmp/w")', stderr '$(cat "$tmp/err")'"; fi
# a model lamina does not run is refused
: "${MAKE_TEST_MODEL:?}"
"$MAKE_TEST_MODEL" "$tmp/falcon.gguf" falcon Q8_0 >/dev/null 2>&1 || bad "make_test_model falcon"
expect_error "an architecture lamina does not run" "$tmp/falcon.gguf" "$tmp/bad.gguf" Q4_0
grep -q "architecture 'falcon' is not one lamina runs" "$tmp/err" && ok || bad "falcon: $(cat "$tmp/err")"

echo "quantize: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
