/*
 * Each CPU's GDT: null, 64-bit kernel code, kernel data, and a TSS whose
 * IST1 stack is used for double faults (so a kernel stack overflow is
 * reported instead of triple-faulting).
 */
#ifndef KHEAP_GDT_H
#define KHEAP_GDT_H

#include <stdint.h>

#define GDT_KERNEL_CODE 0x08
#define GDT_KERNEL_DATA 0x10
#define GDT_TSS         0x18

/* IST slot (1-based, as the IDT encodes it) for the double-fault handler. */
#define IST_DOUBLE_FAULT 1

/* On the boot CPU: gdt_init_cpu(0, the double-fault stack of boot/entry.S). */
void gdt_init(void);
/* Loads CPU cpu's own GDT and TSS (IST1 = df_stack, the top of its
   double-fault stack), reloads the segment registers and the task register.
   Panics if cpu >= SMP_MAX_CPUS. */
void gdt_init_cpu(unsigned cpu, uint64_t df_stack);

#endif
