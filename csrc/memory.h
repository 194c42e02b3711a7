/* Making fork cheap: fork copies one page-table entry per 4 KiB page of the
 * zygote's anonymous memory (~6.7 ms for a warm sympy here), but one entry
 * per 2 MiB huge page, and an exit tears them down again. The zygote lays
 * its warm-up's memory out for huge pages, collapses it once after the
 * warm-up, and keeps it so while it serves. */
#ifndef SBX_MEMORY_H
#define SBX_MEMORY_H

#include <stddef.h>
#include <stdint.h>

/* Ask for huge pages on every private writable anonymous mapping of the
 * calling process and collapse what can be collapsed now; drop the entries
 * of clean file pages in mappings fork copies. Returns the bytes collapsed
 * (>= 0) or -errno; kernels without THP simply collapse nothing. */
int64_t sbx_collapse_heap(void);
/* Before the warm-up's imports: lay what they allocate out so that
 * sbx_collapse_heap can collapse it (sbx_arena_alloc is pymalloc's arena
 * allocator meanwhile; its arenas are freed with munmap, as the default's). */
void sbx_lay_out_heap(void);
void *sbx_arena_alloc(void *ctx, size_t size);
/* Called once before the zygote's first fork: from here on its allocations
 * stay out of the collapsed heap. */
void sbx_seal_heap(void);

#endif
