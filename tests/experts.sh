#!/bin/sh
# Mixtures of experts read from disk expert by expert (expert_cache.h): the
# same logits, to the bit, whether the layers are in RAM, read from disk
# whole, or read with only their routed experts through an expert cache of
# any size (two slots, a few, all), or on an OpenCL device; and plan and
# bench say what they read.
# The three layouts: Mixtral's (llama with experts), qwen3moe and qwen2moe
# (with a shared expert); with the
# default model's tokenizer (scripts/fetch-model), also their perplexity
# within 0.5% of llama.cpp's on the same file
# (tests/fixtures/ppl-moe-tiny-c512.txt), in RAM and through the cache.
set -u
: "${LAMINA:?}" "${MAKE_TEST_MODEL:?}" "${FIXTURES:?}"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

vocab=$tmp/vocab.gguf
"$MAKE_TEST_MODEL" "$vocab" llama Q8_0 || { echo "cannot write the test model"; exit 1; }
# text whose windows route to every expert, in passes of many rows
awk 'BEGIN { srand(7); for (i = 0; i < 1500; i++) printf "%c%s", 97 + int(rand() * 26),
     (i % 7 == 6) ? " " : "" }' >"$tmp/text.txt"

# an OpenCL device (PoCL in CI) runs them too
cpu_path=$("$LAMINA" --version | sed -n 's/^cpu kernels: \([a-z0-9]*\).*/\1/p')
if "$LAMINA" run -q -m "$vocab" -p ab -n 1 --backend opencl >/dev/null 2>&1; then
    opencl=yes
elif [ -n "${CI:-}" ]; then
    opencl=no
    bad "no working OpenCL device in CI"
else
    opencl=no
    echo "SKIP (part): no working OpenCL device"
fi

for arch in llama qwen3moe qwen2moe; do
    model=$tmp/moe-$arch.gguf
    "$LAMINA" synth -q -o "$model" --shape moe-tiny --arch "$arch" --type Q8_0 \
        --tokenizer-from "$vocab" >/dev/null || { bad "synth moe-tiny $arch"; continue; }
    # the layers in RAM: the reference
    "$LAMINA" perplexity -q -m "$model" -f "$tmp/text.txt" -c 64 --chunks 3 -b 64 \
        >"$tmp/ref" 2>"$tmp/err" || { bad "$arch perplexity in RAM: $(cat "$tmp/err")"; continue; }
    want=$(tail -n 1 "$tmp/ref")
    "$LAMINA" run -q -m "$model" -p "the mixture" -n 24 --temp 0 >"$tmp/ref-run" 2>"$tmp/err" ||
        bad "$arch run in RAM: $(cat "$tmp/err")"
    # (on the CPU: a device, where there is one, would take the layers the
    # RAM budget leaves out, and a device layer reads every expert)
    for opts in "--ram-layers 0 --whole-layers" "--ram-layers 0 --expert-cache 1" \
        "--ram-layers 0 --expert-cache 1500K" "--ram-layers 0" "--ram-layers 2 --expert-cache 1" \
        "--ram-layers 0 --expert-cache 1 --no-prefetch" \
        "--ram-layers 0 --expert-cache 1200K --expert-evict frequent"; do
        opts="--backend cpu $opts"
        # shellcheck disable=SC2086
        if "$LAMINA" perplexity -q -m "$model" -f "$tmp/text.txt" -c 64 --chunks 3 -b 64 \
            $opts >"$tmp/out" 2>"$tmp/err"; then
            got=$(tail -n 1 "$tmp/out")
            [ "$got" = "$want" ] && ok || bad "$arch $opts: $got, in RAM $want"
        else
            bad "$arch perplexity $opts: $(cat "$tmp/err")"
        fi
        # shellcheck disable=SC2086
        "$LAMINA" run -q -m "$model" -p "the mixture" -n 24 --temp 0 $opts >"$tmp/out" 2>"$tmp/err" &&
            cmp -s "$tmp/out" "$tmp/ref-run" && ok || bad "$arch run $opts: other text ($(cat "$tmp/err"))"
    done

    # on the device (OpenCL): resident, beside CPU layers, streamed to it
    # from RAM and from disk; the same text, and on the CPU's AVX2 or
    # AVX-512 kernels (which the device's repeat) the same perplexity
    # and with VRAM for the rest of each layer and a few experts: the
    # experts through the device's cache, copied from RAM or, with RAM for
    # little more than a few experts, read from disk through the host's
    case $arch in qwen2moe) vram=5M ;; *) vram=4M ;; esac
    for opts in "--backend opencl" "--gpu-layers 2" "--backend opencl -c 64 -b 64 --vram 10M" \
        "--backend opencl -c 64 -b 64 --vram 10M --ram-layers 0" \
        "--backend opencl -c 64 -b 64 --vram $vram" \
        "--backend opencl -c 64 -b 64 --vram $vram --ram 75M" \
        "--backend opencl -c 64 -b 64 --vram $vram --ram 75M --expert-cache 1"; do
        [ "$opencl" = yes ] || break
        case $opts in
        *"--vram $vram"*)
            case $opts in *--ram*) from='the expert cache below (read from disk)' ;; *) from=RAM ;; esac
            # shellcheck disable=SC2086
            "$LAMINA" plan -m "$model" $opts >"$tmp/out" 2>"$tmp/err" &&
                grep -q '^0-3 *device, experts cached' "$tmp/out" &&
                grep -qF "), copied from $from" "$tmp/out" &&
                grep -q "^experts: the device's layers keep the rest of themselves there" "$tmp/out" &&
                ok || bad "$arch plan $opts: $(cat "$tmp/out" "$tmp/err")" ;;
        esac
        # shellcheck disable=SC2086
        "$LAMINA" run -q -m "$model" -p "the mixture" -n 24 --temp 0 $opts >"$tmp/out" 2>"$tmp/err" &&
            cmp -s "$tmp/out" "$tmp/ref-run" && ok || bad "$arch run $opts: other text ($(cat "$tmp/err"))"
        # shellcheck disable=SC2086
        if "$LAMINA" perplexity -q -m "$model" -f "$tmp/text.txt" -c 64 --chunks 3 -b 64 \
            $opts >"$tmp/out" 2>"$tmp/err"; then
            got=$(tail -n 1 "$tmp/out")
            [ "$got" = "$want" ] || [ "$cpu_path" = portable ] && ok ||
                bad "$arch $opts: $got, on the CPU $want"
        else
            bad "$arch perplexity $opts: $(cat "$tmp/err")"
        fi
    done

    # the device's expert cache: what a run measured is what replaying its
    # routing through that cache predicts
    if [ "$opencl" = yes ]; then
        # (room for a third of the experts: some hit, some miss)
        case $arch in llama) dev_vram=7M ;; qwen2moe) dev_vram=6M ;; *) dev_vram=$vram ;; esac
        for evict in recent frequent; do
            dev="--backend opencl -c 64 -b 64 --vram $dev_vram --expert-evict $evict"
            # shellcheck disable=SC2086
            XDG_CACHE_HOME="$tmp/dev-$arch" "$LAMINA" bench -m "$model" $dev -p 8 -n 48 -r 1 \
                --json >"$tmp/bench" 2>"$tmp/err" &&
                XDG_CACHE_HOME="$tmp/dev-$arch" "$LAMINA" plan -m "$model" $dev --json \
                    >"$tmp/out" 2>>"$tmp/err" &&
                python3 -c '
import json, sys
plan, bench = (json.load(open(f)) for f in sys.argv[1:3])
assert plan["device_expert_cache_hit_rate_traced"] == 384, plan
assert 0 < bench["device_expert_cache_hit_rate"] < 1, bench
assert bench["device_expert_copy_bytes_per_token"] > 0, bench
# a cache of as many experts: the same rate; the plan may since have moved
# the output head on or off the device (its timing is measured again),
# which changes the cache by that much: then about the same
same = plan["device_expert_cache_experts"] == bench["device_expert_cache_experts"]
diff = abs(plan["predicted_device_expert_cache_hit_rate"] - bench["device_expert_cache_hit_rate"])
assert diff < (1e-9 if same else 0.05), (plan, bench)
' "$tmp/out" "$tmp/bench" && ok ||
                bad "$arch device expert cache ($evict): $(cat "$tmp/out" "$tmp/bench" "$tmp/err")"
        done
    fi

    # the plan says what a token reads, with and without the experts apart
    if "$LAMINA" plan -m "$model" --backend cpu --ram-layers 0 --expert-cache 1M >"$tmp/out" 2>"$tmp/err"; then
        grep -q '^experts: the layers from disk read only the experts routed to (2 of 8 per token), through a cache of 1.0 MiB ([0-9]* experts, the least recently used given up;' "$tmp/out" &&
            grep -q '^  per token .* MiB read from disk, against .* MiB reading every expert' "$tmp/out" &&
            ok || bad "$arch plan's experts lines: $(cat "$tmp/out")"
    else
        bad "$arch plan: $(cat "$tmp/err")"
    fi
    "$LAMINA" plan -m "$model" --backend cpu --ram-layers 0 --whole-layers >"$tmp/out" 2>"$tmp/err" &&
        grep -q '^experts: the layers from disk are read whole, all 8 experts each' "$tmp/out" &&
        ok || bad "$arch plan --whole-layers: $(cat "$tmp/out" "$tmp/err")"
    XDG_CACHE_HOME="$tmp/fresh-$arch" "$LAMINA" plan -m "$model" --backend cpu --ram-layers 0 --json \
        >"$tmp/out" 2>"$tmp/err" &&
        python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert p["experts"] == 8 and p["experts_per_token"] == 2, p
# a cache of every expert: after the first tokens nothing more to read
assert p["predicted_read_bytes_per_token"] == 0 < p["dense_read_bytes_per_token"], p
assert p["expert_cache_bytes"] > 0 and p["predicted_expert_cache_hit_rate"] == 1.0, p
' "$tmp/out" && ok || bad "$arch plan --json: $(cat "$tmp/out" "$tmp/err")"

    # a run teaches the plan the hit rate it measured (a bench: no end of
    # text cuts it short), and the routing it made: replayed through any
    # other cache, it predicts that cache's hit rate; through the same
    # cache, what the run measured (its one-token passes, as bench's)
    learn="$tmp/learn-$arch"
    XDG_CACHE_HOME=$learn "$LAMINA" bench -m "$model" --backend cpu -p 8 -n 48 -r 1 --ram-layers 0 \
        --expert-cache 3M --json >"$tmp/bench" 2>"$tmp/err" || bad "$arch learning run: $(cat "$tmp/err")"
    XDG_CACHE_HOME=$learn "$LAMINA" plan -m "$model" --backend cpu --ram-layers 0 --expert-cache 3M \
        --expert-evict recent >"$tmp/out" 2>"$tmp/err" &&
        grep -q '^experts: .*predicted hit rate [0-9]*%, as the last 1 run of this cache measured)' "$tmp/out" &&
        ok || bad "$arch plan after a run: $(cat "$tmp/out" "$tmp/err")"
    XDG_CACHE_HOME=$learn "$LAMINA" plan -m "$model" --backend cpu --ram-layers 0 --expert-cache 3M \
        --expert-evict frequent >"$tmp/out" 2>"$tmp/err" &&
        grep -q '^experts: .*replaying the routing of 384 experts a run used)' "$tmp/out" &&
        ok || bad "$arch plan of another cache replays the routing: $(cat "$tmp/out" "$tmp/err")"
    # (the routing alone: no rate measured to prefer)
    mkdir -p "$tmp/routes-$arch/lamina" && cp -r "$learn/lamina/routes" "$tmp/routes-$arch/lamina/" &&
        for evict in recent frequent auto; do
            XDG_CACHE_HOME="$tmp/routes-$arch" "$LAMINA" plan -m "$model" --backend cpu \
                --ram-layers 0 --expert-cache 3M --expert-evict $evict --json >"$tmp/$evict" \
                2>"$tmp/err" || break
        done &&
        python3 -c '
import json, sys
recent, frequent, auto, bench = (json.load(open(f)) for f in sys.argv[1:5])
for p in recent, frequent, auto:
    assert p["expert_cache_hit_rate_runs"] == 0 and p["expert_cache_hit_rate_traced"] == 384, p
assert recent["expert_evict"] == "recent" and frequent["expert_evict"] == "frequent", (recent, frequent)
# the run gave up the least recently used: its cache replayed, its rate
assert 0 < bench["expert_cache_hit_rate"] < 1, bench
assert abs(recent["predicted_expert_cache_hit_rate"] - bench["expert_cache_hit_rate"]) < 1e-9, (recent, bench)
# auto takes the eviction that hits more
r, f = recent["predicted_expert_cache_hit_rate"], frequent["predicted_expert_cache_hit_rate"]
assert auto["expert_evict"] == ("frequent" if f > r else "recent"), (r, f, auto)
assert auto["predicted_expert_cache_hit_rate"] == max(r, f), (r, f, auto)
' "$tmp/recent" "$tmp/frequent" "$tmp/auto" "$tmp/bench" && ok ||
        bad "$arch replayed routing: $(cat "$tmp/recent" "$tmp/frequent" "$tmp/auto" "$tmp/bench" "$tmp/err")"

    # bench measures it: two slots cannot hit (each token's two experts
    # push out the last); a cache of every expert reads only the rest
    "$LAMINA" bench -m "$model" --backend cpu --ram-layers 0 --expert-cache 1 -p 8 -n 8 -r 1 --json \
        >"$tmp/small" 2>"$tmp/err" &&
        "$LAMINA" bench -m "$model" --backend cpu --ram-layers 0 --whole-layers -p 8 -n 8 -r 1 --json \
            >"$tmp/whole" 2>>"$tmp/err" &&
        python3 -c '
import json, sys
small, whole = (json.load(open(f)) for f in sys.argv[1:3])
assert small["experts_per_token"] == 2.0 and small["expert_cache_hit_rate"] == 0.0, small
# every token: the layers less their experts, and two experts of each
assert small["read_bytes_per_token"] < whole["read_bytes_per_token"] / 2, (small, whole)
# (the reads ahead and the gaps between tensors make it not quite equal)
assert abs(whole["read_bytes_per_token"] / whole["dense_read_bytes_per_token"] - 1) < 0.1, whole
assert "expert_cache_hit_rate" not in whole, whole
' "$tmp/small" "$tmp/whole" && ok || bad "$arch bench: $(cat "$tmp/small" "$tmp/whole" "$tmp/err")"
done

"$LAMINA" run -q -m "$tmp/moe-llama.gguf" -p ab --expert-evict often >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "'often' is neither recent nor frequent" "$tmp/err" &&
    ok || bad "--expert-evict often: $(cat "$tmp/err")"

# against llama.cpp, on the file the fixture was made from
smollm2=${LAMINA_TEST_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ -f "$smollm2" ]; then
    for arch in llama qwen3moe qwen2moe; do
        model=$tmp/moe-$arch-smollm2.gguf
        "$LAMINA" synth -q -o "$model" --shape moe-tiny --arch "$arch" --type Q8_0 \
            --tokenizer-from "$smollm2" >/dev/null || { bad "synth moe-tiny $arch"; continue; }
        want=$(awk -v a="$arch" '$1 == a { print $2 }' "$FIXTURES/ppl-moe-tiny-c512.txt")
        for opts in "" "--backend cpu --ram-layers 0 --expert-cache 1"; do
            # shellcheck disable=SC2086
            got=$("$LAMINA" perplexity -q -m "$model" -f "$FIXTURES/ppl-text.txt" -c 512 -t 2 \
                --chunks 4 $opts | sed -n 's/^perplexity: //p')
            echo "moe-tiny $arch perplexity ($opts): lamina $got, llama.cpp -fa off $want"
            awk -v g="${got:-0}" -v w="$want" 'BEGIN { d = (g - w) / w; exit !(d < 0.005 && d > -0.005) }' &&
                ok || bad "moe-tiny $arch perplexity $got ($opts) is not within 0.5% of $want"
        done
    done
elif [ -n "${CI:-}" ]; then
    bad "the default model is missing in CI: $smollm2 (run scripts/fetch-model)"
else
    echo "SKIP (part): no $smollm2 for the comparison with llama.cpp"
fi

echo "experts: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
