#!/bin/sh
# lamina batch on the default model: a requests file mixing completions and
# chat requests of different lengths with lines that cannot be served; one
# result per request with the right status and consistent usage; greedy
# texts that do not depend on --parallel (and equal `lamina run -b` with the
# same prompt runs); --resume after a run killed in the middle; stdin and
# stdout.  Without the model this skips (exit 77), except in CI.
set -u
. "$(dirname "$0")/model-tests.sh"
if ! command -v python3 >/dev/null 2>&1; then
    [ -n "${CI:-}" ] && { echo "FAIL: python3 is missing in CI"; exit 1; }
    echo "SKIP: python3 is needed to read the results"; exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# Each sequence gets CTX positions whatever --parallel (-c is shared), and
# prompts are cut into runs of B tokens, so that the longer ones take
# several runs.
CTX=256 B=16
batch() {
    np=$1
    shift
    "$LAMINA" batch -q -m "$model" -np "$np" -c $((np * CTX)) -b "$B" --temp 0 "$@"
}

# ---- the requests: valid ones first, then those that cannot be served
python3 - "$tmp/requests.jsonl" <<'EOF'
import json, sys
completions = [
    "The capital of France is",
    "Once upon a time, in a land far away, there lived a",
    "List three colors:",
    "def fibonacci(n):\n    ",
    "The quick brown fox jumps over the lazy dog. " * 6 + "Then the fox",
    "In 1969, the first humans landed on",
]
chats = ["Say hello.", "What is 2+2? Answer briefly.", "Write a haiku about the sea.",
         "Name a planet."]
lines = []
for i, p in enumerate(completions):
    lines.append({"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions",
                  "body": {"model": "m", "prompt": p, "max_tokens": 4 + 3 * i}})
for i, c in enumerate(chats):
    lines.append({"custom_id": f"h{i}", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"messages": [{"role": "system", "content": "You are brief."},
                                        {"role": "user", "content": c}],
                           "max_completion_tokens": 6 + 4 * i}})
lines.append({"custom_id": "stop", "url": "/v1/completions",
              "body": {"prompt": "One, two, three,", "max_tokens": 20, "stop": [" six", "zzz"],
                       "temperature": 0}})
lines.append({"custom_id": "ids", "url": "/v1/completions",
              "body": {"prompt": [504, 3575, 282, 4649, 314], "max_tokens": 5}})
out = [json.dumps(l) for l in lines]
out += [
    '{"custom_id": "e-missing", "url": "/v1/completions", "body": {"max_tokens": 4}}',
    '{"custom_id": "e-type", "url": "/v1/completions", "body": {"prompt": "x", "temperature": "hot"}}',
    'this line is not JSON {',
    '{"custom_id": "e-url", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}',
    json.dumps({"custom_id": "e-long", "url": "/v1/completions",
                "body": {"prompt": "word " * 400}}),
    '{"custom_id": "e-vocab", "url": "/v1/completions", "body": {"prompt": [1, 999999]}}',
    '{"custom_id": 7, "url": "/v1/completions", "body": {"prompt": "x"}}',
    '',
]
open(sys.argv[1], "w").write("\n".join(out) + "\n")
EOF

# check RESULTS: every request answered once, statuses, usage; writes the
# answers (custom_id -> text, finish_reason, usage) to RESULTS.answers
cat >"$tmp/check.py" <<'EOF'
import json, sys
requests_path, results_path = sys.argv[1], sys.argv[2]
errors = {"e-missing": "prompt", "e-type": "temperature", "e-url": "url", "e-long": "prompt",
          "e-vocab": "prompt"}
requests, anonymous = {}, 0
for line in open(requests_path):
    if not line.strip():
        continue
    try:
        r = json.loads(line)
    except ValueError:
        r = None
    if isinstance(r, dict) and isinstance(r.get("custom_id"), str):
        requests[r["custom_id"]] = r
    else:
        anonymous += 1
problems, answers, seen, seen_anonymous = [], {}, {}, 0
for n, line in enumerate(open(results_path), 1):
    res = json.loads(line)
    cid = res["custom_id"]
    if not res["id"].startswith("batch_req_"):
        problems.append(f"result {n}: id {res['id']!r}")
    if cid is None:
        seen_anonymous += 1
        resp, err = res["response"], res["error"]
        if resp is None and err["code"] == "invalid_json" and err["message"].startswith("line "):
            continue
        if resp and resp["status_code"] == 400 and "custom_id" in resp["body"]["error"]["message"]:
            continue
        problems.append(f"result {n}: an anonymous result of the wrong shape: {line}")
        continue
    seen[cid] = seen.get(cid, 0) + 1
    resp = res["response"]
    if cid in errors:
        e = resp["body"]["error"] if resp else None
        if (res["error"] is not None or resp["status_code"] != 400 or not e["message"]
                or e["type"] != "invalid_request_error" or e["param"] != errors[cid]):
            problems.append(f"{cid}: not a 400 for '{errors[cid]}': {line}")
        continue
    body = resp["body"] if resp else None
    if res["error"] is not None or resp["status_code"] != 200:
        problems.append(f"{cid}: failed: {line}")
        continue
    req = requests[cid]["body"]
    chat = "messages" in req
    choice = body["choices"][0]
    text = choice["message"]["content"] if chat else choice["text"]
    u = body["usage"]
    max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
    if body["object"] != ("chat.completion" if chat else "text_completion"):
        problems.append(f"{cid}: object {body['object']}")
    if chat and choice["message"]["role"] != "assistant":
        problems.append(f"{cid}: role {choice['message']['role']}")
    if u["total_tokens"] != u["prompt_tokens"] + u["completion_tokens"] or u["prompt_tokens"] < 1:
        problems.append(f"{cid}: usage {u}")
    if choice["finish_reason"] not in ("stop", "length") or u["completion_tokens"] > max_tokens:
        problems.append(f"{cid}: finish {choice['finish_reason']}, usage {u}, max {max_tokens}")
    if choice["finish_reason"] == "length" and u["completion_tokens"] != max_tokens:
        problems.append(f"{cid}: length after {u['completion_tokens']} of {max_tokens} tokens")
    if cid == "stop" and (choice["finish_reason"] != "stop" or "six" in text or not text):
        problems.append(f"stop: {text!r} ({choice['finish_reason']}): should end before ' six'")
    if cid == "ids" and u["prompt_tokens"] != 5:
        problems.append(f"ids: {u['prompt_tokens']} prompt tokens, 5 given")
    answers[cid] = [text, choice["finish_reason"], u]
for cid in requests:
    if seen.get(cid, 0) != 1:
        problems.append(f"{cid}: {seen.get(cid, 0)} results")
for cid in seen:
    if cid not in requests:
        problems.append(f"{cid}: a result for no request")
if seen_anonymous != anonymous:
    problems.append(f"{seen_anonymous} results without custom_id, {anonymous} such lines")
json.dump(answers, open(results_path + ".answers", "w"), sort_keys=True)
print("\n".join(problems))
EOF

# check NAME RESULTS [REQUESTS]
check() {
    out=$(python3 "$tmp/check.py" "${3:-$tmp/requests.jsonl}" "$2" 2>&1)
    if [ -z "$out" ]; then ok; else bad "$1: $out"; fi
}
# same NAME A B: the answers of two runs are the same
same() {
    if cmp -s "$2.answers" "$3.answers"; then ok; else
        bad "$1: answers differ: $(head -c 600 "$2.answers") vs $(head -c 600 "$3.answers")"; fi
}

# ---- one at a time, 4 and 8 at once: the same texts
for np in 1 4 8; do
    if batch "$np" -i "$tmp/requests.jsonl" -o "$tmp/np$np.jsonl" 2>"$tmp/np$np.err"; then ok; else
        bad "--parallel $np: exit $? ($(head -c 300 "$tmp/np$np.err"))"; fi
    check "--parallel $np" "$tmp/np$np.jsonl"
done
same "--parallel 4 against 1" "$tmp/np1.jsonl" "$tmp/np4.jsonl"
same "--parallel 8 against 1" "$tmp/np1.jsonl" "$tmp/np8.jsonl"
grep -q '^lamina: line 15: not JSON' "$tmp/np1.err" && ok ||
    bad "the line that is not JSON is not named on stderr: $(cat "$tmp/np1.err")"

# ---- the same prompt runs as `lamina run -b B`: the same greedy text
answer() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][0])' "$@"; }
for i in 1 4; do
    prompt=$(python3 -c 'import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["custom_id"] == sys.argv[2]:
        print(r["body"]["prompt"], end="")
        break' "$tmp/requests.jsonl" "c$i")
    want=$("$LAMINA" run -q -m "$model" -p "$prompt" -n $((4 + 3 * i)) --temp 0 -b "$B" -c "$CTX")
    got=$(answer "$tmp/np8.jsonl.answers" "c$i")
    if [ "$got" = "$want" ]; then ok; else bad "c$i: batch '$got', run -b $B '$want'"; fi
done
# prompt_tokens is the tokenizer's count (with BOS as run adds it)
ids=$("$LAMINA" tokenize -m "$model" "The capital of France is" | wc -w)
got=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["c0"][2]["prompt_tokens"])' \
    "$tmp/np1.jsonl.answers")
if [ "$got" -eq "$ids" ]; then ok; else bad "c0: $got prompt tokens, tokenize says $ids"; fi

# ---- stdin to stdout
if batch 4 -i - -o - <"$tmp/requests.jsonl" >"$tmp/stdout.jsonl" 2>"$tmp/stdout.err"; then ok; else
    bad "-i - -o -: exit $? ($(head -c 300 "$tmp/stdout.err"))"; fi
check "-i - -o -" "$tmp/stdout.jsonl"
same "-i - -o - against a file" "$tmp/np1.jsonl" "$tmp/stdout.jsonl"

# ---- --resume: after a run stopped while writing a line (five results
# and half of the sixth in the file) ...
head -n 5 "$tmp/np1.jsonl" >"$tmp/cut.jsonl"
sed -n 6p "$tmp/np1.jsonl" | head -c 40 >>"$tmp/cut.jsonl"
if batch 4 -i "$tmp/requests.jsonl" -o "$tmp/cut.jsonl" --resume 2>"$tmp/cut.err"; then ok; else
    bad "--resume after a cut line: exit $? ($(head -c 300 "$tmp/cut.err"))"; fi
check "--resume after a cut line" "$tmp/cut.jsonl"
same "--resume after a cut line" "$tmp/np1.jsonl" "$tmp/cut.jsonl"

# ... and after kill -9 once some results are written (lamina itself, not
# a subshell running the function)
: >"$tmp/killed.jsonl"
"$LAMINA" batch -q -m "$model" -np 2 -c $((2 * CTX)) -b "$B" --temp 0 -i "$tmp/requests.jsonl" \
    -o "$tmp/killed.jsonl" 2>/dev/null &
pid=$!
i=0
while [ "$i" -lt 400 ] && [ "$(wc -l <"$tmp/killed.jsonl")" -lt 3 ]; do
    sleep 0.05
    i=$((i + 1))
done
kill -9 "$pid" 2>/dev/null || echo "note: the batch finished before it could be killed"
wait "$pid" 2>/dev/null
before=$(wc -l <"$tmp/killed.jsonl")
if batch 2 -i "$tmp/requests.jsonl" -o "$tmp/killed.jsonl" --resume 2>"$tmp/killed.err"; then ok
else bad "--resume after kill -9: exit $? ($(head -c 300 "$tmp/killed.err"))"; fi
echo "resume: $before results were there after kill -9, $(wc -l <"$tmp/killed.jsonl") after --resume"
check "--resume after kill -9" "$tmp/killed.jsonl"
same "--resume after kill -9" "$tmp/np1.jsonl" "$tmp/killed.jsonl"

# ... and when everything is answered, nothing is run or written again
cp "$tmp/killed.jsonl" "$tmp/done.jsonl"
if "$LAMINA" batch -m "$model" -i "$tmp/requests.jsonl" -o "$tmp/done.jsonl" --resume \
    2>"$tmp/done.err" && cmp -s "$tmp/killed.jsonl" "$tmp/done.jsonl" &&
    grep -q 'answered before, skipped' "$tmp/done.err"; then ok
else bad "--resume with every result there: $(cat "$tmp/done.err")"; fi

# ---- what stops a batch before it starts: one line on stderr, exit 1
expect_fail() {
    what=$1 want=$2
    shift 2
    "$@" >"$tmp/fail.out" 2>"$tmp/fail.err"
    rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/fail.err")" -eq 1 ] && grep -q -- "$want" "$tmp/fail.err"
    then ok; else bad "$what: exit $rc, stderr: $(head -c 300 "$tmp/fail.err")"; fi
}
printf '%s\n' '{"custom_id": "a", "url": "/v1/completions", "body": {"prompt": "x"}}' \
    '{"custom_id": "a", "url": "/v1/completions", "body": {"prompt": "y"}}' >"$tmp/dup.jsonl"
expect_fail "a custom_id twice" "lines 1 and 2 have the same custom_id 'a'" \
    "$LAMINA" batch -m "$model" -i "$tmp/dup.jsonl" -o "$tmp/dup.out"
expect_fail "no -i" "no requests given" "$LAMINA" batch -m "$model" -o "$tmp/x.jsonl"
expect_fail "no -o" "no results file given" "$LAMINA" batch -m "$model" -i "$tmp/dup.jsonl"
expect_fail "--resume to stdout" "give it with -o FILE" \
    "$LAMINA" batch -m "$model" -i "$tmp/dup.jsonl" -o - --resume
expect_fail "a missing requests file" "nope.jsonl" \
    "$LAMINA" batch -m "$model" -i "$tmp/nope.jsonl" -o "$tmp/x.jsonl"

echo "batch: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
