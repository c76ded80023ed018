/*
 * kmalloc & co. semantics, identical for every backend: alignment, size 0,
 * kcalloc, krealloc, overflow sizes, out of memory and recovery, growth.
 */
#include "kheap_test.h"

#include "kstring.h"
#include "kernel_heap.h"
#include "paging/heap_region.h"

#define MIB (1024ull * 1024)

KTEST(every_pointer_is_16_byte_aligned)
{
    HEAP_TEST_BEGIN();
    void *p[64];
    for (size_t i = 0; i < 64; i++) {
        p[i] = kmalloc(i * 37 + 1);
        KASSERT(p[i] != NULL);
        KASSERT_EQ((uintptr_t)p[i] % 16, 0);
        KASSERT(kmalloc_usable_size(p[i]) >= i * 37 + 1);
    }
    for (size_t i = 0; i < 64; i++)
        kfree(p[i]);
    HEAP_TEST_END();
}

KTEST(every_alignment_up_to_4096_with_churning_neighbours)
{
    HEAP_TEST_BEGIN();
    uint64_t rng = 0x1234;
    void *blocks[13];
    size_t sizes[13];
    for (size_t k = 0; k <= 12; k++) {
        size_t align = (size_t)1 << k;
        sizes[k] = (size_t)(heap_rand(&rng) % 3000) + 1;
        blocks[k] = kmalloc_aligned(sizes[k], align);
        KASSERT(blocks[k] != NULL);
        KASSERT_EQ((uintptr_t)blocks[k] % (align < 16 ? 16 : align), 0);
        heap_fill(blocks[k], sizes[k], (uint32_t)k);
        /* Neighbours come and go between the aligned blocks. */
        for (int j = 0; j < 8; j++) {
            size_t n = (size_t)(heap_rand(&rng) % 512) + 1;
            void *tmp = kmalloc(n);
            KASSERT(tmp != NULL);
            memset(tmp, 0xee, n);
            kfree(tmp);
        }
    }
    for (size_t k = 0; k <= 12; k++) {
        KASSERT(heap_verify(blocks[k], sizes[k], (uint32_t)k));
        kfree(blocks[k]);
    }
    HEAP_TEST_END();
}

KTEST(non_power_of_two_alignment_is_refused)
{
    HEAP_TEST_BEGIN();
    uint64_t failed = kmalloc_stats().failed_allocs;
    KASSERT(kmalloc_aligned(64, 0) == NULL);
    KASSERT(kmalloc_aligned(64, 24) == NULL);
    KASSERT(kmalloc_aligned(64, 4097) == NULL);
    KASSERT_EQ(kmalloc_stats().failed_allocs, failed + 3);
    HEAP_TEST_END();
}

KTEST(size_zero_gives_a_unique_block)
{
    /* heap.h: size 0 acts as size 1, a unique block that must be freed. */
    HEAP_TEST_BEGIN();
    void *a = kmalloc(0), *b = kmalloc(0);
    KASSERT(a != NULL && b != NULL && a != b);
    KASSERT(kmalloc_usable_size(a) >= 1);
    kfree(a);
    kfree(b);
    kfree(NULL); /* a no-op */
    HEAP_TEST_END();
}

KTEST(kcalloc_zeroes_and_rejects_overflow)
{
    HEAP_TEST_BEGIN();
    /* Dirty some memory first so zeroing is not an accident. */
    uint8_t *dirty = kmalloc(4000);
    KASSERT(dirty != NULL);
    memset(dirty, 0xab, 4000);
    kfree(dirty);
    uint8_t *z = kcalloc(1000, 4);
    KASSERT(z != NULL);
    for (size_t i = 0; i < 4000; i++)
        KASSERT_EQ(z[i], 0);
    kfree(z);
    uint64_t failed = kmalloc_stats().failed_allocs;
    KASSERT(kcalloc(SIZE_MAX / 2, 3) == NULL);
    KASSERT(kcalloc((size_t)1 << 33, (size_t)1 << 33) == NULL);
    KASSERT_EQ(kmalloc_stats().failed_allocs, failed + 2);
    HEAP_TEST_END();
}

KTEST(krealloc_semantics)
{
    HEAP_TEST_BEGIN();
    /* NULL acts as kmalloc. */
    uint8_t *p = krealloc(NULL, 100);
    KASSERT(p != NULL);
    heap_fill(p, 100, 1);
    /* Grow keeps contents. */
    p = krealloc(p, 5000);
    KASSERT(p != NULL);
    KASSERT(heap_verify(p, 100, 1));
    heap_fill(p, 5000, 2);
    /* Shrink keeps the prefix. */
    p = krealloc(p, 40);
    KASSERT(p != NULL);
    KASSERT(heap_verify(p, 40, 2));
    /* Failure returns NULL and leaves the block alone. */
    uint8_t *q = krealloc(p, SIZE_MAX - 4096);
    KASSERT(q == NULL);
    KASSERT(heap_verify(p, 40, 2));
    /* Size 0 keeps a minimum block (heap.h), still owned by the caller. */
    p = krealloc(p, 0);
    KASSERT(p != NULL);
    kfree(p);
    HEAP_TEST_END();
}

KTEST(overflowing_sizes_return_null_and_are_counted)
{
    HEAP_TEST_BEGIN();
    uint64_t failed = kmalloc_stats().failed_allocs;
    const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX / 2 + 1, SIZE_MAX - 15};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        KASSERT(kmalloc(sizes[i]) == NULL);
        KASSERT(kmalloc_aligned(sizes[i], 4096) == NULL);
    }
    KASSERT_EQ(kmalloc_stats().failed_allocs, failed + 10);
    HEAP_TEST_END();
}

KTEST(out_of_memory_returns_null_and_the_heap_recovers)
{
    HEAP_TEST_BEGIN();
    /* Lower the heap's cap to 4 MiB above what is mapped, so running out is
       quick at any QEMU_MEMORY and leaves room for the tests after this one. */
    struct heap_region *region = kernel_heap_region();
    uint64_t cap = heap_region_limit(region);
    heap_region_set_limit(region, heap_region_mapped(region) + 4 * MIB);
    static void *blocks[4096];
    size_t n = 0, last_failed = 0;
    uint64_t failed = kmalloc_stats().failed_allocs;
    /* Fill the heap with ever smaller blocks until even 16 bytes fail. */
    for (size_t chunk = 256 * 1024; chunk >= 16 && n < 4096;) {
        void *p = kmalloc(chunk);
        if (p == NULL) {
            last_failed = chunk;
            chunk /= 2;
            continue;
        }
        *(volatile uint8_t *)p = 1;
        blocks[n++] = p;
    }
    KASSERT(n < 4096);
    KASSERT(kmalloc_stats().failed_allocs > failed);
    KASSERT(kmalloc(last_failed) == NULL); /* still NULL, never a panic */
    KASSERT(heap_region_mapped(region) <= heap_region_limit(region));
    ktest_log("%s: %zu blocks filled the heap; %llu KiB mapped at the lowered cap", kmalloc_backend_name(), n,
              (unsigned long long)(heap_region_mapped(region) / 1024));
    for (size_t i = n; i-- > 0;)
        kfree(blocks[i]);
    KASSERT_EQ(kmalloc_check(), 0);
    /* After the frees the same requests succeed again. */
    void *again = kmalloc(256 * 1024);
    KASSERT(again != NULL);
    kfree(again);
    heap_region_set_limit(region, cap);
    HEAP_TEST_END();
}

KTEST(large_allocation_grows_the_heap)
{
    HEAP_TEST_BEGIN();
    /* 64 MiB when the heap may grow that far (QEMU_MEMORY >= 128M);
       otherwise a quarter of the cap, and 64 MiB must fail cleanly. */
    size_t size = 64 * MIB;
    uint64_t cap = heap_region_limit(kernel_heap_region());
    if (cap < 80 * MIB) {
        KASSERT(kmalloc(size) == NULL);
        size = (size_t)(cap / 4);
    }
    uint8_t *p = kmalloc(size);
    KASSERT(p != NULL);
    KASSERT(kmalloc_stats().bytes_mapped >= size);
    p[0] = 1;
    p[size / 2] = 2;
    p[size - 1] = 3;
    KASSERT(p[0] + p[size / 2] + p[size - 1] == 6);
    kfree(p);
    HEAP_TEST_END();
}
