#include "heap_region.h"

#include "kstring.h"
#include "memlayout.h"
#include "panic.h"
#include "pmm.h"
#include "tlb.h"

#define PAGE_MASK (PAGE_SIZE - 1)

bool heap_region_init(struct heap_region *r, uint64_t base, uint64_t span, uint64_t max_bytes)
{
    memset(r, 0, sizeof(*r));
    uint64_t top;
    if ((base & PAGE_MASK) != 0 || (span & PAGE_MASK) != 0 || span == 0 ||
        __builtin_add_overflow(base, span, &top) || top > ADDRESS_SPACE_LAST_PAGE)
        return false;
    /* Both ends canonical and in the same half: no non-canonical hole inside. */
    uint64_t last = top - 1;
    if (!paging_is_canonical(base) || !paging_is_canonical(last) || ((base ^ last) >> 63) != 0)
        return false;
    r->base = r->end = base;
    r->span = span;
    r->limit = (max_bytes > span ? span : max_bytes) & ~PAGE_MASK;
    return true;
}

uint64_t heap_region_start(const struct heap_region *r)
{
    return r->base;
}

uint64_t heap_region_end(const struct heap_region *r)
{
    return r->end;
}

uint64_t heap_region_mapped(const struct heap_region *r)
{
    return r->end - r->base;
}

uint64_t heap_region_limit(const struct heap_region *r)
{
    return r->limit;
}

uint64_t heap_region_set_limit(struct heap_region *r, uint64_t max_bytes)
{
    if (max_bytes > r->span)
        max_bytes = r->span;
    max_bytes &= ~PAGE_MASK;
    r->limit = max_bytes < heap_region_mapped(r) ? heap_region_mapped(r) : max_bytes;
    return r->limit;
}

enum paging_status heap_region_grow(struct heap_region *r, size_t pages, uint64_t *start)
{
    /* mapped + bytes <= limit <= span, so end + bytes <= base + span:
       nothing below wraps, even for a region at the top of the address space. */
    uint64_t bytes, mapped;
    if (__builtin_mul_overflow((uint64_t)pages, PAGE_SIZE, &bytes) ||
        __builtin_add_overflow(heap_region_mapped(r), bytes, &mapped) || mapped > r->limit)
        return PAGING_ERR_NO_MEMORY;
    /* Refuse up front what cannot be finished: a failure half-way would be
       rolled back, but the page tables it created would stay. */
    uint64_t free = pmm_stats().free_frames;
    if (pages > free || paging_tables_needed(r->end, pages) > free - pages)
        return PAGING_ERR_NO_MEMORY;
    uint64_t old_end = r->end;
    for (size_t i = 0; i < pages; i++) {
        uint64_t frame = pmm_alloc_frame();
        enum paging_status st = PAGING_ERR_NO_MEMORY;
        /* Zeroed: nothing of the frame's previous owner leaks into the heap.
           (Under QEMU TCG this also drops code the firmware or GRUB ran from
           the frame, which would otherwise make every write to it slow.) */
        if (frame != PMM_NO_FRAME)
            memset(phys_to_virt(frame), 0, PAGE_SIZE);
        if (frame != PMM_NO_FRAME)
            st = paging_map(r->end, frame, PTE_WRITABLE | PTE_NO_EXECUTE | PTE_GLOBAL);
        if (st != PAGING_OK) {
            if (frame != PMM_NO_FRAME)
                pmm_free_frame(frame);
            heap_region_shrink(r, i);
            return st;
        }
        r->end += PAGE_SIZE;
    }
    *start = old_end;
    return PAGING_OK;
}

/* Pages unmapped per TLB shootdown: their frames wait in a local array
   until every CPU has forgotten them. */
#define SHRINK_BATCH 32

size_t heap_region_shrink(struct heap_region *r, size_t pages)
{
    size_t done = 0;
    while (done < pages && r->end > r->base) {
        uint64_t frames[SHRINK_BATCH];
        size_t n = 0;
        while (n < SHRINK_BATCH && done < pages && r->end > r->base) {
            r->end -= PAGE_SIZE;
            if (paging_unmap(r->end, &frames[n]) != PAGING_OK)
                panic("heap_region_shrink: heap page %p was not mapped", (void *)r->end);
            n++;
            done++;
        }
        /* Another CPU may still hold a translation: no frame is reused
           before every CPU has dropped it. */
        tlb_shootdown(r->end, n);
        for (size_t i = 0; i < n; i++)
            pmm_free_frame(frames[i]);
    }
    return done;
}
