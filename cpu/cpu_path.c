/* Which kernels run: one choice at start from what the CPU has (CPUID) and
 * what LAMINA_CPU asks for, read by every kernel entry point through
 * lm_cpu_active_path().  Paths are tested against the scalar reference on
 * the machine that runs the tests (tests/test_cpu_kernels.c); a path the
 * CPU lacks is skipped there with a message. */
#include <cpuid.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "internal.h"
#include "kernels.h"

typedef struct {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, avxvnni;
} cpu_features;

static cpu_features features(void)
{
    cpu_features f = {0};
    __builtin_cpu_init();
    /* FMA and F16C from CPUID leaf 1 (clang's __builtin_cpu_supports does
     * not know "f16c"); the rest from the builtin, which also checks that
     * the OS saves the AVX and AVX-512 state */
    unsigned a, b, c = 0, d;
    __get_cpuid(1, &a, &b, &c, &d);
    f.fma = (c & bit_FMA) != 0;
    f.f16c = (c & bit_F16C) != 0;
    f.avx2 = __builtin_cpu_supports("avx2");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512vnni = __builtin_cpu_supports("avx512vnni");
    /* AVX-VNNI: CPUID leaf 7 subleaf 1, EAX bit 4 */
    unsigned a7 = 0, b7, c7, d7;
    if (__get_cpuid_count(7, 1, &a7, &b7, &c7, &d7))
        f.avxvnni = (a7 & (1u << 4)) != 0 && f.avx2;
    return f;
}

lm_cpu_path lm_cpu_detect_path(void)
{
    const cpu_features f = features();
    if (!(f.avx2 && f.fma && f.f16c))
        return LM_CPU_PORTABLE;
    if (!(f.avx512f && f.avx512bw && f.avx512vl))
        return LM_CPU_AVX2;
    return f.avx512vnni ? LM_CPU_AVX512VNNI : LM_CPU_AVX512;
}

const char *lm_cpu_path_name(lm_cpu_path p)
{
    static const char *names[LM_CPU_PATH_COUNT] = {"portable", "avx2", "avx512", "avx512vnni"};
    return p < LM_CPU_PATH_COUNT ? names[p] : "?";
}

/* The path asked for by the environment: -1 none, -2 an unknown name.
 * LAMINA_CPU first; the older LAMINA_NO_AVX2=1 means portable. */
static int asked_path(void)
{
    const char *want = getenv("LAMINA_CPU"), *no = getenv("LAMINA_NO_AVX2");
    if ((!want || !want[0]) && no && no[0] && strcmp(no, "0") != 0)
        return LM_CPU_PORTABLE;
    if (!want || !want[0])
        return -1;
    for (int p = 0; p < LM_CPU_PATH_COUNT; p++)
        if (strcmp(want, lm_cpu_path_name((lm_cpu_path)p)) == 0)
            return p;
    return -2;
}

int lm_cpu_path_check(void)
{
    const int asked = asked_path();
    if (asked == -2) {
        lm_set_error("LAMINA_CPU=%s: not a kernel path (portable, avx2, avx512 or avx512vnni)",
                     getenv("LAMINA_CPU"));
        return -1;
    }
    if (asked > (int)lm_cpu_detect_path()) {
        lm_set_error("LAMINA_CPU=%s: this CPU cannot run it (it has %s)",
                     lm_cpu_path_name((lm_cpu_path)asked), lm_cpu_path_name(lm_cpu_detect_path()));
        return -1;
    }
    return 0;
}

lm_cpu_path lm_cpu_active_path(void)
{
    static atomic_int chosen = -1;
    int p = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (p < 0) {
        const int asked = asked_path();
        const int best = (int)lm_cpu_detect_path();
        /* an unusable request (refused at start by lm_cpu_path_check) falls
         * back to what the CPU has, never to a path it lacks */
        p = asked >= 0 && asked <= best ? asked : best;
        atomic_store_explicit(&chosen, p, memory_order_relaxed);
    }
    return (lm_cpu_path)p;
}

bool lm_cpu_use_avx2(void)
{
    return lm_cpu_active_path() >= LM_CPU_AVX2;
}

void lm_cpu_path_describe(char *buf, size_t len)
{
    const cpu_features f = features();
    const lm_cpu_path p = lm_cpu_active_path();
    /* what the path runs beyond AVX2's kernels */
    const char *extra = "";
    if (p == LM_CPU_AVX512)
        extra = ", AVX2 kernels (AVX-512 kernels need VNNI)";
    else if (p == LM_CPU_AVX512VNNI)
        extra = lm_panel_avx512vnni[LM_TYPE_Q4_0].fn
                    ? ", VNNI kernels for the quantized types (Q8_0 decode: AVX2), AVX2 "
                      "kernels for F32, F16 and BF16"
                    : ", AVX2 kernels (this build's compiler has no AVX-512 VNNI)";
    snprintf(buf, len, "%s%s (this CPU: %s%s%s%s%s%s%s%s)", lm_cpu_path_name(p), extra,
             f.avx2 ? "AVX2" : "no AVX2", f.fma ? " FMA" : "", f.f16c ? " F16C" : "",
             f.avxvnni ? " AVX-VNNI" : "", f.avx512f ? " AVX-512F" : "",
             f.avx512bw ? " BW" : "", f.avx512vl ? " VL" : "", f.avx512vnni ? " VNNI" : "");
}
