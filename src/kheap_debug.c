/*
 * kheap_debug.c - what the gdb script (cmake/gdb/kheap.py) calls inside the paused kernel: a walk of
 * the kmalloc heap into a static buffer that gdb reads back. Nothing in the kernel calls these.
 */
#include "kheap_debug.h"

#include "alloc/kmalloc.h"

struct heap_walk_entry kheap_debug_entries[KHEAP_DEBUG_ENTRIES];
size_t kheap_debug_count;

/* Collects entries [skip, skip + KHEAP_DEBUG_ENTRIES) of the walk. */
struct collect {
    size_t skip;
    size_t seen;
};

static bool collect_entry(void *ctx, const struct heap_walk_entry *e)
{
    struct collect *c = ctx;
    if (c->seen >= c->skip && c->seen - c->skip < KHEAP_DEBUG_ENTRIES)
        kheap_debug_entries[c->seen - c->skip] = *e;
    c->seen++;
    return true;
}

size_t kheap_debug_walk(size_t skip)
{
    struct collect c = {.skip = skip};
    struct heap *h = kmalloc_heap();
    if (h != NULL)
        heap_walk(h, collect_entry, &c);
    kheap_debug_count = c.seen < skip ? 0 : c.seen - skip;
    if (kheap_debug_count > KHEAP_DEBUG_ENTRIES)
        kheap_debug_count = KHEAP_DEBUG_ENTRIES;
    return c.seen;
}
