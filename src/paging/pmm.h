/*
 * The physical frame allocator: 4 KiB frames of RAM, built from the
 * multiboot2 memory map. See pmm.c for how it works.
 */
#ifndef KHEAP_PMM_H
#define KHEAP_PMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memlayout.h" /* PAGE_SIZE: a frame is one page */
#include "multiboot2.h"

/* Returned when no frame is available. Physical page 0 is never handed out
   (the first 1 MiB is withheld), so 0 cannot be a real frame. */
#define PMM_NO_FRAME   0ull
/* Physical memory at or above this address is ignored (pmm_init() prints
   one line saying how much): the free stacks hold 32-bit frame numbers, so
   2^44 bytes (16 TiB) is the most they can name. */
#define PMM_PHYS_LIMIT (1ull << 44)

struct pmm_stats {
    uint64_t total_frames;    /* frames of available RAM, after page-aligning regions inward */
    uint64_t reserved_frames; /* of those, withheld: first 1 MiB, kernel image, boot info, metadata */
    uint64_t free_frames;     /* can be allocated now */
    uint64_t failed_allocs;   /* allocations that found no frame */
    uint64_t highest_address; /* end of the highest available region */
    size_t regions;           /* usable physical ranges after all subtractions */
};

/* A physical range [start, end) that must never be handed out. */
struct phys_range {
    uint64_t start, end;
};

/*
 * Builds the allocator from bi's memory map: only MEM_AVAILABLE regions,
 * page-aligned inward; overlapping, unsorted and zero-length entries are
 * fine, and anything not available wins where it overlaps available memory.
 * The first 1 MiB, the kernel image, the boot information and each range in
 * withheld[0..n) are never handed out, nor is the allocator's own metadata
 * (placed below 4 GiB, where the boot direct map reaches). RAM at or above
 * PMM_PHYS_LIMIT is ignored (not counted in total_frames), with a one-line
 * message. Map entries reaching past 2^64 are cut at 2^64. Panics if no
 * memory is left for the metadata.
 */
void pmm_init(const struct boot_info *bi, const struct phys_range *withheld, size_t n);

/* Computes the ranges pmm_init() would hand out for bi and withheld (before
   carving out its metadata) into out[0..max), sorted; returns how many there
   are (may exceed max). Does not touch the live allocator. */
size_t pmm_usable_ranges(const struct boot_info *bi, const struct phys_range *withheld, size_t n,
                         struct phys_range *out, size_t max);

/* Returns a frame at or above 4 GiB whenever one is free (freed or never
   used); otherwise any free frame below 4 GiB; PMM_NO_FRAME (counted in
   failed_allocs) when none is free. Which high or low frame is not
   specified (recently freed ones first). Keeps the scarce memory below
   4 GiB (boot direct map, pmm_alloc_frame_low(), 32-bit devices) for last.
   O(1). Safe from interrupt handlers and from several CPUs (the frame
   allocator's spin lock). */
uint64_t pmm_alloc_frame(void);
/* Returns a frame below 4 GiB, taken from the lowest never-used memory
   or, once that is used up, from the freed low frames, or PMM_NO_FRAME.
   O(1) amortized. For tables needed before the full direct map exists. */
uint64_t pmm_alloc_frame_low(void);
/* Returns the first of n physically contiguous frames, or PMM_NO_FRAME
   (counted in failed_allocs) when n is 0, when n frames do not fit in the
   address space (n * PAGE_SIZE overflows) or when no never-used run of n
   frames is left. Nothing is allocated on failure. O(regions). */
uint64_t pmm_alloc_contiguous(size_t n);
/* Gives frame back. Panics (naming the frame) if it is misaligned, outside
   RAM, or not currently allocated: a double free is caught. O(1). */
void pmm_free_frame(uint64_t frame);
/* Returns true if frame is currently allocated (handed out and not freed). */
bool pmm_frame_allocated(uint64_t frame);
struct pmm_stats pmm_stats(void);
/* Returns the (withheld) physical range holding the allocator's metadata. */
struct phys_range pmm_metadata_range(void);

#endif
