/*
 * bench.c - kheap-bench: every backend and the system malloc on the same workloads, in one process.
 *
 * Usage: kheap-bench [reps] [--plain-only] [--only NAME] [--workload a|b|c] [--release] [--burst]
 *        kheap-bench --threads N [--caches on|off] [reps] [--only NAME]
 *        kheap-bench --footprint-trace FILE [--steps N] [--plain-only] [--only NAME]
 *   reps: timed repetitions after 1 warm-up (default 5; the median is reported). --only runs just the
 *   allocators whose name starts with NAME (e.g. for `perf stat` of one backend), --workload just one
 *   workload (the others print 0); both are passed on to the hardened twin. --release: our heaps give
 *   memory back through arena.c's recording environment (host_arena_release_env: its bookkeeping and
 *   the madvise/mprotect calls are part of the cost). --burst: instead of a-d, workload e only (our
 *   heaps; with --release to give memory back): BURST_ROUNDS rounds of allocating 64 MiB in mixed sizes (16 B
 * .. 64 KiB, every 16th 1 MiB) with a 64 B block allocated after them and freed last, then freeing the burst
 * in random order; ops = allocations + frees.
 *   --footprint-trace: no timing; runs the first N steps of workload c (default all 2,000,000) once per
 *   allocator and writes FILE, one line "allocator step bytes_mapped bytes_in_use" per sample (every
 *   N / TRACE_SAMPLES steps, and once more after the final frees, as step N + 1); the hardened twin
 *   appends its rows. Our heaps run on an arena that gives memory back (host_arena_release_env, as
 *   the kernel's heap region does); the system row is mallinfo2's arena + hblkhd and uordblks +
 *   hblkhd. test/host/footprint.py draws the file (docs/img/footprint-c.svg, target footprint-plot).
 *   --threads N: the several-CPU mode instead (threads_main below): workload a's loop on one thread,
 *   then on N threads at once, on one heap with a spin lock, per backend with per-CPU caches on
 *   (cpu_count = N) and off; --caches on|off runs only one of the two (for callgrind). --caches on
 *   without --threads: workloads a-c run on a heap with a spin lock and per-CPU caches (cpu_count 2,
 *   the benchmark always on CPU 0), the kernel's configuration on one CPU, instead of the default
 *   (no lock, no caches).
 *
 * Workloads (sizes and slot choices are pre-generated from fixed seeds, outside the timed region):
 *   a  1,000,000 x { p = alloc(8..64 B); free(p) }                           ops = 2,000,000
 *   b  as a, with one 64 B allocation held for the whole run                 ops = 2,000,000
 *   c  10,000 slots, 2,000,000 steps: pick a random slot; free it if live, else allocate into it
 *      (70% 16..128 B, 25% 129..2048 B, 5% 2..64 KiB)                        ops = 2,000,000
 *   d  footprint of c: bytes obtained from the OS at the end (our heaps: stats.bytes_mapped; system:
 *      max of mallinfo2 arena + mmapped bytes, sampled every 1024 steps) / peak of live requested
 *      bytes. Reported as footprint_ratio on the workload=c line.
 * Every allocation writes one byte so no compiler can drop a malloc/free pair. Our heaps run through
 * the public heap_alloc()/heap_free() (front end with stats and lock check, no lock installed), on an
 * mmap arena starting at 64 KiB and growing in >= 64 KiB steps like the kernel's heap region.
 * Bump gets a 1 GiB range on c, since it cannot reuse memory there; what happens is printed.
 *
 * Hardened mode: the same file built with -DKHEAP_HARDENING=1 against the hardened library is
 * kheap-bench-hardened; it names its allocators <backend>_hardened and has no system row. The plain
 * kheap-bench runs it after its own table (if it sits next to it), so one command shows both modes
 * in the same BENCH format. --plain-only skips that.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heap.h"
#include "heap_backend.h"
#include "kheap_host.h"

#define N_AB          1000000
#define C_SLOTS       10000
#define C_STEPS       2000000
#define INITIAL       ((size_t)64 << 10)
#define CHUNK         ((size_t)64 << 10)
#define RESERVE       ((size_t)4 << 30)
#define BUMP_C_LIMIT  ((size_t)1 << 30)
#define MAX_REPS      31
#define BURST_BYTES   ((size_t)64 << 20)
#define BURST_MAX     20000
#define BURST_ROUNDS  4
#define TRACE_SAMPLES 400

static uint32_t sizes_ab[N_AB];
static uint32_t c_slot[C_STEPS];
static uint32_t c_size[C_STEPS];
static void *slots[C_SLOTS];
static uint32_t slot_size[C_SLOTS]; /* requested size of each live slot (footprint pass only) */

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
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The workloads, instantiated once for the heap API and once for malloc so both are direct calls. */
#define H_ALLOC(h, n) heap_alloc((h), (n))
#define H_FREE(h, p)  heap_free((h), (p))
#define S_ALLOC(h, n) ((void)(h), malloc(n))
#define S_FREE(h, p)  ((void)(h), free(p))

struct c_result {
    size_t peak_live;  /* peak of live requested bytes */
    size_t sys_mapped; /* system only: sampled bytes from the OS */
    size_t failed;
};

static size_t sys_mapped_now(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.arena + mi.hblkhd;
}

#define DEFINE_WORKLOADS(sfx, ALLOC, FREE)                                      \
    static void work_a_##sfx(struct heap *h)                                    \
    {                                                                           \
        for (int i = 0; i < N_AB; i++) {                                        \
            char *p = ALLOC(h, sizes_ab[i]);                                    \
            *(volatile char *)p = 1;                                            \
            FREE(h, p);                                                         \
        }                                                                       \
    }                                                                           \
    static void work_b_##sfx(struct heap *h)                                    \
    {                                                                           \
        char *keep = ALLOC(h, 64);                                              \
        *(volatile char *)keep = 1;                                             \
        for (int i = 0; i < N_AB; i++) {                                        \
            char *p = ALLOC(h, sizes_ab[i]);                                    \
            *(volatile char *)p = 1;                                            \
            FREE(h, p);                                                         \
        }                                                                       \
        FREE(h, keep);                                                          \
    }                                                                           \
    static void work_c_##sfx(struct heap *h, struct c_result *res, int measure) \
    {                                                                           \
        size_t live = 0;                                                        \
        memset(slots, 0, sizeof(slots));                                        \
        for (int i = 0; i < C_STEPS; i++) {                                     \
            void **s = &slots[c_slot[i]];                                       \
            if (*s != NULL) {                                                   \
                FREE(h, *s);                                                    \
                *s = NULL;                                                      \
                if (measure)                                                    \
                    live -= slot_size[c_slot[i]];                               \
            } else {                                                            \
                char *p = ALLOC(h, c_size[i]);                                  \
                if (p == NULL) {                                                \
                    res->failed++;                                              \
                    continue;                                                   \
                }                                                               \
                *p = 1;                                                         \
                *s = p;                                                         \
                if (measure) {                                                  \
                    slot_size[c_slot[i]] = c_size[i];                           \
                    live += c_size[i];                                          \
                    if (live > res->peak_live)                                  \
                        res->peak_live = live;                                  \
                }                                                               \
            }                                                                   \
            if (measure == 2 && (i & 1023) == 0) {                              \
                size_t m = sys_mapped_now();                                    \
                if (m > res->sys_mapped)                                        \
                    res->sys_mapped = m;                                        \
            }                                                                   \
        }                                                                       \
        for (int i = 0; i < C_SLOTS; i++)                                       \
            if (slots[i] != NULL) {                                             \
                FREE(h, slots[i]);                                              \
                slots[i] = NULL;                                                \
            }                                                                   \
    }

DEFINE_WORKLOADS(heap, H_ALLOC, H_FREE)
DEFINE_WORKLOADS(sys, S_ALLOC, S_FREE)

struct allocator {
    const char *name;
    const struct heap_ops *ops; /* NULL = system malloc */
};

struct arena_heap {
    struct host_arena arena;
    struct heap *h;
};

/* --caches on: the heap's spin lock (one thread: never contended) and its CPU, always 0. */
static uint32_t bench_lock_word;

static unsigned long bench_lock(void *ctx)
{
    (void)ctx;
    while (__atomic_exchange_n(&bench_lock_word, 1, __ATOMIC_ACQUIRE) != 0)
        __builtin_ia32_pause();
    return 0;
}

static void bench_unlock(void *ctx, unsigned long saved)
{
    (void)ctx;
    (void)saved;
    __atomic_store_n(&bench_lock_word, 0, __ATOMIC_RELEASE);
}

static unsigned bench_cpu_enter(void *ctx, unsigned long *saved)
{
    (void)ctx;
    *saved = 0;
    return 0;
}

static void bench_cpu_exit(void *ctx, unsigned long saved)
{
    (void)ctx;
    (void)saved;
}

/* Opens a heap of ops on a fresh arena of at most limit bytes; release: the arena takes memory back. */
static void open_heap(struct arena_heap *ah, const struct heap_ops *ops, size_t limit, bool release)
{
    struct heap_env env;

    if (host_arena_init(&ah->arena, RESERVE, INITIAL) != 0) {
        perror("mmap");
        exit(1);
    }
    ah->arena.chunk = CHUNK;
    ah->arena.limit = limit;
    env = release ? host_arena_release_env(&ah->arena) : host_arena_env(&ah->arena);
    if (with_caches) {
        env.lock = bench_lock;
        env.unlock = bench_unlock;
        env.cpu_count = 2;
        env.cpu_enter = bench_cpu_enter;
        env.cpu_exit = bench_cpu_exit;
    }
    ah->h = heap_create(ops, ah->arena.base, INITIAL, &env);
    if (ah->h == NULL) {
        fprintf(stderr, "heap_create(%s) failed\n", ops->name);
        exit(1);
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

/* Runs workload w ('a', 'b', 'c') reps times after a warm-up; returns the median ns per operation. */
static double time_workload(const struct allocator *al, char w, int reps, size_t *failed)
{
    double t[MAX_REPS];

    *failed = 0;
    for (int r = -1; r < reps; r++) {
        struct arena_heap ah = {0};
        struct c_result res = {0};
        size_t limit = RESERVE;
        double t0, t1;

        if (al->ops != NULL) {
            if (w == 'c' && al->ops->arena)
                limit = BUMP_C_LIMIT;
            open_heap(&ah, al->ops, limit, give_back);
        }
        t0 = now_ns();
        if (al->ops != NULL) {
            if (w == 'a')
                work_a_heap(ah.h);
            else if (w == 'b')
                work_b_heap(ah.h);
            else
                work_c_heap(ah.h, &res, 0);
        } else {
            if (w == 'a')
                work_a_sys(NULL);
            else if (w == 'b')
                work_b_sys(NULL);
            else
                work_c_sys(NULL, &res, 0);
        }
        t1 = now_ns();
        if (al->ops != NULL) {
            if (heap_check(ah.h) != 0 || heap_stats(ah.h).live_allocs != 0) {
                fprintf(stderr, "%s: heap broken after workload %c\n", al->name, w);
                exit(1);
            }
            host_arena_destroy(&ah.arena);
        }
        if (r >= 0)
            t[r] = (t1 - t0) / (2.0 * N_AB); /* a, b: 2 ops per iteration; c: C_STEPS = 2 * N_AB */
        *failed = res.failed;
    }
    return median(t, reps);
}

/* Footprint of workload c: bytes from the OS / peak live requested bytes. Returns < 0 if unknown. */
static double footprint(const struct allocator *al, size_t *mapped_out, size_t *peak_out)
{
    struct c_result res = {0};
    size_t mapped;

    if (al->ops != NULL) {
        struct arena_heap ah = {0};
        open_heap(&ah, al->ops, al->ops->arena ? BUMP_C_LIMIT : RESERVE, give_back);
        work_c_heap(ah.h, &res, 1);
        mapped = heap_stats(ah.h).bytes_mapped;
        host_arena_destroy(&ah.arena);
    } else {
        malloc_trim(0);
        work_c_sys(NULL, &res, 2);
        mapped = res.sys_mapped;
    }
    *mapped_out = mapped;
    *peak_out = res.peak_live;
    return res.peak_live ? (double)mapped / (double)res.peak_live : -1;
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
            host_arena_destroy(&ah.arena);
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
        host_arena_destroy(&ah.arena);
        if (r >= 0)
            t[r] = (t1 - t0) / (2.0 * (burst_n + 1) * BURST_ROUNDS);
    }
    printf("BENCH allocator=%s workload=e ns_per_op=%.2f ops=%d pages_released=%llu pages_reclaimed=%llu "
           "mapped_after=%zu\n",
           al->name, median(t, reps), 2 * (burst_n + 1) * BURST_ROUNDS, (unsigned long long)st.pages_released,
           (unsigned long long)st.pages_reclaimed, st.bytes_mapped);
    fflush(stdout);
}

/* The floor for bump: a bare 16-aligned pointer increment, a call like heap_alloc (noinline, so
 * callgrind can count it: --toggle-collect=pointer_increment). */
static __attribute__((noinline)) char *pointer_increment(char **next, size_t size)
{
    char *p = *next;

    *next = p + ((size + 15) & ~(size_t)15);
    return p;
}

/* The same loop as workload a with pointer_increment() and no free. */
static double pointer_increment_ns(int reps)
{
    double t[MAX_REPS];
    static char buf[64 * N_AB + 64];

    for (int r = -1; r < reps; r++) {
        char *next = buf;
        double t0 = now_ns();
        for (int i = 0; i < N_AB; i++) {
            char *p = pointer_increment(&next, sizes_ab[i]);
            *(volatile char *)p = 1;
        }
        double t1 = now_ns();
        if (r >= 0)
            t[r] = (t1 - t0) / (2.0 * N_AB);
    }
    return median(t, reps);
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
struct mt_heap {
    struct host_arena arena; /* first: the arena callbacks get this struct as ctx */
    uint32_t lock;
    struct heap *h;
};

static _Thread_local unsigned bench_cpu;

static unsigned long spin_lock(void *ctx)
{
    struct mt_heap *m = ctx;

    while (__atomic_exchange_n(&m->lock, 1, __ATOMIC_ACQUIRE) != 0)
        while (__atomic_load_n(&m->lock, __ATOMIC_RELAXED) != 0)
            __builtin_ia32_pause();
    return 0;
}

static void spin_unlock(void *ctx, unsigned long saved)
{
    struct mt_heap *m = ctx;

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

struct mt_run {
    struct mt_heap *m;
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
    struct mt_heap *m = calloc(1, sizeof(*m));
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

int main(int argc, char **argv)
{
    struct allocator als[8];
    int nal = 0, reps = 5;
    double ns[8][3], fp[8];
    size_t fp_mapped[8], fp_peak[8], failed_c[8];

    static char names[8][64];
    int plain_only = 0, has_system = !KHEAP_HARDENING, burst = 0;
    const char *only = NULL, *workload = NULL, *trace = NULL, *caches = NULL;
    bool append = false;
    int steps = C_STEPS;
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
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--caches") == 0 && i + 1 < argc)
            caches = argv[++i];
        else
            reps = atoi(argv[i]);
    }
    if (reps < 1 || reps > MAX_REPS)
        reps = 5;
    if (steps < 1 || steps > C_STEPS) {
        fprintf(stderr, "kheap-bench: --steps must be 1..%d\n", C_STEPS);
        return 2;
    }
    if (threads != 0)
        return threads_main(threads > 64 ? 64 : threads, reps, only, caches);
    with_caches = caches != NULL && strcmp(caches, "on") == 0;
    for (const struct heap_ops *const *o = heap_backends; *o != NULL && nal < 7; o++) {
        snprintf(names[nal], sizeof(names[nal]), "%s%s", (*o)->name, KHEAP_HARDENING ? "_hardened" : "");
        als[nal] = (struct allocator){names[nal], *o};
        nal++;
    }
    if (has_system)
        als[nal++] = (struct allocator){"system", NULL};
    if (only != NULL) {
        int kept = 0;
        for (int i = 0; i < nal; i++)
            if (strncmp(als[i].name, only, strlen(only)) == 0)
                als[kept++] = als[i];
        nal = kept;
        has_system = has_system && nal > 0 && als[nal - 1].ops == NULL;
    }
    generate();
    if (trace != NULL) {
        char args[4200];
        footprint_trace(als, nal, trace, append, steps);
        snprintf(args, sizeof(args), "--footprint-trace '%s' --append --steps %d%s%s", trace, steps,
                 only ? " --only " : "", only ? only : "");
        return plain_only ? 0 : run_hardened_twin(args);
    }
    if (burst) {
        printf("# kheap-bench --burst: workload e, median of %d repetitions after 1 warm-up\n", reps);
        for (int i = 0; i < nal; i++)
            if (als[i].ops != NULL)
                burst_workload(&als[i], reps);
    }

    if (!burst)
        printf(
            "# kheap-bench: median of %d repetitions after 1 warm-up; ns_per_op = time / 2,000,000 ops%s%s\n",
            reps, give_back ? "; our heaps give memory back (--release)" : "",
            with_caches ? "; our heaps: spin lock and per-CPU caches, on CPU 0 (--caches on)" : "");
    for (int i = 0; i < nal && !burst; i++) {
        size_t failed;
        failed_c[i] = 0;
        for (int w = 0; w < 3; w++) {
            if (workload != NULL && workload[0] != 'a' + w) {
                ns[i][w] = 0;
                continue;
            }
            ns[i][w] = time_workload(&als[i], (char)('a' + w), reps, &failed);
            if (w == 2)
                failed_c[i] = failed;
        }
        fp_mapped[i] = fp_peak[i] = 0;
        fp[i] = workload == NULL || workload[0] == 'c' ? footprint(&als[i], &fp_mapped[i], &fp_peak[i]) : -1;
        for (int w = 0; w < 3; w++) {
            printf("BENCH allocator=%s workload=%c ns_per_op=%.2f footprint_ratio=", als[i].name, 'a' + w,
                   ns[i][w]);
            if (w == 2 && fp[i] >= 0)
                printf("%.3f\n", fp[i]);
            else
                printf("-\n");
        }
        fflush(stdout);
    }
    if (burst)
        goto twin;
    double inc = pointer_increment_ns(reps);

    printf("\n%-26s %10s %10s %10s %10s %10s %10s\n", "allocator", "a ns/op", "b ns/op", "c ns/op",
           "a/system", "c/system", "footprint");
    for (int i = 0; i < nal; i++)
        printf("%-26s %10.2f %10.2f %10.2f %10.2f %10.2f %10.3f\n", als[i].name, ns[i][0], ns[i][1], ns[i][2],
               has_system ? ns[i][0] / ns[nal - 1][0] : 0.0, has_system ? ns[i][2] / ns[nal - 1][2] : 0.0,
               fp[i]);
    printf("%-26s %10.2f %10s %10s   (floor for bump: bare pointer increment, same loop as a)\n",
           "pointer_increment", inc, "-", "-");
    for (int i = 0; i < nal; i++) {
        printf("# %s c: peak live requested %zu B, from the OS %zu B", als[i].name, fp_peak[i], fp_mapped[i]);
        if (failed_c[i] != 0)
            printf(", %zu of the allocations FAILED (out of range)", failed_c[i]);
        printf("\n");
    }
    fflush(stdout);
twin:
    if (!plain_only && !KHEAP_HARDENING) {
        char args[256];
        snprintf(args, sizeof(args), "%d%s%s%s%s%s%s", reps, only ? " --only " : "", only ? only : "",
                 workload ? " --workload " : "", workload ? workload : "", give_back ? " --release" : "",
                 burst ? " --burst" : "");
        printf("\n");
        fflush(stdout);
        return run_hardened_twin(args);
    }
    return 0;
}
