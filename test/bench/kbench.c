/*
 * In-kernel heap benchmark: kernel_main() of the kbench-<backend> images,
 * run by the `bench-kernel` target (never by the test suite).
 *
 * Workloads, with a fixed seed so every backend sees the same sequence:
 *   a  the blog's "many boxes": allocate 8 bytes, free it, 100,000 times
 *   b  the same with one long-lived allocation held throughout
 *   c  10,000 slots, 200,000 steps: each step frees a random slot if it is
 *      live, else allocates into it: 70% 16-128 B, 25% 129-2048 B, 5% 2-64 KiB
 *   p  producer/consumer (as kheap-bench's p): a 1,000-slot FIFO queue,
 *      100,000 steps, each allocating the newest entry (16-512 B) and freeing
 *      the oldest; the last 1,000 freed at the end
 *   k  object-cache bursts (as kheap-bench's k): bursts of 16-512
 *      allocations of one of 7 sizes (24-640 B), each burst freed entirely,
 *      half LIFO and half in random order; 100,000 allocations
 *   p and k run on a fresh private heap of the image's backend per run
 *   (window PK_WINDOW, per-CPU caches as the kernel heap has), with sizes and
 *   orders generated before the timed region; an untimed first run samples
 *   the heap's bytes_mapped (every 1,024 steps, every burst) for the footprint.
 * Giving memory back (KBENCH release lines): the cost of one map/unmap
 * cycle of a 4 KiB heap page (heap_region_release + heap_region_reclaim of
 * a hole, per page), which chose HEAP_TRIM_THRESHOLD (docs/memory.md), and
 * cycles per kmalloc/kfree pair of a block below and above the threshold.
 * For each it prints TSC cycles per operation (an allocation or a free,
 * median of 5 runs after a warm-up) and, for c, the heap footprint (bytes
 * mapped) divided by the peak of the requested live bytes.
 * Several CPUs (KBENCH smp lines): SMP_PAIRS alloc/free pairs of 16-256 B
 * (allocate, write a byte, free; immediate pairs, so that bump reuses its
 * memory too) on one CPU, then on every CPU at once, each on its own
 * SMP_PAIRS; on two private heaps of the image's backend, one with
 * per-CPU caches (KERNEL_HEAP_CPU_CACHES) and one without, runs
 * interleaved over SMP_REPS repetitions. It prints the cycles per
 * operation (wall time of the run / operations of one CPU) for both and
 * the throughput ratio all-CPUs / one CPU = ncpus * T(1 CPU) / T(all
 * CPUs): the median over the repetitions and its spread (min, max).
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
#include "kernel_heap.h"
#include "kprintf.h"
#include "kstring.h"
#include "paging/heap_region.h"
#include "paging/pmm.h"
#include "smp.h"
#include "timer.h"
#include "qemu.h"

#define RUNS          5
#define AB_ITERATIONS 100000
#define C_SLOTS       10000
#define C_STEPS       200000

static uint64_t rng_state;

/* xorshift64*: advances *state (never 0) and returns 64 random bits. */
static uint64_t xorshift(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t rand64(void)
{
    return xorshift(&rng_state);
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

#define P_SLOTS      1000
#define P_STEPS      100000
#define K_ALLOCS     100000
#define K_BURST_MIN  16
#define K_BURST_MAX  512
#define K_MAX_BURSTS (K_ALLOCS / K_BURST_MIN + 1)
#define N_SIZES_K    7
#define PK_WINDOW    12 /* private heap window of p and k (9-11: release and smp below) */

/* The k workload's object sizes, like kernel structures (not size-class boundaries). */
static const uint16_t k_sizes[N_SIZES_K] = {24, 56, 96, 136, 200, 320, 640};
static uint16_t p_size[P_STEPS];
static uint16_t k_size[K_MAX_BURSTS], k_len[K_MAX_BURSTS];
static uint16_t k_order[K_ALLOCS]; /* per burst, the order of its frees (indices into the burst) */
static int k_bursts;

/* Sizes and free orders of p and k, from fixed seeds. */
static void generate_pk(void)
{
    rng_state = 0x5eed + 1;
    for (int i = 0; i < P_STEPS; i++)
        p_size[i] = (uint16_t)(16 + rand64() % 497);
    rng_state = 0x5eed + 2;
    for (int done = 0; done < K_ALLOCS; k_bursts++) {
        int len = K_BURST_MIN + (int)(rand64() % (K_BURST_MAX - K_BURST_MIN + 1));
        uint16_t *order = &k_order[done];
        if (len > K_ALLOCS - done)
            len = K_ALLOCS - done;
        k_size[k_bursts] = k_sizes[rand64() % N_SIZES_K];
        k_len[k_bursts] = (uint16_t)len;
        for (int i = 0; i < len; i++)
            order[i] = (uint16_t)(len - 1 - i); /* LIFO: newest first */
        if (rand64() % 2)
            for (int i = len - 1; i > 0; i--) { /* or a random permutation */
                int j = (int)(rand64() % (uint64_t)(i + 1));
                uint16_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        done += len;
    }
}

/* Footprint run of p or k: the heap's bytes_mapped, kept at its maximum. */
static void sample_mapped(struct heap *h, bool measure, struct c_result *r)
{
    if (measure) {
        size_t m = heap_stats(h).bytes_mapped;
        r->mapped = m > r->mapped ? m : r->mapped;
    }
}

static void pk_producer_consumer(struct heap *h, bool measure, struct c_result *r)
{
    size_t live = 0;
    for (int i = 0; i < P_STEPS; i++) {
        int newest = i % P_SLOTS;
        void *p = heap_alloc(h, p_size[i]);
        void *oldest = i >= P_SLOTS ? slots[newest] : NULL;
        if (p == NULL)
            r->failed++;
        else
            *(volatile char *)p = 1;
        if (oldest != NULL) {
            heap_free(h, oldest);
            live -= slot_size[newest];
        }
        slots[newest] = p;
        slot_size[newest] = p != NULL ? p_size[i] : 0;
        live += slot_size[newest];
        if (live > r->peak_requested)
            r->peak_requested = live;
        if ((i & 1023) == 0)
            sample_mapped(h, measure, r);
    }
    sample_mapped(h, measure, r);
    for (int i = P_STEPS - P_SLOTS; i < P_STEPS; i++)
        heap_free(h, slots[i % P_SLOTS]);
}

static void pk_object_bursts(struct heap *h, bool measure, struct c_result *r)
{
    const uint16_t *order = k_order;
    for (int b = 0; b < k_bursts; b++) {
        size_t n = k_size[b], live = 0;
        for (int i = 0; i < k_len[b]; i++) {
            void *p = heap_alloc(h, n);
            if (p == NULL)
                r->failed++;
            else {
                *(volatile char *)p = 1;
                live += n;
            }
            slots[i] = p;
        }
        if (live > r->peak_requested)
            r->peak_requested = live;
        sample_mapped(h, measure, r);
        for (int i = 0; i < k_len[b]; i++)
            heap_free(h, slots[order[i]]);
        order += k_len[b];
    }
}

/* One run of p or k on a fresh private heap; measure: the untimed footprint run. Returns
   cycles_per_op = UINT64_MAX if the heap cannot be created. */
static struct c_result run_pk(char w, bool measure)
{
    static struct kernel_heap kh;
    struct c_result r = {0, 0, 0, 0};
    if (kernel_heap_private_create_flags(&kh, NULL, KERNEL_PRIVATE_HEAP_WINDOW_BASE(PK_WINDOW),
                                         KERNEL_PRIVATE_HEAP_WINDOW_SPAN, 16,
                                         KERNEL_HEAP_CPU_CACHES) == NULL) {
        r.cycles_per_op = UINT64_MAX;
        return r;
    }
    uint64_t start = rdtsc();
    if (w == 'p')
        pk_producer_consumer(kh.heap, measure, &r);
    else
        pk_object_bursts(kh.heap, measure, &r);
    r.cycles_per_op = (rdtsc() - start) / (2 * (w == 'p' ? P_STEPS : K_ALLOCS));
    if (heap_check(kh.heap) != 0 || heap_stats(kh.heap).live_allocs != 0)
        r.failed = UINT64_MAX; /* printed: the heap is broken */
    kernel_heap_private_destroy(&kh);
    return r;
}

/* Workloads p and k: a footprint run, then RUNS timed runs; one KBENCH line each. */
static void bench_pk(const char *name)
{
    generate_pk();
    for (int k = 0; k < 2; k++) {
        char w = k == 0 ? 'p' : 'k';
        struct c_result fp = run_pk(w, true);
        uint64_t t[RUNS], failed = fp.failed;
        if (fp.cycles_per_op == UINT64_MAX) {
            kprintf("KBENCH allocator=%s workload=%c: cannot create the private heap\n", name, w);
            return;
        }
        for (int i = 0; i < RUNS; i++) {
            struct c_result r = run_pk(w, false);
            t[i] = r.cycles_per_op;
            failed = r.failed > failed ? r.failed : failed;
        }
        uint64_t ratio_x100 = fp.peak_requested ? (uint64_t)fp.mapped * 100 / fp.peak_requested : 0;
        kprintf("KBENCH allocator=%s workload=%c cycles_per_op=%llu footprint_ratio=%llu.%02llu"
                " failed_allocs=%llu peak_requested=%zu mapped=%zu\n",
                name, w, (unsigned long long)median(t, RUNS), (unsigned long long)(ratio_x100 / 100),
                (unsigned long long)(ratio_x100 % 100), (unsigned long long)failed, fp.peak_requested,
                fp.mapped);
    }
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

#define SMP_PAIRS           50000
#define SMP_REPS            5
#define SMP_WAIT_MS         600000 /* an uncached heap on overcommitted vCPUs is slow, never stuck */
#define SMP_CACHED_WINDOW   10     /* private heap windows (memlayout.h) */
#define SMP_UNCACHED_WINDOW 11

struct smp_run {
    struct heap *heap;
    uint64_t seed;
    uint64_t failed;
    const volatile bool *go;
};

/* One CPU's share: waits for go, then SMP_PAIRS alloc/free pairs. */
static void smp_pairs(void *arg)
{
    struct smp_run *r = arg;
    while (!__atomic_load_n(r->go, __ATOMIC_ACQUIRE))
        cpu_relax();
    uint64_t rng = r->seed;
    for (uint64_t i = 0; i < SMP_PAIRS; i++) {
        volatile uint8_t *p = heap_alloc(r->heap, 16 + xorshift(&rng) % 241);
        if (p == NULL) {
            r->failed++;
            continue;
        }
        p[0] = (uint8_t)i;
        heap_free(r->heap, (void *)(uintptr_t)p);
    }
}

/* Runs smp_pairs on CPUs 0 .. cpus-1 at once; returns the wall TSC cycles
   from the start signal until every CPU has finished, 0 if a CPU failed. */
static uint64_t smp_run_on(struct heap *h, unsigned cpus, uint64_t *failed)
{
    static struct smp_run runs[SMP_MAX_CPUS];
    static volatile bool go;
    go = false;
    for (unsigned i = 0; i < cpus; i++)
        runs[i] = (struct smp_run){.heap = h, .seed = 0x5eed + i * 0x9e37, .go = &go};
    for (unsigned i = 1; i < cpus; i++)
        if (smp_call_start(i, smp_pairs, &runs[i]) != SMP_CALL_OK)
            return 0;
    uint64_t t0 = rdtsc();
    __atomic_store_n(&go, true, __ATOMIC_RELEASE);
    smp_pairs(&runs[0]);
    bool ok = true;
    for (unsigned i = 1; i < cpus; i++)
        ok &= smp_call_wait(i, SMP_WAIT_MS, NULL) == SMP_CALL_OK;
    uint64_t t = rdtsc() - t0;
    for (unsigned i = 0; i < cpus; i++)
        *failed += runs[i].failed;
    return ok ? t : 0;
}

/* One CPU vs every CPU, with and without per-CPU caches (see the top). */
static void bench_smp(const char *name)
{
    static struct kernel_heap heaps[2];
    const unsigned windows[2] = {SMP_CACHED_WINDOW, SMP_UNCACHED_WINDOW};
    const unsigned flags[2] = {KERNEL_HEAP_CPU_CACHES, 0};
    unsigned n = smp_cpu_count();
    uint64_t one[2][SMP_REPS], all[2][SMP_REPS], ratio[2][SMP_REPS], failed[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        if (kernel_heap_private_create_flags(&heaps[k], NULL, KERNEL_PRIVATE_HEAP_WINDOW_BASE(windows[k]),
                                             KERNEL_PRIVATE_HEAP_WINDOW_SPAN, 64, flags[k]) == NULL) {
            kprintf("KBENCH smp allocator=%s: cannot create the private heaps\n", name);
            return;
        }
        smp_run_on(heaps[k].heap, n, &failed[k]); /* warm-up: caches filled, pages mapped */
    }
    for (int rep = 0; rep < SMP_REPS; rep++) {
        for (int k = 0; k < 2; k++) { /* interleaved: both heaps see the same host noise */
            uint64_t t1 = smp_run_on(heaps[k].heap, 1, &failed[k]);
            uint64_t tn = smp_run_on(heaps[k].heap, n, &failed[k]);
            one[k][rep] = t1 / (2 * SMP_PAIRS);
            all[k][rep] = tn / (2 * SMP_PAIRS);
            ratio[k][rep] = tn != 0 ? (uint64_t)n * t1 * 100 / tn : 0;
        }
    }
    for (int k = 0; k < 2; k++) {
        struct heap_stats st = heap_stats(heaps[k].heap);
        size_t problems = heap_check(heaps[k].heap);
        uint64_t lo = ratio[k][0], hi = ratio[k][0];
        for (int rep = 1; rep < SMP_REPS; rep++) {
            lo = ratio[k][rep] < lo ? ratio[k][rep] : lo;
            hi = ratio[k][rep] > hi ? ratio[k][rep] : hi;
        }
        uint64_t med = median(ratio[k], SMP_REPS);
        kprintf("KBENCH smp allocator=%s cpus=%u caches=%s pairs_per_cpu=%d one_cpu_cycles_per_op=%llu "
                "all_cpus_cycles_per_op=%llu speedup=%llu.%02llu speedup_min=%llu.%02llu "
                "speedup_max=%llu.%02llu reps=%d failed_allocs=%llu live=%zu check=%zu\n",
                name, n, k == 0 ? "on" : "off", SMP_PAIRS, (unsigned long long)median(one[k], SMP_REPS),
                (unsigned long long)median(all[k], SMP_REPS), (unsigned long long)(med / 100),
                (unsigned long long)(med % 100), (unsigned long long)(lo / 100),
                (unsigned long long)(lo % 100), (unsigned long long)(hi / 100),
                (unsigned long long)(hi % 100), SMP_REPS, (unsigned long long)failed[k], st.live_allocs,
                problems);
        kernel_heap_private_destroy(&heaps[k]);
    }
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
    bench_pk(name);
    bench_release(name);
    bench_smp(name);
    qemu_exit(kmalloc_check() == 0 ? QEMU_EXIT_SUCCESS : QEMU_EXIT_FAILURE);
}
