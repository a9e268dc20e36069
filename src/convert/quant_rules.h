/* Which type each tensor of a model takes when it is quantized to a target
 * (lamina quantize, and the automatic choice for a RAM budget).
 *
 * The rules are llama-quantize's for the types lamina has, so that a file
 * made here holds the same tensor types as the file llama.cpp makes from the
 * same input:
 * - only matrices (2-D and up, trailing dimensions of 1 not counted) whose
 *   name ends in "weight" are converted;
 *   norms, the experts' router (ffn_gate_inp) and every 1-D tensor keep
 *   their type;
 * - for a quantized target, the output head (output.weight, or token_embd
 *   when the embeddings are tied) takes Q6_K, or Q8_0 when its width is not
 *   a multiple of the target's block or the target is Q8_0 (the head is the
 *   most sensitive matrix and is read once per token);
 * - with 8 experts (Mixtral) attn_k and attn_v take Q8_0 (they are tiny
 *   beside the experts);
 * - the mixes Q4_K_M and Q5_K_M also give Q6_K to attn_v and ffn_down in
 *   the first and last eighth of the layers and every third layer between,
 *   Q4_K_M (Q5_K_M) gives a fused attn_qkv Q5_K (Q6_K), and with 8 experts
 *   Q4_K_M (and Q4_K_S) give attn_output Q5_K;
 * - the mix Q4_K_S gives Q5_K to attn_v in the first 4 layers and to
 *   ffn_down in the first eighth;
 * - in a 70B model (llama.cpp's: 80 layers of llama with grouped-query
 *   attention, or of qwen2) an attn_v at Q4_K takes Q5_K;
 * - only the architectures lamina runs are taken (llama-quantize has rules
 *   for others: Falcon, RWKV, ...), and not one shard of a split model;
 * - a width that is not a multiple of the chosen type's block falls back as
 *   llama-quantize does: Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, and to
 *   F16 when not even that fits.
 * --pure turns off all but the fallback: every converted matrix takes the
 * target's type. */
#ifndef LM_QUANT_RULES_H
#define LM_QUANT_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"

typedef enum { LM_MIX_NONE, LM_MIX_S, LM_MIX_M } lm_quant_mix;

typedef struct {
    const char *name;  /* as given on the command line, canonical case: "Q4_K_M" */
    uint32_t base;     /* lm_type of most matrices */
    lm_quant_mix mix;
    uint32_t ftype;    /* llama.cpp's general.file_type for it */
} lm_quant_target;

/* 0, or -1 with an error listing the targets. */
int lm_quant_target_parse(const char *name, lm_quant_target *out);
/* "F32, F16, BF16, Q4_0, ..." */
const char *lm_quant_target_list(void);

/* What the rules need to know of the whole model. */
typedef struct {
    bool tied;          /* no output.weight: token_embd is the head too */
    uint32_t n_layer;
    uint32_t n_expert;
    bool is_70b;        /* llama.cpp's LLM_TYPE_70B (80 layers of llama with GQA, or qwen2) */
    bool pure;
} lm_quant_model;

int lm_quant_model_of(const lm_gguf *g, bool pure, lm_quant_model *out);

typedef struct {
    uint32_t type;      /* the type to write */
    bool converted;     /* false: a tensor the rules keep as it is */
    uint32_t wanted;    /* before the width fallback (== type when none) */
} lm_quant_choice;

lm_quant_choice lm_quant_tensor_type(const lm_quant_target *target, const lm_quant_model *m,
                                     const lm_gguf_tensor *t);

#endif
