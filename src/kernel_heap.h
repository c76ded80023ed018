/*
 * The kernel heap: wires src/alloc/ (which knows nothing of the kernel) to
 * the heap region of src/paging/ (which knows nothing of allocators).
 *
 * The heap starts with KERNEL_HEAP_INITIAL_PAGES mapped at HEAP_REGION_BASE
 * and grows at its end, at least KERNEL_HEAP_GROW_MIN_PAGES at a time, up
 * to a cap: KERNEL_HEAP_MAX from CMake, or by default 7/8 of the RAM that
 * was free at boot. The heap lock disables interrupts and restores the
 * previous state, so kmalloc() may be called from interrupt handlers.
 *
 * This file is compiled per image (like src/alloc/), so each image may be
 * built with or without KHEAP_HARDENING.
 */
#ifndef KHEAP_KERNEL_HEAP_H
#define KHEAP_KERNEL_HEAP_H

#include <stdint.h>

#define KERNEL_HEAP_INITIAL_PAGES   64      /* 256 KiB */
#define KERNEL_HEAP_GROW_MIN_PAGES  16      /* 64 KiB */

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
/* Number of times the heap asked the heap region for more memory. */
uint64_t kernel_heap_grow_calls(void);

#endif
