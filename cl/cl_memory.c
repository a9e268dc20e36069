/* The one place device memory is allocated, so the bytes in use and the
 * peak are known (the planner of issue 4 budgets against them, the stats
 * report them).  Drivers may allocate lazily, so an out-of-memory can also
 * surface at the first kernel that touches a buffer; that error names its
 * call too. */
#include "cl_device.h"
#include "error.h"

cl_mem lm_cl_alloc(lm_cl_mem *acct, cl_context ctx, cl_mem_flags flags, size_t size,
                   const char *what)
{
    cl_int err;
    if (size == 0)
        size = 4; /* a zero-sized buffer is an error in OpenCL */
    cl_mem buf = clCreateBuffer(ctx, flags, size, NULL, &err);
    if (err != CL_SUCCESS) {
        lm_set_error("clCreateBuffer for %s (%.1f MiB, %.1f MiB in use): %s (%d)", what,
                     (double)size / (1 << 20), (double)acct->in_use / (1 << 20),
                     lm_cl_error_name(err), err);
        return NULL;
    }
    acct->in_use += size;
    acct->n_allocs++;
    if (acct->in_use > acct->peak)
        acct->peak = acct->in_use;
    return buf;
}

void lm_cl_release(lm_cl_mem *acct, cl_mem buf)
{
    size_t size = 0;
    if (!buf)
        return;
    if (clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof size, &size, NULL) == CL_SUCCESS)
        acct->in_use -= size < acct->in_use ? size : acct->in_use;
    clReleaseMemObject(buf);
}
