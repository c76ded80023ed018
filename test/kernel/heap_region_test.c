/* Heap regions: growth at the end with fresh frames, shrinking, caps, the
   guard pages on both sides, and windows up to the top of the address
   space. The tests use regions of their own (private window 0, the last
   private window, the top window), except for the kernel heap's guard
   pages. */
#include "ktest.h"

#include "kframes_test.h"
#include "kernel_heap.h"
#include "memlayout.h"
#include "paging/heap_region.h"
#include "paging/pmm.h"

#define TEST_WINDOW KERNEL_PRIVATE_HEAP_WINDOW_BASE(0)

KTEST(heap_region_grows_and_shrinks_by_pages)
{
    struct heap_region r;
    KASSERT(heap_region_init(&r, TEST_WINDOW, KERNEL_PRIVATE_HEAP_WINDOW_SPAN, 64 * PAGE_SIZE));
    uint64_t end0 = heap_region_end(&r);
    KASSERT_EQ(end0, TEST_WINDOW);
    uint64_t free0 = pmm_stats().free_frames;
    uint64_t start;
    KASSERT_EQ(heap_region_grow(&r, 8, &start), PAGING_OK);
    KASSERT_EQ(start, end0);
    KASSERT_EQ(heap_region_end(&r), end0 + 8 * PAGE_SIZE);
    KASSERT_EQ(heap_region_mapped(&r), 8 * PAGE_SIZE);
    /* 8 frames for the pages, up to 3 more for the first PDPT/PD/PT there. */
    uint64_t tables = free0 - 8 - pmm_stats().free_frames;
    KASSERT(tables <= 3);
    for (int i = 0; i < 8; i++) {
        volatile uint64_t *p = (volatile uint64_t *)(start + (uint64_t)i * PAGE_SIZE);
        KASSERT_EQ(*p, 0); /* fresh frames are zeroed */
        *p = (uint64_t)i * 3;
        uint64_t phys;
        KASSERT(paging_translate((uint64_t)(uintptr_t)p, &phys, NULL));
        KASSERT_EQ(*(volatile uint64_t *)phys_to_virt(phys), (uint64_t)i * 3);
    }
    uint64_t phys;
    KASSERT(!paging_translate(heap_region_end(&r), &phys, NULL));
    KASSERT(!paging_translate(TEST_WINDOW - PAGE_SIZE, &phys, NULL));

    KASSERT_EQ(heap_region_shrink(&r, 100), 8); /* no more than is mapped */
    KASSERT_EQ(heap_region_end(&r), end0);
    KASSERT_EQ(pmm_stats().free_frames, free0 - tables); /* tables stay for next time */
    KASSERT(!paging_translate(start, &phys, NULL));
}

KTEST(heap_region_refuses_growth_past_its_cap)
{
    struct heap_region r;
    KASSERT(heap_region_init(&r, TEST_WINDOW, KERNEL_PRIVATE_HEAP_WINDOW_SPAN, 4 * PAGE_SIZE + 123));
    KASSERT_EQ(heap_region_limit(&r), 4 * PAGE_SIZE);
    uint64_t start = 0;
    KASSERT_EQ(heap_region_grow(&r, 3, &start), PAGING_OK);
    uint64_t end0 = heap_region_end(&r);
    uint64_t free0 = pmm_stats().free_frames;
    /* Past the cap, and counts whose byte size overflows. */
    const size_t too_many[] = {2, SIZE_MAX, SIZE_MAX / PAGE_SIZE + 1, (size_t)1 << 52};
    for (size_t i = 0; i < sizeof(too_many) / sizeof(too_many[0]); i++) {
        KASSERT_EQ(heap_region_grow(&r, too_many[i], &start), PAGING_ERR_NO_MEMORY);
        KASSERT_EQ(heap_region_end(&r), end0);
        KASSERT_EQ(pmm_stats().free_frames, free0);
    }
    /* The cap never drops below what is mapped, nor rises above the span. */
    KASSERT_EQ(heap_region_set_limit(&r, 0), 3 * PAGE_SIZE);
    KASSERT_EQ(heap_region_set_limit(&r, UINT64_MAX), KERNEL_PRIVATE_HEAP_WINDOW_SPAN);
    KASSERT_EQ(heap_region_shrink(&r, 3), 3);
    /* The kernel heap's cap is real memory. */
    KASSERT(heap_region_limit(kernel_heap_region()) <= pmm_stats().total_frames * PAGE_SIZE);
}

KTEST(heap_region_windows_past_the_top_or_across_the_hole_are_refused)
{
    struct heap_region r;
    const uint64_t top = TOP_OF_ADDRESS_SPACE_HEAP_BASE, top_span = TOP_OF_ADDRESS_SPACE_HEAP_SPAN;
    KASSERT(heap_region_init(&r, top, top_span, UINT64_MAX));
    KASSERT_EQ(heap_region_limit(&r), top_span);
    KASSERT_EQ(top + top_span, ADDRESS_SPACE_LAST_PAGE);
    KASSERT(!heap_region_init(&r, top, top_span + PAGE_SIZE, 0)); /* the last page */
    KASSERT(!heap_region_init(&r, ADDRESS_SPACE_LAST_PAGE, PAGE_SIZE, 0));
    KASSERT(!heap_region_init(&r, top, 0ull - top, 0));                    /* ends at 2^64 */
    KASSERT(!heap_region_init(&r, top, UINT64_MAX & ~(PAGE_SIZE - 1), 0)); /* wraps */
    KASSERT(!heap_region_init(&r, top + 8, PAGE_SIZE, 0));                 /* misaligned */
    KASSERT(!heap_region_init(&r, top, 100, 0));
    KASSERT(!heap_region_init(&r, top, 0, 0));
    KASSERT(!heap_region_init(&r, 0x0000800000000000ull, PAGE_SIZE, 0));             /* non-canonical */
    KASSERT(!heap_region_init(&r, 0x00007ffffffff000ull, PAGE_SIZE * 2, 0));         /* into the hole */
    KASSERT(!heap_region_init(&r, 0x0000700000000000ull, 0xffff900000000000ull, 0)); /* across it */
    KASSERT_EQ(r.base, 0); /* a refused init leaves the region empty */
    KASSERT_EQ(r.limit, 0);
}

KTEST(heap_region_at_the_top_grows_to_the_last_page_and_no_further)
{
    /* The last 64 pages below ADDRESS_SPACE_LAST_PAGE. */
    const uint64_t span = 64 * PAGE_SIZE, base = ADDRESS_SPACE_LAST_PAGE - span;
    struct heap_region r;
    KASSERT(heap_region_init(&r, base, span, span));
    uint64_t start;
    KASSERT_EQ(heap_region_grow(&r, 60, &start), PAGING_OK);
    KASSERT_EQ(heap_region_grow(&r, 4, &start), PAGING_OK);
    KASSERT_EQ(start, base + 60 * PAGE_SIZE);
    KASSERT_EQ(heap_region_end(&r), ADDRESS_SPACE_LAST_PAGE);
    *(volatile uint64_t *)(ADDRESS_SPACE_LAST_PAGE - 8) = 0x70b; /* the last word */
    KASSERT_EQ(*(volatile uint64_t *)(ADDRESS_SPACE_LAST_PAGE - 8), 0x70b);
    KASSERT_EQ(heap_region_grow(&r, 1, &start), PAGING_ERR_NO_MEMORY);
    KASSERT_EQ(heap_region_grow(&r, SIZE_MAX, &start), PAGING_ERR_NO_MEMORY);
    KASSERT_EQ(heap_region_end(&r), ADDRESS_SPACE_LAST_PAGE);
    uint64_t phys;
    KASSERT(!paging_translate(ADDRESS_SPACE_LAST_PAGE, &phys, NULL));
    KASSERT_EQ(heap_region_shrink(&r, SIZE_MAX), 64);
    KASSERT_EQ(heap_region_end(&r), base);
    KASSERT_EQ(heap_region_shrink(&r, 1), 0);
}

KTEST_EXPECT_PANIC(heap_region_guard_below_faults)
{
    ktest_expect_page_fault(KERNEL_HEAP_BASE - 8);
    (void)*(volatile uint64_t *)(KERNEL_HEAP_BASE - 8);
}

KTEST_EXPECT_PANIC(heap_region_guard_above_faults)
{
    /* The page right after the mapped end is never mapped. */
    uint64_t end = heap_region_end(kernel_heap_region());
    *(volatile uint64_t *)(end - 8) = *(volatile uint64_t *)(end - 8); /* last word is fine */
    ktest_expect_page_fault(end);
    (void)*(volatile uint64_t *)end;
}

KTEST_EXPECT_PANIC(the_last_page_of_the_address_space_faults)
{
    ktest_expect_page_fault(ADDRESS_SPACE_LAST_PAGE + 16);
    (void)*(volatile uint64_t *)(ADDRESS_SPACE_LAST_PAGE + 16);
}

KTEST(heap_region_growth_without_enough_frames_changes_nothing)
{
    /* A window nothing else uses: its first pages need a new PDPT, PD and
       PT. With frames for the pages but not for the tables, or one frame
       short, growth must fail leaving the end and the free frames as they
       were (no page, no table kept). */
    const size_t pages = 4;
    struct heap_region r;
    KASSERT(heap_region_init(&r, KERNEL_PRIVATE_HEAP_WINDOW_BASE(KERNEL_PRIVATE_HEAP_WINDOWS - 1),
                             KERNEL_PRIVATE_HEAP_WINDOW_SPAN, KERNEL_PRIVATE_HEAP_WINDOW_SPAN));
    uint64_t tables = paging_tables_needed(heap_region_end(&r), pages);
    KASSERT_EQ(tables, 3);
    static struct frame_hoard hoard;
    const uint64_t keeps[] = {0, pages, pages + tables - 1};
    for (size_t i = 0; i < sizeof(keeps) / sizeof(keeps[0]); i++) {
        frame_hoard_take(&hoard, keeps[i]);
        ktest_defer(frame_hoard_release_deferred, &hoard);
        KASSERT_EQ(pmm_stats().free_frames, keeps[i]);
        uint64_t start = 0;
        KASSERT_EQ(heap_region_grow(&r, pages, &start), PAGING_ERR_NO_MEMORY);
        KASSERT_EQ(heap_region_end(&r), heap_region_start(&r));
        KASSERT_EQ(pmm_stats().free_frames, keeps[i]);
        KASSERT_EQ(paging_tables_needed(heap_region_end(&r), pages), tables);
        frame_hoard_release(&hoard);
    }
    uint64_t free0 = pmm_stats().free_frames, start;
    KASSERT_EQ(heap_region_grow(&r, pages, &start), PAGING_OK);
    KASSERT_EQ(free0 - pmm_stats().free_frames, pages + tables);
    KASSERT_EQ(heap_region_shrink(&r, pages), pages);
}
