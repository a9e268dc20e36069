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
tmp_dir=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp_err" "$tmp_dir"' EXIT

# greedy: the first 32 generated tokens equal the CPU path's
check_greedy 0 "$tmp_err" --backend opencl

# the same tokens whatever the plan: layers streamed to the device each pass
# (a VRAM budget that holds a third of them), split between the CPU and the
# device, and with RAM budgets below what the layers take, so that some
# come from the disk on both sides; with and without prefetch
for plan in "--backend opencl -c 256 -b 32 --vram 40M" \
            "--gpu-layers 12" \
            "--gpu-layers 20 -c 256 -b 32 --ram 150M" \
            "--backend opencl -c 256 -b 32 --vram 30M --ram 150M" \
            "--gpu-layers 15 -c 256 -b 32 --vram 20M --ram 130M --no-prefetch"; do
    # shellcheck disable=SC2086
    check_greedy 2 "$tmp_err" $plan
    case "$plan" in
    *--vram*) grep -q "streamed from RAM" "$tmp_err" && ok || bad "$plan streams nothing: $(cat "$tmp_err")" ;;
    esac
    case "$plan" in
    *--ram*) grep -q "[1-9][0-9]* from disk\|[1-9][0-9]* streamed from disk" "$tmp_err" && ok ||
             bad "$plan reads nothing from disk: $(cat "$tmp_err")" ;;
    esac
done

# a model several times larger than the VRAM budget: streamed to the device,
# its peak device memory inside the budget, the same tokens as the CPU's;
# with a RAM budget below the model's size too, part of it from the disk
"$LAMINA" synth -o "$tmp_dir/big.gguf" --shape 1b --layers 8 --type Q4_0 --tokenizer-from "$model" \
    -q >/dev/null 2>"$tmp_err" || bad "synth: $(cat "$tmp_err")"
vram=$((96 * 1024 * 1024))
size=$(wc -c <"$tmp_dir/big.gguf")
[ "$size" -gt $((3 * vram)) ] && ok || bad "the streamed model ($size bytes) is not 3x the VRAM budget"
want=$("$LAMINA" run -m "$tmp_dir/big.gguf" -p "ab ab" -n 6 --temp 0 --ids -q -c 64 -b 8 -t 2)
# (PoCL's device memory is this RAM: the plan counts it against --ram too)
ram=$((330 * 1024 * 1024))
[ "$size" -gt "$ram" ] && ok || bad "the streamed model ($size bytes) fits the RAM budget $ram"
got=$("$LAMINA" run -m "$tmp_dir/big.gguf" -p "ab ab" -n 6 --temp 0 --ids -c 64 -b 8 -t 2 \
      --backend opencl --vram 96M --ram 330M --stats-json "$tmp_dir/stats.json" 2>"$tmp_err")
[ -n "$want" ] && [ "$got" = "$want" ] && ok ||
    bad "streamed to the device: got '$got', CPU '$want' ($(cat "$tmp_err"))"
grep -q "streamed from RAM, [1-9][0-9]* from disk" "$tmp_err" && ok ||
    bad "nothing streamed from disk to the device: $(cat "$tmp_err")"
rss=$(sed 's/.*"peak_rss_bytes": \([0-9]*\).*/\1/' "$tmp_dir/stats.json")
if [ -n "${LAMINA_SANITIZED:-}" ]; then
    echo "peak RSS not checked under the sanitizers (their shadow memory is not lamina's): $rss"
else
    [ "${rss:-0}" -gt 0 ] && [ "$rss" -lt "$ram" ] && ok || bad "peak RSS ${rss:-?} is not inside --ram $ram"
fi
"$LAMINA" bench -m "$tmp_dir/big.gguf" -p 4 -n 4 -r 1 -c 64 -b 8 -t 2 --backend opencl \
    --vram 96M --json >"$tmp_dir/bench.json" 2>"$tmp_err" || bad "bench: $(cat "$tmp_err")"
peak=$(sed 's/.*"device_peak_bytes": \([0-9]*\).*/\1/' "$tmp_dir/bench.json")
[ "${peak:-0}" -gt 0 ] && [ "$peak" -le "$vram" ] && ok ||
    bad "peak device memory ${peak:-?} is not inside the VRAM budget $vram"
expect_budget_error() {
    if "$LAMINA" run -q -m "$tmp_dir/big.gguf" -p ab -n 1 -t 2 "$@" >/dev/null 2>"$tmp_err"; then
        bad "$* ran"
    elif [ "$(wc -l <"$tmp_err")" -eq 1 ] && grep -q "VRAM budget.*at least" "$tmp_err"; then ok
    else bad "$*: $(cat "$tmp_err")"; fi
}
expect_budget_error --backend opencl --vram 8M
expect_budget_error --gpu-layers 8 -c 64 --vram 1M

# a device lost in the middle of decoding (simulated): --backend auto warns,
# rebuilds the cache on the CPU and gives the same tokens; --backend opencl
# stops with the OpenCL call and error code
prompt=$(unescape "$(head -n 1 "$FIXTURES/prompts.txt")"); prompt=${prompt%x}
want=$(head -n 1 "$FIXTURES/greedy-smollm2.ids")
got=$(LAMINA_CL_FAIL_AFTER=100 "$LAMINA" run -m "$model" -p "$prompt" -n 32 --temp 0 --ids -q \
      -t 2 --backend auto --gpu-layers 30 2>"$tmp_err")
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
# ... and split, with the streamed layers' batches of 512 tokens
got=$(ppl --gpu-layers 15 --vram 60M)
[ -n "$got" ] && [ "$got" = "$want" ] && ok || bad "perplexity split: '$got', CPU '$want'"

echo "opencl-reference: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
