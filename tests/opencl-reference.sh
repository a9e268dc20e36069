#!/bin/sh
# The OpenCL backend against the CPU path on the default model
# (SmolLM2-135M-Instruct Q4_1): its kernels repeat the CPU's float operations
# in the CPU's order, so the greedy ids for the fixture prompts (32 tokens)
# equal tests/fixtures/greedy-smollm2.ids (which the CPU path reproduces), and
# its perplexity (2 chunks of 512) is within 0.5% of the CPU path's, computed
# here (in practice it is the same number).  Without the model this skips
# (exit 77) except in CI; without a working OpenCL device it skips, except in
# CI, where it fails.
set -u
. "$(dirname "$0")/model-tests.sh"
if ! "$LAMINA" run -m "$model" -p "Hi" -n 1 --temp 0 --ids -q -t 2 --backend opencl >/dev/null; then
    if [ -n "${CI:-}" ]; then
        echo "FAIL: no working OpenCL device in CI"
        exit 1
    fi
    echo "SKIP: no working OpenCL device"
    exit 77
fi
tmp_err=$(mktemp) || exit 1
trap 'rm -f "$tmp_err"' EXIT

# greedy: the first 32 generated tokens equal the CPU path's
i=0
while IFS= read -r line; do
    i=$((i + 1))
    want=$(sed -n "${i}p" "$FIXTURES/greedy-smollm2.ids")
    prompt=$(unescape "$line"); prompt=${prompt%x}
    got=$("$LAMINA" run -m "$model" -p "$prompt" -n 32 --temp 0 --ids -q -t 2 --backend opencl)
    if [ "$got" = "$want" ]; then ok; else
        bad "greedy prompt $i on OpenCL: got '$got', CPU '$want'"; fi
done <"$FIXTURES/prompts.txt"

# a device lost in the middle of decoding (simulated): --backend auto warns,
# rebuilds the cache on the CPU and gives the same tokens; --backend opencl
# stops with the OpenCL call and error code
prompt=$(unescape "$(head -n 1 "$FIXTURES/prompts.txt")"); prompt=${prompt%x}
want=$(head -n 1 "$FIXTURES/greedy-smollm2.ids")
got=$(LAMINA_CL_FAIL_AFTER=100 "$LAMINA" run -m "$model" -p "$prompt" -n 32 --temp 0 --ids -q \
      -t 2 --backend auto 2>"$tmp_err")
if [ "$got" = "$want" ] && grep -q "CL_DEVICE_NOT_AVAILABLE.*continuing on the CPU" "$tmp_err"; then
    ok; else bad "auto fallback: got '$got' ($(cat "$tmp_err"))"; fi
if LAMINA_CL_FAIL_AFTER=100 "$LAMINA" run -m "$model" -p "$prompt" -n 32 --temp 0 -q -t 2 \
       --backend opencl >/dev/null 2>"$tmp_err"; then
    bad "--backend opencl went on after a device error"
elif [ "$(wc -l <"$tmp_err")" -eq 1 ] && grep -q "clEnqueueNDRangeKernel: CL_DEVICE_NOT_AVAILABLE (-2)" "$tmp_err"; then
    ok; else bad "device error message: $(cat "$tmp_err")"; fi

# perplexity within 0.5% of the CPU path's
ppl() {
    "$LAMINA" perplexity -m "$model" -f "$FIXTURES/ppl-text.txt" -c 512 --chunks 2 -q -t 2 "$@" \
        2>/dev/null | sed -n 's/^perplexity: //p'
}
want=$(ppl --backend cpu)
got=$(ppl --backend opencl)
if [ -n "$got" ] && [ -n "$want" ] &&
   awk -v g="$got" -v w="$want" 'BEGIN { d = (g - w) / w; exit !(d < 0.005 && d > -0.005) }'; then
    ok; echo "perplexity (2 chunks of 512): OpenCL $got, CPU $want"
else bad "perplexity: OpenCL '$got', CPU '$want' (more than 0.5% apart)"; fi

echo "opencl-reference: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
