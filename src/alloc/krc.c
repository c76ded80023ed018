/* krc.c - reference-counted objects on kmalloc; see krc.h. */
#include "krc.h"

#include <stdint.h>

#include "kmalloc.h"

struct krc_hdr {
    size_t count;
    void (*drop)(void *obj);
};

_Static_assert(sizeof(struct krc_hdr) == 16, "header keeps the object 16-aligned");

static struct krc_hdr *hdr_of(const void *obj)
{
    return (struct krc_hdr *)((uintptr_t)obj - sizeof(struct krc_hdr));
}

void *krc_new(size_t size, void (*drop)(void *obj))
{
    size_t bytes;
    struct krc_hdr *h;

    if (__builtin_add_overflow(size, sizeof(struct krc_hdr), &bytes))
        return NULL;
    h = kcalloc(1, bytes);
    if (h == NULL)
        return NULL;
    h->count = 1;
    h->drop = drop;
    return h + 1;
}

void *krc_get(void *obj)
{
    __atomic_add_fetch(&hdr_of(obj)->count, 1, __ATOMIC_RELAXED);
    return obj;
}

size_t krc_put(void *obj)
{
    struct krc_hdr *h = hdr_of(obj);
    size_t left = __atomic_sub_fetch(&h->count, 1, __ATOMIC_ACQ_REL);

    if (left == 0) {
        if (h->drop != NULL)
            h->drop(obj);
        kfree(h);
    }
    return left;
}

size_t krc_count(const void *obj)
{
    return __atomic_load_n(&hdr_of(obj)->count, __ATOMIC_RELAXED);
}
