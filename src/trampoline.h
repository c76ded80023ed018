/*
 * The AP start-up trampoline (boot/trampoline.S) and the parameter block
 * the BSP fills in the copy below 1 MiB before each INIT-SIPI-SIPI. Included
 * by the assembly (offsets only) and by src/smp.c (the struct, checked
 * against the offsets).
 */
#ifndef KHEAP_TRAMPOLINE_H
#define KHEAP_TRAMPOLINE_H

/* Offsets in the parameter block (struct trampoline_params). */
#define TP_GDT_PTR 0  /* lgdt operand: 16-bit limit, 32-bit linear base */
#define TP_FAR32   8  /* ljmpl operand to the 32-bit code: offset, selector */
#define TP_FAR64   16 /* ljmp operand to the 64-bit code: offset, selector */
#define TP_CR3     24
#define TP_CR4     28
#define TP_EFER    32
#define TP_STACK   40
#define TP_ENTRY   48
#define TP_CPU     56
#define TP_SIZE    64

/* Selectors of the trampoline's own GDT. */
#define TR_CODE32 0x08
#define TR_DATA   0x10
#define TR_CODE64 0x18

#ifndef __ASSEMBLER__
#include <stdint.h>

struct trampoline_params {
    uint16_t gdt_limit;
    uint32_t gdt_base;
    uint16_t pad0;
    uint32_t far32_offset;
    uint16_t far32_selector;
    uint16_t pad1;
    uint32_t far64_offset;
    uint16_t far64_selector;
    uint16_t pad2;
    uint32_t cr3; /* the kernel's PML4: must lie below 4 GiB (a 32-bit mov to CR3) */
    uint32_t cr4;
    uint32_t efer; /* LME (+ NXE) */
    uint32_t pad3;
    uint64_t stack; /* top of the AP's kernel stack */
    uint64_t entry; /* void entry(struct cpu *), never returns */
    uint64_t cpu;   /* its argument */
} __attribute__((packed));
_Static_assert(__builtin_offsetof(struct trampoline_params, far32_offset) == TP_FAR32, "TP_FAR32");
_Static_assert(__builtin_offsetof(struct trampoline_params, far64_offset) == TP_FAR64, "TP_FAR64");
_Static_assert(__builtin_offsetof(struct trampoline_params, cr3) == TP_CR3, "TP_CR3");
_Static_assert(__builtin_offsetof(struct trampoline_params, cr4) == TP_CR4, "TP_CR4");
_Static_assert(__builtin_offsetof(struct trampoline_params, efer) == TP_EFER, "TP_EFER");
_Static_assert(__builtin_offsetof(struct trampoline_params, stack) == TP_STACK, "TP_STACK");
_Static_assert(__builtin_offsetof(struct trampoline_params, entry) == TP_ENTRY, "TP_ENTRY");
_Static_assert(__builtin_offsetof(struct trampoline_params, cpu) == TP_CPU, "TP_CPU");
_Static_assert(sizeof(struct trampoline_params) == TP_SIZE, "TP_SIZE");

/* boot/trampoline.S: the code to copy, and labels inside it. */
extern const char trampoline_start[], trampoline_end[];
extern const char trampoline_params[], trampoline_gdt[], trampoline_gdt_end[];
extern const char trampoline_pm32[], trampoline_lm64[];
#endif

#endif
