/*
 * Where an application processor starts (INIT-SIPI-SIPI, Intel SDM vol. 3,
 * 8.4.4): in 16-bit real mode at CS:IP = (vector << 8):0, i.e. at the start
 * of the page below 1 MiB the BSP copied this code to. Linked into .rodata
 * as data: it only ever runs from that copy, so every address below is an
 * offset from trampoline_start, made linear with the page's base (EBX),
 * and the linear operands of lgdt and the far jumps are written into the
 * parameter block by the BSP (src/smp.c, src/trampoline.h).
 *
 *   16-bit: DS = CS, lgdt the trampoline's GDT, CR0.PE, far jump to
 *   32-bit: flat segments; CR4 (PAE, PGE), CR3 = the kernel's PML4 (the BSP
 *           identity-maps this page there for the switch), EFER.LME (+NXE),
 *           CR0.PG|WP (caches on), far jump to
 *   64-bit: RSP = the AP's own stack, call entry(cpu) in the kernel's
 *           higher half; it never returns.
 */
#include "trampoline.h"

#define CR0_PE    (1 << 0)
#define CR0_NW    (1 << 29)
#define CR0_CD    (1 << 30)
#define CR0_WP    (1 << 16)
#define CR0_PG    (1 << 31)
#define MSR_EFER  0xc0000080
#define OFF(sym)  ((sym) - trampoline_start)

    .section .rodata.trampoline, "a"
    .balign 16
    .global trampoline_start, trampoline_end, trampoline_params
    .global trampoline_gdt, trampoline_gdt_end, trampoline_pm32, trampoline_lm64
    .code16
trampoline_start:
    cli
    cld
    mov     %cs, %ax
    mov     %ax, %ds
    xor     %ebx, %ebx
    mov     %ax, %bx
    shl     $4, %ebx                    /* EBX = linear address of this page */
    lgdtl   OFF(trampoline_params) + TP_GDT_PTR
    mov     %cr0, %eax
    or      $CR0_PE, %eax
    mov     %eax, %cr0
    ljmpl   *(OFF(trampoline_params) + TP_FAR32)

    .code32
trampoline_pm32:
    mov     $TR_DATA, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     OFF(trampoline_params) + TP_CR4(%ebx), %eax
    mov     %eax, %cr4
    mov     OFF(trampoline_params) + TP_CR3(%ebx), %eax
    mov     %eax, %cr3
    mov     $MSR_EFER, %ecx
    mov     OFF(trampoline_params) + TP_EFER(%ebx), %eax
    xor     %edx, %edx
    wrmsr
    mov     %cr0, %eax
    and     $~(CR0_CD | CR0_NW), %eax
    or      $(CR0_PG | CR0_WP), %eax
    mov     %eax, %cr0
    ljmp    *(OFF(trampoline_params) + TP_FAR64)(%ebx)

    .code64
trampoline_lm64:
    mov     %ebx, %ebx                  /* zero-extend: the upper half is undefined here */
    mov     $TR_DATA, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     OFF(trampoline_params) + TP_STACK(%rbx), %rsp
    mov     OFF(trampoline_params) + TP_CPU(%rbx), %rdi
    mov     OFF(trampoline_params) + TP_ENTRY(%rbx), %rax
    xor     %ebp, %ebp                  /* end of the frame-pointer chain */
    call    *%rax
1:  cli
    hlt
    jmp     1b

    .balign 8
trampoline_gdt:
    .quad 0                             /* null */
    .quad 0x00cf9a000000ffff            /* TR_CODE32: 32-bit code, 4 GiB flat */
    .quad 0x00cf92000000ffff            /* TR_DATA: data, 4 GiB flat */
    .quad 0x00209a0000000000            /* TR_CODE64: 64-bit code */
trampoline_gdt_end:

    .balign 8
trampoline_params:
    .skip TP_SIZE
trampoline_end:

    .section .note.GNU-stack, "", @progbits
