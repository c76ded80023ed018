/*
 * kheap_host.h - host-side helpers for using src/alloc on Linux (tests, fuzzers, benchmark).
 *
 * The public interface of the library is src/alloc/heap.h (plus kmalloc.h, kbox.h, kvec.h, krc.h);
 * this header adds an arena that mirrors the kernel's heap region: a large PROT_NONE reservation whose
 * front part is usable, grown at its end with mprotect(). Optionally it leaves a one-page hole before
 * some growths so non-adjacent add_memory() gets exercised too.
 */
#ifndef KHEAP_HOST_H
#define KHEAP_HOST_H

#include <stdbool.h>
#include <stddef.h>

#include "heap.h"
#include "heap_test_util.h" /* heap_rand, heap_fill, heap_verify: shared with the kernel tests */

struct host_arena {
    unsigned char *base; /* start of the reservation */
    size_t reserved;     /* bytes reserved (PROT_NONE unless committed) */
    size_t committed;    /* bytes from base handed out so far (including holes) */
    size_t limit;        /* grow() fails beyond this many committed bytes; <= reserved */
    size_t chunk;        /* minimum bytes per grow() */
    unsigned gap_every;  /* if > 0, every gap_every-th grow() leaves a PROT_NONE page before the region */
    size_t gap_bytes;    /* bytes of committed holes never handed out */
    unsigned grow_calls; /* successful grow() calls */
    unsigned failed_grows;
    /* Giving memory back (host_arena_release_env): the ranges given back and not reclaimed, in call
     * order (a mock environment: tests check them against live blocks), and what went wrong. */
    struct host_range {
        uintptr_t lo, hi;
    } * released;
    size_t nreleased, released_cap;
    size_t released_bytes;   /* sum over released[] */
    unsigned release_errors; /* release of a range outside the arena, misaligned, or overlapping */
    unsigned reclaim_errors; /* reclaim of a range that was not released */
    bool refuse_reclaim;     /* reclaim() fails (tests of the failure path) */
};

/* Reserves reserve bytes and makes the first initial bytes usable. Returns 0, or -1 on mmap failure. */
int host_arena_init(struct host_arena *a, size_t reserve, size_t initial);

/* Releases the reservation. */
void host_arena_destroy(struct host_arena *a);

/* Makes a as host_arena_init(a, a->reserved, initial) leaves it -- counters, limit, chunk and the
 * released ranges reset, the first initial bytes usable, the rest PROT_NONE -- without unmapping:
 * pages it committed stay resident (unless given back), so a heap created on it next does not pay
 * the OS's first-touch page faults again. Their contents are whatever the last heap left. Returns 0,
 * or -1 if initial exceeds the reservation or mprotect fails. */
int host_arena_rewind(struct host_arena *a, size_t initial);

/* heap_env.grow callback (ctx = struct host_arena *): commits max(min_bytes, chunk) rounded up to
 * pages at the end of the committed part; -1 if that would pass limit. */
int host_arena_grow(void *ctx, size_t min_bytes, void **start, size_t *len);

/* Returns an env with grow = host_arena_grow and no lock. */
struct heap_env host_arena_env(struct host_arena *a);

/* heap_env.release / heap_env.reclaim (ctx = struct host_arena *): release checks the range (page
 * aligned, committed, overlapping nothing released: else release_errors++), records it, drops the
 * pages (MADV_DONTNEED) and makes them PROT_NONE, so any later touch by the heap crashes the test;
 * reclaim makes a recorded range (or a part of one) read/write again (zero-filled), or fails when
 * refuse_reclaim is set. */
void host_arena_release(void *ctx, void *start, size_t len);
int host_arena_reclaim(void *ctx, void *start, size_t len);

/* host_arena_env() plus release and reclaim. */
struct heap_env host_arena_release_env(struct host_arena *a);

/* True if [p, p + n) overlaps a range the heap gave back. */
bool host_arena_overlaps_released(const struct host_arena *a, const void *p, size_t n);

/* True if [p, p + n) lies inside the committed part of the arena. */
bool host_arena_contains(const struct host_arena *a, const void *p, size_t n);

/* Formats a hardened-mode report as one line (the host's equivalent of the kernel's panic message)
 * into buf; returns buf. */
char *host_report_format(const struct heap_report *r, char *buf, size_t len);

#endif /* KHEAP_HOST_H */
