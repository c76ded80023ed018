/*
 * Kernel heaps: wire src/alloc/ (which knows nothing of the kernel) to a
 * heap region of src/paging/ (which knows nothing of allocators).
 *
 * The kernel heap, behind kmalloc(), starts with KERNEL_HEAP_INITIAL_PAGES
 * mapped at KERNEL_HEAP_BASE and grows at its end, at least
 * KERNEL_HEAP_GROW_MIN_PAGES at a time, up to a cap: KERNEL_HEAP_MAX from
 * CMake, or by default 7/8 of the RAM that was free at boot. The heap lock
 * is a spin lock that also disables interrupts and restores the previous
 * state (spin_lock_irqsave()), so kmalloc() may be called from any CPU and
 * from interrupt handlers on any CPU. With several CPUs online the heap is
 * created with per-CPU caches for them (heap_env.cpu_count =
 * smp_cpu_count(), heap.h; fixed_size_block has them, the other backends
 * and hardened mode ignore them): small blocks then come and go on their
 * CPU without the heap lock, with interrupts off on that CPU meanwhile
 * (cpu_enter = irq_save + smp_cpu_index(), cpu_exit = irq_restore). The
 * heap is created after smp_init(), so cpu_count is every CPU that came
 * up; a CPU started later (smp_start_cpu()) has an index beyond it and the
 * library then takes the heap lock for it.
 *
 * Private heaps (kernel_heap_private_create()) are more of the same in a
 * window of their own (src/memlayout.h): same lock, same hardened-mode
 * report (a panic raised at unlock), same secret, same growth policy; per-CPU
 * caches only when asked for (kernel_heap_private_create_flags()), so a
 * test that inspects a private heap block by block sees no cached objects. A
 * test that damages a heap on purpose uses one, so the kernel heap stays
 * healthy whatever order the tests run in.
 *
 * This file is compiled per image (like src/alloc/), so each image may be
 * built with or without KHEAP_HARDENING.
 */
#ifndef KHEAP_KERNEL_HEAP_H
#define KHEAP_KERNEL_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "paging/heap_region.h"
#include "spinlock.h"

struct heap;

#define KERNEL_HEAP_INITIAL_PAGES  64 /* 256 KiB */
#define KERNEL_HEAP_GROW_MIN_PAGES 16 /* 64 KiB */

/* Name of the backend this image was built with (CMake KERNEL_ALLOCATOR). */
extern const char kernel_allocator_name[];
/* The heap cap in bytes chosen at build time, 0 for the default. */
extern const uint64_t kernel_heap_max_config;

/* True if this image's heap is built with KHEAP_HARDENING (CMake
   KERNEL_HEAP_HARDENING): heap errors are then detected and end in panic(). */
#if KHEAP_HARDENING
#define KERNEL_HEAP_HARDENED 1
#else
#define KERNEL_HEAP_HARDENED 0
#endif

/* Maps the initial heap, creates the heap with the image's backend and
   installs it behind kmalloc(). With KHEAP_HARDENING, heap errors print a
   report and panic. Panics if the backend is unknown or the initial pages
   cannot be mapped. */
void kernel_heap_init(void);
/* Number of times the kernel heap asked its heap region for more memory. */
uint64_t kernel_heap_grow_calls(void);
/* The kernel heap's region (KERNEL_HEAP_BASE): its end, mapped bytes, cap. */
struct heap_region *kernel_heap_region(void);

/* A heap of src/alloc/ wired to a heap region of its own. */
struct kernel_heap {
    struct spinlock lock; /* the heap lock: first in the lock order (spinlock.h) */
    struct heap_region region;
    struct heap *heap;   /* NULL unless created */
    uint64_t grow_calls; /* times the heap asked the region for more memory */
};

/* Creates a private heap in kh: a heap of backend (NULL: the image's,
   kernel_allocator_name) over the window [base, base + span), which only
   this heap may use (a KERNEL_PRIVATE_HEAP_WINDOW_BASE(i) window with
   KERNEL_PRIVATE_HEAP_WINDOW_SPAN, or the TOP_OF_ADDRESS_SPACE_HEAP window);
   initial_pages are mapped now and the heap grows on demand up to the span.
   It shares the kernel heap's lock, hardened-mode report (panic at unlock)
   and secret, without per-CPU caches and without a quarantine (the kernel
   heap has the default one). Returns kh->heap, or NULL with nothing mapped
   if the backend is unknown, heap_region_init() refuses the window,
   initial_pages cannot be mapped or the backend refuses them. Use it with
   heap.h's heap_*() calls; kmalloc() is unaffected. */
struct heap *kernel_heap_private_create(struct kernel_heap *kh, const char *backend, uint64_t base,
                                        uint64_t span, size_t initial_pages);

/* Flag of kernel_heap_private_create_flags(): per-CPU caches for the CPUs
   online now, like the kernel heap's. */
#define KERNEL_HEAP_CPU_CACHES (1u << 0)

/* kernel_heap_private_create() with flags: KERNEL_HEAP_CPU_CACHES gives the
   heap per-CPU caches as the kernel heap has (the benchmark compares heaps
   with and without); 0 is kernel_heap_private_create(). */
struct heap *kernel_heap_private_create_flags(struct kernel_heap *kh, const char *backend, uint64_t base,
                                              uint64_t span, size_t initial_pages, unsigned flags);
/* Destroys a private heap: unmaps every page of its region and frees their
   frames (blocks still allocated simply vanish). The page tables that
   mapped them stay, as after any heap_region_shrink(), so free frames come
   back to their value before create minus at most the tables the window
   needed. The window's pages fault afterwards. kh->heap becomes NULL;
   destroying a heap that is not created does nothing. */
void kernel_heap_private_destroy(struct kernel_heap *kh);

#endif
