/*
 * fsb_cache.c - fixed_size_block's large-block cache (fsb_cache.h; the design is "The large-block
 * cache" in fixed_size_block.c's essay).
 *
 * A bin is a small array, searched linearly: FSB_CACHE_DEPTH entries, so a lookup is a few compares.
 * The hardened hooks (one section below) keep each entry's free site, verify a block's free poison
 * when it leaves the cache and let the fallback validate a block before it frees it.
 */
#include "fsb_cache.h"
#include "linked_list.h"

/* Position of p in bin b, or -1. */
static int bin_find(const struct fsb_cache_bin *b, const void *p)
{
    for (uint32_t j = 0; j < b->count && j < FSB_CACHE_DEPTH; j++)
        if (b->block[j] == p)
            return (int)j;
    return -1;
}

#if KHEAP_HARDENING
/* The fallback reports through its owner (fixed_size_block), whose caller is the public call in
 * progress. */
static struct heap *cache_owner(const struct heap *fallback)
{
    return fallback->hard.owner;
}

/* Where entry j of b was freed. */
static inline const void *bin_site(const struct fsb_cache_bin *b, uint32_t j)
{
    return b->site[j];
}

/* Entry j of b is being filled by the user's free in progress: remember its site. */
static inline void bin_set_site(struct fsb_cache_bin *b, uint32_t j, const struct heap *fallback)
{
    b->site[j] = cache_owner(fallback)->hard.caller;
}

/* Entry from moves to slot to (removal by moving the last entry into the hole). */
static inline void bin_move_site(struct fsb_cache_bin *b, uint32_t to, uint32_t from)
{
    b->site[to] = b->site[from];
}

/* Makes the owner's caller site (the fallback records it as the free site of what it frees) and
 * returns the previous one. */
static inline const void *cache_set_caller(struct heap *fallback, const void *site)
{
    struct heap *owner = cache_owner(fallback);
    const void *caller = owner->hard.caller;

    owner->hard.caller = site;
    return caller;
}

/* Offset of the first byte of cached block p (usable u) that lost the free poison, or u: the front
 * end's rule for freed memory, over the whole span (no links are kept in p). */
static size_t cache_unpoisoned(const void *p, size_t u)
{
    size_t to = u < HEAP_POISON_SPAN ? u : HEAP_POISON_SPAN;
    size_t off = heap_hard_find_unpoisoned(p, 0, to);

    return off == to ? u : off;
}

/* The cached block p (usable u, freed at site) is damaged: report it, keep it out of circulation for
 * good as a consistent used block, and make the allocation in progress fail. */
static void cache_reject(struct heap *fallback, void *p, size_t u, enum heap_error kind, size_t off,
                         const void *site)
{
    heap_hard_report(fallback, kind, p, 0, off, NULL, site);
    cache_owner(fallback)->hard.abort = true;
    heap_hard_retire(fallback, p, u);
}

/* True if cached block p (usable u, freed at site) still holds its free poison; else rejects it. */
static inline bool cache_poison_intact(struct heap *fallback, void *p, size_t u, const void *site)
{
    size_t off = cache_unpoisoned(p, u);

    if (heap_likely(off == u))
        return true;
    cache_reject(fallback, p, u, HEAP_ERR_USE_AFTER_FREE, off, site);
    return false;
}

/* True if the fallback may free cached block p (usable u, freed at site): its poison is intact and
 * its header and the tree links around it are sound (the fallback's free follows them); else
 * rejects it. */
static bool cache_release_ok(struct heap *fallback, void *p, size_t u, const void *site)
{
    size_t usable;
    const void *fs;
    enum heap_error e;

    if (!cache_poison_intact(fallback, p, u, site))
        return false;
    e = heap_linked_list_ops.validate(fallback, p, &usable, &fs);
    if (e != HEAP_BLOCK_OK) {
        cache_reject(fallback, p, u, e == HEAP_ERR_CORRUPT_FREELIST ? e : HEAP_ERR_CORRUPT_METADATA, 0, NULL);
        return false;
    }
    return true;
}

/* check(): true if p lies in one of the fallback's regions, so its header may be read. */
static bool cache_entry_readable(const struct heap *fallback, const void *p)
{
    return heap_ll_contains(fallback, (uintptr_t)p);
}

/* check(): 1 (reported as a use-after-free write) if cached block p (usable u, freed at site) lost
 * its free poison, else 0. */
static size_t cache_check_poison(const struct heap *fallback, const void *p, size_t u, const void *site)
{
    size_t off = cache_unpoisoned(p, u);

    if (off == u)
        return 0;
    heap_hard_report(fallback, HEAP_ERR_USE_AFTER_FREE, p, 0, off, NULL, site);
    return 1;
}

bool fsb_cache_holds(const struct fsb_cache *c, const struct heap *fallback, const void *p,
                     const void **free_site)
{
    int i = fsb_cache_index(heap_linked_list_ops.usable_size(fallback, p)), j;

    if (i < 0 || (j = bin_find(&c->bin[i], p)) < 0)
        return false;
    if (free_site != NULL)
        *free_site = c->bin[i].site[j];
    return true;
}
#else
static inline const void *bin_site(const struct fsb_cache_bin *b, uint32_t j)
{
    (void)b;
    (void)j;
    return NULL;
}

static inline void bin_set_site(struct fsb_cache_bin *b, uint32_t j, const struct heap *fallback)
{
    (void)b;
    (void)j;
    (void)fallback;
}

static inline void bin_move_site(struct fsb_cache_bin *b, uint32_t to, uint32_t from)
{
    (void)b;
    (void)to;
    (void)from;
}

static inline const void *cache_set_caller(struct heap *fallback, const void *site)
{
    (void)fallback;
    (void)site;
    return NULL;
}

static inline bool cache_poison_intact(struct heap *fallback, void *p, size_t u, const void *site)
{
    (void)fallback;
    (void)p;
    (void)u;
    (void)site;
    return true;
}

static inline bool cache_release_ok(struct heap *fallback, void *p, size_t u, const void *site)
{
    (void)fallback;
    (void)p;
    (void)u;
    (void)site;
    return true;
}

static inline bool cache_entry_readable(const struct heap *fallback, const void *p)
{
    (void)fallback;
    (void)p;
    return true;
}

static inline size_t cache_check_poison(const struct heap *fallback, const void *p, size_t u,
                                        const void *site)
{
    (void)fallback;
    (void)p;
    (void)u;
    (void)site;
    return 0;
}
#endif

/* Hands cached block p (usable u, freed at site) back to the fallback. */
static void cache_release(struct heap *fallback, void *p, size_t u, const void *site)
{
    const void *caller;

    if (heap_unlikely(!cache_release_ok(fallback, p, u, site)))
        return;
    /* The fallback records the free site of what it frees: the user's free, not this call. */
    caller = cache_set_caller(fallback, site);
    fallback->ops->free(fallback, p);
    cache_set_caller(fallback, caller);
}

void *fsb_cache_take(struct fsb_cache *c, struct heap *fallback, unsigned i, size_t *usable)
{
    struct fsb_cache_bin *b = &c->bin[i];
    size_t u = fsb_cache_usable(i + 1);
    uint32_t lo = 0;
    const void *site;
    void *p;

    /* The lowest address, as the fallback's first fit would choose. */
    for (uint32_t j = 1; j < b->count; j++)
        if ((uintptr_t)b->block[j] < (uintptr_t)b->block[lo])
            lo = j;
    p = b->block[lo];
    site = bin_site(b, lo);
    b->count--;
    b->block[lo] = b->block[b->count];
    bin_move_site(b, lo, b->count);
    c->ncached--;
    if (heap_unlikely(!cache_poison_intact(fallback, p, u, site)))
        return NULL;
    *usable = u;
    return p;
}

bool fsb_cache_put(struct fsb_cache *c, struct heap *fallback, void *ptr, size_t u)
{
    int i = fsb_cache_index(u);
    struct fsb_cache_bin *b;
    uint32_t hi = 0;

    if (i < 0)
        return false;
    b = &c->bin[i];
    if (b->count < FSB_CACHE_DEPTH) {
        c->ncached++;
        hi = b->count++;
    } else {
        /* Full: keep the lower addresses cached, give the highest back to the fallback. */
        for (uint32_t j = 1; j < b->count; j++)
            if ((uintptr_t)b->block[j] > (uintptr_t)b->block[hi])
                hi = j;
        if (b->count == 0 || (uintptr_t)ptr > (uintptr_t)b->block[hi])
            return false;
        cache_release(fallback, b->block[hi], u, bin_site(b, hi));
    }
    bin_set_site(b, hi, fallback);
    b->block[hi] = ptr;
    return true;
}

bool fsb_cache_flush(struct fsb_cache *c, struct heap *fallback)
{
    if (c->ncached == 0)
        return false;
    for (unsigned i = 0; i < FSB_CACHE_PAGES; i++) {
        struct fsb_cache_bin *b = &c->bin[i];
        for (uint32_t j = 0; j < b->count; j++)
            cache_release(fallback, b->block[j], fsb_cache_usable(i + 1), bin_site(b, j));
        b->count = 0;
    }
    c->ncached = 0;
    return true;
}

size_t fsb_cache_check(const struct fsb_cache *c, const struct heap *fallback)
{
    size_t bad = 0, total = 0;

    for (unsigned i = 0; i < FSB_CACHE_PAGES; i++) {
        const struct fsb_cache_bin *b = &c->bin[i];
        size_t u = fsb_cache_usable(i + 1);

        if (b->count > FSB_CACHE_DEPTH) {
            bad++;
            continue;
        }
        total += b->count;
        for (uint32_t j = 0; j < b->count; j++) {
            const void *p = b->block[j];
            if ((uintptr_t)p % FSB_PAGE_SIZE != 0 || !cache_entry_readable(fallback, p)) {
                bad++;
                continue;
            }
            bad += heap_linked_list_ops.usable_size(fallback, p) != u;
            bad += bin_find(b, p) != (int)j; /* listed twice */
            bad += cache_check_poison(fallback, p, u, bin_site(b, j));
        }
    }
    return bad + (total != c->ncached);
}
