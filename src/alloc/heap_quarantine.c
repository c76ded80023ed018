/*
 * heap_quarantine.c - the hardened front end's quarantine (heap_quarantine.h has the design: layout
 * of a quarantined block, when blocks leave, what is verified). Everything here runs only when
 * KHEAP_HARDENING=1; the plain build compiles this file to nothing.
 */
#include "heap_backend.h"

#if KHEAP_HARDENING

#define Q_KEY   ((uint64_t)0x7175617261746e65ull) /* keys the words a quarantined block keeps */
#define Q_TAG   ((uint64_t)0x6e69746e61727571ull) /* keys the tag over them */
#define Q_WORDS ((size_t)16)                      /* next and bu at the start of the block */

_Static_assert(Q_WORDS == HEAP_HARD_LINK && HEAP_HARD_TRAILER == 16, "quarantine layout");

static inline uint64_t rotl(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

/* The key of the words block p keeps (next at offset 0, bu at 8, the site at bu - 8). */
static inline uint64_t q_key(const struct heap *h, uintptr_t p)
{
    return heap_hard_key(h->hard.owner->hard.secret ^ Q_KEY, p);
}

/* The tag over p and its three kept words: any change of one of them changes it (the XOR of p and
 * the rotated words is a bijection of each word, key() of it a bijection too). */
static inline uint64_t q_tag(const struct heap *h, uintptr_t p, uint64_t w_next, uint64_t w_bu,
                             uint64_t w_site)
{
    return heap_hard_key(h->hard.owner->hard.secret ^ Q_TAG, p ^ w_next ^ rotl(w_bu, 17) ^ rotl(w_site, 39));
}

static inline uint64_t *q_words(uintptr_t p)
{
    return (uint64_t *)p;
}

/* The tag and site words: where the live block's trailer was. */
static inline uint64_t *q_trailer(uintptr_t p, size_t bu)
{
    return (uint64_t *)(p + bu - HEAP_HARD_TRAILER);
}

/* Writes block p's kept words: next newer block, its size bu, its free site, and their tag. */
static void q_write(const struct heap *h, uintptr_t p, size_t bu, uintptr_t next, const void *site)
{
    uint64_t k = q_key(h, p);
    uint64_t *w = q_words(p), *t = q_trailer(p, bu);

    w[0] = next ^ k;
    w[1] = bu ^ rotl(k, 21);
    t[1] = (uintptr_t)site ^ rotl(k, 42);
    t[0] = q_tag(h, p, w[0], w[1], t[1]);
}

/* What reading a quarantined block found. */
enum q_state {
    Q_OK,       /* the backend vouches for it, its tag matches: next and site are trustworthy */
    Q_DISOWNED, /* the backend's metadata no longer says "a used block of size bu" */
    Q_DAMAGED,  /* the kept words or the tag were written to: a use-after-free write */
};

struct q_block {
    size_t bu;        /* usable size (when the state is OK, or the smaller candidate otherwise) */
    uintptr_t next;   /* OK: the next newer block */
    const void *site; /* OK: where it was freed */
};

/*
 * Reads quarantined block p. Its size has two sources, the word it keeps and the backend's
 * (validate(), which never faults); one corrupted byte changes at most one of them, so only the
 * smaller is ever used to locate the tag: it lies inside the real block either way.
 */
static enum q_state q_read(struct heap *h, uintptr_t p, struct q_block *b)
{
    const void *fsite = NULL;
    size_t bu_b = 0, bu_s;
    uint64_t k = q_key(h, p);
    const uint64_t *w = q_words(p);

    if (h->ops->validate(h, (const void *)p, &bu_b, &fsite) != HEAP_BLOCK_OK)
        return Q_DISOWNED;
    bu_s = (size_t)(w[1] ^ rotl(k, 21));
    if (bu_s != bu_b) {
        /* Either word changed. The tag is looked for with the smaller size only (inside the real
         * block either way); a block damaged in its kept words is retired with the backend's size,
         * the one its check() verifies the retired trailer at. */
        size_t lo = bu_s < bu_b ? bu_s : bu_b;
        bool tag_ok = lo >= Q_WORDS + HEAP_HARD_TRAILER && lo % HEAP_MIN_ALIGN == 0 &&
                      q_trailer(p, lo)[0] == q_tag(h, p, w[0], w[1], q_trailer(p, lo)[1]);
        b->bu = bu_b;
        return tag_ok && bu_s < bu_b ? Q_DISOWNED : Q_DAMAGED;
    }
    b->bu = bu_b;
    if (b->bu < Q_WORDS + HEAP_HARD_TRAILER || b->bu % HEAP_MIN_ALIGN != 0) {
        b->bu = 0; /* no size to retire it with */
        return Q_DAMAGED;
    }
    const uint64_t *t = q_trailer(p, b->bu);
    bool tag_ok = t[0] == q_tag(h, p, w[0], w[1], t[1]);
    if (!tag_ok)
        return Q_DAMAGED;
    b->next = (uintptr_t)(w[0] ^ k);
    b->site = (const void *)(uintptr_t)(t[1] ^ rotl(k, 42));
    return Q_OK;
}

/* Offset of the first byte of quarantined block p (usable bu) that lost the free poison, or 0. */
static size_t q_unpoisoned(uintptr_t p, size_t bu)
{
    size_t span = bu < HEAP_POISON_SPAN ? bu : HEAP_POISON_SPAN;
    size_t to = span < bu - HEAP_HARD_TRAILER ? span : bu - HEAP_HARD_TRAILER;
    size_t bad = heap_hard_find_unpoisoned((const void *)p, Q_WORDS, to);

    return bad == to ? 0 : bad;
}

/* Reports what q_read() or the poison found wrong with block p. */
static void q_report(struct heap *h, enum q_state st, uintptr_t p, size_t offset, const void *site)
{
    heap_hard_report(h, st == Q_DISOWNED ? HEAP_ERR_CORRUPT_METADATA : HEAP_ERR_USE_AFTER_FREE,
                     (const void *)p, 0, offset, NULL, site);
}

/* Forgets every block still queued: they stay used blocks of the backend, never handed out. For a
 * queue whose links can no longer be trusted. */
static void q_give_up(struct heap_quarantine *q)
{
    q->head = q->tail = 0;
    q->bytes = q->blocks = 0;
}

/* Lets the oldest block leave: verified, then freed to the backend (or reported and retired). */
static void q_leave(struct heap *h)
{
    struct heap_quarantine *q = &h->hard.q;
    uintptr_t p = q->head;
    struct q_block b;
    enum q_state st = q_read(h, p, &b);
    size_t bad;

    if (heap_unlikely(st != Q_OK)) {
        q_report(h, st, p, 0, NULL);
        if (st == Q_DAMAGED && b.bu != 0)
            heap_hard_quarantine(h, (void *)p, b.bu); /* a consistent used block, never handed out */
        q_give_up(q);                                 /* its next link is not trustworthy */
        return;
    }
    q->head = b.next;
    if (b.next == 0)
        q->tail = 0;
    q->bytes -= b.bu;
    q->blocks--;
    bad = q_unpoisoned(p, b.bu);
    if (heap_unlikely(bad != 0)) {
        q_report(h, Q_DAMAGED, p, bad, b.site);
        heap_hard_quarantine(h, (void *)p, b.bu);
        return;
    }
    /* Back to the state a freed block has: poison over the words the queue kept. */
    heap_hard_poison((void *)p, Q_WORDS);
    if (b.bu <= HEAP_POISON_SPAN)
        heap_hard_poison(q_trailer(p, b.bu), HEAP_HARD_TRAILER);
    h->ops->free(h, (void *)p);
}

void heap_quarantine_init(struct heap *h, const struct heap_env *env)
{
    struct heap_quarantine *q = &h->hard.q;
    size_t bytes = env != NULL ? env->quarantine_bytes : 0, blocks = env != NULL ? env->quarantine_blocks : 0;

    q_give_up(q);
    if (bytes == HEAP_QUARANTINE_OFF || blocks == HEAP_QUARANTINE_OFF) {
        q->max_bytes = q->max_blocks = 0;
        return;
    }
    q->max_bytes = bytes != 0 ? bytes : HEAP_QUARANTINE_DEFAULT_BYTES;
    q->max_blocks = blocks != 0 ? blocks : HEAP_QUARANTINE_DEFAULT_BLOCKS;
}

bool heap_quarantine_push(struct heap *h, void *ptr, size_t bu, const void *site)
{
    struct heap_quarantine *q = &h->hard.q;
    uintptr_t p = (uintptr_t)ptr;

    if (q->max_blocks == 0 || bu > q->max_bytes || bu < Q_WORDS + HEAP_HARD_TRAILER)
        return false;
    q_write(h, p, bu, 0, site);
    if (q->tail != 0) {
        /* The newest block gets p as its next: verified first, so a write into it is not sealed. */
        struct q_block t;
        enum q_state st = q_read(h, q->tail, &t);
        if (heap_likely(st == Q_OK)) {
            q_write(h, q->tail, t.bu, p, t.site);
        } else {
            q_report(h, st, q->tail, 0, NULL);
            if (st == Q_DAMAGED && t.bu != 0)
                heap_hard_quarantine(h, (void *)q->tail, t.bu);
            q_give_up(q);
        }
    }
    if (q->tail == 0)
        q->head = p;
    q->tail = p;
    q->bytes += bu;
    q->blocks++;
    while (q->blocks > q->max_blocks || q->bytes > q->max_bytes)
        q_leave(h);
    return true;
}

bool heap_quarantine_drain(struct heap *h)
{
    struct heap_quarantine *q = &h->hard.q;
    bool any = q->head != 0;

    while (q->head != 0)
        q_leave(h);
    return any;
}

bool heap_quarantine_holds(const struct heap *h, const void *ptr, size_t bu, const void **free_site)
{
    uintptr_t p = (uintptr_t)ptr;
    uint64_t k = q_key(h, p);
    const uint64_t *w = q_words(p), *t;

    if (bu < Q_WORDS + HEAP_HARD_TRAILER || (size_t)(w[1] ^ rotl(k, 21)) != bu)
        return false;
    t = q_trailer(p, bu);
    if (t[0] != q_tag(h, p, w[0], w[1], t[1]))
        return false;
    if (free_site != NULL)
        *free_site = (const void *)(uintptr_t)(t[1] ^ rotl(k, 42));
    return true;
}

size_t heap_quarantine_check(struct heap *h)
{
    struct heap_quarantine *q = &h->hard.q;
    size_t bad = 0, n = 0, bytes = 0;
    uintptr_t p = q->head, last = 0;

    while (p != 0) {
        struct q_block b;
        enum q_state st = q_read(h, p, &b);
        size_t off;

        if (++n > q->blocks || st != Q_OK) {
            if (st != Q_OK) {
                /* Reported once: p is retired (the backend's check then sees a consistent used
                 * block) and the queue ends before it (its link, and the rest, cannot be trusted). */
                q_report(h, st, p, 0, NULL);
                if (st == Q_DAMAGED && b.bu != 0)
                    heap_hard_quarantine(h, (void *)p, b.bu);
            }
            if (last == 0) {
                q_give_up(q);
            } else {
                struct q_block lb;
                if (q_read(h, last, &lb) == Q_OK)
                    q_write(h, last, lb.bu, 0, lb.site);
                q->tail = last;
                q->blocks = n - 1;
                q->bytes = bytes;
            }
            return bad + 1;
        }
        off = q_unpoisoned(p, b.bu);
        if (off != 0) {
            q_report(h, Q_DAMAGED, p, off, b.site);
            bad++;
        }
        bytes += b.bu;
        last = p;
        p = b.next;
    }
    return bad + (n != q->blocks) + (bytes != q->bytes) + (last != q->tail);
}

#endif /* KHEAP_HARDENING */
