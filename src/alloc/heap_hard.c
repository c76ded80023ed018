/*
 * heap_hard.c - the out-of-line part of the hardened layer (heap_hard.h; docs/hardening.md): reports,
 * poison fill and verification, retiring damaged blocks, and the cold path that locates an overflow.
 * Everything here runs only when KHEAP_HARDENING=1; the plain build compiles this file to nothing.
 */
#include "heap_backend.h"

#if KHEAP_HARDENING

/* Returns the offset from p of the first disturbed canary byte, or 0 if the canary is intact. */
static size_t canary_find_bad(uint64_t k, const void *p, size_t req, size_t bu)
{
    uint64_t cw = heap_hard_canary_word(k);
    size_t first = req & ~(size_t)7, zone_end = bu - HEAP_HARD_TRAILER;
    const unsigned char *w = (const unsigned char *)p + first;
    uint64_t diff = (heap_hard_load64(w) ^ cw) & ~heap_hard_user_mask(req);

    if (diff != 0)
        return first + (size_t)__builtin_ctzll(diff) / 8;
    if (first + 16 <= zone_end && (diff = heap_hard_load64(w + 8) ^ cw) != 0)
        return first + 8 + (size_t)__builtin_ctzll(diff) / 8;
    return 0;
}

__attribute__((noinline, cold)) bool heap_hard_live_damaged(const struct heap *h, uint64_t k, const void *p,
                                                            size_t bu)
{
    struct heap_hard_block b;
    const void *free_site = NULL;

    if (heap_quarantine_holds(h, p, bu, &free_site)) {
        /* Not a live block at all: freed earlier and still held back in the quarantine. */
        heap_hard_report(h, HEAP_ERR_DOUBLE_FREE, p, 0, 0, NULL, free_site);
        return false;
    }
    if (!heap_hard_trailer_read(k, p, bu, &b)) {
        /* The trailer itself was overwritten: a long overflow (or a wild write). */
        heap_hard_report(h, HEAP_ERR_OVERFLOW, p, 0, bu - HEAP_HARD_TRAILER, NULL, NULL);
        return false;
    }
    heap_hard_report(h, HEAP_ERR_OVERFLOW, p, b.req, canary_find_bad(k, p, b.req, bu), b.site, NULL);
    return false;
}

void heap_hard_report(const struct heap *h, enum heap_error kind, const void *ptr, size_t size, size_t offset,
                      const void *alloc_site, const void *free_site)
{
    struct heap *o = h->hard.owner;
    struct heap_report r = {
        .kind = kind,
        .backend = o->ops->name,
        .ptr = ptr,
        .size = size,
        .offset = offset,
        .caller = o->hard.caller,
        .alloc_site = alloc_site,
        .free_site = free_site,
    };

    o->counts.errors_detected++;
    if (o->env.report != NULL)
        o->env.report(o->env.ctx, &r);
}

void heap_hard_poison(void *p, size_t len)
{
    if (len != 0)
        heap_hard_fill(p, len, HEAP_POISON_FREE64);
}

size_t heap_hard_find_unpoisoned(const void *p, size_t from, size_t to)
{
    const unsigned char *b = p;
    size_t i = from;

    /* Four words per step with one branch, then single words; the byte-exact offset is located only
     * on a mismatch (or in the last few bytes). */
    for (; i + 32 <= to; i += 32)
        if (heap_unlikely(((heap_hard_load64(b + i) ^ HEAP_POISON_FREE64) |
                           (heap_hard_load64(b + i + 8) ^ HEAP_POISON_FREE64) |
                           (heap_hard_load64(b + i + 16) ^ HEAP_POISON_FREE64) |
                           (heap_hard_load64(b + i + 24) ^ HEAP_POISON_FREE64)) != 0))
            break;
    for (; i + 8 <= to && heap_hard_load64(b + i) == HEAP_POISON_FREE64; i += 8)
        ;
    for (; i < to; i++)
        if (b[i] != HEAP_POISON_FREE)
            return i;
    return to;
}

bool heap_hard_verify_free(struct heap *h, void *p, size_t from, size_t bu)
{
    size_t to = bu < HEAP_POISON_SPAN ? bu : HEAP_POISON_SPAN;
    size_t bad = heap_hard_find_unpoisoned(p, from, to);

    if (heap_likely(bad == to))
        return true;
    heap_hard_report(h, HEAP_ERR_USE_AFTER_FREE, p, 0, bad, NULL, NULL);
    h->hard.owner->hard.abort = true;
    return false;
}

bool heap_hard_verify_live(const struct heap *h, const void *p, size_t bu)
{
    struct heap_hard_block b;
    uint64_t k = heap_hard_block_key(h, p);

    if (heap_hard_trailer_read(k, p, bu, &b) && heap_hard_canary_intact(k, p, b.req, bu))
        return true;
    /* A quarantined block is used to the backend; heap_quarantine_check() verifies it. */
    return heap_quarantine_holds(h, p, bu, NULL) || heap_hard_live_damaged(h, k, p, bu);
}

void heap_hard_retire(struct heap *h, void *p, size_t bu)
{
    heap_hard_layout(h->hard.owner, p, bu - HEAP_HARD_TAIL, bu, NULL); /* no site: no user ever held it */
}

#endif /* KHEAP_HARDENING */
