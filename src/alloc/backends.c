/* backends.c - the backend registry, built from backends.def. */
#include "heap_backend.h"

#define HEAP_BACKEND(name) &heap_##name##_ops,
const struct heap_ops *const heap_backends[] = {
#include "backends.def"
    NULL,
};
#undef HEAP_BACKEND

static bool streq(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* Returns the backend called name, or NULL if there is none (or name is NULL). */
const struct heap_ops *heap_backend_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (const struct heap_ops *const *ops = heap_backends; *ops != NULL; ops++)
        if (streq((*ops)->name, name))
            return *ops;
    return NULL;
}
