# LM_CHECK_AVX512VNNI: whether the compiler builds AVX-512 VNNI code in a
# function with a target attribute (GCC 8+, clang 6+); defines
# LM_HAVE_AVX512VNNI if so.  The kernels are chosen at run time, so the
# build machine's own CPU does not matter; an older compiler builds lamina
# without them.
AC_DEFUN([LM_CHECK_AVX512VNNI], [
  AC_CACHE_CHECK([whether $CC builds AVX-512 VNNI kernels], [lm_cv_avx512vnni], [
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[
#include <immintrin.h>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
static __m512i f(__m512i a, __m512i b, __m512i c) { return _mm512_dpbusd_epi32(a, b, c); }
__m512i (*g)(__m512i, __m512i, __m512i) = f;
]], [[]])], [lm_cv_avx512vnni=yes], [lm_cv_avx512vnni=no])])
  AS_IF([test "x$lm_cv_avx512vnni" = xyes],
    [AC_DEFINE([LM_HAVE_AVX512VNNI], [1],
       [Define if the compiler builds AVX-512 VNNI code (target attribute).])])
])
