/* kheap_debug.h - helpers for the debugger (cmake/gdb/kheap.py); see kheap_debug.c. */
#ifndef KHEAP_KHEAP_DEBUG_H
#define KHEAP_KHEAP_DEBUG_H

#include <stddef.h>

#include "alloc/heap.h"

#define KHEAP_DEBUG_ENTRIES 256

/* Filled by kheap_debug_walk(): kheap_debug_count entries of the kmalloc heap's walk. */
extern struct heap_walk_entry kheap_debug_entries[KHEAP_DEBUG_ENTRIES];
extern size_t kheap_debug_count;

/* Stores entries skip, skip + 1, ... (at most KHEAP_DEBUG_ENTRIES) of heap_walk() over the kmalloc heap
 * in kheap_debug_entries and their number in kheap_debug_count; returns the total number of entries
 * (0 before kmalloc_init()). Takes the heap lock: call it only while no heap call is in progress. */
size_t kheap_debug_walk(size_t skip);

#endif /* KHEAP_KHEAP_DEBUG_H */
