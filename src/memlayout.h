/*
 * The kernel's virtual memory layout, the one home of every fixed virtual
 * address (docs/memory.md has the full table):
 *
 *   0x0000000000000000  lower half: nothing mapped (tests borrow scratch addresses)
 *   0xffff800000000000  DIRECT_MAP_BASE: physical memory at a fixed offset (up to 64 TiB)
 *   0xffffc00000000000  KERNEL_HEAP_BASE: the kernel heap's region (1 TiB)
 *   0xffffd00000000000  KERNEL_PRIVATE_HEAP_BASE: 1024 windows of 1 GiB for private heaps
 *   0xffffe00000000000  KTEST_UNMAPPED_ADDR: never mapped (fault tests)
 *   0xffffe80000000000  KERNEL_CPU_STACKS_BASE: each CPU's kernel and double-fault stacks
 *   0xffffef0000000000  LAPIC_MMIO_BASE: the local APIC's registers (xAPIC, uncached)
 *   0xffffffff80000000  KERNEL_VMA: the kernel image (-mcmodel=kernel, top 2 GiB)
 *   0xffffffffff000000  TOP_OF_ADDRESS_SPACE_HEAP_BASE: a heap window ending at the last page
 *   0xfffffffffffff000  ADDRESS_SPACE_LAST_PAGE: never mapped
 *
 * Every heap region (src/paging/heap_region.h) keeps the page below its base
 * and the page past its end unmapped; the windows below are laid out so that
 * these guard pages are never anything else's memory.
 *
 * C, boot/entry.S and the linker script (boot/kernel.ld.S, run through the C
 * preprocessor) all include this file, so every address has one definition:
 * constants are written with MEMLAYOUT_U64(), which adds the C suffix only
 * for C; the C-only part is at the end.
 */
#ifndef KHEAP_MEMLAYOUT_H
#define KHEAP_MEMLAYOUT_H

#ifdef __ASSEMBLER__
#define MEMLAYOUT_U64(x) x
#else
#define MEMLAYOUT_U64(x) x##ull
#endif

/* The size of a page, and of a physical frame: the one name for it. */
#define PAGE_SIZE MEMLAYOUT_U64(4096)

/* Where GRUB loads the kernel image (physical); the image runs at
   KERNEL_VMA + its physical address. */
#define KERNEL_LOAD_PHYS MEMLAYOUT_U64(0x100000)

#define DIRECT_MAP_BASE MEMLAYOUT_U64(0xffff800000000000)
#define DIRECT_MAP_SPAN (MEMLAYOUT_U64(1) << 46) /* 64 TiB reserved for it */

#define KERNEL_HEAP_BASE MEMLAYOUT_U64(0xffffc00000000000)
#define KERNEL_HEAP_SPAN (MEMLAYOUT_U64(1) << 40) /* 1 TiB of virtual space reserved */

/* Windows for private kernel heaps (kernel_heap_private_create()): window i
   starts at KERNEL_PRIVATE_HEAP_WINDOW_BASE(i); a heap in it may use up to
   KERNEL_PRIVATE_HEAP_WINDOW_SPAN bytes, so the window's last page stays
   unmapped and guards both this window's end and the next one's start. */
#define KERNEL_PRIVATE_HEAP_BASE           MEMLAYOUT_U64(0xffffd00000000000)
#define KERNEL_PRIVATE_HEAP_WINDOW         (MEMLAYOUT_U64(1) << 30) /* 1 GiB per window */
#define KERNEL_PRIVATE_HEAP_WINDOWS        1024
#define KERNEL_PRIVATE_HEAP_WINDOW_SPAN    (KERNEL_PRIVATE_HEAP_WINDOW - PAGE_SIZE)
#define KERNEL_PRIVATE_HEAP_WINDOW_BASE(i) (KERNEL_PRIVATE_HEAP_BASE + (i)*KERNEL_PRIVATE_HEAP_WINDOW)

/* A canonical higher-half address the kernel never maps (fault tests). */
#define KTEST_UNMAPPED_ADDR MEMLAYOUT_U64(0xffffe00000000000)

/* CPU i's stacks live in slot i of CPU_STACK_SLOT bytes: an unmapped
   guard page, the kernel stack, another guard page, the double-fault (IST1)
   stack; the rest of the slot stays unmapped. The boot CPU keeps the
   stacks of boot/entry.S. */
#define KERNEL_CPU_STACKS_BASE MEMLAYOUT_U64(0xffffe80000000000)
#define CPU_STACK_SLOT         (MEMLAYOUT_U64(1) << 20) /* 1 MiB per CPU */
#define CPU_KSTACK_SIZE        (MEMLAYOUT_U64(32) * 1024)
#define CPU_DFSTACK_SIZE       (MEMLAYOUT_U64(16) * 1024)
#define CPU_STACK_SLOTS        64
#define CPU_STACK_SLOT_BASE(i) (KERNEL_CPU_STACKS_BASE + (i)*CPU_STACK_SLOT)

#define LAPIC_MMIO_BASE MEMLAYOUT_U64(0xffffef0000000000)

#define KERNEL_VMA       MEMLAYOUT_U64(0xffffffff80000000)
/* boot/kernel.ld asserts the image ends below 4 MiB physical, so it ends
   below KERNEL_VMA + KERNEL_IMAGE_MAX. */
#define KERNEL_IMAGE_MAX MEMLAYOUT_U64(0x400000)

/* The last page of the address space: never mapped, so no heap region may
   reach into it (heap_region_init() refuses base + span above it) and
   running off the top of a heap faults instead of wrapping to 0. */
#define ADDRESS_SPACE_LAST_PAGE        (MEMLAYOUT_U64(0) - PAGE_SIZE)
/* A heap window right below that page (16 MiB - 4 KiB), for heaps placed at
   the very top of the address space. */
#define TOP_OF_ADDRESS_SPACE_HEAP_BASE MEMLAYOUT_U64(0xffffffffff000000)
#define TOP_OF_ADDRESS_SPACE_HEAP_SPAN (ADDRESS_SPACE_LAST_PAGE - TOP_OF_ADDRESS_SPACE_HEAP_BASE)

#ifndef __ASSEMBLER__
#include <stdint.h>

/* The direct map really ends at the end of RAM, below PMM_PHYS_LIMIT (16 TiB,
   pmm.h), so the page below KERNEL_HEAP_BASE is never mapped. */
_Static_assert(DIRECT_MAP_BASE + DIRECT_MAP_SPAN <= KERNEL_HEAP_BASE,
               "the direct map's window ends at or below the kernel heap");
_Static_assert(KERNEL_HEAP_BASE + KERNEL_HEAP_SPAN + PAGE_SIZE <= KERNEL_PRIVATE_HEAP_BASE,
               "the kernel heap ends below the first private window's guard page");
_Static_assert(KERNEL_PRIVATE_HEAP_WINDOW_BASE(KERNEL_PRIVATE_HEAP_WINDOWS) <= KTEST_UNMAPPED_ADDR,
               "the private heap windows end below KTEST_UNMAPPED_ADDR");
_Static_assert(KTEST_UNMAPPED_ADDR + PAGE_SIZE <= KERNEL_CPU_STACKS_BASE,
               "the CPU stacks start above KTEST_UNMAPPED_ADDR");
_Static_assert(2 * PAGE_SIZE + CPU_KSTACK_SIZE + CPU_DFSTACK_SIZE < CPU_STACK_SLOT,
               "a CPU's stacks and guard pages fit in its slot");
_Static_assert(CPU_STACK_SLOT_BASE(CPU_STACK_SLOTS) <= LAPIC_MMIO_BASE,
               "the CPU stacks end below the local APIC");
_Static_assert(LAPIC_MMIO_BASE + PAGE_SIZE < KERNEL_VMA, "the local APIC page is below the kernel image");
_Static_assert(KERNEL_VMA + KERNEL_IMAGE_MAX + PAGE_SIZE <= TOP_OF_ADDRESS_SPACE_HEAP_BASE,
               "the kernel image ends below the top window's guard page");

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

#endif /* !__ASSEMBLER__ */

#endif
