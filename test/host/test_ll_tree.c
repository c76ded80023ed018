/*
 * test_ll_tree.c - unit tests of linked_list's free tree (src/alloc/ll_tree.h), on its own: nodes
 * are hand-made free blocks in a static arena, and a sorted array of (address, size) is the model.
 * Built against both the plain and the hardened ASan library (links mangled in the latter).
 *
 * The arena is cut into SLOTS slots of SLOT bytes; slot i may hold one free block, at offset 0 or
 * SHIFT, whose successor header (the boundary tag the tree checker reads) lies inside the slot.
 * Blocks in different slots are never adjacent in the sense that matters here: the tree does not
 * care, it only needs distinct addresses, sizes and correct tags.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kheap_host.h"
#define LL_TREE_PATH 2 /* replacements deeper than two levels take the fallback (ll_tree.h) */
#include "ll_tree.h"

#define SLOTS  512
#define SLOT   ((size_t)256)
#define SHIFT  ((size_t)64)
#define SECRET 0x0123456789abcdefull

static _Alignas(16) unsigned char arena[SLOTS * SLOT];

/* The model: size of the free block in slot i (0: none) and its offset in the slot. */
static size_t model_size[SLOTS];
static size_t model_off[SLOTS];

static struct ll_tree tree;
static struct heap reporter; /* the heap the tree reports through (hardened mode) */
static size_t reports;       /* reports made through reporter (hardened mode) */

#if KHEAP_HARDENING
static enum heap_error last_kind;
static const void *last_ptr;
static const struct heap_ops reporter_ops = {.name = "ll_tree_test"};

static void count_report(void *ctx, const struct heap_report *r)
{
    (void)ctx;
    reports++;
    last_kind = r->kind;
    last_ptr = r->ptr;
}
#endif

static uintptr_t slot_addr(size_t i, size_t off)
{
    return (uintptr_t)arena + i * SLOT + off;
}

static struct ll_free *node_of(size_t i)
{
    return (struct ll_free *)slot_addr(i, model_off[i]);
}

/* Largest block that fits at offset off of a slot with its successor header. */
static size_t max_size(size_t off)
{
    return SLOT - off - LL_HDR;
}

/* Writes a free block of size bytes at addr and its successor's boundary tag. */
static struct ll_free *write_block(uintptr_t addr, size_t size)
{
    struct ll_free *f = (struct ll_free *)addr;
    struct ll_block *next = ll_block_at(addr + size);

    f->hdr.size = size | LL_PREV_INUSE;
#if KHEAP_HARDENING
    f->hdr.cookie = ll_cookie(SECRET, &f->hdr, LL_FREE);
    f->hdr.site = NULL;
#endif
    next->prev_size = size;
    next->size = LL_INUSE;
    return f;
}

static size_t random_size(uint64_t *rng, size_t lo, size_t hi)
{
    return lo + (heap_rand(rng) % ((hi - lo) / 16 + 1)) * 16;
}

static int setup(void **state)
{
    (void)state;
    memset(arena, 0, sizeof(arena));
    memset(model_size, 0, sizeof(model_size));
    memset(model_off, 0, sizeof(model_off));
    memset(&reporter, 0, sizeof(reporter));
#if KHEAP_HARDENING
    reporter.ops = &reporter_ops;
    reporter.hard.owner = &reporter;
    reporter.hard.secret = SECRET;
    reporter.env.report = count_report;
#endif
    reports = 0;
    ll_tree_init(&tree, &reporter, SECRET);
    ll_tree_cover(&tree, (uintptr_t)arena, (uintptr_t)arena + sizeof(arena));
    return 0;
}

static size_t model_count(void)
{
    size_t n = 0;

    for (size_t i = 0; i < SLOTS; i++)
        n += model_size[i] != 0;
    return n;
}

/* The model's first fit: the lowest-addressed block with at least need bytes. */
static struct ll_free *model_first_fit(size_t need)
{
    for (size_t i = 0; i < SLOTS; i++)
        if (model_size[i] >= need)
            return node_of(i);
    return NULL;
}

/* What ll_tree_visit_fits() offered: the blocks, in the order offered; it is stopped after limit. */
struct offers {
    struct ll_free *f[SLOTS];
    size_t n, limit;
};

static bool record_offer(void *ctx, struct ll_free *f)
{
    struct offers *o = ctx;

    assert_true(o->n < SLOTS);
    o->f[o->n++] = f;
    return o->n == o->limit;
}

/* ll_tree_visit_fits(need), stopped after limit blocks, offers the model's first limit blocks of at
 * least need bytes in address order, each once, and nothing else. */
static void assert_visit_matches_model(size_t need, size_t limit)
{
    struct offers o = {.n = 0, .limit = limit};
    size_t k = 0;

    assert_true(ll_tree_visit_fits(&tree, need, record_offer, &o));
    for (size_t i = 0; i < SLOTS && k < limit; i++) {
        if (model_size[i] < need)
            continue;
        assert_true(k < o.n);
        assert_ptr_equal(o.f[k], node_of(i));
        k++;
    }
    assert_int_equal(o.n, k);
}

static bool model_in_free_block(uintptr_t a)
{
    for (size_t i = 0; i < SLOTS; i++)
        if (model_size[i] != 0 && a >= (uintptr_t)node_of(i) && a - (uintptr_t)node_of(i) < model_size[i])
            return true;
    return false;
}

/* In-order walk of subtree t into out[]; also checks maxima and heap order directly. Returns the
 * subtree maximum it computed. */
static size_t walk(const struct ll_free *t, uint64_t plimit, struct ll_free **out, size_t *n)
{
    size_t m, l, r;

    if (t == NULL)
        return 0;
    assert_true(ll_tree_priority(t) <= plimit);
    l = walk(ll_tree_left(&tree, t), ll_tree_priority(t), out, n);
    assert_true(*n < SLOTS);
    out[(*n)++] = (struct ll_free *)t;
    r = walk(ll_tree_right(&tree, t), ll_tree_priority(t), out, n);
    m = ll_block_size(&t->hdr);
    if (l > m)
        m = l;
    if (r > m)
        m = r;
    assert_int_equal(t->hdr.prev_size, m);
    return m;
}

/* The tree equals the model: in-order = the model's blocks in address order, maxima, heap order,
 * and ll_tree_check() agrees. */
static void assert_tree_matches_model(void)
{
    struct ll_free *order[SLOTS];
    size_t n = 0, k = 0, count = 0;

    walk(ll_tree_get_link(&tree, &tree.root), UINT64_MAX, order, &n);
    for (size_t i = 0; i < SLOTS; i++) {
        if (model_size[i] == 0)
            continue;
        assert_true(k < n);
        assert_ptr_equal(order[k], node_of(i));
        assert_int_equal(ll_block_size(&order[k]->hdr), model_size[i]);
        k++;
    }
    assert_int_equal(k, n);
    assert_int_equal(ll_tree_check(&tree, &count, SLOTS + 1), 0);
    assert_int_equal(count, n);
}

/* Random insert, remove, replace (both directions, as a split and a merge do) and grow against the
 * model; first-fit, the walk over the fits, containment and path answers compared with the model
 * throughout. */
static void test_random_against_model(void **state)
{
    uint64_t rng = 42;

    (void)state;
    for (int step = 0; step < 40000; step++) {
        size_t i = heap_rand(&rng) % SLOTS;
        unsigned op = heap_rand(&rng) % 4;

        if (model_size[i] == 0) {
            model_off[i] = (heap_rand(&rng) & 1) ? SHIFT : 0;
            model_size[i] = random_size(&rng, LL_MIN_BLOCK, max_size(model_off[i]));
            assert_true(ll_tree_path_ok(&tree, (struct ll_free *)slot_addr(i, model_off[i]), false));
            ll_tree_insert(&tree, write_block((uintptr_t)node_of(i), model_size[i]));
        } else if (op == 0) {
            assert_true(ll_tree_path_ok(&tree, node_of(i), true));
            assert_false(ll_tree_path_ok(&tree, node_of(i), false));
            ll_tree_remove(&tree, node_of(i));
            model_size[i] = 0;
        } else if (op == 1 && model_size[i] < max_size(model_off[i])) {
            size_t s = random_size(&rng, model_size[i] + 16, max_size(model_off[i]));
            struct ll_free *f = write_block((uintptr_t)node_of(i), s);
            model_size[i] = s;
            ll_tree_grow(&tree, f);
        } else if (op == 2 && model_off[i] == SHIFT) {
            /* A merge: a block just below takes in the node and its place. */
            struct ll_free *leaving = node_of(i);
            struct ll_free *entering = write_block(slot_addr(i, 0), SHIFT + model_size[i]);
            ll_tree_replace(&tree, leaving, entering);
            model_off[i] = 0;
            model_size[i] += SHIFT;
        } else if (op == 2 && model_size[i] >= SHIFT + LL_MIN_BLOCK) {
            /* A split: the tail of the node takes its place (the front is allocated). */
            struct ll_free *leaving = node_of(i);
            struct ll_free *entering = write_block(slot_addr(i, SHIFT), model_size[i] - SHIFT);
            ll_tree_replace(&tree, leaving, entering);
            model_off[i] = SHIFT;
            model_size[i] -= SHIFT;
        }
        if (step % 64 == 0) {
            size_t need = random_size(&rng, LL_MIN_BLOCK, SLOT);
            size_t limit = 1 + heap_rand(&rng) % 24; /* as an aligned search stops (16), or later */
            uintptr_t a = (uintptr_t)arena + heap_rand(&rng) % sizeof(arena);

            assert_ptr_equal(ll_tree_find_fit(&tree, need), model_first_fit(need));
            assert_visit_matches_model(need, limit);
            assert_visit_matches_model(need, SLOTS + 1); /* never stopped: every fit */
            assert_int_equal(ll_tree_in_free_block(&tree, a), model_in_free_block(a));
        }
        if (step % 1024 == 0)
            assert_tree_matches_model();
    }
    assert_tree_matches_model();
    while (model_count() != 0) {
        size_t i = heap_rand(&rng) % SLOTS;
        if (model_size[i] != 0) {
            ll_tree_remove(&tree, node_of(i));
            model_size[i] = 0;
        }
    }
    assert_null(ll_tree_get_link(&tree, &tree.root));
    assert_int_equal(reports, 0);
}

/* A small tree with known answers: first fit is by address, not by size. */
static void test_first_fit_answers(void **state)
{
    static const size_t sizes[] = {80, 128, 64, 160, 96};

    (void)state;
    for (size_t i = 0; i < 5; i++) {
        model_size[i * 3] = sizes[i];
        ll_tree_insert(&tree, write_block((uintptr_t)node_of(i * 3), sizes[i]));
    }
    assert_ptr_equal(ll_tree_find_fit(&tree, 64), node_of(0));
    assert_ptr_equal(ll_tree_find_fit(&tree, 81), node_of(3));
    assert_ptr_equal(ll_tree_find_fit(&tree, 129), node_of(9));
    assert_ptr_equal(ll_tree_find_fit(&tree, 160), node_of(9));
    assert_null(ll_tree_find_fit(&tree, 176));
    struct offers o = {.n = 0, .limit = SLOTS + 1};
    assert_true(ll_tree_visit_fits(&tree, 65, record_offer, &o)); /* in address order, 64 left out */
    assert_int_equal(o.n, 4);
    assert_ptr_equal(o.f[0], node_of(0));
    assert_ptr_equal(o.f[1], node_of(3));
    assert_ptr_equal(o.f[2], node_of(9));
    assert_ptr_equal(o.f[3], node_of(12));
    o = (struct offers){.n = 0, .limit = 2}; /* the visitor stops the walk */
    assert_true(ll_tree_visit_fits(&tree, 96, record_offer, &o));
    assert_int_equal(o.n, 2);
    assert_ptr_equal(o.f[1], node_of(9));
    o = (struct offers){.n = 0, .limit = SLOTS + 1};
    assert_true(ll_tree_visit_fits(&tree, 161, record_offer, &o));
    assert_int_equal(o.n, 0);
    assert_true(ll_tree_in_free_block(&tree, (uintptr_t)node_of(3) + 127));
    assert_false(ll_tree_in_free_block(&tree, (uintptr_t)node_of(3) + 128));
    assert_false(ll_tree_in_free_block(&tree, (uintptr_t)node_of(1)));
    assert_tree_matches_model();
}

/* Fills the tree with n random blocks (model kept). */
static void fill(size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        model_size[i] = random_size(&seed, LL_MIN_BLOCK, max_size(0));
        ll_tree_insert(&tree, write_block((uintptr_t)node_of(i), model_size[i]));
    }
    assert_tree_matches_model();
}

static size_t check_count(void)
{
    size_t count = 0;
    return ll_tree_check(&tree, &count, SLOTS + 1);
}

static void test_check_catches_broken_max(void **state)
{
    struct ll_free *root;

    (void)state;
    fill(100, 7);
    root = ll_tree_get_link(&tree, &tree.root);
    root->hdr.prev_size += 16;
    assert_int_not_equal(check_count(), 0);
    root->hdr.prev_size -= 16;
    assert_int_equal(check_count(), 0);
    /* A leaf's maximum too (the lowest node has no left child). */
    struct ll_free *low = root;
    while (ll_tree_left(&tree, low) != NULL)
        low = ll_tree_left(&tree, low);
    low->hdr.prev_size -= 16;
    assert_int_not_equal(check_count(), 0);
}

/* A subtree maximum raised above every block in it (maxima are not sealed): the walk over the fits
 * enters the subtree, finds no block there and fails, naming the node whose maximum promised the fit
 * (hardened mode: reported, the call aborted), as the first-fit descent does. */
static void test_walk_catches_broken_max(void **state)
{
    struct ll_free *order[SLOTS], *end;
    struct offers o = {.n = 0, .limit = SLOTS + 1};
    size_t n = 0, i = 0, big = max_size(0) + 16; /* larger than any block */

    (void)state;
    fill(100, 13);
    walk(ll_tree_get_link(&tree, &tree.root), UINT64_MAX, order, &n);
    for (size_t k = 0; k < n; k++)
        order[k]->hdr.prev_size = big; /* every subtree promises a block of big bytes */
    while (ll_tree_right(&tree, order[i]) != NULL)
        i++;
    end = order[i]; /* the walk's first node with nowhere left to look: where the promise breaks */
    assert_false(ll_tree_visit_fits(&tree, big, record_offer, &o));
    assert_int_equal(o.n, 0);
#if KHEAP_HARDENING
    assert_int_equal(reports, 1);
    assert_int_equal(last_kind, HEAP_ERR_CORRUPT_FREELIST);
    assert_ptr_equal(last_ptr, (const char *)end + LL_HDR);
    assert_true(reporter.hard.abort);
    last_ptr = NULL;
#endif
    assert_null(ll_tree_find_fit(&tree, big)); /* the descent fails at the same node */
#if KHEAP_HARDENING
    assert_int_equal(reports, 2);
    assert_ptr_equal(last_ptr, (const char *)end + LL_HDR);
#else
    assert_int_equal(reports, 0);
    (void)end;
#endif
}

static void test_check_catches_broken_order(void **state)
{
    struct ll_free *order[SLOTS], *t = NULL, *l = NULL, *r = NULL;
    size_t n = 0;

    (void)state;
    fill(100, 8);
    /* Swap the subtrees of a node that has two: every link still points at a free block, the
     * order is wrong. */
    walk(ll_tree_get_link(&tree, &tree.root), UINT64_MAX, order, &n);
    for (size_t i = 0; i < n && t == NULL; i++) {
        l = ll_tree_left(&tree, order[i]);
        r = ll_tree_right(&tree, order[i]);
        if (l != NULL && r != NULL)
            t = order[i];
    }
    assert_non_null(t);
    ll_tree_set_link(&tree, &t->left, r);
    ll_tree_set_link(&tree, &t->right, l);
    assert_int_not_equal(check_count(), 0);
    /* Hardened mode: what check() finds is reported too, not only counted. */
    assert_int_equal(reports != 0, KHEAP_HARDENING);
}

static void test_check_catches_broken_priority(void **state)
{
    struct ll_free *root, *c;

    (void)state;
    fill(100, 9);
    /* A rotation keeps address order and maxima but puts the child above its parent. */
    root = ll_tree_get_link(&tree, &tree.root);
    c = ll_tree_left(&tree, root);
    if (c != NULL) {
        ll_tree_set_link(&tree, &tree.root, ll_tree_rotate_right(&tree, root, c));
    } else { /* the shape depends on the arena's address (priorities hash addresses): ASLR */
        c = ll_tree_right(&tree, root);
        assert_non_null(c);
        ll_tree_set_link(&tree, &tree.root, ll_tree_rotate_left(&tree, root, c));
    }
    assert_int_equal(check_count(), 1);
}

static void test_check_catches_broken_tag(void **state)
{
    (void)state;
    fill(20, 10);
    ll_next_block(&node_of(5)->hdr)->prev_size += 16;
    assert_int_not_equal(check_count(), 0);
}

#if KHEAP_HARDENING
/* Links are stored mangled and tagged, and a link overwritten with a plain pointer is caught before
 * it is followed: the slot lies in a free block's body, so it is reported as a write into freed
 * memory, naming that block and the slot's offset. */
static void test_damaged_link_is_reported(void **state)
{
    struct ll_free *root, *low;

    (void)state;
    fill(50, 11);
    root = ll_tree_get_link(&tree, &tree.root);
    assert_ptr_not_equal(tree.root, root);
    low = root;
    while (ll_tree_left(&tree, low) != NULL)
        low = ll_tree_left(&tree, low);
    assert_true(ll_tree_path_ok(&tree, low, true));
    low->left = node_of(40); /* an attacker's pointer, stored unmangled */
    assert_false(ll_tree_path_ok(&tree, low, true));
    assert_int_equal(reports, 0);
    assert_int_not_equal(check_count(), 0);
    assert_int_equal(reports, 1);
    assert_int_equal(last_kind, HEAP_ERR_USE_AFTER_FREE);
    assert_ptr_equal(last_ptr, (const char *)low + LL_HDR);
    /* The first-fit descent passes low on its way to the lowest fit: it reports and fails the call. */
    assert_null(ll_tree_find_fit(&tree, LL_MIN_BLOCK));
    assert_int_equal(reports, 2);
    assert_true(reporter.hard.abort);
    /* So does the walk over the fits, before it offers anything. */
    struct offers o = {.n = 0, .limit = SLOTS + 1};
    assert_false(ll_tree_visit_fits(&tree, LL_MIN_BLOCK, record_offer, &o));
    assert_int_equal(o.n, 0);
    assert_int_equal(reports, 3);
    assert_int_equal(last_kind, HEAP_ERR_USE_AFTER_FREE);
    assert_ptr_equal(last_ptr, (const char *)low + LL_HDR);
    assert_false(ll_tree_in_free_block(&tree, (uintptr_t)low - 16));
}

/* A damaged link that a change only reads a subtree maximum through (the other child of a node on the
 * path) decodes to a readable dummy node: the path check does not need it, the change reads the
 * dummy's maximum instead of faulting, the link stays in its slot, and both check() and the next
 * first-fit descent that looks there report it (the dummy's maximum, SIZE_MAX, draws the descent). */
static void test_damaged_sibling_link_is_reported_later(void **state)
{
    struct ll_free *t, *l, *r, *key;

    (void)state;
    fill(50, 12);
    t = ll_tree_get_link(&tree, &tree.root); /* down to the first node with two children */
    while (((l = ll_tree_left(&tree, t)) == NULL) != ((r = ll_tree_right(&tree, t)) == NULL))
        t = l != NULL ? l : r;
    assert_non_null(l);
    assert_non_null(r);
    key = l;                /* t's left child: t is on its search path, t's right child is not */
    t->right = node_of(40); /* an attacker's pointer, stored unmangled */
    assert_ptr_equal(ll_tree_right(&tree, t), LL_LINK_BAD);
    assert_true(ll_tree_path_ok(&tree, key, true));
    ll_tree_remove(&tree, key);
    ll_tree_fix_max(&tree, t); /* as a rotation or a lowered maximum above key would */
    assert_true(t->hdr.prev_size == SIZE_MAX);
    assert_false(ll_tree_path_ok(&tree, t, true)); /* t's own removal would copy the link */
    assert_int_equal(reports, 0);
    assert_int_not_equal(check_count(), 0);
    assert_true(reports >= 1);
    assert_int_equal(last_kind, HEAP_ERR_USE_AFTER_FREE);
    assert_ptr_equal(last_ptr, (const char *)t + LL_HDR);
    reports = 0;
    /* The repair on the way up raises t's ancestors' maxima with it (here by hand, t's removal was
     * refused); a request no block fits then descends to t and meets the link. */
    for (struct ll_free *u = ll_tree_get_link(&tree, &tree.root); u != t;
         u = t < u ? ll_tree_left(&tree, u) : ll_tree_right(&tree, u))
        ll_tree_child_max_changed(&tree, u, 0, SIZE_MAX);
    assert_null(ll_tree_find_fit(&tree, (size_t)1 << 40));
    assert_int_equal(reports, 1);
    assert_int_equal(last_kind, HEAP_ERR_USE_AFTER_FREE);
    assert_ptr_equal(last_ptr, (const char *)t + LL_HDR);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_random_against_model, setup),
        cmocka_unit_test_setup(test_first_fit_answers, setup),
        cmocka_unit_test_setup(test_check_catches_broken_max, setup),
        cmocka_unit_test_setup(test_walk_catches_broken_max, setup),
        cmocka_unit_test_setup(test_check_catches_broken_order, setup),
        cmocka_unit_test_setup(test_check_catches_broken_priority, setup),
        cmocka_unit_test_setup(test_check_catches_broken_tag, setup),
#if KHEAP_HARDENING
        cmocka_unit_test_setup(test_damaged_link_is_reported, setup),
        cmocka_unit_test_setup(test_damaged_sibling_link_is_reported_later, setup),
#endif
    };

    return cmocka_run_group_tests_name(KHEAP_HARDENING ? "ll_tree_hardened" : "ll_tree", tests, NULL, NULL);
}
