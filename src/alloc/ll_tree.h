/*
 * ll_tree.h - the free tree of the linked_list backend: every free block, in one binary search tree
 * keyed by address, for address-ordered first fit in one descent.
 *
 * A treap: a node's priority is a hash of its address (nothing stored; expected depth O(log n),
 * about 2 ln n), and every node also carries the largest block size in its subtree, in its header's
 * prev_size word (see ll_block.h). Insert and remove recurse along one path, so they are O(depth)
 * time and stack; replace, the operation of every carve and of most frees, walks down and back up
 * iteratively and stops as soon as nothing changes (ll_tree_replace). All rotate O(1) times in
 * expectation. Why a tree and why first fit: the
 * essay at the top of linked_list.c.
 *
 * The tree only links blocks the caller owns; it never allocates. The caller keeps every node a
 * free block (INUSE clear, a FREE cookie in hardened mode) with its size set before it is inserted,
 * and changes a node's size only through ll_tree_grow() (or by removing and reinserting it).
 *
 * Hardened mode: links (the root too) are stored mangled with a key of the slot's address and
 * tagged with a keyed 20-bit hash of the link and the slot (ll_tree_get_link/ll_tree_set_link): a
 * changed link decodes to LL_LINK_BAD and is never followed. The descents (ll_tree_find_fit,
 * ll_tree_visit_fits, ll_tree_in_free_block, ll_tree_check) validate each link before following it
 * (ll_tree_link_ok); insert, remove, replace and grow follow links without validation, so a caller first runs
 * ll_tree_path_ok() on the links a change will follow (a sibling they only read a maximum of may be
 * damaged: it decodes to a readable dummy node, LL_LINK_BAD).
 *
 * The operations used on every alloc and free, and the walk of an aligned allocation, are static
 * inline here, so linked_list.c compiles them as it did when they were its own static functions
 * (recursion included); the rest live in ll_tree.c.
 */
#ifndef KHEAP_ALLOC_LL_TREE_H
#define KHEAP_ALLOC_LL_TREE_H

#include "ll_block.h"

struct ll_tree {
    struct ll_free *root; /* a link: mangled in hardened mode */
#if KHEAP_HARDENING
    /* A copy of the heap's secret, which keys the links and the cookies. Read for every link, so
     * kept next to the root rather than behind the heap pointer. */
    uint64_t secret;
    const struct heap *heap; /* the heap whose corruption reports this tree makes */
    uintptr_t lo, hi;        /* envelope of every node's block: a link outside is corrupt */
#endif
};

#if KHEAP_HARDENING
/*
 * A link is authenticated by itself, before anything is read through it: the stored word is
 * (tagged link) ^ key(slot), where the tagged link keeps the node's address bits 4..47 in place and
 * puts a 20-bit tag -- a keyed hash of the address and the slot -- in the bits an aligned canonical
 * x86_64 address does not need (0..3: 16-alignment; 48..63: copies of bit 47). A changed word, or a
 * word copied to another slot, decodes to LL_LINK_BAD (with probability 1 - 2^-20), which is not
 * aligned, so ll_tree_link_ok() rejects it without reading the target. Without the tag a flipped
 * bit moved the link to another aligned address inside the heap, and the validation read whatever
 * lay there (a page given back, in the kernel).
 */
#define LL_LINK_ADDR ((uintptr_t)0x0000fffffffffff0ull) /* address bits a link keeps */

/*
 * What a damaged link decodes to: a node that is never followed but may be read. It lies at 8 mod 16,
 * so ll_tree_link_plausible() and ll_tree_link_ok() reject it like any misaligned link (every descent
 * reports it), while a tree operation that reads a node's other child only for its subtree maximum
 * (ll_tree_fix_max, on the levels that rotate or whose maximum changes) reads this node's instead of
 * faulting. So ll_tree_path_ok() checks only the links a change follows or copies into another slot,
 * not every sibling on the way. Its maximum is SIZE_MAX: a subtree holding a damaged link promises
 * room, and the next first-fit descent that looks there follows the link and reports it (a lower
 * maximum would hide the damage until heap_check()). Nothing writes to it (read-only data).
 */
struct ll_tree_bad_node {
    uint64_t pad;        /* puts node at 8 mod 16 */
    struct ll_free node; /* hdr.prev_size = SIZE_MAX; every other field 0 */
} __attribute__((aligned(HEAP_MIN_ALIGN)));
_Static_assert(offsetof(struct ll_tree_bad_node, node) % HEAP_MIN_ALIGN == 8, "the bad node is misaligned");
extern const struct ll_tree_bad_node ll_tree_bad_node;
#define LL_LINK_BAD ((struct ll_free *)&ll_tree_bad_node.node) /* what a damaged link decodes to */

static inline uint64_t ll_tree_link_tag(uint64_t k, uintptr_t v)
{
    return ((k ^ v) * 0x9e3779b97f4a7c15ull) >> 44; /* 20 bits */
}

/* The link hook: returns the link stored in slot (a node's left or right, or the root), or
 * LL_LINK_BAD (readable, never plausible) if the stored word was changed. */
static inline struct ll_free *ll_tree_get_link(const struct ll_tree *tree, struct ll_free *const *slot)
{
    uint64_t k = heap_hard_key(tree->secret, (uintptr_t)slot);
    uint64_t w = (uint64_t)(uintptr_t)*slot ^ k;
    uintptr_t v = (uintptr_t)((int64_t)(w << 16) >> 16) & ~(uintptr_t)15; /* bit 47 sign-extended */

    if (heap_unlikely(((w & 15) | (w >> 48 << 4)) != ll_tree_link_tag(k, v)))
        return LL_LINK_BAD;
    return (struct ll_free *)v;
}

/* The link hook: stores link v (NULL or a node: 16-aligned, canonical) in slot, tagged and mangled
 * with a key of the slot's address. */
static inline void ll_tree_set_link(const struct ll_tree *tree, struct ll_free **slot, struct ll_free *v)
{
    uint64_t k = heap_hard_key(tree->secret, (uintptr_t)slot);
    uint64_t t = ll_tree_link_tag(k, (uintptr_t)v);

    *slot =
        (struct ll_free *)(uintptr_t)((((uint64_t)(uintptr_t)v & LL_LINK_ADDR) | (t & 15) | (t >> 4 << 48)) ^
                                      k);
}

/* True if link f is NULL or a plausible node: aligned, inside the envelope, a FREE cookie that
 * seals its size, and its block ends inside the envelope. */
static inline bool ll_tree_link_ok(const struct ll_tree *tree, const struct ll_free *f)
{
    uintptr_t a = (uintptr_t)f;

    if (f == NULL)
        return true;
    return a % HEAP_MIN_ALIGN == 0 && a >= tree->lo && a < tree->hi && tree->hi - a >= LL_MIN_BLOCK &&
           f->hdr.cookie == ll_cookie(tree->secret, &f->hdr, LL_FREE) && !(f->hdr.size & LL_INUSE) &&
           ll_block_size(&f->hdr) <= tree->hi - a;
}

/* True if link f is NULL or may be followed: its tag matched (not LL_LINK_BAD), it is aligned and a
 * minimum block fits inside the envelope there. The tag authenticates the link itself, so the tree's
 * shape is safe to walk and change with this check alone; the target's header (its sealed size) is
 * checked by ll_tree_link_ok() only where its size is used to carve or merge memory. */
static inline bool ll_tree_link_plausible(const struct ll_tree *tree, const struct ll_free *f)
{
    uintptr_t a = (uintptr_t)f;

    return f == NULL ||
           (a % HEAP_MIN_ALIGN == 0 && a >= tree->lo && a < tree->hi && tree->hi - a >= LL_MIN_BLOCK);
}

/* True if node t's block ends inside the envelope (t itself passed ll_tree_link_ok), so the block
 * after it may be read. */
static inline bool ll_tree_block_inside(const struct ll_tree *tree, const struct ll_free *t)
{
    return ll_block_size(&t->hdr) <= tree->hi - (uintptr_t)t;
}

/* Reports a corrupted free list at node f (named by its user pointer). */
static inline void ll_tree_report_corrupt(const struct ll_tree *tree, const struct ll_free *f)
{
    heap_hard_report(tree->heap, HEAP_ERR_CORRUPT_FREELIST, (const char *)f + LL_HDR, 0, 0, NULL, NULL);
}

/* Reports link g, read from slot of node f (NULL: the root), that failed ll_tree_link_ok(). A link
 * whose tag does not match was written over: the slot lies in the body of free block f, so that is
 * a write into freed memory (a use-after-free write at the slot's offset). A link that is intact
 * but leads to a node whose header fails its seal names that header (corrupted metadata). */
static inline void ll_tree_report_link(const struct ll_tree *tree, const struct ll_free *f,
                                       struct ll_free *const *slot, const struct ll_free *g)
{
    const char *p = f != NULL ? (const char *)f + LL_HDR : NULL;

    if (g == LL_LINK_BAD && f != NULL)
        heap_hard_report(tree->heap, HEAP_ERR_USE_AFTER_FREE, p, 0, (size_t)((const char *)slot - p), NULL,
                         f->hdr.site);
    else if (g != LL_LINK_BAD && (uintptr_t)g % HEAP_MIN_ALIGN == 0 && (uintptr_t)g >= tree->lo &&
             (uintptr_t)g < tree->hi && tree->hi - (uintptr_t)g >= LL_MIN_BLOCK)
        heap_hard_report(tree->heap, HEAP_ERR_CORRUPT_METADATA, (const char *)g + LL_HDR, 0, 0, NULL, NULL);
    else
        heap_hard_report(tree->heap, HEAP_ERR_CORRUPT_FREELIST, f != NULL ? p : (const char *)g, 0, 0, NULL,
                         NULL);
}

/* Makes the current public call fail (after a report). */
static inline void ll_tree_abort(const struct ll_tree *tree)
{
    tree->heap->hard.owner->hard.abort = true;
}

/* Reports a corrupted free list at node f and makes the current public call fail. */
static inline void ll_tree_report_and_abort(const struct ll_tree *tree, const struct ll_free *f)
{
    ll_tree_report_corrupt(tree, f);
    ll_tree_abort(tree);
}

/* Widens the envelope to cover [start, end). */
static inline void ll_tree_cover(struct ll_tree *tree, uintptr_t start, uintptr_t end)
{
    if (start < tree->lo || tree->lo == 0)
        tree->lo = start;
    if (end > tree->hi)
        tree->hi = end;
}

static inline void ll_tree_hard_init(struct ll_tree *tree, const struct heap *heap, uint64_t secret)
{
    tree->secret = secret;
    tree->heap = heap;
    tree->lo = 0;
    tree->hi = 0;
}
#else
static inline struct ll_free *ll_tree_get_link(const struct ll_tree *tree, struct ll_free *const *slot)
{
    (void)tree;
    return *slot;
}

static inline void ll_tree_set_link(const struct ll_tree *tree, struct ll_free **slot, struct ll_free *v)
{
    (void)tree;
    *slot = v;
}

static inline bool ll_tree_link_ok(const struct ll_tree *tree, const struct ll_free *f)
{
    (void)tree;
    (void)f;
    return true;
}

static inline bool ll_tree_link_plausible(const struct ll_tree *tree, const struct ll_free *f)
{
    (void)tree;
    (void)f;
    return true;
}

static inline bool ll_tree_block_inside(const struct ll_tree *tree, const struct ll_free *t)
{
    (void)tree;
    (void)t;
    return true;
}

static inline void ll_tree_report_corrupt(const struct ll_tree *tree, const struct ll_free *f)
{
    (void)tree;
    (void)f;
}

static inline void ll_tree_report_link(const struct ll_tree *tree, const struct ll_free *f,
                                       struct ll_free *const *slot, const struct ll_free *g)
{
    (void)tree;
    (void)f;
    (void)slot;
    (void)g;
}

static inline void ll_tree_abort(const struct ll_tree *tree)
{
    (void)tree;
}

static inline void ll_tree_report_and_abort(const struct ll_tree *tree, const struct ll_free *f)
{
    (void)tree;
    (void)f;
}

static inline void ll_tree_cover(struct ll_tree *tree, uintptr_t start, uintptr_t end)
{
    (void)tree;
    (void)start;
    (void)end;
}

static inline void ll_tree_hard_init(struct ll_tree *tree, const struct heap *heap, uint64_t secret)
{
    (void)tree;
    (void)heap;
    (void)secret;
}
#endif

/* Makes tree empty. heap and secret (hardened mode; unused in plain mode): the heap that reports
 * corruption found in the tree, and the secret that keys its links and cookies. The envelope starts
 * empty: ll_tree_cover() every range nodes will lie in. */
static inline void ll_tree_init(struct ll_tree *tree, const struct heap *heap, uint64_t secret)
{
    ll_tree_hard_init(tree, heap, secret);
    ll_tree_set_link(tree, &tree->root, NULL);
}

/* A node's priority: a hash of its address (a parent's priority is >= its children's). */
static inline uint64_t ll_tree_priority(const struct ll_free *f)
{
    uint64_t x = (uint64_t)(uintptr_t)f;

    x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15ull; /* murmur3-style finaliser: every address bit */
    x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9ull; /* reaches the high bits that decide a comparison */
    return x ^ (x >> 32);
}

/* The largest block size in subtree t (0 for an empty one). */
static inline size_t ll_tree_subtree_max(const struct ll_free *t)
{
    return t == NULL ? 0 : t->hdr.prev_size;
}

static inline struct ll_free *ll_tree_left(const struct ll_tree *tree, const struct ll_free *f)
{
    return ll_tree_get_link(tree, &f->left);
}

static inline struct ll_free *ll_tree_right(const struct ll_tree *tree, const struct ll_free *f)
{
    return ll_tree_get_link(tree, &f->right);
}

/* Recomputes f's subtree maximum from its size and its children's maxima. */
static inline void ll_tree_fix_max(const struct ll_tree *tree, struct ll_free *f)
{
    size_t m = ll_block_size(&f->hdr);
    size_t lmax = ll_tree_subtree_max(ll_tree_left(tree, f)),
           rmax = ll_tree_subtree_max(ll_tree_right(tree, f));

    if (lmax > m)
        m = lmax;
    if (rmax > m)
        m = rmax;
    f->hdr.prev_size = m;
}

/* Rotations: the child c of t becomes the root of t's subtree; returns c. */
static inline struct ll_free *ll_tree_rotate_right(const struct ll_tree *tree, struct ll_free *t,
                                                   struct ll_free *c)
{
    ll_tree_set_link(tree, &t->left, ll_tree_right(tree, c));
    ll_tree_set_link(tree, &c->right, t);
    ll_tree_fix_max(tree, t);
    ll_tree_fix_max(tree, c);
    return c;
}

static inline struct ll_free *ll_tree_rotate_left(const struct ll_tree *tree, struct ll_free *t,
                                                  struct ll_free *c)
{
    ll_tree_set_link(tree, &t->right, ll_tree_left(tree, c));
    ll_tree_set_link(tree, &c->left, t);
    ll_tree_fix_max(tree, t);
    ll_tree_fix_max(tree, c);
    return c;
}

/* Inserts f (priority pf) into subtree t; returns the subtree's new root. */
static inline struct ll_free *ll_tree_insert_below(const struct ll_tree *tree, struct ll_free *t,
                                                   struct ll_free *f, uint64_t pf)
{
    struct ll_free *c;

    if (t == NULL) {
        ll_tree_set_link(tree, &f->left, NULL);
        ll_tree_set_link(tree, &f->right, NULL);
        f->hdr.prev_size = ll_block_size(&f->hdr);
        return f;
    }
    if (f < t) {
        c = ll_tree_insert_below(tree, ll_tree_left(tree, t), f, pf);
        ll_tree_set_link(tree, &t->left, c);
        if (c == f && pf > ll_tree_priority(t)) /* f rises above t */
            return ll_tree_rotate_right(tree, t, c);
    } else {
        c = ll_tree_insert_below(tree, ll_tree_right(tree, t), f, pf);
        ll_tree_set_link(tree, &t->right, c);
        if (c == f && pf > ll_tree_priority(t))
            return ll_tree_rotate_left(tree, t, c);
    }
    if (t->hdr.prev_size < ll_block_size(&f->hdr))
        t->hdr.prev_size = ll_block_size(&f->hdr);
    return t;
}

/* A child of t changed its subtree maximum from was to now: repairs t's maximum. The other child
 * is read only when t's maximum came from this child and went down. */
static inline void ll_tree_child_max_changed(const struct ll_tree *tree, struct ll_free *t, size_t was,
                                             size_t now)
{
    if (now >= was) {
        if (now > t->hdr.prev_size)
            t->hdr.prev_size = now;
    } else if (was == t->hdr.prev_size) {
        ll_tree_fix_max(tree, t);
    }
}

/* Joins subtrees a < b (every address in a below every address in b); returns the root. Maxima
 * only grow along the two spines it walks. */
static inline struct ll_free *ll_tree_join(const struct ll_tree *tree, struct ll_free *a, struct ll_free *b)
{
    size_t m;

    if (a == NULL)
        return b;
    if (b == NULL)
        return a;
    if (ll_tree_priority(a) > ll_tree_priority(b)) {
        m = ll_tree_subtree_max(b);
        ll_tree_set_link(tree, &a->right, ll_tree_join(tree, ll_tree_right(tree, a), b));
        if (m > a->hdr.prev_size)
            a->hdr.prev_size = m;
        return a;
    }
    m = ll_tree_subtree_max(a);
    ll_tree_set_link(tree, &b->left, ll_tree_join(tree, a, ll_tree_left(tree, b)));
    if (m > b->hdr.prev_size)
        b->hdr.prev_size = m;
    return b;
}

/* Removes f from subtree t; returns the subtree's new root. */
static inline struct ll_free *ll_tree_remove_below(const struct ll_tree *tree, struct ll_free *t,
                                                   struct ll_free *f)
{
    struct ll_free *c;
    size_t was;

    if (t == NULL) /* not in the tree: only if hardened-mode validation was bypassed */
        return NULL;
    if (t == f)
        return ll_tree_join(tree, ll_tree_left(tree, f), ll_tree_right(tree, f));
    if (f < t) {
        c = ll_tree_left(tree, t);
        was = ll_tree_subtree_max(c);
        c = ll_tree_remove_below(tree, c, f);
        ll_tree_set_link(tree, &t->left, c);
    } else {
        c = ll_tree_right(tree, t);
        was = ll_tree_subtree_max(c);
        c = ll_tree_remove_below(tree, c, f);
        ll_tree_set_link(tree, &t->right, c);
    }
    ll_tree_child_max_changed(tree, t, was, ll_tree_subtree_max(c));
    return t;
}

/* n (priority pn) was put in place of a node whose children L and R it took over: rotates it down
 * below any child of higher priority; returns the subtree's new root. */
static inline struct ll_free *ll_tree_sink(const struct ll_tree *tree, struct ll_free *n, uint64_t pn,
                                           struct ll_free *L, struct ll_free *R)
{
    uint64_t pl = L != NULL ? ll_tree_priority(L) : 0, pr = R != NULL ? ll_tree_priority(R) : 0;

    if (L != NULL && pl > pn && (R == NULL || pl >= pr)) {
        struct ll_free *lr = ll_tree_right(tree, L);
        ll_tree_set_link(tree, &n->left, lr);
        ll_tree_set_link(tree, &L->right, ll_tree_sink(tree, n, pn, lr, R));
        ll_tree_fix_max(tree, L);
        return L;
    }
    if (R != NULL && pr > pn) {
        struct ll_free *rl = ll_tree_left(tree, R);
        ll_tree_set_link(tree, &n->right, rl);
        ll_tree_set_link(tree, &R->left, ll_tree_sink(tree, n, pn, L, rl));
        ll_tree_fix_max(tree, R);
        return R;
    }
    n->hdr.prev_size = ll_block_size(&n->hdr);
    ll_tree_child_max_changed(tree, n, 0, ll_tree_subtree_max(L));
    ll_tree_child_max_changed(tree, n, 0, ll_tree_subtree_max(R));
    return n;
}

/* Inserts free block f (size set, not in the tree). */
static inline void ll_tree_insert(struct ll_tree *tree, struct ll_free *f)
{
    ll_tree_set_link(tree, &tree->root,
                     ll_tree_insert_below(tree, ll_tree_get_link(tree, &tree->root), f, ll_tree_priority(f)));
}

/* Removes f, which is in the tree. */
static inline void ll_tree_remove(struct ll_tree *tree, struct ll_free *f)
{
    ll_tree_set_link(tree, &tree->root, ll_tree_remove_below(tree, ll_tree_get_link(tree, &tree->root), f));
}

/* ll_tree_replace(): the ancestors of leaving it records on its way down, to repair on its way up; in a
 * deeper tree (for a million random nodes about 28 deep, so practically never) the replacement is a
 * removal and an insertion instead. */
#ifndef LL_TREE_PATH
#define LL_TREE_PATH 64 /* test_ll_tree.c sets it small, so that its model tests take the fallback too */
#endif

/* Puts free block entering in the place of leaving (in the tree): entering's header is written,
 * leaving's links and maximum are still intact (they do not overlap entering's header), and no other
 * free block lies between the two addresses, so entering takes leaving's position in address order.
 * One descent to leaving, recording the path; entering takes over leaving's children and sinks below
 * those of higher priority; then back up the path, entering rotating above each ancestor it
 * outranks and the maxima repaired, until an ancestor neither rotates nor changes its maximum --
 * nothing above it changes either, so most replacements stop a few levels above leaving. */
static inline void ll_tree_replace(struct ll_tree *tree, struct ll_free *leaving, struct ll_free *entering)
{
    struct ll_free **path[LL_TREE_PATH]; /* path[d]: the slot holding the link to the ancestor at depth d */
    struct ll_free **slot = &tree->root, *t, *L, *R, *c;
    unsigned d = 0;
    uint64_t pe = ll_tree_priority(entering);
    size_t was = leaving->hdr.prev_size, now;

    for (t = ll_tree_get_link(tree, slot); t != leaving; t = ll_tree_get_link(tree, slot)) {
        if (heap_unlikely(t == NULL)) /* not in the tree: only if hardened validation was bypassed */
            return;
        if (heap_unlikely(d == LL_TREE_PATH)) {
            ll_tree_remove(tree, leaving);
            ll_tree_insert(tree, entering);
            return;
        }
        path[d++] = slot;
        slot = leaving < t ? &t->left : &t->right;
    }
    L = ll_tree_left(tree, leaving);
    R = ll_tree_right(tree, leaving);
    ll_tree_set_link(tree, &entering->left, L);
    ll_tree_set_link(tree, &entering->right, R);
    c = ll_tree_sink(tree, entering, pe, L, R);
    ll_tree_set_link(tree, slot, c);
    now = c->hdr.prev_size;
    while (d > 0) {
        struct ll_free **ps = path[--d];
        size_t twas;

        t = ll_tree_get_link(tree, ps);
        twas = t->hdr.prev_size;
        if (c == entering && pe > ll_tree_priority(t)) {
            c = slot == &t->left ? ll_tree_rotate_right(tree, t, c) : ll_tree_rotate_left(tree, t, c);
            ll_tree_set_link(tree, ps, c);
        } else {
            if (now == was)
                return; /* t keeps its place and its maximum: so does everything above it */
            ll_tree_child_max_changed(tree, t, was, now);
            c = t;
        }
        was = twas;
        now = c->hdr.prev_size;
        slot = ps;
    }
}

/* f (in the tree) grew in place: raises the maxima on the path from the root to f. */
static inline void ll_tree_grow(struct ll_tree *tree, struct ll_free *f)
{
    size_t s = ll_block_size(&f->hdr);

    for (struct ll_free *t = ll_tree_get_link(tree, &tree->root); t != NULL;
         t = f < t ? ll_tree_left(tree, t) : ll_tree_right(tree, t)) {
        if (t->hdr.prev_size < s)
            t->hdr.prev_size = s;
        if (t == f)
            break;
    }
}

/* Follows the link in slot (a field of node f, or the root when f is NULL). A link that fails
 * validation (hardened mode) is reported (at f, or at the root's target) and returns NULL with *bad
 * set. */
static inline struct ll_free *ll_tree_follow_link(const struct ll_tree *tree, const struct ll_free *f,
                                                  struct ll_free *const *slot, bool *bad)
{
    struct ll_free *g = ll_tree_get_link(tree, slot);

    if (heap_unlikely(!ll_tree_link_plausible(tree, g))) {
        ll_tree_report_link(tree, f, slot, g);
        ll_tree_abort(tree);
        *bad = true;
        return NULL;
    }
    return g;
}

/* Returns the lowest-addressed free block of at least need bytes (still in the tree), or NULL:
 * address-ordered first fit in one descent, guided by the subtree maxima. A damaged link, or maxima
 * that promise a fit that is not there, are reported (hardened mode) and answer NULL. */
static inline struct ll_free *ll_tree_find_fit(const struct ll_tree *tree, size_t need)
{
    bool bad = false;
    struct ll_free *t = ll_tree_follow_link(tree, NULL, &tree->root, &bad), *c;

    if (t == NULL || ll_tree_subtree_max(t) < need)
        return NULL;
    for (;;) {
        c = ll_tree_follow_link(tree, t, &t->left, &bad);
        if (heap_unlikely(bad))
            return NULL;
        if (c != NULL && ll_tree_subtree_max(c) >= need) {
            t = c;
            continue;
        }
        if (ll_block_size(&t->hdr) >= need)
            return t;
        c = ll_tree_follow_link(tree, t, &t->right, &bad);
        if (heap_unlikely(bad))
            return NULL;
        if (heap_unlikely(c == NULL || ll_tree_subtree_max(c) < need)) {
            ll_tree_report_and_abort(tree, t); /* the maxima promised a fit that is not there */
            return NULL;
        }
        t = c;
    }
}

/* Called by ll_tree_visit_fits() with each free block f of at least the size asked for (still in the
 * tree, which must not change during the walk). Returns true to stop the walk, false to go on. */
typedef bool (*ll_tree_visit_fn)(void *ctx, struct ll_free *f);

/* ll_tree_visit_fits() within subtree t (not NULL), entered because its maximum is at least need:
 * every block of t's subtree with at least need bytes to visit, in address order. Returns true if
 * the walk is over -- visit stopped it, or it failed (*bad set) -- and false if it offered every such
 * block (at least one: a subtree whose maximum promises a fit that none of its blocks has is reported
 * and fails the walk). Recurses into left subtrees and loops into right ones, so its depth is at most
 * the tree's, like ll_tree_insert()'s. */
static inline bool ll_tree_visit_fits_below(const struct ll_tree *tree, struct ll_free *t, size_t need,
                                            ll_tree_visit_fn visit, void *ctx, bool *bad)
{
    for (;;) {
        bool offered = false; /* by t's left subtree or by t */
        struct ll_free *c = ll_tree_follow_link(tree, t, &t->left, bad);

        if (heap_unlikely(*bad))
            return true;
        if (c != NULL && ll_tree_subtree_max(c) >= need) {
            if (ll_tree_visit_fits_below(tree, c, need, visit, ctx, bad))
                return true;
            offered = true;
        }
        if (ll_block_size(&t->hdr) >= need) {
            if (visit(ctx, t))
                return true;
            offered = true;
        }
        c = ll_tree_follow_link(tree, t, &t->right, bad);
        if (heap_unlikely(*bad))
            return true;
        if (c == NULL || ll_tree_subtree_max(c) < need) {
            if (heap_unlikely(!offered)) {
                ll_tree_report_and_abort(tree, t); /* the maxima promised a fit that is not there */
                *bad = true;
            }
            return *bad;
        }
        t = c; /* the right subtree promises a fit: it offers one or fails the walk itself */
    }
}

/* Offers every free block of at least need bytes to visit, in address order (lowest first), until
 * visit returns true or the blocks run out: one in-order walk that skips every subtree whose maximum
 * is below need. It enters only the nodes on the paths from the root to the blocks it offers, each
 * once -- one descent to the first block (ll_tree_find_fit(tree, need)'s answer), then the in-order
 * steps to each next one: O(depth + blocks offered) for blocks close together, never more than a
 * descent per block. Recursion depth at most the tree's. Returns false if the walk met a link that
 * fails validation or maxima that promise a fit that is not there (reported and the call aborted, as
 * ll_tree_find_fit() does; the walk ends there), true otherwise. Static inline (not in ll_tree.c) so
 * that the compiler specialises it for its one visitor: fixed_size_block's large blocks and slabs
 * make it part of every aligned allocation. */
static inline bool ll_tree_visit_fits(const struct ll_tree *tree, size_t need, ll_tree_visit_fn visit,
                                      void *ctx)
{
    bool bad = false;
    struct ll_free *t = ll_tree_follow_link(tree, NULL, &tree->root, &bad);

    if (t != NULL && ll_tree_subtree_max(t) >= need)
        ll_tree_visit_fits_below(tree, t, need, visit, ctx, &bad);
    return !bad;
}

/* True if inserting key (!present) or removing, replacing or growing it (present) follows only valid
 * links: every link those operations follow or copy into another slot -- the child taken at each node
 * of key's search path, both children of key, the right links along the right spine of key's left
 * subtree and the left links along the left spine of its right subtree (which removal joins and
 * replacement sinks along) -- each node strictly inside the address interval its ancestors allow (so
 * a cycle cannot loop). The other child of a node on the way is only ever read for its subtree
 * maximum, which a damaged link gives as LL_LINK_BAD's (SIZE_MAX): it stays in its slot, damaged,
 * for the next descent that follows it or heap_check() to report. Also false if key is present but
 * expected absent, or the reverse. Reads only validated links: safe on a damaged tree. (In plain mode
 * every link counts as valid; hardened mode calls this.) */
bool ll_tree_path_ok(const struct ll_tree *tree, const struct ll_free *key, bool present);

/* After ll_tree_path_ok() answered false: reports (hardened mode) the first thing on that path that
 * failed, as precisely as it is known: a link whose tag does not match as a write into the free block
 * that holds it (ll_tree_report_link), an intact link to a damaged header as corrupted metadata,
 * anything else as a corrupted free list naming the node. */
void ll_tree_path_report(const struct ll_tree *tree, const struct ll_free *key, bool present);

/* True if address a lies inside a node's block (header or body): one descent to the highest node at
 * or below a, following only validated links inside the interval their ancestors allow. A damaged
 * tree answers false. */
bool ll_tree_in_free_block(const struct ll_tree *tree, uintptr_t a);

/* As ll_tree_in_free_block(), returning that node (NULL if none, or on a damaged tree). */
const struct ll_free *ll_tree_free_block_at(const struct ll_tree *tree, uintptr_t a);

/* Walks the whole tree and returns the number of broken invariants (0 = healthy): in-order is
 * increasing addresses, a parent's priority is >= its children's, every maximum is right, every node
 * is a free block (INUSE clear, size >= LL_MIN_BLOCK, 16-aligned) whose successor's header carries
 * its size as prev_size with PREV_INUSE clear, and no path is deeper than LL_TREE_CHECK_DEPTH.
 * Counts nodes in *count and stops beyond limit nodes (a cycle). Hardened: a link that fails
 * validation is reported, naming the node that holds it. Never follows a link out of a broken
 * node. */
size_t ll_tree_check(const struct ll_tree *tree, size_t *count, size_t limit);

/* ll_tree_check(): a deeper tree is counted as broken (for a random treap of a million nodes that
 * has probability ~0). */
#define LL_TREE_CHECK_DEPTH 256

#endif /* KHEAP_ALLOC_LL_TREE_H */
