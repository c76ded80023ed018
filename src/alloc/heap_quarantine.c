/*
 * heap_quarantine.c - the hardened front end's quarantine (heap_quarantine.h has the design: the ring,
 * the mark a quarantined block carries, when blocks leave, what is verified). Everything here runs
 * only when KHEAP_HARDENING=1; the plain build compiles this file to nothing.
 */
#include "heap_backend.h"

#if KHEAP_HARDENING

_Static_assert(sizeof(struct heap_quarantine_entry) == 16, "ring entry layout");

static inline bool q_marked(uint64_t k, uintptr_t p, size_t bu)
{
    return heap_quarantine_marked(k, (const void *)p, bu);
}

/* The free site in p's mark (trustworthy only if q_marked()). */
static inline const void *q_site(uint64_t k, uintptr_t p, size_t bu)
{
    return (const void *)(uintptr_t)(heap_hard_trailer_of((const void *)p, bu)->alloc_site ^
                                     heap_hard_site_key(k));
}

/* True if [p, p + to) (to a multiple of 16) holds the free poison: four words per step, no exit
 * inside a step, the bad byte located only on a mismatch (q_damage). */
static inline bool q_poisoned(uintptr_t p, size_t to)
{
    const unsigned char *b = (const unsigned char *)p;
    uint64_t d = 0;
    size_t i = 0;

    for (; i + 32 <= to; i += 32) {
        d |= (heap_hard_load64(b + i) ^ HEAP_POISON_FREE64) |
             (heap_hard_load64(b + i + 8) ^ HEAP_POISON_FREE64) |
             (heap_hard_load64(b + i + 16) ^ HEAP_POISON_FREE64) |
             (heap_hard_load64(b + i + 24) ^ HEAP_POISON_FREE64);
        if (heap_unlikely(d != 0))
            return false;
    }
    if (i < to)
        d |= (heap_hard_load64(b + i) ^ HEAP_POISON_FREE64) |
             (heap_hard_load64(b + i + 8) ^ HEAP_POISON_FREE64);
    return d == 0;
}

/* Offset of the first damaged byte of quarantined block p (key k, usable bu) -- its poison over the
 * first span up to the mark, or over its first `keep` bytes of it, then the mark's size word -- or bu
 * if it is intact. The poison is compared four words per step inline: workload-sized blocks are a few
 * steps. */
static inline size_t q_damage(uint64_t k, uintptr_t p, size_t bu, size_t keep)
{
    size_t mark = bu - HEAP_HARD_TRAILER;
    size_t to = mark < keep ? mark : keep;

    if (heap_likely(q_poisoned(p, to) && q_marked(k, p, bu)))
        return bu;
    size_t bad = heap_hard_find_unpoisoned((const void *)p, 0, to);
    return bad != to ? bad : mark;
}

/* Reports the use-after-free write at offset off of block p and retires p (never handed out). */
static __attribute__((noinline, cold)) void q_reject(struct heap *h, uint64_t k, uintptr_t p, size_t bu,
                                                     size_t off)
{
    const void *site = q_marked(k, p, bu) ? q_site(k, p, bu) : NULL;

    heap_hard_report(h, HEAP_ERR_USE_AFTER_FREE, (const void *)p, 0, off, NULL, site);
    heap_hard_retire(h, (void *)p, bu);
}

/* True if the backend still vouches for entry e as a live block of usable size e->bu; else reports
 * corrupted metadata (the entry's block is neither freed nor touched again: a leak, never an
 * overlap). A neighbour's overflow or a wild write into the block's header while it was held back
 * would otherwise reach the backend's free(), which trusts its metadata. */
static inline bool q_vouched(struct heap *h, const struct heap_quarantine_entry *e)
{
    const void *fsite = NULL;
    size_t bu = 0;

    if (heap_likely(h->ops->validate(h, (const void *)e->p, &bu, &fsite) == HEAP_BLOCK_OK && bu == e->bu))
        return true;
    heap_hard_report(h, HEAP_ERR_CORRUPT_METADATA, (const void *)e->p, 0, 0, NULL, NULL);
    return false;
}

/* Lets the oldest entry leave: verified, the mark poisoned again, freed to the backend (or reported
 * and retired). */
static void q_leave(struct heap *h)
{
    struct heap_quarantine *q = &h->hard.q;
    struct heap_quarantine_entry e = q->ring[q->head];
    uint64_t k;
    size_t off;

    if (++q->head == q->cap)
        q->head = 0;
    q->blocks--;
    q->bytes -= e.bu;
    if (heap_unlikely(e.p == 0))
        return; /* retired by heap_check() */
    if (heap_unlikely(!q_vouched(h, &e)))
        return;
    k = heap_hard_block_key(h, (const void *)e.p);
    /* A block the backend keeps verified (heap_ops.hard_reuse_verified): only what its free overwrites
     * (HEAP_HARD_KEEP, heap_hard.h), the rest is verified when the backend reuses the memory, before
     * anything overwrites it and by check(), as for a block freed without a quarantine. Any other
     * block: all of its span, here. */
    off = q_damage(k, e.p, e.bu, e.bu <= h->ops->hard_reuse_verified ? HEAP_HARD_KEEP : HEAP_POISON_SPAN);
    if (heap_unlikely(off != e.bu)) {
        q_reject(h, k, e.p, e.bu, off);
        return;
    }
    if (e.bu <= HEAP_POISON_SPAN)
        heap_hard_fill(heap_hard_trailer_of((const void *)e.p, e.bu), HEAP_HARD_TRAILER, HEAP_POISON_FREE64);
    h->ops->free(h, (void *)e.p);
}

/* The limits env asks for a heap of an arena backend or not: blocks (0: off) and bytes. An arena
 * backend (bump) gets no quarantine unless env asks for one: it reuses memory only by rolling back
 * its newest block or by a reset, so every block held back would become a dead block until the next
 * reset (the heap grows by the whole workload), and it already finds writes into dead blocks and
 * their double frees (docs/hardening.md, "Quarantine"). */
static void q_limits(const struct heap_env *env, bool arena, size_t *blocks, size_t *bytes)
{
    size_t by = env != NULL ? env->quarantine_bytes : 0, bl = env != NULL ? env->quarantine_blocks : 0;

    if (by == HEAP_QUARANTINE_OFF || bl == HEAP_QUARANTINE_OFF || (arena && by == 0 && bl == 0)) {
        *blocks = *bytes = 0;
        return;
    }
    *blocks = bl != 0 ? bl : HEAP_QUARANTINE_DEFAULT_BLOCKS;
    *bytes = by != 0 ? by : HEAP_QUARANTINE_DEFAULT_BYTES;
}

struct heap_quarantine_entry *heap_quarantine_reserve(const struct heap_ops *ops, const struct heap_env *env,
                                                      void **mem, size_t *size)
{
    size_t blocks, bytes, ring, skip;
    uintptr_t m = (uintptr_t)*mem;

    q_limits(env, ops->arena, &blocks, &bytes);
    if (blocks == 0)
        return NULL;
    skip = (size_t)(-m & (HEAP_MIN_ALIGN - 1));
    if (__builtin_mul_overflow(blocks, sizeof(struct heap_quarantine_entry), &ring) ||
        __builtin_add_overflow(ring, skip, &skip) || skip >= *size) {
        *size = 0;
        return NULL;
    }
    *mem = (void *)(m + skip);
    *size -= skip;
    return (struct heap_quarantine_entry *)(m + skip - ring);
}

void heap_quarantine_init(struct heap *h, const struct heap_env *env, struct heap_quarantine_entry *ring)
{
    struct heap_quarantine *q = &h->hard.q;
    size_t blocks, bytes;

    q_limits(env, h->ops->arena, &blocks, &bytes);
    *q = (struct heap_quarantine){0};
    if (ring == NULL || blocks == 0)
        return; /* off: max_bytes 0, every block bypasses */
    q->ring = ring;
    q->cap = blocks;
    q->max_bytes = bytes;
}

void heap_quarantine_make_room(struct heap *h, size_t bu)
{
    struct heap_quarantine *q = &h->hard.q;

    while (q->blocks == q->cap || bu > q->max_bytes - q->bytes)
        q_leave(h);
}

bool heap_quarantine_drain(struct heap *h)
{
    struct heap_quarantine *q = &h->hard.q;
    bool any = q->blocks != 0;

    while (q->blocks != 0)
        q_leave(h);
    return any;
}

bool heap_quarantine_holds(const struct heap *h, const void *p, size_t bu, const void **free_site)
{
    uint64_t k = heap_hard_block_key(h, p);

    if (bu < HEAP_HARD_TAIL || !q_marked(k, (uintptr_t)p, bu))
        return false;
    if (free_site != NULL)
        *free_site = q_site(k, (uintptr_t)p, bu);
    return true;
}

size_t heap_quarantine_check(struct heap *h)
{
    struct heap_quarantine *q = &h->hard.q;
    size_t bad = 0, bytes = 0, i = q->head;

    for (size_t n = 0; n < q->blocks; n++, i = i + 1 == q->cap ? 0 : i + 1) {
        struct heap_quarantine_entry *e = &q->ring[i];
        size_t off;
        uint64_t k;

        bytes += e->bu;
        if (e->p == 0)
            continue;
        if (!q_vouched(h, e)) {
            e->p = 0; /* not freed, not touched again */
            bad++;
            continue;
        }
        k = heap_hard_block_key(h, (const void *)e->p);
        off = q_damage(k, e->p, e->bu, HEAP_POISON_SPAN);
        if (off != e->bu) {
            q_reject(h, k, e->p, e->bu, off); /* reported once: the entry is emptied */
            e->p = 0;
            bad++;
        }
    }
    return bad + (bytes != q->bytes) + (q->blocks > q->cap) + (q->bytes > q->max_bytes);
}

#endif /* KHEAP_HARDENING */
