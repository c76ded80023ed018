/*
 * heap_backend.h - what backends (and only backends and heap.c) see: the common part of every heap
 * instance and small helpers. Users include heap.h only.
 */
#ifndef KHEAP_ALLOC_HEAP_BACKEND_H
#define KHEAP_ALLOC_HEAP_BACKEND_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "heap.h"

/*
 * The common part of a heap. Every backend's instance struct has it as its FIRST member, so a
 * struct heap * converts to the backend's type with container_of (a no-op cast). Backends' init()
 * leaves it zeroed; heap_create() fills it in. Backends never touch it afterwards.
 */
struct heap {
    const struct heap_ops *ops;
    struct heap_env env;
    struct heap_stats stats;
};

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Rounds x up to a multiple of a (a power of two). Callers keep x + a far from overflow. */
static inline uintptr_t heap_align_up(uintptr_t x, uintptr_t a)
{
    return (x + a - 1) & ~(a - 1);
}

static inline uintptr_t heap_align_down(uintptr_t x, uintptr_t a)
{
    return x & ~(a - 1);
}

static inline bool heap_is_pow2(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

#define heap_likely(x) __builtin_expect(!!(x), 1)
#define heap_unlikely(x) __builtin_expect(!!(x), 0)

#endif /* KHEAP_ALLOC_HEAP_BACKEND_H */
