#!/usr/bin/env python3
"""Write a Hugging Face model folder from a llama GGUF, with Hugging Face's own
libraries: the weights (dequantized by gguf-py, llama's rotary permutation
undone, Hugging Face's names) written by safetensors, the tokenizer built by the
tokenizers library from the GGUF's vocabulary and merges and saved by
transformers' save_pretrained, config.json by
transformers' LlamaConfig.  No torch is needed.  For tests of lamina convert:

    make_hf_folder.py MODEL.gguf OUT_DIR [--dtype f16|f32] [--shards N] [--rope-llama3]

Needs numpy, safetensors, transformers, tokenizers and gguf (PyPI)."""
import argparse
import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast

NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def unpermute(w, n_head):
    """GGUF's llama rows (rotary pairs adjacent) back to Hugging Face's
    (two halves per head): the inverse of convert_hf_to_gguf.py's permute."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def field(r, key):
    f = r.fields[key]
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if f.types[0].name == "STRING" else v.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="f16", choices=["f16", "f32"])
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--rope-llama3", action="store_true",
                    help="say the model uses Llama 3's RoPE scaling (factor 32, as Llama 3.2)")
    a = ap.parse_args()
    r = GGUFReader(a.model)
    arch = field(r, "general.architecture")
    if arch != "llama":
        sys.exit(f"{a.model}: architecture {arch}, this script writes llama folders")
    n_head = field(r, "llama.attention.head_count")
    n_kv = field(r, "llama.attention.head_count_kv")
    n_embd = field(r, "llama.embedding_length")
    n_layer = field(r, "llama.block_count")
    names = [t.name for t in r.tensors]
    tied = "output.weight" not in names
    os.makedirs(a.out, exist_ok=True)

    dt = np.float16 if a.dtype == "f16" else np.float32

    def hf_name(name):
        parts = name.split(".")
        if name == "token_embd.weight":
            return "model.embed_tokens.weight"
        if name == "output_norm.weight":
            return "model.norm.weight"
        if name == "output.weight":
            return "lm_head.weight"
        if parts[0] == "blk":
            return f"model.layers.{parts[1]}.{NAMES[parts[2]]}.{parts[3]}"
        sys.exit(f"{name}: not a llama tensor")

    def hf_tensor(t):
        w = dequantize(t.data, t.tensor_type).reshape([int(x) for x in reversed(t.shape)])
        w = w.astype(np.float32)
        role = t.name.split(".")[2] if t.name.startswith("blk.") else None
        if role == "attn_q":
            w = unpermute(w, n_head)
        elif role == "attn_k":
            w = unpermute(w, n_kv)
        # norms stay f32 as most checkpoints keep them in the model's dtype;
        # f16 here too, so that every dtype path is used
        return np.ascontiguousarray(w.astype(dt))

    # one shard's tensors in memory at a time: a 7B model fits a small machine
    by_name = {hf_name(t.name): t for t in r.tensors}
    keys = sorted(by_name)
    if a.shards == 1:
        save_file({k: hf_tensor(by_name[k]) for k in keys}, os.path.join(a.out, "model.safetensors"),
                  metadata={"format": "pt"})
    else:
        weight_map, total = {}, 0
        for s in range(a.shards):
            part = keys[s::a.shards]
            fname = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
            tensors = {k: hf_tensor(by_name[k]) for k in part}
            save_file(tensors, os.path.join(a.out, fname), metadata={"format": "pt"})
            for k in part:
                weight_map[k] = fname
                total += tensors[k].nbytes
            del tensors
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

    tok = make_tokenizer(r)
    tok.save_pretrained(a.out)
    cfg = LlamaConfig(
        vocab_size=len(field_list(r, "tokenizer.ggml.tokens")), hidden_size=n_embd,
        intermediate_size=field(r, "llama.feed_forward_length"), num_hidden_layers=n_layer,
        num_attention_heads=n_head, num_key_value_heads=n_kv,
        max_position_embeddings=field(r, "llama.context_length"),
        rms_norm_eps=field(r, "llama.attention.layer_norm_rms_epsilon"),
        rope_theta=field(r, "llama.rope.freq_base"), tie_word_embeddings=tied,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        torch_dtype="float16" if a.dtype == "f16" else "float32")
    if a.rope_llama3:
        cfg.rope_parameters = {
            "rope_type": "llama3", "rope_theta": field(r, "llama.rope.freq_base"), "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": field(r, "llama.context_length") // 4}
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.save_pretrained(a.out)
    print(a.out)


def make_tokenizer(r):
    """The GGUF's byte-level BPE vocabulary as a Hugging Face fast tokenizer
    (the tokenizers library's BPE with SmolLM2's pre-tokenizer: digits one
    by one, then byte-level), wrapped by transformers for save_pretrained."""
    if field(r, "tokenizer.ggml.model") != "gpt2" or field(r, "tokenizer.ggml.pre") != "smollm":
        sys.exit("this script writes SmolLM2's kind of tokenizer (gpt2 model, smollm pre)")
    tokens = [bytes(t).decode() for t in field_list(r, "tokenizer.ggml.tokens")]
    types = [int(t[0]) for t in field_list(r, "tokenizer.ggml.token_type")]
    merges = [tuple(bytes(m).decode().split(" ")) for m in field_list(r, "tokenizer.ggml.merges")]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                     fuse_unk=False, byte_fallback=False)
    tk = Tokenizer(bpe)
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(tokens, types) if ty == 3])
    name = lambda key: tokens[field(r, key)] if key in r.fields else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=name("tokenizer.ggml.bos_token_id"),
        eos_token=name("tokenizer.ggml.eos_token_id"),
        unk_token=name("tokenizer.ggml.unknown_token_id"),
        pad_token=name("tokenizer.ggml.padding_token_id"),
        chat_template=field(r, "tokenizer.chat_template") if "tokenizer.chat_template" in r.fields else None)


def field_list(r, key):
    f = r.fields[key]
    return [f.parts[i] for i in f.data]


if __name__ == "__main__":
    main()
