/*
 * Helpers for heap tests: every heap test starts with HEAP_TEST_BEGIN()
 * and ends with HEAP_TEST_END(), which asserts that the test gave back
 * everything it allocated and that the allocator's invariant checker finds
 * nothing wrong (xv6's countfree() habit). A test that damages a heap on
 * purpose does it to a private heap of its own (heap_test_private()), never
 * to the kernel heap behind kmalloc().
 */
#ifndef KHEAP_KHEAP_TEST_H
#define KHEAP_KHEAP_TEST_H

#include "alloc/heap.h"
#include "alloc/kmalloc.h"
#include "kernel_heap.h"
#include "heap_test_util.h" /* heap_rand, heap_fill, heap_verify */
#include "ktest.h"
#include "memlayout.h"

#define HEAP_TEST_BEGIN() struct heap_stats heap_test_before_ = kmalloc_stats()

#define HEAP_TEST_END()                                                            \
    do {                                                                           \
        struct heap_stats heap_test_after_ = kmalloc_stats();                      \
        KASSERT_EQ(heap_test_after_.live_allocs, heap_test_before_.live_allocs);   \
        KASSERT_EQ(heap_test_after_.bytes_in_use, heap_test_before_.bytes_in_use); \
        KASSERT_EQ(kmalloc_check(), 0);                                            \
    } while (0)

static inline void heap_test_destroy_private(void *kh)
{
    kernel_heap_private_destroy(kh);
}

/* Creates a private heap of the image's backend in kh, in private window
   window (memlayout.h), with initial_pages mapped; it is destroyed when the
   running test ends, however it ends (after an expected panic too). Fails
   the test if it cannot be created. */
static inline struct heap *heap_test_private(struct kernel_heap *kh, unsigned window, size_t initial_pages)
{
    struct heap *h = kernel_heap_private_create(kh, NULL, KERNEL_PRIVATE_HEAP_WINDOW_BASE(window),
                                                KERNEL_PRIVATE_HEAP_WINDOW_SPAN, initial_pages);
    if (h == NULL)
        ktest_fail(__FILE__, __LINE__, "kernel_heap_private_create in window %u failed", window);
    ktest_defer(heap_test_destroy_private, kh);
    return h;
}

#endif
