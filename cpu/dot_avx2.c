/* AVX2 tile kernels.  Every function carries its own target attribute, so
 * this file builds with plain -O2 and runs only where lm_cpu_use_avx2() says.
 *
 * The integer core is ggml's: weights and activations meet as bytes in
 * maddubs (unsigned x signed -> pairs of int16), and signed weights use the
 * sign trick, |w| * (x * sign(w)), because maddubs wants its first operand
 * unsigned.  Integer sums are exact; the float steps after them fix a
 * product's bits, and three orders are kept:
 *
 *  - tile32 (Q4_0, Q5_1, Q8_0): four rows at a time, their integer dots
 *    folded together by horizontal adds so that one float multiply-add
 *    scales a block for 4 rows x 2 halves.  A quarter of the float work
 *    of ggml's order: 1B decode 1.7x (Q4_0) and 1.3x (Q8_0), prompts
 *    1.13-1.2x on an Intel Xeon (bench/RESULTS.md).
 *  - tile32_lanes (Q4_1, Q5_0): ggml's own order (vec_dot_*_q8_* on AVX2:
 *    8 float lanes per row and token, fused per block, hsum8 at the end).
 *    The two real models the tests compare with llama.cpp are Q4_1
 *    (SmolLM2: greedy text of the fixtures, bit for bit) and mostly Q5_0
 *    (Gemma 3 270M: perplexity within 0.5%), and both are so small that the
 *    summation order alone moves their results: Gemma's perplexity is 37.95
 *    in ggml's order, 37.73 with its Q5_0 folded, 38.12 on the portable
 *    path, llama.cpp's 37.92 (-fa off) and 37.72 (default); SmolLM2's
 *    greedy text changes in 4 of 6 fixture prompts.  Those two types stay
 *    in llama.cpp's order, so that the fixtures keep meaning bit identity.
 *  - the k-quants (Q4_K, Q5_K, Q6_K): one row at a time, a super-block's 8
 *    int32 lanes summed exact before its float steps, the contract written
 *    out in dot_portable.c's dot_q45_k, which the VNNI kernels need to add a
 *    sub-block's products before one multiply by its scale.
 *
 * Both give every row and token the same float steps whatever the tile
 * around it, so a sequence's logits do not depend on its batch, and
 * cl/matvec.cl repeats them bit for bit.  A tile is nr rows x nt tokens:
 * the weight blocks are unpacked once and reused for every token of the
 * tile, which is where prompt speed comes from.  Decode (nt = 1) is bound by
 * memory instead: 4 rows at a time keep 4 sequential streams in flight. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "x86_inline.h"

#define AVX2 LM_X86_AVX2
#define INLINE LM_X86_INLINE

INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float h2f(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* 32 nibbles -> 32 bytes 0..15: low nibbles in the low lane, high ones in the
 * high lane (ggml's element order: qs[j] holds elements j and j+16). */
INLINE __m256i nibbles32(const uint8_t *qs)
{
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes of 0xFF (bit set) or 0x00. */
INLINE __m256i bits32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)v),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

/* Sum of 32 products of unsigned u and signed s bytes, as 8 int32 lanes. */
INLINE __m256i dot_us(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* ---- 32-value block types ------------------------------------------------ */

enum kind { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };

/* Bytes per weight block, and where its quants start. */
static const int wsize[] = {18, 20, 22, 24, 34};

/* An unpacked weight block: u is unsigned (the _1 types) or |w| with the
 * signs in s (signed types). */
typedef struct {
    __m256i u, s;
} wblock;

INLINE wblock unpack(enum kind k, const uint8_t *b)
{
    wblock w;
    switch (k) {
    case K_Q4_0:
        w.s = _mm256_sub_epi8(nibbles32(b + 2), _mm256_set1_epi8(8));
        break;
    case K_Q4_1:
        w.u = nibbles32(b + 4);
        return w;
    case K_Q5_0: /* q - 16: set the top nibble where the fifth bit is clear */
        w.s = _mm256_or_si256(nibbles32(b + 6),
                              _mm256_andnot_si256(bits32(b + 2), _mm256_set1_epi8((char)0xF0)));
        break;
    case K_Q5_1:
        w.u = _mm256_or_si256(nibbles32(b + 8),
                              _mm256_and_si256(bits32(b + 4), _mm256_set1_epi8(0x10)));
        return w;
    case K_Q8_0:
        w.s = _mm256_loadu_si256((const __m256i *)(b + 2));
        break;
    }
    w.u = _mm256_sign_epi8(w.s, w.s);
    return w;
}

INLINE __m256i block_dot(enum kind k, const wblock *w, __m256i x)
{
    if (k == K_Q4_1 || k == K_Q5_1)
        return dot_us(w->u, x);
    return dot_us(w->u, _mm256_sign_epi8(x, w->s));
}

/* The integer dots of four rows' blocks with one activation block, as
 * {r0, r1, r2, r3} over elements 0..15 in the low 128 bits and over
 * elements 16..31 in the high ones.  Exact: for the 4- and 5-bit types a
 * sum of 8 products fits int16 (|w| <= 31, |x| <= 127), so the rows are
 * folded together by 16-bit horizontal adds before one widening; Q8_0's
 * pairs already fill int16 and are widened first. */
INLINE __m256i isum4(enum kind k, const wblock w[4], __m256i x)
{
    __m256i m[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        m[r] = k == K_Q4_1 || k == K_Q5_1 ? _mm256_maddubs_epi16(w[r].u, x)
                                          : _mm256_maddubs_epi16(w[r].u, _mm256_sign_epi8(x, w[r].s));
    const __m256i one = _mm256_set1_epi16(1);
    if (k == K_Q8_0) {
        const __m256i p01 = _mm256_hadd_epi32(_mm256_madd_epi16(m[0], one), _mm256_madd_epi16(m[1], one));
        const __m256i p23 = _mm256_hadd_epi32(_mm256_madd_epi16(m[2], one), _mm256_madd_epi16(m[3], one));
        return _mm256_hadd_epi32(p01, p23);
    }
    const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(m[0], m[1]), _mm256_hadd_epi16(m[2], m[3]));
    return _mm256_madd_epi16(h, one);
}

/* The tile 4 rows x T tokens (T a constant after inlining, so the
 * accumulators stay in registers); nr < 4 repeats the last row and drops
 * its copies.  Lane r (and r + 4) of acc[t] is row r's sum over elements
 * 0..15 (16..31) of every block, each block's integer dot times its scale
 * d_w d_x fused in; the two halves are added at the end, then the affine
 * term m_w s_x (Q4_1, Q5_1), summed on the side by fused multiply-adds.
 * Every row and token takes these same float steps whatever the tile, so a
 * product's values do not depend on how many tokens share it (a sequence's
 * logits do not depend on its batch), and cl/matvec.cl repeats them. */
INLINE void tile32(enum kind k, int64_t nb, const uint8_t *w, size_t ws, int nr, const uint8_t *x,
                   size_t xs, float *y, int64_t ys, const void *ahead, size_t ahead_len,
                   const int T)
{
    const int affine = k == K_Q4_1 || k == K_Q5_1;
    const int xsize = affine ? 36 : 34, xq = affine ? 4 : 2;
    const uint8_t *row[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        row[r] = w + (size_t)(r < nr ? r : nr - 1) * ws;
    __m256 acc[4];
    __m128 summ[4];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        acc[t] = _mm256_setzero_ps();
        summ[t] = _mm_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * wsize[k];
        if (T == 1)
            prefetch_ahead(ahead, ahead_len, LM_TILE_ROWS * (size_t)wsize[k], b);
        __m128 dw, mw = _mm_setzero_ps();
        if (affine) { /* {d, m} of each row, then {d0..d3} and {m0..m3} */
            const __m128 lo = _mm_unpacklo_ps(half_pair(row[0] + o), half_pair(row[1] + o));
            const __m128 hi = _mm_unpacklo_ps(half_pair(row[2] + o), half_pair(row[3] + o));
            dw = _mm_movelh_ps(lo, hi);
            mw = _mm_movehl_ps(hi, lo);
        } else {
            dw = halves4(row[0] + o, row[1] + o, row[2] + o, row[3] + o);
        }
        const __m256 dw8 = _mm256_set_m128(dw, dw);
        wblock wq[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            wq[r] = unpack(k, row[r] + o);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *xb = x + t * xs + b * xsize;
            const __m128 ds = half_pair(xb); /* {d_x, s_x} */
            const __m256 scale = _mm256_mul_ps(dw8, _mm256_broadcastss_ps(ds));
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + xq));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum4(k, wq, xv)), scale, acc[t]);
            if (affine)
                summ[t] = _mm_fmadd_ps(mw, _mm_permute_ps(ds, 0x55), summ[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1));
        if (affine)
            s = _mm_add_ps(s, summ[t]);
        if (nr == 4) {
            _mm_storeu_ps(y + t * ys, s);
        } else {
            _Alignas(16) float v[4];
            _mm_store_ps(v, s);
            memcpy(y + t * ys, v, (size_t)nr * sizeof(float));
        }
    }
}

/* ---- k-quants: one row at a time, T tokens ---------------------------------- */

enum kkind { K_Q4_K, K_Q5_K };

/* The 8 six-bit scales (low 128 bits) and 8 mins (high 128 bits) of a
 * Q4_K/Q5_K block as int16 lanes: lm_k4_scales with four word operations
 * (ggml's unpacking) instead of a byte loop. */
INLINE __m256i k4_scales_mins(const uint8_t s[LM_K_SCALE_SIZE])
{
    uint32_t u[4];
    memcpy(u, s, 12);
    u[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
    const uint32_t mins = u[1] & 0x3f3f3f3f;
    u[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
    u[2] = mins;
    u[0] &= 0x3f3f3f3f;
    return _mm256_cvtepu8_epi16(_mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]));
}

/* Int16 lane j (< 8) of each 128-bit half of v, in every lane of that half
 * (v holds the same 8 values in both halves). */
INLINE __m256i lane16(__m256i v, const int j)
{
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j))));
}

/* Sum of the 8 int32 lanes (exact). */
INLINE int hsum_i32x8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* The sums of the 8 int32 lanes of each of s[0..3] (exact), in that order. */
INLINE __m128i hsum4_i32x8(const __m256i s[4])
{
    const __m256i a = _mm256_hadd_epi32(s[0], s[1]), b = _mm256_hadd_epi32(s[2], s[3]);
    const __m256i c = _mm256_hadd_epi32(a, b); /* each half: the 4 vectors' half sums */
    return _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
}

/* R rows x T tokens with R * T <= 4 (R > 1 only for decode): the rows of a
 * block step are independent chains, and each row and token takes the same
 * float steps whatever R and T, so the bits do not depend on the tile.  The
 * 8 int32 lanes of a super-block are summed (exact) before its float steps,
 * the k-quant contract of dot_portable.c's dot_q45_k: the tile's R * T
 * sums in one horizontal add of four vectors, and the float steps of all of
 * them in one fma each for d and dmin, lane j for row and token j = r T + t
 * (a lane's fma rounds as fmaf does).  One sum and one fmaf at a time
 * instead cost the AVX2 path 8-10% of its Q4_K speed. */
INLINE void tile_q45k(enum kkind k, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                      size_t xs, float *y, int64_t ys, const void *ahead, size_t ahead_len,
                      const int R, const int T)
{
    const size_t bsize = k == K_Q4_K ? sizeof(lm_block_q4_k) : sizeof(lm_block_q5_k);
    __m128 acc = _mm_setzero_ps(), summ = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        if (T == 1 && R > 1)
            prefetch_ahead(ahead, ahead_len, LM_TILE_ROWS * bsize, i);
        __m256i isum[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256(), _mm256_setzero_si256()};
        int32_t imins[4] = {0, 0, 0, 0};
        float dd[4] = {0, 0, 0, 0}, dm[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * ws + (size_t)i * bsize;
            const lm_block_q4_k *b4 = (const lm_block_q4_k *)wb;
            const lm_block_q5_k *b5 = (const lm_block_q5_k *)wb;
            const uint8_t *qs = k == K_Q4_K ? b4->qs : b5->qs;
            const __m256i sm = k4_scales_mins(k == K_Q4_K ? b4->scales : b5->scales);
            const __m128i mins = _mm256_extracti128_si256(sm, 1);
            const __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);
            const lm_block_q8_k *xb[4];
            __m256i sumi[4];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                xb[t] = (const lm_block_q8_k *)(x + t * xs) + i;
                sumi[t] = _mm256_setzero_si256();
            }
            const __m256i lo4 = _mm256_set1_epi8(0x0F);
            __m256i hbits = k == K_Q5_K ? _mm256_loadu_si256((const __m256i *)b5->qh)
                                        : _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m256i ql = _mm256_and_si256(raw, lo4);
                __m256i qh = _mm256_and_si256(_mm256_srli_epi16(raw, 4), lo4);
                if (k == K_Q5_K) { /* bit 2c of qh[l] tops sub-block 2c, bit 2c+1 the next */
                    const __m256i one = _mm256_set1_epi8(1);
                    ql = _mm256_or_si256(ql, _mm256_slli_epi16(_mm256_and_si256(hbits, one), 4));
                    qh = _mm256_or_si256(
                        qh, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 1), one), 4));
                    hbits = _mm256_srli_epi16(hbits, 2);
                }
                const __m256i s_lo = lane16(scales, 2 * c);
                const __m256i s_hi = lane16(scales, 2 * c + 1);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const __m256i a0 = _mm256_loadu_si256((const __m256i *)(xb[t]->qs + 64 * c));
                    const __m256i a1 =
                        _mm256_loadu_si256((const __m256i *)(xb[t]->qs + 64 * c + 32));
                    const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(ql, a0), s_lo);
                    const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(qh, a1), s_hi);
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p0, p1));
                }
            }
            const float dw = h2f((const uint8_t *)&b4->d), dmin = h2f((const uint8_t *)&b4->dmin);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                /* sum_j mins[j] * (bsums[2j] + bsums[2j+1]): exact in int32 */
                const __m256i bs = _mm256_loadu_si256((const __m256i *)xb[t]->bsums);
                const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs),
                                                     _mm256_extracti128_si256(bs, 1));
                __m128i p = _mm_madd_epi16(mins, pairs);
                p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4E));
                p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xB1));
                const int j = r * T + t;
                imins[j] = _mm_cvtsi128_si32(p);
                isum[j] = sumi[t];
                dd[j] = xb[t]->d * dw;
                dm[j] = xb[t]->d * dmin;
            }
        }
        /* (set, not loads of the arrays: a vector load of four scalar
         * stores waits for them, which cost decode a fifth) */
        acc = _mm_fmadd_ps(_mm_setr_ps(dd[0], dd[1], dd[2], dd[3]),
                           _mm_cvtepi32_ps(hsum4_i32x8(isum)), acc);
        summ = _mm_fmadd_ps(_mm_setr_ps(dm[0], dm[1], dm[2], dm[3]),
                            _mm_cvtepi32_ps(_mm_setr_epi32(imins[0], imins[1], imins[2], imins[3])),
                            summ);
    }
    _Alignas(16) float out[4];
    _mm_store_ps(out, _mm_sub_ps(acc, summ));
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            y[t * ys + r] = out[r * T + t];
}

/* Q6_K under the k-quant contract (dot_portable.c's dot_q6_k): the 8 int32
 * lanes and the offset summed exact, one fma per super-block. */
INLINE void tile_q6k(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                     float *y, int64_t ys, const int R, const int T)
{
    float acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R * T; j++)
        acc[j] = 0.0f;
    const __m256i lo4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < nb; i++) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const lm_block_q6_k *b = (const lm_block_q6_k *)(w + (size_t)r * ws) + i;
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
            const lm_block_q8_k *xb[4];
            __m256i sumi[4];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                xb[t] = (const lm_block_q8_k *)(x + t * xs) + i;
                sumi[t] = _mm256_setzero_si256();
            }
            for (int h = 0; h < 2; h++) {
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
                const __m256i hb = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                /* Levels 0..63; the -32 offset is taken out below with bsums. */
                const __m256i q[4] = {
                    _mm256_or_si256(_mm256_and_si256(l0, lo4),
                                    _mm256_slli_epi16(_mm256_and_si256(hb, three), 4)),
                    _mm256_or_si256(
                        _mm256_and_si256(l1, lo4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), three), 4)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l0, 4), lo4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), three), 4)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l1, 4), lo4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), three), 4)),
                };
                /* scales 8h..8h+7 as int16 in both halves; s[j]: scale 8h+2j in
                 * the low half's lanes, 8h+2j+1 in the high half's */
                const __m256i half = h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00)
                                            : _mm256_permute2x128_si256(sc16, sc16, 0x11);
                __m256i s[4];
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    s[j] = _mm256_shuffle_epi8(
                        half,
                        _mm256_set_m128i(_mm_set1_epi16((short)(((4 * j + 3) << 8) | (4 * j + 2))),
                                         _mm_set1_epi16((short)(((4 * j + 1) << 8) | (4 * j)))));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < 4; j++) {
                        const __m256i a = _mm256_loadu_si256(
                            (const __m256i *)(xb[t]->qs + 128 * h + 32 * j));
                        sumi[t] = _mm256_add_epi32(
                            sumi[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[j], a), s[j]));
                    }
            }
            const float dw = h2f((const uint8_t *)&b->d);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                /* sum_g scales[g] * bsums[g]: exact in int32 */
                const int ioff = hsum_i32x8(_mm256_madd_epi16(
                    sc16, _mm256_loadu_si256((const __m256i *)xb[t]->bsums)));
                const int j = r * T + t;
                acc[j] = fmaf(dw * xb[t]->d, (float)(hsum_i32x8(sumi[t]) - 32 * ioff), acc[j]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            y[t * ys + r] = acc[r * T + t];
}

/* ---- float weights ------------------------------------------------------- */

enum fkind { K_F32, K_F16, K_BF16 };

INLINE __m256 load8(enum fkind k, const void *p, int64_t i)
{
    switch (k) {
    case K_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const lm_fp16 *)p + i)));
    case K_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const lm_bf16 *)p + i))),
            16));
    default:
        return _mm256_loadu_ps((const float *)p + i);
    }
}

INLINE float load1(enum fkind k, const void *p, int64_t i)
{
    if (k == K_F16)
        return _cvtsh_ss(((const lm_fp16 *)p)[i]);
    if (k == K_BF16) {
        uint32_t u = (uint32_t)((const lm_bf16 *)p)[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    return ((const float *)p)[i];
}

INLINE float dot_float(enum fkind k, int64_t n, const void *w, const void *x)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++)
            acc[j] = _mm256_fmadd_ps(load8(k, w, i + 8 * j), load8(k, x, i + 8 * j), acc[j]);
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(load8(k, w, i), load8(k, x, i), acc[0]);
    float sum = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++)
        sum += load1(k, w, i) * load1(k, x, i);
    return sum;
}

INLINE void tile_float(enum fkind k, int64_t n, const uint8_t *w, size_t ws, int nr,
                       const uint8_t *x, size_t xs, int nt, float *y, int64_t ys)
{
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++)
            y[t * ys + r] = dot_float(k, n, w + r * ws, x + t * xs);
}

/* ---- instantiation and dispatch ----------------------------------------- */

typedef void (*tile32_fn)(int64_t nb, const uint8_t *w, size_t ws, int nr, const uint8_t *x,
                          size_t xs, float *y, int64_t ys, const void *ahead, size_t ahead_len);

/* One instantiation of tile32 per token count, so the accumulators stay in
 * registers; every call takes 4 rows (decode too: the float work per row is
 * a quarter of one row's; its four short streams are asked for ahead, as
 * the hardware prefetchers of AMD Zen 5 do not follow them: x86_inline.h's
 * prefetch_ahead). */
#define TILE32_FN(name, K, T)                                                                 \
    static AVX2 void name##_##T(int64_t nb, const uint8_t *w, size_t ws, int nr,              \
                                const uint8_t *x, size_t xs, float *y, int64_t ys,            \
                                const void *ahead, size_t ahead_len)                          \
    {                                                                                         \
        tile32(K, nb, w, ws, nr, x, xs, y, ys, ahead, ahead_len, T);                          \
    }

#define TILE32_SET(name, K)                                                                   \
    TILE32_FN(name, K, 1)                                                                     \
    TILE32_FN(name, K, 2)                                                                     \
    TILE32_FN(name, K, 3)                                                                     \
    TILE32_FN(name, K, 4)                                                                     \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,   \
                     int nt, float *y, int64_t ys, const void *ahead, size_t ahead_len)       \
    {                                                                                         \
        static const tile32_fn k[4] = {name##_1, name##_2, name##_3, name##_4};               \
        k[nt - 1](n / 32, w, ws, nr, x, xs, y, ys, ahead, ahead_len);                         \
    }

TILE32_SET(tile_q4_0, K_Q4_0)

TILE32_SET(tile_q5_1, K_Q5_1)
TILE32_SET(tile_q8_0, K_Q8_0)

/* Q4_1's tile, R rows x T tokens, in ggml's order (vec_dot_q4_1_q8_1 on
 * AVX2: 8 float lanes per row and token, summed by hsum8 at the end), which
 * the default model's fixtures (llama.cpp's greedy text) need bit for bit.
 * R and T are constants after inlining, so the accumulators live in
 * registers.  Per block, the T activation scales (and
 * sums s) are gathered into one vector, so a weight row needs one multiply
 * for all T scale products and one FMA for all T m*s terms. */
INLINE void tile32_lanes(enum kind k, int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,
                   size_t xs, float *y, int64_t ys, const void *ahead, size_t ahead_len,
                   const int R, const int T)
{
    const int affine = k == K_Q4_1 || k == K_Q5_1;
    const int xsize = affine ? 36 : 34, xq = affine ? 4 : 2;
    __m256 acc[4][4];
    __m128 summ[4];
    _Alignas(16) float dd[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        summ[r] = _mm_setzero_ps();
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        if (T == 1 && R > 1)
            prefetch_ahead(ahead, ahead_len, LM_TILE_ROWS * (size_t)wsize[k], b);
        /* ds[t] = {d_t, s_t, 0, 0}; then dx = {d_0..d_3}, sx = {s_0..s_3} */
        __m128 ds[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
            ds[t] = t < T ? half_pair(x + t * xs + b * xsize) : _mm_setzero_ps();
        const __m128 lo = _mm_unpacklo_ps(ds[0], ds[1]), hi = _mm_unpacklo_ps(ds[2], ds[3]);
        const __m128 dx = _mm_movelh_ps(lo, hi), sx = _mm_movehl_ps(hi, lo);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + r * ws + b * wsize[k];
            const __m128 dm = half_pair(wb); /* {d, m} (m only for the _1 types) */
            __m256 scale1 = _mm256_setzero_ps();
            if (T == 1) { /* {d_w d_x, m_w s_x} in one multiply; lane 1 sums m s */
                const __m128 p = _mm_mul_ps(dm, ds[0]);
                scale1 = _mm256_broadcastss_ps(p);
                if (affine)
                    summ[r] = _mm_add_ps(summ[r], p);
            } else {
                _mm_store_ps(dd[r], _mm_mul_ps(_mm_broadcastss_ps(dm), dx));
                if (affine)
                    summ[r] = _mm_fmadd_ps(_mm_permute_ps(dm, 0x55), sx, summ[r]);
            }
            const wblock wq = unpack(k, wb);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const __m256i xv =
                    _mm256_loadu_si256((const __m256i *)(x + t * xs + b * xsize + xq));
                const __m256 p = _mm256_cvtepi32_ps(block_dot(k, &wq, xv));
                const __m256 scale = T == 1 ? scale1 : _mm256_broadcast_ss(&dd[r][t]);
                acc[r][t] = _mm256_fmadd_ps(scale, p, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        _Alignas(16) float sm[4];
        _mm_store_ps(sm, summ[r]);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            y[t * ys + r] = hsum8(acc[r][t]) + sm[T == 1 ? 1 : t];
    }
}


typedef void (*tile32l_fn)(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                           float *y, int64_t ys, const void *ahead, size_t ahead_len);

/* One instantiation of tile32_lanes for R rows x T tokens, the sizes known
 * at compile time so the accumulators stay in registers.  Decode takes 4
 * rows at a time (4 streams in flight: 1.7x one row's speed on an Intel
 * Xeon, each row's float steps unchanged); prompts 2 rows x up to 4 tokens
 * (8 accumulators, which with the unpacked weights fill the 16 ymm
 * registers). */
#define TILE32L_FN(name, K, R, T)                                                             \
    static AVX2 void name##_##R##x##T(int64_t nb, const uint8_t *w, size_t ws,                \
                                      const uint8_t *x, size_t xs, float *y, int64_t ys,      \
                                      const void *ahead, size_t ahead_len)                    \
    {                                                                                         \
        tile32_lanes(K, nb, w, ws, x, xs, y, ys, ahead, ahead_len, R, T);                     \
    }

#define TILE32L_SET(name, K)                                                                  \
    TILE32L_FN(name, K, 1, 1)                                                                 \
    TILE32L_FN(name, K, 4, 1)                                                                 \
    TILE32L_FN(name, K, 1, 2)                                                                 \
    TILE32L_FN(name, K, 1, 3)                                                                 \
    TILE32L_FN(name, K, 1, 4)                                                                 \
    TILE32L_FN(name, K, 2, 2)                                                                 \
    TILE32L_FN(name, K, 2, 3)                                                                 \
    TILE32L_FN(name, K, 2, 4)                                                                 \
    static const tile32l_fn name##_kernels[2][4] = {                                          \
        {name##_1x1, name##_1x2, name##_1x3, name##_1x4},                                     \
        {name##_4x1, name##_2x2, name##_2x3, name##_2x4},                                     \
    };                                                                                        \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,   \
                     int nt, float *y, int64_t ys, const void *ahead, size_t ahead_len)       \
    {                                                                                         \
        dispatch32l(name##_kernels, n / 32, w, ws, nr, x, xs, nt, y, ys, ahead, ahead_len);   \
    }

/* k[1] takes several rows at once (4 for one token, else 2), k[0] one. */
static void dispatch32l(const tile32l_fn k[2][4], int64_t nb, const void *vw, size_t ws, int nr,
                        const void *vx, size_t xs, int nt, float *y, int64_t ys,
                        const void *ahead, size_t ahead_len)
{
    const uint8_t *w = vw, *x = vx;
    const int step = nt == 1 ? 4 : 2;
    int r = 0;
    for (; r + step <= nr; r += step)
        k[1][nt - 1](nb, w + r * ws, ws, x, xs, y + r, ys, ahead, ahead_len);
    for (; r < nr; r++)
        k[0][nt - 1](nb, w + r * ws, ws, x, xs, y + r, ys, NULL, 0);
}

TILE32L_SET(tile_q4_1, K_Q4_1)
TILE32L_SET(tile_q5_0, K_Q5_0)

/* k-quants: T tokens of one row, or for decode 4 rows of one token (four
 * independent chains: 1.5x one row's speed on an Intel Xeon). */
typedef void (*tilek_fn)(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                         float *y, int64_t ys, const void *ahead, size_t ahead_len);

#define TILEK_FN(name, CALL, R, T)                                                            \
    static AVX2 void name##_##R##x##T(int64_t nb, const uint8_t *w, size_t ws,                \
                                      const uint8_t *x, size_t xs, float *y, int64_t ys,      \
                                      const void *ahead, size_t ahead_len)                    \
    {                                                                                         \
        CALL(R, T);                                                                           \
    }

/* DEC: rows per decode call (Q6_K keeps 1: its unpacked block takes more
 * registers, and four rows spilled them: 0.75x one row's speed). */
#define TILEK_SET(name, CALL, DEC)                                                            \
    TILEK_FN(name, CALL, 1, 1)                                                                \
    TILEK_FN(name, CALL, 1, 2)                                                                \
    TILEK_FN(name, CALL, 1, 3)                                                                \
    TILEK_FN(name, CALL, 1, 4)                                                                \
    static AVX2 void name##_dec(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *x,    \
                                size_t xs, float *y, int64_t ys, const void *ahead,           \
                                size_t ahead_len)                                             \
    {                                                                                         \
        CALL(DEC, 1);                                                                         \
    }                                                                                         \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,   \
                     int nt, float *y, int64_t ys, const void *ahead, size_t ahead_len)       \
    {                                                                                         \
        static const tilek_fn k[4] = {name##_1x1, name##_1x2, name##_1x3, name##_1x4};        \
        const uint8_t *wb = w;                                                                \
        int r = 0;                                                                            \
        if (nt == 1)                                                                          \
            for (; r + (DEC) <= nr; r += (DEC))                                               \
                name##_dec(n / LM_QK_K, wb + r * ws, ws, x, xs, y + r, ys, ahead, ahead_len); \
        for (; r < nr; r++)                                                                   \
            k[nt - 1](n / LM_QK_K, wb + r * ws, ws, x, xs, y + r, ys, NULL, 0);               \
    }

#define CALL_Q4K(R, T) tile_q45k(K_Q4_K, nb, w, ws, x, xs, y, ys, ahead, ahead_len, R, T)
#define CALL_Q5K(R, T) tile_q45k(K_Q5_K, nb, w, ws, x, xs, y, ys, ahead, ahead_len, R, T)
/* (one row at a time, one stream: the hardware prefetchers follow it) */
#define CALL_Q6K(R, T) ((void)ahead, (void)ahead_len, tile_q6k(nb, w, ws, x, xs, y, ys, R, T))
TILEK_SET(tile_q4_k, CALL_Q4K, 4)
TILEK_SET(tile_q5_k, CALL_Q5K, 4)
TILEK_SET(tile_q6_k, CALL_Q6K, 1)

#define TILEF(name, K)                                                                        \
    static AVX2 void name(int64_t n, const void *w, size_t ws, int nr, const void *x,         \
                          size_t xs, int nt, float *y, int64_t ys, const void *ahead,         \
                          size_t ahead_len)                                                   \
    {                                                                                         \
        (void)ahead, (void)ahead_len; /* one row at a time */                                 \
        tile_float(K, n, w, ws, nr, x, xs, nt, y, ys);                                        \
    }
TILEF(tile_f32, K_F32)
TILEF(tile_f16, K_F16)
TILEF(tile_bf16, K_BF16)

const lm_tile_fn lm_tile_avx2[LM_TYPE_COUNT] = {
    [LM_TYPE_F32] = tile_f32,   [LM_TYPE_F16] = tile_f16,   [LM_TYPE_BF16] = tile_bf16,
    [LM_TYPE_Q4_0] = tile_q4_0, [LM_TYPE_Q4_1] = tile_q4_1, [LM_TYPE_Q5_0] = tile_q5_0,
    [LM_TYPE_Q5_1] = tile_q5_1, [LM_TYPE_Q8_0] = tile_q8_0, [LM_TYPE_Q4_K] = tile_q4_k,
    [LM_TYPE_Q5_K] = tile_q5_k, [LM_TYPE_Q6_K] = tile_q6_k,
};
