/*
 * TLB shootdown: after a page is unmapped, every CPU must forget its
 * translation before the frame behind it is reused, or a CPU that cached
 * it keeps reading and writing memory that now belongs to someone else.
 *
 * tlb_shootdown() invalidates a range on this CPU, posts the range, sends
 * TRAP_IPI_TLB to every other online CPU and waits until each has run
 * invlpg over it and acknowledged. A CPU spinning on a lock with interrupts
 * off answers from the spin loop (tlb_shootdown_poll()), so a CPU that
 * holds a lock while it shoots down never waits for one that waits for
 * that lock. The wait has a timeout: a CPU that does not answer within
 * TLB_SHOOTDOWN_TIMEOUT_MS is a kernel bug and panics, naming the CPU.
 */
#ifndef KHEAP_TLB_H
#define KHEAP_TLB_H

#include <stddef.h>
#include <stdint.h>

#define TLB_SHOOTDOWN_TIMEOUT_MS 5000
/* Ranges longer than this flush the whole TLB (global pages too) instead. */
#define TLB_SHOOTDOWN_MAX_INVLPG 64

/* Invalidates the pages [virt, virt + pages * PAGE_SIZE) on every online
   CPU and returns once all have done so. The mapping must already be
   changed. May be called with interrupts off and with locks held (it takes
   the shootdown lock, last in the lock order, spinlock.h). Panics if a CPU
   does not acknowledge in time. */
void tlb_shootdown(uint64_t virt, size_t pages);
/* Answers a pending shootdown request for this CPU, if there is one. */
void tlb_shootdown_poll(void);
/* Number of shootdown requests this CPU has answered (for tests). */
uint64_t tlb_shootdowns_answered(unsigned cpu);
/* Installs the IPI handler (smp_init()). */
void tlb_init(void);

#endif
