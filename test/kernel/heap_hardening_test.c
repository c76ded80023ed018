/*
 * The hardened heap (KHEAP_HARDENING, docs/hardening.md), in the kernel:
 * one expected-panic test per kind of error, run for every backend by the
 * ktest-<backend>-hardened images. Each asserts the kind of error AND the
 * pointer in the panic message. Cleanups registered with ktest_defer()
 * undo the damage after the panic, so the tests after these still see a
 * healthy heap (HEAP_TEST_END checks it). In the plain images this file
 * only checks that nothing is reported.
 *
 * Order matters for bump: a block quarantined by the use-after-free test
 * stays allocated for good (a dangling pointer may still write to it), so
 * the bump heap can no longer reset. The clean churn runs first in this
 * file, and this file sorts after heap_churn_test.c, whose stress relies on
 * bump resets.
 */
#include "kheap_test.h"

#include "alloc/heap_backend.h"
#include "kernel_heap.h"
#include "kstring.h"
#include "paging/heap_region.h"

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
            for (size_t j = 0; j < 256; j++) {     /* bump: reset phases (docs/allocators.md) */
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

static void deferred_kfree(void *p)
{
    kfree(p);
}

static bool is_arena(void)
{
    return kmalloc_backend_is_arena();
}

KTEST_EXPECT_PANIC(hardened_double_free_is_caught)
{
    void *keep = kmalloc(10);   /* bump: the first free is a rollback, not a reset */
    uint8_t *p = kmalloc(100);
    KASSERT(keep != NULL && p != NULL);
    ktest_defer(deferred_kfree, keep);
    kfree(p);
    expect_report("double free", p);
    kfree(p);
}

KTEST_EXPECT_PANIC(hardened_interior_free_is_caught)
{
    uint8_t *p = kmalloc(200);
    KASSERT(p != NULL);
    ktest_defer(deferred_kfree, p);
    expect_report("invalid free", p + 16);
    kfree(p + 16);
}

KTEST_EXPECT_PANIC(hardened_free_of_a_stack_address_is_caught)
{
    int local[4] = { 0 };
    expect_report("invalid free", local);
    kfree(local);
}

static int global_object[8];

KTEST_EXPECT_PANIC(hardened_free_of_a_global_is_caught)
{
    expect_report("invalid free", global_object);
    kfree(global_object);
}

KTEST_EXPECT_PANIC(hardened_free_outside_the_heap_is_caught)
{
    /* Past the mapped end of the heap region: must be rejected unread. */
    void *past = (void *)(uintptr_t)(heap_region_end(kernel_heap_region()) + 4096);
    expect_report("invalid free", past);
    kfree(past);
}

/* One byte written past the requested size, undone after the panic. */
static uint8_t *overflowed;
static uint8_t overflowed_saved;
static size_t overflowed_size;

static void repair_overflow(void *arg)
{
    (void)arg;
    overflowed[overflowed_size] = overflowed_saved;
    kfree(overflowed);
}

KTEST_EXPECT_PANIC(hardened_overflow_by_one_byte_is_caught)
{
    overflowed_size = 37;
    overflowed = kmalloc(overflowed_size);
    KASSERT(overflowed != NULL);
    KASSERT_EQ(kmalloc_usable_size(overflowed), overflowed_size);  /* the canary follows */
    memset(overflowed, 'x', overflowed_size);                       /* all of it is ours */
    overflowed_saved = overflowed[overflowed_size];
    ktest_defer(repair_overflow, NULL);
    overflowed[overflowed_size] = (uint8_t)~overflowed_saved;      /* off by one */
    expect_report("heap overflow", overflowed);
    kfree(overflowed);
}

/* A write through a dangling pointer, caught when the block is reused. */
static uint8_t *dangling;
static void *dangling_keep;

static void repair_use_after_free(void *arg)
{
    (void)arg;
    dangling[20] = HEAP_POISON_FREE;
    kfree(dangling_keep);
}

KTEST_EXPECT_PANIC(hardened_use_after_free_write_is_caught_on_reuse)
{
    dangling_keep = kmalloc(10);
    dangling = kmalloc(64);
    KASSERT(dangling_keep != NULL && dangling != NULL);
    kfree(dangling);
    KASSERT_EQ(dangling[20], HEAP_POISON_FREE);     /* freed memory is poisoned */
    ktest_defer(repair_use_after_free, NULL);
    dangling[20] = 'u';
    expect_report("use-after-free write", dangling);
    void *again = kmalloc(64);                      /* reuses the block: reported */
    kfree(again);
}

/* A free-list link overwritten, caught before it is followed. */
static uintptr_t *corrupted_link;
static uintptr_t corrupted_saved;
static uint8_t *corrupt_a, *corrupt_p, *corrupt_b;

static void repair_free_list(void *arg)
{
    (void)arg;
    *corrupted_link = corrupted_saved;
    kfree(corrupt_a);
    kfree(corrupt_b);       /* arena: its free was refused; others: never freed */
}

KTEST_EXPECT_PANIC(hardened_corrupted_free_list_is_caught)
{
    corrupt_a = kmalloc(64);
    corrupt_p = kmalloc(64);
    corrupt_b = kmalloc(64);
    KASSERT(corrupt_a != NULL && corrupt_p != NULL && corrupt_b != NULL);
    ktest_defer(repair_free_list, NULL);
    if (is_arena()) {
        /* bump (an arena) has no free list: its link is the header word before the
           newest block, followed when that block is freed (rollback). */
        kfree(corrupt_p);   /* not the newest: no rollback, nothing to follow */
        corrupted_link = (uintptr_t *)(void *)(corrupt_b - sizeof(uintptr_t));
        corrupted_saved = *corrupted_link;
        *corrupted_link ^= 0x40;
        expect_report("corrupted free list", corrupt_b);
        kfree(corrupt_b);
    } else {
        kfree(corrupt_p);   /* between two used blocks: its links are its first words */
        corrupted_link = (uintptr_t *)(void *)corrupt_p;
        corrupted_saved = *corrupted_link;
        KASSERT(corrupted_saved != 0);                      /* stored mangled */
        *corrupted_link = (uintptr_t)(corrupt_a + 16);      /* an attacker's plain pointer */
        expect_report("corrupted free list", corrupt_p);
        void *again = kmalloc(64);
        kfree(again);
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

#endif /* KERNEL_HEAP_HARDENED */

