/* The heap region: growth at the end with fresh frames, shrinking, and the
   guard pages on both sides. */
#include "ktest.h"

#include "memlayout.h"
#include "paging/heap_region.h"
#include "paging/pmm.h"

KTEST(heap_region_grows_and_shrinks_by_pages)
{
    uint64_t end0 = heap_region_end();
    uint64_t free0 = pmm_stats().free_frames;
    uint64_t start;
    KASSERT_EQ(heap_region_grow(8, &start), PAGING_OK);
    KASSERT_EQ(start, end0);
    KASSERT_EQ(heap_region_end(), end0 + 8 * PAGE_SIZE_4K);
    /* 8 frames for the pages, up to 3 more for the first PDPT/PD/PT there. */
    uint64_t tables = free0 - 8 - pmm_stats().free_frames;
    KASSERT(tables <= 3);
    for (int i = 0; i < 8; i++) {
        volatile uint64_t *p = (volatile uint64_t *)(start + (uint64_t)i * PAGE_SIZE_4K);
        *p = (uint64_t)i * 3;
        uint64_t phys;
        KASSERT(paging_translate((uint64_t)(uintptr_t)p, &phys, NULL));
        KASSERT_EQ(*(volatile uint64_t *)phys_to_virt(phys), (uint64_t)i * 3);
    }
    uint64_t phys;
    KASSERT(!paging_translate(heap_region_end(), &phys, NULL));
    KASSERT(!paging_translate(HEAP_REGION_BASE - PAGE_SIZE_4K, &phys, NULL));

    KASSERT_EQ(heap_region_shrink(8), 8);
    KASSERT_EQ(heap_region_end(), end0);
    KASSERT_EQ(pmm_stats().free_frames, free0 - tables);   /* tables stay for next time */
    KASSERT(!paging_translate(start, &phys, NULL));
}

KTEST(heap_region_refuses_growth_past_its_cap)
{
    uint64_t end0 = heap_region_end();
    uint64_t free0 = pmm_stats().free_frames;
    uint64_t start = 0;
    size_t too_many = (size_t)((heap_region_limit() - heap_region_mapped()) / PAGE_SIZE_4K) + 1;
    KASSERT_EQ(heap_region_grow(too_many, &start), PAGING_ERR_NO_MEMORY);
    KASSERT_EQ(heap_region_end(), end0);
    KASSERT_EQ(pmm_stats().free_frames, free0);
    KASSERT(heap_region_limit() <= pmm_stats().total_frames * FRAME_SIZE);
}

KTEST_EXPECT_PANIC(heap_region_guard_below_faults)
{
    ktest_expect_page_fault(HEAP_REGION_BASE - 8);
    (void)*(volatile uint64_t *)(HEAP_REGION_BASE - 8);
}

KTEST_EXPECT_PANIC(heap_region_guard_above_faults)
{
    /* The page right after the mapped end is never mapped. */
    uint64_t end = heap_region_end();
    *(volatile uint64_t *)(end - 8) = *(volatile uint64_t *)(end - 8);  /* last word is fine */
    ktest_expect_page_fault(end);
    (void)*(volatile uint64_t *)end;
}
