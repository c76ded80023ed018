/*
 * Several CPUs: every CPU QEMU was given came up, each has its own per-CPU
 * data, stack, GDT and TSS, takes interrupts and runs remote calls; the
 * spin lock excludes under contention from all CPUs; a fault or panic on
 * another CPU comes back as the call's result; a page unmapped on one CPU
 * faults on another after the TLB shootdown. Every wait has a timeout, so
 * a broken CPU fails a test instead of hanging the run, and a CPU that
 * does not answer at start-up is reported and skipped. Tests that need two
 * CPUs pass trivially (with a note) under -smp 1.
 */
#include "kheap_test.h"
#include "ksmp_test.h"
#include "ktest.h"

#include "alloc/heap.h"
#include "alloc/kmalloc.h"
#include "console.h"
#include "cpu.h"
#include "fw_cfg.h"
#include "kernel.h"
#include "kernel_heap.h"
#include "kstring.h"
#include "lapic.h"
#include "memlayout.h"
#include "paging/heap_region.h"
#include "paging/paging.h"
#include "paging/pmm.h"
#include "panic.h"
#include "smp.h"
#include "spinlock.h"
#include "timer.h"
#include "tlb.h"
#include "trap.h"

#define TEST_VIRT_TLB 0x0000520000000000ull

KTEST(smp_every_cpu_came_up)
{
    unsigned expected = fw_cfg_cpu_count();
    KASSERT(expected > 0);
    ktest_log("%u CPUs online, QEMU -smp %u", smp_cpu_count(), expected);
    KASSERT_EQ(smp_cpu_count(), expected);
    for (unsigned i = 0; i < smp_cpu_count(); i++)
        KASSERT(smp_cpu(i)->online);
    KASSERT(smp_cpu(smp_cpu_count()) == NULL);
}

struct whoami {
    struct cpu *self;
    unsigned index;
    uint32_t apic_id;
    uint64_t stack;
    uint64_t gdt_base;
    uint16_t tr;
    bool interrupts;
};

static void whoami(void *arg)
{
    struct whoami *w = arg;
    struct descriptor_table_ptr gdtr;
    __asm__ volatile("sgdt %0" : "=m"(gdtr));
    __asm__ volatile("str %0" : "=r"(w->tr));
    w->self = this_cpu();
    w->index = smp_cpu_index();
    w->apic_id = lapic_id();
    w->stack = (uint64_t)(uintptr_t)&gdtr;
    w->gdt_base = gdtr.base;
    w->interrupts = interrupts_enabled();
}

KTEST(smp_per_cpu_data_stacks_and_gdts_are_distinct)
{
    static struct whoami w[SMP_MAX_CPUS];
    memset(w, 0, sizeof(w));
    ktest_on_all_cpus(whoami, w, sizeof(w[0]));
    unsigned n = smp_cpu_count();
    for (unsigned i = 0; i < n; i++) {
        KASSERT(w[i].self == smp_cpu(i));
        KASSERT_EQ(w[i].index, i);
        KASSERT_EQ(w[i].apic_id, smp_cpu(i)->apic_id);
        KASSERT(w[i].interrupts); /* remote calls run with interrupts on */
        if (i > 0) {              /* an AP runs on its own stack, in its own slot */
            KASSERT(w[i].stack < smp_cpu(i)->stack_top);
            KASSERT(w[i].stack >= smp_cpu(i)->stack_top - CPU_KSTACK_SIZE);
        }
        for (unsigned j = 0; j < i; j++) {
            KASSERT(w[i].apic_id != w[j].apic_id);
            KASSERT(w[i].gdt_base != w[j].gdt_base);
            KASSERT(w[i].self != w[j].self);
        }
    }
}

KTEST(smp_ap_stacks_sit_above_unmapped_guard_pages)
{
    if (!ktest_need_two_cpus())
        return;
    uint64_t phys;
    for (unsigned i = 1; i < smp_cpu_count(); i++) {
        const struct cpu *c = smp_cpu(i);
        KASSERT(!paging_translate(c->stack_top - CPU_KSTACK_SIZE - PAGE_SIZE, &phys, NULL));
        KASSERT(paging_translate(c->stack_top - CPU_KSTACK_SIZE, &phys, NULL));
        KASSERT(paging_translate(c->stack_top - 8, &phys, NULL));
        KASSERT(!paging_translate(c->stack_top, &phys, NULL)); /* below the double-fault stack */
        KASSERT(paging_translate(c->df_stack_top - 8, &phys, NULL));
    }
}

static void overflow(void *arg)
{
    (void)arg;
    ktest_overflow_stack();
}

KTEST(ap_stack_overflow_is_a_double_fault_on_its_own_ist)
{
    if (!ktest_need_two_cpus())
        return;
    /* The page fault on the guard page cannot push its frame, so the CPU
       takes a double fault on IST1 of its own TSS; the AP survives it. */
    unsigned last = smp_cpu_count() - 1;
    struct smp_call_result r;
    KASSERT_EQ(smp_call(last, overflow, NULL, &r), SMP_CALL_FAULT);
    KASSERT_EQ(r.fault.vector, TRAP_DOUBLE_FAULT);
    struct whoami w;
    KASSERT_EQ(smp_call(last, whoami, &w, NULL), SMP_CALL_OK);
    KASSERT_EQ(w.index, last);
}

struct lock_work {
    struct spinlock *lock;
    volatile uint64_t *counter;
    volatile int *inside;
    volatile bool *go;
    unsigned long rounds;
    unsigned long overlaps;
};

static void hammer(void *arg)
{
    struct lock_work *w = arg;
    while (!*w->go)
        cpu_relax();
    for (unsigned long i = 0; i < w->rounds; i++) {
        unsigned long flags = spin_lock_irqsave(w->lock);
        if (++*w->inside != 1)
            w->overlaps++;
        uint64_t v = *w->counter; /* a plain read-modify-write: only the lock makes it safe */
        cpu_relax();
        *w->counter = v + 1;
        --*w->inside;
        spin_unlock_irqrestore(w->lock, flags);
    }
}

KTEST(spin_lock_excludes_under_contention_from_every_cpu)
{
    static struct spinlock lock = SPINLOCK_INIT("test");
    static volatile uint64_t counter;
    static volatile int inside;
    static volatile bool go;
    static struct lock_work w[SMP_MAX_CPUS];
    const unsigned long rounds = 1000;
    unsigned n = smp_cpu_count();
    counter = 0;
    go = false;
    for (unsigned i = 0; i < n; i++)
        w[i] = (struct lock_work){&lock, &counter, &inside, &go, rounds, 0};
    for (unsigned i = 1; i < n; i++)
        KASSERT_EQ(smp_call_start(i, hammer, &w[i]), SMP_CALL_OK);
    go = true;
    hammer(&w[0]);
    for (unsigned i = 1; i < n; i++)
        KASSERT_EQ(smp_call_wait(i, KTEST_SMP_WAIT_MS, NULL), SMP_CALL_OK);
    for (unsigned i = 0; i < n; i++)
        KASSERT_EQ(w[i].overlaps, 0);
    KASSERT_EQ(counter, rounds * n);
    KASSERT(!spin_held(&lock));
}

KTEST_EXPECT_PANIC(spin_lock_taken_twice_on_one_cpu_panics)
{
    static struct spinlock lock = SPINLOCK_INIT("twice");
    ktest_expect_panic_containing("spin_lock: twice already held by this CPU");
    unsigned long flags = spin_lock_irqsave(&lock);
    spin_lock(&lock);
    spin_unlock_irqrestore(&lock, flags);
}

KTEST(ipis_reach_every_cpu)
{
    unsigned n = smp_cpu_count();
    for (unsigned i = 0; i < n; i++) {
        struct cpu *c = smp_cpu(i);
        uint64_t before = __atomic_load_n(&c->ipis, __ATOMIC_ACQUIRE);
        lapic_send_ipi(c->apic_id, LAPIC_ICR_FIXED | LAPIC_ICR_ASSERT | TRAP_IPI_TEST);
        uint64_t start = rdtsc(), limit = smp_ms_to_cycles(SMP_CALL_TIMEOUT_MS);
        while (__atomic_load_n(&c->ipis, __ATOMIC_ACQUIRE) == before && rdtsc() - start < limit)
            cpu_relax();
        KASSERT(__atomic_load_n(&c->ipis, __ATOMIC_ACQUIRE) > before);
    }
}

struct square {
    uint64_t in, out;
    unsigned cpu;
};

static void square(void *arg)
{
    struct square *s = arg;
    s->out = s->in * s->in;
    s->cpu = smp_cpu_index();
}

KTEST(remote_call_runs_on_the_cpu_asked_for)
{
    for (unsigned i = 0; i < smp_cpu_count(); i++) {
        struct square s = {.in = 1000 + i};
        KASSERT_EQ(smp_call(i, square, &s, NULL), SMP_CALL_OK);
        KASSERT_EQ(s.out, (1000 + i) * (1000 + i));
        KASSERT_EQ(s.cpu, i);
    }
    KASSERT_EQ(smp_call(smp_cpu_count(), square, NULL, NULL), SMP_CALL_NO_CPU);
}

static void touch(void *arg)
{
    *(volatile uint64_t *)arg = *(volatile uint64_t *)arg + 1;
}

static void panic_remotely(void *arg)
{
    panic("remote panic %d", *(int *)arg);
}

KTEST(remote_fault_and_panic_come_back_as_results)
{
    if (!ktest_need_two_cpus())
        return;
    unsigned last = smp_cpu_count() - 1;
    struct smp_call_result r;
    KASSERT_EQ(smp_call(last, touch, (void *)(uintptr_t)(KTEST_UNMAPPED_ADDR + 0x40), &r), SMP_CALL_FAULT);
    KASSERT_EQ(r.fault.vector, TRAP_PAGE_FAULT);
    KASSERT_EQ(r.fault.cr2, KTEST_UNMAPPED_ADDR + 0x40);
    int code = 77;
    KASSERT_EQ(smp_call(last, panic_remotely, &code, &r), SMP_CALL_PANIC);
    KASSERT(kstrstr(r.panic_message, "remote panic 77") != NULL);
    /* The CPU is back in its idle loop and takes the next call. */
    struct square s = {.in = 9};
    KASSERT_EQ(smp_call(last, square, &s, NULL), SMP_CALL_OK);
    KASSERT_EQ(s.out, 81);
}

struct peek {
    uint64_t addr, value;
};

static void peek(void *arg)
{
    struct peek *p = arg;
    p->value = *(volatile uint64_t *)(uintptr_t)p->addr;
}

KTEST(unmapped_page_faults_on_another_cpu_after_shootdown)
{
    if (!ktest_need_two_cpus())
        return;
    const unsigned other = 1;
    uint64_t frame = pmm_alloc_frame();
    KASSERT(frame != PMM_NO_FRAME);
    KASSERT_EQ(paging_map(TEST_VIRT_TLB, frame, PTE_WRITABLE | PTE_NO_EXECUTE), PAGING_OK);
    *(volatile uint64_t *)(uintptr_t)TEST_VIRT_TLB = 0x5eed5eed;

    /* The other CPU reads the page: now its TLB holds the translation. */
    struct peek p = {.addr = TEST_VIRT_TLB};
    KASSERT_EQ(smp_call(other, peek, &p, NULL), SMP_CALL_OK);
    KASSERT_EQ(p.value, 0x5eed5eed);

    uint64_t answered = tlb_shootdowns_answered(other);
    uint64_t phys;
    KASSERT_EQ(paging_unmap(TEST_VIRT_TLB, &phys), PAGING_OK);
    KASSERT_EQ(phys, frame);
    tlb_shootdown(TEST_VIRT_TLB, 1);

    struct smp_call_result r;
    p.value = 0;
    enum smp_call_status st = smp_call(other, peek, &p, &r);
    if (st == SMP_CALL_OK)
        ktest_log("CPU %u still read 0x%llx through a stale TLB entry", other, (unsigned long long)p.value);
    KASSERT_EQ(st, SMP_CALL_FAULT);
    KASSERT_EQ(r.fault.vector, TRAP_PAGE_FAULT);
    KASSERT_EQ(r.fault.cr2, TEST_VIRT_TLB);
    KASSERT_EQ(p.value, 0);
    KASSERT(tlb_shootdowns_answered(other) > answered);
    pmm_free_frame(frame);
}

struct heap_work {
    volatile bool *go;
    unsigned failures;
};

static void heap_churn(void *arg)
{
    struct heap_work *w = arg;
    void *keep[16] = {0};
    while (!*w->go)
        cpu_relax();
    for (unsigned i = 0; i < 500; i++) {
        unsigned slot = i % 16;
        kfree(keep[slot]);
        size_t size = 16 + (i * 37 + smp_cpu_index() * 101) % 700;
        keep[slot] = kmalloc(size);
        if (keep[slot] == NULL)
            w->failures++;
        else
            memset(keep[slot], (int)smp_cpu_index(), size);
    }
    for (unsigned slot = 0; slot < 16; slot++)
        kfree(keep[slot]);
}

KTEST(kernel_heap_is_usable_from_every_cpu_at_once)
{
    static volatile bool go;
    static struct heap_work w[SMP_MAX_CPUS];
    size_t live = kmalloc_stats().live_allocs;
    go = false;
    unsigned n = smp_cpu_count();
    for (unsigned i = 0; i < n; i++)
        w[i] = (struct heap_work){&go, 0};
    for (unsigned i = 1; i < n; i++)
        KASSERT_EQ(smp_call_start(i, heap_churn, &w[i]), SMP_CALL_OK);
    go = true;
    heap_churn(&w[0]);
    for (unsigned i = 1; i < n; i++)
        KASSERT_EQ(smp_call_wait(i, KTEST_SMP_WAIT_MS, NULL), SMP_CALL_OK);
    for (unsigned i = 0; i < n; i++)
        KASSERT_EQ(w[i].failures, 0);
    KASSERT_EQ(kmalloc_stats().live_allocs, live);
    KASSERT_EQ(kmalloc_check(), 0);
}

KTEST(cpu_that_does_not_answer_is_reported_and_skipped)
{
    /* An APIC id no CPU has (one past the highest online; never 0xff, the
       xAPIC broadcast id): INIT-SIPI-SIPI goes unanswered. */
    unsigned n = smp_cpu_count();
    uint32_t silent = 0;
    for (unsigned i = 0; i < n; i++)
        if (smp_cpu(i)->apic_id >= silent)
            silent = smp_cpu(i)->apic_id + 1;
    KASSERT(silent < 0xff);
    const uint64_t timeout_ms = 100;
    static char log[256];
    console_capture_begin(log, sizeof(log));
    uint64_t t0 = rdtsc();
    bool started = smp_start_cpu(kernel_boot_info(), silent, timeout_ms);
    uint64_t waited = tsc_to_us(rdtsc() - t0) / 1000;
    console_capture_end();
    ktest_log("APIC id %u: %s after %llu ms", silent, started ? "started" : "skipped",
              (unsigned long long)waited);
    KASSERT(!started);
    KASSERT(waited >= timeout_ms);
    char expected[96];
    ksnprintf(expected, sizeof(expected), "CPU with APIC id %u did not start within %llu ms: skipped", silent,
              (unsigned long long)timeout_ms);
    KASSERT(kstrstr(log, expected) != NULL);

    /* Nothing else changed: the same CPUs, each answering remote calls. */
    KASSERT_EQ(smp_cpu_count(), n);
    KASSERT(smp_cpu(n) == NULL);
    for (unsigned i = 0; i < n; i++) {
        struct square s = {.in = 3 + i};
        KASSERT_EQ(smp_call(i, square, &s, NULL), SMP_CALL_OK);
        KASSERT_EQ(s.out, (3 + i) * (3 + i));
        KASSERT_EQ(s.cpu, i);
    }
    /* The trampoline's identity mapping is gone again: nothing below 1 MiB is mapped. */
    uint64_t phys;
    for (uint64_t page = 0; page < 0x100000; page += PAGE_SIZE)
        KASSERT(!paging_translate(page, &phys, NULL));
    /* A running CPU is never sent INIT. */
    KASSERT(!smp_start_cpu(kernel_boot_info(), smp_cpu(n - 1)->apic_id, timeout_ms));
    KASSERT_EQ(smp_cpu_count(), n);
    struct square s = {.in = 5};
    KASSERT_EQ(smp_call(n - 1, square, &s, NULL), SMP_CALL_OK);
    KASSERT_EQ(s.out, 25);
}

/* Every caller of paging_unmap() that unmaps memory another CPU may have
   used must shoot it down before the frame is reused (paging.h): the heap
   region's release and shrink, and so kernel_heap_private_destroy() and
   the heap's env.release. Each page below is first read on every other
   CPU, so their TLBs hold it. */
#define TLB_WINDOW 8 /* private heap window (memlayout.h) */

/* True if CPU cpu faults reading virt. */
static bool faults_on(unsigned cpu, uint64_t virt)
{
    struct peek p = {.addr = virt};
    struct smp_call_result r;
    enum smp_call_status st = smp_call(cpu, peek, &p, &r);
    if (st == SMP_CALL_OK)
        ktest_log("CPU %u read %p through a stale TLB entry", cpu, (void *)virt);
    return st == SMP_CALL_FAULT && r.fault.vector == TRAP_PAGE_FAULT && r.fault.cr2 == virt;
}

/* True if CPU cpu reads value at virt. */
static bool reads_on(unsigned cpu, uint64_t virt, uint64_t value)
{
    struct peek p = {.addr = virt};
    return smp_call(cpu, peek, &p, NULL) == SMP_CALL_OK && p.value == value;
}

static void shrink_all(void *region)
{
    heap_region_shrink(region, SIZE_MAX);
}

KTEST(pages_a_heap_region_gives_back_fault_on_every_other_cpu)
{
    if (!ktest_need_two_cpus())
        return;
    static struct heap_region r;
    const size_t pages = 8;
    KASSERT(heap_region_init(&r, KERNEL_PRIVATE_HEAP_WINDOW_BASE(TLB_WINDOW), KERNEL_PRIVATE_HEAP_WINDOW_SPAN,
                             KERNEL_PRIVATE_HEAP_WINDOW_SPAN));
    uint64_t start;
    KASSERT_EQ(heap_region_grow(&r, pages, &start), PAGING_OK);
    ktest_defer(shrink_all, &r); /* whatever happens, the window is free for the next test */
    for (size_t i = 0; i < pages; i++)
        *(volatile uint64_t *)(uintptr_t)(start + i * PAGE_SIZE) = 0xab00 + i;
    for (unsigned cpu = 1; cpu < smp_cpu_count(); cpu++)
        for (size_t i = 0; i < pages; i++)
            KASSERT(reads_on(cpu, start + i * PAGE_SIZE, 0xab00 + i));

    heap_region_release(&r, start + 2 * PAGE_SIZE, 2); /* a hole: pages 2 and 3 */
    KASSERT_EQ(heap_region_shrink(&r, 2), 2);          /* the end: pages 6 and 7 */
    for (unsigned cpu = 1; cpu < smp_cpu_count(); cpu++) {
        for (size_t i = 0; i < pages; i++) {
            uint64_t va = start + i * PAGE_SIZE;
            bool gone = (i >= 2 && i <= 3) || i >= 6;
            KASSERT(gone ? faults_on(cpu, va) : reads_on(cpu, va, 0xab00 + i));
        }
    }
    KASSERT_EQ(heap_region_shrink(&r, pages), pages - 2);
    for (unsigned cpu = 1; cpu < smp_cpu_count(); cpu++)
        KASSERT(faults_on(cpu, start));
}

KTEST(destroyed_private_heap_faults_on_every_other_cpu)
{
    if (!ktest_need_two_cpus())
        return;
    static struct kernel_heap kh;
    struct heap *h = kernel_heap_private_create(&kh, NULL, KERNEL_PRIVATE_HEAP_WINDOW_BASE(TLB_WINDOW),
                                                KERNEL_PRIVATE_HEAP_WINDOW_SPAN, 16);
    KASSERT(h != NULL);
    ktest_defer(heap_test_destroy_private, &kh);
    uint64_t *block = heap_alloc(h, 64);
    KASSERT(block != NULL);
    *block = 0x600d;
    uint64_t va = (uint64_t)(uintptr_t)block;
    for (unsigned cpu = 1; cpu < smp_cpu_count(); cpu++)
        KASSERT(reads_on(cpu, va, 0x600d));
    kernel_heap_private_destroy(&kh);
    for (unsigned cpu = 1; cpu < smp_cpu_count(); cpu++)
        KASSERT(faults_on(cpu, va));
}
