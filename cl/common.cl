/* Helpers every lamina kernel shares.  The weights arrive as the raw bytes
 * of their GGUF blocks (no alignment beyond one byte is assumed), so fp16
 * fields are assembled from bytes.  Contraction into fma is off so that the
 * float arithmetic rounds as the CPU backend's C code does. */
#pragma OPENCL FP_CONTRACT OFF

#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t; /* the CPU sums RMSNorm squares and softmax chunks in double */
#else
typedef float acc_t; /* no fp64: sums in float, so results may differ from the CPU's */
#endif

inline ushort ld16(global const uchar *p)
{
    return (ushort)(p[0] | (p[1] << 8));
}

/* IEEE half bits to float, exactly (normals, subnormals, inf/nan). */
inline float h2f(ushort h)
{
    const uint s = (uint)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        const float f = (float)m * 5.9604644775390625e-8f; /* m * 2^-24 */
        return s ? -f : f;
    }
    if (e == 31)
        return as_float(s | 0x7f800000u | (m << 13));
    return as_float(s | ((e + 112) << 23) | (m << 13));
}

/* f rounded to the nearest half (ties to even), back as a float. */
inline float round_half(float f)
{
    ushort h;
    vstore_half_rte(f, 0, (private half *)&h);
    return vload_half(0, (private const half *)&h);
}

inline float bf2f(ushort h)
{
    return as_float((uint)h << 16);
}

/* f rounded to bfloat16 (ties to even), as lm_f32_to_bf16 does. */
inline float round_bf16(float f)
{
    uint u = as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return as_float((u | 0x00400000u) & 0xffff0000u);
    u += 0x7fffu + ((u >> 16) & 1);
    return as_float(u & 0xffff0000u);
}

/* The 6-bit scale and min j of a Q4_K/Q5_K block (ggml's get_scale_min_k4). */
inline void k4_scale_min(int j, global const uchar *s, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* lm_expf_ggml (cpu/ops.c; ggml_v_expf): range reduction by a rounded
 * multiple of ln 2 in two parts, a degree-5 polynomial, then 2^n, with the
 * very fused operations of the CPU, so the results are the same bits. */
inline float expf_ggml(float x)
{
    const float r = 0x1.8p23f;
    const float z = fma(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fma(-n, 0x1.7f7d1cp-20f, fma(-n, 0x1.62e4p-1f, x));
    if (fabs(n) > 192.0f)
        return n <= 0.0f ? 0.0f : INFINITY;
    const float u = b * b;
    const float j = fma(fma(fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                            fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                        u, fma(0x1.ffffecp-1f, b, 1.0f));
    return ldexp(j, (int)n);
}

/* The rows of a pass, as the attention and store_kv kernels read them:
 * ROW_INFO ints per row: the cache row where its sequence starts, its
 * position, and whether its sequence has 2+ rows in the pass (the CPU's
 * summation order then differs: chosen per sequence, so a sequence's bits
 * do not depend on what else is in the pass). */
#define ROW_INFO 3
