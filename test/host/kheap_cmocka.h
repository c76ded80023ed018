/*
 * kheap_cmocka.h - the one main() of the per-backend cmocka programs (test_heap, test_harden,
 * test_kmalloc): each lists its tests and calls kheap_cmocka_main(), which picks the backend named on
 * the command line, names every test "<backend><infix>/<test>" and runs them with the program's
 * fixture.
 */
#ifndef KHEAP_CMOCKA_H
#define KHEAP_CMOCKA_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "heap_backend.h"

/* One test: for every backend (backend NULL) or for the backend of that name only. */
struct kheap_test {
    const char *name;
    CMUnitTestFunction fn;
    const char *backend;
};

#define KHEAP_TEST(fn) \
    {                  \
#fn, fn, NULL  \
    }
#define KHEAP_TEST_FOR(backend, fn) \
    {                               \
#fn, fn, backend            \
    }

/* Finds the backend named argv[1] and stores it in *ops, then runs tests[0..n) that apply to it, each
 * between setup and teardown. Returns cmocka's result (the number of failed tests), or 2 with a usage
 * message if argv[1] names no backend. */
int kheap_cmocka_main(int argc, char **argv, const char *infix, const struct kheap_test *tests, size_t n,
                      CMFixtureFunction setup, CMFixtureFunction teardown, const struct heap_ops **ops);

#endif /* KHEAP_CMOCKA_H */
