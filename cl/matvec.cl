/* Fused dequantize + matrix-vector products, one kernel per weight type,
 * reading the GGUF blocks as they are.  y[t*rows + r] = W[r,:] . x[t,:] for
 * work-item (r, t).  Each block's dot is an integer dot against the
 * quantized activations, scaled and summed in float in block order exactly
 * as cpu/dot_portable.c does ((d_w * d_x) * isum, mins on the side), so the
 * result differs from the CPU's only where its AVX2 lanes sum in another
 * order.
 *
 * Argument order is the same for every type so the host sets it once:
 * W, row_bytes, cols, rows, aq, ad, as, ab, af (f32/f16/bf16 activations), y. */

#define MATVEC_ARGS                                                                   \
    global const uchar *W, ulong row_bytes, int cols, int rows, global const char *aq, \
        global const float *ad, global const float *as, global const int *ab,         \
        global const float *af, global float *y
#define MATVEC_SETUP(bs)                                                  \
    const int r = get_global_id(0), t = get_global_id(1);                 \
    if (r >= rows)                                                        \
        return;                                                           \
    global const uchar *w = W + (size_t)r * row_bytes;                    \
    const int nb = cols / (bs);                                           \
    global const char *a = aq + (size_t)t * cols;                         \
    const size_t ab0 = (size_t)t * (cols / (bs));                         \
    (void)as; (void)ab; (void)af; (void)ad; (void)a; (void)ab0

/* The 32 levels of a 4/5-bit block: level j is the low nibble of qs[j] for
 * j < 16, the high nibble of qs[j-16] otherwise; bit j of qh is the fifth. */
inline int idot_q4(global const uchar *qs, int offset, global const char *x)
{
    int s = 0;
    for (int j = 0; j < 16; j++)
        s += ((qs[j] & 0x0F) - offset) * x[j] + ((qs[j] >> 4) - offset) * x[j + 16];
    return s;
}

inline int idot_q5(global const uchar *qs, global const uchar *qhp, int offset,
                   global const char *x)
{
    const uint qh = qhp[0] | (qhp[1] << 8) | (qhp[2] << 16) | ((uint)qhp[3] << 24);
    int s = 0;
    for (int j = 0; j < 16; j++) {
        const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
        const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
        s += (lo - offset) * x[j] + (hi - offset) * x[j + 16];
    }
    return s;
}

kernel void matvec_q4_0(MATVEC_ARGS)
{
    MATVEC_SETUP(32);
    float sum = 0.0f;
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * 18;
        sum += h2f(ld16(b)) * ad[ab0 + i] * (float)idot_q4(b + 2, 8, a + i * 32);
    }
    y[(size_t)t * rows + r] = sum;
}

kernel void matvec_q4_1(MATVEC_ARGS)
{
    MATVEC_SETUP(32);
    float sum = 0.0f, summ = 0.0f;
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * 20;
        sum += h2f(ld16(b)) * ad[ab0 + i] * (float)idot_q4(b + 4, 0, a + i * 32);
        summ += h2f(ld16(b + 2)) * as[ab0 + i];
    }
    y[(size_t)t * rows + r] = sum + summ;
}

kernel void matvec_q5_0(MATVEC_ARGS)
{
    MATVEC_SETUP(32);
    float sum = 0.0f;
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * 22;
        sum += h2f(ld16(b)) * ad[ab0 + i] * (float)idot_q5(b + 6, b + 2, 16, a + i * 32);
    }
    y[(size_t)t * rows + r] = sum;
}

kernel void matvec_q5_1(MATVEC_ARGS)
{
    MATVEC_SETUP(32);
    float sum = 0.0f, summ = 0.0f;
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * 24;
        sum += h2f(ld16(b)) * ad[ab0 + i] * (float)idot_q5(b + 8, b + 4, 0, a + i * 32);
        summ += h2f(ld16(b + 2)) * as[ab0 + i];
    }
    y[(size_t)t * rows + r] = sum + summ;
}

kernel void matvec_q8_0(MATVEC_ARGS)
{
    MATVEC_SETUP(32);
    float sum = 0.0f;
    for (int i = 0; i < nb; i++) {
        global const uchar *b = w + i * 34;
        global const char *q = (global const char *)(b + 2);
        global const char *x = a + i * 32;
        int s = 0;
        for (int j = 0; j < 32; j++)
            s += q[j] * x[j];
        sum += h2f(ld16(b)) * ad[ab0 + i] * (float)s;
    }
    y[(size_t)t * rows + r] = sum;
}

/* Q4_K (bits 4) and Q5_K (bits 5): 8 sub-blocks of 32 with 6-bit scales
 * and mins; the mins meet the activation sums. */
inline float dot_q45_k(global const uchar *w, int nb, int bits, global const char *a,
                       global const float *ad, global const int *ab)
{
    const int bsize = bits == 4 ? 144 : 176;
    float sum = 0.0f;
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
            for (int l = 0; l < 32; l++) {
                int v = (q[l] >> shift) & 0x0F;
                if (bits == 5)
                    v |= ((qh[l] >> j) & 1) << 4;
                s += v * x[j * 32 + l];
            }
            isum += sc * s;
            imin += m * (ab[i * 16 + 2 * j] + ab[i * 16 + 2 * j + 1]);
        }
        const float d = ad[i] * h2f(ld16(b)), dmin = ad[i] * h2f(ld16(b + 2));
        sum += d * (float)isum - dmin * (float)imin;
    }
    return sum;
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
 * offset is taken out with the activation sums. */
kernel void matvec_q6_k(MATVEC_ARGS)
{
    MATVEC_SETUP(256);
    float sum = 0.0f;
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
        sum += h2f(ld16(b + 208)) * ad[ab0 + i] * (float)(isum - 32 * ioff);
    }
    y[(size_t)t * rows + r] = sum;
}

/* Float weights: activations already rounded to the weight's type in af. */
kernel void matvec_f32(MATVEC_ARGS)
{
    MATVEC_SETUP(1);
    global const float *wf = (global const float *)w, *x = af + (size_t)t * cols;
    acc_t sum = 0;
    for (int c = 0; c < cols; c++)
        sum += (acc_t)wf[c] * x[c];
    y[(size_t)t * rows + r] = (float)sum;
}

kernel void matvec_f16(MATVEC_ARGS)
{
    MATVEC_SETUP(1);
    global const float *x = af + (size_t)t * cols;
    acc_t sum = 0;
    for (int c = 0; c < cols; c++)
        sum += (acc_t)h2f(ld16(w + 2 * c)) * x[c];
    y[(size_t)t * rows + r] = (float)sum;
}

kernel void matvec_bf16(MATVEC_ARGS)
{
    MATVEC_SETUP(1);
    global const float *x = af + (size_t)t * cols;
    acc_t sum = 0;
    for (int c = 0; c < cols; c++)
        sum += (acc_t)bf2f(ld16(w + 2 * c)) * x[c];
    y[(size_t)t * rows + r] = (float)sum;
}
