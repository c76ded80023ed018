/*
 * Interrupts and CPU exceptions: the IDT, the saved-register frame that
 * src/isr.S builds, exception reports and IRQ handler registration.
 */
#ifndef KHEAP_TRAP_H
#define KHEAP_TRAP_H

#include <stdint.h>

#define TRAP_EXCEPTIONS  32 /* vectors 0..31 are CPU exceptions */
#define TRAP_IRQ_BASE    32 /* PIC IRQ n arrives on vector 32 + n */
#define TRAP_IRQS        16
/* Vectors 0xf0..0xff come from local APICs: inter-processor interrupts and the APIC timer. */
#define TRAP_IPI_BASE    0xf0
#define TRAP_IPIS        16
#define TRAP_IPI_CALL    0xf0 /* wakes a CPU for a remote call (smp.c) */
#define TRAP_IPI_TLB     0xf1 /* TLB shootdown (tlb.c) */
#define TRAP_IPI_TEST    0xf2 /* for tests: counts, then EOI */
#define TRAP_LAPIC_TIMER 0xf3 /* the local APIC timer (lapic.h), for tests: handler installed by them */
#define TRAP_SPURIOUS    0xff /* the local APIC's spurious vector: no EOI */

enum trap_vector {
    TRAP_DIVIDE_ERROR = 0,
    TRAP_DEBUG = 1,
    TRAP_NMI = 2,
    TRAP_BREAKPOINT = 3,
    TRAP_INVALID_OPCODE = 6,
    TRAP_DOUBLE_FAULT = 8,
    TRAP_GENERAL_PROTECTION = 13,
    TRAP_PAGE_FAULT = 14,
};

/* Page-fault error code bits (Intel SDM vol. 3, 4.7). */
#define PF_PRESENT        (1u << 0) /* 0: page not present, 1: protection violation */
#define PF_WRITE          (1u << 1)
#define PF_USER           (1u << 2)
#define PF_RESERVED       (1u << 3)
#define PF_INSTR_FETCH    (1u << 4)
#define PF_PROTECTION_KEY (1u << 5)

/* What isr_common leaves on the stack, lowest address first. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

/* Everything a report or a test needs to know about a fatal exception. */
struct trap_info {
    uint64_t vector;
    uint64_t error_code;
    uint64_t rip;
    uint64_t cr2;
};

typedef void (*irq_handler_fn)(const struct trap_frame *frame);

/* Builds and loads the IDT: every exception vector, IRQs 0..15, IPIs. */
void idt_init(void);
/* Loads the IDT idt_init() built on this CPU (an AP). */
void idt_load(void);
/* Installs the handler for PIC IRQ irq (0..15), replacing any previous one. */
void irq_set_handler(unsigned irq, irq_handler_fn handler);
/* Installs the handler for IPI vector (TRAP_IPI_BASE..0xfe); it runs with
   interrupts off and the local APIC's EOI is sent after it returns. */
void ipi_set_handler(unsigned vector, irq_handler_fn handler);
/* Returns the exception's name ("Page Fault"), or "Unknown" past vector 31. */
const char *trap_name(uint64_t vector);
/* Number of breakpoints (int3) handled since boot; int3 reports and continues. */
uint64_t trap_breakpoint_count(void);
/* Depth of IRQ handlers currently running (0 in normal code). */
unsigned trap_irq_depth(void);
/* Forgets IRQ handlers that were left without returning (the test harness
   jumps out of a handler that panicked); their EOI was already sent. */
void trap_forget_irq_handlers(void);

/* Called (after the report) for a fatal exception; the test harness installs
   one that ends the current test instead of the kernel. NULL by default. */
extern void (*fault_hook)(const struct trap_info *info);

#endif
