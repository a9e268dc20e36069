# Sourced by the shell tests that need the default model: finds it (or
# skips with exit 77, except in CI, where a missing model fails), and
# provides the pass/fail counters and the fixture-line decoder.
: "${LAMINA:?}" "${FIXTURES:?}" "${LAMINA_TEST_MODEL:?}"
if [ ! -f "$LAMINA_TEST_MODEL" ]; then
    if [ -n "${CI:-}" ]; then
        echo "FAIL: the default model is missing in CI: $LAMINA_TEST_MODEL (run scripts/fetch-model)"
        exit 1
    fi
    echo "SKIP: no model at $LAMINA_TEST_MODEL (run scripts/fetch-model to get it)"
    exit 77
fi
model=$LAMINA_TEST_MODEL
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# The fixture files hold one item per line with \n for newlines.
# (The x keeps command substitution from eating trailing newlines.)
unescape() { printf '%sx' "$1" | sed 's/\\n/\n/g'; }

# check_greedy N ERR ARGS...: `lamina run ARGS` gives the fixture's 32 greedy
# ids for the first N fixture prompts (0: all of them); each run's stderr
# goes to the file ERR (the last one stays there for the caller to read).
check_greedy() {
    limit=$1 err=$2
    # under the sanitizers, for memory errors: each path once or twice is
    # enough, the fixture's other prompts take the same one
    [ -n "${LAMINA_SANITIZED:-}" ] && { [ "$limit" -eq 0 ] || [ "$limit" -gt 2 ]; } && limit=2
    shift 2
    i=0
    while IFS= read -r line && { [ "$limit" -eq 0 ] || [ "$i" -lt "$limit" ]; }; do
        i=$((i + 1))
        want=$(sed -n "${i}p" "$FIXTURES/greedy-smollm2.ids")
        prompt=$(unescape "$line"); prompt=${prompt%x}
        got=$("$LAMINA" run -m "$model" -p "$prompt" -n 32 --temp 0 --ids -t 2 "$@" 2>"$err")
        if [ "$got" = "$want" ]; then ok; else
            bad "greedy prompt $i with $*: got '$got', want '$want' ($(cat "$err"))"; fi
    done <"$FIXTURES/prompts.txt"
}
