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
 * request's own bin for the first block that fits (first fit), and otherwise takes a block of the
 * next non-empty larger bin, where every block fits: the lowest-addressed of its first
 * LL_PICK_LIMIT + 1 blocks, which keeps the heap compact at a bounded cost. The remainder of a block is split off and
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
#define LL_PICK_LIMIT 8     /* extra blocks of a larger bin compared for the lowest address */

struct ll_block {
    size_t prev_size; /* size of the previous block, valid only when it is free */
    size_t size;      /* this block's size including the header, | flags */
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

_Static_assert(sizeof(struct ll_block) == 16, "header must keep user pointers 16-aligned");
_Static_assert(sizeof(struct ll_free) == 32, "minimum block is 32 bytes");
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

static void bin_insert(struct ll *l, struct ll_free *f)
{
    unsigned b = bin_of(bsize(&f->hdr));

    f->prev = NULL;
    f->next = l->bins[b];
    if (f->next != NULL)
        f->next->prev = f;
    l->bins[b] = f;
    l->bitmap[b / 64] |= (uint64_t)1 << (b % 64);
}

static void bin_remove(struct ll *l, struct ll_free *f)
{
    unsigned b = bin_of(bsize(&f->hdr));

    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        l->bins[b] = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
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
static struct ll_free *find_fit(struct ll *l, size_t need)
{
    unsigned b = bin_of(need);
    struct ll_free *f = l->bins[b];
    unsigned larger;
    int walked = 0;

    for (; f != NULL && walked < LL_WALK_LIMIT; f = f->next, walked++)
        if (bsize(&f->hdr) >= need)
            return f;
    larger = next_bin(l, b + 1);
    if (larger < LL_NBINS) {
        /* Any block here fits; prefer the lowest address among the first few, which keeps the
         * heap compact (the benefit of the blog's address order) at bounded cost. */
        struct ll_free *best = l->bins[larger];
        int n = 0;
        for (struct ll_free *g = best->next; g != NULL && n < LL_PICK_LIMIT; g = g->next, n++)
            if (g < best)
                best = g;
        return best;
    }
    for (; f != NULL; f = f->next)
        if (bsize(&f->hdr) >= need)
            return f;
    return NULL;
}

/* Makes [b, b + size) a free block after an in-use block, tells its successor, and bins it. */
static void make_free(struct ll *l, struct ll_block *b, size_t size)
{
    struct ll_block *n;

    b->size = size | LL_PREV_INUSE;
    n = next_of(b);
    n->prev_size = size;
    n->size &= ~LL_PREV_INUSE;
    bin_insert(l, (struct ll_free *)b);
}

/* Frees [b, b + size) whose predecessor is in use, merging with a free successor. */
static void release_tail(struct ll *l, struct ll_block *b, size_t size)
{
    struct ll_block *n = at((uintptr_t)b + size);

    if (!(n->size & LL_INUSE)) {
        bin_remove(l, (struct ll_free *)n);
        size += bsize(n);
    }
    make_free(l, b, size);
}

/* Shrinks in-use block b to asize bytes if the rest can be a free block. */
static void trim(struct ll *l, struct ll_block *b, size_t asize)
{
    size_t size = bsize(b);

    if (size - asize < LL_MIN_BLOCK)
        return;
    b->size = asize | (b->size & LL_FLAGS);
    release_tail(l, at((uintptr_t)b + asize), size - asize);
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
    make_free(l, first, (uintptr_t)sentinel - (uintptr_t)first);
}

#define LL_REGION_MIN (sizeof(struct ll_region) + LL_MIN_BLOCK + LL_HDR)

static struct heap *ll_init(void *mem, size_t size)
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

    for (unsigned b = next_bin(l, bin_of(asize)); b < LL_NBINS && walked < LL_WALK_LIMIT;
         b = next_bin(l, b + 1)) {
        for (struct ll_free *f = l->bins[b]; f != NULL && walked < LL_WALK_LIMIT; f = f->next, walked++) {
            uintptr_t end = (uintptr_t)f + bsize(&f->hdr);
            uintptr_t p = aligned_payload(&f->hdr, align);
            if (p < end && end - p >= asize - LL_HDR)
                return f;
        }
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
    trim(l, b, asize);
    *usable = bsize(b) - LL_HDR;
    return (void *)((uintptr_t)b + LL_HDR);
}

static size_t ll_free(struct heap *h, void *ptr)
{
    struct ll *l = to_ll(h);
    struct ll_block *b = block_of(ptr);
    size_t size = bsize(b);
    size_t usable = size - LL_HDR;
    struct ll_block *n = next_of(b);

    if (!(n->size & LL_INUSE)) {
        bin_remove(l, (struct ll_free *)n);
        size += bsize(n);
    }
    if (!(b->size & LL_PREV_INUSE)) {
        struct ll_block *p = at((uintptr_t)b - b->prev_size);
        bin_remove(l, (struct ll_free *)p);
        size += bsize(p);
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
        trim(l, b, asize);
        return true;
    }
    n = next_of(b);
    if ((n->size & LL_INUSE) || cur + bsize(n) < asize)
        return false;
    bin_remove(l, (struct ll_free *)n);
    b->size += bsize(n);
    next_of(b)->size |= LL_PREV_INUSE;
    trim(l, b, asize);
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
        for (const struct ll_free *f = l->bins[i]; f != NULL; prev = f, f = f->next) {
            if (++free_bins > free_walk + 1) { /* a cycle or a stray block */
                bad++;
                break;
            }
            bad += f->prev != prev;
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
};
