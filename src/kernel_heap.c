#include "kernel_heap.h"

#include <stddef.h>

#include "alloc/heap.h"
#include "alloc/kmalloc.h"
#include "cpu.h"
#include "paging/heap_region.h"
#include "paging/pmm.h"
#include "panic.h"

static uint64_t grow_calls;

uint64_t kernel_heap_grow_calls(void)
{
    return grow_calls;
}

static unsigned long heap_lock(void *ctx)
{
    (void)ctx;
    return irq_save();
}

static void heap_unlock(void *ctx, unsigned long saved)
{
    (void)ctx;
    irq_restore(saved);
}

/* The allocator's "more memory" callback: maps fresh pages at the end of
   the heap region. Asks for KERNEL_HEAP_GROW_MIN_PAGES at least, and for
   exactly what is needed if that much is not available. */
static int heap_grow(void *ctx, size_t min_bytes, void **start, size_t *len)
{
    (void)ctx;
    if (min_bytes > SIZE_MAX - PAGE_SIZE_4K)
        return -1;
    size_t needed = (min_bytes + PAGE_SIZE_4K - 1) / PAGE_SIZE_4K;
    size_t pages = needed < KERNEL_HEAP_GROW_MIN_PAGES ? KERNEL_HEAP_GROW_MIN_PAGES : needed;
    uint64_t at;
    grow_calls++;
    if (heap_region_grow(pages, &at) != PAGING_OK) {
        if (pages == needed || heap_region_grow(needed, &at) != PAGING_OK)
            return -1;
        pages = needed;
    }
    *start = (void *)(uintptr_t)at;
    *len = pages * PAGE_SIZE_4K;
    return 0;
}

void kernel_heap_init(void)
{
    const struct heap_ops *ops = heap_backend_find(kernel_allocator_name);
    if (ops == NULL)
        panic("kernel_heap_init: no allocator backend called \"%s\"", kernel_allocator_name);

    uint64_t cap = kernel_heap_max_config;
    if (cap == 0)
        cap = pmm_stats().free_frames * FRAME_SIZE / 8 * 7;
    heap_region_init(cap);

    uint64_t start;
    enum paging_status st = heap_region_grow(KERNEL_HEAP_INITIAL_PAGES, &start);
    if (st != PAGING_OK)
        panic("kernel_heap_init: cannot map the initial %d heap pages: %s",
              KERNEL_HEAP_INITIAL_PAGES, paging_strerror(st));

    static const struct heap_env env = {
        .ctx = NULL, .lock = heap_lock, .unlock = heap_unlock, .grow = heap_grow,
    };
    struct heap *h = heap_create(ops, (void *)(uintptr_t)start,
                                 KERNEL_HEAP_INITIAL_PAGES * PAGE_SIZE_4K, &env);
    if (h == NULL)
        panic("kernel_heap_init: backend %s refused the initial heap", ops->name);
    kmalloc_init(h);
}
