/*
 * test_heap.c - cmocka unit tests for the heap front end and one backend.
 *
 * Usage: test_heap <backend>. The same generic list runs for every backend, followed by the
 * backend's structure tests; test names are "<backend>/<test>". After every test the teardown checks
 * heap_check() == 0 and that no block leaked (xv6's countfree habit).
 */
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
#include "ll_block.h" /* LL_HDR, LL_MIN_BLOCK: linked_list's aligned placement, recomputed below */

#define RESERVE ((size_t)512 << 20)
#define INITIAL ((size_t)256 << 10)

static const struct heap_ops *g_ops;

/* Per-block overhead the structure tests compute with: linked_list's header, plus in hardened mode
 * its bigger header and the canary/trailer tail (docs/hardening.md). */
#if KHEAP_HARDENING
#define LL_BLOCK_OVERHEAD (32 + 24)
#define FSB_LL_OVERHEAD   (32 + 24)
#else
#define LL_BLOCK_OVERHEAD 16
#define FSB_LL_OVERHEAD   16
#endif

struct fixture {
    struct host_arena arena;
    struct heap *h;
    unsigned locks, unlocks, depth, grow_depth_bad;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct heap_env env;

    assert_non_null(f);
    assert_int_equal(host_arena_init(&f->arena, RESERVE, INITIAL), 0);
    env = host_arena_env(&f->arena);
    env.quarantine_blocks = HEAP_QUARANTINE_OFF; /* these tests pin down where each backend reuses memory */
    f->h = heap_create(g_ops, f->arena.base, INITIAL, &env);
    assert_non_null(f->h);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct heap_stats s = heap_stats(f->h);

    assert_int_equal(heap_check(f->h), 0);
    assert_int_equal(s.live_allocs, 0);
    assert_int_equal(s.bytes_in_use, 0);
    assert_true(s.total_allocs == s.total_frees);
    host_arena_destroy(&f->arena);
    free(f);
    return 0;
}

/* Replaces the fixture's heap by a fixed-size heap of size bytes without growth. */
static struct heap *fixed_heap(struct fixture *f, size_t size)
{
    void *start;
    size_t len;

    if (size > f->arena.committed)
        assert_int_equal(host_arena_grow(&f->arena, size - f->arena.committed, &start, &len), 0);
    f->h = heap_create(g_ops, f->arena.base, size, NULL);
    assert_non_null(f->h);
    return f->h;
}

/* ---- generic tests ---- */

static void test_create_too_small(void **state)
{
    struct fixture *f = *state;
    assert_null(heap_create(g_ops, f->arena.base, 16, NULL));
    assert_null(heap_create(NULL, f->arena.base, INITIAL, NULL));
    assert_null(heap_create(g_ops, NULL, INITIAL, NULL));
    assert_string_equal(heap_backend_name(f->h), g_ops->name);
    assert_ptr_equal(heap_backend_find(g_ops->name), g_ops);
    assert_null(heap_backend_find("no_such_backend"));
}

static void test_alignment(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {1, 7, 16, 17, 100, 2048, 3000};

    for (size_t align = 1; align <= 8192; align *= 2) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            unsigned char *p = heap_alloc_aligned(f->h, sizes[i], align);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % (align < 16 ? 16 : align), 0);
            assert_true(heap_usable_size(f->h, p) >= sizes[i]);
            heap_fill(p, sizes[i], (unsigned char)i);
            assert_true(host_arena_contains(&f->arena, p, sizes[i]));
            assert_int_equal(heap_check(f->h), 0);
            heap_free(f->h, p);
        }
    }
    for (size_t size = 1; size < 300; size++) {
        void *p = heap_alloc(f->h, size);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        heap_free(f->h, p);
    }
}

/* Every power-of-two alignment the front end accepts, with sizes up to what it lets through: each
 * request fails cleanly (NULL, counted) or returns a usable block aligned as asked (docs/edges.md). */
static void test_huge_alignments(void **state)
{
    struct fixture *f = *state;

    for (unsigned k = 4; k < 63; k++) {
        size_t align = (size_t)1 << k;
        size_t sizes[] = {1, 4096, HEAP_MAX_REQUEST - align - 64};
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            uint64_t failed = heap_stats(f->h).failed_allocs;
            unsigned char *p;
            if (align >= HEAP_MAX_REQUEST || sizes[i] > HEAP_MAX_REQUEST - align)
                continue;
            p = heap_alloc_aligned(f->h, sizes[i], align);
            if (p == NULL) {
                assert_int_equal(heap_stats(f->h).failed_allocs, failed + 1);
            } else {
                assert_int_equal((uintptr_t)p % align, 0);
                assert_true(host_arena_contains(&f->arena, p, sizes[i]));
                heap_free(f->h, p);
            }
            assert_int_equal(heap_check(f->h), 0);
        }
    }
}

/* The address arithmetic of heap_backend.h at the top of the address space, where the kernel heap's
 * neighbourhood lies: padding is exact where `x + align` wraps, ranges are shortened below the last
 * 16 bytes, and a heap placed in the last bytes below 2^64 is refused before anything is written
 * (the memory there is not even mapped on the host). */
static void test_top_of_address_space(void **state)
{
    const uintptr_t top = UINTPTR_MAX;
    size_t len;

    (void)state;
    assert_int_equal(heap_pad_to(top - 4095, 4096), 0);
    assert_int_equal(heap_pad_to(top - 4095, 1ull << 61), (1ull << 61) - (top - 4095) % (1ull << 61));
    assert_true(heap_pad_to(top - 15, (uintptr_t)1 << 62) < ((uintptr_t)1 << 62));
    for (unsigned k = 0; k < 63; k++) {
        uintptr_t a = (uintptr_t)1 << k, x = top - 4096 * 3 + 16;
        assert_int_equal((x + heap_pad_to(x, a)) % a, 0);
    }
    len = 100;
    heap_clamp_range((void *)(top - 1000), &len);
    assert_int_equal(len, 100);
    len = 1000;
    heap_clamp_range((void *)(top - 999), &len);
    assert_int_equal(len, 1000 - 16);
    len = SIZE_MAX;
    heap_clamp_range((void *)(top - 4095), &len);
    assert_int_equal(len, 4096 - 16);
    len = 64;
    heap_clamp_range((void *)(top - 7), &len);
    assert_int_equal(len, 0);
    /* Too small once shortened: refused without a write (a write would fault here). */
    assert_null(heap_create(g_ops, (void *)(top - 100), 1000, NULL));
    assert_null(heap_create(g_ops, (void *)(top - 7), SIZE_MAX, NULL));
}

static void test_size_zero(void **state)
{
    struct fixture *f = *state;
    void *a = heap_alloc(f->h, 0);
    void *b = heap_alloc(f->h, 0);
    void *c = heap_alloc_aligned(f->h, 0, 64);
    void *d = heap_calloc(f->h, 0, 8);

    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(d);
    assert_ptr_not_equal(a, b);
    assert_int_equal((uintptr_t)c % 64, 0);
    assert_true(heap_usable_size(f->h, a) >= 1);
    assert_int_equal(heap_stats(f->h).failed_allocs, 0);
    assert_int_equal(heap_stats(f->h).live_allocs, 4);
    a = heap_realloc(f->h, a, 0); /* shrinks to a minimum block, does not free */
    assert_non_null(a);
    heap_free(f->h, a);
    heap_free(f->h, b);
    heap_free(f->h, c);
    heap_free(f->h, d);
}

static void test_overflow_sizes(void **state)
{
    struct fixture *f = *state;
    static const size_t bad[] = {SIZE_MAX,     SIZE_MAX - 4096,  SIZE_MAX - 15,       SIZE_MAX / 2 + 1,
                                 SIZE_MAX / 2, HEAP_MAX_REQUEST, HEAP_MAX_REQUEST - 8};
    uint64_t failed = 0;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(heap_alloc(f->h, bad[i]));
        assert_null(heap_alloc_aligned(f->h, bad[i], 4096));
        assert_null(heap_calloc(f->h, 1, bad[i]));
        failed += 3;
    }
    assert_null(heap_alloc_aligned(f->h, 64, 0));
    assert_null(heap_alloc_aligned(f->h, 64, 48));
    assert_null(heap_alloc_aligned(f->h, 64, 3));
    assert_null(heap_alloc_aligned(f->h, 16, SIZE_MAX / 2 + 1)); /* power of two, but too big */
    failed += 4;
    assert_int_equal(heap_stats(f->h).failed_allocs, failed);
    assert_int_equal(heap_stats(f->h).live_allocs, 0);
    /* The arena must not have been asked for absurd sizes: nothing committed beyond the start. */
    assert_int_equal(f->arena.committed, INITIAL);
}

static void test_calloc_zero_and_overflow(void **state)
{
    struct fixture *f = *state;
    unsigned char *p = heap_alloc(f->h, 1000);

    assert_non_null(p);
    memset(p, 0xAA, 1000);
    heap_free(f->h, p);
    assert_null(heap_calloc(f->h, SIZE_MAX / 2, 3));
    assert_null(heap_calloc(f->h, SIZE_MAX, SIZE_MAX));
    assert_null(heap_calloc(f->h, (size_t)1 << 33, (size_t)1 << 31));
    assert_int_equal(heap_stats(f->h).failed_allocs, 3);
    p = heap_calloc(f->h, 10, 100);
    assert_non_null(p);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(p[i], 0);
    heap_free(f->h, p);
}

static void test_realloc_semantics(void **state)
{
    struct fixture *f = *state;
    unsigned char *p = heap_realloc(f->h, NULL, 50), *q;

    assert_non_null(p);
    heap_fill(p, 50, 3);
    p = heap_realloc(f->h, p, 10);
    assert_non_null(p);
    assert_true(heap_verify(p, 10, 3));
    p = heap_realloc(f->h, p, 5000);
    assert_non_null(p);
    assert_true(heap_verify(p, 10, 3));
    heap_fill(p, 5000, 9);
    q = heap_realloc(f->h, p, SIZE_MAX - 100);
    assert_null(q);
    assert_true(heap_verify(p, 5000, 9));
    q = heap_realloc(f->h, p, 100000);
    assert_non_null(q);
    assert_true(heap_verify(q, 5000, 9));
    heap_free(f->h, q);

    /* Failure through out-of-memory keeps the old block. */
    fixed_heap(f, 64 << 10);
    p = heap_alloc(f->h, 1000);
    assert_non_null(p);
    heap_fill(p, 1000, 5);
    q = heap_realloc(f->h, p, 1 << 20);
    assert_null(q);
    assert_true(heap_verify(p, 1000, 5));
    assert_int_equal(heap_stats(f->h).failed_allocs, 1);
    assert_int_equal(heap_stats(f->h).live_allocs, 1);
    heap_free(f->h, p);
}

static void test_oom_recovery(void **state)
{
    struct fixture *f = *state;
    enum { MAX = 4096 };
    void **blocks = calloc(MAX, sizeof(void *));
    size_t n = 0, again = 0;

    fixed_heap(f, 128 << 10);
    while (n < MAX && (blocks[n] = heap_alloc(f->h, 1000)) != NULL)
        n++;
    assert_true(n > 10 && n < MAX);
    assert_int_equal(heap_stats(f->h).failed_allocs, 1);
    assert_int_equal(heap_check(f->h), 0);
    for (size_t i = 0; i < n; i++)
        heap_free(f->h, blocks[i]);
    while (again < MAX && (blocks[again] = heap_alloc(f->h, 1000)) != NULL)
        again++;
    assert_true(again >= n);
    for (size_t i = 0; i < again; i++)
        heap_free(f->h, blocks[i]);
    free(blocks);
}

static void test_grow(void **state)
{
    struct fixture *f = *state;
    unsigned char *big = heap_alloc(f->h, (size_t)64 << 20);
    void *small[2000];

    assert_non_null(big);
    assert_true(f->arena.grow_calls >= 1);
    big[0] = 1;
    big[((size_t)64 << 20) - 1] = 2;
    assert_true(host_arena_contains(&f->arena, big, (size_t)64 << 20));
    assert_int_equal(heap_stats(f->h).bytes_mapped, f->arena.committed);
    for (int i = 0; i < 2000; i++) {
        small[i] = heap_alloc(f->h, 300);
        assert_non_null(small[i]);
    }
    assert_int_equal(heap_check(f->h), 0);
    heap_free(f->h, big);
    for (int i = 0; i < 2000; i++)
        heap_free(f->h, small[i]);
    assert_null(heap_alloc(f->h, (size_t)1 << 40)); /* beyond the reservation: grow refuses */
    assert_true(f->arena.failed_grows >= 1);
}

/* host_arena_rewind (kheap-bench's warm arenas): the arena as host_arena_init left it -- counters
 * reset, INITIAL bytes committed -- with the pages it had committed still mapped and holding what
 * they held (a fresh mapping would read 0), and a new heap works on it. A rewind past the
 * reservation is refused and changes nothing. */
static void test_arena_rewind(void **state)
{
    struct fixture *f = *state;
    unsigned char *big = heap_alloc(f->h, (size_t)1 << 20), *last;
    struct heap_env env = host_arena_env(&f->arena);
    size_t committed;
    void *start;
    size_t len;

    assert_non_null(big);
    committed = f->arena.committed;
    last = f->arena.base + committed - 1;
    *last = 0x5a;
    heap_free(f->h, big);
    assert_int_equal(host_arena_rewind(&f->arena, f->arena.reserved + 4096), -1);
    assert_int_equal(f->arena.committed, committed);
    assert_int_equal(host_arena_rewind(&f->arena, INITIAL), 0);
    assert_int_equal(f->arena.committed, INITIAL);
    assert_int_equal(f->arena.grow_calls, 0);
    assert_int_equal(f->arena.limit, f->arena.reserved);
    assert_int_equal(host_arena_grow(&f->arena, committed - INITIAL, &start, &len), 0);
    assert_ptr_equal(start, f->arena.base + INITIAL);
    assert_int_equal(*last, 0x5a);
    assert_int_equal(host_arena_rewind(&f->arena, INITIAL), 0);
    env.quarantine_blocks = HEAP_QUARANTINE_OFF;
    f->h = heap_create(g_ops, f->arena.base, INITIAL, &env);
    assert_non_null(f->h);
    big = heap_alloc(f->h, (size_t)1 << 20);
    assert_non_null(big);
    assert_int_equal(heap_stats(f->h).bytes_mapped, f->arena.committed);
    heap_free(f->h, big);
}

static void test_grow_nonadjacent(void **state)
{
    struct fixture *f = *state;
    void *blocks[600];

    f->arena.gap_every = 2;
    for (int i = 0; i < 600; i++) {
        blocks[i] = heap_alloc(f->h, (size_t)(i % 7 == 0 ? 40000 : 1500));
        assert_non_null(blocks[i]);
        assert_true(host_arena_contains(&f->arena, blocks[i], 1500));
    }
    assert_true(f->arena.grow_calls >= 2);
    assert_int_equal(heap_check(f->h), 0);
    for (int i = 0; i < 600; i += 2)
        heap_free(f->h, blocks[i]);
    assert_int_equal(heap_check(f->h), 0);
    for (int i = 1; i < 600; i += 2)
        heap_free(f->h, blocks[i]);
}

static void test_stats_balance(void **state)
{
    struct fixture *f = *state;
    void *p[64];
    size_t sum = 0;

    for (int i = 0; i < 64; i++) {
        p[i] = heap_alloc(f->h, (size_t)(i * 37 + 1));
        assert_non_null(p[i]);
        sum += heap_usable_size(f->h, p[i]);
    }
    struct heap_stats s = heap_stats(f->h);
    assert_int_equal(s.bytes_in_use, sum);
    assert_int_equal(s.live_allocs, 64);
    assert_int_equal(s.total_allocs, 64);
    assert_true(s.peak_in_use == sum);
    p[0] = heap_realloc(f->h, p[0], 10000);
    assert_non_null(p[0]);
    for (int i = 0; i < 64; i++)
        heap_free(f->h, p[i]);
    s = heap_stats(f->h);
    assert_int_equal(s.bytes_in_use, 0);
    assert_true(s.peak_in_use >= sum);
    heap_free(f->h, NULL); /* no-op, not counted */
    assert_int_equal(heap_stats(f->h).total_frees, s.total_frees);
    assert_int_equal(heap_usable_size(f->h, NULL), 0);
}

static unsigned long count_lock(void *ctx)
{
    struct fixture *f = ctx;
    f->locks++;
    f->depth++;
    return 0x1234;
}

static void count_unlock(void *ctx, unsigned long saved)
{
    struct fixture *f = ctx;
    assert_int_equal(saved, 0x1234);
    f->unlocks++;
    f->depth--;
}

static int count_grow(void *ctx, size_t min_bytes, void **start, size_t *len)
{
    struct fixture *f = ctx;
    if (f->depth != 1)
        f->grow_depth_bad++;
    return host_arena_grow(&f->arena, min_bytes, start, len);
}

static void test_lock(void **state)
{
    struct fixture *f = *state;
    struct heap_env env = {.ctx = f, .lock = count_lock, .unlock = count_unlock, .grow = count_grow};
    void *p;

    f->h = heap_create(g_ops, f->arena.base, INITIAL, &env);
    assert_non_null(f->h);
    p = heap_alloc(f->h, 1 << 20); /* needs growth */
    assert_non_null(p);
    p = heap_realloc(f->h, p, 2 << 20);
    assert_non_null(p);
    heap_free(f->h, heap_calloc(f->h, 3, 3));
    heap_free(f->h, heap_alloc_aligned(f->h, 3, 256));
    heap_free(f->h, p);
    (void)heap_stats(f->h);
    assert_true(f->locks >= 8);
    assert_int_equal(f->locks, f->unlocks);
    assert_int_equal(f->depth, 0);
    assert_int_equal(f->grow_depth_bad, 0);
    assert_true(f->arena.grow_calls >= 1);
}

/* ---- backend-specific structure tests ---- */

static void test_bump_rollback_reset(void **state)
{
    struct fixture *f = *state;
    char *a = heap_alloc(f->h, 100), *b = heap_alloc(f->h, 100), *c, *d;

    assert_true(b > a);
    heap_free(f->h, b); /* most recent: rolls back */
    c = heap_alloc(f->h, 100);
    assert_ptr_equal(c, b);
    d = heap_realloc(f->h, c, 5000); /* most recent: grows in place */
    assert_ptr_equal(d, c);
    d = heap_realloc(f->h, d, 50); /* and shrinks */
    assert_ptr_equal(d, c);
    heap_free(f->h, a); /* not the most recent: only counted */
    c = heap_alloc(f->h, 10);
    assert_true(c > d);
    heap_free(f->h, c);
    heap_free(f->h, d); /* last live block: reset */
    c = heap_alloc(f->h, 100);
    assert_ptr_equal(c, a);
    heap_free(f->h, c);
}

/* A lock that does nothing: a heap with one takes the front end's locked path, never a step. */
static unsigned long nop_lock(void *ctx)
{
    (void)ctx;
    return 0;
}

static void nop_unlock(void *ctx, unsigned long saved)
{
    (void)ctx, (void)saved;
}

/* The step (heap_ops.step_alloc/step_free: bump's whole heap_alloc() and heap_free() in bump.c) serves
 * a bump heap without a lock; a heap with a lock takes the front end's path and the vtable. Both must
 * hand out the same blocks and keep the same statistics, step for step: one pseudo-random mix of
 * allocations (size 0, large ones that need growth, aligned ones, which never take the step), frees
 * of the newest block (rollback), of older ones (counted only) and of the last live one (reset), and
 * reallocs, run on two heaps of the same size, each on an arena of its own. */
static void test_bump_step_as_locked(void **state)
{
    enum { SLOTS = 8, STEPS = 40000 };
    struct fixture *f = *state;
    struct host_arena other;
    struct heap_env env[2];
    struct heap *h[2];
    uintptr_t base[2];
    char *slot[2][SLOTS] = {{NULL}};
    uint64_t x = 0x9e3779b97f4a7c15u;

    assert_int_equal(host_arena_init(&other, RESERVE, INITIAL), 0);
    env[0] = host_arena_env(&f->arena);
    env[1] = host_arena_env(&other);
    env[1].lock = nop_lock;
    env[1].unlock = nop_unlock;
    h[0] = f->h = heap_create(g_ops, f->arena.base, INITIAL, &env[0]);
    h[1] = heap_create(g_ops, other.base, INITIAL, &env[1]);
    assert_non_null(h[0]);
    assert_non_null(h[1]);
    base[0] = (uintptr_t)f->arena.base;
    base[1] = (uintptr_t)other.base;
    for (int step = 0; step <= STEPS; step++) {
        unsigned i, op;
        size_t size;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        i = (unsigned)(x % SLOTS);
        op = (unsigned)(x >> 8) % 8;
        size = (x >> 16) % 64 == 0 ? 100000 + (x >> 24) % 100000 : (x >> 16) % 200;
        for (int k = 0; k < 2; k++) {
            if (step == STEPS) { /* the end: free what is left, oldest slot first */
                for (unsigned j = 0; j < SLOTS; j++)
                    heap_free(h[k], slot[k][j]);
            } else if (slot[k][i] == NULL) {
                slot[k][i] = op == 7 ? heap_alloc_aligned(h[k], size, 64) : heap_alloc(h[k], size);
                assert_non_null(slot[k][i]);
            } else if (op < 2) {
                slot[k][i] = heap_realloc(h[k], slot[k][i], size);
                assert_non_null(slot[k][i]);
            } else {
                heap_free(h[k], slot[k][i]);
                slot[k][i] = NULL;
            }
        }
        if (step < STEPS)
            assert_int_equal((uintptr_t)slot[0][i] - base[0] * (slot[0][i] != NULL),
                             (uintptr_t)slot[1][i] - base[1] * (slot[1][i] != NULL));
        if (step % 1000 == 0 || step == STEPS) {
            struct heap_stats s0 = heap_stats(h[0]), s1 = heap_stats(h[1]);
            assert_int_equal(s0.bytes_in_use, s1.bytes_in_use);
            assert_int_equal(s0.bytes_mapped, s1.bytes_mapped);
            assert_int_equal(s0.peak_in_use, s1.peak_in_use);
            assert_int_equal(s0.live_allocs, s1.live_allocs);
            assert_int_equal(s0.total_allocs, s1.total_allocs);
            assert_int_equal(s0.total_frees, s1.total_frees);
            assert_int_equal(s0.failed_allocs, s1.failed_allocs);
            assert_int_equal(heap_check(h[0]), 0);
            assert_int_equal(heap_check(h[1]), 0);
        }
    }
    assert_int_equal(heap_stats(h[1]).live_allocs, 0);
    host_arena_destroy(&other);
}

/* heap_walk() callback: stores the size of bump's free span, [next, end). */
static bool bump_free_span(void *ctx, const struct heap_walk_entry *e)
{
    if (e->state == HEAP_WALK_FREE)
        *(size_t *)ctx = e->size;
    return true;
}

/* The region's last bytes, where the step's one comparison decides (bump.c, bump_fits): a request
 * one byte too large for the tail fails and changes nothing, one that fills the tail exactly is
 * placed, and then an empty tail (room 0, where room - header would wrap) refuses even one byte. */
static void test_bump_step_exact_fit(void **state)
{
    const size_t hdr = 16 + 32 * KHEAP_HARDENING; /* bump's header */
    struct fixture *f = *state;
    size_t tail = 0, fit;
    char *a, *p;

    fixed_heap(f, 64 << 10);
    a = heap_alloc(f->h, 1000);
    assert_non_null(a);
    heap_walk(f->h, bump_free_span, &tail);
    assert_true(tail > hdr + HEAP_HARD_TAIL + 16);
    fit = tail - hdr - HEAP_HARD_TAIL;
    assert_null(heap_alloc(f->h, fit + 1));
    assert_int_equal(heap_stats(f->h).failed_allocs, 1);
    assert_int_equal(heap_stats(f->h).live_allocs, 1);
    p = heap_alloc(f->h, fit);
    assert_non_null(p);
    assert_true(p > a);
    p[fit - 1] = 1;
    tail = 1;
    heap_walk(f->h, bump_free_span, &tail);
    assert_int_equal(tail, 1); /* no free span is left to report */
    assert_null(heap_alloc(f->h, 1));
    assert_null(heap_alloc(f->h, 0));
    assert_int_equal(heap_stats(f->h).failed_allocs, 3);
    assert_int_equal(heap_check(f->h), 0);
    heap_free(f->h, p); /* the newest: rolled back, and the tail is free again */
    assert_ptr_equal(heap_alloc(f->h, fit), p);
    heap_free(f->h, p);
    heap_free(f->h, a);
}

/* A region holds at most HEAP_MAX_REQUEST bytes (bump.c, bump_cap_end), so that the step, which
 * checks a size only against the region's tail, refuses whatever the front end refuses: a heap on a
 * 2^63-byte range (only its first bytes are ever touched) still fails a request of HEAP_MAX_REQUEST
 * bytes, and counts it. */
static void test_bump_region_cap(void **state)
{
    struct fixture *f = *state;
    void *p;

    f->h = heap_create(g_ops, f->arena.base, (size_t)1 << 63, NULL);
    assert_non_null(f->h);
    assert_null(heap_alloc(f->h, HEAP_MAX_REQUEST));
    assert_null(heap_alloc(f->h, SIZE_MAX / 2));
    assert_int_equal(heap_stats(f->h).failed_allocs, 2);
    p = heap_alloc(f->h, 100);
    assert_non_null(p);
    heap_free(f->h, p);
    assert_int_equal(heap_check(f->h), 0);
}

static void test_ll_coalesce_both(void **state)
{
    struct fixture *f = *state;
    char *a = heap_alloc(f->h, 240), *b = heap_alloc(f->h, 240), *c = heap_alloc(f->h, 240);
    char *d = heap_alloc(f->h, 240), *big;

    assert_true(a < b && b < c && c < d);
    heap_free(f->h, a);
    heap_free(f->h, c);
    assert_int_equal(heap_check(f->h), 0);
    heap_free(f->h, b); /* merges with a (before) and c (after) */
    assert_int_equal(heap_check(f->h), 0);
    big = heap_alloc(f->h, (size_t)(d - a) - LL_BLOCK_OVERHEAD);
    assert_ptr_equal(big, a);
    heap_free(f->h, big);
    heap_free(f->h, d);
}

static void test_ll_padding_reuse(void **state)
{
    struct fixture *f = *state;
    char *aligned, *small;

    fixed_heap(f, 64 << 10);
    aligned = heap_alloc_aligned(f->h, 100, 8192);
    assert_non_null(aligned);
    /* The padding in front of the aligned block went back to the free lists: a small block fits there. */
    small = heap_alloc(f->h, 64);
    assert_non_null(small);
    assert_true(small < aligned);
    heap_free(f->h, small);
    heap_free(f->h, aligned);
    /* Everything coalesced again: nearly the whole heap is one block. */
    small = heap_alloc(f->h, 56 << 10);
    assert_non_null(small);
    heap_free(f->h, small);
}

/* Quick lists (plain mode): a freed small block waits, still "in use" to its neighbours, flagged in its
 * header (bit 3 of the size word) and doubly linked through its first two body words; check() verifies
 * flag, links and the boundary tag it leaves in its successor, and an allocation that finds no fit
 * flushes the lists into the tree first. */
static void test_ll_quick_lists(void **state)
{
    struct fixture *f = *state;
    enum { N = 1000 };
    char *p[N], *a, *big;
    size_t *hdr, n = 0;
    void *link;

    fixed_heap(f, 64 << 10);
    a = heap_alloc(f->h, 100);
    big = heap_alloc(f->h, 100); /* keeps a from merging with the free rest */
    heap_free(f->h, a);
    assert_int_equal(heap_check(f->h), 0);
    if (!heap_hardening()) {
        hdr = (size_t *)(void *)a - 1; /* a's size word */
        *hdr &= ~(size_t)8;            /* a block on a list without the flag */
        assert_true(heap_check(f->h) > 0);
        *hdr |= 8;
        assert_int_equal(heap_check(f->h), 0);
        memcpy(&link, a, sizeof(link));
        memcpy(a, &(void *){big}, sizeof(link)); /* the list now leads to an unflagged block */
        assert_true(heap_check(f->h) > 0);
        memcpy(a, &link, sizeof(link));
        assert_int_equal(heap_check(f->h), 0);
        memcpy(&link, a + sizeof(link), sizeof(link));
        memcpy(a + sizeof(link), &(void *){big}, sizeof(link)); /* a broken back link */
        assert_true(heap_check(f->h) > 0);
        memcpy(a + sizeof(link), &link, sizeof(link));
        hdr = (size_t *)(void *)big - 2; /* big's prev_size: the tag a left */
        *hdr += 16;
        assert_true(heap_check(f->h) > 0);
        *hdr -= 16;
        assert_int_equal(heap_check(f->h), 0);
        assert_ptr_equal(heap_alloc(f->h, 100), a); /* the list hands a back */
        heap_free(f->h, a);
    }
    heap_free(f->h, big);
    while (n < N && (p[n] = heap_alloc(f->h, 100)) != NULL)
        n++;
    assert_true(n > 64 && n < N); /* filled the heap, more blocks than the lists hold */
    for (size_t i = 0; i < n; i++)
        heap_free(f->h, p[i]);
    assert_int_equal(heap_check(f->h), 0);
    big = heap_alloc(f->h, 56 << 10); /* only if the listed blocks coalesced again */
    assert_non_null(big);
    assert_int_equal(heap_check(f->h), 0);
    heap_free(f->h, big);
}

/* Counts the walk's entries and the bytes of the largest free one. */
struct ll_walk_sum {
    size_t n, largest_free;
};

static bool ll_walk_sum_fn(void *ctx, const struct heap_walk_entry *e)
{
    struct ll_walk_sum *w = ctx;

    w->n++;
    if (e->state == HEAP_WALK_FREE && e->size > w->largest_free)
        w->largest_free = e->size;
    return true;
}

/* Quick lists (plain mode): a listed block coalesces as soon as a neighbour goes to the tree, on
 * either side (its successor finds it by the boundary tag it left); a block after a free block is not
 * listed but merged; a carve's small remainder before a used block is listed. */
static void test_ll_quick_coalesce(void **state)
{
    struct fixture *f = *state;
    bool plain = !heap_hardening(); /* hardened: no quick lists, and the quarantine delays frees */
    char *a, *b, *c, *d, *guard;
    struct ll_walk_sum w = {0};
    size_t word;

    fixed_heap(f, 64 << 10);
    a = heap_alloc(f->h, 100);
    b = heap_alloc(f->h, 1000); /* too large for a list */
    c = heap_alloc(f->h, 100);
    d = heap_alloc(f->h, 100);
    guard = heap_alloc(f->h, 100);
    heap_free(f->h, a); /* listed */
    heap_free(f->h, c); /* listed: its neighbours are in use */
    assert_int_equal(heap_check(f->h), 0);
    heap_free(f->h, b); /* into the tree, taking a (before it) and c (after it) along */
    assert_int_equal(heap_check(f->h), 0);
    heap_walk(f->h, ll_walk_sum_fn, &w);
    if (plain) {
        assert_true(w.largest_free >= (size_t)(d - a)); /* one free block from a to d */
        assert_ptr_equal(heap_alloc(f->h, 1200), a);    /* only if a, b and c merged */
        heap_free(f->h, a);
    }
    heap_free(f->h, guard); /* listed: in use before it */
    heap_free(f->h, d);     /* a free block before it: not listed but merged, taking guard along */
    assert_int_equal(heap_check(f->h), 0);
    w = (struct ll_walk_sum){0};
    heap_walk(f->h, ll_walk_sum_fn, &w);
    if (plain)
        assert_int_equal(w.n, 1); /* everything coalesced: one free block */

    /* A carve's small remainder before a used block goes on its list, not into the tree. */
    a = heap_alloc(f->h, 1000);
    guard = heap_alloc(f->h, 100);
    heap_free(f->h, a);
    a = heap_alloc(f->h, 900); /* a block of 928 bytes out of 1024: a remainder of 96 */
    assert_int_equal(heap_check(f->h), 0);
    if (plain) {
        memcpy(&word, a + heap_usable_size(f->h, a) + sizeof(size_t), sizeof(word)); /* its size word */
        assert_int_equal(word, 96 | 8 | 1 | 2); /* listed (bit 3), in use (bit 0), after a used block */
    }
    b = heap_alloc(f->h, 70); /* a block of 96 bytes: the remainder, from its list */
    if (plain)
        assert_ptr_equal(b, a + heap_usable_size(f->h, a) + 16);
    heap_free(f->h, a);
    heap_free(f->h, b);
    heap_free(f->h, guard);
    assert_int_equal(heap_check(f->h), 0);
}

/* linked_list's free blocks in address order, from heap_walk() (plain mode: quick-listed blocks too,
 * which are never larger than 144 bytes). */
#define LL_FREE_LOG_MAX 4096
struct ll_free_log {
    size_t n;
    uintptr_t addr[LL_FREE_LOG_MAX];
    size_t size[LL_FREE_LOG_MAX];
};

static bool ll_free_log_fn(void *ctx, const struct heap_walk_entry *e)
{
    struct ll_free_log *w = ctx;
    size_t i;

    if (e->state != HEAP_WALK_FREE)
        return true;
    assert_true(w->n < LL_FREE_LOG_MAX);
    for (i = w->n++; i > 0 && w->addr[i - 1] > (uintptr_t)e->addr; i--) { /* regions: newest first */
        w->addr[i] = w->addr[i - 1];
        w->size[i] = w->size[i - 1];
    }
    w->addr[i] = (uintptr_t)e->addr;
    w->size[i] = e->size;
    return true;
}

/* How far past block b's header the user pointer of an align-aligned block lies in b: 0, or padding
 * that can be a free block of its own (at least LL_MIN_BLOCK). */
static size_t ll_ref_pad(uintptr_t b, size_t align)
{
    size_t pad = (size_t)(-(b + LL_HDR) & (align - 1));

    while (pad != 0 && pad < LL_MIN_BLOCK)
        pad += align;
    return pad;
}

/* How ll_ref_aligned() found its answer. */
enum ll_ref_how { LL_REF_NONE, LL_REF_FIRST, LL_REF_SMALLER, LL_REF_EXACT, LL_REF_FALLBACK, LL_REF_HOWS };

/* The user pointer linked_list's aligned allocation of a block of asize bytes must return, by its
 * definition (linked_list.c, ll_find_aligned), recomputed from the free blocks w: among the first 16
 * blocks of at least asize bytes in address order, the smallest (lowest among equals) in which the
 * block fits at its exact aligned place, the search ending at a fit that leaves less than a minimum
 * block behind it; if none fits, the first block of at least asize + align + LL_MIN_BLOCK bytes.
 * 0 if there is none. *how: which rule decided. */
static uintptr_t ll_ref_aligned(const struct ll_free_log *w, size_t asize, size_t align, enum ll_ref_how *how)
{
    size_t best = SIZE_MAX, tries = 0;

    *how = LL_REF_NONE;
    for (size_t i = 0; i < w->n && tries < 16; i++) {
        size_t body = w->size[i] - LL_HDR, pad = ll_ref_pad(w->addr[i], align);

        if (w->size[i] < asize)
            continue;
        tries++;
        if (pad > body || body - pad < asize - LL_HDR)
            continue;
        if (best == SIZE_MAX || w->size[i] < w->size[best]) {
            *how = best == SIZE_MAX ? LL_REF_FIRST : LL_REF_SMALLER;
            best = i;
        }
        if (body - pad - (asize - LL_HDR) < LL_MIN_BLOCK) {
            *how = *how == LL_REF_SMALLER || tries > 1 ? LL_REF_EXACT : *how; /* ended the search early */
            break;
        }
    }
    for (size_t i = 0; i < w->n && best == SIZE_MAX; i++) {
        if (w->size[i] >= asize + align + LL_MIN_BLOCK) {
            *how = LL_REF_FALLBACK;
            best = i;
        }
    }
    return best == SIZE_MAX ? 0 : w->addr[best] + ll_ref_pad(w->addr[best], align) + LL_HDR;
}

/* An aligned allocation takes the block the definition of linked_list's aligned search names
 * (ll_ref_aligned), on a heap shaped by a random mix of small, large and aligned blocks; every rule of
 * the definition decides some of them. */
static void test_ll_aligned_choice(void **state)
{
    struct fixture *f = *state;
    enum { LIVE = 256, STEPS = 20000 };
    static struct ll_free_log w;
    char *p[LIVE] = {0};
    uint64_t rng = 2026;
    size_t decided[LL_REF_HOWS] = {0};

    for (int step = 0; step < STEPS; step++) {
        size_t i = heap_rand(&rng) % LIVE, r = heap_rand(&rng) % 8;

        if (p[i] != NULL) {
            heap_free(f->h, p[i]);
            p[i] = NULL;
        } else if (r < 3) { /* an aligned block larger than any quick-listed one */
            size_t size = 129 + heap_rand(&rng) % 9000,
                   align = (size_t)32 << (r == 0 ? 8 : heap_rand(&rng) % 9);
            size_t asize = (size + HEAP_HARD_TAIL + LL_HDR + 15) & ~(size_t)15;
            enum ll_ref_how how;
            uintptr_t want;

            w.n = 0;
            heap_walk(f->h, ll_free_log_fn, &w);
            want = ll_ref_aligned(&w, asize, align, &how);
            p[i] = heap_alloc_aligned(f->h, size, align);
            assert_non_null(p[i]);
            if (want != 0) /* else the heap grew for it */
                assert_ptr_equal(p[i], (char *)want);
            decided[how]++;
        } else {
            p[i] = heap_alloc(f->h, r < 6 ? 1 + heap_rand(&rng) % 200 : 200 + heap_rand(&rng) % 6000);
            assert_non_null(p[i]);
        }
        if (step % 500 == 0)
            assert_int_equal(heap_check(f->h), 0);
    }
    for (size_t i = 0; i < LIVE; i++)
        heap_free(f->h, p[i]);
    for (int h = LL_REF_FIRST; h < LL_REF_HOWS; h++)
        assert_true(decided[h] > 0);
}

static void test_ll_resize_in_place(void **state)
{
    struct fixture *f = *state;
    char *a = heap_alloc(f->h, 100), *b = heap_alloc(f->h, 1000), *c = heap_alloc(f->h, 100), *p;

    heap_fill(a, 100, 1);
    heap_free(f->h, b);
    p = heap_realloc(f->h, a, 900); /* grows into the free block after it */
    assert_ptr_equal(p, a);
    assert_true(heap_verify(p, 100, 1));
    p = heap_realloc(f->h, p, 50); /* shrink gives the tail back */
    assert_ptr_equal(p, a);
    b = heap_alloc(f->h, 800);
    assert_true(b > a && b < c);
    heap_free(f->h, b);
    heap_free(f->h, c);
    heap_free(f->h, p);
}

static void test_fsb_small_and_large(void **state)
{
    struct fixture *f = *state;
    enum { N = 3000 };
    void **p = calloc(N, sizeof(void *));

    for (size_t size = 1; size <= 2048; size = size * 3 / 2 + 1) {
        for (int i = 0; i < N; i++) {
            p[i] = heap_alloc(f->h, size);
            assert_non_null(p[i]);
            assert_int_not_equal((uintptr_t)p[i] % 4096, 0); /* small: never page-aligned */
            assert_true(heap_usable_size(f->h, p[i]) >= size);
            /* class rounding: at most 31 bytes or a quarter of the request */
            assert_true(heap_usable_size(f->h, p[i]) <= size + (size / 4 > 31 ? size / 4 : 31));
        }
        assert_int_equal(heap_check(f->h), 0);
        for (int i = 0; i < N; i++)
            heap_free(f->h, p[i]);
    }
    for (size_t size = 2049; size < 100000; size = size * 2) {
        void *q = heap_alloc(f->h, size);
        assert_non_null(q);
        assert_int_equal((uintptr_t)q % 4096, 0); /* large: always page-aligned */
        heap_free(f->h, q);
    }
    free(p);
}

static void test_fsb_slabs_returned(void **state)
{
    struct fixture *f = *state;
    enum { MAX = 100000 };
    void **p = calloc(MAX, sizeof(void *));
    size_t n = 0;
    void *big;

    fixed_heap(f, 1 << 20);
    while (n < MAX && (p[n] = heap_alloc(f->h, 16 + (n % 3) * 200)) != NULL)
        n++;
    assert_true(n > 1000 && n < MAX);
    assert_null(heap_alloc(f->h, 512 << 10)); /* full of slabs */
    for (size_t i = 0; i < n; i++)
        heap_free(f->h, p[i]);
    assert_int_equal(heap_check(f->h), 0);
    /* Empty slabs went back to the fallback, except at most one cached slab per class (3 here, 48 KiB).
     * Fill the heap again with page-granular large blocks: all but those slabs, the instance and a
     * little fragmentation between the cached slabs must be available. */
    size_t large = 0;
    void *q[64];
    int nq = 0;
    while (nq < 64 && (q[nq] = heap_alloc(f->h, 32768 - FSB_LL_OVERHEAD)) != NULL)
        large += 32768, nq++;
    assert_true(large >= (1 << 20) - 3 * 16384 - 4 * 32768 - 8192);
    for (int i = 0; i < nq; i++)
        heap_free(f->h, q[i]);
    (void)big;
    free(p);
}

/* Freed large blocks are cached by page count (fixed_size_block.c, "The large-block cache"): the
 * next request of the same page count gets one back, the statistics count them as free, and when
 * the heap runs out the cache is flushed so that the memory serves other sizes. */
static void test_fsb_large_cache(void **state)
{
    struct fixture *f = *state;
    enum { MAX = 256 };
    void **p = calloc(MAX, sizeof(void *));
    size_t n = 0, m = 0, big = 8 * 4096 - FSB_LL_OVERHEAD, other = 3 * 4096 - FSB_LL_OVERHEAD;
    struct heap_stats s;
    void *q;

    fixed_heap(f, 1 << 20); /* no growth: a request the fallback cannot serve must flush the cache */
    q = heap_alloc(f->h, big);
    assert_non_null(q);
    heap_free(f->h, q);
    s = heap_stats(f->h);
    assert_int_equal(s.live_allocs, 0); /* cached, but free to the user */
    assert_int_equal(s.bytes_in_use, 0);
    assert_ptr_equal(heap_alloc(f->h, big - 100), q); /* same page count: the cached block */
    heap_free(f->h, q);
    assert_int_equal(heap_check(f->h), 0);

    while (n < MAX && (p[n] = heap_alloc(f->h, big)) != NULL)
        n++;
    assert_true(n >= 20 && n < MAX);
    for (size_t i = 0; i < n; i++)
        heap_free(f->h, p[i]); /* a few of them (FSB_CACHE_DEPTH) stay cached */
    s = heap_stats(f->h);
    assert_int_equal(s.live_allocs, 0);
    assert_int_equal(s.bytes_in_use, 0);
    assert_int_equal(heap_check(f->h), 0);
    /* Another page count: once the fallback is out of memory, the cached 8-page blocks must be
     * flushed and reused, so at least as many bytes fit as before. */
    while (m < MAX && (p[m] = heap_alloc(f->h, other)) != NULL)
        m++;
    assert_true(m * 3 >= n * 8);
    assert_int_equal(heap_check(f->h), 0);
    for (size_t i = 0; i < m; i++)
        heap_free(f->h, p[i]);
    /* And back: the 3-page blocks cached now are flushed in turn. */
    m = 0;
    while (m < MAX && (p[m] = heap_alloc(f->h, big)) != NULL)
        m++;
    assert_true(m >= n);
    for (size_t i = 0; i < m; i++)
        heap_free(f->h, p[i]);
    assert_int_equal(heap_stats(f->h).failed_allocs, 3);
    free(p);
}

static void test_fsb_aligned_small(void **state)
{
    struct fixture *f = *state;
    for (size_t align = 32; align <= 64; align *= 2) {
        void *p[100];
        for (int i = 0; i < 100; i++) {
            p[i] = heap_alloc_aligned(f->h, (size_t)(i * 17 + 1), align);
            assert_non_null(p[i]);
            assert_int_equal((uintptr_t)p[i] % align, 0);
            assert_int_not_equal((uintptr_t)p[i] % 4096, 0);
        }
        for (int i = 0; i < 100; i++)
            heap_free(f->h, p[i]);
    }
}

/* Objects of size bytes that one slab holds in fixed_size_block.c's layout: 16 KiB minus the
 * fallback's block header of the next slab, objects from the end of the slab header on, none starting
 * on a page boundary. */
static unsigned fsb_slab_objects(size_t size)
{
    size_t hdr = KHEAP_HARDENING ? 192 : 64, end = 16384 - (KHEAP_HARDENING ? 32 : 16);
    unsigned n = 0;

    for (size_t off = hdr; off + size <= end; off += size)
        n += off % 4096 != 0;
    return n;
}

/* heap_walk() callback: finds the slab holding object p (ctx: struct slab_of_ptr). */
struct slab_of_ptr {
    const void *p;
    struct heap_walk_entry e; /* state HEAP_WALK_SLAB once found */
};

static bool find_slab_of(void *ctx, const struct heap_walk_entry *e)
{
    struct slab_of_ptr *s = ctx;
    uintptr_t a = (uintptr_t)e->addr, q = (uintptr_t)s->p;

    if (e->state != HEAP_WALK_SLAB || q < a || q >= a + e->size)
        return true;
    s->e = *e;
    return false;
}

/* Size classes above 512 bytes fill their slabs (fixed_size_block.c, class_size): each class's slab
 * holds the objects the layout allows, and in plain mode (64-byte slab header) a class 16 bytes
 * larger would hold fewer (before, 1024-byte objects left room unused: 1072 fit 15 as well). Requests
 * get the smallest class that holds them (hardened: with the canary and trailer), so classes only
 * grow with the request. */
static void test_fsb_classes_fill_their_slabs(void **state)
{
    struct fixture *f = *state;
    size_t last = 0, classes = 0;

    for (size_t size = 513; size <= 2048; size++) {
        struct slab_of_ptr s = {.p = heap_alloc(f->h, size)};

        assert_non_null(s.p);
        heap_walk(f->h, find_slab_of, &s);
        if (s.e.state != HEAP_WALK_SLAB) { /* hardened: with its tail, a large block */
            assert_true(KHEAP_HARDENING && size > 2048 - 64);
            heap_free(f->h, (void *)s.p);
            continue;
        }
        assert_true(s.e.object_size >= size && s.e.object_size >= last);
        assert_true(KHEAP_HARDENING || heap_usable_size(f->h, s.p) == s.e.object_size);
        if (s.e.object_size != last) {
            last = s.e.object_size;
            classes++;
            assert_int_equal(s.e.capacity, fsb_slab_objects(last));
            if (!KHEAP_HARDENING && last < 2048)
                assert_true(fsb_slab_objects(last + 16) < fsb_slab_objects(last));
        }
        heap_free(f->h, (void *)s.p);
    }
    assert_int_equal(heap_check(f->h), 0);
    assert_true(classes >= 8);
}

/* A full slab that gets a free object rejoins its class's partial list at the tail
 * (fixed_size_block.c, slab_rejoin), so it gathers frees until allocation has used every slab
 * before it. Slabs A, B and C fill up and D gets one object; one object of A is freed, then one of
 * B. Once D is full, the next object comes from A, which rejoined first (rejoining second after the
 * head, the old policy, put B before A). No quarantine, so a freed object is reused at once. */
static void test_fsb_full_slab_rejoins_at_tail(void **state)
{
    enum { SIZE = 1800, MAX = 64 };
    struct fixture *f = *state;
    struct heap_env env = {.quarantine_bytes = HEAP_QUARANTINE_OFF};
    struct slab_of_ptr s;
    void *p[MAX], *a, *b;
    size_t cap, n = 0;

    f->h = heap_create(g_ops, f->arena.base, f->arena.committed, &env);
    assert_non_null(f->h);
    s.p = p[n++] = heap_alloc(f->h, SIZE);
    assert_non_null(s.p);
    heap_walk(f->h, find_slab_of, &s);
    assert_int_equal(s.e.state, HEAP_WALK_SLAB);
    cap = s.e.capacity;
    assert_true(cap >= 2 && 3 * cap + 1 <= MAX);
    while (n < 3 * cap + 1) {
        p[n] = heap_alloc(f->h, SIZE);
        assert_non_null(p[n]);
        n++;
    }
    a = p[1];
    b = p[cap + 1];
    assert_true(((uintptr_t)a ^ (uintptr_t)b) >= 16384 && ((uintptr_t)b ^ (uintptr_t)p[3 * cap]) >= 16384);
    heap_free(f->h, a);
    heap_free(f->h, b);
    while (n < 4 * cap && n < MAX) { /* D fills up */
        p[n] = heap_alloc(f->h, SIZE);
        assert_non_null(p[n]);
        assert_true(p[n] != a && p[n] != b);
        n++;
    }
    assert_ptr_equal(heap_alloc(f->h, SIZE), a);
    assert_ptr_equal(heap_alloc(f->h, SIZE), b);
    p[1] = a;
    p[cap + 1] = b;
    assert_int_equal(heap_check(f->h), 0);
    for (size_t i = 0; i < n; i++)
        heap_free(f->h, p[i]);
}

/* ---- heap_walk ---- */

enum { WALK_MAX = 512, WALK_BLOCKS = 64 };

struct walk_log {
    size_t n;
    struct heap_walk_entry e[WALK_MAX];
};

static bool walk_record(void *ctx, const struct heap_walk_entry *e)
{
    struct walk_log *w = ctx;
    if (w->n < WALK_MAX)
        w->e[w->n] = *e;
    w->n++;
    return true;
}

static bool walk_stop(void *ctx, const struct heap_walk_entry *e)
{
    (void)e;
    ++*(size_t *)ctx;
    return false;
}

/* Returns true if entry e covers [p, p + size). */
static bool walk_covers(const struct heap_walk_entry *e, const void *p, size_t size)
{
    uintptr_t a = (uintptr_t)e->addr, q = (uintptr_t)p;
    return a <= q && q + size <= a + e->size;
}

/* Walks f's heap into w and checks what holds for every backend: the walk's count is heap_walk()'s
 * result, the non-SLAB entries tile one stretch of the arena in address order (no gap, no overlap)
 * that is the heap's memory minus its instance and region headers, every SLAB entry lies inside a
 * used block, and the used entries hold at least bytes_in_use. */
static void walk_check(struct fixture *f, struct walk_log *w)
{
    struct heap_stats s = heap_stats(f->h);
    uintptr_t base = (uintptr_t)f->arena.base, first = 0, end = 0;
    size_t covered = 0, used = 0;

    w->n = 0;
    size_t n = heap_walk(f->h, walk_record, w);
    assert_int_equal(n, w->n);
    assert_true(w->n >= 1 && w->n <= WALK_MAX);
    for (size_t i = 0; i < w->n; i++) {
        const struct heap_walk_entry *e = &w->e[i];
        uintptr_t a = (uintptr_t)e->addr;
        assert_true(e->size > 0);
        assert_true(a >= base && a + e->size <= base + s.bytes_mapped);
        if (e->state == HEAP_WALK_SLAB) {
            bool inside = false;
            for (size_t j = 0; j < w->n; j++)
                inside |= w->e[j].state == HEAP_WALK_USED && walk_covers(&w->e[j], e->addr, e->size);
            assert_true(inside);
            assert_true(e->capacity > 0 && e->objects <= e->capacity);
            assert_true(e->object_size >= 16 && (size_t)e->capacity * e->object_size <= e->size);
            continue;
        }
        assert_true(e->state == HEAP_WALK_USED || e->state == HEAP_WALK_FREE);
        if (end == 0)
            first = a;
        else
            assert_int_equal(a, end); /* address order, no gap, no overlap */
        end = a + e->size;
        covered += e->size;
        used += e->state == HEAP_WALK_USED ? e->size : 0;
    }
    /* All of the heap's memory but its instance (at the front) and a region's end marker. */
    assert_true(first - base <= 4096);
    assert_true(base + s.bytes_mapped - end <= 64);
    assert_true(covered + 4096 + 64 >= s.bytes_mapped);
    assert_true(used >= s.bytes_in_use);
    /* fn returning false ends the walk, for every backend. */
    {
        size_t one = 0;
        assert_int_equal(heap_walk(f->h, walk_stop, &one), 1);
        assert_int_equal(one, 1);
    }
}

/* After a known sequence of allocations and frees, heap_walk() shows every live block as used (or,
 * for fixed_size_block's small ones, inside a slab whose object count is exactly the live blocks in
 * it), freed blocks as free (linked_list), bump's live count on its used span; once everything is
 * freed, linked_list and bump walk as one free span and no slab holds objects. */
static void test_walk(void **state)
{
    struct fixture *f = *state;
    static struct walk_log w;
    const char *name = heap_backend_name(f->h);
    bool ll = strcmp(name, "linked_list") == 0, fsb = strcmp(name, "fixed_size_block") == 0;
    bool bump = strcmp(name, "bump") == 0;
    void *p[WALK_BLOCKS], *gone[WALK_BLOCKS] = {0};
    size_t size[WALK_BLOCKS], live = 0;

    for (int i = 0; i < WALK_BLOCKS; i++) {
        size[i] = i % 16 == 5 ? (size_t)4000 + 1000 * (i % 3) : (size_t)1 + (size_t)(i * 37) % 300;
        p[i] = heap_alloc(f->h, size[i]);
        assert_non_null(p[i]);
        heap_fill(p[i], size[i], (unsigned char)i);
    }
    for (int i = 0; i < WALK_BLOCKS; i += 3) {
        gone[i] = p[i]; /* only compared with the walk's addresses */
        heap_free(f->h, p[i]);
        p[i] = NULL;
    }
    assert_int_equal(heap_stats(f->h).bytes_mapped, INITIAL); /* one region: address order is global */
    walk_check(f, &w);

    for (int i = 0; i < WALK_BLOCKS; i++) {
        bool small = fsb && size[i] <= 2048, found = false;
        if (p[i] == NULL)
            continue;
        live++;
        for (size_t j = 0; j < w.n && !found; j++)
            found = (w.e[j].state == (small ? HEAP_WALK_SLAB : HEAP_WALK_USED)) &&
                    walk_covers(&w.e[j], p[i], size[i]);
        assert_true(found);
    }
    size_t slabs = 0;
    for (size_t j = 0; j < w.n; j++) {
        const struct heap_walk_entry *e = &w.e[j];
        unsigned in_slab = 0;
        if (e->state != HEAP_WALK_SLAB)
            continue;
        slabs++;
        for (int i = 0; i < WALK_BLOCKS; i++)
            in_slab += p[i] != NULL && size[i] <= 2048 && walk_covers(e, p[i], 1);
        assert_int_equal(e->objects, in_slab);
    }
    assert_true(fsb ? slabs > 0 : slabs == 0);
    for (int i = 0; ll && i < WALK_BLOCKS; i += 3) {
        bool found = false;
        for (size_t j = 0; j < w.n && !found; j++)
            found = w.e[j].state == HEAP_WALK_FREE && walk_covers(&w.e[j], gone[i], size[i]);
        assert_true(found);
    }
    if (bump) {
        assert_true(w.n == 2 && w.e[0].state == HEAP_WALK_USED && w.e[1].state == HEAP_WALK_FREE);
        assert_int_equal(w.e[0].objects, live);
    }

    for (int i = 0; i < WALK_BLOCKS; i++)
        heap_free(f->h, p[i]);
    walk_check(f, &w);
    if (bump)
        assert_true(w.n == 1 && w.e[0].state == HEAP_WALK_FREE);
    /* linked_list: all free, but the blocks its quick lists hold (plain mode) are not coalesced. */
    for (size_t j = 0; ll && j < w.n; j++)
        assert_int_equal(w.e[j].state, HEAP_WALK_FREE);
    if (ll && heap_hardening())
        assert_int_equal(w.n, 1);
    for (size_t j = 0; j < w.n; j++)
        assert_int_equal(w.e[j].objects, 0);
}

/* heap_block_info(): a live block is told as such with its requested size in hardened mode; the
 * plain heap keeps nothing to tell, so it says HEAP_PTR_UNKNOWN (test_harden covers the rest). */
static void test_block_info_by_mode(void **state)
{
    struct fixture *f = *state;
    void *p = heap_alloc(f->h, 40);
    struct heap_block_info b = heap_block_info(f->h, p);

    assert_non_null(p);
    if (heap_hardening()) {
        assert_int_equal(b.kind, HEAP_PTR_LIVE);
        assert_int_equal(b.size, 40);
    } else {
        assert_int_equal(b.kind, HEAP_PTR_UNKNOWN);
        assert_true(b.size == 0 && b.usable == 0 && b.alloc_site == NULL && b.free_site == NULL);
    }
    heap_free(f->h, p);
}

static const struct kheap_test tests[] = {
    KHEAP_TEST(test_create_too_small),
    KHEAP_TEST(test_alignment),
    KHEAP_TEST(test_huge_alignments),
    KHEAP_TEST(test_top_of_address_space),
    KHEAP_TEST(test_size_zero),
    KHEAP_TEST(test_overflow_sizes),
    KHEAP_TEST(test_calloc_zero_and_overflow),
    KHEAP_TEST(test_realloc_semantics),
    KHEAP_TEST(test_oom_recovery),
    KHEAP_TEST(test_grow),
    KHEAP_TEST(test_arena_rewind),
    KHEAP_TEST(test_grow_nonadjacent),
    KHEAP_TEST(test_stats_balance),
    KHEAP_TEST(test_lock),
    KHEAP_TEST(test_walk),
    KHEAP_TEST_FOR("bump", test_bump_rollback_reset),
    KHEAP_TEST_FOR("bump", test_bump_step_as_locked),
    KHEAP_TEST_FOR("bump", test_bump_step_exact_fit),
    KHEAP_TEST_FOR("bump", test_bump_region_cap),
    KHEAP_TEST_FOR("linked_list", test_ll_coalesce_both),
    KHEAP_TEST_FOR("linked_list", test_ll_padding_reuse),
    KHEAP_TEST_FOR("linked_list", test_ll_resize_in_place),
    KHEAP_TEST_FOR("linked_list", test_ll_quick_lists),
    KHEAP_TEST_FOR("linked_list", test_ll_quick_coalesce),
    KHEAP_TEST_FOR("linked_list", test_ll_aligned_choice),
    KHEAP_TEST_FOR("fixed_size_block", test_fsb_small_and_large),
    KHEAP_TEST_FOR("fixed_size_block", test_fsb_full_slab_rejoins_at_tail),
    KHEAP_TEST_FOR("fixed_size_block", test_fsb_slabs_returned),
    KHEAP_TEST_FOR("fixed_size_block", test_fsb_large_cache),
    KHEAP_TEST_FOR("fixed_size_block", test_fsb_aligned_small),
    KHEAP_TEST_FOR("fixed_size_block", test_fsb_classes_fill_their_slabs),
    KHEAP_TEST(test_block_info_by_mode),
};

int main(int argc, char **argv)
{
    return kheap_cmocka_main(argc, argv, "", tests, sizeof(tests) / sizeof(tests[0]), setup, teardown,
                             &g_ops);
}
