/*
 * kvec.h - Vec: a growable array of fixed-size elements on krealloc (the blog's Vec<T>).
 *
 *     struct kvec v = KVEC_INIT(int);
 *     for (int i = 0; i < 1000; i++)
 *         if (kvec_push(&v, &i) != 0) ...out of memory, v unchanged...
 *     int *a = v.data;   // v.len elements
 *     kvec_free(&v);
 *
 * Capacity doubles (starting at KVEC_MIN_CAP) with overflow-checked arithmetic; on failure the vector
 * is left as it was and an error is returned, never a crash.
 */
#ifndef KHEAP_ALLOC_KVEC_H
#define KHEAP_ALLOC_KVEC_H

#include <stddef.h>

#define KVEC_MIN_CAP 4
#define KVEC_ENOMEM  (-1) /* out of memory or size overflow */

struct kvec {
    void *data;       /* cap * elem_size bytes, NULL while cap == 0 */
    size_t len;       /* elements in use */
    size_t cap;       /* elements allocated */
    size_t elem_size; /* bytes per element, > 0 */
};

#define KVEC_INIT(type) ((struct kvec){.data = NULL, .len = 0, .cap = 0, .elem_size = sizeof(type)})

/* Ensures room for at least cap elements; 0 on success, KVEC_ENOMEM (vector unchanged) on failure. */
int kvec_reserve(struct kvec *v, size_t cap);

/* Appends a copy of *elem; 0 on success, KVEC_ENOMEM (vector unchanged) on failure. */
int kvec_push(struct kvec *v, const void *elem);

/* Copies the last element to *out (if out is not NULL) and removes it; 0, or -1 if empty. */
int kvec_pop(struct kvec *v, void *out);

/* Returns a pointer to element i, or NULL if i >= len. */
void *kvec_at(const struct kvec *v, size_t i);

/* Frees the storage and empties the vector (elem_size kept). */
void kvec_free(struct kvec *v);

static inline size_t kvec_len(const struct kvec *v)
{
    return v->len;
}

static inline size_t kvec_cap(const struct kvec *v)
{
    return v->cap;
}

#endif /* KHEAP_ALLOC_KVEC_H */
