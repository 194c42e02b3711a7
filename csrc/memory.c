#include "memory.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define HUGE_PAGE (2UL << 20)

int64_t sbx_collapse_heap(void)
{
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps)
        return -errno;
    char line[512];
    int64_t collapsed = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[5], path[256] = "";
        if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %255s", &lo, &hi, perms, path) < 3)
            continue;
        bool anon = path[0] == '\0' || strcmp(path, "[heap]") == 0;
        if (!anon || perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p')
            continue;
        unsigned long a = (lo + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), b = hi & ~(HUGE_PAGE - 1);
        if (b <= a)
            continue;
        madvise((void *)a, b - a, MADV_HUGEPAGE);
        /* Collapse 2 MiB at a time: one region that cannot be collapsed
         * (EINVAL, EAGAIN) must not stop the others. */
        for (unsigned long p = a; p < b; p += HUGE_PAGE)
            if (madvise((void *)p, HUGE_PAGE, MADV_COLLAPSE) == 0)
                collapsed += (int64_t)HUGE_PAGE;
    }
    fclose(maps);
    return collapsed;
}
