/*
 * ll_tree.c - the free tree's descents that are not on every alloc and free: the validation of a
 * path before a change (hardened mode), the containment query (hardened validate) and the invariant
 * checker. The tree itself and its hot operations: ll_tree.h.
 */
#include "ll_tree.h"

#if KHEAP_HARDENING
const struct ll_tree_bad_node ll_tree_bad_node = {.node = {.hdr = {.prev_size = SIZE_MAX}}};
#endif

/* Follows the link in slot of node t for path_walk(): true with *next set if it passes
 * ll_tree_link_plausible(); else, if report, reports it (naming t). */
static inline __attribute__((always_inline)) bool path_step(const struct ll_tree *tree,
                                                            const struct ll_free *t,
                                                            struct ll_free *const *slot, bool report,
                                                            struct ll_free **next)
{
    struct ll_free *g = *next = ll_tree_get_link(tree, slot);

    if (heap_likely(ll_tree_link_plausible(tree, g)))
        return true;
    if (report)
        ll_tree_report_link(tree, t, slot, g);
    return false;
}

/* A node a of a spine below key for path_walk() lies outside (lo, hi): reports it if report. */
static bool spine_out(const struct ll_tree *tree, const struct ll_free *a, uintptr_t lo, uintptr_t hi,
                      bool report)
{
    if ((uintptr_t)a > lo && (uintptr_t)a < hi)
        return false;
    if (report)
        ll_tree_report_corrupt(tree, a);
    return true;
}

/* ll_tree_path_ok(), reporting the first failure if report is set. */
static bool path_walk(const struct ll_tree *tree, const struct ll_free *key, bool present, bool report)
{
    struct ll_free *t, *a, *b, *up = NULL;
    uintptr_t lo = 0, hi = UINTPTR_MAX;

    if (!path_step(tree, NULL, &tree->root, report, &t))
        return false;
    for (;;) {
        if (t == NULL) {
            if (present && report)
                ll_tree_report_corrupt(tree, key); /* a free block missing from the tree */
            return !present;
        }
        if ((uintptr_t)t <= lo || (uintptr_t)t >= hi) {
            if (report)
                ll_tree_report_corrupt(tree, up != NULL ? up : t); /* out of order: up's link is wrong */
            return false;
        }
        if (t == key)
            break;
        up = t;
        if (key < t) {
            hi = (uintptr_t)t;
            if (!path_step(tree, t, &t->left, report, &t))
                return false;
        } else {
            lo = (uintptr_t)t;
            if (!path_step(tree, t, &t->right, report, &t))
                return false;
        }
    }
    if (!present) {
        if (report)
            ll_tree_report_corrupt(tree, key); /* a used block in the tree */
        return false;
    }
    /* Both children (replacement copies them into the entering node), then the right spine of t's
     * left subtree and the left spine of its right subtree (removal joins them, replacement sinks
     * along them): the right links of the one, the left links of the other. */
    if (!path_step(tree, t, &t->left, report, &a) || !path_step(tree, t, &t->right, report, &b))
        return false;
    for (uintptr_t x = lo; a != NULL;) {
        if (spine_out(tree, a, x, (uintptr_t)t, report))
            return false;
        x = (uintptr_t)a;
        if (!path_step(tree, a, &a->right, report, &a))
            return false;
    }
    for (uintptr_t y = hi; b != NULL;) {
        if (spine_out(tree, b, (uintptr_t)t, y, report))
            return false;
        y = (uintptr_t)b;
        if (!path_step(tree, b, &b->left, report, &b))
            return false;
    }
    return true;
}

bool ll_tree_path_ok(const struct ll_tree *tree, const struct ll_free *key, bool present)
{
    return path_walk(tree, key, present, false);
}

void ll_tree_path_report(const struct ll_tree *tree, const struct ll_free *key, bool present)
{
    path_walk(tree, key, present, true);
}

bool ll_tree_in_free_block(const struct ll_tree *tree, uintptr_t a)
{
    return ll_tree_free_block_at(tree, a) != NULL;
}

const struct ll_free *ll_tree_free_block_at(const struct ll_tree *tree, uintptr_t a)
{
    const struct ll_free *t = ll_tree_get_link(tree, &tree->root), *below = NULL;
    uintptr_t lo = 0, hi = UINTPTR_MAX;

    while (t != NULL) {
        if (!ll_tree_link_ok(tree, t) || (uintptr_t)t <= lo || (uintptr_t)t >= hi)
            return NULL;
        if ((uintptr_t)t <= a) {
            below = t;
            lo = (uintptr_t)t;
            t = ll_tree_right(tree, t);
        } else {
            hi = (uintptr_t)t;
            t = ll_tree_left(tree, t);
        }
    }
    return below != NULL && a - (uintptr_t)below < ll_block_size(&below->hdr) ? below : NULL;
}

/* Checks the subtree whose link lies in slot of node parent (NULL: the root); its addresses must lie
 * strictly between lo and hi and its priorities must not exceed plimit (its parent's). Every broken
 * invariant is counted and (hardened mode) reported, naming the node; links out of a broken node are
 * not followed. */
static size_t check_below(const struct ll_tree *tree, const struct ll_free *parent,
                          struct ll_free *const *slot, uintptr_t lo, uintptr_t hi, uint64_t plimit,
                          unsigned depth, size_t *count, size_t limit)
{
    size_t bad = 0, m;
    const struct ll_block *next;
    const struct ll_free *t = ll_tree_get_link(tree, slot);

    if (t == NULL)
        return 0;
    if (!ll_tree_link_ok(tree, t)) {
        ll_tree_report_link(tree, parent, slot, t); /* t is garbage: name the holder of the link */
        return 1;
    }
    if (++*count > limit || depth > LL_TREE_CHECK_DEPTH || (uintptr_t)t <= lo || (uintptr_t)t >= hi ||
        (uintptr_t)t % HEAP_MIN_ALIGN != 0 || (t->hdr.size & LL_INUSE) ||
        ll_block_size(&t->hdr) < LL_MIN_BLOCK || !ll_tree_block_inside(tree, t)) {
        /* A cycle, out of order, or not a free block: do not follow its links. */
        ll_tree_report_corrupt(tree, parent != NULL ? parent : t);
        return 1;
    }
    next = ll_next_block(&t->hdr);
    if (next->prev_size != ll_block_size(&t->hdr) || (next->size & LL_PREV_INUSE)) {
        ll_tree_report_corrupt(tree, t); /* its boundary tag disagrees with it */
        bad++;
    }
    if (ll_tree_priority(t) > plimit) {
        ll_tree_report_corrupt(tree, t);
        bad++;
    }
    bad += check_below(tree, t, &t->left, lo, (uintptr_t)t, ll_tree_priority(t), depth + 1, count, limit);
    bad += check_below(tree, t, &t->right, (uintptr_t)t, hi, ll_tree_priority(t), depth + 1, count, limit);
    if (bad == 0) {
        m = ll_block_size(&t->hdr);
        if (ll_tree_subtree_max(ll_tree_left(tree, t)) > m)
            m = ll_tree_subtree_max(ll_tree_left(tree, t));
        if (ll_tree_subtree_max(ll_tree_right(tree, t)) > m)
            m = ll_tree_subtree_max(ll_tree_right(tree, t));
        if (t->hdr.prev_size != m) {
            ll_tree_report_corrupt(tree, t); /* a wrong subtree maximum */
            bad++;
        }
    }
    return bad;
}

size_t ll_tree_check(const struct ll_tree *tree, size_t *count, size_t limit)
{
    return check_below(tree, NULL, &tree->root, 0, UINTPTR_MAX, UINT64_MAX, 0, count, limit);
}
