/*
 * The hardened heap (KHEAP_HARDENING, docs/hardening.md), in the kernel:
 * one expected-panic test per kind of error, run for every backend by the
 * ktest-<backend>-hardened images. Each asserts the kind of error AND the
 * pointer in the panic message. Each damages a private heap of its own
 * (heap_test_private(): same lock, report handler and secret as the kernel
 * heap), destroyed by ktest_defer() after the panic, so the kernel heap
 * behind kmalloc() never sees the damage and no test depends on the order
 * of tests or files. In the plain images this file only checks that
 * nothing is reported.
 */
#include "kheap_test.h"

#include "alloc/heap_backend.h"
#include "kernel_heap.h"
#include "kstring.h"
#include "paging/heap_region.h"

/* The private window these tests damage heaps in (one at a time). */
#define HARDENING_WINDOW     2
#define HARDENING_HEAP_PAGES 16

KTEST(heap_mode_matches_the_image)
{
    KASSERT_EQ(heap_hardening(), KERNEL_HEAP_HARDENED);
    KASSERT_EQ(kmalloc_stats().errors_detected, 0);
}

KTEST(clean_random_churn_reports_nothing)
{
    HEAP_TEST_BEGIN();
    static void *blocks[256];
    static size_t sizes[256];
    uint64_t rng = 77;
    uint64_t errors = kmalloc_stats().errors_detected;
    memset(blocks, 0, sizeof(blocks));
    for (int op = 0; op < 20000; op++) {
        size_t i = heap_rand(&rng) % 256;
        if (blocks[i] != NULL) {
            KASSERT(heap_verify(blocks[i], sizes[i], (uint32_t)i));
            if (heap_rand(&rng) % 3 == 0) {
                size_t n = 1 + heap_rand(&rng) % 3000;
                uint8_t *q = krealloc(blocks[i], n);
                KASSERT(q != NULL);
                KASSERT(heap_verify(q, n < sizes[i] ? n : sizes[i], (uint32_t)i));
                blocks[i] = q;
                sizes[i] = n;
                heap_fill(q, n, (uint32_t)i);
            } else {
                kfree(blocks[i]);
                blocks[i] = NULL;
            }
        } else {
            sizes[i] = 1 + heap_rand(&rng) % 3000;
            blocks[i] = heap_rand(&rng) % 5 == 0 ? kmalloc_aligned(sizes[i], 64) : kmalloc(sizes[i]);
            KASSERT(blocks[i] != NULL);
            heap_fill(blocks[i], sizes[i], (uint32_t)i);
        }
        if (kmalloc_backend_is_arena() && op % 1000 == 999) {
            for (size_t j = 0; j < 256; j++) { /* bump: reset phases (docs/allocators.md) */
                kfree(blocks[j]);
                blocks[j] = NULL;
            }
        }
    }
    for (size_t j = 0; j < 256; j++)
        kfree(blocks[j]);
    KASSERT_EQ(kmalloc_stats().errors_detected, errors);
    HEAP_TEST_END();
}

#if KERNEL_HEAP_HARDENED

/* Expects the panic of kernel_heap.c's report handler: "heap: <kind> of <ptr>". */
static void expect_report(const char *kind, const void *ptr)
{
    static char text[96];
    ksnprintf(text, sizeof(text), "heap: %s of %p ", kind, ptr);
    ktest_expect_panic_containing(text);
}

static struct kernel_heap private_heap;

/* This test's own heap, destroyed when the test ends. */
static struct heap *own_heap(void)
{
    return heap_test_private(&private_heap, HARDENING_WINDOW, HARDENING_HEAP_PAGES);
}

KTEST_EXPECT_PANIC(hardened_double_free_is_caught)
{
    struct heap *h = own_heap();
    void *keep = heap_alloc(h, 10); /* bump: the first free is a rollback, not a reset */
    uint8_t *p = heap_alloc(h, 100);
    KASSERT(keep != NULL && p != NULL);
    heap_free(h, p);
    expect_report("double free", p);
    heap_free(h, p);
}

KTEST_EXPECT_PANIC(hardened_interior_free_is_caught)
{
    struct heap *h = own_heap();
    uint8_t *p = heap_alloc(h, 200);
    KASSERT(p != NULL);
    expect_report("invalid free", p + 16);
    heap_free(h, p + 16);
}

KTEST_EXPECT_PANIC(hardened_free_of_a_stack_address_is_caught)
{
    struct heap *h = own_heap();
    int local[4] = {0};
    expect_report("invalid free", local);
    heap_free(h, local);
}

static int global_object[8];

KTEST_EXPECT_PANIC(hardened_free_of_a_global_is_caught)
{
    struct heap *h = own_heap();
    expect_report("invalid free", global_object);
    heap_free(h, global_object);
}

KTEST_EXPECT_PANIC(hardened_free_outside_the_heap_is_caught)
{
    /* Past the mapped end of the heap region: must be rejected unread. */
    struct heap *h = own_heap();
    void *past = (void *)(uintptr_t)(heap_region_end(&private_heap.region) + 4096);
    expect_report("invalid free", past);
    heap_free(h, past);
}

/* One byte written past the requested size. */
KTEST_EXPECT_PANIC(hardened_overflow_by_one_byte_is_caught)
{
    struct heap *h = own_heap();
    size_t size = 37;
    uint8_t *overflowed = heap_alloc(h, size);
    KASSERT(overflowed != NULL);
    KASSERT_EQ(heap_usable_size(h, overflowed), size); /* the canary follows */
    memset(overflowed, 'x', size);                     /* all of it is ours */
    overflowed[size] = (uint8_t)~overflowed[size];     /* off by one */
    expect_report("heap overflow", overflowed);
    heap_free(h, overflowed);
}

/* A write through a dangling pointer, caught when the block is reused. */
KTEST_EXPECT_PANIC(hardened_use_after_free_write_is_caught_on_reuse)
{
    struct heap *h = own_heap();
    void *keep = heap_alloc(h, 10);
    uint8_t *dangling = heap_alloc(h, 64);
    KASSERT(keep != NULL && dangling != NULL);
    heap_free(h, dangling);
    /* Past the words a backend keeps in a free block (links, linked_list's poison watermark: 24 bytes). */
    KASSERT_EQ(dangling[40], HEAP_POISON_FREE); /* freed memory is poisoned */
    dangling[40] = 'u';
    expect_report("use-after-free write", dangling);
    void *again = heap_alloc(h, 64); /* reuses the block: reported */
    heap_free(h, again);
}

/* A free-list link overwritten, caught before it is followed. */
KTEST_EXPECT_PANIC(hardened_corrupted_free_list_is_caught)
{
    struct heap *h = own_heap();
    uint8_t *corrupt_a = heap_alloc(h, 64);
    uint8_t *corrupt_p = heap_alloc(h, 64);
    uint8_t *corrupt_b = heap_alloc(h, 64);
    KASSERT(corrupt_a != NULL && corrupt_p != NULL && corrupt_b != NULL);
    uintptr_t *corrupted_link;
    if (heap_is_arena(h)) {
        /* bump (an arena) has no free list: its link is the header word before the
           newest block, followed when that block is freed (rollback). The header's seal
           covers it, so the change is caught as corrupted metadata before any use. */
        heap_free(h, corrupt_p); /* not the newest: no rollback, nothing to follow */
        corrupted_link = (uintptr_t *)(void *)(corrupt_b - sizeof(uintptr_t));
        *corrupted_link ^= (uintptr_t)1 << 40;
        expect_report("corrupted heap metadata", corrupt_b);
        heap_free(h, corrupt_b);
    } else {
        heap_free(h, corrupt_p); /* between two used blocks: its links are its first words */
        corrupted_link = (uintptr_t *)(void *)corrupt_p;
        KASSERT(*corrupted_link != 0);                 /* stored mangled */
        *corrupted_link = (uintptr_t)(corrupt_a + 16); /* an attacker's plain pointer */
        /* Any kind naming corrupt_p: fixed_size_block reports a corrupted free list, linked_list
           (whose links are tagged, so it knows the word in corrupt_p's body was written) a
           use-after-free write; test_harden.c asserts each precisely. */
        static char text[64];
        ksnprintf(text, sizeof(text), " of %p (", (void *)corrupt_p);
        ktest_expect_panic_containing(text);
        void *again = heap_alloc(h, 64);
        heap_free(h, again);
    }
}

KTEST(hardened_fresh_blocks_are_filled_calloc_is_zero)
{
    HEAP_TEST_BEGIN();
    uint8_t *p = kmalloc(100);
    uint8_t *z = kcalloc(10, 10);
    KASSERT(p != NULL && z != NULL);
    for (size_t i = 0; i < 100; i++) {
        KASSERT_EQ(p[i], HEAP_POISON_ALLOC);
        KASSERT_EQ(z[i], 0);
    }
    kfree(p);
    kfree(z);
    HEAP_TEST_END();
}

KTEST(hardened_damage_stayed_in_the_private_heaps)
{
    /* Every error above was raised by a private heap: the kernel heap saw
       none, and is healthy, whatever runs after this file. */
    KASSERT_EQ(kmalloc_stats().errors_detected, 0);
    KASSERT_EQ(kmalloc_check(), 0);
    KASSERT(private_heap.heap == NULL); /* each test's heap was destroyed */
}

#endif /* KERNEL_HEAP_HARDENED */
