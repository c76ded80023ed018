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
 * smallest that fits (see ll_find_aligned), else the first block of size + align + 32. The candidates
 * come from one in-order walk of the tree that skips the subtrees too small (ll_tree_visit_fits), not
 * from a descent each: fixed_size_block's page-aligned large blocks cost about 540 instructions per
 * search instead of about 1,130 (docs/measurements.md, "linked_list's aligned search in one walk").
 *
 * Quick lists (plain heaps that give no memory back): in front of the tree, one LIFO list per block
 * size from 32 to 144 bytes (requests up to 128 bytes), of at most LL_QUICK_CAP blocks each. A listed
 * block stays INUSE to the tree and to the boundary tags, is flagged LL_QUICK (bit 3 of its size
 * word) and doubly linked through its first two body words (struct ll_quick); alloc() of its size pops
 * it, with no tree operation at all. On workload c (70% of requests up to 128 bytes) this halves the
 * instructions per operation. What keeps the lists from fragmenting the tree (they used to cost
 * workload p +46% and k +116%, docs/allocators.md):
 *   - coalescing still finds listed blocks: a block freed into the tree takes the listed blocks on
 *     either side off their lists (O(1): doubly linked) and grows over them, runs of them too. A
 *     listed block's successor, if in use, carries its size as a boundary tag (prev_size, PREV_INUSE
 *     clear), so the successor's free finds it as it would a free predecessor; the tag is void again
 *     when the block is popped (the successor's PREV_INUSE is set). A free successor cannot carry the
 *     tag (its prev_size is a subtree maximum), nor does a block later carved from it: from that side
 *     the listed block is not found, and merges only when a block before it is freed or the lists are
 *     flushed -- a missed merge, never a wrong one.
 *   - free() lists a block only if the block before it is not free: after a free block it merges
 *     instead, as it would without lists, so a FIFO (workload p) keeps growing its free front in
 *     address order rather than leaving listed islands in it.
 *   - a carve's remainder of a listed size before a used block goes on its list rather than into the
 *     tree, where it would wait for a request the lists answer first.
 * An allocation that finds no fit in the tree flushes every list into the tree (ordinary frees,
 * coalescing) and retries, so the lists never make an allocation fail or the heap grow; walk() reports
 * listed blocks as free. The releasing twin and hardened mode have no quick lists (release_enable
 * flushes them). Invariant (check): each list holds quick_n in-use blocks of its size, all flagged,
 * inside a region, each back link naming the entry before it, and the flagged blocks of the region
 * walk are exactly those; a PREV_INUSE bit cleared after a listed block comes with its size as tag.
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
 *   - a block's PREV_INUSE bit equals the INUSE bit of the block before it (after a listed block, a
 *     used block may have it clear with the listed block's size as tag); a free block's size is
 *     stored in the next block's prev_size;
 *   - no two free blocks are adjacent (coalescing is complete);
 *   - every free block is in the tree exactly once and the tree holds nothing else; in-order means
 *     increasing addresses; a parent's priority is >= its children's; every node's maximum is the
 *     largest of its size and its children's maxima. check() also counts a tree deeper than
 *     LL_TREE_CHECK_DEPTH as broken (for a random treap of a million nodes that has probability ~0).
 *
 * Complexity: alloc, free, resize and add_memory are O(log f) expected, f = number of free blocks
 * (one descent plus O(1) expected rotations; an aligned alloc one walk that enters the nodes on the
 * paths to its at most LL_ALIGN_TRIES candidates, each once, plus at most one descent for the
 * fallback); usable_size is O(1), check O(blocks). Insert and remove recurse along one path (replace
 * walks it iteratively: ll_tree.h), and the aligned walk recurses into left subtrees, so the stack
 * depth is the tree depth.
 *
 * Hardened mode (docs/hardening.md): the header grows to 32 bytes with a cookie and the free site,
 * the minimum block to 64 bytes. The cookie seals the header: a keyed checksum of the block's address
 * and its size word -- size, INUSE, RELEASED -- xor USED or FREE (ll_cookie), rewritten wherever a
 * size or an own flag changes, so no header whose size or flags were changed is used. PREV_INUSE is
 * left out (the neighbour changes it) and cross-checked instead: before alloc, free or resize uses a
 * block, its successor's header must be sealed and agree with it (a used block's successor has
 * PREV_INUSE set; a free block's successor is a sealed used block whose prev_size is the free
 * block's size), and a free predecessor found through a boundary tag must be a sealed free block of
 * exactly that size. Tree links (the root too) are mangled with a key of their slot and carry a
 * 20-bit keyed tag in the bits an aligned canonical address does not use (ll_tree.h), so a damaged
 * link is rejected before anything is read through it; the first-fit descent and the aligned walk
 * check each link they take, and before the tree is changed ll_tree_path_ok() checks every link the
 * change will follow or move -- the search path of the block, its children and the two spines below
 * it -- and that each node lies strictly inside the address interval its ancestors allow (a sibling
 * read only for its subtree maximum may be damaged: it decodes to a readable dummy node and is
 * reported by the next descent that follows it, ll_tree.h). validate() runs the checks a free
 * or resize will need before it is allowed, and finds the region of a pointer before reading its
 * header, so foreign pointers are never dereferenced. The subtree maxima are not sealed: a damaged
 * one can only make the descent or the walk miss (reported) or look in vain, never hand out a
 * block that is too small, since the block's own (sealed) size is checked. The free site is not
 * sealed either: it only names a caller in a report.
 * Failed checks are reported (HEAP_ERR_CORRUPT_METADATA for headers and tags, the write into freed
 * memory for a damaged link or watermark, which lie in a free block's body) and the operation is
 * refused: a free or resize leaves the block alone (leaked), an allocation fails; a damaged free
 * block stays where it is and every later operation that would touch it is refused the same way, so
 * no block involved is ever handed out (the heap degrades, it never overlaps).
 * Poison invariant: every free block keeps a poison watermark (struct ll_free.clean, sealed with the
 * block's address): its body from the kept words (links, watermark) up to the watermark is
 * HEAP_POISON_FREE. A freed block's first HEAP_POISON_SPAN bytes are poisoned by the front end; when
 * a block whose poisoned span may hold a write through a dangling pointer merges into a free block
 * below it (or a free block above merges into it), the never-poisoned gap between the two spans (the
 * tail of a large block beyond its first span) is poisoned, so one watermark covers both -- a span
 * absorbed by coalescing is verified like any other. A remainder split off a free block keeps the
 * part of the watermark above it and is poisoned over its own first span; an allocation verifies,
 * before it writes any header, every byte below the watermark that the new block, a padding header
 * and a remainder's header and kept words will cover; check() verifies every free block up to its
 * watermark and the canary of every used one. Gap poisoning costs at most once per byte handed out.
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
 * into a flagged neighbour reclaims the same way (only what the grown block needs); a tail cut off a used
 * block that merges with a flagged neighbour takes over its record. Memory added by growth is never released
 * at once. Hardened mode: the poison span lies in the kept prefix, so released pages (which lose their poison
 * and come back as zeroes) are never verified as poison; a remainder carved from reclaimed memory is poisoned
 * as usual. validate() treats a pointer whose header lies in a released page as a stale pointer into freed
 * memory (double free) without reading it; validate() also checks the records of the neighbours a free will
 * merge, and alloc() the record of the block it reclaims for.
 *
 * All hardened-mode code is in one section below ("Hardened mode: the hooks"), which ends in empty
 * stubs for the plain build; the allocator after it reads the same in both modes.
 */
#include "heap_backend.h"
#include "linked_list.h"
#include "ll_tree.h"

#define LL_ALIGN_TRIES 16 /* blocks tested for an exact aligned fit before the padded fallback */

/* Quick lists (see "Quick lists" above): plain heaps that give nothing back only. */
#define LL_QUICK_ON      (!KHEAP_HARDENING)
#define LL_QUICK_CLASSES 8                                                        /* block sizes 32..144 */
#define LL_QUICK_MAX     (LL_MIN_BLOCK + (LL_QUICK_CLASSES - 1) * HEAP_MIN_ALIGN) /* largest block held */
#define LL_QUICK_CAP     32 /* blocks per list: bounds what the lists keep from coalescing */

/* A block on a quick list: in use to the tree, free to the user; its first two body words link the
 * list both ways, so a neighbour being freed can take it off its list in O(1) and merge with it. */
struct ll_quick {
    struct ll_block hdr; /* size | LL_INUSE | LL_QUICK */
    struct ll_quick *next, *prev;
};

_Static_assert(sizeof(struct ll_quick) <= LL_MIN_BLOCK, "the quick links fit in the smallest block");

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
    /* Quick lists: quick[i] heads a LIFO list of quick_n[i] in-use blocks of LL_MIN_BLOCK + 16 i bytes
     * flagged LL_QUICK, doubly linked through their first two body words (struct ll_quick). */
    struct ll_quick *quick[LL_QUICK_CLASSES];
    uint32_t quick_n[LL_QUICK_CLASSES];
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

static void ll_rel_sealed(const struct ll *l, struct ll_block *b);

/* Free block b has [lo, hi) given back (flag and record) if lo < hi, else is mapped throughout. */
static void ll_rel_set(const struct ll *l, struct ll_block *b, uintptr_t lo, uintptr_t hi)
{
    struct ll_rel *r = ll_rel_of(b);

    if (lo >= hi) {
        b->size &= ~LL_RELEASED;
        ll_rel_sealed(l, b);
        return;
    }
    r->lo = lo;
    r->hi = hi;
    r->check = ll_rel_check(r, lo, hi);
    b->size |= LL_RELEASED;
    ll_rel_sealed(l, b);
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

/* Seals b's header for state LL_USED or LL_FREE: called whenever b's size or own flags change. */
static void ll_set_cookie(const struct ll *l, struct ll_block *b, uint64_t state)
{
    b->cookie = ll_cookie(l->common.hard.secret, b, state);
}

/* True if b's header carries the seal of its size and flags. */
static bool ll_sealed(const struct ll *l, const struct ll_block *b)
{
    return b->cookie == ll_cookie(l->common.hard.secret, b, (b->size & LL_INUSE) ? LL_USED : LL_FREE);
}

/* The watermark word of free block b for an offset of units * 16 bytes (ll_block.h). */
static uint64_t ll_clean_word(const struct ll *l, const struct ll_block *b, uint64_t units)
{
    return units | heap_hard_seal(l->common.hard.secret, (uintptr_t)b + LL_HDR + 16, units) << 32;
}

/* True if free block b's watermark word is intact and inside the block. */
static bool ll_clean_ok(const struct ll *l, const struct ll_block *b)
{
    uint64_t w = ((const struct ll_free *)b)->clean;

    return w == ll_clean_word(l, b, w & 0xffffffffu) && (w & 0xffffffffu) * 16 <= ll_block_size(b);
}

/* Free block b's watermark word failed ll_clean_ok(): returns the offset in b's body of the byte that
 * was changed, found by trying every other value of each byte for one that makes the word intact
 * again (2,040 checksums: only ever on a report), or of the word if more than one byte changed. */
static __attribute__((noinline, cold)) size_t ll_clean_bad_byte(const struct ll *l, const struct ll_block *b)
{
    uint64_t w = ((const struct ll_free *)b)->clean;

    for (unsigned i = 0; i < 8; i++) {
        for (uint64_t v = 0; v < 256; v++) {
            uint64_t c = (w & ~((uint64_t)0xff << (8 * i))) | v << (8 * i);
            if (c != w && c == ll_clean_word(l, b, c & 0xffffffffu) &&
                (c & 0xffffffffu) * 16 <= ll_block_size(b))
                return offsetof(struct ll_free, clean) - LL_HDR + i;
        }
    }
    return offsetof(struct ll_free, clean) - LL_HDR;
}

/* Reports free block b's damaged watermark word as a write into freed memory (the word lies in b's
 * body). */
static void ll_report_clean(const struct ll *l, const struct ll_block *b)
{
    heap_hard_report(&l->common, HEAP_ERR_USE_AFTER_FREE, (const char *)b + LL_HDR, 0,
                     ll_clean_bad_byte(l, b), NULL, b->site);
}

/* Free block b's poison watermark: [b + LL_HDR + LL_KEEP, result) is poison. Every caller reads the
 * word of a block whose watermark this call verified with ll_clean_ok() already (validate() for a
 * free's or resize's neighbours, ll_alloc_path_ok() for the block carved, check() for its own) or
 * wrote itself, so it is not checksummed again; an offset beyond the block counts as its end. */
static uintptr_t ll_clean_end(const struct ll *l, const struct ll_block *b)
{
    uintptr_t lo = (uintptr_t)b + LL_HDR + LL_KEEP, end;
    uint64_t units = ((const struct ll_free *)b)->clean & 0xffffffffu;

    (void)l;
    end = (uintptr_t)b + (units * 16 < ll_block_size(b) ? units * 16 : ll_block_size(b));
    return end > lo ? end : lo;
}

/* Sets free block b's watermark to clean (clamped to the block; rounded down to 16; a block larger
 * than 64 GiB keeps at most its first 64 GiB verified). */
static void ll_clean_set(const struct ll *l, struct ll_block *b, uintptr_t clean)
{
    uintptr_t off = clean > (uintptr_t)b ? clean - (uintptr_t)b : 0;
    uint64_t units;

    if (off > ll_block_size(b))
        off = ll_block_size(b);
    units = off / 16;
    if (units > 0xffffffffu)
        units = 0xffffffffu;
    ((struct ll_free *)b)->clean = ll_clean_word(l, b, units);
}

/* Free block `lower` (poisoned below clean) is about to absorb the block at `upper`, whose poisoned
 * span [upper + .., upper_clean) may hold what a dangling pointer writes: poisons the gap between the
 * two -- what lies there was never poisoned (the tail of a large block beyond its first span, fresh
 * memory) -- so one watermark covers both, and returns it. The headers and links in between are
 * poisoned by the caller as they are swallowed. Each byte a gap poisons was handed to a user (or came
 * fresh) since it was last poison, so the cost is bounded by what was allocated. A lower block that
 * gave pages back (LL_RELEASED) is not joined: its watermark stays below its record, and the span
 * above is no longer verified (a documented gap, only with env.release, blocks > 256 KiB). */
static uintptr_t ll_clean_join(const struct ll_block *lower, uintptr_t clean, uintptr_t upper,
                               uintptr_t upper_clean)
{
    uintptr_t from = (uintptr_t)lower + LL_HDR + LL_KEEP;

    if (upper_clean <= upper + LL_HDR + LL_KEEP)
        return clean; /* nothing poisoned above: nothing to join */
    if (lower->size & LL_RELEASED)
        return clean; /* the gap holds pages given back: the span above is not verified any more */
    if (clean > from)
        from = clean;
    if (from < upper)
        heap_hard_poison((void *)from, upper - from);
    return upper_clean;
}

/* ll_rel_set() changed flagged free block b's RELEASED flag: reseal it, and keep its watermark below
 * the release record (released pages lose their poison; what a watermark covered beyond the record is
 * not verified any more). */
static void ll_rel_sealed(const struct ll *l, struct ll_block *b)
{
    ll_set_cookie(l, b, LL_FREE);
    if ((b->size & LL_RELEASED) && ll_clean_end(l, b) > (uintptr_t)b + LL_REC_OFF)
        ll_clean_set(l, b, (uintptr_t)b + LL_REC_OFF);
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
 * the rest of its prefix after the kept words, and returns its watermark. */
static uintptr_t ll_poison_tail(const struct ll_block *b, size_t size, uintptr_t clean)
{
    uintptr_t end = ll_poison_end(b, size);

    ll_poison_above((uintptr_t)b + LL_HDR + LL_KEEP, end, clean);
    return clean > end ? clean : end;
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
    const struct ll_block *next;

    if (!ll_tree_link_ok(&l->tree, f)) { /* the descents checked links, not headers: now f's seal */
        heap_hard_report(&l->common, HEAP_ERR_CORRUPT_METADATA, (const char *)f + LL_HDR, 0, 0, NULL, NULL);
        ll_tree_abort(&l->tree);
        return false;
    }
    next = ll_next_block(&f->hdr);

    if (heap_unlikely(!ll_clean_ok(l, &f->hdr))) {
        /* The word lies in the free block's body: a write through a dangling pointer. Report it, fail
         * the call, and let the block be carved and quarantined as for any disturbed poison
         * (ll_alloc_poison_ok sees the aborted call), so no user gets memory that was written to. */
        ll_report_clean(l, &f->hdr);
        ll_tree_abort(&l->tree);
        ll_clean_set(l, (struct ll_block *)&f->hdr, 0);
    }
    if (!ll_sealed(l, next) || !(next->size & LL_INUSE) || (next->size & LL_PREV_INUSE) ||
        next->prev_size != ll_block_size(&f->hdr)) {
        /* The boundary tags disagree: the successor's header (f's own is sealed) was changed. */
        heap_hard_report(&l->common, HEAP_ERR_CORRUPT_METADATA, (const char *)next + LL_HDR, 0, 0, NULL,
                         NULL);
        ll_tree_abort(&l->tree);
        return false;
    }
    if (ll_tree_path_ok(&l->tree, f, true))
        return true;
    ll_tree_path_report(&l->tree, f, true);
    ll_tree_abort(&l->tree);
    return false;
}

/* alloc(), before free block f (watermark clean) is carved: the new block will have its header at u
 * and asize bytes, and a remainder after it gets a header and kept words. Returns the address of the
 * first byte of all that which lies below the watermark but is not poison (a write into freed
 * memory: every block that was merged into f, and the bytes new metadata is about to cover, are
 * verified), or 0. */
static uintptr_t ll_reused_damage(const struct ll_free *f, uintptr_t u, size_t asize, uintptr_t clean)
{
    uintptr_t from = (uintptr_t)f + LL_HDR + LL_KEEP, to = u + asize + LL_HDR + LL_KEEP;
    size_t off;

    if (from < u)
        from = u;
    if (to > clean)
        to = clean;
    if (from >= to)
        return 0;
    off = heap_hard_find_unpoisoned((void *)from, 0, to - from);
    return off == to - from ? 0 : from + off;
}

/* alloc(), after used block b (usable bytes) was carved: true if ll_reused_damage() found nothing
 * (hit == 0) and the call was not aborted. Else reports the write (naming b and the offset, or the
 * byte itself when it lay outside b's user bytes), fails the call, quarantines b for good and returns
 * false. */
static bool ll_alloc_poison_ok(struct ll *l, struct ll_block *b, size_t usable, uintptr_t hit)
{
    uintptr_t p = (uintptr_t)b + LL_HDR;

    if (heap_likely(hit == 0 && !ll_call_aborted(l)))
        return true;
    if (hit != 0) {
        bool inside = hit >= p && hit - p < usable;
        heap_hard_report(&l->common, HEAP_ERR_USE_AFTER_FREE, (void *)(inside ? p : hit), 0,
                         inside ? hit - p : 0, NULL, NULL);
        l->common.hard.owner->hard.abort = true;
    }
    heap_hard_retire(&l->common, (void *)p, usable);
    return false;
}

/* Checks what freeing (or resizing) used block b (whose header is sealed) will read and follow: the
 * successor's sealed header and its PREV_INUSE bit against b; a free successor's links and
 * watermark; a free predecessor found through b's boundary tag, whose sealed size must equal the
 * tag; the tree paths of the removal, growth and insertion. Returns HEAP_BLOCK_OK, or the kind of
 * damage: HEAP_ERR_CORRUPT_METADATA (a header or boundary tag), HEAP_ERR_USE_AFTER_FREE (a free
 * neighbour's watermark, in its body), HEAP_ERR_CORRUPT_FREELIST (links). */
static enum heap_error ll_free_path_check(const struct ll *l, const struct ll_block *b)
{
    const struct ll_block *next = ll_next_block(b);

    if (!ll_sealed(l, next) || !(next->size & LL_PREV_INUSE))
        return HEAP_ERR_CORRUPT_METADATA;
    if (!(next->size & LL_INUSE)) {
        /* next is sealed as free and lies inside b's region (validate): it passes ll_tree_link_ok()
         * if its block ends inside the envelope -- no second checksum of its header. */
        if (!(ll_tree_block_inside(&l->tree, (const struct ll_free *)next) && ll_rel_ok(next)))
            return HEAP_ERR_CORRUPT_METADATA;
        if (!ll_clean_ok(l, next))
            return HEAP_ERR_USE_AFTER_FREE;
        if (!ll_tree_path_ok(&l->tree, (const struct ll_free *)next, true))
            return HEAP_ERR_CORRUPT_FREELIST;
    }
    if (!(b->size & LL_PREV_INUSE)) {
        const struct ll_free *prev = (const struct ll_free *)((uintptr_t)b - b->prev_size);
        if (b->prev_size < LL_MIN_BLOCK || b->prev_size > (uintptr_t)b - l->tree.lo ||
            !ll_tree_link_ok(&l->tree, prev) || ll_block_size(&prev->hdr) != b->prev_size ||
            !ll_rel_ok(&prev->hdr))
            return HEAP_ERR_CORRUPT_METADATA;
        if (!ll_clean_ok(l, &prev->hdr))
            return HEAP_ERR_USE_AFTER_FREE;
        if (!ll_tree_path_ok(&l->tree, prev, true))
            return HEAP_ERR_CORRUPT_FREELIST;
    }
    /* A free successor's place in the tree is what b takes (free: ll_tree_replace, which descends its
     * search path and sinks along its spines) or what a resize grows or merges into: its path, checked
     * above, is all the change follows. Only after a used successor is b (or a resize's remainder, with
     * the same search path: no free block lies between the two) inserted: then its path is checked. */
    if (!(next->size & LL_INUSE))
        return HEAP_BLOCK_OK;
    return ll_tree_path_ok(&l->tree, (const struct ll_free *)b, false) ? HEAP_BLOCK_OK
                                                                       : HEAP_ERR_CORRUPT_FREELIST;
}

/* True if freeing (or resizing) used block b follows only valid links and headers. */
static bool ll_free_path_ok(const struct ll *l, const struct ll_block *b)
{
    return ll_free_path_check(l, b) == HEAP_BLOCK_OK;
}

/* resize() of used block b into free successor n (validated), whose watermark is nclean, up to
 * new_end: true if the part of n's poisoned span b takes over is intact. Else reports a write into
 * freed memory and returns false (nothing changed: the resize is refused; a later allocation of n
 * meets the same bytes). */
static bool ll_resize_poison_ok(struct ll *l, const struct ll_block *n, uintptr_t nclean, uintptr_t new_end)
{
    uintptr_t from = (uintptr_t)n + LL_HDR + LL_KEEP, to = new_end < nclean ? new_end : nclean;
    size_t off;

    if (from >= to)
        return true;
    off = heap_hard_find_unpoisoned((void *)from, 0, to - from);
    if (off == to - from)
        return true;
    heap_hard_report(&l->common, HEAP_ERR_USE_AFTER_FREE, (const char *)n + LL_HDR, 0,
                     from + off - (uintptr_t)n - LL_HDR, NULL, n->site);
    return false;
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

/* True if address a lies in pages a free block gave back (reading nothing at a). Out of line: validate()
 * calls it only for a heap that gives memory back. */
static __attribute__((noinline)) bool ll_in_released(const struct ll *l, uintptr_t a)
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
    uint64_t seal;
    enum heap_error kind;

    if (a % HEAP_MIN_ALIGN != 0 || (r = ll_region_of(l, a)) == NULL)
        return HEAP_ERR_INVALID_FREE;
    if (heap_unlikely(l->release_min != SIZE_MAX) && ll_in_released(l, a - LL_HDR))
        return HEAP_ERR_DOUBLE_FREE; /* a stale pointer into pages a free block gave back */
    b = ll_block_of(ptr);
    seal = ll_cookie(l->common.hard.secret, b, 0); /* one checksum for both states */
    if (b->cookie == (seal ^ LL_FREE)) {
        *free_site = b->site;
        return HEAP_ERR_DOUBLE_FREE;
    }
    if (b->cookie != (seal ^ LL_USED) || !(b->size & LL_INUSE)) {
        /* Not a block. A header inside a free block is a stale pointer into freed memory (a block
         * freed and merged into a neighbour); anything else is the inside of a used block. Decided
         * by the heap's structure, never by bytes a user may have stored. */
        return ll_tree_in_free_block(&l->tree, (uintptr_t)b) ? HEAP_ERR_DOUBLE_FREE : HEAP_ERR_INVALID_FREE;
    }
    size = ll_block_size(b);
    if (size < LL_MIN_BLOCK || size % HEAP_MIN_ALIGN != 0 || size > r->end - LL_HDR - (uintptr_t)b)
        return HEAP_ERR_CORRUPT_METADATA;
    if (!(b->size & LL_PREV_INUSE) && b->prev_size > (uintptr_t)b - (uintptr_t)r)
        return HEAP_ERR_CORRUPT_METADATA; /* a boundary tag reaching out of the region */
    kind = ll_free_path_check(l, b);
    if (kind != HEAP_BLOCK_OK)
        return kind;
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

/* check(): true if region header r (reached through the region list) lies inside the heap's
 * envelope and describes a range inside it, so the walk may read its blocks. */
static bool ll_region_plausible(const struct ll *l, const struct ll_region *r)
{
    uintptr_t a = (uintptr_t)r;

    return a % HEAP_MIN_ALIGN == 0 && a >= l->tree.lo && a < l->tree.hi && r->end % HEAP_MIN_ALIGN == 0 &&
           r->end <= l->tree.hi && r->end >= a + LL_REGION_MIN;
}

/* check(): reports a broken invariant at block b (named by its user pointer) as corrupted metadata. */
static void ll_check_report(const struct ll *l, const void *b)
{
    heap_hard_report(&l->common, HEAP_ERR_CORRUPT_METADATA, (const char *)b + LL_HDR, 0, 0, NULL, NULL);
}

/* check(), before b's size is used to find the next block: true if b's header carries its seal,
 * else reports corrupted metadata (the walk of the region stops there). */
static bool ll_check_header(const struct ll *l, const struct ll_block *b)
{
    if (ll_sealed(l, b))
        return true;
    ll_check_report(l, b);
    return false;
}

/* check(), per block whose header is sealed: the watermark and the poison below it of a free block,
 * the canary of a used one. Returns 1 (reported) if one is disturbed, else 0. */
static size_t ll_check_block_hard(const struct ll *l, const struct ll_block *b, bool inuse)
{
    const void *p = (const char *)b + LL_HDR;

    if (!inuse) {
        size_t to, off;
        if (!ll_clean_ok(l, b)) {
            ll_report_clean(l, b);
            return 1;
        }
        to = ll_clean_end(l, b) - (uintptr_t)p;
        off = heap_hard_find_unpoisoned(p, LL_KEEP, to);
        if (off != to) {
            heap_hard_report(&l->common, HEAP_ERR_USE_AFTER_FREE, p, 0, off, NULL, b->site);
            return 1;
        }
        return 0;
    }
    if (l->internal != NULL && l->internal(l->common.hard.owner, p))
        return 0;
    return !heap_hard_verify_live(&l->common, p, ll_block_size(b) - LL_HDR);
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

static uintptr_t ll_poison_tail(const struct ll_block *b, size_t size, uintptr_t clean)
{
    (void)b;
    (void)size;
    (void)clean;
    return 0;
}

static uintptr_t ll_clean_end(const struct ll *l, const struct ll_block *b)
{
    (void)l;
    (void)b;
    return 0;
}

static void ll_clean_set(const struct ll *l, struct ll_block *b, uintptr_t clean)
{
    (void)l;
    (void)b;
    (void)clean;
}

static uintptr_t ll_clean_join(const struct ll_block *lower, uintptr_t clean, uintptr_t upper,
                               uintptr_t upper_clean)
{
    (void)lower;
    (void)upper;
    (void)upper_clean;
    return clean;
}

static void ll_rel_sealed(const struct ll *l, struct ll_block *b)
{
    (void)l;
    (void)b;
}

static bool ll_resize_poison_ok(struct ll *l, const struct ll_block *n, uintptr_t nclean, uintptr_t new_end)
{
    (void)l;
    (void)n;
    (void)nclean;
    (void)new_end;
    return true;
}

static void ll_check_report(const struct ll *l, const void *b)
{
    (void)l;
    (void)b;
}

/* Plain mode: region headers are trusted; only the layout is checked. */
static bool ll_region_plausible(const struct ll *l, const struct ll_region *r)
{
    (void)l;
    return ((uintptr_t)r | r->end) % HEAP_MIN_ALIGN == 0 && r->end >= (uintptr_t)r + LL_REGION_MIN;
}

static bool ll_check_header(const struct ll *l, const struct ll_block *b)
{
    (void)l;
    (void)b;
    return true;
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

static uintptr_t ll_reused_damage(const struct ll_free *f, uintptr_t u, size_t asize, uintptr_t clean)
{
    (void)f;
    (void)u;
    (void)asize;
    (void)clean;
    return 0;
}

static bool ll_alloc_poison_ok(struct ll *l, struct ll_block *b, size_t usable, uintptr_t hit)
{
    (void)l;
    (void)b;
    (void)usable;
    (void)hit;
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
 * tree: in leaving's place if leaving is not NULL (see ll_tree_replace), else inserted. clean
 * (hardened): its poison watermark. */
static void ll_make_free(struct ll *l, struct ll_block *b, size_t size, struct ll_free *leaving,
                         uintptr_t clean)
{
    struct ll_block *next;

    b->size = size | LL_PREV_INUSE;
    ll_set_cookie(l, b, LL_FREE);
    ll_clean_set(l, b, clean);
    next = ll_next_block(b);
    next->prev_size = size;
    next->size &= ~LL_PREV_INUSE;
    if (leaving != NULL)
        ll_tree_replace(&l->tree, leaving, (struct ll_free *)b);
    else
        ll_tree_insert(&l->tree, (struct ll_free *)b);
}

/* Free block b swallowed flagged free block next: b takes over next's released pages. */
static __attribute__((noinline)) void ll_take_record(struct ll *l, struct ll_block *b, struct ll_block *next)
{
    uintptr_t lo, hi;

    ll_rel_get(next, &lo, &hi);     /* validated before any resize (validate) */
    ll_poison_swallowed_free(next); /* first: b's record may lie where next's header was */
    ll_rel_set(l, b, lo, hi);
}

/* Quick lists (see "Quick lists" above): the parts the tree's free and alloc paths use. */

/* The quick list of blocks of size bytes (LL_MIN_BLOCK <= size <= LL_QUICK_MAX). */
static size_t ll_quick_index(size_t size)
{
    return (size - LL_MIN_BLOCK) / HEAP_MIN_ALIGN;
}

/* Takes quick block q off its list (O(1): the list is doubly linked) and clears its flag. */
static inline __attribute__((always_inline)) void ll_quick_unlink(struct ll *l, struct ll_quick *q)
{
    size_t i = ll_quick_index(ll_block_size(&q->hdr));

    q->hdr.size &= ~LL_QUICK;
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        l->quick[i] = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    l->quick_n[i]--;
}

/* free() of [*b, *b + *size): takes the quick-listed blocks on either side off their lists and widens
 * the range over them (a run of them, too), so what the lists hold coalesces as soon as a neighbour
 * goes to the tree. A listed predecessor is known by its boundary tag: PREV_INUSE clear and its size
 * in prev_size, written when it was listed (ll_quick_push). Each listed block is absorbed at most once
 * per listing: O(1) amortised. */
static inline __attribute__((always_inline)) void ll_quick_absorb(struct ll *l, struct ll_block **b,
                                                                  size_t *size)
{
    struct ll_block *n;

    if (!LL_QUICK_ON)
        return;
    while ((n = ll_block_at((uintptr_t)*b + *size))->size & LL_QUICK) {
        ll_quick_unlink(l, (struct ll_quick *)n);
        *size += ll_block_size(n);
    }
    while (!((*b)->size & LL_PREV_INUSE) &&
           ((n = ll_block_at((uintptr_t)*b - (*b)->prev_size))->size & LL_QUICK)) {
        ll_quick_unlink(l, (struct ll_quick *)n);
        *size += ll_block_size(n);
        *b = n; /* its PREV_INUSE bit now tells about the block before the range */
    }
}

/* Lists in-use block b of size bytes (<= LL_QUICK_MAX; its list has room). */
static inline __attribute__((always_inline)) void ll_quick_add(struct ll *l, struct ll_block *b, size_t size)
{
    struct ll_block *next = ll_block_at((uintptr_t)b + size);
    struct ll_quick *q = (struct ll_quick *)b, *head;
    size_t i = ll_quick_index(size);

    b->size |= LL_QUICK;
    if (next->size & LL_INUSE) {
        next->prev_size = size;
        next->size &= ~LL_PREV_INUSE;
    }
    head = l->quick[i];
    q->next = head;
    q->prev = NULL;
    if (head != NULL)
        head->prev = q;
    l->quick[i] = q;
    l->quick_n[i]++;
}

/* alloc(), plain heaps: the remainder [b, b + size) of a carve (b's header not yet written; leaving:
 * the tree block it came from, or NULL), if it is small enough for a list with room and a used block
 * follows it, goes on that list instead of into the tree (which leaving leaves): such a fragment would
 * wait in the tree for a request the lists answer first. Returns true if it did. */
static inline __attribute__((always_inline)) bool ll_quick_take_fragment(struct ll *l, struct ll_block *b,
                                                                         size_t size, struct ll_free *leaving)
{
    struct ll_block *next = ll_block_at((uintptr_t)b + size);

    if (!LL_QUICK_ON || size > LL_QUICK_MAX || !(next->size & LL_INUSE) ||
        l->quick_n[ll_quick_index(size)] >= LL_QUICK_CAP)
        return false;
    if (leaving != NULL)
        ll_tree_remove(&l->tree, leaving);
    b->size = size | LL_PREV_INUSE | LL_INUSE;
    ll_quick_add(l, b, size);
    return true;
}

/* Frees [b, b + size) whose predecessor is in use, merging with a free successor (whose links the
 * caller validated). clean (hardened): the body of [b, b + size) below this address is poison.
 * leaving: a free block just before b (in the tree, about to leave it) whose place b takes, or NULL.
 * releasing: the successor may carry a release record (the heap gives memory back, or the caller
 * does not know); false spares the plain alloc path the test. Inlined: callers pass constants. */
static inline __attribute__((always_inline)) void ll_release_tail(struct ll *l, struct ll_block *b,
                                                                  size_t size, uintptr_t clean,
                                                                  struct ll_free *leaving, bool releasing)
{
    struct ll_block *next = ll_block_at((uintptr_t)b + size);

    if (!releasing && ll_quick_take_fragment(l, b, size, leaving))
        return;
    clean = ll_poison_tail(b, size, clean);
    if (!(next->size & LL_INUSE)) { /* then leaving is NULL: b's predecessor was in use */
        leaving = (struct ll_free *)next;
        clean = ll_clean_join(b, clean, (uintptr_t)next, ll_clean_end(l, next));
        size += ll_block_size(next);
    }
    ll_make_free(l, b, size, leaving, clean);
    if (leaving == (struct ll_free *)next) {
        if (releasing && heap_unlikely(next->size & LL_RELEASED)) {
            ll_take_record(l, b, next);
            return;
        }
        ll_poison_swallowed_free(next);
    }
}

/* Shrinks in-use block b to asize bytes if the rest can be a free block. clean, leaving and releasing:
 * as ll_release_tail; leaving (if not NULL) leaves the tree either way. */
static inline __attribute__((always_inline)) void ll_trim(struct ll *l, struct ll_block *b, size_t asize,
                                                          uintptr_t clean, struct ll_free *leaving,
                                                          bool releasing)
{
    size_t size = ll_block_size(b);

    if (size - asize < LL_MIN_BLOCK) {
        if (leaving != NULL)
            ll_tree_remove(&l->tree, leaving);
        return;
    }
    b->size = asize | (b->size & LL_FLAGS);
    ll_release_tail(l, ll_block_at((uintptr_t)b + asize), size - asize, clean, leaving, releasing);
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
    ll_make_free(l, first, (uintptr_t)sentinel - (uintptr_t)first, NULL,
                 ll_poison_end(first, (uintptr_t)sentinel - (uintptr_t)first));
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
    l->common.ops = &heap_linked_list_ops; /* heap_create() sets it too; an embedding backend calls it */
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
        pad += heap_align_up(LL_MIN_BLOCK - pad, align); /* align may be smaller than a minimum block */
    return pad;
}

/* ll_find_aligned()'s search: the request, the candidates tested so far and the best of them. */
struct ll_aligned_search {
    size_t asize, align;
    int tries;            /* candidates tested */
    struct ll_free *best; /* the smallest that fits so far (the lowest among equals), or NULL */
};

/* ll_tree_visit_fits() visitor for ll_find_aligned(): tests the exact placement of the request in f
 * (at least asize bytes) and keeps f if it fits and is smaller than the best so far. Stops the walk
 * at a fit that leaves no remainder or after LL_ALIGN_TRIES candidates. */
static bool ll_aligned_candidate(void *ctx, struct ll_free *f)
{
    struct ll_aligned_search *s = ctx;
    size_t body = ll_block_size(&f->hdr) - LL_HDR, pad = ll_aligned_pad(&f->hdr, s->align);

    if (pad <= body && body - pad >= s->asize - LL_HDR) {
        if (s->best == NULL || ll_block_size(&f->hdr) < ll_block_size(&s->best->hdr))
            s->best = f;
        if (body - pad - (s->asize - LL_HDR) < LL_MIN_BLOCK)
            return true; /* nothing would be split off after the block */
    }
    return ++s->tries == LL_ALIGN_TRIES;
}

/* Returns a free block that can hold asize bytes at alignment align (> 16), or NULL. Tests the exact
 * placement on the first LL_ALIGN_TRIES blocks of at least asize bytes in address order and takes the
 * smallest that fits (the lowest among equals; a block that leaves no remainder ends the search),
 * else falls back to the first block large enough for any placement (asize + align + LL_MIN_BLOCK).
 * The candidates come from one walk of the tree (ll_tree_visit_fits), not a descent each.
 * Smallest rather than first: fixed_size_block asks for page- and slab-aligned blocks only, and the
 * first fit cuts up the aligned windows a later slab needs (footprints measured: docs/allocators.md). */
static struct ll_free *ll_find_aligned(struct ll *l, size_t asize, size_t align)
{
    struct ll_aligned_search s = {.asize = asize, .align = align, .tries = 0, .best = NULL};

    if (!ll_tree_visit_fits(&l->tree, asize, ll_aligned_candidate, &s) || ll_call_aborted(l))
        return NULL;
    if (s.best != NULL)
        return s.best;
    return ll_tree_find_fit(&l->tree, asize + align + LL_MIN_BLOCK);
}

/* Carves a block of asize bytes at align out of free block f (whose links were validated) and returns
 * its user pointer (NULL if hardened mode found f's poison disturbed). releasing: as ll_release_tail. */
static inline __attribute__((always_inline)) void *ll_carve(struct ll *l, struct ll_free *f, size_t asize,
                                                            size_t align, size_t *usable, bool releasing)
{
    struct ll_free *leaving;
    struct ll_block *b;
    uintptr_t clean, hit;
    size_t pad;

    clean = ll_clean_end(l, &f->hdr);
    b = &f->hdr;
    leaving = f; /* the remainder, if any, takes f's place in the tree */
    pad = align != HEAP_MIN_ALIGN ? ll_aligned_pad(b, align) : 0;
    hit = ll_reused_damage(f, (uintptr_t)f + pad, asize, clean); /* before any metadata is written */
    if (align != HEAP_MIN_ALIGN) {
        if (pad != 0) {
            size_t rest = ll_block_size(b) - pad;
            /* The padding becomes a free block (f, smaller: re-inserted); its predecessor is in use. */
            ll_tree_remove(&l->tree, f);
            b->size = pad | LL_PREV_INUSE;
            ll_set_cookie(l, b, LL_FREE);
            ll_clean_set(l, b, clean); /* clamped to the padding */
            ll_tree_insert(&l->tree, f);
            leaving = NULL;
            b = ll_block_at((uintptr_t)b + pad);
            b->prev_size = pad;
            b->size = rest; /* PREV_INUSE clear: the padding is free */
        }
    }
    b->size |= LL_INUSE;
    ll_next_block(b)->size |= LL_PREV_INUSE;
    ll_trim(l, b, asize, clean, leaving, releasing);
    *usable = ll_block_size(b) - LL_HDR;
    ll_mark_used(l, b);
    if (!ll_alloc_poison_ok(l, b, *usable, hit))
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
    p = ll_carve(l, f, asize, align, usable, true);
    phi = heap_page_down(u) < hi ? heap_page_down(u) : hi;
    if (u != (uintptr_t)fb)
        ll_rel_set(l, fb, lo, phi); /* the padding keeps what lies below the new block */
    plo = need > lo ? need : lo;
    if (split)
        ll_rel_set(l, ll_block_at(rem), plo, hi);
    return p;
}

/* alloc(): first fit, then carve. releasing: the heap gives memory back (ll_releasing_ops), so the
 * block found may carry the RELEASED flag; without it no block ever does and nothing tests for it. */
static inline __attribute__((always_inline)) void *ll_alloc_body(struct heap *h, size_t size, size_t align,
                                                                 size_t *usable, bool releasing)
{
    struct ll *l = to_ll(h);
    size_t asize = ll_request_block_size(size);
    struct ll_free *f =
        align == HEAP_MIN_ALIGN ? ll_tree_find_fit(&l->tree, asize) : ll_find_aligned(l, asize, align);

    if (f == NULL || !ll_alloc_path_ok(l, f))
        return NULL;
    if (releasing && heap_unlikely(f->hdr.size & LL_RELEASED))
        return ll_alloc_released(l, f, asize, align, usable);
    return ll_carve(l, f, asize, align, usable, releasing);
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
    ll_rel_set(l, m, lo, hi);
}

/* free(): coalesce with the free neighbours, then (releasing: ll_releasing_ops) give pages back if the
 * block that results is large enough to hold any (release_min). */
static inline __attribute__((always_inline)) size_t ll_free_body(struct heap *h, void *ptr, bool releasing)
{
    struct ll *l = to_ll(h);
    struct ll_block *b = ll_block_of(ptr), *next, *m;
    size_t size = ll_block_size(b);
    size_t usable = size - LL_HDR;
    struct ll_free *leaving = NULL;
    uintptr_t clean = ll_poison_end(b, size); /* hardened: the front end poisoned b's first span */

    ll_record_free_site(l, b);
    ll_quick_absorb(l, &b, &size); /* listed neighbours are free to the user: b grows over them */
    next = ll_block_at((uintptr_t)b + size);
    m = b; /* the free block that results */
    if (!(next->size & LL_INUSE)) {
        leaving = (struct ll_free *)next; /* b merges with it; b takes its place or it leaves the tree */
        clean = ll_clean_join(b, clean, (uintptr_t)next, ll_clean_end(l, next));
        size += ll_block_size(next);
    }
    if (!(b->size & LL_PREV_INUSE)) {
        /* The free predecessor grows over b: same address, so it keeps its place in the tree. */
        struct ll_block *prev = ll_block_at((uintptr_t)b - b->prev_size);
        uintptr_t pclean = ll_clean_end(l, prev);
        if (leaving != NULL)
            ll_tree_remove(&l->tree, leaving);
        ll_poison_swallowed_header(b);
        /* Fresh memory (add_memory) holds nothing a dangling pointer wrote: no need to join. */
        clean = l->growing ? pclean : ll_clean_join(prev, pclean, (uintptr_t)b, clean);
        prev->size += size; /* keeps its flags (PREV_INUSE, RELEASED) */
        ll_set_cookie(l, prev, LL_FREE);
        ll_clean_set(l, prev, clean);
        size = ll_block_size(prev);
        m = prev;
        next = ll_next_block(prev);
        next->prev_size = size;
        next->size &= ~LL_PREV_INUSE;
        ll_tree_grow(&l->tree, (struct ll_free *)prev);
    } else {
        ll_make_free(l, b, size, leaving, clean);
    }
    if (releasing && heap_unlikely(size >= l->release_min)) {
        ll_release_merged(l, m, leaving);
        return usable;
    }
    if (leaving != NULL)
        ll_poison_swallowed_free(&leaving->hdr);
    return usable;
}

/* free() through the quick lists: if b's size has a list with room and the block before b is not free
 * (b would only keep it from growing over b), b joins the list -- staying in use to its neighbours,
 * LL_QUICK set, its size left as a boundary tag in a used successor, whose PREV_INUSE is cleared so
 * that freeing it finds b -- and true is returned; else false (b untouched). */
static inline __attribute__((always_inline)) bool ll_quick_push(struct ll *l, struct ll_block *b)
{
    size_t size = ll_block_size(b), i = ll_quick_index(size);

    if (!LL_QUICK_ON || size > LL_QUICK_MAX || l->quick_n[i] >= LL_QUICK_CAP)
        return false;
    if (!(b->size & LL_PREV_INUSE) && !(ll_block_at((uintptr_t)b - b->prev_size)->size & LL_INUSE))
        return false;
    ll_quick_add(l, b, size);
    return true;
}

/* alloc() through the quick lists: pops a block of exactly the size a request of size bytes needs and
 * returns its user pointer (*usable set), or NULL if that list is empty or size has none. */
static inline __attribute__((always_inline)) void *ll_quick_pop(struct ll *l, size_t size, size_t *usable)
{
    size_t i;
    struct ll_quick *q;

    if (!LL_QUICK_ON || size > LL_QUICK_MAX - LL_HDR)
        return NULL;
    i = ll_quick_index(ll_request_block_size(size));
    q = l->quick[i];
    if (q == NULL)
        return NULL;
    /* ll_quick_unlink() for the head, whose prev is NULL: spelled out, as that call's prev test and
     * index computation cost linked_list 2 instructions per operation on workload a (callgrind) */
    l->quick[i] = q->next;
    if (q->next != NULL)
        q->next->prev = NULL;
    l->quick_n[i]--;
    q->hdr.size &= ~LL_QUICK;
    ll_next_block(&q->hdr)->size |= LL_PREV_INUSE; /* its successor's tag is void again */
    *usable = ll_block_size(&q->hdr) - LL_HDR;
    return (void *)((uintptr_t)q + LL_HDR);
}

/* Frees every block the quick lists hold into the tree (coalescing them); returns true if there was
 * any. Called when an allocation found no fit, and before the heap starts giving memory back. */
static __attribute__((noinline)) bool ll_quick_flush(struct ll *l)
{
    bool any = false;

    for (size_t i = 0; i < LL_QUICK_CLASSES; i++)
        while (l->quick[i] != NULL) {
            struct ll_quick *q = l->quick[i];
            ll_quick_unlink(l, q);
            ll_free_body(&l->common, (void *)((uintptr_t)q + LL_HDR), false);
            any = true;
        }
    return any;
}

/* The plain vtable's alloc and free: the quick lists in front of the tree. */
static void *ll_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct ll *l = to_ll(h);
    void *p = align == HEAP_MIN_ALIGN ? ll_quick_pop(l, size, usable) : NULL;

    if (p != NULL)
        return p;
    p = ll_alloc_body(h, size, align, usable, false);
    if (p == NULL && ll_quick_flush(l)) /* what the lists held may coalesce into a fit */
        p = ll_alloc_body(h, size, align, usable, false);
    return p;
}

static size_t ll_free(struct heap *h, void *ptr)
{
    struct ll_block *b = ll_block_of(ptr);

    if (ll_quick_push(to_ll(h), b))
        return ll_block_size(b) - LL_HDR;
    return ll_free_body(h, ptr, false);
}

/* The releasing twin's: no quick lists (they would keep memory from being given back). */
static void *ll_alloc_releasing(struct heap *h, size_t size, size_t align, size_t *usable)
{
    return ll_alloc_body(h, size, align, usable, true);
}

static size_t ll_free_releasing(struct heap *h, void *ptr)
{
    return ll_free_body(h, ptr, true);
}

/* ll_resize() of used block b to asize bytes into its flagged free successor (which has room; its
 * poison below nclean was verified): reclaims only the released pages the grown block and the
 * remainder's header and record need (false, nothing changed, if env refuses), and leaves the rest of
 * the range to the remainder. */
static __attribute__((noinline)) bool ll_resize_released(struct ll *l, struct ll_block *b, size_t asize,
                                                         uintptr_t nclean)
{
    struct ll_block *next = ll_next_block(b);
    uintptr_t end = (uintptr_t)next + ll_block_size(next), rem = (uintptr_t)b + asize, lo, hi, need;
    bool split = end - rem >= LL_MIN_BLOCK; /* ll_trim's rule */

    ll_rel_get(next, &lo, &hi); /* validated before any resize (validate) */
    need = split ? heap_page_up_off(rem, LL_REC_END) : end;
    if (need > lo && !heap_reclaim_pages(l->envh, lo, need < hi ? need : hi))
        return false;
    next->size &= ~LL_RELEASED;
    ll_set_cookie(l, next, LL_FREE);
    ll_tree_remove(&l->tree, (struct ll_free *)next);
    b->size += ll_block_size(next);
    ll_next_block(b)->size |= LL_PREV_INUSE;
    ll_trim(l, b, asize, nclean, NULL, true);
    ll_set_cookie(l, b, LL_USED);
    if (split)
        ll_rel_set(l, ll_block_at(rem), need > lo ? need : lo, hi);
    return true;
}

static bool ll_resize(struct heap *h, void *ptr, size_t size)
{
    struct ll *l = to_ll(h);
    struct ll_block *b = ll_block_of(ptr);
    size_t asize = ll_request_block_size(size);
    size_t cur = ll_block_size(b);
    struct ll_block *next;
    uintptr_t nclean;

    if (asize <= cur) {
        ll_trim(l, b, asize, 0, NULL, true);
        ll_set_cookie(l, b, LL_USED);
        return true;
    }
    next = ll_next_block(b);
    if ((next->size & LL_INUSE) || cur + ll_block_size(next) < asize)
        return false;
    nclean = ll_clean_end(l, next);
    if (!ll_resize_poison_ok(l, next, nclean,
                             (uintptr_t)b + asize + LL_HDR + LL_KEEP)) /* and a tail's header */
        return false;
    if (heap_unlikely(next->size & LL_RELEASED))
        return ll_resize_released(l, b, asize, nclean);
    ll_tree_remove(&l->tree, (struct ll_free *)next); /* links validated by validate() before any resize */
    b->size += ll_block_size(next);
    ll_next_block(b)->size |= LL_PREV_INUSE;
    ll_trim(l, b, asize, nclean, NULL, true);
    ll_set_cookie(l, b, LL_USED);
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
        sentinel->size = LL_INUSE | LL_PREV_INUSE; /* follows the old sentinel, in use until freed below */
        l->top->end = e;
        l->top_end = raw_end;
        size = (uintptr_t)sentinel - (uintptr_t)old_sentinel;
        old_sentinel->size = size | (old_sentinel->size & LL_PREV_INUSE) | LL_INUSE;
        ll_mark_used(l, sentinel);
        ll_mark_used(l, old_sentinel);
        ll_tree_cover(&l->tree, (uintptr_t)l->top, e);
        ll_poison_fresh(old_sentinel, size);
        if (!ll_grow_path_ok(l, old_sentinel))
            return;
        l->growing = true;
        /* Merges with a free predecessor (and keeps its record: release_min is SIZE_MAX unless the
         * heap gives memory back). */
        ll_free_releasing(h, (void *)((uintptr_t)old_sentinel + LL_HDR));
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

/* check() of the quick lists: every entry is a 16-aligned address inside a region, an in-use block
 * flagged LL_QUICK of its list's size whose back link names the entry before it; each list holds
 * exactly quick_n (<= LL_QUICK_CAP) entries; and the lists hold as many blocks as the region walk found
 * flagged (quick_walk). Returns the number of broken invariants (at most one per list, plus one for the
 * count, compared only if walk_complete: the region walk found nothing broken). */
static size_t ll_quick_check(const struct ll *l, size_t quick_walk, bool walk_complete)
{
    size_t bad = 0, listed = 0;

    for (size_t i = 0; i < LL_QUICK_CLASSES; i++) {
        const struct ll_quick *q = l->quick[i], *before = NULL;
        size_t n = 0;

        while (q != NULL && n <= LL_QUICK_CAP) {
            bool inside = false;
            for (const struct ll_region *r = l->regions; r != NULL && !inside; r = r->next)
                inside = (uintptr_t)q >= (uintptr_t)r + sizeof(*r) && (uintptr_t)q < r->end - LL_HDR;
            if (!inside || (uintptr_t)q % HEAP_MIN_ALIGN != 0 ||
                (q->hdr.size & (LL_INUSE | LL_QUICK)) != (LL_INUSE | LL_QUICK) ||
                ll_block_size(&q->hdr) != LL_MIN_BLOCK + i * HEAP_MIN_ALIGN || q->prev != before)
                break;
            n++;
            before = q;
            q = q->next;
        }
        listed += n;
        if (q != NULL || n != l->quick_n[i] || n > LL_QUICK_CAP) {
            ll_check_report(l, q != NULL ? q : l->quick[i]);
            bad++;
        }
    }
    if (bad == 0 && walk_complete && listed != quick_walk) {
        ll_check_report(l, l->regions); /* a flagged block missing from the lists */
        bad++;
    }
    return bad;
}

/* check(): true if block b's PREV_INUSE bit agrees with prev, the block before it (NULL: b is the
 * first of its region): set after a used block, clear after a free one; after a quick-listed block
 * either, but clear only in a used block whose prev_size is then prev's size (the tag ll_quick_push
 * leaves: a free block's prev_size is a subtree maximum, so it never carries one). */
static bool ll_prev_flag_ok(const struct ll_block *b, const struct ll_block *prev)
{
    bool flag = b->size & LL_PREV_INUSE;

    if (prev == NULL || (prev->size & (LL_INUSE | LL_QUICK)) == LL_INUSE)
        return flag;
    if (!(prev->size & LL_INUSE))
        return !flag;
    return flag || ((b->size & LL_INUSE) && b->prev_size == ll_block_size(prev));
}

static size_t ll_check(const struct heap *h)
{
    const struct ll *l = to_const_ll(h);
    size_t bad = 0, free_walk = 0, free_tree = 0, nregions = 0, quick_walk = 0;

    for (const struct ll_region *r = l->regions; r != NULL && nregions < ((size_t)1 << 40);
         r = r->next, nregions++) {
        uintptr_t sentinel = r->end - LL_HDR;
        const struct ll_block *b = ll_block_at((uintptr_t)r + sizeof(*r)), *prev = NULL;
        bool prev_inuse = true;

        if (!ll_region_plausible(l, r)) {
            ll_check_report(l, r); /* a region header (or the link to it) was changed: stop */
            bad++;
            break;
        }
        while ((uintptr_t)b < sentinel) {
            size_t size;
            bool inuse;

            if (!ll_check_header(l, b)) { /* its size cannot be trusted: skip the rest of the region */
                bad++;
                break;
            }
            size = ll_block_size(b);
            inuse = b->size & LL_INUSE;
            if (size < LL_MIN_BLOCK || size % HEAP_MIN_ALIGN != 0 || size > sentinel - (uintptr_t)b) {
                ll_check_report(l, b);
                bad++;
                break;
            }
            if (!ll_prev_flag_ok(b, prev) ||
                (inuse ? (b->size & LL_RELEASED) != 0 : !ll_rel_ok(b)) || /* release record */
                (!inuse && !prev_inuse) ||                                /* two adjacent free blocks */
                (!inuse && (b->size & LL_QUICK)) ||                       /* quick but free */
                (!inuse && ll_next_block(b)->prev_size != size)) {        /* boundary tag */
                ll_check_report(l, b);
                bad++;
            }
            bad += ll_check_block_hard(l, b, inuse);
            free_walk += !inuse;
            quick_walk += inuse && (b->size & LL_QUICK);
            prev_inuse = inuse;
            prev = b;
            b = ll_next_block(b);
        }
        if ((uintptr_t)b == sentinel &&
            ((b->size & ~LL_PREV_INUSE) != LL_INUSE || !ll_prev_flag_ok(b, prev) || !ll_check_header(l, b))) {
            ll_check_report(l, b);
            bad++;
        } else if ((uintptr_t)b > sentinel) {
            ll_check_report(l, b);
            bad++;
        }
    }
    bad += ll_tree_check(&l->tree, &free_tree, free_walk + 1);
    if (bad == 0 && free_tree != free_walk) {
        ll_check_report(l, l->regions); /* a free block missing from the tree, or one too many */
        bad++;
    }
    return bad + ll_quick_check(l, quick_walk, bad == 0);
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
                .addr = b,
                .size = size,
                .state = (b->size & (LL_INUSE | LL_QUICK)) == LL_INUSE ? HEAP_WALK_USED : HEAP_WALK_FREE};
            if (size < LL_MIN_BLOCK || size > sentinel - (uintptr_t)b)
                return n; /* damaged: check() says how */
            n++;
            if (!fn(ctx, &e))
                return n;
        }
    }
    return n;
}

static void ll_release_enable(struct heap *h);

/* The vtable, and its releasing twin (the same but for alloc and free, which test for released pages
 * only there), which heap_ll_release_enable() installs: a heap without env.release never pays for
 * giving memory back. */
#define LL_OPS(alloc_fn, free_fn)                                                                   \
    {                                                                                               \
        .name = "linked_list",                                                                      \
        .grow_overhead = sizeof(struct ll_region) + 2 * LL_HDR + LL_MIN_BLOCK + 2 * HEAP_MIN_ALIGN, \
        .init = ll_init, .alloc = alloc_fn, .free = free_fn, .resize = ll_resize,                   \
        .usable_size = ll_usable_size, .add_memory = ll_add_memory, .check = ll_check,              \
        .validate = LL_VALIDATE, .walk = ll_walk, .release_enable = ll_release_enable,              \
    }

const struct heap_ops heap_linked_list_ops = LL_OPS(ll_alloc, ll_free);
static const struct heap_ops ll_releasing_ops = LL_OPS(ll_alloc_releasing, ll_free_releasing);

void heap_ll_release_enable(struct heap *ll, struct heap *owner)
{
    struct ll *l = to_ll(ll);

    ll_quick_flush(l); /* the releasing twin keeps no quick lists */
    l->envh = owner;
    l->release_min = LL_REC_END + HEAP_PAGE_SIZE; /* no flagged block is smaller */
    ll->ops = &ll_releasing_ops;
}

static void ll_release_enable(struct heap *h)
{
    heap_ll_release_enable(h, h);
}
