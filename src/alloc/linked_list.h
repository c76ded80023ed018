/*
 * linked_list.h - what a backend that embeds a linked_list heap needs beyond struct heap_ops
 * (fixed_size_block.c uses one as its fallback for large blocks and slabs). Only the embedding
 * backend and linked_list.c include this.
 */
#ifndef KHEAP_ALLOC_LINKED_LIST_H
#define KHEAP_ALLOC_LINKED_LIST_H

#include "heap_backend.h"

/* Lets embedded linked_list heap ll give free pages back through owner's env.release / env.reclaim
 * (counted in owner's statistics); see "Giving memory back" in linked_list.c. It installs ll's
 * releasing vtable in ll->ops: from then on the embedder must allocate and free through ll->ops, not
 * heap_linked_list_ops (whose alloc and free never look for released pages). */
void heap_ll_release_enable(struct heap *ll, struct heap *owner);

#if KHEAP_HARDENING
/* True if address a lies in pages a free block of ll gave back: reading there would fault. Reads
 * nothing at a. */
bool heap_ll_released(const struct heap *ll, uintptr_t a);

/* True if a could be the user pointer of a block of linked_list heap ll (it lies in one of its
 * regions, so reading the 32 bytes before it and a slab header at it is safe). Reads nothing at a. */
bool heap_ll_contains(const struct heap *ll, uintptr_t a);

/* As heap_ll_contains(), and on success stores in [*lo, *hi) the range of user pointers of a's
 * region. Regions are never removed or shrunk, so the range stays valid for the heap's life. */
bool heap_ll_region(const struct heap *ll, uintptr_t a, uintptr_t *lo, uintptr_t *hi);

/* Makes linked_list heap ll report through owner (the embedding heap users see), and skip the
 * canary check in check() for used blocks where internal(owner, user pointer) is true (blocks the
 * owner uses itself, which carry no front-end canary). internal may be NULL: every used block is a
 * front-end block. */
void heap_ll_embed(struct heap *ll, struct heap *owner,
                   bool (*internal)(const struct heap *owner, const void *p));
#endif

#endif /* KHEAP_ALLOC_LINKED_LIST_H */
