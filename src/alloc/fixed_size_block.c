/*
 * fixed_size_block.c - the size-class ("slab") backend with a linked_list fallback.
 *
 * How it works
 * ------------
 * Requests up to FSB_MAX_SMALL (2048) bytes are rounded up to one of FSB_NCLASSES size classes
 * (16-byte steps to 128, then four classes per power of two: 160, 192, 224, 256, ... 2048). Each class
 * owns slabs: 16 KiB chunks, aligned to 16 KiB, carved into equal objects. The slab's header sits at
 * its start; objects carry NO header, so a 16-byte request costs 16 bytes:
 *
 *   16 KiB-aligned slab (class c)
 *   +--------+-------+-------+-----+-------+--- ... ---+-------+------------------+
 *   | header | obj 0 | obj 1 | ... | (skip)| ...       | obj n | never used yet   |
 *   +--------+-------+-------+-----+-------+--- ... ---+-------+------------------+
 *   0        64      64+c                                       ^carve
 *   header = { partial/full list links, free-object list, carve pointer, inuse, capacity, class }
 *
 * A free object stores the next free object of its slab in its first word. Allocation pops the head
 * of the first slab on the class's partial list (or carves a never-used object); free pushes the
 * object onto its slab, found by masking the pointer with ~(16 KiB - 1). Both are O(1) and touch one
 * slab header.
 *
 * Small or large? Larger requests (and alignments above 64) go to an embedded linked_list heap, always
 * with at least 4 KiB alignment, so a large block's pointer is always page-aligned. Small objects are
 * never page-aligned: the header occupies offset 0 of the slab, and while carving, the rare slot that
 * would start at a page boundary inside the slab is skipped. So free() tells the two apart from the
 * pointer's bits alone (ptr % 4096 == 0 means large) and never reads user-writable memory to decide;
 * no magic number can be forged.
 *
 * Alignment: slabs are 16 KiB aligned and objects start at offset 64 + i*c, so objects of a class
 * whose size is a multiple of 64 (32) are 64 (32) aligned; aligned requests up to 64 pick the smallest
 * such class.
 *
 * Returning memory: when a slab's last object is freed, the slab goes back to the linked_list
 * fallback, except that one empty slab per class is kept while it is that class's only partial slab,
 * so a tight alloc/free loop does not create and destroy a slab each time.
 *
 * The large-block cache: a page-aligned request costs the fallback a tree search over up to 16
 * candidates (it picks the smallest exact fit among them, for footprint) and a free a tree update,
 * ~1,900 instructions per pair, most of fixed_size_block's time on mixed workloads. So a freed large
 * block of n <= FSB_CACHE_PAGES (16) whole pages is first kept in cache[n - 1] (up to
 * FSB_CACHE_DEPTH (4) blocks per page count, 2.2 MiB at most) and handed out again to the next
 * request of n pages: no tree operation at all. The cache is an array in this instance, not a list
 * through the blocks: nothing in user-writable memory is ever followed. To the fallback a cached
 * block stays a used block; to the user it is free (the front end's counters already say so).
 * To keep the fallback's address order as far as a cache can, an allocation takes the lowest cached
 * address of its page count, and a free into a full page count keeps the lower of the new block and
 * the highest cached one, returning the other to the fallback. Memory is never stranded: when the
 * fallback cannot satisfy a request (a large block or a new slab) -- that is, before the front end
 * would grow the heap or fail -- the whole cache is flushed into the fallback, where its blocks
 * coalesce, and the request is retried. Cost: footprint on workload c 1.171 -> 1.200 (over five
 * seeds 1.177 -> 1.195 on average), for c ~34 -> ~25 ns/op (80% of large requests hit).
 *
 * Invariants (fsb_check): every slab in a class's lists is 16 KiB aligned and names that class;
 * partial slabs have 0 <= inuse < capacity, full slabs inuse == capacity; free objects lie inside
 * their slab on an object boundary, are not page-aligned and number capacity - inuse - uncarved;
 * list links are consistent; cache[n - 1] holds at most FSB_CACHE_DEPTH distinct page-aligned
 * blocks, each with exactly n pages (usable n * 4096 - header), and ncached counts them all; the
 * fallback heap passes its own check.
 *
 * Complexity: small alloc/free O(1) (plus an O(1) fallback call when a slab is created or returned);
 * large requests O(1) on a cache hit (O(FSB_CACHE_DEPTH)), else as linked_list (a flush adds up to
 * 64 fallback frees); check O(slabs * objects + fallback blocks + cached blocks).
 * Trade-offs: fastest for small objects and no per-object header, but up to ~25% internal
 * fragmentation from class rounding, a partly used 16 KiB slab per active class, and large blocks pay
 * a page alignment (the padding returns to the fallback's free lists).
 *
 * Hardened mode (docs/hardening.md): objects still have no header (the front end's canary and
 * trailer sit at the end of each object, inside its class size). The slab header grows to 192 bytes:
 * a magic word (secret ^ slab ^ FSB_MAGIC) that proves a 16 KiB-aligned address really is a live
 * slab, and a bitmap with one "allocated" bit per 16-byte granule (an object's bit is its first
 * granule's, a shift away). validate() checks the fallback region (the last one found is cached),
 * magic, object boundary (a divisibility test: one multiply) and the bit, so interior, foreign and double frees are told apart in O(1) without reading
 * outside the heap. A free object holds its slab's next free object mangled with its own address
 * and, in its second word, the free site; the link is validated before it is followed (inside the
 * slab, on an object boundary, below the carve pointer, bit clear), and the rest of the object is
 * verified to still hold the poison the front end put there. A slab going back to the fallback is
 * poisoned over its first span, which also destroys its magic. Large blocks are the fallback's, whose
 * own checks apply (it reports through this heap); check() skips the canary test for slabs and
 * cached blocks. A cached large block is free: validate() finds it in the cache (by its page count,
 * read from the fallback's header once the fallback has vouched for it) and reports a double free
 * with the site of the first free; the free poison the front end wrote over its first
 * HEAP_POISON_SPAN bytes is verified when it is handed out again, when it is flushed to the
 * fallback and by check() (no links are kept in it, so the whole span is verified). A disturbed one
 * is reported as a use-after-free write and quarantined like a poisoned small object. A flushed
 * block is validated by the fallback before the fallback frees it, and its free site is the user's.
 */
#include "heap_backend.h"
#include "linked_list.h"

#define FSB_SLAB_SIZE ((uintptr_t)16384)
#define FSB_PAGE_SIZE ((uintptr_t)4096)
#define FSB_SLAB_HDR ((uintptr_t)(64 + 128 * KHEAP_HARDENING))
/* The fallback's block header: 16 bytes (32 in hardened mode). */
#define FSB_LL_HDR ((uintptr_t)(16 + 16 * KHEAP_HARDENING))
/* The fallback puts its block header in front of every block, so a slab leaves its last bytes to the
 * next slab's header: consecutive slabs then tile memory with no padding between. */
#define FSB_SLAB_USABLE (FSB_SLAB_SIZE - FSB_LL_HDR)
#define FSB_MAX_SMALL 2048
#define FSB_MAX_SMALL_ALIGN 64
#define FSB_NCLASSES 24
#define FSB_MAX_OBJECTS 1024 /* hardened bitmap: >= 16-byte granules (objects of class 16) per slab */
#define FSB_CACHE_PAGES 16   /* large blocks of 1..16 pages (fallback header included) are cached */
#define FSB_CACHE_DEPTH 4    /* at most this many per page count (see "The large-block cache") */
#if KHEAP_HARDENING
#define FSB_MAGIC ((uint64_t)0x534c4142) /* "SLAB" */
#endif

struct fsb_slab {
    struct fsb_slab *next; /* in the class's partial or full list */
    struct fsb_slab *prev;
    void *free;            /* freed objects, linked through their first word */
    uintptr_t carve;       /* next never-used object, or the slab's end */
    uint32_t inuse;        /* live objects */
    uint32_t capacity;     /* objects this slab can hold */
    uint16_t cls;          /* size class index */
    uint16_t size;         /* class_size[cls]: the usable size of every object, one load away */
    uint32_t full;         /* 1 if on the full list */
#if KHEAP_HARDENING
    uint64_t magic;        /* secret ^ slab ^ FSB_MAGIC while this is a slab */
    uint64_t allocated[FSB_MAX_OBJECTS / 64]; /* bit i: the object at granule i is allocated */
#endif
};

struct fsb_list {
    struct fsb_slab *head;
};

/* Freed large blocks of one page count, still used blocks of the fallback (see the essay). They are
 * kept here, in the instance, not linked through their own memory: nothing a user can write. */
struct fsb_cache {
    uint32_t count;                   /* entries in block[], oldest first */
    void *block[FSB_CACHE_DEPTH];     /* user pointers (page-aligned) */
#if KHEAP_HARDENING
    const void *site[FSB_CACHE_DEPTH]; /* where each was freed */
#endif
};

struct fsb {
    struct heap common;                     /* first member */
    struct heap *fallback;                  /* embedded linked_list heap (memory after this struct) */
    struct fsb_list partial[FSB_NCLASSES];  /* slabs with a free object, allocation order */
    struct fsb_list full[FSB_NCLASSES];     /* slabs without one */
    uint32_t capacity[FSB_NCLASSES];        /* objects per slab per class */
    uint32_t ncached;                       /* blocks in cache[], so a flush of nothing is one test */
    struct fsb_cache cache[FSB_CACHE_PAGES]; /* cache[n - 1]: freed large blocks of n pages */
#if KHEAP_HARDENING
    uint64_t divides[FSB_NCLASSES];         /* 2^64 / class size + 1: object boundary by one multiply */
    uintptr_t seen_lo, seen_hi;             /* inside one of the fallback's regions (validate's cache) */
#endif
};

_Static_assert(offsetof(struct fsb, common) == 0, "struct heap must be the first member");
_Static_assert(sizeof(struct fsb_slab) <= FSB_SLAB_HDR, "slab header must fit before object 0");
_Static_assert(FSB_SLAB_HDR % HEAP_MIN_ALIGN == 0 && FSB_SLAB_HDR % FSB_MAX_SMALL_ALIGN == 0,
               "object 0 must be 64-aligned");
_Static_assert(FSB_SLAB_SIZE % FSB_PAGE_SIZE == 0, "slabs are whole pages");
_Static_assert(FSB_MAX_SMALL < FSB_PAGE_SIZE, "small and large are told apart by page alignment");
_Static_assert((FSB_SLAB_USABLE - FSB_SLAB_HDR) / 16 <= FSB_MAX_OBJECTS, "bitmap covers every granule");

static const uint16_t class_size[FSB_NCLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256,
    320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048,
};

/* size_class[(size + 15) / 16] = smallest class holding size bytes, for 1 <= size <= 2048. */
static const uint8_t size_class[FSB_MAX_SMALL / 16 + 1] = {
    0, 0, 1, 2, 3, 4, 5, 6, 7,                                  /* 16 .. 128 */
    8, 8, 9, 9, 10, 10, 11, 11,                                  /* .. 256 */
    12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15, /* .. 512 */
    16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17, /* .. 768 */
    18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19, /* .. 1024 */
    20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, /* .. 1280 */
    21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, /* .. 1536 */
    22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, /* .. 1792 */
    23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, /* .. 2048 */
};
_Static_assert(sizeof(size_class) == FSB_MAX_SMALL / 16 + 1, "one entry per 16-byte step");

static struct fsb *to_fsb(struct heap *h)
{
    return container_of(h, struct fsb, common);
}

static const struct fsb *to_cfsb(const struct heap *h)
{
    return container_of(h, const struct fsb, common);
}

static bool is_large(const void *ptr)
{
    return ((uintptr_t)ptr & (FSB_PAGE_SIZE - 1)) == 0;
}

static struct fsb_slab *slab_of(const void *ptr)
{
    return (struct fsb_slab *)heap_align_down((uintptr_t)ptr, FSB_SLAB_SIZE);
}

static void list_push(struct fsb_list *l, struct fsb_slab *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (s->next != NULL)
        s->next->prev = s;
    l->head = s;
}

static void list_remove(struct fsb_list *l, struct fsb_slab *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
}

/* Objects of class cls that fit a slab, skipping slots that would start on a page boundary. */
static uint32_t count_capacity(unsigned cls)
{
    uint32_t n = 0;

    for (uintptr_t off = FSB_SLAB_HDR; off + class_size[cls] <= FSB_SLAB_USABLE; off += class_size[cls])
        n += (off & (FSB_PAGE_SIZE - 1)) != 0;
    return n;
}

#if KHEAP_HARDENING
/* The secret itself, not a hash of it: a slab's magic is one more keyed word (whoever reads one
 * learns the secret either way, as with the invertible key()), and this costs no multiply. */
static uint64_t slab_magic(const struct fsb *f, const struct fsb_slab *s)
{
    return f->common.hard.secret ^ (uintptr_t)s ^ FSB_MAGIC;
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
    uint64_t m = f->divides[cls];

    if (off < FSB_SLAB_HDR || off >= FSB_SLAB_SIZE || (uint64_t)(off - FSB_SLAB_HDR) * m >= m)
        return -1;
    return granule(off);
}

/* i >= 0 (unsigned arithmetic: a shift and a mask, no signed-division fix-ups). */
static bool bit_get(const struct fsb_slab *s, int i)
{
    unsigned u = (unsigned)i;
    return (s->allocated[u / 64] >> (u % 64)) & 1;
}

static void bit_flip(struct fsb_slab *s, int i)
{
    unsigned u = (unsigned)i;
    s->allocated[u / 64] ^= (uint64_t)1 << (u % 64);
}

/* fixed_size_block's slabs are used blocks of the fallback without a canary (check() skips them). */
static bool is_slab(const struct heap *owner, const void *p)
{
    const struct fsb *f = container_of(owner, const struct fsb, common);
    return (uintptr_t)p % FSB_SLAB_SIZE == 0 && ((const struct fsb_slab *)p)->magic == slab_magic(f, p);
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

static inline void obj_set_free(const struct fsb *f, void *obj, const void *next, const void *site)
{
    uintptr_t *w = obj;

    w[1] = (uintptr_t)site;
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
static inline __attribute__((always_inline)) bool free_link_ok(const struct fsb *f, const struct fsb_slab *s, uintptr_t next)
{
    int i;

    if (next == 0)
        return true;
    if (next < (uintptr_t)s || next >= s->carve || (next & (FSB_PAGE_SIZE - 1)) == 0)
        return false;
    i = obj_index(f, s->cls, next - (uintptr_t)s);
    return i >= 0 && !bit_get(s, i);
}
#endif

/*
 * The large-block cache (see the essay). cache[n - 1] holds freed blocks of exactly n pages; to the
 * fallback they are still used blocks, to the user they are free.
 */

/* The usable size of a cached block of n pages: whole pages including the fallback's header. */
static size_t pages_usable(size_t n)
{
    return n * FSB_PAGE_SIZE - FSB_LL_HDR;
}

/* The cache index for large blocks of usable size u, or -1 if u is not exactly whole pages (the
 * fallback may leave a remainder too small to split off with a block) or is above FSB_CACHE_PAGES. */
static int cache_index(size_t u)
{
    size_t n = (u + FSB_LL_HDR) / FSB_PAGE_SIZE;

    if (n == 0 || n > FSB_CACHE_PAGES || u != pages_usable(n))
        return -1;
    return (int)n - 1;
}

/* Position of p in c, or -1. */
static int cache_find(const struct fsb_cache *c, const void *p)
{
    for (uint32_t j = 0; j < c->count && j < FSB_CACHE_DEPTH; j++)
        if (c->block[j] == p)
            return (int)j;
    return -1;
}

#if KHEAP_HARDENING
/* True if large block p, a used block of the fallback, is in the cache (free to the user). */
static bool is_cached(const struct fsb *f, const void *p)
{
    int i = cache_index(heap_linked_list_ops.usable_size(f->fallback, p));

    return i >= 0 && cache_find(&f->cache[i], p) >= 0;
}

/* Offset of the first byte of cached block p (usable u) that lost the free poison, or the end of
 * the span: the front end's rule for freed memory, over the whole span (no links are kept in p). */
static size_t cache_unpoisoned(const void *p, size_t u)
{
    size_t to = u < HEAP_POISON_SPAN ? u : HEAP_POISON_SPAN;
    size_t off = heap_hard_find_unpoisoned(p, 0, to);

    return off == to ? u : off;
}

/* The cached block p (usable u, freed at site) is damaged: report it, keep it out of circulation for
 * good as a consistent used block, and make the allocation in progress fail. */
static void cache_reject(struct fsb *f, void *p, size_t u, enum heap_error kind, size_t off, const void *site)
{
    heap_hard_report(&f->common, kind, p, 0, off, NULL, site);
    f->common.hard.abort = true;
    heap_hard_quarantine(&f->common, p, u);
}
#endif

/* Takes the newest block out of cache[i] for an allocation; NULL (hardened mode) if it was written
 * to after it was freed. */
static void *cache_take(struct fsb *f, unsigned i, size_t *usable)
{
    struct fsb_cache *c = &f->cache[i];
    size_t u = pages_usable(i + 1);
    uint32_t lo = 0;
    void *p;

    /* The lowest address, as the fallback's first fit would choose. */
    for (uint32_t j = 1; j < c->count; j++)
        if ((uintptr_t)c->block[j] < (uintptr_t)c->block[lo])
            lo = j;
    p = c->block[lo];
    c->count--;
    c->block[lo] = c->block[c->count];
    f->ncached--;
#if KHEAP_HARDENING
    const void *site = c->site[lo];
    c->site[lo] = c->site[c->count];
    size_t off = cache_unpoisoned(p, u);
    if (heap_unlikely(off != u)) {
        cache_reject(f, p, u, HEAP_ERR_USE_AFTER_FREE, off, site);
        return NULL;
    }
#endif
    *usable = u;
    return p;
}

/* Hands cached block p (usable u, freed at site) back to the fallback. */
static void cache_release(struct fsb *f, void *p, size_t u, const void *site)
{
#if KHEAP_HARDENING
    const void *caller = f->common.hard.caller, *fs;
    size_t usable, off = cache_unpoisoned(p, u);
    enum heap_error e;

    if (off != u) {
        cache_reject(f, p, u, HEAP_ERR_USE_AFTER_FREE, off, site);
        return;
    }
    /* The fallback's free follows tree links around p: they must be validated first. */
    e = heap_linked_list_ops.validate(f->fallback, p, &usable, &fs);
    if (e != HEAP_BLOCK_OK) {
        cache_reject(f, p, u, e == HEAP_ERR_CORRUPT_FREELIST ? e : HEAP_ERR_CORRUPT_METADATA, 0, NULL);
        return;
    }
    /* The fallback records the free site of what it frees: the user's free, not this allocation. */
    f->common.hard.caller = site;
    heap_linked_list_ops.free(f->fallback, p);
    f->common.hard.caller = caller;
#else
    (void)u;
    (void)site;
    heap_linked_list_ops.free(f->fallback, p);
#endif
}

/* Memory pressure: gives every cached block back to the fallback (where it coalesces with its
 * neighbours). Returns false if the cache was empty, so retrying is pointless. */
static bool cache_flush(struct fsb *f)
{
    if (f->ncached == 0)
        return false;
    for (unsigned i = 0; i < FSB_CACHE_PAGES; i++) {
        struct fsb_cache *c = &f->cache[i];
        for (uint32_t j = 0; j < c->count; j++) {
#if KHEAP_HARDENING
            cache_release(f, c->block[j], pages_usable(i + 1), c->site[j]);
#else
            cache_release(f, c->block[j], pages_usable(i + 1), NULL);
#endif
        }
        c->count = 0;
    }
    f->ncached = 0;
    return true;
}

/* Puts large block ptr (usable u) into the cache if it has room for it; false if not. */
static bool cache_put(struct fsb *f, void *ptr, size_t u)
{
    int i = cache_index(u);
    struct fsb_cache *c;
    uint32_t hi = 0;

    if (i < 0)
        return false;
    c = &f->cache[i];
    if (c->count < FSB_CACHE_DEPTH) {
        f->ncached++;
        hi = c->count++;
    } else {
        /* Full: keep the lower addresses cached, give the highest back to the fallback. */
        for (uint32_t j = 1; j < c->count; j++)
            if ((uintptr_t)c->block[j] > (uintptr_t)c->block[hi])
                hi = j;
        if (c->count == 0 || (uintptr_t)ptr > (uintptr_t)c->block[hi])
            return false;
#if KHEAP_HARDENING
        cache_release(f, c->block[hi], u, c->site[hi]);
#else
        cache_release(f, c->block[hi], u, NULL);
#endif
    }
#if KHEAP_HARDENING
    c->site[hi] = f->common.hard.caller;
#endif
    c->block[hi] = ptr;
    return true;
}

#if KHEAP_HARDENING
/* The fallback's used blocks that carry no front-end canary: slabs and cached large blocks. */
static bool fallback_internal(const struct heap *owner, const void *p)
{
    return is_slab(owner, p) || is_cached(container_of(owner, const struct fsb, common), p);
}
#endif

static struct heap *fsb_init(void *mem, size_t size, uint64_t secret)
{
    /* Offsets from mem, compared with size before any address is formed (heap_backend.h). */
    size_t lead = heap_pad_to((uintptr_t)mem, HEAP_MIN_ALIGN);
    size_t inst = heap_align_up(sizeof(struct fsb), HEAP_MIN_ALIGN);
    uintptr_t base = (uintptr_t)mem + lead;
    struct heap *fallback;
    struct fsb *f;

    if (size < lead + inst)
        return NULL;
    fallback = heap_linked_list_ops.init((void *)(base + inst), size - lead - inst, secret);
    if (fallback == NULL)
        return NULL;
    f = (struct fsb *)base;
    __builtin_memset(f, 0, sizeof(*f));
    f->fallback = fallback;
    for (unsigned c = 0; c < FSB_NCLASSES; c++)
        f->capacity[c] = count_capacity(c);
#if KHEAP_HARDENING
    f->common.hard.owner = &f->common;
    f->common.hard.secret = secret;
    fallback->ops = &heap_linked_list_ops;
    heap_ll_embed(fallback, &f->common, fallback_internal);
    for (unsigned c = 0; c < FSB_NCLASSES; c++)
        f->divides[c] = UINT64_MAX / class_size[c] + 1;
#endif
    return &f->common;
}

/* Gets a fresh slab for class cls from the fallback and makes it the head of the partial list. */
static struct fsb_slab *new_slab(struct fsb *f, unsigned cls)
{
    size_t usable;
    struct fsb_slab *s = heap_linked_list_ops.alloc(f->fallback, FSB_SLAB_USABLE, FSB_SLAB_SIZE, &usable);

    if (s == NULL)
        return NULL;
    s->free = NULL;
    s->carve = (uintptr_t)s + FSB_SLAB_HDR;
    s->inuse = 0;
    s->capacity = f->capacity[cls];
    s->cls = cls;
    s->size = class_size[cls];
    s->full = 0;
#if KHEAP_HARDENING
    s->magic = slab_magic(f, s);
    __builtin_memset(s->allocated, 0, sizeof(s->allocated));
#endif
    list_push(&f->partial[cls], s);
    return s;
}

/* Takes one object from partial slab s of class cls. */
static inline void *slab_take(struct fsb *f, struct fsb_slab *s, unsigned cls)
{
    void *obj = s->free;

    if (obj != NULL) {
#if KHEAP_HARDENING
        uintptr_t next = obj_next(f, obj);
        if (heap_unlikely(!free_link_ok(f, s, next))) {
            heap_hard_report(&f->common, HEAP_ERR_CORRUPT_FREELIST, obj, 0, 0, NULL, NULL);
            f->common.hard.abort = true;
            return NULL;
        }
        s->free = (void *)next;
        if (heap_unlikely(!heap_hard_verify_free(&f->common, obj, HEAP_HARD_LINK, class_size[cls]))) {
            /* Taken out for good: allocated, never handed out, consistent for check(). */
            heap_hard_quarantine(&f->common, obj, class_size[cls]);
            bit_flip(s, granule((uintptr_t)obj - (uintptr_t)s));
            if (++s->inuse == s->capacity) {
                list_remove(&f->partial[cls], s);
                list_push(&f->full[cls], s);
                s->full = 1;
            }
            return NULL;
        }
#else
        s->free = *(void **)obj;
#endif
    } else {
        if ((s->carve & (FSB_PAGE_SIZE - 1)) == 0)
            s->carve += class_size[cls];
        obj = (void *)s->carve;
        s->carve += class_size[cls];
    }
#if KHEAP_HARDENING
    bit_flip(s, granule((uintptr_t)obj - (uintptr_t)s));
#endif
    if (++s->inuse == s->capacity) {
        list_remove(&f->partial[cls], s);
        list_push(&f->full[cls], s);
        s->full = 1;
    }
    return obj;
}

/* A large block of size bytes (whole pages with the header) from the fallback, page-aligned or more. */
static void *large_alloc(struct fsb *f, size_t size, size_t align, size_t *usable)
{
#if KHEAP_HARDENING
    struct fsb_slab *l = heap_linked_list_ops.alloc(f->fallback, size,
                                                    align > FSB_PAGE_SIZE ? align : FSB_PAGE_SIZE, usable);
    /* Memory may still hold a slab's magic (e.g. from an earlier heap over the same memory with
     * the same secret): a large block must never pass for a slab. */
    if (l != NULL)
        l->magic = 0;
    return l;
#else
    return heap_linked_list_ops.alloc(f->fallback, size, align > FSB_PAGE_SIZE ? align : FSB_PAGE_SIZE,
                                      usable);
#endif
}

/* Smallest class >= cls whose objects are align-aligned, or FSB_NCLASSES. */
static unsigned aligned_class(unsigned cls, size_t align)
{
    while (cls < FSB_NCLASSES && class_size[cls] % align != 0)
        cls++;
    return cls;
}

/* Everything fsb_alloc's fast path does not handle: carving, new slabs, a slab becoming full,
 * aligned and large requests, hardened mode. */
static __attribute__((noinline)) void *fsb_alloc_slow(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct fsb *f = to_fsb(h);
    unsigned cls;
    struct fsb_slab *s;

    if (heap_unlikely(size > FSB_MAX_SMALL || align > FSB_MAX_SMALL_ALIGN))
        goto large;
    cls = size_class[(size + 15) / 16];
    if (heap_unlikely(align != HEAP_MIN_ALIGN)) {
        cls = aligned_class(cls, align);
        if (cls == FSB_NCLASSES)
            goto large;
    }
    s = f->partial[cls].head;
    if (heap_unlikely(s == NULL)) {
        s = new_slab(f, cls);
        if (s == NULL && cache_flush(f))
            s = new_slab(f, cls);
        if (s == NULL)
            return NULL;
    }
    *usable = class_size[cls];
    return slab_take(f, s, cls);
large:
    /* Whole pages including the fallback's block header, so large blocks and slabs tile pages. */
    size = heap_align_up(size + FSB_LL_HDR, FSB_PAGE_SIZE) - FSB_LL_HDR;
    if (align <= FSB_PAGE_SIZE) {
        int i = cache_index(size);
        if (i >= 0 && f->cache[i].count != 0)
            return cache_take(f, (unsigned)i, usable);
    }
    void *p = large_alloc(f, size, align, usable);
    if (p == NULL && cache_flush(f))
        p = large_alloc(f, size, align, usable);
    return p;
}

/*
 * The fast paths (plain mode). The common small allocation pops a previously freed object from the
 * head slab of its class while that slab stays partial; the common free pushes onto a slab that stays
 * partial and non-empty. Nothing else -- no list moves, no carving, no calls -- so these compile to a
 * dozen instructions without spills; every other case goes to the slow path, which handles the
 * general case completely.
 */
#if KHEAP_HARDENING
/* True if the object at o (class size bytes) still holds the free poison after its link: the test
 * slab_take's heap_hard_verify_free() makes, inline and without locating the bad byte (the slow
 * path redoes it and reports). */
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
#endif

static void *fsb_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
#if KHEAP_HARDENING
    /* The same case as the plain fast path, with slab_take's checks: a sound link, the poison intact.
     * Anything else -- including every error -- is left to the slow path, which reports it. */
    if (heap_likely(size <= FSB_MAX_SMALL && align == HEAP_MIN_ALIGN)) {
        struct fsb *f = to_fsb(h);
        unsigned cls = size_class[(size + 15) / 16];
        struct fsb_slab *s = f->partial[cls].head;
        void *obj;

        if (heap_likely(s != NULL && (obj = s->free) != NULL && s->inuse + 1 < s->capacity)) {
            uintptr_t next = obj_next(f, obj);
            size_t cs = class_size[cls];

            if (heap_likely(free_link_ok(f, s, next) && obj_poisoned(obj, cs))) {
                s->free = (void *)next;
                bit_flip(s, granule((uintptr_t)obj - (uintptr_t)s));
                s->inuse++;
                *usable = cs;
                return obj;
            }
        }
        return fsb_alloc_slow(h, size, HEAP_MIN_ALIGN, usable);
    }
#else
    if (heap_likely(size <= FSB_MAX_SMALL && align == HEAP_MIN_ALIGN)) {
        unsigned cls = size_class[(size + 15) / 16];
        struct fsb_slab *s = to_fsb(h)->partial[cls].head;
        void *obj;

        if (heap_likely(s != NULL && (obj = s->free) != NULL && s->inuse + 1 < s->capacity)) {
            s->free = *(void **)obj;
            s->inuse++;
            *usable = class_size[cls];
            return obj;
        }
    }
#endif
    return fsb_alloc_slow(h, size, align, usable);
}

static __attribute__((noinline)) size_t fsb_free_slow(struct heap *h, void *ptr)
{
    struct fsb *f = to_fsb(h);
    struct fsb_slab *s;
    unsigned cls;

    if (heap_unlikely(is_large(ptr))) {
        size_t u = heap_linked_list_ops.usable_size(f->fallback, ptr);
        if (cache_put(f, ptr, u))
            return u;
        return heap_linked_list_ops.free(f->fallback, ptr);
    }
    s = slab_of(ptr);
    cls = s->cls;
#if KHEAP_HARDENING
    obj_set_free(f, ptr, s->free, h->hard.caller);
    bit_flip(s, granule((uintptr_t)ptr - (uintptr_t)s));
#else
    *(void **)ptr = s->free;
#endif
    s->free = ptr;
    if (heap_unlikely(s->full)) {
        list_remove(&f->full[cls], s);
        list_push(&f->partial[cls], s);
        s->full = 0;
    }
    if (heap_unlikely(--s->inuse == 0) && (s->prev != NULL || s->next != NULL)) {
        list_remove(&f->partial[cls], s);
#if KHEAP_HARDENING
        size_t usable;
        const void *site;
        if (heap_linked_list_ops.validate(f->fallback, s, &usable, &site) != HEAP_BLOCK_OK) {
            /* The fallback around the slab is damaged: keep the slab out of both for good. */
            heap_hard_report(h, HEAP_ERR_CORRUPT_METADATA, s, 0, 0, NULL, NULL);
            return class_size[cls];
        }
        /* The front end's rule for freed memory; it also destroys the magic. */
        heap_hard_poison(s, HEAP_POISON_SPAN);
#endif
        heap_linked_list_ops.free(f->fallback, s);
    }
    return class_size[cls];
}

static size_t fsb_free(struct heap *h, void *ptr)
{
#if KHEAP_HARDENING
    /* ptr passed fsb_validate(): a live object of a slab. The plain fast path's case, plus the mangled
     * link, the free site and the bitmap. */
    if (heap_likely(!is_large(ptr))) {
        struct fsb_slab *s = slab_of(ptr);

        /* Also the last object of a slab that is its class's only partial one: it stays (essay). */
        if (heap_likely(!s->full && (s->inuse > 1 || (s->prev == NULL && s->next == NULL)))) {
            obj_set_free(to_fsb(h), ptr, s->free, h->hard.caller);
            bit_flip(s, granule((uintptr_t)ptr - (uintptr_t)s));
            s->free = ptr;
            s->inuse--;
            return s->size;
        }
    }
#else
    if (heap_likely(!is_large(ptr))) {
        struct fsb_slab *s = slab_of(ptr);

        if (heap_likely(!s->full && s->inuse > 1)) {
            *(void **)ptr = s->free;
            s->free = ptr;
            s->inuse--;
            return s->size;
        }
    }
#endif
    return fsb_free_slow(h, ptr);
}

#if KHEAP_HARDENING
/* fsb_validate() for a page-aligned pointer: out of line, so the small-object case saves no registers. */
static __attribute__((noinline)) enum heap_error validate_large(struct fsb *f, const void *ptr, size_t *usable,
                                                                const void **free_site)
{
    struct heap *h = &f->common;
    {
        /* A slab is a used fallback block too, but never the user's. */
        enum heap_error e = heap_linked_list_ops.validate(f->fallback, ptr, usable, free_site);
        if (e == HEAP_BLOCK_OK || e == HEAP_ERR_CORRUPT_FREELIST) {
            /* Its header is sound. A cached block is used to the fallback but free to the user. */
            int i = cache_index(heap_linked_list_ops.usable_size(f->fallback, ptr)), j;
            if (i >= 0 && (j = cache_find(&f->cache[i], ptr)) >= 0) {
                *free_site = f->cache[i].site[j];
                return HEAP_ERR_DOUBLE_FREE;
            }
        }
        if (e == HEAP_BLOCK_OK && is_slab(h, ptr))
            return HEAP_ERR_INVALID_FREE;
        return e;
    }
}

/* fsb_validate() for a small object whose slab header s lies in the fallback's memory (so it may be
 * read): magic, object boundary, carve pointer, bit. */
static inline enum heap_error validate_small(struct fsb *f, const void *ptr, const struct fsb_slab *s,
                                             size_t *usable, const void **free_site)
{
    uintptr_t a = (uintptr_t)ptr;
    int i;

    if (s->magic != slab_magic(f, s) || s->cls >= FSB_NCLASSES)
        return HEAP_ERR_INVALID_FREE;
    *free_site = NULL;
    i = obj_index(f, s->cls, a - (uintptr_t)s);
    if (i < 0 || a >= s->carve)
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

    if (!heap_ll_region(f->fallback, (uintptr_t)s, &f->seen_lo, &f->seen_hi))
        return HEAP_ERR_INVALID_FREE;
    return validate_small(f, ptr, s, usable, free_site);
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
    if (heap_unlikely(s - f->seen_lo >= f->seen_hi - f->seen_lo))
        return validate_small_lookup(f, ptr, usable, free_site);
    return validate_small(f, ptr, (const struct fsb_slab *)s, usable, free_site);
}
#endif

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

/* Checks one slab of class cls on list full (0/1); returns the number of broken invariants. */
static size_t check_slab(const struct fsb *f, const struct fsb_slab *s, unsigned cls, uint32_t full)
{
    uintptr_t base = (uintptr_t)s, end = base + FSB_SLAB_SIZE;
    size_t bad = 0;
    uint32_t nfree = 0, uncarved = 0;

    bad += base % FSB_SLAB_SIZE != 0;
    bad += s->cls != cls || s->full != full || s->capacity != f->capacity[cls];
    bad += full ? s->inuse != s->capacity : s->inuse >= s->capacity;
    if (bad != 0)
        return bad;
    bad += s->carve < base + FSB_SLAB_HDR || s->carve > end;
    for (uintptr_t off = s->carve - base; off + class_size[cls] <= FSB_SLAB_USABLE; off += class_size[cls])
        uncarved += (off & (FSB_PAGE_SIZE - 1)) != 0;
#if KHEAP_HARDENING
    if (s->magic != slab_magic(f, s)) {
        heap_hard_report(&f->common, HEAP_ERR_CORRUPT_METADATA, s, 0, 0, NULL, NULL);
        return bad + 1;
    }
    if (s->free != NULL && !free_link_ok(f, s, (uintptr_t)s->free)) {
        heap_hard_report(&f->common, HEAP_ERR_CORRUPT_FREELIST, s, 0, 0, NULL, NULL);
        return bad + 1;
    }
    for (const void *o = s->free; o != NULL;) {
        uintptr_t next = obj_next(f, o);
        size_t off;
        if (++nfree > s->capacity) {
            bad++;
            break;
        }
        off = heap_hard_find_unpoisoned(o, HEAP_HARD_LINK, class_size[cls]);
        if (off != class_size[cls]) {
            heap_hard_report(&f->common, HEAP_ERR_USE_AFTER_FREE, o, 0, off, NULL, obj_free_site(o));
            bad++;
        }
        if (!free_link_ok(f, s, next)) {
            heap_hard_report(&f->common, HEAP_ERR_CORRUPT_FREELIST, o, 0, 0, NULL, NULL);
            bad++;
            break;
        }
        o = (const void *)next;
    }
    {
        uint32_t live = 0;
        for (uintptr_t off = FSB_SLAB_HDR; off < s->carve - base; off += class_size[cls]) {
            int i = obj_index(f, cls, off);
            if ((off & (FSB_PAGE_SIZE - 1)) == 0 || !bit_get(s, i))
                continue;
            live++;
            bad += !heap_hard_verify_live(&f->common, (const void *)(base + off), class_size[cls]);
        }
        bad += live != s->inuse;
    }
#else
    for (const void *o = s->free; o != NULL; o = *(void *const *)o) {
        uintptr_t a = (uintptr_t)o;
        if (++nfree > s->capacity || a < base + FSB_SLAB_HDR || a >= s->carve ||
            (a - base - FSB_SLAB_HDR) % class_size[cls] != 0 || is_large(o)) {
            bad++;
            break;
        }
    }
#endif
    bad += nfree + uncarved + s->inuse != s->capacity;
    return bad;
}

static size_t check_list(const struct fsb *f, const struct fsb_list *l, unsigned cls, uint32_t full)
{
    size_t bad = 0, n = 0;
    const struct fsb_slab *prev = NULL;

    for (const struct fsb_slab *s = l->head; s != NULL; prev = s, s = s->next) {
        if (++n > ((size_t)1 << 32)) {
            bad++;
            break;
        }
        bad += s->prev != prev;
        bad += check_slab(f, s, cls, full);
    }
    return bad;
}

/* Checks the large-block cache: bounds, counts, each entry a distinct page-aligned block of the
 * fallback of its page count; in hardened mode also the free poison of each. */
static size_t check_cache(const struct fsb *f)
{
    size_t bad = 0, total = 0;

    for (unsigned i = 0; i < FSB_CACHE_PAGES; i++) {
        const struct fsb_cache *c = &f->cache[i];
        if (c->count > FSB_CACHE_DEPTH) {
            bad++;
            continue;
        }
        total += c->count;
        for (uint32_t j = 0; j < c->count; j++) {
            const void *p = c->block[j];
#if KHEAP_HARDENING
            size_t off;
            if (!is_large(p) || !heap_ll_contains(f->fallback, (uintptr_t)p)) {
                bad++;
                continue;
            }
#else
            if (!is_large(p)) {
                bad++;
                continue;
            }
#endif
            bad += heap_linked_list_ops.usable_size(f->fallback, p) != pages_usable(i + 1);
            bad += cache_find(c, p) != (int)j; /* listed twice */
#if KHEAP_HARDENING
            off = cache_unpoisoned(p, pages_usable(i + 1));
            if (off != pages_usable(i + 1)) {
                heap_hard_report(&f->common, HEAP_ERR_USE_AFTER_FREE, p, 0, off, NULL, c->site[j]);
                bad++;
            }
#endif
        }
    }
    return bad + (total != f->ncached);
}

static size_t fsb_check(const struct heap *h)
{
    const struct fsb *f = to_cfsb(h);
    size_t bad = heap_linked_list_ops.check(f->fallback) + check_cache(f);

    for (unsigned c = 0; c < FSB_NCLASSES; c++) {
        bad += check_list(f, &f->partial[c], c, 0);
        bad += check_list(f, &f->full[c], c, 1);
    }
    return bad;
}

const struct heap_ops heap_fixed_size_block_ops = {
    .name = "fixed_size_block",
    /* A new slab needs 16 KiB at 16 KiB alignment; a large block up to 4 KiB of page alignment. */
    .grow_overhead = 2 * FSB_SLAB_SIZE + 256,
    .init = fsb_init,
    .alloc = fsb_alloc,
    .free = fsb_free,
    .resize = fsb_resize,
    .usable_size = fsb_usable_size,
    .add_memory = fsb_add_memory,
    .check = fsb_check,
#if KHEAP_HARDENING
    .validate = fsb_validate,
#endif
};
