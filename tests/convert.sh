#!/bin/sh
# lamina convert on a Hugging Face folder made by Hugging Face's libraries
# from the default model (tests/make_hf_folder.py: safetensors, transformers'
# tokenizer and config; no torch): the GGUF it writes tokenizes the fixture
# strings as the default model does, its greedy text equals the original
# model's F16 rewrite (lamina quantize ... F16: the same weights) on the
# fixture prompts, sharded and single-file checkpoints give the same file,
# and bad folders give one-line errors with no output left behind.
# Needs python3 with numpy, safetensors, transformers, tokenizers and gguf
# ($LAMINA_HF_PYTHON, default python3); skips (77) without them.
set -u
. "$(dirname "$0")/model-tests.sh"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
py=${LAMINA_HF_PYTHON:-python3}
# (CI does not install them yet: there it skips too)
if ! "$py" -c "import numpy, safetensors, tokenizers, transformers, gguf" 2>/dev/null; then
    echo "SKIP: $py lacks numpy, safetensors, tokenizers, transformers or gguf (pip install them, or set LAMINA_HF_PYTHON)"
    exit 77
fi
here=$(dirname "$0")

"$py" "$here/make_hf_folder.py" "$model" "$tmp/hf" >/dev/null 2>"$tmp/err" ||
    { bad "make_hf_folder: $(tail -n 3 "$tmp/err")"; echo "convert: $pass passed, $fail failed"; exit 1; }
"$py" "$here/make_hf_folder.py" "$model" "$tmp/hf3" --shards 3 >/dev/null 2>"$tmp/err" ||
    bad "make_hf_folder --shards 3: $(tail -n 3 "$tmp/err")"

if "$LAMINA" convert -q "$tmp/hf" "$tmp/conv.gguf" >/dev/null 2>"$tmp/err"; then ok; else
    bad "convert: $(cat "$tmp/err")"; fi
if "$LAMINA" convert -q "$tmp/hf3" "$tmp/conv3.gguf" >/dev/null 2>"$tmp/err"; then
    # the same tensors and metadata whatever the sharding (tensor order aside)
    a=$("$LAMINA" info -m "$tmp/conv.gguf" | grep -v '^file:\|^name:')
    b=$("$LAMINA" info -m "$tmp/conv3.gguf" | grep -v '^file:\|^name:')
    [ "$a" = "$b" ] && ok || bad "sharded and single-file conversions differ"
else bad "convert of 3 shards: $(cat "$tmp/err")"; fi

# tokenization: the converted vocabulary, merges and pre-tokenizer give the
# default model's ids
i=0
while IFS= read -r line; do
    i=$((i + 1))
    want=$(sed -n "${i}p" "$FIXTURES/tokenize-smollm2.ids")
    text=$(unescape "$line"); text=${text%x}
    got=$("$LAMINA" tokenize -m "$tmp/conv.gguf" --no-bos --no-parse-special "$text" 2>&1)
    [ "$got" = "$want" ] && ok || bad "tokenize string $i: got '$got', want '$want'"
done <"$FIXTURES/tokenize-strings.txt"

# greedy text against the default model's own F16 rewrite
"$LAMINA" quantize -q "$model" "$tmp/ref-f16.gguf" F16 >/dev/null 2>&1 || bad "quantize to F16"
n=0
while IFS= read -r line && [ "$n" -lt 3 ]; do
    n=$((n + 1))
    prompt=$(unescape "$line"); prompt=${prompt%x}
    want=$("$LAMINA" run -q -m "$tmp/ref-f16.gguf" -p "$prompt" -n 24 --temp 0 --ids -t 2 -c 256 2>&1)
    got=$("$LAMINA" run -q -m "$tmp/conv.gguf" -p "$prompt" -n 24 --temp 0 --ids -t 2 -c 256 2>&1)
    [ -n "$want" ] && [ "$got" = "$want" ] && ok || bad "greedy prompt $n: got '$got', want '$want'"
done <"$FIXTURES/prompts.txt"

# --type Q8_0: converted then quantized, no temporary left
"$LAMINA" convert -q --type Q8_0 "$tmp/hf" "$tmp/q8.gguf" >/dev/null 2>"$tmp/err" && ok ||
    bad "convert --type Q8_0: $(cat "$tmp/err")"
ls "$tmp" | grep -q "f16-convert" && bad "a temporary left: $(ls "$tmp")" || ok

# bad folders: one line, exit 1, no output
expect_error() {
    what=$1 want=$2
    shift 2
    rm -f "$tmp/bad.gguf"
    "$LAMINA" convert "$@" "$tmp/bad.gguf" >/dev/null 2>"$tmp/err"
    rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$want" "$tmp/err" &&
        [ ! -e "$tmp/bad.gguf" ]; then ok; else
        bad "$what: exit $rc, stderr '$(cat "$tmp/err")'"; fi
}
expect_error "no folder" "config.json" "$tmp/none"
cp -r "$tmp/hf" "$tmp/b1" && rm "$tmp/b1/model.safetensors"
expect_error "no weights" "no model.safetensors" "$tmp/b1"
cp -r "$tmp/hf" "$tmp/b2" && sed -i 's/"num_hidden_layers": 30/"num_hidden_layers": 31/' "$tmp/b2/config.json"
expect_error "a missing layer" "of the" "$tmp/b2"
cp -r "$tmp/hf" "$tmp/b3" && sed -i 's/"hidden_size": 576/"hidden_size": 512/' "$tmp/b3/config.json"
expect_error "shapes not config.json's" "shape" "$tmp/b3"
cp -r "$tmp/hf" "$tmp/b4" && head -c 5000000 "$tmp/hf/model.safetensors" >"$tmp/b4/model.safetensors"
expect_error "a cut checkpoint" "model.safetensors" "$tmp/b4"

echo "convert: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
