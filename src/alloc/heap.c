/*
 * heap.c - the generic front end shared by every backend.
 *
 * The front end owns everything that is the same for all backends: argument validation (size 0,
 * overflow, alignment), locking, growth on out-of-memory, realloc's move-and-copy fallback and the
 * statistics. Backends only place and release blocks, so they can assume sane arguments (see
 * struct heap_ops in heap.h) and stay small.
 *
 * Growth: when ops->alloc() finds nothing, the front end asks env.grow() for size + align +
 * ops->grow_overhead bytes, hands the region to ops->add_memory() and retries, at most
 * HEAP_GROW_TRIES times. grow() runs with the lock held.
 */
#include "heap_backend.h"

static inline unsigned long heap_lock(struct heap *h)
{
    return h->env.lock != NULL ? h->env.lock(h->env.ctx) : 0;
}

static inline void heap_unlock(struct heap *h, unsigned long saved)
{
    if (h->env.lock != NULL)
        h->env.unlock(h->env.ctx, saved);
}

static inline void note_alloc(struct heap *h, size_t usable)
{
    struct heap_stats *s = &h->stats;
    s->bytes_in_use += usable;
    if (s->bytes_in_use > s->peak_in_use)
        s->peak_in_use = s->bytes_in_use;
    s->live_allocs++;
    s->total_allocs++;
}

static inline void *fail(struct heap *h)
{
    h->stats.failed_allocs++;
    return NULL;
}

/* Asks env.grow() for room for one (size, align) request and adds it; false if none was given. */
static bool grow(struct heap *h, size_t size, size_t align)
{
    size_t want;
    void *start = NULL;
    size_t len = 0;

    if (__builtin_add_overflow(size, align, &want) ||
        __builtin_add_overflow(want, h->ops->grow_overhead, &want))
        return false;
    if (h->env.grow(h->env.ctx, want, &start, &len) != 0 || start == NULL || len == 0)
        return false;
    h->ops->add_memory(h, start, len);
    h->stats.bytes_mapped += len;
    return true;
}

/* Allocates with the lock held; align is a power of two >= HEAP_MIN_ALIGN. */
static inline void *alloc_locked(struct heap *h, size_t size, size_t align)
{
    size_t total, usable = 0;
    void *p;

    if (size == 0)
        size = 1;
    if (__builtin_add_overflow(size, align, &total) || total > HEAP_MAX_REQUEST)
        return fail(h);
    p = h->ops->alloc(h, size, align, &usable);
    if (heap_unlikely(p == NULL)) {
        for (int i = 0; i < HEAP_GROW_TRIES && h->env.grow != NULL; i++) {
            if (!grow(h, size, align))
                break;
            p = h->ops->alloc(h, size, align, &usable);
            if (p != NULL)
                break;
        }
        if (p == NULL)
            return fail(h);
    }
    note_alloc(h, usable);
    return p;
}

static inline void free_locked(struct heap *h, void *ptr)
{
    struct heap_stats *s = &h->stats;
    s->bytes_in_use -= h->ops->free(h, ptr);
    s->live_allocs--;
    s->total_frees++;
}

/* Creates a heap of backend ops in [mem, mem + size); NULL if ops is NULL or size is too small. */
struct heap *heap_create(const struct heap_ops *ops, void *mem, size_t size, const struct heap_env *env)
{
    struct heap *h;

    if (ops == NULL || mem == NULL)
        return NULL;
    h = ops->init(mem, size);
    if (h == NULL)
        return NULL;
    h->ops = ops;
    if (env != NULL)
        h->env = *env;
    else
        h->env = (struct heap_env){0};
    if (h->env.unlock == NULL)
        h->env.lock = NULL; /* a lock that cannot be released is no lock */
    h->stats = (struct heap_stats){0};
    h->stats.bytes_mapped = size;
    return h;
}

/* Returns a block of at least size bytes aligned to 16, or NULL. */
void *heap_alloc_from(struct heap *h, size_t size, const void *caller)
{
    unsigned long saved = heap_lock(h);
    void *p;

    (void)caller;
    p = alloc_locked(h, size, HEAP_MIN_ALIGN);
    heap_unlock(h, saved);
    return p;
}

/* Returns a block of at least size bytes aligned to align (power of two), or NULL. */
void *heap_alloc_aligned_from(struct heap *h, size_t size, size_t align, const void *caller)
{
    unsigned long saved = heap_lock(h);
    void *p;

    (void)caller;
    if (!heap_is_pow2(align))
        p = fail(h);
    else
        p = alloc_locked(h, size, align < HEAP_MIN_ALIGN ? HEAP_MIN_ALIGN : align);
    heap_unlock(h, saved);
    return p;
}

/* Returns a zeroed block of n * size bytes, or NULL on overflow or out of memory. */
void *heap_calloc_from(struct heap *h, size_t n, size_t size, const void *caller)
{
    unsigned long saved = heap_lock(h);
    size_t bytes;
    void *p;

    (void)caller;
    if (__builtin_mul_overflow(n, size, &bytes))
        p = fail(h);
    else
        p = alloc_locked(h, bytes, HEAP_MIN_ALIGN);
    if (p != NULL)
        __builtin_memset(p, 0, bytes);
    heap_unlock(h, saved);
    return p;
}

/* C realloc; on failure returns NULL and ptr stays allocated and unchanged. */
void *heap_realloc_from(struct heap *h, void *ptr, size_t size, const void *caller)
{
    unsigned long saved;
    size_t total, old;
    void *p;

    if (ptr == NULL)
        return heap_alloc_from(h, size, caller);
    saved = heap_lock(h);
    if (size == 0)
        size = 1;
    if (__builtin_add_overflow(size, HEAP_MIN_ALIGN, &total) || total > HEAP_MAX_REQUEST) {
        p = fail(h);
        goto out;
    }
    old = h->ops->usable_size(h, ptr);
    if (h->ops->resize(h, ptr, size)) {
        struct heap_stats *s = &h->stats;
        s->bytes_in_use = s->bytes_in_use - old + h->ops->usable_size(h, ptr);
        if (s->bytes_in_use > s->peak_in_use)
            s->peak_in_use = s->bytes_in_use;
        p = ptr;
        goto out;
    }
    p = alloc_locked(h, size, HEAP_MIN_ALIGN);
    if (p != NULL) {
        __builtin_memcpy(p, ptr, old < size ? old : size);
        free_locked(h, ptr);
    }
out:
    heap_unlock(h, saved);
    return p;
}

/* Frees ptr; NULL does nothing. */
void heap_free_from(struct heap *h, void *ptr, const void *caller)
{
    unsigned long saved;

    (void)caller;
    if (ptr == NULL)
        return;
    saved = heap_lock(h);
    free_locked(h, ptr);
    heap_unlock(h, saved);
}

/* The entry points without a caller argument report their own caller. noinline keeps the return
 * address that of the user's call even when the compiler could inline these into each other. */
__attribute__((noinline)) void *heap_alloc(struct heap *h, size_t size)
{
    return heap_alloc_from(h, size, __builtin_return_address(0));
}

__attribute__((noinline)) void *heap_alloc_aligned(struct heap *h, size_t size, size_t align)
{
    return heap_alloc_aligned_from(h, size, align, __builtin_return_address(0));
}

__attribute__((noinline)) void *heap_calloc(struct heap *h, size_t n, size_t size)
{
    return heap_calloc_from(h, n, size, __builtin_return_address(0));
}

__attribute__((noinline)) void *heap_realloc(struct heap *h, void *ptr, size_t size)
{
    return heap_realloc_from(h, ptr, size, __builtin_return_address(0));
}

__attribute__((noinline)) void heap_free(struct heap *h, void *ptr)
{
    heap_free_from(h, ptr, __builtin_return_address(0));
}

/* Returns the usable size of ptr's block, 0 for NULL. */
size_t heap_usable_size(struct heap *h, const void *ptr)
{
    unsigned long saved;
    size_t n;

    if (ptr == NULL)
        return 0;
    saved = heap_lock(h);
    n = h->ops->usable_size(h, ptr);
    heap_unlock(h, saved);
    return n;
}

/* Returns a snapshot of h's counters. */
struct heap_stats heap_stats(struct heap *h)
{
    unsigned long saved = heap_lock(h);
    struct heap_stats s = h->stats;
    heap_unlock(h, saved);
    return s;
}

/* Returns the number of broken invariants in the backend plus in the front end's counters. */
size_t heap_check(struct heap *h)
{
    unsigned long saved = heap_lock(h);
    const struct heap_stats *s = &h->stats;
    size_t bad = h->ops->check(h);

    bad += s->total_allocs - s->total_frees != s->live_allocs;
    bad += s->peak_in_use < s->bytes_in_use;
    bad += s->bytes_in_use > s->bytes_mapped;
    bad += s->live_allocs == 0 && s->bytes_in_use != 0;
    bad += s->live_allocs != 0 && s->bytes_in_use < s->live_allocs; /* >= 1 byte each */
    heap_unlock(h, saved);
    return bad;
}

/* Returns the name of h's backend. */
const char *heap_backend_name(const struct heap *h)
{
    return h->ops->name;
}

/* Returns the name of an error kind, for reports. */
const char *heap_error_name(enum heap_error kind)
{
    switch (kind) {
    case HEAP_ERR_DOUBLE_FREE: return "double free";
    case HEAP_ERR_INVALID_FREE: return "invalid free";
    case HEAP_ERR_USE_AFTER_FREE: return "use-after-free write";
    case HEAP_ERR_OVERFLOW: return "heap overflow";
    case HEAP_ERR_CORRUPT_FREELIST: return "corrupted free list";
    case HEAP_ERR_CORRUPT_METADATA: return "corrupted heap metadata";
    case HEAP_ERR_COUNT: break;
    }
    return "unknown heap error";
}

/* Returns the mode the library was compiled in. */
int heap_hardening(void)
{
    return KHEAP_HARDENING;
}
