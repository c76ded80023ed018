/*
 * The page-table walker and the kernel address space: translate, map,
 * unmap, typed errors, W^X, NULL and guard pages.
 */
#include "ktest.h"

#include "kframes_test.h"
#include "kstring.h"
#include "memlayout.h"
#include "paging/paging.h"
#include "paging/pmm.h"
#include "paging/vmm.h"
#include "trap.h"

/* Scratch virtual addresses for these tests: the lower half, which the
   kernel leaves empty (blog_os put its heap at 0x4444_4444_0000). */
#define TEST_VIRT    0x0000444444440000ull
#define TEST_VIRT_2M 0x0000444400000000ull

/* Far from every other mapping: mapping it needs a new PDPT, PD and PT. */
#define TEST_VIRT_FRESH 0x0000600000000000ull

extern char boot_stack_guard[], df_stack_guard[];

/* The table entries on the way to virt, and the free frame count: what a
   refused map or unmap must leave exactly as it was. */
struct walk_snapshot {
    int levels;
    uint64_t table[4], entry[4];
    uint64_t free_frames;
};

static struct walk_snapshot snapshot(uint64_t virt)
{
    struct walk_snapshot s;
    struct paging_walk w;
    memset(&s, 0, sizeof(s));
    paging_walk(virt, &w);
    s.levels = w.levels;
    for (int i = 0; i < w.levels; i++) {
        const uint64_t *table = phys_to_virt(w.table_phys[i]);
        s.table[i] = w.table_phys[i];
        s.entry[i] = table[(virt >> (39 - 9 * i)) & 511];
    }
    s.free_frames = pmm_stats().free_frames;
    return s;
}

/* Fails the test, naming the first difference, unless a and b are equal. */
static void assert_unchanged(const struct walk_snapshot *a, const struct walk_snapshot *b, int line)
{
    if (a->levels != b->levels)
        ktest_fail(__FILE__, line, "walk depth %d became %d", a->levels, b->levels);
    for (int i = 0; i < a->levels; i++) {
        if (a->table[i] != b->table[i] || a->entry[i] != b->entry[i])
            ktest_fail(__FILE__, line, "level %d entry %p (table %p) became %p (table %p)", i,
                       (void *)a->entry[i], (void *)a->table[i], (void *)b->entry[i], (void *)b->table[i]);
    }
    if (a->free_frames != b->free_frames)
        ktest_fail(__FILE__, line, "free frames %llu became %llu", (unsigned long long)a->free_frames,
                   (unsigned long long)b->free_frames);
}

static int kernel_data_word = 42;
static const int kernel_rodata_word = 7;
static uint8_t data_code_page[64] __attribute__((aligned(16)));

KTEST(translate_kernel_symbols)
{
    uint64_t phys, size;
    KASSERT(paging_translate((uint64_t)(uintptr_t)&kernel_data_word, &phys, &size));
    KASSERT_EQ(phys, kernel_virt_to_phys(&kernel_data_word));
    KASSERT_EQ(size, PAGE_SIZE);
    KASSERT(paging_translate((uint64_t)(uintptr_t)paging_walk, &phys, &size));
    KASSERT_EQ(phys, kernel_virt_to_phys((const void *)paging_walk));
}

KTEST(translate_direct_map_uses_large_leaves)
{
    uint64_t phys, size;
    uint64_t target = 0x1234567;
    KASSERT(paging_translate((uint64_t)(uintptr_t)phys_to_virt(target), &phys, &size));
    KASSERT_EQ(phys, target);
    /* 1 GiB leaves where the CPU has them, else 2 MiB. */
    KASSERT_EQ(size, paging_has_1g_pages() ? PAGE_SIZE_1G : PAGE_SIZE_2M);
    KASSERT_EQ(size, vmm_direct_map_page_size());

    /* The direct map reaches the highest available frame. */
    uint64_t top = pmm_stats().highest_address - PAGE_SIZE;
    KASSERT(paging_translate((uint64_t)(uintptr_t)phys_to_virt(top), &phys, NULL));
    KASSERT_EQ(phys, top);
    ktest_log("direct map leaves: %llu KiB", (unsigned long long)(size / 1024));
}

KTEST(map_2m_leaf_translate_and_unmap)
{
    /* A read-only 2 MiB alias of physical [0, 2 MiB), where the kernel
       image lives: no frames needed, and the contents are known. */
    KASSERT_EQ(paging_map_page(TEST_VIRT_2M, 0, PTE_NO_EXECUTE, PAGE_SIZE_2M), PAGING_OK);
    uint64_t phys, size;
    KASSERT(paging_translate(TEST_VIRT_2M + 0x12345, &phys, &size));
    KASSERT_EQ(phys, 0x12345);
    KASSERT_EQ(size, PAGE_SIZE_2M);
    uint64_t word = kernel_virt_to_phys(&kernel_data_word);
    KASSERT_EQ(*(volatile int *)(TEST_VIRT_2M + word), kernel_data_word);
    /* A 4 KiB page inside it, and unmapping from its middle, are refused. */
    uint64_t f = pmm_alloc_frame();
    KASSERT(f != PMM_NO_FRAME);
    KASSERT_EQ(paging_map(TEST_VIRT_2M + 0x1000, f, PTE_WRITABLE), PAGING_ERR_HUGE_PAGE);
    pmm_free_frame(f);
    KASSERT_EQ(paging_unmap(TEST_VIRT_2M + 0x1000, NULL), PAGING_ERR_HUGE_PAGE);
    KASSERT_EQ(paging_unmap(TEST_VIRT_2M, &phys), PAGING_OK);
    KASSERT_EQ(phys, 0);
    KASSERT(!paging_translate(TEST_VIRT_2M, &phys, NULL));
}

KTEST(map_write_and_read_back_through_direct_map)
{
    uint64_t frame = pmm_alloc_frame();
    KASSERT(frame != PMM_NO_FRAME);
    KASSERT_EQ(paging_map(TEST_VIRT, frame, PTE_WRITABLE | PTE_NO_EXECUTE), PAGING_OK);
    volatile uint64_t *via_map = (volatile uint64_t *)TEST_VIRT;
    const volatile uint64_t *via_direct = phys_to_virt(frame);
    for (int i = 0; i < 512; i++)
        via_map[i] = 0x5a5a000000000000ull | (uint64_t)i;
    for (int i = 0; i < 512; i++)
        KASSERT_EQ(via_direct[i], 0x5a5a000000000000ull | (uint64_t)i);
    uint64_t phys;
    KASSERT(paging_translate(TEST_VIRT + 8, &phys, NULL));
    KASSERT_EQ(phys, frame + 8);
    KASSERT_EQ(paging_unmap(TEST_VIRT, &phys), PAGING_OK);
    KASSERT_EQ(phys, frame);
    pmm_free_frame(frame);
}

KTEST_EXPECT_PANIC(access_after_unmap_faults_with_cr2)
{
    uint64_t frame = pmm_alloc_frame();
    KASSERT(frame != PMM_NO_FRAME);
    KASSERT_EQ(paging_map(TEST_VIRT, frame, PTE_WRITABLE | PTE_NO_EXECUTE), PAGING_OK);
    *(volatile uint64_t *)TEST_VIRT = 1; /* fills the TLB entry */
    KASSERT_EQ(paging_unmap(TEST_VIRT, NULL), PAGING_OK);
    pmm_free_frame(frame);
    ktest_expect_page_fault(TEST_VIRT + 0x10);
    (void)*(volatile uint64_t *)(TEST_VIRT + 0x10);
}

KTEST(map_over_mapping_is_refused)
{
    uint64_t a = pmm_alloc_frame(), b = pmm_alloc_frame();
    KASSERT(a != PMM_NO_FRAME && b != PMM_NO_FRAME);
    KASSERT_EQ(paging_map(TEST_VIRT, a, PTE_WRITABLE), PAGING_OK);
    KASSERT_EQ(paging_map(TEST_VIRT, b, PTE_WRITABLE), PAGING_ERR_ALREADY_MAPPED);
    uint64_t phys;
    KASSERT(paging_translate(TEST_VIRT, &phys, NULL));
    KASSERT_EQ(phys, a); /* never silently overwritten */
    /* A 4 KiB page inside the direct map's huge pages. */
    KASSERT_EQ(paging_map((uint64_t)(uintptr_t)phys_to_virt(0x200000), b, PTE_WRITABLE),
               PAGING_ERR_HUGE_PAGE);
    KASSERT_EQ(paging_unmap(TEST_VIRT, NULL), PAGING_OK);
    pmm_free_frame(a);
    pmm_free_frame(b);
}

KTEST(bad_addresses_and_flags_are_refused)
{
    uint64_t f = pmm_alloc_frame();
    KASSERT(f != PMM_NO_FRAME);
    KASSERT_EQ(paging_map(0x0000800000000000ull, f, 0), PAGING_ERR_NON_CANONICAL);
    KASSERT_EQ(paging_map(0xffff000000000000ull, f, 0), PAGING_ERR_NON_CANONICAL);
    KASSERT_EQ(paging_map(TEST_VIRT + 1, f, 0), PAGING_ERR_MISALIGNED);
    KASSERT_EQ(paging_map(TEST_VIRT, f + 8, 0), PAGING_ERR_MISALIGNED);
    KASSERT_EQ(paging_map(TEST_VIRT, f, PTE_HUGE), PAGING_ERR_BAD_FLAGS);
    KASSERT_EQ(paging_map_page(TEST_VIRT, f, 0, 12345), PAGING_ERR_MISALIGNED);
    KASSERT_EQ(paging_unmap(TEST_VIRT, NULL), PAGING_ERR_NOT_MAPPED);
    KASSERT_EQ(paging_unmap(0x0000800000000000ull, NULL), PAGING_ERR_NON_CANONICAL);
    uint64_t phys;
    KASSERT(!paging_translate(0x0000800000000000ull, &phys, NULL));
    KASSERT(!paging_translate(TEST_VIRT, &phys, NULL));
    pmm_free_frame(f);
}

KTEST(page_tables_come_from_high_memory_on_big_machines)
{
    /* A fresh mapping far from anything else needs new PDPT/PD/PT frames;
       they come from the top of RAM, so above 4 GiB when there is RAM
       there (QEMU_MEMORY=16G) and from wherever RAM is otherwise. */
    uint64_t far = 0x0000700000000000ull;
    uint64_t f = pmm_alloc_frame();
    KASSERT(f != PMM_NO_FRAME);
    KASSERT_EQ(paging_map(far, f, PTE_WRITABLE | PTE_NO_EXECUTE), PAGING_OK);
    struct paging_walk w;
    KASSERT(paging_walk(far, &w));
    KASSERT_EQ(w.levels, 4);
    uint64_t pt = w.table_phys[3];
    uint64_t highest = pmm_stats().highest_address;
    ktest_log("frame %p, page table %p, RAM ends at %p", (void *)f, (void *)pt, (void *)highest);
    if (highest > 0x100000000ull + 64 * PAGE_SIZE) {
        KASSERT(f >= 0x100000000ull);
        KASSERT(pt >= 0x100000000ull);
    }
    *(volatile uint64_t *)far = 0xfeed; /* the table is really used */
    KASSERT_EQ(*(volatile uint64_t *)phys_to_virt(f), 0xfeed);
    KASSERT_EQ(paging_unmap(far, NULL), PAGING_OK);
    pmm_free_frame(f);
}

KTEST_EXPECT_PANIC(write_to_kernel_text_faults)
{
    uint64_t text = (uint64_t)(uintptr_t)paging_walk;
    ktest_expect_page_fault(text);
    *(volatile uint8_t *)text = 0xc3;
}

KTEST_EXPECT_PANIC(write_to_rodata_faults)
{
    ktest_expect_page_fault((uint64_t)(uintptr_t)&kernel_rodata_word);
    *(volatile int *)&kernel_rodata_word = 8;
}

KTEST_EXPECT_PANIC(execute_from_data_page_faults)
{
    KASSERT(paging_has_nx());
    data_code_page[0] = 0xc3; /* ret */
    ktest_expect_page_fault((uint64_t)(uintptr_t)data_code_page);
    void (*fn)(void) = (void (*)(void))(uintptr_t)data_code_page;
    fn();
}

KTEST_EXPECT_PANIC(null_dereference_faults)
{
    ktest_expect_page_fault(0);
    volatile int *volatile null = NULL; /* volatile: the compiler may not assume it away */
    (void)*null;
}

KTEST(stack_guard_pages_and_identity_map_are_gone)
{
    uint64_t phys;
    KASSERT(!paging_translate((uint64_t)(uintptr_t)boot_stack_guard, &phys, NULL));
    KASSERT(!paging_translate((uint64_t)(uintptr_t)df_stack_guard, &phys, NULL));
    KASSERT(!paging_translate(0x100000, &phys, NULL)); /* old identity map */
    KASSERT(!paging_translate(0, &phys, NULL));
}

KTEST(refused_map_over_a_mapping_changes_nothing)
{
    uint64_t a = pmm_alloc_frame(), b = pmm_alloc_frame();
    KASSERT(a != PMM_NO_FRAME && b != PMM_NO_FRAME);
    KASSERT_EQ(paging_map(TEST_VIRT, a, PTE_WRITABLE | PTE_NO_EXECUTE), PAGING_OK);
    struct walk_snapshot before = snapshot(TEST_VIRT);
    KASSERT_EQ(before.levels, 4);
    KASSERT(!(before.entry[0] & PTE_USER)); /* so a refused PTE_USER map would show */
    /* Different flags (PTE_USER would widen the upper entries), a 2 MiB page
       over the page table, the same mapping again. */
    KASSERT_EQ(paging_map(TEST_VIRT, b, PTE_USER | PTE_WRITABLE), PAGING_ERR_ALREADY_MAPPED);
    struct walk_snapshot after = snapshot(TEST_VIRT);
    assert_unchanged(&before, &after, __LINE__);
    KASSERT_EQ(paging_map_page(TEST_VIRT & ~(PAGE_SIZE_2M - 1), 0, PTE_USER, PAGE_SIZE_2M),
               PAGING_ERR_ALREADY_MAPPED);
    after = snapshot(TEST_VIRT);
    assert_unchanged(&before, &after, __LINE__);
    KASSERT_EQ(paging_map(TEST_VIRT, a, PTE_WRITABLE | PTE_NO_EXECUTE), PAGING_ERR_ALREADY_MAPPED);
    after = snapshot(TEST_VIRT);
    assert_unchanged(&before, &after, __LINE__);
    KASSERT_EQ(paging_unmap(TEST_VIRT, NULL), PAGING_OK);
    pmm_free_frame(a);
    pmm_free_frame(b);
}

KTEST(refused_map_inside_a_huge_page_changes_nothing)
{
    uint64_t inside = (uint64_t)(uintptr_t)phys_to_virt(0x200000);
    uint64_t f = pmm_alloc_frame();
    KASSERT(f != PMM_NO_FRAME);
    struct walk_snapshot before = snapshot(inside);
    KASSERT(before.levels <= 3); /* a 1 GiB or 2 MiB leaf */
    KASSERT(!(before.entry[0] & PTE_USER));
    KASSERT_EQ(paging_map(inside, f, PTE_USER | PTE_WRITABLE), PAGING_ERR_HUGE_PAGE);
    struct walk_snapshot after = snapshot(inside);
    assert_unchanged(&before, &after, __LINE__);
    KASSERT_EQ(paging_map_page(inside, 0x200000, PTE_USER, PAGE_SIZE_2M),
               before.levels == 2 ? PAGING_ERR_HUGE_PAGE : PAGING_ERR_ALREADY_MAPPED);
    after = snapshot(inside);
    assert_unchanged(&before, &after, __LINE__);
    pmm_free_frame(f);
}

KTEST(refused_unmaps_change_nothing)
{
    uint64_t inside = (uint64_t)(uintptr_t)phys_to_virt(0x200000) + PAGE_SIZE;
    struct walk_snapshot before = snapshot(inside);
    KASSERT_EQ(paging_unmap(inside, NULL), PAGING_ERR_HUGE_PAGE);
    KASSERT_EQ(paging_unmap(inside + 8, NULL), PAGING_ERR_MISALIGNED);
    struct walk_snapshot after = snapshot(inside);
    assert_unchanged(&before, &after, __LINE__);
    before = snapshot(TEST_VIRT_FRESH);
    KASSERT_EQ(paging_unmap(TEST_VIRT_FRESH, NULL), PAGING_ERR_NOT_MAPPED);
    after = snapshot(TEST_VIRT_FRESH);
    assert_unchanged(&before, &after, __LINE__);
}

KTEST(map_out_of_frames_part_way_changes_nothing)
{
    /* The fresh address needs three new tables; with one or two frames left
       the map must fail without linking (or keeping) any of them. */
    KASSERT_EQ(paging_tables_needed(TEST_VIRT_FRESH, 1), 3);
    static struct frame_hoard hoard;
    for (uint64_t keep = 0; keep <= 2; keep++) {
        frame_hoard_take(&hoard, keep);
        ktest_defer(frame_hoard_release_deferred, &hoard);
        struct walk_snapshot before = snapshot(TEST_VIRT_FRESH);
        KASSERT_EQ(before.free_frames, keep);
        KASSERT_EQ(paging_map(TEST_VIRT_FRESH, 0x200000, PTE_WRITABLE | PTE_NO_EXECUTE),
                   PAGING_ERR_NO_MEMORY);
        struct walk_snapshot after = snapshot(TEST_VIRT_FRESH);
        assert_unchanged(&before, &after, __LINE__);
        frame_hoard_release(&hoard);
    }
    /* With frames back it works, and takes exactly the predicted tables. */
    uint64_t free0 = pmm_stats().free_frames;
    KASSERT_EQ(paging_map(TEST_VIRT_FRESH, 0x200000, PTE_NO_EXECUTE), PAGING_OK);
    KASSERT_EQ(free0 - pmm_stats().free_frames, 3);
    KASSERT_EQ(paging_tables_needed(TEST_VIRT_FRESH, 512), 0);
    KASSERT_EQ(paging_tables_needed(TEST_VIRT_FRESH, 513), 1); /* the next page table */
    KASSERT_EQ(paging_unmap(TEST_VIRT_FRESH, NULL), PAGING_OK);
}
