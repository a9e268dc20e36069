/* lamina devices: the OpenCL platforms and devices the ICD loader knows,
 * numbered as --device takes them. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "error.h"
#ifdef LAMINA_OPENCL
#include "cl_device.h"
#endif

int lm_cmd_devices(int argc, char **argv)
{
    lm_cli o;
    int rc = lm_cli_parse(&o, "devices", argc, argv);
    if (rc)
        return rc == 2 ? 0 : 1;
#ifdef LAMINA_OPENCL
    if (lm_cl_print_devices(stdout) != 0)
        return lm_cli_fail();
    return 0;
#else
    fprintf(stderr, "lamina: this lamina was built without OpenCL\n");
    return 1;
#endif
}
