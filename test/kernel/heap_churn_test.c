/*
 * Heap stress, for every backend: a long random mix with every block's
 * contents verified, and allocation from the timer interrupt racing the
 * main loop (the heap lock disables interrupts, so neither can deadlock or
 * corrupt the other).
 */
#include "kheap_test.h"

#include "cpu.h"
#include "kstring.h"
#include "timer.h"

#define STRESS_SLOTS 512
#define STRESS_OPS   100000

struct slot {
    uint8_t *p;
    size_t size;
    uint32_t seed;
};

static struct slot slots[STRESS_SLOTS];

/* Sizes like real kernels ask for: mostly small, some medium, a few big. */
static size_t random_size(uint64_t *rng)
{
    uint64_t r = heap_rand(rng) % 100;
    if (r < 70)
        return 16 + heap_rand(rng) % 113;
    if (r < 95)
        return 129 + heap_rand(rng) % 1920;
    return 2048 + heap_rand(rng) % (62 * 1024);
}

/* Frees every slot, checking contents; returns how many were live. */
static size_t free_all_slots(void)
{
    size_t n = 0;
    for (size_t i = 0; i < STRESS_SLOTS; i++) {
        if (slots[i].p != NULL) {
            KASSERT(heap_verify(slots[i].p, slots[i].size, slots[i].seed));
            kfree(slots[i].p);
            slots[i].p = NULL;
            n++;
        }
    }
    return n;
}

KTEST(random_stress_keeps_every_block_intact)
{
    HEAP_TEST_BEGIN();
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    memset(slots, 0, sizeof(slots));
    uint64_t allocs = 0, reallocs = 0, frees = 0;
    /* The bump allocator reuses memory only when every block is free
       (docs/allocators.md), so it gets the workload in phases that end with
       everything freed, and must then start over at the same address. The
       other backends get one long phase. */
    bool bump = kmalloc_backend_is_arena();
    uint32_t phase = bump ? 2000 : STRESS_OPS;
    uint8_t *first_block = NULL;
    for (uint32_t op = 0; op < STRESS_OPS; op++) {
        if (op > 0 && op % phase == 0 && free_all_slots() > 0 && bump) {
            void *probe = kmalloc(16);
            KASSERT(probe != NULL);
            if (first_block == NULL)
                first_block = probe;
            KASSERT(probe == first_block); /* the heap was reset */
            kfree(probe);
        }
        struct slot *s = &slots[heap_rand(&rng) % STRESS_SLOTS];
        if (s->p != NULL) {
            /* Check only the ends of big blocks on most visits, all of it on free. */
            if (heap_rand(&rng) % 4 == 0) {
                size_t n = random_size(&rng);
                uint8_t *q = krealloc(s->p, n);
                KASSERT(q != NULL);
                size_t keep = n < s->size ? n : s->size;
                KASSERT(heap_verify(q, keep, s->seed));
                s->p = q;
                s->size = n;
                s->seed = op;
                heap_fill(q, n, op);
                reallocs++;
            } else {
                KASSERT(heap_verify(s->p, s->size, s->seed));
                kfree(s->p);
                s->p = NULL;
                frees++;
            }
        } else {
            s->size = random_size(&rng);
            if (heap_rand(&rng) % 8 == 0)
                s->p = kmalloc_aligned(s->size, (size_t)1 << (heap_rand(&rng) % 13));
            else
                s->p = kmalloc(s->size);
            KASSERT(s->p != NULL);
            KASSERT_EQ((uintptr_t)s->p % 16, 0);
            s->seed = op;
            heap_fill(s->p, s->size, op);
            allocs++;
        }
        if (op % 20000 == 0)
            KASSERT_EQ(kmalloc_check(), 0);
    }
    free_all_slots();
    ktest_log("%s: %llu allocations, %llu reallocations, %llu frees; peak %zu bytes in use",
              kmalloc_backend_name(), (unsigned long long)allocs, (unsigned long long)reallocs,
              (unsigned long long)frees, kmalloc_stats().peak_in_use);
    HEAP_TEST_END();
}

/* State shared with the timer interrupt. */
#define IRQ_SLOTS 16
#define IRQ_QUOTA 5000 /* ticks with a heap operation */
static struct slot irq_slots[IRQ_SLOTS];
static volatile uint64_t irq_rounds, irq_errors, irq_failed;
static uint64_t irq_rng;

/* Runs in the timer interrupt on every tick: frees or allocates one slot. */
static void tick_allocator(void *ctx)
{
    (void)ctx;
    /* Quota reached: return at once. A handler slower than the tick (a vCPU
       the host preempts) would otherwise run again right after each iret
       and never let the main loop see the quota. */
    if (irq_rounds >= IRQ_QUOTA)
        return;
    struct slot *s = &irq_slots[heap_rand(&irq_rng) % IRQ_SLOTS];
    if (s->p != NULL) {
        if (!heap_verify(s->p, s->size, s->seed))
            irq_errors++;
        kfree(s->p);
        s->p = NULL;
    } else {
        s->size = 8 + heap_rand(&irq_rng) % 600;
        s->seed = (uint32_t)irq_rounds;
        s->p = kmalloc(s->size);
        if (s->p == NULL)
            irq_failed++;
        else
            heap_fill(s->p, s->size, s->seed);
    }
    irq_rounds++;
}

KTEST(allocation_in_interrupt_context_races_the_main_loop)
{
    HEAP_TEST_BEGIN();
    memset(irq_slots, 0, sizeof(irq_slots));
    irq_rounds = irq_errors = irq_failed = 0;
    irq_rng = 42;
    uint32_t old_hz = timer_hz();
    timer_set_hz(20000); /* thousands of ticks in a fraction of a second */
    timer_set_tick_hook(tick_allocator, NULL);

    uint64_t rng = 7, main_ops = 0, main_errors = 0;
    while (irq_rounds < IRQ_QUOTA && main_ops < 50000000) {
        size_t n = 8 + heap_rand(&rng) % 300;
        uint8_t *p = kmalloc(n);
        KASSERT(p != NULL);
        heap_fill(p, n, (uint32_t)main_ops);
        if (!heap_verify(p, n, (uint32_t)main_ops))
            main_errors++;
        kfree(p);
        main_ops++;
    }
    timer_set_tick_hook(NULL, NULL);
    timer_set_hz(old_hz);
    for (size_t i = 0; i < IRQ_SLOTS; i++) {
        if (irq_slots[i].p != NULL) {
            KASSERT(heap_verify(irq_slots[i].p, irq_slots[i].size, irq_slots[i].seed));
            kfree(irq_slots[i].p);
        }
    }
    ktest_log("%s: %llu allocations in interrupt context, %llu in the main loop", kmalloc_backend_name(),
              (unsigned long long)irq_rounds, (unsigned long long)main_ops);
    KASSERT(irq_rounds >= IRQ_QUOTA);
    KASSERT_EQ(irq_errors, 0);
    KASSERT_EQ(irq_failed, 0);
    KASSERT_EQ(main_errors, 0);
    HEAP_TEST_END();
}
