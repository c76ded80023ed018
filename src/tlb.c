#include "tlb.h"

#include <stdbool.h>

#include "cpu.h"
#include "memlayout.h"
#include "panic.h"
#include "smp.h"
#include "spinlock.h"
#include "trap.h"
#include "lapic.h"

#define CR4_PGE (1ull << 7)

static struct spinlock shootdown_lock = SPINLOCK_INIT("tlb shootdown");
/* The request being served; written by the initiator under shootdown_lock
   before any pending flag is set. */
static uint64_t request_virt;
static size_t request_pages;
static bool pending[SMP_MAX_CPUS];
static uint64_t answered[SMP_MAX_CPUS];

static void write_cr4(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory");
}

static void invalidate_local(uint64_t virt, size_t pages)
{
    if (pages > TLB_SHOOTDOWN_MAX_INVLPG) {
        /* Toggling CR4.PGE flushes every entry, global ones too (SDM vol. 3, 4.10.4.1). */
        uint64_t cr4 = read_cr4();
        write_cr4(cr4 & ~CR4_PGE);
        write_cr4(cr4);
        return;
    }
    for (size_t i = 0; i < pages; i++)
        invlpg(virt + i * PAGE_SIZE);
}

void tlb_shootdown_poll(void)
{
    unsigned me = smp_cpu_index();
    if (!__atomic_load_n(&pending[me], __ATOMIC_ACQUIRE))
        return;
    invalidate_local(request_virt, request_pages);
    answered[me]++;
    __atomic_store_n(&pending[me], false, __ATOMIC_RELEASE);
}

static void tlb_ipi(const struct trap_frame *frame)
{
    (void)frame;
    tlb_shootdown_poll();
}

void tlb_init(void)
{
    ipi_set_handler(TRAP_IPI_TLB, tlb_ipi);
}

uint64_t tlb_shootdowns_answered(unsigned cpu)
{
    return cpu < SMP_MAX_CPUS ? __atomic_load_n(&answered[cpu], __ATOMIC_RELAXED) : 0;
}

void tlb_shootdown(uint64_t virt, size_t pages)
{
    virt &= ~(PAGE_SIZE - 1);
    unsigned n = smp_cpu_count();
    if (n == 1) {
        invalidate_local(virt, pages);
        return;
    }
    unsigned long flags = spin_lock_irqsave(&shootdown_lock);
    unsigned me = smp_cpu_index();
    invalidate_local(virt, pages);
    request_virt = virt;
    request_pages = pages;
    for (unsigned i = 0; i < n; i++) {
        if (i == me)
            continue;
        __atomic_store_n(&pending[i], true, __ATOMIC_RELEASE);
        lapic_send_ipi(smp_cpu(i)->apic_id, LAPIC_ICR_FIXED | LAPIC_ICR_ASSERT | TRAP_IPI_TLB);
    }
    uint64_t start = rdtsc(), limit = smp_ms_to_cycles(TLB_SHOOTDOWN_TIMEOUT_MS);
    for (unsigned i = 0; i < n; i++) {
        while (__atomic_load_n(&pending[i], __ATOMIC_ACQUIRE)) {
            if (rdtsc() - start > limit)
                panic("tlb_shootdown: CPU %u did not acknowledge [%p, +%zu pages) within %d ms", i,
                      (void *)virt, pages, TLB_SHOOTDOWN_TIMEOUT_MS);
            cpu_relax();
        }
    }
    spin_unlock_irqrestore(&shootdown_lock, flags);
}
