/*
 * The local APIC of each CPU (Intel SDM vol. 3, chapter 11): its id, EOI,
 * and inter-processor interrupts through the ICR. xAPIC registers are
 * memory-mapped (mapped once at LAPIC_MMIO_BASE, uncached); with x2APIC
 * (CPUID.1:ECX bit 21) they are MSRs 0x800 + offset / 16 and the ICR is one
 * 64-bit MSR. lapic_init() picks the mode on the BSP and every AP uses the
 * same one. Each local APIC also has a timer (11.5.4), which the kernel uses
 * only to interrupt a CPU at random points of what it runs (tests, e.g. heap
 * allocation in interrupt context on every CPU at once).
 */
#ifndef KHEAP_LAPIC_H
#define KHEAP_LAPIC_H

#include <stdbool.h>
#include <stdint.h>

/* Register offsets in the xAPIC page (SDM vol. 3, table 11-1). */
#define LAPIC_REG_ID         0x020
#define LAPIC_REG_VER        0x030
#define LAPIC_REG_TPR        0x080
#define LAPIC_REG_EOI        0x0b0
#define LAPIC_REG_SVR        0x0f0
#define LAPIC_REG_ESR        0x280
#define LAPIC_REG_ICR_LO     0x300
#define LAPIC_REG_ICR_HI     0x310
#define LAPIC_REG_LVT_TIMER  0x320
#define LAPIC_REG_TIMER_INIT 0x380 /* initial count: writing it (re)starts the timer; 0 stops it */
#define LAPIC_REG_TIMER_DIV  0x3e0

/* LVT timer entry (SDM vol. 3, figure 11-8) and divide configuration (figure 11-10). */
#define LAPIC_LVT_MASKED   (1u << 16)
#define LAPIC_TIMER_DIV_16 0x3u

#define LAPIC_SVR_ENABLE (1u << 8)

/* ICR fields (SDM vol. 3, 11.6.1). */
#define LAPIC_ICR_FIXED             (0u << 8)
#define LAPIC_ICR_INIT              (5u << 8)
#define LAPIC_ICR_STARTUP           (6u << 8)
#define LAPIC_ICR_PENDING           (1u << 12) /* xAPIC only: delivery status */
#define LAPIC_ICR_ASSERT            (1u << 14)
#define LAPIC_ICR_XAPIC_DEST_SHIFT  24 /* in ICR_HI */
#define LAPIC_ICR_X2APIC_DEST_SHIFT 32 /* in the 64-bit ICR MSR */

#define MSR_IA32_APIC_BASE  0x1b
#define APIC_BASE_X2APIC    (1ull << 10)
#define APIC_BASE_ENABLE    (1ull << 11)
#define APIC_BASE_ADDR_MASK 0x000ffffffffff000ull
#define MSR_X2APIC_BASE     0x800
#define CPUID_1_ECX_X2APIC  (1u << 21)

/* On the BSP: maps the xAPIC page at lapic_phys (or switches to x2APIC when
   the CPU has it) and enables this CPU's local APIC with spurious vector
   TRAP_SPURIOUS. Panics if lapic_phys is not page-aligned or cannot be
   mapped. */
void lapic_init(uint64_t lapic_phys);
/* On an AP: enables its local APIC in the mode the BSP chose. */
void lapic_init_ap(void);
/* True once lapic_init() ran. */
bool lapic_ready(void);
/* True if the local APICs run in x2APIC mode. */
bool lapic_x2apic(void);
/* This CPU's APIC id. */
uint32_t lapic_id(void);
/* Signals the end of an interrupt the local APIC delivered. */
void lapic_eoi(void);
/* Sends an IPI: icr_low (delivery mode, level, vector) to apic_id, and
   waits (xAPIC) until the local APIC has sent it. */
void lapic_send_ipi(uint32_t apic_id, uint32_t icr_low);
/* Starts this CPU's local APIC timer once: one interrupt on vector
   (TRAP_IPI_BASE..0xfe, handled like an IPI: ipi_set_handler()) after
   count * 16 bus clocks, then it stops by itself. Requires lapic_init()
   (and lapic_init_ap() on an AP); count 0 stops it. */
void lapic_timer_start_oneshot(uint8_t vector, uint32_t count);
/* Stops this CPU's local APIC timer (masked, count 0). An interrupt it
   raised already may still arrive once interrupts are on. */
void lapic_timer_stop(void);

#endif
