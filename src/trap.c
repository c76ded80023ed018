#include "trap.h"

#include <stdbool.h>

#include "cpu.h"
#include "gdt.h"
#include "kprintf.h"
#include "lapic.h"
#include "panic.h"
#include "pic.h"
#include "qemu.h"
#include "smp.h"

#define IDT_ENTRIES    256
#define IDT_STUBS      (TRAP_EXCEPTIONS + TRAP_IRQS)
#define GATE_INTERRUPT 0x8e /* present, DPL 0, 64-bit interrupt gate */

_Static_assert(sizeof(struct trap_frame) == 22 * 8, "matches src/isr.S");

struct idt_entry {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct idt_entry) == 16, "IDT gate layout");

extern const uint64_t isr_stubs[IDT_STUBS]; /* src/isr.S */
extern const uint64_t ipi_stubs[TRAP_IPIS]; /* src/isr.S */

static struct idt_entry idt[IDT_ENTRIES] __attribute__((aligned(16)));
static irq_handler_fn irq_handlers[TRAP_IRQS];
static irq_handler_fn ipi_handlers[TRAP_IPIS];
static uint64_t breakpoints;
static unsigned irq_depth;

void (*fault_hook)(const struct trap_info *info);

static const char *const exception_names[TRAP_EXCEPTIONS] = {
    "Divide Error",
    "Debug",
    "Non-Maskable Interrupt",
    "Breakpoint",
    "Overflow",
    "BOUND Range Exceeded",
    "Invalid Opcode",
    "Device Not Available",
    "Double Fault",
    "Coprocessor Segment Overrun",
    "Invalid TSS",
    "Segment Not Present",
    "Stack-Segment Fault",
    "General Protection Fault",
    "Page Fault",
    "Reserved (15)",
    "x87 Floating-Point Error",
    "Alignment Check",
    "Machine Check",
    "SIMD Floating-Point Exception",
    "Virtualization Exception",
    "Control Protection Exception",
    "Reserved (22)",
    "Reserved (23)",
    "Reserved (24)",
    "Reserved (25)",
    "Reserved (26)",
    "Reserved (27)",
    "Hypervisor Injection Exception",
    "VMM Communication Exception",
    "Security Exception",
    "Reserved (31)",
};

const char *trap_name(uint64_t vector)
{
    return vector < TRAP_EXCEPTIONS ? exception_names[vector] : "Unknown";
}

uint64_t trap_breakpoint_count(void)
{
    return breakpoints;
}

unsigned trap_irq_depth(void)
{
    return irq_depth;
}

void trap_forget_irq_handlers(void)
{
    irq_depth = 0;
}

static void idt_set_gate(unsigned vector, uint64_t handler, uint8_t ist)
{
    idt[vector] = (struct idt_entry){
        .offset_low = handler & 0xffff,
        .selector = GDT_KERNEL_CODE,
        .ist = ist,
        .type_attr = GATE_INTERRUPT,
        .offset_mid = (handler >> 16) & 0xffff,
        .offset_high = handler >> 32,
    };
}

void idt_init(void)
{
    for (unsigned v = 0; v < IDT_STUBS; v++)
        idt_set_gate(v, isr_stubs[v], v == TRAP_DOUBLE_FAULT ? IST_DOUBLE_FAULT : 0);
    for (unsigned i = 0; i < TRAP_IPIS; i++)
        idt_set_gate(TRAP_IPI_BASE + i, ipi_stubs[i], 0);
    idt_load();
}

void idt_load(void)
{
    struct descriptor_table_ptr ptr = {.limit = sizeof(idt) - 1, .base = (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(ptr) : "memory");
}

void irq_set_handler(unsigned irq, irq_handler_fn handler)
{
    kassert(irq < TRAP_IRQS);
    irq_handlers[irq] = handler;
}

void ipi_set_handler(unsigned vector, irq_handler_fn handler)
{
    kassert(vector >= TRAP_IPI_BASE && vector < TRAP_SPURIOUS);
    ipi_handlers[vector - TRAP_IPI_BASE] = handler;
}

static void print_page_fault_bits(uint64_t err)
{
    kprintf("  cause: %s, %s access, %s mode%s%s%s\n",
            (err & PF_PRESENT) ? "protection violation" : "page not present",
            (err & PF_INSTR_FETCH) ? "instruction fetch"
            : (err & PF_WRITE)     ? "write"
                                   : "read",
            (err & PF_USER) ? "user" : "supervisor", (err & PF_RESERVED) ? ", reserved bit set" : "",
            (err & PF_PROTECTION_KEY) ? ", protection key" : "", "");
}

static void report_exception(const struct trap_frame *f, uint64_t cr2)
{
    kprintf("\nEXCEPTION %llu (%s) error code 0x%llx on CPU %u\n", (unsigned long long)f->vector,
            trap_name(f->vector), (unsigned long long)f->error_code, smp_cpu_index());
    kprintf("  rip %p  rsp %p  rflags 0x%llx  cs 0x%llx\n", (void *)f->rip, (void *)f->rsp,
            (unsigned long long)f->rflags, (unsigned long long)f->cs);
    if (f->vector == TRAP_PAGE_FAULT) {
        kprintf("  cr2 %p\n", (void *)cr2);
        print_page_fault_bits(f->error_code);
    }
    kprintf("  cr3 %p\n", (void *)read_cr3());
    kprintf("  rax %p rbx %p rcx %p rdx %p\n", (void *)f->rax, (void *)f->rbx, (void *)f->rcx,
            (void *)f->rdx);
    kprintf("  rsi %p rdi %p rbp %p r8  %p\n", (void *)f->rsi, (void *)f->rdi, (void *)f->rbp, (void *)f->r8);
    print_backtrace(f->rbp);
}

static void handle_exception(struct trap_frame *f)
{
    uint64_t cr2 = read_cr2();
    if (f->vector == TRAP_BREAKPOINT) {
        breakpoints++;
        kprintf("breakpoint at %p, continuing\n", (void *)f->rip);
        return;
    }
    report_exception(f, cr2);
    struct trap_info info = {
        .vector = f->vector,
        .error_code = f->error_code,
        .rip = f->rip,
        .cr2 = cr2,
    };
    if (smp_cpu_index() != 0)
        smp_catch_fault(&info); /* returns only outside a remote call */
    else if (fault_hook != NULL)
        fault_hook(&info);
    qemu_exit(QEMU_EXIT_FAILURE);
}

static void handle_irq(struct trap_frame *f)
{
    unsigned irq = (unsigned)(f->vector - TRAP_IRQ_BASE);
    if (pic_is_spurious(irq))
        return;
    irq_depth++;
    /* Acknowledge first: a handler that never returns (a test ending in a
       panic) must not leave the PIC waiting for an EOI forever. */
    pic_eoi(irq);
    if (irq_handlers[irq] != NULL)
        irq_handlers[irq](f);
    irq_depth--;
}

void interrupt_dispatch(struct trap_frame *frame);

static void handle_ipi(struct trap_frame *f)
{
    if (f->vector == TRAP_SPURIOUS)
        return; /* the local APIC wants no EOI for it */
    this_cpu()->ipis++;
    irq_handler_fn handler = ipi_handlers[f->vector - TRAP_IPI_BASE];
    if (handler != NULL)
        handler(f);
    lapic_eoi();
}

void interrupt_dispatch(struct trap_frame *frame)
{
    if (frame->vector < TRAP_EXCEPTIONS)
        handle_exception(frame);
    else if (frame->vector >= TRAP_IPI_BASE)
        handle_ipi(frame);
    else
        handle_irq(frame);
}
