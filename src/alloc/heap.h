/*
 * heap.h - the kheap allocator interface and its specification.
 *
 * One front end (heap.c) serves several interchangeable backends ("bump", "linked_list",
 * "fixed_size_block"). A heap lives inside the memory it manages: heap_create() places the backend's
 * instance at the start of the range it is given (hardened mode with the quarantine on: after the
 * quarantine's ring, 16 bytes per quarantine_blocks entry, 4 KiB by default). The library is freestanding: it
 * needs no libc and learns about the outside world only through struct heap_env.
 *
 * Guarantees (all backends, all entry points):
 *   - Every non-NULL pointer returned is aligned to at least HEAP_MIN_ALIGN (16) bytes, and to the
 *     requested alignment for heap_alloc_aligned().
 *   - Size 0 is treated as size 1: the call returns a unique minimum-size block which must be freed
 *     like any other (glibc behaviour). This includes heap_realloc(ptr, 0), which shrinks ptr to a
 *     minimum-size block instead of freeing it.
 *   - NULL is returned, the heap is left unchanged and stats.failed_allocs is incremented when:
 *       * the request, after adding alignment slack, exceeds HEAP_MAX_REQUEST (this covers every size
 *         whose rounding or header arithmetic would overflow, e.g. SIZE_MAX, SIZE_MAX - 4096,
 *         SIZE_MAX / 2 + 1), or heap_calloc()'s n * size overflows;
 *       * the alignment of heap_alloc_aligned() is 0 or not a power of two;
 *       * the backend has no fitting block and env.grow is NULL, refuses, or after HEAP_GROW_TRIES
 *         rounds of growth still no block fits.
 *     The library never panics or aborts on out-of-memory.
 *   - Failed heap_realloc() returns NULL and leaves the old block allocated and unchanged.
 *
 * Thread and interrupt safety: every public operation runs between env.lock() and env.unlock(), and
 * nothing else -- except, on a heap with per-CPU caches, small allocations and frees served by the
 * calling CPU's cache (below). With env.lock == NULL the heap is single-threaded. env.grow() is
 * called WITH the lock held, so grow() must not call back into the same heap (in the kernel it maps
 * fresh frames at the end of the heap region, which takes no heap lock).
 *
 * A heap without a lock (single-threaded) that does not give memory back gets the same cache for one
 * CPU (solo, heap_cpu.h) if its backend has no step: the same classes and blocks as below, no pin and
 * no CPU lock, counted in the heap's own counters, so its stats are exact, peak_in_use included; its
 * cache memory comes from the heap as below (a heap too small for it gets none). A backend with a
 * step (fixed_size_block, bump) serves such a heap itself, without a cache (heap_backend.h).
 *
 * Per-CPU caches (env.cpu_count >= 2 with cpu_enter, cpu_exit and a lock; design: heap_cpu.c):
 *   - which backend does what: fixed_size_block caches requests of 1..2048 bytes at alignment <= 16
 *     (its size classes) per CPU: such a heap_alloc/kmalloc and the heap_free/kfree of such a block
 *     take no heap lock and write no cache line shared with another CPU in the common case; a cache
 *     miss (empty or full) takes the lock once per batch of 2..16 objects. Everything else (large
 *     blocks, aligned requests, calloc, realloc, usable_size, stats, check, walk) takes the lock as
 *     before. bump (an arena) and linked_list have no caches and ignore these fields: every
 *     operation takes the lock, correct on any number of CPUs.
 *   - hardened heaps (KHEAP_HARDENING=1) get no caches, like SLUB's debug caches: every operation
 *     takes the lock, so every check -- a double free through two CPUs included -- works as on one.
 *   - a block may be freed on another CPU than the one that allocated it. Cached blocks are free to
 *     the user and allocated to the backend: heap_walk() first gives them back, so it shows them
 *     free (and heap_check() checks them where they are). They are
 *     given back to the backend when memory runs short (before an allocation fails, after growth
 *     could not help) and whenever a free makes the heap give pages back (env.release).
 *   - a cpu_enter() index >= min(cpu_count, HEAP_MAX_CPUS) is served by the locked path.
 *   - the heap never calls env.lock() between cpu_enter() and cpu_exit() (a cache miss leaves the
 *     pin, takes the lock, pins again); cpu_enter/cpu_exit may be called with the lock held.
 *   - stats are exact when no call is in progress (per-CPU counters summed by heap_stats()), except
 *     peak_in_use, which is sampled (at every cache refill, every allocation through the lock -- a
 *     large or aligned block -- and every heap_stats/heap_check) and may miss up to what the caches
 *     hold; heap_check() also checks every cached block.
 *   - the caches' memory (about 6.5 KiB per CPU) comes from the heap at heap_create(), uncounted in
 *     the stats; a heap too small for it gets no caches.
 *
 * Undefined behaviour in plain mode (not detected): freeing or resizing a pointer that did not come
 * from this heap or was already freed; writing outside a block (heap_check() usually notices
 * afterwards); using a heap after its memory was reused; concurrent use without lock callbacks.
 *
 * Hardened mode (KHEAP_HARDENING=1; docs/hardening.md): same API and results for correct programs,
 * plus detection, for every backend, of double free and invalid free (interior, foreign, stack
 * pointers: checked before anything is read through them; a pointer into memory the heap holds as
 * free is a double free, any other pointer that is not a live block an invalid free -- decided from
 * the heap's own state, never from bytes the user stored), use-after-free writes (freed memory is
 * poisoned with HEAP_POISON_FREE over its first 2 KiB and verified when reused and by heap_check();
 * what a backend keeps in a freed block, links and free site, is mangled and validated too),
 * overflow past the REQUESTED size (a keyed canary right after it, verified on free, realloc,
 * usable_size and heap_check()), and corrupted free lists (links stored mangled with the secret and
 * their own address, validated before use). bump and linked_list seal their headers, and
 * fixed_size_block its slab headers (a keyed checksum over the sizes, counts, flags and links that
 * guard memory, checked before use; linked_list also
 * cross-checks boundary tags against the neighbours' sealed headers and tags its tree links) and
 * keep a freed block's span verified after coalescing; heap_check() reports every broken invariant
 * it finds through env.report and never follows unvalidated metadata (docs/hardening.md). Fresh blocks are
 * filled with HEAP_POISON_ALLOC (calloc still zeroes). Each detection calls env.report (lock held) and
 * increments stats.errors_detected. If report returns, or is NULL, the operation is abandoned safely: a bad
 * free/realloc is ignored (realloc returns NULL, failed_allocs++), an allocation that met corruption returns
 * NULL (failed_allocs++), the blocks involved are never handed out again. heap_usable_size() returns the
 * requested size and bytes_in_use counts requested sizes. A quarantine (heap_env.quarantine_bytes /
 * quarantine_blocks; default 320 KiB / 256 blocks, none for bump unless set; the last live block
 * bypasses it) holds freed blocks back, first in first out,
 * before the backend may reuse them, so a double free or a use-after-free write within that window
 * is caught after other allocations: a free of a quarantined block is a double free (with the first
 * free's site); a write into one is reported once, by heap_check() or when the block leaves the
 * quarantine (its poison and keyed trailer mark verified), and the block is then retired (never
 * handed out, a leak of that block). Quarantined blocks are not counted in bytes_in_use; the queue is
 * drained when the last live block is freed and before an allocation fails. Not detected: use-after-free
 * reads, writes into free memory that is never reused or checked, writes beyond the first 2 KiB of a free
 * block, non-contiguous overflows that miss the canary. Cost: several times plain time per operation
 * (measured in docs/hardening.md).
 *
 * Complexity, n = number of blocks (free + used) in the heap:
 *   backend            alloc                      free      resize/usable_size  check
 *   bump               O(1)                       O(1)      O(1)                O(1)
 *   linked_list        O(log f)*                  O(log f)* O(log f)* / O(1)    O(n)
 *   fixed_size_block   O(1) for <= 2048 B and     O(1) small, O(1)              O(n)
 *                      cached large blocks,       cached large,
 *                      else as linked_list        else ll
 *   (*) expected, f = free blocks: address-ordered first fit in a treap of the free blocks keyed by
 *   address with subtree maxima; aligned requests test up to 16 candidates.
 *   Growth adds one grow() call and an add_memory() per round (O(1); linked_list O(log f)).
 */
#ifndef KHEAP_ALLOC_HEAP_H
#define KHEAP_ALLOC_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The mode of the whole library, fixed at compile time: 0 (or undefined) = plain, 1 = hardened (see
 * "Hardened mode" above and docs/hardening.md). Every file of src/alloc must be built with the same
 * value; heap_hardening() tells which one the library was built with. */
#ifndef KHEAP_HARDENING
#define KHEAP_HARDENING 0
#endif

/* Every block is aligned to at least this; smaller requested alignments are raised to it. */
#define HEAP_MIN_ALIGN ((size_t)16)

/* Largest size + alignment a request may have. Backends may add headers to sizes and round them up
 * without checking for overflow below this bound (a quarter of the address space, far beyond any real
 * heap). Addresses are another matter: a heap may lie anywhere, the kernel's in the higher half, where
 * rounding an address up to an alignment the front end accepts passes 2^64; backends align pointers
 * with padding arithmetic that is exact anywhere (heap_pad_to in heap_backend.h). */
#define HEAP_MAX_REQUEST (SIZE_MAX / 4)

/* The most CPUs a heap's per-CPU caches serve (heap_env.cpu_count). */
#define HEAP_MAX_CPUS 64

/* How many grow()/add_memory() rounds one allocation may trigger before it fails. */
#define HEAP_GROW_TRIES 4

/* The page size the library assumes for giving memory back (env.release / env.reclaim): every range
 * it passes is HEAP_PAGE_SIZE-aligned and a multiple of it. An environment with larger pages gives
 * the heap memory in 4 KiB units anyway (x86_64's base page; the host's too). */
#define HEAP_PAGE_SIZE ((size_t)4096)

/* The trim threshold (glibc's M_TRIM_THRESHOLD, fixed at build time: CMake cache variable
 * KHEAP_TRIM_THRESHOLD): a free block keeps its first HEAP_TRIM_THRESHOLD bytes mapped and gives
 * back only the whole pages beyond them, so a loop that allocates and frees a block of up to about
 * this size out of a released free block never maps or unmaps. The default, 256 KiB, was chosen
 * from the measured cost of a map/unmap cycle (docs/memory.md, "Giving memory back"). */
#ifndef HEAP_TRIM_THRESHOLD
#define HEAP_TRIM_THRESHOLD ((size_t)256 * 1024)
#endif

/* The kinds of heap corruption hardened mode detects. */
enum heap_error {
    HEAP_ERR_DOUBLE_FREE,      /* "double free": free/realloc of a block that is already free */
    HEAP_ERR_INVALID_FREE,     /* "invalid free": not the start of a block of this heap */
    HEAP_ERR_USE_AFTER_FREE,   /* "use-after-free write": a free block's poison was disturbed */
    HEAP_ERR_OVERFLOW,         /* "heap overflow": the canary after the requested size changed */
    HEAP_ERR_CORRUPT_FREELIST, /* "corrupted free list": a free-list pointer failed validation */
    HEAP_ERR_CORRUPT_METADATA, /* "corrupted heap metadata": a block or region header is damaged */
    HEAP_ERR_COUNT
};

/* One detected error, as passed to heap_env.report. Valid only during the call. */
struct heap_report {
    enum heap_error kind;
    const char *backend;    /* heap_backend_name() of the heap */
    const void *ptr;        /* the block (user pointer) concerned, or the bad pointer passed in */
    size_t size;            /* requested size of the block, 0 if unknown */
    size_t offset;          /* offset of the first bad byte from ptr, when it applies (else 0) */
    const void *caller;     /* return address of the faulting heap_* / kmalloc-family call */
    const void *alloc_site; /* where the block was allocated (a caller address), or NULL */
    const void *free_site;  /* where the block was freed, or NULL if unknown */
};

/* What the user of the library supplies. */
struct heap_env {
    void *ctx; /* passed back to every callback */
    /* Takes the heap lock and returns state to restore (e.g. the interrupt flag). NULL: no locking. */
    unsigned long (*lock)(void *ctx);
    /* Releases the lock taken by lock(); saved is what lock() returned. Ignored when lock is NULL. */
    void (*unlock)(void *ctx, unsigned long saved);
    /* Asks for at least min_bytes more memory. On success stores the region in *start / *len
     * (len >= min_bytes) and returns 0; any other value means no memory. In the kernel the region
     * always starts exactly at the previous end of the heap; host users may return any region.
     * Called with the lock held. NULL: the heap never grows. */
    int (*grow)(void *ctx, size_t min_bytes, void **start, size_t *len);
    /* Giving memory back (both or neither; with either NULL the heap never gives memory back and
     * behaves exactly as without them). Called with the lock held, never re-entering the heap; every
     * range is HEAP_PAGE_SIZE-aligned, a multiple of it, and lies inside memory the heap was given
     * (heap_create or grow).
     * release(start, len): the heap no longer needs the contents of [start, len): the environment
     * may take the pages away (the kernel unmaps them and frees their frames; the host drops them).
     * It cannot fail; the heap will not touch the range again until reclaim() of it succeeded. The
     * library never releases a range twice, nor one holding a live block or the heap's metadata
     * (block headers, free-tree links, boundary tags and the hardened poison prefix stay mapped).
     * reclaim(start, len): make a range (or part of one) given to release() usable again, reading
     * as zeroes; returns 0 on success, anything else if no memory: the allocation that needed it
     * then fails cleanly (or grows elsewhere) and the range stays released. When and how each
     * backend gives memory back: docs/memory.md, "Giving memory back", and each backend's essay. */
    void (*release)(void *ctx, void *start, size_t len);
    int (*reclaim)(void *ctx, void *start, size_t len);
    /* Hardened mode: called once per detected error, with the lock held (so it must not call back
     * into the heap). It may not return (the kernel panics); if it returns, the library abandons the
     * offending operation safely (see "Hardened mode"). NULL: errors are only counted in
     * stats.errors_detected. Never called in plain mode. */
    void (*report)(void *ctx, const struct heap_report *r);
    /* Hardened mode: per-boot secret keying free-list pointer mangling and canaries. 0: the library
     * derives a non-zero value from the heap's address (weak: predictable). Ignored in plain mode. */
    uint64_t secret;
    /* Per-CPU caches (docs: which backend has them -- fixed_size_block; the others ignore these).
     * cpu_count: how many CPUs may call into the heap, at most HEAP_MAX_CPUS. With cpu_count < 2 or
     * cpu_enter == NULL there are no per-CPU caches: every operation takes the heap lock, exactly as
     * without these fields.
     * cpu_enter(ctx, &saved): pins the caller to its CPU and returns that CPU's index (< cpu_count);
     * until cpu_exit(ctx, saved) no other heap call runs on this index (the kernel disables interrupts
     * on its CPU; a host gives each thread its own index). Must not take the heap lock. */
    unsigned cpu_count;
    unsigned (*cpu_enter)(void *ctx, unsigned long *saved);
    void (*cpu_exit)(void *ctx, unsigned long saved);
    /* Hardened mode: the quarantine's window (docs/hardening.md, "Quarantine"). A freed block is
     * held back, poisoned, until holding it and the blocks freed after it would exceed
     * quarantine_bytes (backend usable sizes) or quarantine_blocks blocks; then it is verified and
     * freed to the backend. The ring of quarantine_blocks 16-byte entries is taken from the start
     * of heap_create()'s range (it must fit, with the backend's instance). An arena backend
     * (bump) has no quarantine unless one of the two is set (docs/hardening.md says why). 0: the
     * default (HEAP_QUARANTINE_DEFAULT_BYTES = 320 KiB, _BLOCKS = 256); HEAP_QUARANTINE_OFF in
     * either field: no quarantine (every free goes to the backend at once). Ignored in plain mode. */
    size_t quarantine_bytes;
    size_t quarantine_blocks;
};

/* heap_env.quarantine_bytes / quarantine_blocks: turns the hardened quarantine off. */
#define HEAP_QUARANTINE_OFF SIZE_MAX

/* Counters kept by the front end (heap.c); identical meaning for every backend. */
struct heap_stats {
    size_t bytes_in_use;      /* sum of heap_usable_size() over live blocks */
    size_t bytes_mapped;      /* size given to heap_create() + memory added through grow() - released
                               * + reclaimed */
    size_t peak_in_use;       /* highest bytes_in_use ever seen */
    size_t live_allocs;       /* blocks allocated and not yet freed */
    uint64_t total_allocs;    /* successful allocations (realloc counts when it moves the block) */
    uint64_t total_frees;     /* frees of non-NULL pointers (realloc counts when it moves the block) */
    uint64_t failed_allocs;   /* allocation requests that returned NULL */
    uint64_t errors_detected; /* hardened mode: corruption reports (also with report == NULL); 0 in plain */
    uint64_t pages_released;  /* HEAP_PAGE_SIZE pages given to env.release, ever */
    uint64_t pages_reclaimed; /* HEAP_PAGE_SIZE pages taken back through env.reclaim, ever */
};

/* A heap instance. Opaque to users; backends see its definition in heap_backend.h. */
struct heap;

/* A backend: an opaque vtable (its definition is in heap_backend.h, for backends). Users pick one with
 * heap_backend_find() or heap_backends[] and pass it to heap_create(). */
struct heap_ops;

/* Creates a heap of backend ops in [mem, mem + size), using env's callbacks (copied; env may be NULL
 * for no lock and no growth). Returns NULL if ops or mem is NULL or size is too small for the backend
 * (hardened: plus the quarantine's ring, see heap_env.quarantine_blocks).
 * A heap never uses the last 16 bytes of the address space: a range (here or from env.grow) that
 * reaches them is shortened, so that no address computation inside the heap wraps past 2^64. */
struct heap *heap_create(const struct heap_ops *ops, void *mem, size_t size, const struct heap_env *env);

/* Returns a block of at least size bytes aligned to 16, or NULL (see the guarantees above). */
void *heap_alloc(struct heap *h, size_t size);

/* Returns a block of at least size bytes aligned to align (a power of two; values below 16 act as 16),
 * or NULL if align is 0 or not a power of two, or as heap_alloc(). */
void *heap_alloc_aligned(struct heap *h, size_t size, size_t align);

/* Returns a zeroed block of n * size bytes, or NULL if the product overflows or as heap_alloc(). */
void *heap_calloc(struct heap *h, size_t n, size_t size);

/* C realloc: ptr == NULL acts as heap_alloc(size); otherwise resizes in place if the backend can, else
 * allocates, copies min(old usable size, size) bytes and frees ptr. Returns the (possibly moved) block,
 * or NULL with ptr still allocated and unchanged. The result is only 16-byte aligned. */
void *heap_realloc(struct heap *h, void *ptr, size_t size);

/* Frees ptr; ptr == NULL does nothing. ptr must come from h and be live. */
void heap_free(struct heap *h, void *ptr);

/* The same five operations with the caller's address (the return address of the outermost
 * allocation call, e.g. kfree's caller) given explicitly; it appears as caller / alloc_site /
 * free_site in hardened-mode reports. The functions above pass their own return address. In plain
 * mode caller is ignored. */
void *heap_alloc_from(struct heap *h, size_t size, const void *caller);
void *heap_alloc_aligned_from(struct heap *h, size_t size, size_t align, const void *caller);
void *heap_calloc_from(struct heap *h, size_t n, size_t size, const void *caller);
void *heap_realloc_from(struct heap *h, void *ptr, size_t size, const void *caller);
void heap_free_from(struct heap *h, void *ptr, const void *caller);

/* Returns the usable size of ptr's block (>= requested size), 0 for NULL. In hardened mode it is
 * exactly the requested size (1 for size 0): the bytes after it are the canary. */
size_t heap_usable_size(struct heap *h, const void *ptr);

/* Returns a snapshot of the heap's counters. */
struct heap_stats heap_stats(struct heap *h);

/* Returns the number of broken invariants found by the backend and the front end; 0 = healthy. */
size_t heap_check(struct heap *h);

/* What heap_walk() reports: one block or span of a heap's memory. */
enum heap_block_state {
    HEAP_WALK_FREE, /* free memory the backend can hand out */
    HEAP_WALK_USED, /* a used block (user data, or the backend's own, e.g. a slab's memory) */
    HEAP_WALK_SLAB  /* fixed_size_block: one slab of equal objects (its memory is also reported USED) */
};

struct heap_walk_entry {
    const void *addr;            /* first byte (block header included) */
    size_t size;                 /* bytes covered */
    enum heap_block_state state; /* see above */
    uint32_t objects;            /* SLAB: live objects; bump's USED span: live blocks; else 0 */
    uint32_t capacity;           /* SLAB: objects it can hold; else 0 */
    size_t object_size;          /* SLAB: the usable size of each object; else 0 */
};

/* Called once per entry by heap_walk(), with the heap's lock held (so it must not call into the heap).
 * Returns true to go on, false to stop the walk. */
typedef bool (*heap_walk_fn)(void *ctx, const struct heap_walk_entry *e);

/* Reports the heap's memory to fn in address order per region: linked_list every block, bump the
 * consumed and the free part of its current region, fixed_size_block its fallback heap's blocks and
 * then one SLAB entry per slab. Returns the number of entries reported. For diagnostics (heap maps,
 * debuggers): O(n), not for hot paths. */
size_t heap_walk(struct heap *h, heap_walk_fn fn, void *ctx);

/* What heap_block_info() tells about a pointer. */
enum heap_ptr_kind {
    HEAP_PTR_UNKNOWN,   /* plain mode: the heap keeps nothing to tell blocks apart by */
    HEAP_PTR_LIVE,      /* the start of a live block (what an allocation returned) */
    HEAP_PTR_FREED,     /* the start of a freed block, or a pointer into memory the heap holds as free */
    HEAP_PTR_NOT_BLOCK, /* anything else: inside or between blocks, never handed out, outside the heap */
    HEAP_PTR_DAMAGED    /* the metadata at ptr fails validation (corruption; heap_check() says more) */
};

struct heap_block_info {
    enum heap_ptr_kind kind;
    size_t size;            /* LIVE: the size the user asked for (its trailer); else 0 */
    size_t usable;          /* LIVE: the bytes the backend holds for it (canary and trailer included) */
    const void *alloc_site; /* LIVE: where it was allocated (a caller address); NULL if unknown */
    const void *free_site;  /* FREED: where it was freed; NULL if no longer known (the block was merged
                             * into a neighbour, or its memory reused or rolled back) */
};

/* For debuggers and diagnostics: classifies ptr exactly as hardened heap_free() would, but reports
 * nothing, changes nothing and reads nothing outside the heap; for a live block decodes its trailer
 * (requested size, allocation site), for a freed one the free site its backend kept. Plain mode:
 * kind HEAP_PTR_UNKNOWN and the rest 0. Takes the heap lock. Cost: one validation (O(1) for bump
 * and small fixed_size_block objects, O(log f) for linked_list). */
struct heap_block_info heap_block_info(struct heap *h, const void *ptr);

/* Returns the name of kind ("double free", "invalid free", "use-after-free write", "heap overflow",
 * "corrupted free list", "corrupted heap metadata"), or "unknown heap error". */
const char *heap_error_name(enum heap_error kind);

/* Returns the KHEAP_HARDENING value the library was compiled with (0 plain, 1 hardened). */
int heap_hardening(void);

/* Returns true if h's backend is arena-style (heap_ops.arena). */
bool heap_is_arena(const struct heap *h);

/* Returns the backend name of h ("bump", ...). */
const char *heap_backend_name(const struct heap *h);

/* The registry of backends, generated from backends.def. */
#define HEAP_BACKEND(name) extern const struct heap_ops heap_##name##_ops;
#include "backends.def"
#undef HEAP_BACKEND

extern const struct heap_ops *const heap_backends[]; /* NULL-terminated, in backends.def order */

/* Returns the backend called name, or NULL if there is none. */
const struct heap_ops *heap_backend_find(const char *name);

#endif /* KHEAP_ALLOC_HEAP_H */
