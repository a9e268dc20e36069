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
