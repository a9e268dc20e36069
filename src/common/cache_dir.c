/* lm_cache_dir (cache_dir.h). */
#include "cache_dir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int lm_cache_dir(const char *sub, char *dir, size_t len)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && xdg[0])
        n = snprintf(dir, len, "%s/lamina", xdg);
    else if (home && home[0])
        n = snprintf(dir, len, "%s/.cache/lamina", home);
    else
        return -1;
    if (n < 0 || (size_t)n >= len)
        return -1;
    /* the parent first: ~/.cache may not exist yet (failures show at use) */
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    mkdir(dir, 0755);
    *slash = '/';
    mkdir(dir, 0755);
    if (sub) {
        const size_t used = (size_t)n;
        n = snprintf(dir + used, len - used, "/%s", sub);
        if (n < 0 || (size_t)n >= len - used)
            return -1;
        mkdir(dir, 0755);
    }
    return 0;
}
