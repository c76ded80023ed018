/* kvec.c - growable vector on krealloc; see kvec.h. */
#include "kvec.h"

#include "kmalloc.h"

int kvec_reserve(struct kvec *v, size_t cap)
{
    size_t bytes;
    void *data;

    if (cap <= v->cap)
        return 0;
    if (__builtin_mul_overflow(cap, v->elem_size, &bytes))
        return KVEC_ENOMEM;
    data = krealloc(v->data, bytes);
    if (data == NULL)
        return KVEC_ENOMEM;
    v->data = data;
    v->cap = cap;
    return 0;
}

int kvec_push(struct kvec *v, const void *elem)
{
    if (v->len == v->cap) {
        size_t cap = v->cap < KVEC_MIN_CAP ? KVEC_MIN_CAP : v->cap;
        if (v->cap >= KVEC_MIN_CAP && __builtin_mul_overflow(v->cap, (size_t)2, &cap))
            return KVEC_ENOMEM;
        if (kvec_reserve(v, cap) != 0)
            return KVEC_ENOMEM;
    }
    __builtin_memcpy((char *)v->data + v->len * v->elem_size, elem, v->elem_size);
    v->len++;
    return 0;
}

int kvec_pop(struct kvec *v, void *out)
{
    if (v->len == 0)
        return -1;
    v->len--;
    if (out != NULL)
        __builtin_memcpy(out, (char *)v->data + v->len * v->elem_size, v->elem_size);
    return 0;
}

void *kvec_at(const struct kvec *v, size_t i)
{
    return i < v->len ? (char *)v->data + i * v->elem_size : NULL;
}

void kvec_free(struct kvec *v)
{
    kfree(v->data);
    v->data = NULL;
    v->len = 0;
    v->cap = 0;
}
