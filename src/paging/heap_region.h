/*
 * A heap region: a fixed virtual window [base, base + span) reserved for one
 * heap, mapped page by page at its end with fresh frames.
 *
 *   base - 4 KiB           never mapped (guard below the heap)
 *   [base, end)            mapped, read/write, no-execute
 *                          (except holes the heap gave back, heap_region_release)
 *   end                    never mapped until the heap grows (guard above)
 *   base + span            never mapped: the window's last guard
 *
 * Running off either end of the heap therefore page-faults. Each region is
 * an instance (the kernel heap's is one, kernel_heap_region(); private
 * heaps have their own); the windows are in src/memlayout.h, and the caller
 * makes sure nothing else maps the page below base or the page at base +
 * span. A region may sit at the very top of the address space: its
 * arithmetic never wraps, and base + span may be at most
 * ADDRESS_SPACE_LAST_PAGE, so the last page always stays an unmapped guard.
 *
 * src/paging/ knows nothing of allocators: the kernel passes a callback that
 * calls heap_region_grow() to src/alloc/ as its "more memory" callback.
 * Not locked: the caller serializes calls on one region (the heap lock does).
 */
#ifndef KHEAP_HEAP_REGION_H
#define KHEAP_HEAP_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paging.h"

struct heap_region {
    uint64_t base;  /* first address; page aligned */
    uint64_t span;  /* virtual bytes reserved from base; page aligned */
    uint64_t end;   /* one past the last mapped byte: base <= end <= base + limit */
    uint64_t limit; /* cap on mapped bytes; page aligned, <= span */
    uint64_t holes; /* bytes inside [base, end) unmapped by heap_region_release() */
};

/* Makes r an empty region over [base, base + span) with a cap of max_bytes
   (rounded down to pages, at most span). Returns false, leaving r zeroed,
   unless base and span are page aligned, span > 0, the window is canonical
   (one half of the address space) and base + span <= ADDRESS_SPACE_LAST_PAGE
   (checked without wrapping). Maps nothing. */
bool heap_region_init(struct heap_region *r, uint64_t base, uint64_t span, uint64_t max_bytes);
/* First address of the heap (r->base). */
uint64_t heap_region_start(const struct heap_region *r);
/* One past the last mapped byte. */
uint64_t heap_region_end(const struct heap_region *r);
/* Bytes currently mapped: [base, end) minus the holes. */
uint64_t heap_region_mapped(const struct heap_region *r);
/* The cap given to heap_region_init() or heap_region_set_limit(). */
uint64_t heap_region_limit(const struct heap_region *r);
/* Changes the cap to max_bytes (rounded down to pages; never below what is
   mapped now, nor above the span). Returns the new cap. */
uint64_t heap_region_set_limit(struct heap_region *r, uint64_t max_bytes);
/* Maps pages more fresh, zeroed frames at the end and stores the old end
   (the start of the new memory) in *start. Returns PAGING_ERR_NO_MEMORY,
   changing nothing (end, mapped pages and free frames as before), when the
   cap would be passed or fewer frames are free than the pages plus the page
   tables they need (paging_tables_needed()). If frames still run out
   half-way (an interrupt took some after that check), the pages mapped so
   far are unmapped and freed: only page tables created on the way stay. */
enum paging_status heap_region_grow(struct heap_region *r, size_t pages, uint64_t *start);
/* Unmaps up to pages pages from the end, makes every CPU forget them
   (tlb_shootdown(), in batches) and only then frees their frames; returns
   how many pages of the window it moved end back over (holes included,
   which it skips). Page tables stay (for the next growth). */
size_t heap_region_shrink(struct heap_region *r, size_t pages);
/* Punches a hole: unmaps the pages [start, start + pages * PAGE_SIZE),
   which must lie below the end and all be mapped, and frees their frames;
   the page tables stay, so heap_region_reclaim() of them cannot run out of
   tables. Panics ("heap_region_release: ...") if the range is misaligned,
   outside [base, end) or not mapped: a heap that releases what it does not
   own is broken. */
void heap_region_release(struct heap_region *r, uint64_t start, size_t pages);
/* Fills a hole again: maps fresh zeroed frames at the pages [start, start +
   pages * PAGE_SIZE), which must lie below the end and all be unmapped.
   Returns PAGING_ERR_NO_MEMORY, changing nothing, if fewer frames are free
   (or the cap would be passed); PAGING_ERR_NOT_MAPPED for a range outside
   [base, end) or misaligned; PAGING_ERR_ALREADY_MAPPED if a page there is
   mapped (nothing changed). */
enum paging_status heap_region_reclaim(struct heap_region *r, uint64_t start, size_t pages);

#endif
