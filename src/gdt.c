#include "gdt.h"

#include <stdint.h>

#include "cpu.h"
#include "kstring.h"
#include "panic.h"
#include "smp.h"

/* Segment descriptor bits (Intel SDM vol. 3, 3.4.5). */
#define SEG_ACCESSED   (1ull << 40)
#define SEG_WRITABLE   (1ull << 41)
#define SEG_EXECUTABLE (1ull << 43)
#define SEG_CODE_DATA  (1ull << 44)
#define SEG_PRESENT    (1ull << 47)
#define SEG_LONG_MODE  (1ull << 53)
#define SEG_TSS_AVAIL  (9ull << 40)

struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));
_Static_assert(sizeof(struct tss) == 104, "TSS layout");

extern char df_stack_top[]; /* boot/entry.S: above an unmapped guard page */

#define GDT_ENTRIES 5

/* One GDT and TSS per CPU: the TSS holds the CPU's own IST stack, and a
   TSS descriptor is marked busy by ltr, so CPUs cannot share one. */
static struct tss tss_of[SMP_MAX_CPUS];
static uint64_t gdt_of[SMP_MAX_CPUS][GDT_ENTRIES] __attribute__((aligned(16)));
_Static_assert(GDT_TSS / 8 + 2 == GDT_ENTRIES, "TSS takes the last two slots");

void gdt_init(void)
{
    gdt_init_cpu(0, (uint64_t)(uintptr_t)df_stack_top);
}

void gdt_init_cpu(unsigned cpu, uint64_t df_stack)
{
    if (cpu >= SMP_MAX_CPUS)
        panic("gdt_init_cpu: CPU %u >= SMP_MAX_CPUS", cpu);
    struct tss *tss = &tss_of[cpu];
    uint64_t *gdt = gdt_of[cpu];
    memset(tss, 0, sizeof(*tss));
    tss->ist[IST_DOUBLE_FAULT - 1] = df_stack;
    tss->iomap_base = sizeof(*tss); /* no I/O permission bitmap */

    uint64_t base = (uint64_t)(uintptr_t)tss;
    uint64_t limit = sizeof(*tss) - 1;
    gdt[0] = 0;
    gdt[GDT_KERNEL_CODE / 8] =
        SEG_PRESENT | SEG_CODE_DATA | SEG_EXECUTABLE | SEG_WRITABLE | SEG_ACCESSED | SEG_LONG_MODE;
    gdt[GDT_KERNEL_DATA / 8] = SEG_PRESENT | SEG_CODE_DATA | SEG_WRITABLE | SEG_ACCESSED;
    gdt[GDT_TSS / 8] = SEG_PRESENT | SEG_TSS_AVAIL | (limit & 0xffff) | ((base & 0xffffff) << 16) |
                       ((base >> 24 & 0xff) << 56);
    gdt[GDT_TSS / 8 + 1] = base >> 32;

    struct descriptor_table_ptr ptr = {.limit = GDT_ENTRIES * sizeof(uint64_t) - 1,
                                       .base = (uint64_t)(uintptr_t)gdt};
    __asm__ volatile("lgdt %0\n\t"
                     "mov %w1, %%ds\n\t"
                     "mov %w1, %%es\n\t"
                     "mov %w1, %%ss\n\t"
                     "pushq %2\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\n\t"
                     "ltr %w3"
                     :
                     : "m"(ptr), "r"((uint16_t)GDT_KERNEL_DATA), "i"(GDT_KERNEL_CODE), "r"((uint16_t)GDT_TSS)
                     : "rax", "memory");
}
