/* Weights to f32 for the prompt GEMMs, with the arithmetic of the scalar
 * reference dequantizers in formats/quant.c (so the values are identical).
 * One work-item per block; W is the matrix's GGUF bytes, at w_off in the
 * tensor's (an expert's, in a stack of them). */

kernel void dequant_q4_0(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    global const uchar *b = W + i * 18;
    global float *o = y + i * 32;
    const float d = h2f(ld16(b));
    for (int j = 0; j < 16; j++) {
        o[j] = ((b[2 + j] & 0x0f) - 8) * d;
        o[j + 16] = ((b[2 + j] >> 4) - 8) * d;
    }
}

kernel void dequant_q4_1(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    global const uchar *b = W + i * 20;
    global float *o = y + i * 32;
    const float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
    for (int j = 0; j < 16; j++) {
        o[j] = (b[4 + j] & 0x0f) * d + m;
        o[j + 16] = (b[4 + j] >> 4) * d + m;
    }
}

inline int q5_level(global const uchar *qs, uint qh, int j)
{
    const int nib = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
    return nib | (int)(((qh >> j) & 1) << 4);
}

kernel void dequant_q5_0(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    global const uchar *b = W + i * 22;
    const float d = h2f(ld16(b));
    const uint qh = b[2] | (b[3] << 8) | (b[4] << 16) | ((uint)b[5] << 24);
    for (int j = 0; j < 32; j++)
        y[i * 32 + j] = (q5_level(b + 6, qh, j) - 16) * d;
}

kernel void dequant_q5_1(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    global const uchar *b = W + i * 24;
    const float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
    const uint qh = b[4] | (b[5] << 8) | (b[6] << 16) | ((uint)b[7] << 24);
    for (int j = 0; j < 32; j++)
        y[i * 32 + j] = q5_level(b + 8, qh, j) * d + m;
}

kernel void dequant_q8_0(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    global const uchar *b = W + i * 34;
    const float d = h2f(ld16(b));
    for (int j = 0; j < 32; j++)
        y[i * 32 + j] = ((global const char *)(b + 2))[j] * d;
}

/* Q4_K (bits 4, 144-byte blocks) and Q5_K (bits 5, 176-byte blocks). */
inline void dequant_q45_k(global const uchar *b, int bits, global float *o)
{
    const float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
    global const uchar *ql = b + (bits == 4 ? 16 : 48), *qh = b + 16;
    for (int pair = 0; pair < 4; pair++, ql += 32) {
        int sc, m;
        k4_scale_min(2 * pair, b + 4, &sc, &m);
        const float d_lo = d * sc, m_lo = dmin * m;
        k4_scale_min(2 * pair + 1, b + 4, &sc, &m);
        const float d_hi = d * sc, m_hi = dmin * m;
        for (int l = 0; l < 32; l++) {
            const int hi_lo = bits == 5 && (qh[l] & (1u << (2 * pair))) ? 16 : 0;
            *o++ = d_lo * ((ql[l] & 0x0f) + hi_lo) - m_lo;
        }
        for (int l = 0; l < 32; l++) {
            const int hi_hi = bits == 5 && (qh[l] & (2u << (2 * pair))) ? 16 : 0;
            *o++ = d_hi * ((ql[l] >> 4) + hi_hi) - m_hi;
        }
    }
}

kernel void dequant_q4_k(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    dequant_q45_k(W + i * 144, 4, y + i * 256);
}

kernel void dequant_q5_k(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    dequant_q45_k(W + i * 176, 5, y + i * 256);
}

kernel void dequant_q6_k(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    global const uchar *b = W + i * 210;
    global float *o = y + i * 256;
    const float d = h2f(ld16(b + 208));
    for (int h = 0; h < 2; h++) {
        global const uchar *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        global const char *sc = (global const char *)(b + 192) + 8 * h;
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            o[128 * h + l] = d * sc[is] * q1;
            o[128 * h + l + 32] = d * sc[is + 2] * q2;
            o[128 * h + l + 64] = d * sc[is + 4] * q3;
            o[128 * h + l + 96] = d * sc[is + 6] * q4;
        }
    }
}

kernel void dequant_f16(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    y[i] = h2f(ld16(W + 2 * i));
}

kernel void dequant_bf16(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    y[i] = bf2f(ld16(W + 2 * i));
}

kernel void dequant_f32(global const uchar *W_all, ulong w_off, global float *y)
{
    const size_t i = get_global_id(0);
    global const uchar *W = W_all + w_off;
    y[i] = ((global const float *)W)[i];
}
