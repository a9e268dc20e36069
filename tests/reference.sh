#!/bin/sh
# lamina against llama.cpp on the default model (SmolLM2-135M-Instruct Q4_1):
# greedy token ids for the fixture prompts, token ids for the fixture
# strings, and perplexity within 1%.  The reference outputs were made with
# llama-cpp-python (tests/fixtures/README).  Without the model this skips
# (exit 77), except in CI, where the model must be there.  These check the
# CPU path: --backend cpu, whatever device the default (auto) might pick.
set -u
. "$(dirname "$0")/model-tests.sh"

# greedy: the first 32 generated tokens equal llama.cpp's
check_greedy 0 /dev/null --backend cpu

# the portable C kernels compute the same bits as the AVX2 ones
prompt=$(unescape "$(head -n 1 "$FIXTURES/prompts.txt")"); prompt=${prompt%x}
want=$(head -n 1 "$FIXTURES/greedy-smollm2.ids")
got=$(LAMINA_NO_AVX2=1 "$LAMINA" run -m "$model" -p "$prompt" -n 32 --temp 0 --ids -q -t 2 --backend cpu)
if [ "$got" = "$want" ]; then ok; else bad "portable kernels, prompt 1: got '$got', llama.cpp '$want'"; fi

# streamed from disk (a RAM budget that holds 9 of the 30 layers, and the
# same without prefetch): the same tokens
for how in "--ram 140M" "--ram 140M --no-prefetch"; do
    # shellcheck disable=SC2086
    got=$("$LAMINA" run -m "$model" -p "$prompt" -n 32 --temp 0 --ids -q -t 2 -c 512 --backend cpu $how)
    if [ "$got" = "$want" ]; then ok; else bad "streamed ($how), prompt 1: got '$got', llama.cpp '$want'"; fi
done

# tokenize: ids equal llama.cpp's (no BOS, special tokens as text)
i=0
while IFS= read -r line; do
    i=$((i + 1))
    want=$(sed -n "${i}p" "$FIXTURES/tokenize-smollm2.ids")
    text=$(unescape "$line"); text=${text%x}
    got=$("$LAMINA" tokenize -m "$model" --no-bos --no-parse-special "$text")
    if [ "$got" = "$want" ]; then ok; else
        bad "tokenize string $i: got '$got', llama.cpp '$want'"; fi
done <"$FIXTURES/tokenize-strings.txt"

# perplexity within 1% of llama.cpp's.  Under the sanitizers (which look for
# memory errors, not numbers: the plain build checks the value) one window
# of the eight, the same code, and only a number is asked for: 8 windows
# there take a minute.
want=$(sed -n 's/^perplexity: //p' "$FIXTURES/ppl-smollm2-c512.txt")
chunks=8
[ -n "${LAMINA_SANITIZED:-}" ] && chunks=1
got=$("$LAMINA" perplexity -m "$model" -f "$FIXTURES/ppl-text.txt" -c 512 --chunks $chunks -q -t 2 --backend cpu 2>/dev/null |
      sed -n 's/^perplexity: //p')
if [ "$chunks" -ne 8 ]; then
    awk -v g="${got:-0}" 'BEGIN { exit !(g > 1 && g < 1000) }' && ok ||
        bad "perplexity over $chunks window: '$got'"
elif [ -n "$got" ] && awk -v g="$got" -v w="$want" 'BEGIN { d = (g - w) / w; exit !(d < 0.01 && d > -0.01) }'; then
    ok; echo "perplexity: lamina $got, llama.cpp $want"
else bad "perplexity: lamina '$got', llama.cpp '$want' (more than 1% apart)"; fi

echo "reference: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
