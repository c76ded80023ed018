/*
 * test_cpu.c - several CPUs: the library driven by several pthreads, each thread its own CPU index
 * (heap_env.cpu_count / cpu_enter / cpu_exit, heap_cpu.c), per backend and mode; built under
 * AddressSanitizer (cpu_<backend>, cpu_hardened_<backend>) and ThreadSanitizer (cpu_tsan_...).
 *
 * Usage: test_cpu <backend>. Asserts: 2, 4 and 8 threads, per-CPU caches on and off, each thread
 * checking its own blocks against its model (contents, usable size) while blocks are handed between
 * threads and freed remotely, leave exact stats (every count equal to the threads' own) and a clean
 * heap_check(); heap_check() passes with the caches loaded; a small alloc/free loop on one CPU takes
 * the heap lock only on backends with per-CPU caches' misses (none with caches, every call without);
 * the fast path never waits for the heap lock while pinned; memory freed through another CPU is
 * reused, not stranded, and the caches drain before an allocation fails (a heap filled through CPU 0,
 * freed through CPU 1 so that CPU 1's cache pins many slabs, then a large request on CPU 2 succeeds)
 * and when pages go back; hardened: a double free through two CPUs is reported.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kheap_cmocka.h"

#include "heap.h"
#include "heap_backend.h"
#include "kheap_host.h"

#define RESERVE   ((size_t)1 << 30)
#define INITIAL   ((size_t)256 << 10)
#define MAX_CPUS  8
#define SLOTS     64   /* blocks each thread holds at most */
#define EXCHANGE  16   /* slots of the hand-over table between threads */
#define STEPS     6000 /* operations per thread per stress run (a third under ThreadSanitizer) */
#define SMALL_MAX 2048

static const struct heap_ops *g_ops;
static int g_steps = STEPS;

/* The test's environment: a mutex as the heap lock, each thread's CPU index in a thread-local. */
struct mt {
    struct host_arena arena;
    struct heap *h;
    pthread_mutex_t lock;
    unsigned long locks;        /* heap lock acquisitions (under the lock) */
    unsigned long pinned_waits; /* heap lock taken while pinned (atomic): must stay 0 */
    unsigned long bad_pins;     /* cpu_exit without cpu_enter, or nested pins (atomic) */
    unsigned long reports;      /* hardened reports (under the lock) */
    enum heap_error last_kind;
    pthread_mutex_t xlock; /* the hand-over table */
    struct block {
        unsigned char *p;
        size_t size;
        uint32_t seed;
    } xchg[EXCHANGE];
};

static _Thread_local unsigned tls_cpu;
static _Thread_local unsigned tls_pinned;

static unsigned long mt_lock(void *ctx)
{
    struct mt *m = ctx;

    if (tls_pinned != 0)
        __atomic_fetch_add(&m->pinned_waits, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&m->lock);
    m->locks++;
    return 0;
}

static void mt_unlock(void *ctx, unsigned long saved)
{
    struct mt *m = ctx;

    (void)saved;
    pthread_mutex_unlock(&m->lock);
}

static unsigned mt_cpu_enter(void *ctx, unsigned long *saved)
{
    struct mt *m = ctx;

    if (tls_pinned++ != 0)
        __atomic_fetch_add(&m->bad_pins, 1, __ATOMIC_RELAXED);
    *saved = 0x5a;
    return tls_cpu;
}

static void mt_cpu_exit(void *ctx, unsigned long saved)
{
    struct mt *m = ctx;

    if (tls_pinned-- != 1 || saved != 0x5a)
        __atomic_fetch_add(&m->bad_pins, 1, __ATOMIC_RELAXED);
}

static void mt_report(void *ctx, const struct heap_report *r)
{
    struct mt *m = ctx;

    m->reports++;
    m->last_kind = r->kind;
}

/* Its context has the arena as first member, so the arena's grow/release callbacks work on it. */
_Static_assert(offsetof(struct mt, arena) == 0, "arena first");

/* A heap for m at the start of its arena (size bytes, growing unless fixed), with per-CPU caches for
 * cpus CPUs (0: none) and the release callbacks if release is set. */
static void mt_open(struct mt *m, unsigned cpus, size_t size, bool fixed, bool release)
{
    struct heap_env env;

    memset(m, 0, sizeof(*m));
    assert_int_equal(host_arena_init(&m->arena, RESERVE, size), 0);
    m->arena.chunk = (size_t)64 << 10;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->xlock, NULL);
    env = release ? host_arena_release_env(&m->arena) : host_arena_env(&m->arena);
    env.ctx = m;
    if (fixed)
        env.grow = NULL;
    env.lock = mt_lock;
    env.unlock = mt_unlock;
    env.report = mt_report;
    env.cpu_count = cpus;
    env.cpu_enter = cpus != 0 ? mt_cpu_enter : NULL;
    env.cpu_exit = cpus != 0 ? mt_cpu_exit : NULL;
    m->h = heap_create(g_ops, m->arena.base, size, &env);
    assert_non_null(m->h);
}

static void mt_close(struct mt *m)
{
    assert_int_equal(m->pinned_waits, 0);
    assert_int_equal(m->bad_pins, 0);
    assert_int_equal(m->arena.release_errors, 0);
    assert_int_equal(m->arena.reclaim_errors, 0);
    host_arena_destroy(&m->arena);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->xlock);
}

/* True if h's backend has per-CPU caches (a property of the backend, not its name). */
static bool backend_caches(void)
{
    return g_ops->cpu_classes != NULL && !heap_hardening();
}

/* ---- the stress run ---- */

struct worker {
    struct mt *m;
    unsigned cpu;
    uint64_t rng;
    uint64_t allocs, frees; /* this thread's successful allocations and frees */
    const char *error;      /* first failed check (cmocka asserts only in the main thread) */
    struct block b[SLOTS];
};

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = heap_rand(rng) % 100;

    if (r < 60)
        return 1 + heap_rand(rng) % 128;
    if (r < 95)
        return 129 + heap_rand(rng) % (SMALL_MAX - 128);
    return SMALL_MAX + 1 + heap_rand(rng) % (16 << 10);
}

/* The part of a block the thread fills and verifies (all of it, up to 4 KiB). */
static size_t checked(size_t size)
{
    return size < 4096 ? size : 4096;
}

static bool block_ok(const struct block *b)
{
    return heap_verify(b->p, checked(b->size), b->seed);
}

static void worker_free(struct worker *w, struct block *b)
{
    if (!block_ok(b) && w->error == NULL)
        w->error = "a block's contents changed (overlap with another thread's block?)";
    heap_free(w->m->h, b->p);
    w->frees++;
    b->p = NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct heap *h = w->m->h;

    tls_cpu = w->cpu;
    for (int step = 0; step < g_steps; step++) {
        struct block *b = &w->b[heap_rand(&w->rng) % SLOTS];
        uint64_t r = heap_rand(&w->rng) % 100;

        if (b->p != NULL && r < 15) {
            /* Hand the block over: swap it with the table's slot (another thread's block or none). */
            struct block *x = &w->m->xchg[heap_rand(&w->rng) % EXCHANGE], t;
            pthread_mutex_lock(&w->m->xlock);
            t = *x;
            *x = *b;
            *b = t;
            pthread_mutex_unlock(&w->m->xlock);
            if (b->p != NULL && !block_ok(b) && w->error == NULL)
                w->error = "a handed-over block's contents changed";
        } else if (b->p != NULL) {
            worker_free(w, b);
        } else {
            size_t size = pick_size(&w->rng);
            unsigned char *p = heap_alloc(h, size);
            if (p == NULL) {
                if (w->error == NULL)
                    w->error = "allocation failed on a growing heap";
                continue;
            }
            w->allocs++;
            if (((uintptr_t)p % HEAP_MIN_ALIGN) != 0 && w->error == NULL)
                w->error = "misaligned block";
            if ((step & 63) == 0 && heap_usable_size(h, p) < size && w->error == NULL)
                w->error = "usable size below the request";
            b->p = p;
            b->size = size;
            b->seed = (uint32_t)heap_rand(&w->rng);
            heap_fill(p, checked(size), b->seed);
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (w->b[i].p != NULL)
            worker_free(w, &w->b[i]);
    return NULL;
}

/* threads workers on CPUs 0..threads-1, caches on or off; then exact stats and a clean check. */
static void stress(unsigned threads, bool caches)
{
    struct mt *m = calloc(1, sizeof(*m));
    struct worker *w = calloc(threads, sizeof(*w));
    pthread_t t[MAX_CPUS];
    uint64_t allocs = 0, frees = 0;
    struct heap_stats s;

    assert_non_null(m);
    assert_non_null(w);
    mt_open(m, caches ? threads : 0, INITIAL, false, false);
    for (unsigned i = 0; i < threads; i++) {
        w[i] = (struct worker){.m = m, .cpu = i, .rng = 1000 + i * 7919};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < threads; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (unsigned i = 0; i < threads; i++) {
        if (w[i].error != NULL)
            fail_msg("thread %u: %s", i, w[i].error);
        allocs += w[i].allocs;
        frees += w[i].frees;
    }
    /* Blocks left in the hand-over table are freed here, by the main thread (CPU 0's index). */
    tls_cpu = 0;
    for (int i = 0; i < EXCHANGE; i++)
        if (m->xchg[i].p != NULL) {
            assert_true(block_ok(&m->xchg[i]));
            heap_free(m->h, m->xchg[i].p);
            frees++;
        }
    s = heap_stats(m->h);
    assert_int_equal(s.total_allocs, allocs);
    assert_int_equal(s.total_frees, frees);
    assert_int_equal(s.live_allocs, 0);
    assert_int_equal(s.bytes_in_use, 0);
    assert_int_equal(s.failed_allocs, 0);
    assert_int_equal(s.errors_detected, 0);
    assert_true(s.peak_in_use > 0);
    assert_int_equal(heap_check(m->h), 0);
    mt_close(m);
    free(w);
    free(m);
}

static void test_stress_2_cached(void **state)
{
    (void)state;
    stress(2, true);
}

static void test_stress_4_cached(void **state)
{
    (void)state;
    stress(4, true);
}

static void test_stress_8_cached(void **state)
{
    (void)state;
    stress(8, true);
}

static void test_stress_2_uncached(void **state)
{
    (void)state;
    stress(2, false);
}

static void test_stress_8_uncached(void **state)
{
    (void)state;
    stress(8, false);
}

/* ---- single-threaded tests: the calling thread plays CPU i by setting tls_cpu ---- */

static struct mt *open_fixed(unsigned cpus, size_t size, bool release)
{
    struct mt *m = calloc(1, sizeof(*m));

    assert_non_null(m);
    mt_open(m, cpus, size, !release, release);
    return m;
}

static void close_clean(struct mt *m)
{
    struct heap_stats s = heap_stats(m->h);

    assert_int_equal(s.live_allocs, 0);
    assert_int_equal(s.bytes_in_use, 0);
    assert_int_equal(heap_check(m->h), 0);
    mt_close(m);
    free(m);
}

/* Exact stats and a clean heap_check() while the caches hold objects of many classes on every CPU
 * and blocks allocated on one CPU are still live on another. */
static void test_stats_and_check_with_loaded_caches(void **state)
{
    struct mt *m = open_fixed(4, (size_t)8 << 20, false);
    enum { N = 400 };
    void *p[N];
    size_t usable = 0;
    struct heap_stats s;

    (void)state;
    for (int i = 0; i < N; i++) {
        tls_cpu = (unsigned)i % 4;
        p[i] = heap_alloc(m->h, 1 + (size_t)(i * 37) % 3000);
        assert_non_null(p[i]);
        usable += heap_usable_size(m->h, p[i]);
    }
    /* Every other block freed on the CPU after the one that allocated it: remote frees. */
    for (int i = 0; i < N; i += 2) {
        tls_cpu = (unsigned)(i + 1) % 4;
        usable -= heap_usable_size(m->h, p[i]);
        heap_free(m->h, p[i]);
    }
    s = heap_stats(m->h);
    assert_int_equal(s.total_allocs, N);
    assert_int_equal(s.total_frees, N / 2);
    assert_int_equal(s.live_allocs, N / 2);
    assert_int_equal(s.bytes_in_use, usable);
    assert_true(s.peak_in_use >= s.bytes_in_use);
    assert_int_equal(heap_check(m->h), 0);
    for (int i = 1; i < N; i += 2) {
        tls_cpu = (unsigned)(i + 2) % 4;
        heap_free(m->h, p[i]);
    }
    close_clean(m);
}

/* A heap with caches samples peak_in_use; a block the locked path hands out (a large one, by alloc,
 * realloc or calloc) is in the sample: after it is allocated and freed, the peak holds it. (The
 * kernel's boot banner printed "peak 32" after its 8 KiB vector, when only cache refills and
 * heap_stats() sampled.) */
static void test_peak_includes_a_large_block(void **state)
{
    struct mt *m = open_fixed(2, (size_t)8 << 20, false);
    void *small, *large;
    size_t usable;

    (void)state;
    tls_cpu = 0;
    small = heap_alloc(m->h, 32); /* through the cache */
    assert_non_null(small);
    large = heap_alloc(m->h, (size_t)64 << 10); /* through the lock */
    assert_non_null(large);
    usable = heap_usable_size(m->h, large);
    heap_free(m->h, large);
    assert_true(heap_stats(m->h).peak_in_use >= usable);
    /* The same through realloc (how a growing vector gets its memory) and calloc. */
    large = heap_realloc(m->h, heap_alloc(m->h, 64), (size_t)256 << 10);
    assert_non_null(large);
    usable = heap_usable_size(m->h, large);
    heap_free(m->h, large);
    assert_true(heap_stats(m->h).peak_in_use >= usable);
    large = heap_calloc(m->h, 1, (size_t)1 << 20);
    assert_non_null(large);
    usable = heap_usable_size(m->h, large);
    heap_free(m->h, large);
    assert_true(heap_stats(m->h).peak_in_use >= usable);
    heap_free(m->h, small);
    close_clean(m);
}

/* heap_check() finds a cached object that is also on its slab's free list (handed out twice). */
static void test_check_catches_a_bad_cache_entry(void **state)
{
    struct mt *m;
    void *a;

    (void)state;
    m = open_fixed(2, (size_t)1 << 20, false);
    if (!backend_caches()) {
        /* Nothing to corrupt: such heaps get no caches, every free goes straight to the backend. */
        assert_null(m->h->cpu);
        close_clean(m);
        return;
    }
    tls_cpu = 0;
    a = heap_alloc(m->h, 48);
    assert_non_null(a);
    heap_free(m->h, a); /* into CPU 0's cache */
    assert_int_equal(heap_check(m->h), 0);
    /* Push a's slot into CPU 1's cache as well, behind the library's back: the same object twice. */
    {
        struct heap_cpus *cs = m->h->cpu;
        struct heap_cpu *c1 = (struct heap_cpu *)(void *)(cs->first + cs->stride);
        unsigned cls = heap_cpu_class_of(cs, a);
        assert_true(heap_cpu_push(c1, cls, a));
        assert_true(heap_check(m->h) >= 1);
        c1->mag[cls].count--; /* undo, so the heap can be checked clean */
    }
    assert_int_equal(heap_check(m->h), 0);
    close_clean(m);
}

/* A small alloc/free loop on one CPU: with per-CPU caches no heap lock after the first refill,
 * without them two per pair. */
static void test_one_cpu_loop_takes_no_heap_lock(void **state)
{
    struct mt *m = open_fixed(2, (size_t)1 << 20, false);
    unsigned long before;
    enum { PAIRS = 1000 };

    (void)state;
    tls_cpu = 1;
    for (int round = 0; round < 2; round++) { /* round 0 refills each class once */
        before = m->locks;
        for (int i = 0; i < PAIRS; i++) {
            void *p = heap_alloc(m->h, 8 + (size_t)i % 57);
            assert_non_null(p);
            heap_free(m->h, p);
        }
    }
    if (backend_caches())
        assert_int_equal(m->locks - before, 0);
    else
        assert_int_equal(m->locks - before, 2 * PAIRS);
    close_clean(m);
}

/* Fills a fixed heap with size-byte blocks on CPU cpu until it fails; returns how many. */
static size_t fill(struct mt *m, unsigned cpu, size_t size, void **p, size_t max)
{
    size_t n = 0;

    tls_cpu = cpu;
    while (n < max && (p[n] = heap_alloc(m->h, size)) != NULL)
        n++;
    assert_true(n < max);
    return n;
}

/* Frees p[0..n) on CPU cpu so that its cache keeps objects of as many slabs as it can: all but every
 * stride-th block first, those last (the newest stay cached). */
static void free_spread(struct mt *m, unsigned cpu, void **p, size_t n, size_t stride)
{
    tls_cpu = cpu;
    for (size_t i = 0; i < n; i++)
        if (i % stride != 0)
            heap_free(m->h, p[i]);
    for (size_t i = 0; i < n; i += stride)
        heap_free(m->h, p[i]);
}

/* Memory freed remotely is reused, and the caches drain before an allocation fails: a fixed 2 MiB
 * heap filled with 64-byte blocks on CPU 0 and freed on CPU 1 fills again to the same count on CPU
 * 0; freed on CPU 1 again with CPU 1's cache holding one object of each of many slabs, a request for
 * half the heap on CPU 2 succeeds. */
static void test_remote_frees_are_reused_and_drained_before_failure(void **state)
{
    const size_t size = (size_t)2 << 20, max = size / 64 + 1;
    struct mt *m = open_fixed(3, size, false);
    void **p = calloc(max, sizeof(void *));
    size_t n1, n2;
    void *big;

    (void)state;
    assert_non_null(p);
    if (g_ops->arena) {
        /* bump reuses memory only at a reset (everything freed): what this test can ask of it. */
        n1 = fill(m, 0, 64, p, max);
        free_spread(m, 1, p, n1, 1);
        n2 = fill(m, 0, 64, p, max);
        assert_int_equal(n2, n1);
        free_spread(m, 1, p, n2, 1);
        free(p);
        close_clean(m);
        return;
    }
    n1 = fill(m, 0, 64, p, max);
    assert_true(n1 > 1000);
    free_spread(m, 1, p, n1, 1);
    n2 = fill(m, 0, 64, p, max);
    assert_int_equal(n2, n1);
    /* 16 KiB slabs hold 255 objects of 64 bytes: a stride of 200 leaves CPU 1's cache holding one
     * object of nearly every slab until the drain. */
    free_spread(m, 1, p, n2, 200);
    tls_cpu = 2;
    big = heap_alloc(m->h, size / 2);
    assert_non_null(big);
    heap_free(m->h, big);
    assert_int_equal(heap_stats(m->h).failed_allocs, 2); /* the two fills' last requests */
    free(p);
    close_clean(m);
}

/* Giving memory back drains the caches: of an 8 MiB burst of 64-byte blocks allocated on CPU 0,
 * one block of each of 16 slabs spread over the burst is freed on CPU 0 (its cache keeps them), the
 * rest on CPU 1. Those frees give pages back, which drains CPU 0's cache too, so its 16 objects pin
 * no slab: the heap ends within the documented slack of its initial size. (Without the drain each
 * pinned slab keeps its free neighbours' trim threshold mapped: about 4 MiB more.) */
static void test_release_drains_the_caches(void **state)
{
    struct mt *m = open_fixed(2, INITIAL, true);
    enum { N = 8 << 20 >> 6, SPREAD = N / 16 };
    void **p = calloc(N, sizeof(void *));
    struct heap_stats s;

    (void)state;
    assert_non_null(p);
    tls_cpu = 0;
    for (size_t i = 0; i < N; i++) {
        p[i] = heap_alloc(m->h, 64);
        assert_non_null(p[i]);
    }
    for (size_t i = SPREAD / 2; i < N; i += SPREAD)
        heap_free(m->h, p[i]);
    tls_cpu = 1;
    for (size_t i = 0; i < N; i++)
        if ((i + SPREAD / 2) % SPREAD != 0)
            heap_free(m->h, p[i]);
    s = heap_stats(m->h);
    assert_true(s.pages_released > 0);
    assert_true(s.bytes_mapped <= INITIAL + 2 * HEAP_TRIM_THRESHOLD + ((size_t)1 << 20));
    free(p);
    close_clean(m);
}

/* A CPU index beyond the caches' takes the locked path and stays correct. */
static void test_cpu_index_out_of_range_takes_the_lock(void **state)
{
    struct mt *m = open_fixed(2, (size_t)1 << 20, false);
    unsigned long before;
    void *p;

    (void)state;
    tls_cpu = 5; /* cpu_count is 2 */
    before = m->locks;
    p = heap_alloc(m->h, 32);
    assert_non_null(p);
    heap_free(m->h, p);
    assert_int_equal(m->locks - before, 2);
    assert_int_equal(heap_stats(m->h).total_allocs, 1);
    close_clean(m);
}

#if KHEAP_HARDENING
/* Hardened mode: a block freed on CPU 0 and again on CPU 1 is reported as a double free. */
static void test_double_free_through_two_cpus_is_caught(void **state)
{
    struct mt *m = open_fixed(2, (size_t)1 << 20, false);
    void *p, *q;

    (void)state;
    tls_cpu = 0;
    p = heap_alloc(m->h, 40);
    q = heap_alloc(m->h, 40); /* keeps the slab alive */
    assert_non_null(p);
    heap_free(m->h, p);
    tls_cpu = 1;
    heap_free(m->h, p);
    assert_int_equal(m->reports, 1);
    assert_int_equal(m->last_kind, HEAP_ERR_DOUBLE_FREE);
    assert_int_equal(heap_stats(m->h).errors_detected, 1);
    heap_free(m->h, q);
    assert_int_equal(m->reports, 1);
    close_clean(m);
}
#endif

/* heap_walk() callback: sums the live objects of the slabs of object size 64 (ctx: size_t). */
static bool count_64(void *ctx, const struct heap_walk_entry *e)
{
    if (e->state == HEAP_WALK_SLAB && e->object_size == 64)
        *(size_t *)ctx += e->objects;
    return true;
}

/* A heap without a lock (the host default) of a backend with a step (fixed_size_block's, in plain
 * mode) gets no cache at all: it is direct and its entry points call the step, which serves it from
 * the slabs' own free lists. A heap of a backend with classes but no step would get CPU 0's cache
 * alone (solo); hardened heaps get neither. Either way a freed small block is handed out again
 * first, the stats are exact (the peak included), heap_walk() counts only the live block, and
 * heap_check() passes. */
static void heap_without_a_lock(const struct heap_ops *ops)
{
    struct host_arena arena;
    struct heap_env env;
    struct heap *h;
    struct heap_stats s;
    size_t live64 = 0, peak;
    void *a, *b;

    assert_int_equal(host_arena_init(&arena, RESERVE, (size_t)1 << 20), 0);
    env = host_arena_env(&arena);
    h = heap_create(ops, arena.base, (size_t)1 << 20, &env);
    assert_non_null(h);
    if (ops->cpu_classes == NULL) { /* bump, linked_list: no classes, no cache */
        assert_null(h->cpu);
        assert_true(h->direct);
        host_arena_destroy(&arena);
        return;
    }
    if (!backend_caches() || ops->step_alloc != NULL) {
        assert_null(h->cpu);
        assert_true(h->direct);
        assert_true(heap_hardening() || h->direct_alloc == ops->step_alloc);
    } else {
        assert_non_null(h->solo);
        assert_true(h->solo == h->cpu && h->cpu->count == 1 && !h->direct);
    }
    a = heap_alloc(h, 40);
    b = heap_alloc(h, 40);
    assert_non_null(a);
    assert_non_null(b);
    heap_free(h, a);
    s = heap_stats(h);
    assert_int_equal(s.total_allocs, 2);
    assert_int_equal(s.total_frees, 1);
    assert_int_equal(s.bytes_in_use, heap_usable_size(h, b));
    assert_int_equal(s.peak_in_use, 2 * heap_usable_size(h, b)); /* exact, not sampled */
    peak = s.peak_in_use;
    assert_int_equal(heap_check(h), 0);
    if (!heap_hardening())
        assert_ptr_equal(heap_alloc(h, 33), a); /* the freed block comes back first */
    else
        a = heap_alloc(h, 33); /* hardened: the quarantine holds a back */
    heap_free(h, a);
    assert_int_equal(heap_check(h), 0);
    heap_walk(h, count_64, &live64); /* only b is live (hardened: a larger class, and the quarantine) */
    if (!heap_hardening())
        assert_int_equal(live64, 1);
    heap_free(h, b);
    s = heap_stats(h);
    assert_int_equal(s.live_allocs, 0);
    assert_int_equal(s.bytes_in_use, 0);
    assert_int_equal(s.peak_in_use, peak);
    assert_int_equal(heap_check(h), 0);
    host_arena_destroy(&arena);
}

static void test_heap_without_a_lock(void **state)
{
    (void)state;
    heap_without_a_lock(g_ops);
}

/* The backend's ops without its step (a static copy, step_alloc and step_free NULL): what a backend
 * with size classes and no step is, so that a heap without a lock gets the solo cache (heap.c, "The
 * solo step") and the tests below run it. The same backend as g_ops otherwise. */
static const struct heap_ops *ops_without_step(void)
{
    static struct heap_ops nostep;

    nostep = *g_ops;
    nostep.step_alloc = NULL;
    nostep.step_free = NULL;
    return &nostep;
}

static void test_heap_without_a_lock_or_a_step(void **state)
{
    (void)state;
    heap_without_a_lock(ops_without_step());
}

/* heap_walk() callback: sums the live objects of all slabs (ctx: size_t). */
static bool count_slab_objects(void *ctx, const struct heap_walk_entry *e)
{
    if (e->state == HEAP_WALK_SLAB)
        *(size_t *)ctx += e->objects;
    return true;
}

/* heap_walk() callback: sums the bytes of the USED entries (ctx: size_t). */
static bool count_used_bytes(void *ctx, const struct heap_walk_entry *e)
{
    if (e->state == HEAP_WALK_USED)
        *(size_t *)ctx += e->size;
    return true;
}

/* Sorts v[0..n) (insertion sort: small n) and returns true if no pointer appears twice. */
static bool all_distinct(void **v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        void *x = v[i];
        size_t j = i;
        for (; j > 0 && (uintptr_t)v[j - 1] > (uintptr_t)x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    for (size_t i = 1; i < n; i++)
        if (v[i] == v[i - 1])
            return false;
    return true;
}

#define BURST 600 /* objects per burst: 24 slabs of 640-byte objects, more than the stash holds */

/* Bursts of one size, many slabs long, allocated and freed LIFO or at random, for three classes, on
 * a heap without a lock (fixed_size_block's step: the slabs' free lists, carving, full slabs left at
 * the head, slabs rejoining the partial list and empty slabs kept in the stash; a solo cache's
 * refills and flushes for a backend without a step): every block handed out is distinct and keeps
 * its contents while live (a list move or a stashed slab that handed out an object twice is
 * caught), stats stay exact and heap_check() passes at the peak and after the frees, no slab counts
 * a live object afterwards (a move that lost an object leaves it counted in its slab), halfway through
 * the random frees every live object is in a listed slab (a move that dropped a slab), and what the
 * heap holds empty does not grow from round to round (a lost slab would). */
static void bursts_keep_every_object(const struct heap_ops *ops)
{
    static const size_t sizes[] = {24, 136, 640};
    static void *p[BURST], *sorted[BURST];
    struct host_arena arena;
    struct heap_env env;
    struct heap *h;
    uint64_t rng = 7;
    uint64_t allocs = 0;
    size_t used, settled = 0;

    assert_int_equal(host_arena_init(&arena, RESERVE, (size_t)1 << 20), 0);
    env = host_arena_env(&arena);
    h = heap_create(ops, arena.base, (size_t)1 << 20, &env);
    assert_non_null(h);
    for (int round = 0; round < 12; round++) {
        size_t size = sizes[round % 3];
        struct heap_stats s;
        size_t live = 0;

        for (size_t i = 0; i < BURST; i++) {
            p[i] = heap_alloc(h, size);
            assert_non_null(p[i]);
            heap_fill(p[i], size, (uint32_t)(i * 31 + (size_t)round));
            allocs++;
        }
        memcpy(sorted, p, sizeof(p));
        assert_true(all_distinct(sorted, BURST));
        for (size_t i = 0; i < BURST; i++)
            assert_true(heap_verify(p[i], size, (uint32_t)(i * 31 + (size_t)round)));
        s = heap_stats(h);
        assert_int_equal(s.live_allocs, BURST);
        assert_int_equal(s.total_allocs, allocs);
        assert_int_equal(s.bytes_in_use, BURST * heap_usable_size(h, p[0]));
        assert_int_equal(heap_check(h), 0);
        if (round % 2 == 0) {
            for (size_t i = BURST; i-- > 0;) /* LIFO */
                heap_free(h, p[i]);
        } else {
            for (size_t i = BURST - 1; i > 0; i--) { /* random order */
                size_t j = (size_t)(heap_rand(&rng) % (i + 1));
                void *t = p[i];
                p[i] = p[j];
                p[j] = t;
            }
            for (size_t i = 0; i < BURST; i++) {
                heap_free(h, p[i]);
                if (i == BURST / 2 && backend_caches()) {
                    /* Halfway, frees have sent full slabs back to the partial list: every live object
                     * must be in a slab the lists reach (a move that dropped a slab loses its objects). */
                    heap_walk(h, count_slab_objects, &live);
                    assert_int_equal(live, BURST - 1 - i);
                    assert_int_equal(heap_check(h), 0);
                    live = 0;
                }
            }
        }
        s = heap_stats(h);
        assert_int_equal(s.live_allocs, 0);
        assert_int_equal(s.bytes_in_use, 0);
        assert_int_equal(s.total_frees, allocs);
        assert_int_equal(heap_check(h), 0);
        heap_walk(h, count_slab_objects, &live); /* a solo cache is drained first */
        assert_int_equal(live, 0);
        /* What the heap holds with nothing live stops growing once each burst ran twice: a slab that
         * a list move lost (never returned, never reused) would add to it round after round. */
        used = 0;
        heap_walk(h, count_used_bytes, &used);
        if (round == 5)
            settled = used;
        else if (round > 5 && ops->cpu_classes != NULL) /* slabs; bump's spans never shrink */
            assert_true(used <= settled);
    }
    host_arena_destroy(&arena);
}

static void test_bursts_keep_every_object(void **state)
{
    (void)state;
    bursts_keep_every_object(g_ops);
}

static void test_bursts_keep_every_object_without_a_step(void **state)
{
    (void)state;
    bursts_keep_every_object(ops_without_step());
}

int main(int argc, char **argv)
{
    static const struct kheap_test tests[] = {
        /* The threaded runs first: "threads" runs only these five. */
        KHEAP_TEST(test_stress_2_cached),
        KHEAP_TEST(test_stress_4_cached),
        KHEAP_TEST(test_stress_8_cached),
        KHEAP_TEST(test_stress_2_uncached),
        KHEAP_TEST(test_stress_8_uncached),
        KHEAP_TEST(test_stats_and_check_with_loaded_caches),
        KHEAP_TEST(test_peak_includes_a_large_block),
        KHEAP_TEST(test_check_catches_a_bad_cache_entry),
        KHEAP_TEST(test_one_cpu_loop_takes_no_heap_lock),
        KHEAP_TEST(test_remote_frees_are_reused_and_drained_before_failure),
        KHEAP_TEST(test_release_drains_the_caches),
        KHEAP_TEST(test_cpu_index_out_of_range_takes_the_lock),
        KHEAP_TEST(test_heap_without_a_lock),
        KHEAP_TEST(test_heap_without_a_lock_or_a_step),
        KHEAP_TEST(test_bursts_keep_every_object),
        KHEAP_TEST(test_bursts_keep_every_object_without_a_step),
#if KHEAP_HARDENING
        KHEAP_TEST(test_double_free_through_two_cpus_is_caught),
#endif
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);

    /* "test_cpu <backend> threads": only the threaded runs, shorter (the ThreadSanitizer build; the
     * single-threaded tests have nothing for it to find and run under ASan). */
    if (argc > 2 && strcmp(argv[2], "threads") == 0) {
        n = 5;
        g_steps = STEPS / 3;
    }
    return kheap_cmocka_main(argc, argv, heap_hardening() ? "_hardened" : "", tests, n, NULL, NULL, &g_ops);
}
