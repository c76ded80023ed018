/*
 * kheap_debug.c - what the gdb script (cmake/gdb/kheap.py) calls inside the paused kernel: a walk of
 * the kmalloc heap into a static buffer that gdb reads back, and the search for the block an address
 * belongs to (kheap block). Nothing in the kernel calls these.
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

struct kheap_debug_block kheap_debug_found;

/*
 * Down from addr, the first candidate heap_block_info() knows decides: a live block (found if addr
 * lies inside it), a freed block with its free site. Memory the heap holds as free answers FREED
 * without a site at every candidate inside it; below such a run comes either the start of the free
 * block it belongs to (linked_list: FREED with the site) or something else, and then the block that
 * was freed there is gone (merged, rolled back): freed memory, block unknown.
 */
int kheap_debug_block(uintptr_t addr, uintptr_t lo)
{
    struct heap *h = kmalloc_heap();
    uintptr_t p = addr & ~(uintptr_t)(HEAP_MIN_ALIGN - 1);
    bool in_free = false;

    kheap_debug_found = (struct kheap_debug_block){0};
    if (h == NULL || !heap_hardening())
        return -1;
    if (addr - lo > KHEAP_DEBUG_REACH)
        lo = addr - KHEAP_DEBUG_REACH;
    for (; p >= lo && p != 0; p -= HEAP_MIN_ALIGN) {
        struct heap_block_info b = heap_block_info(h, (const void *)p);
        bool freed_with_site = b.kind == HEAP_PTR_FREED && b.free_site != NULL;
        if (b.kind == HEAP_PTR_FREED && !freed_with_site) {
            in_free = true;
            continue;
        }
        if (in_free && !freed_with_site)
            break;
        if (freed_with_site || b.kind == HEAP_PTR_DAMAGED ||
            (b.kind == HEAP_PTR_LIVE && addr - p < b.usable)) {
            kheap_debug_found = (struct kheap_debug_block){(const void *)p, b};
            return 1;
        }
        if (b.kind == HEAP_PTR_LIVE)
            return 0; /* addr lies past the end of this live block: in padding or a header */
    }
    if (!in_free)
        return 0;
    kheap_debug_found.info.kind = HEAP_PTR_FREED;
    return 1;
}
