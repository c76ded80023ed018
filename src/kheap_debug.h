/* kheap_debug.h - helpers for the debugger (cmake/gdb/kheap.py); see kheap_debug.c. */
#ifndef KHEAP_KHEAP_DEBUG_H
#define KHEAP_KHEAP_DEBUG_H

#include <stddef.h>
#include <stdint.h>

#include "alloc/heap.h"

#define KHEAP_DEBUG_ENTRIES 256

/* Filled by kheap_debug_walk(): kheap_debug_count entries of the kmalloc heap's walk. */
extern struct heap_walk_entry kheap_debug_entries[KHEAP_DEBUG_ENTRIES];
extern size_t kheap_debug_count;

/* Stores entries skip, skip + 1, ... (at most KHEAP_DEBUG_ENTRIES) of heap_walk() over the kmalloc heap
 * in kheap_debug_entries and their number in kheap_debug_count; returns the total number of entries
 * (0 before kmalloc_init()). Takes the heap lock: call it only while no heap call is in progress. */
size_t kheap_debug_walk(size_t skip);

/* Filled by kheap_debug_block(): the block found and what heap_block_info() says of it. */
struct kheap_debug_block {
    const void *ptr; /* its user pointer; NULL for freed memory whose block start is no longer known */
    struct heap_block_info info;
};
extern struct kheap_debug_block kheap_debug_found;

/* Hardened kernels: finds the block of the kmalloc heap that holds addr, trying the 16-aligned user
 * pointers from addr down to lo (the start of the walk entry that holds addr; at most
 * KHEAP_DEBUG_REACH bytes below addr), and stores it in kheap_debug_found. Returns 1 if a live block
 * holding addr, a freed block, or freed memory was found, 0 if not, -1 in a plain kernel (nothing
 * to tell). Takes the heap lock: call it only while no heap call is in progress. */
int kheap_debug_block(uintptr_t addr, uintptr_t lo);

#define KHEAP_DEBUG_REACH ((uintptr_t)16 << 20)

#endif /* KHEAP_KHEAP_DEBUG_H */
