/*
 * linked_list.c - the free-list backend: boundary tags, address-ordered first fit over a free tree.
 *
 * How it works
 * ------------
 * The heap is a sequence of blocks that tile each region. Every block starts with a 16-byte header;
 * the user's bytes follow it, so free() needs no size. The header of the block after a free block
 * records the free block's size (its "footer"); a free block holds two tree links and, in its own
 * prev_size word (unused while it is free: its predecessor is always in use), a subtree maximum
 * (the header: ll_block.h):
 *
 *   region:  | rhdr | block | block | ... | block | sentinel |
 *
 *   used block                              free block (>= LL_MIN_BLOCK = 32 bytes)
 *   +--------------------------+            +--------------------------+
 *   | prev_size (if prev free) |            | max size in its subtree  |
 *   | size | PREV_INUSE | INUSE |            | size | PREV_INUSE | 0     |
 *   +--------------------------+ <- ptr     +--------------------------+
 *   | user data ...            |            | left, right (tree links) |
 *   +--------------------------+            | ...                      |
 *                                           +--------------------------+
 *                                           next block's prev_size == this size (boundary tag)
 *
 * `size` counts the header and is a multiple of 16, so the two low bits carry flags. Each region ends
 * with a 16-byte sentinel header (size 0, INUSE) and its first block has PREV_INUSE set, so coalescing
 * never runs off a region. Because a block's header tells whether the previous block is free and how
 * large it is, free() finds both neighbours in O(1) and merges with either or both.
 *
 * The free blocks form one binary search tree keyed by address (ll_tree.h): a treap whose priority
 * is a hash of the block's address (nothing stored; expected depth O(log n), about 2 ln n), where
 * every node also carries the largest block size in its subtree. alloc() is true address-ordered
 * first fit in one descent: go left while the left subtree's maximum fits, else take this block if
 * it fits, else go right. Address-ordered first fit packs live blocks towards the start of the heap
 * and keeps the free space at its end in one piece, which is what keeps the footprint low (measured
 * against the size bins this replaced, TLSF and glibc: docs/allocators.md). The remainder of a block
 * is split off and returned to the tree when it can hold a free block (>= 32 bytes); otherwise it
 * stays with the allocation and shows up in usable_size. Alignment above 16 carves the front padding
 * off as its own free block (blog_os issue #796 leaked it); such requests test the exact fit
 * (padding included) on the first LL_ALIGN_TRIES blocks large enough in address order and take the
 * smallest that fits (see ll_find_aligned), else the first block of size + align + 32.
 *
 * Why not one address-ordered list: the blog's allocator keeps a single list in address order, which
 * makes every alloc and free a list walk (many times slower than glibc on the benchmark's workload
 * c: docs/allocators.md). Boundary tags give what the walk on free was for -- the neighbours to
 * coalesce with -- in O(1); the tree gives the walk on alloc in O(log n). A block that merges into
 * its free left neighbour keeps that neighbour's place (same address): only the maxima on its path
 * are raised.
 *
 * Invariants (ll_check verifies all of them):
 *   - blocks tile each region exactly from its first block to its sentinel; sizes are multiples of 16
 *     and >= 32; every block and user pointer is 16-aligned;
 *   - a block's PREV_INUSE bit equals the INUSE bit of the block before it; a free block's size is
 *     stored in the next block's prev_size;
 *   - no two free blocks are adjacent (coalescing is complete);
 *   - every free block is in the tree exactly once and the tree holds nothing else; in-order means
 *     increasing addresses; a parent's priority is >= its children's; every node's maximum is the
 *     largest of its size and its children's maxima. check() also counts a tree deeper than
 *     LL_TREE_CHECK_DEPTH as broken (for a random treap of a million nodes that has probability ~0).
 *
 * Complexity: alloc, free, resize and add_memory are O(log f) expected, f = number of free blocks
 * (one descent plus O(1) expected rotations; an aligned alloc at most LL_ALIGN_TRIES + 2 descents);
 * usable_size is O(1), check O(blocks). Insert and remove recurse along one path, so the stack depth
 * is the tree depth.
 *
 * Hardened mode (docs/hardening.md): the header grows to 32 bytes with a cookie (key(block) ^ USED
 * or FREE) and the free site, the minimum block to 48 bytes, and the tree links are stored mangled
 * (keyed by the slot address; the root too). Every link is validated before it is followed
 * (16-aligned, inside the heap, pointing at a block whose cookie says FREE): the first-fit descent
 * checks each link it takes, and before the tree is changed ll_tree_path_ok() checks both children
 * of every node the change will read -- the search path of the block and the two spines below it --
 * and that each lies strictly inside the address interval its ancestors allow. So a corrupted tree
 * is reported instead of followed; validate() runs the checks a free or resize will need before it
 * is allowed. validate() finds the region of a pointer before reading its header, so foreign
 * pointers are never dereferenced. The subtree maxima are not secret: a damaged one can only make
 * the descent miss (reported as a corrupted free list) or look in vain, never hand out a block that
 * is too small, since the block's own size is checked.
 * Poison invariant: the first HEAP_POISON_SPAN bytes of every free block's body after its links are
 * HEAP_POISON_FREE. The front end poisons what it frees; here, a header swallowed by coalescing is
 * poisoned, a remainder split off a free block is poisoned where it reaches beyond the poisoned
 * prefix of that block, a tail cut off a used block or fresh memory is poisoned fully, and alloc
 * verifies the part of the new block that was inside the poisoned prefix. check() verifies the
 * prefix of every free block and the canary of every used one.
 *
 * Giving memory back (env.release / env.reclaim, docs/memory.md): a free block may give back the
 * whole pages strictly inside its body, beyond a kept prefix, and says so with the RELEASED flag
 * (bit 2 of its size) and a release record in that prefix (struct ll_rel: the released page range
 * [lo, hi) and a check word). The prefix holds everything the heap still reads or verifies in a free
 * block -- header, tree links, the hardened poison span, the record -- and the last page, which holds
 * the boundary tag (the next block's header), stays too:
 *
 *   | hdr | links | (poison span) | record | ...mapped... | lo ... released ... hi | ..tag page.. |
 *
 * Invariant: a free block without the flag is mapped throughout; with it, exactly [lo, hi) is given
 * back, page_up(b + LL_REC_END) <= lo < hi <= page_down(b + size). Releasing happens on free's slow
 * path only: when a free produces a block of at least release_min bytes (SIZE_MAX while the
 * callbacks are NULL, so the plain heap pays one comparison), ll_release_merged() gives back its pages
 * beyond the first HEAP_TRIM_THRESHOLD bytes of body, plus the gaps between the ranges the merged
 * neighbours had released already (never a page twice), and writes one record covering the hull.
 * That threshold is the hysteresis: the kept prefix serves allocations from the block's start
 * (address-ordered first fit takes the lowest address), so a loop that allocates and frees a block
 * of up to about HEAP_TRIM_THRESHOLD maps and unmaps nothing. alloc() of a flagged block
 * (ll_alloc_released) first reclaims the released pages the new block and the header and record of
 * the remainder need -- if that fails the allocation fails with nothing changed -- then splits as
 * usual and hands the rest of the range to the padding and the remainder as their records. Resize
 * into a flagged neighbour reclaims its whole range first; a tail cut off a used block that merges
 * with a flagged neighbour takes over its record. Memory added by growth is never released at once.
 * Hardened mode: the poison span lies in the kept prefix, so released pages (which lose their
 * poison and come back as zeroes) are never verified as poison; a remainder carved from reclaimed
 * memory is poisoned as usual. validate() treats a pointer whose header lies in a released page as a
 * stale pointer into freed memory (double free) without reading it; validate() also checks the
 * records of the neighbours a free will merge, and alloc() the record of the block it reclaims for.
 *
 * All hardened-mode code is in one section below ("Hardened mode: the hooks"), which ends in empty
 * stubs for the plain build; the allocator after it reads the same in both modes.
 */
#include "heap_backend.h"
#include "linked_list.h"
#include "ll_tree.h"

#define LL_ALIGN_TRIES 16 /* blocks tested for an exact aligned fit before the padded fallback */

struct ll_region {
    struct ll_region *next; /* all regions, newest first */
    uintptr_t end;          /* one past the sentinel */
};

_Static_assert(sizeof(struct ll_region) == 16, "region header must keep blocks 16-aligned");

#define LL_REGION_MIN (sizeof(struct ll_region) + LL_MIN_BLOCK + LL_HDR)

struct ll {
    struct heap common;        /* first member */
    struct ll_region *regions; /* newest first */
    struct ll_region *top;     /* the region grown by adjacent add_memory() */
    uintptr_t top_end;         /* raw end of top as given: where adjacent memory starts */
    struct ll_tree tree;       /* every free block (hardened: also the envelope of all regions) */
    size_t release_min;        /* free blocks this large take the release path; SIZE_MAX: never */
    struct heap *envh;         /* whose env releases and reclaims, and counts (itself or the embedder) */
    bool growing;              /* add_memory() is merging fresh memory: release nothing new */
#if KHEAP_HARDENING
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

static const struct ll *to_const_ll(const struct heap *h)
{
    return container_of(h, const struct ll, common);
}

/* Returns the block whose user pointer is ptr. */
static struct ll_block *ll_block_of(const void *ptr)
{
    return ll_block_at((uintptr_t)ptr - LL_HDR);
}

/* Block size for a request of size user bytes. */
static size_t ll_request_block_size(size_t size)
{
    size_t a = heap_align_up(size + LL_HDR, HEAP_MIN_ALIGN);
    return a < LL_MIN_BLOCK ? LL_MIN_BLOCK : a;
}

/* The release record of a free block with LL_RELEASED set (see "Giving memory back" above). */
struct ll_rel {
    uintptr_t lo, hi; /* the released pages */
    uintptr_t check;  /* ll_rel_check() of the above: a damaged record is refused, never followed */
    uintptr_t pad;
};

#define LL_REC_OFF   (LL_MIN_BLOCK + LL_POISON_KEEP) /* after the links and the poison span */
#define LL_REC_END   (LL_REC_OFF + sizeof(struct ll_rel))
#define LL_REL_MAGIC ((uintptr_t)0x52454c45415345ull) /* "RELEASE" */

_Static_assert(sizeof(struct ll_rel) % HEAP_MIN_ALIGN == 0, "record keeps the prefix 16-aligned");

static struct ll_rel *ll_rel_of(const struct ll_block *b)
{
    return (struct ll_rel *)((uintptr_t)b + LL_REC_OFF);
}

static uintptr_t ll_rel_check(const struct ll_rel *r, uintptr_t lo, uintptr_t hi)
{
    return lo ^ (hi << 1) ^ (uintptr_t)r ^ LL_REL_MAGIC;
}

/* The pages a free block b may give back: [ll_zone_lo(b), ll_zone_hi(b)). */
static uintptr_t ll_zone_lo(const struct ll_block *b)
{
    return heap_page_up_off((uintptr_t)b, LL_REC_END);
}

static uintptr_t ll_zone_hi(const struct ll_block *b)
{
    return heap_page_down((uintptr_t)b + ll_block_size(b));
}

/* Reads flagged free block b's released range into *lo, *hi; false if the record is damaged. */
static bool ll_rel_get(const struct ll_block *b, uintptr_t *lo, uintptr_t *hi)
{
    const struct ll_rel *r = ll_rel_of(b);

    *lo = r->lo;
    *hi = r->hi;
    return r->check == ll_rel_check(r, *lo, *hi) && (*lo | *hi) % HEAP_PAGE_SIZE == 0 &&
           ll_zone_lo(b) <= *lo && *lo < *hi && *hi <= ll_zone_hi(b);
}

/* Free block b has [lo, hi) given back (flag and record) if lo < hi, else is mapped throughout. */
static void ll_rel_set(struct ll_block *b, uintptr_t lo, uintptr_t hi)
{
    struct ll_rel *r = ll_rel_of(b);

    if (lo >= hi) {
        b->size &= ~LL_RELEASED;
        return;
    }
    r->lo = lo;
    r->hi = hi;
    r->check = ll_rel_check(r, lo, hi);
    b->size |= LL_RELEASED;
}

/* True if b is a free block without the flag or one whose record is sound. */
static bool ll_rel_ok(const struct ll_block *b)
{
    uintptr_t lo, hi;

    return !(b->size & LL_RELEASED) || ll_rel_get(b, &lo, &hi);
}

#if KHEAP_HARDENING
/*
 * Hardened mode: the hooks. The allocator below calls each of them at one point of its algorithm;
 * the plain build gets the empty stubs after #else. Then validate(), the embedding API and the
 * per-block part of check(), which exist only in hardened mode.
 */

/* Writes b's cookie for state LL_USED or LL_FREE. */
static void ll_set_cookie(const struct ll *l, struct ll_block *b, uint64_t state)
{
    b->cookie = ll_cookie(l->common.hard.secret, b, state);
}

/* b becomes a used block no user freed: a sentinel, or a block being handed out. */
static void ll_mark_used(const struct ll *l, struct ll_block *b)
{
    ll_set_cookie(l, b, LL_USED);
    b->site = NULL;
}

/* Records, in used block b that is being freed, the free site of the public call in progress. */
static void ll_record_free_site(const struct ll *l, struct ll_block *b)
{
    b->site = l->common.hard.owner->hard.caller;
}

static void ll_hard_init(struct ll *l, uint64_t secret)
{
    l->common.hard.owner = &l->common;
    l->common.hard.secret = secret;
}

/* True if the current public call met corruption and must fail. */
static bool ll_call_aborted(const struct ll *l)
{
    return l->common.hard.owner->hard.abort;
}

/* End of the poisoned prefix of a free block b of size bytes (see the poison invariant above). */
static uintptr_t ll_poison_end(const struct ll_block *b, size_t size)
{
    size_t body = size - LL_HDR;
    return (uintptr_t)b + LL_HDR + (body < HEAP_POISON_SPAN ? body : HEAP_POISON_SPAN);
}

/* Poisons the part of [from, to) at or above clean (memory below clean is poison already). */
static void ll_poison_above(uintptr_t from, uintptr_t to, uintptr_t clean)
{
    if (from < clean)
        from = clean;
    if (from < to)
        heap_hard_poison((void *)from, to - from);
}

/* Fresh memory [b, b + size) enters the free tree poisoned, like memory the front end frees. */
static void ll_poison_fresh(const struct ll_block *b, size_t size)
{
    ll_poison_above((uintptr_t)b + LL_HDR, ll_poison_end(b, size), 0);
}

/* [b, b + size) is about to become a free block whose body below clean is poison already: poisons
 * the rest of its prefix after the links. */
static void ll_poison_tail(const struct ll_block *b, size_t size, uintptr_t clean)
{
    ll_poison_above((uintptr_t)b + LL_HDR + HEAP_HARD_LINK, ll_poison_end(b, size), clean);
}

/* Free block n was merged into the block before it: its header and links become body. */
static void ll_poison_swallowed_free(struct ll_block *n)
{
    heap_hard_poison(n, LL_MIN_BLOCK);
}

/* Used block b, being freed, merged into its free predecessor: its header becomes body (the front
 * end poisoned its body, links area included, already). */
static void ll_poison_swallowed_header(struct ll_block *b)
{
    heap_hard_poison(b, LL_HDR);
}

/* Before alloc changes the tree around free block f: true if the change follows only valid links,
 * else reports, fails the call and returns false. */
static bool ll_alloc_path_ok(const struct ll *l, const struct ll_free *f)
{
    if (ll_tree_path_ok(&l->tree, f, true))
        return true;
    ll_tree_report_and_abort(&l->tree, f);
    return false;
}

/* Used block b was carved out of free block f, whose poisoned prefix ended at clean: true if the part
 * of b (usable bytes) that lay in that prefix still holds the poison. Else reports a use-after-free
 * write, fails the call, quarantines b for good and returns false. */
static bool ll_alloc_poison_ok(struct ll *l, const struct ll_free *f, struct ll_block *b, uintptr_t clean,
                               size_t usable)
{
    uintptr_t p = (uintptr_t)b + LL_HDR;
    uintptr_t from = (uintptr_t)f + LL_HDR + HEAP_HARD_LINK;
    uintptr_t to = p + (usable < HEAP_POISON_SPAN ? usable : HEAP_POISON_SPAN);
    size_t off;

    if (from < p)
        from = p;
    if (to > clean)
        to = clean;
    if (from >= to)
        return true;
    off = heap_hard_find_unpoisoned((void *)from, 0, to - from);
    if (off == to - from)
        return true;
    heap_hard_report(&l->common, HEAP_ERR_USE_AFTER_FREE, (void *)p, 0, from + off - p, NULL, NULL);
    l->common.hard.owner->hard.abort = true;
    heap_hard_retire(&l->common, (void *)p, usable);
    return false;
}

/* True if freeing (or resizing) used block b follows only valid links: the removal of a free
 * successor, the growth of a free predecessor, the insertion of b or of a tail cut off b. */
static bool ll_free_path_ok(const struct ll *l, const struct ll_block *b)
{
    const struct ll_block *next = ll_next_block(b);

    if (!(next->size & LL_INUSE) &&
        !(ll_tree_link_ok(&l->tree, (const struct ll_free *)next) &&
          ll_tree_path_ok(&l->tree, (const struct ll_free *)next, true) && ll_rel_ok(next)))
        return false;
    if (!(b->size & LL_PREV_INUSE)) {
        const struct ll_free *prev = (const struct ll_free *)((uintptr_t)b - b->prev_size);
        if (b->prev_size < LL_MIN_BLOCK || !ll_tree_link_ok(&l->tree, prev) ||
            ll_block_size(&prev->hdr) != b->prev_size || !ll_tree_path_ok(&l->tree, prev, true) ||
            !ll_rel_ok(&prev->hdr))
            return false;
    }
    return ll_tree_path_ok(&l->tree, (const struct ll_free *)b, false);
}

/* add_memory is about to free the old sentinel s (now a used block over the new memory): true if
 * that follows only valid links. Else reports (at s, or at its free predecessor), leaves the new
 * memory out as a used block and returns false. */
static bool ll_grow_path_ok(struct ll *l, struct ll_block *s)
{
    const struct ll_free *prev = (const struct ll_free *)((uintptr_t)s - s->prev_size);

    if (ll_free_path_ok(l, s))
        return true;
    ll_tree_report_and_abort(&l->tree, s->size & LL_PREV_INUSE ? (const struct ll_free *)s : prev);
    ll_set_cookie(l, s, LL_USED);
    return false;
}

/* Finds the region holding user pointer a (without reading anything at a); NULL if none. */
static const struct ll_region *ll_region_of(const struct ll *l, uintptr_t a)
{
    size_t n = 0;

    if (a < l->tree.lo || a >= l->tree.hi)
        return NULL;
    for (const struct ll_region *r = l->regions; r != NULL && n < ((size_t)1 << 20); r = r->next, n++)
        if (a >= (uintptr_t)r + sizeof(*r) + LL_HDR && a < r->end)
            return r;
    return NULL;
}

/* True if address a lies in pages a free block gave back (reading nothing at a). */
static bool ll_in_released(const struct ll *l, uintptr_t a)
{
    const struct ll_free *f;
    uintptr_t lo, hi;

    if (l->release_min == SIZE_MAX || (f = ll_tree_free_block_at(&l->tree, a)) == NULL ||
        !(f->hdr.size & LL_RELEASED) || !ll_rel_get(&f->hdr, &lo, &hi))
        return false;
    return a >= lo && a < hi;
}

static enum heap_error ll_validate(struct heap *h, const void *ptr, size_t *usable, const void **free_site)
{
    struct ll *l = to_ll(h);
    uintptr_t a = (uintptr_t)ptr;
    const struct ll_region *r;
    struct ll_block *b;
    size_t size;

    if (a % HEAP_MIN_ALIGN != 0 || (r = ll_region_of(l, a)) == NULL)
        return HEAP_ERR_INVALID_FREE;
    if (ll_in_released(l, a - LL_HDR))
        return HEAP_ERR_DOUBLE_FREE; /* a stale pointer into pages a free block gave back */
    b = ll_block_of(ptr);
    if (b->cookie == ll_cookie(l->common.hard.secret, b, LL_FREE)) {
        *free_site = b->site;
        return HEAP_ERR_DOUBLE_FREE;
    }
    if (b->cookie != ll_cookie(l->common.hard.secret, b, LL_USED) || !(b->size & LL_INUSE)) {
        /* Not a block. A header inside a free block is a stale pointer into freed memory (a block
         * freed and merged into a neighbour); anything else is the inside of a used block. Decided
         * by the heap's structure, never by bytes a user may have stored. */
        return ll_tree_in_free_block(&l->tree, (uintptr_t)b) ? HEAP_ERR_DOUBLE_FREE : HEAP_ERR_INVALID_FREE;
    }
    size = ll_block_size(b);
    if (size < LL_MIN_BLOCK || size % HEAP_MIN_ALIGN != 0 || size > r->end - LL_HDR - (uintptr_t)b)
        return HEAP_ERR_CORRUPT_METADATA;
    if (!ll_free_path_ok(l, b))
        return HEAP_ERR_CORRUPT_FREELIST;
    *usable = size - LL_HDR;
    return HEAP_BLOCK_OK;
}

#define LL_VALIDATE ll_validate

bool heap_ll_contains(const struct heap *ll, uintptr_t a)
{
    return ll_region_of(to_const_ll(ll), a) != NULL;
}

bool heap_ll_released(const struct heap *ll, uintptr_t a)
{
    return ll_in_released(to_const_ll(ll), a);
}

bool heap_ll_region(const struct heap *ll, uintptr_t a, uintptr_t *lo, uintptr_t *hi)
{
    const struct ll_region *r = ll_region_of(to_const_ll(ll), a);

    if (r == NULL)
        return false;
    *lo = (uintptr_t)r + sizeof(*r) + LL_HDR;
    *hi = r->end;
    return true;
}

void heap_ll_embed(struct heap *ll, struct heap *owner,
                   bool (*internal)(const struct heap *owner, const void *p))
{
    struct ll *l = to_ll(ll);

    l->common.hard.owner = owner;
    l->internal = internal;
}

/* check(), per block: cookie, poison of a free block, canary of a used one. Returns 1 (reported) if
 * one is disturbed, else 0. */
static size_t ll_check_block_hard(const struct ll *l, const struct ll_block *b, bool inuse)
{
    const void *p = (const char *)b + LL_HDR;
    size_t size = ll_block_size(b);

    if (b->cookie != ll_cookie(l->common.hard.secret, b, inuse ? LL_USED : LL_FREE)) {
        heap_hard_report(&l->common, HEAP_ERR_CORRUPT_METADATA, p, 0, 0, NULL, NULL);
        return 1;
    }
    if (!inuse) {
        size_t to = ll_poison_end(b, size) - (uintptr_t)p;
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
#else
static void ll_set_cookie(const struct ll *l, struct ll_block *b, uint64_t state)
{
    (void)l;
    (void)b;
    (void)state;
}

static void ll_mark_used(const struct ll *l, struct ll_block *b)
{
    (void)l;
    (void)b;
}

static void ll_record_free_site(const struct ll *l, struct ll_block *b)
{
    (void)l;
    (void)b;
}

static void ll_hard_init(struct ll *l, uint64_t secret)
{
    (void)l;
    (void)secret;
}

static bool ll_call_aborted(const struct ll *l)
{
    (void)l;
    return false;
}

/* Nothing is poisoned in plain mode: no prefix. */
static uintptr_t ll_poison_end(const struct ll_block *b, size_t size)
{
    (void)b;
    (void)size;
    return 0;
}

static void ll_poison_fresh(const struct ll_block *b, size_t size)
{
    (void)b;
    (void)size;
}

static void ll_poison_tail(const struct ll_block *b, size_t size, uintptr_t clean)
{
    (void)b;
    (void)size;
    (void)clean;
}

static void ll_poison_swallowed_free(struct ll_block *n)
{
    (void)n;
}

static void ll_poison_swallowed_header(struct ll_block *b)
{
    (void)b;
}

static bool ll_alloc_path_ok(const struct ll *l, const struct ll_free *f)
{
    (void)l;
    (void)f;
    return true;
}

static bool ll_alloc_poison_ok(struct ll *l, const struct ll_free *f, struct ll_block *b, uintptr_t clean,
                               size_t usable)
{
    (void)l;
    (void)f;
    (void)b;
    (void)clean;
    (void)usable;
    return true;
}

static bool ll_grow_path_ok(struct ll *l, struct ll_block *s)
{
    (void)l;
    (void)s;
    return true;
}

static size_t ll_check_block_hard(const struct ll *l, const struct ll_block *b, bool inuse)
{
    (void)l;
    (void)b;
    (void)inuse;
    return 0;
}

#define LL_VALIDATE NULL /* only hardened mode calls validate() */
#endif

/* Makes [b, b + size) a free block after an in-use block, tells its successor, and puts it in the
 * tree: in leaving's place if leaving is not NULL (see ll_tree_replace), else inserted. */
static void ll_make_free(struct ll *l, struct ll_block *b, size_t size, struct ll_free *leaving)
{
    struct ll_block *next;

    ll_set_cookie(l, b, LL_FREE);
    b->size = size | LL_PREV_INUSE;
    next = ll_next_block(b);
    next->prev_size = size;
    next->size &= ~LL_PREV_INUSE;
    if (leaving != NULL)
        ll_tree_replace(&l->tree, leaving, (struct ll_free *)b);
    else
        ll_tree_insert(&l->tree, (struct ll_free *)b);
}

/* Frees [b, b + size) whose predecessor is in use, merging with a free successor (whose links the
 * caller validated). clean (hardened): the body of [b, b + size) below this address is poison.
 * leaving: a free block just before b (in the tree, about to leave it) whose place b takes, or NULL. */
static void ll_release_tail(struct ll *l, struct ll_block *b, size_t size, uintptr_t clean,
                            struct ll_free *leaving)
{
    struct ll_block *next = ll_block_at((uintptr_t)b + size);

    ll_poison_tail(b, size, clean);
    if (!(next->size & LL_INUSE)) { /* then leaving is NULL: b's predecessor was in use */
        leaving = (struct ll_free *)next;
        size += ll_block_size(next);
    }
    ll_make_free(l, b, size, leaving);
    if (leaving == (struct ll_free *)next) {
        if (heap_unlikely(next->size & LL_RELEASED)) { /* b takes over next's released pages */
            uintptr_t lo, hi;
            ll_rel_get(next, &lo, &hi);     /* validated before any resize (validate) */
            ll_poison_swallowed_free(next); /* first: b's record may lie where next's header was */
            ll_rel_set(b, lo, hi);
            return;
        }
        ll_poison_swallowed_free(next);
    }
}

/* Shrinks in-use block b to asize bytes if the rest can be a free block. clean and leaving: as
 * ll_release_tail; leaving (if not NULL) leaves the tree either way. */
static void ll_trim(struct ll *l, struct ll_block *b, size_t asize, uintptr_t clean, struct ll_free *leaving)
{
    size_t size = ll_block_size(b);

    if (size - asize < LL_MIN_BLOCK) {
        if (leaving != NULL)
            ll_tree_remove(&l->tree, leaving);
        return;
    }
    b->size = asize | (b->size & LL_FLAGS);
    ll_release_tail(l, ll_block_at((uintptr_t)b + asize), size - asize, clean, leaving);
}

/* Sets up a fresh region [s, e) (16-aligned) with one free block and a sentinel. */
static void ll_region_setup(struct ll *l, uintptr_t s, uintptr_t e)
{
    struct ll_region *r = (struct ll_region *)s;
    struct ll_block *first = ll_block_at(s + sizeof(*r));
    struct ll_block *sentinel = ll_block_at(e - LL_HDR);

    r->end = e;
    r->next = l->regions;
    l->regions = r;
    sentinel->size = LL_INUSE; /* size 0, in use; PREV_INUSE cleared by ll_make_free */
    ll_mark_used(l, sentinel);
    ll_tree_cover(&l->tree, s, e);
    ll_poison_fresh(first, (uintptr_t)sentinel - (uintptr_t)first);
    ll_make_free(l, first, (uintptr_t)sentinel - (uintptr_t)first, NULL);
}

static struct heap *ll_init(void *mem, size_t size, uint64_t secret)
{
    /* Offsets from mem, compared with size before any address is formed (heap_backend.h). */
    size_t lead = heap_pad_to((uintptr_t)mem, HEAP_MIN_ALIGN);
    size_t inst = heap_align_up(sizeof(struct ll), HEAP_MIN_ALIGN);
    uintptr_t base, s, e;
    struct ll *l;

    if (size < lead + inst + LL_REGION_MIN + HEAP_MIN_ALIGN)
        return NULL;
    base = (uintptr_t)mem + lead;
    s = base + inst;
    e = heap_align_down((uintptr_t)mem + size, HEAP_MIN_ALIGN);
    l = (struct ll *)base;
    __builtin_memset(l, 0, sizeof(*l));
    l->release_min = SIZE_MAX;
    l->envh = &l->common;
    ll_hard_init(l, secret);
    ll_tree_init(&l->tree, &l->common, secret);
    ll_region_setup(l, s, e);
    l->top = l->regions;
    l->top_end = (uintptr_t)mem + size;
    return &l->common;
}

/* Returns how far past free block b's payload (b + LL_HDR) the user pointer of an align-aligned block
 * would start: the first aligned address whose padding is 0 or can be a free block of its own. An
 * offset (< align + LL_MIN_BLOCK), not an address: the caller compares it with the room in b, which is
 * exact anywhere in the address space (heap_backend.h). */
static size_t ll_aligned_pad(const struct ll_block *b, size_t align)
{
    size_t pad = heap_pad_to((uintptr_t)b + LL_HDR, align);

    if (pad != 0 && pad < LL_MIN_BLOCK)
        pad += align;
    return pad;
}

/* Returns a free block that can hold asize bytes at alignment align (> 16), or NULL. Tests the exact
 * placement on the first LL_ALIGN_TRIES blocks of at least asize bytes in address order and takes the
 * smallest that fits (the lowest among equals; a block that leaves no remainder ends the search),
 * else falls back to the first block large enough for any placement (asize + align + LL_MIN_BLOCK).
 * Smallest rather than first: fixed_size_block asks for page- and slab-aligned blocks only, and the
 * first fit cuts up the aligned windows a later slab needs (footprints measured: docs/allocators.md). */
static struct ll_free *ll_find_aligned(struct ll *l, size_t asize, size_t align)
{
    bool bad = false;
    struct ll_free *f = ll_tree_find_fit(&l->tree, asize), *best = NULL;

    for (int tries = 0; f != NULL && tries < LL_ALIGN_TRIES; tries++) {
        size_t body = ll_block_size(&f->hdr) - LL_HDR, pad = ll_aligned_pad(&f->hdr, align);
        if (pad <= body && body - pad >= asize - LL_HDR) {
            if (best == NULL || ll_block_size(&f->hdr) < ll_block_size(&best->hdr))
                best = f;
            if (body - pad - (asize - LL_HDR) < LL_MIN_BLOCK)
                break; /* nothing would be split off after the block */
        }
        f = ll_tree_fit_after(&l->tree, (uintptr_t)f, asize, &bad);
    }
    if (bad || ll_call_aborted(l))
        return NULL;
    if (best != NULL)
        return best;
    return ll_tree_find_fit(&l->tree, asize + align + LL_MIN_BLOCK);
}

/* Carves a block of asize bytes at align out of free block f (whose links were validated) and returns
 * its user pointer (NULL if hardened mode found f's poison disturbed). */
static inline __attribute__((always_inline)) void *ll_carve(struct ll *l, struct ll_free *f, size_t asize,
                                                            size_t align, size_t *usable)
{
    struct ll_free *leaving;
    struct ll_block *b;
    uintptr_t clean;

    clean = ll_poison_end(&f->hdr, ll_block_size(&f->hdr));
    b = &f->hdr;
    leaving = f; /* the remainder, if any, takes f's place in the tree */
    if (align != HEAP_MIN_ALIGN) {
        size_t pad = ll_aligned_pad(b, align);
        if (pad != 0) {
            size_t rest = ll_block_size(b) - pad;
            /* The padding becomes a free block (f, smaller: re-inserted); its predecessor is in use. */
            ll_tree_remove(&l->tree, f);
            b->size = pad | LL_PREV_INUSE;
            ll_tree_insert(&l->tree, f);
            leaving = NULL;
            b = ll_block_at((uintptr_t)b + pad);
            b->prev_size = pad;
            b->size = rest; /* PREV_INUSE clear: the padding is free */
        }
    }
    b->size |= LL_INUSE;
    ll_next_block(b)->size |= LL_PREV_INUSE;
    ll_trim(l, b, asize, clean, leaving);
    *usable = ll_block_size(b) - LL_HDR;
    ll_mark_used(l, b);
    if (!ll_alloc_poison_ok(l, f, b, clean, *usable))
        return NULL;
    return (void *)((uintptr_t)b + LL_HDR);
}

/* ll_alloc() of flagged free block f: reclaims the released pages the new block and the remainder's
 * header and record need (NULL, nothing changed, if env refuses or the record is damaged), carves,
 * and leaves the rest of the released range to the padding and the remainder. */
static __attribute__((noinline)) void *ll_alloc_released(struct ll *l, struct ll_free *f, size_t asize,
                                                         size_t align, size_t *usable)
{
    struct ll_block *fb = &f->hdr;
    uintptr_t fend = (uintptr_t)fb + ll_block_size(fb);
    uintptr_t u = (uintptr_t)fb + (align == HEAP_MIN_ALIGN ? 0 : ll_aligned_pad(fb, align));
    uintptr_t rem = u + asize, lo, hi, need, rlo, rhi, plo, phi;
    bool split = fend - rem >= LL_MIN_BLOCK; /* ll_trim's rule */
    void *p;

    if (!ll_rel_get(fb, &lo, &hi)) {
        ll_tree_report_and_abort(&l->tree, f);
        return NULL;
    }
    need = split ? heap_page_up_off(rem, LL_REC_END) : fend;
    rlo = heap_page_down(u) > lo ? heap_page_down(u) : lo;
    rhi = need < hi ? need : hi;
    if (rlo < rhi && !heap_reclaim_pages(l->envh, rlo, rhi))
        return NULL;
    fb->size &= ~LL_RELEASED;
    p = ll_carve(l, f, asize, align, usable);
    phi = heap_page_down(u) < hi ? heap_page_down(u) : hi;
    if (u != (uintptr_t)fb)
        ll_rel_set(fb, lo, phi); /* the padding keeps what lies below the new block */
    plo = need > lo ? need : lo;
    if (split)
        ll_rel_set(ll_block_at(rem), plo, hi);
    return p;
}

static void *ll_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct ll *l = to_ll(h);
    size_t asize = ll_request_block_size(size);
    struct ll_free *f =
        align == HEAP_MIN_ALIGN ? ll_tree_find_fit(&l->tree, asize) : ll_find_aligned(l, asize, align);

    if (f == NULL || !ll_alloc_path_ok(l, f))
        return NULL;
    if (heap_unlikely(f->hdr.size & LL_RELEASED))
        return ll_alloc_released(l, f, asize, align, usable);
    return ll_carve(l, f, asize, align, usable);
}

/* free(), after free block m (in the tree) was formed by merging: gives back m's pages beyond its
 * first HEAP_TRIM_THRESHOLD bytes (none while add_memory() merges fresh memory) together with the gaps
 * between what m (grown from a flagged predecessor) and n (the free successor merged into it, or NULL)
 * had given back already, and records the hull. n's header is poisoned (hardened) before its page may
 * go. Records were validated by validate() (hardened). */
static __attribute__((noinline)) void ll_release_merged(struct ll *l, struct ll_block *m, struct ll_free *n)
{
    uintptr_t have_lo[2] = {0, 0}, have_hi[2] = {0, 0};
    uintptr_t lo = UINTPTR_MAX, hi = 0, zhi = ll_zone_hi(m), cur;

    if (m->size & LL_RELEASED)
        ll_rel_get(m, &have_lo[0], &have_hi[0]);
    if (n != NULL) {
        if (n->hdr.size & LL_RELEASED)
            ll_rel_get(&n->hdr, &have_lo[1], &have_hi[1]);
        ll_poison_swallowed_free(&n->hdr);
    }
    if (!l->growing) {
        uintptr_t t = heap_page_up_off((uintptr_t)m, LL_REC_END + HEAP_TRIM_THRESHOLD);
        if (t < zhi) {
            lo = t;
            hi = zhi;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (have_lo[i] >= have_hi[i])
            continue;
        lo = have_lo[i] < lo ? have_lo[i] : lo;
        hi = have_hi[i] > hi ? have_hi[i] : hi;
    }
    if (lo >= hi)
        return;
    cur = lo;
    for (int i = 0; i < 2; i++) {
        if (have_lo[i] >= have_hi[i])
            continue;
        heap_release_pages(l->envh, cur, have_lo[i]);
        cur = have_hi[i];
    }
    heap_release_pages(l->envh, cur, hi);
    ll_rel_set(m, lo, hi);
}

static size_t ll_free(struct heap *h, void *ptr)
{
    struct ll *l = to_ll(h);
    struct ll_block *b = ll_block_of(ptr);
    size_t size = ll_block_size(b);
    size_t usable = size - LL_HDR;
    struct ll_block *next = ll_next_block(b);
    struct ll_block *m = b; /* the free block that results */
    struct ll_free *leaving = NULL;

    ll_record_free_site(l, b);
    if (!(next->size & LL_INUSE)) {
        leaving = (struct ll_free *)next; /* b merges with it; b takes its place or it leaves the tree */
        size += ll_block_size(next);
    }
    if (!(b->size & LL_PREV_INUSE)) {
        /* The free predecessor grows over b: same address, so it keeps its place in the tree. */
        struct ll_block *prev = ll_block_at((uintptr_t)b - b->prev_size);
        if (leaving != NULL)
            ll_tree_remove(&l->tree, leaving);
        ll_poison_swallowed_header(b);
        prev->size += size; /* keeps its flags (PREV_INUSE, RELEASED) */
        size = ll_block_size(prev);
        m = prev;
        next = ll_next_block(prev);
        next->prev_size = size;
        next->size &= ~LL_PREV_INUSE;
        ll_tree_grow(&l->tree, (struct ll_free *)prev);
    } else {
        ll_make_free(l, b, size, leaving);
    }
    if (heap_unlikely(size >= l->release_min)) {
        ll_release_merged(l, m, leaving);
        return usable;
    }
    if (leaving != NULL)
        ll_poison_swallowed_free(&leaving->hdr);
    return usable;
}

/* Makes flagged free block f mapped throughout again; false (nothing changed) if env refuses. */
static bool ll_reclaim_all(struct ll *l, struct ll_block *f)
{
    uintptr_t lo, hi;

    ll_rel_get(f, &lo, &hi); /* validated before any resize (validate) */
    if (!heap_reclaim_pages(l->envh, lo, hi))
        return false;
    f->size &= ~LL_RELEASED;
    return true;
}

static bool ll_resize(struct heap *h, void *ptr, size_t size)
{
    struct ll *l = to_ll(h);
    struct ll_block *b = ll_block_of(ptr);
    size_t asize = ll_request_block_size(size);
    size_t cur = ll_block_size(b);
    struct ll_block *next;

    if (asize <= cur) {
        ll_trim(l, b, asize, 0, NULL);
        return true;
    }
    next = ll_next_block(b);
    if ((next->size & LL_INUSE) || cur + ll_block_size(next) < asize)
        return false;
    if (heap_unlikely(next->size & LL_RELEASED) && !ll_reclaim_all(l, next))
        return false;
    ll_tree_remove(&l->tree, (struct ll_free *)next); /* links validated by validate() before any resize */
    b->size += ll_block_size(next);
    ll_next_block(b)->size |= LL_PREV_INUSE;
    ll_trim(l, b, asize, 0, NULL);
    return true;
}

static size_t ll_usable_size(const struct heap *h, const void *ptr)
{
    (void)h;
    return ll_block_size(ll_block_of(ptr)) - LL_HDR;
}

/* Extends the top region over adjacent memory (its sentinel becomes a free block), else adds a
 * region. Pieces too small to hold a block are ignored. */
static void ll_add_memory(struct heap *h, void *start, size_t len)
{
    struct ll *l = to_ll(h);
    uintptr_t raw_end = (uintptr_t)start + len;
    uintptr_t e = heap_align_down(raw_end, HEAP_MIN_ALIGN);

    if ((uintptr_t)start == l->top_end && l->top != NULL) {
        struct ll_block *old_sentinel = ll_block_at(l->top->end - LL_HDR);
        struct ll_block *sentinel = ll_block_at(e - LL_HDR);
        size_t size;

        if (e < l->top->end + LL_MIN_BLOCK)
            return;
        sentinel->size = LL_INUSE;
        l->top->end = e;
        l->top_end = raw_end;
        size = (uintptr_t)sentinel - (uintptr_t)old_sentinel;
        old_sentinel->size = size | (old_sentinel->size & LL_PREV_INUSE) | LL_INUSE;
        ll_mark_used(l, sentinel);
        ll_tree_cover(&l->tree, (uintptr_t)l->top, e);
        ll_poison_fresh(old_sentinel, size);
        if (!ll_grow_path_ok(l, old_sentinel))
            return;
        l->growing = true;
        ll_free(h, (void *)((uintptr_t)old_sentinel + LL_HDR)); /* merges with a free predecessor */
        l->growing = false;
        return;
    }
    uintptr_t s = heap_align_up((uintptr_t)start, HEAP_MIN_ALIGN);
    if (e <= s || e - s < LL_REGION_MIN)
        return;
    ll_region_setup(l, s, e);
    l->top = l->regions;
    l->top_end = raw_end;
}

static size_t ll_check(const struct heap *h)
{
    const struct ll *l = to_const_ll(h);
    size_t bad = 0, free_walk = 0, free_tree = 0, nregions = 0;

    for (const struct ll_region *r = l->regions; r != NULL && nregions < ((size_t)1 << 40);
         r = r->next, nregions++) {
        uintptr_t sentinel = r->end - LL_HDR;
        const struct ll_block *b = ll_block_at((uintptr_t)r + sizeof(*r));
        bool prev_inuse = true;

        if (((uintptr_t)r | r->end) % HEAP_MIN_ALIGN != 0 || r->end < (uintptr_t)r + LL_REGION_MIN) {
            bad++;
            continue;
        }
        while ((uintptr_t)b < sentinel) {
            size_t size = ll_block_size(b);
            bool inuse = b->size & LL_INUSE;

            if (size < LL_MIN_BLOCK || size % HEAP_MIN_ALIGN != 0 || size > sentinel - (uintptr_t)b) {
                bad++;
                break;
            }
            bad += !(b->size & LL_PREV_INUSE) != !prev_inuse;
            bad += inuse ? (b->size & LL_RELEASED) != 0 : !ll_rel_ok(b); /* release record */
            bad += ll_check_block_hard(l, b, inuse);
            if (!inuse) {
                free_walk++;
                bad += !prev_inuse;                         /* two adjacent free blocks */
                bad += ll_next_block(b)->prev_size != size; /* boundary tag */
            }
            prev_inuse = inuse;
            b = ll_next_block(b);
        }
        if ((uintptr_t)b == sentinel) {
            bad += b->size != (LL_INUSE | (prev_inuse ? LL_PREV_INUSE : 0));
        } else if ((uintptr_t)b > sentinel) {
            bad++;
        }
    }
    bad += ll_tree_check(&l->tree, &free_tree, free_walk + 1);
    bad += free_tree != free_walk;
    return bad;
}

/* walk(): every block of every region (newest region first, blocks in address order). */
static size_t ll_walk(const struct heap *h, heap_walk_fn fn, void *ctx)
{
    const struct ll *l = to_const_ll(h);
    size_t n = 0;

    for (const struct ll_region *r = l->regions; r != NULL; r = r->next) {
        uintptr_t sentinel = r->end - LL_HDR;
        for (const struct ll_block *b = ll_block_at((uintptr_t)r + sizeof(*r)); (uintptr_t)b < sentinel;
             b = ll_next_block(b)) {
            size_t size = ll_block_size(b);
            struct heap_walk_entry e = {
                .addr = b, .size = size, .state = (b->size & LL_INUSE) ? HEAP_WALK_USED : HEAP_WALK_FREE};
            if (size < LL_MIN_BLOCK || size > sentinel - (uintptr_t)b)
                return n; /* damaged: check() says how */
            n++;
            if (!fn(ctx, &e))
                return n;
        }
    }
    return n;
}

void heap_ll_release_enable(struct heap *ll, struct heap *owner)
{
    struct ll *l = to_ll(ll);

    l->envh = owner;
    l->release_min = LL_REC_END + HEAP_PAGE_SIZE; /* no flagged block is smaller */
}

static void ll_release_enable(struct heap *h)
{
    heap_ll_release_enable(h, h);
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
    .validate = LL_VALIDATE,
    .walk = ll_walk,
    .release_enable = ll_release_enable,
};
