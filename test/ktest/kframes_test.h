/*
 * Helpers for tests of what happens when frames run out: frame_hoard_take()
 * takes every free frame but a few, frame_hoard_release() gives them back.
 * The hoard is a chain through the hoarded frames themselves (each run's
 * first frame holds the next run and its length), so it needs no memory of
 * its own, and it is taken in runs from pmm_alloc_contiguous(), largest
 * first, so it costs O(runs) to take at any QEMU_MEMORY (giving back is one
 * pmm_free_frame() per frame, in reverse order, so the frontiers come back).
 */
#ifndef KHEAP_KFRAMES_TEST_H
#define KHEAP_KFRAMES_TEST_H

#include "ktest.h"
#include "memlayout.h"
#include "paging/pmm.h"

struct frame_hoard {
    uint64_t head;   /* first frame of the newest run, PMM_NO_FRAME if empty */
    uint64_t frames; /* frames held */
};

/* Takes free frames until only keep are left (or none can be taken). */
static inline void frame_hoard_take(struct frame_hoard *h, uint64_t keep)
{
    h->head = PMM_NO_FRAME;
    h->frames = 0;
    uint64_t run_max = UINT64_MAX;
    for (;;) {
        uint64_t free = pmm_stats().free_frames;
        if (free <= keep)
            break;
        uint64_t want = free - keep, n = 1;
        while (n <= want / 2 && n < run_max)
            n *= 2;
        uint64_t run = PMM_NO_FRAME;
        while (n > 1 && (run = pmm_alloc_contiguous((size_t)n)) == PMM_NO_FRAME)
            n /= 2; /* runs only get shorter: remember it */
        run_max = n;
        if (run == PMM_NO_FRAME && (run = pmm_alloc_frame()) == PMM_NO_FRAME)
            break;
        uint64_t *link = phys_to_virt(run);
        link[0] = h->head;
        link[1] = n;
        h->head = run;
        h->frames += n;
    }
}

/* Gives every hoarded frame back in reverse order of allocation (newest run
   first, each from its lowest frame), so the frontiers grow back whole. */
static inline void frame_hoard_release(struct frame_hoard *h)
{
    while (h->head != PMM_NO_FRAME) {
        uint64_t run = h->head;
        const uint64_t *link = phys_to_virt(run);
        uint64_t next = link[0], n = link[1];
        for (uint64_t i = 0; i < n; i++) /* runs come off the top of a frontier */
            pmm_free_frame(run + i * PAGE_SIZE);
        h->head = next;
        h->frames -= n;
    }
}

/* ktest_defer() form of frame_hoard_release(): the frames come back even if
   the test fails half-way. */
static inline void frame_hoard_release_deferred(void *hoard)
{
    frame_hoard_release(hoard);
}

#endif
