/*
 * heap.c - the generic front end shared by every backend.
 *
 * The front end owns everything that is the same for all backends: argument validation (size 0,
 * overflow, alignment), locking, growth on out-of-memory, realloc's move-and-copy fallback and the
 * statistics. Backends only place and release blocks, so they can assume sane arguments (see
 * struct heap_ops in heap.h) and stay small.
 *
 * Growth: when ops->alloc() finds nothing, the front end asks env.grow() for size + align +
 * ops->grow_overhead bytes, hands the region to ops->add_memory() and retries, at most
 * HEAP_GROW_TRIES times. grow() runs with the lock held.
 *
 * Hardened mode (KHEAP_HARDENING=1, docs/hardening.md): the front end asks the backend for
 * HEAP_HARD_TAIL more bytes than requested and lays out every block as user bytes, canary, trailer
 * (heap_backend.h). Before a free or a resize it has the backend classify the pointer
 * (ops->validate: live, already free, not a block) and verifies the canary; then it poisons the
 * block and hands it back. Fresh blocks get HEAP_POISON_ALLOC. Backends verify the poison when they
 * reuse memory and keep their free-list pointers mangled; everything they find goes through
 * heap_hard_report(). A report whose handler returns leaves the offending call without effect: a bad
 * free is ignored, an allocation that met corruption returns NULL (failed_allocs++), and the block
 * involved is never handed out again. Statistics count requested sizes, which is what
 * heap_usable_size() returns in this mode.
 */
#include "heap_backend.h"

static inline unsigned long heap_lock(struct heap *h)
{
    return h->env.lock != NULL ? h->env.lock(h->env.ctx) : 0;
}

static inline void heap_unlock(struct heap *h, unsigned long saved)
{
    if (h->env.unlock != NULL)
        h->env.unlock(h->env.ctx, saved);
}

static inline size_t in_use(const struct heap *h)
{
    return h->counts.bytes_allocated - h->counts.bytes_freed;
}

/* Counts usable more bytes in use (an allocation, or in-place growth) and updates the peak. */
static inline void note_grown(struct heap *h, size_t usable)
{
    struct heap_counters *c = &h->counts;
    c->bytes_allocated += usable;
    if (heap_unlikely(in_use(h) > c->peak_in_use))
        c->peak_in_use = in_use(h);
}

static inline void note_alloc(struct heap *h, size_t usable)
{
    note_grown(h, usable);
    h->counts.total_allocs++;
}

static inline void note_free(struct heap *h, size_t usable)
{
    h->counts.bytes_freed += usable;
    h->counts.total_frees++;
}

static inline void *fail(struct heap *h)
{
    h->counts.failed_allocs++;
    return NULL;
}

/* Asks env.grow() for room for one (size, align) request and adds it; false if none was given. */
static bool grow(struct heap *h, size_t size, size_t align)
{
    size_t want;
    void *start = NULL;
    size_t len = 0;

    if (__builtin_add_overflow(size, align, &want) ||
        __builtin_add_overflow(want, h->ops->grow_overhead, &want))
        return false;
    if (h->env.grow(h->env.ctx, want, &start, &len) != 0 || start == NULL)
        return false;
    heap_clamp_range(start, &len);
    if (len == 0)
        return false;
    h->ops->add_memory(h, start, len);
    h->counts.bytes_mapped += len;
    return true;
}

/* Asks the backend for size bytes at align, growing the heap if needed; NULL if nothing fits (or, in
 * hardened mode, if the backend met corruption). Does not count anything. */
static inline void *backend_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    void *p = h->ops->alloc(h, size, align, usable);

    if (heap_unlikely(p == NULL)) {
        for (int i = 0; i < HEAP_GROW_TRIES && h->env.grow != NULL; i++) {
#if KHEAP_HARDENING
            if (h->hard.abort)
                break;
#endif
            if (!grow(h, size, align))
                break;
            p = h->ops->alloc(h, size, align, usable);
            if (p != NULL)
                break;
        }
    }
    return p;
}

#if KHEAP_HARDENING
/* ---- hardened mode: block layout, poison, reports ---- */

struct hard_trailer {
    uint64_t req;        /* requested size ^ key(p) */
    uint64_t alloc_site; /* caller ^ rotl(key(p), 32) */
};
_Static_assert(sizeof(struct hard_trailer) == HEAP_HARD_TRAILER, "trailer layout");

static struct hard_trailer *trailer_of(const void *p, size_t bu)
{
    return (struct hard_trailer *)((uintptr_t)p + bu - HEAP_HARD_TRAILER);
}

/*
 * One keyed hash per block and operation: the trailer and the canary are all derived from
 * k = key(p) (the size word is req ^ k, the site word site ^ rotl(k, 32), the canary word k's bytes
 * with bit 0 set and bit 7 clear). Separate hashes per word would not be stronger -- the key function
 * is invertible, so whoever learns one keyed word of a block learns the secret either way -- and each
 * costs a multiply chain on every alloc and free.
 */
static inline uint64_t block_key(const struct heap *h, const void *p)
{
    return heap_hard_key(h->hard.secret, (uintptr_t)p);
}

static inline uint64_t site_key(uint64_t k)
{
    return (k << 32) | (k >> 32);
}

/* The canary byte pattern: bits 0 and 1 set so no byte is ever 0 or 1 (an off-by-one NUL terminator
 * or a stored `true` always changes it; with bit 0 alone, one block in 64 had a canary byte of 1 and
 * missed such a write), bit 7 clear so no byte equals the fresh pattern. */
static inline uint64_t canary_word(uint64_t k)
{
    return ((k >> 8) & 0x7c7c7c7c7c7c7c7cull) | 0x0303030303030303ull;
}
_Static_assert((HEAP_POISON_ALLOC & 0x80) != 0, "the fresh pattern is never a canary byte");

/*
 * The canary is up to HEAP_HARD_CANARY (16) bytes of 8-byte words equal to canary_word() starting at
 * the word that holds byte req: the canary bytes of that word (after the user's) plus the next word.
 * The zone between req and the trailer is >= 8 bytes and ends 8-aligned, so both words always fit.
 * Handling whole words keeps writing and verifying it at a few instructions.
 */
static inline uint64_t load64(const void *a)
{
    uint64_t w;
    __builtin_memcpy(&w, a, 8);
    return w;
}

static inline void store64(void *a, uint64_t w)
{
    __builtin_memcpy(a, &w, 8);
}

/* Fills [p, p + len) with the 64-bit pattern w: whole words inline for the small blocks that dominate
 * (a library memset costs a call and a size dispatch), memset beyond 256 bytes. Two words per
 * iteration; the last two words may overlap words already written, so len need not be a multiple of
 * 8 when it is >= 8; below 8 the bytes are stored singly. */
static inline void fill_pattern(void *p, size_t len, uint64_t w)
{
    unsigned char *b = p;

    if (len > 256) {
        __builtin_memset(p, (int)(w & 0xff), len);
    } else if (len >= 16) {
        for (size_t i = 0; i + 16 < len; i += 16) {
            store64(b + i, w);
            store64(b + i + 8, w);
            __asm__("" ::: "memory"); /* keep this a loop of stores, not a call to memset */
        }
        store64(b + len - 16, w);
        store64(b + len - 8, w);
    } else if (len >= 8) {
        store64(b, w);
        store64(b + len - 8, w);
    } else {
        for (size_t i = 0; i < len; i++)
            b[i] = (unsigned char)w;
    }
}

/* Mask of the bytes of the word at req & ~7 that belong to the user (the first req % 8). */
static inline uint64_t user_mask(size_t req)
{
    return ~(~(uint64_t)0 << (8 * (req & 7))); /* 0 when req % 8 == 0 */
}

static inline void canary_write(uint64_t k, void *p, size_t req, size_t bu)
{
    uint64_t cw = canary_word(k);
    size_t first = req & ~(size_t)7, zone_end = bu - HEAP_HARD_TRAILER;
    uint64_t keep = user_mask(req);
    unsigned char *w = (unsigned char *)p + first;

    store64(w, (load64(w) & keep) | (cw & ~keep));
    if (first + 16 <= zone_end)
        store64(w + 8, cw);
}

/* Returns the offset from p of the first disturbed canary byte, or 0 if the canary is intact. */
static inline size_t canary_find_bad(uint64_t k, const void *p, size_t req, size_t bu)
{
    uint64_t cw = canary_word(k);
    size_t first = req & ~(size_t)7, zone_end = bu - HEAP_HARD_TRAILER;
    const unsigned char *w = (const unsigned char *)p + first;
    uint64_t diff = (load64(w) ^ cw) & ~user_mask(req);

    if (diff != 0)
        return first + (size_t)__builtin_ctzll(diff) / 8;
    if (first + 16 <= zone_end && (diff = load64(w + 8) ^ cw) != 0)
        return first + 8 + (size_t)__builtin_ctzll(diff) / 8;
    return 0;
}

static inline void trailer_write(uint64_t k, void *p, size_t req, size_t bu, const void *site)
{
    struct hard_trailer *t = trailer_of(p, bu);
    t->req = (uint64_t)req ^ k;
    t->alloc_site = (uint64_t)(uintptr_t)site ^ site_key(k);
}

/* Lays out live block p: fresh pattern over the user bytes (within the poison span), canary after
 * req, trailer at the end. */
static inline void hard_setup(struct heap *h, void *p, size_t req, size_t bu, const void *site)
{
    uint64_t k = block_key(h, p);

    fill_pattern(p, req < HEAP_POISON_SPAN ? req : HEAP_POISON_SPAN, HEAP_POISON_ALLOC64);
    canary_write(k, p, req, bu);
    trailer_write(k, p, req, bu, site);
}

/* Decodes the requested size of live block p (key k); returns false if the trailer is implausible. */
static inline bool hard_req(uint64_t k, const void *p, size_t bu, size_t *req, const void **site)
{
    const struct hard_trailer *t = trailer_of(p, bu);
    uint64_t r = t->req ^ k;

    *site = (const void *)(uintptr_t)(t->alloc_site ^ site_key(k));
    *req = (size_t)r;
    return bu >= HEAP_HARD_TAIL && r >= 1 && r <= bu - HEAP_HARD_TAIL;
}

/* Reports the damage hard_check_live() found in live block p (key k): out of line, so the check
 * itself needs no registers saved for the report call. Returns false. */
static __attribute__((noinline, cold)) bool hard_live_damaged(const struct heap *h, uint64_t k, const void *p,
                                                              size_t bu)
{
    size_t req;
    const void *site;

    if (!hard_req(k, p, bu, &req, &site)) {
        /* The trailer itself was overwritten: a long overflow (or a wild write). */
        heap_hard_report(h, HEAP_ERR_OVERFLOW, p, 0, bu - HEAP_HARD_TRAILER, NULL, NULL);
        return false;
    }
    heap_hard_report(h, HEAP_ERR_OVERFLOW, p, req, canary_find_bad(k, p, req, bu), site, NULL);
    return false;
}

/* True if live block p's canary (key k, requested size req, usable bu) is intact; the test of
 * canary_find_bad() without locating the byte. */
static inline bool canary_intact(uint64_t k, const void *p, size_t req, size_t bu)
{
    uint64_t cw = canary_word(k);
    size_t first = req & ~(size_t)7;
    const unsigned char *w = (const unsigned char *)p + first;
    uint64_t diff = (load64(w) ^ cw) & ~user_mask(req);

    if (first + 16 <= bu - HEAP_HARD_TRAILER)
        diff |= load64(w + 8) ^ cw;
    return diff == 0;
}

/* Verifies live block p's trailer and canary and stores its requested size in *req; on damage reports
 * an overflow and returns false. */
static inline bool hard_check_live(const struct heap *h, const void *p, size_t bu, size_t *req)
{
    uint64_t k = block_key(h, p);
    uint64_t r = trailer_of(p, bu)->req ^ k;

    *req = (size_t)r;
    if (heap_likely(bu >= HEAP_HARD_TAIL && r >= 1 && r <= bu - HEAP_HARD_TAIL && canary_intact(k, p, r, bu)))
        return true;
    return hard_live_damaged(h, k, p, bu);
}

void heap_hard_report(const struct heap *h, enum heap_error kind, const void *ptr, size_t size,
                      size_t offset, const void *alloc_site, const void *free_site)
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
        fill_pattern(p, len, HEAP_POISON_FREE64);
}

size_t heap_hard_find_unpoisoned(const void *p, size_t from, size_t to)
{
    const unsigned char *b = p;
    size_t i = from;

    /* Two words per step with one branch; the byte-exact offset is located only on a mismatch. */
    for (; i + 16 <= to; i += 16)
        if (heap_unlikely(((load64(b + i) ^ HEAP_POISON_FREE64) | (load64(b + i + 8) ^ HEAP_POISON_FREE64)) != 0))
            break;
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
    size_t req;
    return hard_check_live(h, p, bu, &req);
}

void heap_hard_quarantine(struct heap *h, void *p, size_t bu)
{
    hard_setup(h->hard.owner, p, bu - HEAP_HARD_TAIL, bu, NULL);
}

/* Classifies ptr and verifies its canary. Returns true with *bu / *req if ptr is a healthy live
 * block; otherwise reports and returns false (the caller then leaves the block alone). */
static inline bool hard_accept(struct heap *h, void *ptr, size_t *bu, size_t *req)
{
    const void *free_site = NULL;
    enum heap_error kind = h->ops->validate(h, ptr, bu, &free_site);

    if (heap_unlikely(kind != HEAP_BLOCK_OK)) {
        heap_hard_report(h, kind, ptr, 0, 0, NULL, free_site);
        return false;
    }
    return hard_check_live(h, ptr, *bu, req);
}

/* The rest of a hardened allocation whose first backend call found nothing (or met corruption):
 * grow and retry unless the backend aborted. Out of line, so hard_alloc() saves fewer registers. */
static __attribute__((noinline)) void *hard_alloc_retry(struct heap *h, size_t size, size_t align, size_t *bu)
{
    void *p = NULL;

    for (int i = 0; i < HEAP_GROW_TRIES && h->env.grow != NULL && !h->hard.abort; i++) {
        if (!grow(h, size + HEAP_HARD_TAIL, align))
            break;
        p = h->ops->alloc(h, size + HEAP_HARD_TAIL, align, bu);
        if (p != NULL)
            break;
    }
    if (p == NULL) {
        h->hard.abort = false;
        fail(h);
    }
    return p;
}

/* Hardened allocation of size user bytes (size >= 1, size + align checked by the caller). */
static void *hard_alloc(struct heap *h, size_t size, size_t align)
{
    size_t bu;
    void *p;

    h->hard.abort = false;
    p = h->ops->alloc(h, size + HEAP_HARD_TAIL, align, &bu);
    if (heap_unlikely(p == NULL) && (p = hard_alloc_retry(h, size, align, &bu)) == NULL)
        return NULL;
    hard_setup(h, p, size, bu, h->hard.caller);
    note_alloc(h, size);
    return p;
}

/* Hardened free of a pointer already accepted by hard_accept(). */
static void hard_release(struct heap *h, void *ptr, size_t bu, size_t req)
{
    fill_pattern(ptr, bu < HEAP_POISON_SPAN ? bu : HEAP_POISON_SPAN, HEAP_POISON_FREE64);
    h->ops->free(h, ptr);
    note_free(h, req);
}
#endif /* KHEAP_HARDENING */

/* Allocates with the lock held; align is a power of two >= HEAP_MIN_ALIGN. */
static inline void *alloc_locked(struct heap *h, size_t size, size_t align)
{
    size_t total, usable = 0;
    void *p;

    if (size == 0)
        size = 1;
    if (__builtin_add_overflow(size, align, &total) || total > HEAP_MAX_REQUEST)
        return fail(h);
#if KHEAP_HARDENING
    if (total > HEAP_MAX_REQUEST - HEAP_HARD_TAIL)
        return fail(h);
    return hard_alloc(h, size, align);
#endif
    p = backend_alloc(h, size, align, &usable);
    if (p == NULL)
        return fail(h);
    note_alloc(h, usable);
    return p;
}

static inline void free_locked(struct heap *h, void *ptr)
{
#if KHEAP_HARDENING
    size_t bu, req;
    if (hard_accept(h, ptr, &bu, &req))
        hard_release(h, ptr, bu, req);
#else
    note_free(h, h->ops->free(h, ptr));
#endif
}

/* Records the caller of the public call in progress (hardened mode; lock held). */
static inline void set_caller(struct heap *h, const void *caller)
{
#if KHEAP_HARDENING
    h->hard.caller = caller;
#else
    (void)h;
    (void)caller;
#endif
}

/* The secret for a heap at mem: env's, or one derived from the address (never 0). */
static uint64_t heap_secret(const struct heap_env *env, const void *mem)
{
#if KHEAP_HARDENING
    uint64_t s = env != NULL ? env->secret : 0;
    if (s == 0)
        s = heap_hard_key(0x6b686561702d6861ull, (uintptr_t)mem) | 1;
    return s;
#else
    (void)env;
    (void)mem;
    return 0;
#endif
}

/* Creates a heap of backend ops in [mem, mem + size); NULL if ops is NULL or size is too small. */
struct heap *heap_create(const struct heap_ops *ops, void *mem, size_t size, const struct heap_env *env)
{
    struct heap *h;
    uint64_t secret = heap_secret(env, mem);

    if (ops == NULL || mem == NULL)
        return NULL;
    heap_clamp_range(mem, &size);
    h = ops->init(mem, size, secret);
    if (h == NULL)
        return NULL;
    h->ops = ops;
    if (env != NULL)
        h->env = *env;
    else
        h->env = (struct heap_env){0};
    if (h->env.unlock == NULL)
        h->env.lock = NULL; /* a lock that cannot be released is no lock */
    h->counts = (struct heap_counters){0};
    h->counts.bytes_mapped = size;
#if KHEAP_HARDENING
    h->hard.owner = h;
    h->hard.secret = secret;
    h->hard.caller = NULL;
    h->hard.abort = false;
#endif
    return h;
}

/*
 * The allocation and free entry points. Every public allocation and free goes through alloc_entry() /
 * free_entry(), inlined into each exported function so that a heap_alloc() or kmalloc() is one call
 * plus the backend's. The common case -- plain mode, no lock installed, an ordinary size -- takes the
 * fast path: one range check, the backend call, the statistics. Everything else (a lock to take, size
 * 0, an oversized request, growth, hardened mode) goes to an out-of-line slow path, which keeps the
 * fast path free of register spills.
 */

/* Allocation with everything the fast path skips: lock, validation, growth, hardened mode. */
static __attribute__((noinline)) void *alloc_slow(struct heap *h, size_t size, size_t align, const void *caller)
{
    unsigned long saved = heap_lock(h);
    void *p;

    set_caller(h, caller);
    p = alloc_locked(h, size, align);
    heap_unlock(h, saved);
    return p;
}

#if !KHEAP_HARDENING
/* The rest of an unlocked plain allocation whose first backend call found nothing: grow and retry. */
static __attribute__((noinline)) void *alloc_retry(struct heap *h, size_t size, size_t align)
{
    size_t usable = 0;
    void *p = NULL;

    for (int i = 0; i < HEAP_GROW_TRIES && h->env.grow != NULL && p == NULL; i++) {
        if (!grow(h, size, align))
            break;
        p = h->ops->alloc(h, size, align, &usable);
    }
    if (p == NULL)
        return fail(h);
    note_alloc(h, usable);
    return p;
}
#endif

/* An allocation of size bytes at align (a power of two >= HEAP_MIN_ALIGN). */
static inline __attribute__((always_inline)) void *alloc_entry(struct heap *h, size_t size, size_t align,
                                                               const void *caller)
{
#if !KHEAP_HARDENING
    /* 1 <= size and size + align <= HEAP_MAX_REQUEST, in one unsigned comparison (the align test
     * folds away for the constant HEAP_MIN_ALIGN). */
    if (heap_likely(h->env.lock == NULL && align < HEAP_MAX_REQUEST && size - 1 < HEAP_MAX_REQUEST - align)) {
        size_t usable;
        void *p = h->ops->alloc(h, size, align, &usable);
        if (heap_unlikely(p == NULL))
            return alloc_retry(h, size, align);
        note_alloc(h, usable);
        return p;
    }
#else
    if (heap_likely(h->env.lock == NULL && align < HEAP_MAX_REQUEST &&
                    size - 1 < HEAP_MAX_REQUEST - HEAP_HARD_TAIL - align)) {
        h->hard.caller = caller;
        return hard_alloc(h, size, align);
    }
#endif
    return alloc_slow(h, size, align, caller);
}

/* A free with the lock and hardened mode's checks. */
static __attribute__((noinline)) void free_slow(struct heap *h, void *ptr, const void *caller)
{
    unsigned long saved = heap_lock(h);

    set_caller(h, caller);
    free_locked(h, ptr);
    heap_unlock(h, saved);
}

static inline __attribute__((always_inline)) void free_entry(struct heap *h, void *ptr, const void *caller)
{
    if (ptr == NULL)
        return;
    if (heap_likely(h->env.lock == NULL)) {
        set_caller(h, caller);
        free_locked(h, ptr);
        return;
    }
    free_slow(h, ptr, caller);
}

/* Returns a block of at least size bytes aligned to 16, or NULL. */
void *heap_alloc_from(struct heap *h, size_t size, const void *caller)
{
    return alloc_entry(h, size, HEAP_MIN_ALIGN, caller);
}

/* Returns a block of at least size bytes aligned to align (power of two), or NULL. */
void *heap_alloc_aligned_from(struct heap *h, size_t size, size_t align, const void *caller)
{
    if (heap_unlikely(!heap_is_pow2(align))) {
        unsigned long saved = heap_lock(h);
        void *p = fail(h);
        heap_unlock(h, saved);
        return p;
    }
    return alloc_entry(h, size, align < HEAP_MIN_ALIGN ? HEAP_MIN_ALIGN : align, caller);
}

/* Returns a zeroed block of n * size bytes, or NULL on overflow or out of memory. */
void *heap_calloc_from(struct heap *h, size_t n, size_t size, const void *caller)
{
    unsigned long saved = heap_lock(h);
    size_t bytes;
    void *p;

    set_caller(h, caller);
    if (__builtin_mul_overflow(n, size, &bytes))
        p = fail(h);
    else
        p = alloc_locked(h, bytes, HEAP_MIN_ALIGN);
    if (p != NULL)
        __builtin_memset(p, 0, bytes);
    heap_unlock(h, saved);
    return p;
}

/* C realloc; on failure returns NULL and ptr stays allocated and unchanged. */
void *heap_realloc_from(struct heap *h, void *ptr, size_t size, const void *caller)
{
    unsigned long saved;
    size_t total, old;
    void *p;

    if (ptr == NULL)
        return heap_alloc_from(h, size, caller);
    saved = heap_lock(h);
    set_caller(h, caller);
    if (size == 0)
        size = 1;
    if (__builtin_add_overflow(size, HEAP_MIN_ALIGN, &total) || total > HEAP_MAX_REQUEST) {
        p = fail(h);
        goto out;
    }
#if KHEAP_HARDENING
    {
        size_t bu, req, nbu;
        const void *site;

        if (!hard_accept(h, ptr, &bu, &req)) {
            p = fail(h); /* not a live block, or damaged: leave it alone */
            goto out;
        }
        if (total > HEAP_MAX_REQUEST - HEAP_HARD_TAIL) {
            p = fail(h);
            goto out;
        }
        hard_req(block_key(h, ptr), ptr, bu, &req, &site);
        if (h->ops->resize(h, ptr, size + HEAP_HARD_TAIL)) {
            nbu = h->ops->usable_size(h, ptr);
            /* Keep the bytes the caller had; only the bytes beyond them are "fresh". */
            if (size > req) {
                size_t fresh_end = size < HEAP_POISON_SPAN ? size : HEAP_POISON_SPAN;
                if (fresh_end > req)
                    __builtin_memset((char *)ptr + req, HEAP_POISON_ALLOC, fresh_end - req);
            }
            /* hard_setup() would refill the user bytes: write canary and trailer only. */
            canary_write(block_key(h, ptr), ptr, size, nbu);
            trailer_write(block_key(h, ptr), ptr, size, nbu, site);
            h->counts.bytes_freed += req;
            note_grown(h, size);
            p = ptr;
            goto out;
        }
        p = hard_alloc(h, size, HEAP_MIN_ALIGN);
        if (p != NULL) {
            __builtin_memcpy(p, ptr, req < size ? req : size);
            hard_release(h, ptr, bu, req);
        }
        goto out;
    }
#endif
    old = h->ops->usable_size(h, ptr);
    if (h->ops->resize(h, ptr, size)) {
        h->counts.bytes_freed += old;
        note_grown(h, h->ops->usable_size(h, ptr));
        p = ptr;
        goto out;
    }
    p = alloc_locked(h, size, HEAP_MIN_ALIGN);
    if (p != NULL) {
        __builtin_memcpy(p, ptr, old < size ? old : size);
        free_locked(h, ptr);
    }
out:
    heap_unlock(h, saved);
    return p;
}

/* Frees ptr; NULL does nothing. */
void heap_free_from(struct heap *h, void *ptr, const void *caller)
{
    free_entry(h, ptr, caller);
}

/* The entry points without a caller argument report their own caller. noinline keeps the return
 * address that of the user's call even when the compiler could inline these into each other. The two
 * hot ones inline the entry path themselves rather than calling the _from variant: one call less. */
__attribute__((noinline)) void *heap_alloc(struct heap *h, size_t size)
{
    return alloc_entry(h, size, HEAP_MIN_ALIGN, __builtin_return_address(0));
}

__attribute__((noinline)) void *heap_alloc_aligned(struct heap *h, size_t size, size_t align)
{
    return heap_alloc_aligned_from(h, size, align, __builtin_return_address(0));
}

__attribute__((noinline)) void *heap_calloc(struct heap *h, size_t n, size_t size)
{
    return heap_calloc_from(h, n, size, __builtin_return_address(0));
}

__attribute__((noinline)) void *heap_realloc(struct heap *h, void *ptr, size_t size)
{
    return heap_realloc_from(h, ptr, size, __builtin_return_address(0));
}

__attribute__((noinline)) void heap_free(struct heap *h, void *ptr)
{
    free_entry(h, ptr, __builtin_return_address(0));
}

/* Returns the usable size of ptr's block, 0 for NULL (and, hardened, for a pointer that is not a
 * live block, which is reported). */
size_t heap_usable_size(struct heap *h, const void *ptr)
{
    unsigned long saved;
    size_t n;

    if (ptr == NULL)
        return 0;
    saved = heap_lock(h);
#if KHEAP_HARDENING
    {
        size_t bu;
        set_caller(h, __builtin_return_address(0));
        if (!hard_accept(h, (void *)(uintptr_t)ptr, &bu, &n))
            n = 0;
    }
#else
    n = h->ops->usable_size(h, ptr);
#endif
    heap_unlock(h, saved);
    return n;
}

/* Returns a snapshot of h's counters. */
struct heap_stats heap_stats(struct heap *h)
{
    unsigned long saved = heap_lock(h);
    const struct heap_counters *c = &h->counts;
    struct heap_stats s = {
        .bytes_in_use = in_use(h),
        .bytes_mapped = c->bytes_mapped,
        .peak_in_use = c->peak_in_use,
        .live_allocs = (size_t)(c->total_allocs - c->total_frees),
        .total_allocs = c->total_allocs,
        .total_frees = c->total_frees,
        .failed_allocs = c->failed_allocs,
        .errors_detected = c->errors_detected,
    };
    heap_unlock(h, saved);
    return s;
}

/* Returns the number of broken invariants in the backend plus in the front end's counters. */
size_t heap_check(struct heap *h)
{
    unsigned long saved = heap_lock(h);
    const struct heap_counters *c = &h->counts;
    size_t bytes = in_use(h), live = (size_t)(c->total_allocs - c->total_frees);
    size_t bad;

    set_caller(h, __builtin_return_address(0));
    bad = h->ops->check(h);
    bad += c->total_frees > c->total_allocs; /* more frees than allocations */
    bad += c->peak_in_use < bytes;
    bad += bytes > c->bytes_mapped;          /* also catches more bytes freed than allocated */
    bad += live == 0 && bytes != 0;
    bad += live != 0 && bytes < live;        /* >= 1 byte each */
    heap_unlock(h, saved);
    return bad;
}

/* Returns the name of h's backend. */
bool heap_is_arena(const struct heap *h)
{
    return h->ops->arena;
}

const char *heap_backend_name(const struct heap *h)
{
    return h->ops->name;
}

/* Returns the name of an error kind, for reports. */
const char *heap_error_name(enum heap_error kind)
{
    switch (kind) {
    case HEAP_ERR_DOUBLE_FREE: return "double free";
    case HEAP_ERR_INVALID_FREE: return "invalid free";
    case HEAP_ERR_USE_AFTER_FREE: return "use-after-free write";
    case HEAP_ERR_OVERFLOW: return "heap overflow";
    case HEAP_ERR_CORRUPT_FREELIST: return "corrupted free list";
    case HEAP_ERR_CORRUPT_METADATA: return "corrupted heap metadata";
    case HEAP_ERR_COUNT: break;
    }
    return "unknown heap error";
}

/* Returns the mode the library was compiled in. */
int heap_hardening(void)
{
    return KHEAP_HARDENING;
}
