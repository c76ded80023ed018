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
 *
 * Complexity: every operation is O(1); check() is O(1).
 * Trade-offs: the fastest and simplest backend with zero fragmentation for phase-structured work
 * (allocate a lot, free it all), but a single long-lived block pins the whole region forever and
 * random free patterns never reuse memory. usable_size needs the 16-byte header.
 *
 * Hardened mode (docs/hardening.md): the header grows to 48 bytes and gains a cookie (key(ptr) ^
 * LIVE or DEAD), a `chain` link to the previous block placed since the last reset and the free site;
 * prev_next and chain are stored mangled. The cookie tells a live block from a dead one (double
 * free) and from anything else (invalid free); `lo`/`hi` bound every region ever used, so a pointer
 * outside is rejected without being read. Memory becomes reusable only by rollback or reset, and
 * that is where it is poisoned: rollback poisons the whole rolled-back range, a reset first verifies
 * the poison of every dead block on the chain (use-after-free writes) and then poisons [start, next).
 * [next, dirty) is therefore all poison, and alloc verifies the part of it a new block covers.
 * check() walks the chain: canaries of live blocks, poison of dead ones, and the first span of
 * [next, dirty).
 */
#include "heap_backend.h"

struct bump_hdr {
#if KHEAP_HARDENING
    uint64_t cookie;       /* key(ptr) ^ BUMP_LIVE or BUMP_DEAD */
    uintptr_t chain;       /* user pointer of the previous block since the reset, or 0 (mangled) */
    const void *free_site; /* caller of the free, once dead */
    uint64_t pad;
#endif
    size_t size;         /* usable bytes of the block */
    uintptr_t prev_next; /* next before this block was placed: where a rollback returns (mangled
                          * in hardened mode) */
};

#define BUMP_HDR_SIZE sizeof(struct bump_hdr)
_Static_assert(sizeof(struct bump_hdr) == 16 + 32 * KHEAP_HARDENING, "bump header layout");
_Static_assert(BUMP_HDR_SIZE % HEAP_MIN_ALIGN == 0, "header size must be a multiple of the alignment");

#if KHEAP_HARDENING
#define BUMP_LIVE ((uint64_t)0x4c495645) /* "LIVE" */
#define BUMP_DEAD ((uint64_t)0x44454144) /* "DEAD" */
#endif

struct bump {
    struct heap common; /* first member: struct heap * == struct bump * */
    uintptr_t start;    /* first usable byte of the current region */
    uintptr_t next;     /* first free byte */
    uintptr_t end;      /* one past the last byte of the current region */
    uintptr_t last;     /* user pointer of the most recent live block, or 0 */
    size_t live;        /* live allocations, in every region */
#if KHEAP_HARDENING
    uintptr_t chain;    /* user pointer of the newest block placed since the last reset, or 0 */
    size_t nchain;      /* blocks on the chain (bounds walks over a damaged chain) */
    uintptr_t dirty;    /* [next, dirty) was used before and is all poison */
    uintptr_t lo, hi;   /* envelope of every region this heap was given */
#endif
};

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
    return (struct bump_hdr *)((uintptr_t)ptr - BUMP_HDR_SIZE);
}

/* Places the instance at the start of mem; NULL if fewer than one minimum block remains. */
static struct heap *bump_init(void *mem, size_t size, uint64_t secret)
{
    /* Offsets from mem, compared with size before any address is formed (heap_backend.h). */
    size_t lead = heap_pad_to((uintptr_t)mem, HEAP_MIN_ALIGN);
    size_t inst = heap_align_up(sizeof(struct bump), HEAP_MIN_ALIGN);
    uintptr_t base, start, end;
    struct bump *b;

    if (size < lead + inst + BUMP_HDR_SIZE + HEAP_MIN_ALIGN)
        return NULL;
    base = (uintptr_t)mem + lead;
    start = base + inst;
    end = heap_align_down((uintptr_t)mem + size, HEAP_MIN_ALIGN);
    b = (struct bump *)base;
    __builtin_memset(b, 0, sizeof(*b));
    b->start = start;
    b->next = start;
    b->end = end;
#if KHEAP_HARDENING
    b->common.hard.owner = &b->common;
    b->common.hard.secret = secret;
    b->dirty = start;
    b->lo = start;
    b->hi = end;
#else
    (void)secret;
#endif
    return &b->common;
}

#if KHEAP_HARDENING
static uint64_t cookie(const struct bump *b, uintptr_t p, uint64_t state)
{
    return heap_hard_key(b->common.hard.secret, p) ^ state;
}

static uintptr_t link_get(const struct bump *b, const uint64_t *slot)
{
    return heap_hard_mangle(&b->common, slot, *slot);
}

static void link_set(const struct bump *b, uintptr_t *slot, uintptr_t v)
{
    *slot = heap_hard_mangle(&b->common, slot, v);
}

/* True if p could be a block's user pointer: aligned, header and one byte inside the envelope. */
static bool plausible(const struct bump *b, uintptr_t p)
{
    return p % HEAP_MIN_ALIGN == 0 && p >= b->lo + BUMP_HDR_SIZE && p < b->hi;
}

/* Verifies the dead blocks on the chain (their poison) and poisons [start, next): called when the
 * last live block is freed, before the region is reused from its start. */
static void bump_reset(struct bump *b)
{
    uintptr_t p = b->chain;

    for (size_t n = 0; p != 0 && n < b->nchain; n++) {
        struct bump_hdr *hdr;
        if (!plausible(b, p))
            break;
        hdr = hdr_of((void *)p);
        if (hdr->cookie != cookie(b, p, BUMP_DEAD))
            break;
        if (hdr->size >= b->hi - p)
            break;
        size_t span = hdr->size < HEAP_POISON_SPAN ? hdr->size : HEAP_POISON_SPAN;
        size_t bad = heap_hard_find_unpoisoned((void *)p, 0, span);
        if (bad != span)
            heap_hard_report(&b->common, HEAP_ERR_USE_AFTER_FREE, (void *)p, 0, bad, NULL, hdr->free_site);
        p = link_get(b, &hdr->chain);
    }
    if (b->next > b->start)
        heap_hard_poison((void *)b->start, b->next - b->start);
    if (b->next > b->dirty)
        b->dirty = b->next;
    b->chain = 0;
    b->nchain = 0;
}
#endif

/* Returns size bytes aligned to align after next, or NULL if the region's tail is too small. */
static void *bump_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct bump *b = to_bump(h);
    size_t rsize = heap_align_up(size, HEAP_MIN_ALIGN);
    size_t room = b->end - b->next;
    size_t pad;
    uintptr_t p;
    struct bump_hdr *hdr;
#if KHEAP_HARDENING
    bool quarantine = false;
#endif

    if (room < BUMP_HDR_SIZE)
        return NULL;
    room -= BUMP_HDR_SIZE;
    pad = heap_pad_to(b->next + BUMP_HDR_SIZE, align);
    if (pad > room || rsize > room - pad)
        return NULL;
    p = b->next + BUMP_HDR_SIZE + pad;
    hdr = hdr_of((void *)p);
#if KHEAP_HARDENING
    if (b->dirty > b->next) {
        /* Reused memory: it must still hold the poison it got at the rollback or reset. */
        uintptr_t to = p + (rsize < HEAP_POISON_SPAN ? rsize : HEAP_POISON_SPAN);
        if (to > b->dirty)
            to = b->dirty;
        size_t bad = heap_hard_find_unpoisoned((void *)b->next, 0, to - b->next);
        if (bad != to - b->next) {
            /* Place the block anyway and keep it out of circulation for good (it stays live, so
             * the region is not reset again), so that the next allocation moves past it. */
            uintptr_t at = b->next + bad;
            heap_hard_report(h, HEAP_ERR_USE_AFTER_FREE, (void *)(at >= p ? p : at), 0,
                             at >= p ? at - p : 0, NULL, NULL);
            h->hard.abort = true;
            quarantine = true;
        }
    }
    hdr->cookie = cookie(b, p, BUMP_LIVE);
    link_set(b, &hdr->chain, b->chain);
    hdr->free_site = NULL;
    hdr->pad = 0;
    b->chain = p;
    b->nchain++;
    link_set(b, &hdr->prev_next, b->next);
#else
    hdr->prev_next = b->next;
#endif
    hdr->size = rsize;
    b->next = p + rsize;
    b->last = p;
    b->live++;
    *usable = rsize;
#if KHEAP_HARDENING
    if (quarantine) {
        heap_hard_quarantine(h, (void *)p, rsize);
        b->last = 0; /* never rolled back */
        return NULL;
    }
#endif
    return (void *)p;
}

/* Counts ptr dead; rolls next back if ptr was the last block, resets the region if none is live. */
static size_t bump_free(struct heap *h, void *ptr)
{
    struct bump *b = to_bump(h);
    size_t size = hdr_of(ptr)->size;

#if KHEAP_HARDENING
    struct bump_hdr *hdr = hdr_of(ptr);
    hdr->cookie = cookie(b, (uintptr_t)ptr, BUMP_DEAD);
    hdr->free_site = h->hard.owner->hard.caller;
    b->live--;
    if (b->live == 0) {
        bump_reset(b);
        b->next = b->start;
        b->last = 0;
    } else if ((uintptr_t)ptr == b->last) {
        uintptr_t prev = link_get(b, &hdr->prev_next);
        uintptr_t end = b->next;
        /* validate() checked prev_next; roll back and poison what becomes free again. */
        b->chain = link_get(b, &hdr->chain);
        b->nchain--;
        b->next = prev;
        b->last = 0;
        heap_hard_poison((void *)prev, end - prev);
        if (end > b->dirty)
            b->dirty = end;
    }
#else
    b->live--;
    if (b->live == 0) {
        b->next = b->start;
        b->last = 0;
    } else if ((uintptr_t)ptr == b->last) {
        b->next = hdr_of(ptr)->prev_next;
        b->last = 0;
    }
#endif
    return size;
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
#if KHEAP_HARDENING
        if (rsize < hdr->size) {
            /* The tail joins [next, dirty): it must be poison like the rest. */
            heap_hard_poison((void *)((uintptr_t)ptr + rsize), hdr->size - rsize);
            if (b->next > b->dirty)
                b->dirty = b->next;
        }
#endif
        hdr->size = rsize;
        b->next = (uintptr_t)ptr + rsize;
        return true;
    }
    if (rsize > hdr->size)
        return false;
    hdr->size = rsize;
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

    if ((uintptr_t)start == b->end) {
        b->end = e;
#if KHEAP_HARDENING
        if (e > b->hi)
            b->hi = e;
#endif
        return;
    }
    if (e <= s)
        return;
    b->start = s;
    b->next = s;
    b->end = e;
    b->last = 0;
#if KHEAP_HARDENING
    /* The chain goes on into the new region; [next, dirty) restarts empty. */
    b->dirty = s;
    if (s < b->lo)
        b->lo = s;
    if (e > b->hi)
        b->hi = e;
#endif
}

#if KHEAP_HARDENING
static enum heap_error bump_validate(struct heap *h, const void *ptr, size_t *usable, const void **free_site)
{
    struct bump *b = to_bump(h);
    uintptr_t p = (uintptr_t)ptr;
    struct bump_hdr *hdr;

    if (!plausible(b, p))
        return HEAP_ERR_INVALID_FREE;
    hdr = hdr_of(ptr);
    if (hdr->cookie == cookie(b, p, BUMP_DEAD)) {
        *free_site = hdr->free_site;
        return HEAP_ERR_DOUBLE_FREE;
    }
    if (hdr->cookie != cookie(b, p, BUMP_LIVE)) {
        /* Not a block. [next, dirty) of the current region was freed by a rollback or a reset: a
         * pointer whose header lies there is a stale pointer to a freed block. Anything else -- the
         * inside of a block, the padding in front of one, never-used memory -- is not a block. The
         * answer depends on the heap's state only, never on bytes a user may have stored. */
        if (p - BUMP_HDR_SIZE >= b->next && p < b->dirty)
            return HEAP_ERR_DOUBLE_FREE;
        return HEAP_ERR_INVALID_FREE;
    }
    if (hdr->size < HEAP_HARD_TAIL || hdr->size > b->hi - p || b->live == 0)
        return HEAP_ERR_CORRUPT_METADATA;
    if (p == b->last) {
        uintptr_t prev = link_get(b, &hdr->prev_next);
        if (prev % HEAP_MIN_ALIGN != 0 || prev < b->start || prev > p - BUMP_HDR_SIZE ||
            p + hdr->size != b->next)
            return HEAP_ERR_CORRUPT_FREELIST;
    }
    *usable = hdr->size;
    return HEAP_BLOCK_OK;
}

/* Walks the chain: canaries of live blocks, poison of dead ones; then the start of [next, dirty). */
static size_t bump_check_hard(const struct bump *b)
{
    size_t bad = 0, n = 0;
    uintptr_t p = b->chain;

    for (; p != 0 && n < b->nchain; n++) {
        const struct bump_hdr *hdr;
        if (!plausible(b, p)) {
            heap_hard_report(&b->common, HEAP_ERR_CORRUPT_METADATA, (void *)p, 0, 0, NULL, NULL);
            return bad + 1;
        }
        hdr = hdr_of((void *)p);
        if (hdr->size > b->hi - p) {
            heap_hard_report(&b->common, HEAP_ERR_CORRUPT_METADATA, (void *)p, 0, 0, NULL, NULL);
            return bad + 1;
        }
        if (hdr->cookie == cookie(b, p, BUMP_LIVE)) {
            bad += !heap_hard_verify_live(&b->common, (void *)p, hdr->size);
        } else if (hdr->cookie == cookie(b, p, BUMP_DEAD)) {
            size_t span = hdr->size < HEAP_POISON_SPAN ? hdr->size : HEAP_POISON_SPAN;
            size_t off = heap_hard_find_unpoisoned((void *)p, 0, span);
            if (off != span) {
                heap_hard_report(&b->common, HEAP_ERR_USE_AFTER_FREE, (void *)p, 0, off, NULL,
                                 hdr->free_site);
                bad++;
            }
        } else {
            heap_hard_report(&b->common, HEAP_ERR_CORRUPT_METADATA, (void *)p, 0, 0, NULL, NULL);
            return bad + 1;
        }
        p = link_get(b, &hdr->chain);
    }
    bad += p != 0; /* the chain is longer than nchain: a cycle or a forged link */
    if (b->dirty > b->next) {
        size_t len = b->dirty - b->next < HEAP_POISON_SPAN ? b->dirty - b->next : HEAP_POISON_SPAN;
        size_t off = heap_hard_find_unpoisoned((void *)b->next, 0, len);
        if (off != len) {
            heap_hard_report(&b->common, HEAP_ERR_USE_AFTER_FREE, (void *)(b->next + off), 0, 0, NULL, NULL);
            bad++;
        }
    }
    return bad;
}
#endif

static size_t bump_check(const struct heap *h)
{
    const struct bump *b = to_cbump(h);
    size_t bad = 0;

    bad += !(b->start <= b->next && b->next <= b->end);
    bad += (b->start | b->next | b->end) % HEAP_MIN_ALIGN != 0;
    bad += b->live == 0 && (b->next != b->start || b->last != 0);
    if (b->last != 0) {
        bad += b->last < b->start + BUMP_HDR_SIZE || b->last > b->next;
        bad += b->last % HEAP_MIN_ALIGN != 0;
        if (bad == 0)
            bad += b->last + hdr_of((void *)b->last)->size != b->next;
    }
#if KHEAP_HARDENING
    if (bad == 0)
        bad += bump_check_hard(b);
#endif
    return bad;
}

const struct heap_ops heap_bump_ops = {
    .name = "bump",
    .grow_overhead = BUMP_HDR_SIZE + 2 * HEAP_MIN_ALIGN,
    .arena = true,
    .init = bump_init,
    .alloc = bump_alloc,
    .free = bump_free,
    .resize = bump_resize,
    .usable_size = bump_usable_size,
    .add_memory = bump_add_memory,
    .check = bump_check,
#if KHEAP_HARDENING
    .validate = bump_validate,
#endif
};
