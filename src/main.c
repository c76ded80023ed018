/*
 * kernel_main() of the bootable kernel: what `run` shows. After the boot
 * log (printed by kernel_entry()), it replays the blog's heap demo in C —
 * a boxed value, a growing vector, a reference-counted object — prints the
 * heap statistics and exits QEMU with success.
 */
#include <stdint.h>

#include "alloc/kbox.h"
#include "alloc/kmalloc.h"
#include "alloc/krc.h"
#include "alloc/kvec.h"
#include "kernel.h"
#include "heap_map.h"
#include "kernel_heap.h"
#include "kprintf.h"
#include "panic.h"
#include "qemu.h"

static const char *const static_greeting = "static data lives in the kernel image";

static void demo_box(void)
{
    int local = 7;
    KBOX(int, boxed) = KBOX_NEW(int); /* freed when `boxed` leaves this scope */
    if (boxed == NULL)
        panic("demo_box: out of memory");
    *boxed = 41;
    kprintf("  box: value %d at %p (heap); a local at %p (stack); static data at %p\n", *boxed, (void *)boxed,
            (void *)&local, (const void *)static_greeting);
}

static void demo_vec(void)
{
    struct kvec v = KVEC_INIT(uint64_t);
    for (uint64_t i = 0; i < 1000; i++) {
        if (kvec_push(&v, &i) != 0)
            panic("demo_vec: out of memory at element %llu", (unsigned long long)i);
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < kvec_len(&v); i++)
        sum += *(uint64_t *)kvec_at(&v, i);
    kprintf("  vec: %zu elements (capacity %zu) at %p, sum %llu\n", kvec_len(&v), kvec_cap(&v), v.data,
            (unsigned long long)sum);
    kvec_free(&v);
}

struct shared_thing {
    int value;
};

static void drop_thing(void *obj)
{
    kprintf("  rc: last reference gone, dropping value %d\n", ((struct shared_thing *)obj)->value);
}

static void demo_rc(void)
{
    struct shared_thing *a = krc_new(sizeof(*a), drop_thing);
    if (a == NULL)
        panic("demo_rc: out of memory");
    a->value = 99;
    kprintf("  rc: created %p, count %zu\n", (void *)a, krc_count(a));
    struct shared_thing *b = krc_get(a);
    kprintf("  rc: shared with a second owner, count %zu\n", krc_count(a));
    krc_put(a);
    kprintf("  rc: first owner released, count %zu\n", krc_count(b));
    krc_put(b);
}

static void print_heap_stats(void)
{
    struct heap_stats s = kmalloc_stats();
    kprintf("heap stats: %zu bytes in use, %zu mapped, peak %zu, %zu live; "
            "%llu allocations, %llu frees, %llu failed; grown %llu times; %llu pages given back, %llu "
            "re-mapped; check: %zu problems\n",
            s.bytes_in_use, s.bytes_mapped, s.peak_in_use, s.live_allocs, (unsigned long long)s.total_allocs,
            (unsigned long long)s.total_frees, (unsigned long long)s.failed_allocs,
            (unsigned long long)kernel_heap_grow_calls(), (unsigned long long)s.pages_released,
            (unsigned long long)s.pages_reclaimed, kmalloc_check());
}

_Noreturn void kernel_main(void)
{
    kprintf("heap demo (backend %s):\n", kmalloc_backend_name());
    demo_box();
    demo_vec();
    demo_rc();
    print_heap_stats();
    if (cmdline_has(kernel_boot_info()->cmdline, "kheap.map=1"))
        heap_map_print(kmalloc_heap()); /* for test/preload/heapmap.py: docs/allocators.md */
    if (kmalloc_stats().live_allocs != 0 || kmalloc_check() != 0)
        panic("kernel_main: the demo leaked or broke the heap");
    kprintf("kheap: boot complete, exiting\n");
    qemu_exit(QEMU_EXIT_SUCCESS);
}
