/*
 * bench.c - kheap-bench: every backend, glibc, tcmalloc, jemalloc and mimalloc on the same workloads,
 * in one process.
 *
 * Usage: kheap-bench [reps] [--plain-only] [--only NAME] [--workload a|b|c|p|k] [--steps N]
 *                    [--no-footprint] [--release] [--cpu-time]
 *        kheap-bench --burst [reps] [--release] [--only NAME]
 *        kheap-bench --threads N [--caches on|off] [reps] [--only NAME]
 *        kheap-bench --footprint-trace FILE [--steps N] [--plain-only] [--only NAME]
 *   reps: timed repetitions after 1 warm-up (default 5; median, min and max are reported). A
 *   repetition runs every workload on every allocator once, so that the machine's load hits all rows
 *   alike. --only runs just the allocators whose name starts with NAME (e.g. for `perf stat` or
 *   callgrind of one row), --workload just one workload; both are passed on to the hardened twin.
 *   --steps N: each workload runs only its first N steps (a, b: N pairs; c, p: N steps; k: the
 *   bursts that start within the first N allocations) -- for a quick run (the bench_plot test).
 *   --no-footprint skips the untimed footprint passes (callgrind-ops.sh counts only timed runs).
 *   --cpu-time times every run by the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) instead of the wall
 *   clock: on a machine busy with other work, the time this process was not running drops out (its
 *   caches and the core's other thread are still shared).
 *   --release: our heaps give memory back through arena.c's recording environment
 *   (host_arena_release_env: its bookkeeping and the madvise/mprotect calls are part of the cost).
 *   --burst: instead of the workloads below, workload e only (our heaps; with --release to give memory
 *   back): BURST_ROUNDS rounds of allocating 64 MiB in mixed sizes (16 B .. 64 KiB, every 16th 1 MiB)
 *   with a 64 B block allocated after them and freed last, then freeing the burst in random order;
 *   ops = allocations + frees.
 *   --footprint-trace: no timing; runs the first N steps of workload c (default all 2,000,000) once per
 *   allocator (our heaps and glibc) and writes FILE, one line "allocator step bytes_mapped
 *   bytes_in_use" per sample (every N / TRACE_SAMPLES steps, and once more after the final frees, as
 *   step N + 1); the hardened twin appends its rows. Our heaps run on an arena that gives memory back
 *   (host_arena_release_env, as the kernel's heap region does); the system row is mallinfo2's arena +
 *   hblkhd and uordblks + hblkhd. test/host/footprint.py draws the file (docs/img/footprint-c.svg,
 *   target footprint-plot).
 *   --threads N: the several-CPU mode instead (threads_main below): workload a's loop on one thread,
 *   then on N threads at once, on one heap with a spin lock, per backend with per-CPU caches on
 *   (cpu_count = N) and off; --caches on|off runs only one of the two (for callgrind). --caches on
 *   without --threads: every workload runs on a heap with a spin lock and per-CPU caches (cpu_count 2,
 *   the benchmark always on CPU 0), the kernel's configuration on one CPU, instead of the default
 *   (no lock, no caches).
 *
 * Workloads (sizes, slots and orders are pre-generated from fixed seeds, outside the timed region):
 *   a  1,000,000 x { p = alloc(8..64 B); free(p) }                           ops = 2,000,000
 *   b  as a, with one 64 B allocation held for the whole run                 ops = 2,000,000
 *   c  10,000 slots, 2,000,000 steps: pick a random slot; free it if live, else allocate into it
 *      (70% 16..128 B, 25% 129..2048 B, 5% 2..64 KiB)                        ops = 2,000,000
 *   p  producer/consumer: a queue of 1,000 slots, 1,000,000 steps; each step allocates the newest
 *      entry (16..512 B) and frees the oldest (the one allocated 1,000 steps before), the steady
 *      state of a FIFO queue; the last 1,000 are freed at the end, oldest first.  ops = 2,000,000
 *   k  kernel-style object caches: bursts of 16..512 allocations of one size drawn from 7 object
 *      sizes (K_SIZES: 24..640 B, not powers of two), each burst then freed entirely, half of the
 *      bursts LIFO (newest first) and half in random order; 1,000,000 allocations in all.
 *                                                                            ops = 2,000,000
 * Footprint (c, p, k) = memory from the OS / peak of live requested bytes, from an untimed pass per
 * allocator and workload in a child process forked before any timed run (so every allocator starts
 * empty) that writes every byte it allocates. "From the OS" is the maximum over samples every 1024
 * steps (every burst on k, and at the end) of:
 *   our heaps  stats.bytes_mapped (memory the heap obtained through env.grow, minus what it gave back)
 *   glibc      mallinfo2 arena + hblkhd (sbrk'd arena + mmapped chunks), after malloc_trim(0)
 *   tcmalloc   generic.heap_size - tcmalloc.pageheap_unmapped_bytes (MallocExtension_GetNumeric-
 *              Property: the page heap's mapped bytes, free spans and caches included)
 *   jemalloc   stats.resident (mallctl, after an epoch refresh: physically resident pages of active
 *              extents, dirty pages not yet purged and metadata)
 *   mimalloc   the process's RSS growth (/proc/self/statm) since the pass began: mimalloc exposes only
 *              committed bytes, and it commits whole segments whose untouched pages cost nothing
 * Every allocation writes one byte so no compiler can drop a malloc/free pair. Every row's alloc and
 * free go through one small noinline wrapper per kind of allocator (bench_alloc_heap/bench_free_heap,
 * _sys, _peer; the bare pointer increment through bench_inc_alloc/bench_inc_free), so every row pays
 * the same call, and callgrind-ops.sh counts instructions inside these wrappers only. Our heaps run
 * through the public heap_alloc()/heap_free() (front end with stats and lock check, no lock
 * installed), on an mmap arena starting at 64 KiB and growing in >= 64 KiB steps like the kernel's
 * heap region. Bump gets a 1 GiB range on c and p, since it cannot reuse memory there; what happens
 * is printed. Every run's heap is new, but its arena is the last run's, rewound (open_heap): the pages
 * stay resident, as the peers keep what their warm-up took, so no timed run pays first-touch page
 * faults (pages given back with --release fault again).
 *
 * The peers (tcmalloc from libtcmalloc_minimal.so.4, jemalloc from libjemalloc.so.2, mimalloc from
 * libmimalloc.so.2, Debian's packages, see cmake/deps.sh) are loaded with dlmopen(LM_ID_NEWLM): each
 * in a link-map namespace of its own, with its own copy of libc, so none of them interposes on this
 * process's malloc (checked: the system row's malloc is libc.so.6's and differs from every peer's).
 * tcmalloc and mimalloc are called through their prefixed APIs (tc_malloc/tc_free,
 * mi_malloc/mi_free), jemalloc through the malloc/free its namespace binds to it. A library that
 * cannot be loaded gives a row "not installed". Their initial-exec TLS can need more static TLS than
 * glibc reserves for dlopen (jemalloc does): then kheap-bench re-executes itself once with
 * GLIBC_TUNABLES=glibc.rtld.optional_static_tls=BENCH_STATIC_TLS, unless that tunable is set.
 * KHEAP_BENCH_PEERS="NAME=LIB[:ALLOC:FREE] ..." adds up to 4 more peers the same way (a library that
 * exports malloc/free or ALLOC/FREE; footprint as for mimalloc), e.g. o1heap or TLSF built outside
 * the project (docs/measurements.md has the recipe).
 *
 * Output: per workload a table (ns/op median, min, max, ratio to glibc and to each peer, footprint)
 * and one BENCH line per allocator and workload:
 *   BENCH allocator=X workload=W ns_per_op=M footprint_ratio=F|- min=.. max=.. ops=.. reps=..
 *         mapped=B|- peak_live=B|- failed=N vs_system=R|- vs_system_min=R|- vs_tcmalloc=R|-
 *         vs_tcmalloc_min=R|- vs_mimalloc=R|- vs_mimalloc_min=R|- vs_jemalloc=R|- vs_jemalloc_min=R|-
 *         [workload a: vs_pointer_increment=R pinc_ratio_med=R pinc_ratio_min=R pinc_ratio_max=R]
 * (vs_X = this row's median / X's median, same run; vs_X_min = this row's minimum / X's minimum,
 * the cross-check on a machine whose neighbours slow some repetitions; pinc_ratio_* = median, min
 * and max over the repetitions of this row's time / the pointer increment's time in the same
 * repetition, also in workload a's table for our heaps). test/host/benchplot.py draws them.
 *
 * Hardened mode: the same file built with -DKHEAP_HARDENING=1 against the hardened library is
 * kheap-bench-hardened; it names its allocators <backend>_hardened. The plain kheap-bench runs it
 * after its own table (if it sits next to it), so one command shows both modes in the same BENCH
 * format. The twin runs glibc and the peers too, as reference rows (marked "ref", no BENCH lines, no
 * footprint), so that its ratios come from its own run. --plain-only skips the twin.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap.h"
#include "heap_backend.h"
#include "kheap_host.h"

#define N_AB             1000000
#define C_SLOTS          10000
#define C_STEPS          2000000
#define P_SLOTS          1000
#define P_STEPS          1000000
#define K_ALLOCS         1000000
#define K_MAX_BURSTS     (K_ALLOCS / 16 + 1)
#define K_BURST_MIN      16
#define K_BURST_MAX      512
#define N_SIZES_K        7
#define INITIAL          ((size_t)64 << 10)
#define CHUNK            ((size_t)64 << 10)
#define RESERVE          ((size_t)4 << 30)
#define BUMP_C_LIMIT     ((size_t)1 << 30)
#define MAX_REPS         31
#define BURST_BYTES      ((size_t)64 << 20)
#define BURST_MAX        20000
#define BURST_ROUNDS     4
#define TRACE_SAMPLES    400
#define SAMPLE_EVERY     1024 /* footprint pass: steps between samples of the memory from the OS */
#define BENCH_STATIC_TLS "16384"
#define MAX_ALLOCATORS   20

/* K_SIZES: object sizes of the k workload, chosen like kernel structures (not class boundaries). */
static const uint32_t k_sizes[N_SIZES_K] = {24, 56, 96, 136, 200, 320, 640};

static uint32_t sizes_ab[N_AB];
static uint32_t c_slot[C_STEPS];
static uint32_t c_size[C_STEPS];
static uint32_t p_size[P_STEPS];
static uint32_t k_size[K_MAX_BURSTS], k_len[K_MAX_BURSTS];
static uint16_t k_order[K_ALLOCS]; /* per burst, the order of its frees (indices into the burst) */
static int k_bursts;               /* bursts in k_size/k_len (all of them) */
static void *slots[C_SLOTS];
static uint32_t slot_size[C_SLOTS]; /* requested size of each live slot (footprint pass only) */

/* How much of each workload runs (--steps). */
static int n_ab = N_AB, c_steps = C_STEPS, p_steps = P_STEPS, k_used = 0;

static uint32_t burst_size[BURST_MAX], burst_order[BURST_MAX];
static void *burst_p[BURST_MAX];
static int burst_n;
static int give_back;   /* --release */
static int with_caches; /* --caches on without --threads: a/b/c on a locked heap with per-CPU caches */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    return heap_rand(&rng_state);
}

/* Shuffles v[0..n) with rnd() (Fisher-Yates). */
static void shuffle_u16(uint16_t *v, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1));
        uint16_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static void generate(void)
{
    rng_state = 42;
    for (int i = 0; i < N_AB; i++)
        sizes_ab[i] = 8 + (uint32_t)(rnd() % 57);
    rng_state = 4242;
    for (int i = 0; i < C_STEPS; i++) {
        uint64_t r = rnd() % 100;
        c_slot[i] = (uint32_t)(rnd() % C_SLOTS);
        if (r < 70)
            c_size[i] = 16 + (uint32_t)(rnd() % 113);
        else if (r < 95)
            c_size[i] = 129 + (uint32_t)(rnd() % 1920);
        else
            c_size[i] = 2048 + (uint32_t)(rnd() % (62 * 1024 + 1));
    }
    rng_state = 424242;
    for (size_t total = 0; total < BURST_BYTES && burst_n < BURST_MAX; burst_n++) {
        uint64_t r = rnd();
        burst_size[burst_n] = r % 16 == 0 ? (uint32_t)1 << 20 : (uint32_t)16 << (r % 13);
        burst_order[burst_n] = (uint32_t)burst_n;
        total += burst_size[burst_n];
    }
    for (int i = burst_n - 1; i > 0; i--) { /* the order of the frees: a random permutation */
        int j = (int)(rnd() % (uint64_t)(i + 1));
        uint32_t t = burst_order[i];
        burst_order[i] = burst_order[j];
        burst_order[j] = t;
    }
    rng_state = 4243;
    for (int i = 0; i < P_STEPS; i++)
        p_size[i] = 16 + (uint32_t)(rnd() % 497);
    rng_state = 4244;
    k_bursts = 0;
    for (int done = 0; done < K_ALLOCS; k_bursts++) {
        int len = K_BURST_MIN + (int)(rnd() % (K_BURST_MAX - K_BURST_MIN + 1));
        uint16_t *order = &k_order[done];
        if (len > K_ALLOCS - done)
            len = K_ALLOCS - done;
        k_size[k_bursts] = k_sizes[rnd() % N_SIZES_K];
        k_len[k_bursts] = (uint32_t)len;
        for (int i = 0; i < len; i++)
            order[i] = (uint16_t)(len - 1 - i); /* LIFO: newest first */
        if (rnd() % 2)
            shuffle_u16(order, len);
        done += len;
    }
}

/* Applies --steps to every workload (steps >= 1). */
static void limit_steps(int steps)
{
    int allocs = 0;

    n_ab = steps < N_AB ? steps : N_AB;
    c_steps = steps < C_STEPS ? steps : C_STEPS;
    p_steps = steps < P_STEPS ? steps : P_STEPS;
    for (k_used = 0; k_used < k_bursts && allocs < steps; k_used++)
        allocs += (int)k_len[k_used];
}

/* Operations (allocations + frees) of one run of workload w with the current limits. */
static double workload_ops(char w)
{
    double allocs = 0;

    switch (w) {
    case 'a':
    case 'b': return 2.0 * n_ab;
    case 'c': return c_steps; /* every step is one alloc or one free (the final frees are not counted) */
    case 'p': return 2.0 * p_steps;
    default:
        for (int i = 0; i < k_used; i++)
            allocs += k_len[i];
        return 2.0 * allocs;
    }
}

static bool cpu_clock; /* --cpu-time */

/* The clock of every timed run: wall time, or with --cpu-time this thread's CPU time. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/*
 * The wrappers every row's allocations and frees go through (see the top). noipa (gcc) keeps gcc
 * from cloning them or propagating across them, so callgrind finds them under these names.
 */
#if defined(__clang__)
#define BENCH_WRAPPER __attribute__((noinline, used))
#else
#define BENCH_WRAPPER __attribute__((noipa, used))
#endif

struct peer;
static struct peer *cur_peer; /* the peer the _peer wrappers call */

BENCH_WRAPPER static void *bench_alloc_heap(struct heap *h, size_t n)
{
    return heap_alloc(h, n);
}

BENCH_WRAPPER static void bench_free_heap(struct heap *h, void *p)
{
    heap_free(h, p);
}

BENCH_WRAPPER static void *bench_alloc_sys(struct heap *h, size_t n)
{
    (void)h;
    return malloc(n);
}

BENCH_WRAPPER static void bench_free_sys(struct heap *h, void *p)
{
    (void)h;
    free(p);
}

/* A peer allocator in its own link-map namespace (dlmopen), with what it offers for footprint. */
struct peer {
    const char *name, *lib, *alloc_sym, *free_sym;
    size_t (*mapped_now)(struct peer *pe); /* its memory from the OS now (footprint pass) */
    void *handle;
    void *(*alloc)(size_t n);
    void (*free)(void *p);
    int (*tc_property)(const char *name, size_t *value);
    int (*je_mallctl)(const char *name, void *old, size_t *oldlen, void *new_value, size_t newlen);
    size_t rss_base; /* mimalloc: the RSS when its footprint pass started */
    char error[160]; /* why it could not be loaded */
};

BENCH_WRAPPER static void *bench_alloc_peer(struct heap *h, size_t n)
{
    (void)h;
    return cur_peer->alloc(n);
}

BENCH_WRAPPER static void bench_free_peer(struct heap *h, void *p)
{
    (void)h;
    cur_peer->free(p);
}

struct run_result {
    size_t peak_live; /* peak of live requested bytes (footprint pass) */
    size_t mapped;    /* footprint pass: max of the sampled memory from the OS */
    size_t failed;    /* allocations that returned NULL */
};

/* Footprint pass: the current allocator's memory from the OS (set before the pass). */
static size_t (*sample_mapped)(struct heap *h);

static void sample(struct heap *h, struct run_result *res)
{
    size_t m = sample_mapped(h);
    if (m > res->mapped)
        res->mapped = m;
}

/* Footprint pass bookkeeping of one allocation p (n bytes into slot i) or free of slot i. The pass
 * writes every byte it allocates, so that memory measured as resident pages (mimalloc's row) counts
 * the whole block, as bytes_mapped and the other peers' statistics do. */
#define TRACK_ALLOC(p, i, n)              \
    do {                                  \
        if (measure) {                    \
            memset((p), 1, (n));          \
            slot_size[i] = (uint32_t)(n); \
            live += (n);                  \
            if (live > res->peak_live)    \
                res->peak_live = live;    \
        }                                 \
    } while (0)
#define TRACK_FREE(i)             \
    do {                          \
        if (measure)              \
            live -= slot_size[i]; \
    } while (0)
#define TRACK_SAMPLE(step)                                 \
    do {                                                   \
        if (measure && ((step) & (SAMPLE_EVERY - 1)) == 0) \
            sample(h, res);                                \
    } while (0)

/* The workloads, instantiated once per kind of allocator so the wrappers are direct calls. measure:
 * the footprint pass (tracks live bytes, samples the memory from the OS). */
#define DEFINE_WORKLOADS(sfx)                                                     \
    static void work_a_##sfx(struct heap *h)                                      \
    {                                                                             \
        for (int i = 0; i < n_ab; i++) {                                          \
            char *p = bench_alloc_##sfx(h, sizes_ab[i]);                          \
            *(volatile char *)p = 1;                                              \
            bench_free_##sfx(h, p);                                               \
        }                                                                         \
    }                                                                             \
    static void work_b_##sfx(struct heap *h)                                      \
    {                                                                             \
        char *keep = bench_alloc_##sfx(h, 64);                                    \
        *(volatile char *)keep = 1;                                               \
        for (int i = 0; i < n_ab; i++) {                                          \
            char *p = bench_alloc_##sfx(h, sizes_ab[i]);                          \
            *(volatile char *)p = 1;                                              \
            bench_free_##sfx(h, p);                                               \
        }                                                                         \
        bench_free_##sfx(h, keep);                                                \
    }                                                                             \
    static void work_c_##sfx(struct heap *h, struct run_result *res, int measure) \
    {                                                                             \
        size_t live = 0;                                                          \
        memset(slots, 0, sizeof(slots));                                          \
        for (int i = 0; i < c_steps; i++) {                                       \
            void **s = &slots[c_slot[i]];                                         \
            if (*s != NULL) {                                                     \
                bench_free_##sfx(h, *s);                                          \
                *s = NULL;                                                        \
                TRACK_FREE(c_slot[i]);                                            \
            } else {                                                              \
                char *p = bench_alloc_##sfx(h, c_size[i]);                        \
                if (p == NULL) {                                                  \
                    res->failed++;                                                \
                    continue;                                                     \
                }                                                                 \
                *p = 1;                                                           \
                *s = p;                                                           \
                TRACK_ALLOC(p, c_slot[i], c_size[i]);                             \
            }                                                                     \
            TRACK_SAMPLE(i);                                                      \
        }                                                                         \
        if (measure)                                                              \
            sample(h, res);                                                       \
        for (int i = 0; i < C_SLOTS; i++)                                         \
            if (slots[i] != NULL) {                                               \
                bench_free_##sfx(h, slots[i]);                                    \
                slots[i] = NULL;                                                  \
            }                                                                     \
    }                                                                             \
    static void work_p_##sfx(struct heap *h, struct run_result *res, int measure) \
    {                                                                             \
        size_t live = 0;                                                          \
        int first = 0;                                                            \
        for (int i = 0; i < p_steps; i++) {                                       \
            int newest = i % P_SLOTS;                                             \
            char *p = bench_alloc_##sfx(h, p_size[i]);                            \
            void *oldest = i >= P_SLOTS ? slots[newest] : NULL;                   \
            if (p == NULL)                                                        \
                res->failed++;                                                    \
            else                                                                  \
                *p = 1;                                                           \
            if (oldest != NULL) {                                                 \
                bench_free_##sfx(h, oldest);                                      \
                TRACK_FREE(newest);                                               \
            }                                                                     \
            slots[newest] = p;                                                    \
            if (p != NULL)                                                        \
                TRACK_ALLOC(p, newest, p_size[i]);                                \
            TRACK_SAMPLE(i);                                                      \
        }                                                                         \
        if (measure)                                                              \
            sample(h, res);                                                       \
        first = p_steps >= P_SLOTS ? p_steps - P_SLOTS : 0;                       \
        for (int i = first; i < p_steps; i++)                                     \
            if (slots[i % P_SLOTS] != NULL) {                                     \
                bench_free_##sfx(h, slots[i % P_SLOTS]);                          \
                slots[i % P_SLOTS] = NULL;                                        \
            }                                                                     \
    }                                                                             \
    static void work_k_##sfx(struct heap *h, struct run_result *res, int measure) \
    {                                                                             \
        size_t live = 0;                                                          \
        const uint16_t *order = k_order;                                          \
        for (int b = 0; b < k_used; b++) {                                        \
            uint32_t n = k_size[b], len = k_len[b];                               \
            for (uint32_t i = 0; i < len; i++) {                                  \
                char *p = bench_alloc_##sfx(h, n);                                \
                if (p == NULL)                                                    \
                    res->failed++;                                                \
                else                                                              \
                    *p = 1;                                                       \
                slots[i] = p;                                                     \
                if (p != NULL)                                                    \
                    TRACK_ALLOC(p, i, n);                                         \
            }                                                                     \
            if (measure) /* every burst at its peak */                            \
                sample(h, res);                                                   \
            for (uint32_t i = 0; i < len; i++) {                                  \
                uint16_t j = order[i];                                            \
                if (slots[j] != NULL) {                                           \
                    bench_free_##sfx(h, slots[j]);                                \
                    TRACK_FREE(j);                                                \
                }                                                                 \
            }                                                                     \
            order += len;                                                         \
        }                                                                         \
        if (measure)                                                              \
            sample(h, res);                                                       \
    }

DEFINE_WORKLOADS(heap)
DEFINE_WORKLOADS(sys)
DEFINE_WORKLOADS(peer)

/* ---- the peers ---- */

static size_t rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL || fscanf(f, "%lu %lu", &size, &resident) != 2) {
        perror("/proc/self/statm");
        exit(1);
    }
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t tc_mapped(struct peer *pe)
{
    size_t heap = 0, unmapped = 0;

    pe->tc_property("generic.heap_size", &heap);
    pe->tc_property("tcmalloc.pageheap_unmapped_bytes", &unmapped);
    return heap > unmapped ? heap - unmapped : 0;
}

static size_t je_mapped(struct peer *pe)
{
    uint64_t epoch = 1;
    size_t len = sizeof(epoch), resident = 0, rlen = sizeof(resident);

    pe->je_mallctl("epoch", &epoch, &len, &epoch, len);
    if (pe->je_mallctl("stats.resident", &resident, &rlen, NULL, 0) != 0)
        return 0;
    return resident;
}

static size_t rss_growth(struct peer *pe)
{
    size_t r = rss_bytes();
    return r > pe->rss_base ? r - pe->rss_base : 0;
}

/* Debian's peers, then up to MAX_EXTRA_PEERS more from KHEAP_BENCH_PEERS (add_extra_peers). */
#define MAX_EXTRA_PEERS 4
static struct peer peers[3 + MAX_EXTRA_PEERS] = {
    {.name = "tcmalloc",
     .lib = "libtcmalloc_minimal.so.4",
     .alloc_sym = "tc_malloc",
     .free_sym = "tc_free",
     .mapped_now = tc_mapped},
    {.name = "jemalloc",
     .lib = "libjemalloc.so.2",
     .alloc_sym = "malloc",
     .free_sym = "free",
     .mapped_now = je_mapped},
    {.name = "mimalloc",
     .lib = "libmimalloc.so.2",
     .alloc_sym = "mi_malloc",
     .free_sym = "mi_free",
     .mapped_now = rss_growth},
};
static size_t n_peers = 3;

/* KHEAP_BENCH_PEERS="NAME=LIB[:ALLOC:FREE] ...": more peers, e.g. an allocator built outside the
 * project (o1heap, TLSF) into a shared library that exports malloc/free (the default symbols) or
 * ALLOC/FREE. Loaded like the others (dlmopen); footprint = the process's RSS growth, as for
 * mimalloc. Read from the environment so that the hardened twin and callgrind-ops.sh see them too.
 * Returns false (with a message) on a malformed entry. */
static bool add_extra_peers(void)
{
    static char buf[1024];
    const char *env = getenv("KHEAP_BENCH_PEERS");

    if (env == NULL || *env == '\0')
        return true;
    if (strlen(env) >= sizeof(buf)) {
        fprintf(stderr, "kheap-bench: KHEAP_BENCH_PEERS is longer than %zu bytes\n", sizeof(buf) - 1);
        return false;
    }
    strcpy(buf, env);
    for (char *save = NULL, *e = strtok_r(buf, " ,", &save); e != NULL; e = strtok_r(NULL, " ,", &save)) {
        char *lib = strchr(e, '='), *sym, *fsym;
        struct peer *pe = &peers[n_peers];

        if (n_peers == sizeof(peers) / sizeof(peers[0]) || lib == NULL || lib == e || lib[1] == '\0') {
            fprintf(stderr,
                    "kheap-bench: KHEAP_BENCH_PEERS: bad or too many entries at \"%s\" (want at most %d "
                    "NAME=LIB[:ALLOC:FREE])\n",
                    e, MAX_EXTRA_PEERS);
            return false;
        }
        *lib++ = '\0';
        *pe = (struct peer){
            .name = e, .lib = lib, .alloc_sym = "malloc", .free_sym = "free", .mapped_now = rss_growth};
        if ((sym = strchr(lib, ':')) != NULL) {
            *sym++ = '\0';
            if ((fsym = strchr(sym, ':')) == NULL || sym[0] == ':' || fsym[1] == '\0') {
                fprintf(stderr, "kheap-bench: KHEAP_BENCH_PEERS: \"%s\" wants both ALLOC and FREE\n", e);
                return false;
            }
            *fsym++ = '\0';
            pe->alloc_sym = sym;
            pe->free_sym = fsym;
        }
        n_peers++;
    }
    return true;
}

/* The process's own malloc, checked to be libc.so.6's (so that the system row is glibc). */
static void *process_malloc(void)
{
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void *own = dlsym(RTLD_DEFAULT, "malloc");

    if (libc == NULL || own == NULL || dlsym(libc, "malloc") != own) {
        fprintf(stderr, "kheap-bench: this process's malloc is not libc.so.6's (LD_PRELOAD?): the system row "
                        "would not be glibc\n");
        exit(1);
    }
    return own;
}

/* Loads pe in a namespace of its own. Returns false (pe->error says why) if it cannot. */
static bool load_peer(struct peer *pe)
{
    void *own = process_malloc();

    pe->handle = dlmopen(LM_ID_NEWLM, pe->lib, RTLD_NOW | RTLD_LOCAL);
    if (pe->handle == NULL) {
        snprintf(pe->error, sizeof(pe->error), "%s", dlerror());
        return false;
    }
    *(void **)&pe->alloc = dlsym(pe->handle, pe->alloc_sym);
    *(void **)&pe->free = dlsym(pe->handle, pe->free_sym);
    *(void **)&pe->tc_property = dlsym(pe->handle, "MallocExtension_GetNumericProperty");
    *(void **)&pe->je_mallctl = dlsym(pe->handle, "mallctl");
    if (pe->alloc == NULL || pe->free == NULL || (pe->mapped_now == tc_mapped && pe->tc_property == NULL) ||
        (pe->mapped_now == je_mapped && pe->je_mallctl == NULL)) {
        snprintf(pe->error, sizeof(pe->error), "%s lacks %s/%s or its statistics call", pe->lib,
                 pe->alloc_sym, pe->free_sym);
        return false;
    }
    if ((void *)pe->alloc == own || dlsym(RTLD_DEFAULT, "malloc") != own) {
        fprintf(stderr, "kheap-bench: %s interposes on the process's malloc\n", pe->lib);
        exit(1);
    }
    return true;
}

/* ---- rows, runs, footprint ---- */

enum kind { KIND_HEAP, KIND_SYS, KIND_PEER };

struct allocator {
    const char *name;
    const struct heap_ops *ops; /* KIND_HEAP only */
    enum kind kind;
    struct peer *peer; /* KIND_PEER only */
    bool ref;          /* hardened twin: glibc or a peer, run only for the ratios */
    bool missing;      /* a peer that could not be loaded */
};

struct arena_heap {
    struct host_arena arena; /* first: the arena callbacks get this struct as ctx */
    uint32_t lock;           /* the heap's spin lock where it has one (--threads, --caches on) */
    struct heap *h;
};

/* The CPU a thread calls the heap as: its index in --threads mode, 0 for the main thread. */
static _Thread_local unsigned bench_cpu;

static unsigned long spin_lock(void *ctx)
{
    struct arena_heap *m = ctx;

    while (__atomic_exchange_n(&m->lock, 1, __ATOMIC_ACQUIRE) != 0)
        while (__atomic_load_n(&m->lock, __ATOMIC_RELAXED) != 0)
            __builtin_ia32_pause();
    return 0;
}

static void spin_unlock(void *ctx, unsigned long saved)
{
    struct arena_heap *m = ctx;

    (void)saved;
    __atomic_store_n(&m->lock, 0, __ATOMIC_RELEASE);
}

static unsigned cpu_enter(void *ctx, unsigned long *saved)
{
    (void)ctx;
    *saved = 0;
    return bench_cpu;
}

static void cpu_exit(void *ctx, unsigned long saved)
{
    (void)ctx;
    (void)saved;
}

/* Opens a heap of ops on a fresh arena of at most limit bytes; release: the arena takes memory back. */
/* The arena the last run's heap left (close_heap), rewound for the next one (open_heap): its pages
 * stay resident from run to run, as the kernel's heap region stays mapped and as the peers keep the
 * memory their warm-up run took, so that no repetition of our heaps pays the OS's first-touch page
 * faults inside its timed region (a fresh mmap per run cost fixed_size_block 2.5 ns/op on workload
 * c, 15%: docs/measurements.md, "Warm arenas"). Pages given back (give_back) do fault again: that
 * is the cost of giving them back. */
static struct host_arena parked;

static void open_heap(struct arena_heap *ah, const struct heap_ops *ops, size_t limit, bool release)
{
    struct heap_env env;

    if (parked.base != NULL) {
        ah->arena = parked;
        parked = (struct host_arena){0};
        if (host_arena_rewind(&ah->arena, INITIAL) != 0) {
            perror("mprotect");
            exit(1);
        }
    } else if (host_arena_init(&ah->arena, RESERVE, INITIAL) != 0) {
        perror("mmap");
        exit(1);
    }
    ah->arena.chunk = CHUNK;
    ah->arena.limit = limit;
    env = release ? host_arena_release_env(&ah->arena) : host_arena_env(&ah->arena);
    ah->lock = 0;
    if (with_caches) { /* the kernel's configuration on one CPU: a spin lock, caches, always CPU 0 */
        env.ctx = ah;
        env.lock = spin_lock;
        env.unlock = spin_unlock;
        env.cpu_count = 2;
        env.cpu_enter = cpu_enter;
        env.cpu_exit = cpu_exit;
    }
    ah->h = heap_create(ops, ah->arena.base, INITIAL, &env);
    if (ah->h == NULL) {
        fprintf(stderr, "heap_create(%s) failed\n", ops->name);
        exit(1);
    }
}

/* Ends the heap opened by open_heap: its arena is parked for the next heap (one is kept). */
static void close_heap(struct arena_heap *ah)
{
    if (parked.base == NULL) {
        parked = ah->arena;
        ah->arena = (struct host_arena){0};
    } else {
        host_arena_destroy(&ah->arena);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static size_t heap_mapped_now(struct heap *h)
{
    return heap_stats(h).bytes_mapped;
}

static size_t sys_mapped_now(struct heap *h)
{
    struct mallinfo2 mi = mallinfo2();
    (void)h;
    return mi.arena + mi.hblkhd;
}

static size_t peer_mapped_now(struct heap *h)
{
    (void)h;
    return cur_peer->mapped_now(cur_peer);
}

#define RUN_WORKLOAD(sfx, w, h, res, measure)    \
    do {                                         \
        if ((w) == 'a')                          \
            work_a_##sfx(h);                     \
        else if ((w) == 'b')                     \
            work_b_##sfx(h);                     \
        else if ((w) == 'c')                     \
            work_c_##sfx((h), (res), (measure)); \
        else if ((w) == 'p')                     \
            work_p_##sfx((h), (res), (measure)); \
        else                                     \
            work_k_##sfx((h), (res), (measure)); \
    } while (0)

/* One run of workload w on al; returns its wall time in ns. measure: the footprint pass. */
static double run_once(const struct allocator *al, char w, struct run_result *res, int measure)
{
    struct arena_heap ah = {0};
    double t0, t1;

    if (al->kind == KIND_HEAP)
        open_heap(&ah, al->ops, (w == 'c' || w == 'p') && al->ops->arena ? BUMP_C_LIMIT : RESERVE, give_back);
    cur_peer = al->peer;
    t0 = now_ns();
    if (al->kind == KIND_HEAP)
        RUN_WORKLOAD(heap, w, ah.h, res, measure);
    else if (al->kind == KIND_SYS)
        RUN_WORKLOAD(sys, w, NULL, res, measure);
    else
        RUN_WORKLOAD(peer, w, NULL, res, measure);
    t1 = now_ns();
    if (al->kind == KIND_HEAP) {
        if (heap_check(ah.h) != 0 || heap_stats(ah.h).live_allocs != 0) {
            fprintf(stderr, "%s: heap broken after workload %c\n", al->name, w);
            exit(1);
        }
        close_heap(&ah);
    }
    return t1 - t0;
}

/* The footprint pass of workload w on al, in a child process forked from this one before any timed
 * run, so that every pass starts from an allocator that holds no memory from earlier passes (and
 * mimalloc's RSS growth is its own). Returns the peak live bytes and the memory from the OS. */
static struct run_result footprint_pass(const struct allocator *al, char w)
{
    struct run_result res = {0};
    int fd[2];
    pid_t pid;
    int status;

    fflush(stdout);
    if (pipe(fd) != 0 || (pid = fork()) < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        close(fd[0]);
        sample_mapped = al->kind == KIND_HEAP  ? heap_mapped_now
                        : al->kind == KIND_SYS ? sys_mapped_now
                                               : peer_mapped_now;
        if (al->kind == KIND_SYS)
            malloc_trim(0);
        if (al->kind == KIND_PEER)
            al->peer->rss_base = rss_bytes();
        run_once(al, w, &res, 1);
        _exit(write(fd[1], &res, sizeof(res)) == (ssize_t)sizeof(res) ? 0 : 1);
    }
    close(fd[1]);
    if (read(fd[0], &res, sizeof(res)) != (ssize_t)sizeof(res) || waitpid(pid, &status, 0) != pid ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: footprint pass of workload %c failed\n", al->name, w);
        exit(1);
    }
    close(fd[0]);
    return res;
}
/* ---- footprint trace (--footprint-trace): untimed, so plain function pointers are fine ---- */

struct tracer {
    void *(*alloc)(struct heap *h, size_t n);
    void (*free)(struct heap *h, void *p);
    void (*sample)(struct heap *h, size_t *mapped, size_t *in_use);
};

static void heap_sample(struct heap *h, size_t *mapped, size_t *in_use)
{
    struct heap_stats s = heap_stats(h);
    *mapped = s.bytes_mapped;
    *in_use = s.bytes_in_use;
}

static void *sys_alloc(struct heap *h, size_t n)
{
    (void)h;
    return malloc(n);
}

static void sys_free(struct heap *h, void *p)
{
    (void)h;
    free(p);
}

/* glibc: memory from the OS (main arena + mmapped chunks) and what of it is allocated. */
static void sys_sample(struct heap *h, size_t *mapped, size_t *in_use)
{
    struct mallinfo2 mi = mallinfo2();
    (void)h;
    *mapped = mi.arena + mi.hblkhd;
    *in_use = mi.uordblks + mi.hblkhd;
}

/* The first steps of workload c on h through t, writing a row to out every `every` steps and one
 * after the final frees (step steps + 1). */
static void trace_c(FILE *out, const char *name, struct heap *h, const struct tracer *t, int steps, int every)
{
    size_t mapped, in_use;

    memset(slots, 0, sizeof(slots));
    for (int i = 0; i < steps; i++) {
        void **s = &slots[c_slot[i]];
        if (i % every == 0) {
            t->sample(h, &mapped, &in_use);
            fprintf(out, "%s %d %zu %zu\n", name, i, mapped, in_use);
        }
        if (*s != NULL) {
            t->free(h, *s);
            *s = NULL;
        } else if ((*s = t->alloc(h, c_size[i])) != NULL) {
            *(char *)*s = 1;
        }
    }
    for (int i = 0; i < C_SLOTS; i++)
        if (slots[i] != NULL) {
            t->free(h, slots[i]);
            slots[i] = NULL;
        }
    t->sample(h, &mapped, &in_use);
    fprintf(out, "%s %d %zu %zu\n", name, steps + 1, mapped, in_use);
}

/* --footprint-trace: one trace per allocator into path (appended to by the hardened twin). */
static void footprint_trace(const struct allocator *als, int nal, const char *path, bool append, int steps)
{
    static const struct tracer heap_tracer = {heap_alloc, heap_free, heap_sample};
    static const struct tracer sys_tracer = {sys_alloc, sys_free, sys_sample};
    int every = steps / TRACE_SAMPLES > 0 ? steps / TRACE_SAMPLES : 1;
    FILE *out = fopen(path, append ? "a" : "w");

    if (out == NULL) {
        perror(path);
        exit(1);
    }
    if (!append)
        fprintf(out,
                "# kheap-bench footprint trace: workload c, %d steps, a row every %d steps and one "
                "after the final frees (step %d)\n# allocator step bytes_mapped bytes_in_use\n",
                steps, every, steps + 1);
    for (int i = 0; i < nal; i++) {
        if (als[i].ops != NULL) {
            struct arena_heap ah = {0};
            open_heap(&ah, als[i].ops, als[i].ops->arena ? BUMP_C_LIMIT : RESERVE, true);
            trace_c(out, als[i].name, ah.h, &heap_tracer, steps, every);
            if (heap_check(ah.h) != 0) {
                fprintf(stderr, "%s: heap broken after the footprint trace\n", als[i].name);
                exit(1);
            }
            close_heap(&ah);
        } else {
            malloc_trim(0);
            trace_c(out, als[i].name, NULL, &sys_tracer, steps, every);
        }
    }
    if (fclose(out) != 0) {
        perror(path);
        exit(1);
    }
}

/* Workload e (--burst): BURST_ROUNDS bursts, each freed; prints one BENCH line for al (a heap). */
static void burst_workload(const struct allocator *al, int reps)
{
    double t[MAX_REPS];
    struct heap_stats st = {0};

    for (int r = -1; r < reps; r++) {
        struct arena_heap ah = {0};
        double t0, t1;

        open_heap(&ah, al->ops, RESERVE, give_back);
        t0 = now_ns();
        for (int round = 0; round < BURST_ROUNDS; round++) {
            char *keep;
            for (int i = 0; i < burst_n; i++) {
                char *p = heap_alloc(ah.h, burst_size[i]);
                if (p == NULL) {
                    fprintf(stderr, "%s: burst allocation failed\n", al->name);
                    exit(1);
                }
                *p = 1;
                burst_p[i] = p;
            }
            keep = heap_alloc(ah.h, 64);
            *(volatile char *)keep = 1;
            for (int i = 0; i < burst_n; i++)
                heap_free(ah.h, burst_p[burst_order[i]]);
            heap_free(ah.h, keep);
        }
        t1 = now_ns();
        st = heap_stats(ah.h);
        if (heap_check(ah.h) != 0 || st.live_allocs != 0 || ah.arena.release_errors != 0 ||
            ah.arena.reclaim_errors != 0) {
            fprintf(stderr, "%s: heap broken after workload e\n", al->name);
            exit(1);
        }
        close_heap(&ah);
        if (r >= 0)
            t[r] = (t1 - t0) / (2.0 * (burst_n + 1) * BURST_ROUNDS);
    }
    printf("BENCH allocator=%s workload=e ns_per_op=%.2f ops=%d pages_released=%llu pages_reclaimed=%llu "
           "mapped_after=%zu\n",
           al->name, median(t, reps), 2 * (burst_n + 1) * BURST_ROUNDS, (unsigned long long)st.pages_released,
           (unsigned long long)st.pages_reclaimed, st.bytes_mapped);
    fflush(stdout);
}

/* The floor for bump: workload a's loop with a bare pointer increment as alloc and nothing as free,
 * through the same kind of wrappers as every row. */
static char *inc_next;

BENCH_WRAPPER static void *bench_inc_alloc(struct heap *h, size_t n)
{
    char *p = inc_next;
    (void)h;
    inc_next += (n + 15) & ~(size_t)15;
    return p;
}

BENCH_WRAPPER static void bench_inc_free(struct heap *h, void *p)
{
    (void)h;
    (void)p;
}

/* One run of the pointer-increment loop; returns its wall time in ns. */
static double pointer_increment_once(void)
{
    static char buf[64 * N_AB + 64];
    double t0;

    inc_next = buf;
    t0 = now_ns();
    for (int i = 0; i < n_ab; i++) {
        char *p = bench_inc_alloc(NULL, sizes_ab[i]);
        *(volatile char *)p = 1;
        bench_inc_free(NULL, p);
    }
    return now_ns() - t0;
}

/* Plain program: runs its hardened twin, built next to it (<self>-hardened), with args (shell words).
 * Returns 1 if the twin ran and failed, else 0 (also when there is no twin, or in the twin itself). */
static int run_hardened_twin(const char *args)
{
    char self[4096], cmd[8400];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

    if (KHEAP_HARDENING || n <= 0)
        return 0;
    self[n] = '\0';
    snprintf(cmd, sizeof(cmd), "%s-hardened", self);
    if (access(cmd, X_OK) != 0)
        return 0;
    snprintf(cmd, sizeof(cmd), "'%s-hardened' %s", self, args);
    fflush(stdout);
    return system(cmd) != 0;
}

/*
 * The several-CPU mode (--threads N). Each thread runs workload a's loop (1,000,000 x { alloc 8..64 B,
 * write a byte, free }, 2,000,000 operations) on one shared heap whose env has a test-and-set spin
 * lock (as the kernel's) and, with caches on, cpu_count = N and each thread's index as its CPU.
 * A round runs every configuration (backend x caches on/off) once with 1 thread and once with N
 * threads started together at a barrier, interleaved so that the machine's load hits all of them
 * alike; reps rounds. Throughput = operations of all threads / wall time until the last finished.
 * Reported per configuration: the median, min and max ops/s with 1 and with N threads and the ratio
 * N-thread / 1-thread median (ideal: N with N idle cores). On a machine whose cores are busy with
 * other work the threads do not really run at once, so the table also gives each thread's CPU time
 * per operation (CLOCK_THREAD_CPUTIME_ID, median over rounds of the threads' mean): it grows with N
 * only through contention -- lock spinning, cache lines moving between cores -- not through the
 * machine's load, and "cpu ratio" = N x (1-thread CPU ns/op) / (N-thread CPU ns/op) is the speed-up
 * N idle cores would give if the threads overlapped.
 */
struct mt_run {
    struct arena_heap *m;
    pthread_barrier_t *start;
    unsigned cpu;
    double t0, t1, cpu_ns; /* wall clock at start and end; the thread's CPU time */
};

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *mt_thread(void *arg)
{
    struct mt_run *r = arg;

    bench_cpu = r->cpu;
    pthread_barrier_wait(r->start);
    r->t0 = now_ns();
    r->cpu_ns = thread_cpu_ns();
    work_a_heap(r->m->h);
    r->cpu_ns = thread_cpu_ns() - r->cpu_ns;
    r->t1 = now_ns();
    return NULL;
}

/* One run of threads threads on a fresh heap of ops (caches on or off); returns operations per second
 * and stores the threads' mean CPU ns per operation in *cpu_ns. */
static double mt_once(const struct heap_ops *ops, unsigned threads, bool caches, unsigned cpus,
                      double *cpu_ns)
{
    struct arena_heap *m = calloc(1, sizeof(*m));
    struct mt_run run[64];
    pthread_t t[64];
    pthread_barrier_t start;
    struct heap_env env;
    double first = 0, last = 0, cpu = 0;

    if (m == NULL || host_arena_init(&m->arena, RESERVE, INITIAL) != 0) {
        perror("mmap");
        exit(1);
    }
    m->arena.chunk = CHUNK;
    env = host_arena_env(&m->arena);
    env.ctx = m;
    env.lock = spin_lock;
    env.unlock = spin_unlock;
    if (caches) {
        env.cpu_count = cpus;
        env.cpu_enter = cpu_enter;
        env.cpu_exit = cpu_exit;
    }
    m->h = heap_create(ops, m->arena.base, INITIAL, &env);
    if (m->h == NULL) {
        fprintf(stderr, "heap_create(%s) failed\n", ops->name);
        exit(1);
    }
    pthread_barrier_init(&start, NULL, threads);
    for (unsigned i = 0; i < threads; i++) {
        run[i] = (struct mt_run){m, &start, i, 0, 0, 0};
        if (pthread_create(&t[i], NULL, mt_thread, &run[i]) != 0) {
            perror("pthread_create");
            exit(1);
        }
    }
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        if (i == 0 || run[i].t0 < first)
            first = run[i].t0;
        if (run[i].t1 > last)
            last = run[i].t1;
        cpu += run[i].cpu_ns / (2.0 * N_AB) / threads;
    }
    *cpu_ns = cpu;
    pthread_barrier_destroy(&start);
    if (heap_check(m->h) != 0 || heap_stats(m->h).live_allocs != 0 ||
        heap_stats(m->h).total_allocs != (uint64_t)threads * N_AB) {
        fprintf(stderr, "%s: heap broken after the threads run\n", ops->name);
        exit(1);
    }
    host_arena_destroy(&m->arena);
    free(m);
    return (double)threads * 2.0 * N_AB / ((last - first) / 1e9);
}

static int threads_main(unsigned threads, int reps, const char *only, const char *caches)
{
    enum { MAXC = 16 };
    struct {
        const struct heap_ops *ops;
        bool caches;
        double one[MAX_REPS], many[MAX_REPS], cpu_one[MAX_REPS], cpu_many[MAX_REPS];
    } *cf = calloc(MAXC, sizeof(*cf));
    int n = 0;

    if (cf == NULL)
        return 1;
    for (const struct heap_ops *const *o = heap_backends; *o != NULL && n + 2 <= MAXC; o++) {
        if (only != NULL && strncmp((*o)->name, only, strlen(only)) != 0)
            continue;
        for (int on = 1; on >= 0; on--) {
            if (caches != NULL && strcmp(caches, on ? "on" : "off") != 0)
                continue;
            cf[n].ops = *o;
            cf[n++].caches = on;
        }
    }
    generate();
    printf("# kheap-bench --threads %u: workload a per thread (2,000,000 ops), spin-locked heap, %d rounds "
           "after 1 warm-up, %ld CPUs online%s\n",
           threads, reps, sysconf(_SC_NPROCESSORS_ONLN), KHEAP_HARDENING ? " (hardened: no caches)" : "");
    for (int r = -1; r < reps; r++)
        for (int i = 0; i < n; i++) {
            double c1, cn;
            /* --threads 1 (callgrind of the one-CPU path) still gives the heap two CPUs' caches. */
            unsigned cpus = threads < 2 ? 2 : threads;
            double one = mt_once(cf[i].ops, 1, cf[i].caches, cpus, &c1);
            double many = threads > 1 ? mt_once(cf[i].ops, threads, cf[i].caches, cpus, &cn) : one;
            if (threads <= 1)
                cn = c1;
            if (r >= 0) {
                cf[i].one[r] = one;
                cf[i].many[r] = many;
                cf[i].cpu_one[r] = c1;
                cf[i].cpu_many[r] = cn;
            }
        }
    printf("%-18s %-6s %9s %7s %7s %9s %7s %7s %6s %8s %8s %6s\n", "allocator", "caches", "1T Mops/s", "min",
           "max", "NT Mops/s", "min", "max", "ratio", "1T cpuns", "NT cpuns", "cpu ratio");
    for (int i = 0; i < n; i++) {
        double one, many, lo1, hi1, lo, hi, c1 = median(cf[i].cpu_one, reps),
                                            cn = median(cf[i].cpu_many, reps);
        qsort(cf[i].one, (size_t)reps, sizeof(double), cmp_double);
        qsort(cf[i].many, (size_t)reps, sizeof(double), cmp_double);
        lo1 = cf[i].one[0], hi1 = cf[i].one[reps - 1];
        lo = cf[i].many[0], hi = cf[i].many[reps - 1];
        one = median(cf[i].one, reps);
        many = median(cf[i].many, reps);
        printf("BENCH threads=%u allocator=%s%s caches=%s ops_per_s_1=%.0f ops_per_s_n=%.0f ratio=%.2f "
               "cpu_ns_1=%.2f cpu_ns_n=%.2f cpu_ratio=%.2f\n",
               threads, cf[i].ops->name, KHEAP_HARDENING ? "_hardened" : "", cf[i].caches ? "on" : "off", one,
               many, many / one, c1, cn, threads * c1 / cn);
        printf("%-18s %-6s %9.2f %7.2f %7.2f %9.2f %7.2f %7.2f %6.2f %8.2f %8.2f %6.2f\n", cf[i].ops->name,
               cf[i].caches ? "on" : "off", one / 1e6, lo1 / 1e6, hi1 / 1e6, many / 1e6, lo / 1e6, hi / 1e6,
               many / one, c1, cn, threads * c1 / cn);
    }
    free(cf);
    return 0;
}

static const char *const workload_title[] = {
    "a: 1,000,000 x alloc 8..64 B + free",
    "b: as a, one 64 B block held throughout",
    "c: 10,000 slots, random alloc/free, 16 B..64 KiB",
    "p: producer/consumer, 1,000-slot FIFO queue, 16..512 B",
    "k: object-cache bursts of one of 7 sizes (24..640 B), freed LIFO or at random",
};
static const char all_workloads[] = "abcpk";
static const char *const ratio_to[] = {"system", "tcmalloc", "mimalloc", "jemalloc"};
#define N_W     5
#define N_RATIO 4

struct row_result {
    double t[MAX_REPS];   /* ns per op of each repetition */
    double med, min, max; /* of t */
    struct run_result fp; /* footprint pass (c, p, k) */
    bool has_fp;
    size_t failed; /* failed allocations in the last timed run */
};

static int find_row(const struct allocator *als, int nal, const char *name)
{
    for (int i = 0; i < nal; i++)
        if (strcmp(als[i].name, name) == 0 && !als[i].missing)
            return i;
    return -1;
}

static void finish(struct row_result *r, int reps)
{
    double v[MAX_REPS];

    memcpy(v, r->t, sizeof(double) * (size_t)reps);
    r->med = median(v, reps);
    r->min = v[0];
    r->max = v[reps - 1];
}

/* Row x against the pointer increment on workload a, repetition by repetition: each repetition runs
 * the increment right after every row, so that the ratio of one repetition's two times is the least
 * disturbed by the machine's load. Stores the median, min and max of the reps ratios in *ratio. */
static void pinc_ratios(const struct row_result *x, const struct row_result *inc, int reps,
                        struct row_result *ratio)
{
    for (int r = 0; r < reps; r++)
        ratio->t[r] = x->t[r] / inc->t[r];
    finish(ratio, reps);
}

/* Timed mode: footprint passes, then reps interleaved repetitions, then BENCH lines and tables. */
static int timed_main(struct allocator *als, int nal, const char *workload, int reps, bool footprints)
{
    static struct row_result res[MAX_ALLOCATORS][N_W];
    struct row_result inc = {0};
    char ws[N_W + 1];
    int nw = 0;

    for (int w = 0; w < N_W; w++)
        if (workload == NULL || workload[0] == all_workloads[w])
            ws[nw++] = all_workloads[w];
    ws[nw] = '\0';
    if (nw == 0) {
        fprintf(stderr, "kheap-bench: unknown workload %s (a, b, c, p or k)\n", workload);
        return 2;
    }
    printf("# kheap-bench%s: %d repetitions after 1 warm-up, interleaved (each repetition runs every "
           "workload on every allocator); ns_per_op = %s / operations%s%s; %ld CPUs online\n",
           KHEAP_HARDENING ? "-hardened" : "", reps,
           cpu_clock ? "this thread's CPU time (--cpu-time)" : "time",
           give_back ? "; our heaps give memory back (--release)" : "",
           with_caches ? "; our heaps: spin lock and per-CPU caches, on CPU 0 (--caches on)" : "",
           sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 0; i < nal; i++)
        if (als[i].missing)
            printf("# %s: not installed (%s)\n", als[i].name, als[i].peer->error);
    fflush(stdout);
    for (int i = 0; i < nal && footprints; i++)
        for (int w = 0; w < N_W; w++)
            if (strchr("cpk", all_workloads[w]) && strchr(ws, all_workloads[w]) && !als[i].missing &&
                !als[i].ref) {
                res[i][w].fp = footprint_pass(&als[i], all_workloads[w]);
                res[i][w].has_fp = true;
            }
    for (int r = -1; r < reps; r++)
        for (int wi = 0; wi < nw; wi++) {
            int w = (int)(strchr(all_workloads, ws[wi]) - all_workloads);
            double ops = workload_ops(ws[wi]);
            for (int i = 0; i < nal; i++) {
                struct run_result rr = {0};
                double t;
                if (als[i].missing)
                    continue;
                t = run_once(&als[i], ws[wi], &rr, 0);
                if (r >= 0)
                    res[i][w].t[r] = t / ops;
                res[i][w].failed = rr.failed;
            }
            if (ws[wi] == 'a') {
                double t = pointer_increment_once();
                if (r >= 0)
                    inc.t[r] = t / ops;
            }
        }
    for (int i = 0; i < nal; i++)
        for (int wi = 0; wi < nw; wi++)
            if (!als[i].missing)
                finish(&res[i][strchr(all_workloads, ws[wi]) - all_workloads], reps);
    if (strchr(ws, 'a'))
        finish(&inc, reps);

    for (int wi = 0; wi < nw; wi++) {
        int w = (int)(strchr(all_workloads, ws[wi]) - all_workloads);
        for (int i = 0; i < nal; i++) {
            const struct row_result *x = &res[i][w];
            if (als[i].missing || als[i].ref)
                continue;
            printf("BENCH allocator=%s workload=%c ns_per_op=%.2f footprint_ratio=", als[i].name, ws[wi],
                   x->med);
            if (x->has_fp && x->fp.peak_live != 0)
                printf("%.3f", (double)x->fp.mapped / (double)x->fp.peak_live);
            else
                printf("-");
            printf(" min=%.2f max=%.2f ops=%.0f reps=%d", x->min, x->max, workload_ops(ws[wi]), reps);
            if (x->has_fp)
                printf(" mapped=%zu peak_live=%zu", x->fp.mapped, x->fp.peak_live);
            else
                printf(" mapped=- peak_live=-");
            printf(" failed=%zu", x->failed);
            for (int k = 0; k < N_RATIO; k++) {
                int j = find_row(als, nal, ratio_to[k]);
                if (j >= 0)
                    printf(" vs_%s=%.3f vs_%s_min=%.3f", ratio_to[k], x->med / res[j][w].med, ratio_to[k],
                           x->min / res[j][w].min);
                else
                    printf(" vs_%s=- vs_%s_min=-", ratio_to[k], ratio_to[k]);
            }
            if (ws[wi] == 'a') {
                struct row_result q;
                pinc_ratios(x, &inc, reps, &q);
                printf(
                    " vs_pointer_increment=%.3f pinc_ratio_med=%.3f pinc_ratio_min=%.3f pinc_ratio_max=%.3f",
                    x->med / inc.med, q.med, q.min, q.max);
            }
            printf("\n");
        }
    }
    if (strchr(ws, 'a'))
        printf(
            "BENCH allocator=pointer_increment workload=a ns_per_op=%.2f footprint_ratio=- min=%.2f max=%.2f "
            "ops=%.0f reps=%d\n",
            inc.med, inc.min, inc.max, workload_ops('a'), reps);

    for (int wi = 0; wi < nw; wi++) {
        int w = (int)(strchr(all_workloads, ws[wi]) - all_workloads);
        printf("\n== workload %s (%.0f ops) ==\n", workload_title[w], workload_ops(ws[wi]));
        printf("%-26s %9s %9s %9s %8s %9s %9s %9s %9s %s\n", "allocator", "ns/op", "min", "max", "/glibc",
               "/tcmalloc", "/mimalloc", "/jemalloc", "footprint", "(from the OS / peak live)");
        for (int i = 0; i < nal; i++) {
            const struct row_result *x = &res[i][w];
            char label[64];
            snprintf(label, sizeof(label), "%s%s", als[i].name, als[i].ref ? " (ref)" : "");
            if (als[i].missing) {
                printf("%-26s not installed\n", label);
                continue;
            }
            printf("%-26s %9.2f %9.2f %9.2f", label, x->med, x->min, x->max);
            for (int k = 0; k < N_RATIO; k++) {
                int j = find_row(als, nal, ratio_to[k]);
                if (j >= 0)
                    printf(" %*.2f", k == 0 ? 8 : 9, x->med / res[j][w].med);
                else
                    printf(" %*s", k == 0 ? 8 : 9, "-");
            }
            if (x->has_fp && x->fp.peak_live != 0)
                printf(" %9.3f (%.2f MiB / %.2f MiB)", (double)x->fp.mapped / (double)x->fp.peak_live,
                       x->fp.mapped / 1048576.0, x->fp.peak_live / 1048576.0);
            else
                printf(" %9s", "-");
            if (x->failed != 0)
                printf("  %zu allocations FAILED (out of range)", x->failed);
            printf("\n");
        }
        if (ws[wi] == 'a') {
            printf("%-26s %9.2f %9.2f %9.2f   (floor for bump: bare pointer increment, same loop)\n",
                   "pointer_increment", inc.med, inc.min, inc.max);
            for (int i = 0; i < nal; i++) {
                struct row_result q;
                if (als[i].missing || als[i].kind != KIND_HEAP)
                    continue;
                pinc_ratios(&res[i][w], &inc, reps, &q);
                printf("  %s / pointer_increment: %.2f (medians), per repetition %.2f (%.2f-%.2f)\n",
                       als[i].name, res[i][w].med / inc.med, q.med, q.min, q.max);
            }
        }
    }
    fflush(stdout);
    return 0;
}

/* The peers' initial-exec TLS needs static TLS that glibc reserves only on request: when a peer
 * could not be loaded for want of it, re-executes this program with the tunable, once (not when it
 * is set already, e.g. by callgrind-ops.sh: under valgrind the new program would run outside it). */
static void ensure_static_tls(char **argv)
{
    const char *old = getenv("GLIBC_TUNABLES");
    char value[1024];

    if (old != NULL && strstr(old, "glibc.rtld.optional_static_tls") != NULL)
        return;
    snprintf(value, sizeof(value), "%s%sglibc.rtld.optional_static_tls=" BENCH_STATIC_TLS, old ? old : "",
             old && *old ? ":" : "");
    setenv("GLIBC_TUNABLES", value, 1);
    execv("/proc/self/exe", argv);
    perror("kheap-bench: re-executing with GLIBC_TUNABLES"); /* then run without the peers that fail */
}

int main(int argc, char **argv)
{
    struct allocator als[MAX_ALLOCATORS], traced[MAX_ALLOCATORS];
    int nal = 0, ntraced = 0, reps = 5;
    static char names[MAX_ALLOCATORS][64];
    int plain_only = 0, burst = 0, rc;
    const char *only = NULL, *workload = NULL, *trace = NULL, *caches = NULL;
    bool append = false, footprints = true;
    int steps = 0;
    unsigned threads = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--plain-only") == 0)
            plain_only = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--workload") == 0 && i + 1 < argc)
            workload = argv[++i];
        else if (strcmp(argv[i], "--footprint-trace") == 0 && i + 1 < argc)
            trace = argv[++i];
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--append") == 0) /* the hardened twin, called by the plain program */
            append = true;
        else if (strcmp(argv[i], "--release") == 0)
            give_back = 1;
        else if (strcmp(argv[i], "--burst") == 0)
            burst = 1;
        else if (strcmp(argv[i], "--no-footprint") == 0)
            footprints = false;
        else if (strcmp(argv[i], "--cpu-time") == 0)
            cpu_clock = true;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--caches") == 0 && i + 1 < argc)
            caches = argv[++i];
        else
            reps = atoi(argv[i]);
    }
    if (reps < 1 || reps > MAX_REPS)
        reps = 5;
    if (steps < 0 || steps > C_STEPS) {
        fprintf(stderr, "kheap-bench: --steps must be 1..%d\n", C_STEPS);
        return 2;
    }
    if (threads != 0) {
        cpu_clock = false; /* throughput is wall time; the threads' CPU time is measured apart */
        return threads_main(threads > 64 ? 64 : threads, reps, only, caches);
    }
    with_caches = caches != NULL && strcmp(caches, "on") == 0;
    for (const struct heap_ops *const *o = heap_backends; *o != NULL && nal < MAX_ALLOCATORS - 8;
         o++) { /* 8: glibc, the peers */
        snprintf(names[nal], sizeof(names[nal]), "%s%s", (*o)->name, KHEAP_HARDENING ? "_hardened" : "");
        als[nal] = (struct allocator){names[nal], *o, KIND_HEAP, NULL, false, false};
        nal++;
    }
    if (!burst) {
        als[nal++] = (struct allocator){"system", NULL, KIND_SYS, NULL, KHEAP_HARDENING, false};
        if (!add_extra_peers())
            return 2;
        for (size_t p = 0; p < n_peers && trace == NULL; p++)
            als[nal++] =
                (struct allocator){peers[p].name, NULL, KIND_PEER, &peers[p], KHEAP_HARDENING, false};
    }
    if (only != NULL) {
        int kept = 0;
        for (int i = 0; i < nal; i++)
            if (strncmp(als[i].name, only, strlen(only)) == 0)
                als[kept++] = als[i];
        nal = kept;
    }
    for (int i = 0; i < nal; i++)
        if (als[i].kind == KIND_PEER) {
            als[i].missing = !load_peer(als[i].peer);
            if (als[i].missing && strstr(als[i].peer->error, "static TLS") != NULL)
                ensure_static_tls(argv); /* returns only if the tunable is set already */
        }
    process_malloc(); /* the system row is glibc */
    generate();
    if (trace != NULL) {
        char args[4200];
        for (int i = 0; i < nal; i++)
            if (als[i].kind != KIND_PEER && !(KHEAP_HARDENING && als[i].kind == KIND_SYS))
                traced[ntraced++] = als[i];
        /* the trace keeps its own meaning of --steps: the first N steps of c (default all) */
        footprint_trace(traced, ntraced, trace, append, steps > 0 ? steps : C_STEPS);
        snprintf(args, sizeof(args), "--footprint-trace '%s' --append --steps %d%s%s", trace,
                 steps > 0 ? steps : C_STEPS, only ? " --only " : "", only ? only : "");
        return plain_only ? 0 : run_hardened_twin(args);
    }
    if (steps > 0)
        limit_steps(steps);
    else
        limit_steps(C_STEPS);
    if (burst) {
        printf("# kheap-bench --burst: workload e, median of %d repetitions after 1 warm-up\n", reps);
        for (int i = 0; i < nal; i++)
            burst_workload(&als[i], reps);
        rc = 0;
    } else {
        rc = timed_main(als, nal, workload, reps, footprints);
    }
    if (rc == 0 && !plain_only && !KHEAP_HARDENING) {
        char args[512];
        snprintf(args, sizeof(args), "%d%s%s%s%s%s%s%s%s --steps %d", reps, only ? " --only " : "",
                 only ? only : "", workload ? " --workload " : "", workload ? workload : "",
                 give_back ? " --release" : "", burst ? " --burst" : "", footprints ? "" : " --no-footprint",
                 cpu_clock ? " --cpu-time" : "", steps);
        printf("\n");
        fflush(stdout);
        return run_hardened_twin(args);
    }
    return rc;
}
