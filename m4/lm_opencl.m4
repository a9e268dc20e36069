# LM_CHECK_OPENCL
# ---------------
# --enable-opencl (default: auto).  Looks for the OpenCL ICD loader and
# headers, and CLBlast, through pkg-config first and plain header/library
# checks second (older distributions ship no .pc for the loader).  Defines
# LAMINA_OPENCL and the automake conditional HAVE_OPENCL when all are found;
# --enable-opencl=yes turns a missing piece into an error, and
# --disable-opencl skips every check so no OpenCL package is needed.
AC_DEFUN([LM_CHECK_OPENCL], [
  AC_ARG_ENABLE([opencl],
    [AS_HELP_STRING([--disable-opencl], [build the CPU backend only (default: auto)])],
    [enable_opencl=$enableval], [enable_opencl=auto])
  lm_have_opencl=no
  lm_opencl_summary="disabled (--disable-opencl)"
  AS_IF([test "x$enable_opencl" != xno], [
    PKG_CHECK_MODULES([OPENCL], [OpenCL], [lm_cl_lib=yes], [
      AC_CHECK_LIB([OpenCL], [clGetPlatformIDs],
                   [lm_cl_lib=yes; OPENCL_LIBS="-lOpenCL"], [lm_cl_lib=no])])
    lm_save_CPPFLAGS=$CPPFLAGS
    CPPFLAGS="$CPPFLAGS $OPENCL_CFLAGS"
    AC_CHECK_HEADER([CL/cl.h], [lm_cl_hdr=yes], [lm_cl_hdr=no])
    CPPFLAGS=$lm_save_CPPFLAGS
    PKG_CHECK_MODULES([CLBLAST], [clblast], [lm_clblast=yes], [
      AC_CHECK_LIB([clblast], [CLBlastSgemm],
                   [lm_clblast=yes; CLBLAST_LIBS="-lclblast"], [lm_clblast=no])])
    AS_IF([test "$lm_cl_lib$lm_cl_hdr$lm_clblast" = yesyesyes], [
      lm_have_opencl=yes
      lm_opencl_summary="yes (ICD loader, headers, CLBlast)"
      AC_DEFINE([LAMINA_OPENCL], [1], [Build the OpenCL backend])
    ], [
      lm_opencl_summary="no (loader: $lm_cl_lib, CL/cl.h: $lm_cl_hdr, CLBlast: $lm_clblast)"
      AS_IF([test "x$enable_opencl" = xyes],
            [AC_MSG_ERROR([--enable-opencl given but $lm_opencl_summary])])
    ])
  ])
  AM_CONDITIONAL([HAVE_OPENCL], [test "x$lm_have_opencl" = xyes])
])
