/*
 * Thin wrappers around x86_64 instructions the kernel needs: port I/O,
 * control registers, MSRs, CPUID, TSC and interrupt-flag handling.
 */
#ifndef KHEAP_CPU_H
#define KHEAP_CPU_H

#include <stdbool.h>
#include <stdint.h>

#define RFLAGS_IF (1ul << 9)

/* The operand of lgdt/lidt: limit and linear base of a descriptor table. */
struct descriptor_table_ptr {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

static inline void outb(uint16_t port, uint8_t value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t value)
{
    __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t value)
{
    __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

static inline uint64_t read_cr0(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr0, %0" : "=r"(v));
    return v;
}

static inline uint64_t read_cr2(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

static inline uint64_t read_cr3(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}

static inline void write_cr3(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory");
}

static inline uint64_t read_cr4(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}

static inline void invlpg(uintptr_t virt)
{
    __asm__ volatile("invlpg (%0)" : : "r"(virt) : "memory");
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t value)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}

struct cpuid_regs {
    uint32_t eax, ebx, ecx, edx;
};

static inline struct cpuid_regs cpuid(uint32_t leaf, uint32_t subleaf)
{
    struct cpuid_regs r;
    __asm__ volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx) : "a"(leaf), "c"(subleaf));
    return r;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t read_rflags(void)
{
    uint64_t flags;
    __asm__ volatile("pushfq; pop %0" : "=r"(flags) : : "memory");
    return flags;
}

static inline bool interrupts_enabled(void)
{
    return (read_rflags() & RFLAGS_IF) != 0;
}

static inline void cli(void)
{
    __asm__ volatile("cli" : : : "memory");
}
static inline void sti(void)
{
    __asm__ volatile("sti" : : : "memory");
}
static inline void hlt(void)
{
    __asm__ volatile("hlt" : : : "memory");
}
static inline void cpu_relax(void)
{
    __asm__ volatile("pause" : : : "memory");
}

/* Disables interrupts and returns the previous RFLAGS for irq_restore(). */
static inline unsigned long irq_save(void)
{
    unsigned long flags = read_rflags();
    cli();
    return flags;
}

/* Re-enables interrupts only if they were enabled when irq_save() ran. */
static inline void irq_restore(unsigned long flags)
{
    if (flags & RFLAGS_IF)
        sti();
}

#endif
