#include "vmm.h"

#include "cpu.h"
#include "kstring.h"
#include "memlayout.h"
#include "paging.h"
#include "panic.h"
#include "pmm.h"

#define CR4_PGE (1ull << 7)

extern char boot_stack_guard[], df_stack_guard[]; /* boot/entry.S */

static uint64_t direct_map_end, direct_map_page;

uint64_t vmm_direct_map_end(void)
{
    return direct_map_end;
}

uint64_t vmm_direct_map_page_size(void)
{
    return direct_map_page;
}

static void map_or_panic(uint64_t virt, uint64_t phys, uint64_t flags, uint64_t size)
{
    enum paging_status st = paging_map_page(virt, phys, flags, size);
    if (st != PAGING_OK)
        panic("vmm_init: mapping %p -> %p failed: %s", (void *)virt, (void *)phys, paging_strerror(st));
}

/* Maps the kernel pages [start, end) with flags, skipping the guard pages. */
static void map_kernel_range(const char *start, const char *end, uint64_t flags)
{
    for (uint64_t v = (uint64_t)(uintptr_t)start; v < (uint64_t)(uintptr_t)end; v += PAGE_SIZE) {
        if (v == (uint64_t)(uintptr_t)boot_stack_guard || v == (uint64_t)(uintptr_t)df_stack_guard)
            continue;
        map_or_panic(v, kernel_virt_to_phys((const void *)(uintptr_t)v), flags, PAGE_SIZE);
    }
}

static void write_cr4(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory");
}

void vmm_init(void)
{
    /* Until the new direct map is live, every table must sit where the
       boot direct map (first 4 GiB) reaches. */
    paging_use_low_frames(true);
    uint64_t pml4 = pmm_alloc_frame_low();
    if (pml4 == PMM_NO_FRAME)
        panic("vmm_init: no frame for the PML4");
    memset(phys_to_virt(pml4), 0, PAGE_SIZE);
    paging_set_root(pml4);

    direct_map_page = paging_has_1g_pages() ? PAGE_SIZE_1G : PAGE_SIZE_2M;
    uint64_t top = pmm_stats().highest_address;
    direct_map_end = (top + direct_map_page - 1) & ~(direct_map_page - 1);
    for (uint64_t p = 0; p < direct_map_end; p += direct_map_page)
        map_or_panic(DIRECT_MAP_BASE + p, p, PTE_WRITABLE | PTE_NO_EXECUTE | PTE_GLOBAL, direct_map_page);

    map_kernel_range(__text_start, __text_end, PTE_GLOBAL);
    map_kernel_range(__rodata_start, __rodata_end, PTE_NO_EXECUTE | PTE_GLOBAL);
    map_kernel_range(__data_start, __kernel_end, PTE_WRITABLE | PTE_NO_EXECUTE | PTE_GLOBAL);

    write_cr3(pml4);
    write_cr4(read_cr4() | CR4_PGE);
    paging_use_low_frames(false);
}
