/*
 * The heap region: a fixed virtual range reserved for the kernel heap,
 * mapped page by page at its end with fresh frames.
 *
 *   HEAP_REGION_BASE - 4 KiB   never mapped (guard below the heap)
 *   [HEAP_REGION_BASE, end)    mapped, read/write, no-execute
 *   end                        never mapped until the heap grows (guard above)
 *
 * Running off either end of the heap therefore page-faults. src/paging/
 * knows nothing of allocators: the kernel passes heap_region_grow() to
 * src/alloc/ as its "more memory" callback.
 */
#ifndef KHEAP_HEAP_REGION_H
#define KHEAP_HEAP_REGION_H

#include <stddef.h>
#include <stdint.h>

#include "paging.h"

#define HEAP_REGION_BASE    0xffffc00000000000ull
#define HEAP_REGION_SPAN    (1ull << 40)    /* 1 TiB of virtual space reserved */

/* Resets the region to empty with a cap of max_bytes (rounded down to
   pages, at most HEAP_REGION_SPAN). */
void heap_region_init(uint64_t max_bytes);
/* First address of the heap (HEAP_REGION_BASE). */
uint64_t heap_region_start(void);
/* One past the last mapped byte. */
uint64_t heap_region_end(void);
/* Bytes currently mapped. */
uint64_t heap_region_mapped(void);
/* The cap given to heap_region_init(). */
uint64_t heap_region_limit(void);
/* Changes the cap to max_bytes (rounded down to pages; never below what is
   mapped now, nor above HEAP_REGION_SPAN). Returns the new cap. */
uint64_t heap_region_set_limit(uint64_t max_bytes);
/* Maps pages more fresh, zeroed frames at the end and stores the old end (the start
   of the new memory) in *start. All or nothing: on failure the pages mapped
   so far are unmapped and their frames freed, and PAGING_ERR_NO_MEMORY is
   returned (cap reached or no frames). */
enum paging_status heap_region_grow(size_t pages, uint64_t *start);
/* Unmaps up to pages pages from the end and frees their frames; returns how
   many were unmapped. */
size_t heap_region_shrink(size_t pages);

#endif
