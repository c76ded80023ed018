/*
 * ll_block.h - the block header of the linked_list backend, shared by linked_list.c (which tiles
 * regions with blocks) and ll_tree.h/ll_tree.c (whose nodes are the free blocks). The layout, its
 * invariants and why it looks this way are explained in the essay at the top of linked_list.c.
 */
#ifndef KHEAP_ALLOC_LL_BLOCK_H
#define KHEAP_ALLOC_LL_BLOCK_H

#include "heap_backend.h"

#define LL_INUSE      ((size_t)1) /* this block is in use */
#define LL_PREV_INUSE ((size_t)2) /* the block before this one is in use */
#define LL_RELEASED   ((size_t)4) /* free block: the pages in its release record are given back */
#define LL_FLAGS      (LL_INUSE | LL_PREV_INUSE | LL_RELEASED)

/* Hardened mode: a block's cookie is key(block) ^ one of these, so a header that was not written by
 * this heap (or was overwritten) does not pass for a block. */
#define LL_USED ((uint64_t)0x55534544) /* "USED" */
#define LL_FREE ((uint64_t)0x46524545) /* "FREE" */

struct ll_block {
    /* Used block: the size of the previous block, valid only when it is free (boundary tag).
     * Free block: the largest block size in its subtree of the free tree. A free block's predecessor
     * is always in use (coalescing is complete), so its prev_size would never be read. */
    size_t prev_size;
    size_t size; /* this block's size including the header, | flags */
#if KHEAP_HARDENING
    uint64_t cookie;  /* key(block) ^ LL_USED or LL_FREE */
    const void *site; /* free site while free (front-end frees only), else NULL */
#endif
};

/* A free block: a node of the free tree (ll_tree.h), keyed by its address. */
struct ll_free {
    struct ll_block hdr;   /* hdr.prev_size is the subtree maximum */
    struct ll_free *left;  /* lower addresses (a link: mangled in hardened mode) */
    struct ll_free *right; /* higher addresses (a link: mangled in hardened mode) */
};

#define LL_HDR       sizeof(struct ll_block)
#define LL_MIN_BLOCK sizeof(struct ll_free)

_Static_assert(sizeof(struct ll_block) == 16 + 16 * KHEAP_HARDENING, "header keeps pointers 16-aligned");
_Static_assert(sizeof(struct ll_free) == 32 + 16 * KHEAP_HARDENING, "minimum block is 32 (48) bytes");
_Static_assert(offsetof(struct ll_block, prev_size) == 0, "the subtree maximum reuses prev_size");
_Static_assert(LL_FLAGS < HEAP_MIN_ALIGN, "flags live in the low bits of 16-aligned sizes");

/* Returns block b's size in bytes, header included (the flags masked off). */
static inline size_t ll_block_size(const struct ll_block *b)
{
    return b->size & ~LL_FLAGS;
}

/* Returns the block header at address addr. */
static inline struct ll_block *ll_block_at(uintptr_t addr)
{
    return (struct ll_block *)addr;
}

/* Returns the block that follows b (a region's last block is followed by its sentinel). */
static inline struct ll_block *ll_next_block(const struct ll_block *b)
{
    return ll_block_at((uintptr_t)b + ll_block_size(b));
}

#if KHEAP_HARDENING
_Static_assert(sizeof(struct ll_free) - sizeof(struct ll_block) == HEAP_HARD_LINK, "links fit the link area");

/* Returns the cookie block b carries in state LL_USED or LL_FREE under the heap's secret. */
static inline uint64_t ll_cookie(uint64_t secret, const struct ll_block *b, uint64_t state)
{
    return heap_hard_key(secret, (uintptr_t)b) ^ state;
}

/* Bytes after a free block's links that stay poisoned (the poison invariant, linked_list.c). */
#define LL_POISON_KEEP HEAP_POISON_SPAN
#else
#define LL_POISON_KEEP ((size_t)0)
#endif

#endif /* KHEAP_ALLOC_LL_BLOCK_H */
