/*
 * Kernel linker script.
 *
 * The boot code (multiboot2 header and 32-bit entry) is linked and loaded at
 * 1 MiB, identity mapped. Everything else is linked in the higher half at
 * KERNEL_VMA + physical address (the -mcmodel=kernel window, top 2 GiB) and
 * loaded right after the boot code. Sections start on page boundaries so the
 * paging code can give text, rodata and data/bss different permissions.
 *
 * The addresses come from src/memlayout.h: CMake runs this file through the
 * C preprocessor (with __ASSEMBLER__ defined) into the build's kernel.ld.
 */
#include "memlayout.h"

ENTRY(_start)

SECTIONS
{
    . = KERNEL_LOAD_PHYS;
    __kernel_phys_start = .;

    .boot : {
        KEEP(*(.multiboot2))
        *(.boot.text)
        *(.boot.rodata)
    }

    . = ALIGN(PAGE_SIZE);
    . += KERNEL_VMA;

    .text ALIGN(PAGE_SIZE) : AT(ADDR(.text) - KERNEL_VMA) {
        __text_start = .;
        *(.text .text.*)
        __text_end = .;
    }

    .rodata ALIGN(PAGE_SIZE) : AT(ADDR(.rodata) - KERNEL_VMA) {
        __rodata_start = .;
        *(.rodata .rodata.*)
        . = ALIGN(8);
        __ktests_start = .;
        KEEP(*(.ktests))
        __ktests_end = .;
        __rodata_end = .;
    }

    .data ALIGN(PAGE_SIZE) : AT(ADDR(.data) - KERNEL_VMA) {
        __data_start = .;
        *(.data .data.*)
    }

    .bss ALIGN(PAGE_SIZE) : AT(ADDR(.bss) - KERNEL_VMA) {
        __bss_start = .;
        *(.bss.pagetables)
        *(.bss.stacks)
        *(COMMON)
        *(.bss .bss.*)
        . = ALIGN(PAGE_SIZE);
        __bss_end = .;
    }

    __kernel_end = .;
    __kernel_phys_end = . - KERNEL_VMA;

    /DISCARD/ : {
        *(.eh_frame*)
        *(.note*)
        *(.comment)
    }
}

/* boot/entry.S maps the kernel with 4 KiB pages over physical 0..4 MiB. */
ASSERT(__kernel_phys_end <= KERNEL_IMAGE_MAX, "kernel image exceeds the 4 MiB boot mapping")
