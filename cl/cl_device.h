/* The OpenCL side's shared declarations: devices (discovery through the ICD
 * loader, selection by index or name), error names, the embedded kernel
 * program with its on-disk binary cache, and the allocation accountant.
 * Only OpenCL 1.2 is required of the platform. */
#ifndef LM_CL_DEVICE_H
#define LM_CL_DEVICE_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stdint.h>
#include <stdio.h>

/* "CL_OUT_OF_RESOURCES" for -5; "CL_UNKNOWN_ERROR" for a code not in the table. */
const char *lm_cl_error_name(cl_int err);

/* If err is not CL_SUCCESS: lm_set_error("CALL: NAME (code)") and -1; else 0. */
int lm_cl_check(cl_int err, const char *call);

/* The device `spec` names: NULL or "" for the first GPU (else the first
 * device), a number for the device of that index in `lamina devices`, or a
 * case-insensitive substring of the device name.  0, or -1 with lm_set_error. */
int lm_cl_pick_device(const char *spec, cl_platform_id *platform, cl_device_id *device);

/* Prints every platform and device with memory, compute units and version. */
int lm_cl_print_devices(FILE *f);

/* "NAME (PLATFORM, OpenCL X.Y)" of a device, into buf. */
void lm_cl_device_label(cl_device_id device, char *buf, size_t size);

/* ---- the program (cl_program.c) ---- */

/* The kernel sources, concatenated from cl/\*.cl at build time (cl_sources.c). */
extern const char *const lm_cl_source_lines[];
extern const unsigned lm_cl_source_line_count;

/* The program built for device: loaded from the binary cache when the
 * device, driver and source are unchanged, else compiled from source and
 * stored there.  A failed build's log is part of the error. */
cl_program lm_cl_program_build(cl_context ctx, cl_device_id device);

/* ---- device memory (cl_memory.c) ---- */

typedef struct {
    uint64_t in_use, peak; /* bytes */
    uint64_t n_allocs;
} lm_cl_mem;

/* A buffer of size bytes counted in acct; NULL with an error naming `what`. */
cl_mem lm_cl_alloc(lm_cl_mem *acct, cl_context ctx, cl_mem_flags flags, size_t size,
                   const char *what);
/* Releases buf (NULL is fine) and takes its bytes off acct. */
void lm_cl_release(lm_cl_mem *acct, cl_mem buf);

#endif
