/*
 * kmalloc.h - the kernel-facing allocation API over ONE global heap.
 *
 * The kernel creates a heap with heap_create() (see heap.h) and installs it with kmalloc_init();
 * every function below then forwards to that heap, so all guarantees of heap.h apply (16-byte
 * alignment, size 0 gives a unique minimum block, NULL on overflow or out of memory, never a panic).
 * Before kmalloc_init() every allocation returns NULL and kfree(NULL)-like calls do nothing.
 */
#ifndef KHEAP_ALLOC_KMALLOC_H
#define KHEAP_ALLOC_KMALLOC_H

#include <stddef.h>

#include "heap.h"

/* Makes h the heap behind kmalloc(); h may be NULL to detach. */
void kmalloc_init(struct heap *h);

/* Returns the heap installed by kmalloc_init(), or NULL. */
struct heap *kmalloc_heap(void);

/* Returns at least size bytes aligned to 16, or NULL. */
void *kmalloc(size_t size);

/* Frees ptr (from kmalloc & co.); NULL does nothing. */
void kfree(void *ptr);

/* Returns n * size zeroed bytes, or NULL on overflow or out of memory. */
void *kcalloc(size_t n, size_t size);

/* C realloc semantics; on failure returns NULL and ptr is untouched. */
void *krealloc(void *ptr, size_t size);

/* Returns size bytes aligned to align (power of two), or NULL. */
void *kmalloc_aligned(size_t size, size_t align);

/* Returns the usable size of ptr's block, 0 for NULL or before kmalloc_init(). */
size_t kmalloc_usable_size(void *ptr);

/* Returns the global heap's counters (all zero before kmalloc_init()). */
struct heap_stats kmalloc_stats(void);

/* Returns the number of broken heap invariants, 0 = healthy (or no heap installed). */
size_t kmalloc_check(void);

/* Returns the backend name of the global heap, or "none". */
const char *kmalloc_backend_name(void);
/* Returns true if the global heap's backend is arena-style (heap_ops.arena: bump). */
bool kmalloc_backend_is_arena(void);

#endif /* KHEAP_ALLOC_KMALLOC_H */
