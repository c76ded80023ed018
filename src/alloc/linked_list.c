/*
 * linked_list.c - the free-list backend: boundary tags, address-ordered first fit over a free tree.
 *
 * How it works
 * ------------
 * The heap is a sequence of blocks that tile each region. Every block starts with a 16-byte header;
 * the user's bytes follow it, so free() needs no size. The header of the block after a free block
 * records the free block's size (its "footer"); a free block holds two tree links and, in its own
 * prev_size word (unused while it is free: its predecessor is always in use), a subtree maximum:
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
 * The free blocks form one binary search tree keyed by address: a treap whose priority is a hash of
 * the block's address (nothing stored; expected depth O(log n), about 2 ln n), where every node also
 * carries the largest block size in its subtree. alloc() is true address-ordered first fit in one
 * descent: go left while the left subtree's maximum fits, else take this block if it fits, else go
 * right. Address-ordered first fit packs live blocks towards the start of the heap and keeps the free
 * space at its end in one piece, which is what keeps the footprint low (workload c: 1.145, against
 * 1.168 for the size bins this replaced and 1.2-1.36 for TLSF and glibc). The remainder of a block is
 * split off and returned to the tree when it can hold a free block (>= 32 bytes); otherwise it stays
 * with the allocation and shows up in usable_size. Alignment above 16 carves the front padding off as
 * its own free block (blog_os issue #796 leaked it); such requests test the exact fit (padding
 * included) on the first LL_ALIGN_TRIES blocks large enough in address order and take the smallest
 * that fits (see find_aligned), else the first block of size + align + 32.
 *
 * Why not one address-ordered list: the blog's allocator keeps a single list in address order, which
 * makes every alloc and free a list walk (about 21x glibc on the benchmark's workload c). Boundary tags
 * give what the walk on free was for -- the neighbours to coalesce with -- in O(1); the tree gives the
 * walk on alloc in O(log n). A block that merges into its free left neighbour keeps that neighbour's
 * place (same address): only the maxima on its path are raised.
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
 *     LL_CHECK_DEPTH as broken (for a random treap of a million nodes that has probability ~0).
 *
 * Complexity: alloc, free, resize and add_memory are O(log f) expected, f = number of free blocks
 * (one descent plus O(1) expected rotations; an aligned alloc at most LL_ALIGN_TRIES + 2 descents);
 * usable_size is O(1), check O(blocks). Insert and remove recurse along one path, so the stack depth
 * is the tree depth.
 *
 * Hardened mode (docs/hardening.md): the header grows to 32 bytes with a cookie (key(block) ^ USED
 * or FREE) and the free site, the minimum block to 48 bytes, and the tree links are stored mangled
 * (heap_hard_mangle, keyed by the slot address; the root too). Every link is validated before it is
 * followed (16-aligned, inside the heap, pointing at a block whose cookie says FREE): the first-fit
 * descent checks each link it takes, and before the tree is changed path_ok() checks both children
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
 */
#include "heap_backend.h"

#define LL_INUSE ((size_t)1)
#define LL_PREV_INUSE ((size_t)2)
#define LL_FLAGS (LL_INUSE | LL_PREV_INUSE)

#define LL_ALIGN_TRIES 16    /* blocks tested for an exact aligned fit before the padded fallback */
#define LL_CHECK_DEPTH 256   /* check(): a deeper tree is counted as broken (see the essay) */

struct ll_block {
    /* Used block: the size of the previous block, valid only when it is free (boundary tag).
     * Free block: the largest block size in its subtree of the free tree. A free block's predecessor
     * is always in use (coalescing is complete), so its prev_size would never be read. */
    size_t prev_size;
    size_t size;      /* this block's size including the header, | flags */
#if KHEAP_HARDENING
    uint64_t cookie;  /* key(block) ^ LL_USED or LL_FREE */
    const void *site; /* free site while free (front-end frees only), else NULL */
#endif
};

/* A free block: a node of the free tree, keyed by its address. */
struct ll_free {
    struct ll_block hdr;   /* hdr.prev_size is the subtree maximum */
    struct ll_free *left;  /* lower addresses */
    struct ll_free *right; /* higher addresses */
};

struct ll_region {
    struct ll_region *next; /* all regions, newest first */
    uintptr_t end;          /* one past the sentinel */
};

#define LL_HDR sizeof(struct ll_block)
#define LL_MIN_BLOCK sizeof(struct ll_free)

_Static_assert(sizeof(struct ll_block) == 16 + 16 * KHEAP_HARDENING, "header keeps pointers 16-aligned");
_Static_assert(sizeof(struct ll_free) == 32 + 16 * KHEAP_HARDENING, "minimum block is 32 (48) bytes");
_Static_assert(offsetof(struct ll_block, prev_size) == 0, "the subtree maximum reuses prev_size");
#if KHEAP_HARDENING
#define LL_USED ((uint64_t)0x55534544) /* "USED" */
#define LL_FREE ((uint64_t)0x46524545) /* "FREE" */
_Static_assert(sizeof(struct ll_free) - sizeof(struct ll_block) == HEAP_HARD_LINK, "links fit the link area");
#endif
_Static_assert(sizeof(struct ll_region) == 16, "region header must keep blocks 16-aligned");
_Static_assert(LL_FLAGS < HEAP_MIN_ALIGN, "flags live in the low bits of 16-aligned sizes");

struct ll {
    struct heap common;           /* first member */
    struct ll_region *regions;    /* newest first */
    struct ll_region *top;        /* the region grown by adjacent add_memory() */
    uintptr_t top_end;            /* raw end of top as given: where adjacent memory starts */
    struct ll_free *root;         /* the free tree (a link: mangled in hardened mode) */
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

/* Tree links: plain pointers, or in hardened mode mangled with the slot's address. */
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

/*
 * The free tree: a treap keyed by block address whose priority is a hash of the address (so no
 * priority is stored), augmented with the largest block size in each subtree (hdr.prev_size).
 * Insert and remove are recursive, O(depth) = O(log n) expected; they follow only links that
 * hardened mode validated beforehand (path_ok) or that they wrote themselves.
 */
static uint64_t prio(const struct ll_free *f)
{
    uint64_t x = (uint64_t)(uintptr_t)f;

    x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15ull; /* murmur3-style finaliser: every address bit */
    x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9ull; /* reaches the high bits that decide a comparison */
    return x ^ (x >> 32);
}

static size_t tmax(const struct ll_free *f)
{
    return f == NULL ? 0 : f->hdr.prev_size;
}

static struct ll_free *left_of(const struct ll *l, const struct ll_free *f)
{
    return get_link(l, &f->left);
}

static struct ll_free *right_of(const struct ll *l, const struct ll_free *f)
{
    return get_link(l, &f->right);
}

/* Recomputes f's subtree maximum from its size and its children's maxima. */
static void fix(const struct ll *l, struct ll_free *f)
{
    size_t m = bsize(&f->hdr), a = tmax(left_of(l, f)), b = tmax(right_of(l, f));

    if (a > m)
        m = a;
    if (b > m)
        m = b;
    f->hdr.prev_size = m;
}

/* Rotations: the child c of t becomes the root of t's subtree; returns c. */
static struct ll_free *rotate_right(const struct ll *l, struct ll_free *t, struct ll_free *c)
{
    set_link(l, &t->left, right_of(l, c));
    set_link(l, &c->right, t);
    fix(l, t);
    fix(l, c);
    return c;
}

static struct ll_free *rotate_left(const struct ll *l, struct ll_free *t, struct ll_free *c)
{
    set_link(l, &t->right, left_of(l, c));
    set_link(l, &c->left, t);
    fix(l, t);
    fix(l, c);
    return c;
}

/* Inserts f (priority pf) into subtree t; returns the subtree's new root. */
static struct ll_free *t_insert(const struct ll *l, struct ll_free *t, struct ll_free *f, uint64_t pf)
{
    struct ll_free *c;

    if (t == NULL) {
        set_link(l, &f->left, NULL);
        set_link(l, &f->right, NULL);
        f->hdr.prev_size = bsize(&f->hdr);
        return f;
    }
    if (f < t) {
        c = t_insert(l, left_of(l, t), f, pf);
        set_link(l, &t->left, c);
        if (c == f && pf > prio(t)) /* f rises above t */
            return rotate_right(l, t, c);
    } else {
        c = t_insert(l, right_of(l, t), f, pf);
        set_link(l, &t->right, c);
        if (c == f && pf > prio(t))
            return rotate_left(l, t, c);
    }
    if (t->hdr.prev_size < bsize(&f->hdr))
        t->hdr.prev_size = bsize(&f->hdr);
    return t;
}

/* A child of t changed its subtree maximum from cold to cnew: repairs t's maximum. The other child
 * is read only when t's maximum came from this child and went down. */
static void child_max_changed(const struct ll *l, struct ll_free *t, size_t cold, size_t cnew)
{
    if (cnew >= cold) {
        if (cnew > t->hdr.prev_size)
            t->hdr.prev_size = cnew;
    } else if (cold == t->hdr.prev_size) {
        fix(l, t);
    }
}

/* Joins subtrees a < b (every address in a below every address in b); returns the root. Maxima
 * only grow along the two spines it walks. */
static struct ll_free *t_merge(const struct ll *l, struct ll_free *a, struct ll_free *b)
{
    size_t m;

    if (a == NULL)
        return b;
    if (b == NULL)
        return a;
    if (prio(a) > prio(b)) {
        m = tmax(b);
        set_link(l, &a->right, t_merge(l, right_of(l, a), b));
        if (m > a->hdr.prev_size)
            a->hdr.prev_size = m;
        return a;
    }
    m = tmax(a);
    set_link(l, &b->left, t_merge(l, a, left_of(l, b)));
    if (m > b->hdr.prev_size)
        b->hdr.prev_size = m;
    return b;
}

/* Removes f from subtree t; returns the subtree's new root. */
static struct ll_free *t_remove(const struct ll *l, struct ll_free *t, struct ll_free *f)
{
    struct ll_free *c;
    size_t cold;

    if (t == NULL) /* not in the tree: only if hardened-mode validation was bypassed */
        return NULL;
    if (t == f)
        return t_merge(l, left_of(l, f), right_of(l, f));
    if (f < t) {
        c = left_of(l, t);
        cold = tmax(c);
        c = t_remove(l, c, f);
        set_link(l, &t->left, c);
    } else {
        c = right_of(l, t);
        cold = tmax(c);
        c = t_remove(l, c, f);
        set_link(l, &t->right, c);
    }
    child_max_changed(l, t, cold, tmax(c));
    return t;
}

/* n (priority pn) was put in place of a node whose children L and R it took over: rotates it down
 * below any child of higher priority; returns the subtree's new root. */
static struct ll_free *t_sink(const struct ll *l, struct ll_free *n, uint64_t pn, struct ll_free *L, struct ll_free *R)
{
    uint64_t pl = L != NULL ? prio(L) : 0, pr = R != NULL ? prio(R) : 0;

    if (L != NULL && pl > pn && (R == NULL || pl >= pr)) {
        struct ll_free *lr = right_of(l, L);
        set_link(l, &n->left, lr);
        set_link(l, &L->right, t_sink(l, n, pn, lr, R));
        fix(l, L);
        return L;
    }
    if (R != NULL && pr > pn) {
        struct ll_free *rl = left_of(l, R);
        set_link(l, &n->right, rl);
        set_link(l, &R->left, t_sink(l, n, pn, L, rl));
        fix(l, R);
        return R;
    }
    n->hdr.prev_size = bsize(&n->hdr);
    child_max_changed(l, n, 0, tmax(L));
    child_max_changed(l, n, 0, tmax(R));
    return n;
}

/* Puts n (priority pn) in place of old in subtree t. Nothing in the tree lies between old and n, so
 * n takes old's position in address order; old's children were L and R. Returns the new root. */
static struct ll_free *t_replace(const struct ll *l, struct ll_free *t, struct ll_free *old, struct ll_free *n,
                                 uint64_t pn, struct ll_free *L, struct ll_free *R)
{
    struct ll_free *c;
    size_t cold;

    if (t == NULL) /* not in the tree: only if hardened-mode validation was bypassed */
        return NULL;
    if (t == old) {
        set_link(l, &n->left, L);
        set_link(l, &n->right, R);
        return t_sink(l, n, pn, L, R);
    }
    if (old < t) {
        c = left_of(l, t);
        cold = tmax(c);
        c = t_replace(l, c, old, n, pn, L, R);
        set_link(l, &t->left, c);
        if (c == n && pn > prio(t))
            return rotate_right(l, t, c);
    } else {
        c = right_of(l, t);
        cold = tmax(c);
        c = t_replace(l, c, old, n, pn, L, R);
        set_link(l, &t->right, c);
        if (c == n && pn > prio(t))
            return rotate_left(l, t, c);
    }
    child_max_changed(l, t, cold, tmax(c));
    return t;
}

static void tree_insert(struct ll *l, struct ll_free *f)
{
    set_link(l, &l->root, t_insert(l, get_link(l, &l->root), f, prio(f)));
}

static void tree_remove(struct ll *l, struct ll_free *f)
{
    set_link(l, &l->root, t_remove(l, get_link(l, &l->root), f));
}

/* Puts free block n in old's place: n's header is written, old's links are still intact (they do
 * not overlap n's header), and no other free block lies between them. */
static void tree_replace(struct ll *l, struct ll_free *old, struct ll_free *n)
{
    struct ll_free *L = left_of(l, old), *R = right_of(l, old);

    set_link(l, &l->root, t_replace(l, get_link(l, &l->root), old, n, prio(n), L, R));
}

/* f (in the tree) grew in place: raises the maxima on the path from the root to f. */
static void tree_grew(struct ll *l, struct ll_free *f)
{
    size_t s = bsize(&f->hdr);

    for (struct ll_free *t = get_link(l, &l->root); t != NULL; t = f < t ? left_of(l, t) : right_of(l, t)) {
        if (t->hdr.prev_size < s)
            t->hdr.prev_size = s;
        if (t == f)
            break;
    }
}

/* Follows the link in slot (a field of f, or the root when f is NULL). In hardened mode a link that
 * fails validation is reported (at f) and returns NULL with *bad set. */
static struct ll_free *follow(const struct ll *l, const struct ll_free *f, struct ll_free *const *slot, bool *bad)
{
    struct ll_free *g = get_link(l, slot);
#if KHEAP_HARDENING
    if (heap_unlikely(!link_ok(l, g))) {
        if (f != NULL)
            freelist_corrupt(l, f);
        else
            freelist_corrupt(l, g);
        *bad = true;
        return NULL;
    }
#else
    (void)f;
    (void)bad;
#endif
    return g;
}

/* Returns the lowest-addressed free block of at least need bytes (still in the tree), or NULL:
 * address-ordered first fit in one descent, guided by the subtree maxima. */
static struct ll_free *find_fit(struct ll *l, size_t need)
{
    bool bad = false;
    struct ll_free *t = follow(l, NULL, &l->root, &bad), *c;

    if (t == NULL || tmax(t) < need)
        return NULL;
    for (;;) {
        c = follow(l, t, &t->left, &bad);
        if (heap_unlikely(bad))
            return NULL;
        if (c != NULL && tmax(c) >= need) {
            t = c;
            continue;
        }
        if (bsize(&t->hdr) >= need)
            return t;
        c = follow(l, t, &t->right, &bad);
        if (heap_unlikely(bad))
            return NULL;
        if (heap_unlikely(c == NULL || tmax(c) < need)) {
            /* The maxima promised a fit that is not there. */
#if KHEAP_HARDENING
            freelist_corrupt(l, t);
#endif
            return NULL;
        }
        t = c;
    }
}

/* Returns the lowest-addressed block of subtree t above address x with at least need bytes, or NULL
 * (in hardened mode also NULL with *bad set when a link fails validation). */
static struct ll_free *fit_after(struct ll *l, struct ll_free *t, uintptr_t x, size_t need, bool *bad)
{
    struct ll_free *r;

    if (t == NULL || tmax(t) < need)
        return NULL;
    if ((uintptr_t)t > x) {
        r = fit_after(l, follow(l, t, &t->left, bad), x, need, bad);
        if (r != NULL || *bad)
            return r;
        if (bsize(&t->hdr) >= need)
            return t;
    }
    return fit_after(l, follow(l, t, &t->right, bad), x, need, bad);
}

#if KHEAP_HARDENING
/* True if removing (present) or inserting (!present) key follows only valid links: both children of
 * every node on key's search path and on the two spines below key (which removal joins), each node
 * strictly inside the address interval its ancestors allow (so a cycle cannot loop). */
static bool path_ok(const struct ll *l, const struct ll_free *key, bool present)
{
    struct ll_free *t = get_link(l, &l->root), *a, *b;
    uintptr_t lo = 0, hi = UINTPTR_MAX;

    if (!link_ok(l, t))
        return false;
    for (;;) {
        if (t == NULL)
            return !present;
        if ((uintptr_t)t <= lo || (uintptr_t)t >= hi)
            return false;
        a = left_of(l, t);
        b = right_of(l, t);
        if (!link_ok(l, a) || !link_ok(l, b))
            return false;
        if (t == key)
            break;
        if (key < t) {
            hi = (uintptr_t)t;
            t = a;
        } else {
            lo = (uintptr_t)t;
            t = b;
        }
    }
    if (!present)
        return false; /* a used block in the tree */
    for (uintptr_t x = lo, y = (uintptr_t)t; a != NULL; x = (uintptr_t)a, a = right_of(l, a)) {
        if ((uintptr_t)a <= x || (uintptr_t)a >= y || !link_ok(l, left_of(l, a)) || !link_ok(l, right_of(l, a)))
            return false;
    }
    for (uintptr_t x = (uintptr_t)t, y = hi; b != NULL; y = (uintptr_t)b, b = left_of(l, b)) {
        if ((uintptr_t)b <= x || (uintptr_t)b >= y || !link_ok(l, left_of(l, b)) || !link_ok(l, right_of(l, b)))
            return false;
    }
    return true;
}

/* True if freeing (or resizing) used block b follows only valid links: the removal of a free
 * successor, the growth of a free predecessor, the insertion of b or of a tail cut off b. */
static bool free_ok(const struct ll *l, const struct ll_block *b)
{
    const struct ll_block *n = next_of(b);

    if (!(n->size & LL_INUSE) && !(link_ok(l, (const struct ll_free *)n) && path_ok(l, (const struct ll_free *)n, true)))
        return false;
    if (!(b->size & LL_PREV_INUSE)) {
        const struct ll_free *p = (const struct ll_free *)((uintptr_t)b - b->prev_size);
        if (b->prev_size < LL_MIN_BLOCK || !link_ok(l, p) || bsize(&p->hdr) != b->prev_size || !path_ok(l, p, true))
            return false;
    }
    return path_ok(l, (const struct ll_free *)b, false);
}
#endif

/* Makes [b, b + size) a free block after an in-use block, tells its successor, and puts it in the
 * tree: in old's place if old is not NULL (see tree_replace), else inserted. */
static void make_free(struct ll *l, struct ll_block *b, size_t size, struct ll_free *old)
{
    struct ll_block *n;

#if KHEAP_HARDENING
    set_cookie(l, b, LL_FREE);
#endif
    b->size = size | LL_PREV_INUSE;
    n = next_of(b);
    n->prev_size = size;
    n->size &= ~LL_PREV_INUSE;
    if (old != NULL)
        tree_replace(l, old, (struct ll_free *)b);
    else
        tree_insert(l, (struct ll_free *)b);
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
 * caller validated). clean (hardened): the body of [b, b + size) below this address is poison.
 * old: a free block just before b (in the tree, about to leave it) whose place b takes, or NULL. */
static void release_tail(struct ll *l, struct ll_block *b, size_t size, uintptr_t clean, struct ll_free *old)
{
    struct ll_block *n = at((uintptr_t)b + size);

#if KHEAP_HARDENING
    poison_above((uintptr_t)b + LL_HDR + HEAP_HARD_LINK, prefix_end(b, size), clean);
#else
    (void)clean;
#endif
    if (!(n->size & LL_INUSE)) { /* then old is NULL: b's predecessor was in use */
        old = (struct ll_free *)n;
        size += bsize(n);
    }
    make_free(l, b, size, old);
#if KHEAP_HARDENING
    if (old == (struct ll_free *)n)
        swallow(n);
#endif
}

/* Shrinks in-use block b to asize bytes if the rest can be a free block. clean and old: as
 * release_tail; old (if not NULL) leaves the tree either way. */
static void trim(struct ll *l, struct ll_block *b, size_t asize, uintptr_t clean, struct ll_free *old)
{
    size_t size = bsize(b);

    if (size - asize < LL_MIN_BLOCK) {
        if (old != NULL)
            tree_remove(l, old);
        return;
    }
    b->size = asize | (b->size & LL_FLAGS);
    release_tail(l, at((uintptr_t)b + asize), size - asize, clean, old);
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
    make_free(l, first, (uintptr_t)sentinel - (uintptr_t)first, NULL);
}

#define LL_REGION_MIN (sizeof(struct ll_region) + LL_MIN_BLOCK + LL_HDR)

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
#if KHEAP_HARDENING
    l->common.hard.owner = &l->common;
    l->common.hard.secret = secret;
#else
    (void)secret;
#endif
    set_link(l, &l->root, NULL);
    region_setup(l, s, e);
    l->top = l->regions;
    l->top_end = (uintptr_t)mem + size;
    return &l->common;
}

/* Returns how far past free block b's payload (b + LL_HDR) the user pointer of an align-aligned block
 * would start: the first aligned address whose padding is 0 or can be a free block of its own. An
 * offset (< align + LL_MIN_BLOCK), not an address: the caller compares it with the room in b, which is
 * exact anywhere in the address space (heap_backend.h). */
static size_t aligned_pad(const struct ll_block *b, size_t align)
{
    size_t pad = heap_pad_to((uintptr_t)b + LL_HDR, align);

    if (pad != 0 && pad < LL_MIN_BLOCK)
        pad += align;
    return pad;
}

/* True if the current call met corruption (hardened mode) and must fail. */
static bool aborted(const struct ll *l)
{
#if KHEAP_HARDENING
    return l->common.hard.owner->hard.abort;
#else
    (void)l;
    return false;
#endif
}

/* Returns a free block that can hold asize bytes at alignment align (> 16), or NULL. Tests the exact
 * placement on the first LL_ALIGN_TRIES blocks of at least asize bytes in address order and takes the
 * smallest that fits (the lowest among equals; a block that leaves no remainder ends the search),
 * else falls back to the first block large enough for any placement (asize + align + LL_MIN_BLOCK).
 * Smallest rather than first: fixed_size_block asks for page- and slab-aligned blocks only, and the
 * first fit cuts up the aligned windows a later slab needs (its footprint on workload c: 1.25 with
 * the first exact fit, 1.171 with the smallest of 16, 1.168 with the old size bins). */
static struct ll_free *find_aligned(struct ll *l, size_t asize, size_t align)
{
    bool bad = false;
    struct ll_free *f = find_fit(l, asize), *best = NULL;

    for (int tries = 0; f != NULL && tries < LL_ALIGN_TRIES; tries++) {
        size_t body = bsize(&f->hdr) - LL_HDR, pad = aligned_pad(&f->hdr, align);
        if (pad <= body && body - pad >= asize - LL_HDR) {
            if (best == NULL || bsize(&f->hdr) < bsize(&best->hdr))
                best = f;
            if (body - pad - (asize - LL_HDR) < LL_MIN_BLOCK)
                break; /* nothing would be split off after the block */
        }
        f = fit_after(l, follow(l, NULL, &l->root, &bad), (uintptr_t)f, asize, &bad);
    }
    if (bad || aborted(l))
        return NULL;
    if (best != NULL)
        return best;
    return find_fit(l, asize + align + LL_MIN_BLOCK);
}

static void *ll_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct ll *l = to_ll(h);
    size_t asize = block_size(size);
    struct ll_free *f = align == HEAP_MIN_ALIGN ? find_fit(l, asize) : find_aligned(l, asize, align);
    struct ll_free *old;
    struct ll_block *b;

    if (f == NULL)
        return NULL;
#if KHEAP_HARDENING
    if (!path_ok(l, f, true)) {
        freelist_corrupt(l, f);
        return NULL;
    }
    uintptr_t clean = prefix_end(&f->hdr, bsize(&f->hdr));
#else
    uintptr_t clean = 0;
#endif
    b = &f->hdr;
    old = f; /* the remainder, if any, takes f's place in the tree */
    if (align != HEAP_MIN_ALIGN) {
        size_t pad = aligned_pad(b, align);
        if (pad != 0) {
            size_t rest = bsize(b) - pad;
            /* The padding becomes a free block (f, smaller: re-inserted); its predecessor is in use. */
            tree_remove(l, f);
            b->size = pad | LL_PREV_INUSE;
            tree_insert(l, f);
            old = NULL;
            b = at((uintptr_t)b + pad);
            b->prev_size = pad;
            b->size = rest; /* PREV_INUSE clear: the padding is free */
        }
    }
    b->size |= LL_INUSE;
    next_of(b)->size |= LL_PREV_INUSE;
    trim(l, b, asize, clean, old);
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
    struct ll_free *old = NULL;

#if KHEAP_HARDENING
    b->site = h->hard.owner->hard.caller;
#endif
    if (!(n->size & LL_INUSE)) {
        old = (struct ll_free *)n; /* b merges with it; b takes its place or it leaves the tree */
        size += bsize(n);
    }
    if (!(b->size & LL_PREV_INUSE)) {
        /* The free predecessor grows over b: same address, so it keeps its place in the tree. */
        struct ll_block *p = at((uintptr_t)b - b->prev_size);
        if (old != NULL)
            tree_remove(l, old);
#if KHEAP_HARDENING
        heap_hard_poison(b, LL_HDR); /* b's header becomes body; its links area is poison already */
#endif
        size += bsize(p);
        p->size = size | LL_PREV_INUSE;
        n = next_of(p);
        n->prev_size = size;
        n->size &= ~LL_PREV_INUSE;
        tree_grew(l, (struct ll_free *)p);
    } else {
        make_free(l, b, size, old);
    }
#if KHEAP_HARDENING
    if (old != NULL)
        swallow(&old->hdr);
#endif
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
        trim(l, b, asize, 0, NULL);
        return true;
    }
    n = next_of(b);
    if ((n->size & LL_INUSE) || cur + bsize(n) < asize)
        return false;
    tree_remove(l, (struct ll_free *)n); /* links validated by validate() before any resize */
    b->size += bsize(n);
    next_of(b)->size |= LL_PREV_INUSE;
    trim(l, b, asize, 0, NULL);
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
            /* Freeing old follows tree links: refuse to touch a damaged tree. */
            struct ll_block *p = at((uintptr_t)old - old->prev_size);
            if (!free_ok(l, old)) {
                freelist_corrupt(l, (struct ll_free *)(old->size & LL_PREV_INUSE ? old : p));
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

/* True if address a lies inside a free block (header or body): one descent of the free tree to the
 * highest free block at or below a, following only validated links inside the interval their
 * ancestors allow. A damaged tree answers false. */
static bool in_free_block(const struct ll *l, uintptr_t a)
{
    const struct ll_free *t = get_link(l, &l->root), *below = NULL;
    uintptr_t lo = 0, hi = UINTPTR_MAX;

    while (t != NULL) {
        if (!link_ok(l, t) || (uintptr_t)t <= lo || (uintptr_t)t >= hi)
            return false;
        if ((uintptr_t)t <= a) {
            below = t;
            lo = (uintptr_t)t;
            t = right_of(l, t);
        } else {
            hi = (uintptr_t)t;
            t = left_of(l, t);
        }
    }
    return below != NULL && a - (uintptr_t)below < bsize(&below->hdr);
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
    if (b->cookie != cookie(l, b, LL_USED) || !(b->size & LL_INUSE)) {
        /* Not a block. A header inside a free block is a stale pointer into freed memory (a block
         * freed and merged into a neighbour); anything else is the inside of a used block. Decided
         * by the heap's structure, never by bytes a user may have stored. */
        return in_free_block(l, (uintptr_t)b) ? HEAP_ERR_DOUBLE_FREE : HEAP_ERR_INVALID_FREE;
    }
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

bool heap_ll_region(const struct heap *ll, uintptr_t a, uintptr_t *lo, uintptr_t *hi)
{
    const struct ll_region *r = region_of(container_of(ll, const struct ll, common), a);

    if (r == NULL)
        return false;
    *lo = (uintptr_t)r + sizeof(*r) + LL_HDR;
    *hi = r->end;
    return true;
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

/* Checks subtree t, whose addresses must lie strictly between lo and hi and whose priorities must
 * not exceed plimit (its parent's): order, heap order, maxima, and that every node is a free block
 * with a correct boundary tag. Counts nodes in *count and stops beyond limit (a cycle). */
static size_t check_tree(const struct ll *l, const struct ll_free *parent, const struct ll_free *t, uintptr_t lo,
                         uintptr_t hi, uint64_t plimit, unsigned depth, size_t *count, size_t limit)
{
    size_t bad = 0, m;
    const struct ll_block *n;

    if (t == NULL)
        return 0;
#if KHEAP_HARDENING
    if (!link_ok(l, t)) {
        /* Name the free block whose link was overwritten (t is garbage), or the root's target. */
        const struct ll_free *at = parent != NULL ? parent : t;
        heap_hard_report(&l->common, HEAP_ERR_CORRUPT_FREELIST, (const char *)at + LL_HDR, 0, 0, NULL, NULL);
        return 1;
    }
#else
    (void)parent;
#endif
    if (++*count > limit || depth > LL_CHECK_DEPTH || (uintptr_t)t <= lo || (uintptr_t)t >= hi ||
        (uintptr_t)t % HEAP_MIN_ALIGN != 0 || (t->hdr.size & LL_INUSE) || bsize(&t->hdr) < LL_MIN_BLOCK)
        return 1; /* a cycle, out of order, or not a free block: do not follow its links */
#if KHEAP_HARDENING
    if (bsize(&t->hdr) > l->hi - (uintptr_t)t)
        return 1;
#endif
    n = next_of(&t->hdr);
    bad += n->prev_size != bsize(&t->hdr) || (n->size & LL_PREV_INUSE);
    bad += prio(t) > plimit;
    bad += check_tree(l, t, left_of(l, t), lo, (uintptr_t)t, prio(t), depth + 1, count, limit);
    bad += check_tree(l, t, right_of(l, t), (uintptr_t)t, hi, prio(t), depth + 1, count, limit);
    if (bad == 0) {
        m = bsize(&t->hdr);
        if (tmax(left_of(l, t)) > m)
            m = tmax(left_of(l, t));
        if (tmax(right_of(l, t)) > m)
            m = tmax(right_of(l, t));
        bad += t->hdr.prev_size != m;
    }
    return bad;
}

static size_t ll_check(const struct heap *h)
{
    const struct ll *l = to_cll(h);
    size_t bad = 0, free_walk = 0, free_tree = 0, nregions = 0;

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
    bad += check_tree(l, NULL, get_link(l, &l->root), 0, UINTPTR_MAX, UINT64_MAX, 0, &free_tree, free_walk + 1);
    bad += free_tree != free_walk;
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
