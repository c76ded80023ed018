/*
 * The kernel's GDT: null, 64-bit kernel code, kernel data, and a TSS whose
 * IST1 stack is used for double faults (so a kernel stack overflow is
 * reported instead of triple-faulting).
 */
#ifndef KHEAP_GDT_H
#define KHEAP_GDT_H

#define GDT_KERNEL_CODE 0x08
#define GDT_KERNEL_DATA 0x10
#define GDT_TSS         0x18

/* IST slot (1-based, as the IDT encodes it) for the double-fault handler. */
#define IST_DOUBLE_FAULT 1

/* Loads the GDT, reloads the segment registers and loads the task register. */
void gdt_init(void);

#endif
