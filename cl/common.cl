/* Helpers every lamina kernel shares.  The weights arrive as the raw bytes
 * of their GGUF blocks (no alignment beyond one byte is assumed), so fp16
 * fields are assembled from bytes.  Contraction into fma is off so that the
 * float arithmetic rounds as the CPU backend's C code does. */
#pragma OPENCL FP_CONTRACT OFF

#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t; /* the CPU sums norms, softmax and f16 dots in double */
#else
typedef float acc_t;
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
