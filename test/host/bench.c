/*
 * bench.c - kheap-bench: every backend and the system malloc on the same workloads, in one process.
 *
 * Usage: kheap-bench [reps] [--plain-only] [--only NAME] [--workload a|b|c]
 *        kheap-bench --footprint-trace FILE [--steps N] [--plain-only] [--only NAME]
 *   reps: timed repetitions after 1 warm-up (default 5; the median is reported). --only runs just the
 *   allocators whose name starts with NAME (e.g. for `perf stat` of one backend), --workload just one
 *   workload (the others print 0); both are passed on to the hardened twin.
 *   --footprint-trace: no timing; runs the first N steps of workload c (default all 2,000,000) once per
 *   allocator and writes FILE, one line "allocator step bytes_mapped bytes_in_use" per sample (every
 *   N / TRACE_SAMPLES steps, and once more after the final frees, as step N + 1); the hardened twin
 *   appends its rows. Our heaps run on an arena that gives memory back (host_arena_release_env, as
 *   the kernel's heap region does); the system row is mallinfo2's arena + hblkhd and uordblks +
 *   hblkhd. test/host/footprint.py draws the file (docs/img/footprint-c.svg, target footprint-plot).
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
#define TRACE_SAMPLES 400

static uint32_t sizes_ab[N_AB];
static uint32_t c_slot[C_STEPS];
static uint32_t c_size[C_STEPS];
static void *slots[C_SLOTS];
static uint32_t slot_size[C_SLOTS]; /* requested size of each live slot (footprint pass only) */

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
            open_heap(&ah, al->ops, limit, false);
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
        open_heap(&ah, al->ops, al->ops->arena ? BUMP_C_LIMIT : RESERVE, false);
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

/* The floor for bump: the same loop as workload a with a bare pointer increment and no free. */
static double pointer_increment_ns(int reps)
{
    double t[MAX_REPS];
    static char buf[64 * N_AB + 64];

    for (int r = -1; r < reps; r++) {
        char *next = buf;
        double t0 = now_ns();
        for (int i = 0; i < N_AB; i++) {
            char *p = next;
            next += (sizes_ab[i] + 15) & ~15u;
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

int main(int argc, char **argv)
{
    struct allocator als[8];
    int nal = 0, reps = 5;
    double ns[8][3], fp[8];
    size_t fp_mapped[8], fp_peak[8], failed_c[8];

    static char names[8][64];
    int plain_only = 0, has_system = !KHEAP_HARDENING;
    const char *only = NULL, *workload = NULL, *trace = NULL;
    bool append = false;
    int steps = C_STEPS;

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
        else
            reps = atoi(argv[i]);
    }
    if (reps < 1 || reps > MAX_REPS)
        reps = 5;
    if (steps < 1 || steps > C_STEPS) {
        fprintf(stderr, "kheap-bench: --steps must be 1..%d\n", C_STEPS);
        return 2;
    }
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

    printf("# kheap-bench: median of %d repetitions after 1 warm-up; ns_per_op = time / 2,000,000 ops\n",
           reps);
    for (int i = 0; i < nal; i++) {
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
    if (!plain_only && !KHEAP_HARDENING) {
        char args[256];
        snprintf(args, sizeof(args), "%d%s%s%s%s", reps, only ? " --only " : "", only ? only : "",
                 workload ? " --workload " : "", workload ? workload : "");
        printf("\n");
        fflush(stdout);
        return run_hardened_twin(args);
    }
    return 0;
}
