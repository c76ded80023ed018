/*
 * ll_block.h - the block header of the linked_list backend, shared by linked_list.c (which tiles
 * regions with blocks) and ll_tree.h/ll_tree.c (whose nodes are the free blocks). The layout, its
 * invariants and why it looks this way are explained in the essay at the top of linked_list.c.
 */
#ifndef KHEAP_ALLOC_LL_BLOCK_H
#define KHEAP_ALLOC_LL_BLOCK_H

#include "heap_backend.h"

#define LL_INUSE ((size_t)1) /* this block is in use */
#define LL_PREV_INUSE \
    ((size_t)2) /* the block before this one is in use (clear: free, or quick-listed with a tag) */
#define LL_RELEASED ((size_t)4) /* free block: the pages in its release record are given back */
#define LL_QUICK    ((size_t)8) /* in-use block held by a quick list: free to the user (linked_list.c) */
#define LL_FLAGS    (LL_INUSE | LL_PREV_INUSE | LL_RELEASED | LL_QUICK)

/* Hardened mode: a block's cookie is a keyed checksum of its address and its size word (flags but
 * PREV_INUSE included: ll_cookie), xor one of these, so a header that was not written by this heap,
 * or whose size or own flags were changed, does not pass for a block. */
#define LL_USED ((uint64_t)0x55534544) /* "USED" */
#define LL_FREE ((uint64_t)0x46524545) /* "FREE" */

struct ll_block {
    /* Used block: the size of the previous block, valid only when it is free (boundary tag).
     * Free block: the largest block size in its subtree of the free tree. A free block's predecessor
     * is always in use (coalescing is complete), so its prev_size would never be read. */
    size_t prev_size;
    size_t size; /* this block's size including the header, | flags */
#if KHEAP_HARDENING
    uint64_t cookie;  /* ll_cookie(): seal(block, size & ~LL_PREV_INUSE) ^ LL_USED or LL_FREE */
    const void *site; /* free site while free (front-end frees only), else NULL */
#endif
};

/* A free block: a node of the free tree (ll_tree.h), keyed by its address. */
struct ll_free {
    struct ll_block hdr;   /* hdr.prev_size is the subtree maximum */
    struct ll_free *left;  /* lower addresses (a link: mangled and tagged in hardened mode) */
    struct ll_free *right; /* higher addresses (a link: mangled and tagged in hardened mode) */
#if KHEAP_HARDENING
    /* The poison watermark (linked_list.c, "poison invariant"): [body + LL_KEEP, block + offset) is
     * poison. Low 32 bits: the offset / 16; high 32 bits: a keyed checksum of the offset and the
     * block's address, so a write through a dangling pointer into this word is caught. */
    uint64_t clean;
    uint64_t spare; /* never written: stays poison (keeps the minimum block a multiple of 16) */
#endif
};

#define LL_HDR       sizeof(struct ll_block)
#define LL_MIN_BLOCK sizeof(struct ll_free)
/* Bytes at the start of a free block's body that hold the backend's words (links, watermark). */
#define LL_KEEP      ((size_t)16 + 8 * KHEAP_HARDENING)

_Static_assert(sizeof(struct ll_block) == 16 + 16 * KHEAP_HARDENING, "header keeps pointers 16-aligned");
_Static_assert(sizeof(struct ll_free) == 32 + 32 * KHEAP_HARDENING, "minimum block is 32 (64) bytes");
_Static_assert(LL_KEEP % 8 == 0 && LL_KEEP == 16 + 8 * KHEAP_HARDENING, "kept words: links (+ watermark)");
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
_Static_assert(offsetof(struct ll_free, clean) + 8 == LL_HDR + LL_KEEP, "the watermark follows the links");

/* Returns the cookie block b must carry in state LL_USED or LL_FREE under the heap's secret, given
 * the size word it holds now: a keyed checksum of its address, size and own flags. PREV_INUSE is left
 * out (it describes the neighbour, which changes it without touching b's cookie) and cross-checked
 * against the neighbour's own sealed INUSE flag instead. */
static inline uint64_t ll_cookie(uint64_t secret, const struct ll_block *b, uint64_t state)
{
    return heap_hard_seal(secret, (uintptr_t)b, b->size & ~LL_PREV_INUSE) ^ state;
}

/* Bytes after a free block's links that stay poisoned (the poison invariant, linked_list.c). */
#define LL_POISON_KEEP HEAP_POISON_SPAN
#else
#define LL_POISON_KEEP ((size_t)0)
#endif

#endif /* KHEAP_ALLOC_LL_BLOCK_H */
