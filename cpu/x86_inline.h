/* Small AVX2 helpers shared by the x86 tile kernels (dot_avx2.c and
 * dot_avx512.c).  They carry the AVX2 target, a subset of the AVX-512
 * one, so both files inline them. */
#ifndef LM_CPU_X86_INLINE_H
#define LM_CPU_X86_INLINE_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define LM_X86_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LM_X86_INLINE static inline __attribute__((always_inline)) LM_X86_AVX2

/* Asks for the cache line at p, into L1.  asm rather than _mm_prefetch:
 * GCC 12 deletes a loop whose only work is __builtin_prefetch once it can
 * tell the loop ends, and prefetch_first_panel's first version compiled to
 * nothing. */
static inline void prefetch_line(const void *p)
{
    __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p));
}

/* Decode reads the rows of a tile (4) or panel (16) side by side: that many
 * short streams at once, which some hardware prefetchers follow badly: on
 * AMD Zen 5 a 1B Q8_0 decode read 8.7 GB/s on one core (the VNNI panels),
 * where llama.cpp's one row at a time reads 31.  So while a decoder works
 * on its rows it asks for the next rows of its run (one span of memory,
 * none of it past the rows it was given), block b taking bytes
 * [b span, (b + 1) span) of the len at next, span being the next rows'
 * bytes per block.  (One core, an 8192 x 2048 product from RAM,
 * bench/matmul_bench.c: VNNI panels Q8_0 8.7 -> 28 GB/s, Q4_K 11.7 -> 27,
 * Q6_K 8.1 -> 24, Q4_0 11.6 -> 23; into L1 rather than L2: Q6_K 19 -> 24.
 * For the panels it replaces each row's data asked for 8 blocks ahead,
 * which on an Intel Xeon took a 1B Q4_0 decode from 68-70% of the RAM
 * bandwidth to 74-79%: not measured there again yet.) */
LM_X86_INLINE void prefetch_ahead(const void *next, size_t len, size_t span, int64_t b)
{
    const size_t from = (size_t)b * span, to = from + span < len ? from + span : len;
    for (size_t off = from; off < to; off += 64)
        prefetch_line((const char *)next + off);
}

/* prefetch_ahead has nothing to ask for the first panel or tile of a run,
 * which then comes from RAM one miss after another: with decode's runs of
 * 2-8 panels (a thread's chunk of a 512- or 2048-row matrix) that was a
 * quarter of the reads or more.  So matmul.c's decode asks for a run's
 * first rows before it starts: the first 2 KiB of each of its nr (<= 16)
 * rows of ws bytes, whole rows up to 2048 columns of most types, at most 32
 * KiB, which L1 holds.  A 1B-shaped 512 x 2048 Q6_K product from RAM, 2
 * threads, read 15.2-15.9 GB/s before and 21.1-21.7 after
 * (bench/matmul_bench.c case 29, AMD Zen 5).  No target needed. */
static inline void prefetch_first_panel(const uint8_t *w, size_t ws, int64_t nr)
{
    const size_t rows = (size_t)(nr < 16 ? nr : 16);
    if (ws <= 2048) { /* whole rows: one span */
        for (size_t off = 0; off < rows * ws; off += 64)
            prefetch_line(w + off);
        return;
    }
    for (size_t i = 0; i < rows; i++)
        for (size_t off = 0; off < 2048; off += 64)
            prefetch_line(w + i * ws + off);
}

/* The two fp16 values at p (d and m, or d and s) as floats in lanes 0, 1:
 * one load and one conversion instead of two of each. */
LM_X86_INLINE __m128 half_pair(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)v));
}

/* The 16-bit floats at p[0..3] as 4 float lanes: one conversion. */
LM_X86_INLINE __m128 halves4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3)
{
    uint16_t h[4];
    memcpy(&h[0], p0, 2);
    memcpy(&h[1], p1, 2);
    memcpy(&h[2], p2, 2);
    memcpy(&h[3], p3, 2);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

#endif
