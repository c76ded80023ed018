/*
 * heap_test_util.h - the helpers every heap test shares, in the kernel (test/ktest/kheap_test.h) and on
 * the host (test/host/kheap_host.h): one generator, one fill pattern. Freestanding: stdint/stddef only.
 */
#ifndef KHEAP_HEAP_TEST_UTIL_H
#define KHEAP_HEAP_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* splitmix64: advances *state and returns the next 64 random bits. Any seed works (0 too). */
static inline uint64_t heap_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The byte heap_fill() puts at offset i for seed. */
static inline uint8_t heap_pattern(uint32_t seed, size_t i)
{
    return (uint8_t)(seed * 31 + i * 7 + (i >> 8));
}

/* Fills n bytes at p with a pattern derived from seed. */
static inline void heap_fill(void *p, size_t n, uint32_t seed)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = heap_pattern(seed, i);
}

/* Returns true if the n bytes at p still hold heap_fill(p, n, seed). */
static inline bool heap_verify(const void *p, size_t n, uint32_t seed)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != heap_pattern(seed, i))
            return false;
    return true;
}

#endif /* KHEAP_HEAP_TEST_UTIL_H */
