/*
 * The page-table walker. Tables are reached through the direct map
 * (phys_to_virt), so any frame, above 4 GiB too, can hold a table.
 * Address split: see paging.h.
 */
#include "paging.h"

#include "cpu.h"
#include "kstring.h"
#include "memlayout.h"
#include "pmm.h"
#include "spinlock.h"

#define ENTRIES_PER_TABLE  512
#define PAGING_LEVELS      4 /* PML4, PDPT, PD, PT */
#define MSR_EFER           0xc0000080
#define EFER_NXE           (1ull << 11)
#define CPUID_EXT_FEATURES 0x80000001
#define CPUID_EDX_PDPE1GB  (1u << 26)

/* Level 3 = PML4, 2 = PDPT, 1 = PD, 0 = PT. */
static unsigned table_index(uint64_t virt, int level)
{
    return (unsigned)((virt >> (12 + 9 * level)) & (ENTRIES_PER_TABLE - 1));
}

static uint64_t level_page_size(int level)
{
    return 1ull << (12 + 9 * level);
}

static uint64_t root_phys;
static bool low_frames_only;
/* Serialises changes to the page tables (lock order: spinlock.h). Readers
   (walk, translate) do not take it: tables are only ever added, and an
   entry is written with one 64-bit store. */
static struct spinlock paging_lock = SPINLOCK_INIT("page tables");

void paging_set_root(uint64_t pml4_phys)
{
    root_phys = pml4_phys;
}

uint64_t paging_root(void)
{
    return root_phys != 0 ? root_phys : (read_cr3() & PTE_ADDR_MASK);
}

static uint64_t *table_at(uint64_t phys)
{
    return phys_to_virt(phys & PTE_ADDR_MASK);
}

bool paging_is_canonical(uint64_t virt)
{
    int64_t sign_extended = (int64_t)(virt << 16) >> 16;
    return (uint64_t)sign_extended == virt;
}

bool paging_has_1g_pages(void)
{
    return (cpuid(CPUID_EXT_FEATURES, 0).edx & CPUID_EDX_PDPE1GB) != 0;
}

bool paging_has_nx(void)
{
    return (rdmsr(MSR_EFER) & EFER_NXE) != 0;
}

const char *paging_strerror(enum paging_status status)
{
    switch (status) {
    case PAGING_OK: return "ok";
    case PAGING_ERR_ALREADY_MAPPED: return "already mapped";
    case PAGING_ERR_MISALIGNED: return "misaligned address";
    case PAGING_ERR_NON_CANONICAL: return "non-canonical address";
    case PAGING_ERR_NO_MEMORY: return "out of frames";
    case PAGING_ERR_HUGE_PAGE: return "inside a huge page";
    case PAGING_ERR_NOT_MAPPED: return "not mapped";
    case PAGING_ERR_BAD_FLAGS: return "bad flags";
    }
    return "unknown";
}

bool paging_walk(uint64_t virt, struct paging_walk *walk)
{
    memset(walk, 0, sizeof(*walk));
    if (!paging_is_canonical(virt))
        return false;
    uint64_t table = paging_root();
    for (int level = 3; level >= 0; level--) {
        walk->table_phys[3 - level] = table;
        walk->levels = 4 - level;
        uint64_t entry = table_at(table)[table_index(virt, level)];
        if (!(entry & PTE_PRESENT))
            return false;
        if (level == 0 || (level <= 2 && (entry & PTE_HUGE))) {
            walk->entry = entry;
            walk->page_size = level_page_size(level);
            return true;
        }
        table = entry & PTE_ADDR_MASK;
    }
    return false;
}

bool paging_translate(uint64_t virt, uint64_t *phys, uint64_t *page_size)
{
    struct paging_walk w;
    if (!paging_walk(virt, &w))
        return false;
    uint64_t base = w.entry & PTE_ADDR_MASK & ~(w.page_size - 1);
    *phys = base + (virt & (w.page_size - 1));
    if (page_size != NULL)
        *page_size = w.page_size;
    return true;
}

void paging_use_low_frames(bool on)
{
    low_frames_only = on;
}

/* Returns a zeroed frame for a page table, or PMM_NO_FRAME. */
static uint64_t new_table(void)
{
    uint64_t frame = low_frames_only ? pmm_alloc_frame_low() : pmm_alloc_frame();
    if (frame != PMM_NO_FRAME)
        memset(phys_to_virt(frame), 0, PAGE_SIZE);
    return frame;
}

static enum paging_status map_page_locked(uint64_t virt, uint64_t phys, uint64_t flags, uint64_t page_size)
{
    int leaf_level;
    if (page_size == PAGE_SIZE)
        leaf_level = 0;
    else if (page_size == PAGE_SIZE_2M)
        leaf_level = 1;
    else if (page_size == PAGE_SIZE_1G && paging_has_1g_pages())
        leaf_level = 2;
    else
        return PAGING_ERR_MISALIGNED;
    if (!paging_is_canonical(virt))
        return PAGING_ERR_NON_CANONICAL;
    if (virt % page_size != 0 || phys % page_size != 0 || (phys & ~PTE_ADDR_MASK) != 0)
        return PAGING_ERR_MISALIGNED;
    if (flags & ~PAGING_MAP_FLAGS)
        return PAGING_ERR_BAD_FLAGS;
    if (!paging_has_nx())
        flags &= ~PTE_NO_EXECUTE;

    /* 1. Walk without writing, so that every refusal leaves the tables as
       they were: stop at the first missing entry (every table below it is
       missing too), refuse a huge page on the way or a present leaf. */
    uint64_t table = paging_root();
    int level = 3;
    for (; level > leaf_level; level--) {
        uint64_t entry = table_at(table)[table_index(virt, level)];
        if (!(entry & PTE_PRESENT))
            break;
        if (level <= 2 && (entry & PTE_HUGE))
            return PAGING_ERR_HUGE_PAGE;
        table = entry & PTE_ADDR_MASK;
    }
    if (level == leaf_level && (table_at(table)[table_index(virt, leaf_level)] & PTE_PRESENT))
        return PAGING_ERR_ALREADY_MAPPED; /* a page, or (for a huge leaf) a table, is there */

    /* 2. Take every missing table up front; if one is missing, give the
       others back: nothing was linked yet. */
    int missing = level - leaf_level;
    uint64_t fresh[PAGING_LEVELS - 1];
    for (int i = 0; i < missing; i++) {
        fresh[i] = new_table();
        if (fresh[i] == PMM_NO_FRAME) {
            while (i-- > 0)
                pmm_free_frame(fresh[i]);
            return PAGING_ERR_NO_MEMORY;
        }
    }

    /* 3. Nothing can fail now: link the new tables and widen the existing
       intermediate entries (they allow everything; the leaf decides). */
    uint64_t inner = PTE_PRESENT | PTE_WRITABLE | (flags & PTE_USER);
    table = paging_root();
    for (int l = 3, next = 0; l > leaf_level; l--) {
        uint64_t *entry = &table_at(table)[table_index(virt, l)];
        if (*entry & PTE_PRESENT)
            *entry |= inner;
        else
            *entry = fresh[next++] | inner;
        table = *entry & PTE_ADDR_MASK;
    }
    uint64_t *leaf = &table_at(table)[table_index(virt, leaf_level)];
    *leaf = phys | flags | PTE_PRESENT | (leaf_level > 0 ? PTE_HUGE : 0);
    return PAGING_OK;
}

enum paging_status paging_map_page(uint64_t virt, uint64_t phys, uint64_t flags, uint64_t page_size)
{
    unsigned long saved = spin_lock_irqsave(&paging_lock);
    enum paging_status st = map_page_locked(virt, phys, flags, page_size);
    spin_unlock_irqrestore(&paging_lock, saved);
    return st;
}

uint64_t paging_tables_needed(uint64_t virt, size_t pages)
{
    uint64_t bytes, last;
    if (pages == 0 || !paging_is_canonical(virt) ||
        __builtin_mul_overflow((uint64_t)pages, PAGE_SIZE, &bytes) ||
        __builtin_add_overflow(virt & ~(PAGE_SIZE - 1), bytes - 1, &last))
        return 0;
    /* One walk per page table (2 MiB of address space); a missing PD or
       PDPT is counted once, at the first page table it would hold. */
    uint64_t first_slot = virt / PAGE_SIZE_2M, slots = last / PAGE_SIZE_2M - first_slot + 1;
    uint64_t needed = 0;
    for (uint64_t i = 0; i < slots; i++) {
        uint64_t v = (first_slot + i) * PAGE_SIZE_2M;
        uint64_t table = paging_root();
        int level = 3;
        for (; level > 0; level--) {
            uint64_t entry = table_at(table)[table_index(v, level)];
            if (!(entry & PTE_PRESENT) || (level <= 2 && (entry & PTE_HUGE)))
                break;
            table = entry & PTE_ADDR_MASK;
        }
        uint64_t entry = level > 0 ? table_at(table)[table_index(v, level)] : 0;
        if (level == 0 || (entry & PTE_PRESENT))
            continue; /* the page table exists (or a huge page is there) */
        needed++;     /* the PT */
        if (level >= 2 && (i == 0 || v % PAGE_SIZE_1G == 0))
            needed++; /* its PD */
        if (level == 3 && (i == 0 || v % (PAGE_SIZE_1G * ENTRIES_PER_TABLE) == 0))
            needed++; /* its PDPT */
    }
    return needed;
}

enum paging_status paging_map(uint64_t virt, uint64_t phys, uint64_t flags)
{
    return paging_map_page(virt, phys, flags, PAGE_SIZE);
}

static enum paging_status unmap_locked(uint64_t virt, uint64_t *phys)
{
    if (!paging_is_canonical(virt))
        return PAGING_ERR_NON_CANONICAL;
    if (virt % PAGE_SIZE != 0)
        return PAGING_ERR_MISALIGNED;
    uint64_t table = paging_root();
    for (int level = 3; level >= 0; level--) {
        uint64_t *entry = &table_at(table)[table_index(virt, level)];
        if (!(*entry & PTE_PRESENT))
            return PAGING_ERR_NOT_MAPPED;
        bool leaf = level == 0 || (level <= 2 && (*entry & PTE_HUGE));
        if (!leaf) {
            table = *entry & PTE_ADDR_MASK;
            continue;
        }
        /* A huge page goes only as a whole, from its first address. */
        if (virt % level_page_size(level) != 0)
            return PAGING_ERR_HUGE_PAGE;
        if (phys != NULL)
            *phys = *entry & PTE_ADDR_MASK & ~(level_page_size(level) - 1);
        *entry = 0;
        invlpg(virt);
        return PAGING_OK;
    }
    return PAGING_ERR_NOT_MAPPED;
}

enum paging_status paging_unmap(uint64_t virt, uint64_t *phys)
{
    unsigned long saved = spin_lock_irqsave(&paging_lock);
    enum paging_status st = unmap_locked(virt, phys);
    spin_unlock_irqrestore(&paging_lock, saved);
    return st;
}

static bool table_empty(uint64_t table)
{
    const uint64_t *t = table_at(table);
    for (unsigned i = 0; i < ENTRIES_PER_TABLE; i++) {
        if (t[i] & PTE_PRESENT)
            return false;
    }
    return true;
}

size_t paging_free_empty_tables(uint64_t virt)
{
    if (!paging_is_canonical(virt))
        return 0;
    unsigned long saved = spin_lock_irqsave(&paging_lock);
    /* The path from the PML4 down to the page table of virt. */
    uint64_t path[PAGING_LEVELS] = {paging_root()};
    int depth = 1;
    for (int level = 3; level > 0; level--, depth++) {
        uint64_t entry = table_at(path[depth - 1])[table_index(virt, level)];
        if (!(entry & PTE_PRESENT) || (level <= 2 && (entry & PTE_HUGE)))
            break;
        path[depth] = entry & PTE_ADDR_MASK;
    }
    /* Free from the bottom up while a table is empty; never the PML4. */
    size_t freed = 0;
    for (int i = depth - 1; i > 0 && table_empty(path[i]); i--) {
        table_at(path[i - 1])[table_index(virt, 4 - i)] = 0;
        pmm_free_frame(path[i]);
        freed++;
    }
    spin_unlock_irqrestore(&paging_lock, saved);
    return freed;
}
