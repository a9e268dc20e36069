#!/bin/sh
# Speculative decoding from the command line, on the default model: greedy
# text with --draft (the same model as its own draft) and with --lookup is
# token for token `lamina run`'s, on the CPU, with the target streamed from
# disk, and on the OpenCL device; chat with --lookup answers as chat does;
# --stats-json reports the speculation; bench --lookup runs plain and
# speculative decoding and finds the same tokens; batch --lookup gives the
# same results; a draft with another vocabulary is
# a one-line error.  Without the model this skips (exit 77), except in CI.
set -u
. "$(dirname "$0")/model-tests.sh"
: "${MAKE_TEST_MODEL:?}"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

run() { "$LAMINA" run -q -m "$model" -n 48 --temp 0 --ids -t 2 -c 512 "$@" 2>"$tmp/err"; }

# prompts: code, text that repeats itself (lookup's case), and free text
printf 'def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n' >"$tmp/code"
printf 'The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. The quick brown' >"$tmp/repeat"
printf 'The history of the printing press begins' >"$tmp/text"
# under the sanitizers (memory errors, not tokens) the one prompt where
# proposals are both accepted and refused
prompts="code repeat text"
[ -n "${LAMINA_SANITIZED:-}" ] && prompts=repeat
for p in $prompts; do
    want=$(run -f "$tmp/$p") || { bad "run -f $p: $(cat "$tmp/err")"; continue; }
    for args in "--draft $model" "--lookup" "--lookup --draft-max 4" \
                "--draft $model --ram-layers 0" "--lookup --ram-layers 0"; do
        # shellcheck disable=SC2086 # args is a list of options
        got=$(run -f "$tmp/$p" $args) || { bad "run $args: $(cat "$tmp/err")"; continue; }
        [ "$got" = "$want" ] && ok || bad "$p prompt with $args: '$got', plain: '$want'"
    done
    if "$LAMINA" devices 2>/dev/null | grep -q .; then
        got=$(run -f "$tmp/$p" --backend opencl --lookup) || bad "opencl --lookup: $(cat "$tmp/err")"
        want_cl=$(run -f "$tmp/$p" --backend opencl)
        [ "$got" = "$want_cl" ] && ok || bad "$p prompt on opencl with --lookup: '$got', plain: '$want_cl'"
    fi
done

# the statistics (LAMINA_SPEC_FIXED: always --draft-max proposed)
LAMINA_SPEC_FIXED=1 run -f "$tmp/repeat" --lookup --stats-json "$tmp/stats.json" >/dev/null ||
    bad "--stats-json"
python3 - "$tmp/stats.json" <<'PY' && ok || bad "stats-json: $(cat "$tmp/stats.json")"
import json, sys
s = json.load(open(sys.argv[1]))["speculative"]
assert s["proposed"] > 0 and 0 < s["accepted"] <= s["proposed"], s
assert s["tokens_per_target_pass"] > 1 and s["acceptance_rate"] > 0, s
PY
"$LAMINA" run -m "$model" -f "$tmp/repeat" -n 16 --temp 0 --lookup 2>"$tmp/err" >/dev/null
grep -q '^lamina: speculative: [0-9]* proposed, [0-9]* accepted' "$tmp/err" && ok ||
    bad "no speculative line on stderr: $(cat "$tmp/err")"

# bench: plain and speculative in one run, the same tokens
"$LAMINA" bench -m "$model" --lookup -n 32 -r 1 -t 2 --json >"$tmp/bench.json" 2>"$tmp/err" ||
    bad "bench --lookup: $(cat "$tmp/err")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["same_tokens"] and d["decode_tokens_per_s"] > 0, d' \
    "$tmp/bench.json" && ok || bad "bench --lookup --json: $(cat "$tmp/bench.json")"

# batch: the same results with --lookup in every sequence
python3 - "$tmp/code" "$tmp/repeat" "$tmp/text" >"$tmp/requests.jsonl" <<'PY'
import json, sys
for i, path in enumerate(sys.argv[1:]):
    print(json.dumps({"custom_id": f"c{i}", "url": "/v1/completions",
                      "body": {"prompt": open(path).read(), "max_tokens": 40, "temperature": 0}}))
    print(json.dumps({"custom_id": f"m{i}", "url": "/v1/chat/completions",
                      "body": {"messages": [{"role": "user", "content": open(path).read()}],
                               "max_tokens": 40, "temperature": 0}}))
PY
texts() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l); c = r["response"]["body"]["choices"][0]
    print(r["custom_id"], json.dumps(c.get("text", c.get("message", {}).get("content"))))' "$1" | sort; }
"$LAMINA" batch -q -m "$model" -np 3 -c 1536 -t 2 -i "$tmp/requests.jsonl" -o "$tmp/plain.jsonl" 2>"$tmp/err" ||
    bad "batch: $(cat "$tmp/err")"
"$LAMINA" batch -q -m "$model" -np 3 -c 1536 -t 2 --lookup -i "$tmp/requests.jsonl" -o "$tmp/spec.jsonl" \
    2>"$tmp/err" || bad "batch --lookup: $(cat "$tmp/err")"
[ "$(texts "$tmp/plain.jsonl")" = "$(texts "$tmp/spec.jsonl")" ] && ok ||
    bad "batch --lookup gives other texts: $(texts "$tmp/spec.jsonl") against $(texts "$tmp/plain.jsonl")"

# chat: the same replies with --lookup
printf 'Write a Python function that adds two numbers.\nNow one that subtracts them.\n' >"$tmp/turns"
"$LAMINA" chat -q -m "$model" --temp 0 -n 40 -t 2 <"$tmp/turns" >"$tmp/plain" 2>"$tmp/err" ||
    bad "chat: $(cat "$tmp/err")"
"$LAMINA" chat -q -m "$model" --temp 0 -n 40 -t 2 --lookup <"$tmp/turns" >"$tmp/spec" 2>"$tmp/err" ||
    bad "chat --lookup: $(cat "$tmp/err")"
cmp -s "$tmp/plain" "$tmp/spec" && ok || bad "chat with --lookup answers differently"

# a draft with another vocabulary
"$MAKE_TEST_MODEL" "$tmp/tiny.gguf" llama Q8_0 || { echo "cannot write the test model"; exit 1; }
if run -p "Hello" --draft "$tmp/tiny.gguf" >/dev/null; then
    bad "a draft with another vocabulary was taken"
else
    [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q 'vocabulary' "$tmp/err" && ok ||
        bad "vocabulary mismatch: want one line naming the vocabulary, got: $(cat "$tmp/err")"
fi
run -p "Hello" --draft "$model" --lookup >/dev/null && bad "--draft with --lookup taken" || ok

echo "speculative: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
