/*
 * linked_list.c - the free-list backend: boundary tags, segregated free lists, first fit per bin.
 *
 * How it works
 * ------------
 * The heap is a sequence of blocks that tile each region. Every block starts with a 16-byte header;
 * the user's bytes follow it, so free() needs no size. Free blocks additionally hold two list links,
 * and the header of the block after a free block records the free block's size (its "footer"):
 *
 *   region:  | rhdr | block | block | ... | block | sentinel |
 *
 *   used block                              free block (>= LL_MIN_BLOCK = 32 bytes)
 *   +--------------------------+            +--------------------------+
 *   | prev_size (if prev free) |            | prev_size (if prev free) |
 *   | size | PREV_INUSE | INUSE |            | size | PREV_INUSE | 0     |
 *   +--------------------------+ <- ptr     +--------------------------+
 *   | user data ...            |            | next free, prev free     |
 *   +--------------------------+            | ...                      |
 *                                           +--------------------------+
 *                                           next block's prev_size == this size (boundary tag)
 *
 * `size` counts the header and is a multiple of 16, so the two low bits carry flags. Each region ends
 * with a 16-byte sentinel header (size 0, INUSE) and its first block has PREV_INUSE set, so coalescing
 * never runs off a region. Because a block's header tells whether the previous block is free and how
 * large it is, free() finds both neighbours in O(1) and merges with either or both.
 *
 * Free blocks are kept in LL_NBINS doubly linked lists ("bins") by size: exact 16-byte steps below
 * 512 bytes, then 8 bins per power of two. A bitmap says which bins are non-empty. alloc() walks the
 * request's own bin for the first block that fits (first fit), and otherwise takes a block of a
 * larger bin, where every block fits: the lowest-addressed among the first LL_PICK_LIMIT + 1 blocks
 * of each of the next LL_PICK_BINS non-empty bins. That approximates address-ordered first fit, which
 * packs live blocks low and keeps the free space at the top in one piece (the heap's footprint), at
 * a bounded cost (at most 64 bitmap steps and 576 links). The remainder of a block is split off and
 * returned to the bins when it can hold a free block (>= 32 bytes); otherwise it stays with the
 * allocation and shows up in usable_size. Alignment above 16 carves the front padding off as its own
 * free block (blog_os issue #796 leaked it); such requests test the exact fit (padding included) on a
 * bounded number of candidates, then fall back to any block of size + align + 32.
 *
 * Why not one address-ordered list: the blog's allocator keeps a single list in address order, which
 * makes every alloc and free a list walk (about 21x glibc on the benchmark's workload c). Boundary tags
 * already give what address order was for -- finding neighbours to coalesce -- in O(1), and size bins
 * approximate best fit, which keeps fragmentation (the footprint) as low as address-ordered first fit
 * in practice. The price is 4 KiB of bin heads in the instance and a 16-byte header per block.
 *
 * Invariants (ll_check verifies all of them):
 *   - blocks tile each region exactly from its first block to its sentinel; sizes are multiples of 16
 *     and >= 32; every block and user pointer is 16-aligned;
 *   - a block's PREV_INUSE bit equals the INUSE bit of the block before it; a free block's size is
 *     stored in the next block's prev_size;
 *   - no two free blocks are adjacent (coalescing is complete);
 *   - every free block is in exactly the bin bin_of(size), the lists are well linked, and bitmap bit b
 *     is set iff bin b is non-empty.
 *
 * Complexity: free, resize, usable_size and add_memory are O(1). alloc is O(1) except for the first-
 * fit walk inside one bin (bounded by LL_WALK_LIMIT before larger bins are tried). check is O(blocks).
 *
 * Hardened mode (docs/hardening.md): the header grows to 32 bytes with a cookie (key(block) ^ USED
 * or FREE) and the free site, the minimum block to 48 bytes, and the bin links are stored mangled
 * (heap_hard_mangle, keyed by the slot address). Every link is validated before it is followed or
 * unlinked (16-aligned, inside the heap, pointing at a block whose cookie says FREE and whose back
 * link points here), so a corrupted list is reported instead of followed. validate() finds the
 * region of a pointer before reading its header, so foreign pointers are never dereferenced.
 * Poison invariant: the first HEAP_POISON_SPAN bytes of every free block's body after its links are
 * HEAP_POISON_FREE. The front end poisons what it frees; here, a header swallowed by coalescing is
 * poisoned, a remainder split off a free block is poisoned where it reaches beyond the poisoned
 * prefix of that block, a tail cut off a used block or fresh memory is poisoned fully, and alloc
 * verifies the part of the new block that was inside the poisoned prefix. check() verifies the
 * prefix of every free block and the canary of every used one.
 */
#include "heap_backend.h"

#define LL_INUSE ((size_t)1)
#define LL_PREV_INUSE ((size_t)2)
#define LL_FLAGS (LL_INUSE | LL_PREV_INUSE)

#define LL_SMALL_LIMIT 512  /* below: one bin per 16-byte size */
#define LL_SMALL_BINS (LL_SMALL_LIMIT / 16)
#define LL_SUB_LOG2 3       /* 8 bins per power of two above the limit */
#define LL_NBINS 512
#define LL_WALK_LIMIT 32    /* blocks examined in the request's own bin before trying larger bins */
#define LL_PICK_LIMIT 8     /* extra blocks of each larger bin compared for the lowest address */
#define LL_PICK_BINS 64     /* larger non-empty bins compared when the request's own bin has no fit */

struct ll_block {
    size_t prev_size; /* size of the previous block, valid only when it is free */
    size_t size;      /* this block's size including the header, | flags */
#if KHEAP_HARDENING
    uint64_t cookie;  /* key(block) ^ LL_USED or LL_FREE */
    const void *site; /* free site while free (front-end frees only), else NULL */
#endif
};

struct ll_free {
    struct ll_block hdr;
    struct ll_free *next; /* in this bin */
    struct ll_free *prev;
};

struct ll_region {
    struct ll_region *next; /* all regions, newest first */
    uintptr_t end;          /* one past the sentinel */
};

#define LL_HDR sizeof(struct ll_block)
#define LL_MIN_BLOCK sizeof(struct ll_free)

_Static_assert(sizeof(struct ll_block) == 16 + 16 * KHEAP_HARDENING, "header keeps pointers 16-aligned");
_Static_assert(sizeof(struct ll_free) == 32 + 16 * KHEAP_HARDENING, "minimum block is 32 (48) bytes");
#if KHEAP_HARDENING
#define LL_USED ((uint64_t)0x55534544) /* "USED" */
#define LL_FREE ((uint64_t)0x46524545) /* "FREE" */
_Static_assert(sizeof(struct ll_free) - sizeof(struct ll_block) == HEAP_HARD_LINK, "links fit the link area");
#endif
_Static_assert(sizeof(struct ll_region) == 16, "region header must keep blocks 16-aligned");
_Static_assert(LL_FLAGS < HEAP_MIN_ALIGN, "flags live in the low bits of 16-aligned sizes");
_Static_assert(LL_SMALL_BINS + (64 - 9) * (1 << LL_SUB_LOG2) <= LL_NBINS, "bins cover all sizes");
_Static_assert(LL_NBINS % 64 == 0, "bitmap words");

struct ll {
    struct heap common;           /* first member */
    struct ll_region *regions;    /* newest first */
    struct ll_region *top;        /* the region grown by adjacent add_memory() */
    uintptr_t top_end;            /* raw end of top as given: where adjacent memory starts */
    uint64_t bitmap[LL_NBINS / 64];
    struct ll_free *bins[LL_NBINS];
#if KHEAP_HARDENING
    uintptr_t lo, hi; /* envelope of all regions: a link outside is corrupt without a region walk */
    /* Embedded use (fixed_size_block's fallback): used blocks for which this returns true belong to
     * the embedding backend and carry no front-end canary. NULL: every used block does. */
    bool (*internal)(const struct heap *owner, const void *p);
#endif
};

_Static_assert(offsetof(struct ll, common) == 0, "struct heap must be the first member");

static struct ll *to_ll(struct heap *h)
{
    return container_of(h, struct ll, common);
}

static const struct ll *to_cll(const struct heap *h)
{
    return container_of(h, const struct ll, common);
}

static size_t bsize(const struct ll_block *b)
{
    return b->size & ~LL_FLAGS;
}

static struct ll_block *at(uintptr_t addr)
{
    return (struct ll_block *)addr;
}

static struct ll_block *next_of(const struct ll_block *b)
{
    return at((uintptr_t)b + bsize(b));
}

static struct ll_block *block_of(const void *ptr)
{
    return at((uintptr_t)ptr - LL_HDR);
}

static unsigned bin_of(size_t size)
{
    unsigned fl;

    if (size < LL_SMALL_LIMIT)
        return (unsigned)(size / 16);
    fl = 63u - (unsigned)__builtin_clzll((unsigned long long)size);
    return LL_SMALL_BINS + ((fl - 9) << LL_SUB_LOG2) +
           (unsigned)((size >> (fl - LL_SUB_LOG2)) & ((1u << LL_SUB_LOG2) - 1));
}

/* Bin links: plain pointers, or in hardened mode mangled with the slot's address. */
#if KHEAP_HARDENING
static struct ll_free *get_link(const struct ll *l, struct ll_free *const *slot)
{
    return (struct ll_free *)heap_hard_mangle(&l->common, slot, (uintptr_t)*slot);
}

static void set_link(const struct ll *l, struct ll_free **slot, struct ll_free *v)
{
    *slot = (struct ll_free *)heap_hard_mangle(&l->common, slot, (uintptr_t)v);
}

static uint64_t cookie(const struct ll *l, const struct ll_block *b, uint64_t state)
{
    return heap_hard_key(l->common.hard.secret, (uintptr_t)b) ^ state;
}

static void set_cookie(const struct ll *l, struct ll_block *b, uint64_t state)
{
    b->cookie = cookie(l, b, state);
}

/* True if f is NULL or a plausible free block: aligned, inside the envelope, FREE cookie. */
static bool link_ok(const struct ll *l, const struct ll_free *f)
{
    uintptr_t a = (uintptr_t)f;

    if (f == NULL)
        return true;
    return a % HEAP_MIN_ALIGN == 0 && a >= l->lo && a < l->hi && l->hi - a >= LL_MIN_BLOCK &&
           f->hdr.cookie == cookie(l, &f->hdr, LL_FREE) && !(f->hdr.size & LL_INUSE);
}

/* Reports a corrupted free list at f (as a user pointer) and makes the current call fail. */
static void freelist_corrupt(const struct ll *l, const struct ll_free *f)
{
    heap_hard_report(&l->common, HEAP_ERR_CORRUPT_FREELIST, (const char *)f + LL_HDR, 0, 0, NULL, NULL);
    l->common.hard.owner->hard.abort = true;
}
#else
static struct ll_free *get_link(const struct ll *l, struct ll_free *const *slot)
{
    (void)l;
    return *slot;
}

static void set_link(const struct ll *l, struct ll_free **slot, struct ll_free *v)
{
    (void)l;
    *slot = v;
}
#endif

static void bin_insert(struct ll *l, struct ll_free *f)
{
    unsigned b = bin_of(bsize(&f->hdr));
    struct ll_free *head = l->bins[b];

    set_link(l, &f->prev, NULL);
    set_link(l, &f->next, head);
    if (head != NULL)
        set_link(l, &head->prev, f);
    l->bins[b] = f;
    l->bitmap[b / 64] |= (uint64_t)1 << (b % 64);
}

#if KHEAP_HARDENING
/* True if f can be unlinked: both links valid and pointing back at f. */
static bool unlink_ok(const struct ll *l, const struct ll_free *f)
{
    struct ll_free *next = get_link(l, &f->next), *prev = get_link(l, &f->prev);

    if (!link_ok(l, next) || !link_ok(l, prev))
        return false;
    if (next != NULL && get_link(l, &next->prev) != f)
        return false;
    if (prev != NULL ? get_link(l, &prev->next) != f : l->bins[bin_of(bsize(&f->hdr))] != f)
        return false;
    return true;
}
#endif

static void bin_remove(struct ll *l, struct ll_free *f)
{
    unsigned b = bin_of(bsize(&f->hdr));
    struct ll_free *next = get_link(l, &f->next), *prev = get_link(l, &f->prev);

    if (prev != NULL)
        set_link(l, &prev->next, next);
    else
        l->bins[b] = next;
    if (next != NULL)
        set_link(l, &next->prev, prev);
    if (l->bins[b] == NULL)
        l->bitmap[b / 64] &= ~((uint64_t)1 << (b % 64));
}

/* Returns the first non-empty bin >= b, or LL_NBINS. */
static unsigned next_bin(const struct ll *l, unsigned b)
{
    unsigned w = b / 64;
    uint64_t bits;

    if (b >= LL_NBINS)
        return LL_NBINS;
    bits = l->bitmap[w] & (~(uint64_t)0 << (b % 64));
    while (bits == 0) {
        if (++w == LL_NBINS / 64)
            return LL_NBINS;
        bits = l->bitmap[w];
    }
    return w * 64 + (unsigned)__builtin_ctzll(bits);
}

/* Returns a free block of at least need bytes (still in its bin), or NULL. */
/* Follows f's next link; in hardened mode a link that fails validation is reported and ends the
 * walk with *bad set. */
static struct ll_free *walk_next(const struct ll *l, const struct ll_free *f, bool *bad)
{
    struct ll_free *g = get_link(l, &f->next);
#if KHEAP_HARDENING
    if (heap_unlikely(!link_ok(l, g))) {
        freelist_corrupt(l, f);
        *bad = true;
        return NULL;
    }
#else
    (void)bad;
#endif
    return g;
}

/* Returns a free block of at least need bytes (still in its bin), or NULL. */
static struct ll_free *find_fit(struct ll *l, size_t need)
{
    unsigned b = bin_of(need);
    struct ll_free *f = l->bins[b];
    unsigned larger;
    int walked = 0;
    bool bad = false;

    for (; f != NULL && walked < LL_WALK_LIMIT; f = walk_next(l, f, &bad), walked++)
        if (bsize(&f->hdr) >= need)
            return f;
    if (bad)
        return NULL;
    larger = next_bin(l, b + 1);
    if (larger < LL_NBINS) {
        /* Any block of a larger bin fits. Take the lowest address among the first LL_PICK_LIMIT + 1
         * blocks of each of the next LL_PICK_BINS non-empty bins: an approximation of address-ordered
         * first fit, which packs live blocks towards the start of the heap and leaves the free space
         * at its end in one piece (footprint on workload c: 1.21 looking at one bin, 1.17 at 64). */
        struct ll_free *best = l->bins[larger];
        for (int nb = 0; larger < LL_NBINS && nb < LL_PICK_BINS && !bad; nb++, larger = next_bin(l, larger + 1)) {
            int n = 0;
            for (struct ll_free *g = l->bins[larger]; g != NULL && n <= LL_PICK_LIMIT;
                 g = walk_next(l, g, &bad), n++)
                if (g < best)
                    best = g;
        }
        return bad ? NULL : best;
    }
    for (; f != NULL; f = walk_next(l, f, &bad))
        if (bsize(&f->hdr) >= need)
            return f;
    return NULL;
}

/* Makes [b, b + size) a free block after an in-use block, tells its successor, and bins it. */
static void make_free(struct ll *l, struct ll_block *b, size_t size)
{
    struct ll_block *n;

#if KHEAP_HARDENING
    set_cookie(l, b, LL_FREE);
#endif
    b->size = size | LL_PREV_INUSE;
    n = next_of(b);
    n->prev_size = size;
    n->size &= ~LL_PREV_INUSE;
    bin_insert(l, (struct ll_free *)b);
}

#if KHEAP_HARDENING
/* End of the poisoned prefix of a free block b of size bytes (see the poison invariant above). */
static uintptr_t prefix_end(const struct ll_block *b, size_t size)
{
    size_t body = size - LL_HDR;
    return (uintptr_t)b + LL_HDR + (body < HEAP_POISON_SPAN ? body : HEAP_POISON_SPAN);
}

/* Poisons the part of [from, to) at or above clean (memory below clean is poison already). */
static void poison_above(uintptr_t from, uintptr_t to, uintptr_t clean)
{
    if (from < clean)
        from = clean;
    if (from < to)
        heap_hard_poison((void *)from, to - from);
}

/* n's header and links are about to become the body of a free block: poison them. */
static void swallow(struct ll_block *n)
{
    heap_hard_poison(n, LL_MIN_BLOCK);
}
#endif

/* Frees [b, b + size) whose predecessor is in use, merging with a free successor (whose links the
 * caller validated). clean (hardened): the body of [b, b + size) below this address is poison. */
static void release_tail(struct ll *l, struct ll_block *b, size_t size, uintptr_t clean)
{
    struct ll_block *n = at((uintptr_t)b + size);

#if KHEAP_HARDENING
    poison_above((uintptr_t)b + LL_HDR + HEAP_HARD_LINK, prefix_end(b, size), clean);
#else
    (void)clean;
#endif
    if (!(n->size & LL_INUSE)) {
        bin_remove(l, (struct ll_free *)n);
        size += bsize(n);
#if KHEAP_HARDENING
        swallow(n);
#endif
    }
    make_free(l, b, size);
}

/* Shrinks in-use block b to asize bytes if the rest can be a free block. clean: as release_tail. */
static void trim(struct ll *l, struct ll_block *b, size_t asize, uintptr_t clean)
{
    size_t size = bsize(b);

    if (size - asize < LL_MIN_BLOCK)
        return;
    b->size = asize | (b->size & LL_FLAGS);
    release_tail(l, at((uintptr_t)b + asize), size - asize, clean);
}

/* Block size for a request of size user bytes. */
static size_t block_size(size_t size)
{
    size_t a = heap_align_up(size + LL_HDR, HEAP_MIN_ALIGN);
    return a < LL_MIN_BLOCK ? LL_MIN_BLOCK : a;
}

/* Sets up a fresh region [s, e) (16-aligned) with one free block and a sentinel. */
static void region_setup(struct ll *l, uintptr_t s, uintptr_t e)
{
    struct ll_region *r = (struct ll_region *)s;
    struct ll_block *first = at(s + sizeof(*r));
    struct ll_block *sentinel = at(e - LL_HDR);

    r->end = e;
    r->next = l->regions;
    l->regions = r;
    sentinel->size = LL_INUSE; /* size 0, in use; PREV_INUSE cleared by make_free */
#if KHEAP_HARDENING
    set_cookie(l, sentinel, LL_USED);
    sentinel->site = NULL;
    if (s < l->lo || l->lo == 0)
        l->lo = s;
    if (e > l->hi)
        l->hi = e;
    poison_above((uintptr_t)first + LL_HDR, prefix_end(first, (uintptr_t)sentinel - (uintptr_t)first), 0);
#endif
    make_free(l, first, (uintptr_t)sentinel - (uintptr_t)first);
}

#define LL_REGION_MIN (sizeof(struct ll_region) + LL_MIN_BLOCK + LL_HDR)

static struct heap *ll_init(void *mem, size_t size, uint64_t secret)
{
    uintptr_t base = heap_align_up((uintptr_t)mem, HEAP_MIN_ALIGN);
    uintptr_t s = heap_align_up(base + sizeof(struct ll), HEAP_MIN_ALIGN);
    uintptr_t e;
    struct ll *l;

    if (size < s - (uintptr_t)mem + LL_REGION_MIN + HEAP_MIN_ALIGN)
        return NULL;
    e = heap_align_down((uintptr_t)mem + size, HEAP_MIN_ALIGN);
    l = (struct ll *)base;
    __builtin_memset(l, 0, sizeof(*l));
#if KHEAP_HARDENING
    l->common.hard.owner = &l->common;
    l->common.hard.secret = secret;
#else
    (void)secret;
#endif
    region_setup(l, s, e);
    l->top = l->regions;
    l->top_end = (uintptr_t)mem + size;
    return &l->common;
}

/* Returns where the user pointer of an align-aligned block would start inside free block b: the first
 * aligned address whose padding is 0 or can be a free block of its own. */
static uintptr_t aligned_payload(const struct ll_block *b, size_t align)
{
    uintptr_t payload = (uintptr_t)b + LL_HDR;
    uintptr_t p = heap_align_up(payload, align);

    if (p != payload && p - payload < LL_MIN_BLOCK)
        p += align;
    return p;
}

/* Returns a free block that can hold asize bytes at alignment align (> 16), or NULL. Tries the exact
 * test on up to LL_WALK_LIMIT blocks of the candidate bins, then falls back to a block large enough
 * for any placement (asize + align + LL_MIN_BLOCK). */
static struct ll_free *find_aligned(struct ll *l, size_t asize, size_t align)
{
    int walked = 0;

    bool bad = false;

    for (unsigned b = next_bin(l, bin_of(asize)); b < LL_NBINS && walked < LL_WALK_LIMIT;
         b = next_bin(l, b + 1)) {
        for (struct ll_free *f = l->bins[b]; f != NULL && walked < LL_WALK_LIMIT;
             f = walk_next(l, f, &bad), walked++) {
            uintptr_t end = (uintptr_t)f + bsize(&f->hdr);
            uintptr_t p = aligned_payload(&f->hdr, align);
            if (p < end && end - p >= asize - LL_HDR)
                return f;
        }
        if (bad)
            return NULL;
    }
    return find_fit(l, asize + align + LL_MIN_BLOCK);
}

static void *ll_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct ll *l = to_ll(h);
    size_t asize = block_size(size);
    struct ll_free *f = align == HEAP_MIN_ALIGN ? find_fit(l, asize) : find_aligned(l, asize, align);
    struct ll_block *b;

    if (f == NULL)
        return NULL;
#if KHEAP_HARDENING
    if (!unlink_ok(l, f)) {
        freelist_corrupt(l, f);
        return NULL;
    }
    uintptr_t clean = prefix_end(&f->hdr, bsize(&f->hdr));
#else
    uintptr_t clean = 0;
#endif
    bin_remove(l, f);
    b = &f->hdr;
    if (align != HEAP_MIN_ALIGN) {
        uintptr_t payload = (uintptr_t)b + LL_HDR;
        uintptr_t p = aligned_payload(b, align);
        if (p != payload) {
            size_t pad = p - payload;
            size_t rest = bsize(b) - pad;
            /* The padding becomes a free block; its predecessor is in use (b was free). */
            b->size = pad | LL_PREV_INUSE;
            bin_insert(l, (struct ll_free *)b);
            b = at((uintptr_t)b + pad);
            b->prev_size = pad;
            b->size = rest; /* PREV_INUSE clear: the padding is free */
        }
    }
    b->size |= LL_INUSE;
    next_of(b)->size |= LL_PREV_INUSE;
    trim(l, b, asize, clean);
    *usable = bsize(b) - LL_HDR;
#if KHEAP_HARDENING
    set_cookie(l, b, LL_USED);
    b->site = NULL;
    {
        /* The part of the block that lay in f's poisoned prefix must still be poison. */
        uintptr_t p = (uintptr_t)b + LL_HDR;
        uintptr_t from = (uintptr_t)f + LL_HDR + HEAP_HARD_LINK;
        uintptr_t to = p + (*usable < HEAP_POISON_SPAN ? *usable : HEAP_POISON_SPAN);
        if (from < p)
            from = p;
        if (to > clean)
            to = clean;
        if (from < to) {
            size_t off = heap_hard_find_unpoisoned((void *)from, 0, to - from);
            if (off != to - from) {
                heap_hard_report(h, HEAP_ERR_USE_AFTER_FREE, (void *)p, 0, from + off - p, NULL, NULL);
                h->hard.owner->hard.abort = true;
                heap_hard_quarantine(h, (void *)p, *usable);
                return NULL;
            }
        }
    }
#endif
    return (void *)((uintptr_t)b + LL_HDR);
}

static size_t ll_free(struct heap *h, void *ptr)
{
    struct ll *l = to_ll(h);
    struct ll_block *b = block_of(ptr);
    size_t size = bsize(b);
    size_t usable = size - LL_HDR;
    struct ll_block *n = next_of(b);

#if KHEAP_HARDENING
    b->site = h->hard.owner->hard.caller;
#endif
    if (!(n->size & LL_INUSE)) {
        bin_remove(l, (struct ll_free *)n);
        size += bsize(n);
#if KHEAP_HARDENING
        swallow(n);
#endif
    }
    if (!(b->size & LL_PREV_INUSE)) {
        struct ll_block *p = at((uintptr_t)b - b->prev_size);
        bin_remove(l, (struct ll_free *)p);
        size += bsize(p);
#if KHEAP_HARDENING
        heap_hard_poison(b, LL_HDR); /* b's header becomes body; its links area is poison already */
#endif
        b = p;
    }
    make_free(l, b, size);
    return usable;
}

static bool ll_resize(struct heap *h, void *ptr, size_t size)
{
    struct ll *l = to_ll(h);
    struct ll_block *b = block_of(ptr);
    size_t asize = block_size(size);
    size_t cur = bsize(b);
    struct ll_block *n;

    if (asize <= cur) {
        trim(l, b, asize, 0);
        return true;
    }
    n = next_of(b);
    if ((n->size & LL_INUSE) || cur + bsize(n) < asize)
        return false;
    bin_remove(l, (struct ll_free *)n); /* links validated by validate() before any resize */
    b->size += bsize(n);
    next_of(b)->size |= LL_PREV_INUSE;
    trim(l, b, asize, 0);
    return true;
}

static size_t ll_usable_size(const struct heap *h, const void *ptr)
{
    (void)h;
    return bsize(block_of(ptr)) - LL_HDR;
}

/* Extends the top region over adjacent memory (its sentinel becomes a free block), else adds a
 * region. Pieces too small to hold a block are ignored. */
static void ll_add_memory(struct heap *h, void *start, size_t len)
{
    struct ll *l = to_ll(h);
    uintptr_t raw_end = (uintptr_t)start + len;
    uintptr_t e = heap_align_down(raw_end, HEAP_MIN_ALIGN);

    if ((uintptr_t)start == l->top_end && l->top != NULL) {
        struct ll_block *old = at(l->top->end - LL_HDR);
        struct ll_block *sentinel = at(e - LL_HDR);
        size_t size;

        if (e < l->top->end + LL_MIN_BLOCK)
            return;
        sentinel->size = LL_INUSE;
        l->top->end = e;
        l->top_end = raw_end;
        size = (uintptr_t)sentinel - (uintptr_t)old;
        old->size = size | (old->size & LL_PREV_INUSE) | LL_INUSE;
#if KHEAP_HARDENING
        set_cookie(l, sentinel, LL_USED);
        sentinel->site = NULL;
        if (e > l->hi)
            l->hi = e;
        /* Fresh memory enters the free lists poisoned, like memory the front end frees. */
        poison_above((uintptr_t)old + LL_HDR, prefix_end(old, size), 0);
        {
            /* The predecessor's links are followed by the merge: refuse to touch a damaged list. */
            struct ll_block *p = at((uintptr_t)old - old->prev_size);
            if (!(old->size & LL_PREV_INUSE) && !unlink_ok(l, (struct ll_free *)p)) {
                freelist_corrupt(l, (struct ll_free *)p);
                set_cookie(l, old, LL_USED); /* leave the new memory out as a used block */
                return;
            }
        }
#endif
        ll_free(h, (void *)((uintptr_t)old + LL_HDR)); /* merges with a free predecessor */
        return;
    }
    uintptr_t s = heap_align_up((uintptr_t)start, HEAP_MIN_ALIGN);
    if (e <= s || e - s < LL_REGION_MIN)
        return;
    region_setup(l, s, e);
    l->top = l->regions;
    l->top_end = raw_end;
}

#if KHEAP_HARDENING
/* True if freeing used block b would unlink only valid free neighbours. */
static bool free_ok(const struct ll *l, const struct ll_block *b)
{
    const struct ll_block *n = next_of(b);

    if (!(n->size & LL_INUSE) && !(link_ok(l, (const struct ll_free *)n) && unlink_ok(l, (const struct ll_free *)n)))
        return false;
    if (!(b->size & LL_PREV_INUSE)) {
        const struct ll_free *p = (const struct ll_free *)((uintptr_t)b - b->prev_size);
        if (b->prev_size < LL_MIN_BLOCK || !link_ok(l, p) || bsize(&p->hdr) != b->prev_size || !unlink_ok(l, p))
            return false;
    }
    return true;
}

/* Finds the region holding user pointer a (without reading anything at a); NULL if none. */
static const struct ll_region *region_of(const struct ll *l, uintptr_t a)
{
    size_t n = 0;

    if (a < l->lo || a >= l->hi)
        return NULL;
    for (const struct ll_region *r = l->regions; r != NULL && n < ((size_t)1 << 20); r = r->next, n++)
        if (a >= (uintptr_t)r + sizeof(*r) + LL_HDR && a < r->end)
            return r;
    return NULL;
}

static enum heap_error ll_validate(struct heap *h, const void *ptr, size_t *usable, const void **free_site)
{
    struct ll *l = to_ll(h);
    uintptr_t a = (uintptr_t)ptr;
    const struct ll_region *r;
    struct ll_block *b;
    size_t size;

    if (a % HEAP_MIN_ALIGN != 0 || (r = region_of(l, a)) == NULL)
        return HEAP_ERR_INVALID_FREE;
    b = block_of(ptr);
    if (b->cookie == cookie(l, b, LL_FREE)) {
        *free_site = b->site;
        return HEAP_ERR_DOUBLE_FREE;
    }
    if (b->cookie == HEAP_POISON_FREE64) /* a header swallowed by coalescing: freed before */
        return HEAP_ERR_DOUBLE_FREE;
    if (b->cookie != cookie(l, b, LL_USED) || !(b->size & LL_INUSE))
        return HEAP_ERR_INVALID_FREE;
    size = bsize(b);
    if (size < LL_MIN_BLOCK || size % HEAP_MIN_ALIGN != 0 || size > r->end - LL_HDR - (uintptr_t)b)
        return HEAP_ERR_CORRUPT_METADATA;
    if (!free_ok(l, b))
        return HEAP_ERR_CORRUPT_FREELIST;
    *usable = size - LL_HDR;
    return HEAP_BLOCK_OK;
}

bool heap_ll_contains(const struct heap *ll, uintptr_t a)
{
    return region_of(container_of(ll, const struct ll, common), a) != NULL;
}

void heap_ll_embed(struct heap *ll, struct heap *owner, bool (*internal)(const struct heap *owner, const void *p))
{
    struct ll *l = to_ll(ll);

    l->common.hard.owner = owner;
    l->internal = internal;
}

/* Hardened part of the walk over one block: cookie, poison of free blocks, canary of used ones. */
static size_t check_block_hard(const struct ll *l, const struct ll_block *b, bool inuse)
{
    const void *p = (const char *)b + LL_HDR;
    size_t size = bsize(b);

    if (b->cookie != cookie(l, b, inuse ? LL_USED : LL_FREE)) {
        heap_hard_report(&l->common, HEAP_ERR_CORRUPT_METADATA, p, 0, 0, NULL, NULL);
        return 1;
    }
    if (!inuse) {
        size_t to = prefix_end(b, size) - (uintptr_t)p;
        size_t off = heap_hard_find_unpoisoned(p, HEAP_HARD_LINK, to);
        if (off != to) {
            heap_hard_report(&l->common, HEAP_ERR_USE_AFTER_FREE, p, 0, off, NULL, b->site);
            return 1;
        }
        return 0;
    }
    if (l->internal != NULL && l->internal(l->common.hard.owner, p))
        return 0;
    return !heap_hard_verify_live(&l->common, p, size - LL_HDR);
}
#endif

static size_t ll_check(const struct heap *h)
{
    const struct ll *l = to_cll(h);
    size_t bad = 0, free_walk = 0, free_bins = 0, nregions = 0;

    for (const struct ll_region *r = l->regions; r != NULL && nregions < ((size_t)1 << 40);
         r = r->next, nregions++) {
        uintptr_t sentinel = r->end - LL_HDR;
        const struct ll_block *b = at((uintptr_t)r + sizeof(*r));
        bool prev_inuse = true;

        if (((uintptr_t)r | r->end) % HEAP_MIN_ALIGN != 0 || r->end < (uintptr_t)r + LL_REGION_MIN) {
            bad++;
            continue;
        }
        while ((uintptr_t)b < sentinel) {
            size_t size = bsize(b);
            bool inuse = b->size & LL_INUSE;

            if (size < LL_MIN_BLOCK || size % HEAP_MIN_ALIGN != 0 || size > sentinel - (uintptr_t)b) {
                bad++;
                break;
            }
            bad += !(b->size & LL_PREV_INUSE) != !prev_inuse;
#if KHEAP_HARDENING
            bad += check_block_hard(l, b, inuse);
#endif
            if (!inuse) {
                free_walk++;
                bad += !prev_inuse;                  /* two adjacent free blocks */
                bad += next_of(b)->prev_size != size; /* boundary tag */
            }
            prev_inuse = inuse;
            b = next_of(b);
        }
        if ((uintptr_t)b == sentinel) {
            bad += b->size != (LL_INUSE | (prev_inuse ? LL_PREV_INUSE : 0));
        } else if ((uintptr_t)b > sentinel) {
            bad++;
        }
    }
    for (unsigned i = 0; i < LL_NBINS; i++) {
        bool nonempty = l->bins[i] != NULL;
        const struct ll_free *prev = NULL;

        bad += nonempty != !!(l->bitmap[i / 64] & ((uint64_t)1 << (i % 64)));
        for (const struct ll_free *f = l->bins[i]; f != NULL; prev = f, f = get_link(l, &f->next)) {
            if (++free_bins > free_walk + 1) { /* a cycle or a stray block */
                bad++;
                break;
            }
#if KHEAP_HARDENING
            if (!link_ok(l, f)) {
                heap_hard_report(&l->common, HEAP_ERR_CORRUPT_FREELIST, prev != NULL ? (const char *)prev + LL_HDR : NULL,
                                 0, 0, NULL, NULL);
                bad++;
                break;
            }
#endif
            bad += get_link(l, &f->prev) != prev;
            bad += (f->hdr.size & LL_INUSE) != 0;
            bad += bin_of(bsize(&f->hdr)) != i;
        }
    }
    bad += free_bins != free_walk;
    return bad;
}

const struct heap_ops heap_linked_list_ops = {
    .name = "linked_list",
    .grow_overhead = sizeof(struct ll_region) + 2 * LL_HDR + LL_MIN_BLOCK + 2 * HEAP_MIN_ALIGN,
    .init = ll_init,
    .alloc = ll_alloc,
    .free = ll_free,
    .resize = ll_resize,
    .usable_size = ll_usable_size,
    .add_memory = ll_add_memory,
    .check = ll_check,
#if KHEAP_HARDENING
    .validate = ll_validate,
#endif
};
