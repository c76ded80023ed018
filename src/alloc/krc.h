/*
 * krc.h - Rc: a reference-counted kmalloc'd object (the blog's Rc<T>).
 *
 *     struct thing *t = krc_new(sizeof(*t), thing_drop);  // count 1, zeroed; NULL if out of memory
 *     struct thing *u = krc_get(t);                       // count 2
 *     krc_put(t);                                         // count 1
 *     krc_put(u);                                         // count 0: thing_drop(u), then freed
 *
 * The count lives in a 16-byte header before the object (so the object stays 16-aligned) and is
 * updated atomically. Using an object after its last krc_put() is undefined.
 */
#ifndef KHEAP_ALLOC_KRC_H
#define KHEAP_ALLOC_KRC_H

#include <stddef.h>

/* Returns a zeroed object of size bytes with count 1, or NULL on overflow or out of memory. drop, if
 * not NULL, runs on the object just before it is freed. */
void *krc_new(size_t size, void (*drop)(void *obj));

/* Adds a reference to obj and returns obj. */
void *krc_get(void *obj);

/* Drops a reference; the last one runs drop and frees obj. Returns the remaining count. */
size_t krc_put(void *obj);

/* Returns obj's current reference count. */
size_t krc_count(const void *obj);

#endif /* KHEAP_ALLOC_KRC_H */
