/*
 * Giving memory back (heap_env.release / reclaim): a private heap of the
 * image's backend takes a burst of mixed-size blocks (64 MiB, or half the
 * free RAM when there is less), frees it with a small long-lived block
 * allocated after it at the top of the heap, and must hand the frames back
 * (within RELEASE_SLACK, docs/memory.md); the pages it gave back fault, and
 * memory it takes back reads as zeroes and works as before.
 */
#include "kheap_test.h"

#include "alloc/heap_backend.h"
#include "kprintf.h"
#include "paging/paging.h"
#include "paging/pmm.h"

#define RELEASE_WINDOW 7
#define MAX_BLOCKS     4096
/* Documented slack (docs/memory.md): every free block keeps its first
   HEAP_TRIM_THRESHOLD bytes and its partial pages; the blocks that stay
   (the long-lived one, and fixed_size_block's one empty slab per size class)
   split the free space into at most 16 free blocks; plus 1 MiB of slabs. */
#define RELEASE_SLACK  (16 * (HEAP_TRIM_THRESHOLD + 2 * HEAP_PAGE_SIZE) + ((size_t)1 << 20))

static struct kernel_heap release_heap;
static void *blocks[MAX_BLOCKS];

/* The burst: about min(64 MiB, half the free RAM) in blocks of 16 B to
   64 KiB and some of 256 KiB, each filled. Returns the block count. */
static size_t burst(struct heap *h, uint64_t *rng)
{
    uint64_t avail = pmm_stats().free_frames * PAGE_SIZE / 2;
    size_t target = avail < ((uint64_t)64 << 20) ? (size_t)avail : (size_t)64 << 20;
    size_t total = 0, n = 0;
    while (total < target && n < MAX_BLOCKS) {
        uint64_t r = heap_rand(rng);
        size_t size = r % 16 == 0 ? (size_t)256 << 10 : (size_t)16 << (r % 13);
        blocks[n] = heap_alloc(h, size);
        KASSERT(blocks[n] != NULL);
        heap_fill(blocks[n], size < 64 ? size : 64, (uint32_t)n);
        total += size;
        n++;
    }
    return n;
}

static void free_all(struct heap *h, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) { /* random order */
        size_t j = heap_rand(rng) % i;
        void *t = blocks[i - 1];
        blocks[i - 1] = blocks[j];
        blocks[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        heap_free(h, blocks[i]);
}

/* Burst, long-lived block, free: frames and bytes_mapped come back. */
KTEST(release_burst_then_free_returns_the_frames)
{
    struct heap *h = heap_test_private(&release_heap, RELEASE_WINDOW, 64);
    uint64_t rng = 5, free0 = pmm_stats().free_frames;
    struct heap_stats s0 = heap_stats(h), s;
    uint64_t tables = paging_tables_needed(KERNEL_PRIVATE_HEAP_WINDOW_BASE(RELEASE_WINDOW),
                                           KERNEL_PRIVATE_HEAP_WINDOW_SPAN / PAGE_SIZE / 8);
    size_t n = burst(h, &rng);
    uint64_t free_burst = pmm_stats().free_frames;
    void *keep = heap_alloc(h, 64);
    KASSERT(keep != NULL);
    free_all(h, n, &rng);
    if (heap_is_arena(h))
        heap_free(h, keep); /* bump gives back at its reset */
    s = heap_stats(h);
    uint64_t free1 = pmm_stats().free_frames;
    kprintf("# %s%s: frames free before %llu, after the burst %llu, after free %llu; mapped %zu -> %zu "
            "bytes, %llu pages released\n",
            heap_backend_name(h), KERNEL_HEAP_HARDENED ? " hardened" : "", (unsigned long long)free0,
            (unsigned long long)free_burst, (unsigned long long)free1, s0.bytes_mapped, s.bytes_mapped,
            (unsigned long long)s.pages_released);
    KASSERT(s.pages_released > 0);
    KASSERT(s.bytes_mapped <= s0.bytes_mapped + RELEASE_SLACK);
    KASSERT(free1 + RELEASE_SLACK / PAGE_SIZE + tables >= free0);
    KASSERT_EQ(heap_region_mapped(&release_heap.region), s.bytes_mapped);
    KASSERT_EQ(heap_check(h), 0);
    if (!heap_is_arena(h))
        heap_free(h, keep);
    KASSERT_EQ(heap_check(h), 0);
}

/* Memory given back and taken again reads as zeroes and holds data. */
KTEST(release_reclaimed_memory_is_zeroed_and_usable)
{
    struct heap *h = heap_test_private(&release_heap, RELEASE_WINDOW, 64);
    uint64_t rng = 6;
    size_t n = burst(h, &rng);
    free_all(h, n, &rng);
    struct heap_stats s0 = heap_stats(h);
    KASSERT(s0.pages_released > 0);
    n = burst(h, &rng);
    KASSERT(heap_stats(h).pages_reclaimed > s0.pages_reclaimed);
    size_t big = (size_t)(s0.pages_released * PAGE_SIZE / 2);
    uint8_t *z = heap_calloc(h, 1, big);
    KASSERT(z != NULL);
    for (size_t i = 0; i < big; i += 509)
        KASSERT_EQ(z[i], 0);
    heap_fill(z, big, 99);
    KASSERT(heap_verify(z, big, 99));
    heap_free(h, z);
    free_all(h, n, &rng);
    KASSERT_EQ(heap_check(h), 0);
}

/* A page in the middle of the freed burst was given back: touching it faults. */
KTEST_EXPECT_PANIC(release_returned_pages_fault)
{
    struct heap *h = heap_test_private(&release_heap, RELEASE_WINDOW, 64);
    uint64_t rng = 7, phys;
    size_t n = burst(h, &rng);
    void *keep = heap_alloc(h, 64);
    KASSERT(keep != NULL);
    free_all(h, n, &rng);
    if (heap_is_arena(h))
        heap_free(h, keep);
    uint64_t lo = heap_region_start(&release_heap.region), hi = heap_region_end(&release_heap.region);
    uint64_t page = 0;
    for (uint64_t a = (lo + (hi - lo) / 2) & ~(uint64_t)(PAGE_SIZE - 1); a < hi && page == 0; a += PAGE_SIZE)
        if (!paging_translate(a, &phys, NULL))
            page = a;
    KASSERT(page != 0);
    ktest_expect_page_fault(page + 8);
    *(volatile uint64_t *)(uintptr_t)(page + 8) = 1;
}

/* A loop allocating and freeing a block below the trim threshold maps and
   unmaps nothing once the heap has given memory back. */
KTEST(release_has_hysteresis)
{
    struct heap *h = heap_test_private(&release_heap, RELEASE_WINDOW, 64);
    uint64_t rng = 8;
    size_t n = burst(h, &rng);
    free_all(h, n, &rng);
    struct heap_stats a = heap_stats(h), b;
    for (int i = 0; i < 200; i++) {
        void *p = heap_alloc(h, HEAP_TRIM_THRESHOLD / 2);
        KASSERT(p != NULL);
        heap_free(h, p);
    }
    b = heap_stats(h);
    KASSERT(b.pages_reclaimed - a.pages_reclaimed <= HEAP_TRIM_THRESHOLD / PAGE_SIZE);
    KASSERT(b.pages_released - a.pages_released <= HEAP_TRIM_THRESHOLD / PAGE_SIZE);
    KASSERT_EQ(heap_check(h), 0);
}
