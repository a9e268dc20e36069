/* Hugging Face checkpoint tensor names to GGUF's, as llama.cpp's
 * convert_hf_to_gguf.py names them, for the architectures lamina converts
 * (llama, mistral: written as llama; qwen2).
 *
 *   model.embed_tokens.weight                    token_embd.weight
 *   model.norm.weight                            output_norm.weight
 *   lm_head.weight                               output.weight
 *   model.layers.N.input_layernorm.weight        blk.N.attn_norm.weight
 *   model.layers.N.self_attn.q_proj.{weight,bias} blk.N.attn_q.{weight,bias}
 *   (k_proj, v_proj: attn_k, attn_v; o_proj: attn_output)
 *   model.layers.N.post_attention_layernorm.weight blk.N.ffn_norm.weight
 *   model.layers.N.mlp.{gate,up,down}_proj.weight blk.N.ffn_{gate,up,down}.weight
 *
 * llama's q_proj and k_proj rows are permuted: Hugging Face stores each
 * head's rotary pairs as two halves (rotate_half), GGUF's llama as adjacent
 * pairs, so within each head of hd = 2 * half rows, GGUF row 2 * i + j is
 * HF row j * half + i (convert_hf_to_gguf.py's permute; k_proj counts the
 * KV heads).  qwen2 uses NeoX RoPE, which keeps the halves: no permutation. */
#ifndef LM_HF_NAMES_H
#define LM_HF_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LM_HF_KEEP_ROWS,   /* rows as they are */
    LM_HF_PERMUTE_Q,   /* llama's rotary permutation over the attention heads */
    LM_HF_PERMUTE_K,   /* the same over the KV heads */
} lm_hf_rows;

typedef enum {
    LM_HF_NAME_OK,      /* out holds the GGUF name */
    LM_HF_NAME_SKIP,    /* a tensor llama.cpp's converter leaves out (rotary inv_freq) */
    LM_HF_NAME_UNKNOWN, /* not a tensor of these architectures */
} lm_hf_name_result;

/* hf: the checkpoint's name; permute_qk: llama (true) or qwen2 (false);
 * n_layer: names of layers at or past it are unknown.  out (len bytes)
 * gets the GGUF name, *rows what to do with the rows. */
lm_hf_name_result lm_hf_tensor_name(const char *hf, bool permute_qk, uint32_t n_layer, char *out,
                                    size_t len, lm_hf_rows *rows);

/* dst = src with the rows of each head permuted as above: n_rows rows of
 * row_bytes, n_head heads (n_rows a multiple of 2 * n_head).  0, or -1 when
 * the rows do not split into heads of an even size. */
int lm_hf_permute_rows(const void *src, void *dst, uint64_t n_rows, size_t row_bytes,
                       uint32_t n_head);

#endif
