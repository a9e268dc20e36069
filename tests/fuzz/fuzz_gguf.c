/* libFuzzer harness: the bytes as a GGUF file.  The reader's view of it is
 * walked (every key, value and tensor, whose bytes must lie inside the
 * file), a tokenizer is made from its metadata and run over a fixed text,
 * and then the whole model is loaded as `lamina run' would load it.
 * lm_gguf_open takes a path, so the input goes into a memfd, opened again
 * through /proc/self/fd. */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_tokens.h"
#include "gguf.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink; /* keeps the reads of the walk */

static void touch(const void *p, uint64_t n)
{
    const unsigned char *b = p;
    for (uint64_t i = 0; i < n; i++)
        sink += b[i];
}

static void walk(const lm_gguf *g)
{
    for (uint64_t i = 0; i < lm_gguf_n_kv(g); i++) {
        const lm_gguf_kv *kv = lm_gguf_kv_at(g, i);
        touch(kv->key.data, kv->key.len);
        if (kv->type == LM_GGUF_STRING)
            touch(kv->v.str.data, kv->v.str.len);
        if (kv->type != LM_GGUF_ARRAY)
            continue;
        if (kv->elem_type == LM_GGUF_STRING) {
            const lm_gguf_str *s = kv->data;
            for (uint64_t j = 0; j < kv->n; j++)
                touch(s[j].data, s[j].len);
        } else if (kv->n > 0) {
            touch(kv->data, 1); /* an element of the copy at each end */
            touch((const char *)kv->data + kv->n - 1, 1);
        }
    }
    const uint64_t file_size = lm_gguf_file_size(g);
    for (uint64_t i = 0; i < lm_gguf_n_tensors(g); i++) {
        const lm_gguf_tensor *t = lm_gguf_tensor_at(g, i);
        touch(t->name.data, t->name.len);
        if (t->file_offset > file_size || t->nbytes > file_size - t->file_offset) {
            fprintf(stderr, "fuzz: tensor %llu ends past the end of the file\n",
                    (unsigned long long)i);
            abort();
        }
        if (t->nbytes > 0) { /* the mapping faults if these are outside it */
            touch(t->data, 1);
            touch((const char *)t->data + t->nbytes - 1, 1);
        }
    }
}

static const char sample[] = "Hello, world! <|im_start|>user\n<s>[INST] caf\xc3\xa9 "
                             "\xe2\x96\x81 12345 \xf0\x9f\x98\x80\t\r\n</s>";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz_gguf", MFD_CLOEXEC);
        if (fd < 0) {
            perror("fuzz_gguf: memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz_gguf: writing the memfd");
        abort();
    }

    lm_gguf *g = lm_gguf_open(path);
    if (g) {
        walk(g);
        lm_tokenizer *t = lm_tokenizer_from_gguf(g);
        if (t) {
            for (int flags = 0; flags < 4; flags++)
                fuzz_tokens(t, sample, sizeof sample - 1, flags & 1, flags & 2);
            lm_tokenizer_free(t);
        }
        lm_gguf_close(g);
    }

    lm_model *m = lm_model_load(path);
    if (m) {
        lm_layer_view view;
        for (uint32_t il = 0; il < m->hp.n_layer; il++)
            lm_model_layer_view(m, (int)il, &view);
        sink += (unsigned)lm_model_bytes_per_token(m);
        lm_model_free(m);
    }
    return 0;
}
