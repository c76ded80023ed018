#include "lapic.h"

#include "cpu.h"
#include "memlayout.h"
#include "panic.h"
#include "paging/paging.h"
#include "trap.h"

static bool ready, x2apic;

static volatile uint32_t *xapic_reg(uint32_t offset)
{
    return (volatile uint32_t *)(uintptr_t)(LAPIC_MMIO_BASE + offset);
}

static uint32_t lapic_read(uint32_t offset)
{
    if (x2apic)
        return (uint32_t)rdmsr(MSR_X2APIC_BASE + offset / 16);
    return *xapic_reg(offset);
}

static void lapic_write(uint32_t offset, uint32_t value)
{
    if (x2apic)
        wrmsr(MSR_X2APIC_BASE + offset / 16, value);
    else
        *xapic_reg(offset) = value;
}

static void enable_this_cpu(void)
{
    uint64_t base = rdmsr(MSR_IA32_APIC_BASE) | APIC_BASE_ENABLE;
    if (x2apic)
        base |= APIC_BASE_X2APIC;
    wrmsr(MSR_IA32_APIC_BASE, base);
    lapic_write(LAPIC_REG_TPR, 0);
    lapic_write(LAPIC_REG_SVR, LAPIC_SVR_ENABLE | TRAP_SPURIOUS);
}

void lapic_init(uint64_t lapic_phys)
{
    if (lapic_phys == 0 || lapic_phys % PAGE_SIZE != 0)
        panic("lapic_init: local APIC address %p not page-aligned", (void *)lapic_phys);
    x2apic = (cpuid(1, 0).ecx & CPUID_1_ECX_X2APIC) != 0;
    uint64_t mapped;
    if (!x2apic && !paging_translate(LAPIC_MMIO_BASE, &mapped, NULL)) {
        enum paging_status st = paging_map(LAPIC_MMIO_BASE, lapic_phys,
                                           PTE_WRITABLE | PTE_NO_EXECUTE | PTE_CACHE_DISABLE | PTE_GLOBAL);
        if (st != PAGING_OK)
            panic("lapic_init: cannot map the local APIC at %p: %s", (void *)lapic_phys, paging_strerror(st));
    }
    enable_this_cpu();
    ready = true;
}

void lapic_init_ap(void)
{
    enable_this_cpu();
}

bool lapic_ready(void)
{
    return ready;
}

bool lapic_x2apic(void)
{
    return x2apic;
}

uint32_t lapic_id(void)
{
    uint32_t id = lapic_read(LAPIC_REG_ID);
    return x2apic ? id : id >> 24;
}

void lapic_eoi(void)
{
    lapic_write(LAPIC_REG_EOI, 0);
}

void lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
    if (x2apic) {
        wrmsr(MSR_X2APIC_BASE + LAPIC_REG_ICR_LO / 16,
              ((uint64_t)apic_id << LAPIC_ICR_X2APIC_DEST_SHIFT) | icr_low);
        return;
    }
    /* ICR_HI first: writing ICR_LO sends. Interrupts off in between, so a
       handler that sends an IPI cannot change the destination under us. */
    unsigned long flags = irq_save();
    while (*xapic_reg(LAPIC_REG_ICR_LO) & LAPIC_ICR_PENDING)
        cpu_relax();
    *xapic_reg(LAPIC_REG_ICR_HI) = apic_id << LAPIC_ICR_XAPIC_DEST_SHIFT;
    *xapic_reg(LAPIC_REG_ICR_LO) = icr_low;
    while (*xapic_reg(LAPIC_REG_ICR_LO) & LAPIC_ICR_PENDING)
        cpu_relax();
    irq_restore(flags);
}

void lapic_timer_start_oneshot(uint8_t vector, uint32_t count)
{
    lapic_write(LAPIC_REG_TIMER_DIV, LAPIC_TIMER_DIV_16);
    lapic_write(LAPIC_REG_LVT_TIMER, vector);
    lapic_write(LAPIC_REG_TIMER_INIT, count);
}

void lapic_timer_stop(void)
{
    lapic_write(LAPIC_REG_LVT_TIMER, LAPIC_LVT_MASKED);
    lapic_write(LAPIC_REG_TIMER_INIT, 0);
}
