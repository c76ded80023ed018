/*
 * fsb_cache.h - fixed_size_block's large-block cache: freed large blocks of 1..FSB_CACHE_PAGES whole
 * pages, kept for the next request of the same page count so that neither the free nor that
 * allocation costs the fallback (linked_list) a tree operation.
 *
 * Why it exists, how it keeps the fallback's address order, why nothing is stranded and what
 * hardened mode verifies: "The large-block cache" in fixed_size_block.c's essay, the one
 * explanation. The cache lives in the fixed_size_block instance, not in the blocks: to the fallback
 * a cached block is still a used block, to the user it is free, and nothing in user-writable memory
 * is ever followed. Every function takes the fallback heap whose blocks are cached; in hardened
 * mode the cache reports through that heap's owner (fixed_size_block).
 */
#ifndef KHEAP_ALLOC_FSB_CACHE_H
#define KHEAP_ALLOC_FSB_CACHE_H

#include "heap_backend.h"

/* What the cache shares with fixed_size_block.c: the page, the unit of every large block, and the
 * fallback's block header, which a large block's whole pages include. */
#define FSB_PAGE_SIZE ((uintptr_t)4096)
#define FSB_LL_HDR    ((uintptr_t)(16 + 16 * KHEAP_HARDENING)) /* linked_list's block header */

#define FSB_CACHE_PAGES 16 /* large blocks of 1..16 pages (fallback header included) are cached */
/* At most this many per page count. 5 in plain mode: workload c's large requests miss the cache 20%
 * of the time with 4, and the fallback's search is most of their cost (docs/measurements.md). 4 in
 * hardened mode, whose quarantine already holds the last freed blocks back: cached blocks on top of
 * those fragment a small heap more (test_fsb_large_cache fits one 8-page block fewer in 1 MiB). */
#define FSB_CACHE_DEPTH (4 + !KHEAP_HARDENING)

/* The freed blocks of one page count, oldest first. */
struct fsb_cache_bin {
    uint32_t count;               /* entries in block[] */
    void *block[FSB_CACHE_DEPTH]; /* user pointers (page-aligned) */
#if KHEAP_HARDENING
    const void *site[FSB_CACHE_DEPTH]; /* where each was freed */
#endif
};

struct fsb_cache {
    uint32_t ncached;                          /* blocks in all bins, so a flush of nothing is one test */
    struct fsb_cache_bin bin[FSB_CACHE_PAGES]; /* bin[n - 1]: freed large blocks of n pages */
};

/* The usable size of a large block of n whole pages (the fallback's header included in them). */
static inline size_t fsb_cache_usable(size_t n)
{
    return n * FSB_PAGE_SIZE - FSB_LL_HDR;
}

/* The bin index for large blocks of usable size u, or -1 if u is not exactly whole pages (the
 * fallback may leave a remainder too small to split off with a block) or above FSB_CACHE_PAGES. */
static inline int fsb_cache_index(size_t u)
{
    size_t n = (u + FSB_LL_HDR) / FSB_PAGE_SIZE;

    if (n == 0 || n > FSB_CACHE_PAGES || u != fsb_cache_usable(n))
        return -1;
    return (int)n - 1;
}

/* Takes a block out of bin i (which must not be empty) for an allocation and stores its usable size
 * in *usable. Returns NULL (hardened mode) if the block was written to after it was freed: it is
 * then reported, quarantined and the allocation in progress fails. */
void *fsb_cache_take(struct fsb_cache *c, struct heap *fallback, unsigned i, size_t *usable);

/* Keeps large block ptr of fallback (usable size u, being freed by the user) in the cache if its
 * page count is cached and there is room for it, possibly returning a higher cached block to the
 * fallback. Returns false if ptr was not kept: the caller frees it to the fallback. */
bool fsb_cache_put(struct fsb_cache *c, struct heap *fallback, void *ptr, size_t u);

/* Memory pressure: gives every cached block back to fallback, where it coalesces with its
 * neighbours. Returns false if the cache was empty, so retrying the request is pointless. */
bool fsb_cache_flush(struct fsb_cache *c, struct heap *fallback);

/* Checks the cache's invariants: bounds, counts, each entry a distinct page-aligned block of
 * fallback with exactly its bin's page count; in hardened mode also each block's free poison
 * (reporting). Returns the number of broken invariants. */
size_t fsb_cache_check(const struct fsb_cache *c, const struct heap *fallback);

#if KHEAP_HARDENING
/* True if p, a used block of fallback whose header the fallback has vouched for, is in the cache
 * (free to the user); then stores where it was freed in *free_site (if free_site is not NULL). */
bool fsb_cache_holds(const struct fsb_cache *c, const struct heap *fallback, const void *p,
                     const void **free_site);
#endif

#endif /* KHEAP_ALLOC_FSB_CACHE_H */
