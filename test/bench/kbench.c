/*
 * In-kernel heap benchmark: kernel_main() of the kbench-<backend> images,
 * run by the `bench-kernel` target (never by the test suite).
 *
 * Workloads, with a fixed seed so every backend sees the same sequence:
 *   a  the blog's "many boxes": allocate 8 bytes, free it, 100,000 times
 *   b  the same with one long-lived allocation held throughout
 *   c  10,000 slots, 200,000 steps: each step frees a random slot if it is
 *      live, else allocates into it: 70% 16-128 B, 25% 129-2048 B, 5% 2-64 KiB
 * Giving memory back (KBENCH release lines): the cost of one map/unmap
 * cycle of a 4 KiB heap page (heap_region_release + heap_region_reclaim of
 * a hole, per page), which chose HEAP_TRIM_THRESHOLD (docs/memory.md), and
 * cycles per kmalloc/kfree pair of a block below and above the threshold.
 * For each it prints TSC cycles per operation (an allocation or a free,
 * median of 5 runs after a warm-up) and, for c, the heap footprint (bytes
 * mapped) divided by the peak of the requested live bytes.
 *
 * Under QEMU TCG the TSC follows host time while the guest is emulated, so
 * the cycle counts are those of the emulation, not of real hardware: use
 * them to compare backends with each other, not with kheap-bench on the host.
 */
#include <stdint.h>

#include "alloc/heap_backend.h"
#include "alloc/kmalloc.h"
#include "memlayout.h"
#include "cpu.h"
#include "kprintf.h"
#include "kstring.h"
#include "paging/heap_region.h"
#include "paging/pmm.h"
#include "timer.h"
#include "qemu.h"

#define RUNS          5
#define AB_ITERATIONS 100000
#define C_SLOTS       10000
#define C_STEPS       200000

static uint64_t rng_state;

static uint64_t rand64(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static size_t mix_size(void)
{
    uint64_t r = rand64() % 100;
    if (r < 70)
        return 16 + rand64() % 113;
    if (r < 95)
        return 129 + rand64() % 1920;
    return 2048 + rand64() % (62 * 1024 + 1);
}

static uint64_t median(uint64_t *v, int n)
{
    for (int i = 1; i < n; i++) {
        uint64_t key = v[i];
        int j = i;
        while (j > 0 && v[j - 1] > key) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = key;
    }
    return v[n / 2];
}

/* Returns cycles per operation (alloc or free) of workload a or b. */
static uint64_t run_ab(bool long_lived)
{
    void *keep = long_lived ? kmalloc(8) : NULL;
    uint64_t start = rdtsc();
    for (int i = 0; i < AB_ITERATIONS; i++) {
        uint64_t *p = kmalloc(8);
        if (p == NULL)
            break;
        *p = (uint64_t)i;
        kfree(p);
    }
    uint64_t cycles = rdtsc() - start;
    kfree(keep);
    return cycles / (2 * AB_ITERATIONS);
}

struct c_result {
    uint64_t cycles_per_op;
    uint64_t failed;
    size_t peak_requested;
    size_t mapped;
};

static void *slots[C_SLOTS];
static size_t slot_size[C_SLOTS];

static struct c_result run_c(void)
{
    struct c_result r = {0, 0, 0, 0};
    memset(slots, 0, sizeof(slots));
    rng_state = 0x5eed;
    size_t live = 0;
    uint64_t ops = 0;
    uint64_t start = rdtsc();
    for (int step = 0; step < C_STEPS; step++) {
        size_t i = rand64() % C_SLOTS;
        if (slots[i] != NULL) {
            kfree(slots[i]);
            live -= slot_size[i];
            slots[i] = NULL;
        } else {
            size_t n = mix_size();
            slots[i] = kmalloc(n);
            if (slots[i] == NULL) {
                r.failed++;
            } else {
                slot_size[i] = n;
                live += n;
                if (live > r.peak_requested)
                    r.peak_requested = live;
            }
        }
        ops++;
    }
    r.cycles_per_op = (rdtsc() - start) / ops;
    r.mapped = kmalloc_stats().bytes_mapped;
    for (size_t i = 0; i < C_SLOTS; i++)
        kfree(slots[i]);
    return r;
}

#define PMM_FRAMES 65536
static uint64_t frames[PMM_FRAMES];

/* Frame allocator: cycles per pmm_alloc_frame() and per pmm_free_frame(),
   over up to PMM_FRAMES frames (fewer on small machines). */
static void bench_pmm(void)
{
    size_t n = 0;
    uint64_t t0 = rdtsc();
    while (n < PMM_FRAMES && (frames[n] = pmm_alloc_frame()) != PMM_NO_FRAME)
        n++;
    uint64_t t1 = rdtsc();
    for (size_t i = n; i-- > 0;)
        pmm_free_frame(frames[i]);
    uint64_t t2 = rdtsc();
    /* Freed in allocation order: the free stack path instead of the frontier. */
    for (size_t i = 0; i < n; i++)
        frames[i] = pmm_alloc_frame();
    uint64_t t3 = rdtsc();
    for (size_t i = 0; i < n; i++)
        pmm_free_frame(frames[i]);
    uint64_t t4 = rdtsc();
    uint64_t mhz = timer_tsc_hz() / 1000000;
    kprintf("KBENCH pmm frames=%zu alloc_cycles=%llu free_cycles=%llu "
            "stack_free_cycles=%llu stack_alloc_cycles=%llu tsc_mhz=%llu\n",
            n, (unsigned long long)((t1 - t0) / n), (unsigned long long)((t2 - t1) / n),
            (unsigned long long)((t4 - t3) / n), (unsigned long long)((t3 - t2) / n),
            (unsigned long long)mhz);
}

#define REL_PAGES  64  /* pages per release/reclaim round */
#define REL_ROUNDS 200 /* rounds */

/* Map/unmap cycle cost: a hole of REL_PAGES pages punched into and refilled
   in a private region (what env.release / env.reclaim cost the kernel heap),
   per page; then kmalloc/kfree pairs below and above the trim threshold. */
static void bench_release(const char *name)
{
    static struct heap_region r;
    uint64_t start;
    if (!heap_region_init(&r, KERNEL_PRIVATE_HEAP_WINDOW_BASE(9), KERNEL_PRIVATE_HEAP_WINDOW_SPAN,
                          KERNEL_PRIVATE_HEAP_WINDOW_SPAN) ||
        heap_region_grow(&r, 3 * REL_PAGES, &start) != PAGING_OK)
        return;
    uint64_t hole = start + REL_PAGES * PAGE_SIZE, t_rel = 0, t_rec = 0;
    for (int i = 0; i < REL_ROUNDS; i++) {
        uint64_t t0 = rdtsc();
        heap_region_release(&r, hole, REL_PAGES);
        uint64_t t1 = rdtsc();
        if (heap_region_reclaim(&r, hole, REL_PAGES) != PAGING_OK)
            break;
        uint64_t t2 = rdtsc();
        t_rel += t1 - t0;
        t_rec += t2 - t1;
    }
    heap_region_shrink(&r, 3 * REL_PAGES);
    uint64_t pages = (uint64_t)REL_PAGES * REL_ROUNDS;
    struct heap_stats s0 = kmalloc_stats();
    uint64_t pair[2];
    size_t sizes[2] = {HEAP_TRIM_THRESHOLD / 2, 4 * HEAP_TRIM_THRESHOLD};
    for (int k = 0; k < 2; k++) {
        void *warm = kmalloc(sizes[k]);
        kfree(warm);
        uint64_t t0 = rdtsc();
        for (int i = 0; i < 1000; i++) {
            void *p = kmalloc(sizes[k]);
            if (p != NULL)
                ((volatile char *)p)[0] = 1;
            kfree(p);
        }
        pair[k] = (rdtsc() - t0) / 1000;
    }
    struct heap_stats s1 = kmalloc_stats();
    kprintf("KBENCH release allocator=%s unmap_cycles_per_page=%llu map_cycles_per_page=%llu "
            "pair_below_threshold=%llu pair_above_threshold=%llu threshold=%zu pages_released=%llu "
            "pages_reclaimed=%llu\n",
            name, (unsigned long long)(t_rel / pages), (unsigned long long)(t_rec / pages),
            (unsigned long long)pair[0], (unsigned long long)pair[1], (size_t)HEAP_TRIM_THRESHOLD,
            (unsigned long long)(s1.pages_released - s0.pages_released),
            (unsigned long long)(s1.pages_reclaimed - s0.pages_reclaimed));
}

_Noreturn void kernel_main(void)
{
    if (strcmp(kmalloc_backend_name(), heap_backends[0]->name) == 0 && !heap_hardening())
        bench_pmm(); /* once per bench-kernel run (the first image) is enough */
    static char name[48];
    ksnprintf(name, sizeof(name), "%s%s", kmalloc_backend_name(), heap_hardening() ? "_hardened" : "");
    uint64_t a[RUNS], b[RUNS], c[RUNS];
    struct c_result cr = {0, 0, 0, 0};

    run_ab(false); /* warm-up: maps the initial working set */
    for (int i = 0; i < RUNS; i++) {
        a[i] = run_ab(false);
        b[i] = run_ab(true);
    }
    for (int i = 0; i < RUNS; i++) {
        struct c_result r = run_c();
        c[i] = r.cycles_per_op;
        if (i == 0)
            cr = r; /* footprint of the first run: the heap only grows afterwards */
    }
    uint64_t ratio_x100 = cr.peak_requested ? (uint64_t)cr.mapped * 100 / cr.peak_requested : 0;
    kprintf("KBENCH allocator=%s workload=a cycles_per_op=%llu footprint_ratio=-\n", name,
            (unsigned long long)median(a, RUNS));
    kprintf("KBENCH allocator=%s workload=b cycles_per_op=%llu footprint_ratio=-\n", name,
            (unsigned long long)median(b, RUNS));
    kprintf("KBENCH allocator=%s workload=c cycles_per_op=%llu footprint_ratio=%llu.%02llu"
            " failed_allocs=%llu peak_requested=%zu mapped=%zu\n",
            name, (unsigned long long)median(c, RUNS), (unsigned long long)(ratio_x100 / 100),
            (unsigned long long)(ratio_x100 % 100), (unsigned long long)cr.failed, cr.peak_requested,
            cr.mapped);
    bench_release(name);
    qemu_exit(kmalloc_check() == 0 ? QEMU_EXIT_SUCCESS : QEMU_EXIT_FAILURE);
}
