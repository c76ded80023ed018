/*
 * test_release.c - giving memory back (heap_env.release / reclaim), per backend, against the mock
 * environment of arena.c: it records every released range, refuses releases that are misaligned,
 * outside the heap or overlapping an earlier one, and makes released pages PROT_NONE, so a backend
 * that touches what it gave back (a header, a link, the poison it verifies) crashes the test.
 *
 * Usage: test_release <backend>. Asserts: after a 64 MiB burst of mixed sizes is freed, bytes_mapped
 * is back within RELEASE_SLACK of its value before (linked_list, fixed_size_block: also with a small
 * block allocated after the burst at the top of the heap; bump: at its reset), no live block ever
 * overlaps a released range, reused memory reads as written, a loop allocating and freeing a block
 * below the trim threshold maps and unmaps nothing, a refused reclaim fails the allocation cleanly,
 * and heap_check() stays 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "heap.h"
#include "heap_backend.h"
#include "kheap_host.h"

#define RESERVE       ((size_t)1 << 30)
#define INITIAL       ((size_t)256 << 10)
#define BURST         ((size_t)64 << 20)
#define MAXB          20000
/* The slack this test allows (docs/memory.md has the general bound): the trim threshold kept by each
 * of at most two free blocks (below and above the long-lived block) and their partial pages, plus
 * 1 MiB for fixed_size_block: its kept empty slabs (at most one of 16 KiB per size class the burst
 * used) and what of its large-block cache the frees after the drain refilled. */
#define RELEASE_SLACK (2 * HEAP_TRIM_THRESHOLD + ((size_t)1 << 20))

static const struct heap_ops *g_ops;

struct fixture {
    struct host_arena arena;
    struct heap *h;
    void *p[MAXB];
    size_t n[MAXB];
    size_t count;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct heap_env env;

    assert_non_null(f);
    assert_int_equal(host_arena_init(&f->arena, RESERVE, INITIAL), 0);
    f->arena.chunk = (size_t)64 << 10; /* like the kernel's KERNEL_HEAP_GROW_MIN_PAGES */
    env = host_arena_release_env(&f->arena);
    env.quarantine_blocks = HEAP_QUARANTINE_OFF; /* the backends' own release, block by block */
    f->h = heap_create(g_ops, f->arena.base, INITIAL, &env);
    assert_non_null(f->h);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(heap_check(f->h), 0);
    assert_int_equal(f->arena.release_errors, 0);
    assert_int_equal(f->arena.reclaim_errors, 0);
    host_arena_destroy(&f->arena);
    free(f);
    return 0;
}

/* No live block overlaps a released range. */
static void assert_live_mapped(const struct fixture *f)
{
    for (size_t i = 0; i < f->count; i++)
        if (f->p[i] != NULL)
            assert_false(host_arena_overlaps_released(&f->arena, f->p[i], f->n[i]));
}

/* Allocates about BURST bytes in mixed sizes (16 B .. 64 KiB, some 1 MiB), each filled. */
static void burst(struct fixture *f, uint64_t *seed)
{
    size_t total = 0;

    f->count = 0;
    while (total < BURST && f->count < MAXB) {
        uint64_t r = heap_rand(seed);
        size_t n = r % 16 == 0 ? ((size_t)1 << 20) : (size_t)16 << (r % 13);
        void *p = heap_alloc(f->h, n);
        assert_non_null(p);
        heap_fill(p, n, (uint8_t)f->count);
        f->p[f->count] = p;
        f->n[f->count++] = n;
        total += n;
    }
}

/* Frees the burst in random order, verifying each block first. */
static void free_burst(struct fixture *f, uint64_t *seed)
{
    for (size_t i = f->count; i > 1; i--) {
        size_t j = heap_rand(seed) % i;
        void *t = f->p[i - 1];
        size_t tn = f->n[i - 1];
        f->p[i - 1] = f->p[j];
        f->n[i - 1] = f->n[j];
        f->p[j] = t;
        f->n[j] = tn;
    }
    for (size_t i = 0; i < f->count; i++) {
        heap_free(f->h, f->p[i]);
        f->p[i] = NULL;
        if (i % 1024 == 0)
            assert_live_mapped(f);
    }
    f->count = 0;
}

static void test_burst_then_free(void **state)
{
    struct fixture *f = *state;
    uint64_t seed = 42;
    size_t before = heap_stats(f->h).bytes_mapped;
    void *keep;
    struct heap_stats s;

    burst(f, &seed);
    assert_true(heap_stats(f->h).bytes_mapped >= BURST);
    keep = heap_alloc(f->h, 64); /* long-lived, above the burst */
    assert_non_null(keep);
    free_burst(f, &seed);
    s = heap_stats(f->h);
    printf("# %s: mapped before %zu, after burst+free %zu, released %llu pages, in use %zu\n",
           heap_backend_name(f->h), before, s.bytes_mapped, (unsigned long long)s.pages_released,
           s.bytes_in_use);
    if (heap_is_arena(f->h)) {
        /* bump: the long-lived block pins the region; its free resets and gives the tail back. */
        heap_free(f->h, keep);
        s = heap_stats(f->h);
        assert_true(s.bytes_mapped <= before + RELEASE_SLACK);
    } else {
        assert_true(s.bytes_mapped <= before + RELEASE_SLACK);
        assert_false(host_arena_overlaps_released(&f->arena, keep, 64));
        heap_free(f->h, keep);
    }
    s = heap_stats(f->h);
    assert_true(s.pages_released > 0);
    assert_true(f->arena.released_bytes ==
                s.pages_released * HEAP_PAGE_SIZE - s.pages_reclaimed * HEAP_PAGE_SIZE);
}

static void test_reuse_after_release(void **state)
{
    struct fixture *f = *state;
    uint64_t seed = 7;

    for (int round = 0; round < 3; round++) {
        burst(f, &seed);
        assert_live_mapped(f);
        for (size_t i = 0; i < f->count; i++)
            assert_true(heap_verify(f->p[i], f->n[i], (uint8_t)i));
        assert_int_equal(heap_check(f->h), 0);
        free_burst(f, &seed);
        assert_int_equal(heap_check(f->h), 0);
    }
    assert_true(heap_stats(f->h).pages_reclaimed > 0);
    /* calloc of reclaimed memory is zero, and so is a reclaimed page read through a plain alloc. */
    unsigned char *z = heap_calloc(f->h, 1, (size_t)8 << 20);
    assert_non_null(z);
    for (size_t i = 0; i < ((size_t)8 << 20); i += 4093)
        assert_int_equal(z[i], 0);
    heap_free(f->h, z);
}

static void test_no_thrash(void **state)
{
    struct fixture *f = *state;
    uint64_t seed = 9;
    struct heap_stats a, b;

    burst(f, &seed);
    free_burst(f, &seed);
    a = heap_stats(f->h);
    for (int i = 0; i < 1000; i++) {
        void *p = heap_alloc(f->h, HEAP_TRIM_THRESHOLD / 2);
        assert_non_null(p);
        memset(p, 0x5a, HEAP_TRIM_THRESHOLD / 2);
        heap_free(f->h, p);
    }
    b = heap_stats(f->h);
    /* At most the first round may map (the block's first placement); then nothing moves. */
    assert_true(b.pages_reclaimed - a.pages_reclaimed <= HEAP_TRIM_THRESHOLD / HEAP_PAGE_SIZE);
    assert_true(b.pages_released - a.pages_released <= HEAP_TRIM_THRESHOLD / HEAP_PAGE_SIZE);
}

static void test_reclaim_refused(void **state)
{
    struct fixture *f = *state;
    uint64_t seed = 11;
    struct heap_stats a, b;
    void *p;

    burst(f, &seed);
    free_burst(f, &seed);
    f->arena.refuse_reclaim = true;
    f->arena.limit = f->arena.committed; /* and no growth either */
    a = heap_stats(f->h);
    p = heap_alloc(f->h, (size_t)16 << 20);
    b = heap_stats(f->h);
    assert_null(p);
    assert_int_equal(b.failed_allocs, a.failed_allocs + 1);
    assert_int_equal(b.bytes_mapped, a.bytes_mapped);
    assert_int_equal(b.pages_reclaimed, a.pages_reclaimed);
    assert_int_equal(heap_check(f->h), 0);
    f->arena.refuse_reclaim = false;
    p = heap_alloc(f->h, (size_t)16 << 20);
    assert_non_null(p);
    heap_free(f->h, p);
}

/* realloc growing a block in place into a free neighbour that gave its pages back reclaims only the
 * pages the grown block (and the header and record of what remains free) needs; the rest of the
 * neighbour stays given back. (Reclaiming the neighbour's whole range made every such realloc map
 * megabytes; not for arena backends, which grow only their newest block, into mapped memory.) */
static void test_resize_into_released(void **state)
{
    struct fixture *f = *state;
    const size_t small = (size_t)64 << 10, big = (size_t)8 << 20, grow = (size_t)512 << 10;
    unsigned char *a, *b, *c, *q;
    struct heap_stats s0, s1, s2;

    a = heap_alloc(f->h, small);
    b = heap_alloc(f->h, big);
    c = heap_alloc(f->h, small); /* keeps b's free block off the top of the heap */
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(b > a && (size_t)(b - a) < small + 2 * HEAP_PAGE_SIZE); /* b's block follows a's */
    heap_fill(a, small, 1);
    s0 = heap_stats(f->h);
    heap_free(f->h, b);
    s1 = heap_stats(f->h);
    assert_true(s1.pages_released - s0.pages_released >= (big - HEAP_TRIM_THRESHOLD) / HEAP_PAGE_SIZE - 4);
    q = heap_realloc(f->h, a, small + HEAP_TRIM_THRESHOLD + grow);
    assert_ptr_equal(q, a); /* grew in place into b's block */
    s2 = heap_stats(f->h);
    assert_true(heap_verify(q, small, 1));
    assert_false(host_arena_overlaps_released(&f->arena, q, heap_usable_size(f->h, q)));
    /* The kept prefix covers HEAP_TRIM_THRESHOLD of the growth; the rest needs grow bytes' pages plus
     * the remainder's header page. */
    assert_true(s2.pages_reclaimed - s1.pages_reclaimed <= grow / HEAP_PAGE_SIZE + 3);
    assert_true(s2.bytes_mapped + big / 2 < s0.bytes_mapped);
    memset(q, 0x77, small + HEAP_TRIM_THRESHOLD + grow);
    assert_int_equal(heap_check(f->h), 0);
    heap_free(f->h, q);
    heap_free(f->h, c);
}

/* With the callbacks NULL nothing is ever given back. */
static void test_null_callbacks(void **state)
{
    struct fixture *f = *state;
    struct host_arena a;
    struct heap_env env;
    struct heap *h;
    void *p;

    (void)f;
    assert_int_equal(host_arena_init(&a, (size_t)64 << 20, INITIAL), 0);
    env = host_arena_env(&a);
    env.quarantine_blocks = HEAP_QUARANTINE_OFF;
    h = heap_create(g_ops, a.base, INITIAL, &env);
    assert_non_null(h);
    p = heap_alloc(h, (size_t)8 << 20);
    assert_non_null(p);
    heap_free(h, p);
    assert_int_equal(heap_stats(h).pages_released, 0);
    assert_true(heap_stats(h).bytes_mapped >= ((size_t)8 << 20));
    assert_int_equal(heap_check(h), 0);
    host_arena_destroy(&a);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_burst_then_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_after_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_thrash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resize_into_released, setup, teardown), /* last: see below */
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);

    if (argc != 2 || (g_ops = heap_backend_find(argv[1])) == NULL) {
        fprintf(stderr, "usage: %s <backend>\n", argv[0]);
        return 2;
    }
    if (g_ops->arena)
        n--; /* arena backends grow only their newest block in place: no released neighbour */
    return _cmocka_run_group_tests(g_ops->name, tests, n, NULL, NULL);
}
