/*
 * test_kmalloc.c - cmocka tests of kmalloc and the Box/Vec/Rc helpers over one backend.
 *
 * Usage: test_kmalloc <backend>. These are the blog's checks (a vector of 1000 pushes sums to
 * 499500, a boxed value is freed at scope exit, the last Rc release frees) plus the error paths.
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

#include "kbox.h"
#include "kheap_host.h"
#include "heap_backend.h"
#include "kmalloc.h"
#include "krc.h"
#include "kvec.h"

static const struct heap_ops *g_ops;
static struct host_arena arena;

static int setup(void **state)
{
    struct heap_env env;

    (void)state;
    assert_int_equal(host_arena_init(&arena, (size_t)64 << 20, 256 << 10), 0);
    env = host_arena_env(&arena);
    kmalloc_init(heap_create(g_ops, arena.base, 64 << 10, &env));
    assert_non_null(kmalloc_heap());
    return 0;
}

static int teardown(void **state)
{
    struct heap_stats s = kmalloc_stats();

    (void)state;
    assert_int_equal(kmalloc_check(), 0);
    assert_int_equal(s.live_allocs, 0);
    assert_int_equal(s.bytes_in_use, 0);
    kmalloc_init(NULL);
    host_arena_destroy(&arena);
    return 0;
}

static void test_kmalloc_api(void **state)
{
    (void)state;
    assert_string_equal(kmalloc_backend_name(), g_ops->name);
    char *p = kmalloc(100);
    assert_non_null(p);
    assert_true(kmalloc_usable_size(p) >= 100);
    memset(p, 'x', 100);
    p = krealloc(p, 300);
    assert_non_null(p);
    assert_int_equal(p[99], 'x');
    kfree(p);
    p = kcalloc(4, 25);
    assert_non_null(p);
    assert_int_equal(p[50], 0);
    kfree(p);
    p = kmalloc_aligned(10, 512);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 512, 0);
    kfree(p);
    kfree(NULL);
    assert_null(kmalloc(SIZE_MAX));
    assert_int_equal(kmalloc_stats().failed_allocs, 1);
}

static void test_kmalloc_uninitialised(void **state)
{
    struct heap *h = kmalloc_heap();

    (void)state;
    kmalloc_init(NULL);
    assert_null(kmalloc(8));
    assert_null(kcalloc(1, 8));
    assert_null(krealloc(NULL, 8));
    kfree(NULL);
    assert_int_equal(kmalloc_stats().live_allocs, 0);
    assert_string_equal(kmalloc_backend_name(), "none");
    kmalloc_init(h);
}

static void test_vec_sum(void **state)
{
    struct kvec v = KVEC_INIT(long);
    long sum = 0;

    (void)state;
    for (long i = 0; i < 1000; i++)
        assert_int_equal(kvec_push(&v, &i), 0);
    assert_int_equal(kvec_len(&v), 1000);
    assert_true(kvec_cap(&v) >= 1000 && kvec_cap(&v) < 2000);
    for (size_t i = 0; i < kvec_len(&v); i++)
        sum += *(long *)kvec_at(&v, i);
    assert_int_equal(sum, 499500);
    assert_null(kvec_at(&v, 1000));
    long last;
    assert_int_equal(kvec_pop(&v, &last), 0);
    assert_int_equal(last, 999);
    kvec_free(&v);
    assert_int_equal(kvec_pop(&v, NULL), -1);
}

static void test_vec_errors(void **state)
{
    struct kvec v = KVEC_INIT(char[64]);
    char elem[64] = {1};
    size_t n = 0;

    (void)state;
    assert_int_equal(kvec_reserve(&v, SIZE_MAX / 2), KVEC_ENOMEM); /* overflow */
    assert_int_equal(kvec_len(&v), 0);
    assert_null(v.data);
    /* Fixed 256 KiB heap: pushes fail cleanly and leave the vector intact. */
    kmalloc_init(heap_create(g_ops, arena.base, 256 << 10, NULL));
    while (kvec_push(&v, elem) == 0)
        n++;
    assert_true(n > 16);
    assert_int_equal(kvec_len(&v), n);
    assert_true(kmalloc_stats().failed_allocs >= 1);
    assert_int_equal(((char *)kvec_at(&v, n - 1))[0], 1);
    kvec_free(&v);
}

static void test_box_scope(void **state)
{
    struct heap_stats before = kmalloc_stats(), inside;
    int *kept;

    (void)state;
    {
        KBOX(int, b) = KBOX_NEW(int);
        assert_non_null(b);
        *b = 42;
        KBOX(int, moved) = KBOX_NEW(int);
        kept = kbox_take(&moved); /* moved out: not freed at scope exit */
        assert_null(moved);
        inside = kmalloc_stats();
        assert_int_equal(inside.live_allocs, before.live_allocs + 2);
    }
    assert_int_equal(kmalloc_stats().live_allocs, before.live_allocs + 1);
    assert_int_equal(kmalloc_stats().total_frees, before.total_frees + 1);
    kfree(kept);
}

static int dropped;

static void count_drop(void *obj)
{
    assert_int_equal(*(int *)obj, 7);
    dropped++;
}

static void test_rc_last_release_frees(void **state)
{
    int *a;
    size_t live = kmalloc_stats().live_allocs;

    (void)state;
    dropped = 0;
    a = krc_new(sizeof(int), count_drop);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a % 16, 0);
    *a = 7;
    assert_int_equal(krc_count(a), 1);
    int *b = krc_get(a);
    assert_ptr_equal(a, b);
    assert_int_equal(krc_count(a), 2);
    assert_int_equal(krc_put(a), 1);
    assert_int_equal(dropped, 0);
    assert_int_equal(kmalloc_stats().live_allocs, live + 1);
    assert_int_equal(krc_put(b), 0);
    assert_int_equal(dropped, 1);
    assert_int_equal(kmalloc_stats().live_allocs, live);
    assert_null(krc_new(SIZE_MAX - 8, NULL));
}

static const struct kheap_test tests[] = {
    KHEAP_TEST(test_kmalloc_api), KHEAP_TEST(test_kmalloc_uninitialised),
    KHEAP_TEST(test_vec_sum),     KHEAP_TEST(test_vec_errors),
    KHEAP_TEST(test_box_scope),   KHEAP_TEST(test_rc_last_release_frees),
};

int main(int argc, char **argv)
{
    return kheap_cmocka_main(argc, argv, "", tests, sizeof(tests) / sizeof(tests[0]), setup, teardown,
                             &g_ops);
}
