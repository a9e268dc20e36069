/* Tests for the type registry, fp16/bf16 conversions and the reference
 * (de)quantizers in formats/quant.c.
 *
 * Layout tests decode hand-built blocks with a deliberately naive,
 * element-by-element description of each format written here, independent
 * of quant.c's loops, so a layout mistake in quant.c cannot pass.  Round-trip
 * tests then check that the quantizers pack exactly what the dequantizers
 * read, within a per-type error bound. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "quant.h"

/* ---------------------------------------------------------------------------
 * Deterministic random numbers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint8_t rng_byte(void)
{
    return (uint8_t)(rng_next() >> 56);
}

static void rng_fill(void *buf, size_t n)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++)
        p[i] = rng_byte();
}

static float rng_uniform(float lo, float hi) /* [lo, hi) */
{
    return lo + (hi - lo) * (float)((rng_next() >> 40) * (1.0 / 16777216.0));
}

static float rng_gauss(void)
{
    double u1 = ((rng_next() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* fp16 bit patterns used as exact, easy scales. */
#define H_ONE 0x3C00     /* 1.0 */
#define H_HALF 0x3800    /* 0.5 */
#define H_TWO 0x4000     /* 2.0 */
#define H_QUARTER 0x3400 /* 0.25 */
#define H_MINUS_THREE 0xC200 /* -3.0 */

/* ---------------------------------------------------------------------------
 * Registry */

static void check_type(lm_type type, const char *name, int block_size,
                       size_t type_size, bool weight)
{
    const lm_type_info *info = lm_type_get(type);
    assert_non_null(info);
    assert_string_equal(info->name, name);
    assert_string_equal(lm_type_name(type), name);
    assert_int_equal(info->block_size, block_size);
    assert_int_equal(info->type_size, type_size);
    assert_int_equal(info->weight_type, weight);
    assert_non_null(info->dequantize);
    assert_non_null(info->quantize);
}

static void test_registry_rows(void **state)
{
    (void)state;
    check_type(LM_TYPE_F32, "F32", 1, 4, true);
    check_type(LM_TYPE_F16, "F16", 1, 2, true);
    check_type(LM_TYPE_BF16, "BF16", 1, 2, true);
    check_type(LM_TYPE_Q4_0, "Q4_0", 32, sizeof(lm_block_q4_0), true);
    check_type(LM_TYPE_Q4_1, "Q4_1", 32, sizeof(lm_block_q4_1), true);
    check_type(LM_TYPE_Q5_0, "Q5_0", 32, sizeof(lm_block_q5_0), true);
    check_type(LM_TYPE_Q5_1, "Q5_1", 32, sizeof(lm_block_q5_1), true);
    check_type(LM_TYPE_Q8_0, "Q8_0", 32, sizeof(lm_block_q8_0), true);
    check_type(LM_TYPE_Q8_1, "Q8_1", 32, sizeof(lm_block_q8_1), false);
    check_type(LM_TYPE_Q4_K, "Q4_K", 256, sizeof(lm_block_q4_k), true);
    check_type(LM_TYPE_Q5_K, "Q5_K", 256, sizeof(lm_block_q5_k), true);
    check_type(LM_TYPE_Q6_K, "Q6_K", 256, sizeof(lm_block_q6_k), true);
    check_type(LM_TYPE_Q8_K, "Q8_K", 256, sizeof(lm_block_q8_k), false);
}

static void test_registry_unknown(void **state)
{
    (void)state;
    const uint32_t unknown[] = {4, 5, 10, 11, 16, 17, 20, 29, 31, 32, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_null(lm_type_get(unknown[i]));
        assert_string_equal(lm_type_name(unknown[i]), "?");
        assert_int_equal(lm_row_size(unknown[i], 256), 0);
    }
    /* Exactly the 13 types above are known. */
    int known = 0;
    for (uint32_t t = 0; t < LM_TYPE_COUNT; t++)
        known += lm_type_get(t) != NULL;
    assert_int_equal(known, 13);
}

static void test_row_size(void **state)
{
    (void)state;
    assert_int_equal(lm_row_size(LM_TYPE_F32, 3), 12);
    assert_int_equal(lm_row_size(LM_TYPE_F16, 7), 14);
    assert_int_equal(lm_row_size(LM_TYPE_Q4_0, 64), 36);
    assert_int_equal(lm_row_size(LM_TYPE_Q8_0, 4096), 128 * 34);
    assert_int_equal(lm_row_size(LM_TYPE_Q4_K, 4096), 16 * 144);
    assert_int_equal(lm_row_size(LM_TYPE_Q6_K, 512), 2 * 210);
    assert_int_equal(lm_row_size(LM_TYPE_Q4_0, 0), 0);
    assert_int_equal(lm_row_size(LM_TYPE_Q4_0, 33), 0);
    assert_int_equal(lm_row_size(LM_TYPE_Q4_0, -32), 0);
    assert_int_equal(lm_row_size(LM_TYPE_F32, -1), 0);
    assert_int_equal(lm_row_size(LM_TYPE_Q4_K, 128), 0);
    assert_int_equal(lm_row_size(LM_TYPE_Q8_K, 255), 0);
}

/* ---------------------------------------------------------------------------
 * fp16 */

static bool is_nan_fp16(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

static void test_fp16_all_halves_round_trip(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lm_fp16_to_f32((lm_fp16)h);
        lm_fp16 back = lm_f32_to_fp16(f);
        if (is_nan_fp16((uint16_t)h)) {
            assert_true(isnan(f));
            assert_true(is_nan_fp16(back));
            /* A quiet nan keeps its payload exactly. */
            if (h & 0x200)
                assert_int_equal(back, h);
        } else {
            assert_int_equal(back, h);
        }
    }
}

static void test_fp16_known_values(void **state)
{
    (void)state;
    assert_true(lm_fp16_to_f32(0x3C00) == 1.0f);
    assert_true(lm_fp16_to_f32(0xC000) == -2.0f);
    assert_true(lm_fp16_to_f32(0x7BFF) == 65504.0f);
    assert_true(lm_fp16_to_f32(0x0400) == ldexpf(1.0f, -14)); /* min normal */
    assert_true(lm_fp16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* min subnormal */
    assert_true(lm_fp16_to_f32(0x03FF) == ldexpf(1023.0f, -24));
    assert_true(lm_fp16_to_f32(0x3555) == 0.333251953125f);
    assert_true(isinf(lm_fp16_to_f32(0x7C00)) && lm_fp16_to_f32(0x7C00) > 0);
    assert_true(isinf(lm_fp16_to_f32(0xFC00)) && lm_fp16_to_f32(0xFC00) < 0);
    assert_int_equal(bits_of(lm_fp16_to_f32(0x8000)), 0x80000000u);

    assert_int_equal(lm_f32_to_fp16(1.0f), 0x3C00);
    assert_int_equal(lm_f32_to_fp16(-0.0f), 0x8000);
    assert_int_equal(lm_f32_to_fp16(0.1f), 0x2E66);
    assert_int_equal(lm_f32_to_fp16(65504.0f), 0x7BFF);
    assert_int_equal(lm_f32_to_fp16(65519.99f), 0x7BFF);
    assert_int_equal(lm_f32_to_fp16(65520.0f), 0x7C00); /* tie -> even = inf */
    assert_int_equal(lm_f32_to_fp16(1e10f), 0x7C00);
    assert_int_equal(lm_f32_to_fp16(-INFINITY), 0xFC00);
    assert_true(is_nan_fp16(lm_f32_to_fp16(NAN)));
    assert_true(is_nan_fp16(lm_f32_to_fp16(float_of(0x7f800001)))); /* tiny payload */
    /* Ties go to even. */
    assert_int_equal(lm_f32_to_fp16(1.0f + ldexpf(1.0f, -11)), 0x3C00);
    assert_int_equal(lm_f32_to_fp16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3C02);
    /* Subnormal rounding: 2^-25 is a tie between 0 and 2^-24. */
    assert_int_equal(lm_f32_to_fp16(ldexpf(1.0f, -25)), 0x0000);
    assert_int_equal(lm_f32_to_fp16(ldexpf(1.0000001f, -25)), 0x0001);
    assert_int_equal(lm_f32_to_fp16(ldexpf(3.0f, -25)), 0x0002);
    assert_int_equal(lm_f32_to_fp16(-ldexpf(5.0f, -25)), 0x8002);
    assert_int_equal(lm_f32_to_fp16(1e-10f), 0x0000);
    assert_int_equal(lm_f32_to_fp16(float_of(0x00000001)), 0x0000);
    /* Just below the smallest normal rounds up into it. */
    assert_int_equal(lm_f32_to_fp16(ldexpf(1.0f, -14) - ldexpf(1.0f, -26)), 0x0400);
}

/* An oracle independent of the bit tricks: h must be at least as close to f
 * as both neighbouring halves, and on a tie have an even mantissa. */
static void check_nearest_fp16(float f, lm_fp16 h)
{
    const double x = f;
    const double v = lm_fp16_to_f32(h);
    const uint16_t mag = h & 0x7fff;
    if (mag == 0x7c00) { /* inf: f must be at least halfway past 65504 */
        assert_true(fabs(x) >= 65520.0);
        return;
    }
    const double err = fabs(x - v);
    if (mag < 0x7bff) {
        const double up = fabs(x - lm_fp16_to_f32((lm_fp16)(h + 1)));
        assert_true(err < up || (err == up && (h & 1) == 0));
    } else {
        assert_true(fabs(x) < 65520.0);
    }
    if (mag > 0) {
        const double down = fabs(x - lm_fp16_to_f32((lm_fp16)(h - 1)));
        assert_true(err < down || (err == down && (h & 1) == 0));
    }
}

#ifdef __FLT16_MANT_DIG__
__extension__ typedef _Float16 native_half;
#endif

static void test_fp16_rounding_random(void **state)
{
    (void)state;
    for (int i = 0; i < 2000000; i++) {
        /* Exponents around the half range, including subnormals and overflow. */
        uint32_t u = (uint32_t)rng_next();
        uint32_t exp = 95 + (uint32_t)(rng_next() % 50); /* 2^-32 .. 2^17 */
        u = (u & 0x807fffff) | (exp << 23);
        const float f = float_of(u);
        const lm_fp16 h = lm_f32_to_fp16(f);
        assert_int_equal(h & 0x8000, (u >> 16) & 0x8000);
        check_nearest_fp16(f, h);
#ifdef __FLT16_MANT_DIG__
        /* The compiler's own conversion, where it has one, must agree. */
        native_half ref = (native_half)f;
        uint16_t ref_bits;
        memcpy(&ref_bits, &ref, sizeof ref_bits);
        assert_int_equal(h, ref_bits);
#endif
    }
}

/* ---------------------------------------------------------------------------
 * bf16 */

static void test_bf16_all_round_trip(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lm_bf16_to_f32((lm_bf16)h);
        assert_int_equal(bits_of(f), h << 16);
        lm_bf16 back = lm_f32_to_bf16(f);
        if (isnan(f)) {
            assert_true(isnan(lm_bf16_to_f32(back)));
            assert_int_equal(back, h | 0x40); /* quieted, payload kept */
        } else {
            assert_int_equal(back, h);
        }
    }
}

static void test_bf16_known_and_rounding(void **state)
{
    (void)state;
    assert_int_equal(lm_f32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(lm_f32_to_bf16(-2.0f), 0xC000);
    assert_int_equal(lm_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3F80);     /* tie, even */
    assert_int_equal(lm_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3F82); /* tie, up */
    assert_int_equal(lm_f32_to_bf16(1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -20)), 0x3F81);
    assert_int_equal(lm_f32_to_bf16(INFINITY), 0x7F80);
    assert_int_equal(lm_f32_to_bf16(FLT_MAX), 0x7F80); /* rounds past the max */
    assert_int_equal(lm_f32_to_bf16(float_of(0x7f800001)), 0x7FC0);
    assert_int_equal(lm_f32_to_bf16(float_of(0xffc12345)), 0xFFC1);
    assert_true(lm_bf16_to_f32(0x4049) == 3.140625f);

    for (int i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)rng_next();
        if ((u & 0x7f800000) == 0x7f800000)
            continue;
        const lm_bf16 h = lm_f32_to_bf16(float_of(u));
        /* Nearest of the two candidates by integer distance, ties even. */
        const uint32_t below = u & 0xffff0000u, rest = u & 0xffffu;
        uint32_t expect = below >> 16;
        if (rest > 0x8000 || (rest == 0x8000 && (expect & 1)))
            expect++;
        assert_int_equal(h, expect);
    }
}

/* ---------------------------------------------------------------------------
 * Layouts: hand-built blocks decoded by a naive description of each format.
 * Random bytes exercise every bit; exact scales make expected values exact. */

static void dequant(lm_type type, const void *block, float *out, int n)
{
    lm_type_get(type)->dequantize(block, out, n);
}

static void assert_floats_equal(const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            print_error("element %d: got %.9g, want %.9g\n", i, (double)got[i],
                        (double)want[i]);
            fail();
        }
    }
}

/* Legacy 32-blocks: element e's 4 low bits are in byte e % 16 of qs, low
 * nibble for e < 16, high nibble for e >= 16. */
static int low4_legacy(const uint8_t *qs, int e)
{
    return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
}

/* Fifth bit: bit e of the 4 qh bytes read as a little-endian uint32. */
static int bit5_legacy(const uint8_t *qh, int e)
{
    return (qh[e / 8] >> (e % 8)) & 1;
}

static void test_layout_q4_0(void **state)
{
    (void)state;
    lm_block_q4_0 b[2];
    float got[64], want[64];
    rng_fill(b, sizeof b);
    b[0].d = H_ONE;
    b[1].d = H_MINUS_THREE;
    for (int k = 0; k < 2; k++)
        for (int e = 0; e < 32; e++)
            want[32 * k + e] = (float)(low4_legacy(b[k].qs, e) - 8) * (k ? -3.0f : 1.0f);
    dequant(LM_TYPE_Q4_0, b, got, 64);
    assert_floats_equal(got, want, 64);

    /* A literal spot check: byte 0x9F -> element 0 = 15-8, element 16 = 9-8. */
    b[0].qs[0] = 0x9F;
    b[0].qs[15] = 0x08;
    dequant(LM_TYPE_Q4_0, b, got, 32);
    assert_true(got[0] == 7.0f && got[16] == 1.0f);
    assert_true(got[15] == 0.0f && got[31] == -8.0f);
}

static void test_layout_q4_1(void **state)
{
    (void)state;
    lm_block_q4_1 b;
    float got[32], want[32];
    rng_fill(&b, sizeof b);
    b.d = H_HALF;
    b.m = H_MINUS_THREE;
    for (int e = 0; e < 32; e++)
        want[e] = low4_legacy(b.qs, e) * 0.5f - 3.0f;
    dequant(LM_TYPE_Q4_1, &b, got, 32);
    assert_floats_equal(got, want, 32);
}

static void test_layout_q5_0(void **state)
{
    (void)state;
    lm_block_q5_0 b;
    float got[32], want[32];
    rng_fill(&b, sizeof b);
    b.d = H_TWO;
    for (int e = 0; e < 32; e++)
        want[e] = (float)((low4_legacy(b.qs, e) | bit5_legacy(b.qh, e) << 4) - 16) * 2.0f;
    dequant(LM_TYPE_Q5_0, &b, got, 32);
    assert_floats_equal(got, want, 32);

    /* Literal: only bit 20 of qh set (byte 2, bit 4) -> element 20 gets +16. */
    memset(b.qs, 0, sizeof b.qs);
    memset(b.qh, 0, sizeof b.qh);
    b.qh[2] = 0x10;
    b.d = H_ONE;
    dequant(LM_TYPE_Q5_0, &b, got, 32);
    for (int e = 0; e < 32; e++)
        assert_true(got[e] == (e == 20 ? 0.0f : -16.0f));
}

static void test_layout_q5_1(void **state)
{
    (void)state;
    lm_block_q5_1 b;
    float got[32], want[32];
    rng_fill(&b, sizeof b);
    b.d = H_QUARTER;
    b.m = H_ONE;
    for (int e = 0; e < 32; e++)
        want[e] = (low4_legacy(b.qs, e) | bit5_legacy(b.qh, e) << 4) * 0.25f + 1.0f;
    dequant(LM_TYPE_Q5_1, &b, got, 32);
    assert_floats_equal(got, want, 32);
}

static void test_layout_q8_0_q8_1(void **state)
{
    (void)state;
    lm_block_q8_0 b0;
    lm_block_q8_1 b1;
    float got[32], want[32];
    rng_fill(&b0, sizeof b0);
    rng_fill(&b1, sizeof b1);
    b0.d = H_HALF;
    b1.d = H_TWO;
    for (int e = 0; e < 32; e++)
        want[e] = b0.qs[e] * 0.5f;
    dequant(LM_TYPE_Q8_0, &b0, got, 32);
    assert_floats_equal(got, want, 32);
    for (int e = 0; e < 32; e++)
        want[e] = b1.qs[e] * 2.0f;
    dequant(LM_TYPE_Q8_1, &b1, got, 32);
    assert_floats_equal(got, want, 32);
}

/* K-quant 12-byte scales, described as ggml documents the packing: bytes
 * 0..3 = scale[0..3] | top 2 bits of scale[4..7] in bits 6-7; bytes 4..7 =
 * min[0..3] | top 2 bits of min[4..7]; bytes 8..11 = low 4 bits of
 * scale[4..7] | low 4 bits of min[4..7] << 4. */
static void build_k_scales(const int sc[8], const int mn[8], uint8_t out[12])
{
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        out[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

static void random_6bit(int out[8])
{
    for (int j = 0; j < 8; j++)
        out[j] = rng_byte() & 63;
    out[4] |= 48; /* make sure the split top bits are exercised */
}

/* Q4_K/Q5_K: element e is in sub-block e / 32; sub-blocks 2p and 2p+1 share
 * qs[32p .. 32p+31], low and high nibble.  Q5_K's fifth bit of element e is
 * bit (e / 32) of qh[e % 32]. */
static int low4_k(const uint8_t *qs, int e)
{
    const int sub = e / 32, byte = qs[32 * (sub / 2) + e % 32];
    return sub % 2 == 0 ? byte & 15 : byte >> 4;
}

static void test_layout_q4_k(void **state)
{
    (void)state;
    for (int rep = 0; rep < 20; rep++) {
        lm_block_q4_k b;
        int sc[8], mn[8];
        float got[256], want[256];
        rng_fill(&b, sizeof b);
        random_6bit(sc);
        random_6bit(mn);
        build_k_scales(sc, mn, b.scales);
        b.d = H_ONE;
        b.dmin = H_HALF;
        for (int e = 0; e < 256; e++)
            want[e] = (float)(sc[e / 32] * low4_k(b.qs, e)) - 0.5f * (float)mn[e / 32];
        dequant(LM_TYPE_Q4_K, &b, got, 256);
        assert_floats_equal(got, want, 256);
    }
}

static void test_layout_q5_k(void **state)
{
    (void)state;
    for (int rep = 0; rep < 20; rep++) {
        lm_block_q5_k b;
        int sc[8], mn[8];
        float got[256], want[256];
        rng_fill(&b, sizeof b);
        random_6bit(sc);
        random_6bit(mn);
        build_k_scales(sc, mn, b.scales);
        b.d = H_HALF;
        b.dmin = H_TWO;
        for (int e = 0; e < 256; e++) {
            const int q = low4_k(b.qs, e) | ((b.qh[e % 32] >> (e / 32)) & 1) << 4;
            want[e] = 0.5f * (float)(sc[e / 32] * q) - 2.0f * (float)mn[e / 32];
        }
        dequant(LM_TYPE_Q5_K, &b, got, 256);
        assert_floats_equal(got, want, 256);
    }
}

/* Q6_K element e: half h = e / 128, r = e % 128, quarter t = r / 32,
 * l = r % 32.  Low 4 bits: ql[64h + l + 32 (t odd)], low nibble for t < 2,
 * high for t >= 2.  Top 2 bits: bits 2t..2t+1 of qh[32h + l].  Scale:
 * scales[e / 16].  Value d * scale * (q - 32). */
static int q6_level(const lm_block_q6_k *b, int e)
{
    const int h = e / 128, t = (e % 128) / 32, l = e % 32;
    const uint8_t lo_byte = b->ql[64 * h + l + 32 * (t % 2)];
    const int lo = t < 2 ? lo_byte & 15 : lo_byte >> 4;
    const int hi = (b->qh[32 * h + l] >> (2 * t)) & 3;
    return (lo | hi << 4) - 32;
}

static void test_layout_q6_k(void **state)
{
    (void)state;
    for (int rep = 0; rep < 20; rep++) {
        lm_block_q6_k b;
        float got[256], want[256];
        rng_fill(&b, sizeof b);
        b.d = rep % 2 ? H_QUARTER : H_ONE;
        const float d = rep % 2 ? 0.25f : 1.0f;
        for (int e = 0; e < 256; e++)
            want[e] = d * (float)(b.scales[e / 16] * q6_level(&b, e));
        dequant(LM_TYPE_Q6_K, &b, got, 256);
        assert_floats_equal(got, want, 256);
    }

    /* Literal: level 63 (max) for element 200 only, scale 1, d 1:
     * h=1, t=2, l=8 -> ql[64+8] high nibble 15, qh[32+8] bits 4-5 = 3. */
    lm_block_q6_k b;
    float got[256];
    memset(&b, 0, sizeof b);
    b.d = H_ONE;
    memset(b.scales, 1, sizeof b.scales);
    b.ql[72] = 0xF0;
    b.qh[40] = 0x30;
    dequant(LM_TYPE_Q6_K, &b, got, 256);
    for (int e = 0; e < 256; e++)
        assert_true(got[e] == (e == 200 ? 31.0f : -32.0f));
}

static void test_layout_q8_k(void **state)
{
    (void)state;
    lm_block_q8_k b;
    float got[256], want[256];
    rng_fill(&b, sizeof b);
    b.d = 0.125f;
    for (int e = 0; e < 256; e++)
        want[e] = 0.125f * b.qs[e];
    dequant(LM_TYPE_Q8_K, &b, got, 256);
    assert_floats_equal(got, want, 256);
}

static void test_layout_float_types(void **state)
{
    (void)state;
    const float vals[4] = {1.0f, -2.5f, 0.0f, 65504.0f};
    const lm_fp16 h[4] = {0x3C00, 0xC100, 0x0000, 0x7BFF};
    const lm_bf16 bh[4] = {0x3F80, 0xC020, 0x0000, 0x477F}; /* 65280 for the last */
    float got[4];
    dequant(LM_TYPE_F32, vals, got, 4);
    assert_floats_equal(got, vals, 4);
    dequant(LM_TYPE_F16, h, got, 4);
    assert_floats_equal(got, vals, 4);
    dequant(LM_TYPE_BF16, bh, got, 4);
    assert_true(got[0] == 1.0f && got[1] == -2.5f && got[2] == 0.0f && got[3] == 65280.0f);
}

/* ---------------------------------------------------------------------------
 * Round trips on random data.
 *
 * Tolerances, per block (legacy: 32 values; k-quants: 256), where amax is the
 * block's largest |x| and range is max - min:
 *   F32 0 | F16 |x|*2^-11 | BF16 |x|*2^-8
 *   Q8_0, Q8_1, Q8_K  amax/127   (ideal step/2 = amax/254; margin for fp16 d)
 *   Q4_0  1.01 amax/8  (step amax/8; -amax maps past the top level 7, a
 *                       full step; 1% for the fp16 rounding of d)
 *   Q5_0  1.01 amax/16 (same argument with 16 levels each side)
 *   Q4_1  range/15 (step range/15, ideal error step/2)
 *   Q5_1  range/31
 *   Q4_K  range0/15, where range0 is the range stretched to include 0: the
 *         format's offsets are -dmin*m with m >= 0, so a block cannot be
 *         shifted up, and all-positive data spans [0, max].  Sub-block step
 *         <= range0/15, error step/2; 6-bit scales and mins add at most
 *         ~range0/126 each, leaving margin.
 *   Q5_K  range0/31 + range0/63
 *   Q6_K  amax/32 + amax/256 (a sub-block's extreme maps to -32, its
 *         opposite clamps at 31: one step <= amax/32; rounding the int8
 *         scale, d = amax/4096, moves the top level by <= 32 * d/2)
 * The measured worst ratios are printed so tightening is easy. */

enum { ROWS = 6, ROW_LEN = 1024 };

typedef enum { BOUND_ZERO, BOUND_REL, BOUND_AMAX, BOUND_RANGE, BOUND_RANGE0 } bound_kind;

typedef struct {
    lm_type type;
    bound_kind kind;
    float factor;  /* tolerance = factor * (|x| or amax or range) */
    int group;     /* values over which amax/range are taken */
} tolerance;

static void fill_row(float *x, int n, int row)
{
    for (int i = 0; i < n; i++) {
        switch (row % 6) {
        case 0: x[i] = rng_uniform(-1.0f, 1.0f); break;
        case 1: x[i] = 0.02f * rng_gauss(); break;                 /* weight-like */
        case 2: x[i] = 3.0f + rng_uniform(-0.5f, 2.0f); break;     /* offset */
        case 3: x[i] = rng_gauss() * (i % 37 == 0 ? 20.0f : 1.0f); break; /* outliers */
        case 4: x[i] = (i / 64) % 2 ? 0.0f : rng_uniform(-4.0f, -1.0f); break; /* zero blocks */
        default: x[i] = rng_uniform(-100.0f, 100.0f) * (float)((i / 32) % 5); break;
        }
    }
}

typedef struct {
    float amax;   /* largest |x| */
    float range;  /* max - min */
    float range0; /* the range stretched to include 0 */
} group_stats;

static group_stats stats_of(const float *x, int n)
{
    float lo = x[0], hi = x[0];
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    group_stats s = {fmaxf(fabsf(lo), fabsf(hi)), hi - lo,
                     fmaxf(hi, 0.0f) - fminf(lo, 0.0f)};
    return s;
}

/* Returns the worst error / tolerance ratio seen (must be <= 1). */
static double round_trip_ratio(const tolerance *t, const float *x, const float *y, int n)
{
    double worst = 0.0;
    for (int g = 0; g < n; g += t->group) {
        const group_stats s = stats_of(x + g, t->group);
        for (int i = g; i < g + t->group; i++) {
            const double err = fabs((double)x[i] - (double)y[i]);
            double tol = 0.0;
            switch (t->kind) {
            case BOUND_ZERO: tol = 0.0; break;
            case BOUND_REL: /* plus half the fp16 subnormal step */
                tol = t->factor * fabsf(x[i]) + ldexp(1.0, -25); break;
            case BOUND_AMAX: tol = t->factor * s.amax; break;
            case BOUND_RANGE: tol = t->factor * s.range; break;
            case BOUND_RANGE0: tol = t->factor * s.range0; break;
            }
            if (err > tol) {
                print_error("%s: element %d: x %.9g y %.9g err %.3g tol %.3g\n",
                            lm_type_name(t->type), i, (double)x[i], (double)y[i], err, tol);
                fail();
            }
            if (tol > 0.0)
                worst = fmax(worst, err / tol);
        }
    }
    return worst;
}

static void round_trip(const tolerance *t)
{
    const lm_type_info *info = lm_type_get(t->type);
    const size_t row_bytes = lm_row_size(t->type, ROW_LEN);
    /* Static, so a failing assertion (a longjmp) leaks nothing. */
    static uint8_t q[sizeof(float) * ROW_LEN * ROWS];
    static float x[ROW_LEN * ROWS], y[ROW_LEN * ROWS];
    assert_true(row_bytes * ROWS <= sizeof q);

    for (int r = 0; r < ROWS; r++)
        fill_row(x + r * ROW_LEN, ROW_LEN, r);
    /* Row by row, as callers use it, and each row must stay within its bytes. */
    for (int r = 0; r < ROWS; r++)
        info->quantize(x + r * ROW_LEN, q + r * row_bytes, ROW_LEN);
    info->dequantize(q, y, (int64_t)ROW_LEN * ROWS);

    const double worst = round_trip_ratio(t, x, y, ROW_LEN * ROWS);
    print_message("  %-5s worst error / tolerance = %.3f\n", info->name, worst);
    assert_true(worst <= 1.0);
}

static void test_round_trip_all(void **state)
{
    (void)state;
    const tolerance tolerances[] = {
        {LM_TYPE_F32, BOUND_ZERO, 0.0f, 1},
        {LM_TYPE_F16, BOUND_REL, 1.0f / 2048, 1},
        {LM_TYPE_BF16, BOUND_REL, 1.0f / 256, 1},
        {LM_TYPE_Q8_0, BOUND_AMAX, 1.0f / 127, 32},
        {LM_TYPE_Q8_1, BOUND_AMAX, 1.0f / 127, 32},
        {LM_TYPE_Q4_0, BOUND_AMAX, 1.01f / 8, 32},
        {LM_TYPE_Q5_0, BOUND_AMAX, 1.01f / 16, 32},
        {LM_TYPE_Q4_1, BOUND_RANGE, 1.0f / 15, 32},
        {LM_TYPE_Q5_1, BOUND_RANGE, 1.0f / 31, 32},
        {LM_TYPE_Q4_K, BOUND_RANGE0, 1.0f / 15, 256},
        {LM_TYPE_Q5_K, BOUND_RANGE0, 1.0f / 31 + 1.0f / 63, 256},
        {LM_TYPE_Q6_K, BOUND_AMAX, 1.0f / 32 + 1.0f / 256, 256},
        {LM_TYPE_Q8_K, BOUND_AMAX, 1.0f / 127, 256},
    };
    for (size_t i = 0; i < sizeof tolerances / sizeof tolerances[0]; i++)
        round_trip(&tolerances[i]);
}

/* Values already on a quantizer's grid come back exactly. */
static void test_exact_grid(void **state)
{
    (void)state;
    float x[32], y[32];
    uint8_t q[64];
    /* Q4_0: levels -8..7 of d = 0.25; -2 (level 0) is the extreme, so d is
     * exactly -(-2)/8. */
    for (int i = 0; i < 32; i++)
        x[i] = 0.25f * (float)((i * 7) % 16 - 8);
    lm_type_get(LM_TYPE_Q4_0)->quantize(x, q, 32);
    dequant(LM_TYPE_Q4_0, q, y, 32);
    assert_floats_equal(y, x, 32);
    /* Q8_0: multiples of 1/127 scaled so amax is 127 steps of 0.5. */
    for (int i = 0; i < 32; i++)
        x[i] = 0.5f * (float)(i == 3 ? -127 : (i * 37) % 255 - 127);
    lm_type_get(LM_TYPE_Q8_0)->quantize(x, q, 32);
    dequant(LM_TYPE_Q8_0, q, y, 32);
    assert_floats_equal(y, x, 32);
}

static void test_activation_sums(void **state)
{
    (void)state;
    float x[256];
    for (int i = 0; i < 256; i++)
        x[i] = rng_gauss();

    lm_block_q8_1 b1[8];
    lm_type_get(LM_TYPE_Q8_1)->quantize(x, b1, 256);
    for (int k = 0; k < 8; k++) {
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += b1[k].qs[j];
        /* s is computed from the unrounded f32 d, so allow fp16 rounding
         * of d and of s itself. */
        const float want = (float)sum * lm_fp16_to_f32(b1[k].d);
        assert_true(fabsf(lm_fp16_to_f32(b1[k].s) - want) <= fabsf(want) / 512);
    }

    lm_block_q8_k bk;
    lm_type_get(LM_TYPE_Q8_K)->quantize(x, &bk, 256);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = 0; j < 16; j++)
            sum += bk.qs[16 * g + j];
        assert_int_equal(bk.bsums[g], sum);
    }
}

/* All-zero input must give zero scales and zero output, never nan. */
static void test_zero_input(void **state)
{
    (void)state;
    static float zeros[512], out[512];
    static uint8_t buf[4096];
    for (uint32_t t = 0; t < LM_TYPE_COUNT; t++) {
        const lm_type_info *info = lm_type_get(t);
        if (!info)
            continue;
        memset(buf, 0xAB, sizeof buf);
        info->quantize(zeros, buf, 512);
        info->dequantize(buf, out, 512);
        for (int i = 0; i < 512; i++)
            assert_true(out[i] == 0.0f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_rows),
        cmocka_unit_test(test_registry_unknown),
        cmocka_unit_test(test_row_size),
        cmocka_unit_test(test_fp16_all_halves_round_trip),
        cmocka_unit_test(test_fp16_known_values),
        cmocka_unit_test(test_fp16_rounding_random),
        cmocka_unit_test(test_bf16_all_round_trip),
        cmocka_unit_test(test_bf16_known_and_rounding),
        cmocka_unit_test(test_layout_q4_0),
        cmocka_unit_test(test_layout_q4_1),
        cmocka_unit_test(test_layout_q5_0),
        cmocka_unit_test(test_layout_q5_1),
        cmocka_unit_test(test_layout_q8_0_q8_1),
        cmocka_unit_test(test_layout_q4_k),
        cmocka_unit_test(test_layout_q5_k),
        cmocka_unit_test(test_layout_q6_k),
        cmocka_unit_test(test_layout_q8_k),
        cmocka_unit_test(test_layout_float_types),
        cmocka_unit_test(test_round_trip_all),
        cmocka_unit_test(test_exact_grid),
        cmocka_unit_test(test_activation_sums),
        cmocka_unit_test(test_zero_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
