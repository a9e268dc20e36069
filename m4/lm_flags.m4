# LM_WARN_CFLAGS
# --------------
# Warnings every build gets (only those the compiler accepts), in WARN_CFLAGS.
AC_DEFUN([LM_WARN_CFLAGS], [
  WARN_CFLAGS=
  for lm_flag in -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
                 -Wno-unused-parameter -Wvla; do
    AC_MSG_CHECKING([whether $CC accepts $lm_flag])
    lm_save_CFLAGS=$CFLAGS
    CFLAGS="$CFLAGS -Werror $lm_flag"
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])],
                      [AC_MSG_RESULT([yes]); WARN_CFLAGS="$WARN_CFLAGS $lm_flag"],
                      [AC_MSG_RESULT([no])])
    CFLAGS=$lm_save_CFLAGS
  done
  AC_ARG_ENABLE([werror],
    [AS_HELP_STRING([--enable-werror], [treat compiler warnings as errors (CI builds so)])],
    [], [enable_werror=no])
  AS_IF([test "x$enable_werror" = xyes], [WARN_CFLAGS="$WARN_CFLAGS -Werror"])
  AC_SUBST([WARN_CFLAGS])
])

# LM_PTHREAD
# -----------------
# The streamer's I/O thread needs POSIX threads; on glibc -pthread suffices.
AC_DEFUN([LM_PTHREAD], [
  AC_CHECK_HEADER([pthread.h], [], [AC_MSG_ERROR([pthread.h is required])])
  PTHREAD_CFLAGS=-pthread
  PTHREAD_LIBS=-pthread
  AC_SUBST([PTHREAD_CFLAGS])
  AC_SUBST([PTHREAD_LIBS])
])
