/* kmalloc.c - the global-heap wrappers declared in kmalloc.h.
 *
 * Each allocation wrapper passes its own return address to the heap_*_from() entry point, so a
 * hardened-mode report names the kernel code that called kmalloc/kfree, not this file. */
#include "kmalloc.h"

static struct heap *kheap;

void kmalloc_init(struct heap *h)
{
    kheap = h;
}

struct heap *kmalloc_heap(void)
{
    return kheap;
}

void *kmalloc(size_t size)
{
    return kheap != NULL ? heap_alloc_from(kheap, size, __builtin_return_address(0)) : NULL;
}

void kfree(void *ptr)
{
    if (kheap != NULL)
        heap_free_from(kheap, ptr, __builtin_return_address(0));
}

void *kcalloc(size_t n, size_t size)
{
    return kheap != NULL ? heap_calloc_from(kheap, n, size, __builtin_return_address(0)) : NULL;
}

void *krealloc(void *ptr, size_t size)
{
    return kheap != NULL ? heap_realloc_from(kheap, ptr, size, __builtin_return_address(0)) : NULL;
}

void *kmalloc_aligned(size_t size, size_t align)
{
    return kheap != NULL ? heap_alloc_aligned_from(kheap, size, align, __builtin_return_address(0)) : NULL;
}

size_t kmalloc_usable_size(void *ptr)
{
    return kheap != NULL ? heap_usable_size(kheap, ptr) : 0;
}

struct heap_stats kmalloc_stats(void)
{
    return kheap != NULL ? heap_stats(kheap) : (struct heap_stats){0};
}

size_t kmalloc_check(void)
{
    return kheap != NULL ? heap_check(kheap) : 0;
}

bool kmalloc_backend_is_arena(void)
{
    return kheap != NULL && heap_is_arena(kheap);
}

const char *kmalloc_backend_name(void)
{
    return kheap != NULL ? heap_backend_name(kheap) : "none";
}
