#include "kernel_heap.h"

#include <stddef.h>

#include "alloc/heap.h"
#include "alloc/kmalloc.h"
#include "cpu.h"
#include "kprintf.h"
#include "memlayout.h"
#include "paging/heap_region.h"
#include "paging/pmm.h"
#include "panic.h"
#include "smp.h"
#include "spinlock.h"

/* The kernel heap, behind kmalloc(). */
static struct kernel_heap kernel_heap;

uint64_t kernel_heap_grow_calls(void)
{
    return kernel_heap.grow_calls;
}

struct heap_region *kernel_heap_region(void)
{
    return &kernel_heap.region;
}

static unsigned long heap_lock(void *ctx)
{
    struct kernel_heap *kh = ctx;
    return spin_lock_irqsave(&kh->lock);
}

/* The allocator's "more memory" callback (ctx: the struct kernel_heap):
   maps fresh pages at the end of the heap's region. Asks for
   KERNEL_HEAP_GROW_MIN_PAGES at least, and for exactly what is needed if
   that much is not available. */
static int heap_grow(void *ctx, size_t min_bytes, void **start, size_t *len)
{
    struct kernel_heap *kh = ctx;
    if (min_bytes > SIZE_MAX - PAGE_SIZE)
        return -1;
    size_t needed = (min_bytes + PAGE_SIZE - 1) / PAGE_SIZE;
    size_t pages = needed < KERNEL_HEAP_GROW_MIN_PAGES ? KERNEL_HEAP_GROW_MIN_PAGES : needed;
    uint64_t at;
    kh->grow_calls++;
    if (heap_region_grow(&kh->region, pages, &at) != PAGING_OK) {
        if (pages == needed || heap_region_grow(&kh->region, needed, &at) != PAGING_OK)
            return -1;
        pages = needed;
    }
    *start = (void *)(uintptr_t)at;
    *len = pages * PAGE_SIZE;
    return 0;
}

/* The allocator's "give pages back" callback: unmaps [start, start + len)
   of the heap region (page aligned, mapped: the library guarantees it) and
   frees the frames. */
static void heap_release(void *ctx, void *start, size_t len)
{
    struct kernel_heap *kh = ctx;
    heap_region_release(&kh->region, (uint64_t)(uintptr_t)start, len / PAGE_SIZE);
}

/* The allocator's "pages again" callback: maps fresh zeroed frames at a
   range it gave back; -1 if frames ran out (nothing changed). */
static int heap_reclaim(void *ctx, void *start, size_t len)
{
    struct kernel_heap *kh = ctx;
    return heap_region_reclaim(&kh->region, (uint64_t)(uintptr_t)start, len / PAGE_SIZE) == PAGING_OK ? 0
                                                                                                      : -1;
}

_Static_assert(PAGE_SIZE == HEAP_PAGE_SIZE, "the heap library gives back 4 KiB pages");

/* Hardened heap: a detected error is recorded here, while the library still
   holds the heap lock, and raised by heap_unlock() once the library has
   abandoned the offending operation safely (a bad free ignored, a damaged
   block quarantined). So the panic leaves a consistent heap behind, which
   lets the tests go on after an expected one. Per CPU: the CPU that holds
   a heap's lock (interrupts off) is the one that records and raises. */
static struct heap_report pending_report[SMP_MAX_CPUS];
static bool report_pending[SMP_MAX_CPUS];

static void heap_report(void *ctx, const struct heap_report *r)
{
    (void)ctx;
    unsigned cpu = smp_cpu_index();
    if (!report_pending[cpu]) { /* the first error of an operation is the one to show */
        pending_report[cpu] = *r;
        report_pending[cpu] = true;
    }
}

/* Prints a KASAN-style report, then panics with a one-line summary naming
   the kind of error, the pointer and the faulting call site. */
_Noreturn static void raise_report(const struct heap_report *r)
{
    kprintf("==================================================================\n");
    kprintf("HEAP ERROR: %s on %p (%s backend)\n", heap_error_name(r->kind), r->ptr, r->backend);
    if (r->size != 0)
        kprintf("  block of %zu requested bytes; first bad byte at offset %zu\n", r->size, r->offset);
    else if (r->offset != 0)
        kprintf("  first bad byte at offset %zu\n", r->offset);
    kprintf("  detected in the heap call from %p\n", r->caller);
    if (r->alloc_site != NULL)
        kprintf("  allocated by the call at %p\n", r->alloc_site);
    if (r->free_site != NULL)
        kprintf("  freed by the call at %p\n", r->free_site);
    kprintf("  (addr2line -e <image>.elf <address> gives the source line)\n");
    kprintf("==================================================================\n");
    panic("heap: %s of %p (%zu-byte block, %s backend), call from %p", heap_error_name(r->kind), r->ptr,
          r->size, r->backend, r->caller);
}

static void heap_unlock(void *ctx, unsigned long saved)
{
    struct kernel_heap *kh = ctx;
    unsigned cpu = smp_cpu_index();
    if (report_pending[cpu]) {
        struct heap_report r = pending_report[cpu];
        report_pending[cpu] = false;
        /* Unlocked first: the panic does not return, and the heap must stay
           usable for whoever catches it. Interrupts stay off, as before. */
        spin_unlock(&kh->lock);
        raise_report(&r);
    }
    spin_unlock_irqrestore(&kh->lock, saved);
}

/* Per-CPU caches (heap.h, heap_env.cpu_enter/cpu_exit): the library may
   use this CPU's cache until cpu_exit, so no other heap call may run on
   this CPU meanwhile: interrupts go off here (an interrupt handler's
   kmalloc() would otherwise enter the same cache), and a kernel thread is
   never moved to another CPU (the kernel has no scheduler). No lock is
   taken: that is the point. */
static unsigned heap_cpu_enter(void *ctx, unsigned long *saved)
{
    (void)ctx;
    *saved = irq_save();
    return smp_cpu_index();
}

static void heap_cpu_exit(void *ctx, unsigned long saved)
{
    (void)ctx;
    irq_restore(saved);
}

/* A per-boot secret for the hardened heap's pointer mangling and canaries:
   RDRAND where the CPU has it, mixed with the TSC. */
static uint64_t boot_secret(void)
{
    uint64_t secret = rdtsc() * 0x9e3779b97f4a7c15ull;
    if (cpuid(1, 0).ecx & (1u << 30)) {
        uint64_t r = 0;
        unsigned char ok = 0;
        for (int tries = 0; tries < 10 && !ok; tries++)
            __asm__ volatile("rdrand %0; setc %1" : "=r"(r), "=qm"(ok));
        secret ^= r;
    }
    return secret | 1;
}

static uint64_t secret;

/* Maps initial_pages at the start of kh->region and creates a heap of ops
   there with the kernel's lock, growth, report and secret, per-CPU caches
   for the CPUs online now if flags has KERNEL_HEAP_CPU_CACHES, and
   (hardened) quarantine_blocks as heap_env.quarantine_blocks (0: the
   default window). Returns the heap, or NULL with nothing mapped. */
static struct heap *create_in_region(struct kernel_heap *kh, const struct heap_ops *ops, size_t initial_pages,
                                     unsigned flags, size_t quarantine_blocks)
{
    uint64_t start;
    spin_init(&kh->lock, "heap");
    if (heap_region_grow(&kh->region, initial_pages, &start) != PAGING_OK)
        return NULL;
    struct heap_env env = {
        .ctx = kh,
        .lock = heap_lock,
        .unlock = heap_unlock,
        .grow = heap_grow,
        .release = heap_release,
        .reclaim = heap_reclaim,
        .report = heap_report,
        .secret = secret,
        .cpu_count = (flags & KERNEL_HEAP_CPU_CACHES) ? smp_cpu_count() : 0,
        .cpu_enter = heap_cpu_enter,
        .cpu_exit = heap_cpu_exit,
        .quarantine_blocks = quarantine_blocks,
    };
    kh->grow_calls = 0;
    kh->heap = heap_create(ops, (void *)(uintptr_t)start, initial_pages * PAGE_SIZE, &env);
    if (kh->heap == NULL)
        heap_region_shrink(&kh->region, initial_pages);
    return kh->heap;
}

void kernel_heap_init(void)
{
    const struct heap_ops *ops = heap_backend_find(kernel_allocator_name);
    if (ops == NULL)
        panic("kernel_heap_init: no allocator backend called \"%s\"", kernel_allocator_name);

    uint64_t cap = kernel_heap_max_config;
    if (cap == 0)
        cap = pmm_stats().free_frames * PAGE_SIZE / 8 * 7;
    if (!heap_region_init(&kernel_heap.region, KERNEL_HEAP_BASE, KERNEL_HEAP_SPAN, cap))
        panic("kernel_heap_init: heap_region_init refused the kernel heap window");

    secret = boot_secret();
    if (create_in_region(&kernel_heap, ops, KERNEL_HEAP_INITIAL_PAGES, KERNEL_HEAP_CPU_CACHES, 0) == NULL)
        panic("kernel_heap_init: cannot map the initial %d heap pages or backend %s refused them",
              KERNEL_HEAP_INITIAL_PAGES, kernel_allocator_name);
    kmalloc_init(kernel_heap.heap);
}

struct heap *kernel_heap_private_create_flags(struct kernel_heap *kh, const char *backend, uint64_t base,
                                              uint64_t span, size_t initial_pages, unsigned flags)
{
    kh->heap = NULL;
    kh->grow_calls = 0;
    const struct heap_ops *ops = heap_backend_find(backend != NULL ? backend : kernel_allocator_name);
    if (ops == NULL || !heap_region_init(&kh->region, base, span, span))
        return NULL;
    /* No quarantine: the tests on private heaps pin down where each backend reuses and gives back
       memory, and what it detects when it does (docs/hardening.md, "Quarantine"). */
    return create_in_region(kh, ops, initial_pages, flags, HEAP_QUARANTINE_OFF);
}

struct heap *kernel_heap_private_create(struct kernel_heap *kh, const char *backend, uint64_t base,
                                        uint64_t span, size_t initial_pages)
{
    return kernel_heap_private_create_flags(kh, backend, base, span, initial_pages, 0);
}

void kernel_heap_private_destroy(struct kernel_heap *kh)
{
    if (kh->heap == NULL)
        return;
    kassert(kh != &kernel_heap);
    unsigned long flags = spin_lock_irqsave(&kh->lock); /* no heap call may be half-way through it */
    heap_region_shrink(&kh->region,
                       (size_t)((heap_region_end(&kh->region) - heap_region_start(&kh->region)) / PAGE_SIZE));
    kh->heap = NULL;
    spin_unlock_irqrestore(&kh->lock, flags);
}
