/*
 * heap_cpu.c - per-CPU object caches (heap_cpu.h): small kmalloc/kfree without the heap lock.
 *
 * How it works
 * ------------
 * With several CPUs every heap operation used to take the one heap lock, and its cache line and the
 * backend's free lists bounced between CPUs. The front end now keeps, per CPU and per size class of
 * the backend (fixed_size_block's 22 classes, 16 to 2048 bytes), a small stack of free objects
 * (struct heap_cpu_mag): a small kmalloc pops from it, a small kfree pushes onto it, on the CPU the
 * caller runs on, and neither takes the heap lock nor writes a cache line another CPU uses in the
 * common case. This is Bonwick and Adams' magazine layer ("Magazines and Vmem", 2001) in the form
 * Linux SLAB's array_cache gave it: one array of two magazines' room per CPU and class instead of a
 * loaded and a previous magazine, and no depot:
 *
 *   heap_cpus header (read-only)  CPU 0's cache (64-byte aligned)         CPU 1's cache ...
 *   +-------------------------+   +------+----------+--------------------+---
 *   | count, stride, classes, |   | lock | counters | mag[0] ... mag[23] |
 *   | enter/exit, first, peak |   +------+----------+--------------------+---
 *   +-------------------------+     mag[c] = { count, limit, size, obj[32] }, obj[count - 1] the newest
 *
 *   - alloc of class c: pop mag[c]. Empty: refill -- take the heap lock, have the backend allocate
 *     `batch` objects of class c (one for the caller, the rest into mag[c]), release the lock.
 *   - free of a class-c object: push onto mag[c]. Full (2 * batch): flush -- take the heap lock,
 *     give the oldest `batch` objects back to the backend, keep the newest and the one being freed.
 * After a refill or a flush a CPU's mag[c] holds about batch objects, so at least batch further
 * operations of that class on that CPU pass before the next one takes the heap lock, whatever mix of
 * allocations and frees they are: Bonwick's guarantee for the loaded/previous pair, here from the
 * array's two halves. batch = HEAP_CPU_BATCH_BYTES / size clamped to [2, 16] objects: 16 for 16..256
 * byte classes, 2 for 2048; a magazine keeps limit = 2 * batch (its full mark, one compare on the
 * free path) and its class's size (what the counters count) next to its count. A refill is one
 * backend call under the lock, heap_cpu_classes.alloc_batch (fixed_size_block takes a run of its head
 * partial slab at once), and so is a flush, free_batch (each object back by the backend's free fast
 * path). A depot would let a flush hand a full magazine to another CPU in O(1); this needs no
 * magazine allocation that could fail.
 *
 * Objects belong to no CPU. A block allocated on one CPU and freed on another (a remote free) lands
 * in the freeing CPU's cache and is reused from there; the backend never learns where it came from.
 * Nothing is stranded, because objects leave a cache in three ways besides being reallocated: a
 * flush, which returns them to their slabs; memory pressure -- when the backend finds no memory for
 * a request and growing the heap does not help, the front end drains every CPU's cache into the
 * backend (heap_cpu_drain_all), where they free slabs and coalesce, and retries before it fails (a
 * growing heap may thus grow by up to what the caches hold instead); and giving memory back
 * -- when a free or flush made the backend release pages (env.release), every cache is drained too,
 * so a burst freed on several CPUs comes back as far as without caches. What the caches hold at most:
 * 2 * batch objects per class per CPU, about 140 KiB per CPU for fixed_size_block if every class is
 * full, none of it counted in bytes_in_use (to the user it is free, to the backend allocated).
 *
 * Locking. Each CPU's cache has a lock of its own (a test-and-set spin lock in its first word, on its
 * own cache line): the CPU takes it around every pop or push (an uncontended atomic exchange on a
 * line nobody else writes), and others take it only to drain the cache, sum its counters (heap_stats)
 * or check it (heap_check). Order: the heap lock before a CPU lock; nobody waits for anything while
 * holding a CPU lock except heap_check, which (heap lock held) takes all of them in index order so
 * that no object moves between two caches while it compares them; no callback runs inside a CPU lock
 * except the backend's free during a drain. So a drainer waits at most for one pop or push. env.cpu_enter
 * pins the caller to its CPU for the pop or push; the fast path leaves that pin (cpu_exit) before it waits
 * for the heap lock and pins again under it, so no CPU ever spins on the heap lock while pinned (in the
 * kernel: with interrupts off on its own account).
 *
 * Counters: every CPU counts the allocations and frees it serves (struct heap_cpu_counters, under
 * its lock); heap_stats() adds them to the heap's own counters, so every count is exact once the
 * calls in progress returned. peak_in_use is the exception: no CPU sees the others' counts on its
 * fast path, so the peak is sampled -- at every refill (when in-use memory grows by a batch) and
 * every heap_stats() or heap_check() -- and may miss what the CPUs took from their caches since
 * their last refill: it lies between the true peak minus the caches' capacity and the true peak.
 *
 * Invariants (heap_cpu_check): each cache's count <= limit = 2 * batch, batch in [HEAP_CPU_BATCH_MIN,
 * HEAP_CPU_BATCH_MAX]; every cached object is an allocated object of its class in the backend
 * (classes->holds: for fixed_size_block inside a live slab of that class, on an object boundary,
 * carved and not on the slab's free list, so cached objects are counted in the slab's inuse), and it
 * appears in one cache slot only; the summed counters satisfy the front end's own checks.
 *
 * One CPU without a lock (solo). A heap created without a lock is single-threaded by contract
 * (heap.h), so it is one CPU that never needs pinning or a CPU lock: it gets this layer with one
 * cache (cs->solo, h->solo) -- unless its backend has a step (heap_ops.step_alloc), which serves it
 * from the slabs directly and beats any magazine there (fixed_size_block.c, "The step": workload k
 * 52.6 -> 32.1 instructions per operation when it came); then it gets no cache and takes the direct
 * path. The front end's entry points pop and push CPU 0's magazine inline (heap.c, "The solo step")
 * and count in the heap's own counters, so its statistics, the peak included, are as exact as
 * without caches. Its misses move one batch in one backend call (heap_cpu_classes.alloc_batch /
 * free_batch; the backend's loop, not the front end's entry per object): an allocation that finds
 * the magazine empty has it refilled with up to batch objects
 * (fixed_size_block takes a run of its head partial slab at once and never makes a second slab for
 * a refill), a free that finds it full (2 * batch) gives its newer half back, each object by the
 * backend's free fast path, and keeps the one being freed. Neither counts anything: the objects
 * cached stay free to the user, exactly as in a locked heap's caches. (A first version refilled and
 * flushed through the entry points' per-object backend calls, which cost more than it saved; a
 * second sent every miss to the backend one object at a time, so that a burst longer than the
 * magazine paid the solo tests on top of the backend's path: workload k 71.5 instructions per
 * operation, 53.1 with batches, docs/measurements.md.) Everything else --
 * draining under memory pressure, heap_check()'s checks of every cached object -- is the same
 * code (its enter/exit are stubs that pin CPU 0, never called by the solo step). A solo
 * heap that gives memory back (env.release) gets no cache: its frees must reach the slabs so that
 * an empty heap holds only what the backend keeps (docs/memory.md). heap_check() also verifies that
 * a solo heap has one cache whose counters stay zero.
 *
 * Hardened heaps get no caches: like SLUB's debug caches they are diverted to the locked path, where
 * every free is validated against the backend's state, so a double free through two CPUs is caught
 * exactly as on one (heap.h, docs/hardening.md). Backends without classes (bump, an arena;
 * linked_list) get none either.
 *
 * Complexity: pop and push O(1); refill and flush O(batch) backend calls (a solo heap's: one call,
 * O(batch) inside); drain O(cached objects);
 * check O(cached objects x (slabs + objects per slab)), a diagnostic.
 */
#include "heap_backend.h"

/* The batch of class size size. */
static uint32_t batch_of(size_t size)
{
    size_t b = HEAP_CPU_BATCH_BYTES / size;

    if (b < HEAP_CPU_BATCH_MIN)
        b = HEAP_CPU_BATCH_MIN;
    return b > HEAP_CPU_BATCH_MAX ? HEAP_CPU_BATCH_MAX : (uint32_t)b;
}

static struct heap_cpu *cpu_at(const struct heap_cpus *cs, unsigned i)
{
    return (struct heap_cpu *)(void *)(cs->first + (size_t)i * cs->stride);
}

/* A solo heap's "pin" for the refill and flush paths, which it shares with the locked heaps: the
 * heap is single-threaded, so it is always on CPU 0. */
static unsigned solo_enter(void *ctx, unsigned long *saved)
{
    (void)ctx;
    *saved = 0;
    return 0;
}

static void solo_exit(void *ctx, unsigned long saved)
{
    (void)ctx;
    (void)saved;
}

void heap_cpu_create(struct heap *h)
{
    const struct heap_cpu_classes *cl = h->ops->cpu_classes;
    const struct heap_env *env = &h->env;
    unsigned n = env->cpu_count < HEAP_MAX_CPUS ? env->cpu_count : HEAP_MAX_CPUS;
    size_t head = HEAP_CPU_HEAD, stride, bytes, usable;
    struct heap_cpus *cs;

    bool solo = env->lock == NULL;

    h->cpu = NULL;
    if (KHEAP_HARDENING || cl == NULL || cl->count == 0 || cl->count > HEAP_CPU_MAX_CLASSES ||
        cl->max_size > HEAP_CPU_MAX_SIZE)
        return;
    if (solo && h->ops->release_enable != NULL && env->release != NULL && env->reclaim != NULL)
        return; /* a solo heap that gives memory back frees straight to its slabs (heap_cpu.h) */
    if (solo && h->ops->step_alloc != NULL)
        return; /* the backend's step serves a heap without a lock from its slabs directly */
    if (solo)
        n = 1; /* no lock: single-threaded, one CPU */
    else if (n < 2 || env->cpu_enter == NULL || env->cpu_exit == NULL)
        return;
    stride = heap_align_up(sizeof(struct heap_cpu) + cl->count * sizeof(struct heap_cpu_mag), HEAP_CPU_LINE);
    bytes = head + n * stride; /* small: at most 64 CPUs x 32 classes x 264 bytes */
    cs = h->ops->alloc(h, bytes, HEAP_CPU_LINE, &usable);
    if (cs == NULL)
        return;
    __builtin_memset(cs, 0, bytes);
    cs->count = n;
    cs->nclasses = cl->count;
    cs->max_size = cl->max_size;
    __builtin_memcpy(cs->of_size, cl->of_size, cl->max_size / 16);
    cs->size = cl->size;
    cs->large_mask = cl->large_align - 1;
    cs->slab_mask = ~(cl->slab_size - 1);
    cs->class_offset = cl->class_offset;
    cs->stride = stride;
    cs->classes = cl;
    cs->solo = solo;
    cs->ctx = env->ctx;
    cs->enter = solo ? solo_enter : env->cpu_enter;
    cs->exit = solo ? solo_exit : env->cpu_exit;
    cs->first = (unsigned char *)cs + head;
    for (unsigned i = 0; i < n; i++)
        for (unsigned c = 0; c < cl->count; c++) {
            cpu_at(cs, i)->mag[c].limit = (uint16_t)(2 * batch_of(cl->size[c]));
            cpu_at(cs, i)->mag[c].size = cl->size[c];
        }
    h->cpu = cs;
}

uint32_t heap_cpu_take_batch(struct heap_cpu *c, unsigned cls, void **out)
{
    struct heap_cpu_mag *m = &c->mag[cls];
    uint32_t n = heap_cpu_batch(m) < m->count ? heap_cpu_batch(m) : m->count;

    for (uint32_t i = 0; i < n; i++)
        out[i] = m->obj[i];
    for (uint32_t i = n; i < m->count; i++)
        m->obj[i - n] = m->obj[i];
    m->count -= n;
    return n;
}

bool heap_cpu_drain_all(struct heap *h)
{
    struct heap_cpus *cs = h->cpu;
    bool any = false;

    for (unsigned i = 0; i < cs->count; i++) {
        struct heap_cpu *c = cpu_at(cs, i);

        heap_cpu_lock(c);
        for (unsigned k = 0; k < cs->classes->count; k++) {
            struct heap_cpu_mag *m = &c->mag[k];
            for (uint32_t j = 0; j < m->count; j++)
                h->ops->free(h, m->obj[j]);
            any = any || m->count != 0;
            m->count = 0;
        }
        heap_cpu_unlock(c);
    }
    return any;
}

void heap_cpu_sum(struct heap *h, struct heap_counters *sum)
{
    struct heap_cpus *cs = h->cpu;
    size_t in_use;

    if (cs->solo)
        return; /* the heap's own counters count everything, the peak exactly */
    for (unsigned i = 0; i < cs->count; i++) {
        struct heap_cpu *c = cpu_at(cs, i);

        heap_cpu_lock(c);
        sum->total_allocs += c->counts.total_allocs;
        sum->total_frees += c->counts.total_frees;
        sum->bytes_allocated += c->counts.bytes_allocated;
        sum->bytes_freed += c->counts.bytes_freed;
        heap_cpu_unlock(c);
    }
    /* The heap's own peak counts only the locked operations: meaningless once the CPUs count too. */
    in_use = sum->bytes_allocated - sum->bytes_freed;
    if (in_use > cs->peak_in_use)
        cs->peak_in_use = in_use;
    sum->peak_in_use = cs->peak_in_use;
}

void heap_cpu_sample_peak(struct heap *h)
{
    struct heap_cpus *cs = h->cpu;
    size_t allocated = h->counts.bytes_allocated, freed = h->counts.bytes_freed;

    if (cs->solo)
        return; /* the heap's own peak is exact */
    for (unsigned i = 0; i < cs->count; i++)
        allocated += __atomic_load_n(&cpu_at(cs, i)->counts.bytes_allocated, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < cs->count; i++)
        freed += __atomic_load_n(&cpu_at(cs, i)->counts.bytes_freed, __ATOMIC_RELAXED);
    if (allocated - freed > cs->peak_in_use && allocated >= freed)
        cs->peak_in_use = allocated - freed;
}

/* Number of slots before (cpu i, slot j of class k) that hold p: 0 if p appears there first. */
static size_t earlier_copies(const struct heap_cpus *cs, unsigned i, unsigned k, uint32_t j, const void *p)
{
    size_t n = 0;

    for (unsigned a = 0; a <= i; a++) {
        const struct heap_cpu_mag *m = &cpu_at(cs, a)->mag[k];
        uint32_t end = a == i ? j : m->count;
        for (uint32_t b = 0; b < end && b < HEAP_CPU_SLOTS; b++)
            n += m->obj[b] == p;
    }
    return n;
}

size_t heap_cpu_check(struct heap *h)
{
    struct heap_cpus *cs = h->cpu;
    const struct heap_cpu_classes *cl = cs->classes;
    size_t bad = 0;

    /* Every CPU lock is taken, in index order, for the whole check: a pop on one CPU and a push of
     * the same object on another must not make it appear twice, or not at all. (The heap lock, held,
     * keeps every other drainer out; owners never wait while holding their lock.) */
    for (unsigned i = 0; i < cs->count; i++)
        heap_cpu_lock(cpu_at(cs, i));
    for (unsigned i = 0; i < cs->count; i++) {
        const struct heap_cpu *c = cpu_at(cs, i);
        for (unsigned k = 0; k < cl->count; k++) {
            const struct heap_cpu_mag *m = &c->mag[k];
            if (m->limit < 2 * HEAP_CPU_BATCH_MIN || m->limit > 2 * HEAP_CPU_BATCH_MAX || m->limit % 2 != 0 ||
                m->count > m->limit) {
                bad++;
                continue;
            }
            for (uint32_t j = 0; j < m->count; j++) {
                bad += !cl->holds(h, m->obj[j], k);
                bad += earlier_copies(cs, i, k, j, m->obj[j]) != 0;
            }
        }
    }
    for (unsigned i = cs->count; i-- > 0;)
        heap_cpu_unlock(cpu_at(cs, i));
    /* A solo heap has one cache and counts in the heap's counters: its CPU's stay zero. */
    if (cs->solo) {
        const struct heap_cpu_counters *k = &cpu_at(cs, 0)->counts;
        bad += cs->count != 1;
        bad += k->total_allocs != 0 || k->total_frees != 0 || k->bytes_allocated != 0 || k->bytes_freed != 0;
    }
    return bad;
}
