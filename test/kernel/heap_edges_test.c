/*
 * Bad input at the edges of the heap (docs/edges.md): requests the front end
 * lets through must be served or refused cleanly by every backend wherever
 * the heap lies -- the kernel heap lives in the higher half, where rounding
 * an address up to a large alignment passes 2^64 -- and hardened-mode
 * reports must not depend on what the user stored.
 */
#include "kheap_test.h"

#include "alloc/heap_backend.h"
#include "kernel_heap.h"
#include "kstring.h"

/* Every power-of-two alignment the front end accepts, with sizes at both
   ends of what it lets through: each request either fails (NULL, counted)
   or returns a usable block aligned as asked. The heap stays healthy. */
KTEST(huge_alignments_are_served_or_refused_cleanly)
{
    HEAP_TEST_BEGIN();
    for (unsigned k = 4; k < 63; k++) {
        size_t align = (size_t)1 << k;
        size_t sizes[] = { 1, 4096, HEAP_MAX_REQUEST - align - 64 };
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            if (align >= HEAP_MAX_REQUEST || sizes[i] > HEAP_MAX_REQUEST - align)
                continue;
            uint64_t failed = kmalloc_stats().failed_allocs;
            unsigned char *p = kmalloc_aligned(sizes[i], align);
            if (p == NULL) {
                KASSERT_EQ(kmalloc_stats().failed_allocs, failed + 1);
            } else {
                KASSERT_EQ((uintptr_t)p % align, 0);
                KASSERT(kmalloc_usable_size(p) >= sizes[i]);
                p[0] = 1;
                p[sizes[i] - 1] = 2;
                kfree(p);
            }
            KASSERT_EQ(kmalloc_check(), 0);
        }
    }
    /* The heap still works for ordinary callers. */
    void *q = kmalloc(100);
    KASSERT(q != NULL);
    kfree(q);
    HEAP_TEST_END();
}
