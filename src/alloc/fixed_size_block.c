/*
 * fixed_size_block.c - the size-class ("slab") backend with a linked_list fallback.
 *
 * How it works
 * ------------
 * Requests up to FSB_MAX_SMALL (2048) bytes are rounded up to one of FSB_NCLASSES (22) size classes
 * (16, 32, then 32-byte steps to 256, four classes per power of two to 512, then the sizes that fill
 * a slab: "Size classes" below). Each class owns slabs: 16 KiB chunks, aligned to 16 KiB, carved into
 * equal objects. The slab's header sits at its start; objects carry NO header, so a 16-byte request
 * costs 16 bytes:
 *
 *   16 KiB-aligned slab (class c)
 *   +--------+-------+-------+-----+-------+--- ... ---+-------+------------------+
 *   | header | obj 0 | obj 1 | ... | (skip)| ...       | obj n | never used yet   |
 *   +--------+-------+-------+-----+-------+--- ... ---+-------+------------------+
 *   0        64      64+c                                       ^carve
 *   header = { partial/full list links, free-object list, carve pointer, inuse, capacity, class, fast_min }
 *
 * A free object stores the next free object of its slab in its first word. Allocation pops the head
 * of the first slab on the class's partial list (or carves a never-used object); free pushes the
 * object onto its slab, found by masking the pointer with ~(16 KiB - 1). Both are O(1) and touch one
 * slab header.
 *
 * Small or large? Larger requests (and alignments above 64) go to an embedded linked_list heap, always
 * with at least page alignment (FSB_PAGE_SIZE, 4 KiB), so a large block's pointer is always
 * page-aligned. Small objects are never page-aligned: the header occupies offset 0 of the slab, and
 * while carving, the rare slot that would start at a page boundary inside the slab is skipped. So
 * free() tells the two apart from the pointer's bits alone (ptr % FSB_PAGE_SIZE == 0 means large) and
 * never reads user-writable memory to decide; no magic number can be forged.
 *
 * Alignment: slabs are 16 KiB aligned and objects start at offset 64 + i*c, so objects of a class
 * whose size is a multiple of 64 (32) are 64 (32) aligned; aligned requests up to 64 pick the smallest
 * such class.
 *
 * Size classes. Every class with live objects holds its own partly used slabs, so a workload spread
 * over all sizes pays about a slab per class on top of its live bytes, and the sum over the classes of
 * their highest slab counts, not the highest sum (docs/measurements.md, "The p footprint"). Fewer
 * classes mean fewer partial slabs but more rounding: below 128 bytes, where a class's objects are
 * few bytes each, the classes are 32 bytes apart (16 KiB slabs of 48-, 80- and 112-byte objects held
 * kilobytes each on the producer/consumer workload p); 128..512 keeps four per power of two. Above
 * 512 a slab holds only 7..31 objects, so there each class is the largest size of which a (plain)
 * slab holds n objects -- 640 (25), 768 (21), 896 (18), 1072 (15), 1328 (12), 1616 (10), 1808 (9),
 * 2000 (8) -- and 2048 (7): no slab keeps room for a part of an object that a slightly larger class
 * would have used (1024 and 1072 both fit 15). Rounding costs at most 31 bytes or a quarter of the
 * request. The lookup is one table load, whatever the spacing.
 *
 * The step (heap_ops.step_alloc / step_free, heap_backend.h): a heap without a lock in plain mode has
 * no magazine in front of the slabs (heap_cpu_create gives it none) and calls fsb_step_alloc() and
 * fsb_step_free() for heap_alloc() and heap_free(): the slab's own free list is the cache, as in
 * mimalloc's per-page free lists. The allocation pops the head partial slab's free list and counts;
 * when that list is empty but the slab has never-used objects (capacity - inuse of them), the
 * step's slow path carves a run of up to FSB_CARVE_RUN (16) onto it first (slab_carve_run), so the
 * allocation only ever pops: one predictable branch where "pop or carve" mispredicted whenever a
 * class's head changed from a reused slab to a fresh one (workload p: 326 K mispredicted branches
 * in 2 M allocations, 92 K with the runs; 1.95 -> 1.60 x tcmalloc's time). A slab it fills stays
 * at the head of the partial list -- no list move, no call -- and the next slow path that looks at
 * the head moves it to the full list (partial_head), so only the head of a partial list may be
 * full. The free is the free fast path below and the counting. Everything else takes
 * fsb_alloc_slow() / fsb_free_slow() directly, counted by the step, and the front end's direct path
 * (growth, failure) only when those find no memory. A burst longer than a slab thus costs per
 * object the free-list pop, its share of a carved run and the push, plus per slab its list moves:
 * where the solo magazine moved every object of a burst into the magazine and out again (workload k
 * 52.6 instructions per operation, 29.3 now: docs/allocators.md, "The step").
 *
 * A full slab that gets a free object rejoins the partial list at its tail (slab_rejoin; each
 * partial list keeps its tail), as mimalloc's pages rejoin their queue: allocation goes on from the
 * head, and the slab gathers frees until allocation has used every partial slab before it. Each time
 * a slab rejoins, it costs two slow paths (the free that moves it off the full list, the allocation
 * that finds it full again), so what matters is how many objects it brings back. At the head it would
 * be the next slab to fill, and frees that hit full slabs (a FIFO: workload p) would pay two list
 * moves per object. Second after the head (the policy before) is nearly as bad when frees are random
 * over slabs of few objects (classes above 512 hold 7..25): the head fills, the slab that rejoined
 * last, with one free object, comes next, and it is full again after one allocation. On workload c
 * that made 20% of all frees and 11% of the allocations slow paths; at the tail 5% of either
 * (docs/measurements.md, "Full slabs rejoin at the tail").
 *
 * The stash (plain mode, FSB_STASH = 8 slabs): a slab that empties and is not its class's only
 * partial slab is kept in an array in this instance rather than freed to the fallback, and
 * new_slab() takes from it first, for any class (the header is rewritten). So a burst many slabs
 * long does not cost a fallback allocation and free (a tree search and update) per slab each time.
 * At most 8 slabs (128 KiB) stay out of the fallback's free lists; a heap that gives memory back
 * keeps none (its empty slabs must reach the fallback), and a large request the fallback cannot
 * satisfy flushes the stash with the large-block cache before it grows or fails. Hardened mode has
 * none: a stashed slab has lost its magic and would pass validate() as a large block.
 *
 * Batches for the front end's caches (heap_cpu.h, alloc_batch / free_batch): a refill takes a
 * run of objects from the head partial slab at once (slab_take_run: its free list, then carving; one
 * count update and one full-list test per slab, no new slab once it has one object), a flush pushes
 * each object back by the free fast path (slab_put_fast), else the slow path. The objects a cache
 * holds are allocated to their slabs.
 *
 * Returning memory: when a slab's last object is freed, the slab goes to the stash (below) or back
 * to the linked_list fallback, except that one empty slab per class is kept while it is that class's
 * only partial slab, so a tight alloc/free loop does not create and destroy a slab each time.
 *
 * The large-block cache (fsb_cache.c): a page-aligned request costs the fallback a tree search over
 * up to 16 candidates (it picks the smallest exact fit among them, for footprint) and a free a tree
 * update, most of fixed_size_block's time on mixed workloads. So a freed large block of
 * n <= FSB_CACHE_PAGES (16) whole pages is first kept in bin n - 1 of the cache (up to
 * FSB_CACHE_DEPTH (5; hardened 4) blocks per page count, 2.7 MiB at most) and handed out again to the next
 * request of n pages: no tree operation at all. The cache is an array in this instance, not a list
 * through the blocks: nothing in user-writable memory is ever followed. To the fallback a cached
 * block stays a used block; to the user it is free (the front end's counters already say so).
 * To keep the fallback's address order as far as a cache can, an allocation takes the lowest cached
 * address of its page count, and a free into a full page count keeps the lower of the new block and
 * the highest cached one, returning the other to the fallback. Memory is never stranded: when the
 * fallback cannot satisfy a request (a large block or a new slab) -- that is, before the front end
 * would grow the heap or fail -- the whole cache is flushed into the fallback, where its blocks
 * coalesce, and the request is retried. What it costs in footprint and gains in time is measured in
 * docs/allocators.md.
 *
 * Giving memory back (env.release / env.reclaim, docs/memory.md): this backend never releases a page
 * itself. Everything it owns that could be given back lives in the linked_list fallback, whose
 * release_enable (heap_ll_release_enable) makes it give pages back through this heap's env and count
 * them in this heap's statistics; from then on the fallback is called through its releasing vtable
 * (fallback->ops). So memory goes back in three ways, all through the fallback's free: a large block
 * freed to it; an empty slab returned to it (above: all but one empty slab per class); and the
 * large-block cache, which would pin its blocks' pages and keep the free blocks around them apart.
 * When a free to the fallback gives pages back (fallback_free), the heap is "draining": the cache is
 * flushed into the fallback and large frees bypass it until the next large allocation or new slab.
 * The fallback then keeps, of each free block, its first HEAP_TRIM_THRESHOLD bytes plus partial pages
 * (linked_list.c); what stays here is one empty slab per class, slabs with a live object, and the
 * cache if nothing drained since it filled. The bound this gives after a burst, and the measured
 * frames: docs/memory.md. Slabs, the cache and the fast paths never test for released memory: the
 * fallback reclaims what it hands out before a slab or large block is carved from it. Hardened mode:
 * validate() treats a pointer into pages the fallback gave back as a stale pointer (double free)
 * without reading it.
 *
 * Invariants (fsb_check): every slab in a class's lists is 16 KiB aligned and names that class;
 * partial slabs have 0 <= inuse < capacity (the head: <= capacity, the step's), full slabs inuse ==
 * capacity; the stash holds at most FSB_STASH distinct 16 KiB-aligned used blocks of a slab's size; free
 * objects lie inside their slab on an object boundary, are not page-aligned and number capacity - inuse -
 * uncarved; list links are consistent and partial_tail names each partial list's last slab; bin n - 1 of the
 * cache holds at most FSB_CACHE_DEPTH distinct page-aligned blocks, each with exactly n pages (usable
 * fsb_cache_usable(n)), and ncached counts them all (fsb_cache_check); the fallback heap passes its own
 * check.
 *
 * Complexity: small alloc/free O(1) (plus an O(1) fallback call when a slab is created or returned);
 * large requests O(1) on a cache hit (O(FSB_CACHE_DEPTH)), else as linked_list (a flush adds up to
 * 64 fallback frees); check O(slabs * objects + fallback blocks + cached blocks).
 * Trade-offs: fastest for small objects and no per-object header, but class rounding (up to 31
 * bytes or 25%), a partly used 16 KiB slab per active class, and large blocks pay a page alignment
 * (the padding returns to the fallback's free lists).
 *
 * Hardened mode (docs/hardening.md): objects still have no header (the front end's canary and
 * trailer sit at the end of each object, inside its class size). The slab header grows to 192 bytes:
 * a magic word (secret ^ slab ^ FSB_MAGIC) that proves a 16 KiB-aligned address really is a live
 * slab, a bitmap with one "allocated" bit per 16-byte granule (an object's bit is its first
 * granule's, a shift away), and a seal: a keyed checksum over the header's cold fields (carve
 * pointer, capacity, class and size, fast_min, list links) at the slab's address, which only the slow
 * paths change: checked before they use any of them -- before an object is taken on the slow path,
 * before a free on the slow path, before every list move (which also checks the neighbours it writes
 * into: a safe unlink), by check() and walk() before a slab's link is followed -- and renewed after
 * they changed them. The hot fields, the free-list head and inuse, change on every fast-path operation
 * and are checked structurally instead, where they could do harm: the head before it is followed (in
 * the carved part, on an object boundary, bit clear: slab_head_ok), inuse by a carve that must stay
 * inside the slab and, before a slab goes back to the fallback, by its bitmap (no object allocated);
 * validate() checks that class and size agree and the object ends inside the slab. A changed head that
 * still passes can only lose the free objects before it (a leak check() reports), a changed inuse only
 * keep a slab or refuse it; the fast paths never rehash the header. So a header written over through
 * a dangling pointer (a freed large block whose memory became a slab) is reported and never followed:
 * no next object outside the slab, no unchecked unlink, no count that frees a live slab. check()
 * reports every broken invariant it finds (kind and slab or object). validate() checks the fallback region
 * (the last one found is cached), magic, object boundary (a divisibility test: one multiply) and the bit, so
 * interior, foreign and double frees are told apart in O(1) without reading outside the heap. A free object
 * holds its slab's next free object mangled with its own address and, in its second word, the free site; the
 * link is validated before it is followed (inside the slab, on an object boundary, below the carve
 * pointer, bit clear), and the rest of the object is verified to still hold the poison the front end
 * put there. A slab going back to the fallback is poisoned over its first span, which also destroys
 * its magic; the free objects in that span are verified first (a write into one that left the
 * quarantine is reported, not wiped). Large blocks are the fallback's, whose own checks apply (it reports
 * through this heap); check() skips the canary test for slabs and cached blocks. A cached large block is
 * free: validate() finds it in the cache (by its page count, read from the fallback's header once the
 * fallback has vouched for it) and reports a double free with the site of the first free; the free
 * poison the front end wrote over its first HEAP_POISON_SPAN bytes is verified when it is handed out
 * again, when it is flushed to the fallback and by check() (no links are kept in it, so the whole
 * span is verified). A disturbed one is reported as a use-after-free write and quarantined like a
 * poisoned small object. A flushed block is validated by the fallback before the fallback frees it,
 * and its free site is the user's.
 * All of this is one section of hooks below ("Hardened mode"), empty inline stubs in plain mode, and
 * the hardened part of fsb_cache.c; the allocator itself reads the same in both modes.
 */
#include "heap_backend.h"
#include "fsb_cache.h"
#include "linked_list.h"

/* FSB_PAGE_SIZE and FSB_LL_HDR (the fallback's block header) are fsb_cache.h's, shared with the cache. */
#define FSB_SLAB_SIZE       ((uintptr_t)16384)
#define FSB_SLAB_HDR        ((uintptr_t)(64 + 128 * KHEAP_HARDENING))
/* The fallback puts its block header in front of every block, so a slab leaves its last bytes to the
 * next slab's header: consecutive slabs then tile memory with no padding between. */
#define FSB_SLAB_USABLE     (FSB_SLAB_SIZE - FSB_LL_HDR)
#define FSB_MAX_SMALL       2048
#define FSB_MAX_SMALL_ALIGN 64
#define FSB_NCLASSES        22
#define FSB_MAX_OBJECTS     1024 /* hardened bitmap: >= 16-byte granules (objects of class 16) per slab */
/* Empty slabs kept for the next new slab of any class (struct fsb.stash): plain mode only, where a
 * kept slab's memory cannot be mistaken for a large block by validate(). */
#define FSB_STASH           (8 * (1 - KHEAP_HARDENING))
/* Never-used objects the step carves onto an empty free list at once (slab_carve_run). */
#define FSB_CARVE_RUN       16

/* Hardened mode's part of a slab header (see the essay); it follows struct fsb_slab. */
struct fsb_slab_hard {
    uint64_t magic;                           /* secret ^ slab ^ FSB_MAGIC while this is a slab */
    uint64_t seal;                            /* keyed checksum of struct fsb_slab's fields (slab_seal) */
    uint64_t allocated[FSB_MAX_OBJECTS / 64]; /* bit i: the object at granule i is allocated */
};

struct fsb_slab {
    struct fsb_slab *next; /* in the class's partial or full list */
    struct fsb_slab *prev;
    void *free;        /* freed objects, linked through their first word */
    uintptr_t carve;   /* next never-used object, or the slab's end */
    uint32_t inuse;    /* live objects */
    uint32_t capacity; /* objects this slab can hold */
    uint16_t cls;      /* size class index */
    uint16_t size;     /* class_size[cls]: the usable size of every object, one load away */
    uint32_t fast_min; /* a free takes the fast path while inuse >= fast_min (slab_fast_min) */
    /* Hardened mode only: one struct fsb_slab_hard, inside FSB_SLAB_HDR. A flexible array member, so
     * plain mode's header has no such bytes and the struct is the same in both modes. */
    struct fsb_slab_hard hard[];
};

struct fsb_list {
    struct fsb_slab *head;
};

/* Hardened mode's part of the instance; it follows struct fsb. */
struct fsb_hard {
    uint64_t divides[FSB_NCLASSES]; /* 2^64 / class size + 1: object boundary by one multiply */
    uintptr_t seen_lo, seen_hi;     /* inside one of the fallback's regions (validate's cache) */
};

struct fsb {
    struct heap common;                             /* first member */
    struct heap *fallback;                          /* embedded linked_list heap (memory after this struct) */
    struct fsb_list partial[FSB_NCLASSES];          /* slabs with a free object, allocation order */
    struct fsb_slab *partial_tail[FSB_NCLASSES];    /* the last slab of each partial list */
    struct fsb_list full[FSB_NCLASSES];             /* slabs without one */
    uint32_t capacity[FSB_NCLASSES];                /* objects per slab per class */
    struct fsb_cache cache;                         /* freed large blocks (fsb_cache.h) */
    struct fsb_slab *stash[FSB_STASH + !FSB_STASH]; /* empty slabs, fallback blocks (retire_slab) */
    /* stash[0..nstash), nstash <= stash_max == FSB_STASH: a field, so that hardened mode's 0 does
     * not make the stash's tests constant comparisons (-Wtype-limits) */
    uint32_t nstash, stash_max;
    bool release;           /* env gives memory back (release_enable) */
    bool draining;          /* pages went back since the last large allocation */
    struct fsb_hard hard[]; /* hardened mode only: one struct fsb_hard (as in a slab) */
};

/* The instance's bytes: struct fsb, and in hardened mode its struct fsb_hard. */
#define FSB_INSTANCE_SIZE (sizeof(struct fsb) + KHEAP_HARDENING * sizeof(struct fsb_hard))

_Static_assert(offsetof(struct fsb, common) == 0, "struct heap must be the first member");
_Static_assert(sizeof(struct fsb_slab) + KHEAP_HARDENING * sizeof(struct fsb_slab_hard) <= FSB_SLAB_HDR,
               "slab header must fit before object 0");
_Static_assert(FSB_SLAB_HDR % HEAP_MIN_ALIGN == 0 && FSB_SLAB_HDR % FSB_MAX_SMALL_ALIGN == 0,
               "object 0 must be 64-aligned");
_Static_assert(FSB_SLAB_SIZE % FSB_PAGE_SIZE == 0, "slabs are whole pages");
_Static_assert(FSB_MAX_SMALL < FSB_PAGE_SIZE, "small and large are told apart by page alignment");
_Static_assert((FSB_SLAB_USABLE - FSB_SLAB_HDR) / 16 <= FSB_MAX_OBJECTS, "bitmap covers every granule");

/* The size classes (the essay's "Size classes"): 16, 32-byte steps to 256, four per power of two to
 * 512; above 512 the largest size of which a plain slab holds n objects, n = 25, 21, 18, 15, 12, 10,
 * 9, 8 (640 .. 2000), and 2048 (7). */
static const uint16_t class_size[FSB_NCLASSES] = {
    16,  32,  64,  96,  128, 160,  192,  224,  256,  320,  384,
    448, 512, 640, 768, 896, 1072, 1328, 1616, 1808, 2000, 2048,
};

/* size_class[(size - 1) / 16] = smallest class holding size bytes, for 1 <= size <= 2048 (class_of). */
static const uint8_t size_class[FSB_MAX_SMALL / 16] = {
    0,  1,  2,  2,  3,  3,  4,  4,                                              /* 16 .. 128 */
    5,  5,  6,  6,  7,  7,  8,  8,                                              /* .. 256 */
    9,  9,  9,  9,  10, 10, 10, 10, 11, 11, 11, 11, 12, 12, 12, 12,             /* .. 512 */
    13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14,             /* .. 768 */
    15, 15, 15, 15, 15, 15, 15, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, /* .. 1072 */
    17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17,             /* .. 1328 */
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18,     /* .. 1616 */
    19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19,                             /* .. 1808 */
    20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 21, 21, 21,                 /* .. 2048 */
};
_Static_assert(sizeof(size_class) == FSB_MAX_SMALL / 16, "one entry per 16-byte step");

/* The class of a request of size bytes, 1 <= size <= FSB_MAX_SMALL (the front end never passes 0).
 * Indexed by size - 1, which the fast paths' range test (size - 1 < FSB_MAX_SMALL) has computed. */
static inline unsigned class_of(size_t size)
{
    return size_class[(size - 1) / 16];
}

static struct fsb *to_fsb(struct heap *h)
{
    return container_of(h, struct fsb, common);
}

static const struct fsb *to_cfsb(const struct heap *h)
{
    return container_of(h, const struct fsb, common);
}

/* True for a large block's pointer (page-aligned), false for a small object's (never page-aligned). */
static bool is_large(const void *ptr)
{
    return ((uintptr_t)ptr & (FSB_PAGE_SIZE - 1)) == 0;
}

/* The object carved next at carve (objects of size bytes): carve itself, or the object after it if
 * carve is page-aligned, since a page-aligned pointer is a large block's (is_large). */
static inline uintptr_t carve_at(uintptr_t carve, uintptr_t size)
{
    return is_large((const void *)carve) ? carve + size : carve;
}

/* The slab holding small object ptr. */
static struct fsb_slab *slab_of(const void *ptr)
{
    return (struct fsb_slab *)heap_align_down((uintptr_t)ptr, FSB_SLAB_SIZE);
}

static void slab_reseal(const struct fsb *f, struct fsb_slab *s);

/* fast_min of a slab on the full list: its frees always take the slow path, which moves it. */
#define FSB_FULL UINT32_MAX

/* The fast_min that slab s has where it is linked, on a partial list (partial) or the full list: the
 * lowest inuse at which a free of one of its objects takes the fast path (slab_put_fast), so that
 * one comparison there stands for "not full, and the free leaves an object or s is its class's only
 * partial slab" (the one empty slab kept per class, see the essay). One test, not a branch on each
 * part: whether an object is its slab's last differs from free to free when several classes are in
 * use, and such a branch mispredicts (workload b ran 1.7x tcmalloc's time with it). */
static inline uint32_t slab_fast_min(const struct fsb_slab *s, bool partial)
{
    if (!partial)
        return FSB_FULL;
    return s->prev == NULL && s->next == NULL ? 1 : 2;
}

/* True if s is on the full list. */
static inline bool slab_is_full(const struct fsb_slab *s)
{
    return s->fast_min == FSB_FULL;
}

/* The list functions take tail, where a partial list keeps its last slab (struct fsb), or NULL for a
 * full list, which keeps none; they keep the fast_min of every slab they link (a slab's fast_min on a
 * partial list depends on its neighbours). */

/* Neighbour n of a slab that was linked or unlinked (partial: on a partial list) has new links. */
static void list_relinked(const struct fsb *f, struct fsb_slab *n, bool partial)
{
    n->fast_min = slab_fast_min(n, partial);
    slab_reseal(f, n);
}

/* Links s into l after slab after, or at the head if after is NULL (hardened: reseals the neighbours
 * whose links changed; s is the caller's). */
static void list_insert(const struct fsb *f, struct fsb_list *l, struct fsb_slab **tail,
                        struct fsb_slab *after, struct fsb_slab *s)
{
    s->prev = after;
    s->next = after != NULL ? after->next : l->head;
    if (s->next != NULL) {
        s->next->prev = s;
        list_relinked(f, s->next, tail != NULL);
    } else if (tail != NULL) {
        *tail = s;
    }
    if (after != NULL) {
        after->next = s;
        list_relinked(f, after, tail != NULL);
    } else {
        l->head = s;
    }
    s->fast_min = slab_fast_min(s, tail != NULL);
}

/* Pushes s onto l. */
static void list_push(const struct fsb *f, struct fsb_list *l, struct fsb_slab **tail, struct fsb_slab *s)
{
    list_insert(f, l, tail, NULL, s);
}

/* Unlinks s from l (hardened: reseals the neighbours whose links changed; s is the caller's). */
static void list_remove(const struct fsb *f, struct fsb_list *l, struct fsb_slab **tail, struct fsb_slab *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;
        list_relinked(f, s->prev, tail != NULL);
    } else {
        l->head = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
        list_relinked(f, s->next, tail != NULL);
    } else if (tail != NULL) {
        *tail = s->prev;
    }
}

/* Objects of class cls that fit a slab, skipping slots that would start on a page boundary. */
static uint32_t count_capacity(unsigned cls)
{
    uint32_t n = 0;

    for (uintptr_t off = FSB_SLAB_HDR; off + class_size[cls] <= FSB_SLAB_USABLE; off += class_size[cls])
        n += (off & (FSB_PAGE_SIZE - 1)) != 0;
    return n;
}

/*
 * Hardened mode: every check of the essay's "Hardened mode" paragraph, as the hooks the allocator
 * below calls. In plain mode (after #else) they are empty inline stubs, or the plain form of the
 * free-object link (obj_next, obj_set_free), and compile away.
 */
#if KHEAP_HARDENING
#define FSB_MAGIC ((uint64_t)0x534c4142) /* "SLAB" */

/* The secret itself, not a hash of it: a slab's magic is one more keyed word (whoever reads one
 * learns the secret either way, as with the invertible key()), and this costs no multiply. */
static uint64_t slab_magic(const struct fsb *f, const struct fsb_slab *s)
{
    return f->common.hard.secret ^ (uintptr_t)s ^ FSB_MAGIC;
}

/* One step of slab_seal(): mixes word w into x. A bijection of w for any x, so changing any one field
 * changes the seal, unpredictably for whoever does not know the secret. */
static inline uint64_t seal_mix(uint64_t x, uint64_t w)
{
    x = (x ^ w) * 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 31);
}

/* The keyed checksum of slab s's cold fields at s's address: the ones only the slow paths change --
 * the carve pointer, the capacity, the class (and its size), fast_min (FSB_FULL on the full list) and the
 * list links. A copy of another slab's header does not pass either (the key covers the address). The hot
 * fields, the free-list head and inuse, change on every fast-path operation and are not sealed: they are
 * checked structurally where they could do harm (slab_head_ok, slab_take_ok, slab_unmark; docs/hardening.md,
 * "Cost"), which costs a fraction of re-hashing the header twice per operation. */
static inline uint64_t slab_seal(const struct fsb *f, const struct fsb_slab *s)
{
    uint64_t x = heap_hard_key(f->common.hard.secret, (uintptr_t)s);

    x = seal_mix(x, s->carve);
    x = seal_mix(x, (uint64_t)s->capacity | (uint64_t)s->fast_min << 32);
    x = seal_mix(x, (uint64_t)s->cls | (uint64_t)s->size << 16);
    x = seal_mix(x, (uintptr_t)s->next);
    return seal_mix(x, (uintptr_t)s->prev);
}

/* True if slab s's header carries the seal of its cold fields: checked before the slow paths, check()
 * and walk() use any of them. */
static inline bool slab_sealed(const struct fsb *f, const struct fsb_slab *s)
{
    return s->hard->seal == slab_seal(f, s);
}

/* Seals slab s's cold fields: called by the slow paths after they changed (or may have changed) them. */
static inline void slab_reseal(const struct fsb *f, struct fsb_slab *s)
{
    s->hard->seal = slab_seal(f, s);
}

/* The allocation bitmap has one bit per 16-byte granule after the header (every object starts on
 * one), so the bit of a known object boundary is a shift, no division. */
static int granule(uintptr_t off)
{
    return (int)((off - FSB_SLAB_HDR) / HEAP_MIN_ALIGN);
}

/* Bit index of the object at offset off from the slab start, or -1 if off is not an object boundary.
 * rel is a multiple of d iff rel * (2^64 / d + 1) < 2^64 / d + 1 (mod 2^64) for rel < 2^32 (Lemire,
 * "Faster remainder by direct computation", 2019): one multiply. */
static inline __attribute__((always_inline)) int obj_index(const struct fsb *f, unsigned cls, uintptr_t off)
{
    uint64_t m = f->hard->divides[cls];

    if (off < FSB_SLAB_HDR || off >= FSB_SLAB_SIZE || (uint64_t)(off - FSB_SLAB_HDR) * m >= m)
        return -1;
    return granule(off);
}

/* i >= 0 (unsigned arithmetic: a shift and a mask, no signed-division fix-ups). */
static bool bit_get(const struct fsb_slab *s, int i)
{
    unsigned u = (unsigned)i;
    return (s->hard->allocated[u / 64] >> (u % 64)) & 1;
}

static void bit_flip(struct fsb_slab *s, int i)
{
    unsigned u = (unsigned)i;
    s->hard->allocated[u / 64] ^= (uint64_t)1 << (u % 64);
}

/* fixed_size_block's slabs are used blocks of the fallback without a canary (check() skips them). */
static bool is_slab(const struct heap *owner, const void *p)
{
    const struct fsb *f = container_of(owner, const struct fsb, common);
    return (uintptr_t)p % FSB_SLAB_SIZE == 0 && ((const struct fsb_slab *)p)->hard->magic == slab_magic(f, p);
}

/* The fallback's used blocks that carry no front-end canary: slabs and cached large blocks. */
static bool fallback_internal(const struct heap *owner, const void *p)
{
    const struct fsb *f = container_of(owner, const struct fsb, common);
    return is_slab(owner, p) || fsb_cache_holds(&f->cache, f->fallback, p, NULL);
}

/* fsb_init(): the hardened state of instance f, whose fallback reports through it. */
static void init_hard(struct fsb *f, struct heap *fallback, uint64_t secret)
{
    f->common.hard.owner = &f->common;
    f->common.hard.secret = secret;
    heap_ll_embed(fallback, &f->common, fallback_internal);
    for (unsigned c = 0; c < FSB_NCLASSES; c++)
        f->hard->divides[c] = UINT64_MAX / class_size[c] + 1;
}

/* Reports kind at ptr through this heap. */
static void report(const struct fsb *f, enum heap_error kind, const void *ptr)
{
    heap_hard_report(&f->common, kind, ptr, 0, 0, NULL, NULL);
}

/* Reports kind at ptr and makes the allocation in progress fail. */
static void report_and_abort(struct fsb *f, enum heap_error kind, const void *ptr)
{
    report(f, kind, ptr);
    f->common.hard.abort = true;
}

/* Before sealed slab s leaves list l: true if its neighbours are sealed slabs that link back to it (a
 * safe unlink: list_remove() writes into both); else reports s's header and returns false. */
static bool slab_unlink_ok(struct fsb *f, const struct fsb_list *l, const struct fsb_slab *s)
{
    if ((s->prev == NULL ? l->head == s : slab_sealed(f, s->prev) && s->prev->next == s) &&
        (s->next == NULL || (slab_sealed(f, s->next) && s->next->prev == s)))
        return true;
    report_and_abort(f, HEAP_ERR_CORRUPT_METADATA, s);
    return false;
}

/* Before a slab is pushed onto list l: true if l's head (whose prev link list_push() writes) is a
 * sealed slab at the head; else reports it and returns false. */
static bool slab_push_ok(struct fsb *f, const struct fsb_list *l)
{
    if (l->head == NULL || (slab_sealed(f, l->head) && l->head->prev == NULL))
        return true;
    report_and_abort(f, HEAP_ERR_CORRUPT_METADATA, l->head);
    return false;
}

/* Before a full slab rejoins partial list l at its tail t (slab_rejoin): true if l is empty (no head,
 * no tail) or t is a sealed slab that ends the list (slab_rejoin writes its next link); else reports
 * and returns false. */
static bool slab_rejoin_ok(struct fsb *f, const struct fsb_list *l, const struct fsb_slab *t)
{
    if (t == NULL ? l->head == NULL : slab_sealed(f, t) && t->next == NULL)
        return true;
    report_and_abort(f, HEAP_ERR_CORRUPT_METADATA, t != NULL ? t : l->head);
    return false;
}

static inline bool free_link_ok(const struct fsb *f, const struct fsb_slab *s, uintptr_t next);

/* True if carving one more object of class cls from s (free list empty) stays inside the slab: a
 * damaged inuse (not sealed) can then never carve past its end. */
static bool carve_ok(const struct fsb_slab *s, unsigned cls)
{
    uintptr_t c;

    if (s->free != NULL)
        return true;
    c = carve_at(s->carve, class_size[cls]);
    return c >= (uintptr_t)s + FSB_SLAB_HDR && c + class_size[cls] <= (uintptr_t)s + FSB_SLAB_USABLE;
}

/* fsb_alloc_slow(), before slab_take() of head slab s of class cls's partial list: true if s's header
 * is sealed and consistent (a class cls slab with room) and, if the object taken fills it, its move
 * to the full list is safe; else reports and fails the allocation (nothing changed). */
static bool slab_take_ok(struct fsb *f, unsigned cls, const struct fsb_slab *s)
{
    if (!slab_sealed(f, s) || s->cls != cls || s->inuse >= s->capacity || slab_is_full(s) ||
        !carve_ok(s, cls)) {
        report_and_abort(f, HEAP_ERR_CORRUPT_METADATA, s);
        return false;
    }
    if (!free_link_ok(f, s, (uintptr_t)s->free)) {
        report_and_abort(f, HEAP_ERR_CORRUPT_FREELIST, s);
        return false;
    }
    return s->inuse + 1 < s->capacity ||
           (slab_unlink_ok(f, &f->partial[cls], s) && slab_push_ok(f, &f->full[cls]));
}

/* fsb_free_slow(), before the free of an object of slab s (class cls; validate() checked its
 * structure) changes s: true if s's cold fields are sealed and every list move is safe; else reports
 * (the object is then never freed: a leak of one object, nothing changed). */
static bool slab_free_ok(struct fsb *f, unsigned cls, const struct fsb_slab *s)
{
    if (!slab_sealed(f, s)) {
        report(f, HEAP_ERR_CORRUPT_METADATA, s);
        return false;
    }
    if (slab_is_full(s))
        return slab_unlink_ok(f, &f->full[cls], s) &&
               slab_rejoin_ok(f, &f->partial[cls], f->partial_tail[cls]);
    if (s->inuse == 1 && (s->prev != NULL || s->next != NULL))
        return slab_unlink_ok(f, &f->partial[cls], s);
    return true;
}

/*
 * A free object's first two words (HEAP_HARD_LINK bytes): its slab's next free object, mangled, and
 * the free site. The mangling key covers the site word too (key() is a bijection, so any change of
 * the site changes the key), so a use-after-free write into either word changes the decoded link,
 * which then fails free_link_ok() when it is followed or checked: everything kept in a free object
 * is verified, like the poison after it.
 */
static inline uintptr_t obj_key(const struct fsb *f, const void *obj, uintptr_t site)
{
    return (uintptr_t)heap_hard_key(f->common.hard.secret ^ site, (uintptr_t)obj);
}

/* Makes obj a free object whose next free object is next; its free site is the public call's. */
static inline void obj_set_free(const struct fsb *f, void *obj, const void *next)
{
    uintptr_t *w = obj;

    w[1] = (uintptr_t)f->common.hard.caller;
    w[0] = (uintptr_t)next ^ obj_key(f, obj, w[1]);
}

/* The next free object of free object obj, decoded (validate it with free_link_ok before use). */
static inline uintptr_t obj_next(const struct fsb *f, const void *obj)
{
    const uintptr_t *w = obj;

    return w[0] ^ obj_key(f, obj, w[1]);
}

/* Where free object obj was freed (as stored; trustworthy once obj_next() validated). */
static inline const void *obj_free_site(const void *obj)
{
    return (const void *)((const uintptr_t *)obj)[1];
}

/* True if next (a demangled free link of slab s) is NULL or a free object of s. */
static inline __attribute__((always_inline)) bool free_link_ok(const struct fsb *f, const struct fsb_slab *s,
                                                               uintptr_t next)
{
    int i;

    if (next == 0)
        return true;
    if (next < (uintptr_t)s || next >= s->carve || (next & (FSB_PAGE_SIZE - 1)) == 0)
        return false;
    i = obj_index(f, s->cls, next - (uintptr_t)s);
    return i >= 0 && !bit_get(s, i);
}

/* fsb_alloc's fast path, before it follows the free-list head of the head slab s of a class: true if
 * the head is NULL or a free object of s (in its carved part, on an object boundary, bit clear) and
 * s's class a real one. The head is not sealed (it changes on every operation): this structural test
 * is what keeps a damaged one from being followed; a head moved onto another free object of s loses
 * the objects before it (a leak, which check() reports), never hands out a used one. */
static inline __attribute__((always_inline)) bool slab_head_ok(const struct fsb *f, const struct fsb_slab *s)
{
    return s->cls < FSB_NCLASSES && free_link_ok(f, s, (uintptr_t)s->free);
}

/* Object obj of slab s is handed out or freed: flips its allocated bit. */
static inline void obj_flip_allocated(struct fsb_slab *s, const void *obj)
{
    bit_flip(s, granule((uintptr_t)obj - (uintptr_t)s));
}

/* True if the object at o (class size bytes) still holds the free poison after its link: the test
 * obj_poison_verify()'s heap_hard_verify_free() makes, inline and without locating the bad byte
 * (the slow path redoes it and reports). */
static inline bool obj_poisoned(const void *o, size_t size)
{
    const unsigned char *b = (const unsigned char *)o + HEAP_HARD_LINK;
    const unsigned char *end = (const unsigned char *)o + (size < HEAP_POISON_SPAN ? size : HEAP_POISON_SPAN);
    uint64_t w0, w1;

    for (; b < end; b += 16) {
        __builtin_memcpy(&w0, b, 8);
        __builtin_memcpy(&w1, b + 8, 8);
        if (((w0 ^ HEAP_POISON_FREE64) | (w1 ^ HEAP_POISON_FREE64)) != 0)
            return false;
    }
    return true;
}

/* fsb_alloc's fast path: true if free object obj of slab s (class size bytes, next its decoded link)
 * may be handed out as it is: a sound link and the poison intact. Reports nothing: on false the
 * slow path redoes the checks and reports. */
static inline __attribute__((always_inline)) bool obj_reusable(const struct fsb *f, const struct fsb_slab *s,
                                                               const void *obj, uintptr_t next, size_t size)
{
    return free_link_ok(f, s, next) && obj_poisoned(obj, size);
}

/* slab_take(): true if reused object obj (class size bytes) still holds the free poison; else it was
 * reported (use-after-free write, the allocation fails) and made a quarantined block. */
static inline bool obj_poison_verify(struct fsb *f, void *obj, size_t size)
{
    if (heap_likely(heap_hard_verify_free(&f->common, obj, HEAP_HARD_LINK, size)))
        return true;
    heap_hard_retire(&f->common, obj, size);
    return false;
}

/* new_slab(): s becomes a live slab: its magic, no object allocated. */
static void slab_mark(const struct fsb *f, struct fsb_slab *s)
{
    s->hard->magic = slab_magic(f, s);
    __builtin_memset(s->hard->allocated, 0, sizeof(s->hard->allocated));
}

/* slab_unmark(): empty slab s is about to go back to the fallback, which neither knows nor verifies
 * the poison of its free objects (and its first span is poisoned over them): each carved object's
 * poison (after its link) is verified first, so a write into it -- while it was quarantined (only its
 * first HEAP_HARD_KEEP bytes are verified when it leaves: hard_reuse_verified) or since -- is reported
 * (a use-after-free write, with the object's free site), not lost. */
static void slab_verify_objects(const struct fsb *f, const struct fsb_slab *s)
{
    uintptr_t base = (uintptr_t)s, size = s->size;

    for (uintptr_t off = FSB_SLAB_HDR; base + off < s->carve; off += size) {
        if ((off & (FSB_PAGE_SIZE - 1)) == 0)
            continue;
        size_t bad = heap_hard_find_unpoisoned((const void *)(base + off), HEAP_HARD_LINK, size);
        if (bad != size)
            heap_hard_report(&f->common, HEAP_ERR_USE_AFTER_FREE, (const void *)(base + off), 0, bad, NULL,
                             obj_free_site((const void *)(base + off)));
    }
}

/* fsb_free_slow(): empty slab s is about to go back to the fallback. Returns false if an object of s
 * is still allocated by its bitmap (inuse, not sealed, was damaged) or the fallback around s is damaged
 * (reported; s stays out of both for good); else poisons s's first span (the front end's rule for
 * freed memory), which also destroys its magic. */
static bool slab_unmark(struct fsb *f, struct fsb_slab *s)
{
    size_t usable;
    const void *site;
    uint64_t live = 0;

    for (size_t i = 0; i < FSB_MAX_OBJECTS / 64; i++)
        live |= s->hard->allocated[i];
    if (live != 0) {
        report(f, HEAP_ERR_CORRUPT_METADATA, s);
        return false;
    }
    slab_verify_objects(f, s);
    if (heap_linked_list_ops.validate(f->fallback, s, &usable, &site) != HEAP_BLOCK_OK) {
        report(f, HEAP_ERR_CORRUPT_METADATA, s);
        return false;
    }
    heap_hard_poison(s, HEAP_POISON_SPAN);
    return true;
}

/* large_alloc(): memory may still hold a slab's magic (e.g. from an earlier heap over the same memory
 * with the same secret): large block p (or NULL) must never pass for a slab. */
static void large_clear_magic(void *p)
{
    if (p != NULL)
        ((struct fsb_slab *)p)->hard->magic = 0;
}

/* check_slab(): true if s carries its magic. */
static bool slab_magic_ok(const struct fsb *f, const struct fsb_slab *s)
{
    return s->hard->magic == slab_magic(f, s);
}

/* check_slab(): 1 (reported as a use-after-free write) if free object o of class size bytes lost
 * its poison after its link, else 0. */
static size_t check_free_poison(const struct fsb *f, const void *o, size_t size)
{
    size_t off = heap_hard_find_unpoisoned(o, HEAP_HARD_LINK, size);

    if (off == size)
        return 0;
    heap_hard_report(&f->common, HEAP_ERR_USE_AFTER_FREE, o, 0, off, NULL, obj_free_site(o));
    return 1;
}

/* check_slab(): the live objects of slab s (class cls) by the bitmap: each one's canary and trailer,
 * and their number against inuse. Returns the number of broken invariants. */
static size_t check_live_objects(const struct fsb *f, const struct fsb_slab *s, unsigned cls)
{
    uintptr_t base = (uintptr_t)s;
    uint32_t live = 0;
    size_t bad = 0;

    for (uintptr_t off = FSB_SLAB_HDR; off < s->carve - base; off += class_size[cls]) {
        int i = obj_index(f, cls, off);
        if ((off & (FSB_PAGE_SIZE - 1)) == 0 || !bit_get(s, i))
            continue;
        live++;
        bad += !heap_hard_verify_live(&f->common, (const void *)(base + off), class_size[cls]);
    }
    if (live != s->inuse) {
        report(f, HEAP_ERR_CORRUPT_METADATA, s);
        bad++;
    }
    return bad;
}

/* fsb_validate() for a page-aligned pointer: out of line, so the small-object case saves no registers. */
static __attribute__((noinline)) enum heap_error validate_large(struct fsb *f, const void *ptr,
                                                                size_t *usable, const void **free_site)
{
    /* A slab is a used fallback block too, but never the user's. */
    enum heap_error e = heap_linked_list_ops.validate(f->fallback, ptr, usable, free_site);

    /* Its header is sound. A cached block is used to the fallback but free to the user. */
    if ((e == HEAP_BLOCK_OK || e == HEAP_ERR_CORRUPT_FREELIST) &&
        fsb_cache_holds(&f->cache, f->fallback, ptr, free_site))
        return HEAP_ERR_DOUBLE_FREE;
    if (e == HEAP_BLOCK_OK && is_slab(&f->common, ptr))
        return HEAP_ERR_INVALID_FREE;
    return e;
}

/* fsb_validate() for a small object whose slab header s lies in the fallback's memory (so it may be
 * read): magic, object boundary, carve pointer, bit. */
static inline enum heap_error validate_small(struct fsb *f, const void *ptr, const struct fsb_slab *s,
                                             size_t *usable, const void **free_site)
{
    uintptr_t a = (uintptr_t)ptr;
    int i;

    if (s->hard->magic != slab_magic(f, s))
        return HEAP_ERR_INVALID_FREE;
    /* The class and its size are structurally consistent (one byte changed cannot make them so); the
     * seal of the cold fields is left to the paths that change them (slab_free_ok). */
    if (heap_unlikely(s->cls >= FSB_NCLASSES || s->size != class_size[s->cls]))
        return HEAP_ERR_CORRUPT_METADATA; /* a slab whose header was changed: trust none of it */
    *free_site = NULL;
    i = obj_index(f, s->cls, a - (uintptr_t)s);
    /* The object must also end inside the slab: the front end reads its trailer. */
    if (i < 0 || a >= s->carve || a + class_size[s->cls] > (uintptr_t)s + FSB_SLAB_USABLE)
        return HEAP_ERR_INVALID_FREE;
    if (!bit_get(s, i)) {
        *free_site = obj_free_site(ptr);
        return HEAP_ERR_DOUBLE_FREE;
    }
    *usable = class_size[s->cls];
    return HEAP_BLOCK_OK;
}

/* fsb_validate() for a small pointer outside the last region found: looks up the fallback's regions
 * (and remembers the one found). Out of line, so the common case saves no registers. */
static __attribute__((noinline)) enum heap_error validate_small_lookup(struct fsb *f, const void *ptr,
                                                                       size_t *usable, const void **free_site)
{
    const struct fsb_slab *s = slab_of(ptr);

    if (!heap_ll_region(f->fallback, (uintptr_t)s, &f->hard->seen_lo, &f->hard->seen_hi))
        return HEAP_ERR_INVALID_FREE;
    return validate_small(f, ptr, s, usable, free_site);
}

/* The ops' validate (heap_backend.h): classifies any ptr without reading outside the heap. */
/* fsb_validate() for a small object in a heap that gives memory back: a slab that went back to the
 * fallback may have given its pages back, and a pointer into them is a stale one (read nothing
 * there). Out of line, so the other heaps' validate saves no registers for the call. */
static __attribute__((noinline)) enum heap_error validate_small_releasing(struct fsb *f, const void *ptr,
                                                                          uintptr_t s, size_t *usable,
                                                                          const void **free_site)
{
    if (heap_ll_released(f->fallback, s))
        return HEAP_ERR_DOUBLE_FREE;
    return validate_small(f, ptr, (const struct fsb_slab *)s, usable, free_site);
}

static enum heap_error fsb_validate(struct heap *h, const void *ptr, size_t *usable, const void **free_site)
{
    struct fsb *f = to_fsb(h);
    uintptr_t s = (uintptr_t)slab_of(ptr);

    if (is_large(ptr))
        return validate_large(f, ptr, usable, free_site);
    if ((uintptr_t)ptr % HEAP_MIN_ALIGN != 0)
        return HEAP_ERR_INVALID_FREE;
    /* The slab header must lie inside the fallback's memory before it may be read. Regions only
     * grow, so the last region found stays a valid answer: most frees need no region walk. */
    if (heap_unlikely(s - f->hard->seen_lo >= f->hard->seen_hi - f->hard->seen_lo))
        return validate_small_lookup(f, ptr, usable, free_site);
    if (heap_unlikely(f->release))
        return validate_small_releasing(f, ptr, s, usable, free_site);
    return validate_small(f, ptr, (const struct fsb_slab *)s, usable, free_site);
}
#else
static inline void init_hard(struct fsb *f, struct heap *fallback, uint64_t secret)
{
    (void)f;
    (void)fallback;
    (void)secret;
}

static inline void report(const struct fsb *f, enum heap_error kind, const void *ptr)
{
    (void)f;
    (void)kind;
    (void)ptr;
}

static inline void report_and_abort(struct fsb *f, enum heap_error kind, const void *ptr)
{
    (void)f;
    (void)kind;
    (void)ptr;
}

static inline bool slab_sealed(const struct fsb *f, const struct fsb_slab *s)
{
    (void)f;
    (void)s;
    return true;
}

static inline void slab_reseal(const struct fsb *f, struct fsb_slab *s)
{
    (void)f;
    (void)s;
}

static inline bool slab_head_ok(const struct fsb *f, const struct fsb_slab *s)
{
    (void)f;
    (void)s;
    return true;
}

static inline bool slab_take_ok(struct fsb *f, unsigned cls, const struct fsb_slab *s)
{
    (void)f;
    (void)cls;
    (void)s;
    return true;
}

static inline bool slab_free_ok(struct fsb *f, unsigned cls, const struct fsb_slab *s)
{
    (void)f;
    (void)cls;
    (void)s;
    return true;
}

/* The plain free-object link: the next free object, as it is, in the object's first word. */
static inline void obj_set_free(const struct fsb *f, void *obj, const void *next)
{
    (void)f;
    *(const void **)obj = next;
}

static inline uintptr_t obj_next(const struct fsb *f, const void *obj)
{
    (void)f;
    return *(const uintptr_t *)obj;
}

static inline bool free_link_ok(const struct fsb *f, const struct fsb_slab *s, uintptr_t next)
{
    (void)f;
    (void)s;
    (void)next;
    return true;
}

static inline void obj_flip_allocated(struct fsb_slab *s, const void *obj)
{
    (void)s;
    (void)obj;
}

static inline bool obj_reusable(const struct fsb *f, const struct fsb_slab *s, const void *obj,
                                uintptr_t next, size_t size)
{
    (void)f;
    (void)s;
    (void)obj;
    (void)next;
    (void)size;
    return true;
}

static inline bool obj_poison_verify(struct fsb *f, void *obj, size_t size)
{
    (void)f;
    (void)obj;
    (void)size;
    return true;
}

static inline void slab_mark(const struct fsb *f, struct fsb_slab *s)
{
    (void)f;
    (void)s;
}

static inline bool slab_unmark(struct fsb *f, struct fsb_slab *s)
{
    (void)f;
    (void)s;
    return true;
}

static inline void large_clear_magic(void *p)
{
    (void)p;
}

static inline bool slab_magic_ok(const struct fsb *f, const struct fsb_slab *s)
{
    (void)f;
    (void)s;
    return true;
}

static inline size_t check_free_poison(const struct fsb *f, const void *o, size_t size)
{
    (void)f;
    (void)o;
    (void)size;
    return 0;
}

static inline size_t check_live_objects(const struct fsb *f, const struct fsb_slab *s, unsigned cls)
{
    (void)f;
    (void)s;
    (void)cls;
    return 0;
}

/* Never called in plain mode (heap_backend.h): every pointer the front end passes is live. */
static enum heap_error fsb_validate(struct heap *h, const void *ptr, size_t *usable, const void **free_site)
{
    (void)h;
    (void)ptr;
    (void)usable;
    (void)free_site;
    return HEAP_ERR_INVALID_FREE;
}
#endif

/* Places the instance at the start of mem and the fallback after it. NULL if mem is too small. */
static struct heap *fsb_init(void *mem, size_t size, uint64_t secret)
{
    /* Offsets from mem, compared with size before any address is formed (heap_backend.h). */
    size_t lead = heap_pad_to((uintptr_t)mem, HEAP_MIN_ALIGN);
    size_t inst = heap_align_up(FSB_INSTANCE_SIZE, HEAP_MIN_ALIGN);
    uintptr_t base = (uintptr_t)mem + lead;
    struct heap *fallback;
    struct fsb *f;

    if (size < lead + inst)
        return NULL;
    fallback = heap_linked_list_ops.init((void *)(base + inst), size - lead - inst, secret);
    if (fallback == NULL)
        return NULL;
    f = (struct fsb *)base;
    __builtin_memset(f, 0, FSB_INSTANCE_SIZE);
    f->fallback = fallback;
    f->stash_max = FSB_STASH;
    for (unsigned c = 0; c < FSB_NCLASSES; c++)
        f->capacity[c] = count_capacity(c);
    init_hard(f, fallback, secret);
    return &f->common;
}

/* Gets a fresh slab for class cls from the fallback and makes it the head of the partial list.
 * NULL if the fallback has no room. */
static struct fsb_slab *new_slab(struct fsb *f, unsigned cls)
{
    size_t usable;
    struct fsb_slab *s = f->nstash != 0
                             ? f->stash[--f->nstash]
                             : f->fallback->ops->alloc(f->fallback, FSB_SLAB_USABLE, FSB_SLAB_SIZE, &usable);

    if (s == NULL)
        return NULL;
    s->free = NULL;
    s->carve = (uintptr_t)s + FSB_SLAB_HDR;
    s->inuse = 0;
    s->capacity = f->capacity[cls];
    s->cls = cls;
    s->size = class_size[cls];
    slab_mark(f, s);
    /* called when the list is empty: no neighbour */
    list_push(f, &f->partial[cls], &f->partial_tail[cls], s);
    slab_reseal(f, s);
    return s;
}

/* Partial slab s of class cls moves to the full list if its objects are all taken. */
static inline void slab_note_full(struct fsb *f, struct fsb_slab *s, unsigned cls)
{
    if (s->inuse == s->capacity) {
        list_remove(f, &f->partial[cls], &f->partial_tail[cls], s);
        list_push(f, &f->full[cls], NULL, s);
    }
}

/* The head slab of class cls's partial list for the slow paths: the step (fsb_step_alloc) leaves a
 * head slab it filled on the partial list, so such a head moves to the full list here first. Only
 * the head can be full: slabs fill only by allocation, which takes from the head, and a slab pushed
 * onto the list (fsb_free_slow) first moves a full head away through here. */
static struct fsb_slab *partial_head(struct fsb *f, unsigned cls)
{
    struct fsb_slab *s = f->partial[cls].head;

    if (heap_unlikely(s != NULL && s->inuse == s->capacity)) {
        slab_note_full(f, s, cls);
        slab_reseal(f, s);
        s = f->partial[cls].head;
    }
    return s;
}

/* Full slab s of class cls (off the full list) gets a free object: back onto the partial list at its
 * tail, so that s gathers frees for as long as possible before allocation reaches it again (see the
 * essay: at the head or second, it would soon fill again, with one object more each time). */
static void slab_rejoin(struct fsb *f, unsigned cls, struct fsb_slab *s)
{
    list_insert(f, &f->partial[cls], &f->partial_tail[cls], f->partial_tail[cls], s);
}

/* Counts object obj as taken from partial slab s of class cls; s moves to the full list if it is. */
static inline void slab_count_taken(struct fsb *f, struct fsb_slab *s, unsigned cls, const void *obj)
{
    obj_flip_allocated(s, obj);
    s->inuse++;
    slab_note_full(f, s, cls);
    slab_reseal(f, s);
}

/* Takes one object from partial slab s of class cls. NULL (hardened mode) if the object met
 * corruption: a damaged free link (the object stays on the list) or a disturbed poison (the object
 * is taken out for good: counted as allocated, never handed out, consistent for check()). */
static inline void *slab_take(struct fsb *f, struct fsb_slab *s, unsigned cls)
{
    void *obj = s->free;

    if (obj != NULL) {
        uintptr_t next = obj_next(f, obj);
        if (heap_unlikely(!free_link_ok(f, s, next))) {
            report_and_abort(f, HEAP_ERR_CORRUPT_FREELIST, obj);
            return NULL;
        }
        s->free = (void *)next;
        if (heap_unlikely(!obj_poison_verify(f, obj, class_size[cls]))) {
            slab_count_taken(f, s, cls, obj);
            return NULL;
        }
    } else {
        obj = (void *)carve_at(s->carve, class_size[cls]);
        s->carve = (uintptr_t)obj + class_size[cls];
    }
    slab_count_taken(f, s, cls, obj);
    return obj;
}

/* A large block of size bytes (whole pages with the header) from the fallback, page-aligned or more.
 * NULL if the fallback has no room. */
static void *large_alloc(struct fsb *f, size_t size, size_t align, size_t *usable)
{
    void *p =
        f->fallback->ops->alloc(f->fallback, size, align > FSB_PAGE_SIZE ? align : FSB_PAGE_SIZE, usable);

    large_clear_magic(p);
    return p;
}

/* The stash's slabs back to the fallback, where they coalesce: before a large request fails. True
 * if there were any. */
static bool stash_flush(struct fsb *f)
{
    bool any = f->nstash != 0;

    while (f->nstash != 0)
        f->fallback->ops->free(f->fallback, f->stash[--f->nstash]);
    return any;
}

/* Before a large request fails: the large-block cache and the stash back to the fallback. True if
 * either held anything. */
static bool flush_reserves(struct fsb *f)
{
    bool any = fsb_cache_flush(&f->cache, f->fallback);

    return stash_flush(f) || any;
}

/* Smallest class >= cls whose objects are align-aligned, or FSB_NCLASSES. */
static unsigned aligned_class(unsigned cls, size_t align)
{
    while (cls < FSB_NCLASSES && class_size[cls] % align != 0)
        cls++;
    return cls;
}

/* Everything fsb_alloc's fast path does not handle: carving, new slabs, a slab becoming full,
 * aligned and large requests, and (hardened mode) every object that met corruption. */
static __attribute__((noinline)) void *fsb_alloc_slow(struct heap *h, size_t size, size_t align,
                                                      size_t *usable)
{
    struct fsb *f = to_fsb(h);
    unsigned cls;
    struct fsb_slab *s;

    if (heap_unlikely(size > FSB_MAX_SMALL || align > FSB_MAX_SMALL_ALIGN))
        goto large;
    cls = class_of(size);
    if (heap_unlikely(align != HEAP_MIN_ALIGN)) {
        cls = aligned_class(cls, align);
        if (cls == FSB_NCLASSES)
            goto large;
    }
    s = partial_head(f, cls);
    if (heap_unlikely(s == NULL)) {
        f->draining = false;
        s = new_slab(f, cls);
        if (s == NULL && fsb_cache_flush(&f->cache, f->fallback))
            s = new_slab(f, cls);
        if (s == NULL)
            return NULL;
    }
    if (heap_unlikely(!slab_take_ok(f, cls, s)))
        return NULL;
    *usable = class_size[cls];
    return slab_take(f, s, cls);
large:
    f->draining = false;
    /* Whole pages including the fallback's block header, so large blocks and slabs tile pages. */
    size = heap_align_up(size + FSB_LL_HDR, FSB_PAGE_SIZE) - FSB_LL_HDR;
    if (align <= FSB_PAGE_SIZE) {
        int i = fsb_cache_index(size);
        if (i >= 0 && f->cache.bin[i].count != 0)
            return fsb_cache_take(&f->cache, f->fallback, (unsigned)i, usable);
    }
    void *p = large_alloc(f, size, align, usable);
    if (p == NULL && flush_reserves(f))
        p = large_alloc(f, size, align, usable);
    return p;
}

/*
 * The fast paths. The common small allocation pops a previously freed object from the head slab of
 * its class while that slab stays partial; the common free pushes onto a slab that stays partial and
 * non-empty, or empties its class's only partial slab (which stays). Nothing else -- no list moves,
 * no carving, no calls -- so in plain mode these compile to a dozen instructions without spills;
 * every other case goes to the slow path, which handles the general case completely. In hardened
 * mode the same cases also validate the link and verify the object's poison (allocation) or write
 * the mangled link and free site (free), and flip the bit; anything else -- including every error --
 * is left to the slow path, which reports it.
 */
static void *fsb_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    if (heap_likely(size <= FSB_MAX_SMALL && align == HEAP_MIN_ALIGN)) {
        struct fsb *f = to_fsb(h);
        unsigned cls = class_of(size);
        struct fsb_slab *s = f->partial[cls].head;
        void *obj;

        if (heap_likely(s != NULL && slab_head_ok(f, s) && (obj = s->free) != NULL &&
                        s->inuse + 1 < s->capacity)) {
            uintptr_t next = obj_next(f, obj);

            if (heap_likely(obj_reusable(f, s, obj, next, class_size[cls]))) {
                s->free = (void *)next;
                obj_flip_allocated(s, obj);
                s->inuse++;
                *usable = class_size[cls];
                return obj;
            }
        }
    }
    return fsb_alloc_slow(h, size, align, usable);
}

/* Frees block p (a large block or a slab) to the fallback; returns its usable size. Giving memory back:
 * when that free gave pages back, the heap is draining, so the large-block cache, which would pin its
 * blocks' pages and keep their neighbours apart, is flushed into the fallback too, and large frees
 * bypass the cache until the next large allocation or new slab (fsb_alloc_slow). */
static __attribute__((noinline)) size_t fallback_free(struct fsb *f, void *p)
{
    uint64_t before = f->common.counts.pages_released;
    size_t u = f->fallback->ops->free(f->fallback, p);

    if (heap_unlikely(f->common.counts.pages_released != before)) {
        f->draining = true;
        fsb_cache_flush(&f->cache, f->fallback);
    }
    return u;
}

/* Empty slab s (off its lists) is no longer needed: kept in the stash for the next new slab of any
 * class, so that bursts longer than a slab do not make and return a slab through the fallback each
 * time; else (stash full, or a heap that gives memory back, whose empty slabs must reach the
 * fallback) freed to the fallback. */
static void retire_slab(struct fsb *f, struct fsb_slab *s)
{
    if (f->nstash < f->stash_max && !f->release)
        f->stash[f->nstash++] = s;
    else
        fallback_free(f, s);
}

/* Everything fsb_free's fast path does not handle: large blocks, a full slab becoming partial, a
 * slab becoming empty. */
static __attribute__((noinline)) size_t fsb_free_slow(struct heap *h, void *ptr)
{
    struct fsb *f = to_fsb(h);
    struct fsb_slab *s;
    unsigned cls;

    if (heap_unlikely(is_large(ptr))) {
        size_t u = heap_linked_list_ops.usable_size(f->fallback, ptr);
        if (!f->draining && fsb_cache_put(&f->cache, f->fallback, ptr, u))
            return u;
        return fallback_free(f, ptr);
    }
    s = slab_of(ptr);
    cls = s->cls;
    if (heap_unlikely(!slab_free_ok(f, cls, s)))
        return class_size[cls];
    obj_set_free(f, ptr, s->free);
    obj_flip_allocated(s, ptr);
    s->free = ptr;
    if (heap_unlikely(slab_is_full(s))) {
        list_remove(f, &f->full[cls], NULL, s);
        slab_rejoin(f, cls, s);
    }
    if (heap_unlikely(--s->inuse == 0) && (s->prev != NULL || s->next != NULL)) {
        list_remove(f, &f->partial[cls], &f->partial_tail[cls], s);
        if (heap_likely(slab_unmark(f, s)))
            retire_slab(f, s);
        return class_size[cls];
    }
    slab_reseal(f, s);
    return class_size[cls];
}

/* The fast path's free of small object ptr: true if it was pushed onto its slab, which stays where it
 * is; false (nothing done) if it needs fsb_free_slow(). One comparison with the slab's fast_min
 * (slab_fast_min): it also takes the free of the last object of s when s is its class's only partial
 * slab, which stays (see the essay), so a tight alloc/free loop never leaves the fast path. */
static inline __attribute__((always_inline)) bool slab_put_fast(struct fsb *f, void *ptr)
{
    struct fsb_slab *s = slab_of(ptr);

    if (heap_unlikely(s->inuse < s->fast_min))
        return false;
    obj_set_free(f, ptr, s->free);
    obj_flip_allocated(s, ptr);
    s->free = ptr;
    s->inuse--; /* the hot fields are not sealed (slab_seal) */
    return true;
}

static size_t fsb_free(struct heap *h, void *ptr)
{
    /* In hardened mode ptr passed fsb_validate(): a live object of a slab, or a live large block. */
    if (heap_likely(!is_large(ptr)) && heap_likely(slab_put_fast(to_fsb(h), ptr)))
        return slab_of(ptr)->size;
    return fsb_free_slow(h, ptr);
}

/* The step (heap_ops.step_alloc/step_free, heap_backend.h): heap_alloc() and heap_free() of a heap
 * without a lock in plain mode, the counting included; how it works is the essay's "The step". */

/* The step's carving (plain mode only, like the step): head slab s of a class has no free object
 * but capacity - inuse never-used ones; up to FSB_CARVE_RUN of them become its free list, in
 * address order, so that the step's allocation only ever pops (one predictable branch, not pop or
 * carve). The carve pointer moves past them: they are free objects of the carved part, as check()
 * counts them. */
static void slab_carve_run(const struct fsb *f, struct fsb_slab *s)
{
    uint32_t n = s->capacity - s->inuse < FSB_CARVE_RUN ? s->capacity - s->inuse : FSB_CARVE_RUN;
    void *obj = (void *)carve_at(s->carve, s->size);

    s->free = obj;
    while (--n > 0) { /* n >= 1: the caller checked inuse < capacity */
        void *next = (void *)carve_at((uintptr_t)obj + s->size, s->size);
        obj_set_free(f, obj, next);
        obj = next;
    }
    obj_set_free(f, obj, NULL);
    s->carve = (uintptr_t)obj + s->size;
}

/* The step's pop: the first free object of slab s (not NULL), counted. */
static inline void *step_pop(struct heap *h, struct fsb_slab *s)
{
    void *obj = s->free;

    s->free = (void *)obj_next(to_fsb(h), obj);
    s->inuse++;
    heap_note_alloc(h, s->size);
    return obj;
}

/* The step's misses: a carved run for a head slab without free objects; else fsb_alloc_slow() at
 * once for a valid size, counted; the front end's direct path (validation, growth, failure) for
 * anything else and when the backend has no memory without growing. */
static __attribute__((noinline)) void *step_alloc_slow(struct heap *h, size_t size)
{
    size_t usable;
    void *p = NULL;

    if (heap_likely(size - 1 < FSB_MAX_SMALL)) {
        struct fsb *f = to_fsb(h);
        struct fsb_slab *s = f->partial[class_of(size)].head;
        if (s != NULL && s->free == NULL && s->inuse < s->capacity) {
            slab_carve_run(f, s);
            return step_pop(h, s);
        }
    }
    if (heap_likely(size - 1 < HEAP_MAX_REQUEST - HEAP_MIN_ALIGN))
        p = fsb_alloc_slow(h, size, HEAP_MIN_ALIGN, &usable);
    if (heap_unlikely(p == NULL))
        return heap_alloc_direct(h, size);
    heap_note_alloc(h, usable);
    return p;
}

static void *fsb_step_alloc(struct heap *h, size_t size)
{
    if (heap_likely(size - 1 < FSB_MAX_SMALL)) {
        struct fsb_slab *s = to_fsb(h)->partial[class_of(size)].head;

        if (heap_likely(s != NULL && s->free != NULL))
            return step_pop(h, s);
    }
    return step_alloc_slow(h, size);
}

/* The step's free outside fsb_free's fast path, counted; out of line, so the step saves no register.
 * NULL (page-aligned, so "large" to the fast path's test) ends here, as a no-op. */
static __attribute__((noinline)) void step_free_slow(struct heap *h, void *ptr)
{
    if (heap_likely(ptr != NULL))
        heap_note_free(h, fsb_free_slow(h, ptr));
}

static void fsb_step_free(struct heap *h, void *ptr)
{
    if (heap_likely(!is_large(ptr)) && heap_likely(slab_put_fast(to_fsb(h), ptr))) {
        heap_note_free(h, slab_of(ptr)->size);
        return;
    }
    step_free_slow(h, ptr);
}

static bool fsb_resize(struct heap *h, void *ptr, size_t size)
{
    struct fsb *f = to_fsb(h);

    if (is_large(ptr))
        return heap_linked_list_ops.resize(f->fallback, ptr, size);
    return size <= class_size[slab_of(ptr)->cls];
}

static size_t fsb_usable_size(const struct heap *h, const void *ptr)
{
    if (is_large(ptr))
        return heap_linked_list_ops.usable_size(to_cfsb(h)->fallback, ptr);
    return class_size[slab_of(ptr)->cls];
}

static void fsb_add_memory(struct heap *h, void *start, size_t len)
{
    heap_linked_list_ops.add_memory(to_fsb(h)->fallback, start, len);
}

/* True if o could be a free object of slab s (class cls): inside the carved part, on an object
 * boundary, not page-aligned. */
static bool obj_in_slab(const struct fsb_slab *s, unsigned cls, const void *o)
{
    uintptr_t a = (uintptr_t)o, base = (uintptr_t)s;

    return a >= base + FSB_SLAB_HDR && a < s->carve && (a - base - FSB_SLAB_HDR) % class_size[cls] == 0 &&
           !is_large(o);
}

/* Checks one slab of class cls on list full (0/1), whose header check_list() found sealed (hardened);
 * returns the number of broken invariants, each reported (hardened: env.report, kind and pointer). */
static size_t check_slab(const struct fsb *f, const struct fsb_slab *s, unsigned cls, uint32_t full)
{
    uintptr_t base = (uintptr_t)s, end = base + FSB_SLAB_SIZE;
    size_t bad = 0;
    uint32_t nfree = 0, uncarved = 0;

    bad += base % FSB_SLAB_SIZE != 0;
    bad += s->cls != cls || s->fast_min != slab_fast_min(s, !full) || s->capacity != f->capacity[cls];
    /* A partial list's head may be full: the step leaves it there for the slow path (partial_head). */
    bad += full ? s->inuse != s->capacity
                : s->inuse > s->capacity || (s->inuse == s->capacity && s->prev != NULL);
    bad += s->carve < base + FSB_SLAB_HDR || s->carve > end;
    /* Hardened mode: the header must be a slab's and the list's head sound before the list is walked. */
    bad += !slab_magic_ok(f, s);
    if (bad != 0) {
        report(f, HEAP_ERR_CORRUPT_METADATA, s);
        return bad;
    }
    for (uintptr_t off = s->carve - base; off + class_size[cls] <= FSB_SLAB_USABLE; off += class_size[cls])
        uncarved += (off & (FSB_PAGE_SIZE - 1)) != 0;
    if (s->free != NULL && !free_link_ok(f, s, (uintptr_t)s->free)) {
        report(f, HEAP_ERR_CORRUPT_FREELIST, s);
        return bad + 1;
    }
    for (const void *o = s->free; o != NULL;) {
        uintptr_t next;
        if (++nfree > s->capacity || !obj_in_slab(s, cls, o)) {
            report(f, HEAP_ERR_CORRUPT_FREELIST, s);
            bad++;
            break;
        }
        next = obj_next(f, o);
        bad += check_free_poison(f, o, class_size[cls]);
        /* Hardened mode: each link is validated before it is followed. */
        if (!free_link_ok(f, s, next)) {
            report(f, HEAP_ERR_CORRUPT_FREELIST, o);
            bad++;
            break;
        }
        o = (const void *)next;
    }
    bad += check_live_objects(f, s, cls);
    if (nfree + uncarved + s->inuse != s->capacity) {
        report(f, HEAP_ERR_CORRUPT_METADATA, s);
        bad++;
    }
    return bad;
}

/* Checks list l of class cls (full: 0/1; tail: the partial list's last slab, NULL for a full list). */
static size_t check_list(const struct fsb *f, const struct fsb_list *l, const struct fsb_slab *tail,
                         unsigned cls, uint32_t full)
{
    size_t bad = 0, n = 0;
    const struct fsb_slab *prev = NULL;

    for (const struct fsb_slab *s = l->head; s != NULL; prev = s, s = s->next) {
        /* Hardened mode: a header is authenticated before any of it is read, the next link included. */
        if (++n > ((size_t)1 << 32) || !slab_sealed(f, s)) {
            report(f, HEAP_ERR_CORRUPT_METADATA, s);
            bad++;
            break;
        }
        if (s->prev != prev) {
            report(f, HEAP_ERR_CORRUPT_METADATA, s);
            bad++;
        }
        bad += check_slab(f, s, cls, full);
    }
    if (bad == 0 && !full && tail != prev) { /* the partial list's tail is its last slab */
        report(f, HEAP_ERR_CORRUPT_METADATA, tail);
        bad++;
    }
    return bad;
}

static size_t fsb_check(const struct heap *h)
{
    const struct fsb *f = to_cfsb(h);
    size_t bad = heap_linked_list_ops.check(f->fallback) + fsb_cache_check(&f->cache, f->fallback);

    /* The stash: at most FSB_STASH distinct slab-aligned used blocks of the fallback, a slab's size. */
    bad += f->nstash > f->stash_max || f->stash_max != FSB_STASH;
    for (uint32_t i = 0; i < f->nstash && i < f->stash_max; i++) {
        const struct fsb_slab *s = f->stash[i];
        bool ok = (uintptr_t)s % FSB_SLAB_SIZE == 0 &&
                  heap_linked_list_ops.usable_size(f->fallback, s) == FSB_SLAB_USABLE;
        for (uint32_t j = 0; j < i; j++)
            ok = ok && f->stash[j] != s;
        if (!ok) {
            report(f, HEAP_ERR_CORRUPT_METADATA, s);
            bad++;
        }
    }

    for (unsigned c = 0; c < FSB_NCLASSES; c++) {
        bad += check_list(f, &f->partial[c], f->partial_tail[c], c, 0);
        bad += check_list(f, &f->full[c], NULL, c, 1);
    }
    return bad;
}

/* walk(): the fallback heap's blocks (slabs and large blocks are used blocks there; cached large
 * blocks too), then one SLAB entry per slab, class by class, partial slabs before full ones. */
/* Passes the fallback's entries on to the user's callback and remembers whether it asked to stop. */
struct fsb_walk_relay {
    heap_walk_fn fn;
    void *ctx;
    bool stopped;
};

static bool fsb_walk_relay(void *arg, const struct heap_walk_entry *e)
{
    struct fsb_walk_relay *r = arg;

    r->stopped = !r->fn(r->ctx, e);
    return !r->stopped;
}

static size_t fsb_walk(const struct heap *h, heap_walk_fn fn, void *ctx)
{
    const struct fsb *f = (const struct fsb *)h;
    struct fsb_walk_relay relay = {fn, ctx, false};
    size_t n = heap_linked_list_ops.walk(f->fallback, fsb_walk_relay, &relay);

    if (relay.stopped)
        return n;

    for (size_t c = 0; c < FSB_NCLASSES; c++) {
        const struct fsb_slab *lists[2] = {f->partial[c].head, f->full[c].head};
        for (size_t i = 0; i < 2; i++) {
            /* Hardened mode: a slab whose header is not sealed ends its list (heap_check() reports it). */
            for (const struct fsb_slab *s = lists[i]; s != NULL && slab_sealed(f, s); s = s->next) {
                struct heap_walk_entry e = {.addr = s,
                                            .size = FSB_SLAB_USABLE,
                                            .state = HEAP_WALK_SLAB,
                                            .objects = s->inuse,
                                            .capacity = s->capacity,
                                            .object_size = s->size};
                n++;
                if (!fn(ctx, &e))
                    return n;
            }
        }
    }
    return n;
}

/* True if slab s is on one of class cls's lists. */
static bool slab_listed(const struct fsb *f, const struct fsb_slab *s, unsigned cls)
{
    const struct fsb_slab *lists[2] = {f->partial[cls].head, f->full[cls].head};

    for (size_t i = 0; i < 2; i++)
        for (const struct fsb_slab *t = lists[i]; t != NULL; t = t->next)
            if (t == s)
                return true;
    return false;
}

/* heap_check() of the per-CPU caches: true if p is an allocated object of class cls -- its slab is
 * one of the class's (found on its lists before its header is read), p lies on an object boundary
 * of the carved part and is not on the slab's free list, so the slab counts it in inuse. */
static bool fsb_holds(const struct heap *h, const void *p, unsigned cls)
{
    const struct fsb *f = to_cfsb(h);
    const struct fsb_slab *s = slab_of(p);
    uint32_t n = 0;

    if (cls >= FSB_NCLASSES || is_large(p) || !slab_listed(f, s, cls) || !obj_in_slab(s, cls, p))
        return false;
    for (const void *o = s->free; o != NULL && n++ <= s->capacity; o = (const void *)obj_next(f, o))
        if (o == p)
            return false;
    return true;
}

/* Takes up to n objects from partial slab s of class cls into out -- its free objects, then carved
 * ones -- and returns how many (>= 1); s moves to the full list if it fills. The refill's run: one
 * count and one list test for the lot, so a batch costs a few instructions per object. Plain mode
 * only (fsb_alloc_batch): it does not check links or poison as slab_take() does. */
static uint32_t slab_take_run(struct fsb *f, struct fsb_slab *s, unsigned cls, void **restrict out,
                              uint32_t n)
{
    uint32_t k = s->capacity - s->inuse, i = 0;
    uintptr_t size = class_size[cls], carve = s->carve;
    void *obj = s->free;

    if (k > n)
        k = n;
    for (; i < k && obj != NULL; i++) {
        out[i] = obj;
        obj = (void *)obj_next(f, obj);
    }
    s->free = obj;
    for (; i < k; i++) {
        carve = carve_at(carve, size);
        out[i] = (void *)carve;
        carve += size;
    }
    s->carve = carve;
    s->inuse += k;
    slab_note_full(f, s, cls);
    return k;
}

/* The caches' refill (heap_cpu.h, alloc_batch): up to n objects of class cls from the class's
 * partial slabs (slab_take_run), so the slabs count them allocated. A new slab is made only when the
 * class has no partial slab at all: the refill stops where the partial slabs end, so it never holds
 * a slab the user has not asked for (footprint), and it is O(n). Hardened heaps have no caches
 * (heap_cpu.h); should one ever call this, it gets 0 and takes the checked general path. */
static uint32_t fsb_alloc_batch(struct heap *h, unsigned cls, void **restrict out, uint32_t n)
{
    struct fsb *f = to_fsb(h);
    uint32_t got = 0;
    struct fsb_slab *s = partial_head(f, cls);

    if (KHEAP_HARDENING)
        return 0;
    if (s == NULL) {
        f->draining = false;
        s = new_slab(f, cls);
        if (s == NULL && fsb_cache_flush(&f->cache, f->fallback))
            s = new_slab(f, cls);
    }
    for (; got < n && s != NULL; s = f->partial[cls].head)
        got += slab_take_run(f, s, cls, out + got, n - got);
    return got;
}

/* The caches' flush (heap_cpu.h, free_batch): each object back to its slab, as fsb_free does. */
static void fsb_free_batch(struct heap *h, void *const *objs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (heap_unlikely(!slab_put_fast(to_fsb(h), objs[i])))
            fsb_free_slow(h, objs[i]);
}

static const struct heap_cpu_classes fsb_cpu_classes = {
    .count = FSB_NCLASSES,
    .max_size = FSB_MAX_SMALL,
    .of_size = size_class,
    .size = class_size,
    /* A live object's slab stays a slab of its class until the object is freed, and its class was
     * written before the object was first handed out; a large block (page-aligned) has no class. */
    .large_align = FSB_PAGE_SIZE,
    .slab_size = FSB_SLAB_SIZE,
    .class_offset = offsetof(struct fsb_slab, cls),
    .holds = fsb_holds,
    .alloc_batch = fsb_alloc_batch,
    .free_batch = fsb_free_batch,
};
_Static_assert(FSB_NCLASSES <= HEAP_CPU_MAX_CLASSES, "every class can be cached per CPU");
_Static_assert(sizeof(((struct fsb_slab *)0)->cls) == sizeof(uint16_t), "heap_cpu_class_of reads a uint16_t");

/* release_enable (heap_backend.h): the fallback gives pages back through this heap's env. */
static void fsb_release_enable(struct heap *h)
{
    struct fsb *f = to_fsb(h);

    f->release = true;
    heap_ll_release_enable(f->fallback, h);
}

const struct heap_ops heap_fixed_size_block_ops = {
    .name = "fixed_size_block",
    /* A new slab needs 16 KiB at 16 KiB alignment; a large block up to a page of alignment. */
    .grow_overhead = 2 * FSB_SLAB_SIZE + 256,
    /* Small objects: verified after their link on reuse, in check() and before their slab goes back. */
    .hard_reuse_verified = FSB_MAX_SMALL,
    .init = fsb_init,
    .alloc = fsb_alloc,
    .free = fsb_free,
    .resize = fsb_resize,
    .usable_size = fsb_usable_size,
    .add_memory = fsb_add_memory,
    .check = fsb_check,
    .validate = fsb_validate,
    .walk = fsb_walk,
    .release_enable = fsb_release_enable,
    .cpu_classes = &fsb_cpu_classes,
    .step_alloc = KHEAP_HARDENING ? NULL : fsb_step_alloc,
    .step_free = KHEAP_HARDENING ? NULL : fsb_step_free,
};
