/*
 * bump.c - the bump ("arena") backend.
 *
 * How it works
 * ------------
 * The heap is one region [start, end) and a pointer `next`: everything below next has been handed
 * out, everything above is free. An allocation places a 16-byte header at the first suitable spot
 * after next, aligns the user pointer, and moves next past the block:
 *
 *      start                      last                   next                 end
 *        |  hdr | block 1 | pad | hdr | block 2 (last) |  ...... free ......  |
 *               ^user ptr             ^user ptr
 *      hdr = { size: usable bytes of the block, prev_next: value of next before this block }
 *
 * Memory is reused in only two ways:
 *   - freeing the most recent allocation (`last`) rolls next back to hdr->prev_next, so strictly
 *     stack-like (LIFO) use reuses memory one level deep; resize() of `last` grows or shrinks it in
 *     place by moving next;
 *   - a counter of live allocations: when it drops to 0 the whole region is reset (next = start).
 * Any other free only decrements the counter; its bytes stay dead until the reset.
 *
 * Growth: add_memory() of a region that starts exactly at `end` extends the region (the kernel case).
 * A non-adjacent region replaces the current one: the old region's tail is abandoned for good and its
 * live blocks are still valid and freeable; the next reset returns to the new region's start.
 *
 * Invariants (checked by bump_check): start <= next <= end, all 16-aligned; live == 0 implies
 * next == start and last == 0; last, if set, lies in [start, next) and its block ends exactly at next.
 *
 * Complexity: every operation is O(1); check() is O(1).
 * Trade-offs: the fastest and simplest backend with zero fragmentation for phase-structured work
 * (allocate a lot, free it all), but a single long-lived block pins the whole region forever and
 * random free patterns never reuse memory. usable_size needs the 16-byte header.
 */
#include "heap_backend.h"

struct bump_hdr {
    size_t size;         /* usable bytes of the block */
    uintptr_t prev_next; /* next before this block was placed: where a rollback returns */
};

#define BUMP_HDR_SIZE sizeof(struct bump_hdr)
_Static_assert(sizeof(struct bump_hdr) == 16, "bump header must keep 16-byte alignment");
_Static_assert(BUMP_HDR_SIZE % HEAP_MIN_ALIGN == 0, "header size must be a multiple of the alignment");

struct bump {
    struct heap common; /* first member: struct heap * == struct bump * */
    uintptr_t start;    /* first usable byte of the current region */
    uintptr_t next;     /* first free byte */
    uintptr_t end;      /* one past the last byte of the current region */
    uintptr_t last;     /* user pointer of the most recent live block, or 0 */
    size_t live;        /* live allocations, in every region */
};

_Static_assert(offsetof(struct bump, common) == 0, "struct heap must be the first member");

static struct bump *to_bump(struct heap *h)
{
    return container_of(h, struct bump, common);
}

static const struct bump *to_cbump(const struct heap *h)
{
    return container_of(h, const struct bump, common);
}

static struct bump_hdr *hdr_of(const void *ptr)
{
    return (struct bump_hdr *)((uintptr_t)ptr - BUMP_HDR_SIZE);
}

/* Places the instance at the start of mem; NULL if fewer than one minimum block remains. */
static struct heap *bump_init(void *mem, size_t size)
{
    uintptr_t base = heap_align_up((uintptr_t)mem, HEAP_MIN_ALIGN);
    uintptr_t start = heap_align_up(base + sizeof(struct bump), HEAP_MIN_ALIGN);
    uintptr_t end;
    struct bump *b;

    if (size < start - (uintptr_t)mem + BUMP_HDR_SIZE + HEAP_MIN_ALIGN)
        return NULL;
    end = heap_align_down((uintptr_t)mem + size, HEAP_MIN_ALIGN);
    b = (struct bump *)base;
    __builtin_memset(b, 0, sizeof(*b));
    b->start = start;
    b->next = start;
    b->end = end;
    return &b->common;
}

/* Returns size bytes aligned to align after next, or NULL if the region's tail is too small. */
static void *bump_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct bump *b = to_bump(h);
    size_t rsize = heap_align_up(size, HEAP_MIN_ALIGN);
    size_t room = b->end - b->next;
    size_t pad;
    uintptr_t p;
    struct bump_hdr *hdr;

    if (room < BUMP_HDR_SIZE)
        return NULL;
    room -= BUMP_HDR_SIZE;
    pad = -(b->next + BUMP_HDR_SIZE) & (align - 1);
    if (pad > room || rsize > room - pad)
        return NULL;
    p = b->next + BUMP_HDR_SIZE + pad;
    hdr = hdr_of((void *)p);
    hdr->size = rsize;
    hdr->prev_next = b->next;
    b->next = p + rsize;
    b->last = p;
    b->live++;
    *usable = rsize;
    return (void *)p;
}

/* Counts ptr dead; rolls next back if ptr was the last block, resets the region if none is live. */
static size_t bump_free(struct heap *h, void *ptr)
{
    struct bump *b = to_bump(h);
    size_t size = hdr_of(ptr)->size;

    b->live--;
    if (b->live == 0) {
        b->next = b->start;
        b->last = 0;
    } else if ((uintptr_t)ptr == b->last) {
        b->next = hdr_of(ptr)->prev_next;
        b->last = 0;
    }
    return size;
}

/* The last block can grow or shrink by moving next; any block can shrink in place. */
static bool bump_resize(struct heap *h, void *ptr, size_t size)
{
    struct bump *b = to_bump(h);
    struct bump_hdr *hdr = hdr_of(ptr);
    size_t rsize = heap_align_up(size, HEAP_MIN_ALIGN);

    if ((uintptr_t)ptr == b->last) {
        if (rsize > b->end - (uintptr_t)ptr)
            return false;
        hdr->size = rsize;
        b->next = (uintptr_t)ptr + rsize;
        return true;
    }
    if (rsize > hdr->size)
        return false;
    hdr->size = rsize;
    return true;
}

static size_t bump_usable_size(const struct heap *h, const void *ptr)
{
    (void)h;
    return hdr_of(ptr)->size;
}

/* Extends the region if [start, start + len) follows it, else switches to the new region. */
static void bump_add_memory(struct heap *h, void *start, size_t len)
{
    struct bump *b = to_bump(h);
    uintptr_t s = heap_align_up((uintptr_t)start, HEAP_MIN_ALIGN);
    uintptr_t e = heap_align_down((uintptr_t)start + len, HEAP_MIN_ALIGN);

    if ((uintptr_t)start == b->end) {
        b->end = e;
        return;
    }
    if (e <= s)
        return;
    b->start = s;
    b->next = s;
    b->end = e;
    b->last = 0;
}

static size_t bump_check(const struct heap *h)
{
    const struct bump *b = to_cbump(h);
    size_t bad = 0;

    bad += !(b->start <= b->next && b->next <= b->end);
    bad += (b->start | b->next | b->end) % HEAP_MIN_ALIGN != 0;
    bad += b->live == 0 && (b->next != b->start || b->last != 0);
    if (b->last != 0) {
        bad += b->last < b->start + BUMP_HDR_SIZE || b->last > b->next;
        bad += b->last % HEAP_MIN_ALIGN != 0;
        if (bad == 0)
            bad += b->last + hdr_of((void *)b->last)->size != b->next;
    }
    return bad;
}

const struct heap_ops heap_bump_ops = {
    .name = "bump",
    .grow_overhead = BUMP_HDR_SIZE + 2 * HEAP_MIN_ALIGN,
    .init = bump_init,
    .alloc = bump_alloc,
    .free = bump_free,
    .resize = bump_resize,
    .usable_size = bump_usable_size,
    .add_memory = bump_add_memory,
    .check = bump_check,
};
