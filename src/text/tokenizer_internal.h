/* Shared pieces of the tokenizer: the vocabulary tables built by
 * tokenizer.c, and the two algorithms (tokenizer_spm.c, tokenizer_bpe.c)
 * that turn one run of plain text (no special tokens in it) into ids. */
#ifndef LM_TOKENIZER_INTERNAL_H
#define LM_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* Token attributes as bit flags: llama.cpp ORs CONTROL onto end-of-turn
 * tokens that the converter left as normal, so one token can carry two. */
enum {
    LM_TOK_UNDEFINED = 0,
    LM_TOK_UNKNOWN = 1 << 0,
    LM_TOK_UNUSED = 1 << 1,
    LM_TOK_NORMAL = 1 << 2,
    LM_TOK_CONTROL = 1 << 3,
    LM_TOK_USER_DEFINED = 1 << 4,
    LM_TOK_BYTE = 1 << 5,
};

typedef enum { LM_VOCAB_SPM, LM_VOCAB_BPE } lm_vocab_kind;

/* Open-addressing map from byte strings to int32.  Keys are not copied:
 * they point into the tokenizer's own arena. */
typedef struct {
    const char *key;
    uint32_t len;
    uint32_t hash;
    int32_t val; /* -1: empty slot */
} lm_strmap_slot;

typedef struct {
    lm_strmap_slot *slots;
    uint32_t mask;
} lm_strmap;

int lm_strmap_init(lm_strmap *m, size_t n_keys);
void lm_strmap_free(lm_strmap *m);
/* Keeps the existing value when the key is already present (first wins). */
void lm_strmap_put(lm_strmap *m, const char *key, size_t len, int32_t val);
int32_t lm_strmap_get(const lm_strmap *m, const char *key, size_t len);
/* Looks up the key a + sep + b without building it. */
int32_t lm_strmap_get3(const lm_strmap *m, const char *a, size_t alen, char sep,
                       const char *b, size_t blen);

/* Growable output id list. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} lm_idvec;

int lm_idvec_push(lm_idvec *o, int32_t id);

typedef struct {
    const char *text; /* into arena, NUL-terminated */
    uint32_t len;
    float score;
    uint8_t attr;
} lm_tok_entry;

typedef struct lm_bpe_pre lm_bpe_pre; /* compiled pre-tokenizer regexes */

struct lm_tokenizer {
    lm_vocab_kind kind;
    int32_t n_vocab;
    lm_tok_entry *tok;
    char *arena; /* all token and merge texts */
    lm_strmap by_text;

    int32_t bos, eos, eot, eom, unk;
    bool add_bos, add_eos, add_space_prefix;

    /* Control / user-defined / unknown tokens, longest text first: the
     * order llama.cpp splits them out of the text. */
    int32_t *special;
    size_t n_special;
    bool *eog;

    /* SPM: id of "<0xXX>" per byte (or of the bare byte), -1 if none. */
    int32_t byte_tok[256];

    /* BPE */
    lm_strmap merges; /* "left right" -> rank */
    bool ignore_merges;
    lm_bpe_pre *pre;
};

/* Priority queue of adjacent-pair merge candidates for both algorithms:
 * the highest priority pops first, on a tie the leftmost pair.  ln and rn
 * are the two symbols' sizes when queued, to spot stale entries. */
typedef struct {
    float priority;
    int32_t left, right;
    uint32_t ln, rn;
} lm_merge;

typedef struct {
    lm_merge *v;
    size_t n, cap;
} lm_mergeq;

int lm_mergeq_push(lm_mergeq *q, lm_merge m); /* -1 when out of memory */
lm_merge lm_mergeq_pop(lm_mergeq *q);         /* q->n must be > 0 */

/* tokenizer_spm.c: SentencePiece BPE over scores on one text fragment;
 * space_prefix puts the " " llama.cpp adds before the first fragment. */
int lm_spm_tokenize(const lm_tokenizer *t, const char *text, size_t len, bool space_prefix,
                    lm_idvec *out);

/* tokenizer_bpe.c */
/* Compiles the regexes for tokenizer.ggml.pre (NULL/"" means "default")
 * and sets t->pre and t->ignore_merges; -1 with an error if unknown. */
int lm_bpe_init(lm_tokenizer *t, const char *pre);
void lm_bpe_free(lm_tokenizer *t);
int lm_bpe_tokenize(const lm_tokenizer *t, const char *text, size_t len, lm_idvec *out);
/* Undo the byte-to-unicode mapping of a gpt2 token text.  Returns the
 * decoded length; writes at most cap bytes. */
size_t lm_bpe_decode(const char *text, size_t len, char *buf, size_t cap);

#endif
