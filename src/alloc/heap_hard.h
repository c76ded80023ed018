/*
 * heap_hard.h - the hardened layer (KHEAP_HARDENING=1; docs/hardening.md).
 *
 * Two parts. The shared part -- poison patterns, the block layout, the keyed hash that mangles links,
 * reports, poison fill and verification -- is what backends use in their own hardened sections. The
 * front end's part is a set of hooks that heap.c calls at fixed points of every operation (accept a
 * pointer before a free, lay out a new block, poison a freed one, ...). In the plain build the hooks
 * are empty static inline stubs and HEAP_HARD_TAIL is 0, so heap.c compiles to the plain allocator
 * and reads as "validate, lock, grow, count". The out-of-line functions are in heap_hard.c.
 *
 * Included by heap_backend.h after struct heap is defined; not for users (heap.h is their header).
 */
#ifndef KHEAP_ALLOC_HEAP_HARD_H
#define KHEAP_ALLOC_HEAP_HARD_H

/* What the hardened layer learned about a live block when it accepted it (plain build: nothing). */
struct heap_hard_block {
    uint64_t k;       /* the block's key (heap_hard_block_key) */
    size_t bu;        /* the backend's usable size */
    size_t req;       /* the size the user asked for */
    const void *site; /* where it was allocated */
};

#if KHEAP_HARDENING
/*
 * Hardened mode, the part shared by every backend (see docs/hardening.md). The front end lays out
 * every block it hands out as
 *
 *   p                      p + req          p + bu - 16        p + bu     (bu = the backend's usable
 *   | user bytes ...       | canary ...     | trailer          |           size, a multiple of 16)
 *                                           { req ^ k, alloc_site ^ rotl(k, 32) }, k = key(p)
 *
 * so the backend is asked for req + HEAP_HARD_TAIL bytes. On free the first min(bu, HEAP_POISON_SPAN)
 * bytes are filled with HEAP_POISON_FREE; a backend may then keep HEAP_HARD_LINK bytes of links at
 * the start of a free block (mangled with heap_hard_mangle) and must verify the rest of that span
 * with heap_hard_verify_free() before handing the memory out again.
 */
#define HEAP_POISON_FREE    ((uint8_t)0x6b) /* free memory (as Linux POISON_FREE) */
#define HEAP_POISON_ALLOC   ((uint8_t)0xa5) /* fresh, uninitialised allocations */
#define HEAP_POISON_FREE64  ((uint64_t)0x6b6b6b6b6b6b6b6bull)
#define HEAP_POISON_ALLOC64 ((uint64_t)0xa5a5a5a5a5a5a5a5ull)
#define HEAP_POISON_SPAN    ((size_t)2048) /* bytes of a block poisoned on free and verified on reuse */
#define HEAP_HARD_TRAILER   ((size_t)16)   /* requested size and allocation site, at the block's end */
#define HEAP_HARD_REDZONE   ((size_t)8)    /* minimum canary bytes after the requested size */
#define HEAP_HARD_TAIL      (HEAP_HARD_REDZONE + HEAP_HARD_TRAILER)
#define HEAP_HARD_CANARY    ((size_t)16) /* at most this many canary bytes (two words) follow req */
#define HEAP_HARD_LINK      ((size_t)16) /* bytes a free block may keep for backend links */
/* What a backend's free() may overwrite of a block of at most heap_ops.hard_reuse_verified usable
 * bytes (fixed_size_block's small objects: its link and free site): the rest of the first span stays
 * as the front end poisoned it and the backend verifies it before the memory is handed out again or
 * overwritten, and in check(). So such a block leaving the quarantine has only these bytes and its
 * mark verified there (heap_quarantine.c); every other block, its whole span. */
#define HEAP_HARD_KEEP      ((size_t)32)

_Static_assert(HEAP_POISON_SPAN % 16 == 0 && HEAP_POISON_SPAN >= 2 * HEAP_HARD_LINK, "poison span");
_Static_assert(HEAP_POISON_FREE != HEAP_POISON_ALLOC && HEAP_POISON_ALLOC != 0, "distinct patterns");
_Static_assert((HEAP_POISON_FREE64 & 0xff) == HEAP_POISON_FREE, "64-bit free poison");
_Static_assert((HEAP_POISON_ALLOC64 & 0xff) == HEAP_POISON_ALLOC, "64-bit alloc poison");

/* A keyed hash of an address: distinct per heap (secret) and per location. */
static inline uint64_t heap_hard_key(uint64_t secret, uintptr_t addr)
{
    uint64_t x = ((uint64_t)addr ^ secret) * 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

/* A keyed checksum of word w stored for the object at addr: any change of w (or a copy of the word to
 * another address) changes it unpredictably for whoever does not know the secret. Seals metadata
 * whose every bit guards memory (a block's size and flags, a rollback link). */
static inline uint64_t heap_hard_seal(uint64_t secret, uintptr_t addr, uint64_t w)
{
    uint64_t x = (heap_hard_key(secret, addr) ^ w) * 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 32);
}

/* Encodes (and decodes: it is an involution) pointer value v stored at slot. */
static inline uintptr_t heap_hard_mangle(const struct heap *h, const void *slot, uintptr_t v)
{
    return v ^ (uintptr_t)heap_hard_key(h->hard.secret, (uintptr_t)slot);
}

/* Reports one error through the owner's env.report (if set) and counts it. */
void heap_hard_report(const struct heap *h, enum heap_error kind, const void *ptr, size_t size, size_t offset,
                      const void *alloc_site, const void *free_site);

/* Fills [p, p + len) with the free poison (len a multiple of 8, p 8-aligned). */
void heap_hard_poison(void *p, size_t len);

/* Returns the offset of the first byte in [p + from, p + to) that is not HEAP_POISON_FREE, or to if
 * there is none (p + from and p + to 8-aligned). */
size_t heap_hard_find_unpoisoned(const void *p, size_t from, size_t to);

/* Verifies that block p (backend usable size bu, freed earlier) still holds the free poison after its
 * first `from` bytes, within HEAP_POISON_SPAN. On a disturbed byte reports a use-after-free write
 * naming p and the offset, sets the owner's abort flag and returns false. */
bool heap_hard_verify_free(struct heap *h, void *p, size_t from, size_t bu);

/* Verifies the canary and trailer of live block p (usable size bu); reports an overflow and returns
 * false if they were disturbed. Used by check(). */
bool heap_hard_verify_live(const struct heap *h, const void *p, size_t bu);

/* Makes block p (usable bu) a consistent live block of size bu - HEAP_HARD_TAIL that no user holds:
 * used by a backend that found p poisoned and keeps it out of circulation for good. */
void heap_hard_retire(struct heap *h, void *p, size_t bu);

/* ---- block layout: user bytes, canary, trailer (see the picture above) ---- */

struct heap_hard_trailer {
    uint64_t req;        /* requested size ^ key(p) */
    uint64_t alloc_site; /* caller ^ rotl(key(p), 32) */
};
_Static_assert(sizeof(struct heap_hard_trailer) == HEAP_HARD_TRAILER, "trailer layout");

static inline struct heap_hard_trailer *heap_hard_trailer_of(const void *p, size_t bu)
{
    return (struct heap_hard_trailer *)((uintptr_t)p + bu - HEAP_HARD_TRAILER);
}

/*
 * One keyed hash per block and operation: the trailer and the canary are all derived from
 * k = key(p) (the size word is req ^ k, the site word site ^ rotl(k, 32), the canary word k's bytes
 * with bits 0-1 set and bit 7 clear). Separate hashes per word would not be stronger -- the key
 * function is invertible, so whoever learns one keyed word of a block learns the secret either way --
 * and each costs a multiply chain on every alloc and free.
 */
static inline uint64_t heap_hard_block_key(const struct heap *h, const void *p)
{
    return heap_hard_key(h->hard.secret, (uintptr_t)p);
}

static inline uint64_t heap_hard_site_key(uint64_t k)
{
    return (k << 32) | (k >> 32);
}

/* The canary byte pattern: bits 0 and 1 set so no byte is ever 0 or 1 (an off-by-one NUL terminator
 * or a stored `true` always changes it; with bit 0 alone, one block in 64 had a canary byte of 1 and
 * missed such a write), bit 7 clear so no byte equals the fresh pattern. */
static inline uint64_t heap_hard_canary_word(uint64_t k)
{
    return ((k >> 8) & 0x7c7c7c7c7c7c7c7cull) | 0x0303030303030303ull;
}
_Static_assert((HEAP_POISON_ALLOC & 0x80) != 0, "the fresh pattern is never a canary byte");

static inline uint64_t heap_hard_load64(const void *a)
{
    uint64_t w;
    __builtin_memcpy(&w, a, 8);
    return w;
}

static inline void heap_hard_store64(void *a, uint64_t w)
{
    __builtin_memcpy(a, &w, 8);
}

/* Fills [p, p + len) with the 64-bit pattern w: whole words inline for the small blocks that dominate
 * (a library memset costs a call and a size dispatch), memset beyond 256 bytes. Two words per
 * iteration; the last two words may overlap words already written, so len need not be a multiple of
 * 8 when it is >= 8; below 8 the bytes are stored singly. */
static inline void heap_hard_fill(void *p, size_t len, uint64_t w)
{
    unsigned char *b = p;

    if (len > 256) {
        __builtin_memset(p, (int)(w & 0xff), len);
    } else if (len >= 16) {
        for (size_t i = 0; i + 16 < len; i += 16) {
            heap_hard_store64(b + i, w);
            heap_hard_store64(b + i + 8, w);
            __asm__("" ::: "memory"); /* keep this a loop of stores, not a call to memset */
        }
        heap_hard_store64(b + len - 16, w);
        heap_hard_store64(b + len - 8, w);
    } else if (len >= 8) {
        heap_hard_store64(b, w);
        heap_hard_store64(b + len - 8, w);
    } else {
        for (size_t i = 0; i < len; i++)
            b[i] = (unsigned char)w;
    }
}

/*
 * The canary is up to HEAP_HARD_CANARY (16) bytes of 8-byte words equal to heap_hard_canary_word()
 * starting at the word that holds byte req: the canary bytes of that word (after the user's) plus the
 * next word. The zone between req and the trailer is >= 8 bytes and ends 8-aligned, so both words
 * always fit. Handling whole words keeps writing and verifying it at a few instructions.
 */

/* Mask of the bytes of the word at req & ~7 that belong to the user (the first req % 8). */
static inline uint64_t heap_hard_user_mask(size_t req)
{
    return ~(~(uint64_t)0 << (8 * (req & 7))); /* 0 when req % 8 == 0 */
}

static inline void heap_hard_canary_write(uint64_t k, void *p, size_t req, size_t bu)
{
    uint64_t cw = heap_hard_canary_word(k);
    size_t first = req & ~(size_t)7, zone_end = bu - HEAP_HARD_TRAILER;
    uint64_t keep = heap_hard_user_mask(req);
    unsigned char *w = (unsigned char *)p + first;

    heap_hard_store64(w, (heap_hard_load64(w) & keep) | (cw & ~keep));
    if (first + 16 <= zone_end)
        heap_hard_store64(w + 8, cw);
}

/* True if live block p's canary (key k, requested size req, usable bu) is intact. */
static inline bool heap_hard_canary_intact(uint64_t k, const void *p, size_t req, size_t bu)
{
    uint64_t cw = heap_hard_canary_word(k);
    size_t first = req & ~(size_t)7;
    const unsigned char *w = (const unsigned char *)p + first;
    uint64_t diff = (heap_hard_load64(w) ^ cw) & ~heap_hard_user_mask(req);

    if (first + 16 <= bu - HEAP_HARD_TRAILER)
        diff |= heap_hard_load64(w + 8) ^ cw;
    return diff == 0;
}

static inline void heap_hard_trailer_write(uint64_t k, void *p, size_t req, size_t bu, const void *site)
{
    struct heap_hard_trailer *t = heap_hard_trailer_of(p, bu);
    t->req = (uint64_t)req ^ k;
    t->alloc_site = (uint64_t)(uintptr_t)site ^ heap_hard_site_key(k);
}

/* Decodes live block p's trailer (key k) into *b; returns false if it is implausible. */
static inline bool heap_hard_trailer_read(uint64_t k, const void *p, size_t bu, struct heap_hard_block *b)
{
    const struct heap_hard_trailer *t = heap_hard_trailer_of(p, bu);
    uint64_t r = t->req ^ k;

    b->bu = bu;
    b->req = (size_t)r;
    b->site = (const void *)(uintptr_t)(t->alloc_site ^ heap_hard_site_key(k));
    return bu >= HEAP_HARD_TAIL && r >= 1 && r <= bu - HEAP_HARD_TAIL;
}

/* Reports the damage found in live block p (key k): out of line and cold, so the check itself needs
 * no registers saved for the report call. Returns false. */
bool heap_hard_live_damaged(const struct heap *h, uint64_t k, const void *p, size_t bu);

/* Verifies live block p's trailer and canary and fills *b; on damage reports an overflow and returns
 * false. */
static inline bool heap_hard_check_live(const struct heap *h, const void *p, size_t bu,
                                        struct heap_hard_block *b)
{
    uint64_t k = heap_hard_block_key(h, p);

    b->k = k;
    if (heap_likely(heap_hard_trailer_read(k, p, bu, b) && heap_hard_canary_intact(k, p, b->req, bu)))
        return true;
    return heap_hard_live_damaged(h, k, p, bu);
}

/* ---- the front end's hooks (heap.c) ---- */

/* The secret for a heap at mem: env's, or one derived from the address (never 0). */
static inline uint64_t heap_hard_secret(const struct heap_env *env, const void *mem)
{
    uint64_t s = env != NULL ? env->secret : 0;
    if (s == 0)
        s = heap_hard_key(0x6b686561702d6861ull, (uintptr_t)mem) | 1;
    return s;
}

/* heap_create(), before the backend's init: takes the quarantine's ring off the start of
 * [*mem, *mem + *size) (heap_quarantine_reserve(); *size 0: too small). Returns the ring or NULL. */
static inline void *heap_hard_reserve(const struct heap_ops *ops, const struct heap_env *env, void **mem,
                                      size_t *size)
{
    return heap_quarantine_reserve(ops, env, mem, size);
}

/* Fills in a new heap's hardened state; its quarantine's limits come from env (may be NULL), its
 * ring is what heap_hard_reserve() returned. */
static inline void heap_hard_init(struct heap *h, uint64_t secret, const struct heap_env *env, void *ring)
{
    h->hard.owner = h;
    h->hard.secret = secret;
    h->hard.caller = NULL;
    h->hard.abort = false;
    heap_quarantine_init(h, env, ring);
}

/* Records the caller of the public call in progress (lock held). */
static inline void heap_hard_set_caller(struct heap *h, const void *caller)
{
    h->hard.caller = caller;
}

/* The caller as the fast path passes it on to a slow path: only hardened reports use it. */
static inline const void *heap_hard_caller(const void *caller)
{
    return caller;
}

/* An allocation starts: no backend has met corruption yet. */
static inline void heap_hard_alloc_begin(struct heap *h)
{
    h->hard.abort = false;
}

/* True if a backend met corruption during this allocation: fail it, do not grow. */
static inline bool heap_hard_aborted(const struct heap *h)
{
    return h->hard.abort;
}

/* The allocation failed: the next one starts clean. */
static inline void heap_hard_alloc_failed(struct heap *h)
{
    h->hard.abort = false;
}

/* Lays out live block p (backend usable size bu) for req user bytes allocated at site: fresh pattern
 * over the user bytes (within the poison span), canary after req, trailer at the end. */
static inline void heap_hard_layout(const struct heap *h, void *p, size_t req, size_t bu, const void *site)
{
    uint64_t k = heap_hard_block_key(h, p);

    heap_hard_fill(p, req < HEAP_POISON_SPAN ? req : HEAP_POISON_SPAN, HEAP_POISON_ALLOC64);
    heap_hard_canary_write(k, p, req, bu);
    heap_hard_trailer_write(k, p, req, bu, site);
}

/* A new block p for req user bytes: laid out, allocated by the caller in progress. Returns the size
 * to count: req. */
static inline size_t heap_hard_new_block(struct heap *h, void *p, size_t req, size_t bu)
{
    heap_hard_layout(h, p, req, bu, h->hard.caller);
    return req;
}

/* Accepts ptr for a free, realloc or usable_size: classifies it (live block, already free, not a
 * block: checked before anything is read through it) and verifies its canary. Fills *b and returns
 * true for a healthy live block; otherwise reports and returns false (leave the block alone). */
static inline bool heap_hard_accept(struct heap *h, void *ptr, struct heap_hard_block *b)
{
    const void *free_site = NULL;
    size_t bu;
    enum heap_error kind = h->ops->validate(h, ptr, &bu, &free_site);

    if (heap_unlikely(kind != HEAP_BLOCK_OK)) {
        heap_hard_report(h, kind, ptr, 0, 0, NULL, free_site);
        return false;
    }
    return heap_hard_check_live(h, ptr, bu, b);
}

/* The bytes the user may use in accepted block ptr: the requested size. */
static inline size_t heap_hard_live_size(const struct heap *h, const void *ptr,
                                         const struct heap_hard_block *b)
{
    (void)h;
    (void)ptr;
    return b->req;
}

/* Accepted block ptr is about to be freed: poison its first span. */
static inline void heap_hard_poison_freed(void *ptr, const struct heap_hard_block *b)
{
    heap_hard_fill(ptr, b->bu < HEAP_POISON_SPAN ? b->bu : HEAP_POISON_SPAN, HEAP_POISON_FREE64);
}

/* ---- the quarantine's fast path (the design, and the rest of it: heap_quarantine.h) ---- */

/* The size word of a quarantined block's mark, decoded: larger than any block, so never a live one's. */
#define HEAP_QUARANTINE_MARK ((uint64_t)0x7175617261746e65ull)
_Static_assert(HEAP_QUARANTINE_MARK > HEAP_MAX_REQUEST, "the mark is no live trailer");

/* Writes block p's mark (key k, usable bu, freed at site) over its trailer: the site word, and the
 * size word bound to it (a write into either breaks the mark). */
static inline void heap_quarantine_mark(uint64_t k, void *p, size_t bu, const void *site)
{
    struct heap_hard_trailer *t = heap_hard_trailer_of(p, bu);

    t->alloc_site = (uint64_t)(uintptr_t)site ^ heap_hard_site_key(k);
    t->req = (HEAP_QUARANTINE_MARK ^ k) + t->alloc_site;
}

/* True if block p (key k, usable bu) carries an intact mark. */
static inline bool heap_quarantine_marked(uint64_t k, const void *p, size_t bu)
{
    const struct heap_hard_trailer *t = heap_hard_trailer_of(p, bu);

    return t->req - t->alloc_site == (HEAP_QUARANTINE_MARK ^ k);
}

/* Takes freed block p (poisoned over its first span, key k, backend usable size bu, freed at site)
 * into the quarantine; the oldest blocks leave first if it would be over a limit. Returns false if p
 * bypasses the quarantine (off: max_bytes 0, or bu over the byte limit): the caller frees it. */
static inline bool heap_quarantine_push(struct heap *h, void *p, uint64_t k, size_t bu, const void *site)
{
    struct heap_quarantine *q = &h->hard.q;
    size_t tail;

    if (heap_unlikely(bu > q->max_bytes))
        return false;
    heap_quarantine_mark(k, p, bu, site);
    if (heap_unlikely(q->blocks == q->cap || bu > q->max_bytes - q->bytes))
        heap_quarantine_make_room(h, bu);
    tail = q->head + q->blocks;
    if (tail >= q->cap)
        tail -= q->cap;
    q->ring[tail].p = (uintptr_t)p;
    q->ring[tail].bu = bu;
    q->blocks++;
    q->bytes += bu;
    return true;
}

/* Frees poisoned block ptr: into the quarantine, or to the backend when it bypasses it (off, too
 * large) or is the last live block (the quarantine would be drained right after, heap_hard_freed()).
 * Returns the backend's usable size. */
static inline size_t heap_hard_free(struct heap *h, void *ptr, const struct heap_hard_block *b)
{
    if (heap_likely(h->counts.total_allocs - h->counts.total_frees > 1) &&
        heap_quarantine_push(h, ptr, b->k, b->bu, h->hard.caller))
        return b->bu;
    return h->ops->free(h, ptr);
}

/* A free was counted: once no user block is live, the quarantine is drained, so that memory a
 * backend gives back only when it is free (bump's reset) is given back as without it. */
static inline void heap_hard_freed(struct heap *h)
{
    if (heap_unlikely(h->counts.total_allocs == h->counts.total_frees) && h->hard.q.blocks != 0)
        heap_quarantine_drain(h);
}

/* An allocation found no memory, even after growth: true if draining the quarantine gave the
 * backend blocks back (then try again). */
static inline bool heap_hard_drained(struct heap *h)
{
    return !h->hard.abort && heap_quarantine_drain(h);
}

/* heap_check(): the front end's own structure, the quarantine. Returns the broken invariants. */
static inline size_t heap_hard_check(struct heap *h)
{
    return heap_quarantine_check(h);
}

/* The size a free counts: the requested size. */
static inline size_t heap_hard_counted(const struct heap_hard_block *b, size_t usable)
{
    (void)usable;
    return b->req;
}

/* Accepted block ptr was resized in place to size user bytes: the bytes beyond the old requested
 * size get the fresh pattern (within the span), then a new canary and trailer (its allocation site
 * kept). Returns the size to count: size. */
static inline size_t heap_hard_resized(struct heap *h, void *ptr, const struct heap_hard_block *b,
                                       size_t size)
{
    size_t nbu = h->ops->usable_size(h, ptr);
    uint64_t k = heap_hard_block_key(h, ptr);

    if (size > b->req) {
        size_t fresh_end = size < HEAP_POISON_SPAN ? size : HEAP_POISON_SPAN;
        if (fresh_end > b->req)
            __builtin_memset((char *)ptr + b->req, HEAP_POISON_ALLOC, fresh_end - b->req);
    }
    heap_hard_canary_write(k, ptr, size, nbu);
    heap_hard_trailer_write(k, ptr, size, nbu, b->site);
    return size;
}

/* heap_block_info(): what the heap knows of ptr, from validate() and the block's trailer, into *info
 * (kind HEAP_PTR_UNKNOWN on entry). Reports nothing. */
static inline void heap_hard_describe(struct heap *h, const void *ptr, struct heap_block_info *info)
{
    const void *free_site = NULL;
    struct heap_hard_block b;
    size_t bu = 0;

    switch (h->ops->validate(h, ptr, &bu, &free_site)) {
    case HEAP_BLOCK_OK:
        if (heap_quarantine_holds(h, ptr, bu, &free_site)) {
            info->kind = HEAP_PTR_FREED; /* freed, held back in the quarantine */
            info->free_site = free_site;
            break;
        }
        if (!heap_hard_trailer_read(heap_hard_block_key(h, ptr), ptr, bu, &b)) {
            info->kind = HEAP_PTR_DAMAGED;
            break;
        }
        info->kind = HEAP_PTR_LIVE;
        info->size = b.req;
        info->usable = bu;
        info->alloc_site = b.site;
        break;
    case HEAP_ERR_DOUBLE_FREE:
        info->kind = HEAP_PTR_FREED;
        info->free_site = free_site;
        break;
    case HEAP_ERR_INVALID_FREE: info->kind = HEAP_PTR_NOT_BLOCK; break;
    default: info->kind = HEAP_PTR_DAMAGED; break;
    }
}

#else /* !KHEAP_HARDENING: the hooks do nothing */

#define HEAP_HARD_TAIL ((size_t)0) /* no canary or trailer after the requested size */

static inline uint64_t heap_hard_secret(const struct heap_env *env, const void *mem)
{
    (void)env;
    (void)mem;
    return 0;
}

static inline void *heap_hard_reserve(const struct heap_ops *ops, const struct heap_env *env, void **mem,
                                      size_t *size)
{
    (void)ops;
    (void)env;
    (void)mem;
    (void)size;
    return NULL;
}

static inline void heap_hard_init(struct heap *h, uint64_t secret, const struct heap_env *env, void *ring)
{
    (void)h;
    (void)secret;
    (void)env;
    (void)ring;
}

static inline void heap_hard_set_caller(struct heap *h, const void *caller)
{
    (void)h;
    (void)caller;
}

/* Plain mode passes no caller on: the fast path need not load its return address for the slow one. */
static inline const void *heap_hard_caller(const void *caller)
{
    (void)caller;
    return NULL;
}

static inline void heap_hard_alloc_begin(struct heap *h)
{
    (void)h;
}

static inline bool heap_hard_aborted(const struct heap *h)
{
    (void)h;
    return false;
}

static inline void heap_hard_alloc_failed(struct heap *h)
{
    (void)h;
}

/* The plain build counts the backend's usable size. */
static inline size_t heap_hard_new_block(struct heap *h, void *p, size_t req, size_t bu)
{
    (void)h;
    (void)p;
    (void)req;
    return bu;
}

static inline bool heap_hard_accept(struct heap *h, void *ptr, struct heap_hard_block *b)
{
    (void)h;
    (void)ptr;
    (void)b;
    return true;
}

static inline size_t heap_hard_live_size(const struct heap *h, const void *ptr,
                                         const struct heap_hard_block *b)
{
    (void)b;
    return h->ops->usable_size(h, ptr);
}

static inline void heap_hard_poison_freed(void *ptr, const struct heap_hard_block *b)
{
    (void)ptr;
    (void)b;
}

static inline size_t heap_hard_counted(const struct heap_hard_block *b, size_t usable)
{
    (void)b;
    return usable;
}

/* The plain free: straight to the backend. */
static inline size_t heap_hard_free(struct heap *h, void *ptr, const struct heap_hard_block *b)
{
    (void)b;
    return h->ops->free(h, ptr);
}

static inline void heap_hard_freed(struct heap *h)
{
    (void)h;
}

static inline bool heap_hard_drained(struct heap *h)
{
    (void)h;
    return false;
}

static inline size_t heap_hard_check(struct heap *h)
{
    (void)h;
    return 0;
}

static inline size_t heap_hard_resized(struct heap *h, void *ptr, const struct heap_hard_block *b,
                                       size_t size)
{
    (void)b;
    (void)size;
    return h->ops->usable_size(h, ptr);
}

/* Plain mode keeps no cookies, trailers or sites: heap_block_info() says HEAP_PTR_UNKNOWN. */
static inline void heap_hard_describe(struct heap *h, const void *ptr, struct heap_block_info *info)
{
    (void)h;
    (void)ptr;
    (void)info;
}

#endif /* KHEAP_HARDENING */

#endif /* KHEAP_ALLOC_HEAP_HARD_H */
