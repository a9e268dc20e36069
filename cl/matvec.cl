/* Fused dequantize + matrix-vector products, one kernel per weight type,
 * reading the GGUF blocks as they are.  y[t*rows + r] = W[r,:] . x[t,:] for
 * work-item (r, t).  Each result is computed with the very float operations
 * of the CPU backend's AVX2 tiles (cpu/dot_avx2.c), so the two agree bit for
 * bit.  For the k-quants a super-block's whole integer sum is exact and
 * meets its scale in one fma (the contract of cpu/dot_portable.c's
 * dot_q45_k, which every CPU path keeps); for the 32-value types it is
 * split into two halves (elements 0..15 and 16..31), each with its
 * accumulator, added at the end.
 * The min/affine terms are kept on the side as there.  Integer sums are
 * exact, so only the float steps need care: fma() where the CPU fuses, no
 * contraction elsewhere (FP_CONTRACT OFF in common.cl).
 *
 * Argument order is the same for every type so the host sets it once:
 * W, w_off (where the matrix starts in W: an expert's, in a stack of them),
 * row_bytes, cols, rows, aq, ad, as, ab, af (f32/f16/bf16 activations), y,
 * n_tok (tokens in the product). */

#define MATVEC_ARGS                                                                  \
    global const uchar *W, ulong w_off, ulong row_bytes, int cols, int rows,         \
        global const char *aq, global const float *ad, global const float *as,       \
        global const int *ab, global const float *af, global float *y, int n_tok
#define MATVEC_SETUP(bs)                                                  \
    const int r = get_global_id(0), t = get_global_id(1);                 \
    if (r >= rows)                                                        \
        return;                                                           \
    global const uchar *w = W + w_off + (size_t)r * row_bytes;            \
    const int nb = cols / (bs);                                           \
    global const char *a = aq + (size_t)t * cols;                         \
    const size_t ab0 = (size_t)t * (cols / (bs));                         \
    (void)as; (void)ab; (void)af; (void)ad; (void)a; (void)ab0; (void)n_tok

/* _mm256_add_ps(lo, hi), movehl, movehdup: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)) */
inline float hsum8(const float *v)
{
    const float s0 = v[0] + v[4], s1 = v[1] + v[5], s2 = v[2] + v[6], s3 = v[3] + v[7];
    return (s0 + s2) + (s1 + s3);
}

/* The 32 levels of a block as two int16 vectors: elements 0..15 are the low
 * nibbles of qs, 16..31 the high nibbles; bit e of qh is the fifth bit of
 * element e; the offset is taken off. */
enum { T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q8_0 };

/* Bytes of one block of a 32-value type. */
inline int block32_bytes(int kind)
{
    return kind == T_Q4_0 ? 18 : kind == T_Q4_1 ? 20 : kind == T_Q5_0 ? 22 : kind == T_Q5_1 ? 24 : 34;
}

inline void levels32(int kind, global const uchar *b, int16 *lo, int16 *hi)
{
    if (kind == T_Q8_0) {
        *lo = convert_int16(vload16(0, (global const char *)(b + 2)));
        *hi = convert_int16(vload16(1, (global const char *)(b + 2)));
        return;
    }
    const int qoff = kind == T_Q4_0 ? 2 : kind == T_Q4_1 ? 4 : kind == T_Q5_0 ? 6 : 8;
    const int16 qs = convert_int16(vload16(0, b + qoff));
    *lo = qs & 0x0F;
    *hi = qs >> 4;
    if (kind == T_Q5_0 || kind == T_Q5_1) {
        global const uchar *qp = b + (kind == T_Q5_0 ? 2 : 4);
        const uint qh = qp[0] | (qp[1] << 8) | (qp[2] << 16) | ((uint)qp[3] << 24);
        const int16 sh = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        *lo |= (((int16)(qh) >> sh) & 1) << 4;
        *hi |= (((int16)(qh >> 16) >> sh) & 1) << 4;
    }
    const int off = kind == T_Q4_0 ? 8 : kind == T_Q5_0 ? 16 : 0;
    *lo -= off;
    *hi -= off;
}

/* The integer dots over elements 0..15 and 16..31 (the CPU tile's two
 * 128-bit halves). */
inline float2 halves32(int16 lo, int16 hi, global const char *x)
{
    const int16 p0 = lo * convert_int16(vload16(0, x)), p1 = hi * convert_int16(vload16(1, x));
    const int8 q0 = p0.lo + p0.hi, q1 = p1.lo + p1.hi;
    const int4 r0 = q0.lo + q0.hi, r1 = q1.lo + q1.hi;
    const int2 s0 = r0.lo + r0.hi, s1 = r1.lo + r1.hi;
    return convert_float2((int2)(s0.x + s0.y, s1.x + s1.y));
}

/* tile32 of cpu/dot_avx2.c for one row and up to 4 tokens (t0..t0+nt-1):
 * the block is unpacked once for all of them. */
inline __attribute__((always_inline)) void
dot32(int kind, global const uchar *w, int nb, global const char *a, int cols,
      global const float *ad, global const float *as, int t0, const int nt, int n_tok,
      global float *y, int rows, int r)
{
    (void)n_tok;
    const int bsize = block32_bytes(kind);
    const int affine = kind == T_Q4_1 || kind == T_Q5_1;
    float2 acc[4] = {(float2)0.0f, (float2)0.0f, (float2)0.0f, (float2)0.0f};
    float summ[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int nbt = cols / 32;
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * bsize;
        int16 lo, hi;
        levels32(kind, b, &lo, &hi);
        const float dw = h2f(ld16(b)), m = affine ? h2f(ld16(b + 2)) : 0.0f;
        for (int k = 0; k < nt; k++) {
            const size_t xb = (size_t)(t0 + k) * nbt + i;
            const float dd = dw * ad[xb];
            acc[k] = fma((float2)dd, halves32(lo, hi, a + xb * 32), acc[k]);
            if (affine)
                summ[k] = fma(m, as[xb], summ[k]);
        }
    }
    for (int k = 0; k < nt; k++) {
        const float s = acc[k].x + acc[k].y;
        y[(size_t)(t0 + k) * rows + r] = affine ? s + summ[k] : s;
    }
}

/* Whether token t of an n_tok product sits in a CPU tile of 2 or more tokens
 * (tiles of 4 from token 0): those fuse m_w * s_x into the affine sum. */
inline int multi_token_tile(int t, int n_tok)
{
    return n_tok - t / 4 * 4 > 1;
}

/* The 8 int32 lanes of maddubs + madd: lane l sums elements 4l..4l+3. */
inline float8 lanes32(int16 lo, int16 hi, global const char *x)
{
    const int16 p0 = lo * convert_int16(vload16(0, x)), p1 = hi * convert_int16(vload16(1, x));
    const int8 q0 = p0.even + p0.odd, q1 = p1.even + p1.odd;
    return convert_float8((int8)(q0.even + q0.odd, q1.even + q1.odd));
}

inline float hsum8v(float8 v)
{
    const float4 s = v.lo + v.hi;
    return (s.s0 + s.s2) + (s.s1 + s.s3);
}

/* Q4_1: tile32_lanes of cpu/dot_avx2.c (ggml's order) for one row and up to
 * 4 tokens (t0..t0+nt-1). */
inline __attribute__((always_inline)) void
dot32_lanes(int kind, global const uchar *w, int nb, global const char *a, int cols,
      global const float *ad, global const float *as, int t0, const int nt, int n_tok,
      global float *y, int rows, int r)
{
    const int bsize = block32_bytes(kind);
    const int affine = kind == T_Q4_1 || kind == T_Q5_1;
    float8 acc[4] = {(float8)0.0f, (float8)0.0f, (float8)0.0f, (float8)0.0f};
    float summ[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int nbt = cols / 32;
    int fused[4];
    for (int k = 0; k < nt; k++)
        fused[k] = multi_token_tile(t0 + k, n_tok);
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * bsize;
        int16 lo, hi;
        levels32(kind, b, &lo, &hi);
        const float dw = h2f(ld16(b)), m = affine ? h2f(ld16(b + 2)) : 0.0f;
        for (int k = 0; k < nt; k++) {
            const size_t xb = (size_t)(t0 + k) * nbt + i;
            const float dd = dw * ad[xb];
            acc[k] = fma((float8)dd, lanes32(lo, hi, a + xb * 32), acc[k]);
            if (affine) {
                if (fused[k])
                    summ[k] = fma(m, as[xb], summ[k]);
                else
                    summ[k] = summ[k] + m * as[xb];
            }
        }
    }
    for (int k = 0; k < nt; k++)
        y[(size_t)(t0 + k) * rows + r] = hsum8v(acc[k]) + summ[k];
}

/* Work-item (r, g) does row r for tokens 4g..4g+3 (the host launches
 * ceil(n_tok / 4) groups for these types). */
#define MATVEC32(name, kind, dot)                                                          \
    kernel void name(MATVEC_ARGS)                                                          \
    {                                                                                      \
        const int r = get_global_id(0), t0 = get_global_id(1) * 4;                        \
        if (r >= rows || t0 >= n_tok)                                                      \
            return;                                                                        \
        const int nt = min(4, n_tok - t0);                                                 \
        global const uchar *w = W + w_off + (size_t)r * row_bytes;                         \
        (void)ab; (void)af;                                                                \
        /* constant tile sizes, so the accumulators stay in registers */                   \
        if (nt == 1)                                                                       \
            dot(kind, w, cols / 32, aq, cols, ad, as, t0, 1, n_tok, y, rows, r);            \
        else if (nt == 2)                                                                  \
            dot(kind, w, cols / 32, aq, cols, ad, as, t0, 2, n_tok, y, rows, r);            \
        else if (nt == 3)                                                                  \
            dot(kind, w, cols / 32, aq, cols, ad, as, t0, 3, n_tok, y, rows, r);            \
        else                                                                               \
            dot(kind, w, cols / 32, aq, cols, ad, as, t0, 4, n_tok, y, rows, r);            \
    }
MATVEC32(matvec_q4_0, T_Q4_0, dot32)
MATVEC32(matvec_q4_1, T_Q4_1, dot32_lanes)
MATVEC32(matvec_q5_0, T_Q5_0, dot32_lanes)
MATVEC32(matvec_q5_1, T_Q5_1, dot32)
MATVEC32(matvec_q8_0, T_Q8_0, dot32)

/* Q4_K (bits 4) and Q5_K (bits 5): 8 sub-blocks of 32 with 6-bit scales
 * and mins; each sub-block's dot times its scale, summed exact; the mins
 * meet the activation sums on the side. */
inline float dot_q45_k(global const uchar *w, int nb, int bits, global const char *a,
                       global const float *ad, global const int *ab)
{
    const int bsize = bits == 4 ? 144 : 176;
    float acc = 0.0f, summ = 0.0f;
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * bsize;
        global const uchar *qs = b + (bits == 4 ? 16 : 48), *qh = b + 16;
        global const char *x = a + i * 256;
        int isum = 0, imin = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(j, b + 4, &sc, &m);
            const int shift = (j & 1) * 4;
            global const uchar *q = qs + (j / 2) * 32;
            int s = 0;
            for (int k = 0; k < 32; k++) {
                int v = (q[k] >> shift) & 0x0F;
                if (bits == 5)
                    v |= ((qh[k] >> j) & 1) << 4;
                s += v * x[j * 32 + k];
            }
            isum += sc * s;
            imin += m * (ab[i * 16 + 2 * j] + ab[i * 16 + 2 * j + 1]);
        }
        const float dw = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
        acc = fma(ad[i] * dw, (float)isum, acc);
        summ = fma(ad[i] * dmin, (float)imin, summ);
    }
    return acc - summ;
}

kernel void matvec_q4_k(MATVEC_ARGS)
{
    MATVEC_SETUP(256);
    y[(size_t)t * rows + r] = dot_q45_k(w, nb, 4, a, ad + ab0, ab + ab0 * 16);
}

kernel void matvec_q5_k(MATVEC_ARGS)
{
    MATVEC_SETUP(256);
    y[(size_t)t * rows + r] = dot_q45_k(w, nb, 5, a, ad + ab0, ab + ab0 * 16);
}

/* Q6_K: 16 sub-blocks of 16, signed 8-bit scales, levels 0..63 whose -32
 * offset is taken out with the activation sums; one fma a super-block. */
kernel void matvec_q6_k(MATVEC_ARGS)
{
    MATVEC_SETUP(256);
    float acc = 0.0f;
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * 210;
        global const char *sc = (global const char *)(b + 192);
        int isum = 0, ioff = 0;
        for (int h = 0; h < 2; h++) {
            global const uchar *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            global const char *s = sc + 8 * h, *x = a + i * 256 + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4;
                const int q2 = (ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4;
                const int q3 = (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4;
                const int q4 = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4;
                isum += s[is] * q1 * x[l] + s[is + 2] * q2 * x[l + 32] +
                            s[is + 4] * q3 * x[l + 64] + s[is + 6] * q4 * x[l + 96];
            }
        }
        for (int g = 0; g < 16; g++)
            ioff += sc[g] * ab[(ab0 + i) * 16 + g];
        acc = fma(h2f(ld16(b + 208)) * ad[ab0 + i], (float)(isum - 32 * ioff), acc);
    }
    y[(size_t)t * rows + r] = acc;
}

/* Float weights: activations already rounded to the weight's type in af (f32
 * weights read x itself there).  dot_float of cpu/dot_avx2.c: 4 accumulators
 * of 8 lanes over steps of 32, then steps of 8 into the first, hsum8 of
 * (a0 + a1) + (a2 + a3), then the scalar tail. */
enum { F_F32, F_F16, F_BF16 };

inline float fload(int kind, global const uchar *w, int c)
{
    if (kind == F_F16)
        return h2f(ld16(w + 2 * c));
    if (kind == F_BF16)
        return bf2f(ld16(w + 2 * c));
    return ((global const float *)w)[c];
}

inline float dot_float(int kind, global const uchar *w, global const float *x, int cols)
{
    float acc[4][8];
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 8; l++)
            acc[j][l] = 0.0f;
    int c = 0;
    for (; c + 32 <= cols; c += 32)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 8; l++)
                acc[j][l] = fma(fload(kind, w, c + 8 * j + l), x[c + 8 * j + l], acc[j][l]);
    for (; c + 8 <= cols; c += 8)
        for (int l = 0; l < 8; l++)
            acc[0][l] = fma(fload(kind, w, c + l), x[c + l], acc[0][l]);
    float v[8];
    for (int l = 0; l < 8; l++)
        v[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    float sum = hsum8(v);
    for (; c < cols; c++)
        sum += fload(kind, w, c) * x[c];
    return sum;
}

#define MATVEC_FLOAT(name, kind)                                                          \
    kernel void name(MATVEC_ARGS)                                                         \
    {                                                                                     \
        MATVEC_SETUP(1);                                                                  \
        y[(size_t)t * rows + r] = dot_float(kind, w, af + (size_t)t * cols, cols);        \
    }
MATVEC_FLOAT(matvec_f32, F_F32)
MATVEC_FLOAT(matvec_f16, F_F16)
MATVEC_FLOAT(matvec_bf16, F_BF16)
