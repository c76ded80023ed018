#include "heap_region.h"

#include "kstring.h"
#include "memlayout.h"
#include "panic.h"
#include "pmm.h"

static uint64_t region_end = HEAP_REGION_BASE;
static uint64_t region_limit;

void heap_region_init(uint64_t max_bytes)
{
    kassert(region_end == HEAP_REGION_BASE);    /* nothing mapped yet */
    if (max_bytes > HEAP_REGION_SPAN)
        max_bytes = HEAP_REGION_SPAN;
    region_limit = max_bytes & ~(PAGE_SIZE_4K - 1);
}

uint64_t heap_region_start(void)
{
    return HEAP_REGION_BASE;
}

uint64_t heap_region_end(void)
{
    return region_end;
}

uint64_t heap_region_mapped(void)
{
    return region_end - HEAP_REGION_BASE;
}

uint64_t heap_region_set_limit(uint64_t max_bytes)
{
    if (max_bytes > HEAP_REGION_SPAN)
        max_bytes = HEAP_REGION_SPAN;
    max_bytes &= ~(PAGE_SIZE_4K - 1);
    region_limit = max_bytes < heap_region_mapped() ? heap_region_mapped() : max_bytes;
    return region_limit;
}

uint64_t heap_region_limit(void)
{
    return region_limit;
}

enum paging_status heap_region_grow(size_t pages, uint64_t *start)
{
    uint64_t bytes = (uint64_t)pages * PAGE_SIZE_4K;
    if (pages > region_limit / PAGE_SIZE_4K || heap_region_mapped() + bytes > region_limit)
        return PAGING_ERR_NO_MEMORY;
    uint64_t old_end = region_end;
    for (size_t i = 0; i < pages; i++) {
        uint64_t frame = pmm_alloc_frame();
        enum paging_status st = PAGING_ERR_NO_MEMORY;
        /* Zeroed: nothing of the frame's previous owner leaks into the heap.
           (Under QEMU TCG this also drops code the firmware or GRUB ran from
           the frame, which would otherwise make every write to it slow.) */
        if (frame != PMM_NO_FRAME)
            memset(phys_to_virt(frame), 0, PAGE_SIZE_4K);
        if (frame != PMM_NO_FRAME)
            st = paging_map(region_end, frame, PTE_WRITABLE | PTE_NO_EXECUTE | PTE_GLOBAL);
        if (st != PAGING_OK) {
            if (frame != PMM_NO_FRAME)
                pmm_free_frame(frame);
            heap_region_shrink(i);
            return st;
        }
        region_end += PAGE_SIZE_4K;
    }
    *start = old_end;
    return PAGING_OK;
}

size_t heap_region_shrink(size_t pages)
{
    size_t done = 0;
    while (done < pages && region_end > HEAP_REGION_BASE) {
        uint64_t frame;
        region_end -= PAGE_SIZE_4K;
        if (paging_unmap(region_end, &frame) != PAGING_OK)
            panic("heap_region_shrink: heap page %p was not mapped", (void *)region_end);
        pmm_free_frame(frame);
        done++;
    }
    return done;
}
