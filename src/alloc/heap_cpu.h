/*
 * heap_cpu.h - per-CPU object caches: the front end's layer that serves small allocations and frees
 * on one CPU without the heap lock (the design, its invariants and its costs: heap_cpu.c's essay).
 *
 * What a backend provides (struct heap_cpu_classes, through heap_ops.cpu_classes), what the front
 * end's per-CPU step (heap.c, "The per-CPU step") does with the inline helpers below, and what the
 * out-of-line part (heap_cpu.c) does under the heap lock: create the caches, drain them, sum their
 * counters, check them. A heap without caches (h->cpu == NULL: a lock but cpu_count < 2 or no
 * cpu_enter, a backend without classes, hardened mode, or too little memory for the caches) never
 * reaches any of this except the one test of h->cpu in the locked slow paths and in the out-of-memory
 * path. A heap without a lock whose backend has no step gets one CPU's cache (solo: no pin, no CPU
 * lock); one whose backend has a step gets none (heap_cpu_create below).
 *
 * Included by heap_backend.h after struct heap is defined; not for users (heap.h is their header).
 */
#ifndef KHEAP_ALLOC_HEAP_CPU_H
#define KHEAP_ALLOC_HEAP_CPU_H

#define HEAP_CPU_SLOTS       32 /* objects one CPU's cache of one class can hold */
#define HEAP_CPU_BATCH_MAX   (HEAP_CPU_SLOTS / 2)
#define HEAP_CPU_BATCH_BYTES 4096 /* a refill or flush moves about this many bytes ... */
#define HEAP_CPU_BATCH_MIN   2    /* ... but at least this many objects */
#define HEAP_CPU_MAX_CLASSES 32   /* most size classes a backend may hand the layer */
#define HEAP_CPU_MAX_SIZE    2048 /* largest classes->max_size the layer takes */
#define HEAP_CPU_LINE        64   /* cache line: every CPU's cache starts on its own */

/*
 * What a backend with per-CPU caches tells the front end about its size classes. The front end caches
 * requests of 1..max_size bytes at HEAP_MIN_ALIGN, by class; every object the backend returns for a
 * request of size[c] bytes must have class c and usable size size[c].
 */
struct heap_cpu_classes {
    unsigned count;         /* classes, <= HEAP_CPU_MAX_CLASSES */
    size_t max_size;        /* largest request cached (a multiple of 16) */
    const uint8_t *of_size; /* of_size[(size - 1) / 16]: the class of a request of 1 <= size <= max_size */
    const uint16_t *size;   /* size[c]: the usable size of every object of class c */
    /* The class of a live block, found from its pointer alone, without the heap lock and without a
     * call (heap_cpu_class_of): a block whose address is a multiple of large_align has no class (a
     * large block); any other lies in a slab_size-aligned slab whose header holds the block's class as
     * a uint16_t at class_offset. Only what stays fixed while the block is live is read. */
    uintptr_t large_align; /* a power of two */
    uintptr_t slab_size;   /* a power of two */
    size_t class_offset;
    /* heap_check(): true if ptr is an allocated object of class cls of h (a live block to the
     * backend), found from the backend's own structures without trusting ptr. Heap lock held. */
    bool (*holds)(const struct heap *h, const void *ptr, unsigned cls);
    /* The caches' refill and flush (heap.c: the solo step, cpu_refill, cpu_flush), one backend call
     * per batch, under the heap lock when there is one: alloc_batch
     * stores up to n (>= 1) objects of class cls in out[0..n) and returns how many -- 0 only if the
     * backend has no memory for one without growing (the caller then takes the allocation's general
     * path, which grows the heap); it creates at most one slab and is O(n). free_batch gives the n
     * small objects objs[0..n) (each one allocated by the backend, none twice) back to the backend;
     * O(n). Neither counts anything in the front end's counters. */
    uint32_t (*alloc_batch)(struct heap *h, unsigned cls, void **restrict out, uint32_t n);
    void (*free_batch)(struct heap *h, void *const *objs, uint32_t n);
};

/* One CPU's cache of one class: a stack, obj[count - 1] the most recently freed object. */
struct heap_cpu_mag {
    uint32_t count; /* objects held, <= limit */
    uint16_t limit; /* 2 * batch <= HEAP_CPU_SLOTS: full (heap_cpu_batch: a refill brings and a
                     * flush takes away batch objects) */
    uint16_t size;  /* classes->size[c]: the usable size the counters count, on the count's line */
    void *obj[HEAP_CPU_SLOTS];
};
_Static_assert(HEAP_CPU_SLOTS <= UINT16_MAX, "a limit fits the magazine's field");

/* The batch of magazine m: half its room. */
static inline uint32_t heap_cpu_batch(const struct heap_cpu_mag *m)
{
    return m->limit / 2u;
}

/* One CPU's share of the front end's counters (struct heap_counters): summed by heap_stats(). Only
 * the owner writes them (under its CPU lock), with relaxed atomic stores, so that a refill may read
 * them without that lock to sample the peak (plain loads and stores on x86). */
struct heap_cpu_counters {
    uint64_t total_allocs;
    uint64_t total_frees;
    size_t bytes_allocated;
    size_t bytes_freed;
};

/* One CPU's cache: its lock, its counters, one heap_cpu_mag per class. Starts on a cache line of its
 * own and spans a multiple of HEAP_CPU_LINE bytes (struct heap_cpus.stride). */
struct heap_cpu {
    uint32_t lock; /* 0 free, 1 held: the owner around every use, others only to drain or read */
    struct heap_cpu_counters counts;
    struct heap_cpu_mag mag[]; /* classes->count of them */
};

/* The per-CPU area, allocated from the backend at heap_create: this header (read-only after create,
 * except peak_in_use, which only heap_stats/heap_check write), then count CPU caches. */
struct heap_cpus {
    unsigned count;       /* CPUs with a cache: min(cpu_count, HEAP_MAX_CPUS), 1 if solo */
    bool solo;            /* a heap without a lock: one CPU, no pin, no CPU lock (heap_cpu.c) */
    unsigned nclasses;    /* classes->count, and the classes' fields the fast */
    size_t max_size;      /* path reads, copied here: no pointer chase to */
    const uint16_t *size; /* reach them */
    uintptr_t large_mask; /* classes->large_align - 1 */
    uintptr_t slab_mask;  /* ~(classes->slab_size - 1) */
    size_t class_offset;
    size_t stride;                          /* bytes per struct heap_cpu */
    const struct heap_cpu_classes *classes; /* the backend's */
    void *ctx;                              /* env.ctx, env.cpu_enter, env.cpu_exit: one line away */
    unsigned (*enter)(void *ctx, unsigned long *saved);
    void (*exit)(void *ctx, unsigned long saved);
    unsigned char *first; /* CPU 0's struct heap_cpu (HEAP_CPU_LINE aligned) */
    /* classes->of_size copied (heap_cpu_size_class), one load from the header rather than two. */
    uint8_t of_size[HEAP_CPU_MAX_SIZE / 16];
    /* The highest summed bytes_in_use seen (heap.h): written under the heap lock by refills, heap_stats
     * and heap_check, on a line of its own so that the fast path's reads of the fields above stay
     * hits. */
    _Alignas(HEAP_CPU_LINE) size_t peak_in_use;
};

_Static_assert(HEAP_CPU_SLOTS >= 2 * HEAP_CPU_BATCH_MAX && HEAP_CPU_BATCH_MIN >= 1 &&
                   HEAP_CPU_BATCH_MIN <= HEAP_CPU_BATCH_MAX,
               "a cache holds two batches");
_Static_assert(HEAP_MAX_CPUS >= 2, "a locked heap has per-CPU caches only with two CPUs");

/* ---- the owner's fast path (heap.c) ---- */

/* True if live block ptr has no class (a large block: classes->large_align). */
static inline bool heap_cpu_is_large(const struct heap_cpus *cs, const void *ptr)
{
    return ((uintptr_t)ptr & cs->large_mask) == 0;
}

/* The class of a request of size bytes, 1 <= size <= cs->max_size. Indexed by size - 1, which the
 * entry points' range test (size - 1 < max_size) has computed. */
static inline unsigned heap_cpu_size_class(const struct heap_cpus *cs, size_t size)
{
    return cs->of_size[(size - 1) / 16];
}

/* The class of live block ptr, which is not large: read from its slab (classes->class_offset). */
static inline unsigned heap_cpu_small_class(const struct heap_cpus *cs, const void *ptr)
{
    return *(const uint16_t *)(void *)(((uintptr_t)ptr & cs->slab_mask) + cs->class_offset);
}

/* The class of live block ptr, or cs->nclasses if it has none. */
static inline unsigned heap_cpu_class_of(const struct heap_cpus *cs, const void *ptr)
{
    if (heap_unlikely(heap_cpu_is_large(cs, ptr)))
        return cs->nclasses;
    return heap_cpu_small_class(cs, ptr);
}

/* Where CPU 0's cache starts: right after the header, on the next cache line (cs->first). A constant,
 * so the solo step reaches its magazine without loading cs->first. */
#define HEAP_CPU_HEAD ((sizeof(struct heap_cpus) + HEAP_CPU_LINE - 1) / HEAP_CPU_LINE * HEAP_CPU_LINE)

/* CPU 0's cache of class cls: a solo heap's only one (no pin, no CPU lock: the heap is
 * single-threaded). */
static inline struct heap_cpu_mag *heap_cpu_solo_mag(const struct heap_cpus *cs, unsigned cls)
{
    return &((struct heap_cpu *)(void *)((unsigned char *)(uintptr_t)cs + HEAP_CPU_HEAD))->mag[cls];
}

/* Pins the caller to its CPU (env.cpu_enter) and returns that CPU's cache, or NULL if the index is
 * not one of the caches' (a CPU beyond HEAP_MAX_CPUS, or a broken environment): the caller then
 * takes the locked path. Always pair with heap_cpu_unpin(cs, *saved). */
static inline struct heap_cpu *heap_cpu_pin(const struct heap_cpus *cs, unsigned long *saved)
{
    unsigned i = cs->enter(cs->ctx, saved);

    if (heap_unlikely(i >= cs->count))
        return NULL;
    return (struct heap_cpu *)(void *)(cs->first + (size_t)i * cs->stride);
}

static inline void heap_cpu_unpin(const struct heap_cpus *cs, unsigned long saved)
{
    cs->exit(cs->ctx, saved);
}

static inline void heap_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Takes CPU cache c's lock. Uncontended unless another CPU drains or reads c (heap_cpu.c). */
static inline void heap_cpu_lock(struct heap_cpu *c)
{
    while (heap_unlikely(__atomic_exchange_n(&c->lock, 1, __ATOMIC_ACQUIRE) != 0))
        while (__atomic_load_n(&c->lock, __ATOMIC_RELAXED) != 0)
            heap_cpu_relax();
}

static inline void heap_cpu_unlock(struct heap_cpu *c)
{
    __atomic_store_n(&c->lock, 0, __ATOMIC_RELEASE);
}

/* The most recently freed object of class cls in c, taken out; NULL if c holds none. c locked. */
static inline void *heap_cpu_pop(struct heap_cpu *c, unsigned cls)
{
    struct heap_cpu_mag *m = &c->mag[cls];

    return heap_likely(m->count != 0) ? m->obj[--m->count] : NULL;
}

/* Keeps object p of class cls in c; false if c's cache of cls is full (2 * batch). c locked. */
static inline bool heap_cpu_push(struct heap_cpu *c, unsigned cls, void *p)
{
    struct heap_cpu_mag *m = &c->mag[cls];

    if (heap_unlikely(m->count >= m->limit))
        return false;
    m->obj[m->count++] = p;
    return true;
}

/* Counts a user's allocation / free of usable bytes on c. c locked. */
static inline void heap_cpu_count_alloc(struct heap_cpu *c, size_t usable)
{
    __atomic_store_n(&c->counts.total_allocs, c->counts.total_allocs + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&c->counts.bytes_allocated, c->counts.bytes_allocated + usable, __ATOMIC_RELAXED);
}

static inline void heap_cpu_count_free(struct heap_cpu *c, size_t usable)
{
    __atomic_store_n(&c->counts.total_frees, c->counts.total_frees + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&c->counts.bytes_freed, c->counts.bytes_freed + usable, __ATOMIC_RELAXED);
}

/* ---- under the heap lock (heap_cpu.c) ---- */

/* heap_create(): gives h per-CPU caches if the backend has classes (at most HEAP_CPU_MAX_CLASSES,
 * for requests up to HEAP_CPU_MAX_SIZE bytes), the library is plain (hardened heaps take the lock for
 * everything: heap.h) and either env asks for them (cpu_count >= 2, cpu_enter and cpu_exit set, a
 * lock installed) or h has no lock, does not give memory back (env.release) and its backend has no
 * step (heap_ops.step_alloc, which serves such a heap from the slabs directly): then h is
 * single-threaded and gets one CPU's cache, used without pin or CPU lock (solo; the heap's own
 * counters count its operations, so its stats stay exact, peak included). A heap without a lock that
 * gives memory back gets none: its frees reach the slabs at once, so that a heap with no live block
 * holds no more than the backend keeps (docs/memory.md's bound). The area comes from the backend (not
 * counted in the stats); if it has no room h simply gets none. Sets h->cpu (NULL: none). */
void heap_cpu_create(struct heap *h);

/* Moves the oldest batch of c's objects of class cls into out (room for HEAP_CPU_BATCH_MAX) and
 * returns how many: the flush of a full cache. c locked. */
uint32_t heap_cpu_take_batch(struct heap_cpu *c, unsigned cls, void **out);

/* Memory pressure or memory going back: gives every object in every CPU's cache back to the backend
 * (heap lock held; takes each CPU's lock in turn, never two at once). Returns true if any object was
 * given back, false if there were none (or h has no caches): retrying an allocation is pointless. */
bool heap_cpu_drain_all(struct heap *h);

/* A refill (heap lock held): raises the sampled peak to the bytes in use now, read without the CPUs'
 * locks: every CPU's allocated bytes first, then every CPU's freed bytes, so the sum never exceeds
 * what was really in use at one moment (a lower bound, never a peak that did not happen). */
void heap_cpu_sample_peak(struct heap *h);

/* Adds every CPU's counters to *c and sets c->peak_in_use to the highest summed bytes in use seen,
 * this sum included (heap lock held). Nothing for a solo heap, whose operations the heap's own
 * counters count. */
void heap_cpu_sum(struct heap *h, struct heap_counters *c);

/* heap_check(): the caches' invariants (heap_cpu.c's essay); returns how many are broken. */
size_t heap_cpu_check(struct heap *h);

/* The same three for callers that do not know whether h has caches: nothing when it has none. */
static inline bool heap_cpu_drain(struct heap *h)
{
    return heap_unlikely(h->cpu != NULL) && heap_cpu_drain_all(h);
}

static inline void heap_cpu_counters(struct heap *h, struct heap_counters *c)
{
    if (h->cpu != NULL)
        heap_cpu_sum(h, c);
}

static inline size_t heap_cpu_checked(struct heap *h)
{
    return h->cpu != NULL ? heap_cpu_check(h) : 0;
}

#endif /* KHEAP_ALLOC_HEAP_CPU_H */
