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
 * HEAP_GROW_TRIES times (alloc_retry, the one grow-and-retry path). grow() runs with the lock held.
 *
 * Hardened mode (KHEAP_HARDENING=1, docs/hardening.md) is a layer of hooks, heap_hard.h: the front
 * end asks the backend for HEAP_HARD_TAIL more bytes than requested and heap_hard_new_block() lays out
 * every block as user bytes, canary, trailer; before a free, realloc or usable_size, heap_hard_accept()
 * has the backend classify the pointer (live, already free, not a block) and verifies the canary;
 * heap_hard_poison_freed() poisons a block before the backend takes it back. Backends verify the poison
 * when they reuse memory and keep their free-list pointers mangled; everything they find goes
 * through heap_hard_report(). A report whose handler returns leaves the offending call without
 * effect: a bad free is ignored, an allocation that met corruption returns NULL (failed_allocs++),
 * and the block involved is never handed out again. Statistics count requested sizes, which is what
 * heap_usable_size() returns in this mode. In the plain build every hook is an empty stub.
 *
 * Per-CPU caches (heap_cpu.h; the design is heap_cpu.c's essay): a heap created with cpu_count >= 2,
 * cpu_enter/cpu_exit and a lock, of a backend with size classes (fixed_size_block), in plain mode,
 * serves small allocations and frees from the calling CPU's cache without the heap lock: the
 * per-CPU step below, which the entry points reach by a tail call once they see h->cpu set (a free
 * finds the object's class from its pointer, heap_cpu_class_of: no backend call, no slab
 * bookkeeping). Its counters are per CPU and heap_stats()/heap_check() add them up; when the backend
 * finds no memory and growth cannot help, every CPU's cache is drained into it before the allocation
 * fails (backend_retry), and when a free gives pages back, too. A heap without a lock that does
 * not give memory back has, unless its backend has a step (fixed_size_block: the direct path and
 * the step, no cache), CPU 0's cache alone (solo): the entry points pop and push it inline, with
 * no pin and no CPU lock, and count in the heap's own counters ("The solo step" below). Every other
 * heap without caches takes the paths it took before, one jump further out of line.
 */
#include "heap_backend.h"

static inline unsigned long heap_lock(struct heap *h)
{
    return h->env.lock != NULL ? h->env.lock(h->env.ctx) : 0;
}

static inline void heap_unlock(struct heap *h, unsigned long saved)
{
    if (h->env.unlock != NULL)
        h->env.unlock(h->env.ctx, saved);
}

static inline void *fail(struct heap *h)
{
    h->counts.failed_allocs++;
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
    if (h->env.grow(h->env.ctx, want, &start, &len) != 0 || start == NULL)
        return false;
    heap_clamp_range(start, &len);
    if (len == 0)
        return false;
    h->ops->add_memory(h, start, len);
    h->counts.bytes_mapped += len;
    return true;
}

/* Grows the heap and asks the backend again for bsize bytes at align, at most HEAP_GROW_TRIES times
 * (not after a backend met corruption). Returns the block (usable size in *usable) or NULL. */
static inline __attribute__((always_inline)) void *grow_and_alloc(struct heap *h, size_t bsize, size_t align,
                                                                  size_t *usable)
{
    void *p = NULL;

    for (int i = 0; i < HEAP_GROW_TRIES && h->env.grow != NULL && !heap_hard_aborted(h); i++) {
        if (!grow(h, bsize, align))
            break;
        p = h->ops->alloc(h, bsize, align, usable);
        if (p != NULL)
            break;
    }
    return p;
}

/* The one out-of-memory path, for every entry point: the backend found nothing for bsize bytes at
 * align (lock held). grow_and_alloc(); if that does not help, memory has run short: drain the per-CPU
 * caches (if any) into the backend and ask once more; hardened, the quarantine gives its blocks back
 * and the backend tries again (growing once more if need be). Returns the block (usable size in
 * *usable) or NULL; counts nothing. */
static inline __attribute__((always_inline)) void *backend_retry(struct heap *h, size_t bsize, size_t align,
                                                                 size_t *usable)
{
    void *p = grow_and_alloc(h, bsize, align, usable);

    if (p == NULL && heap_cpu_drain(h))
        p = h->ops->alloc(h, bsize, align, usable);
    if (p == NULL && heap_hard_drained(h)) {
        p = h->ops->alloc(h, bsize, align, usable);
        if (p == NULL)
            p = grow_and_alloc(h, bsize, align, usable);
    }
    return p;
}

/* The backend found nothing for size user bytes at align: backend_retry(), then finish the
 * allocation like alloc_block(): counted, or failed. Out of line and finishing the job itself, so the
 * fast path reaches it by a tail call and saves no registers. */
static __attribute__((noinline)) void *alloc_retry(struct heap *h, size_t size, size_t align)
{
    size_t usable;
    void *p = backend_retry(h, size + HEAP_HARD_TAIL, align, &usable);

    if (p == NULL) {
        heap_hard_alloc_failed(h);
        return fail(h);
    }
    heap_note_alloc(h, heap_hard_new_block(h, p, size, usable));
    return p;
}

/* Allocates size user bytes (1 <= size, size + align + HEAP_HARD_TAIL <= HEAP_MAX_REQUEST checked by
 * the caller) at align, with the lock held (or none installed): the backend, growth, the hardened
 * layout, the counters. */
static inline __attribute__((always_inline)) void *alloc_block(struct heap *h, size_t size, size_t align)
{
    size_t usable;
    void *p;

    heap_hard_alloc_begin(h);
    p = h->ops->alloc(h, size + HEAP_HARD_TAIL, align, &usable);
    if (heap_unlikely(p == NULL))
        return alloc_retry(h, size, align);
    heap_note_alloc(h, heap_hard_new_block(h, p, size, usable));
    return p;
}

/* True if h has per-CPU caches (never in hardened mode, where the test folds away). */
static inline bool has_caches(const struct heap *h)
{
    return !KHEAP_HARDENING && heap_unlikely(h->cpu != NULL);
}

/* After an operation through the lock that may have raised the bytes in use (an allocation, a
 * calloc, a realloc): a heap with caches samples its peak here too (heap_cpu_sample_peak), so a large
 * or aligned block, which no cache refill sees, is in peak_in_use. */
static inline void sample_peak_locked(struct heap *h)
{
    if (has_caches(h))
        heap_cpu_sample_peak(h);
}

/* Validates size and align (a power of two >= HEAP_MIN_ALIGN) and allocates, lock held. */
static void *alloc_locked(struct heap *h, size_t size, size_t align)
{
    size_t total;
    void *p;

    if (size == 0)
        size = 1;
    if (__builtin_add_overflow(size, align, &total) || total > HEAP_MAX_REQUEST - HEAP_HARD_TAIL)
        return fail(h);
    p = alloc_block(h, size, align);
    sample_peak_locked(h);
    return p;
}

/* Gives accepted block ptr back to the backend and counts it. */
static inline void release_block(struct heap *h, void *ptr, const struct heap_hard_block *b)
{
    heap_hard_poison_freed(ptr, b);
    heap_note_free(h, heap_hard_counted(b, heap_hard_free(h, ptr, b)));
    heap_hard_freed(h);
}

/* Frees ptr (not NULL), lock held: hardened mode first accepts it (or reports and leaves it). */
static inline void free_locked(struct heap *h, void *ptr)
{
    struct heap_hard_block b;

    if (heap_hard_accept(h, ptr, &b))
        release_block(h, ptr, &b);
}

static void free_direct(struct heap *h, void *ptr);

/* Creates a heap of backend ops in [mem, mem + size); NULL if ops is NULL or size is too small. */
struct heap *heap_create(const struct heap_ops *ops, void *mem, size_t size, const struct heap_env *env)
{
    struct heap *h;
    uint64_t secret = heap_hard_secret(env, mem);
    size_t mapped;
    void *ring;

    if (ops == NULL || mem == NULL)
        return NULL;
    heap_clamp_range(mem, &size);
    mapped = size;
    ring = heap_hard_reserve(ops, env, &mem, &size); /* hardened: the quarantine's ring comes first */
    if (size == 0)
        return NULL;
    h = ops->init(mem, size, secret);
    if (h == NULL)
        return NULL;
    h->ops = ops;
    if (env != NULL)
        h->env = *env;
    else
        h->env = (struct heap_env){0};
    if (h->env.unlock == NULL)
        h->env.lock = NULL; /* a lock that cannot be released is no lock */
    h->counts = (struct heap_counters){0};
    h->counts.bytes_mapped = mapped;
    heap_hard_init(h, secret, env, ring);
    if (h->env.release != NULL && h->env.reclaim != NULL && ops->release_enable != NULL)
        ops->release_enable(h);
    heap_cpu_create(h);
    h->direct = h->env.lock == NULL && h->cpu == NULL;
    h->solo = h->cpu != NULL && h->cpu->solo ? h->cpu : NULL;
    h->direct_alloc = heap_alloc_direct;
    h->direct_free = free_direct;
    if (!KHEAP_HARDENING && h->direct && h->ops->step_alloc != NULL) { /* ops: the releasing twin, if so */
        h->direct_alloc = h->ops->step_alloc;
        h->direct_free = h->ops->step_free;
    }
    return h;
}

/* Releases [lo, hi) through env and counts it (bytes_mapped goes down). */
void heap_release_pages(struct heap *h, uintptr_t lo, uintptr_t hi)
{
    if (lo >= hi)
        return;
    h->env.release(h->env.ctx, (void *)lo, hi - lo);
    h->counts.bytes_mapped -= hi - lo;
    h->counts.pages_released += (hi - lo) / HEAP_PAGE_SIZE;
}

/* Reclaims [lo, hi) through env and counts it; false if env refused. */
bool heap_reclaim_pages(struct heap *h, uintptr_t lo, uintptr_t hi)
{
    if (lo >= hi)
        return true;
    if (h->env.reclaim(h->env.ctx, (void *)lo, hi - lo) != 0)
        return false;
    h->counts.bytes_mapped += hi - lo;
    h->counts.pages_reclaimed += (hi - lo) / HEAP_PAGE_SIZE;
    return true;
}

/*
 * The per-CPU step (heap_cpu.c's essay). With per-CPU caches, a small allocation or free is served by
 * the calling CPU's cache: pinned (env.cpu_enter), under that CPU's own lock, no heap lock. Only a
 * refill (the cache is empty) or a flush (full) takes the heap lock, after leaving the pin, and
 * pins again under it. A CPU index the caches do not cover takes the locked path.
 */

/* cpu_alloc() found no object of class cls: under the heap lock, one for the caller (memory pressure
 * drains the caches, growth, as for any allocation) and up to batch - 1 more, in one backend call
 * (alloc_batch), for the cache of the CPU the caller is on now. */
static __attribute__((noinline)) void *cpu_refill(struct heap *h, unsigned cls)
{
    const struct heap_cpus *cs = h->cpu;
    size_t size = cs->size[cls], usable;
    void *more[HEAP_CPU_BATCH_MAX];
    uint32_t n = 0, kept = 0;
    unsigned long saved = heap_lock(h), pin;
    struct heap_cpu *c;
    void *p = h->ops->alloc(h, size, HEAP_MIN_ALIGN, &usable);

    if (p == NULL && (p = backend_retry(h, size, HEAP_MIN_ALIGN, &usable)) == NULL) {
        fail(h);
        heap_unlock(h, saved);
        return NULL;
    }
    c = heap_cpu_pin(cs, &pin);
    if (c != NULL) {
        n = cs->classes->alloc_batch(h, cls, more, heap_cpu_batch(&c->mag[cls]) - 1);
        heap_cpu_lock(c);
        while (kept < n && heap_cpu_push(c, cls, more[kept]))
            kept++;
        heap_cpu_count_alloc(c, size);
        heap_cpu_unlock(c);
    } else {
        heap_note_alloc(h, usable);
    }
    heap_cpu_unpin(cs, pin);
    heap_cpu_sample_peak(h);
    if (kept < n)
        cs->classes->free_batch(h, more + kept, n - kept);
    heap_unlock(h, saved);
    return p;
}

/* A small allocation (1 <= size <= cs->max_size, 16-aligned) from this CPU's cache. Out of line,
 * reached by a tail call from the entry points, so that their no-lock fast path saves no registers
 * for the calls into env here. The CPU is pinned first and the class found after: fewer values live
 * across the calls into env, fewer registers saved. */
static __attribute__((noinline)) void *cpu_alloc(struct heap *h, size_t size)
{
    unsigned long pin;
    struct heap_cpu *c = heap_cpu_pin(h->cpu, &pin);
    const struct heap_cpus *cs = h->cpu;
    unsigned cls = heap_cpu_size_class(cs, size);
    void *p = NULL;

    if (heap_likely(c != NULL)) {
        heap_cpu_lock(c);
        p = heap_cpu_pop(c, cls);
        if (heap_likely(p != NULL))
            heap_cpu_count_alloc(c, cs->size[cls]);
        heap_cpu_unlock(c);
    }
    heap_cpu_unpin(cs, pin);
    return heap_likely(p != NULL) ? p : cpu_refill(h, heap_cpu_size_class(cs, size));
}

/* The locked free of a heap with caches, for blocks they do not take: when the free gives pages
 * back, the caches are drained too, so that their objects do not pin the slabs around those pages. */
static __attribute__((noinline)) void cpu_free_locked(struct heap *h, void *ptr)
{
    unsigned long saved = heap_lock(h);
    uint64_t released = h->counts.pages_released;

    free_locked(h, ptr);
    if (h->counts.pages_released != released)
        heap_cpu_drain_all(h);
    heap_unlock(h, saved);
}

/* cpu_free() found the cache of class cls full (or the CPU has none): under the heap lock, the oldest
 * batch goes back to the backend (free_batch: one call) and ptr into the cache of the CPU the caller
 * is on now; as in cpu_free_locked(), pages given back drain every cache. */
static __attribute__((noinline)) void cpu_flush(struct heap *h, unsigned cls, void *ptr)
{
    const struct heap_cpus *cs = h->cpu;
    void *out[HEAP_CPU_BATCH_MAX];
    uint32_t n = 0;
    unsigned long saved = heap_lock(h), pin;
    uint64_t released = h->counts.pages_released;
    struct heap_cpu *c = heap_cpu_pin(cs, &pin);

    if (c != NULL) {
        heap_cpu_lock(c);
        n = heap_cpu_take_batch(c, cls, out);
        if (heap_cpu_push(c, cls, ptr)) {
            heap_cpu_count_free(c, cs->size[cls]);
            ptr = NULL;
        }
        heap_cpu_unlock(c);
    }
    heap_cpu_unpin(cs, pin);
    if (n != 0)
        cs->classes->free_batch(h, out, n);
    if (ptr != NULL)
        heap_note_free(h, h->ops->free(h, ptr));
    if (h->counts.pages_released != released)
        heap_cpu_drain_all(h);
    heap_unlock(h, saved);
}

/* The free of a heap with caches: ptr (not NULL) into this CPU's cache if it is a small object, else
 * the locked free. The class comes from the pointer (heap_cpu_class_of): the backend's slab
 * bookkeeping is not touched. Out of line, like cpu_alloc(). */
static __attribute__((noinline)) void cpu_free(struct heap *h, void *ptr)
{
    const struct heap_cpus *cs = h->cpu;
    unsigned cls = heap_cpu_class_of(cs, ptr);
    unsigned long pin;
    struct heap_cpu *c;
    bool kept = false;

    if (heap_unlikely(cls >= cs->nclasses)) {
        cpu_free_locked(h, ptr);
        return;
    }
    c = heap_cpu_pin(cs, &pin);
    if (heap_likely(c != NULL)) {
        heap_cpu_lock(c);
        kept = heap_cpu_push(c, cls, ptr);
        if (heap_likely(kept))
            heap_cpu_count_free(c, cs->size[cls]);
        heap_cpu_unlock(c);
    }
    heap_cpu_unpin(cs, pin);
    if (heap_unlikely(!kept))
        cpu_flush(h, cls, ptr);
}

/*
 * The allocation and free entry points. Every public allocation and free goes through alloc_entry() /
 * free_entry(), inlined into each exported function. They test one byte, h->direct, and either jump
 * (a tail call, no register saved) to the out-of-line direct path or go on inline with the indirect
 * one:
 *   - direct (no lock, no caches: bump, linked_list, hardened heaps without a lock, a heap too small
 *     for a cache): one range check, then alloc_block() -- the backend and the counters -- or the
 *     free; anything else (size 0, an oversized request) goes to the locked path below. In plain
 *     mode the allocation at HEAP_MIN_ALIGN and the free jump through h->direct_alloc and
 *     h->direct_free, which heap_create() points at these paths or, for a backend with a step
 *     (heap_ops.step_alloc: bump, fixed_size_block), at the backend's own whole operation -- the
 *     fit test, the placement and these counters in one function, where a call, a range check and
 *     an indirect call around a few instructions would be most of the cost; its misses end in
 *     heap_alloc_direct(). (Hardened heaps have no steps: their direct path is called directly.)
 *   - indirect: first the solo step (a heap without a lock that has CPU 0's cache), inline in the
 *     entry point (for HEAP_MIN_ALIGN allocations and for frees); then the per-CPU step above for a
 *     heap with caches and a lock; everything else (a lock to take without caches, a large or
 *     aligned request) takes the locked path, each by a tail call.
 * The split keeps each path's prologue its own: the direct path saves the registers it needs across
 * the backend call, the solo step saves none.
 *
 * The solo step. A heap without a lock is single-threaded, so it is one CPU, and with size classes
 * but no step it has CPU 0's cache (heap_cpu_create, h->solo): the magazine layer with one CPU, no
 * pin and no CPU lock. (fixed_size_block has a step, which serves such a heap from its slabs' own
 * free lists with no magazine: cheaper on every workload, bursts most, fixed_size_block.c "The
 * step"; so in plain mode no backend takes the solo step today, and it stays for one with classes
 * and no step, which test_cpu runs as fixed_size_block's ops without their step.) Its operations
 * count in the heap's own counters, exactly as the backend's path would (the peak included): a
 * small allocation is a class lookup, a pop and the counters; a small free the class from the
 * pointer (no slab bookkeeping), a push and the counters. A miss moves one batch in one backend call
 * (heap_cpu_classes.alloc_batch / free_batch), by a tail call: an empty magazine is refilled with
 * batch objects, a full one (2 * batch) gives its newer half back. With no lock to share, what a
 * batch saves is the entry's tests and counters per object: the backend's loop takes a run of a
 * slab's objects at once (fixed_size_block.c, slab_take_run) or pushes each one back by its free
 * fast path. Memory it holds: at most 2 * batch objects per class, as in every CPU's cache
 * (heap_cpu.c); none of it is counted in use.
 */

/* Allocation with the lock and full validation. */
static __attribute__((noinline)) void *alloc_slow(struct heap *h, size_t size, size_t align,
                                                  const void *caller)
{
    unsigned long saved = heap_lock(h);
    void *p;

    heap_hard_set_caller(h, caller);
    p = alloc_locked(h, size, align);
    heap_unlock(h, saved);
    return p;
}

/* The direct path of an allocation (h->direct). */
static inline __attribute__((always_inline)) void *alloc_direct(struct heap *h, size_t size, size_t align,
                                                                const void *caller)
{
    /* 1 <= size and size + align + HEAP_HARD_TAIL <= HEAP_MAX_REQUEST, in one unsigned comparison
     * (the align test folds away for the constant HEAP_MIN_ALIGN). */
    if (heap_likely(align < HEAP_MAX_REQUEST && size - 1 < HEAP_MAX_REQUEST - HEAP_HARD_TAIL - align)) {
        heap_hard_set_caller(h, caller);
        return alloc_block(h, size, align);
    }
    return alloc_slow(h, size, align, heap_hard_caller(caller));
}

/* The solo step's misses, out of line so that the hit paths save no registers. An empty magazine m
 * (class cls) is refilled with one batch in one backend call (alloc_batch) and hands out its newest
 * object; only if the backend has nothing without growing does the allocation take the general path
 * (growth, the caches drained, failure). A full one gives its newer half back in one backend call
 * (free_batch) and keeps ptr. Either way one backend call moves a batch, and its loop pays none of
 * the entry's tests and counters per object: a burst longer than the magazine costs per object the
 * magazine's pop and push plus the backend's slab operation. */
static __attribute__((noinline)) void *solo_alloc_miss(struct heap *h, size_t size)
{
    const struct heap_cpus *cs = h->solo;
    unsigned cls = heap_cpu_size_class(cs, size);
    struct heap_cpu_mag *m = heap_cpu_solo_mag(cs, cls);
    uint32_t n = cs->classes->alloc_batch(h, cls, m->obj, heap_cpu_batch(m));

    if (heap_unlikely(n == 0))
        return alloc_block(h, size, HEAP_MIN_ALIGN);
    m->count = n - 1;
    heap_note_alloc(h, m->size);
    return m->obj[n - 1];
}

static __attribute__((noinline)) void solo_flush(struct heap *h, void *ptr)
{
    const struct heap_cpus *cs = h->solo;
    unsigned cls = heap_cpu_small_class(cs, ptr);
    struct heap_cpu_mag *m = heap_cpu_solo_mag(cs, cls);
    uint32_t batch = heap_cpu_batch(m);

    cs->classes->free_batch(h, &m->obj[batch], m->count - batch);
    m->obj[batch] = ptr;
    m->count = batch + 1;
    heap_note_free(h, m->size);
}

/* A large block: the backend's free, as without a cache. */
static __attribute__((noinline)) void solo_free_miss(struct heap *h, void *ptr)
{
    free_locked(h, ptr);
}

/* The indirect path of an allocation (not h->direct): the solo step, the per-CPU step, or locked. */
static inline __attribute__((always_inline)) void *alloc_indirect(struct heap *h, size_t size, size_t align,
                                                                  const void *caller)
{
    const struct heap_cpus *cs = h->solo;

    if (heap_likely(cs != NULL && align == HEAP_MIN_ALIGN && size - 1 < cs->max_size)) {
        unsigned cls = heap_cpu_size_class(cs, size);
        struct heap_cpu_mag *m = heap_cpu_solo_mag(cs, cls);
        uint32_t n = m->count;
        void *p;

        if (heap_unlikely(n == 0))
            return solo_alloc_miss(h, size);
        p = m->obj[n - 1];
        m->count = n - 1; /* before the counters: they cannot alias it, but the compiler cannot know */
        heap_note_alloc(h, m->size);
        return p;
    }
    if (has_caches(h) && h->env.lock != NULL && align == HEAP_MIN_ALIGN && size - 1 < h->cpu->max_size)
        return cpu_alloc(h, size);
    return alloc_slow(h, size, align, caller);
}

/* The two paths, each for HEAP_MIN_ALIGN (heap_alloc, kmalloc: the align tests fold away) and for any
 * alignment: out of line, except the indirect one for HEAP_MIN_ALIGN, which the entry points inline
 * (the solo step saves no register, and its misses leave by tail calls). */
static __attribute__((noinline)) void *alloc_direct_min(struct heap *h, size_t size, const void *caller)
{
    return alloc_direct(h, size, HEAP_MIN_ALIGN, caller);
}

/* Plain mode's direct path at HEAP_MIN_ALIGN, through h->direct_alloc: this, or the backend's step,
 * whose misses end here (heap_backend.h). No caller: only hardened reports use it. */
__attribute__((noinline)) void *heap_alloc_direct(struct heap *h, size_t size)
{
    return alloc_direct(h, size, HEAP_MIN_ALIGN, NULL);
}

static __attribute__((noinline)) void *alloc_direct_any(struct heap *h, size_t size, size_t align,
                                                        const void *caller)
{
    return alloc_direct(h, size, align, caller);
}

static inline __attribute__((always_inline)) void *alloc_indirect_min(struct heap *h, size_t size,
                                                                      const void *caller)
{
    return alloc_indirect(h, size, HEAP_MIN_ALIGN, caller);
}

static __attribute__((noinline)) void *alloc_indirect_any(struct heap *h, size_t size, size_t align,
                                                          const void *caller)
{
    return alloc_indirect(h, size, align, caller);
}

/* An allocation of size bytes at align (a power of two >= HEAP_MIN_ALIGN). */
static inline __attribute__((always_inline)) void *alloc_entry(struct heap *h, size_t size, size_t align,
                                                               const void *caller)
{
    bool min = __builtin_constant_p(align) && align == HEAP_MIN_ALIGN;

    if (heap_likely(h->direct)) {
        if (!min)
            return alloc_direct_any(h, size, align, caller);
        /* heap.c's direct path or the backend's step; hardened heaps have no steps, and name the caller */
        return KHEAP_HARDENING ? alloc_direct_min(h, size, caller) : h->direct_alloc(h, size);
    }
    if (min)
        return alloc_indirect_min(h, size, heap_hard_caller(caller));
    return alloc_indirect_any(h, size, align, heap_hard_caller(caller));
}

/* A free with the lock. */
static __attribute__((noinline)) void free_slow(struct heap *h, void *ptr, const void *caller)
{
    unsigned long saved = heap_lock(h);

    heap_hard_set_caller(h, caller);
    free_locked(h, ptr);
    heap_unlock(h, saved);
}

/* The indirect path of a free (ptr not NULL), inline in the entry points: the solo step, the per-CPU
 * step, or locked. Hardened heaps, whose reports name the caller, have no caches. */
static inline __attribute__((always_inline)) void free_indirect(struct heap *h, void *ptr, const void *caller)
{
    const struct heap_cpus *cs = h->solo;

    if (heap_likely(cs != NULL)) {
        unsigned cls;
        struct heap_cpu_mag *m;
        uint32_t n;

        if (heap_unlikely(heap_cpu_is_large(cs, ptr))) {
            solo_free_miss(h, ptr);
            return;
        }
        cls = heap_cpu_small_class(cs, ptr);
        m = heap_cpu_solo_mag(cs, cls);
        n = m->count;
        if (heap_unlikely(n >= m->limit)) {
            solo_flush(h, ptr);
            return;
        }
        m->obj[n] = ptr;
        m->count = n + 1;
        heap_note_free(h, m->size);
        return;
    }
    if (has_caches(h)) {
        cpu_free(h, ptr);
        return;
    }
    free_slow(h, ptr, caller);
}

/* Plain mode's direct path of a free, through h->direct_free: this, or the backend's step. ptr may
 * be NULL (nothing to do): the test is made here and in the steps' slow paths, not by every call. */
static __attribute__((noinline)) void free_direct(struct heap *h, void *ptr)
{
    if (ptr != NULL)
        free_locked(h, ptr);
}

static inline __attribute__((always_inline)) void free_entry(struct heap *h, void *ptr, const void *caller)
{
    if (!KHEAP_HARDENING && heap_likely(h->direct)) {
        h->direct_free(h, ptr); /* NULL too (free_direct) */
        return;
    }
    if (ptr == NULL)
        return;
    if (heap_unlikely(!h->direct)) {
        free_indirect(h, ptr, heap_hard_caller(caller));
        return;
    }
    /* Hardened: no steps; reports name the caller. */
    heap_hard_set_caller(h, caller);
    free_locked(h, ptr);
}

/* Returns a block of at least size bytes aligned to 16, or NULL. */
void *heap_alloc_from(struct heap *h, size_t size, const void *caller)
{
    return alloc_entry(h, size, HEAP_MIN_ALIGN, caller);
}

/* Returns a block of at least size bytes aligned to align (power of two), or NULL. */
void *heap_alloc_aligned_from(struct heap *h, size_t size, size_t align, const void *caller)
{
    if (heap_unlikely(!heap_is_pow2(align))) {
        unsigned long saved = heap_lock(h);
        void *p = fail(h);
        heap_unlock(h, saved);
        return p;
    }
    return alloc_entry(h, size, align < HEAP_MIN_ALIGN ? HEAP_MIN_ALIGN : align, caller);
}

/* Returns a zeroed block of n * size bytes, or NULL on overflow or out of memory. */
void *heap_calloc_from(struct heap *h, size_t n, size_t size, const void *caller)
{
    unsigned long saved = heap_lock(h);
    size_t bytes;
    void *p;

    heap_hard_set_caller(h, caller);
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
    struct heap_hard_block b;
    unsigned long saved;
    size_t total, old;
    void *p;

    if (ptr == NULL)
        return heap_alloc_from(h, size, caller);
    saved = heap_lock(h);
    heap_hard_set_caller(h, caller);
    if (size == 0)
        size = 1;
    if (__builtin_add_overflow(size, HEAP_MIN_ALIGN, &total) || total > HEAP_MAX_REQUEST - HEAP_HARD_TAIL ||
        !heap_hard_accept(h, ptr, &b)) {
        p = fail(h); /* too large, or (hardened) not a healthy live block: leave it alone */
        goto out;
    }
    old = heap_hard_live_size(h, ptr, &b);
    if (h->ops->resize(h, ptr, size + HEAP_HARD_TAIL)) {
        h->counts.bytes_freed += old;
        heap_note_grown(h, heap_hard_resized(h, ptr, &b, size));
        sample_peak_locked(h);
        p = ptr;
        goto out;
    }
    p = alloc_block(h, size, HEAP_MIN_ALIGN);
    if (p != NULL) {
        sample_peak_locked(h); /* both blocks live: the peak of a move */
        __builtin_memcpy(p, ptr, old < size ? old : size);
        release_block(h, ptr, &b);
    }
out:
    heap_unlock(h, saved);
    return p;
}

/* Frees ptr; NULL does nothing. */
void heap_free_from(struct heap *h, void *ptr, const void *caller)
{
    free_entry(h, ptr, caller);
}

/* The entry points without a caller argument report their own caller. noinline keeps the return
 * address that of the user's call even when the compiler could inline these into each other. The two
 * hot ones inline the entry path themselves rather than calling the _from variant: one call less. */
__attribute__((noinline)) void *heap_alloc(struct heap *h, size_t size)
{
    return alloc_entry(h, size, HEAP_MIN_ALIGN, __builtin_return_address(0));
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
    free_entry(h, ptr, __builtin_return_address(0));
}

/* Returns the usable size of ptr's block, 0 for NULL (and, hardened, for a pointer that is not a
 * live block, which is reported). */
size_t heap_usable_size(struct heap *h, const void *ptr)
{
    struct heap_hard_block b;
    unsigned long saved;
    size_t n;

    if (ptr == NULL)
        return 0;
    saved = heap_lock(h);
    heap_hard_set_caller(h, __builtin_return_address(0));
    n = heap_hard_accept(h, (void *)(uintptr_t)ptr, &b) ? heap_hard_live_size(h, ptr, &b) : 0;
    heap_unlock(h, saved);
    return n;
}

/* Returns a snapshot of h's counters. */
struct heap_stats heap_stats(struct heap *h)
{
    unsigned long saved = heap_lock(h);
    struct heap_counters sum = h->counts;
    const struct heap_counters *c = &sum;

    heap_cpu_counters(h, &sum); /* the per-CPU caches' shares, if any */
    struct heap_stats s = {
        .bytes_in_use = heap_counted_in_use(c),
        .bytes_mapped = c->bytes_mapped,
        .peak_in_use = c->peak_in_use,
        .live_allocs = (size_t)(c->total_allocs - c->total_frees),
        .total_allocs = c->total_allocs,
        .total_frees = c->total_frees,
        .failed_allocs = c->failed_allocs,
        .errors_detected = c->errors_detected,
        .pages_released = c->pages_released,
        .pages_reclaimed = c->pages_reclaimed,
    };
    heap_unlock(h, saved);
    return s;
}

/* Returns the number of broken invariants in the backend plus in the front end's counters. */
size_t heap_check(struct heap *h)
{
    unsigned long saved = heap_lock(h);
    struct heap_counters sum = h->counts;
    const struct heap_counters *c = &sum;
    size_t bytes, live, bad;

    heap_cpu_counters(h, &sum); /* the per-CPU caches' shares, if any */
    bytes = heap_counted_in_use(c);
    live = (size_t)(c->total_allocs - c->total_frees);
    heap_hard_set_caller(h, __builtin_return_address(0));
    bad = heap_hard_check(h); /* first: it names a quarantined block the backend only sees as used */
    bad += h->ops->check(h) + heap_cpu_checked(h);
    bad += c->total_frees > c->total_allocs; /* more frees than allocations */
    bad += c->peak_in_use < bytes;
    bad += bytes > c->bytes_mapped; /* also catches more bytes freed than allocated */
    bad += live == 0 && bytes != 0;
    bad += live != 0 && bytes < live; /* >= 1 byte each */
    heap_unlock(h, saved);
    return bad;
}

/* Returns the name of h's backend. */
bool heap_is_arena(const struct heap *h)
{
    return h->ops->arena;
}

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

struct heap_block_info heap_block_info(struct heap *h, const void *ptr)
{
    struct heap_block_info info = {.kind = HEAP_PTR_UNKNOWN};

    if (h == NULL)
        return info;
    unsigned long saved = heap_lock(h);
    heap_hard_describe(h, ptr, &info);
    heap_unlock(h, saved);
    return info;
}

size_t heap_walk(struct heap *h, heap_walk_fn fn, void *ctx)
{
    if (h == NULL || fn == NULL || h->ops->walk == NULL)
        return 0;
    unsigned long saved = heap_lock(h);
    heap_cpu_drain(h); /* cached blocks are free to the user: show them so */
    size_t n = h->ops->walk(h, fn, ctx);
    heap_unlock(h, saved);
    return n;
}
