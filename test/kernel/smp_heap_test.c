/*
 * The kernel heap on every CPU at once, for the image's backend and heap
 * mode (the suite builds one image per backend x mode and runs it under
 * the QEMU_SMP of the preset: 1, 2 or 4 CPUs):
 *
 *   - a stress: every CPU allocates, fills, verifies and frees blocks of
 *     mixed sizes, and hands some to the next CPU through a ring, which
 *     verifies and frees them (so blocks are freed by a CPU other than the
 *     one that allocated them); the exact heap counters and heap_check()
 *     are compared at the end;
 *   - allocation in interrupt context on every CPU: each CPU's local APIC
 *     timer (one-shot, re-armed at a random count) interrupts a
 *     kmalloc/kfree loop on that CPU, and the handler
 *     allocates, verifies and frees too (and hands blocks to the loop).
 *
 * Code on the APs never fails the test itself: it counts what went wrong
 * and the BSP asserts on the counts. Every wait has a timeout.
 */
#include "kheap_test.h"
#include "ksmp_test.h"

#include "cpu.h"
#include "kstring.h"
#include "lapic.h"
#include "smp.h"
#include "timer.h"
#include "trap.h"

#define WORK_TIMEOUT_MS 60000 /* generous: four vCPUs on two busy host cores are very slow */

struct block {
    uint8_t *p;
    size_t size;
    uint32_t seed; /* the allocating CPU in the top 8 bits */
};

static uint32_t block_seed(unsigned cpu, uint64_t counter)
{
    return (uint32_t)cpu << 24 | (uint32_t)(counter & 0xffffff);
}

/* Mostly small blocks, some medium, a few of several pages. */
static size_t stress_size(uint64_t *rng)
{
    uint64_t r = heap_rand(rng) % 100;
    if (r < 80)
        return 16 + heap_rand(rng) % 241;
    if (r < 98)
        return 257 + heap_rand(rng) % 1792;
    return 2049 + heap_rand(rng) % (14 * 1024);
}

/* --- Stress with blocks handed between CPUs --------------------------- */

#define STRESS_ROUNDS 4
#define STRESS_OPS    1500 /* per CPU and round */
#define STRESS_SLOTS  32
#define RING_SIZE     32

/* Single producer (CPU i), single consumer (CPU i + 1 mod n). */
struct ring {
    struct block items[RING_SIZE];
    unsigned head; /* written by the producer */
    unsigned tail; /* written by the consumer */
};

struct stress_cpu {
    unsigned index, ncpus;
    struct block slots[STRESS_SLOTS];
    uint64_t rng, counter;
    uint64_t allocs, frees, handed, received, foreign, errors, failed, check_problems;
    bool timed_out;
};

static struct ring rings[SMP_MAX_CPUS];
static struct stress_cpu stress_cpus[SMP_MAX_CPUS];
static struct ktest_barrier stress_barriers[2 * STRESS_ROUNDS];

static void stress_free(struct stress_cpu *c, struct block *b)
{
    if (!heap_verify(b->p, b->size, b->seed))
        c->errors++;
    kfree(b->p);
    c->frees++;
    b->p = NULL;
}

static bool ring_push(struct ring *r, const struct block *b)
{
    unsigned head = r->head;
    if (head - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) == RING_SIZE)
        return false;
    r->items[head % RING_SIZE] = *b;
    __atomic_store_n(&r->head, head + 1, __ATOMIC_RELEASE);
    return true;
}

static bool ring_pop(struct ring *r, struct block *b)
{
    unsigned tail = r->tail;
    if (tail == __atomic_load_n(&r->head, __ATOMIC_ACQUIRE))
        return false;
    *b = r->items[tail % RING_SIZE];
    __atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
    return true;
}

/* Verifies and frees a block that came through the ring. */
static void stress_receive(struct stress_cpu *c, struct block *b)
{
    c->received++;
    if (b->seed >> 24 != c->index)
        c->foreign++;
    stress_free(c, b);
}

static void stress_round(struct stress_cpu *c, struct ring *out, struct ring *in, unsigned round)
{
    for (unsigned op = 0; op < STRESS_OPS; op++) {
        uint64_t r = heap_rand(&c->rng) % 100;
        struct block *s = &c->slots[heap_rand(&c->rng) % STRESS_SLOTS];
        struct block got;
        if (r < 10) {
            if (ring_pop(in, &got))
                stress_receive(c, &got);
        } else if (s->p == NULL) {
            s->size = stress_size(&c->rng);
            s->seed = block_seed(c->index, c->counter++);
            s->p = kmalloc(s->size);
            if (s->p == NULL) {
                c->failed++;
                continue;
            }
            c->allocs++;
            heap_fill(s->p, s->size, s->seed);
        } else if (r < 35 && ring_push(out, s)) {
            c->handed++;
            s->p = NULL;
        } else {
            stress_free(c, s);
        }
        if (c->index == 0 && op == STRESS_OPS / 2 && kmalloc_check() != 0) /* while the others work */
            c->check_problems++;
    }
    for (unsigned i = 0; i < STRESS_SLOTS; i++)
        if (c->slots[i].p != NULL)
            stress_free(c, &c->slots[i]);
    /* Everyone has stopped handing blocks on: drain what is left for us. */
    if (!ktest_barrier_wait(&stress_barriers[2 * round], c->ncpus, WORK_TIMEOUT_MS)) {
        c->timed_out = true;
        return;
    }
    struct block got;
    while (ring_pop(in, &got))
        stress_receive(c, &got);
    /* Every ring is empty before anyone starts the next round. */
    if (!ktest_barrier_wait(&stress_barriers[2 * round + 1], c->ncpus, WORK_TIMEOUT_MS))
        c->timed_out = true;
}

static void stress_worker(void *arg)
{
    struct stress_cpu *c = arg;
    struct ring *out = &rings[c->index], *in = &rings[(c->index + c->ncpus - 1) % c->ncpus];
    for (unsigned round = 0; round < STRESS_ROUNDS && !c->timed_out; round++)
        stress_round(c, out, in, round);
}

KTEST(heap_stress_on_every_cpu_hands_blocks_between_cpus)
{
    HEAP_TEST_BEGIN();
    unsigned n = smp_cpu_count();
    memset(rings, 0, sizeof(rings));
    memset(stress_cpus, 0, sizeof(stress_cpus));
    memset(stress_barriers, 0, sizeof(stress_barriers));
    for (unsigned i = 0; i < n; i++)
        stress_cpus[i] = (struct stress_cpu){.index = i, .ncpus = n, .rng = 0x51ab + i};
    uint64_t t0 = rdtsc();
    ktest_on_all_cpus(stress_worker, stress_cpus, sizeof(stress_cpus[0]));
    uint64_t us = tsc_to_us(rdtsc() - t0);

    uint64_t allocs = 0, frees = 0, handed = 0, received = 0, foreign = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct stress_cpu *c = &stress_cpus[i];
        if (c->timed_out || c->errors || c->failed || c->check_problems)
            ktest_log("CPU %u: timed out %d, %llu bad blocks, %llu failed allocations, heap_check %llu", i,
                      c->timed_out, (unsigned long long)c->errors, (unsigned long long)c->failed,
                      (unsigned long long)c->check_problems);
        KASSERT(!c->timed_out);
        KASSERT_EQ(c->errors, 0);
        KASSERT_EQ(c->failed, 0);
        KASSERT_EQ(c->check_problems, 0);
        KASSERT(c->allocs > 0);
        allocs += c->allocs;
        frees += c->frees;
        handed += c->handed;
        received += c->received;
        foreign += c->foreign;
    }
    struct heap_stats after = kmalloc_stats();
    ktest_log("%s, %u CPUs: %llu blocks, %llu handed to another CPU, in %llu ms", kmalloc_backend_name(), n,
              (unsigned long long)allocs, (unsigned long long)handed, (unsigned long long)(us / 1000));
    KASSERT_EQ(frees, allocs);
    KASSERT_EQ(received, handed);
    KASSERT(handed > 0);
    KASSERT_EQ(foreign, n > 1 ? handed : 0); /* with one CPU the ring leads back to itself */
    KASSERT_EQ(after.total_allocs - heap_test_before_.total_allocs, allocs);
    KASSERT_EQ(after.total_frees - heap_test_before_.total_frees, frees);
    KASSERT_EQ(after.failed_allocs, heap_test_before_.failed_allocs);
    HEAP_TEST_END();
}

/* --- Allocation in interrupt context on every CPU --------------------- */

#define IRQ_ROUNDS     300 /* timer interrupts with a heap operation, per CPU */
#define IRQ_SLOTS      8
#define IRQ_TIMER_MIN  50   /* a one-shot timer of 50 .. 50 + IRQ_TIMER_SPAN x 16 bus clocks: */
#define IRQ_TIMER_SPAN 2000 /* it fires somewhere inside the next loop rounds */

struct irq_cpu {
    struct block slots[IRQ_SLOTS]; /* the handler's own blocks, kept across interrupts */
    struct block handoff;          /* a block the handler leaves for the loop to free */
    uint64_t rng;
    bool done;    /* set by the loop: the handler stops its timer and does nothing */
    bool armed;   /* the loop started the one-shot timer; the handler clears it */
    bool in_pair; /* the loop is between calling kmalloc and kfree returning */
    uint64_t rounds, irq_allocs, irq_frees, irq_errors, irq_failed, handed, mid_pair;
    uint64_t main_allocs, main_frees, main_errors, main_failed, taken;
    bool timed_out;
};

static struct irq_cpu irq_cpus[SMP_MAX_CPUS];

static void irq_free(struct irq_cpu *c, struct block *b)
{
    if (!heap_verify(b->p, b->size, b->seed))
        c->irq_errors++;
    kfree(b->p);
    c->irq_frees++;
    b->p = NULL;
}

/* The local APIC timer handler: one heap operation per interrupt, on the
   CPU it interrupted, in the middle of whatever that CPU's loop does. The
   loop re-arms a one-shot timer only after the handler has run, so however
   slow the handler (a vCPU the host preempts), it cannot be re-entered
   after every iret and starve the loop (a periodic timer could). */
static void timer_allocator(const struct trap_frame *frame)
{
    (void)frame;
    unsigned cpu = smp_cpu_index();
    struct irq_cpu *c = &irq_cpus[cpu];
    __atomic_store_n(&c->armed, false, __ATOMIC_RELAXED);
    if (__atomic_load_n(&c->done, __ATOMIC_RELAXED))
        return;
    if (c->in_pair)
        c->mid_pair++;
    struct block *s = &c->slots[heap_rand(&c->rng) % IRQ_SLOTS];
    if (s->p != NULL) {
        if (c->handoff.p == NULL && heap_rand(&c->rng) % 4 == 0) {
            c->handoff = *s; /* the loop verifies and frees it */
            c->handed++;
            s->p = NULL;
        } else {
            irq_free(c, s);
        }
    } else {
        s->size = 8 + heap_rand(&c->rng) % 600;
        s->seed = block_seed(cpu, c->rounds);
        s->p = kmalloc(s->size);
        if (s->p == NULL) {
            c->irq_failed++;
        } else {
            c->irq_allocs++;
            heap_fill(s->p, s->size, s->seed);
        }
    }
    __atomic_store_n(&c->rounds, c->rounds + 1, __ATOMIC_RELAXED);
}

/* Takes the handler's hand-off block, with interrupts off so the handler
   cannot fill the slot half-way through. */
static void take_handoff(struct irq_cpu *c)
{
    unsigned long flags = irq_save();
    struct block b = c->handoff;
    c->handoff.p = NULL;
    irq_restore(flags);
    if (b.p == NULL)
        return;
    if (!heap_verify(b.p, b.size, b.seed))
        c->main_errors++;
    kfree(b.p);
    c->main_frees++;
    c->taken++;
}

static void irq_worker(void *arg)
{
    struct irq_cpu *c = arg;
    uint64_t rng = 0x1e7 + smp_cpu_index(), counter = 0;
    uint64_t start = rdtsc(), limit = smp_ms_to_cycles(WORK_TIMEOUT_MS);
    while (__atomic_load_n(&c->rounds, __ATOMIC_RELAXED) < IRQ_ROUNDS) {
        if (rdtsc() - start > limit) {
            c->timed_out = true;
            break;
        }
        if (!__atomic_load_n(&c->armed, __ATOMIC_RELAXED)) {
            __atomic_store_n(&c->armed, true, __ATOMIC_RELAXED);
            lapic_timer_start_oneshot(TRAP_LAPIC_TIMER,
                                      IRQ_TIMER_MIN + (uint32_t)(heap_rand(&rng) % IRQ_TIMER_SPAN));
        }
        size_t n = 8 + heap_rand(&rng) % 300;
        uint32_t seed = block_seed(smp_cpu_index(), counter++);
        /* From the call to kmalloc to kfree's return: an interrupt that came
           while the heap lock was held (interrupts off) arrives when kmalloc
           drops it, still inside the pair. */
        __atomic_store_n(&c->in_pair, true, __ATOMIC_RELAXED);
        uint8_t *p = kmalloc(n);
        if (p == NULL) {
            __atomic_store_n(&c->in_pair, false, __ATOMIC_RELAXED);
            c->main_failed++;
            continue;
        }
        c->main_allocs++;
        heap_fill(p, n, seed);
        if (!heap_verify(p, n, seed))
            c->main_errors++;
        kfree(p);
        __atomic_store_n(&c->in_pair, false, __ATOMIC_RELAXED);
        c->main_frees++;
        take_handoff(c);
    }
    __atomic_store_n(&c->done, true, __ATOMIC_RELAXED);
    lapic_timer_stop();
    take_handoff(c);
    for (unsigned i = 0; i < IRQ_SLOTS; i++) /* the handler does nothing from now on */
        if (c->slots[i].p != NULL)
            irq_free(c, &c->slots[i]);
}

static void stop_timer_allocator(void *arg)
{
    (void)arg;
    ipi_set_handler(TRAP_LAPIC_TIMER, NULL);
}

KTEST(heap_allocation_in_interrupt_context_on_every_cpu)
{
    HEAP_TEST_BEGIN();
    KASSERT(lapic_ready());
    unsigned n = smp_cpu_count();
    memset(irq_cpus, 0, sizeof(irq_cpus));
    for (unsigned i = 0; i < n; i++)
        irq_cpus[i].rng = 0x7a11 + i;
    ipi_set_handler(TRAP_LAPIC_TIMER, timer_allocator);
    ktest_defer(stop_timer_allocator, NULL);
    uint64_t t0 = rdtsc();
    ktest_on_all_cpus(irq_worker, irq_cpus, sizeof(irq_cpus[0]));
    ktest_log("%u CPUs done in %llu ms", n, (unsigned long long)(tsc_to_us(rdtsc() - t0) / 1000));

    uint64_t allocs = 0, frees = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct irq_cpu *c = &irq_cpus[i];
        ktest_log(
            "CPU %u: %llu interrupts (%llu inside a kmalloc..kfree pair), %llu loop rounds, %llu blocks "
            "handed from the handler",
            i, (unsigned long long)c->rounds, (unsigned long long)c->mid_pair,
            (unsigned long long)c->main_allocs, (unsigned long long)c->handed);
        KASSERT(!c->timed_out);
        KASSERT(c->rounds >= IRQ_ROUNDS);
        KASSERT(c->mid_pair > 0); /* the interrupts really cut into the loop's heap work */
        KASSERT_EQ(c->irq_errors, 0);
        KASSERT_EQ(c->irq_failed, 0);
        KASSERT_EQ(c->main_errors, 0);
        KASSERT_EQ(c->main_failed, 0);
        KASSERT_EQ(c->taken, c->handed);
        allocs += c->irq_allocs + c->main_allocs;
        frees += c->irq_frees + c->main_frees;
    }
    struct heap_stats after = kmalloc_stats();
    KASSERT_EQ(frees, allocs);
    KASSERT_EQ(after.total_allocs - heap_test_before_.total_allocs, allocs);
    KASSERT_EQ(after.total_frees - heap_test_before_.total_frees, frees);
    HEAP_TEST_END();
}
