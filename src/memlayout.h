/*
 * The kernel's virtual memory layout (see docs/memory.md for the full table).
 *
 *   0xffff800000000000  DIRECT_MAP_BASE: physical memory at a fixed offset
 *   0xffffffff80000000  KERNEL_VMA: the kernel image (-mcmodel=kernel)
 */
#ifndef KHEAP_MEMLAYOUT_H
#define KHEAP_MEMLAYOUT_H

#include <stdint.h>

#define KERNEL_VMA          0xffffffff80000000ull
#define DIRECT_MAP_BASE     0xffff800000000000ull
#define PAGE_SIZE           4096ull

/* Linker-script symbols: take their address, never their value. */
extern char __kernel_phys_start[], __kernel_phys_end[];
extern char __text_start[], __text_end[];
extern char __rodata_start[], __rodata_end[];
extern char __data_start[], __bss_start[], __bss_end[], __kernel_end[];

/* Returns the direct-map virtual address of physical address phys. */
static inline void *phys_to_virt(uint64_t phys)
{
    return (void *)(uintptr_t)(phys + DIRECT_MAP_BASE);
}

/* Returns the physical address of a direct-map virtual address. */
static inline uint64_t direct_virt_to_phys(const void *virt)
{
    return (uint64_t)(uintptr_t)virt - DIRECT_MAP_BASE;
}

/* Returns the physical address of an address inside the kernel image. */
static inline uint64_t kernel_virt_to_phys(const void *virt)
{
    return (uint64_t)(uintptr_t)virt - KERNEL_VMA;
}

#endif
