/* Microbenchmark of lm_cpu_matmul on the default model's shapes (and 1B and
 * 7B ones), each figure
 * next to the limit it chases: decode (one token) in GB/s of weights read,
 * once with the matrix hot in cache and once streaming from RAM (cycling
 * through copies that together overflow the L3), and prompts (128 tokens) in
 * GFLOP/s.  Runs a few seconds; threads from OMP_NUM_THREADS.
 *
 *   gcc -std=c11 -O2 -fopenmp -I. -Iformats -Isrc/common -Icpu formats/quant.c \
 *       src/common/error.c src/common/utf8.c cpu/act_quant.c cpu/dot_portable.c \
 *       cpu/dot_avx2.c cpu/dot_avx512.c cpu/dot_avx512_kquant.c cpu/matmul.c \
 *       cpu/cpu_path.c bench/matmul_bench.c -lm -o /tmp/matmul_bench
 *   OMP_NUM_THREADS=1 LAMINA_CPU=avx2 /tmp/matmul_bench 13   (one case, one path) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"

#define STREAM_BYTES ((size_t)256 << 20) /* well past a 32 MiB L3 */

static double seconds_for(double budget, uint32_t type, uint8_t *const *copies, int n_copies,
                          int64_t rows, int64_t cols, const float *x, int64_t n_tok, float *y,
                          void *scratch, long *iters)
{
    lm_cpu_matmul(type, copies[0], rows, cols, x, n_tok, y, scratch); /* warm up */
    long n = 0;
    const double t0 = omp_get_wtime();
    double t;
    do {
        lm_cpu_matmul(type, copies[n % n_copies], rows, cols, x, n_tok, y, scratch);
        n++;
        t = omp_get_wtime() - t0;
    } while (t < budget);
    *iters = n;
    return t;
}

static void bench(uint32_t type, int64_t rows, int64_t cols, int64_t n_tok, int stream)
{
    const size_t bytes = lm_row_size(type, cols) * (size_t)rows;
    const int n_copies = stream ? (int)(STREAM_BYTES / bytes) + 1 : 1;
    uint8_t **copies = malloc((size_t)n_copies * sizeof *copies);
    float *wf = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++)
        wf[i] = (float)((i * 7919) % 1000 - 500) / 5000.0f;
    for (int c = 0; c < n_copies; c++) {
        copies[c] = malloc(bytes);
        if (c == 0)
            lm_type_get(type)->quantize(wf, copies[0], rows * cols);
        else
            memcpy(copies[c], copies[0], bytes);
    }
    float *x = malloc((size_t)(n_tok * cols) * sizeof(float));
    for (int64_t i = 0; i < n_tok * cols; i++)
        x[i] = (float)((i * 104729) % 2000 - 1000) / 1000.0f;
    float *y = malloc((size_t)(n_tok * rows) * sizeof(float));
    void *scratch = malloc(lm_cpu_matmul_scratch_size(type, cols, n_tok));
    long iters;
    const double t = seconds_for(0.7, type, copies, n_copies, rows, cols, x, n_tok, y, scratch,
                                 &iters);
    const double per = t / (double)iters;
    printf("%-5s %6lldx%-5lld n_tok=%-4lld %-7s %8.1f us  %6.1f GB/s of weights  %6.1f GFLOP/s\n",
           lm_type_name(type), (long long)rows, (long long)cols, (long long)n_tok,
           stream ? "RAM" : "cached", per * 1e6, (double)bytes / per / 1e9,
           2.0 * (double)(rows * cols * n_tok) / per / 1e9);
    for (int c = 0; c < n_copies; c++)
        free(copies[c]);
    free(copies);
    free(wf);
    free(x);
    free(y);
    free(scratch);
}

static const struct {
    uint32_t type;
    int64_t rows, cols, n_tok;
    int stream;
} cases[] = {
    {LM_TYPE_Q4_1, 1536, 576, 1, 0},   {LM_TYPE_Q4_1, 1536, 576, 1, 1},
    {LM_TYPE_Q8_0, 49152, 576, 1, 0},  {LM_TYPE_Q8_0, 49152, 576, 1, 1},
    {LM_TYPE_Q4_1, 576, 576, 128, 0},  {LM_TYPE_Q4_1, 1536, 576, 128, 0},
    {LM_TYPE_Q4_1, 576, 1536, 128, 0}, {LM_TYPE_Q8_0, 1536, 576, 128, 0},
    {LM_TYPE_Q4_K, 1536, 512, 128, 0}, {LM_TYPE_Q6_K, 1536, 512, 128, 0},
    {LM_TYPE_Q8_0, 1536, 576, 1, 0},   {LM_TYPE_Q8_0, 1536, 576, 1, 1},
    /* 12..15: a 1B model's FFN matrix, decode from RAM */
    {LM_TYPE_Q4_0, 8192, 2048, 1, 1},  {LM_TYPE_Q8_0, 8192, 2048, 1, 1},
    {LM_TYPE_Q4_K, 8192, 2048, 1, 1},  {LM_TYPE_Q6_K, 8192, 2048, 1, 1},
    /* 16..19: the same types, a matrix that stays in L2/L3: compute alone */
    {LM_TYPE_Q4_0, 1024, 2048, 1, 0},  {LM_TYPE_Q8_0, 1024, 2048, 1, 0},
    {LM_TYPE_Q4_K, 1024, 2048, 1, 0},  {LM_TYPE_Q6_K, 1024, 2048, 1, 0},
    /* 20..23: a 7B model's FFN down matrix (long rows), decode from RAM */
    {LM_TYPE_Q4_0, 4096, 11008, 1, 1}, {LM_TYPE_Q8_0, 4096, 11008, 1, 1},
    {LM_TYPE_Q4_K, 4096, 11008, 1, 1}, {LM_TYPE_Q6_K, 4096, 11008, 1, 1},
    /* 24..27: a 1B model's FFN down matrix, a 128-token prompt */
    {LM_TYPE_Q4_0, 2048, 8192, 128, 0}, {LM_TYPE_Q8_0, 2048, 8192, 128, 0},
    {LM_TYPE_Q4_K, 2048, 8192, 128, 0}, {LM_TYPE_Q6_K, 2048, 8192, 128, 0},
    /* 28..31: a 1B model's other Q6_K matrices, decode from RAM: attention
     * (wq, wk), FFN down (long rows) and the output head */
    {LM_TYPE_Q6_K, 2048, 2048, 1, 1},   {LM_TYPE_Q6_K, 512, 2048, 1, 1},
    {LM_TYPE_Q6_K, 2048, 8192, 1, 1},   {LM_TYPE_Q6_K, 49152, 2048, 1, 1},
};

/* With an argument, only that case (its index in the table). */
int main(int argc, char **argv)
{
    printf("threads %d, kernels %s\n", omp_get_max_threads(), lm_cpu_path_name(lm_cpu_active_path()));
    const int n = (int)(sizeof cases / sizeof cases[0]);
    const int only = argc > 1 ? atoi(argv[1]) : -1;
    for (int i = 0; i < n; i++)
        if (only < 0 || only == i)
            bench(cases[i].type, cases[i].rows, cases[i].cols, cases[i].n_tok, cases[i].stream);
    return 0;
}
