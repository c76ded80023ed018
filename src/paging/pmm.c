/*
 * Physical frame allocator.
 *
 * How it works. pmm_init() turns the memory map into a short sorted list of
 * usable ranges: the union of the available regions (page-aligned inward)
 * minus everything that is not available and minus what must never be
 * handed out (first 1 MiB, kernel image, boot information, caller's list,
 * our own metadata). Nothing is done per frame at init, so initialising
 * 16 GiB costs the same as 8 MiB plus one memset of the bitmap.
 *
 * Frames come from two places:
 *   - the free stacks: frames that were freed, as 32-bit frame numbers (so
 *     freeing never writes into the freed frame itself, and a test may
 *     allocate and free every frame without touching all of RAM). There are
 *     two, sharing one array from its two ends: frames at or above 4 GiB
 *     (growing down from the top) and frames below (growing up from the
 *     bottom); together they never hold more than every usable frame;
 *   - the frontier of each range: [lo, hi) of never-used memory. Ordinary
 *     allocations take from the top of the highest range (hi moves down),
 *     early page tables from the bottom of the lowest (lo moves up).
 * pmm_alloc_frame() tries, in order: a freed high frame, the high frontier
 * (the top of the highest range, when that lies at or above 4 GiB), a freed
 * low frame, the low frontier. So it returns a frame at or above 4 GiB
 * whenever one is free, in O(1). Why: memory below 4 GiB is the scarce kind
 * (the boot direct map, 32-bit DMA, pmm_alloc_frame_low()), and with a
 * single LIFO stack one freed low frame would be handed out before all the
 * free high memory, so on big machines page tables and heap pages drifted
 * below 4 GiB. Both stacks and the frontier moves are O(1); skipping an
 * exhausted range is amortized O(1). A freed frame that borders its range's
 * frontier extends the frontier instead of going on a stack (O(log ranges)
 * to find the range), so memory freed in reverse allocation order becomes
 * contiguous, never-used memory again.
 *
 * One bit per frame records "allocated", so freeing a frame that is not
 * allocated (a double free, a stray address) panics instead of corrupting
 * the stack. The bitmap and the stack are the metadata, carved out of the
 * lowest usable memory above 1 MiB and below 4 GiB.
 */
#include "pmm.h"

#include "cpu.h"
#include "kprintf.h"
#include "kstring.h"
#include "memlayout.h"
#include "panic.h"
#include "spinlock.h"

#define PMM_MAX_RANGES      128
#define LOW_MEMORY_END      0x100000ull    /* first 1 MiB: BIOS, VGA, real-mode leftovers */
#define BOOT_DIRECT_MAP_END 0x100000000ull /* what the boot direct map reaches */
#define BITS_PER_WORD       64

struct range {
    uint64_t lo, hi;     /* the never-used frontier; page aligned, lo <= hi */
    uint64_t start, end; /* the whole range (the frontier's bounds at init) */
};

/* A sorted list of disjoint page-aligned ranges. */
struct range_set {
    struct range *r;
    size_t n, max;
};

static struct range ranges[PMM_MAX_RANGES];
static size_t nranges;
static size_t high_cursor; /* ranges[0..high_cursor) may still have frontier frames */
static size_t low_cursor;  /* ranges[low_cursor..] likewise, seen from below */

static uint64_t *bitmap;       /* bit set = allocated */
static uint64_t bitmap_frames; /* frames the bitmap covers: [0, bitmap_frames) */
/* The two free stacks: low frames in free_stack[0, low_top), high frames in
   free_stack[high_bottom, free_cap). */
static uint32_t *free_stack;
static uint64_t low_top, high_bottom, free_cap;
static struct phys_range metadata;
static struct pmm_stats stats;
/* Guards everything above once CPUs run in parallel; taken with interrupts
   off (frames are allocated from interrupt handlers too). Lock order:
   spinlock.h. */
static struct spinlock pmm_lock = SPINLOCK_INIT("frame allocator");

_Static_assert(PMM_PHYS_LIMIT / PAGE_SIZE - 1 <= UINT32_MAX,
               "a free stack entry (uint32_t) must hold every frame number below PMM_PHYS_LIMIT");
_Static_assert(PMM_PHYS_LIMIT % PAGE_SIZE == 0, "PMM_PHYS_LIMIT must be frame aligned");
_Static_assert(PMM_PHYS_LIMIT < DIRECT_MAP_SPAN,
               "the direct map reaches every frame and stays below the kernel heap's guard page");

/* Rounds v up to a frame boundary; v must be at most PMM_PHYS_LIMIT (every
   caller clips first), so this cannot wrap. */
static uint64_t align_up(uint64_t v)
{
    kassert(v <= PMM_PHYS_LIMIT);
    return (v + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

static uint64_t align_down(uint64_t v)
{
    return v & ~(PAGE_SIZE - 1);
}

/* Inserts [lo, hi) keeping the set sorted and disjoint (merging overlaps). */
static void range_add(struct range_set *set, uint64_t lo, uint64_t hi)
{
    if (lo >= hi)
        return;
    struct range *r = set->r;
    size_t i = 0;
    while (i < set->n && r[i].hi < lo)
        i++;
    /* Merge with every range that touches [lo, hi). */
    size_t j = i;
    while (j < set->n && r[j].lo <= hi) {
        lo = r[j].lo < lo ? r[j].lo : lo;
        hi = r[j].hi > hi ? r[j].hi : hi;
        j++;
    }
    if (j == i && set->n == set->max) {
        kprintf("pmm: more than %zu usable ranges; dropping [%p-%p)\n", set->max, (void *)lo, (void *)hi);
        return;
    }
    /* Replace r[i..j) by the merged range. */
    size_t removed = j - i;
    if (removed == 0) {
        memmove(&r[i + 1], &r[i], (set->n - i) * sizeof(*r));
        set->n++;
    } else if (removed > 1) {
        memmove(&r[i + 1], &r[j], (set->n - j) * sizeof(*r));
        set->n -= removed - 1;
    }
    r[i] = (struct range){lo, hi, lo, hi};
}

/* Removes [lo, hi) from every range (page-aligned outward: a partly
   reserved frame is not usable). */
static void range_remove(struct range_set *set, uint64_t lo, uint64_t hi)
{
    if (lo >= PMM_PHYS_LIMIT)
        return; /* nothing usable lies there */
    hi = hi > PMM_PHYS_LIMIT ? PMM_PHYS_LIMIT : hi;
    lo = align_down(lo);
    hi = align_up(hi);
    if (lo >= hi)
        return;
    for (size_t i = 0; i < set->n; i++) {
        struct range *r = &set->r[i];
        if (r->hi <= lo || r->lo >= hi)
            continue;
        if (r->lo >= lo && r->hi <= hi) { /* swallowed whole */
            memmove(r, r + 1, (set->n - i - 1) * sizeof(*r));
            set->n--;
            i--;
        } else if (r->lo < lo && r->hi > hi) { /* split in two */
            if (set->n == set->max) {
                r->hi = r->end = lo; /* lose the upper part rather than overflow */
                continue;
            }
            memmove(r + 2, r + 1, (set->n - i - 1) * sizeof(*r));
            set->n++;
            r[1] = (struct range){hi, r->hi, hi, r->hi};
            r->hi = r->end = lo;
            i++;
        } else if (r->lo < lo) {
            r->hi = r->end = lo;
        } else {
            r->lo = r->start = hi;
        }
    }
}

static uint64_t set_frames(const struct range_set *set)
{
    uint64_t frames = 0;
    for (size_t i = 0; i < set->n; i++)
        frames += (set->r[i].hi - set->r[i].lo) / PAGE_SIZE;
    return frames;
}

/* The end of map entry m, cut at 2^64 if base + length wraps. */
static uint64_t region_end(const struct mem_region *m)
{
    uint64_t end;
    return __builtin_add_overflow(m->base, m->length, &end) ? UINT64_MAX : end;
}

/* Fills set with the available memory of bi below PMM_PHYS_LIMIT minus
   everything not available, the first 1 MiB, the kernel image, the boot
   information and withheld[0..n). Stores the bytes of available RAM at or
   above the limit in *ignored. Returns the frames of available RAM before
   the last four subtractions (what counts as "total"). */
static uint64_t build_ranges(struct range_set *set, const struct boot_info *bi,
                             const struct phys_range *withheld, size_t n, uint64_t *ignored)
{
    set->n = 0;
    *ignored = 0;
    for (size_t i = 0; i < bi->mmap_count; i++) {
        const struct mem_region *m = &bi->mmap[i];
        if (m->type != MEM_AVAILABLE || m->length == 0)
            continue;
        uint64_t base = m->base, end = region_end(m);
        if (end > PMM_PHYS_LIMIT) {
            uint64_t cut = base > PMM_PHYS_LIMIT ? base : PMM_PHYS_LIMIT;
            if (__builtin_add_overflow(*ignored, end - cut, ignored))
                *ignored = UINT64_MAX;
            end = cut;
        }
        if (base < end)
            range_add(set, align_up(base), align_down(end));
    }
    /* Not-available wins over available where the map overlaps itself. */
    for (size_t i = 0; i < bi->mmap_count; i++) {
        const struct mem_region *m = &bi->mmap[i];
        if (m->type != MEM_AVAILABLE && m->length > 0)
            range_remove(set, m->base, region_end(m));
    }
    uint64_t total = set_frames(set);
    range_remove(set, 0, LOW_MEMORY_END);
    range_remove(set, (uint64_t)(uintptr_t)__kernel_phys_start, (uint64_t)(uintptr_t)__kernel_phys_end);
    range_remove(set, bi->info_phys_start, bi->info_phys_end);
    for (size_t i = 0; i < n; i++)
        range_remove(set, withheld[i].start, withheld[i].end);
    return total;
}

size_t pmm_usable_ranges(const struct boot_info *bi, const struct phys_range *withheld, size_t n,
                         struct phys_range *out, size_t max)
{
    static struct range scratch[PMM_MAX_RANGES];
    struct range_set set = {scratch, 0, PMM_MAX_RANGES};
    uint64_t ignored;
    build_ranges(&set, bi, withheld, n, &ignored);
    size_t count = set.n < max ? set.n : max;
    for (size_t i = 0; i < count; i++)
        out[i] = (struct phys_range){set.r[i].lo, set.r[i].hi};
    return set.n;
}

/* Takes bytes (page-rounded) from the lowest range above 1 MiB and below
   4 GiB that has room, for the metadata. */
static uint64_t carve_metadata(struct range_set *set, uint64_t bytes)
{
    bytes = align_up(bytes);
    for (size_t i = 0; i < set->n; i++) {
        struct range *r = &set->r[i];
        uint64_t end;
        if (r->hi - r->lo >= bytes && !__builtin_add_overflow(r->lo, bytes, &end) &&
            end <= BOOT_DIRECT_MAP_END) {
            uint64_t at = r->lo;
            range_remove(set, at, at + bytes);
            return at;
        }
    }
    panic("pmm_init: no %llu bytes of RAM below 4 GiB for the frame allocator's metadata",
          (unsigned long long)bytes);
}

void pmm_init(const struct boot_info *bi, const struct phys_range *withheld, size_t n)
{
    struct range_set set = {ranges, 0, PMM_MAX_RANGES};
    uint64_t ignored;
    memset(&stats, 0, sizeof(stats));
    stats.total_frames = build_ranges(&set, bi, withheld, n, &ignored);
    if (ignored > 0)
        kprintf("pmm: ignoring %llu MiB of RAM at or above %llu TiB (frame numbers are 32-bit)\n",
                (unsigned long long)(ignored >> 20), (unsigned long long)(PMM_PHYS_LIMIT >> 40));
    stats.highest_address = set.n > 0 ? set.r[set.n - 1].hi : 0;

    /* Metadata: the allocated-bitmap over [0, highest) and a free stack big
       enough to hold every usable frame at once. */
    uint64_t usable = set_frames(&set);
    bitmap_frames = stats.highest_address / PAGE_SIZE;
    uint64_t bitmap_bytes = (bitmap_frames + BITS_PER_WORD - 1) / BITS_PER_WORD * sizeof(uint64_t);
    uint64_t stack_bytes = usable * sizeof(uint32_t);
    uint64_t meta = carve_metadata(&set, bitmap_bytes + stack_bytes);
    metadata = (struct phys_range){meta, meta + align_up(bitmap_bytes + stack_bytes)};
    bitmap = phys_to_virt(meta);
    free_stack = (uint32_t *)((uint8_t *)bitmap + bitmap_bytes);
    free_cap = usable;
    low_top = 0;
    high_bottom = free_cap;
    memset(bitmap, 0, bitmap_bytes);

    nranges = set.n;
    stats.free_frames = set_frames(&set);
    stats.reserved_frames = stats.total_frames - stats.free_frames;
    stats.regions = nranges;
    high_cursor = nranges;
    low_cursor = 0;
}

static void mark_allocated(uint64_t frame)
{
    uint64_t pfn = frame / PAGE_SIZE;
    bitmap[pfn / BITS_PER_WORD] |= 1ull << (pfn % BITS_PER_WORD);
    stats.free_frames--;
}

/* Common end of the single-frame allocators: records the outcome and
   releases the lock taken by the caller. */
static uint64_t finish_alloc(uint64_t frame, unsigned long flags)
{
    if (frame != PMM_NO_FRAME)
        mark_allocated(frame);
    else
        stats.failed_allocs++;
    spin_unlock_irqrestore(&pmm_lock, flags);
    return frame;
}

/* Takes the top frame of the highest range's frontier if it is at least
   min, else returns PMM_NO_FRAME. */
static uint64_t take_top_frontier(uint64_t min)
{
    while (high_cursor > 0 && ranges[high_cursor - 1].lo == ranges[high_cursor - 1].hi)
        high_cursor--;
    if (high_cursor == 0 || ranges[high_cursor - 1].hi - PAGE_SIZE < min)
        return PMM_NO_FRAME;
    ranges[high_cursor - 1].hi -= PAGE_SIZE;
    return ranges[high_cursor - 1].hi;
}

uint64_t pmm_alloc_frame(void)
{
    unsigned long flags = spin_lock_irqsave(&pmm_lock);
    uint64_t frame = PMM_NO_FRAME;
    if (high_bottom < free_cap)
        frame = (uint64_t)free_stack[high_bottom++] * PAGE_SIZE;
    else
        frame = take_top_frontier(BOOT_DIRECT_MAP_END);
    if (frame == PMM_NO_FRAME && low_top > 0)
        frame = (uint64_t)free_stack[--low_top] * PAGE_SIZE;
    if (frame == PMM_NO_FRAME)
        frame = take_top_frontier(0);
    return finish_alloc(frame, flags);
}

uint64_t pmm_alloc_frame_low(void)
{
    unsigned long flags = spin_lock_irqsave(&pmm_lock);
    uint64_t frame = PMM_NO_FRAME;
    while (low_cursor < nranges && ranges[low_cursor].lo == ranges[low_cursor].hi)
        low_cursor++;
    if (low_cursor < nranges && ranges[low_cursor].lo < BOOT_DIRECT_MAP_END) {
        frame = ranges[low_cursor].lo;
        ranges[low_cursor].lo += PAGE_SIZE;
    } else if (low_top > 0) {
        frame = (uint64_t)free_stack[--low_top] * PAGE_SIZE;
    }
    return finish_alloc(frame, flags);
}

uint64_t pmm_alloc_contiguous(size_t n)
{
    unsigned long flags = spin_lock_irqsave(&pmm_lock);
    uint64_t frame = PMM_NO_FRAME;
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)n, PAGE_SIZE, &bytes))
        n = 0; /* more than the address space: none fits */
    for (size_t i = nranges; n > 0 && i-- > 0;) {
        if (ranges[i].hi - ranges[i].lo >= bytes) {
            ranges[i].hi -= bytes;
            frame = ranges[i].hi;
            for (uint64_t f = frame; f < frame + bytes; f += PAGE_SIZE)
                mark_allocated(f);
            break;
        }
    }
    if (frame == PMM_NO_FRAME)
        stats.failed_allocs++;
    spin_unlock_irqrestore(&pmm_lock, flags);
    return frame;
}

bool pmm_frame_allocated(uint64_t frame)
{
    uint64_t pfn = frame / PAGE_SIZE;
    if (frame % PAGE_SIZE != 0 || pfn >= bitmap_frames)
        return false;
    return (bitmap[pfn / BITS_PER_WORD] >> (pfn % BITS_PER_WORD)) & 1;
}

/* Gives frame back to its range's frontier if it borders it, so memory
   freed in the reverse order of allocation becomes contiguous again.
   O(log ranges). Returns false if frame does not border the frontier. */
static bool return_to_frontier(uint64_t frame)
{
    size_t lo = 0, hi = nranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (frame >= ranges[mid].end)
            lo = mid + 1;
        else if (frame < ranges[mid].start)
            hi = mid;
        else {
            struct range *r = &ranges[mid];
            if (frame == r->hi)
                r->hi += PAGE_SIZE;
            else if (frame + PAGE_SIZE == r->lo)
                r->lo -= PAGE_SIZE;
            else
                return false;
            if (high_cursor < mid + 1)
                high_cursor = mid + 1;
            if (low_cursor > mid)
                low_cursor = mid;
            return true;
        }
    }
    return false;
}

void pmm_free_frame(uint64_t frame)
{
    unsigned long flags = spin_lock_irqsave(&pmm_lock);
    if (!pmm_frame_allocated(frame)) {
        spin_unlock_irqrestore(&pmm_lock, flags); /* the tests go on after this panic */
        panic("pmm_free_frame: %p is not an allocated frame (double free or bad address)", (void *)frame);
    }
    uint64_t pfn = frame / PAGE_SIZE;
    bitmap[pfn / BITS_PER_WORD] &= ~(1ull << (pfn % BITS_PER_WORD));
    if (!return_to_frontier(frame)) {
        kassert(low_top < high_bottom); /* never more freed frames than usable ones */
        if (frame >= BOOT_DIRECT_MAP_END)
            free_stack[--high_bottom] = (uint32_t)pfn;
        else
            free_stack[low_top++] = (uint32_t)pfn;
    }
    stats.free_frames++;
    spin_unlock_irqrestore(&pmm_lock, flags);
}

struct pmm_stats pmm_stats(void)
{
    unsigned long flags = spin_lock_irqsave(&pmm_lock);
    struct pmm_stats s = stats;
    spin_unlock_irqrestore(&pmm_lock, flags);
    return s;
}

struct phys_range pmm_metadata_range(void)
{
    return metadata;
}
