/*
 * The kernel's own address space, replacing the boot page tables:
 *   - a direct map of all physical memory up to the highest available
 *     address at DIRECT_MAP_BASE, with 1 GiB pages where the CPU has them,
 *     else 2 MiB pages; read/write, no-execute, global;
 *   - the kernel image at KERNEL_VMA with 4 KiB pages and W^X: text
 *     read+execute, rodata read-only, data/bss read+write+no-execute, the
 *     stack guard pages left unmapped;
 *   - nothing else: the boot identity map is gone, so NULL faults.
 * The heap region (heap_region.h) is added later, page by page.
 */
#ifndef KHEAP_VMM_H
#define KHEAP_VMM_H

#include <stdint.h>

/* Builds the tables above from the frame allocator and loads them (CR3),
   enabling global pages. Panics if a mapping fails. pmm_init() first. */
void vmm_init(void);
/* The end of the direct map (physical addresses below it are mapped). */
uint64_t vmm_direct_map_end(void);
/* Page size used by the direct map (2 MiB or 1 GiB). */
uint64_t vmm_direct_map_page_size(void);

#endif
