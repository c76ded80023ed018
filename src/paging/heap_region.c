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
    return r->end - r->base - r->holes;
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
    uint64_t bytes, mapped, used;
    if (__builtin_mul_overflow((uint64_t)pages, PAGE_SIZE, &bytes) ||
        __builtin_add_overflow(heap_region_mapped(r), bytes, &mapped) || mapped > r->limit ||
        __builtin_add_overflow(r->end - r->base, bytes, &used) || used > r->span)
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
        uint64_t frames[SHRINK_BATCH], phys, top = r->end;
        size_t n = 0;
        while (n < SHRINK_BATCH && done < pages && r->end > r->base) {
            r->end -= PAGE_SIZE;
            done++;
            if (r->holes != 0 && !paging_translate(r->end, &phys, NULL)) {
                r->holes -= PAGE_SIZE; /* a hole the heap gave back */
                continue;
            }
            if (paging_unmap(r->end, &frames[n]) != PAGING_OK)
                panic("heap_region_shrink: heap page %p was not mapped", (void *)r->end);
            n++;
        }
        /* Another CPU may still hold a translation: no frame is reused
           before every CPU has dropped it. */
        tlb_shootdown(r->end, (size_t)((top - r->end) / PAGE_SIZE));
        for (size_t i = 0; i < n; i++)
            pmm_free_frame(frames[i]);
    }
    return done;
}

/* True if [start, start + pages pages) is page aligned and inside [base, end). */
static bool inside(const struct heap_region *r, uint64_t start, size_t pages)
{
    uint64_t bytes;
    return (start & PAGE_MASK) == 0 && start >= r->base && start <= r->end &&
           !__builtin_mul_overflow((uint64_t)pages, PAGE_SIZE, &bytes) && bytes <= r->end - start;
}

void heap_region_release(struct heap_region *r, uint64_t start, size_t pages)
{
    if (!inside(r, start, pages))
        panic("heap_region_release: [%p, +%zu pages) is not inside the heap", (void *)start, pages);
    /* In batches, like heap_region_shrink(): unmap, make every CPU forget the pages
       (tlb_shootdown()), and only then free their frames. */
    for (size_t done = 0; done < pages;) {
        uint64_t frames[SHRINK_BATCH], first = start + done * PAGE_SIZE;
        size_t n = 0;
        for (; n < SHRINK_BATCH && done < pages; n++, done++) {
            uint64_t va = start + done * PAGE_SIZE;
            if (paging_unmap(va, &frames[n]) != PAGING_OK)
                panic("heap_region_release: heap page %p was not mapped", (void *)va);
        }
        tlb_shootdown(first, n);
        for (size_t i = 0; i < n; i++)
            pmm_free_frame(frames[i]);
        r->holes += n * PAGE_SIZE;
    }
}

enum paging_status heap_region_reclaim(struct heap_region *r, uint64_t start, size_t pages)
{
    uint64_t phys;
    if (!inside(r, start, pages))
        return PAGING_ERR_NOT_MAPPED;
    if ((uint64_t)pages * PAGE_SIZE > r->holes)
        return PAGING_ERR_ALREADY_MAPPED;
    for (size_t i = 0; i < pages; i++)
        if (paging_translate(start + i * PAGE_SIZE, &phys, NULL))
            return PAGING_ERR_ALREADY_MAPPED;
    /* The tables exist (the pages were mapped before): frames for the pages are all it needs. */
    if (pages > pmm_stats().free_frames ||
        paging_tables_needed(start, pages) > pmm_stats().free_frames - pages)
        return PAGING_ERR_NO_MEMORY;
    for (size_t i = 0; i < pages; i++) {
        uint64_t va = start + i * PAGE_SIZE, frame = pmm_alloc_frame();
        enum paging_status st = PAGING_ERR_NO_MEMORY;
        if (frame != PMM_NO_FRAME) {
            memset(phys_to_virt(frame), 0, PAGE_SIZE); /* no previous owner's bytes reach the heap */
            st = paging_map(va, frame, PTE_WRITABLE | PTE_NO_EXECUTE | PTE_GLOBAL);
        }
        if (st != PAGING_OK) {
            if (frame != PMM_NO_FRAME)
                pmm_free_frame(frame);
            heap_region_release(r, start, i); /* back to the hole it was */
            return st;
        }
        r->holes -= PAGE_SIZE;
    }
    return PAGING_OK;
}
