/*
 * kbox.h - Box: a scope-bound owner of one kmalloc'd object (the blog's Box<T>).
 *
 *     {
 *         KBOX(struct thing, t) = KBOX_NEW(struct thing);   // NULL if out of memory
 *         if (t == NULL) return -1;
 *         t->x = 1;
 *     }   // t is kfree'd here, on every path out of the scope
 *
 * kbox_take(&t) moves ownership out (returns the pointer and leaves t NULL, so nothing is freed).
 * Uses the GCC/Clang cleanup attribute.
 */
#ifndef KHEAP_ALLOC_KBOX_H
#define KHEAP_ALLOC_KBOX_H

#include "kmalloc.h"

/* Frees the object owned by the box variable at pp (a pointer to a pointer) and clears it. */
static inline void kbox_release(void *pp)
{
    void **slot = (void **)pp;
    kfree(*slot);
    *slot = NULL;
}

/* Returns the object owned by the box at pp and leaves the box empty. */
static inline void *kbox_take(void *pp)
{
    void **slot = (void **)pp;
    void *obj = *slot;
    *slot = NULL;
    return obj;
}

/* Declares name as a type * freed automatically when it goes out of scope. */
#define KBOX(type, name) type *name __attribute__((cleanup(kbox_release)))

/* Allocates one zeroed type (NULL if out of memory). */
#define KBOX_NEW(type) ((type *)kcalloc(1, sizeof(type)))

#endif /* KHEAP_ALLOC_KBOX_H */
