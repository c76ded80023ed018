/*
 * heap_backend.h - what backends (and only backends and heap.c) see: the common part of every heap
 * instance and small helpers. Users include heap.h only.
 */
#ifndef KHEAP_ALLOC_HEAP_BACKEND_H
#define KHEAP_ALLOC_HEAP_BACKEND_H

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "heap.h"

/*
 * The backend vtable: one const instance per backend (heap_<name>_ops, listed in backends.def). The front end
 * validates every argument, so backends may assume: h is theirs, 0 < size, align is a power of two >=
 * HEAP_MIN_ALIGN, size + align <= HEAP_MAX_REQUEST, and ptr was returned by this heap and is live. Backends
 * never lock, grow or count: the front end does that (a step, below, counts with the front end's helpers).
 */
struct heap_cpu_classes;
struct heap_cpus;

struct heap_ops {
    const char *name; /* "bump", "linked_list", "fixed_size_block" */
    /* Extra bytes, beyond size + align, that a fresh non-adjacent region needs so that one allocation
     * of that size and alignment is guaranteed to fit (region and block headers). */
    size_t grow_overhead;
    /* True for arena-style backends (bump): freed memory is reused only by rolling back the newest
     * block or when every block is free (reset); other backends reuse any freed block. Tests and
     * benchmarks adapt to this property, never to a backend's name. */
    bool arena;
    /* Hardened mode: freed blocks of usable size up to this many bytes keep all of their first span
     * verified by the backend until it hands the memory out again (on reuse, in check(), and before
     * anything overwrites it), except the first HEAP_HARD_KEEP bytes its free() overwrites: the
     * quarantine verifies only those (and its mark) when such a block leaves (heap_hard.h). 0: none
     * (the quarantine verifies the whole span of every leaving block). */
    size_t hard_reuse_verified;
    /* Places the instance at the start of mem and manages the rest. NULL if size is too small, in which
     * case nothing in mem was written. secret: the heap's secret (hardened mode; 0 and unused in
     * plain mode), needed before the common part is filled in because init() builds free lists. */
    struct heap *(*init)(void *mem, size_t size, uint64_t secret);
    /* Returns a block of at least size bytes aligned to align and stores its usable size in *usable,
     * or returns NULL if nothing fits. (Reporting the usable size here and from free() spares the
     * front end a usable_size() call per operation for its statistics.) */
    void *(*alloc)(struct heap *h, size_t size, size_t align, size_t *usable);
    /* Returns ptr's block to the heap; returns the usable size the block had. */
    size_t (*free)(struct heap *h, void *ptr);
    /* Grows or shrinks ptr's block in place to hold size bytes; false (block unchanged) if impossible. */
    bool (*resize)(struct heap *h, void *ptr, size_t size);
    /* Returns how many bytes starting at ptr the caller may use (>= the size it asked for). */
    size_t (*usable_size)(const struct heap *h, const void *ptr);
    /* Hands the heap len more bytes at start (from grow()). A region starting at the current end of
     * the heap must be merged with it. */
    void (*add_memory)(struct heap *h, void *start, size_t len);
    /* Walks the heap's structures and returns the number of broken invariants; 0 = healthy. In
     * hardened mode it also verifies canaries of live blocks and poison of free blocks (reporting). */
    size_t (*check)(const struct heap *h);
    /* Hardened mode (never called in plain mode; plain backends may leave it NULL): classifies ptr (any
     * value) without faulting on memory outside the heap. Returns HEAP_ERR_COUNT (HEAP_BLOCK_OK) if ptr is a
     * live block and stores its usable size in *usable; else HEAP_ERR_DOUBLE_FREE (a free block; *free_site
     * set if known), HEAP_ERR_INVALID_FREE, or HEAP_ERR_CORRUPT_FREELIST when freeing ptr would have to
     * follow a damaged link (the free is then refused). */
    enum heap_error (*validate)(struct heap *h, const void *ptr, size_t *usable, const void **free_site);
    /* Reports the heap's blocks to fn (see heap_walk() in heap.h) until fn returns false; returns the
     * number of entries reported. NULL: the backend cannot be walked (heap_walk() reports nothing). */
    size_t (*walk)(const struct heap *h, heap_walk_fn fn, void *ctx);
    /* Called once by heap_create() when env has release and reclaim (never otherwise): from now on
     * the backend may give pages back with heap_release_pages() and must take them back with
     * heap_reclaim_pages() before it touches them again. It may install a twin of its vtable in h->ops
     * (same name and behaviour) whose entry points also handle released memory, so that the entry
     * points of a heap that never gives memory back test for none (docs/measurements.md). NULL: the
     * backend never gives memory back. */
    void (*release_enable)(struct heap *h);
    /* Per-CPU caches (heap_cpu.h): the size classes the front end may cache per CPU for this backend,
     * or NULL: the backend has none and every operation takes the heap lock (bump, linked_list). */
    const struct heap_cpu_classes *cpu_classes;
    /* The step (optional, both or neither; plain mode only; bump and fixed_size_block have one): a whole
     * heap_alloc(h, size) / heap_free(h, ptr) of a heap on the direct path (no lock, no caches), for a
     * backend whose common case is a few instructions, so that the call, the range check and the indirect
     * call around them would be most of its cost. heap_create() installs them in h->direct_alloc and
     * h->direct_free (heap.c, "The allocation and free entry points").
     * step_alloc takes any size (0 and sizes beyond HEAP_MAX_REQUEST included): it places a block of
     * at least size bytes at HEAP_MIN_ALIGN and counts it (heap_note_alloc) only when it can do so
     * with exactly the result the front end's path would have (a block of the same usable size, as
     * alloc() would place it), and otherwise returns heap_alloc_direct(h, size), that path.
     * step_free frees ptr (a live block, as for free()) and counts it (heap_note_free); ptr may be
     * NULL, which it ignores (heap_free() passes it on, so that the test is off the common path).
     * Steps never lock, grow or report; hardened heaps and heaps with a lock never call them. */
    void *(*step_alloc)(struct heap *h, size_t size);
    void (*step_free)(struct heap *h, void *ptr);
};

/* validate(): ptr is a live block. */
#define HEAP_BLOCK_OK HEAP_ERR_COUNT

/*
 * The common part of a heap. Every backend's instance struct has it as its FIRST member, so a
 * struct heap * converts to the backend's type with container_of (a no-op cast). Backends' init()
 * leaves it zeroed; heap_create() fills it in. Backends never touch it afterwards, but for a step's
 * counters (heap_note_alloc/heap_note_free) and giving memory back (heap_release_pages).
 */
#if KHEAP_HARDENING
#include "heap_quarantine.h"

/* Hardened-mode state of a heap. An embedded heap (fixed_size_block's fallback) reports through
 * its owner, so reports, the secret, the caller and the abort flag are always read from owner. */
struct heap_hard {
    struct heap *owner;       /* the heap users see: itself, or the heap that embeds this one */
    uint64_t secret;          /* keys pointer mangling, cookies and canaries; never 0 */
    const void *caller;       /* return address of the public call in progress (set under the lock) */
    bool abort;               /* a backend found corruption during alloc: fail the call, do not grow */
    struct heap_quarantine q; /* freed blocks held back (heap_quarantine.h); the owner's only */
};
#endif

/*
 * The front end's counters, from which heap_stats() computes a struct heap_stats. They are kept so
 * that an alloc/free pair updates each counter once: bytes_in_use is bytes_allocated - bytes_freed and
 * live_allocs is total_allocs - total_frees (unsigned differences, exact even if a sum wraps). A
 * counter that both alloc and free modify would form a chain of two dependent read-modify-writes per
 * pair through memory (store-to-load forwarding, several cycles each), which is most of the front end's
 * cost on a tight alloc/free loop.
 */
struct heap_counters {
    size_t bytes_allocated; /* usable bytes of every allocation (and in-place growth) so far */
    size_t peak_in_use;
    uint64_t total_allocs;
    size_t bytes_mapped;
    size_t bytes_freed; /* usable bytes of every free (and in-place shrink) so far */
    uint64_t failed_allocs;
    uint64_t total_frees;
    uint64_t errors_detected;
    uint64_t pages_released;
    uint64_t pages_reclaimed;
};

struct heap {
    const struct heap_ops *ops;
    struct heap_env env;
    struct heap_counters counts;
    struct heap_cpus *cpu;  /* per-CPU caches (heap_cpu.h), NULL = none */
    struct heap_cpus *solo; /* h->cpu if it is a solo heap's (no lock: heap_cpu.h), else NULL */
    bool direct;            /* no lock and no caches: the entry points' direct path (heap.c) */
    /* Plain mode: the direct path's allocation at HEAP_MIN_ALIGN and its free, heap.c's or the
     * backend's step (heap_ops.step_alloc). */
    void *(*direct_alloc)(struct heap *h, size_t size);
    void (*direct_free)(struct heap *h, void *ptr);
#if KHEAP_HARDENING
    struct heap_hard hard;
#endif
};

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/*
 * Address arithmetic that cannot wrap. A heap may lie anywhere, the kernel's in the higher half, so
 * `address + alignment` can pass 2^64 even for requests the front end accepts. Two rules keep every
 * backend exact there:
 *   - no heap memory reaches the last HEAP_MIN_ALIGN bytes of the address space: heap_create() and
 *     growth shorten a range that does (heap_clamp_range), so `start + len` of any region, and the
 *     end of any block, is at most HEAP_ADDR_END and never wraps;
 *   - a pointer is aligned by computing the padding to add, heap_pad_to(x, align) (< align, exact for
 *     any x), and comparing it with the room left in the block, never by rounding the address itself
 *     up (which wraps to a small value near the top of the address space).
 * heap_align_up() is for sizes (at most HEAP_MAX_REQUEST plus small constants) and for rounding an
 * address inside a heap up to HEAP_MIN_ALIGN.
 */
#define HEAP_ADDR_END ((uintptr_t)0 - HEAP_MIN_ALIGN)

/* Rounds x up to a multiple of a (a power of two). For sizes; see above for addresses. */
static inline uintptr_t heap_align_up(uintptr_t x, uintptr_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* Bytes to add to address x to reach a multiple of a (a power of two): 0 <= result < a, for any x. */
static inline uintptr_t heap_pad_to(uintptr_t x, uintptr_t a)
{
    return (0 - x) & (a - 1);
}

/* Shortens *len so that [start, start + *len) ends at or below HEAP_ADDR_END (0 if start is above it). */
static inline void heap_clamp_range(const void *start, size_t *len)
{
    uintptr_t s = (uintptr_t)start;

    if (s > HEAP_ADDR_END)
        *len = 0;
    else if (*len > HEAP_ADDR_END - s)
        *len = HEAP_ADDR_END - s;
}

static inline uintptr_t heap_align_down(uintptr_t x, uintptr_t a)
{
    return x & ~(a - 1);
}

static inline bool heap_is_pow2(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

#define heap_likely(x)   __builtin_expect(!!(x), 1)
#define heap_unlikely(x) __builtin_expect(!!(x), 0)

/* The front end's counting (heap.c), shared with the backends' steps (heap_ops.step_alloc). */
static inline size_t heap_counted_in_use(const struct heap_counters *c)
{
    return c->bytes_allocated - c->bytes_freed;
}

/* Counts usable more bytes in use (an allocation, or in-place growth) and updates the peak. */
static inline void heap_note_grown(struct heap *h, size_t usable)
{
    struct heap_counters *c = &h->counts;
    c->bytes_allocated += usable;
    if (heap_unlikely(heap_counted_in_use(c) > c->peak_in_use))
        c->peak_in_use = heap_counted_in_use(c);
}

static inline void heap_note_alloc(struct heap *h, size_t usable)
{
    heap_note_grown(h, usable);
    h->counts.total_allocs++;
}

static inline void heap_note_free(struct heap *h, size_t usable)
{
    h->counts.bytes_freed += usable;
    h->counts.total_frees++;
}

/* Rounds x up to HEAP_PAGE_SIZE, or returns UINTPTR_MAX if that would pass 2^64 (a heap at the top
 * of the address space: the caller then has no page there to give back). */
static inline uintptr_t heap_page_up(uintptr_t x)
{
    return x > UINTPTR_MAX - (HEAP_PAGE_SIZE - 1) ? UINTPTR_MAX : heap_align_up(x, HEAP_PAGE_SIZE);
}

/* heap_page_up(x + off), saturating at UINTPTR_MAX instead of wrapping. */
static inline uintptr_t heap_page_up_off(uintptr_t x, size_t off)
{
    uintptr_t y;

    return __builtin_add_overflow(x, off, &y) ? UINTPTR_MAX : heap_page_up(y);
}

/* Rounds an address down to HEAP_PAGE_SIZE. */
static inline uintptr_t heap_page_down(uintptr_t x)
{
    return heap_align_down(x, HEAP_PAGE_SIZE);
}

/* Plain mode: the front end's direct path of an allocation at HEAP_MIN_ALIGN (no lock, no caches):
 * validation, the backend, growth, the counters. A step's allocation (heap_ops.step_alloc) ends here
 * when its common case does not apply. Returns the block or NULL, as heap_alloc(). */
void *heap_alloc_direct(struct heap *h, size_t size);

/* Gives the pages [lo, hi) (page-aligned; nothing if lo >= hi) back through h's env.release and counts
 * them in h's statistics. For backends that release_enable() enabled. */
void heap_release_pages(struct heap *h, uintptr_t lo, uintptr_t hi);

/* Makes the released pages [lo, hi) usable (zeroed) again through h's env.reclaim and counts them;
 * true on success (also for lo >= hi), false if env refused (nothing changed). */
bool heap_reclaim_pages(struct heap *h, uintptr_t lo, uintptr_t hi);

/* The hardened layer's shared part (constants, key/mangle, reports, poison) and the front end's
 * hooks: empty stubs in the plain build. */
#include "heap_hard.h"

/* The per-CPU cache layer (heap_cpu.h): what heap.c's per-CPU step and the backends' classes use. */
#include "heap_cpu.h"

#endif /* KHEAP_ALLOC_HEAP_BACKEND_H */
