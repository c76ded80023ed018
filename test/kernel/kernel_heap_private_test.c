/*
 * Private kernel heaps (kernel_heap_private_create()): a heap of the image's
 * backend in a window of its own, which grows, serves blocks up to the last
 * byte below the final guard page of the address space, leaves kmalloc()
 * alone, and is gone (pages fault, frames back) once destroyed.
 */
#include "kheap_test.h"

#include "alloc/heap_backend.h"
#include "kstring.h"
#include "paging/pmm.h"

#define GROW_WINDOW 1
#define BLOCKS      96
#define BLOCK_SIZE  3000

static struct kernel_heap private_heap;

static bool same_kmalloc_stats(struct heap_stats a, struct heap_stats b)
{
    return a.bytes_in_use == b.bytes_in_use && a.bytes_mapped == b.bytes_mapped &&
           a.live_allocs == b.live_allocs && a.total_allocs == b.total_allocs &&
           a.total_frees == b.total_frees && a.failed_allocs == b.failed_allocs;
}

KTEST_EXPECT_PANIC(private_heap_grows_is_destroyed_and_then_faults)
{
    const uint64_t base = KERNEL_PRIVATE_HEAP_WINDOW_BASE(GROW_WINDOW);
    struct heap_stats global = kmalloc_stats();
    uint64_t free0 = pmm_stats().free_frames;
    /* Tables for up to 1 MiB of this window: the most destroy may keep. */
    uint64_t tables = paging_tables_needed(base, 256);

    struct heap *h =
        kernel_heap_private_create(&private_heap, NULL, base, KERNEL_PRIVATE_HEAP_WINDOW_SPAN, 4);
    KASSERT(h != NULL);
    KASSERT_EQ(heap_region_start(&private_heap.region), base);
    KASSERT_EQ(kmalloc_check(), 0);
    static uint8_t *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = heap_alloc(h, BLOCK_SIZE);
        KASSERT(blocks[i] != NULL);
        uint64_t at = (uint64_t)(uintptr_t)blocks[i];
        KASSERT(at >= base && at + BLOCK_SIZE <= heap_region_end(&private_heap.region));
        heap_fill(blocks[i], BLOCK_SIZE, (uint32_t)i);
    }
    for (int i = 0; i < BLOCKS; i++)
        KASSERT(heap_verify(blocks[i], BLOCK_SIZE, (uint32_t)i));
    KASSERT_EQ(heap_check(h), 0);
    KASSERT(private_heap.grow_calls >= 3); /* 288 KB from a 16 KiB start */
    KASSERT(heap_region_mapped(&private_heap.region) <= 256 * PAGE_SIZE);
    ktest_log("%s: %llu grow calls, %llu KiB mapped", heap_backend_name(h),
              (unsigned long long)private_heap.grow_calls,
              (unsigned long long)(heap_region_mapped(&private_heap.region) / 1024));
    for (int i = 0; i < BLOCKS; i += 2)
        heap_free(h, blocks[i]);
    KASSERT_EQ(heap_stats(h).live_allocs, BLOCKS / 2);
    KASSERT(same_kmalloc_stats(kmalloc_stats(), global)); /* kmalloc never saw any of it */

    kernel_heap_private_destroy(&private_heap);
    KASSERT(private_heap.heap == NULL);
    uint64_t free1 = pmm_stats().free_frames;
    ktest_log("frames: %llu before, %llu after (%llu tables allowed to stay)", (unsigned long long)free0,
              (unsigned long long)free1, (unsigned long long)tables);
    KASSERT(free1 <= free0 && free0 - free1 <= tables);
    KASSERT(same_kmalloc_stats(kmalloc_stats(), global));
    KASSERT_EQ(kmalloc_check(), 0);
    uint64_t phys;
    KASSERT(!paging_translate(base, &phys, NULL));
    ktest_expect_page_fault((uint64_t)(uintptr_t)blocks[1]);
    (void)*(volatile uint8_t *)blocks[1];
}

/* A private heap whose region ends exactly at ADDRESS_SPACE_LAST_PAGE. */
#define TOP_SPAN  (64 * PAGE_SIZE)
#define TOP_BASE  (ADDRESS_SPACE_LAST_PAGE - TOP_SPAN)
#define TOP_SLOTS 512
/* How far below the last page the highest block may end: one page the
   backend may keep for itself at a region's end, plus less than the
   smallest request. */
#define TOP_SLACK (2 * PAGE_SIZE)

static void *top_blocks[TOP_SLOTS];
static size_t top_count;

/* Fills the top heap with ever smaller blocks until even 16 bytes fail,
   writing every block's last byte; returns one past the highest block end. */
static uint64_t fill_top_heap(struct heap *h)
{
    uint64_t highest = 0;
    top_count = 0;
    for (size_t chunk = 16 * 1024; chunk >= 16 && top_count < TOP_SLOTS;) {
        uint8_t *p = heap_alloc(h, chunk);
        if (p == NULL) {
            chunk /= 2;
            continue;
        }
        uint64_t end;
        KASSERT(!__builtin_add_overflow((uint64_t)(uintptr_t)p, chunk, &end));
        KASSERT((uint64_t)(uintptr_t)p >= TOP_BASE && end <= ADDRESS_SPACE_LAST_PAGE);
        p[0] = 1;
        p[chunk - 1] = 2;
        highest = end > highest ? end : highest;
        top_blocks[top_count++] = p;
    }
    KASSERT(top_count < TOP_SLOTS);
    return highest;
}

KTEST(private_heap_at_the_top_serves_its_last_page)
{
    HEAP_TEST_BEGIN();
    KASSERT_EQ(TOP_BASE + TOP_SPAN, ADDRESS_SPACE_LAST_PAGE);
    /* The whole window mapped at creation: the backend itself must hand out
       the bytes right below the last page. */
    struct heap *h =
        kernel_heap_private_create(&private_heap, NULL, TOP_BASE, TOP_SPAN, TOP_SPAN / PAGE_SIZE);
    KASSERT(h != NULL);
    ktest_defer(heap_test_destroy_private, &private_heap);
    KASSERT_EQ(heap_region_end(&private_heap.region), ADDRESS_SPACE_LAST_PAGE);
    uint64_t highest = fill_top_heap(h);
    ktest_log("%s: %zu blocks; the highest ends %llu bytes below the last page", heap_backend_name(h),
              top_count, (unsigned long long)(ADDRESS_SPACE_LAST_PAGE - highest));
    /* Measured: plain bump's last block ends at the very last byte, the
       others within a header and a minimum block of it; fixed_size_block
       never hands out a region's last page (in any window, not only at the
       top). So a block must end within the last two pages. */
    KASSERT(highest > ADDRESS_SPACE_LAST_PAGE - TOP_SLACK);
    KASSERT_EQ(heap_check(h), 0);
    for (size_t i = top_count; i-- > 0;)
        heap_free(h, top_blocks[i]);
    KASSERT_EQ(heap_stats(h).live_allocs, 0);
    KASSERT_EQ(heap_check(h), 0);
    /* Freed, it serves the same space again. */
    KASSERT(fill_top_heap(h) > ADDRESS_SPACE_LAST_PAGE - TOP_SLACK);
    HEAP_TEST_END();
}

KTEST(private_heap_at_the_top_grows_up_to_the_last_page)
{
    HEAP_TEST_BEGIN();
    /* Growth never wraps: the heap grows toward 2^64 and stops at the last
       page, or (fixed_size_block) where a fresh region no longer fits the
       backend's worst case, ops->grow_overhead. */
    struct heap *h = kernel_heap_private_create(&private_heap, NULL, TOP_BASE, TOP_SPAN, 4);
    KASSERT(h != NULL);
    ktest_defer(heap_test_destroy_private, &private_heap);
    uint64_t highest = fill_top_heap(h);
    uint64_t end = heap_region_end(&private_heap.region);
    const struct heap_ops *ops = heap_backend_find(heap_backend_name(h));
    KASSERT(ops != NULL);
    ktest_log("%s: %llu grow calls; mapped up to %llu bytes below the last page, highest block "
              "end %llu below",
              heap_backend_name(h), (unsigned long long)private_heap.grow_calls,
              (unsigned long long)(ADDRESS_SPACE_LAST_PAGE - end),
              (unsigned long long)(ADDRESS_SPACE_LAST_PAGE - highest));
    KASSERT(private_heap.grow_calls > 0);
    KASSERT(end <= ADDRESS_SPACE_LAST_PAGE && highest <= end);
    KASSERT(ADDRESS_SPACE_LAST_PAGE - end < ops->grow_overhead + 2 * 1024 + PAGE_SIZE);
    KASSERT_EQ(heap_check(h), 0);
    for (size_t i = top_count; i-- > 0;)
        heap_free(h, top_blocks[i]);
    KASSERT_EQ(heap_check(h), 0);
    HEAP_TEST_END();
}

KTEST_EXPECT_PANIC(private_heap_at_the_top_guard_page_faults)
{
    struct heap *h =
        kernel_heap_private_create(&private_heap, NULL, TOP_BASE, TOP_SPAN, TOP_SPAN / PAGE_SIZE);
    KASSERT(h != NULL);
    ktest_defer(heap_test_destroy_private, &private_heap);
    fill_top_heap(h);
    ktest_expect_page_fault(ADDRESS_SPACE_LAST_PAGE);
    (void)*(volatile uint8_t *)ADDRESS_SPACE_LAST_PAGE;
}

KTEST(private_heap_creation_refuses_bad_windows_and_backends)
{
    struct heap_stats global = kmalloc_stats();
    uint64_t free0 = pmm_stats().free_frames;
    KASSERT(kernel_heap_private_create(&private_heap, "no_such_backend",
                                       KERNEL_PRIVATE_HEAP_WINDOW_BASE(GROW_WINDOW),
                                       KERNEL_PRIVATE_HEAP_WINDOW_SPAN, 4) == NULL);
    KASSERT(kernel_heap_private_create(&private_heap, NULL, TOP_BASE, TOP_SPAN + PAGE_SIZE, 4) == NULL);
    KASSERT(kernel_heap_private_create(&private_heap, NULL, TOP_BASE, TOP_SPAN, 65) == NULL);
    KASSERT(kernel_heap_private_create(&private_heap, NULL, TOP_BASE, TOP_SPAN, 0) == NULL);
    KASSERT(private_heap.heap == NULL);
    kernel_heap_private_destroy(&private_heap); /* nothing to destroy */
    KASSERT_EQ(pmm_stats().free_frames, free0);
    KASSERT(same_kmalloc_stats(kmalloc_stats(), global));
    /* Every backend by name, in a private window. */
    for (const struct heap_ops *const *ops = heap_backends; *ops != NULL; ops++) {
        struct heap *h = kernel_heap_private_create(&private_heap, (*ops)->name,
                                                    KERNEL_PRIVATE_HEAP_WINDOW_BASE(GROW_WINDOW),
                                                    KERNEL_PRIVATE_HEAP_WINDOW_SPAN, 4);
        KASSERT(h != NULL);
        KASSERT(strcmp(heap_backend_name(h), (*ops)->name) == 0);
        void *p = heap_alloc(h, 100);
        KASSERT(p != NULL);
        heap_free(h, p);
        KASSERT_EQ(heap_check(h), 0);
        kernel_heap_private_destroy(&private_heap);
    }
    KASSERT(same_kmalloc_stats(kmalloc_stats(), global));
}
