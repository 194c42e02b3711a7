#include "memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 33)
#include <malloc.h>
#define GLIBC_HEAP 1 /* mallinfo2 */
#endif

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define HUGE_PAGE (2UL << 20)

/* Laying the warm-up's memory out for huge pages. From sbx_lay_out_heap to
 * sbx_collapse_heap, glibc serves large blocks from the heap (not from
 * mappings of their own, too small and unaligned to collapse), and, while
 * the caller installs sbx_arena_alloc as pymalloc's arena allocator, its
 * 1 MiB arenas come in pairs from 2 MiB-aligned mappings (the interpreter
 * maps each alone, where none can sit on a huge page). */
static char *next_arena; /* the second half of the last aligned pair */

void sbx_lay_out_heap(void)
{
#ifdef GLIBC_HEAP
    mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's maximum */
#endif
}

void *sbx_arena_alloc(void *ctx, size_t size)
{
    (void)ctx;
    if (size != HUGE_PAGE / 2) { /* the interpreter's other virtual memory */
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    if (next_arena) {
        char *p = next_arena;
        next_arena = NULL;
        return p;
    }
    char *raw =
        mmap(NULL, 2 * HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *pair = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
    if (pair > raw)
        munmap(raw, (size_t)(pair - raw));
    munmap(pair + HUGE_PAGE, (size_t)(raw + HUGE_PAGE - pair));
    madvise(pair, HUGE_PAGE, MADV_HUGEPAGE);
    next_arena = pair + size;
    return pair;
}

/* The zygote's own allocations while it serves must not write into the
 * collapsed heap: a page there is shared with the children, and the zygote's
 * copy-on-write fault splits its whole 2 MiB page back into 512 entries that
 * every later fork copies and every exit tears down (glibc's malloc, reusing
 * the holes imports left, split all of the heap's huge pages in the first
 * batch). So the holes are taken for good, the heap is collapsed only below
 * the top chunk, and the supervisor's allocations come from the top. The
 * holes were resident already: taking them costs no memory. */
static uintptr_t heap_cap = UINTPTR_MAX;

#ifdef GLIBC_HEAP
static uintptr_t top_chunk(void)
{
    return (uintptr_t)sbrk(0) - mallinfo2().keepcost;
}

static void take_holes_of(size_t size)
{
    uintptr_t top = top_chunk();
    for (int i = 0; i < (1 << 20); i++) {
        void *volatile p = malloc(size); /* volatile: the compiler drops a malloc it sees leak */
        /* Kept even when it came from the top: freed, a small chunk would
         * wait in the tcache, a hole below the top again. */
        if (!p || (uintptr_t)p >= top)
            return;
    }
}

/* Large sizes halving, then every tcache size class (each class keeps its
 * own freed chunks, which only a request of that class takes). */
static void take_holes(void)
{
    for (size_t size = 64 << 10; size > 1024; size /= 2)
        take_holes_of(size);
    for (size_t size = 1032; size >= 24; size -= 16)
        take_holes_of(size);
}
#endif

void sbx_seal_heap(void)
{
#ifdef GLIBC_HEAP
    if (heap_cap == UINTPTR_MAX)
        return;
    take_holes(); /* those made since the collapse */
    /* Chunks freed next to the top joined it below the cap: take them too. */
    for (uintptr_t top; (top = top_chunk()) < heap_cap;) {
        size_t gap = heap_cap - top;
        void *volatile p = malloc(gap < (64 << 10) ? gap : (64 << 10));
        if (!p)
            return;
    }
#endif
}

/* Fork copies every page-table entry of a mapping that holds private pages,
 * the entries of its clean file pages too (a library's relocated segments,
 * its data). Those are dropped: whoever reads them again faults them back
 * in from the page cache, with the same contents. */
static void drop_clean_file_pages(int pagemap, unsigned long lo, unsigned long hi)
{
    const unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
    unsigned long at = lo, run = 0; /* run: start of clean file pages before `at` */
    while (at < hi) {
        uint64_t entries[512]; /* pagemap: bit 63 present, bit 61 a file page */
        size_t n = (hi - at) / page < 512 ? (hi - at) / page : 512;
        if (pread(pagemap, entries, n * 8, (off_t)(at / page * 8)) != (ssize_t)(n * 8))
            break;
        for (size_t i = 0; i < n; i++, at += page) {
            bool clean = (entries[i] >> 63 & 1) && (entries[i] >> 61 & 1);
            if (clean && !run)
                run = at;
            if (!clean && run) {
                madvise((void *)run, at - run, MADV_DONTNEED);
                run = 0;
            }
        }
    }
    if (run) /* only pages read above: a private one dropped would lose its writes */
        madvise((void *)run, at - run, MADV_DONTNEED);
}

/* Collapse 2 MiB at a time: one region that cannot be collapsed (EINVAL,
 * EAGAIN) must not stop the others. Returns the bytes collapsed. */
static int64_t collapse(unsigned long lo, unsigned long hi)
{
    unsigned long a = (lo + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), b = hi & ~(HUGE_PAGE - 1);
    int64_t collapsed = 0;
    if (b <= a)
        return 0;
    madvise((void *)a, b - a, MADV_HUGEPAGE);
    for (unsigned long p = a; p < b; p += HUGE_PAGE)
        if (madvise((void *)p, HUGE_PAGE, MADV_COLLAPSE) == 0)
            collapsed += (int64_t)HUGE_PAGE;
    return collapsed;
}

int64_t sbx_collapse_heap(void)
{
#ifdef GLIBC_HEAP
    mallopt(M_MMAP_THRESHOLD, 128 << 10); /* the default's starting value */
    take_holes();
    heap_cap = top_chunk();
#endif
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps)
        return -errno;
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    char line[512];
    int64_t collapsed = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[5], path[256] = "";
        if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %255s", &lo, &hi, perms, path) < 3 ||
            perms[3] != 'p')
            continue;
        bool heap = strcmp(path, "[heap]") == 0;
        if ((path[0] == '\0' || heap) && perms[0] == 'r' && perms[1] == 'w')
            collapsed += collapse(lo, heap && hi > heap_cap ? heap_cap : hi);
        else if (path[0] == '/' && perms[2] != 'x' && pagemap >= 0)
            drop_clean_file_pages(pagemap, lo, hi);
    }
    if (pagemap >= 0)
        close(pagemap);
    fclose(maps);
    return collapsed;
}
