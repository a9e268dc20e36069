/* The architectures lamina runs: for each, what it reads from the GGUF
 * (its tensors, its defaults) and its block (block.h).  Adding one is a
 * file with its block and a row in arch.c's table. */
#ifndef LM_ARCH_H
#define LM_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "block.h"

#define LM_ROLE(w) (1u << (w))

typedef struct lm_arch_desc {
    const char *name;      /* general.architecture */
    uint32_t required;     /* LM_ROLE()s every layer must have */
    uint32_t optional;     /* ... and those it may have */
    bool rope_neox;        /* RoPE turns the two halves of a head */
    bool fused_gate_up;    /* ffn_up holds the gate's rows, then the up's */
    enum { LM_MOE_NEVER, LM_MOE_MAYBE, LM_MOE_ALWAYS } moe; /* experts in the FFN */
    bool expert_norm;      /* the used experts' weights renormalized to sum 1 */
    bool expert_ff_key;    /* an expert's width is expert_feed_forward_length, not
                              feed_forward_length (Mixtral's) */
    float norm_eps;        /* where the file gives none */
    /* the architecture's own hyperparameters, after the common ones (NULL:
     * none); 0 or -1 with an error */
    int (*read_hparams)(lm_model *m);
    int (*block)(const lm_block *b);
} lm_arch_desc;

/* The row for general.architecture `name` (len bytes), or NULL. */
const lm_arch_desc *lm_arch_find(const char *name, size_t len);

/* "llama, qwen2": the names lamina runs, for messages. */
const char *lm_arch_names(void);

/* The roles every layer of a model with m's hyperparameters must have: the
 * architecture's, with the experts' FFN in place of the dense one when the
 * file has experts. */
uint32_t lm_arch_required(const lm_hparams *hp);

/* Floats per row of the fused products (LM_A_WIDE) of m's architecture: 0
 * when it has none. */
uint32_t lm_arch_wide_width(const lm_model *m);

/* The blocks and hyperparameter readers (one file each). */
int lm_arch_llama_block(const lm_block *b);
int lm_arch_gemma3_hparams(lm_model *m);
int lm_arch_gemma3_block(const lm_block *b);
int lm_arch_qwen3_block(const lm_block *b);
int lm_arch_phi3_hparams(lm_model *m);
int lm_arch_phi3_block(const lm_block *b);

#endif
