# LM_FUZZERS
# ----------
# --enable-fuzzers (default: no): the libFuzzer harnesses in tests/fuzz,
# built and run by `make fuzz`.  The library's sources then get
# FUZZ_CFLAGS (-fsanitize=fuzzer-no-link), so libFuzzer sees coverage inside
# the library and not only in the harness; the harnesses are linked with
# FUZZ_LDFLAGS (-fsanitize=fuzzer), which brings libFuzzer and its main,
# and the other programs with FUZZ_CFLAGS, for which clang links the
# runtime that has the coverage hooks the library calls.  Sanitizers are
# the user's choice, in CFLAGS.  Defines the automake conditional
# ENABLE_FUZZERS.
AC_DEFUN([LM_FUZZERS], [
  AC_ARG_ENABLE([fuzzers],
    [AS_HELP_STRING([--enable-fuzzers],
      [build the libFuzzer harnesses for `make fuzz' (needs clang; put sanitizers in CFLAGS)])],
    [enable_fuzzers=$enableval], [enable_fuzzers=no])
  FUZZ_CFLAGS=
  FUZZ_LDFLAGS=
  AS_IF([test "x$enable_fuzzers" = xyes], [
    lm_save_CFLAGS=$CFLAGS
    AC_MSG_CHECKING([whether $CC links a libFuzzer harness (-fsanitize=fuzzer)])
    CFLAGS="$lm_save_CFLAGS -fsanitize=fuzzer"
    AC_LINK_IFELSE([AC_LANG_SOURCE([[
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return size > 0 && data[0] == 'x';
}
]])], [lm_fuzz_link=yes], [lm_fuzz_link=no])
    AC_MSG_RESULT([$lm_fuzz_link])
    AS_IF([test $lm_fuzz_link = no],
      [AC_MSG_ERROR([--enable-fuzzers needs a compiler that links with -fsanitize=fuzzer (libFuzzer): use clang with its runtime, e.g. CC=clang (Debian: clang and libclang-rt-dev)])])
    CFLAGS=$lm_save_CFLAGS
    FUZZ_CFLAGS=-fsanitize=fuzzer-no-link
    FUZZ_LDFLAGS=-fsanitize=fuzzer
  ], [test "x$enable_fuzzers" != xno], [
    AC_MSG_ERROR([--enable-fuzzers takes yes or no, not '$enable_fuzzers'])
  ])
  AC_SUBST([FUZZ_CFLAGS])
  AC_SUBST([FUZZ_LDFLAGS])
  AM_CONDITIONAL([ENABLE_FUZZERS], [test "x$enable_fuzzers" = xyes])
])
