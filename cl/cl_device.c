/* OpenCL devices through the ICD loader: the error-name table, the list
 * `lamina devices` prints, and the choice of one device by --device. */
#define _GNU_SOURCE
#include "cl_device.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"

#define ERR(name) {name, #name}
static const struct {
    cl_int code;
    const char *name;
} error_names[] = {
    ERR(CL_SUCCESS), ERR(CL_DEVICE_NOT_FOUND), ERR(CL_DEVICE_NOT_AVAILABLE),
    ERR(CL_COMPILER_NOT_AVAILABLE), ERR(CL_MEM_OBJECT_ALLOCATION_FAILURE),
    ERR(CL_OUT_OF_RESOURCES), ERR(CL_OUT_OF_HOST_MEMORY), ERR(CL_PROFILING_INFO_NOT_AVAILABLE),
    ERR(CL_MEM_COPY_OVERLAP), ERR(CL_IMAGE_FORMAT_MISMATCH), ERR(CL_IMAGE_FORMAT_NOT_SUPPORTED),
    ERR(CL_BUILD_PROGRAM_FAILURE), ERR(CL_MAP_FAILURE), ERR(CL_MISALIGNED_SUB_BUFFER_OFFSET),
    ERR(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST), ERR(CL_COMPILE_PROGRAM_FAILURE),
    ERR(CL_LINKER_NOT_AVAILABLE), ERR(CL_LINK_PROGRAM_FAILURE), ERR(CL_DEVICE_PARTITION_FAILED),
    ERR(CL_KERNEL_ARG_INFO_NOT_AVAILABLE), ERR(CL_INVALID_VALUE), ERR(CL_INVALID_DEVICE_TYPE),
    ERR(CL_INVALID_PLATFORM), ERR(CL_INVALID_DEVICE), ERR(CL_INVALID_CONTEXT),
    ERR(CL_INVALID_QUEUE_PROPERTIES), ERR(CL_INVALID_COMMAND_QUEUE), ERR(CL_INVALID_HOST_PTR),
    ERR(CL_INVALID_MEM_OBJECT), ERR(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR),
    ERR(CL_INVALID_IMAGE_SIZE), ERR(CL_INVALID_SAMPLER), ERR(CL_INVALID_BINARY),
    ERR(CL_INVALID_BUILD_OPTIONS), ERR(CL_INVALID_PROGRAM), ERR(CL_INVALID_PROGRAM_EXECUTABLE),
    ERR(CL_INVALID_KERNEL_NAME), ERR(CL_INVALID_KERNEL_DEFINITION), ERR(CL_INVALID_KERNEL),
    ERR(CL_INVALID_ARG_INDEX), ERR(CL_INVALID_ARG_VALUE), ERR(CL_INVALID_ARG_SIZE),
    ERR(CL_INVALID_KERNEL_ARGS), ERR(CL_INVALID_WORK_DIMENSION),
    ERR(CL_INVALID_WORK_GROUP_SIZE), ERR(CL_INVALID_WORK_ITEM_SIZE),
    ERR(CL_INVALID_GLOBAL_OFFSET), ERR(CL_INVALID_EVENT_WAIT_LIST), ERR(CL_INVALID_EVENT),
    ERR(CL_INVALID_OPERATION), ERR(CL_INVALID_GL_OBJECT), ERR(CL_INVALID_BUFFER_SIZE),
    ERR(CL_INVALID_MIP_LEVEL), ERR(CL_INVALID_GLOBAL_WORK_SIZE), ERR(CL_INVALID_PROPERTY),
    ERR(CL_INVALID_IMAGE_DESCRIPTOR), ERR(CL_INVALID_COMPILER_OPTIONS),
    ERR(CL_INVALID_LINKER_OPTIONS), ERR(CL_INVALID_DEVICE_PARTITION_COUNT),
    {-1001, "CL_PLATFORM_NOT_FOUND_KHR"},
};

const char *lm_cl_error_name(cl_int err)
{
    for (size_t i = 0; i < sizeof error_names / sizeof *error_names; i++)
        if (error_names[i].code == err)
            return error_names[i].name;
    return "CL_UNKNOWN_ERROR";
}

int lm_cl_check(cl_int err, const char *call)
{
    if (err == CL_SUCCESS)
        return 0;
    lm_set_error("%s: %s (%d)", call, lm_cl_error_name(err), err);
    return -1;
}

/* Every device of every platform, in the order `lamina devices` numbers them. */
typedef struct {
    cl_platform_id platform;
    cl_device_id device;
} device_ref;

static int list_devices(device_ref **out, int *count)
{
    cl_uint n_pf = 0;
    *out = NULL;
    *count = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &n_pf);
    if (err == -1001 || n_pf == 0) /* the ICD loader found no platform */
        return 0;
    if (lm_cl_check(err, "clGetPlatformIDs") != 0)
        return -1;
    cl_platform_id *pf = calloc(n_pf, sizeof *pf);
    if (!pf || lm_cl_check(clGetPlatformIDs(n_pf, pf, NULL), "clGetPlatformIDs") != 0) {
        free(pf);
        return -1;
    }
    int rc = 0;
    for (cl_uint p = 0; p < n_pf && rc == 0; p++) {
        cl_uint n_dev = 0;
        if (clGetDeviceIDs(pf[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_dev) != CL_SUCCESS || !n_dev)
            continue; /* a platform without devices is not an error */
        cl_device_id dev[64];
        if (n_dev > 64)
            n_dev = 64;
        device_ref *grown = realloc(*out, (size_t)(*count + (int)n_dev) * sizeof **out);
        if (!grown ||
            lm_cl_check(clGetDeviceIDs(pf[p], CL_DEVICE_TYPE_ALL, n_dev, dev, NULL),
                        "clGetDeviceIDs") != 0) {
            if (grown)
                *out = grown;
            else
                lm_set_error("out of memory");
            rc = -1;
            break;
        }
        *out = grown;
        for (cl_uint d = 0; d < n_dev; d++)
            (*out)[(*count)++] = (device_ref){pf[p], dev[d]};
    }
    free(pf);
    if (rc != 0) {
        free(*out);
        *out = NULL;
        *count = 0;
    }
    return rc;
}

static void info_str(cl_device_id d, cl_device_info what, char *buf, size_t size)
{
    if (clGetDeviceInfo(d, what, size, buf, NULL) != CL_SUCCESS)
        snprintf(buf, size, "?");
    buf[size - 1] = '\0';
}

void lm_cl_device_label(cl_device_id device, char *buf, size_t size)
{
    char name[256], version[128], pname[256] = "?";
    cl_platform_id pf;
    info_str(device, CL_DEVICE_NAME, name, sizeof name);
    info_str(device, CL_DEVICE_VERSION, version, sizeof version);
    if (clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof pf, &pf, NULL) == CL_SUCCESS)
        clGetPlatformInfo(pf, CL_PLATFORM_NAME, sizeof pname, pname, NULL);
    pname[sizeof pname - 1] = '\0';
    snprintf(buf, size, "%s (%s, %s)", name, pname, version);
}

static int is_gpu(cl_device_id d)
{
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    return (type & CL_DEVICE_TYPE_GPU) != 0;
}

int lm_cl_pick_device(const char *spec, cl_platform_id *platform, cl_device_id *device)
{
    device_ref *devs;
    int n, pick = -1;
    if (list_devices(&devs, &n) != 0)
        return -1;
    if (n == 0) {
        lm_set_error("no OpenCL device found (no platform registered with the ICD loader; "
                     "see /etc/OpenCL/vendors)");
        return -1;
    }
    if (!spec || !*spec) {
        for (int i = 0; i < n && pick < 0; i++)
            if (is_gpu(devs[i].device))
                pick = i;
        if (pick < 0)
            pick = 0;
    } else if (strspn(spec, "0123456789") == strlen(spec)) {
        pick = atoi(spec);
        if (pick >= n) {
            lm_set_error("--device %s: there are %d OpenCL devices (see lamina devices)", spec,
                         n);
            free(devs);
            return -1;
        }
    } else {
        for (int i = 0; i < n && pick < 0; i++) {
            char name[256];
            info_str(devs[i].device, CL_DEVICE_NAME, name, sizeof name);
            if (strcasestr(name, spec))
                pick = i;
        }
        if (pick < 0) {
            lm_set_error("--device %s: no OpenCL device has that in its name (see lamina "
                         "devices)", spec);
            free(devs);
            return -1;
        }
    }
    *platform = devs[pick].platform;
    *device = devs[pick].device;
    free(devs);
    return 0;
}

static const char *type_name(cl_device_id d)
{
    cl_device_type t = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    return t & CL_DEVICE_TYPE_GPU ? "GPU" : t & CL_DEVICE_TYPE_CPU ? "CPU"
         : t & CL_DEVICE_TYPE_ACCELERATOR ? "accelerator" : "other";
}

int lm_cl_print_devices(FILE *f)
{
    device_ref *devs;
    int n;
    if (list_devices(&devs, &n) != 0)
        return -1;
    if (n == 0)
        fprintf(f, "no OpenCL devices (no platform registered with the ICD loader)\n");
    cl_platform_id last = NULL;
    for (int i = 0; i < n; i++) {
        cl_device_id d = devs[i].device;
        if (devs[i].platform != last) {
            char pname[256] = "?", pver[256] = "?";
            clGetPlatformInfo(devs[i].platform, CL_PLATFORM_NAME, sizeof pname, pname, NULL);
            clGetPlatformInfo(devs[i].platform, CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
            pname[255] = pver[255] = '\0';
            fprintf(f, "platform: %s (%s)\n", pname, pver);
            last = devs[i].platform;
        }
        char name[256], version[128], driver[128];
        cl_ulong global = 0, max_alloc = 0;
        cl_uint cus = 0;
        info_str(d, CL_DEVICE_NAME, name, sizeof name);
        info_str(d, CL_DEVICE_VERSION, version, sizeof version);
        info_str(d, CL_DRIVER_VERSION, driver, sizeof driver);
        clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
        clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
        clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
        fprintf(f,
                "  %d: %s [%s]\n     global memory %.2f GiB, max allocation %.2f GiB, "
                "%u compute units, %s, driver %s\n",
                i, name, type_name(d), (double)global / (1 << 30), (double)max_alloc / (1 << 30),
                cus, version, driver);
    }
    free(devs);
    return 0;
}
