/*
 * The physical frame allocator: what it never hands out, exhaustion and
 * recovery, double frees, and how it reads odd memory maps.
 */
#include "ktest.h"

#include "kernel.h"
#include "kstring.h"
#include "memlayout.h"
#include "paging/pmm.h"

#define GIB 0x40000000ull

static bool overlaps(uint64_t frame, uint64_t start, uint64_t end)
{
    return frame + PAGE_SIZE > start && frame < end;
}

/* True if frame must never have been handed out. */
static bool forbidden(uint64_t frame)
{
    const struct boot_info *bi = kernel_boot_info();
    struct phys_range meta = pmm_metadata_range();
    return frame < 0x100000 ||
           overlaps(frame, (uint64_t)(uintptr_t)__kernel_phys_start,
                    (uint64_t)(uintptr_t)__kernel_phys_end) ||
           overlaps(frame, bi->info_phys_start, bi->info_phys_end) || overlaps(frame, meta.start, meta.end);
}

/* True if frame lies inside memory the map calls available, and in no
   region it calls anything else. */
static bool in_available_ram(uint64_t frame)
{
    const struct boot_info *bi = kernel_boot_info();
    bool available = false;
    for (size_t i = 0; i < bi->mmap_count; i++) {
        const struct mem_region *r = &bi->mmap[i];
        if (!overlaps(frame, r->base, r->base + r->length))
            continue;
        if (r->type != MEM_AVAILABLE)
            return false;
        if (frame >= r->base && frame + PAGE_SIZE <= r->base + r->length)
            available = true;
    }
    return available;
}

KTEST(every_frame_allocated_then_freed_restores_counters)
{
    struct pmm_stats before = pmm_stats();
    /* The list of allocated frames needs 4 bytes per frame: take it from
       the allocator itself, contiguous, through the direct map. */
    size_t list_pages = (size_t)((before.free_frames * sizeof(uint32_t) + PAGE_SIZE - 1) / PAGE_SIZE);
    uint64_t list_phys = pmm_alloc_contiguous(list_pages);
    KASSERT(list_phys != PMM_NO_FRAME);
    uint32_t *list = phys_to_virt(list_phys);

    uint64_t n = 0, bad = 0, above_4g = 0;
    for (uint64_t f; (f = pmm_alloc_frame()) != PMM_NO_FRAME;) {
        if (forbidden(f) || !in_available_ram(f) || f % PAGE_SIZE != 0)
            bad++;
        if (f >= 4 * GIB)
            above_4g++;
        list[n++] = (uint32_t)(f / PAGE_SIZE);
    }
    struct pmm_stats empty = pmm_stats();
    ktest_log("allocated %llu frames (%llu above 4 GiB) before running out", (unsigned long long)n,
              (unsigned long long)above_4g);
    KASSERT_EQ(bad, 0);
    KASSERT_EQ(n, before.free_frames - list_pages);
    KASSERT_EQ(empty.free_frames, 0);
    KASSERT_EQ(empty.failed_allocs, before.failed_allocs + 1);
    KASSERT_EQ(pmm_alloc_frame_low(), PMM_NO_FRAME);
    KASSERT_EQ(pmm_alloc_contiguous(1), PMM_NO_FRAME);

    /* Freed in reverse order, frames flow back into never-used memory, so
       contiguous allocations work again afterwards. */
    while (n > 0)
        pmm_free_frame((uint64_t)list[--n] * PAGE_SIZE);
    for (size_t i = list_pages; i-- > 0;)
        pmm_free_frame(list_phys + i * PAGE_SIZE);

    struct pmm_stats after = pmm_stats();
    KASSERT_EQ(after.free_frames, before.free_frames);
    KASSERT_EQ(after.total_frames, before.total_frames);
    KASSERT_EQ(after.reserved_frames, before.reserved_frames);
    uint64_t run = pmm_alloc_contiguous(list_pages);
    KASSERT(run != PMM_NO_FRAME);
    for (size_t i = list_pages; i-- > 0;)
        pmm_free_frame(run + i * PAGE_SIZE);

    /* Freed frames are handed out again. */
    uint64_t again = pmm_alloc_frame();
    KASSERT(again != PMM_NO_FRAME);
    pmm_free_frame(again);
}

KTEST(low_and_contiguous_allocations)
{
    uint64_t low = pmm_alloc_frame_low();
    KASSERT(low != PMM_NO_FRAME);
    KASSERT(low < 4 * GIB && !forbidden(low));
    KASSERT(pmm_frame_allocated(low));
    pmm_free_frame(low);
    KASSERT(!pmm_frame_allocated(low));

    uint64_t run = pmm_alloc_contiguous(16);
    KASSERT(run != PMM_NO_FRAME);
    for (int i = 0; i < 16; i++) {
        KASSERT(pmm_frame_allocated(run + (uint64_t)i * PAGE_SIZE));
        KASSERT(!forbidden(run + (uint64_t)i * PAGE_SIZE));
    }
    for (int i = 0; i < 16; i++)
        pmm_free_frame(run + (uint64_t)i * PAGE_SIZE);
}

KTEST(big_machines_hand_out_memory_above_4g_first)
{
    struct pmm_stats s = pmm_stats();
    uint64_t f = pmm_alloc_frame();
    KASSERT(f != PMM_NO_FRAME);
    if (s.highest_address > 4 * GIB + 64 * PAGE_SIZE)
        KASSERT(f >= 4 * GIB);
    else
        KASSERT(f < s.highest_address);
    pmm_free_frame(f);
}

KTEST(a_freed_low_frame_does_not_displace_free_high_memory)
{
    struct pmm_stats before = pmm_stats();
    /* pmm.h: a frame at or above 4 GiB comes back whenever one is free, so
       the first answer tells whether any high frame is free. */
    uint64_t probe = pmm_alloc_frame();
    KASSERT(probe != PMM_NO_FRAME);
    bool high_free = probe >= 4 * GIB;
    pmm_free_frame(probe);
    /* Two low frames; freeing the first while holding the second keeps it
       off the never-used frontier, so it lands among the freed frames. */
    uint64_t a = pmm_alloc_frame_low(), b = pmm_alloc_frame_low();
    KASSERT(a != PMM_NO_FRAME && b != PMM_NO_FRAME);
    KASSERT(a < 4 * GIB && b < 4 * GIB && !forbidden(a) && !forbidden(b));
    pmm_free_frame(a);
    uint64_t next = pmm_alloc_frame();
    ktest_log("high memory free: %s; freed low frame %p, then got %p", high_free ? "yes" : "no", (void *)a,
              (void *)next);
    KASSERT(next != PMM_NO_FRAME && !forbidden(next));
    if (high_free)
        KASSERT(next >= 4 * GIB);
    else
        KASSERT(next < 4 * GIB);
    pmm_free_frame(next);
    pmm_free_frame(b);
    KASSERT_EQ(pmm_stats().free_frames, before.free_frames);
    /* The low frame is still there for pmm_alloc_frame_low(). */
    uint64_t low = pmm_alloc_frame_low();
    KASSERT(low != PMM_NO_FRAME && low < 4 * GIB);
    pmm_free_frame(low);
}

KTEST_EXPECT_PANIC(double_free_of_a_frame_panics)
{
    uint64_t f = pmm_alloc_frame();
    KASSERT(f != PMM_NO_FRAME);
    pmm_free_frame(f);
    ktest_expect_panic_containing("is not an allocated frame");
    pmm_free_frame(f);
}

KTEST_EXPECT_PANIC(freeing_a_kernel_frame_panics)
{
    ktest_expect_panic_containing("pmm_free_frame");
    pmm_free_frame((uint64_t)(uintptr_t)__kernel_phys_start);
}

KTEST_EXPECT_PANIC(freeing_a_misaligned_address_panics)
{
    uint64_t f = pmm_alloc_frame();
    KASSERT(f != PMM_NO_FRAME);
    ktest_expect_panic_containing("is not an allocated frame");
    pmm_free_frame(f + 12);
}

KTEST(odd_memory_maps_are_read_safely)
{
    static struct boot_info bi;
    memset(&bi, 0, sizeof(bi));
    const struct mem_region map[] = {
        /* unsorted, overlapping, zero-length, unaligned, reserved inside available */
        {0x800000, 0x400000, MEM_AVAILABLE}, /* 8..12 MiB */
        {0x200000, 0x0, MEM_AVAILABLE},      /* zero length */
        {0x100800, 0x2ff800, MEM_AVAILABLE}, /* 1 MiB+2K .. 4 MiB: aligned inward */
        {0xa00000, 0x400000, MEM_AVAILABLE}, /* overlaps the first: 10..14 MiB */
        {0x900000, 0x1000, MEM_RESERVED},    /* a hole at 9 MiB */
        {0xb00800, 0x10, MEM_ACPI_NVS},      /* a partial frame at 11 MiB: frame lost */
        {0x0, 0x9fc00, MEM_AVAILABLE},       /* below 1 MiB: withheld */
        {0x2000000, 0x1000, 42},             /* unknown type: reserved */
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        bi.mmap[i] = map[i];
    bi.mmap_count = sizeof(map) / sizeof(map[0]);
    bi.info_phys_start = 0xc00000; /* boot info at 12 MiB */
    bi.info_phys_end = 0xc00100;
    struct phys_range withheld = {0xd00000, 0xd02000};

    struct phys_range out[8];
    size_t n = pmm_usable_ranges(&bi, &withheld, 1, out, 8);
    /* Expected: [1M+4K, 4M) [8M, 9M) [9M+4K, 11M) [11M+4K, 12M) [12M+4K, 13M) [13M+8K, 14M)
       minus the kernel image, which lives at 1 MiB. */
    uint64_t kernel_end = ((uint64_t)(uintptr_t)__kernel_phys_end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    const struct phys_range want[] = {
        {kernel_end, 0x400000}, {0x800000, 0x900000}, {0x901000, 0xb00000},
        {0xb01000, 0xc00000},   {0xc01000, 0xd00000}, {0xd02000, 0xe00000},
    };
    KASSERT_EQ(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n; i++) {
        if (out[i].start != want[i].start || out[i].end != want[i].end)
            ktest_fail(__FILE__, __LINE__, "range %zu is [%p-%p), want [%p-%p)", i, (void *)out[i].start,
                       (void *)out[i].end, (void *)want[i].start, (void *)want[i].end);
    }
}

KTEST(absurd_contiguous_counts_allocate_nothing)
{
    /* n * PAGE_SIZE overflows for all but the first; 2^52 frames are 2^64
       bytes (wraps to 0), 2^52 + 1 wraps to one frame. */
    const size_t counts[] = {
        0,
        SIZE_MAX,
        SIZE_MAX / PAGE_SIZE + 1,
        (size_t)1 << 52,
        ((size_t)1 << 52) + 1,
        SIZE_MAX / 2 + 1,
        (size_t)(PMM_PHYS_LIMIT / PAGE_SIZE) + 1,
    };
    size_t ncounts = sizeof(counts) / sizeof(counts[0]);
    struct pmm_stats before = pmm_stats();
    for (size_t i = 0; i < ncounts; i++) {
        uint64_t f = pmm_alloc_contiguous(counts[i]);
        if (f != PMM_NO_FRAME)
            ktest_fail(__FILE__, __LINE__, "pmm_alloc_contiguous(%zu) returned %p", counts[i], (void *)f);
    }
    struct pmm_stats after = pmm_stats();
    KASSERT_EQ(after.free_frames, before.free_frames);
    KASSERT_EQ(after.failed_allocs, before.failed_allocs + ncounts);
}

KTEST(memory_map_entries_near_2_to_the_64_are_read_safely)
{
    static struct boot_info bi;
    memset(&bi, 0, sizeof(bi));
    const uint64_t top_page = 0ull - PAGE_SIZE;
    const struct mem_region map[] = {
        {0x500000, 0x100000, MEM_AVAILABLE},                 /* [5 MiB, 6 MiB): ordinary */
        {0x200000000ull, 0x1000, MEM_AVAILABLE},             /* one frame at 8 GiB */
        {PMM_PHYS_LIMIT - 0x3000, 0x10000, MEM_AVAILABLE},   /* straddles the limit: cut */
        {0ull - 0x2000, 0x2000, MEM_AVAILABLE},              /* ends exactly at 2^64 */
        {top_page + 0x800, 0x1000, MEM_AVAILABLE},           /* unaligned, wraps past 2^64 */
        {top_page, UINT64_MAX, MEM_AVAILABLE},               /* length wraps */
        {PMM_PHYS_LIMIT - 0x1000, UINT64_MAX, MEM_RESERVED}, /* reserved, wraps */
        {top_page, 0x1000, MEM_RESERVED},                    /* the very last page */
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        bi.mmap[i] = map[i];
    bi.mmap_count = sizeof(map) / sizeof(map[0]);
    bi.info_phys_start = 0x580000;
    bi.info_phys_end = 0x580100;

    struct phys_range out[8];
    size_t n = pmm_usable_ranges(&bi, NULL, 0, out, 8);
    const struct phys_range want[] = {
        {0x500000, 0x580000},
        {0x581000, 0x600000},
        {0x200000000ull, 0x200001000ull},
        {PMM_PHYS_LIMIT - 0x3000, PMM_PHYS_LIMIT - 0x1000},
    };
    KASSERT_EQ(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n && i < 8; i++) {
        if (out[i].start != want[i].start || out[i].end != want[i].end)
            ktest_fail(__FILE__, __LINE__, "range %zu is [%p-%p), want [%p-%p)", i, (void *)out[i].start,
                       (void *)out[i].end, (void *)want[i].start, (void *)want[i].end);
    }
}
