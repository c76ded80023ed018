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

static void destroy_private(void *kh)
{
    kernel_heap_private_destroy(kh);
}

#define EDGES_ALIGN_WINDOW 4                     /* private heap window (memlayout.h) */
#define EDGES_ALIGN_SPAN   (16ull * 1024 * 1024) /* the heap may grow to 16 MiB, no further */

/* Every power-of-two alignment the front end accepts, with sizes at both
   ends of what it lets through: each request either fails (NULL, counted)
   or returns a usable block aligned as asked. The heap stays healthy. It
   runs on a private heap in the higher half (where rounding an address up
   to such an alignment passes 2^64), capped at 16 MiB so that the
   alignments it can serve stay cheap to map at any QEMU_MEMORY. */
KTEST(huge_alignments_are_served_or_refused_cleanly)
{
    static struct kernel_heap kh;
    struct heap *h = kernel_heap_private_create(
        &kh, NULL, KERNEL_PRIVATE_HEAP_WINDOW_BASE(EDGES_ALIGN_WINDOW), EDGES_ALIGN_SPAN, 16);
    KASSERT(h != NULL);
    ktest_defer(destroy_private, &kh);
    for (unsigned k = 4; k < 63; k++) {
        size_t align = (size_t)1 << k;
        size_t sizes[] = {1, 4096, HEAP_MAX_REQUEST - align - 64};
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            if (align >= HEAP_MAX_REQUEST || sizes[i] > HEAP_MAX_REQUEST - align)
                continue;
            uint64_t failed = heap_stats(h).failed_allocs;
            unsigned char *p = heap_alloc_aligned(h, sizes[i], align);
            if (p == NULL) {
                KASSERT_EQ(heap_stats(h).failed_allocs, failed + 1);
            } else {
                KASSERT_EQ((uintptr_t)p % align, 0);
                KASSERT(heap_usable_size(h, p) >= sizes[i]);
                p[0] = 1;
                p[sizes[i] - 1] = 2;
                heap_free(h, p);
            }
            KASSERT_EQ(heap_check(h), 0);
        }
    }
    /* The heap still works for ordinary callers. */
    void *q = heap_alloc(h, 100);
    KASSERT(q != NULL);
    heap_free(h, q);
    KASSERT_EQ(heap_stats(h).live_allocs, 0);
    KASSERT_EQ(heap_check(h), 0);
}

#if KERNEL_HEAP_HARDENED

#define EDGES_WINDOW     5 /* private heap window (memlayout.h) */
#define EDGES_HEAP_PAGES 16

static struct kernel_heap edges_heap;

/* Expects kernel_heap.c's report panic naming ptr ("heap: <kind> of <ptr> (...").
   With kind NULL any kind is accepted. */
static void expect_report_on(const char *kind, const void *ptr)
{
    static char text[96];
    if (kind != NULL)
        ksnprintf(text, sizeof(text), "heap: %s of %p (", kind, ptr);
    else
        ksnprintf(text, sizeof(text), " of %p (", ptr);
    ktest_expect_panic_containing(text);
}

/* An interior pointer into a live block is an invalid free, also when the
   block's bytes equal the free poison (which used to pass for a header
   swallowed by coalescing or a rolled-back bump block: "double free"). */
KTEST_EXPECT_PANIC(interior_free_of_poison_like_data_is_an_invalid_free)
{
    struct heap *h = heap_test_private(&edges_heap, EDGES_WINDOW, EDGES_HEAP_PAGES);
    unsigned char *a = heap_alloc(h, 512);
    KASSERT(a != NULL);
    memset(a, HEAP_POISON_FREE, 512);
    expect_report_on("invalid free", a + 64);
    heap_free(h, a + 64);
}

/* A use-after-free write into the words a backend keeps in a freed block
   (its links, the free site) is found by the check, naming that block. */
KTEST_EXPECT_PANIC(use_after_free_write_into_the_first_words_is_found)
{
    struct heap *h = heap_test_private(&edges_heap, EDGES_WINDOW, EDGES_HEAP_PAGES);
    unsigned char *a = heap_alloc(h, 64), *p = heap_alloc(h, 64), *b = heap_alloc(h, 64);
    KASSERT(a != NULL && p != NULL && b != NULL);
    heap_free(h, p); /* between two live blocks: no merging */
    p[8] ^= 0x20;
    expect_report_on(NULL, p);
    heap_check(h);
}

#endif
