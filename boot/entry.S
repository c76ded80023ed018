/*
 * 32-bit entry point and the switch to long mode.
 *
 * GRUB jumps to _start in 32-bit protected mode, paging off, with the
 * multiboot2 magic in EAX and the physical address of the boot information in
 * EBX (Multiboot2 specification, section 3.3). We:
 *   1. check the magic and that the CPU supports long mode, printing a clear
 *      message on COM1 and VGA and halting if not;
 *   2. build the boot page tables (see below), enable PAE, EFER.LME (+NXE when
 *      the CPU has it), paging and CR0.WP;
 *   3. load a 64-bit GDT and far-jump to 64-bit code;
 *   4. switch to the higher-half stack and call kernel_entry(magic, info).
 *
 * Boot page tables (all in .bss, reached here through their physical address):
 *   PML4[0]   -> identity map of physical 0..4 GiB with 2 MiB pages (so this
 *                code keeps running after paging is on, and the boot
 *                information is reachable wherever GRUB put it below 4 GiB);
 *   PML4[256] -> the same 4 GiB at DIRECT_MAP_BASE (0xffff800000000000);
 *   PML4[511] -> PDPT[510] -> the kernel window at KERNEL_VMA, physical
 *                0..4 MiB with 4 KiB pages, except the guard page below each
 *                kernel stack, which stays unmapped so overflowing a stack
 *                faults instead of silently corrupting .bss.
 * src/paging/ replaces all of this with the kernel's own tables.
 */
#include "memlayout.h"

#define V2P(a)              ((a) - KERNEL_VMA)
/* The table slots of the boot mappings, from the addresses in memlayout.h. */
#define PML4_INDEX(a)       (((a) >> 39) & 511)
#define PDPT_INDEX(a)       (((a) >> 30) & 511)

#define MB2_BOOT_MAGIC      0x36d76289
#define CPUID_EXT_MAX       0x80000000
#define CPUID_EXT_FEATURES  0x80000001
#define CPUID_EDX_LM        (1 << 29)
#define CPUID_EDX_NX        (1 << 20)
#define MSR_EFER            0xc0000080
#define EFER_LME            (1 << 8)
#define EFER_NXE            (1 << 11)
#define CR0_PE              (1 << 0)
#define CR0_WP              (1 << 16)
#define CR0_PG              (1 << 31)
#define CR4_PAE             (1 << 5)
#define PTE_P               0x1
#define PTE_W               0x2
#define PTE_PS              0x80
#define PAGE_2M             0x200000
#define COM1                0x3f8
#define DEBUG_EXIT_PORT     0xf4
#define DEBUG_EXIT_FAILURE  0x11
#define VGA_TEXT            0xb8000
#define KSTACK_SIZE         (32 * 1024)
#define DFSTACK_SIZE        (16 * 1024)

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov     $V2P(boot_stack_top), %esp
    mov     %eax, %edi              /* keep magic and info in registers cpuid leaves alone */
    mov     %ebx, %esi

    cmp     $MB2_BOOT_MAGIC, %eax
    jne     .Lno_multiboot2

    /* CPUID itself exists if EFLAGS.ID can be toggled. */
    pushfl
    pop     %eax
    mov     %eax, %ecx
    xor     $(1 << 21), %eax
    push    %eax
    popfl
    pushfl
    pop     %eax
    push    %ecx
    popfl
    cmp     %eax, %ecx
    je      .Lno_long_mode

    mov     $CPUID_EXT_MAX, %eax
    cpuid
    cmp     $CPUID_EXT_FEATURES, %eax
    jb      .Lno_long_mode
    mov     $CPUID_EXT_FEATURES, %eax
    cpuid
    test    $CPUID_EDX_LM, %edx
    jz      .Lno_long_mode
    mov     %edx, %ebp              /* remember NX support */

    call    build_boot_page_tables

    mov     $V2P(boot_pml4), %eax
    mov     %eax, %cr3
    mov     %cr4, %eax
    or      $CR4_PAE, %eax
    mov     %eax, %cr4

    mov     $MSR_EFER, %ecx
    rdmsr
    or      $EFER_LME, %eax
    test    $CPUID_EDX_NX, %ebp
    jz      1f
    or      $EFER_NXE, %eax
1:  wrmsr

    mov     %cr0, %eax
    or      $(CR0_PG | CR0_WP | CR0_PE), %eax
    mov     %eax, %cr0

    lgdt    boot_gdt_ptr
    ljmp    $0x08, $long_mode_entry

/* Fill the tables described at the top of this file. Clobbers eax, ebx, ecx, edx. */
build_boot_page_tables:
    /* Identity / direct map: 2048 PD entries of 2 MiB = 4 GiB. */
    mov     $V2P(boot_pd_low), %ebx
    xor     %ecx, %ecx
1:  mov     %ecx, %eax
    shl     $21, %eax               /* low 32 bits of i * 2 MiB */
    or      $(PTE_P | PTE_W | PTE_PS), %eax
    mov     %eax, (%ebx, %ecx, 8)
    mov     %ecx, %eax
    shr     $11, %eax               /* high 32 bits of i * 2 MiB */
    mov     %eax, 4(%ebx, %ecx, 8)
    inc     %ecx
    cmp     $2048, %ecx
    jb      1b

    /* PDPT for the low 4 GiB: four PDs. */
    mov     $V2P(boot_pdpt_low), %ebx
    mov     $V2P(boot_pd_low), %eax
    or      $(PTE_P | PTE_W), %eax
    xor     %ecx, %ecx
2:  mov     %eax, (%ebx, %ecx, 8)
    add     $4096, %eax
    inc     %ecx
    cmp     $4, %ecx
    jb      2b

    /* Kernel window: 1024 4 KiB pages over physical 0..4 MiB. */
    mov     $V2P(boot_pt_kernel), %ebx
    xor     %ecx, %ecx
3:  mov     %ecx, %eax
    shl     $12, %eax
    or      $(PTE_P | PTE_W), %eax
    mov     %eax, (%ebx, %ecx, 8)
    inc     %ecx
    cmp     $1024, %ecx
    jb      3b
    /* Leave the stack guard pages unmapped. */
    mov     $V2P(boot_stack_guard), %eax
    shr     $12, %eax
    movl    $0, V2P(boot_pt_kernel)(, %eax, 8)
    mov     $V2P(df_stack_guard), %eax
    shr     $12, %eax
    movl    $0, V2P(boot_pt_kernel)(, %eax, 8)

    mov     $(V2P(boot_pt_kernel) + (PTE_P | PTE_W)), %eax
    mov     %eax, V2P(boot_pd_kernel)
    add     $4096, %eax
    mov     %eax, V2P(boot_pd_kernel) + 8
    movl    $(V2P(boot_pd_kernel) + (PTE_P | PTE_W)), V2P(boot_pdpt_kernel) + PDPT_INDEX(KERNEL_VMA) * 8

    movl    $(V2P(boot_pdpt_low) + (PTE_P | PTE_W)), V2P(boot_pml4)
    movl    $(V2P(boot_pdpt_low) + (PTE_P | PTE_W)), V2P(boot_pml4) + PML4_INDEX(DIRECT_MAP_BASE) * 8
    movl    $(V2P(boot_pdpt_kernel) + (PTE_P | PTE_W)), V2P(boot_pml4) + PML4_INDEX(KERNEL_VMA) * 8
    ret

.Lno_multiboot2:
    mov     $msg_no_multiboot2, %esi
    jmp     boot_fail
.Lno_long_mode:
    mov     $msg_no_long_mode, %esi
    /* fall through */

/* Print the NUL-terminated string at ESI on COM1 and VGA, then stop for good. */
boot_fail:
    /* 16550 at COM1: 115200 8N1, FIFO on. */
    mov     $(COM1 + 1), %dx
    xor     %al, %al
    out     %al, %dx                /* no interrupts */
    mov     $(COM1 + 3), %dx
    mov     $0x80, %al
    out     %al, %dx                /* DLAB */
    mov     $(COM1 + 0), %dx
    mov     $1, %al
    out     %al, %dx                /* divisor 1 = 115200 baud */
    mov     $(COM1 + 1), %dx
    xor     %al, %al
    out     %al, %dx
    mov     $(COM1 + 3), %dx
    mov     $0x03, %al
    out     %al, %dx                /* 8N1 */
    mov     $(COM1 + 2), %dx
    mov     $0xc7, %al
    out     %al, %dx                /* FIFO */

    mov     $VGA_TEXT, %edi
1:  lodsb
    test    %al, %al
    jz      3f
    mov     %al, %bl
    mov     $(COM1 + 5), %dx
2:  in      %dx, %al
    test    $0x20, %al              /* transmit holding register empty */
    jz      2b
    mov     $COM1, %dx
    mov     %bl, %al
    out     %al, %dx
    cmp     $'\n', %bl
    je      1b
    mov     %bl, (%edi)
    movb    $0x4f, 1(%edi)          /* white on red */
    add     $2, %edi
    jmp     1b
3:  mov     $(COM1 + 5), %dx
4:  in      %dx, %al
    test    $0x40, %al              /* transmitter empty: everything is out */
    jz      4b
    /* Under QEMU with isa-debug-exit this ends the run with failure (35);
       on hardware the port write is ignored and we halt. */
    mov     $DEBUG_EXIT_PORT, %dx
    mov     $DEBUG_EXIT_FAILURE, %eax
    out     %eax, %dx
5:  cli
    hlt
    jmp     5b

    .code64
long_mode_entry:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    xor     %ax, %ax
    mov     %ax, %fs
    mov     %ax, %gs
    movabs  $boot_stack_top, %rsp
    movabs  $higher_half_entry, %rax
    jmp     *%rax

    .section .boot.rodata, "a"
msg_no_multiboot2:
    .asciz "kheap: boot error: not started by a multiboot2 boot loader (bad magic in EAX); halting.\n"
msg_no_long_mode:
    .asciz "kheap: boot error: this CPU does not support long mode (x86_64); halting.\n"

    .balign 8
boot_gdt:
    .quad 0                         /* null */
    .quad 0x00209a0000000000        /* 0x08: 64-bit code, present, ring 0 */
    .quad 0x0000920000000000        /* 0x10: data, present, writable */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .text
    .code64
higher_half_entry:
    xor     %ebp, %ebp              /* end of the frame-pointer chain for backtraces */
    mov     %edi, %edi              /* zero-extend magic and info address */
    mov     %esi, %esi
    call    kernel_entry
1:  cli
    hlt
    jmp     1b

    .section .bss.pagetables, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:          .skip 4096
boot_pdpt_low:      .skip 4096
boot_pd_low:        .skip 4 * 4096
boot_pdpt_kernel:   .skip 4096
boot_pd_kernel:     .skip 4096
boot_pt_kernel:     .skip 2 * 4096

    /* Each stack sits on top of an unmapped guard page. */
    .section .bss.stacks, "aw", @nobits
    .balign 4096
    .global boot_stack_guard, boot_stack_top, df_stack_guard, df_stack_top
boot_stack_guard:   .skip 4096
boot_stack_bottom:  .skip KSTACK_SIZE
boot_stack_top:
df_stack_guard:     .skip 4096
df_stack_bottom:    .skip DFSTACK_SIZE
df_stack_top:

    .section .note.GNU-stack, "", @progbits
