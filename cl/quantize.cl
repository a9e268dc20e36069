/* Activations to the 8-bit blocks the weight types meet, with cpu/act_quant.c's
 * rounding (scale 127/amax, round half to even, fp16 scales), so the integer
 * dots see the very quants the CPU backend sees.  Device layout (not GGUF's):
 * aq holds the quants, ad one float scale per block (already rounded to fp16
 * where the CPU stores fp16), as the Q8_1 sums d*sum(q), ab the Q8_K sums of
 * each 16 quants.  One work-item per block of 32 (Q8_0/Q8_1) or 256 (Q8_K). */

kernel void quantize_q8_0(global const float *x, global char *aq, global float *ad,
                          global float *as)
{
    const size_t i = get_global_id(0);
    global const float *xb = x + i * 32;
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmax(amax, fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        const int q = convert_int_rte(xb[j] * id);
        aq[i * 32 + j] = (char)q;
        sum += q;
    }
    ad[i] = round_half(d);
    as[i] = round_half(d * (float)sum); /* only Q8_1 reads it */
}

kernel void quantize_q8_k(global const float *x, global char *aq, global float *ad,
                          global int *ab)
{
    const size_t i = get_global_id(0);
    global const float *xb = x + i * 256;
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < 256; j++) {
        const float a = fabs(xb[j]);
        if (a > amax) {
            amax = a;
            max = xb[j];
        }
    }
    if (amax == 0.0f) {
        for (int j = 0; j < 256; j++)
            aq[i * 256 + j] = 0;
        for (int g = 0; g < 16; g++)
            ab[i * 16 + g] = 0;
        ad[i] = 0.0f;
        return;
    }
    const float iscale = -127.f / max;
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = g * 16; j < g * 16 + 16; j++) {
            const int v = min(convert_int_rte(iscale * xb[j]), 127);
            aq[i * 256 + j] = (char)v;
            sum += v;
        }
        ab[i * 16 + g] = sum;
    }
    ad[i] = 1.0f / iscale;
}

/* F16 and BF16 weights meet activations rounded to their own type. */
kernel void round_to_f16(global const float *x, global float *out)
{
    const size_t i = get_global_id(0);
    out[i] = round_half(x[i]);
}

kernel void round_to_bf16(global const float *x, global float *out)
{
    const size_t i = get_global_id(0);
    out[i] = round_bf16(x[i]);
}
