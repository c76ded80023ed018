/*
 * Helpers for heap tests: every heap test starts with HEAP_TEST_BEGIN()
 * and ends with HEAP_TEST_END(), which asserts that the test gave back
 * everything it allocated and that the allocator's invariant checker finds
 * nothing wrong (xv6's countfree() habit).
 */
#ifndef KHEAP_KHEAP_TEST_H
#define KHEAP_KHEAP_TEST_H

#include "alloc/kmalloc.h"
#include "ktest.h"

#define HEAP_TEST_BEGIN() struct heap_stats heap_test_before_ = kmalloc_stats()

#define HEAP_TEST_END()                                                             \
    do {                                                                            \
        struct heap_stats heap_test_after_ = kmalloc_stats();                       \
        KASSERT_EQ(heap_test_after_.live_allocs, heap_test_before_.live_allocs);   \
        KASSERT_EQ(heap_test_after_.bytes_in_use, heap_test_before_.bytes_in_use); \
        KASSERT_EQ(kmalloc_check(), 0);                                             \
    } while (0)

/* Fills n bytes at p with a pattern derived from seed. */
static inline void heap_fill(void *p, size_t n, uint32_t seed)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
}

/* Returns true if the n bytes at p still hold heap_fill(p, n, seed). */
static inline bool heap_verify(const void *p, size_t n, uint32_t seed)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != (uint8_t)(seed * 31 + i * 7 + (i >> 8)))
            return false;
    }
    return true;
}

/* A small deterministic PRNG (xorshift64*). */
static inline uint64_t heap_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

#endif
