/*
 * bump.c - the bump ("arena") backend.
 *
 * How it works
 * ------------
 * The heap is one region [start, end) and a pointer `next`: everything below next has been handed
 * out, everything above is free. An allocation places a 16-byte header at the first suitable spot
 * after next, aligns the user pointer, and moves next past the block:
 *
 *      start                      last                   next                 end
 *        |  hdr | block 1 | pad | hdr | block 2 (last) |  ...... free ......  |
 *               ^user ptr             ^user ptr
 *      hdr = { size: usable bytes of the block, prev_next: value of next before this block }
 *
 * Memory is reused in only two ways:
 *   - freeing the most recent allocation (`last`) rolls next back to hdr->prev_next, so strictly
 *     stack-like (LIFO) use reuses memory one level deep; resize() of `last` grows or shrinks it in
 *     place by moving next;
 *   - a counter of live allocations: when it drops to 0 the whole region is reset (next = start).
 * Any other free only decrements the counter; its bytes stay dead until the reset.
 *
 * Growth: add_memory() of a region that starts exactly at `end` extends the region (the kernel case).
 * A non-adjacent region replaces the current one: the old region's tail is abandoned for good and its
 * live blocks are still valid and freeable; the next reset returns to the new region's start.
 *
 * Invariants (checked by bump_check): start <= next <= end, all 16-aligned; live == 0 implies
 * next == start and last == 0; last, if set, lies in [start, next) and its block ends exactly at next.
 * A region holds at most HEAP_MAX_REQUEST bytes (bump_cap_end; no machine has more), so a block that
 * fits is always a request the front end accepts.
 *
 * The fit test is one comparison of size, exact for every size and address: size - 1 < end - next -
 * header - padding, that difference checked not to wrap first (bump_fits). It refuses size 0 and
 * every size the tail cannot hold; anywhere in the address space the block then ends at or below end.
 *
 * The step (heap_ops.step_alloc/step_free, heap_backend.h): a heap without a lock or caches in plain
 * mode calls bump_step_alloc() and bump_step_free() for heap_alloc() and heap_free() -- the front
 * end's direct path and this file's alloc/free in one function each, the same code (bump_fits,
 * bump_place, bump_free_body) with the counters, and no call, range check or indirect call between
 * them. Its fit test is the size check too (the cap above); anything that does not fit, size 0
 * included, takes the front end's path (heap_alloc_direct: validation, growth, reclaim). Freeing the
 * last live block stores 0 into live instead of decrementing it, so that the next allocation's
 * increment does not wait for the free's (on a tight alloc/free loop two read-modify-writes of one
 * counter per pair, each a store-to-load forward, were the longest dependency chain).
 *
 * Giving memory back (env.release / env.reclaim, docs/memory.md): a reset gives back the whole pages
 * of the region beyond its first HEAP_TRIM_THRESHOLD bytes (the hysteresis: phases that stay below
 * it never map or unmap) and lowers end to there, remembering the old end in rel_end. An allocation
 * that no longer fits reclaims what it needs of the released tail (at least HEAP_TRIM_THRESHOLD) and
 * retries (if env refuses, it fails and the front end may grow); growth adjacent to the released tail
 * reclaims it first, else the region is replaced as for any non-adjacent growth. Rollback and other frees
 * give nothing back. Hardened: [next, dirty) never reaches past end, so released pages are never verified as
 * poison, and validate() rejects a pointer into them without reading it.
 *
 * Complexity: every operation is O(1); check() is O(1).
 * Trade-offs: the fastest and simplest backend with zero fragmentation for phase-structured work
 * (allocate a lot, free it all), but a single long-lived block pins the whole region forever and
 * random free patterns never reuse memory. usable_size needs the 16-byte header.
 *
 * Hardened mode (docs/hardening.md; the code is the hardened section below, which the allocator
 * reaches only through hard_* hooks): the header grows to 48 bytes, 32 of them in front of the plain
 * header (struct bump_hard_hdr): a cookie (key(ptr) ^ LIVE or DEAD), a `chain` link to the previous
 * block placed since the last reset, the free site and a seal; prev_next and chain are stored
 * mangled, and the seal is a keyed checksum chained over size, prev_next and chain as stored -- and,
 * once the block is dead, xor a keyed checksum of its free site (a live block's site must be NULL) --
 * checked before a rollback (validate), a reset's walk of the chain and check(): a changed size or link is
 * reported as corrupted metadata and never used (the mangling alone kept a flipped bit a one-bit
 * change of the decoded link, which the range check let through); a changed byte of a dead block's
 * free site is a write into memory no user holds, reported at that byte with the site it held. The
 * cookie tells a live block from a dead one (double free) and from anything else (invalid free);
 * `lo`/`hi` bound every region ever used, so a pointer outside is rejected without being read.
 * Memory becomes reusable only by rollback or reset, and that is where it is poisoned: rollback
 * poisons the rest of the rolled-back range (the front end poisoned the block's first span before
 * the free: padding, header and the bytes past the span are left), a reset first verifies the poison of every
 * dead block on the chain (use-after-free writes) and then poisons [start, next). [next, dirty) is therefore
 * all poison, and alloc verifies the part of it a new block covers. check() walks the chain: canaries of live
 * blocks, poison of dead ones, and the first span of [next, dirty).
 */
#include "heap_backend.h"

/* The last 16 of the BUMP_HDR_SIZE bytes in front of every user pointer (hardened mode puts more in
 * front of it), so hdr_of() is the same in both modes. */
struct bump_hdr {
    size_t size;         /* usable bytes of the block */
    uintptr_t prev_next; /* next before this block was placed: where a rollback returns (a link:
                          * read and written with link_get/link_set, mangled in hardened mode) */
};

/* The instance, at the start of the memory given to init() (hardened mode wraps it in a struct
 * bump_hard and keeps its own state after it). */
struct bump {
    struct heap common; /* first member: struct heap * == struct bump * */
    uintptr_t start;    /* first usable byte of the current region */
    uintptr_t next;     /* first free byte */
    uintptr_t end;      /* one past the last byte of the current region */
    uintptr_t last;     /* user pointer of the most recent live block, or 0 */
    size_t live;        /* live allocations, in every region */
    uintptr_t rel_end;  /* giving memory back: [end, rel_end) was given back at a reset; 0 if not */
};

_Static_assert(sizeof(struct bump_hdr) == 16, "bump header layout");
_Static_assert(offsetof(struct bump, common) == 0, "struct heap must be the first member");

static struct bump *to_bump(struct heap *h)
{
    return container_of(h, struct bump, common);
}

static const struct bump *to_cbump(const struct heap *h)
{
    return container_of(h, const struct bump, common);
}

static struct bump_hdr *hdr_of(const void *ptr)
{
    return (struct bump_hdr *)((uintptr_t)ptr - sizeof(struct bump_hdr));
}

/*
 * Hardened mode: everything it adds to bump, in one section (see the essay's last paragraph). The
 * allocator below calls these hooks at fixed points; in plain mode they are the empty stubs after
 * #else, and the plain build compiles as if they were not there.
 */
#if KHEAP_HARDENING
#define BUMP_LIVE ((uint64_t)0x4c495645) /* "LIVE" */
#define BUMP_DEAD ((uint64_t)0x44454144) /* "DEAD" */

/* The hardened header: 32 bytes in front of the plain one, which still ends at the user pointer. */
struct bump_hard_hdr {
    uint64_t cookie;       /* key(ptr) ^ BUMP_LIVE or BUMP_DEAD */
    uintptr_t chain;       /* user pointer of the previous block since the reset, or 0 (a link) */
    const void *free_site; /* caller of the free, once dead; NULL while live */
    uint64_t seal;         /* hard_seal() of size, prev_next and chain as stored (^ hard_site_seal(), dead) */
    struct bump_hdr hdr;   /* last member: ends at the user pointer */
};

/* The hardened instance: the plain one, then the state only hardened mode keeps. */
struct bump_hard {
    struct bump b;    /* first member: struct bump * == struct bump_hard * */
    uintptr_t chain;  /* user pointer of the newest block placed since the last reset, or 0 */
    size_t nchain;    /* blocks on the chain (bounds walks over a damaged chain) */
    uintptr_t dirty;  /* [next, dirty) was used before and is all poison */
    uintptr_t lo, hi; /* envelope of every region this heap was given */
};

#define BUMP_HDR_SIZE     sizeof(struct bump_hard_hdr)
#define BUMP_INST_SIZE    sizeof(struct bump_hard)
#define BUMP_OPS_VALIDATE bump_validate

_Static_assert(offsetof(struct bump_hard_hdr, hdr) + sizeof(struct bump_hdr) == sizeof(struct bump_hard_hdr),
               "the plain header ends at the user pointer");
_Static_assert(offsetof(struct bump_hard, b) == 0, "struct bump must be the first member");

static struct bump_hard *to_hard(struct bump *b)
{
    return container_of(b, struct bump_hard, b);
}

static const struct bump_hard *to_chard(const struct bump *b)
{
    return container_of(b, const struct bump_hard, b);
}

static struct bump_hard_hdr *hard_hdr_of(const void *ptr)
{
    return container_of(hdr_of(ptr), struct bump_hard_hdr, hdr);
}

/* Links (prev_next, chain) are stored mangled with their slot's address, so that an overwritten or
 * forged link decodes to a value validate() and check() reject. */
static uintptr_t link_get(const struct bump *b, const uintptr_t *slot)
{
    return heap_hard_mangle(&b->common, slot, *slot);
}

static void link_set(const struct bump *b, uintptr_t *slot, uintptr_t v)
{
    *slot = heap_hard_mangle(&b->common, slot, v);
}

static uint64_t hard_cookie(const struct bump *b, uintptr_t p, uint64_t state)
{
    return heap_hard_key(b->common.hard.secret, p) ^ state;
}

/* The seal of block p's header: a keyed checksum chained over the words that guard memory -- the
 * size (how far a rollback, a resize and check() reach), the rollback link and the chain link, as
 * stored (mangled). The XOR mangling alone keeps a one-bit flip a one-bit change of the decoded
 * link, which a range check cannot tell from a legitimate value; the seal changes unpredictably. */
static uint64_t hard_seal(const struct bump *b, uintptr_t p, const struct bump_hard_hdr *hh)
{
    uint64_t x = heap_hard_seal(b->common.hard.secret, p, hh->hdr.size);
    return heap_hard_seal(x, hh->hdr.prev_next, hh->chain);
}

/* What a dead block's seal adds for its free site: a keyed checksum of the site, keyed with its slot's
 * address. Only a free writes the site (NULL before), so a live header's seal leaves it out and its
 * site must be NULL, and a free folds this in without rehashing the rest (one checksum per free). */
static uint64_t hard_site_seal(const struct bump *b, const struct bump_hard_hdr *hh)
{
    return heap_hard_seal(b->common.hard.secret, (uintptr_t)&hh->free_site, (uintptr_t)hh->free_site);
}

/* True if live block p's header still carries the seal of its size and links, and no free site. */
static bool hard_sealed(const struct bump *b, uintptr_t p, const struct bump_hard_hdr *hh)
{
    return hh->seal == hard_seal(b, p, hh) && hh->free_site == NULL;
}

/* True if dead block p's header still carries the seal of its size, links and free site. */
static bool hard_sealed_dead(const struct bump *b, uintptr_t p, const struct bump_hard_hdr *hh)
{
    return hh->seal == (hard_seal(b, p, hh) ^ hard_site_seal(b, hh));
}

/* Dead block p's seal failed although its cookie is intact: if changing one byte of its free site back
 * makes it hold, returns that byte's address and the site it held in *site; else 0. Tries every other
 * value of each byte (2,040 checksums: only ever on a report). */
static __attribute__((noinline, cold)) uintptr_t hard_site_changed(const struct bump *b, uintptr_t p,
                                                                   const struct bump_hard_hdr *hh,
                                                                   const void **site)
{
    uintptr_t w = (uintptr_t)hh->free_site;
    uint64_t s = hard_seal(b, p, hh);

    for (unsigned i = 0; i < sizeof(w); i++) {
        for (uintptr_t v = 0; v < 256; v++) {
            uintptr_t c = (w & ~((uintptr_t)0xff << (8 * i))) | v << (8 * i);
            if (c != w &&
                hh->seal == (s ^ heap_hard_seal(b->common.hard.secret, (uintptr_t)&hh->free_site, c))) {
                *site = (const void *)c;
                return (uintptr_t)&hh->free_site + i;
            }
        }
    }
    return 0;
}

/* resize(): block ptr's size changed; its seal follows. */
static void hard_reseal(struct bump *b, void *ptr)
{
    struct bump_hard_hdr *hh = hard_hdr_of(ptr);

    hh->seal = hard_seal(b, (uintptr_t)ptr, hh);
}

/* The most bytes in which a word written over may differ from what it should hold for the damage to be
 * located in that word: a write of a few bytes changes a few, while a seal recomputed from a changed
 * size or link differs in about every byte (in at most 4 of 8 with probability ~2^-26). */
#define BUMP_HIT_BYTES 4

/* The number of bytes in which words x and y differ. */
static unsigned hard_bytes_differing(uint64_t x, uint64_t y)
{
    unsigned n = 0;

    for (uint64_t d = x ^ y; d != 0; d >>= 8)
        n += (d & 0xff) != 0;
    return n;
}

/* The address of the first byte in which word *w differs from v. */
static uintptr_t hard_first_changed(const uint64_t *w, uint64_t v)
{
    return (uintptr_t)w + (size_t)__builtin_ctzll(*w ^ v) / 8; /* little-endian: byte i is bits 8i.. */
}

/* Block p's header (plausible: readable) failed its cookie or seal on the chain (a reset's walk,
 * check()): reports it. If the words themselves locate the damage in the header of a dead block --
 * its cookie within BUMP_HIT_BYTES of p's DEAD cookie (and nearer to it than to the LIVE one), or,
 * the cookie intact, a free site that seals again with one byte changed back (then the report names
 * the site it held), or a seal within BUMP_HIT_BYTES of the one its size, links and site give -- memory no
 * user holds was written (typically through a pointer to a block rolled back over, whose memory
 * this header now occupies): a use-after-free write, reported at the changed byte (ptr that byte,
 * offset 0, as for the rest of the freed memory). Anything else -- a live block's header, a changed
 * size or link -- is corrupted metadata of block p. */
static void hard_report_header(const struct bump *b, uintptr_t p, const struct bump_hard_hdr *hh)
{
    uint64_t dead = hard_cookie(b, p, BUMP_DEAD), seal = hard_seal(b, p, hh) ^ hard_site_seal(b, hh);
    unsigned to_dead = hard_bytes_differing(hh->cookie, dead);
    uintptr_t at = 0;
    const void *site = hh->free_site;

    if (to_dead != 0 && to_dead <= BUMP_HIT_BYTES &&
        to_dead < hard_bytes_differing(hh->cookie, hard_cookie(b, p, BUMP_LIVE)))
        at = hard_first_changed(&hh->cookie, dead);
    else if (to_dead == 0 && hh->seal != seal) {
        at = hard_site_changed(b, p, hh, &site); /* exact, so first */
        if (at == 0 && hard_bytes_differing(hh->seal, seal) <= BUMP_HIT_BYTES)
            at = hard_first_changed(&hh->seal, seal);
    }
    if (at != 0)
        heap_hard_report(&b->common, HEAP_ERR_USE_AFTER_FREE, (const void *)at, 0, 0, NULL, site);
    else
        heap_hard_report(&b->common, HEAP_ERR_CORRUPT_METADATA, (const void *)p, 0, 0, NULL, NULL);
}

/* check() found the plain invariants of the instance broken: reports it, naming the newest block (or
 * the instance when there is none), so that the report reaches env.report, not only the count. */
static void hard_report_state(const struct bump *b)
{
    heap_hard_report(&b->common, HEAP_ERR_CORRUPT_METADATA,
                     b->last != 0 ? (const void *)b->last : (const void *)b, 0, 0, NULL, NULL);
}

/* True if p could be a block's user pointer: aligned, header and one byte inside the envelope. */
static bool hard_plausible(const struct bump *b, uintptr_t p)
{
    const struct bump_hard *hb = to_chard(b);

    return p % HEAP_MIN_ALIGN == 0 && p >= hb->lo + BUMP_HDR_SIZE && p < hb->hi &&
           !(p - BUMP_HDR_SIZE >= b->end && p - BUMP_HDR_SIZE < b->rel_end);
}

/* init(): the heap reports through itself; nothing was used yet, the envelope is the first region. */
static void hard_init(struct bump *b, uint64_t secret)
{
    struct bump_hard *hb = to_hard(b);

    b->common.hard.owner = &b->common;
    b->common.hard.secret = secret;
    hb->dirty = b->start;
    hb->lo = b->start;
    hb->hi = b->end;
}

/* alloc(), before block p (usable rsize) is written at next: memory below dirty was freed by a
 * rollback or a reset and must still hold its poison. Returns false after reporting a disturbed byte
 * as a use-after-free write and failing the call (abort); the caller then quarantines p. */
static bool hard_check_reused(struct bump *b, uintptr_t p, size_t rsize)
{
    const struct bump_hard *hb = to_chard(b);

    if (hb->dirty > b->next) {
        uintptr_t to = p + (rsize < HEAP_POISON_SPAN ? rsize : HEAP_POISON_SPAN);
        if (to > hb->dirty)
            to = hb->dirty;
        size_t bad = heap_hard_find_unpoisoned((void *)b->next, 0, to - b->next);
        if (bad != to - b->next) {
            uintptr_t at = b->next + bad;
            heap_hard_report(&b->common, HEAP_ERR_USE_AFTER_FREE, (void *)(at >= p ? p : at), 0,
                             at >= p ? at - p : 0, NULL, NULL);
            b->common.hard.abort = true;
            return false;
        }
    }
    return true;
}

/* alloc(), after p's size and rollback link are written: block p gets a LIVE cookie, becomes the
 * newest block on the chain and is sealed. */
static void hard_mark_live(struct bump *b, uintptr_t p)
{
    struct bump_hard *hb = to_hard(b);
    struct bump_hard_hdr *hh = hard_hdr_of((void *)p);

    hh->cookie = hard_cookie(b, p, BUMP_LIVE);
    link_set(b, &hh->chain, hb->chain);
    hh->free_site = NULL;
    hh->seal = hard_seal(b, p, hh);
    hb->chain = p;
    hb->nchain++;
}

/* alloc(), after hard_check_reused() failed: block p stays placed and live for good, so the region is
 * not reset again and the next allocation moves past the bad bytes; it is never rolled back. */
static void hard_quarantine(struct bump *b, uintptr_t p, size_t rsize)
{
    heap_hard_retire(&b->common, (void *)p, rsize);
    b->last = 0;
}

/* free(): ptr gets a DEAD cookie and remembers who freed it (double-free reports name the site), the
 * site sealed with the rest. */
static void hard_mark_dead(struct bump *b, void *ptr)
{
    struct bump_hard_hdr *hh = hard_hdr_of(ptr);

    hh->cookie = hard_cookie(b, (uintptr_t)ptr, BUMP_DEAD);
    hh->free_site = b->common.hard.owner->hard.caller;
    hh->seal ^= hard_site_seal(b, hh);
}

/* free() of the last live block `freed`, before next returns to start: verifies the poison of the dead
 * blocks on the chain (reporting use-after-free writes), poisons [start, next) and empties the chain.
 * Each byte is poisoned and verified once: the front end poisoned freed's first span in this very
 * call, so it is not verified again (nor is freed's header, which validate() checked and
 * hard_mark_dead() resealed in this call), and the verified (or just poisoned) spans are not poisoned again
 * -- the blocks of the current region tile [start, next) (each from its rollback link, where next was
 * before it, to the newer one's link or next), so only what lies around the spans is filled, block
 * by block. A damaged header or span, or a tiling that does not add up, poisons all of [start, next)
 * instead. Inlined into both free()s: it runs at every reset, in a phase-structured workload at nearly
 * every free. */
static inline __attribute__((always_inline)) void hard_before_reset(struct bump *b, const void *freed)
{
    struct bump_hard *hb = to_hard(b);
    uintptr_t p = hb->chain, upper = b->next; /* [upper, next) is poisoned */
    bool tiled = true;

    for (size_t n = 0; p != 0 && n < hb->nchain; n++) {
        struct bump_hard_hdr *hh = hard_hdr_of((void *)p);
        if (!hard_plausible(b, p)) {
            heap_hard_report(&b->common, HEAP_ERR_CORRUPT_METADATA, (void *)p, 0, 0, NULL, NULL);
            tiled = false;
            break; /* the chain link that led here is not to be trusted */
        }
        if ((const void *)p != freed && (hh->cookie != hard_cookie(b, p, BUMP_DEAD) ||
                                         !hard_sealed_dead(b, p, hh) || hh->hdr.size > hb->hi - p)) {
            hard_report_header(b, p, hh);
            tiled = false;
            break; /* its size and chain link are not to be trusted */
        }
        size_t span = hh->hdr.size < HEAP_POISON_SPAN ? hh->hdr.size : HEAP_POISON_SPAN;
        uintptr_t older = link_get(b, &hh->chain); /* read before the header is poisoned */
        if ((const void *)p != freed) {
            size_t bad = heap_hard_find_unpoisoned((void *)p, 0, span);
            if (bad != span) {
                heap_hard_report(&b->common, HEAP_ERR_USE_AFTER_FREE, (void *)p, 0, bad, NULL, hh->free_site);
                tiled = false;
            }
        }
        if (tiled && p > b->start && p <= upper) { /* a block of the current region */
            uintptr_t prev = link_get(b, &hh->hdr.prev_next);
            if (prev < b->start || prev > p - BUMP_HDR_SIZE || span > upper - p) {
                tiled = false;
            } else {
                heap_hard_fill((void *)prev, p - prev, HEAP_POISON_FREE64); /* padding and header */
                if (upper > p + span)
                    heap_hard_poison((void *)(p + span), upper - (p + span));
                upper = prev;
            }
        }
        p = older;
    }
    if ((!tiled || upper != b->start) && b->next > b->start)
        heap_hard_poison((void *)b->start, b->next - b->start);
    if (b->next > hb->dirty)
        hb->dirty = b->next;
    hb->chain = 0;
    hb->nchain = 0;
}

/* free() of the last block, after next rolled back from end: ptr leaves the chain and the rolled-back
 * range [next, end) joins [next, dirty), poisoned. The front end poisoned ptr's first span before the
 * free (heap_hard.h; the quarantine too, before a block leaves it), so only the padding and header in
 * front of it and its bytes past the span are poisoned here. validate() checked ptr's links. */
static void hard_after_rollback(struct bump *b, void *ptr, uintptr_t end)
{
    struct bump_hard *hb = to_hard(b);
    uintptr_t p = (uintptr_t)ptr;

    hb->chain = link_get(b, &hard_hdr_of(ptr)->chain);
    hb->nchain--;
    heap_hard_fill((void *)b->next, p - b->next, HEAP_POISON_FREE64); /* header and padding: inline */
    if (end - p > HEAP_POISON_SPAN)
        heap_hard_poison((void *)(p + HEAP_POISON_SPAN), end - p - HEAP_POISON_SPAN);
    if (end > hb->dirty)
        hb->dirty = end;
}

/* resize() of the last block ptr to rsize, before next moves: a tail it gives back joins [next, dirty),
 * so it is poisoned like the rest. */
static void hard_poison_tail(struct bump *b, void *ptr, size_t rsize)
{
    struct bump_hard *hb = to_hard(b);
    size_t size = hdr_of(ptr)->size;

    if (rsize < size) {
        heap_hard_poison((void *)((uintptr_t)ptr + rsize), size - rsize);
        if (b->next > hb->dirty)
            hb->dirty = b->next;
    }
}

/* A reset gave back the pages at and above end: their poison is gone, so [next, dirty) stops there. */
static void hard_after_release(struct bump *b)
{
    struct bump_hard *hb = to_hard(b);

    if (hb->dirty > b->end)
        hb->dirty = b->end;
}

/* add_memory(), after the region grew in place to end: the envelope grows with it. */
static void hard_after_extend(struct bump *b)
{
    struct bump_hard *hb = to_hard(b);

    if (b->end > hb->hi)
        hb->hi = b->end;
}

/* add_memory(), after switching to the new region [start, end): the envelope covers it; the chain goes
 * on into it (old dead blocks are verified at the next reset); [next, dirty) restarts empty. */
static void hard_after_new_region(struct bump *b)
{
    struct bump_hard *hb = to_hard(b);

    hb->dirty = b->start;
    if (b->start < hb->lo)
        hb->lo = b->start;
    if (b->end > hb->hi)
        hb->hi = b->end;
}

/* The validate() operation (heap_backend.h): classifies any ptr from the heap's state, reading only
 * memory inside the envelope. */
static enum heap_error bump_validate(struct heap *h, const void *ptr, size_t *usable, const void **free_site)
{
    const struct bump *b = to_bump(h);
    const struct bump_hard *hb = to_chard(b);
    uintptr_t p = (uintptr_t)ptr;
    const struct bump_hard_hdr *hh;

    if (!hard_plausible(b, p))
        return HEAP_ERR_INVALID_FREE;
    hh = hard_hdr_of(ptr);
    if (hh->cookie == hard_cookie(b, p, BUMP_DEAD)) {
        *free_site = hard_sealed_dead(b, p, hh) ? hh->free_site : NULL; /* else check() reports it */
        return HEAP_ERR_DOUBLE_FREE;
    }
    if (hh->cookie != hard_cookie(b, p, BUMP_LIVE)) {
        /* Not a block. [next, dirty) of the current region was freed by a rollback or a reset: a
         * pointer whose header lies there is a stale pointer to a freed block. Anything else -- the
         * inside of a block, the padding in front of one, never-used memory -- is not a block. The
         * answer depends on the heap's state only, never on bytes a user may have stored. */
        if (p - BUMP_HDR_SIZE >= b->next && p < hb->dirty)
            return HEAP_ERR_DOUBLE_FREE;
        return HEAP_ERR_INVALID_FREE;
    }
    if (!hard_sealed(b, p, hh) || hh->hdr.size < HEAP_HARD_TAIL || hh->hdr.size > hb->hi - p || b->live == 0)
        return HEAP_ERR_CORRUPT_METADATA;
    if (p == b->last) {
        uintptr_t prev = link_get(b, &hh->hdr.prev_next);
        if (prev % HEAP_MIN_ALIGN != 0 || prev < b->start || prev > p - BUMP_HDR_SIZE ||
            p + hh->hdr.size != b->next)
            return HEAP_ERR_CORRUPT_FREELIST;
    }
    *usable = hh->hdr.size;
    return HEAP_BLOCK_OK;
}

/* check(), once the plain invariants hold: walks the chain (canaries of live blocks, poison of dead
 * ones), then verifies the start of [next, dirty). Returns the number of problems, each reported. */
static size_t hard_check(const struct bump *b)
{
    const struct bump_hard *hb = to_chard(b);
    size_t bad = 0, n = 0;
    uintptr_t p = hb->chain;

    for (; p != 0 && n < hb->nchain; n++) {
        const struct bump_hard_hdr *hh;
        bool live;
        if (!hard_plausible(b, p)) {
            heap_hard_report(&b->common, HEAP_ERR_CORRUPT_METADATA, (void *)p, 0, 0, NULL, NULL);
            return bad + 1;
        }
        hh = hard_hdr_of((void *)p);
        live = hh->cookie == hard_cookie(b, p, BUMP_LIVE);
        if (!(live ? hard_sealed(b, p, hh) : hard_sealed_dead(b, p, hh)) || hh->hdr.size > hb->hi - p) {
            hard_report_header(b, p, hh);
            return bad + 1;
        }
        if (live) {
            bad += !heap_hard_verify_live(&b->common, (void *)p, hh->hdr.size);
        } else if (hh->cookie == hard_cookie(b, p, BUMP_DEAD)) {
            size_t span = hh->hdr.size < HEAP_POISON_SPAN ? hh->hdr.size : HEAP_POISON_SPAN;
            size_t off = heap_hard_find_unpoisoned((void *)p, 0, span);
            if (off != span) {
                heap_hard_report(&b->common, HEAP_ERR_USE_AFTER_FREE, (void *)p, 0, off, NULL, hh->free_site);
                bad++;
            }
        } else {
            hard_report_header(b, p, hh);
            return bad + 1;
        }
        p = link_get(b, &hh->chain);
    }
    if (p != 0) { /* the chain is longer than nchain: a cycle or a forged link */
        heap_hard_report(&b->common, HEAP_ERR_CORRUPT_METADATA, (void *)p, 0, 0, NULL, NULL);
        bad++;
    }
    if (hb->dirty > b->next) {
        size_t len = hb->dirty - b->next < HEAP_POISON_SPAN ? hb->dirty - b->next : HEAP_POISON_SPAN;
        size_t off = heap_hard_find_unpoisoned((void *)b->next, 0, len);
        if (off != len) {
            heap_hard_report(&b->common, HEAP_ERR_USE_AFTER_FREE, (void *)(b->next + off), 0, 0, NULL, NULL);
            bad++;
        }
    }
    return bad;
}
#else
/* Plain mode: the header and the instance are the plain structs, links are stored as they are,
 * there is no validate() (the front end never asks), and every hook does nothing. */
#define BUMP_HDR_SIZE     sizeof(struct bump_hdr)
#define BUMP_INST_SIZE    sizeof(struct bump)
#define BUMP_OPS_VALIDATE NULL

static inline uintptr_t link_get(const struct bump *b, const uintptr_t *slot)
{
    (void)b;
    return *slot;
}

static inline void link_set(const struct bump *b, uintptr_t *slot, uintptr_t v)
{
    (void)b;
    *slot = v;
}

static inline void hard_init(struct bump *b, uint64_t secret)
{
    (void)b, (void)secret;
}

static inline bool hard_check_reused(struct bump *b, uintptr_t p, size_t rsize)
{
    (void)b, (void)p, (void)rsize;
    return true;
}

static inline void hard_mark_live(struct bump *b, uintptr_t p)
{
    (void)b, (void)p;
}

static inline void hard_reseal(struct bump *b, void *ptr)
{
    (void)b, (void)ptr;
}

static inline void hard_report_state(const struct bump *b)
{
    (void)b;
}

static inline void hard_quarantine(struct bump *b, uintptr_t p, size_t rsize)
{
    (void)b, (void)p, (void)rsize;
}

static inline void hard_mark_dead(struct bump *b, void *ptr)
{
    (void)b, (void)ptr;
}

static inline void hard_before_reset(struct bump *b, const void *freed)
{
    (void)b, (void)freed;
}

static inline void hard_after_rollback(struct bump *b, void *ptr, uintptr_t end)
{
    (void)b, (void)ptr, (void)end;
}

static inline void hard_poison_tail(struct bump *b, void *ptr, size_t rsize)
{
    (void)b, (void)ptr, (void)rsize;
}

static inline void hard_after_release(struct bump *b)
{
    (void)b;
}

static inline void hard_after_extend(struct bump *b)
{
    (void)b;
}

static inline void hard_after_new_region(struct bump *b)
{
    (void)b;
}

static inline size_t hard_check(const struct bump *b)
{
    (void)b;
    return 0;
}
#endif

_Static_assert(BUMP_HDR_SIZE == 16 + 32 * KHEAP_HARDENING, "bump header layout");
_Static_assert(BUMP_HDR_SIZE % HEAP_MIN_ALIGN == 0, "header size must be a multiple of the alignment");

/* The most bytes a region holds: HEAP_MAX_REQUEST (more than any machine has; x86_64 addresses reach
 * 2^57 bytes), so that every block that fits a region is a request the front end accepts and the
 * step needs no range check of its own. */
#define BUMP_REGION_MAX heap_align_down(HEAP_MAX_REQUEST, HEAP_MIN_ALIGN)

/* Returns end, lowered if need be so that [start, end) holds at most BUMP_REGION_MAX bytes. */
static uintptr_t bump_cap_end(uintptr_t start, uintptr_t end)
{
    return end - start > BUMP_REGION_MAX ? start + BUMP_REGION_MAX : end;
}

/* Places the instance at the start of mem; NULL if fewer than one minimum block remains. */
static struct heap *bump_init(void *mem, size_t size, uint64_t secret)
{
    /* Offsets from mem, compared with size before any address is formed (heap_backend.h). */
    size_t lead = heap_pad_to((uintptr_t)mem, HEAP_MIN_ALIGN);
    size_t inst = heap_align_up(BUMP_INST_SIZE, HEAP_MIN_ALIGN);
    uintptr_t base, start, end;
    struct bump *b;

    if (size < lead + inst + BUMP_HDR_SIZE + HEAP_MIN_ALIGN)
        return NULL;
    base = (uintptr_t)mem + lead;
    start = base + inst;
    end = heap_align_down((uintptr_t)mem + size, HEAP_MIN_ALIGN);
    b = (struct bump *)base;
    __builtin_memset(b, 0, BUMP_INST_SIZE);
    b->start = start;
    b->next = start;
    b->end = bump_cap_end(start, end);
    hard_init(b, secret);
    return &b->common;
}

static void *bump_alloc(struct heap *h, size_t size, size_t align, size_t *usable);

/* bump_alloc() found the region too small: if a reset gave its tail back and the request fits in
 * what is left of the region with it, reclaims as much of the tail as the request needs (at least
 * HEAP_TRIM_THRESHOLD more, so that a run of small allocations does not reclaim page by page) and
 * retries; NULL (nothing changed) if nothing was given back, the request would not fit anyway (growth
 * adjacent to the tail reclaims it then: bump_add_memory), or env refuses. */
static __attribute__((noinline)) void *bump_alloc_reclaim(struct bump *b, size_t size, size_t align,
                                                          size_t *usable)
{
    size_t want = BUMP_HDR_SIZE + size + align; /* <= HEAP_MAX_REQUEST + small: no overflow */
    uintptr_t to = heap_page_up_off(b->next, want > HEAP_TRIM_THRESHOLD ? want : HEAP_TRIM_THRESHOLD);

    if (b->rel_end == 0 || want > b->rel_end - b->next)
        return NULL;
    if (to > b->rel_end)
        to = b->rel_end;
    if (!heap_reclaim_pages(&b->common, b->end, to))
        return NULL;
    b->end = to;
    if (to == b->rel_end)
        b->rel_end = 0;
    return bump_alloc(&b->common, size, align, usable);
}

/* A reset, giving memory back: releases the region's whole pages beyond its first
 * HEAP_TRIM_THRESHOLD bytes and lowers end to them. */
static __attribute__((noinline)) void bump_release_tail(struct bump *b)
{
    uintptr_t lo = heap_page_up_off(b->start, HEAP_TRIM_THRESHOLD), hi = heap_page_down(b->end);

    if (lo >= hi || lo <= b->start)
        return;
    heap_release_pages(&b->common, lo, hi);
    if (b->rel_end == 0)
        b->rel_end = b->end;
    b->end = lo;
    hard_after_release(b);
}

/* True if a block of size bytes fits the region's tail after pad bytes of padding in front of its
 * header. size may be any value: one comparison, exact for every size and every address (room is a
 * difference that cannot wrap, and the block then ends at or below end), refuses 0 and every size
 * the tail cannot hold, and the region's cap (bump_cap_end) makes every size it accepts one the
 * front end accepts too. Inlined into alloc() and the step. */
static inline __attribute__((always_inline)) bool bump_fits(const struct bump *b, size_t size, size_t pad)
{
    size_t room; /* after the header and the padding */

    return !__builtin_sub_overflow(b->end - b->next, BUMP_HDR_SIZE + pad, &room) && size - 1 < room;
}

/* Places a block of size bytes after pad bytes of padding at next (bump_fits() said it fits); returns
 * it, or NULL (hardened) if the memory it reuses was found disturbed. */
static inline __attribute__((always_inline)) void *bump_place(struct bump *b, size_t size, size_t pad,
                                                              size_t *usable)
{
    size_t rsize = heap_align_up(size, HEAP_MIN_ALIGN); /* <= the room bump_fits() found */
    uintptr_t p = b->next + BUMP_HDR_SIZE + pad;
    struct bump_hdr *hdr = hdr_of((void *)p);
    bool intact = hard_check_reused(b, p, rsize); /* before the header is written over reused memory */

    link_set(b, &hdr->prev_next, b->next);
    b->next = p + rsize; /* before the size: two plain stores for the header, not one vector store */
    hdr->size = rsize;
    hard_mark_live(b, p);
    b->last = p;
    b->live++;
    *usable = rsize;
    if (!intact) {
        hard_quarantine(b, p, rsize);
        return NULL;
    }
    return (void *)p;
}

/* Returns size bytes aligned to align after next, or NULL if the region's tail is too small. */
static void *bump_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct bump *b = to_bump(h);
    size_t pad = heap_pad_to(b->next + BUMP_HDR_SIZE, align); /* a multiple of 16, < align */

    if (!bump_fits(b, size, pad))
        return NULL;
    return bump_place(b, size, pad, usable);
}

/* alloc() of bump_releasing_ops: bump_alloc(), and if the region is too small although a reset gave
 * its tail back (and no corruption was met), reclaims and retries. */
static void *bump_alloc_releasing(struct heap *h, size_t size, size_t align, size_t *usable)
{
    void *p = bump_alloc(h, size, align, usable);

    if (heap_unlikely(p == NULL) && to_bump(h)->rel_end != 0 && !heap_hard_aborted(h))
        return bump_alloc_reclaim(to_bump(h), size, align, usable);
    return p;
}

/* Counts ptr dead; rolls next back if ptr was the last block, resets the region if none is live
 * (releasing: bump_releasing_ops, giving its tail back). */
static inline __attribute__((always_inline)) size_t bump_free_body(struct heap *h, void *ptr, bool releasing)
{
    struct bump *b = to_bump(h);
    struct bump_hdr *hdr = hdr_of(ptr);
    size_t size = hdr->size;

    hard_mark_dead(b, ptr);
    if (b->live == 1) { /* the last live block: a store of 0, not a decrement the next alloc waits on */
        b->live = 0;
        hard_before_reset(b, ptr);
        b->next = b->start;
        b->last = 0;
        if (releasing)
            bump_release_tail(b);
    } else if (b->live--, (uintptr_t)ptr == b->last) {
        uintptr_t end = b->next;
        b->next = link_get(b, &hdr->prev_next);
        b->last = 0;
        hard_after_rollback(b, ptr, end);
    }
    return size;
}

static size_t bump_free(struct heap *h, void *ptr)
{
    return bump_free_body(h, ptr, false);
}

static size_t bump_free_releasing(struct heap *h, void *ptr)
{
    return bump_free_body(h, ptr, true);
}

/* The step (heap_ops.step_alloc, heap_backend.h): the front end's direct path and bump_alloc() at
 * HEAP_MIN_ALIGN in one function, with no call in between. What does not fit the region's tail (and
 * size 0, and every size no region can hold) takes the front end's path, which validates, grows and
 * (releasing) reclaims. */
static void *bump_step_alloc(struct heap *h, size_t size)
{
    struct bump *b = to_bump(h);
    size_t usable;
    void *p;

    /* next + BUMP_HDR_SIZE is 16-aligned: no padding at HEAP_MIN_ALIGN */
    if (heap_unlikely(!bump_fits(b, size, 0)))
        return heap_alloc_direct(h, size);
    p = bump_place(b, size, 0, &usable); /* never NULL in plain mode, the only one with steps */
    heap_note_alloc(h, usable);
    return p;
}

/* step_free: bump_free() and the front end's counting in one function (ptr NULL: nothing). */
static void bump_step_free(struct heap *h, void *ptr)
{
    if (heap_likely(ptr != NULL))
        heap_note_free(h, bump_free_body(h, ptr, false));
}

static void bump_step_free_releasing(struct heap *h, void *ptr)
{
    if (heap_likely(ptr != NULL))
        heap_note_free(h, bump_free_body(h, ptr, true));
}

/* The last block can grow or shrink by moving next; any block can shrink in place. */
static bool bump_resize(struct heap *h, void *ptr, size_t size)
{
    struct bump *b = to_bump(h);
    struct bump_hdr *hdr = hdr_of(ptr);
    size_t rsize = heap_align_up(size, HEAP_MIN_ALIGN);

    if ((uintptr_t)ptr == b->last) {
        if (rsize > b->end - (uintptr_t)ptr)
            return false;
        hard_poison_tail(b, ptr, rsize);
        hdr->size = rsize;
        hard_reseal(b, ptr);
        b->next = (uintptr_t)ptr + rsize;
        return true;
    }
    if (rsize > hdr->size)
        return false;
    hdr->size = rsize;
    hard_reseal(b, ptr);
    return true;
}

static size_t bump_usable_size(const struct heap *h, const void *ptr)
{
    (void)h;
    return hdr_of(ptr)->size;
}

/* Extends the region if [start, start + len) follows it, else switches to the new region. */
static void bump_add_memory(struct heap *h, void *start, size_t len)
{
    struct bump *b = to_bump(h);
    uintptr_t s = heap_align_up((uintptr_t)start, HEAP_MIN_ALIGN);
    uintptr_t e = heap_align_down((uintptr_t)start + len, HEAP_MIN_ALIGN);

    if (b->rel_end != 0 && (uintptr_t)start == b->rel_end &&
        heap_reclaim_pages(&b->common, b->end, b->rel_end)) {
        b->end = b->rel_end; /* the released tail first, then the new memory after it */
        b->rel_end = 0;
    }
    if ((uintptr_t)start == b->end) {
        b->end = bump_cap_end(b->start, e);
        hard_after_extend(b);
        return;
    }
    if (e <= s)
        return;
    b->start = s;
    b->next = s;
    b->end = bump_cap_end(s, e);
    b->last = 0;
    b->rel_end = 0; /* the old region's released tail is abandoned with it */
    hard_after_new_region(b);
}

static size_t bump_check(const struct heap *h)
{
    const struct bump *b = to_cbump(h);
    size_t bad = 0;

    bad += !(b->start <= b->next && b->next <= b->end && b->end - b->start <= BUMP_REGION_MAX);
    bad += (b->start | b->next | b->end) % HEAP_MIN_ALIGN != 0;
    bad += b->live == 0 && (b->next != b->start || b->last != 0);
    if (b->last != 0) {
        bad += b->last < b->start + BUMP_HDR_SIZE || b->last > b->next;
        bad += b->last % HEAP_MIN_ALIGN != 0;
        if (bad == 0)
            bad += b->last + hdr_of((void *)b->last)->size != b->next;
    }
    if (bad != 0)
        hard_report_state(b);
    else
        bad += hard_check(b);
    return bad;
}

/* walk(): the current region as two spans, consumed [start, next) (objects: live blocks in every
 * region) and free [next, end). Plain headers do not chain blocks, so single blocks are not listed. */
static size_t bump_walk(const struct heap *h, heap_walk_fn fn, void *ctx)
{
    const struct bump *b = to_cbump(h);
    struct heap_walk_entry used = {.addr = (const void *)b->start,
                                   .size = b->next - b->start,
                                   .state = HEAP_WALK_USED,
                                   .objects = (uint32_t)b->live};
    struct heap_walk_entry rest = {
        .addr = (const void *)b->next, .size = b->end - b->next, .state = HEAP_WALK_FREE};
    size_t n = 0;

    if (used.size != 0 && (n++, !fn(ctx, &used)))
        return n;
    if (rest.size != 0) {
        n++;
        fn(ctx, &rest);
    }
    return n;
}

static void bump_release_enable(struct heap *h);

/* The vtable, and its releasing twin (the same but for alloc and free), which release_enable installs:
 * a heap without env.release never tests for giving memory back. */
#define BUMP_OPS(alloc_fn, free_fn, step_free_fn)                                                \
    {                                                                                            \
        .name = "bump", .grow_overhead = BUMP_HDR_SIZE + 2 * HEAP_MIN_ALIGN, .arena = true,      \
        .init = bump_init, .alloc = alloc_fn, .free = free_fn, .resize = bump_resize,            \
        .usable_size = bump_usable_size, .add_memory = bump_add_memory, .check = bump_check,     \
        .validate = BUMP_OPS_VALIDATE, .walk = bump_walk, .release_enable = bump_release_enable, \
        .step_alloc = KHEAP_HARDENING ? NULL : bump_step_alloc,                                  \
        .step_free = KHEAP_HARDENING ? NULL : step_free_fn,                                      \
    }

const struct heap_ops heap_bump_ops = BUMP_OPS(bump_alloc, bump_free, bump_step_free);
static const struct heap_ops bump_releasing_ops =
    BUMP_OPS(bump_alloc_releasing, bump_free_releasing, bump_step_free_releasing);

/* release_enable (heap_backend.h): resets give the region's tail back from now on. */
static void bump_release_enable(struct heap *h)
{
    h->ops = &bump_releasing_ops;
}
