/*
 * heap_quarantine.h - the hardened front end's quarantine (KHEAP_HARDENING=1; docs/hardening.md,
 * "Quarantine"): freed blocks are held back, first in first out, before the backend gets them, so a
 * double free or a use-after-free write within the window is still caught after other allocations.
 *
 * How it works. heap_free() poisons a block as always, then pushes it here instead of handing it to
 * the backend. To the backend a quarantined block stays a used block; to the user and the statistics
 * it is free (bytes_in_use and live_allocs do not count it). The queue runs through the blocks
 * themselves, and everything it keeps there is authenticated:
 *
 *   p                  p + 16                          p + bu - 16        p + bu
 *   | next ^ kn | bu ^ kb | HEAP_POISON_FREE ...       | tag   | site ^ ks |      (bu = backend usable)
 *
 * next is the block freed after p (0 for the newest), bu the backend's usable size, site the free
 * site; tag is a keyed hash of p and those three words, stored where the live block's trailer was.
 * The rest of the first HEAP_POISON_SPAN bytes keeps the free poison. When the queue is over either
 * limit (bytes, blocks) its oldest block leaves: the backend must still vouch for it (validate: a
 * live block of usable size bu), its tag must match and its poison be intact; only then are the
 * words the queue kept poisoned again and the block freed to the backend. A block that fails is
 * reported (use-after-free write, or corrupted metadata when the backend disowns it) and never
 * freed: it is retired (heap_hard_quarantine(): a consistent used block no user holds). A damaged
 * tag also means its next link cannot be trusted: the rest of the queue is then given up the same
 * way (left used in the backend, never handed out: a leak, never an overlap).
 *
 * A free of a quarantined block finds its live trailer replaced by the tag: heap_hard_accept()'s
 * cold path recognises the tag and reports a double free with the first free's site.
 * heap_check() verifies every quarantined block. The queue is drained (every block verified and
 * freed) before an allocation fails for lack of memory and whenever the last live block is freed,
 * so memory a backend gives back only when it is free (bump's reset, linked_list's and
 * fixed_size_block's release of whole free pages) is given back as without it.
 *
 * Limits come from heap_env.quarantine_bytes / quarantine_blocks (0: the defaults below;
 * HEAP_QUARANTINE_OFF in either: no quarantine). A block larger than the byte limit bypasses it.
 */
#ifndef KHEAP_ALLOC_HEAP_QUARANTINE_H
#define KHEAP_ALLOC_HEAP_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default window: at most this many bytes (backend usable sizes) ... */
#define HEAP_QUARANTINE_DEFAULT_BYTES  ((size_t)256 * 1024)
/* ... and at most this many blocks are held back. */
#define HEAP_QUARANTINE_DEFAULT_BLOCKS ((size_t)256)

struct heap_quarantine {
    uintptr_t head, tail; /* oldest and newest quarantined block (user pointers), 0: empty */
    size_t bytes;         /* sum of their backend usable sizes */
    size_t blocks;        /* how many */
    size_t max_bytes;     /* limits; max_blocks == 0: the quarantine is off */
    size_t max_blocks;
};

struct heap;
struct heap_env;

/* Sets up h's quarantine from env's limits (env may be NULL: defaults). */
void heap_quarantine_init(struct heap *h, const struct heap_env *env);

/* Takes freed block p (poisoned over its first span by the caller, backend usable size bu, free
 * site site) into the quarantine, then lets the oldest blocks leave while a limit is exceeded.
 * Returns false if p bypasses the quarantine (off, or bu over the byte limit): the caller frees it
 * to the backend itself. */
bool heap_quarantine_push(struct heap *h, void *p, size_t bu, const void *site);

/* Lets every quarantined block leave (verified, then freed to the backend). Returns true if there
 * was any. */
bool heap_quarantine_drain(struct heap *h);

/* True if p (backend usable size bu, a live block to the backend) is a quarantined block with an
 * intact tag; stores its free site in *free_site if free_site is not NULL. Reads only [p, p + bu). */
bool heap_quarantine_holds(const struct heap *h, const void *p, size_t bu, const void **free_site);

/* heap_check(): verifies every quarantined block (backend's word, tag, poison), reporting each bad
 * one. A block whose kept words or tag were damaged is retired there and the queue ends before it
 * (the rest is given up, as when such a block leaves). Returns the number of broken invariants. */
size_t heap_quarantine_check(struct heap *h);

#endif /* KHEAP_ALLOC_HEAP_QUARANTINE_H */
