/*
 * heap_quarantine.h - the hardened front end's quarantine (KHEAP_HARDENING=1; docs/hardening.md,
 * "Quarantine"): freed blocks are held back, first in first out, before the backend gets them, so a
 * double free or a use-after-free write within the window is still caught after other allocations.
 *
 * How it works. heap_free() poisons a block as always, then pushes it here instead of handing it to
 * the backend. To the backend a quarantined block stays a used block; to the user and the statistics
 * it is free (bytes_in_use and live_allocs do not count it). The queue is a ring of (block, backend
 * usable size) entries outside every block: heap_create() carves it off the start of the memory it
 * was given (quarantine_blocks entries of 16 bytes), before the backend's instance. Only the block's
 * trailer changes when it enters: the live trailer is replaced by a keyed mark,
 *
 *   p                                            p + bu - 16                  p + bu
 *   | HEAP_POISON_FREE over the first span ...   | (Q_MARK ^ k) + s | s |       k = key(p),
 *                                                                               s = site ^ rotl(k, 32)
 *
 * which a live trailer does not pass (the size word less the site word decodes to Q_MARK, larger
 * than any block; a write into either word breaks it). A free,
 * realloc or usable_size of a quarantined block therefore fails the live-trailer test, and
 * heap_hard_accept()'s cold path recognises the mark: a double free, reported with the first free's
 * site. When the ring is full or its bytes would exceed the limit, the oldest block leaves: its mark
 * and its poison (the first span, up to the mark) are verified, the mark is poisoned again (when the
 * span covers it) and the block is freed to the backend, which verifies the poison once more when it
 * reuses the memory, as without a quarantine. A block the backend keeps verified until then
 * (heap_ops.hard_reuse_verified: fixed_size_block's small objects) has only the bytes the backend's
 * free overwrites (HEAP_HARD_KEEP) verified here: each of its poisoned bytes is verified once on its
 * way back to a user, not twice. The backend is not asked about the block again on
 * leave: its free() locates it anyway. A block whose mark or poison was written to is reported (a
 * use-after-free write, naming the first damaged byte) and never freed: it is retired
 * (heap_hard_retire(): a consistent used block no user holds, a leak of one block, never an overlap).
 *
 * heap_check() verifies every quarantined block (the backend vouches for it as a live block of size
 * bu, its mark and poison are intact) and retires a damaged one there, so a damaged block is reported
 * once. The queue is drained (every block verified and freed) before an allocation fails for lack of
 * memory and whenever the last live block is freed, so memory a backend gives back only when it is
 * free (bump's reset, linked_list's and fixed_size_block's release of whole free pages) is given back
 * as without it.
 *
 * Cost: per free, one keyed hash and two stores (the mark) plus a ring store; per leave, one ring
 * load, validate(), the mark and 32 bytes of poison compared, two stores. Memory: the ring (16 bytes per
 * entry, 4 KiB at the default) and up to quarantine_bytes of freed blocks not yet reused. Limits come from
 * heap_env.quarantine_bytes / quarantine_blocks (0: the defaults below; HEAP_QUARANTINE_OFF in
 * either: no quarantine and no ring). An arena backend (bump) has none unless env sets a limit (see
 * q_limits()). A block larger than the byte limit bypasses it, and so does the last live block (the
 * queue is drained right after).
 */
#ifndef KHEAP_ALLOC_HEAP_QUARANTINE_H
#define KHEAP_ALLOC_HEAP_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default window: at most this many bytes (backend usable sizes) ... The byte limit is the one that
 * binds (large blocks fill it long before 256 entries), and it sets how often a double free meets
 * memory handed out again: kheap-inject df_reuse on fixed_size_block, 10,000 trials, 93.8% right at
 * 256 KiB, 96.3% at 320 KiB, 97.5% at 384 KiB, for +0.1% / +0.7% instructions on workload c and no
 * change on a, p, k (docs/hardening.md, "Quarantine window"). */
#define HEAP_QUARANTINE_DEFAULT_BYTES  ((size_t)320 * 1024)
/* ... and at most this many blocks are held back. */
#define HEAP_QUARANTINE_DEFAULT_BLOCKS ((size_t)256)

/* One quarantined block: its user pointer (0: retired by heap_check(), skipped on leave) and its
 * backend usable size. */
struct heap_quarantine_entry {
    uintptr_t p;
    size_t bu;
};

struct heap_quarantine {
    struct heap_quarantine_entry *ring; /* cap entries, NULL when off */
    size_t cap;                         /* = the block limit; 0: the quarantine is off */
    size_t head;                        /* index of the oldest entry */
    size_t blocks;                      /* entries in use, from head on (wrapping) */
    size_t bytes;                       /* sum of their bu, <= max_bytes */
    size_t max_bytes;                   /* byte limit; 0 when off (every block bypasses) */
};

struct heap;
struct heap_env;
struct heap_ops;

/* heap_create(), before the backend's init: takes the ring env asks for a heap of ops (NULL env:
 * the defaults) off the start of [*mem, *mem + *size) and advances *mem / shrinks *size past it
 * (16-aligned). Returns the ring, NULL when the quarantine is off (nothing taken), or sets *size to
 * 0 if the range is too small for it or the entry count overflows (heap_create() then fails). */
struct heap_quarantine_entry *heap_quarantine_reserve(const struct heap_ops *ops, const struct heap_env *env,
                                                      void **mem, size_t *size);

/* Sets up h's quarantine (h->ops set) from env's limits (env may be NULL: defaults) over ring, the
 * memory heap_quarantine_reserve() returned for the same ops and env (NULL: off). */
void heap_quarantine_init(struct heap *h, const struct heap_env *env, struct heap_quarantine_entry *ring);

/* heap_quarantine_push() (heap_hard.h: the free path, inline) would go over a limit with a block of
 * usable size bu (<= the byte limit): lets the oldest blocks leave until it fits. */
void heap_quarantine_make_room(struct heap *h, size_t bu);

/* Lets every quarantined block leave (verified, then freed to the backend). Returns true if there
 * was any. */
bool heap_quarantine_drain(struct heap *h);

/* True if p (backend usable size bu, a live block to the backend) carries the quarantine's mark;
 * stores its free site in *free_site if free_site is not NULL. Reads only [p + bu - 16, p + bu). */
bool heap_quarantine_holds(const struct heap *h, const void *p, size_t bu, const void **free_site);

/* heap_check(): verifies every quarantined block (the backend's word, mark, poison), reporting and
 * retiring each bad one (its entry is emptied: it is reported once). Returns the number of broken
 * invariants. */
size_t heap_quarantine_check(struct heap *h);

#endif /* KHEAP_ALLOC_HEAP_QUARANTINE_H */
