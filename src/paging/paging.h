/*
 * The page-table walker: translate, map and unmap in the kernel's 4-level
 * x86_64 page tables, reached through the direct map.
 *
 * A 48-bit virtual address splits into four 9-bit table indices and a
 * 12-bit page offset:
 *
 *   63      48 47    39 38    30 29    21 20    12 11         0
 *  | sign ext | PML4   | PDPT   | PD     | PT     | offset      |
 *
 * Changes to the tables are serialised by one spin lock (spinlock.h has the
 * lock order); unmapping changes only this CPU's TLB: tlb_shootdown()
 * (tlb.h) makes every CPU forget a range before its frames are reused.
 *
 * Bits 63..48 must copy bit 47 (a "canonical" address). A PDPT entry with
 * PS set maps a 1 GiB page (offset = bits 29..0), a PD entry with PS set a
 * 2 MiB page (offset = bits 20..0), a PT entry a 4 KiB page.
 */
#ifndef KHEAP_PAGING_H
#define KHEAP_PAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memlayout.h" /* PAGE_SIZE, the 4 KiB page */

#define PAGE_SIZE_2M 0x200000ull
#define PAGE_SIZE_1G 0x40000000ull

/* Page-table entry bits (Intel SDM vol. 3, 4.5). */
#define PTE_PRESENT       (1ull << 0)
#define PTE_WRITABLE      (1ull << 1)
#define PTE_USER          (1ull << 2)
#define PTE_WRITE_THROUGH (1ull << 3)
#define PTE_CACHE_DISABLE (1ull << 4)
#define PTE_ACCESSED      (1ull << 5)
#define PTE_DIRTY         (1ull << 6)
#define PTE_HUGE          (1ull << 7) /* PS: 1 GiB in a PDPT entry, 2 MiB in a PD entry */
#define PTE_GLOBAL        (1ull << 8)
#define PTE_NO_EXECUTE    (1ull << 63)
#define PTE_ADDR_MASK     0x000ffffffffff000ull

/* Flags a caller may pass to paging_map() (present is implied). */
#define PAGING_MAP_FLAGS \
    (PTE_WRITABLE | PTE_USER | PTE_WRITE_THROUGH | PTE_CACHE_DISABLE | PTE_GLOBAL | PTE_NO_EXECUTE)

enum paging_status {
    PAGING_OK = 0,
    PAGING_ERR_ALREADY_MAPPED, /* something is mapped there; nothing was changed */
    PAGING_ERR_MISALIGNED,     /* virt or phys not aligned to the page size */
    PAGING_ERR_NON_CANONICAL,  /* bits 63..48 do not copy bit 47 */
    PAGING_ERR_NO_MEMORY,      /* no frame for an intermediate table */
    PAGING_ERR_HUGE_PAGE,      /* the address lies inside a 2 MiB / 1 GiB mapping */
    PAGING_ERR_NOT_MAPPED,     /* unmap of an address that is not mapped */
    PAGING_ERR_BAD_FLAGS,      /* flags outside PAGING_MAP_FLAGS */
};

/* The result of walking one address (for translate, tests and reports). */
struct paging_walk {
    uint64_t table_phys[4]; /* PML4, PDPT, PD, PT frames visited (0 past the leaf) */
    int levels;             /* tables visited: 4 for a 4 KiB page, 3 for 2 MiB, 2 for 1 GiB */
    uint64_t entry;         /* the leaf entry, 0 if not mapped */
    uint64_t page_size;     /* 4 KiB, 2 MiB or 1 GiB; 0 if not mapped */
};

/* Uses the tables rooted at pml4_phys from now on (loaded in CR3 by the caller). */
void paging_set_root(uint64_t pml4_phys);
/* Returns the physical address of the active PML4. */
uint64_t paging_root(void);
/* Returns true if virt is canonical. */
bool paging_is_canonical(uint64_t virt);
/* Returns the human-readable name of a status ("already mapped"). */
const char *paging_strerror(enum paging_status status);

/* Translates virt to its physical address and stores it in *phys (page_size
   in *page_size if not NULL). Returns false if virt is not mapped or not
   canonical. Handles 4 KiB, 2 MiB and 1 GiB leaves. */
bool paging_translate(uint64_t virt, uint64_t *phys, uint64_t *page_size);
/* Fills *walk for virt; returns true if virt is mapped. */
bool paging_walk(uint64_t virt, struct paging_walk *walk);

/* Maps the page_size page at virt to phys with flags (PAGING_MAP_FLAGS;
   present implied). page_size is 4 KiB, 2 MiB or 1 GiB (1 GiB needs
   CPU support). Missing intermediate tables are allocated zeroed from the
   frame allocator. Never overwrites: an existing mapping gives
   PAGING_ERR_ALREADY_MAPPED, an enclosing huge page PAGING_ERR_HUGE_PAGE.
   Every refusal changes nothing: no entry is written and no frame stays
   allocated (the tables are checked first, then every missing table is
   allocated, then they are linked), so PAGING_ERR_NO_MEMORY leaves the
   frame allocator's free count as it was. */
enum paging_status paging_map_page(uint64_t virt, uint64_t phys, uint64_t flags, uint64_t page_size);
/* Returns how many page-table frames mapping the 4 KiB pages [virt, virt +
   pages * 4 KiB) with paging_map() would allocate now (0 when every table
   exists, or for pages == 0, a non-canonical virt or a range past 2^64).
   O(pages / 512). For callers that must not start what they cannot finish. */
uint64_t paging_tables_needed(uint64_t virt, size_t pages);
/* paging_map_page() for a 4 KiB page. */
enum paging_status paging_map(uint64_t virt, uint64_t phys, uint64_t flags);
/* Removes the mapping of the page starting at virt (4 KiB, or a whole
   2 MiB / 1 GiB page when virt is its first address), invalidates its TLB
   entry on this CPU only and stores the physical address it mapped in
   *phys (if not NULL): the caller decides what happens to the frame.
   PAGING_ERR_HUGE_PAGE for an address inside a huge page. Intermediate
   tables stay. A refusal changes nothing. A caller that unmaps memory
   another CPU may have used (so may hold in its TLB) must tlb_shootdown()
   the page before its frame is reused or its tables freed: heap_region.c
   (release, shrink) and smp.c (the trampoline) do; tests that map a page
   only the BSP ever touches need not. */
enum paging_status paging_unmap(uint64_t virt, uint64_t *phys);

/* Frees the page tables on the path to virt that map nothing any more,
   from the page table up (never the PML4), and clears the entries that
   pointed to them; returns how many were freed. The caller must have
   shot down virt on every CPU first (tlb_shootdown()): paging-structure
   caches may still hold the path. Changes nothing when every table on
   the path still maps something. */
size_t paging_free_empty_tables(uint64_t virt);

/* While on, new page tables come from below 4 GiB (pmm_alloc_frame_low()):
   needed while only the boot direct map (first 4 GiB) exists. */
void paging_use_low_frames(bool on);

/* True if the CPU supports 1 GiB pages (CPUID 0x80000001 EDX bit 26). */
bool paging_has_1g_pages(void);
/* True if EFER.NXE is on, so PTE_NO_EXECUTE is honoured (else it is dropped). */
bool paging_has_nx(void);

#endif
