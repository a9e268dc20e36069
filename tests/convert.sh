#!/bin/sh
# lamina convert on a Hugging Face folder made by Hugging Face's libraries
# from the default model (tests/make_hf_folder.py: safetensors, transformers'
# tokenizer and config; no torch): the GGUF it writes is byte for byte the one
# llama.cpp's convert_hf_to_gguf.py writes (F16, BF16, F32, 3 shards, llama3
# RoPE scaling), it tokenizes the fixture
# strings as the default model does, its greedy text equals the original
# model's F16 rewrite (lamina quantize ... F16: the same weights) on the
# fixture prompts, sharded and single-file checkpoints give the same file,
# and bad folders give one-line errors with no output left behind.
# Needs numpy, safetensors, transformers, tokenizers and gguf: in
# $LAMINA_HF_PYTHON, else installed from PyPI in a virtual environment
# ($LAMINA_HF_VENV, default ~/.cache/lamina-hf-venv; no torch).  Without them
# this skips (77), except in CI.
set -u
. "$(dirname "$0")/model-tests.sh"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
need() { # what is missing, for CI (fail) or a developer's machine (skip)
    [ -n "${CI:-}" ] && { echo "FAIL: $1"; exit 1; }
    echo "SKIP: $1"; exit 77
}
# Hugging Face's libraries: $LAMINA_HF_PYTHON's, else pip-installed in a
# virtual environment outside the repo (the versions this test was made with)
mods="numpy, safetensors, tokenizers, transformers, gguf"
if [ -n "${LAMINA_HF_PYTHON:-}" ]; then
    py=$LAMINA_HF_PYTHON
    "$py" -c "import $mods" 2>/dev/null || need "$py lacks one of $mods"
else
    venv=${LAMINA_HF_VENV:-$HOME/.cache/lamina-hf-venv}
    py=$venv/bin/python
    if ! "$py" -c "import $mods" 2>/dev/null; then
        { python3 -m venv "$venv" && "$venv/bin/pip" install -q numpy==2.4.6 safetensors==0.8.0 \
              tokenizers==0.23.3 transformers==5.24.0 gguf==0.19.0; } >&2 ||
            need "$mods could not be installed in $venv (python3-venv, PyPI)"
    fi
fi
here=$(dirname "$0")

"$py" "$here/make_hf_folder.py" "$model" "$tmp/hf" >/dev/null 2>"$tmp/err" ||
    { bad "make_hf_folder: $(tail -n 3 "$tmp/err")"; echo "convert: $pass passed, $fail failed"; exit 1; }
"$py" "$here/make_hf_folder.py" "$model" "$tmp/hf3" --shards 3 >/dev/null 2>"$tmp/err" ||
    bad "make_hf_folder --shards 3: $(tail -n 3 "$tmp/err")"

# byte for byte the files llama.cpp's convert_hf_to_gguf.py writes from the
# same folders (tests/fixtures/convert-smollm2.sha256)
same_as_llamacpp() { # WHAT FILE
    want=$(sed -n "s/^\([0-9a-f]*\) $1\$/\1/p" "$FIXTURES/convert-smollm2.sha256")
    got=$(sha256sum <"$2" | cut -c1-64)
    [ -n "$want" ] && [ "$got" = "$want" ] && ok ||
        bad "$1: lamina convert's file is not convert_hf_to_gguf.py's ($got, want $want)"
}
if "$LAMINA" convert -q "$tmp/hf" "$tmp/conv.gguf" >/dev/null 2>"$tmp/err"; then
    ok; same_as_llamacpp F16 "$tmp/conv.gguf"
else bad "convert: $(cat "$tmp/err")"; fi
if "$LAMINA" convert -q "$tmp/hf3" "$tmp/conv3.gguf" >/dev/null 2>"$tmp/err"; then
    ok; same_as_llamacpp F16-3-shards "$tmp/conv3.gguf"
else bad "convert of 3 shards: $(cat "$tmp/err")"; fi
"$py" "$here/make_hf_folder.py" "$model" "$tmp/hfl3" --rope-llama3 >/dev/null 2>"$tmp/err" ||
    bad "make_hf_folder --rope-llama3: $(tail -n 3 "$tmp/err")"
if "$LAMINA" convert -q "$tmp/hfl3" "$tmp/l3.gguf" >/dev/null 2>"$tmp/err"; then
    same_as_llamacpp F16-llama3-rope "$tmp/l3.gguf"; rm -f "$tmp/l3.gguf"
else bad "convert with llama3 RoPE scaling: $(cat "$tmp/err")"; fi
for t in BF16 F32; do
    if "$LAMINA" convert -q --type $t "$tmp/hf" "$tmp/$t.gguf" >/dev/null 2>"$tmp/err"; then
        same_as_llamacpp $t "$tmp/$t.gguf"; rm -f "$tmp/$t.gguf"
    else bad "convert --type $t: $(cat "$tmp/err")"; fi
done

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
greedy=3
[ -n "${LAMINA_SANITIZED:-}" ] && greedy=1 # memory errors, not tokens: one prompt
while IFS= read -r line && [ "$n" -lt "$greedy" ]; do
    n=$((n + 1))
    prompt=$(unescape "$line"); prompt=${prompt%x}
    want=$("$LAMINA" run -q -m "$tmp/ref-f16.gguf" -p "$prompt" -n 24 --temp 0 --ids -t 2 -c 256 2>&1)
    got=$("$LAMINA" run -q -m "$tmp/conv.gguf" -p "$prompt" -n 24 --temp 0 --ids -t 2 -c 256 2>&1)
    [ -n "$want" ] && [ "$got" = "$want" ] && ok || bad "greedy prompt $n: got '$got', want '$want'"
    [ "$n" -eq 1 ] && { first_prompt=$prompt; first_want=$want; }
done <"$FIXTURES/prompts.txt"

# -m HF_DIR: converted once into the cache at the type --auto picks, then
# reused; a changed checkpoint is converted again
cache=$tmp/cache
models_in() { ls "$1/lamina/models" 2>/dev/null | grep -c '\.gguf$'; }
got=$(XDG_CACHE_HOME=$cache "$LAMINA" run -m "$tmp/hf" -p "$first_prompt" -n 24 --temp 0 --ids \
      -t 2 -c 256 2>"$tmp/err")
[ "$got" = "$first_want" ] && grep -q "converting it once" "$tmp/err" && ok ||
    bad "run -m HF_DIR (first): got '$got', stderr $(grep -v '^auto\|^convert' "$tmp/err")"
f=$(ls "$cache/lamina/models/"hf-*-F16.gguf 2>/dev/null)
[ -n "$f" ] && [ "$(models_in "$cache")" -eq 1 ] && ok ||
    bad "the cache holds $(ls "$cache/lamina/models" 2>&1), not one hf-KEY-F16.gguf"
touch -d '2001-01-01' "$f"
got=$(XDG_CACHE_HOME=$cache "$LAMINA" run -m "$tmp/hf/" -p "$first_prompt" -n 24 --temp 0 --ids \
      -t 2 -c 256 2>"$tmp/err")
[ "$got" = "$first_want" ] && grep -q "using its conversion" "$tmp/err" &&
    [ "$(models_in "$cache")" -eq 1 ] && [ -z "$(find "$f" -newermt '2002-01-01')" ] && ok ||
    bad "run -m HF_DIR (again): got '$got', stderr $(cat "$tmp/err")"
name=$(XDG_CACHE_HOME=$cache "$LAMINA" info -m "$tmp/hf" 2>/dev/null | sed -n 's/^file: *//p')
case $name in "$f"*) ok ;; *) bad "info -m HF_DIR: file '$name', want $f" ;; esac
cp -r "$tmp/hf" "$tmp/hf2" && touch "$tmp/hf2/config.json"
XDG_CACHE_HOME=$cache "$LAMINA" tokenize -m "$tmp/hf2" hello >/dev/null 2>"$tmp/err"
[ "$(models_in "$cache")" -eq 2 ] && grep -q "converting it once" "$tmp/err" && ok ||
    bad "another folder: the cache holds $(ls "$cache/lamina/models")"
# a budget the F16 model does not fit: the type --auto picks (its lines say)
XDG_CACHE_HOME=$tmp/cache2 "$LAMINA" tokenize -m "$tmp/hf" --ram 280M -c 4096 hello \
    >/dev/null 2>"$tmp/err"
want_type=$(sed -n 's/^auto: chose \([A-Z0-9_]*\).*/\1/p' "$tmp/err")
[ "$want_type" = Q5_K_M ] && ls "$tmp/cache2/lamina/models/"hf-*-Q5_K_M.gguf >/dev/null 2>&1 && ok ||
    bad "--ram 280M: chose '$want_type', cache $(ls "$tmp/cache2/lamina/models" 2>&1)"
# a bad folder: one line, nothing cached
XDG_CACHE_HOME=$tmp/cache3 "$LAMINA" run -m "$tmp" -p hi -n 1 >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "config.json" "$tmp/err" &&
    [ "$(models_in "$tmp/cache3")" -eq 0 ] && ok ||
    bad "run -m on a folder that is no model: exit $rc, stderr $(cat "$tmp/err")"

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
# vocabularies it would get wrong: SentencePiece-style, an unknown pre-tokenizer
cp -r "$tmp/hf" "$tmp/b5" && "$py" -c "import json, sys; p = sys.argv[1]; t = json.load(open(p))
t['pre_tokenizer'] = {'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': 'first', 'split': False}
json.dump(t, open(p, 'w'))" "$tmp/b5/tokenizer.json"
expect_error "a SentencePiece-style vocabulary" "SentencePiece" "$tmp/b5"
cp -r "$tmp/hf" "$tmp/b6" && "$py" -c "import json, sys; p = sys.argv[1]; t = json.load(open(p))
t['pre_tokenizer'] = {'type': 'Sequence', 'pretokenizers': [{'type': 'Split', 'pattern': {'Regex': '\\s+'}, 'behavior': 'Isolated', 'invert': False}, {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': False}]}
json.dump(t, open(p, 'w'))" "$tmp/b6/tokenizer.json"
expect_error "an unknown pre-tokenizer" "does not recognise" "$tmp/b6"

echo "convert: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
